"""A run's failure patterns per round: strategy, cluster size, the analyses and validation
failures behind each, and whether those failures were fixed by the round's training."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.padding import Padding
from rich.rule import Rule
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Label, Select, Static

from pada_local.ledger.report import Failure, PatternView, pattern_rounds, patterns

from ..base import PadaScreen
from ..format import one_line, pct

LEAK_NOTE = "Validation items are shown to you only: they never reach generation or training."


def fixed_text(p: PatternView) -> str:
    if p.fixed is None:
        return "not evaluated yet"
    done = sum(f.fixed is True for f in p.failures)
    return f"{pct(p.fixed)}% fixed ({done} of {len(p.failures)})"


def keywords_text(p: PatternView) -> str:
    # Shown beside every name: the teacher's name may be vague, the keywords come from the analyses.
    return f" (keywords: {', '.join(p.keywords)})" if p.keywords else ""


def pattern_detail(p: PatternView) -> Group:
    """The full story of one pattern, as rich renderables (user text is never markup)."""
    counts = f"   cluster {p.cluster} · {p.size} analyses · {p.samples} samples ({p.accepted} accepted)"
    parts: list[Any] = [
        Text.assemble((p.name or f"pattern {p.cluster}", "bold"), keywords_text(p), counts),
        Text(p.description or "(no description)"),
        Text.assemble(("strategy: ", "bold"), p.strategy or "(none drafted)"),
        Text.assemble(("after this round's training: ", "bold"), fixed_text(p)),
        Rule(f"{len(p.failures)} validation failures behind it", style="dim"),
    ]
    for n, f in enumerate(p.failures, 1):
        parts += failure_detail(n, f)
    return Group(*parts)


FIXED_MARK = {True: ("fixed ✓", "green"), False: ("still failing ✗", "red"),
              None: ("not re-evaluated yet", "dim")}


def failure_detail(n: int, f: Failure) -> list[Any]:
    """One validation failure: whether it was fixed, the item, and the teacher's analysis."""
    item = f"input: {f.input}\nreference: {f.reference}   student said: {f.prediction}"
    analysis = f"root cause: {f.root_cause}\nscenario: {f.error_scenario}"
    return [Text.assemble((f"{n}. {f.item_id}  ", "bold"), FIXED_MARK[f.fixed]),
            Padding(Text(item), (0, 0, 0, 3)), Padding(Text(analysis, style="italic"), (0, 0, 0, 3))]


class PatternsScreen(PadaScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("s", "samples", "Its samples"),
        Binding("left_square_bracket", "round(-1)", "Prev round"),
        Binding("right_square_bracket", "round(1)", "Next round"),
    ]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.views: list[PatternView] = []
        self.rounds: list[int] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="patterns-top", classes="toolbar"):
            yield Label("round ")
            yield Select[int]([], id="pattern-round", prompt="no patterns", allow_blank=True)
            yield Static(LEAK_NOTE, id="leak-note")
        with Horizontal(id="patterns-body"):
            yield DataTable(id="patterns-table", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="pattern-detail-box"):
                yield Static("", id="pattern-detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#patterns-table", DataTable)
        table.add_columns("pattern", "size", "fixed", "keywords")
        self.rounds = self.pada.read(lambda ledger: pattern_rounds(ledger, self.run_id), [])
        select = self.query_one("#pattern-round", Select)
        select.set_options([(f"round {r}", r) for r in self.rounds])
        if self.rounds:
            select.value = self.rounds[0]
        else:
            self.query_one("#pattern-detail", Static).update(
                "No patterns in this run: its strategy mines none (llm2llm, paraphrase, none), "
                "or no round after round 0 has analysed its failures yet.")
        table.focus()
        self.set_interval(self.pada.poll_seconds, self.poll)

    def poll(self) -> None:
        """Pick up rounds and patterns written since (a running loop, another process)."""
        rounds = self.pada.read(lambda ledger: pattern_rounds(ledger, self.run_id), None)
        select = self.query_one("#pattern-round", Select)
        if rounds is not None and rounds != self.rounds:
            self.rounds = rounds
            current = select.value
            with self.prevent(Select.Changed):
                select.set_options([(f"round {r}", r) for r in rounds])
            select.value = current if current in rounds else rounds[-1]  # Changed -> show_round
            return
        shown = select.value
        if isinstance(shown, int):
            views = self.pada.read(lambda ledger: patterns(ledger, self.run_id, shown), None)
            if views is not None and views != self.views:
                self.show_round(shown)

    def on_select_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, int):
            self.show_round(event.value)

    def show_round(self, round_: int) -> None:
        self.views = self.pada.read(lambda ledger: patterns(ledger, self.run_id, round_), [])
        table = self.query_one("#patterns-table", DataTable)
        row = table.cursor_row
        table.clear()
        for p in self.views:
            fixed = "-" if p.fixed is None else pct(p.fixed)
            table.add_row(one_line(p.name, 24), str(p.size), fixed, one_line(", ".join(p.keywords), 40),
                          key=str(p.id))
        row = min(max(row, 0), max(len(self.views) - 1, 0))
        table.move_cursor(row=row)
        self._detail(row)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(event.cursor_row)

    def _detail(self, index: int) -> None:
        box = self.query_one("#pattern-detail", Static)
        if 0 <= index < len(self.views):
            box.update(pattern_detail(self.views[index]))
        elif self.rounds:
            box.update("This round has no patterns.")

    def current(self) -> PatternView | None:
        row = self.query_one("#patterns-table", DataTable).cursor_row
        return self.views[row] if 0 <= row < len(self.views) else None

    def action_round(self, step: int) -> None:
        select = self.query_one("#pattern-round", Select)
        shown = select.value
        if isinstance(shown, int) and shown in self.rounds:
            i = self.rounds.index(shown)
            select.value = self.rounds[max(0, min(len(self.rounds) - 1, i + step))]

    def action_samples(self) -> None:
        from .samples import SamplesScreen

        p = self.current()
        screen = SamplesScreen(self.run_id, pattern=p.id if p else None, round_=p.round if p else None)
        self.app.push_screen(screen)
