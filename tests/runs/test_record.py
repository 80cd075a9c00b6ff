"""The typed run record: JSON round trip and validation, keys, labels, old files, failure text."""

import json
import math
import shutil
from pathlib import Path

import pytest

from pytest_clever.runs.compare import DropRule, compare_records
from pytest_clever.runs.record import COMPARABLE_SETTINGS, RecordError, RunRecord, index_records, sorted_records
from pytest_clever.runs.report import failure_message, fit_quality_text, settings_text, summary_table, worst_lines
from pytest_clever.runs.storage import Storage
from pytest_clever.stats.evt import CONSTANT_MAXIMA
from pytest_clever.stats.report import CleverReport
from pytest_clever.stats.results import CleverResult, TargetScore

from .records import make_record, make_record_dict

pytestmark = pytest.mark.usefixtures("no_git")

DATA = Path(__file__).parents[1] / "data"
SCHEMA_1 = DATA / "20261126T025727701856Z-5e400a_main.json"


def test_round_trip_keeps_every_field():
    record = make_record("t.py::test_a", name="m", call=2, mean=0.4, bounds=[0, 1], target=3, norm="inf")
    again = RunRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record
    assert again.settings.norm == math.inf and again.settings.bounds == (0.0, 1.0)
    assert again.to_dict()["settings"]["norm"] == "inf" and again.key == ("t.py::test_a", "m", 2)
    assert set(COMPARABLE_SETTINGS) < set(record.to_dict()["settings"])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"nodeid": None}, "field 'nodeid' must be a non-empty string"),
        ({"mean": "0.5"}, r"\(t.py::test_a\): field 'mean' must be a number, got '0.5'"),
        ({"call": -1}, "field 'call' must be an integer >= 0"),
        ({"call": True}, "field 'call' must be an integer"),
        ({"status": "great"}, "field 'status' must be one of recorded, passed, failed"),
        ({"settings": []}, "field 'settings' must be an object"),
        ({"results": [1]}, r"field 'results\[0\]' must be an object"),
        ({"results": [{"fingerprint": 7}]}, r"field 'results\[0\].fingerprint' must be a non-empty string"),
        ({"threshold": {"statistic": "mean"}}, "missing field 'min_score'"),
        ({"attack": {"checks": []}}, "missing field 'contradicted'"),
    ],
)
def test_malformed_records_name_the_field(change, message):
    data = {**make_record_dict(), **change}
    with pytest.raises(RecordError, match=message):
        RunRecord.from_dict(data, "record 4")


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("norm", 3, "field 'norm' must be 1, 2 or 'inf'"),
        ("radius", None, "field 'radius' must be a number"),
        ("bounds", [0], "field 'bounds' must be two numbers"),
        ("n_batches", 1.5, "field 'n_batches' must be an integer"),
    ],
)
def test_malformed_settings_name_the_field(setting, value, message):
    with pytest.raises(RecordError, match=f"settings: {message}"):
        RunRecord.from_dict(make_record_dict(**{setting: value}))
    data = make_record_dict()
    del data["settings"][setting if setting != "bounds" else "radius"]
    with pytest.raises(RecordError, match="missing field"):
        RunRecord.from_dict(data)


def test_torch_compile_is_recorded_and_optional():
    assert make_record(torch_compile=True).settings.torch_compile is True
    assert make_record().settings.torch_compile is False  # records without it were scored eagerly
    with pytest.raises(RecordError, match="settings: field 'torch_compile' must be true or false, got 'yes'"):
        make_record(torch_compile="yes")


def test_labels_tell_calls_and_names_apart_and_sorting_is_by_test_name_call():
    records = [
        make_record("t.py::b", call=1),
        make_record("t.py::b", name="x"),
        make_record("t.py::a"),
        make_record("t.py::b"),
    ]
    assert [r.label for r in sorted_records(records)] == ["t.py::a", "t.py::b", "t.py::b #1", "t.py::b [x]"]
    rows = summary_table(records)
    assert [row.split()[0:2] for row in rows[1:]] == [
        ["t.py::a", "L2"],
        ["t.py::b", "L2"],
        ["t.py::b", "#1"],
        ["t.py::b", "[x]"],
    ]


def test_a_key_occurring_twice_is_an_error():
    twice = [make_record("t.py::a", mean=0.5), make_record("t.py::a", mean=0.2)]
    with pytest.raises(RecordError, match=r"the baseline: t.py::a is recorded twice .*call 0"):
        compare_records([make_record("t.py::a")], twice, [])
    with pytest.raises(RecordError, match="this run: t.py::a is recorded twice"):
        compare_records(twice, [make_record("t.py::a")], [])
    assert len(index_records([make_record("t.py::a"), make_record("t.py::a", call=1)], "x")) == 2


def test_a_baseline_file_with_a_key_twice_is_named_and_skipped(tmp_path):
    store = Storage(tmp_path)
    good = store.save([make_record(mean=0.5)], "main")
    with pytest.raises(RecordError, match="recorded twice"):
        store.save([make_record(mean=0.5), make_record(mean=0.4)], "dup")
    doc = json.loads(good.read_text())
    doc["records"].append(doc["records"][0])
    (tmp_path / "twice.json").write_text(json.dumps(doc))
    runs, problems = store.runs()
    assert [r.path for r in runs] == [good]
    assert len(problems) == 1 and "twice.json" in problems[0] and "recorded twice" in problems[0]


def test_a_malformed_record_is_named_and_skipped_the_others_load(tmp_path, capsys):
    store = Storage(tmp_path)
    path = store.save([make_record("t.py::a", mean=0.5), make_record("t.py::b", mean=0.6)], "main")
    doc = json.loads(path.read_text())
    doc["records"][1]["mean"] = "high"
    path.write_text(json.dumps(doc))
    run = store.find("main")
    assert [r.nodeid for r in run.records] == ["t.py::a"]
    assert len(run.problems) == 1 and "record 1 (t.py::b): field 'mean' must be a number" in run.problems[0]
    from pytest_clever.cli import main

    assert main(["--storage", str(tmp_path), "history", "t.py"]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "'mean'" in captured.err and "t.py::a" in captured.out


def test_schema_1_files_still_load_and_compare_call_by_call(tmp_path):
    shutil.copy(SCHEMA_1, tmp_path)
    run = Storage(tmp_path).find("main")
    assert run.schema == 1 and run.problems == ()
    # Schema 1 wrote each test's calls in order: they get the call indexes of today's keys.
    assert [(r.nodeid, r.name, r.call) for r in run.records] == [
        ("test_s1.py::test_two_models", None, 0),
        ("test_s1.py::test_two_models", None, 1),
        ("test_s1.py::test_named", "linear", 0),
    ]
    assert [round(r.mean, 4) for r in run.records] == [0.477, 0.1691, 0.477]
    assert run.records[2].threshold is not None and run.records[2].threshold.min_score == 0.01
    assert run.records[0].report().results[0].per_target  # the results parse as CleverResult
    # The second unnamed call now compares with its own baseline, not the last record of the test.
    current = [RunRecord.from_dict({**r.to_dict(), "mean": r.mean * 0.95}) for r in run.records]
    out = compare_records(current, list(run.records), [DropRule.parse("mean:10%")])
    assert [c.status for c in out] == ["ok", "ok", "ok"]
    assert [c.label for c in out] == [
        "test_s1.py::test_two_models",
        "test_s1.py::test_two_models #1",
        "test_s1.py::test_named [linear]",
    ]
    assert out[1].delta("mean") == pytest.approx(-0.05 * 0.16908, rel=1e-3)
    # Saved again, it is a schema-2 file with the same keys.
    path = Storage(tmp_path / "new").save(list(run.records), "again", git={})
    data = json.loads(path.read_text())
    assert data["schema"] == 5 and [r["call"] for r in data["records"]] == [0, 0, 1]  # sorted by test id


def test_fingerprints_are_each_inputs_or_none_when_a_result_lacks_one():
    results = [{"score": 0.1, "fingerprint": "a"}, {"score": 0.2, "fingerprint": "b"}, {"score": 0.3}]
    assert make_record(results=results).fingerprints is None  # old layouts: paired by position
    results[2]["fingerprint"] = "c"
    assert make_record(results=results).fingerprints == ("a", "b", "c")
    # 2 results for 3 inputs cannot vouch for every input: such a record is not read at all.
    with pytest.raises(RecordError, match="holds 2 result"):
        RunRecord.from_dict({**make_record_dict(results=results[:2]), "n": 3})
    assert make_record().fingerprints is None
    # Files without fingerprints still load (they pair by position).
    assert all(r.fingerprints is None for r in Storage(DATA).find("main").records)


# -- failure text: the engine's weak/consistent rules for both orders ---------------------------


def _target(**kw) -> TargetScore:
    base = dict(
        target=2,
        score=0.5,
        margin=1.0,
        lipschitz=2.0,
        lipschitz_lower_bound=1.0,
        sample_max=1.9,
        fit_method="weibull",
        shape=2.0,
        loc=-2.0,
        scale=0.5,
        ks_statistic=0.1,
        ks_pvalue=0.6,
    )
    base.update(kw)
    return TargetScore(**base)


def _result(target: TargetScore, order: int = 1, score: float | None = None) -> CleverResult:
    return CleverResult(
        score=target.score if score is None else score,
        target=target.target,
        predicted=0,
        norm=2.0,
        radius=1.0,
        order=order,
        per_target={target.target: target},
        n_batches=10,
        batch_size=16,
        seed=7,
        elapsed=0.1,
    )


@pytest.mark.parametrize(
    "kw, weak",
    [
        ({}, False),
        ({"ks_pvalue": 0.049}, True),
        ({"ks_pvalue": 0.05}, False),
        ({"fit_method": "max", "ks_pvalue": math.nan, "fit_reason": CONSTANT_MAXIMA}, False),
        ({"fit_method": "max", "ks_pvalue": math.nan, "fit_reason": "no fit reached p=0.001"}, True),
    ],
)
def test_target_score_weak(kw, weak):
    assert _target(**kw).weak is weak


def test_first_order_fit_text_uses_weak_and_consistent():
    results = [
        _result(_target()),
        _result(_target(ks_pvalue=0.01)),  # weak: not counted as good
        _result(_target(fit_method="max", ks_pvalue=math.nan, fit_reason=CONSTANT_MAXIMA)),
        _result(_target(lipschitz_lower_bound=2.1)),  # samples prove L too low
    ]
    text = fit_quality_text(results)
    assert text.startswith("2/4 deciding fits with KS p >= 0.05")
    assert "1 with a constant gradient norm" in text and "1 target estimate(s) provably too low" in text
    lines = worst_lines(CleverReport(tuple(results)), k=2)
    assert len(lines) == 2 and "(L=2, margin=1, fit weibull, KS p=0.6)" in lines[0]


def test_second_order_failure_says_provably_too_low_and_shows_the_curvature():
    # Second order: lipschitz holds margin / r and no lower bound; the curvature bound decides.
    sound = _target(
        score=0.4,
        lipschitz=2.5,
        lipschitz_lower_bound=0.0,
        gradient_norm=1.5,
        curvature=3.0,
        curvature_lower_bound=2.0,
        curvature_method="spectral",
    )
    low = _target(
        score=0.3,
        lipschitz=3.3,
        lipschitz_lower_bound=0.0,
        gradient_norm=1.5,
        curvature=3.0,
        curvature_lower_bound=3.5,
        curvature_method="spectral",
    )
    assert sound.consistent and not low.consistent
    results = (_result(sound, order=2), _result(low, order=2))
    report = CleverReport(results, seed=7)
    record = RunRecord.from_dict(
        {
            **make_record_dict(order=2, mean=report.mean, results=[r.to_dict() for r in results]),
            "threshold": {"statistic": "mean", "min_score": 1.0},
            "value": report.mean,
            "status": "failed",
        }
    )
    message = failure_message(record)
    assert "mean score 0.35 < min_score 1" in message
    assert (
        "input 1    score 0.3  predicted 0 -> target 2  (M=3, |grad|=1.5, margin=1, fit weibull, KS p=0.6)" in message
    )
    assert "L=" not in message
    assert "EVT fit: 2/2 deciding fits with KS p >= 0.05, 1 target estimate(s) provably too low" in message


def test_old_target_setting_loads_as_targets_and_targets_decide_comparability():
    old_one_class, old_all = make_record(target=3), make_record()
    assert old_one_class.settings.targets == "3" and old_all.settings.targets == "all"
    top2 = RunRecord.from_dict(make_record_dict(targets="top-2"))
    assert top2.settings.differences(old_all.settings) == ["targets 'all' -> 'top-2'"]
    assert "minimum over targets top-2 only" in settings_text(top2)
    assert summary_table([top2])[1].split()[1:4] == ["L2", "1", "top-2"]


def _results(n=3):
    return [{"score": 0.5, "interval": [0.4, 0.6], "confidence": 0.95} for _ in range(n)]


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda r: r["results"][1].update(score=None),
            r"field 'results\[1\].score' must be a number, got null \(NaN\)",
        ),
        (lambda r: r["results"][1].update(score=math.nan), r"'results\[1\].score' must be a number, got null \(NaN\)"),
        (lambda r: r["results"][0].pop("score"), r"results\[0\]: missing field 'score'"),
        (lambda r: r["results"][2].update(interval=[0.4, None]), r"'results\[2\].interval' must be a number, got null"),
        (lambda r: r["results"][2].update(interval=[0.6, 0.4]), r"'results\[2\].interval' must be an interval"),
        (lambda r: r["results"][0].update(confidence=None), None),  # no level: the default applies
        (lambda r: r["results"][1].update(target_classes=5), r"'results\[1\].target_classes' must be a list, got int"),
        (
            lambda r: r["results"][1].update(target_classes=[1, "2"]),
            r"'results\[1\].target_classes' must be an integer",
        ),
        (lambda r: r["results"][1].update(target_classes=None), None),  # no classes saved: nothing to compare
        (lambda r: r.update(mean=None), r"field 'mean' must be a number, got null \(NaN\)"),
        (lambda r: r.update(results=r["results"][:2]), r"'results' holds 2 result\(s\) but field 'n' says 3 inputs"),
    ],
)
def test_null_and_truncated_values_in_a_record_name_the_field(edit, message):
    data = make_record_dict(results=_results())
    edit(data)
    if message is None:
        RunRecord.from_dict(data)
        return
    with pytest.raises(RecordError, match=r"record 2 \(t.py::test_a\).*" + message):
        RunRecord.from_dict(data, "record 2")


def test_a_baseline_with_a_null_score_is_skipped_by_name_and_compares_as_missing(tmp_path, capsys):
    store = Storage(tmp_path)
    path = store.save([make_record("t.py::a", results=_results()), make_record("t.py::b", results=_results())], "main")
    doc = json.loads(path.read_text())
    doc["records"][0]["results"][0]["score"] = None
    path.write_text(json.dumps(doc))
    run = store.find("main")
    assert [r.nodeid for r in run.records] == ["t.py::b"]
    assert len(run.problems) == 1 and f"{path}: record 0 (t.py::a): field 'results[0].score'" in run.problems[0]
    current = [make_record("t.py::a", results=_results()), make_record("t.py::b", results=_results())]
    out = compare_records(current, run.records, [DropRule.parse("mean:10%")])
    assert [c.status for c in out] == ["missing baseline", "ok"]
    # The run keeps the skipped record's key: compared with it, that test is not comparable, not missing.
    assert [key for key, _ in run.unreadable] == [("t.py::a", None, 0)]
    out = compare_records(current, run.records, [DropRule.parse("mean:10%")], unreadable=dict(run.unreadable))
    assert [c.status for c in out] == ["not comparable", "ok"]
    assert out[0].reasons[0].startswith(f"baseline record unreadable: {path}: record 0 (t.py::a): field 'results[0]")


def test_a_malformed_record_whose_key_cannot_be_read_is_only_named(tmp_path):
    store = Storage(tmp_path)
    path = store.save([make_record("t.py::a", results=_results())], "main")
    doc = json.loads(path.read_text())
    doc["records"][0].update(call="first", mean=None)
    path.write_text(json.dumps(doc))
    run = store.find("main")
    assert run.records == () and run.unreadable == () and len(run.problems) == 1


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r.update(score=None), r"results\[1\]: field 'score' is null \(NaN\)"),
        (lambda r: r.pop("per_target"), r"results\[1\]: missing field 'per_target'"),
        (lambda r: r.pop("n_batches"), r"results\[1\]: missing field 'n_batches'"),
        (lambda r: r.update(interval=[None, 1.0]), r"results\[1\]: field 'interval' must be two numbers"),
        (lambda r: r.update(target=7), r"results\[1\]: field 'per_target' has no entry for the deciding target 7"),
        (lambda r: r.update(radius="wide"), r"results\[1\]: malformed field"),
    ],
)
def test_a_malformed_result_in_a_report_names_the_input_and_field(edit, message):
    from pytest_clever.errors import InvalidInputError

    result = _result(_target(score=0.4, lipschitz=2.5, lipschitz_lower_bound=0.0))
    data = CleverReport((result, result), seed=1).to_dict()
    edit(data["results"][1])
    with pytest.raises(InvalidInputError, match=message):
        CleverReport.from_dict(json.loads(json.dumps(data)))
