"""Two or more runs side by side: scores per round, samples accepted/rejected, time."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header

from pada_local import report

from .. import data
from ..base import PadaScreen
from ..widgets.charts import CompareChart


class CompareScreen(PadaScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__()
        self.run_ids = run_ids

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
        yield CompareChart(id="compare-chart")
        yield Footer(compact=True)

    def on_mount(self) -> None:
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
        table.focus()
