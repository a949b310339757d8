"""Export a run's tuned student (adapter, merged model or GGUF) through the core's export."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Checkbox, Input, Label, Select

from pada_local.errors import PadaError

from ..base import PadaModal

FORMATS = ("gguf", "merged", "adapter")
QUANTS = ("default", "f16", "q8_0", "q4_0", "q4_k_m")


def export_function() -> Any:
    """pada_local.export.export_run, imported only when asked for (it pulls in heavy libraries)."""
    try:
        from pada_local.export import export_run
    except ImportError as err:
        raise PadaError(f"export is not available in this installation of pada-local ({err})",
                        hint="update pada-local; the run's adapters are listed under Artifacts") from None
    return export_run


class ExportModal(PadaModal):
    BINDINGS = [Binding("escape", "dismiss", "Cancel")]

    def __init__(self, run_id: str, best_round: int | None) -> None:
        super().__init__()
        self.run_id, self.best_round = run_id, best_round

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Export run {self.run_id}", id="dialog-title")
            best = self.best_round if self.best_round is not None else "-"
            with Horizontal(classes="dialog-row"):
                yield Label("format", classes="dialog-label")
                yield Select([(f, f) for f in FORMATS], value="gguf", allow_blank=False, id="export-format",
                             compact=True)
            with Horizontal(classes="dialog-row"):
                yield Label("GGUF quantization", classes="dialog-label")
                yield Select([(q, q) for q in QUANTS], value="default", allow_blank=False, id="export-quant",
                             compact=True)
            with Horizontal(classes="dialog-row"):
                yield Label(f"round (blank: best, {best})", classes="dialog-label")
                yield Input(id="export-round", type="integer", compact=True)
            yield Checkbox("may fetch llama.cpp's converter from PyPI", id="export-fetch", compact=True)
            with Horizontal(id="dialog-buttons"):
                yield Button("Export", variant="success", id="export", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export":
            self.export()
        else:
            self.dismiss()

    def export(self) -> None:
        from ..jobs import Job

        try:
            export_run = export_function()
        except PadaError as err:
            self.dismiss()
            self.pada.show_error(err, "Export unavailable")
            return
        fmt = str(self.query_one("#export-format", Select).value)
        quant = str(self.query_one("#export-quant", Select).value)
        text = self.query_one("#export-round", Input).value.strip()
        kwargs = {"round": int(text) if text else None, "fmt": fmt,
                  "quant": None if quant == "default" else quant,
                  "allow_fetch": self.query_one("#export-fetch", Checkbox).value}
        path, run_id = self.pada.store_path, self.run_id

        def fn(report: Any, should_stop: Any, created: Any) -> Any:
            return export_run(path, run_id, report=report, verify=True, **kwargs)

        self.dismiss()
        self.pada.start_job(Job("export", f"export {run_id} ({fmt})", fn, run_id=run_id))
