"""Gate a model release on robustness: the mean L2 CLEVER score over 20 digits must stay high.

Measured on this model (seed 0): mean 0.28, min 0.07 at R=2 with the default
100 x 128 samples. The threshold leaves room for the estimator's noise
(about 5% between seeds) but fails a model that lost a third of its robustness.
"""

from pytest_clever import clever_scores
from pytest_clever.toy import DIGITS_BOUNDS

MIN_MEAN_L2 = 0.20


def test_mean_l2_clever_score_is_above_threshold(digits_model, digits_inputs):
    xs, labels = digits_inputs
    report = clever_scores(digits_model, xs, labels, norm=2, radius=2.0, bounds=DIGITS_BOUNDS, seed=0)
    print(report)
    assert report.mean >= MIN_MEAN_L2, (
        f"mean CLEVER score {report.mean:.3f} < {MIN_MEAN_L2}; "
        f"worst inputs: {[(i, round(report[i].score, 3), report[i].target) for i in report.worst(3)]}"
    )
