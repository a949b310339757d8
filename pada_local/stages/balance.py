"""Keep a round's training set near D_train's label mix.

Pattern targeting tilts generation toward the labels the student gets wrong, and a weak teacher
tilts it further toward whatever it likes to write; a training set that drifts from D_train's
label distribution teaches the student a new prior instead of a skill. After quality control, a
seeded choice of surplus samples is dropped until the total-variation distance between the
training set's label distribution and D_train's is within the bound (or nothing of this round
is left to drop).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..events import Event, Reporter, silent
from ..records import Reason, Verdict
from ..scoring import Scorer


def distribution(labels: Sequence[str]) -> dict[str, float]:
    counts = Counter(labels)
    total = sum(counts.values())
    return {k: counts[k] / total for k in sorted(counts)} if total else {}


def tv_distance(p: dict[str, float], q: dict[str, float]) -> float:
    """Total variation: half the L1 distance (0 = same mix, 1 = disjoint)."""
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


@dataclass(frozen=True)
class Balance:
    dropped: dict[str, str]  # candidate key -> its label, dropped for balance
    before: float  # TV distance with every accepted sample
    after: float  # TV distance after the drops
    mix: dict[str, float]  # the training set's label distribution after the drops
    reference: dict[str, float]  # D_train's

    def stats(self) -> dict[str, object]:
        return {"label_mix": {k: round(v, 4) for k, v in self.mix.items()},
                "label_mix_train": {k: round(v, 4) for k, v in self.reference.items()},
                "label_tv": round(self.after, 4), "label_tv_before": round(self.before, 4),
                "dropped_for_balance": len(self.dropped)}


def rebalance(train: Sequence[str], earlier: Sequence[str], new: Sequence[tuple[str, str]],
              max_tv: float, seed: int) -> Balance:
    """`train`: D_train's labels; `earlier`: accepted samples of earlier rounds (kept as they
    are); `new`: (key, label) of this round's accepted samples. Drops the fewest new samples, one
    at a time from the label most over its D_train share, picked by `seed`."""
    reference = distribution(train)
    rng = random.Random(seed)
    pool: dict[str, list[str]] = {}
    for key, label in new:
        pool.setdefault(label, []).append(key)
    for keys in pool.values():
        rng.shuffle(keys)
    counts = Counter([*train, *earlier, *(label for _, label in new)])
    before = tv_distance(_share(counts), reference)
    dropped: dict[str, str] = {}
    while tv_distance(_share(counts), reference) > max_tv:
        share = _share(counts)
        over = [k for k in pool if pool[k] and share.get(k, 0.0) > reference.get(k, 0.0)]
        if not over:
            break
        label = max(over, key=lambda k: (share[k] - reference.get(k, 0.0), k))
        dropped[pool[label].pop()] = label
        counts[label] -= 1
    return Balance(dropped, before, tv_distance(_share(counts), reference), _share(counts), reference)


def plan_targets(train: Sequence[str], earlier: Sequence[str], planned: Sequence[tuple[str, str, str | None]],
                 max_tv: float, seed: int) -> dict[str, str]:
    """Move planned label-first targets before anything is generated, so that the round's samples,
    all accepted, would keep the label mix within `max_tv`. `planned`: (key, label, preferred
    other label or None). Each target `rebalance` would drop goes to its preferred label (the
    student's wrong answer, for an error job: a near miss of the other side) while that label is
    under its D_train share, else to the label furthest under it. Returns key -> new label."""
    dropped = rebalance(train, earlier, [(k, label) for k, label, _ in planned], max_tv, seed).dropped
    reference = distribution(train)
    counts = Counter([*earlier, *train, *(label for k, label, _ in planned if k not in dropped)])
    total = len(train) + len(earlier) + len(planned)
    moved: dict[str, str] = {}
    for key, _, prefer in planned:  # plan order: the same plan moves the same jobs
        if key not in dropped:
            continue
        deficit = {k: reference[k] * total - counts[k] for k in reference}
        label = prefer if prefer in deficit and deficit[prefer] > 0 else \
            max(sorted(deficit), key=lambda k: deficit[k])
        moved[key], counts[label] = label, counts[label] + 1
    return moved


def _share(counts: Counter[str]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in sorted(counts.items()) if v} if total else {}


@dataclass(frozen=True)
class LabelMix:
    """What the bound is kept against: D_train's labels, the accepted samples of earlier rounds,
    how a text reads as a label (as the training references spell it), the bound and the seed."""

    train: tuple[str, ...]
    earlier: tuple[str, ...]
    label_of: Callable[[str], str | None]
    max_tv: float
    seed: int


def label_mix_for(kind: str, scorer: Scorer, train: Sequence[str], earlier: Sequence[str], max_tv: float,
                  seed: int) -> LabelMix | None:
    """The bound for a label or choice task (`train`, `earlier`: the answers as written); None
    for any other kind of task, which has no label mix to keep."""
    if kind not in ("label", "choice"):
        return None
    return LabelMix(tuple(train), tuple(earlier), scorer.spelling(train), max_tv, seed)


def keep_label_mix(verdicts: list[Verdict], outputs: dict[str, str], mix: LabelMix, *,
                   report: Reporter = silent, round_: int | None = None
                   ) -> tuple[list[Verdict], dict[str, Any]]:
    """Drop a seeded choice of this round's surplus accepted samples (each rejected with that
    reason) until the training set's label mix is within the bound of D_train's."""
    def label(text: str) -> str:
        return mix.label_of(text) or "?"

    new = [(v.key, label(v.output or outputs[v.key])) for v in verdicts if v.accepted]
    found = rebalance([label(x) for x in mix.train], [label(x) for x in mix.earlier], new, mix.max_tv,
                      mix.seed)
    why = "label balance: dropped to keep the label mix within TV {:g} of D_train's ({} surplus)"
    out = [replace(v, kind=Reason.LABEL_BALANCE, reason=why.format(mix.max_tv, found.dropped[v.key]))
           if v.key in found.dropped else v for v in verdicts]
    if found.dropped:
        report(Event("log", "quality", round_, message=f"label balance: dropped {len(found.dropped)} "
                     f"samples (TV {found.before:.2f} -> {found.after:.2f})"))
    return out, found.stats()
