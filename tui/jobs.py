"""Background jobs (a run of the loop, a resume, an export) and what the UI knows about them.

The job's function runs in a Textual thread worker and reports only through messages posted
to the app; the app applies them to a `Job` on the UI thread, and widgets read that state.
So nothing but the UI thread ever touches widgets or a Job's fields (the stop flag aside,
which is a threading.Event made for crossing threads).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from pada_local.events import Event

# fn(report, should_stop, on_created) -> result; on_created(run_id) names the run once known.
JobFn = Callable[[Callable[[Event], None], Callable[[], bool], Callable[[str], None]], Any]
LOG_LINES = 2000


@dataclass
class Job:
    kind: str  # 'run', 'resume' or 'export'
    label: str
    fn: JobFn
    run_id: str | None = None
    status: str = "running"  # running, finished, cancelled, failed
    error: BaseException | None = None
    stage: str = ""
    round: int | None = None
    total: int | None = None
    completed: int = 0
    stage_started: float = field(default_factory=time.monotonic)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    logged: int = 0  # lines ever logged, so readers can tell which ones are new
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def rate(self) -> float | None:
        """Items per second in the current stage."""
        spent = time.monotonic() - self.stage_started
        return self.completed / spent if self.completed and spent > 0 else None

    def stage_label(self) -> str:
        return self.stage if self.round is None else f"round {self.round} · {self.stage}"

    def add_log(self, line: str) -> None:
        self.log.append(line)
        self.logged += 1

    def apply(self, ev: Event) -> None:
        """Fold one progress event into the state (UI thread only)."""
        where = ev.stage if ev.round is None else f"r{ev.round} {ev.stage}"
        if ev.kind == "start":
            self.stage, self.round, self.total, self.completed = ev.stage, ev.round, ev.total, 0
            self.stage_started = time.monotonic()
        elif ev.kind == "advance" and ev.stage == self.stage:
            self.completed += ev.advance
        elif ev.kind == "end" and ev.stage == self.stage:
            spent = time.monotonic() - self.stage_started
            rate = f", {self.completed / spent:.2f}/s" if spent > 0 and self.completed else ""
            note = f" ({ev.message})" if ev.message else ""
            self.add_log(f"{where}: {self.completed} in {spent:.1f}s{rate}{note}")
        elif ev.kind == "log":
            self.add_log(f"{where}: {ev.message}")

    def finish(self, status: str, error: BaseException | None) -> None:
        self.status, self.error, self.ended = status, error, time.monotonic()
        text = {"finished": "finished", "cancelled": "cancelled (resume it from the runs screen: r)",
                "failed": f"failed: {getattr(error, 'message', error)}"}[status]
        self.add_log(f"{self.kind}: {text}")


class JobEvent(Message):
    """A progress event from the worker thread."""

    def __init__(self, job: Job, event: Event) -> None:
        super().__init__()
        self.job, self.event = job, event


class JobCreated(Message):
    """The worker's run now has an id (start() created its row)."""

    def __init__(self, job: Job, run_id: str) -> None:
        super().__init__()
        self.job, self.run_id = job, run_id


class JobDone(Message):
    """The worker returned or raised; status is finished, cancelled or failed."""

    def __init__(self, job: Job, status: str, error: BaseException | None, result: Any = None) -> None:
        super().__init__()
        self.job, self.status, self.error, self.result = job, status, error, result
