"""Runs side by side, in one of two modes.

- Marked runs (`c` on the runs screen): scores per round, samples accepted/rejected, time.
- A stored comparison (`C` on the runs screen, then pick one): the report of `pada compare`,
  per strategy the sealed-test score over seeds, the paired difference to `none` with its
  interval and verdict, samples, teacher tokens and time, with a chart of every seed's score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Label, Static
from textual.worker import get_current_worker

from pada_local import printing
from pada_local.ledger import compare_report, report

from .. import data
from ..base import PadaScreen
from ..widgets.charts import CompareChart, StrategyChart

if TYPE_CHECKING:
    from ..app import PadaApp


class CompareScreen(PadaScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("r", "reload", "Read again")]

    def __init__(self, run_ids: list[str] | None = None, *, comparison_id: str | None = None) -> None:
        super().__init__()
        if (run_ids is None) == (comparison_id is None):
            raise ValueError("compare either marked runs or one stored comparison")
        self.run_ids = run_ids or []
        self.comparison_id = comparison_id
        self.result: dict[str, Any] | None = None  # the comparison's report, once computed

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
        if self.comparison_id is None:
            yield CompareChart(id="compare-chart")
        else:
            yield Static("computing the comparison (a paired bootstrap over seeds and test items)…",
                         id="compare-verdicts", markup=False)
            yield StrategyChart(id="strategy-chart")
        yield Footer(compact=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Reading again is for a comparison, which may still be running; marked runs have no key for it.
        return self.comparison_id is not None if action == "reload" else True

    def on_mount(self) -> None:
        if self.comparison_id is None:
            self._show_runs()
        else:
            self.sub_title = f"comparison {self.comparison_id}"
            self.action_reload()
        self.query_one("#compare-table", DataTable).focus()

    # ------------------------------------------------------------------ marked runs

    def _show_runs(self) -> None:
        self.sub_title = f"comparing {len(self.run_ids)} runs (scores in %: validation / sealed test)"
        runs: list[dict[str, Any]] = self.pada.read(
            lambda ledger: report.compare_runs(ledger, self.run_ids), [])
        table = self.query_one("#compare-table", DataTable)
        table.add_column("", key="label")
        for i, run_id in enumerate(self.run_ids):
            table.add_column(run_id, key=f"run{i}")
        for label, values in data.compare_rows(runs):
            table.add_row(label, *values)
        series = [(data.run_label(x["run"]), x["scores"]) for x in runs]
        self.query_one("#compare-chart", CompareChart).show(series)

    # ------------------------------------------------------------------ a stored comparison

    def action_reload(self) -> None:
        if self.comparison_id is not None:
            self._compute(self.pada, self.comparison_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="comparison")
    def _compute(self, pada: PadaApp, comparison_id: str) -> None:
        # The bootstrap (the CLI's default n_boot, so the numbers match `pada compare`) takes about a
        # second per strategy on a real comparison: off the UI thread. The app comes from the UI
        # thread because `self.app` is looked up in a context variable that a thread may not carry.
        worker = get_current_worker()
        try:
            result = pada.read_in_worker(
                lambda ledger: compare_report.comparison_report(ledger, comparison_id), None)
        except Exception as err:  # noqa: BLE001 - shown as a modal rather than lost in the worker
            pada.call_from_thread(pada.show_error, err, "the comparison report failed")
            result = None
        if not worker.is_cancelled:
            pada.call_from_thread(self._show_comparison, result)

    def _show_comparison(self, result: dict[str, Any] | None) -> None:
        if not self.is_attached:
            return  # the screen was closed while the report was computed
        notes = self.query_one("#compare-verdicts", Static)
        if result is None:  # the error is in a modal already
            notes.update("the comparison could not be read (r: try again)")
            return
        self.result = result
        self.sub_title = data.comparison_title(result)
        self._fill_table(result)
        notes.update(Text("\n".join(self._notes(result))))
        self.query_one("#strategy-chart", StrategyChart).show(data.seed_scores(result))

    def _fill_table(self, result: dict[str, Any]) -> None:
        table = self.query_one("#compare-table", DataTable)
        table.clear(columns=True)
        for label in data.COMPARISON_COLUMNS:
            table.add_column(label, key=label)
        for s in result["strategies"]:
            table.add_row(*data.comparison_cells(s), key=s["strategy"])

    @staticmethod
    def _notes(result: dict[str, Any]) -> list[str]:
        progress = data.progress_line(result)
        lines = printing.comparison_lines(result)
        if not any(s.get("vs_none") for s in result["strategies"]):
            lines.insert(0, "no strategy has a finished seed paired with `none` yet")
        return ([] if progress is None else [progress]) + lines


class ComparisonsModal(ModalScreen[str]):
    """The stored comparisons, newest first; enter opens one (dismisses with its id)."""

    BINDINGS = [Binding("escape", "dismiss", "Close")]

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="wide-dialog"):
            yield Label("Stored comparisons (`pada compare`): enter opens one", id="dialog-title")
            yield DataTable(id="comparisons-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#comparisons-table", DataTable)
        table.add_columns(*data.COMPARISON_LIST_COLUMNS)
        for row in self.rows:
            table.add_row(*data.comparison_list_cells(row), key=row["id"])
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(str(event.row_key.value))
