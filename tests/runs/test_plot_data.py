"""The data behind the plots (fits, trends) and the SVG helpers' arithmetic."""

import math

import pytest
from scipy import stats

from pytest_clever.runs.fields import RecordError
from pytest_clever.runs.plot_data import deciding_fit, reverse_weibull_pdf, trend_series, worst_inputs
from pytest_clever.runs.plots import histogram_svg, line_svg, nice_ticks

from .report_records import FIT, result_dict, saved_run, scored_record


def test_the_reverse_weibull_density_is_scipys_on_the_negated_maxima():
    for x in (0.2, 0.9, 0.95, 0.999, 1.0, 1.2):
        expected = stats.weibull_min.pdf(-x, FIT["shape"], FIT["loc"], FIT["scale"])
        assert reverse_weibull_pdf(x, **FIT) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert reverse_weibull_pdf(1.0, **FIT) == 0.0  # the end point: no mass beyond it


def test_the_deciding_fit_is_read_with_its_end_point_and_maxima():
    fit = deciding_fit(result_dict(0.4, 0), "here")
    assert (fit.target, fit.method, fit.estimate, fit.shape, fit.loc, fit.scale) == (1, "weibull", 1.0, 3.0, -1.0, 0.1)
    assert fit.maxima[0] == 0.9 and len(fit.maxima) == 10 and fit.quantity == "largest gradient norm in a batch"
    assert fit.density([0.95])[0] == pytest.approx(stats.weibull_min.pdf(-0.95, 3.0, -1.0, 0.1))
    fallback = deciding_fit(result_dict(0.4, 0, fit_method="max"), "here")
    assert fallback.shape is None and fallback.density([0.95]) == []


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.update(per_target={}), "run.json: test, input 2: no fit saved for its deciding target"),
        (lambda r: r.update(batch_maxima=[]), "run.json: test, input 2: this result has no batch maxima saved"),
        (lambda r: r["per_target"]["1"].pop("lipschitz"), "the deciding target's fit lacks fit_method or lipschitz"),
    ],
)
def test_a_result_without_what_a_fit_plot_needs_is_named(change, message):
    result = result_dict(0.4, 2)
    change(result)
    with pytest.raises(RecordError, match=message.replace("(", r"\(")):
        deciding_fit(result, "run.json: test, input 2")


def test_trends_follow_each_matching_call_across_runs_and_worst_inputs_are_the_lowest_scores():
    runs = [
        saved_run([scored_record("t.py::a", [0.2, 0.4])], run_id="1"),
        saved_run([scored_record("t.py::a", [0.3, 0.5]), scored_record("t.py::b", [0.1, 0.1])], run_id="2"),
    ]
    assert trend_series(runs, "mean") == {
        "t.py::a": [(0, pytest.approx(0.3)), (1, pytest.approx(0.4))],
        "t.py::b": [(1, pytest.approx(0.1))],
    }
    assert list(trend_series(runs, "min", "::b")) == ["t.py::b"]
    assert worst_inputs(scored_record("t.py::a", [0.5, 0.1, 0.3, 0.1]), 3) == [1, 3, 2]


def test_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.13, 0.47) == [0.2, 0.3, 0.4]  # a step of 0.1: the smallest round step >= 0.34 / 5
    assert nice_ticks(3.0, 3.0) == [3.0] and nice_ticks(0.0, math.inf) == []


def test_plots_need_data_and_escape_their_labels():
    with pytest.raises(ValueError, match="at least one value"):
        histogram_svg([], title="t", xlabel="x")
    svg = line_svg({"<a>": [(0, 1.0), (1, 2.0)]}, ["r<1>", "r2"], title="x & y", ylabel="mean")
    assert "<a>" not in svg and "&lt;a&gt;" in svg and "r&lt;1&gt;" in svg and "x &amp; y" in svg
