from __future__ import annotations

import pytest

from pada_local.config import ScorerConfig
from pada_local.errors import ConfigError
from pada_local.scoring import Scorer


def s(**kw) -> Scorer:
    return Scorer(ScorerConfig(**kw))


def test_exact_normalises_case_space_punctuation():
    assert s().score("  Apple. ", "apple") == 1.0
    assert s().score("an apple", "apple") == 0.0


def test_numeric_takes_last_number_with_tolerance():
    sc = s(kind="numeric", tolerance=0.01)
    assert sc.score("so 2 + 3 = 5.001", "5") == 1.0
    assert sc.score("1,234", "1234") == 1.0
    assert sc.score("no idea", "5") == 0.0
    assert sc.format_problem("none") == "no number in the answer"


def test_label_prefers_longest_label():
    sc = s(kind="label", labels=["positive", "very positive", "negative"])
    assert sc.extract("It is very positive!") == "very positive"
    assert sc.score("Negative", "negative") == 1.0
    assert sc.format_problem("neutral") is not None


def test_regex_and_choice():
    assert s(kind="regex", pattern=r"answer:\s*(\w+)").score("The answer: Paris", "answer: paris") == 1.0
    ch = s(kind="choice", choices="ABCD")
    assert ch.extract("(B) because") == "B"
    assert ch.extract("The answer is c") == "C"
    assert ch.extract("E") is None


def test_reference_check_fails_on_unreadable_data():
    sc = s(kind="numeric")
    with pytest.raises(ConfigError, match="cannot read"):
        sc.check_references([("a", "five"), ("b", "six")], "data.train")
    sc.check_references([("a", "5"), ("b", "6")], "data.train")
