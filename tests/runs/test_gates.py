"""Threshold gate modes and paired baseline rules that know the noise."""

import numpy as np
import pytest

from pytest_clever.errors import InvalidInputError
from pytest_clever.runs.gates import (
    ChangeRule,
    InputPairing,
    check_gate_mode,
    compare_paired,
    input_deltas,
    pair_inputs,
    threshold_gate,
)


@pytest.mark.parametrize(
    "value, interval, bar, point, significant_fail, significant_pass",
    [
        (0.52, (0.45, 0.60), 0.50, True, True, False),  # above, but within the noise
        (0.48, (0.45, 0.55), 0.50, False, True, False),  # below, but within the noise
        (0.40, (0.35, 0.45), 0.50, False, False, False),  # significantly below
        (0.60, (0.55, 0.65), 0.50, True, True, True),  # significantly above
    ],
)
def test_threshold_gate_modes(value, interval, bar, point, significant_fail, significant_pass):
    assert threshold_gate(value, interval, bar, "point").passed is point
    assert threshold_gate(value, interval, bar, "significant-fail").passed is significant_fail
    assert threshold_gate(value, interval, bar, "significant-pass").passed is significant_pass


def test_gate_without_interval_compares_the_point_value_and_says_so():
    verdict = threshold_gate(0.48, None, 0.5, "significant-fail")
    assert not verdict.passed and "point value" in verdict.message
    assert "significantly below" in threshold_gate(0.4, (0.35, 0.45), 0.5, "significant-fail").message


def test_unknown_gate_mode_is_a_usage_error():
    assert check_gate_mode(" Significant-Fail ") == "significant-fail"
    with pytest.raises(InvalidInputError, match="point, significant-fail, significant-pass"):
        check_gate_mode("strict")


def test_rule_syntax():
    rule = ChangeRule.parse("mean:10%:significant")
    assert rule.significant and rule.drop.statistic == "mean" and rule.drop.drop == pytest.approx(0.1)
    assert str(rule) == "mean:10%:significant"
    plain = ChangeRule.parse("min:0.05")
    assert not plain.significant and not plain.drop.relative
    assert [str(r) for r in ChangeRule.parse_many("min:0.05:significant, mean:10%")] == [
        "min:0.05:significant",
        "mean:10%",
    ]
    for bad in ("mean", "mean:ten%", "mean:10%:sometimes", "avg:10%"):
        with pytest.raises(InvalidInputError, match="STAT:DROP"):
            ChangeRule.parse(bad)


def _run(scale, noise, seed, n=30):
    """Paired scores: the same 30 inputs, each scored with estimator noise of ``noise`` (relative sd)."""
    rng = np.random.default_rng(seed)
    truth = np.linspace(0.2, 0.6, n) * scale
    points = truth * (1 + noise * rng.standard_normal(n))
    half = 1.96 * noise * truth
    return points, [(p - h, p + h) for p, h in zip(points, half, strict=True)]


def test_significant_rule_ignores_noise_and_catches_a_real_loss():
    rule = ChangeRule.parse("mean:10%:significant")
    base, base_iv = _run(1.0, 0.08, seed=0)
    alarms = sum(compare_paired(rule, *_run(1.0, 0.08, seed=s), base, base_iv, 0.95).failed for s in range(1, 41))
    caught = sum(compare_paired(rule, *_run(0.7, 0.08, seed=s), base, base_iv, 0.95).failed for s in range(1, 41))
    assert alarms <= 2
    assert caught >= 38
    # A 12% drop inside wide intervals: the point rule fails, the significant one does not.
    base, base_iv = _run(1.0, 0.3, seed=0)
    wide = [(0.88 * p - 0.3 * p, 0.88 * p + 0.3 * p) for p in base]
    assert compare_paired(ChangeRule.parse("mean:10%"), 0.88 * base, wide, base, base_iv, 0.95).failed
    assert not compare_paired(rule, 0.88 * base, wide, base, base_iv, 0.95).failed


def test_baseline_without_intervals_is_compared_by_points():
    now, now_iv = _run(0.7, 0.05, seed=1)
    before, _ = _run(1.0, 0.05, seed=0)
    verdict = compare_paired(ChangeRule.parse("mean:10%:significant"), now, now_iv, before, [None] * len(before), 0.95)
    assert verdict.by_points and verdict.failed and "point values" in verdict.failure
    assert verdict.change == pytest.approx(now.mean() / before.mean() - 1)


def test_input_deltas_have_intervals():
    rows = input_deltas([1.0, 2.0], [(0.9, 1.1), None], [1.2, 2.0], [(1.1, 1.3), None])
    delta, lo, hi = rows[0]
    assert delta == pytest.approx(-0.2) and lo == pytest.approx(-0.2 - np.hypot(0.1, 0.1)) and hi > -0.2
    assert rows[1] == (0.0, 0.0, 0.0)


def test_inputs_pair_by_fingerprint_whatever_their_order():
    pairing = pair_inputs(["c", "a", "b"], ["a", "b", "c"])
    assert pairing.pairs == ((0, 2), (1, 0), (2, 1)) and pairing.complete and pairing.by_position is None
    assert pairing.align([30, 10, 20], [1, 2, 3]) == ([30, 10, 20], [3, 1, 2])


def test_inputs_on_one_side_only_are_listed():
    pairing = pair_inputs(["a", "x", "b", "y"], ["a", "b", "c"])
    assert pairing.pairs == ((0, 0), (2, 1)) and pairing.only_now == (1, 3) and pairing.only_before == (2,)
    assert not pairing.complete


def test_an_input_listed_twice_pairs_occurrence_by_occurrence():
    pairing = pair_inputs(["a", "a", "b"], ["b", "a", "a"])
    assert pairing.pairs == ((0, 1), (1, 2), (2, 0)) and pairing.complete
    assert not pair_inputs(["a", "a"], ["a", "b"]).complete


@pytest.mark.parametrize(
    "now, before, side",
    [
        (["a", "b"], [None, None], "the baseline has"),
        ([None, None, None], ["a", "b"], "this run has"),
        (["a", None], [None, "b"], "neither run has"),
    ],
)
def test_a_side_without_fingerprints_pairs_by_position_and_says_which(now, before, side):
    pairing = pair_inputs(now, before)
    assert pairing.by_position == f"{side} no input fingerprints"
    common = min(len(now), len(before))
    assert pairing.pairs == tuple((i, i) for i in range(common))
    assert pairing.only_now == tuple(range(common, len(now))) and pairing.only_before == ()


def test_input_deltas_follow_the_pairing():
    pairing = InputPairing(((0, 1), (1, 0)))
    rows = input_deltas([1.0, 2.0], [None, None], [2.5, 1.5], [None, None], pairing)
    assert rows == [(-0.5, -0.5, -0.5), (-0.5, -0.5, -0.5)]
    with pytest.raises(ValueError, match="same inputs"):
        input_deltas([1.0], [None], [1.0, 2.0], [None, None])
