"""Fail(x, y, ŷ): the task's 0/1 score. Fail = score 0.

Each scorer extracts the answer from free text the same way for the student's predictions
and for synthetic samples, so quality control can reject a sample whose answer the scorer
could never read ("wrong format for the task").
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from .config import ScorerConfig
from .errors import ConfigError

# A minus sign only when it does not join two numbers ("3-5" is a range, not -5); commas only
# as thousands separators in groups of three ("1,2,3" is a list and must not read as 123).
_MINUS = r"(?:(?<![\w)])[-\u2212])?"
_NUMBER = re.compile(rf"{_MINUS}(?:\d{{1,3}}(?:,\d{{3}})+(?!\d)|\d+)(?:\.\d+)?|{_MINUS}\.\d+")
_PUNCT = str.maketrans("", "", string.punctuation)
_EDGE = string.punctuation + " \"'`"


def normalize(text: str) -> str:
    """Case, surrounding punctuation/quotes and inner whitespace do not matter; a number's sign
    and leading decimal point do ("-3" is not "3", ".5" is not "5")."""
    text = re.sub(r"\s+", " ", text.strip().lower())
    core = text.strip(_EDGE)
    if not core[:1].isdigit():
        return core
    lead = text[: len(text) - len(text.lstrip(_EDGE))]
    sign = "-" if lead.rstrip(".").endswith(("-", "\u2212")) else ""
    return sign + ("." if lead.endswith(".") else "") + core


def number_strings(text: str) -> list[str]:
    """The numbers written in `text`, as written ("1,200", "-3", ".5")."""
    return [x.replace("\u2212", "-") for x in _NUMBER.findall(text)]


def last_number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", "").replace("\u2212", "-"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Scorer:
    """Extract an answer from text (None = unreadable) and compare it with the reference."""

    cfg: ScorerConfig

    def extract(self, text: str) -> str | None:
        return _EXTRACT[self.cfg.kind](self.cfg, text)

    def score(self, prediction: str, reference: str) -> float:
        if self.cfg.kind == "judge":
            raise ConfigError("judge scoring needs the teacher; use evaluate.judge_scores")
        got, want = self.extract(prediction), self.extract(reference)
        if got is None or want is None:
            return 0.0
        if self.cfg.kind == "numeric":
            return float(abs(float(got) - float(want)) <= self.cfg.tolerance)
        return float(got == want)

    def options(self, references: Sequence[str]) -> list[str]:
        """The answers log-likelihood scoring weighs, spelled as the training references spell
        them (the student learnt that spelling). Labels: every configured label; choices: the
        letters the references use (a 4-choice task does not offer E)."""
        spelled: dict[str, dict[str, int]] = {}
        for ref in references:
            key = self.extract(ref)
            if key is not None:
                counts = spelled.setdefault(key, {})
                counts[ref.strip()] = counts.get(ref.strip(), 0) + 1
        if self.cfg.kind == "label":
            named = [(normalize(x), x) for x in self.cfg.labels or []]
        else:
            named = [(k, k) for k in sorted(spelled) or self.cfg.choices.upper()]
        return [max(spelled[k], key=lambda s: (spelled[k][s], s)) if k in spelled else text
                for k, text in named]

    def spelling(self, references: Sequence[str]) -> Callable[[str], str | None]:
        """A reference -> its label (or letter) as the training references spell it, or None."""
        spelled = {self.extract(o): o for o in self.options(references)}
        return lambda ref: spelled.get(self.extract(ref))

    def format_problem(self, answer: str) -> str | None:
        """Why `answer` cannot be a reference for this task, or None if it can."""
        if self.cfg.kind == "judge":
            return None if answer.strip() else "empty answer"
        if self.extract(answer) is None:
            return _FORMAT_HINT[self.cfg.kind](self.cfg)
        return None

    def check_references(self, references: Sequence[tuple[str, str]], where: str) -> None:
        """Fail before any model loads when the scorer cannot read the data's answers."""
        bad = [(item, ref) for item, ref in references if self.format_problem(ref) is not None]
        if len(bad) > len(references) // 10 or (bad and len(references) < 10):
            item, ref = bad[0]
            raise ConfigError(
                f"{where}: scorer '{self.cfg.kind}' cannot read {len(bad)} of {len(references)} "
                f"reference answers, e.g. item '{item}': {ref[:60]!r} ({self.format_problem(ref)})",
                hint="fix task.scorer in the config (kind, labels, pattern) or data.fields.output",
            )


def _exact(cfg: ScorerConfig, text: str) -> str | None:
    return normalize(text) or None


def _numeric(cfg: ScorerConfig, text: str) -> str | None:
    value = last_number(text)
    return None if value is None else repr(value)


def _label(cfg: ScorerConfig, text: str) -> str | None:
    # Reading order, not config order: the label the reply names first is the one it commits to.
    text = _strip_lead(text)
    canon = _label_canon(tuple(cfg.labels or ()))
    if not canon:
        return None
    found = [_Mention(canon[_fold(m.group(0))], m.start(), m.end())
             for m in _label_pattern(tuple(canon)).finditer(text)]
    verdicts = [i for i, m in enumerate(found) if _VERDICT.search(text[: m.start])]
    return _committed(text, found, prefer=verdicts[::-1])  # the last verdict first


def _regex(cfg: ScorerConfig, text: str) -> str | None:
    match = re.search(cfg.pattern or "", text, flags=re.IGNORECASE | re.DOTALL)
    if match is None:
        return None
    # With alternatives like "(a)|(b)" only one group takes part; an unmatched group is None.
    groups = [g for g in match.groups() if g is not None]
    return normalize(groups[0] if groups else match.group(0)) or None


def _choice(cfg: ScorerConfig, text: str) -> str | None:
    text = _strip_lead(text)
    found = [_Mention(m.group(1).upper(), m.start(1), m.end(1))
             for m in _letter_pattern(cfg.choices).finditer(text) if not _is_word(text, m)]
    marked = [i for i, m in enumerate(found) if _ANSWER_MARK.search(text[: m.start])]
    return _committed(text, found, prefer=marked)


# --- reading a committed answer out of free text (label and choice) -------------------------

@dataclass(frozen=True)
class _Mention:
    """One place the reply names an answer: `value` is the canonical answer, [start, end) the span."""

    value: str
    start: int
    end: int


_LEAD = re.compile(r"^[\s*_#>`\"']*(?:final\s+)?(?:answer|label)\s*[*_]*\s*:", re.IGNORECASE)
# Words that negate the answer right after them ("not positive", "isn't negative"), allowing a
# couple of fillers ("is not a very positive", "can't be negative").
_NEGATED = re.compile(
    r"(?<!\w)(?:not|no|never|neither|nor|cannot|isnt|arent|wasnt|doesnt|dont|\w+n['\u2019]t)\s+"
    # "I don't think it's negative", "not that it is positive": a negated belief about the answer
    r"(?:(?:think|believe|feel|say|consider|find)\s+(?:that\s+)?(?:it|this|the\s+\w+)?['\u2019]?s?\s*"
    r"(?:is\s+|was\s+)?)?"
    r"(?:(?:a|an|the|be|really|very|quite|exactly|entirely|completely|necessarily|so|too|clearly|that|"
    r"obviously|particularly|overly|totally|fully|definitely|strictly|simply|all)\s+){0,2}$",
    re.IGNORECASE,
)
# A closing verdict ("I'd say X", "overall X", "so X", "it's X"): it wins over an answer named
# before it ("positive and negative aspects, overall negative"; "not clearly positive; I'd say
# negative"), unless it is negated itself.
_VERDICT = re.compile(
    r"(?:\bi['\u2019]?d\s+say|\bi\s+would\s+say|\bi\s+say|\boverall|\bso|\btherefore|\bthus|\bhence|"
    r"\bultimately|\bfinally|\bin\s+the\s+end|\bin\s+conclusion|\bverdict|\bit['\u2019]?s|\bit\s+is|"
    r"\bthis\s+is|\bthat['\u2019]?s|\bi\s+think(?:\s+it['\u2019]?s)?)"
    r"[\s,:;-]*(?:(?:clearly|definitely|probably|mostly|rather|quite|really|actually|just|more)\s+)*$",
    re.IGNORECASE,
)
# What may sit between two answers that are offered together ("positive or negative",
# "A/B", "positive, negative, or neutral"); `conj` is what makes a list a hedge.
_LINK = re.compile(
    r"[\s,;(]*(?:(?P<conj>\band/or\b|\bor\b|\band\b|/|&|\bvs\b\.?|\bversus\b)\s*"
    r"(?:(?:maybe|perhaps|possibly|probably|even)\s+)?)?[\s(]*",
    re.IGNORECASE,
)
_OR = re.compile(r"[\s,]*(?:\bor\b|/)\s*", re.IGNORECASE)
# "The answer is", "Answer:", "the correct option would be": the letter right after is the
# committed one even when other letters were discussed first.
_ANSWER_MARK = re.compile(
    r"\b(?:answer|choice|option)s?\b[^.\n]{0,24}?(?:\bis|\bbe|:|=)\s*[*_]*\s*[(\[]?\s*$", re.IGNORECASE
)
# After "A"/"I" these words make the letter a choice ("A is correct"); any other lowercase word
# makes it an article or pronoun ("A good guess", "I think").
_CHOICE_VERBS = frozenset(
    "is was seems would should could must might because since as and or fits matches looks appears".split()
)
_NEXT_WORD = re.compile(r"\s+([a-z][\w'\u2019]*)")


def _fold(text: str) -> str:
    """Case and inner spacing/hyphens do not matter when matching a label ("Very-Positive")."""
    return re.sub(r"[\s_-]+", " ", text.strip().lower())


def _strip_lead(text: str) -> str:
    return _LEAD.sub("", text, count=1)


@lru_cache(maxsize=64)
def _label_canon(labels: tuple[str, ...]) -> dict[str, str]:
    """Folded spelling -> the label as `extract` reports it (normalized, as before)."""
    return {_fold(normalize(label)): normalize(label) for label in labels if normalize(label)}


@lru_cache(maxsize=64)
def _label_pattern(folded: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, so at any position the longest label wins ("very positive" over "positive",
    # "not offensive" over "offensive"); whole words only, even for labels that start or end
    # with punctuation.
    alts = [r"[\s_-]+".join(map(re.escape, f.split(" "))) for f in sorted(folded, key=len, reverse=True)]
    return re.compile(rf"(?<!\w)(?:{'|'.join(alts)})(?!\w)", re.IGNORECASE)


@lru_cache(maxsize=16)
def _letter_pattern(choices: str) -> re.Pattern[str]:
    # A lone letter: not inside a word or contraction ("I'd"), not an abbreviation ("e.g.").
    letters = re.escape(choices.upper() + choices.lower())
    return re.compile(rf"(?<![\w'\u2019])(?<!\w[.-])([{letters}])(?![\w'\u2019]|[.-]\w)")


def offered_letters(text: str, choices: str) -> set[str]:
    """The option letters `text` lays out ("A. ...", "(B) ...", "C) ...", "D: ..."), upper case.
    A letter that ends a sentence ("vitamin A.") counts too: the check it serves is lenient."""
    return {m.group(1).upper() for m in _option_pattern(choices).finditer(text)}


@lru_cache(maxsize=16)
def _option_pattern(choices: str) -> re.Pattern[str]:
    letters = re.escape(choices.upper() + choices.lower())
    return re.compile(rf"(?<![^\s(\[])([{letters}])(?=[.):\]](?:\s|$))")


def _is_word(text: str, m: re.Match[str]) -> bool:
    """The letter is the article "a" or the pronoun "I", not a choice."""
    if m.group(1).lower() not in ("a", "i"):
        return False
    nxt = _NEXT_WORD.match(text, m.end(1))
    return nxt is not None and nxt.group(1).lower() not in _CHOICE_VERBS


def _negations(text: str, found: Sequence[_Mention]) -> list[bool]:
    """Which mentions are negated; "not positive or negative" negates both."""
    out: list[bool] = []
    for i, m in enumerate(found):
        spread = i > 0 and out[-1] and _OR.fullmatch(text[found[i - 1].end : m.start]) is not None
        out.append(spread or _NEGATED.search(text[: m.start]) is not None)
    return out


def _committed(text: str, found: Sequence[_Mention], prefer: Sequence[int] = ()) -> str | None:
    """The first answer named and not negated (a preferred, marked one first); None for a hedge."""
    negated = _negations(text, found)
    open_ = [i for i in range(len(found)) if not negated[i]]
    if not open_:
        return None
    first = next((i for i in prefer if not negated[i]), open_[0])
    return None if _hedged(text, found, negated, first) else found[first].value


def _hedged(text: str, found: Sequence[_Mention], negated: Sequence[bool], k: int) -> bool:
    """Another answer offered alongside found[k] with "or"/"and"/"/" ("positive or negative")."""
    conj = False
    for j in range(k + 1, len(found)):
        link = _LINK.fullmatch(text[found[j - 1].end : found[j].start])
        if link is None:
            return False
        conj = conj or link.group("conj") is not None
        if conj and not negated[j] and found[j].value != found[k].value:
            return True
    return False


def _judge(cfg: ScorerConfig, text: str) -> str | None:
    return text.strip() or None


_EXTRACT: dict[str, Callable[[ScorerConfig, str], str | None]] = {
    "exact": _exact, "numeric": _numeric, "label": _label, "regex": _regex, "choice": _choice,
    "judge": _judge,
}

_FORMAT_HINT: dict[str, Callable[[ScorerConfig], str]] = {
    "exact": lambda c: "empty answer",
    "numeric": lambda c: "no number in the answer",
    "label": lambda c: f"answer is not one of the labels {c.labels}",
    "regex": lambda c: f"answer does not match {c.pattern!r}",
    "choice": lambda c: f"answer is not a choice letter ({c.choices})",
    "judge": lambda c: "empty answer",
}
