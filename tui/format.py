"""Small text formatters shared by the screens (percentages, durations, timestamps, statuses)."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from pada_local.ledger.report import parse_time

STATUS_STYLE = {"running": "yellow", "finished": "green", "cancelled": "magenta", "interrupted": "magenta",
                "failed": "red"}


def pct(value: float | None) -> str:
    """A 0..1 score as a percentage with one decimal, '-' when missing."""
    return "-" if value is None else f"{100 * value:.1f}"


def duration(seconds: float | None) -> str:
    """Seconds as a compact '1h02m', '3m05s' or '12s'."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def started(text: str | None) -> str:
    """A store timestamp shown in local time, to the minute."""
    stamp = parse_time(text)
    return "-" if stamp is None else stamp.astimezone().strftime("%Y-%m-%d %H:%M")


def cell(value: Any) -> str:
    """Any value as table text: None is '-'."""
    return "-" if value is None else str(value)


def one_line(text: str | None, width: int = 60) -> str:
    """The text on one line, cut to `width` characters with an ellipsis."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def status_text(status: str) -> Text:
    """A run's status, coloured (the runs table and the run screen's summary)."""
    return Text(status, style=STATUS_STYLE.get(status, ""))
