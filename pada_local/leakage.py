"""The leakage guard: validation and test items never reach a generation prompt nor training.

Teacher-written pattern and strategy text may quote a validation question it was shown during
error analysis; `scrub` removes such quotes before that text is used for generation, and
`find` lets the loop and the tests search any text for any held-out item, exact or near.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import PadaError
from .records import Example, Sample
from .textsim import normalize, shingles

REDACTED = "[held-out example removed]"


@dataclass(frozen=True)
class Leak:
    item_id: str
    split: str
    how: str  # exact | near
    score: float


class LeakGuard:
    """Held-out inputs (validation + test, every turn of a conversation), searchable inside
    longer texts.

    An input of `min_words` words or more is found anywhere in a text (verbatim or near). A
    shorter one ("wet?", "Good morning") is found only where it stands alone, equal after
    normalisation to a whole segment: the text, a line, a quoted span, or what follows a colon.
    Searching for it anywhere would make every text that uses the word "yes" a leak of "yes".
    """

    def __init__(self, held_out: Iterable[Example], near: float = 0.8, min_words: int = 3) -> None:
        # Every turn of a held-out conversation is held out: the analysis prompt shows the teacher
        # the earlier turns too, so a generation prompt or a sample must not carry any of them.
        keyed = [(normalize(text), text, ex) for ex in held_out for text in _turns(ex)]
        keyed = [k for k in keyed if k[0]]  # a turn of punctuation alone matches nothing
        self.items = [(ex, text) for norm, text, ex in keyed if len(norm.split()) >= min_words]
        self.short: dict[str, list[Example]] = {}
        for norm, _, ex in keyed:
            if len(norm.split()) < min_words:
                self.short.setdefault(norm, []).append(ex)
        self.near = near
        self._norm = [normalize(text) for _, text in self.items]
        self._grams = [shingles(text) for _, text in self.items]

    def find(self, text: str) -> list[Leak]:
        """Held-out items that appear in `text`: verbatim (normalized), or some stretch of
        `text` as long as the item whose word 3-grams overlap the item's by Jaccard >= `near`;
        short items as a whole segment (see the class).

        A window the item's length, not containment: in templated tasks two items differ in one
        word ('... in the word "garden"?' vs '... "planet"?') and share most 3-grams; they are
        different questions, and only a near copy of the whole item counts as a leak."""
        norm = normalize(text)
        words = norm.split()
        grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
        present = set(grams)
        leaks = []
        for (ex, _), item_norm, item_grams in zip(self.items, self._norm, self._grams, strict=True):
            if item_norm in norm:
                leaks.append(Leak(ex.id, ex.split, "exact", 1.0))
            elif item_grams & present:
                score = _best_window(grams, item_grams)
                if score >= self.near:
                    leaks.append(Leak(ex.id, ex.split, "near", score))
        return leaks + self._short_leaks(text)

    def _short_leaks(self, text: str) -> list[Leak]:
        found = dict.fromkeys(n for n in map(normalize, segments(text)) if n in self.short)
        return [Leak(ex.id, ex.split, "exact", 1.0) for n in found for ex in self.short[n]]

    def scrub(self, text: str) -> str:
        """`text` with any verbatim held-out input replaced by a marker (a short one where it
        stands alone: quoted, on its own line or after a colon)."""
        for _, held in self.items:
            pattern = r"\s+".join(re.escape(w) for w in held.split())
            text = re.sub(pattern, REDACTED, text, flags=re.IGNORECASE)
        if not self.short:
            return text
        text = _QUOTED.sub(lambda m: REDACTED if normalize(_inner(m)) in self.short else m.group(0), text)
        return "\n".join(self._scrub_line(line) for line in text.split("\n"))

    def _scrub_line(self, line: str) -> str:
        if normalize(line) in self.short:
            return REDACTED
        head, *tails = line.split(":")
        kept = [f" {REDACTED}" if normalize(tail) in self.short else tail for tail in tails]
        return ":".join([head, *kept])

    def check_all(self, texts: Sequence[str]) -> list[tuple[int, Leak]]:
        return [(i, leak) for i, text in enumerate(texts) for leak in self.find(text)]

    def safe(self, text: str, fallback: str) -> str:
        """Teacher text with any held-out item removed; the fallback if a near copy stays."""
        scrubbed = self.scrub(text)
        return fallback if self.find(scrubbed) else scrubbed

    def allows(self, word: str) -> bool:
        """A word that is (part of) no held-out item: it may be shown as a keyword."""
        return not self.find(word) and self.scrub(word) == word

    def require_clean(self, samples: Sequence[Sample]) -> None:
        """The last line of defence before training: an accepted sample that matches a held-out
        item stops the run (quality control rejects these; only a human "accept" brings one back)."""
        leaks = self.check_all([x.input for x in samples])
        if leaks:
            first, hit = samples[leaks[0][0]], leaks[0][1]
            raise PadaError(f"leakage guard: {len(leaks)} accepted samples match held-out items "
                            f"(e.g. candidate {first.id} matches {hit.split} item {hit.item_id})",
                            hint="reject those samples (a human verdict), then resume the run")


def _turns(ex: Example) -> list[str]:
    """The texts of a held-out item: its last user turn and every turn before it."""
    return [ex.input, *(content for _, content in ex.context)]


# A quoted span: straight, curly or angle double quotes, backticks, or single quotes that are
# not apostrophes (a letter on the outside of either quote).
_QUOTED = re.compile(r'"([^"\n]+)"|“([^”\n]+)”|«([^»\n]+)»|`([^`\n]+)`|(?<!\w)\'([^\'\n]+)\'(?!\w)')


def _inner(match: re.Match[str]) -> str:
    return next(group for group in match.groups() if group is not None)


def segments(text: str) -> list[str]:
    """The parts of `text` a short held-out input could fill whole: the text, each line, each
    piece after a colon ("Question: wet?"), each quoted span."""
    found = [text]
    for line in text.splitlines():
        found += [line, *line.split(":")[1:]]
    return found + [_inner(m) for m in _QUOTED.finditer(text)]


def _best_window(grams: list[tuple[str, ...]], item: frozenset[tuple[str, ...]]) -> float:
    """Highest Jaccard between `item` and any run of len(item) consecutive 3-grams."""
    size = len(item)
    best = 0.0
    for start in range(max(1, len(grams) - size + 1)):
        window = set(grams[start : start + size])
        if window & item:
            best = max(best, len(window & item) / len(window | item))
    return best
