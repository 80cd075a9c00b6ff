"""ScoreOptions holds every keyword of the public scoring functions: a keyword it lacked would not reach the engine."""

import inspect

from pytest_clever import clever_score, clever_scores
from pytest_clever.core.options import KEYWORDS


def keyword_only(function) -> list[str]:
    return [p.name for p in inspect.signature(function).parameters.values() if p.kind is p.KEYWORD_ONLY]


def test_every_keyword_of_clever_scores_is_a_field():
    assert sorted(keyword_only(clever_scores)) == sorted(KEYWORDS)


def test_clever_score_takes_the_same_keywords_but_label_for_executor():
    assert sorted(keyword_only(clever_score)) == sorted(set(KEYWORDS) - {"executor", "executor_timeout"} | {"label"})
