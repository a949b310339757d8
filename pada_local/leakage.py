"""The leakage guard: validation and test items never reach a generation prompt nor training.

Teacher-written pattern and strategy text may quote a validation question it was shown during
error analysis; `scrub` removes such quotes before that text is used for generation, and
`find` lets the loop and the tests search any text for any held-out item, exact or near.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .data import Example
from .textsim import normalize, shingles

REDACTED = "[held-out example removed]"


@dataclass(frozen=True)
class Leak:
    item_id: str
    split: str
    how: str  # exact | near
    score: float


class LeakGuard:
    """Held-out inputs (validation + test), searchable inside longer texts."""

    def __init__(self, held_out: Iterable[Example], near: float = 0.8, min_words: int = 3) -> None:
        self.items = [ex for ex in held_out if len(normalize(ex.input).split()) >= min_words]
        self.near = near
        self._norm = [normalize(ex.input) for ex in self.items]
        self._grams = [shingles(ex.input) for ex in self.items]

    def find(self, text: str) -> list[Leak]:
        """Held-out items that appear in `text`: verbatim (normalized), or some stretch of
        `text` as long as the item whose word 3-grams overlap the item's by Jaccard >= `near`.

        A window the item's length, not containment: in templated tasks two items differ in one
        word ('... in the word "garden"?' vs '... "planet"?') and share most 3-grams; they are
        different questions, and only a near copy of the whole item counts as a leak."""
        norm = normalize(text)
        words = norm.split()
        grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
        present = set(grams)
        leaks = []
        for ex, item_norm, item_grams in zip(self.items, self._norm, self._grams):
            if item_norm and item_norm in norm:
                leaks.append(Leak(ex.id, ex.split, "exact", 1.0))
            elif item_grams & present:
                score = _best_window(grams, item_grams)
                if score >= self.near:
                    leaks.append(Leak(ex.id, ex.split, "near", score))
        return leaks

    def scrub(self, text: str) -> str:
        """`text` with any verbatim held-out input replaced by a marker."""
        for ex in self.items:
            pattern = r"\s+".join(re.escape(w) for w in ex.input.split())
            text = re.sub(pattern, REDACTED, text, flags=re.IGNORECASE)
        return text

    def check_all(self, texts: Sequence[str]) -> list[tuple[int, Leak]]:
        return [(i, leak) for i, text in enumerate(texts) for leak in self.find(text)]


def _best_window(grams: list[tuple[str, ...]], item: frozenset[tuple[str, ...]]) -> float:
    """Highest Jaccard between `item` and any run of len(item) consecutive 3-grams."""
    size = len(item)
    best = 0.0
    for start in range(max(1, len(grams) - size + 1)):
        window = set(grams[start : start + size])
        if window & item:
            best = max(best, len(window & item) / len(window | item))
    return best
