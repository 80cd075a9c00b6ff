"""Assert robustness inline, on a tail statistic: 90% of inputs must score above the bar."""


def test_tail_robustness(clever, digits_model, digits_inputs):
    xs, labels = digits_inputs
    report = clever.assert_robust(digits_model, xs[:10], labels[:10], min_score=0.10, statistic="q10")
    # The report is there for further checks, e.g. that every estimate is trustworthy.
    assert report.consistent, [r.notes for r in report]
