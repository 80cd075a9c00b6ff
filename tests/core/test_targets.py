"""Target selection: parsing, per-input resolution, bad input, and the API keyword."""

import json

import numpy as np
import pytest
import torch

from pytest_clever import CleverResult, InvalidInputError, clever_score, clever_scores
from pytest_clever.core.targets import (
    TargetSpec,
    combine_target_and_targets,
    draw_classes,
    parse_targets,
    resolve_targets,
)

from ..helpers import Linear

# Class 2 is predicted; the others rank 4 > 0 = 5 > 1 > 3 (0 and 5 tie: lower index first).
LOGITS = [1.0, -0.5, 3.0, -2.0, 2.5, 1.0]


# --- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, text",
    [
        ("all", "all"),
        (" ALL ", "all"),
        ("top-2", "top-2"),
        ("Top-10", "top-10"),
        ("random-3", "random-3"),
        ("least-likely", "least-likely"),
        ("least_likely", "least-likely"),
        ([5, 3], "3,5"),
        ((7,), "7"),
        (4, "4"),
        ("3,5", "3,5"),
        (" 5 , 3 ", "3,5"),
        (TargetSpec("top", k=2), "top-2"),
    ],
)
def test_parse_gives_a_canonical_text(spec, text):
    parsed = parse_targets(spec)
    assert str(parsed) == text
    assert parse_targets(str(parsed)) == parsed  # the text parses back to the same spec


def test_only_one_explicit_class_is_targeted():
    assert parse_targets([3]).targeted and parse_targets("3").targeted
    assert not parse_targets([3, 4]).targeted and not parse_targets("top-1").targeted


@pytest.mark.parametrize(
    "spec, message",
    [
        ("top-0", "k must be >= 1"),
        ("random-0", "k must be >= 1"),
        ("top", "unknown targets 'top'"),
        ("most-likely", "unknown targets 'most-likely'"),
        ("top-two", "unknown targets"),
        ("", "unknown targets"),
        ("3,,5", "unknown targets"),
        ([3, 5, 3], "names class 3 more than once"),
        ("5,5", "names class 5 more than once"),
        ([], "names no class"),
        ([-1], "-1 is not a class index"),
        ([1.5], "1.5 is not a class index"),
        ([True], "True is not a class index"),
        (2.0, "got float 2.0"),
        (None, "got NoneType"),
    ],
)
def test_parse_rejects_bad_specs_by_name(spec, message):
    with pytest.raises(InvalidInputError, match=_escaped(message)):
        parse_targets(spec)


def _escaped(text):
    import re

    return re.escape(text)


def test_target_and_targets_are_exclusive_and_target_j_is_targets_j():
    assert combine_target_and_targets(4, None) == parse_targets([4])
    assert combine_target_and_targets(None, None) == parse_targets("all")
    assert combine_target_and_targets(None, "top-2") == parse_targets("top-2")
    with pytest.raises(InvalidInputError, match="either target=4 or targets='all', not both"):
        combine_target_and_targets(4, "all")


def test_parse_targets_is_pure_python():
    import subprocess
    import sys

    code = "import sys, pytest_clever.core.targets as t; t.parse_targets('top-2'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- resolution ----------------------------------------------------------------------------------


def test_all_is_every_other_class():
    assert resolve_targets("all", LOGITS, 2, seed=0) == [0, 1, 3, 4, 5]


def test_top_k_orders_by_logit_and_breaks_ties_by_index():
    assert resolve_targets("top-1", LOGITS, 2, seed=0) == [4]
    assert resolve_targets("top-3", LOGITS, 2, seed=0) == [4, 0, 5]
    assert resolve_targets("top-5", LOGITS, 2, seed=0) == [4, 0, 5, 1, 3]
    # The same from a tensor of logits.
    assert resolve_targets("top-2", torch.tensor(LOGITS), 2, seed=0) == [4, 0]


def test_least_likely_is_the_lowest_logit():
    assert resolve_targets("least-likely", LOGITS, 2, seed=0) == [3]
    # Ties go to the lower index; the predicted class is never chosen.
    assert resolve_targets("least-likely", [0.0, 5.0, 0.0], 1, seed=0) == [0]
    assert resolve_targets("least-likely", [-9.0, 1.0, 0.0], 0, seed=0) == [2]


def test_explicit_keeps_the_sorted_classes():
    assert resolve_targets([5, 0], LOGITS, 2, seed=0) == [0, 5]


def test_random_k_is_a_reproducible_function_of_the_seed():
    draws = {seed: tuple(resolve_targets("random-2", LOGITS, 2, seed)) for seed in range(200)}
    for seed, classes in draws.items():
        assert len(set(classes)) == 2 and 2 not in classes and set(classes) <= {0, 1, 3, 4, 5}
        assert list(classes) == sorted(classes)
        assert tuple(resolve_targets("random-2", LOGITS, 2, seed)) == classes
    # Each of the 10 pairs comes up, none dominates (expected 20 per pair out of 200).
    counts = {pair: list(draws.values()).count(pair) for pair in set(draws.values())}
    assert len(counts) == 10 and max(counts.values()) <= 40
    # The draw is pinned forever (SplitMix64, not a library RNG stream).
    assert draw_classes(range(1000), 3, seed=0) == [49, 622, 782]
    assert draw_classes(range(1000), 3, seed=1) == [186, 591, 985]
    assert resolve_targets("random-4", LOGITS, 2, seed=7) == draw_classes([0, 1, 3, 4, 5], 4, 7)


def test_random_k_at_k_minus_one_takes_every_other_class():
    assert resolve_targets("random-5", LOGITS, 2, seed=3) == [0, 1, 3, 4, 5]


@pytest.mark.parametrize(
    "spec, message",
    [
        ([2], "targets 2 name class 2, the predicted class"),
        ([0, 2], "targets 0,2 name class 2, the predicted class"),
        ([6], "class 6 is out of range; the model has 6 classes (0 to 5)"),
        ("top-6", "k = 6 must be below the number of classes K = 6"),
        ("random-7", "k = 7 must be below the number of classes K = 6"),
    ],
)
def test_resolve_rejects_specs_the_model_cannot_satisfy(spec, message):
    with pytest.raises(InvalidInputError, match=_escaped(message)):
        resolve_targets(spec, LOGITS, 2, seed=0)


# --- the API keyword -----------------------------------------------------------------------------

# Settings for the six-class model: a radius, the smallest sample the fit accepts, a fixed seed.
SIX_CLASS_SETTINGS = dict(radius=5.0, n_batches=10, batch_size=16, seed=0)


@pytest.fixture
def six_class():
    """A linear model whose logits at x are LOGITS (class 2 predicted)."""
    torch.manual_seed(0)
    w = torch.randn(6, 4, dtype=torch.float64)
    x = torch.zeros(4, dtype=torch.float64)
    return Linear(w, torch.tensor(LOGITS, dtype=torch.float64)), x


def test_api_scores_only_the_selected_targets_and_records_them(six_class):
    model, x = six_class
    everything = clever_score(model, x, **SIX_CLASS_SETTINGS)
    top2 = clever_score(model, x, targets="top-2", **SIX_CLASS_SETTINGS)
    assert top2.targets == "top-2" and top2.target_classes == (4, 0) and not top2.targeted
    assert set(top2.per_target) == {4, 0}
    assert everything.targets == "all" and everything.target_classes == (0, 1, 3, 4, 5)
    # Same samples per target (same seed): a subset's per-target scores are the full run's.
    for j in (4, 0):
        assert top2.per_target[j].score == pytest.approx(everything.per_target[j].score, rel=1e-12)
    assert top2.score == min(everything.per_target[j].score for j in (4, 0))
    assert top2.score >= everything.score
    least = clever_score(model, x, targets="least-likely", **SIX_CLASS_SETTINGS)
    assert least.target_classes == (3,) and least.target == 3


def test_target_j_equals_targets_j(six_class):
    model, x = six_class
    a = clever_score(model, x, target=5, **SIX_CLASS_SETTINGS)
    b = clever_score(model, x, targets=[5], **SIX_CLASS_SETTINGS)
    assert a.targeted and b.targeted and a.targets == b.targets == "5"
    assert a.score == b.score and a.target == b.target == 5
    with pytest.raises(InvalidInputError, match="not both"):
        clever_score(model, x, target=5, targets=[5], **SIX_CLASS_SETTINGS)


def test_targets_round_trip_through_json(six_class):
    model, x = six_class
    result = clever_score(model, x, targets="random-2", **SIX_CLASS_SETTINGS)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["targets"] == "random-2" and data["target_classes"] == list(result.target_classes)
    again = CleverResult.from_dict(data)
    assert again.targets == "random-2" and again.target_classes == result.target_classes
    # An old record (no "targets") keeps its meaning.
    del data["targets"], data["target_classes"]
    assert CleverResult.from_dict(data).targets == "all"
    data["targeted"] = True
    assert CleverResult.from_dict(data).targets == str(result.target)


def test_random_targets_differ_per_input_but_reproduce(six_class):
    model, x = six_class
    xs = torch.stack([x] * 8)
    report = clever_scores(model, xs, targets="random-1", **SIX_CLASS_SETTINGS)
    classes = [r.target_classes for r in report]
    assert len(set(classes)) > 1  # per-input seeds draw different classes
    again = clever_scores(model, xs, targets="random-1", **SIX_CLASS_SETTINGS)
    assert [r.target_classes for r in again] == classes


def test_api_rejects_bad_targets_before_scoring(six_class):
    model, x = six_class
    with pytest.raises(InvalidInputError, match="the predicted class"):
        clever_score(model, x, targets=[2, 3], **SIX_CLASS_SETTINGS)
    with pytest.raises(InvalidInputError, match="unknown targets"):
        clever_scores(model, x[None], targets="nearest", **SIX_CLASS_SETTINGS)
    with pytest.raises(InvalidInputError, match="k = 9 must be below"):
        clever_score(model, x, targets="top-9", **SIX_CLASS_SETTINGS)


def test_targets_accept_what_target_accepts_tensors_and_arrays():
    assert parse_targets(torch.tensor(2)) == parse_targets([2]) == parse_targets(np.int64(2))
    assert parse_targets(np.array([3, 1])) == parse_targets(torch.tensor([1, 3])) == parse_targets("1,3")
    with pytest.raises(InvalidInputError, match=r"2\.0 is not a class index"):
        parse_targets(torch.tensor(2.0))
    with pytest.raises(InvalidInputError, match=r"array of shape \(1, 2\)"):
        parse_targets(np.array([[1, 2]]))


@pytest.mark.parametrize("spec", ["\u0662", "1,\u0662", "top-\u0662", "random-\u0663"])
def test_digits_of_other_scripts_are_not_class_indices(spec):
    # int() reads Arabic-Indic digits, so "\u0662" would silently mean class 2.
    with pytest.raises(InvalidInputError, match="unknown targets"):
        parse_targets(spec)
