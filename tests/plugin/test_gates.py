"""Gates that know the noise, through pytest: gate modes, the confidence setting, significant baseline rules."""

import json

import pytest

from pytest_clever.runs.storage import Storage

# A small tanh MLP: its gradient norms vary in the ball, so every score has a real interval.
# Input 0 is 0 in every x, so scaling its first-layer weights by `factor` steepens the
# margins without moving them: factor > 1 is a strictly less robust model.
_MODEL = """
import pytest
import torch
from torch import nn

from pytest_clever import clever_scores
from pytest_clever.core.seeds import derive_seed

SETTINGS = dict(radius=2.0, n_batches=20, batch_size=32)


def mlp(factor=1.0):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))
    with torch.no_grad():
        model[0].weight[:, 0] *= factor
    return model.eval()


XS = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
XS[:, 0] = 0.0
"""

_GATES = (
    _MODEL
    + """

def bar(request, name, where, confidence):
    # The same scores the fixture computes for this call (same derived seed): a bar at
    # `where` of the way from the mean to its interval's upper end.
    seed = derive_seed(0, request.node.nodeid, name, 0)
    report = clever_scores(mlp(), XS, seed=seed, confidence=confidence, **SETTINGS)
    lo, hi = report.interval("mean")
    assert lo < report.mean < hi
    return report.mean + where * (hi - report.mean)


@pytest.mark.clever(**SETTINGS)
def test_noise_passes(clever, request):
    min_score = bar(request, "m", 0.5, 0.9)
    report = clever.assert_robust(mlp(), XS, min_score=min_score, name="m")
    assert report.mean < min_score  # the point estimate alone would fail


@pytest.mark.clever(gate="point", **SETTINGS)
def test_point_fails(clever, request):
    clever.assert_robust(mlp(), XS, min_score=bar(request, "m", 0.5, 0.9), name="m")


@pytest.mark.clever(**SETTINGS)
def test_shortfall_fails(clever, request):
    clever.assert_robust(mlp(), XS, min_score=bar(request, "m", 1.2, 0.9), name="m")
"""
)


def test_gate_modes_and_confidence(pytester):
    pytester.makepyfile(test_gates=_GATES)
    result = pytester.runpytest(
        "--clever-gate=significant-fail", "--clever-confidence=0.9", "--clever-json=out.json", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*test * min * mean * median * interval * threshold * status",
            "*::test_noise_passes [[]m[]] * mean [[]* mean>=* (significant-fail) * PASSED",
            "*::test_point_fails [[]m[]] * mean [[]* mean>=* FAILED",
            "*::test_shortfall_fails [[]m[]] * mean [[]* mean>=* (significant-fail) * FAILED",
        ]
    )
    out = result.stdout.str()
    # The point gate fails on the same bar; the message shows the interval.
    assert "mean score" in out and "< min_score" in out and "90% interval [" in out
    assert "gate significant-fail: " in out and "is significantly below" in out
    records = {r["nodeid"].split("::")[1]: r for r in json.loads((pytester.path / "out.json").read_text())["records"]}
    noise, point, short = records["test_noise_passes"], records["test_point_fails"], records["test_shortfall_fails"]
    assert noise["status"] == "passed" and point["status"] == "failed" and short["status"] == "failed"
    # The point gate is the default: it saves no mode.
    assert noise["threshold"]["gate"] == "significant-fail" and "gate" not in point["threshold"]
    assert noise["confidence"] == 0.9 and all(r["confidence"] == 0.9 for r in noise["results"])
    lo, hi = noise["interval"]
    bar = noise["threshold"]["min_score"]
    assert lo < noise["value"] < bar <= hi  # point below the bar, interval reaching above it
    lo, hi = short["interval"]
    assert hi < short["threshold"]["min_score"]  # the whole interval below the bar
    # The point gate failed a bar placed as in test_noise_passes: one the noise-aware gate lets through.
    lo, hi = point["interval"]
    assert lo < point["value"] < point["threshold"]["min_score"] <= hi


@pytest.mark.parametrize(
    "args, message",
    [
        (["--clever-confidence=1.5"], "*--clever-confidence*must lie strictly between 0 and 1*got 1.5*"),
        (["--clever-gate=maybe"], "*--clever-gate*must be one of point, significant-fail, significant-pass*'maybe'*"),
    ],
)
def test_bad_confidence_or_gate_is_a_usage_error(pytester, args, message):
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_marker_with_unknown_gate_is_a_usage_error(pytester):
    pytester.makepyfile("import pytest\n\n@pytest.mark.clever(gate='strict')\ndef test_x(clever):\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*gate mode must be one of point, significant-fail, significant-pass*'strict'*"])


def _compare_module(factor: float) -> str:
    return (
        _MODEL
        + f"""

@pytest.mark.clever(**SETTINGS)
def test_model(clever):
    clever.scores(mlp({factor}), XS, name="mlp")
"""
    )


def _strip_intervals(saved):
    """A copy of a saved run in schema 2, which has no intervals and no gate modes."""
    data = json.loads(saved.read_text())
    data["schema"], data["name"], data["id"] = 2, "old", data["id"][:-1] + "0"
    for record in data["records"]:
        record.pop("interval"), record.pop("confidence")
        for result in record["results"]:
            result.pop("interval"), result.pop("confidence")
            for target in result["per_target"].values():
                target.pop("interval")
    saved.parent.joinpath(f"{data['id']}_old.json").write_text(json.dumps(data))


def test_significant_rule_fails_a_regressed_model_and_old_baselines_compare_by_points(pytester):
    pytester.makepyfile(test_model=_compare_module(1.0))
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=1)
    saved = Storage(pytester.path / ".clever").find("main")
    _strip_intervals(saved.path)

    pytester.makepyfile(test_model=_compare_module(4.0))
    worse = pytester.runpytest("--clever-compare=main", "--clever-compare-fail=mean:10%:significant")
    assert worse.ret == pytest.ExitCode.TESTS_FAILED
    worse.stdout.fnmatch_lines(
        [
            "*test * mean before * mean now * delta * compared * status",
            "*::test_model [[]mlp[]] * -* [[]-*, -*[]] * -* [[]* paired, 95% intervals * REGRESSED",
            "*test_model [[]mlp[]]: mean dropped * significantly more than allowed (mean:10%:significant)*",
        ]
    )

    old = pytester.runpytest("--clever-compare=old", "--clever-compare-fail=mean:10%:significant")
    assert old.ret == pytest.ExitCode.TESTS_FAILED
    old.stdout.fnmatch_lines(
        [
            "*::test_model [[]mlp[]] * by points (baseline has no intervals) * REGRESSED",
            "*mean dropped * allowed mean:10%) (compared by point values: baseline has no intervals)*",
        ]
    )
    row = [line for line in old.stdout.lines if "REGRESSED" in line][0]
    assert "[" not in row.split("]", 1)[1].split("by points")[0]  # no delta intervals without the baseline's


_KINDS = (
    _MODEL
    + """

def bars(request, name):
    # The same scores the fixture computes for this call: a bar between the upper ends of the
    # estimator-noise interval and the (wider) input-sampling interval of the mean.
    seed = derive_seed(0, request.node.nodeid, name, 0)
    report = clever_scores(mlp(), XS, seed=seed, **SETTINGS)
    noise, inputs = report.interval("mean"), report.interval("mean", over="inputs")
    assert noise[1] < inputs[1]
    return (noise[1] + inputs[1]) / 2


@pytest.mark.clever(gate="significant-fail", **SETTINGS)
def test_between(clever, request):
    clever.assert_robust(mlp(), XS, min_score=bars(request, "m"), name="m")
"""
)


def test_significant_fail_uses_estimator_noise_by_default_and_input_sampling_on_request(pytester):
    pytester.makepyfile(test_kinds=_KINDS)
    noise = pytester.runpytest("--clever-json=noise.json", "-p", "no:randomly")
    # The mean's shortfall is larger than the estimator's noise on these inputs: it fails.
    noise.assert_outcomes(failed=1)
    noise.stdout.fnmatch_lines(
        [
            "*::test_between [[]m[]] * mean [[]*[]] (estimator) * mean>=* (significant-fail) * FAILED",
            "*CLEVER intervals: estimator = estimator noise: inputs fixed, each score's own interval*",
        ]
    )
    out = noise.stdout.str()
    assert "95% interval [" in out and "(estimator noise: inputs fixed, each score's own interval)" in out
    assert "is significantly below" in out and "(significant-fail; interval of estimator noise" in out
    assert json.loads((pytester.path / "noise.json").read_text())["records"][0]["interval_kind"] == "estimator"
    # The same bar, the inputs read as a sample of a population: the spread from input to input forgives it.
    inputs = pytester.runpytest("--clever-interval=inputs", "--clever-json=inputs.json", "-p", "no:randomly")
    inputs.assert_outcomes(passed=1)
    inputs.stdout.fnmatch_lines(
        [
            "*::test_between [[]m[]] * mean [[]*[]] (inputs) * mean>=* (significant-fail) * PASSED",
            "*CLEVER intervals: inputs = input sampling: bootstrap over inputs plus each score's own interval*",
        ]
    )
    assert json.loads((pytester.path / "inputs.json").read_text())["records"][0]["interval_kind"] == "inputs"


@pytest.mark.parametrize("where", ["cli", "marker"])
def test_an_unknown_interval_kind_is_a_usage_error(pytester, where):
    if where == "cli":
        pytester.makepyfile("def test_nothing():\n    pass\n")
        result = pytester.runpytest("--clever-interval=population")
        message = "*--clever-interval*must be one of estimator, inputs*'population'*"
    else:
        pytester.makepyfile("import pytest\n\n@pytest.mark.clever(interval='x')\ndef test_x(clever):\n    pass\n")
        result = pytester.runpytest()
        message = "*interval must be one of estimator, inputs*'x'*"
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


_CAPPED = (
    _MODEL
    + """

TINY = dict(SETTINGS, radius=1e-3)


@pytest.mark.clever(**TINY)
def test_below_the_radius(clever):
    clever.assert_robust(mlp(), XS, min_score=5e-4, name="m")


@pytest.mark.clever(**TINY)
def test_above_the_radius(clever):
    clever.assert_robust(mlp(), XS, min_score=0.01, name="m")
"""
)


def test_capped_scores_are_named_in_the_warning_summary_failure_and_json(pytester):
    pytester.makepyfile(test_capped=_CAPPED)
    result = pytester.runpytest("--clever-json=out.json", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    note = "capped at the radius: the ball is too small to see this model's decision boundary"
    result.stdout.fnmatch_lines(
        [
            # The failure names them.
            f"*capped: 5 of 5 scores capped at the radius 0.001 (inputs 0, 1, 2, 3, 4): {note}",
            # The gate below the radius passes, and says the radius decided it.
            "*CleverWarning: *test_below_the_radius [[]m[]]: the gate mean>=0.0005 was decided by capped scores "
            f"only (5 of 5 inputs, mean 0.001 at radius 0.001): {note}; a min_score at or below the radius passes "
            "whatever the model*",
            "*::test_above_the_radius [[]m[]] * 5 (5 capped) * FAILED",
            "*::test_below_the_radius [[]m[]] * 5 (5 capped) * PASSED",
            "CLEVER capped scores*",
            f"*test_below_the_radius [[]m[]]: 5 of 5 scores capped at the radius 0.001*{note}",
            "*WARNING *test_below_the_radius [[]m[]]: the gate mean>=0.0005 was decided by capped scores only*",
        ]
    )
    records = {r["nodeid"].split("::")[1]: r for r in json.loads((pytester.path / "out.json").read_text())["records"]}
    below = records["test_below_the_radius"]
    assert below["capped"] == {"inputs": [0, 1, 2, 3, 4], "note": note, "gate_decided_by_capped_scores": True}
    assert all(r["capped"] and r["capped_note"] == note for r in below["results"])
