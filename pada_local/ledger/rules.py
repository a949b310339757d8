"""The rules several readers of the run store share, defined once: which verdict counts, what
a run's status really is, which round a run selects, and which runs may be resumed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

