"""The attack cross-check through the plugin: fixture argument, marker, ini key, failure text, records."""

import json

import pytest

from .user_modules import SMALL_SAMPLE_ARGS, linear_module

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A linear model (CLEVER is exact: no attack can contradict it) and a "cliff":
# the margin falls gently except for a steep drop beyond x_1 = 0.5, a region
# uniform samples of the 200-d unit L2 ball practically never reach (x_1 has
# a standard deviation of 0.07 there), while PGD walks straight into it. CLEVER
# therefore reports the radius 1, yet an adversarial example sits at about 0.51.
MODELS = (
    linear_module(n_inputs=3)
    + """

class Cliff(nn.Module):
    def forward(self, x):
        margin = 1.0 - 0.01 * x[:, 0] - 100.0 * torch.relu(x[:, 0] - 0.5)
        return torch.stack([margin, torch.zeros_like(margin)], 1)


X0 = torch.zeros(200)
"""
)


def _json(pytester, name="out.json"):
    return json.loads((pytester.path / name).read_text())


def test_marker_attack_check_fails_a_contradicted_score_after_the_body(pytester):
    pytester.makepyfile(
        MODELS
        + f"""
@pytest.mark.clever(radius=1.0, {SMALL_SAMPLE_ARGS}, attack_check=True)
def test_gate(clever):
    result = clever.score(Cliff(), X0, name="cliff")
    assert result.score == 1.0  # the body passes: only the attack check fails the test
"""
    )
    result = pytester.runpytest("--clever-json=out.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*CLEVER score contradicted by an adversarial example for *::test_gate [[]cliff[]]:",
            "*1 of 1 input: PGD found a L2 distortion below the CLEVER score*",
            "*input 0    PGD distortion 0.5* < CLEVER score 1  (predicted 0 -> 1)",
            "*attack: PGD, 50 steps, 4 restarts, seed *",
            "*settings: L2, radius 1, order 1, 10x16 samples*",
            "*::test_gate [[]cliff[]] * FAILED (attack)",
        ]
    )
    (record,) = _json(pytester)["records"]
    assert record["status"] == "failed"
    attack = record["attack"]
    assert attack["checked"] == 1 and attack["found"] == 1 and attack["contradicted"] == [0]
    check = attack["checks"][0]
    assert 0.5 < check["distortion"] < 0.52 and check["score"] == 1.0 and check["contradicts"] is True


def test_fixture_argument_passes_when_the_attack_agrees(pytester):
    pytester.makepyfile(
        MODELS
        + f"""
@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS})
def test_gate(clever):
    report = clever.scores(linear(), XS, attack_check=True)
    assert len(report) == 3
"""
    )
    result = pytester.runpytest("--clever-json=out.json")
    result.assert_outcomes(passed=1)
    (record,) = _json(pytester)["records"]
    assert record["status"] == "passed" and record["threshold"] is None
    attack = record["attack"]
    assert attack["checked"] == 3 and attack["contradicted"] == []
    for check, res in zip(attack["checks"], record["results"], strict=True):
        # The score of a linear model is the exact minimal distortion: PGD finds it within 2%.
        assert check["score"] == res["score"]
        assert res["score"] <= check["distortion"] <= 1.02 * res["score"]


def test_attack_is_off_by_default_and_records_none(pytester):
    pytester.makepyfile(
        MODELS
        + f"\n@pytest.mark.clever(radius=1.0, {SMALL_SAMPLE_ARGS})\n"
        + "def test_gate(clever):\n    clever.score(Cliff(), X0)\n"
    )
    pytester.runpytest("--clever-json=out.json").assert_outcomes(passed=1)
    (record,) = _json(pytester)["records"]
    assert record["attack"] is None and record["status"] == "recorded"


def test_assert_robust_with_attack_check_fails_even_above_the_threshold(pytester):
    pytester.makepyfile(
        MODELS
        + f"""
@pytest.mark.clever(radius=1.0, {SMALL_SAMPLE_ARGS})
def test_gate(clever):
    clever.assert_robust(Cliff(), [X0], min_score=0.9, attack_check=True)
    raise AssertionError("not reached")
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "CLEVER score contradicted by an adversarial example" in text
    assert "below threshold" not in text and "not reached" not in text


def test_threshold_and_attack_failures_are_both_reported(pytester):
    pytester.makepyfile(
        MODELS
        + f"""
@pytest.mark.clever(radius=1.0, {SMALL_SAMPLE_ARGS}, min_score=2.0, attack_check=True)
def test_gate(clever):
    clever.score(Cliff(), X0)
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*below threshold*", "*mean score 1 < min_score 2*", "*contradicted by an adversarial example*"]
    )


def test_ini_key_enables_the_check_and_the_marker_can_switch_it_off(pytester):
    pytester.makeini("[pytest]\nclever_attack_check = true\nclever_n_batches = 10\nclever_batch_size = 16\n")
    pytester.makepyfile(
        MODELS
        + """
@pytest.mark.clever(radius=1.0)
def test_on(clever):
    clever.score(Cliff(), X0)


@pytest.mark.clever(radius=1.0, attack_check=False)
def test_off(clever):
    clever.score(Cliff(), X0)
"""
    )
    result = pytester.runpytest("--clever-json=out.json")
    result.assert_outcomes(passed=1, failed=1)
    records = {r["nodeid"].split("::")[1]: r for r in _json(pytester)["records"]}
    assert records["test_on"]["status"] == "failed" and records["test_on"]["attack"]["contradicted"] == [0]
    assert records["test_off"]["attack"] is None


def test_bad_attack_check_value_is_a_usage_error(pytester):
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.clever(radius=1.0, attack_check='maybe')\ndef test_gate(clever):\n    pass\n"
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "attack_check must be true or false, got 'maybe'" in result.stderr.str()
