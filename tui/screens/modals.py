"""Small modal dialogs: an error (message + hint, never a traceback) and a yes/no question."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static


def describe(error: BaseException) -> tuple[str, str | None]:
    """(message, hint) for any exception: PadaError carries both; anything else is a bug,
    shown as its type and text with a hint, so the screen never fills with a traceback."""
    message = getattr(error, "message", None)
    if message is not None:
        return message, getattr(error, "hint", None)
    return f"{type(error).__name__}: {error}", "this looks like a bug in pada-local; please report it"


class ErrorModal(ModalScreen[None]):
    """What went wrong and what to do about it."""

    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close")]

    def __init__(self, error: BaseException, title: str = "Error") -> None:
        super().__init__()
        self.message, self.hint = describe(error)
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="error-dialog"):
            yield Label(self.title_text, id="dialog-title")
            yield Static(self.message, id="error-message", markup=False)
            if self.hint:
                yield Static(f"hint: {self.hint}", id="error-hint", markup=False)
            with Horizontal(id="dialog-buttons"):
                yield Button("OK", variant="primary", id="ok")

    def on_button_pressed(self, _: Button.Pressed) -> None:
        self.dismiss()


class ConfirmModal(ModalScreen[bool]):
    """A yes/no question; dismisses with True for yes."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question, self.yes = question, yes

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.question, id="confirm-question", markup=False)
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # the safe answer is the default

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ExportModal(ModalScreen["tuple[str, str] | None"]):
    """Where and in which format to export the samples shown: dismisses with (format, folder),
    the folder empty for the default, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    FORMATS = (("chat messages JSONL", "messages"), ("Alpaca JSONL", "alpaca"),
               ("ShareGPT JSONL", "sharegpt"), ("datasets save_to_disk folder", "hf"))

    def __init__(self, what: str, default_folder: str) -> None:
        super().__init__()
        self.what, self.default_folder = what, default_folder

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Export {self.what}", id="dialog-title")
            yield Select[str](self.FORMATS, id="export-format", value="messages", allow_blank=False)
            yield Input(placeholder=self.default_folder, id="export-folder")
            with Horizontal(id="dialog-buttons"):
                yield Button("Export", variant="primary", id="export")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export":
            self._export()
        else:
            self.dismiss(None)

    def on_input_submitted(self, _: Input.Submitted) -> None:
        self._export()

    def _export(self) -> None:
        fmt = self.query_one("#export-format", Select).value
        self.dismiss((str(fmt), self.query_one("#export-folder", Input).value.strip()))

    def action_cancel(self) -> None:
        self.dismiss(None)
