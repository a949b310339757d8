"""Progress events: stages report through a callable whose default does nothing.

The CLI renders them as rich progress bars on stderr; the TUI turns them into messages from
its worker thread. Stages never print.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["start", "advance", "end", "log"]


@dataclass(frozen=True)
class Event:
    kind: Kind
    stage: str
    round: int | None = None
    total: int | None = None
    advance: int = 0
    message: str = ""
    at: float = field(default_factory=time.time)


Reporter = Callable[[Event], None]


def silent(_: Event) -> None:
    return None


class StageProgress:
    """Start/advance/end helpers for one stage, so stage code stays one line per report."""

    def __init__(self, report: Reporter, stage: str, round_: int | None, total: int | None) -> None:
        self.report, self.stage, self.round = report, stage, round_
        report(Event("start", stage, round_, total=total))

    def step(self, n: int = 1, message: str = "") -> None:
        self.report(Event("advance", self.stage, self.round, advance=n, message=message))

    def log(self, message: str) -> None:
        self.report(Event("log", self.stage, self.round, message=message))

    def end(self, message: str = "") -> None:
        self.report(Event("end", self.stage, self.round, message=message))
