"""One run: summary and rounds, charts, one tab per round with its stages, config, artifacts."""

from __future__ import annotations

from typing import Any

import yaml
from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane

from pada_local.ledger.report import run_view, stage_notes
from pada_local.ledger.rules import RESUMABLE

from .. import data
from ..base import PadaScreen
from ..format import cell, duration, pct, started, status_text
from ..widgets.charts import LossChart, ScoreChart
from ..widgets.job import JobBar

ROUND_COLUMNS = ("round", "val", "test", "accepted", "rejected", "train_items", "seconds", "status")
STAGE_COLUMNS = ("stage", "status", "items", "seconds", "tokens", "detail")
ARTIFACT_COLUMNS = ("kind", "round", "path", "size", "sha256")


def _fill(table: DataTable, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Replace a table's rows, keeping its cursor row when it still exists."""
    if not table.columns:
        table.add_columns(*columns)
    row = table.cursor_row
    table.clear()
    table.add_rows(rows)
    if rows:
        table.move_cursor(row=min(row, len(rows) - 1))


class RunScreen(PadaScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("p", "patterns", "Patterns"),
        Binding("s", "samples", "Samples"),
        Binding("e", "export", "Export"),
        Binding("r", "resume", "Resume"),
    ]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.run_row: dict[str, Any] = {}
        self._seen: Any = None
        self._rounds_shown: set[int] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="run-summary")
        with TabbedContent(id="run-tabs"):
            with TabPane("Overview", id="tab-overview"):
                yield DataTable(id="rounds-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="run-notes")
            with TabPane("Charts", id="tab-charts"):
                with Vertical(id="charts"):
                    yield ScoreChart(id="score-chart")
                    yield LossChart(id="loss-chart")
            with TabPane("Config", id="tab-config"):
                with VerticalScroll():
                    yield Static("", id="config-text")
            with TabPane("Artifacts", id="tab-artifacts"):
                yield DataTable(id="artifacts-table", cursor_type="row", zebra_stripes=True)
        yield JobBar(id="job-bar")
        yield Footer(compact=True)

    async def on_mount(self) -> None:
        await self.reload()
        self.set_interval(self.pada.poll_seconds, self.reload)

    def on_screen_resume(self) -> None:
        self.query_one(JobBar).sync()  # its timer was paused while another screen was on top

    async def reload(self) -> None:
        # Everything the screen shows, read in one go; compared to skip redundant redraws.
        snapshot = self.pada.read(lambda ledger: run_view(ledger, self.run_id), None)
        if snapshot is None or snapshot == self._seen:
            return  # gone, unreadable (a modal says so) or unchanged since the last poll
        self._seen = snapshot
        self.run_row = snapshot["run"]
        self._summary(snapshot)
        self._overview(snapshot)
        self._charts(snapshot)
        self._config(snapshot)
        self._artifacts(snapshot)
        await self._round_tabs(snapshot)

    # ------------------------------------------------------------------ parts

    def _summary(self, snap: dict[str, Any]) -> None:
        run = snap["run"]
        about = (f"\n{run['strategy']} · task {run['task']} · student {run['student']} · "
                 f"teacher {run['teacher']} · selected round {cell(run['best_round'])} "
                 f"(val {pct(run['best_val'])}, test {pct(run['best_test'])})")
        line = Text.assemble((run["name"] or run["id"], "bold"), f"  {run['id']}  ",
                             status_text(run["status"]), about)
        self.query_one("#run-summary", Static).update(line)

    def _overview(self, snap: dict[str, Any]) -> None:
        rows = [tuple(cell(r[c]) for c in ROUND_COLUMNS) for r in snap["table"]]
        _fill(self.query_one("#rounds-table", DataTable), ROUND_COLUMNS, rows)
        run = snap["run"]
        notes = [f"started {started(run['created_at'])}", f"finished {started(run['finished_at'])}",
                 f"stopped: {run.get('stop_reason') or '-'}",
                 "scores in % (validation; test is sealed: reported only)"]
        if run.get("error"):
            notes.append(f"error: {run['error']}")
        self.query_one("#run-notes", Static).update(Text("\n".join(notes)))

    def _charts(self, snap: dict[str, Any]) -> None:
        self.query_one("#score-chart", ScoreChart).show(snap["scores"])
        self.query_one("#loss-chart", LossChart).show(snap["loss"])

    def _config(self, snap: dict[str, Any]) -> None:
        text = yaml.safe_dump(snap["config"], sort_keys=False, allow_unicode=True)
        self.query_one("#config-text", Static).update(Syntax(text, "yaml", background_color="default"))

    def _artifacts(self, snap: dict[str, Any]) -> None:
        rows = [(a["kind"], cell(a["round"]), a["path"], _size(a["bytes"]), (a["sha256"] or "-")[:12])
                for a in snap["artifacts"]]
        _fill(self.query_one("#artifacts-table", DataTable), ARTIFACT_COLUMNS, rows)

    async def _round_tabs(self, snap: dict[str, Any]) -> None:
        tabs = self.query_one("#run-tabs", TabbedContent)
        for n in sorted(snap["stages"]):
            if n not in self._rounds_shown:  # a new round appeared since the last poll
                self._rounds_shown.add(n)
                stages: DataTable[Any] = DataTable(id=f"stages-{n}", cursor_type="row", zebra_stripes=True)
                pane = TabPane(f"Round {n}", Static("", id=f"round-{n}-summary"), stages, id=f"tab-round-{n}")
                await tabs.add_pane(pane, before="tab-config")
            self._round_tab(n, snap)

    def _round_tab(self, n: int, snap: dict[str, Any]) -> None:
        r = snap["rounds"].get(n, {})
        text = (f"round {n}: {r.get('stop_reason') or r.get('status') or '-'} · "
                f"val {pct(r.get('val_score'))} · test {pct(r.get('test_score'))} · "
                f"train {pct(r.get('train_score'))} · accepted {cell(r.get('n_accepted'))} · "
                f"rejected {cell(r.get('n_rejected'))} · train items {cell(r.get('n_train'))} · "
                f"{duration(r.get('seconds'))}")
        text = "\n".join([text, *stage_notes(snap["stages"][n])])
        self.query_one(f"#round-{n}-summary", Static).update(Text(text))
        rows = [_stage_cells(s) for s in snap["stages"][n]]
        _fill(self.query_one(f"#stages-{n}", DataTable), STAGE_COLUMNS, rows)

    # ------------------------------------------------------------------ actions

    def action_patterns(self) -> None:
        from .patterns import PatternsScreen

        self.app.push_screen(PatternsScreen(self.run_id))

    def action_samples(self) -> None:
        from .samples import SamplesScreen

        self.app.push_screen(SamplesScreen(self.run_id))

    def action_export(self) -> None:
        from .export import ExportModal

        self.app.push_screen(ExportModal(self.run_id, self.run_row.get("best_round")))

    def action_resume(self) -> None:
        status = self.run_row.get("status")
        if status not in RESUMABLE:
            self.notify(f"this run is {status}: only a cancelled, interrupted or failed run can be resumed",
                        severity="warning")
            return
        self.pada.resume_run(self.run_id, self.run_row.get("name"))


def _stage_cells(s: dict[str, Any]) -> tuple[str, ...]:
    seconds = "-" if s["seconds"] is None else f"{s['seconds']:.1f}"
    return (s["stage"], cell(s["status"]), cell(s["items"]), seconds, str(s["tokens"]),
            data.detail_line(s["detail"]))


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
