"""The pada-local terminal UI: the App, its factory (shared by the CLI and the tests) and `run`.

The app owns three things the screens share: the UI thread's run ledger (over a RunStore
connection opened lazily, so browsing a path never creates a store), the one background job
(a loop run, a resume or an export, in a thread worker), and error display (a modal with
message and hint). Screens read and write runs only through `read` and `write` (and
`read_in_worker`, for a read that computes, from a thread worker).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import get_current_worker

from pada_local.errors import Cancelled, PadaError
from pada_local.events import Event
from pada_local.ledger.runs import Ledger
from pada_local.ledger.store import RunStore

from .jobs import Job, JobCreated, JobDone, JobEvent
from .screens.modals import ConfirmModal, ErrorModal

T = TypeVar("T")


class PadaApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "pada-local"
    ENABLE_COMMAND_PALETTE = False  # every action has a key in the footer; keep its width for them
    BINDINGS = [
        Binding("question_mark,f1", "help", "Help"),
        Binding("l", "live", "Progress"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, store_path: Path, *, poll_seconds: float = 2.0) -> None:
        super().__init__()
        self.store_path = Path(store_path).expanduser().absolute()
        self.poll_seconds = poll_seconds
        self.job: Job | None = None
        self.new_run_defaults: dict[str, Any] | None = None  # None: the demo config (tests pin it)
        self._ledger: Ledger | None = None
        self._shown_error: str | None = None  # a failing poll shows its error once, not every 2 s

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # "Progress" only means something once a job exists; hiding it saves footer space.
        return self.job is not None if action == "live" else True

    def on_mount(self) -> None:
        from .screens.runs import RunsScreen

        self.sub_title = str(self.store_path)
        self.push_screen(RunsScreen())

    # ------------------------------------------------------------------ the run ledger

    def ledger(self) -> Ledger | None:
        """The UI thread's ledger (its own store connection); None while no store file exists yet."""
        if self._ledger is None and self.store_path.exists():
            self._ledger = Ledger(RunStore(self.store_path))
        return self._ledger

    def read(self, fn: Callable[[Ledger], T], default: T) -> T:
        """fn(ledger), or default when there is no store yet or it cannot be read; an error
        shows in a modal once (polls would repeat it every few seconds otherwise)."""
        try:
            ledger = self.ledger()
            result = default if ledger is None else fn(ledger)
        except (PadaError, sqlite3.Error) as err:
            self._report_once(err)
            return default
        self._shown_error = None
        return result

    def read_in_worker(self, fn: Callable[[Ledger], T], default: T) -> T:
        """read() for a thread worker whose read computes for a while (a comparison's paired
        bootstrap): fn runs over a connection of its own, since the UI thread's ledger belongs to
        the UI thread. Never creates a store; an error shows in the modal, on the UI thread."""
        try:
            if not self.store_path.is_file():
                return default
            with Ledger.open_existing(self.store_path) as ledger:
                return fn(ledger)
        except (PadaError, sqlite3.Error) as err:
            self.call_from_thread(self._report_once, err)
            return default

    def read_or_error(self, fn: Callable[[Ledger], T]) -> T | None:
        """fn(ledger) for an action the person asked for (an export): any failure shows in a modal,
        every time, and gives None."""
        try:
            ledger = self.ledger()
            if ledger is None:
                raise PadaError(f"no run store at {self.store_path}")
            return fn(ledger)
        except (PadaError, sqlite3.Error, OSError) as err:
            self.show_error(err)
            return None

    def write(self, fn: Callable[[Ledger], Any]) -> bool:
        """Run a small write (delete a run, record a verdict) and say whether it worked."""
        try:
            ledger = self.ledger()
            if ledger is None:
                raise PadaError(f"no run store at {self.store_path}")
            fn(ledger)
        except (PadaError, sqlite3.Error, ValueError) as err:
            self.show_error(err)
            return False
        return True

    def _report_once(self, err: BaseException) -> None:
        if str(err) != self._shown_error:
            self._shown_error = str(err)
            self.show_error(err)

    def show_error(self, err: BaseException, title: str = "Error") -> None:
        self.push_screen(ErrorModal(err, title))

    # ------------------------------------------------------------------ the background job

    def start_job(self, job: Job) -> bool:
        """Start a job in a thread worker and show its progress; one job at a time, because a
        run uses every core."""
        if self.job is not None and self.job.running:
            self.show_error(PadaError(f"another job is running: {self.job.label}",
                                      hint="wait for it to finish, or cancel it (l, then c)"))
            return False
        self.job = job
        self.refresh_bindings()
        self._run_job(job)
        self.action_live()
        return True

    def start_run(self, cfg: Any) -> bool:
        """Run the loop on a validated Config (from the new-run form)."""
        from pada_local.run import loop

        def fn(report: Any, should_stop: Any, created: Any) -> str:
            return loop.start(cfg, report=report, should_stop=should_stop, on_created=created)

        return self.start_job(Job("run", f"run {cfg.name}", fn))

    def resume_run(self, run_id: str, name: str | None = None) -> bool:
        from pada_local.run import loop

        path = self.store_path

        def fn(report: Any, should_stop: Any, created: Any) -> str:
            return loop.resume(path, run_id, report=report, should_stop=should_stop)

        return self.start_job(Job("resume", f"resume {name or run_id}", fn, run_id=run_id))

    @work(thread=True, exit_on_error=False, group="job")
    def _run_job(self, job: Job) -> None:
        # Runs in a worker thread: it reports only through messages, never touching widgets.
        worker = get_current_worker()

        def should_stop() -> bool:  # the cancel key, or the app shutting down
            return job.stop.is_set() or worker.is_cancelled

        post = self.post_message
        try:
            def on_event(ev: Event) -> None:
                post(JobEvent(job, ev))

            def on_created(rid: str) -> None:
                post(JobCreated(job, rid))

            result = job.fn(on_event, should_stop, on_created)
        except Cancelled as err:
            post(JobDone(job, "cancelled", err))
        except Exception as err:  # noqa: BLE001 - shown as a modal; the loop marked the run failed
            post(JobDone(job, "failed", err))
        else:
            post(JobDone(job, "finished", None, result))

    def on_job_event(self, message: JobEvent) -> None:
        message.job.apply(message.event)

    def on_job_created(self, message: JobCreated) -> None:
        message.job.run_id = message.run_id

    def on_job_done(self, message: JobDone) -> None:
        job = message.job
        if job.run_id is None and isinstance(message.result, str):
            job.run_id = message.result
        if message.status == "finished" and hasattr(message.result, "out_dir"):  # an ExportResult
            verdict = "verified" if getattr(message.result, "ok", False) else "NOT verified"
            job.add_log(f"export: {message.result.out_dir} ({verdict})")
        job.finish(message.status, message.error)
        if message.status == "failed" and message.error is not None:
            self.show_error(message.error, title=f"{job.label} failed")
        else:
            self.notify(f"{job.label}: {message.status}", severity="information")

    def cancel_job(self) -> None:
        """Ask the running job to stop; the loop stops at its next check and marks the run
        'cancelled', keeping every finished stage for a resume."""
        if self.job is not None and self.job.running:
            self.job.stop.set()
            self.job.add_log("cancelling: the run stops at its next check (finished stages are kept)")

    # ------------------------------------------------------------------ actions

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_live(self) -> None:
        from .screens.live import LiveScreen

        if not isinstance(self.screen, LiveScreen):
            self.push_screen(LiveScreen())

    async def action_quit(self) -> None:
        if self.job is None or not self.job.running:
            self.exit(0)
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.cancel_job()
                self.exit(0)

        question = ("A job is running. Quit and cancel it? A cancelled run keeps its finished stages and "
                    "can be resumed later.")
        self.push_screen(ConfirmModal(question, yes="Quit"), answer)

    def on_unmount(self) -> None:
        if self._ledger is not None:
            self._ledger.store.close()


def create_app(store_path: Path, *, poll_seconds: float = 2.0) -> PadaApp:
    """The app on a run store (the file need not exist yet: a first run creates it)."""
    return PadaApp(store_path, poll_seconds=poll_seconds)


def run(store_path: Path) -> int:
    """`pada tui`: run the app until the user quits."""
    app = create_app(store_path)
    app.run()
    if app.job is not None and app.job.running:
        # The worker thread finishes its current step, marks the run cancelled, then exits.
        print("stopping the job cleanly; a cancelled run can be resumed with `pada run --resume`",
              file=sys.stderr)
    return int(app.return_code or 0)
