"""The first screen: every run in the store, sortable and filterable, with the actions on them."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Input, Static

from pada_local.ledger.compare_report import comparison_list
from pada_local.ledger.report import run_list
from pada_local.ledger.rules import RESUMABLE

from .. import data
from ..base import PadaScreen
from ..format import duration, pct, started, status_text
from ..widgets.job import JobBar
from .modals import ConfirmModal

# (key in report.run_list rows, header label)
# Scores and status come first so they stay visible at 80 columns; the rest scrolls sideways.
COLUMNS: list[tuple[str, str]] = [
    ("mark", " "), ("name", "name"), ("status", "status"), ("strategy", "strategy"), ("rounds", "rounds"),
    ("best_val", "best val"), ("best_test", "test"), ("created_at", "started"), ("duration", "duration"),
    ("task", "task"), ("student", "student"), ("teacher", "teacher"),
]


class RunsScreen(PadaScreen):
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("n", "new", "New"),
        Binding("r", "resume", "Resume"),
        Binding("d", "delete", "Delete"),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
        # In the footer only once the store holds a comparison; "Comparison" keeps it within 80 columns.
        Binding("C", "comparisons", "Comparison", tooltip="open a stored `pada compare` comparison"),
        Binding("s", "sort", "Sort", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "leave_filter", "Table", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.marked: set[str] = set()
        self.sort_key, self.sort_reverse = "created_at", True
        self._shown: list[tuple[Any, ...]] | None = None
        self.comparisons = 0  # stored `pada compare` grids

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter (/): words from name, task, models, strategy, status",
                    id="runs-filter")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-empty")
        yield JobBar(id="job-bar")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._columns()
        self.reload()
        self.set_interval(self.pada.poll_seconds, self.reload)
        self.query_one("#runs-table", DataTable).focus()

    def on_screen_resume(self) -> None:
        self.reload()  # a run deleted, started or reviewed on another screen
        self.query_one(JobBar).sync()  # its timer was paused while another screen was on top

    # ------------------------------------------------------------------ table

    def _columns(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        table.clear(columns=True)
        for key, label in COLUMNS:
            arrow = (" ▼" if self.sort_reverse else " ▲") if key == self.sort_key else ""
            table.add_column(label + arrow, key=key)
        self._shown = None

    def reload(self) -> None:
        self.rows = self.pada.read(run_list, [])
        count = len(self.comparison_rows())
        if count != self.comparisons:
            self.comparisons = count
            self._shown = None  # the note under the table counts them
            self.refresh_bindings()
        self._redraw()

    def comparison_rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.pada.read(comparison_list, [])
        return rows

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Most stores hold no comparison: keep the footer's width for the keys that do something.
        return self.comparisons > 0 if action == "comparisons" else True

    def visible_rows(self) -> list[dict[str, Any]]:
        text = self.query_one("#runs-filter", Input).value
        shown = [r for r in self.rows if data.matches(r, text)]
        return data.sort_rows(shown, self.sort_key, self.sort_reverse)

    def _cells(self, r: dict[str, Any]) -> tuple[Any, ...]:
        return ("✓" if r["id"] in self.marked else " ", r["name"] or r["id"], status_text(r["status"]),
                r["strategy"] or "-", str(r["rounds"]), pct(r["best_val"]), pct(r["best_test"]),
                started(r["created_at"]), duration(r["duration"]), r["task"] or "-", r["student"] or "-",
                r["teacher"] or "-")

    def _redraw(self) -> None:
        rows = self.visible_rows()
        cells = [self._cells(r) for r in rows]
        keys = [r["id"] for r in rows]
        if self._shown == list(zip(keys, cells, strict=True)):
            return  # nothing changed: keep the cursor and scroll exactly where they are
        table = self.query_one("#runs-table", DataTable)
        current = self.current_id()
        table.clear()
        for key, row in zip(keys, cells, strict=True):
            table.add_row(*row, key=key)
        self._shown = list(zip(keys, cells, strict=True))
        if current in keys:
            table.move_cursor(row=keys.index(current))
        self._empty_message(len(rows))

    def _empty_message(self, shown: int) -> None:
        note = self.query_one("#runs-empty", Static)
        store = self.pada.store_path
        if not self.rows:
            note.update(Text(f"No runs in {store} yet.\nPress n to start one (the demo task is filled in), "
                             "or run `pada demo` in a shell; runs written by other processes appear here."))
        elif not shown:
            note.update("No run matches the filter (escape, then clear it).")
        else:
            plural = "s" if self.comparisons > 1 else ""
            grids = f" · C: {self.comparisons} stored comparison{plural}" if self.comparisons else ""
            note.update(f"{shown} of {len(self.rows)} runs · enter: open · "
                        f"{len(self.marked)} marked for compare{grids}")

    def current_id(self) -> str | None:
        table = self.query_one("#runs-table", DataTable)
        if table.row_count == 0:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def current(self) -> dict[str, Any] | None:
        run_id = self.current_id()
        return next((r for r in self.rows if r["id"] == run_id), None)

    # ------------------------------------------------------------------ events

    def on_input_changed(self, _: Input.Changed) -> None:
        self._redraw()

    def on_input_submitted(self, _: Input.Submitted) -> None:
        self.query_one("#runs-table", DataTable).focus()

    def on_data_table_row_selected(self, _: DataTable.RowSelected) -> None:
        self.action_open()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key != "mark":
            self._sort_by(key)

    def _sort_by(self, key: str) -> None:
        if key == self.sort_key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key, self.sort_reverse = key, key in ("created_at", "best_val", "best_test", "duration")
        self._columns()
        self._redraw()

    # ------------------------------------------------------------------ actions

    def action_open(self) -> None:
        from .run import RunScreen

        run_id = self.current_id()
        if run_id is not None:
            self.app.push_screen(RunScreen(run_id))

    def action_new(self) -> None:
        from .new_run import NewRunScreen

        self.app.push_screen(NewRunScreen())

    def action_filter(self) -> None:
        self.query_one("#runs-filter", Input).focus()

    def action_leave_filter(self) -> None:
        self.query_one("#runs-table", DataTable).focus()

    def action_sort(self) -> None:
        keys = [k for k, _ in COLUMNS if k != "mark"]
        self.sort_key = keys[(keys.index(self.sort_key) + 1) % len(keys)]
        self.sort_reverse = self.sort_key in ("created_at", "best_val", "best_test", "duration")
        self._columns()
        self._redraw()
        self.notify(f"sorted by {dict(COLUMNS)[self.sort_key]} (s: next column, click a header to flip)")

    def action_mark(self) -> None:
        run_id = self.current_id()
        if run_id is None:
            return
        self.marked.symmetric_difference_update({run_id})
        self._redraw()
        self.query_one("#runs-table", DataTable).action_cursor_down()

    def action_compare(self) -> None:
        from .compare import CompareScreen

        order = [r["id"] for r in self.visible_rows() if r["id"] in self.marked]
        if len(order) < 2:
            self.notify("mark two or more runs with space, then press c", severity="warning")
            return
        self.app.push_screen(CompareScreen(order))

    def action_comparisons(self) -> None:
        from .compare import ComparisonsModal

        rows = self.comparison_rows()
        if rows:
            self.app.push_screen(ComparisonsModal(rows), self._open_comparison)

    def _open_comparison(self, comparison_id: str | None) -> None:
        from .compare import CompareScreen

        if comparison_id is not None:
            self.app.push_screen(CompareScreen(comparison_id=comparison_id))

    def action_resume(self) -> None:
        row = self.current()
        if row is None:
            return
        if row["status"] not in RESUMABLE:
            self.notify(f"run {row['id']} is {row['status']}: only a cancelled, interrupted or failed run "
                        "can be resumed", severity="warning")
            return
        self.pada.resume_run(row["id"], row["name"])

    def action_delete(self) -> None:
        row = self.current()
        if row is None:
            return
        if row["status"] == "running":
            self.notify("this run is running: cancel it first", severity="warning")
            return
        question = (f"Delete run {row['name']} ({row['id']}) and everything it recorded?\n"
                    "Adapter and export files stay on disk.")
        self.app.push_screen(ConfirmModal(question, yes="Delete"), lambda yes: self._delete(row["id"], yes))

    def _delete(self, run_id: str, yes: bool | None) -> None:
        if yes and self.pada.write(lambda ledger: ledger.delete_run(run_id)):
            self.marked.discard(run_id)
            self.notify(f"deleted run {run_id}")
            self.reload()
