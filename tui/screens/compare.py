"""Two or more runs side by side: scores per round, samples accepted/rejected, time."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from .. import data
from ..widgets.charts import CompareChart


class CompareScreen(Screen[None]):
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
        rows = self.app.read(lambda s: data.compare(s, self.run_ids), [])  # type: ignore[attr-defined]
        table = self.query_one("#compare-table", DataTable)
        table.add_column("", key="label")
        for i, run_id in enumerate(self.run_ids):
            table.add_column(run_id, key=f"run{i}")
        for label, values in rows:
            table.add_row(label, *values)
        series = self.app.read(  # type: ignore[attr-defined]
            lambda s: [(_label(s.run(i)), data.score_series(s, i)) for i in self.run_ids], [])
        self.query_one("#compare-chart", CompareChart).show(series)
        table.focus()


def _label(run: dict) -> str:
    return f"{run['name'] or run['id']} ({run['strategy']})"
