"""Generated samples with their verdicts; filter them, read the full record, and overrule
quality control (recorded as a human verdict, which the next round's training honours)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from rich.console import Group
from rich.rule import Rule
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Select, Static

from pada_local.ledger.report import samples
from pada_local.ledger.rules import effective_verdict

from .. import data
from ..base import PadaScreen
from ..format import cell, one_line
from .modals import ExportModal

VERDICT_STYLE = {"accepted": "green", "rejected": "red", "pending": "yellow"}
COLUMNS = ("id", "r", "verdict", "input", "reason", "source", "pattern")  # what to judge by first


def verdict_text(c: dict[str, Any]) -> Text:
    mark = " (you)" if c.get("human_verdict") else ""
    return Text(c["effective"] + mark, style=VERDICT_STYLE.get(c["effective"], ""))


def sample_detail(c: dict[str, Any]) -> Group:
    """Every field of one candidate; the teacher's raw reply and the prompt at the end."""
    def field(name: str, value: Any) -> Text:
        return Text.assemble((f"{name}: ", "bold"), cell(value))

    human = c.get("human_verdict")
    return Group(
        Text.assemble((f"sample {c['id']}", "bold"),
                      f"  round {c['round']} · {c['source']} · key {c['key']}"),
        Text.assemble(("verdict: ", "bold"), verdict_text(c),
                      f"   (quality control: {c['verdict']}" + (f"; you: {human}" if human else "") + ")"),
        field("reason", c["reason"]), field("judge score", c["judge_score"]),
        field("pattern", c["pattern"]), field("from train item", c["origin_item_id"]),
        # Who decided the answer: a label the job chose first, or the teacher's computation.
        *([field("label chosen first", c["target"])] if c.get("target") else []),
        *([field("computed from", c["expression"])] if c.get("expression") else []),
        Rule("input", style="dim"), Text(c["input"] or ""),
        Rule("output", style="dim"), Text(c["output"] or ""),
        Rule("teacher's raw reply", style="dim"), Text(c["raw"] or ""),
        Rule("generation prompt", style="dim"), Text(c.get("prompt") or "-", style="dim"),
    )


class SamplesScreen(PadaScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("a", "verdict('accepted')", "Accept"),
        Binding("x", "verdict('rejected')", "Reject"),
        Binding("u", "verdict(None)", "Undo mine"),
        Binding("e", "export", "Export shown"),
    ]

    def __init__(self, run_id: str, *, pattern: int | None = None, round_: int | None = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.pattern, self.round = pattern, round_
        self.all: list[dict[str, Any]] = []
        self.shown: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="samples-filters", classes="toolbar"):
            yield Select[int]([], id="filter-round", prompt="all rounds")
            yield Select[Any]([], id="filter-pattern", prompt="all patterns")
            yield Select[str]([(v, v) for v in data.VERDICT_FILTERS], id="filter-verdict", value="all",
                              allow_blank=False)
        yield DataTable(id="samples-table", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="sample-detail-box"):
            yield Static("", id="sample-detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#samples-table", DataTable).add_columns(*COLUMNS)
        self.all = self.pada.read(lambda ledger: samples(ledger, self.run_id), [])
        self._filter_options()
        self.render_rows()
        self.query_one("#samples-table", DataTable).focus()
        self.set_interval(self.pada.poll_seconds, self.poll)

    def poll(self) -> None:
        """Pick up samples written since (generation and quality control run meanwhile)."""
        rows = self.pada.read(lambda ledger: samples(ledger, self.run_id), None)
        if rows is not None and rows != self.all:
            self.all = rows
            self._filter_options()
            self.render_rows()

    def _filter_options(self) -> None:
        rounds = sorted({c["round"] for c in self.all})
        names = {(c["pattern_id"], c["round"], c["pattern"]) for c in self.all if c["pattern_id"] is not None}
        options: list[tuple[str, Any]] = [("no pattern (error-correcting, paraphrase)", "none")]
        options += [(f"r{r} {one_line(name, 30)}", pid)
                    for pid, r, name in sorted(names, key=lambda x: (x[1], x[0]))]
        with self.prevent(Select.Changed):  # refilling the lists must not reset the chosen filters
            self.query_one("#filter-round", Select).set_options([(f"round {r}", r) for r in rounds])
            self.query_one("#filter-pattern", Select).set_options(options)
            if self.round in rounds:
                self.query_one("#filter-round", Select).value = self.round
            if self.pattern == "none" or any(pid == self.pattern for pid, _, _ in names):
                self.query_one("#filter-pattern", Select).value = self.pattern

    def on_select_changed(self, event: Select.Changed) -> None:
        value = None if event.value is Select.NULL else cast("int | None", event.value)
        if event.select.id == "filter-round":
            self.round = value
        elif event.select.id == "filter-pattern":
            self.pattern = value
        self.render_rows()

    def render_rows(self) -> None:
        verdict = self.query_one("#filter-verdict", Select).value
        self.shown = data.filter_samples(self.all, round_=self.round, pattern=self.pattern,
                                         verdict=verdict if isinstance(verdict, str) else "all")
        table = self.query_one("#samples-table", DataTable)
        row = table.cursor_row
        table.clear()
        for c in self.shown:
            table.add_row(str(c["id"]), str(c["round"]), verdict_text(c), one_line(c["input"], 36),
                          one_line(c["reason"], 30), c["source"] or "-", one_line(c["pattern"], 24),
                          key=str(c["id"]))
        if self.shown:
            table.move_cursor(row=min(max(row, 0), len(self.shown) - 1))
        self._detail()
        self.sub_title = f"{len(self.shown)} of {len(self.all)} samples"

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self._detail()

    def current(self) -> dict[str, Any] | None:
        row = self.query_one("#samples-table", DataTable).cursor_row
        return self.shown[row] if 0 <= row < len(self.shown) else None

    def _detail(self) -> None:
        c = self.current()
        self.query_one("#sample-detail", Static).update(
            sample_detail(c) if c else "No samples match (change the filters above).")

    def action_verdict(self, verdict: str | None) -> None:
        c = self.current()
        if c is None:
            return
        if not self.pada.write(lambda ledger: ledger.set_human_verdict(c["id"], verdict)):
            return
        c["human_verdict"] = verdict
        c["effective"] = effective_verdict(c)
        self.notify(f"sample {c['id']}: " + (f"{verdict} by you; rounds trained from now on use it" if verdict
                                              else "your verdict removed; quality control's stands"))
        self.render_rows()

    def action_export(self) -> None:
        """Export exactly the samples the filters show, in a format `pada data export` writes."""
        from pada_local.data.export import export_selection

        shown = [int(c["id"]) for c in self.shown]
        if not shown:
            self.notify("no samples shown: change the filters first", severity="warning")
            return
        what = self._described()
        def default_folder(ledger: Any) -> str:
            workdir = Path(ledger.for_run(self.run_id).config().get("workdir") or "runs")
            return str(workdir / self.run_id / "dataset-selection-FORMAT")

        folder = self.pada.read(default_folder, "")

        def done(choice: tuple[str, str] | None) -> None:
            if choice is None:
                return
            fmt, out = choice
            path = Path(out) if out else None
            result = self.pada.read_or_error(lambda ledger: export_selection(
                ledger, self.run_id, shown, fmt=fmt, described=what, out=path))
            if result is not None:
                self.notify(f"{result.rows} samples ({what}) written to {result.out}")

        self.app.push_screen(ExportModal(f"{len(shown)} samples: {what}", folder), done)

    def _described(self) -> str:
        verdict = self.query_one("#filter-verdict", Select).value
        parts = ["round " + str(self.round) if self.round is not None else "all rounds",
                 "no pattern" if self.pattern == "none" else (
                     "all patterns" if self.pattern is None else f"pattern {self.pattern}"),
                 f"verdict {verdict}"]
        return "the samples shown in the TUI (" + ", ".join(parts) + ")"
