"""The rules several readers of the run store share, defined once: which verdict counts, what
a run's status really is, which round a run selects (and by which rule), and which runs may be
resumed."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..files import pid_alive

# Runs that can be continued with `pada run --resume` (a finished run cannot; a live one must not).
RESUMABLE = ("cancelled", "interrupted", "failed")


def effective_verdict(candidate: Mapping[str, Any]) -> str:
    """The verdict that counts: a person's verdict overrides quality control's."""
    return candidate.get("human_verdict") or candidate.get("verdict") or "pending"


def effective_status(row: Mapping[str, Any]) -> str:
    """A 'running' run (or comparison) whose process is gone was interrupted (kill -9, a crash,
    a reboot)."""
    if row["status"] == "running" and not pid_alive(row.get("pid")):
        return "interrupted"
    return str(row["status"])


def best_round(rounds: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The round with the highest validation score; the earliest wins a tie."""
    scored = [x for x in rounds if x["val_score"] is not None]
    return max(scored, key=lambda x: (x["val_score"], -x["round"])) if scored else None


# How a run's result is chosen among its finished rounds (loop.select). The same rule picks for
# every strategy of a comparison, so the comparison stays fair whichever rule is chosen.
SELECTIONS = ("best_val", "last", "last_unless_worse")


def select_round(rounds: Sequence[Mapping[str, Any]], rule: str,
                 validation: Callable[[int], Mapping[str, float]] | None = None,
                 level: float = 0.05) -> Mapping[str, Any] | None:
    """The selected round. `best_val`: the highest validation score (earliest on a tie). `last`:
    the last round. `last_unless_worse`: the last round, unless an earlier one beats it on the
    same validation items beyond their noise (a one-sided exact McNemar test at `level`); then
    the best of those by validation. `validation(r)` gives round r's per-item scores."""
    scored = [x for x in rounds if x["val_score"] is not None]
    if rule == "best_val" or not scored:
        return best_round(scored)
    last = scored[-1]
    if rule == "last":
        return last
    if validation is None:
        raise ValueError("last_unless_worse needs the rounds' validation items")
    mine = validation(last["round"])
    better = [x for x in scored[:-1] if beats(validation(x["round"]), mine, level)]
    return best_round(better) if better else last


def beats(a: Mapping[str, float], b: Mapping[str, float], level: float = 0.05) -> bool:
    """Does `a` score better than `b` on their shared items beyond chance? One-sided exact
    McNemar: of the items exactly one gets right, `a` must win so many that a fair coin would
    give that many or more with probability below `level`."""
    shared = set(a) & set(b)
    wins = sum(a[i] > 0 and not b[i] > 0 for i in shared)
    losses = sum(b[i] > 0 and not a[i] > 0 for i in shared)
    n = wins + losses
    if n == 0 or wins <= losses:
        return False
    tail = sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n
    return tail < level
