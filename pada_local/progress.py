"""Render progress events on stderr with rich: one bar per stage, with counts and rates."""

from __future__ import annotations

import sys
from typing import Any

from .events import Event


class RichReporter:
    """A Reporter for the CLI. Bars go to stderr so stdout stays for results."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(file=sys.stderr)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"), console=self.console, transient=False,
        )
        self.tasks: dict[tuple[str, int | None], Any] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: Event) -> None:
        key = (event.stage, event.round)
        label = event.stage if event.round is None else f"r{event.round} {event.stage}"
        if event.kind == "start":
            self.tasks[key] = self.progress.add_task(label, total=event.total, rate="", note="")
        elif event.kind == "advance" and key in self.tasks:
            self._advance(self.tasks[key], event)
        elif event.kind == "end" and key in self.tasks:
            task = self.tasks.pop(key)
            self.progress.update(task, completed=self.progress.tasks[task].total or 0)
            if not self.console.is_terminal:  # logs and CI: one line per finished stage
                self._summary(label, self.progress.tasks[task])
        elif event.kind == "log":
            from rich.markup import escape

            self.progress.console.print(f"[dim]{escape(label)}:[/dim] {escape(event.message)}",
                                        highlight=False)

    def _summary(self, label: str, info: Any) -> None:
        seconds = info.finished_time or info.elapsed or 0.0
        rate = f", {info.completed / seconds:.2f}/s" if seconds else ""
        self.console.print(f"{label}: {info.completed:.0f} in {seconds:.1f}s{rate}", highlight=False)

    def _advance(self, task: Any, event: Event) -> None:
        self.progress.advance(task, event.advance)
        info = self.progress.tasks[task]
        speed = info.finished_speed or info.speed
        rate = "" if not speed else f"{speed:.2f}/s"
        self.progress.update(task, rate=rate, note=event.message[:40])
