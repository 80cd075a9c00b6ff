"""The public API: results, determinism, RNG isolation, model restoration and bad input."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from pytest_clever import (
    CleverReport,
    CleverResult,
    GradientMaskingError,
    InvalidInputError,
    MisclassifiedInputError,
    clever_score,
    clever_scores,
)

from ..helpers import Linear

# The fewest batch maxima the fit accepts; batches of 32 points.
TEN_BATCHES_OF_32 = dict(n_batches=10, batch_size=32)
X0 = torch.tensor([0.3, -0.2, 0.1, 0.5, -0.4, 0.2])


class SmallNet(nn.Module):
    """A non-linear net with the layers whose state the API must restore."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 3))

    def forward(self, x):
        return self.body(x)


def _prediction(model, x):
    with torch.no_grad():
        return int(model(x.unsqueeze(0)).argmax())


# --- results ---------------------------------------------------------------------------


def test_result_fields_repr_and_json(linear_model):
    model, _, _ = linear_model
    result = clever_score(model, X0, radius=2.0, seed=3, label=_prediction(model, X0), **TEN_BATCHES_OF_32)
    assert isinstance(result, CleverResult)
    assert result.order == 1 and result.norm == 2.0 and result.radius == 2.0
    assert result.n_batches == 10 and result.batch_size == 32 and result.seed == 3
    assert result.elapsed > 0
    text = repr(result)
    assert text.startswith("CleverResult(score=") and "target=" in text and "seed=3" in text
    data = json.loads(json.dumps(result.to_dict()))
    assert data["score"] == pytest.approx(result.score)
    assert set(data["per_target"]) == {str(j) for j in result.per_target}
    for key in ("lipschitz", "margin", "shape", "loc", "scale", "ks_statistic", "ks_pvalue", "fit_method"):
        assert key in data["per_target"][str(result.target)]
    again = CleverResult.from_dict(data)
    assert again.score == result.score and again.per_target.keys() == result.per_target.keys()


def test_result_is_frozen(linear_model):
    result = clever_score(linear_model[0], X0, radius=2.0, seed=0, **TEN_BATCHES_OF_32)
    with pytest.raises(AttributeError):
        result.score = 1.0


def test_report_statistics(linear_model):
    model = linear_model[0]
    xs = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
    report = clever_scores(model, xs, radius=3.0, seed=0, **TEN_BATCHES_OF_32)
    assert isinstance(report, CleverReport) and len(report) == 6
    scores = np.array([r.score for r in report])
    assert report.min == scores.min() and report.mean == pytest.approx(scores.mean())
    assert report.median == pytest.approx(np.median(scores))
    assert report.quantile(0.1) == pytest.approx(np.quantile(scores, 0.1))
    assert report.statistic("q10") == report.quantile(0.1)
    assert report.statistic("min") == report.min
    assert report.worst(2) == list(np.argsort(scores)[:2])
    with pytest.raises(ValueError, match="unknown statistic"):
        report.statistic("mode")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["n"] == 6 and len(data["results"]) == 6 and data["mean"] == pytest.approx(report.mean)
    assert CleverReport.from_dict(data).scores.tolist() == report.scores.tolist()
    assert repr(report).startswith("CleverReport(n=6, min=")


def test_scores_of_a_sequence_and_of_a_batch_agree(linear_model):
    model = linear_model[0]
    xs = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    a = clever_scores(model, xs, radius=3.0, seed=5, **TEN_BATCHES_OF_32)
    b = clever_scores(model, list(xs), radius=3.0, seed=5, **TEN_BATCHES_OF_32)
    assert a.scores.tolist() == b.scores.tolist()


# --- determinism and isolation ----------------------------------------------------------


def test_same_seed_same_score_bit_for_bit(digits_cnn, digits):
    x = digits.x_test[0]
    kw = dict(radius=2.0, bounds=(0, 1), seed=11, n_batches=20, batch_size=64)
    a, b = clever_score(digits_cnn, x, **kw), clever_score(digits_cnn, x, **kw)
    assert a.score == b.score
    assert {j: t.lipschitz for j, t in a.per_target.items()} == {j: t.lipschitz for j, t in b.per_target.items()}
    c = clever_score(digits_cnn, x, **{**kw, "seed": 12})
    assert c.score != a.score


def test_per_input_seeds_reproduce_single_scores(digits_cnn, digits):
    kw = dict(radius=2.0, bounds=(0, 1), n_batches=10, batch_size=64)
    report = clever_scores(digits_cnn, digits.x_test[:3], seed=4, **kw)
    assert len({r.seed for r in report}) == 3
    for x, result in zip(digits.x_test[:3], report, strict=True):
        assert clever_score(digits_cnn, x, seed=result.seed, **kw).score == result.score


def test_no_seed_draws_one_and_records_it(linear_model):
    result = clever_score(linear_model[0], X0, radius=1.0, **TEN_BATCHES_OF_32)
    assert isinstance(result.seed, int)
    assert clever_score(linear_model[0], X0, radius=1.0, seed=result.seed, **TEN_BATCHES_OF_32).score == result.score


def test_global_rng_state_is_untouched(digits_cnn, digits):
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    clever_score(digits_cnn, digits.x_test[0], radius=1.0, bounds=(0, 1), seed=0, n_batches=10, batch_size=32)
    clever_scores(digits_cnn, digits.x_test[:2], radius=1.0, bounds=(0, 1), n_batches=10, batch_size=32)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)


# --- the model comes back as it was -----------------------------------------------------


def test_model_state_is_restored_after_scoring():
    model = SmallNet()
    model.train()
    model.body[1].eval()  # a mixed state must come back mixed
    model.body[0].weight.requires_grad_(False)
    sentinel = torch.ones_like(model.body[4].weight)
    model.body[4].weight.grad = sentinel
    flags = [m.training for m in model.modules()]
    req = [p.requires_grad for p in model.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match="training mode with Dropout"):
        clever_score(model, X0, radius=1.0, seed=0, **TEN_BATCHES_OF_32)
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == req
    assert model.body[4].weight.grad is sentinel
    assert all(p.grad is None for n, p in model.named_parameters() if n != "body.4.weight")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics untouched


def test_model_is_restored_after_an_error():
    model = SmallNet().eval()
    with pytest.raises(MisclassifiedInputError):
        clever_score(model, X0, radius=1.0, label=(_prediction(model, X0) + 1) % 3, **TEN_BATCHES_OF_32)
    assert all(p.requires_grad for p in model.parameters())
    assert not model.training


def test_training_mode_is_scored_as_eval_mode():
    model = SmallNet()
    model.eval()
    reference = clever_score(model, X0, radius=1.0, seed=0, **TEN_BATCHES_OF_32).score
    model.train()
    with pytest.warns(UserWarning):
        assert clever_score(model, X0, radius=1.0, seed=0, **TEN_BATCHES_OF_32).score == reference


def test_works_under_no_grad_and_inference_mode(linear_model):
    model = linear_model[0]
    reference = clever_score(model, X0, radius=1.0, seed=0, **TEN_BATCHES_OF_32).score
    with torch.no_grad():
        assert clever_score(model, X0, radius=1.0, seed=0, **TEN_BATCHES_OF_32).score == reference
    with torch.inference_mode():
        assert clever_score(model, X0, radius=1.0, seed=0, **TEN_BATCHES_OF_32).score == reference


def test_a_plain_callable_is_a_valid_model(linear_model):
    model = linear_model[0]
    reference = clever_score(model, X0, radius=1.0, seed=0, **TEN_BATCHES_OF_32).score
    assert clever_score(lambda x: model(x), X0, radius=1.0, seed=0, **TEN_BATCHES_OF_32).score == reference


# --- shapes -----------------------------------------------------------------------------


def test_explicit_batch_dimension_of_one_is_accepted(digits_cnn, digits):
    kw = dict(radius=1.0, bounds=(0, 1), seed=0, n_batches=10, batch_size=32)
    x = digits.x_test[0]  # (1, 8, 8): the leading 1 is the channel
    assert clever_score(digits_cnn, x.unsqueeze(0), **kw).score == clever_score(digits_cnn, x, **kw).score
    model = Linear(torch.eye(3, 6), torch.zeros(3))
    assert clever_score(model, X0.unsqueeze(0), radius=1.0, seed=0, **TEN_BATCHES_OF_32).score == pytest.approx(
        clever_score(model, X0, radius=1.0, seed=0, **TEN_BATCHES_OF_32).score
    )


def test_masked_gradients_raise(digits_cnn, digits):
    def quantised(x):
        return digits_cnn(torch.round(x * 4) / 4)

    with pytest.raises(GradientMaskingError, match="BPDA"):
        clever_score(quantised, digits.x_test[0], radius=1.0, bounds=(0, 1), seed=0, n_batches=10, batch_size=32)


# --- bad input (the full matrix is in test_bad_input.py) --------------------------------


def test_clever_scores_names_the_failing_input(linear_model):
    xs = torch.stack([X0, X0 * math.nan])
    with pytest.raises(InvalidInputError, match="NaN"):
        clever_scores(linear_model[0], xs, radius=1.0, **TEN_BATCHES_OF_32)
    with pytest.raises(InvalidInputError, match="2 labels for 1 inputs"):
        clever_scores(linear_model[0], X0.unsqueeze(0), [0, 1], radius=1.0, **TEN_BATCHES_OF_32)


def test_errors_are_value_errors(linear_model):
    # One family users can catch; also a ValueError for generic handlers.
    with pytest.raises(ValueError):
        clever_score(linear_model[0], X0, radius=-1.0, **TEN_BATCHES_OF_32)


def test_no_warning_on_a_clean_linear_run(linear_model):
    model = linear_model[0].eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clever_score(model, X0, radius=1.0, seed=0, **TEN_BATCHES_OF_32)


def test_each_result_carries_its_inputs_fingerprint_never_the_input():
    model = Linear(torch.eye(3, 6), torch.zeros(3))
    xs = [X0, X0 * 0.5, X0.clone()]
    report = clever_scores(model, xs, radius=1.0, **TEN_BATCHES_OF_32)
    first, second, third = (r.fingerprint for r in report)
    assert first == third != second and len(first) == 16
    # The input as given: its dtype and shape count, the scoring device and dtype do not.
    assert clever_score(model, X0, radius=1.0, **TEN_BATCHES_OF_32).fingerprint == first
    assert clever_score(model, X0.double(), radius=1.0, **TEN_BATCHES_OF_32).fingerprint != first
    assert clever_scores(model, [X0.numpy()], radius=1.0, **TEN_BATCHES_OF_32)[0].fingerprint == first
    data = json.loads(json.dumps(report[0].to_dict()))
    assert data["fingerprint"] == first and str(float(X0[0])) not in json.dumps(data["fingerprint"])
    assert CleverResult.from_dict(data).fingerprint == first
    del data["fingerprint"]  # results saved without one read as None
    assert CleverResult.from_dict(data).fingerprint is None
