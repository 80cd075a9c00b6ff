"""Regression rules and record matching against a baseline."""

import pytest

from pytest_clever.runs.compare import DropRule, compare_records, comparison_table
from pytest_clever.runs.record import RunRecord
from pytest_clever.runs.rules import ChangeRule

from .records import make_record, make_record_dict


@pytest.mark.parametrize(
    "text, before, now, fails",
    [
        ("mean:10%", 0.50, 0.46, False),
        ("mean:10%", 0.50, 0.44, True),
        ("min:0.05", 0.20, 0.16, False),
        ("min:0.05", 0.20, 0.14, True),
        ("median:0%", 0.30, 0.30, False),
        ("median:0%", 0.30, 0.2999, True),
        ("max:10%", 0.50, 0.90, False),  # an improvement never fails
    ],
)
def test_drop_rules(text, before, now, fails):
    reason = DropRule.parse(text).fails(before, now)
    assert (reason is not None) == fails
    if fails:
        assert text.split(":")[0] in reason and "allowed" in reason


@pytest.mark.parametrize("text", ["mean", "mode:10%", "mean:ten", "mean:-5%", "q10:5%"])
def test_bad_rules_are_rejected(text):
    with pytest.raises(ValueError):
        DropRule.parse(text)


def test_compare_matches_by_test_and_name_and_flags_each_case():
    baseline = [
        make_record("t.py::a", mean=0.50),
        make_record("t.py::b", mean=0.50),
        make_record("t.py::c", mean=0.50, radius=2.0),
        make_record("t.py::a", name="small", mean=0.30),
    ]
    current = [
        make_record("t.py::a", mean=0.49),
        make_record("t.py::b", mean=0.30),
        make_record("t.py::c", mean=0.10),
        make_record("t.py::a", name="small", mean=0.31),
        make_record("t.py::new", mean=0.5),
    ]
    out = {c.label: c for c in compare_records(current, baseline, [DropRule.parse("mean:10%")])}
    assert out["t.py::a"].status == "ok" and out["t.py::a"].delta("mean") == pytest.approx(-0.01)
    assert out["t.py::b"].status == "regressed" and "0.5 -> 0.3" in out["t.py::b"].reasons[0]
    assert out["t.py::c"].status == "not comparable" and "radius 2.0 -> 1.0" in out["t.py::c"].reasons[0]
    assert out["t.py::c"].delta("mean") is None
    assert out["t.py::a [small]"].status == "ok"
    assert out["t.py::new"].status == "missing baseline"
    table = "\n".join(comparison_table(list(out.values())))
    assert "REGRESSED" in table and "NOT COMPARABLE" in table and "MISSING BASELINE" in table
    assert "-0.2" in table  # the delta of t.py::b


def test_baseline_entries_missing_from_this_run_are_not_run_rows():
    baseline = [
        make_record("t.py::a", mean=0.5),
        make_record("t.py::gone", mean=0.4),
        make_record("t.py::gone", name="m", mean=0.2),
    ]
    out = compare_records([make_record("t.py::a", mean=0.5)], baseline, [DropRule.parse("mean:10%")])
    assert [(c.label, c.status) for c in out] == [
        ("t.py::a", "ok"),
        ("t.py::gone", "not run"),
        ("t.py::gone [m]", "not run"),
    ]
    gone = out[1]
    assert gone.now is None and gone.before.mean == 0.4 and gone.delta("mean") is None
    row = [line for line in comparison_table(out) if line.startswith("t.py::gone ")][0]
    assert row.split()[1:4] == ["0.4", "-", "-"] and row.endswith("NOT RUN")


def test_baseline_entries_of_a_test_that_failed_are_failed_rows_not_not_run():
    baseline = [make_record("t.py::a", mean=0.5), make_record("t.py::broken", mean=0.4)]
    out = compare_records([make_record("t.py::a", mean=0.5)], baseline, [], failed_tests={"t.py::broken"})
    assert [(c.label, c.status) for c in out] == [("t.py::a", "ok"), ("t.py::broken", "failed")]
    table = comparison_table(out)
    assert [line for line in table if line.startswith("t.py::broken ")][0].endswith("FAILED")
    assert "  t.py::broken: the test failed before recording this call" in table


@pytest.mark.parametrize("rule", ["mean:nan", "mean:nan%", "min:inf", "mean:-1"])
def test_a_drop_rule_that_could_never_fire_is_refused(rule):
    with pytest.raises(ValueError, match="drop must be a finite number >= 0"):
        DropRule.parse(rule)


def _result(score: float, fingerprint: str | None, classes: tuple[int, ...] = (1, 2)) -> dict:
    """A saved result: a score with a narrow interval, its input's fingerprint and the classes it was scored on."""
    result = {"score": score, "interval": [score - 0.01, score + 0.01], "target_classes": list(classes)}
    return result if fingerprint is None else {**result, "fingerprint": fingerprint}


def _scored(scores, fingerprints, nodeid="t.py::a", classes=None, **settings):
    """A record of one result per score, with the statistics of those scores."""
    classes = classes or [(1, 2)] * len(scores)
    results = [_result(s, f, c) for s, f, c in zip(scores, fingerprints, classes, strict=True)]
    data = make_record_dict(nodeid, results=results, **settings)
    ordered = sorted(scores)
    mean = sum(scores) / len(scores)
    data.update(n=len(scores), min=ordered[0], max=ordered[-1], mean=mean, median=ordered[len(scores) // 2])
    return RunRecord.from_dict(data)


SIGNIFICANT = [ChangeRule.parse("mean:1%:significant"), ChangeRule.parse("min:0.001:significant")]


def test_inputs_in_another_order_pair_by_fingerprint():
    before = _scored([0.2, 0.5, 0.9], ["a", "b", "c"])
    now = _scored([0.9, 0.2, 0.5], ["c", "a", "b"])
    (c,) = compare_records([now], [before], SIGNIFICANT)
    assert c.status == "ok" and c.pairing is not None and c.pairing.pairs == ((0, 2), (1, 0), (2, 1))
    # Each input meets itself: the delta intervals hold only the scores' own noise.
    assert c.intervals["mean"][1] - c.intervals["mean"][0] < 0.05
    assert "paired, 95% intervals" in "\n".join(comparison_table([c]))


def test_other_inputs_of_the_same_count_are_not_compared():
    # The new user's repro in miniature: the set changed, and position 1 now holds a weaker input.
    before = _scored([0.2, 0.9, 0.5], ["a", "b", "c"])
    now = _scored([0.2, 0.1, 0.5], ["a", "x", "c"])
    (c,) = compare_records([now], [before], SIGNIFICANT)
    assert c.status == "not comparable" and c.delta("mean") is None
    assert c.reasons == (
        "inputs differ: 2 of the baseline's 3 inputs are in this run; only in the baseline: input 1; "
        "only in this run: input 1; inputs are matched by a hash of their bytes, dtype and shape",
    )
    assert c.pairing is not None and c.pairing.only_before == (1,) and c.pairing.only_now == (1,)
    table = "\n".join(comparison_table([c]))
    assert "NOT COMPARABLE" in table and "inputs differ" in table and "REGRESSED" not in table


def test_a_subset_of_the_baseline_inputs_is_not_compared():
    before = _scored([0.2, 0.9, 0.5, 0.7, 0.3, 0.4, 0.8], list("abcdefg"))
    now = _scored([0.2, 0.5], ["a", "c"])
    (c,) = compare_records([now], [before], SIGNIFICANT)
    assert c.status == "not comparable"
    assert "2 of the baseline's 7 inputs are in this run; only in the baseline: inputs 1, 3, 4, 5, 6;" in c.reasons[0]
    assert "only in this run" not in c.reasons[0]


def test_a_baseline_without_fingerprints_pairs_by_position_and_the_table_says_so():
    before = _scored([0.2, 0.5, 0.9], [None, None, None])
    now = _scored([0.2, 0.5, 0.9], ["a", "b", "c"])
    (c,) = compare_records([now], [before], SIGNIFICANT)
    assert c.status == "ok" and c.pairing is not None and c.pairing.by_position
    row = comparison_table([c])[1]
    assert "paired by position (the baseline has no input fingerprints), 95% intervals" in row


def test_random_targets_scored_on_other_classes_are_not_comparable():
    # Same seed, same inputs in another order: each input's classes were drawn with another per-input seed.
    before = _scored([0.2, 0.5], ["a", "b"], classes=[(1,), (2,)], targets="random-1")
    now = _scored([0.5, 0.2], ["b", "a"], classes=[(0,), (1,)], targets="random-1")
    (c,) = compare_records([now], [before], SIGNIFICANT)
    assert c.status == "not comparable"
    assert c.reasons == (
        "targets random-1 scored other classes for 1 of 2 inputs: input 0 (input 1 in the baseline) against "
        "classes [2] in the baseline, [0] now (random-k draws each input's classes with its seed)",
    )
    # Classes that a model-dependent specification resolved differently are the model's doing: compared.
    before = _scored([0.2, 0.5], ["a", "b"], classes=[(1,), (2,)], targets="top-1")
    now = _scored([0.2, 0.5], ["a", "b"], classes=[(0,), (2,)], targets="top-1")
    assert compare_records([now], [before], SIGNIFICANT)[0].status == "ok"


def test_the_seed_is_a_comparable_setting_only_for_random_targets():
    rules = [ChangeRule.parse("mean:10%")]
    out = compare_records([make_record(seed=2, targets="random-3")], [make_record(seed=0, targets="random-3")], rules)
    assert out[0].status == "not comparable"
    assert out[0].reasons == ("seed 0 -> 2 (targets random-3 draws its classes with the seed)",)
    out = compare_records([make_record(seed=2, targets="top-3")], [make_record(seed=0, targets="top-3")], rules)
    assert out[0].status == "ok"


def _scored_spread(nodeid, scores, width=0.01):
    """A record of ``scores`` (each with an interval of half-width ``width``), as the paired comparison reads."""
    results = [{"score": s, "interval": [s - width, s + width], "confidence": 0.95} for s in scores]
    record = make_record(nodeid, mean=sum(scores) / len(scores), results=results)
    return record


@pytest.mark.parametrize("significant", [False, True])
def test_a_relative_rule_on_a_negative_baseline_compares_the_absolute_change(significant):
    # A relative change of a negative mean flips sign: -0.5 -> +0.5 is "-200%", an improvement reported as a drop.
    rule = ChangeRule.parse("mean:10%" + (":significant" if significant else ""))
    before = _scored_spread("t.py::a", [-0.6, -0.5, -0.4])
    better, worse = _scored_spread("t.py::a", [0.4, 0.5, 0.6]), _scored_spread("t.py::a", [-0.9, -0.8, -0.7])
    (ok,) = compare_records([better], [before], [rule])
    assert ok.status == "ok" and ok.reasons == ()
    assert ok.notes and "baseline mean is -0.5 (<= 0)" in ok.notes[0] and "absolute change" in ok.notes[0]
    assert any("note: baseline mean is -0.5" in line for line in comparison_table([ok]))
    (bad,) = compare_records([worse], [before], [rule])
    assert bad.status == "regressed" and "-0.5 -> -0.8" in bad.reasons[0] and "mean:0.05" in bad.reasons[0]


def test_a_relative_rule_on_a_zero_baseline_allows_no_drop_and_never_divides_by_zero():
    before = _scored_spread("t.py::a", [0.0, 0.0, 0.0], width=0.0)
    (same,) = compare_records(
        [_scored_spread("t.py::a", [0.0, 0.0, 0.0], 0.0)], [before], [ChangeRule.parse("mean:10%")]
    )
    assert same.status == "ok" and "baseline mean is 0 (<= 0)" in same.notes[0]
    (up,) = compare_records(
        [_scored_spread("t.py::a", [0.1, 0.2, 0.3])], [before], [ChangeRule.parse("mean:10%:significant")]
    )
    assert up.status == "ok" and up.reasons == ()


def test_a_positive_baseline_has_no_note():
    (c,) = compare_records(
        [_scored_spread("t.py::a", [0.5] * 3)], [_scored_spread("t.py::a", [0.5] * 3)], [ChangeRule.parse("mean:10%")]
    )
    assert c.status == "ok" and c.notes == ()


def _twenty(scale=1.0, swap=0, nodeid="t.py::a"):
    """Twenty inputs ``f0``..``f19`` scored 0.30..0.49 (times ``scale``); ``swap`` of the last ones replaced by
    other inputs ``x0``.. scored 2.0, as when a conftest keeps "the first 20 inputs the model gets right"."""
    scores = [(0.30 + 0.01 * i) * scale for i in range(20 - swap)] + [2.0] * swap
    return _scored(scores, [f"f{i}" for i in range(20 - swap)] + [f"x{i}" for i in range(swap)], nodeid)


@pytest.mark.parametrize("rules", [[ChangeRule.parse("mean:10%")], [ChangeRule.parse("mean:10%:significant")]])
def test_nineteen_of_twenty_inputs_are_compared_on_the_shared_ones(rules):
    # A worse model (scores x0.8) swapped the last input for one scored 2.0: over all 20 inputs the mean
    # drops less than 10%, over the 19 both runs scored it drops 20%: a regression, reported.
    before, now = _twenty(), _twenty(0.8, swap=1)
    assert now.mean > 0.9 * before.mean  # the saved statistics alone would hide it
    (c,) = compare_records([now], [before], rules)
    assert c.status == "regressed" and "mean dropped" in c.reasons[0]
    assert c.shared is not None
    shared_now, shared_before = c.shared
    expected_before = [0.30 + 0.01 * i for i in range(19)]
    assert shared_before.n == shared_now.n == 19
    assert shared_before.mean == pytest.approx(sum(expected_before) / 19)
    assert shared_before.min == pytest.approx(0.30) and shared_before.max == pytest.approx(0.48)
    assert shared_before.median == pytest.approx(0.39) and shared_now.median == pytest.approx(0.39 * 0.8)
    assert shared_now.mean == pytest.approx(0.8 * shared_before.mean)
    assert c.delta("mean") == pytest.approx(shared_now.mean - shared_before.mean)
    assert c.notes[0].startswith(
        "compared on the 19 inputs both runs scored; 1 input of the baseline and 1 of this run left out"
    )
    table = "\n".join(comparison_table([c]))
    assert "on 19 shared inputs, paired, 95% intervals of estimator noise" in table
    assert "note: compared on the 19 inputs both runs scored" in table
    if rules[0].significant:
        assert c.intervals and "by the paired 95% interval of estimator noise" in c.reasons[0]


def test_a_shared_comparison_that_holds_is_ok_and_whole_pairs_keep_the_saved_statistics():
    (c,) = compare_records([_twenty(swap=1)], [_twenty()], [ChangeRule.parse("mean:10%")])
    assert c.status == "ok" and c.delta("mean") == pytest.approx(0.0)
    (whole,) = compare_records([_twenty()], [_twenty()], [ChangeRule.parse("mean:10%")])
    assert whole.shared is None and whole.notes == ()
    assert "shared" not in comparison_table([whole])[1]


@pytest.mark.parametrize(
    "now",
    [
        _twenty(swap=5),  # 15 of the baseline's 20: 75%
        _scored([0.3] * 26, [f"f{i}" for i in range(20)] + [f"y{i}" for i in range(6)]),  # 20 of this run's 26
    ],
)
def test_fewer_shared_inputs_than_the_fraction_are_not_comparable(now):
    (c,) = compare_records([now], [_twenty()], [ChangeRule.parse("mean:10%")])
    assert c.status == "not comparable" and c.shared is None and "inputs differ" in c.reasons[0]


def test_a_baseline_without_per_input_results_is_compared_by_its_saved_statistics():
    before = make_record("t.py::a", mean=0.5)  # statistics only, as RunRecord.from_dict accepts
    assert before.results == () and before.n == 3
    (ok,) = compare_records([_scored_spread("t.py::a", [0.5] * 3)], [before], [ChangeRule.parse("mean:10%")])
    assert ok.status == "ok" and ok.by_points == "baseline has no per-input results"
    assert ok.notes[0].startswith("the baseline has no per-input results: compared by the saved statistics")
    (bad,) = compare_records([_scored_spread("t.py::a", [0.3] * 3)], [before], [ChangeRule.parse("mean:10%")])
    assert bad.status == "regressed" and "mean dropped 0.5 -> 0.3" in bad.reasons[0]
    assert "by points (baseline has no per-input results)" in comparison_table([bad])[1]


def test_a_baseline_record_that_was_unreadable_is_not_comparable():
    now = make_record("t.py::a")
    key = ("t.py::a", None, 0)
    (c,) = compare_records([now], [], [ChangeRule.parse("mean:10%")], unreadable={key: "field 'mean' is null"})
    assert c.status == "not comparable" and c.reasons == ("baseline record unreadable: field 'mean' is null",)
    assert "NOT COMPARABLE" in comparison_table([c])[1]
    (missing,) = compare_records([now], [], [ChangeRule.parse("mean:10%")], unreadable={})
    assert missing.status == "missing baseline"
