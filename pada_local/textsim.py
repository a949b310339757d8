"""Cheap lexical similarity for duplicate and contamination checks.

Word 3-gram shingles and Jaccard similarity catch copies and light edits (case, spacing,
punctuation, a changed word) without loading any model. `NgramIndex` keeps an inverted index
from shingle to entries, so a query only scores entries that share at least one shingle.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

Shingle = tuple[str, ...]


def _is_punct(ch: str) -> bool:
    # Unicode punctuation only (P*): symbols such as + = % $ carry meaning in maths tasks.
    return unicodedata.category(ch).startswith("P")


def _strip_edges(word: str) -> str:
    """Drop punctuation at both ends of a word, keeping the sign of a number ("-5", ".5")."""
    i, j = 0, len(word)
    while i < j and _is_punct(word[i]) and not (word[i] in "-." and word[i + 1 : i + 2].isdigit()):
        i += 1
    while j > i and _is_punct(word[j - 1]):
        j -= 1
    return word[i:j]


def normalize(text: str) -> str:
    """Lowercase, collapse whitespace, strip punctuation at word edges; empty words vanish."""
    # NFKC folds look-alike forms (full-width letters, ligatures) so copies still compare equal.
    words = (_strip_edges(w) for w in unicodedata.normalize("NFKC", text).casefold().split())
    return " ".join(w for w in words if w)


def shingles(text: str, n: int = 3) -> frozenset[Shingle]:
    """Word n-grams of the normalized text; a text shorter than n words is one shingle."""
    words = normalize(text).split()
    if not words:
        return frozenset()
    if len(words) < n:
        return frozenset({tuple(words)})
    return frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset[Shingle] | set[Shingle], b: frozenset[Shingle] | set[Shingle]) -> float:
    """|a & b| / |a | b|; 0.0 when both are empty (nothing to compare is not a duplicate)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


class NgramIndex(Generic[K]):
    """Entries (key, text) searchable by shingle Jaccard; keys need not be unique."""

    def __init__(self, items: Iterable[tuple[K, str]] = (), n: int = 3) -> None:
        self.n = n
        self._keys: list[K] = []
        self._sizes: list[int] = []
        self._postings: dict[Shingle, list[int]] = {}
        self._exact: dict[str, list[int]] = {}
        for key, text in items:
            self.add(key, text)

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: K, text: str) -> None:
        # Entries are numbered slots, so the same key may be added twice without clobbering.
        slot = len(self._keys)
        grams = shingles(text, self.n)
        self._keys.append(key)
        self._sizes.append(len(grams))
        self._exact.setdefault(normalize(text), []).append(slot)
        for gram in grams:
            self._postings.setdefault(gram, []).append(slot)

    def _scores(self, text: str) -> dict[int, float]:
        """Jaccard score of every entry sharing a shingle with `text`; exact copies score 1.0."""
        grams = shingles(text, self.n)
        shared: Counter[int] = Counter()
        for gram in grams:
            shared.update(self._postings.get(gram, ()))
        scores = {s: c / (len(grams) + self._sizes[s] - c) for s, c in shared.items()}
        for slot in self._exact.get(normalize(text), ()):
            scores[slot] = 1.0
        return scores

    def query(self, text: str, threshold: float) -> list[tuple[K, float]]:
        """Entries with score >= threshold, best first (ties in insertion order)."""
        hits = [(s, score) for s, score in self._scores(text).items() if score >= threshold]
        hits.sort(key=lambda hit: (-hit[1], hit[0]))
        return [(self._keys[s], score) for s, score in hits]

    def best(self, text: str) -> tuple[K | None, float]:
        """The most similar entry and its score, or (None, 0.0) when nothing overlaps."""
        scores = self._scores(text)
        if not scores:
            return None, 0.0
        slot = min(scores, key=lambda s: (-scores[s], s))
        return self._keys[slot], scores[slot]
