"""The settings registry: one validator for the API, markers, the command line and ini files."""

import math

import pytest
import torch

from pytest_clever import InvalidInputError, clever_score
from pytest_clever.core.settings import OPTIONS


@pytest.mark.parametrize(
    "name, value",
    [
        ("radius", -1.0),
        ("radius", math.nan),
        ("n_batches", 5),
        ("batch_size", 0),
        ("order", 3),
        ("seed", -2),
        ("bounds", (1.0, 0.0)),
    ],
)
def test_the_api_and_the_settings_parsers_raise_the_same_error(name, value, linear_model):
    with pytest.raises(InvalidInputError) as from_api:
        clever_score(linear_model[0], torch.zeros(6), **{"radius": 1.0, name: value})
    with pytest.raises(InvalidInputError) as from_settings:
        OPTIONS[name].parse(value)
    assert str(from_api.value) == str(from_settings.value) and str(from_api.value).startswith(name)
    with pytest.raises(ValueError, match=f"^marker: {name} must"):
        OPTIONS[name].check(value, "marker")


def test_settings_parsers_accept_ini_text():
    assert OPTIONS["n_batches"].parse("12") == 12 and OPTIONS["n_batches"].parse(12.0) == 12
    assert OPTIONS["radius"].parse("0.5") == 0.5 and OPTIONS["order"].parse(" 2 ") == 2
    assert OPTIONS["bounds"].parse("0, 1") == (0.0, 1.0) and OPTIONS["seed"].parse("7") == 7
    with pytest.raises(InvalidInputError, match="n_batches must be an integer >= 10, got 12.5"):
        OPTIONS["n_batches"].parse("12.5")
    with pytest.raises(InvalidInputError, match="radius must be a number, got 'wide'"):
        OPTIONS["radius"].parse("wide")


def test_the_executor_setting_accepts_factories_and_dask_or_ray_addresses_only():
    check = OPTIONS["executor"].check
    assert check("mypkg.cluster:make_executor", "ini") == "mypkg.cluster:make_executor"
    assert check("dask://scheduler:8786", "ini") == "dask://scheduler:8786"
    assert check("ray://head:10001", "ini") == "ray://head:10001"
    for bad in ("mypkg.cluster", "dask://", "ray://", "a b:c", "pkg:1x"):
        with pytest.raises(ValueError, match="module:factory .*, dask://HOST:PORT or ray://HOST:PORT"):
            check(bad, "ini")


@pytest.mark.parametrize("name", ["executor_timeout", "executor_connect_timeout"])
def test_the_executor_timeouts_are_positive_seconds(name):
    assert OPTIONS[name].check("2.5", "ini") == 2.5
    for bad in ("0", "-1", "inf", "soon"):
        with pytest.raises(ValueError, match=f"ini: {name} must be"):
            OPTIONS[name].check(bad, "ini")


def test_a_quantile_statistic_takes_ascii_digits_only():
    from pytest_clever.core.validation import parse_statistic

    assert parse_statistic(" Q10 ") == "q10"
    with pytest.raises(InvalidInputError, match="unknown statistic"):
        parse_statistic("q\u0661\u0660")  # Arabic-Indic "10": int() would read it as q10
