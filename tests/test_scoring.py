from __future__ import annotations

from typing import Any

import pytest

from pada_local.config import ScorerConfig
from pada_local.errors import ConfigError
from pada_local.scoring import Scorer, offered_letters


def s(**kw: Any) -> Scorer:
    return Scorer(ScorerConfig(**kw))


def test_exact_normalises_case_space_punctuation() -> None:
    assert s().score("  Apple. ", "apple") == 1.0
    assert s().score("an apple", "apple") == 0.0


def test_numeric_takes_last_number_with_tolerance() -> None:
    sc = s(kind="numeric", tolerance=0.01)
    assert sc.score("so 2 + 3 = 5.001", "5") == 1.0
    assert sc.score("1,234", "1234") == 1.0
    assert sc.score("no idea", "5") == 0.0
    assert sc.format_problem("none") == "no number in the answer"


def test_label_prefers_longest_label() -> None:
    sc = s(kind="label", labels=["positive", "very positive", "negative"])
    assert sc.extract("It is very positive!") == "very positive"
    assert sc.score("Negative", "negative") == 1.0
    assert sc.format_problem("neutral") is not None


def test_regex_and_choice() -> None:
    assert s(kind="regex", pattern=r"answer:\s*(\w+)").score("The answer: Paris", "answer: paris") == 1.0
    ch = s(kind="choice", choices="ABCD")
    assert ch.extract("(B) because") == "B"
    assert ch.extract("The answer is c") == "C"
    assert ch.extract("E") is None


def test_reference_check_fails_on_unreadable_data() -> None:
    sc = s(kind="numeric")
    with pytest.raises(ConfigError, match="cannot read"):
        sc.check_references([("a", "five"), ("b", "six")], "data.train")
    sc.check_references([("a", "5"), ("b", "6")], "data.train")


# --- table-driven: (prediction, reference, expected score) per scorer --------------------------

# "positive" is listed first on purpose: the old scorer tried labels in config order, so a hedge
# or "negative, not positive" read as positive.
LABELS = ["positive", "very positive", "negative", "neutral", "not offensive", "offensive"]

LABEL_CASES = [
    ("negative, not positive", "negative", 1.0),
    ("negative, not positive", "positive", 0.0),
    ("positive or negative", "positive", 0.0),
    ("positive or negative", "negative", 0.0),
    ("positive/negative", "positive", 0.0),
    ("Positive and negative.", "positive", 0.0),
    ("positive, negative, or neutral", "positive", 0.0),
    ("either positive (or maybe negative)", "positive", 0.0),
    ("not positive", "positive", 0.0),
    ("It isn't negative.", "negative", 0.0),
    ("The review isn\u2019t negative, it is positive", "positive", 1.0),
    ("It is not negative at all; positive", "positive", 1.0),
    ("This is not a very positive review, so negative", "negative", 1.0),
    ("never positive -- negative", "negative", 1.0),
    ("neither positive nor negative: neutral", "neutral", 1.0),
    ("not positive or negative", "negative", 0.0),
    ("positive and not negative", "positive", 1.0),
    ("Answer: POSITIVE!", "positive", 1.0),
    ("Label: negative.", "negative", 1.0),
    ("**Answer:** neutral", "neutral", 1.0),
    ("It is very positive!", "very positive", 1.0),
    ("It is very positive!", "positive", 0.0),
    ("Very-Positive", "very positive", 1.0),
    ("positive, very positive even", "positive", 1.0),
    ("not offensive", "not offensive", 1.0),
    ("Not offensive.", "offensive", 0.0),
    ("It is offensive", "offensive", 1.0),
    ("positively great", "positive", 0.0),
    ("negativity", "negative", 0.0),
    ("positive or positive", "positive", 1.0),
    ("Negative. Positive or negative? Hard to say.", "negative", 1.0),
    ("neutral", "neutral", 1.0),
    ("", "neutral", 0.0),
    # A closing verdict wins over an answer named (or negated) before it.
    ("It is not clearly positive; I'd say negative", "negative", 1.0),
    ("It is not clearly positive; I'd say negative", "positive", 0.0),
    ("I don't think it's negative, it's positive", "positive", 1.0),
    ("I don't think it's negative, it's positive", "negative", 0.0),
    ("positive and negative aspects, overall negative", "negative", 1.0),
    ("Some positive moments, but overall negative", "negative", 1.0),
    ("positive or negative? I'd say positive", "positive", 1.0),
    ("Not really positive, so negative", "negative", 1.0),
    ("It's not positive; it's negative", "negative", 1.0),
    ("Positive at first, but in the end negative", "negative", 1.0),
    ("I wouldn't call it positive. Overall: negative.", "negative", 1.0),
    ("I would say neutral, not positive", "neutral", 1.0),
    ("More negative than positive, I'd say negative", "negative", 1.0),
    ("Not exactly positive: negative", "negative", 1.0),
    ("I'd say it's positive, though parts are negative", "positive", 1.0),
    ("I don't think it's negative.", "negative", 0.0),  # a negated belief commits to nothing
    ("I don't think it's negative.", "positive", 0.0),
    ("It's positive or negative", "positive", 0.0),  # a hedge stays a hedge
    ("Overall: positive or negative, hard to say", "negative", 0.0),
]


@pytest.mark.parametrize(("prediction", "reference", "expected"), LABEL_CASES)
def test_label_table(prediction: str, reference: str, expected: float) -> None:
    assert s(kind="label", labels=LABELS).score(prediction, reference) == expected


@pytest.mark.parametrize(("prediction", "expected"), [
    ("yes", "yes"), ("No.", "no"), ("No, it is not.", "no"), ("yes or no", None), ("Yes/No", None),
])
def test_label_yes_no(prediction: str, expected: str | None) -> None:
    assert s(kind="label", labels=["yes", "no"]).extract(prediction) == expected


CHOICE_CASES = [
    ("A good guess would be C", "C", 1.0),
    ("A good guess would be C", "A", 0.0),
    ("a good guess is c", "C", 1.0),
    ("(C)", "C", 1.0),
    ("C.", "C", 1.0),
    ("C) because the others are wrong", "C", 1.0),
    ("The answer is C", "C", 1.0),
    ("Answer: c", "C", 1.0),
    ("I think it's B", "B", 1.0),
    ("I'd say D", "D", 1.0),
    ("B", "B", 1.0),
    ("b)", "B", 1.0),
    ("A", "A", 1.0),
    ("A.", "A", 1.0),
    ("(A)", "A", 1.0),
    ("A: the first one", "A", 1.0),
    ("A) Paris", "A", 1.0),
    ("A is correct", "A", 1.0),
    ("Option A is wrong; the answer is C", "C", 1.0),
    ("Not A, it's C", "C", 1.0),
    ("A or B", "A", 0.0),
    ("e.g. the third one, D", "D", 1.0),
    ("E", "E", 0.0),
    ("a lot of options", "A", 0.0),
    ("The answer is (b).", "B", 1.0),
    ("Answer: a", "A", 1.0),
]


@pytest.mark.parametrize(("prediction", "reference", "expected"), CHOICE_CASES)
def test_choice_table(prediction: str, reference: str, expected: float) -> None:
    assert s(kind="choice", choices="ABCD").score(prediction, reference) == expected


NUMERIC_CASES = [
    ("12 km", "12", 1.0),
    ("12km", "12", 1.0),
    ("$1,200.50", "1200.5", 1.0),
    ("The total is 1,234,567.", "1234567", 1.0),
    ("1,234", "1234", 1.0),
    ("1,2,3", "3", 1.0),
    ("-3", "-3", 1.0),
    ("-3", "3", 0.0),
    ("\u22127 degrees", "-7", 1.0),
    ("from 3-5", "5", 1.0),
    ("-0.5", "-.5", 1.0),
    (".25", "0.25", 1.0),
    ("3.50", "3.5", 1.0),
    ("50%", "50", 1.0),
    ("so 2 + 3 = 5", "5", 1.0),
    ("The answer is 42.", "42", 1.0),
    ("5.001", "5", 0.0),
    ("no idea", "5", 0.0),
    ("5", "five", 0.0),
]


@pytest.mark.parametrize(("prediction", "reference", "expected"), NUMERIC_CASES)
def test_numeric_table(prediction: str, reference: str, expected: float) -> None:
    assert s(kind="numeric").score(prediction, reference) == expected


EXACT_CASES = [
    ("Paris", "paris", 1.0),
    ("  Paris. ", "Paris", 1.0),
    ('"Paris"', "Paris", 1.0),
    ("PARIS!", "paris", 1.0),
    ("New   York", "new york", 1.0),
    ("new york city", "new york", 0.0),
    ("Paris, France", "Paris", 0.0),
    ("the answer is Paris", "Paris", 0.0),
    ("42", "42", 1.0),
    ("42.0", "42", 0.0),
    ("it's", "it's", 1.0),
    ("`x`", "x", 1.0),
    ("", "x", 0.0),
    ("...", "x", 0.0),
    ("Yes.", "yes", 1.0),
    # A sign or a leading decimal point is part of the answer, not edge punctuation.
    ("-5", "5", 0.0),
    (".5", "5", 0.0),
    ("(-3)", "-3", 1.0),
    ("line one\nline two", "line one line two", 1.0),
]


@pytest.mark.parametrize(("prediction", "reference", "expected"), EXACT_CASES)
def test_exact_table(prediction: str, reference: str, expected: float) -> None:
    assert s().score(prediction, reference) == expected


REGEX_CASES = [
    (r"answer:\s*(\w+)", "The answer: Paris", "answer: paris", 1.0),
    (r"answer:\s*(\w+)", "ANSWER: Paris.", "answer: paris", 1.0),
    (r"answer:\s*(\w+)", "answer: Rome", "answer: paris", 0.0),
    (r"answer:\s*(\w+)", "Paris", "answer: paris", 0.0),
    (r"####\s*(-?[\d,]+)", "so #### 1,200", "#### 1,200", 1.0),
    (r"####\s*(-?[\d,]+)", "#### -3", "#### -3", 1.0),
    (r"####\s*(-?[\d,]+)", "#### 3", "#### -3", 0.0),
    (r"\[(\w+)\]", "I pick [Blue].", "[blue]", 1.0),
    (r"\[(\w+)\]", "blue", "[blue]", 0.0),
    (r"\d+", "about 12 of them", "12", 1.0),
    (r"\d+", "12", "13", 0.0),
    # Only one group of an alternation takes part; the other is None and must not break it.
    (r"(yes)|(no)", "no", "no", 1.0),
    (r"(yes)|(no)", "No way", "no", 1.0),
    (r"(yes)|(no)", "yes", "no", 0.0),
    (r"final:\s*(.+)", "Final:\nNew York", "final: new york", 1.0),
    (r"(?:color|colour):\s*(\w+)", "Colour: red", "color: red", 1.0),
]


@pytest.mark.parametrize(("pattern", "prediction", "reference", "expected"), REGEX_CASES)
def test_regex_table(pattern: str, prediction: str, reference: str, expected: float) -> None:
    assert s(kind="regex", pattern=pattern).score(prediction, reference) == expected


@pytest.mark.parametrize("text, letters", [
    ("Which is a mammal?\nA. shark\nB. whale\nC. trout\nD. squid", "ABCD"),
    ("Which is a mammal? (A) shark (B) whale", "AB"),
    ("Which is a mammal? a) shark b) whale c) trout", "ABC"),
    ("A: shark B: whale [C] trout", "ABC"),
    ("The SI unit of mass is a kilogram.", ""),  # the article "a", no option
    ("Vitamin A.B12 and e.g. iron", ""),
    ("Options: E. eel", ""),  # E is not among the choices
])
def test_offered_letters_reads_laid_out_options(text: str, letters: str) -> None:
    assert offered_letters(text, "ABCD") == set(letters)
