"""Live progress of the app's background job: stage, progress bar, rate, log; cancel it here."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header

from ..base import PadaScreen
from ..widgets.job import JobPanel
from .modals import ConfirmModal


class LiveScreen(PadaScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back (it keeps running)"),
        Binding("c", "cancel", "Cancel job"),
        Binding("o", "open", "Open run"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield JobPanel(id="job-panel")
        yield Footer(compact=True)

    def action_cancel(self) -> None:
        job = self.pada.job
        if job is None or not job.running:
            self.notify("no job is running", severity="warning")
            return
        question = f"Cancel {job.label}? Finished stages are kept; resume it later with r on the runs screen."
        self.app.push_screen(ConfirmModal(question, yes="Cancel it"),
                             lambda yes: self.pada.cancel_job() if yes else None)

    def action_open(self) -> None:
        from .run import RunScreen

        job = self.pada.job
        if job is None or job.run_id is None:
            self.notify("this job has no run yet", severity="warning")
            return
        self.app.push_screen(RunScreen(job.run_id))
