"""Fail(x, y, ŷ): the task's 0/1 score. Fail = score 0.

Each scorer extracts the answer from free text the same way for the student's predictions
and for synthetic samples, so quality control can reject a sample whose answer the scorer
could never read ("wrong format for the task").
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Callable, Sequence

from .config import ScorerConfig
from .errors import ConfigError

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """Case, surrounding punctuation/quotes and inner whitespace do not matter."""
    text = text.strip().lower()
    text = re.sub(r"\s+", " ", text)
    return text.strip(string.punctuation + " \"'`")


def last_number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
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
                f"{where}: scorer '{self.cfg.kind}' cannot read {len(bad)} of {len(references)} reference "
                f"answers, e.g. item '{item}': {ref[:60]!r} ({self.format_problem(ref)})",
                hint="fix task.scorer in the config (kind, labels, pattern) or data.fields.output",
            )


def _exact(cfg: ScorerConfig, text: str) -> str | None:
    return normalize(text) or None


def _numeric(cfg: ScorerConfig, text: str) -> str | None:
    value = last_number(text)
    return None if value is None else repr(value)


def _label(cfg: ScorerConfig, text: str) -> str | None:
    # The first label that appears as a whole word; longest labels first so "very positive"
    # wins over "positive".
    labels = sorted(cfg.labels or [], key=len, reverse=True)
    norm = normalize(text)
    for label in labels:
        if normalize(label) == norm or re.search(rf"\b{re.escape(normalize(label))}\b", norm):
            return normalize(label)
    return None


def _regex(cfg: ScorerConfig, text: str) -> str | None:
    match = re.search(cfg.pattern or "", text, flags=re.IGNORECASE | re.DOTALL)
    if match is None:
        return None
    return normalize(match.group(1) if match.groups() else match.group(0)) or None


def _choice(cfg: ScorerConfig, text: str) -> str | None:
    letters = re.escape(cfg.choices.upper())
    stripped = text.strip()
    match = re.match(rf"^\(?([{letters}])\)?(?:[.):\s]|$)", stripped.upper())
    if match is None:
        match = re.search(rf"\b(?:answer|option)\s*(?:is)?\s*:?\s*\(?([{letters}])\b", stripped, re.IGNORECASE)
    return None if match is None else match.group(1).upper()


def _judge(cfg: ScorerConfig, text: str) -> str | None:
    return text.strip() or None


_EXTRACT: dict[str, Callable[[ScorerConfig, str], str | None]] = {
    "exact": _exact, "numeric": _numeric, "label": _label, "regex": _regex, "choice": _choice, "judge": _judge,
}

_FORMAT_HINT: dict[str, Callable[[ScorerConfig], str]] = {
    "exact": lambda c: "empty answer",
    "numeric": lambda c: "no number in the answer",
    "label": lambda c: f"answer is not one of the labels {c.labels}",
    "regex": lambda c: f"answer does not match {c.pattern!r}",
    "choice": lambda c: f"answer is not a choice letter ({c.choices})",
    "judge": lambda c: "empty answer",
}
