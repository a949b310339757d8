"""The new-run form: the config's everyday fields over a template (the demo, or a YAML file),
validated in place by the config's own model, then run by the app in a worker thread."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

from pada_local.config import Config, ScorerKind

from ..base import PadaScreen


@dataclass(frozen=True)
class Field:
    key: str  # dotted path in the config
    label: str
    kind: str = "text"  # text, optional, path, int, optional-int, list, or select
    options: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return "f-" + self.key.replace(".", "-")


FIELDS: tuple[Field, ...] = (
    Field("name", "run name"),
    Field("models.teacher", "teacher (name or .gguf)"),
    Field("models.student", "student (name, HF folder, .gguf)"),
    Field("models.judge", "judge (blank: the teacher)", "optional"),
    Field("data.train", "training set file", "path"),
    Field("data.validation", "validation set file", "path"),
    Field("data.test", "test set (sealed; optional)", "optional-path"),
    Field("task.name", "task name"),
    Field("task.description", "task description"),
    Field("task.system_prompt", "student system prompt", "optional"),
    Field("task.answer_format", "answer format"),
    Field("task.scorer.kind", "scorer", "select", get_args(ScorerKind)),
    Field("task.scorer.labels", "labels (comma-separated)", "list"),
    Field("task.scorer.pattern", "regex (one group)", "optional"),
    Field("task.scorer.rubric", "judge rubric", "optional"),
    Field("task.verifier", "verifier", "select", ("none", "skills")),
    Field("loop.strategy", "strategy", "select", ("pada", "llm2llm", "paraphrase", "none")),
    Field("loop.rounds", "rounds after round 0", "int"),
    Field("loop.budget", "samples per round (blank: |train|)", "optional-int"),
    Field("train.max_steps", "max train steps (blank: epochs)", "optional-int"),
)
BY_KEY = {f.key: f for f in FIELDS}


def get_in(raw: dict[str, Any], key: str) -> Any:
    node: Any = raw
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def set_in(raw: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def to_text(f: Field, value: Any) -> str:
    if value is None:
        return "none" if f.key == "task.verifier" else ""
    return ", ".join(value) if f.kind == "list" else str(value)


def from_text(f: Field, text: str) -> Any:
    """Form text to a config value; blanks of optional fields become None. A bad required
    value is passed on as text so the config model reports it where it belongs."""
    text = text.strip()
    if f.kind in ("optional", "optional-path", "optional-int", "list") and not text:
        return None
    if f.key == "task.verifier" and text == "none":
        return None
    if f.kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    if f.kind in ("int", "optional-int"):
        return int(text) if text.lstrip("-").isdigit() else text
    return text


def field_errors(raw: dict[str, Any]) -> dict[str, str]:
    """{field key or '' for elsewhere: message} from the config model and the file system."""
    from pydantic import ValidationError

    errors: dict[str, str] = {}
    try:
        Config.model_validate(raw)
    except ValidationError as err:
        for e in err.errors():
            key = _field_for(".".join(str(p) for p in e["loc"]))
            msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
            errors.setdefault(key, msg if key else f"{'.'.join(map(str, e['loc']))}: {msg}")
    for key in ("data.train", "data.validation", "data.test"):
        value = get_in(raw, key)
        if isinstance(value, str) and value and not Path(value).expanduser().exists():
            errors.setdefault(key, f"no such file or folder: {value}")
    return errors


def _field_for(loc: str) -> str:
    """The form field an error location belongs to ('' when the form has no such field)."""
    if loc in BY_KEY:
        return loc
    if loc + ".kind" in BY_KEY:  # a scorer-level rule ("kind 'label' needs 'labels'")
        return loc + ".kind"
    return next((k for k in BY_KEY if loc.startswith(k + ".")), "")


def demo_template() -> dict[str, Any]:
    """The demo config, resolved (absolute data paths), as the form's starting point."""
    from pada_local.config import dump, load
    from pada_local.tasks import DEMO_CONFIG

    return dump(load(DEMO_CONFIG))


class NewRunScreen(PadaScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+s", "start", "Start run"),
        Binding("ctrl+t", "check", "Check data+models"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.template: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="load-bar", classes="toolbar"):
            yield Input(placeholder="YAML config to start from (blank: the demo)", id="load-path",
                        compact=True)
            yield Button("Load", id="load", compact=True)
        with VerticalScroll(id="form"):
            yield Label("", id="e-general", classes="error")
            for f in FIELDS:
                with Horizontal(classes="field"):
                    yield Label(f.label, classes="field-label")
                    with Vertical(classes="field-input"):
                        yield self._widget(f)
                        yield Label("", id="e-" + f.id[2:], classes="error")
            yield Static("", id="check-result")
        with Horizontal(id="form-buttons"):
            yield Button("Start run", variant="success", id="start", compact=True)
            yield Button("Check data + models", id="check", compact=True)
            yield Button("Cancel", id="cancel", compact=True)
        yield Footer(compact=True)

    @staticmethod
    def _widget(f: Field) -> Widget:
        if f.kind == "select":
            return Select([(o, o) for o in f.options], id=f.id, allow_blank=False, compact=True)
        kind: Literal["integer", "text"] = "integer" if f.kind in ("int", "optional-int") else "text"
        return Input(id=f.id, type=kind, compact=True)

    def on_mount(self) -> None:
        defaults = self.pada.new_run_defaults
        try:
            self.template = copy.deepcopy(defaults) if defaults is not None else demo_template()
        except Exception as err:  # noqa: BLE001 - an empty form is still usable; say why
            self.template = {}
            self.pada.show_error(err, "could not load the demo config")
        self.fill(self.template)
        self.query_one("#load-path", Input).focus()  # top of the form; tab walks down the fields

    def fill(self, raw: dict[str, Any]) -> None:
        for f in FIELDS:
            widget = self.query_one(f"#{f.id}")
            text = to_text(f, get_in(raw, f.key))
            if isinstance(widget, Select):
                widget.value = text if text in f.options else f.options[0]
            elif isinstance(widget, Input):
                widget.value = text
        self.validate()

    # ------------------------------------------------------------------ validation

    def raw(self) -> dict[str, Any]:
        """The template with the form's values laid over it, plus this store's paths."""
        raw = copy.deepcopy(self.template)
        for f in FIELDS:
            set_in(raw, f.key, from_text(f, self._text(f)))
        store = self.pada.store_path
        raw["store"], raw["workdir"] = str(store), str(store.parent)
        return raw

    def _text(self, f: Field) -> str:
        """A field's widget value as text (every field is an Input or a Select)."""
        widget = self.query_one(f"#{f.id}")
        return str(widget.value) if isinstance(widget, (Input, Select)) else ""

    def validate(self) -> dict[str, str]:
        errors = field_errors(self.raw())
        for f in FIELDS:
            self._show(f"#e-{f.id[2:]}", errors.get(f.key, ""))
        self._show("#e-general", errors.get("", ""))
        self.query_one("#start", Button).disabled = bool(errors)
        return errors

    def _show(self, selector: str, message: str) -> None:
        label = self.query_one(selector, Label)
        label.update(Text(message))
        label.display = bool(message)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "load-path":
            self.validate()

    def on_select_changed(self, _: Select.Changed) -> None:
        self.validate()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "load-path":
            self.load_yaml(event.value)

    # ------------------------------------------------------------------ actions

    def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {"start": self.action_start, "check": self.action_check, "cancel": self.app.pop_screen,
                   "load": lambda: self.load_yaml(self.query_one("#load-path", Input).value)}
        actions[event.button.id or "cancel"]()

    def load_yaml(self, path: str) -> None:
        from pada_local.config import dump, load

        try:
            self.template = dump(load(Path(path).expanduser())) if path.strip() else demo_template()
        except Exception as err:  # noqa: BLE001 - PadaError with a hint, or a bug: both go to a modal
            self.pada.show_error(err, "could not load that config")
            return
        self.fill(self.template)
        self.notify(f"loaded {path.strip() or 'the demo config'}")

    def config(self) -> Any:
        """A validated Config from the form, or None (errors are on screen)."""
        from pada_local.config import from_dict

        errors = self.validate()
        if errors:
            first = next((f for f in FIELDS if f.key in errors), None)
            if first is not None:
                self.query_one(f"#{first.id}").focus()
            self.notify("fix the fields marked in red first", severity="error")
            return None
        try:
            return from_dict(self.raw(), Path.cwd(), "new-run form")
        except Exception as err:  # noqa: BLE001
            self.pada.show_error(err)
            return None

    def action_start(self) -> None:
        cfg = self.config()
        if cfg is not None:
            self.app.pop_screen()
            self.pada.start_run(cfg)

    def action_check(self) -> None:
        cfg = self.config()
        if cfg is not None:
            self._show_check("checking data and models…")
            self._preflight(cfg)

    @work(thread=True, exclusive=True, group="preflight", exit_on_error=False)
    def _preflight(self, cfg: Any) -> None:
        # Reads every data file and resolves the models (none is loaded): seconds, not minutes.
        from pada_local.run import loop

        try:
            p = loop.preflight(cfg)
        except Exception as err:  # noqa: BLE001
            from .modals import describe

            message, hint = describe(err)
            text = f"✗ {message}" + (f"\n  hint: {hint}" if hint else "")
        else:
            s = p.splits
            text = (f"✓ data: {len(s.train)} train, {len(s.validation)} validation, {len(s.test)} test "
                    f"items; trainer {p.trainer}; models found")
            text += "".join(f"\n  warning: {w}" for w in p.warnings)
        self.app.call_from_thread(self._show_check, text)

    def _show_check(self, text: str) -> None:
        if self.is_attached:  # the user may have left the form meanwhile
            result = self.query_one("#check-result", Static)
            result.update(Text(text))
            result.scroll_visible()
