"""Live views of the app's background job: a full panel and a one-line bar.

Both poll the app's Job state on the UI thread (a few times a second) instead of receiving
events, so a screen opened mid-run shows the whole log so far and nothing is lost while no
panel is on screen.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, RichLog, Static

from ..base import pada_app
from ..format import duration

if TYPE_CHECKING:
    from ..jobs import Job

STATUS_STYLE = {"running": "bold yellow", "finished": "bold green", "cancelled": "bold magenta",
                "failed": "bold red"}


def job_line(job: Job) -> Text:
    """'● running  round 1 · generate  3/6  0.52/s  1m05s' as styled text."""
    spent = (job.ended or time.monotonic()) - job.started
    text = Text.assemble(("● ", STATUS_STYLE[job.status]), (job.status, STATUS_STYLE[job.status]),
                         f"  {job.label}")
    if job.running and job.stage:
        total = "?" if job.total is None else str(job.total)
        rate = "" if job.rate is None else f"  {job.rate:.2f}/s"
        text.append(f"  {job.stage_label()}  {job.completed}/{total}{rate}")
    text.append(f"  {duration(spent)}")
    return text


class JobPanel(Vertical):
    """Stage, progress bar, rate and the log of the app's current job."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._job: Job | None = None
        self._seen = 0

    def compose(self) -> ComposeResult:
        yield Static("no run in progress: start one with n on the runs screen", id="job-title")
        yield ProgressBar(id="job-progress", show_eta=False)
        yield RichLog(id="job-log", wrap=True, markup=False, highlight=False, max_lines=2000)

    def on_mount(self) -> None:
        self.sync()
        self.set_interval(0.25, self.sync)

    def sync(self) -> None:
        job = pada_app(self).job
        if job is None:
            return
        log = self.query_one("#job-log", RichLog)
        if job is not self._job:  # a new job: start its log from the top
            self._job, self._seen = job, 0
            log.clear()
        self.query_one("#job-title", Static).update(job_line(job))
        bar = self.query_one("#job-progress", ProgressBar)
        bar.update(total=job.total if job.running else 1, progress=job.completed if job.running else 1)
        self._write_new_lines(job, log)

    def _write_new_lines(self, job: Job, log: RichLog) -> None:
        new = min(job.logged - self._seen, len(job.log))
        for line in list(job.log)[len(job.log) - new:] if new > 0 else []:
            log.write(line)
        self._seen = job.logged


class JobBar(Static):
    """One line above the footer while a job exists; click it (or press l) for the panel."""

    def on_mount(self) -> None:
        self.sync()
        self.set_interval(0.5, self.sync)

    def sync(self) -> None:
        job = pada_app(self).job
        self.display = job is not None
        if job is not None:
            self.update(job_line(job).append("   l: progress", "dim"))

    def on_click(self) -> None:
        self.run_worker(self.app.run_action("live"))  # run_action is a coroutine: schedule it
