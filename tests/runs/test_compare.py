"""Regression rules and record matching against a baseline."""

import pytest

from pytest_clever.runs.compare import DropRule, compare_records, comparison_table

from .records import make_record


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
