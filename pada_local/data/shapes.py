"""Record shapes: one raw record as an `Example`, and one split file read whole.

Shapes, detected per file and stated ("read as Alpaca: 300 records"): chat `messages` (OpenAI /
Hugging Face), `prompt`/`completion`, Alpaca (`instruction`/`input`/`output`), ShareGPT
(`conversations` of `from`/`value`), or the fields named in `data.fields` (which then win over
detection). A file holds one shape. Reading stops at the first bad record with a `DataError`
naming the file, the line and the field: a split is used whole or not at all, so a typo never
silently shrinks the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import FieldMap
from ..errors import DataError
from ..records import Example, Turn
from .containers import _json_type, _records, _where

ROLES = ("system", "user", "assistant")
# Record shapes, as stated to the user.
SHAPES = {
    "messages": "chat messages",
    "prompt": "prompt/completion",
    "fields": "mapped fields",
    "alpaca": "Alpaca",
    "sharegpt": "ShareGPT",
}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system"}


def _as_text(value: Any, where: str, name: str, answer: bool = False) -> str:
    """A field's text; in the answer, numbers and booleans are accepted as their JSON text."""
    if isinstance(value, str):
        return value
    if answer and isinstance(value, bool):
        return "true" if value else "false"  # as written in the file, not Python's "True"
    if answer and isinstance(value, (int, float)):
        return str(value)
    raise DataError(f"{where}: field '{name}' must be a string, found {_json_type(value)}")


def _nonempty(text: str, where: str, name: str) -> str:
    if not text.strip():
        raise DataError(f"{where}: empty value for field '{name}'", hint="remove the record or fill it in")
    return text


def _missing(record: dict[str, Any], name: str, where: str, config_key: str) -> DataError:
    found = ", ".join(record) or "none"
    role = "answer" if config_key.endswith("output") else "input"
    hint = f"set {config_key} to the field that holds the {role}: --set {config_key}=NAME"
    return DataError(f"{where}: missing field '{name}' (found: {found})", hint)


def _field(record: dict[str, Any], name: str, where: str, config_key: str) -> str:
    if name not in record:
        raise _missing(record, name, where, config_key)
    answer = config_key == "data.fields.output"
    return _nonempty(_as_text(record[name], where, name, answer), where, name)


def _from_fields(record: dict[str, Any], where: str, fields: FieldMap) -> tuple[str, str]:
    # Only the configured names: a mapping that does not fit the file is the user's mistake to
    # hear about, not something to paper over by guessing other fields.
    text = _field(record, fields.input, where, "data.fields.input")
    return text, _field(record, fields.output, where, "data.fields.output")


def _turns(messages: Any, where: str) -> list[Turn]:
    """(role, content) pairs of a `messages` list, each checked."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: field 'messages' must be a non-empty list of {{role, content}}")
    turns = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise DataError(f"{where}: field 'messages[{i}]' must be an object, found {_json_type(msg)}")
        if msg.get("role") not in ROLES:
            expected = ", ".join(ROLES)
            raise DataError(f"{where}: field 'messages[{i}].role' is {msg.get('role')!r}; "
                            f"expected {expected}")
        turns.append((msg["role"], _as_text(msg.get("content"), where, f"messages[{i}].content")))
    return turns


def _sharegpt_turns(conversations: Any, where: str) -> list[Turn]:
    """(role, content) pairs of a ShareGPT `conversations` list: human, gpt and system turns."""
    if not isinstance(conversations, list) or not conversations:
        raise DataError(f"{where}: field 'conversations' must be a non-empty list of {{from, value}}")
    turns = []
    for i, msg in enumerate(conversations):
        if not isinstance(msg, dict):
            found = _json_type(msg)
            raise DataError(f"{where}: field 'conversations[{i}]' must be an object, found {found}")
        role = SHAREGPT_ROLES.get(str(msg.get("from")))
        if role is None:
            raise DataError(f"{where}: field 'conversations[{i}].from' is {msg.get('from')!r}; "
                            "expected human, gpt or system")
        turns.append((role, _as_text(msg.get("value"), where, f"conversations[{i}].value")))
    return turns


def _from_messages(messages: Any, where: str) -> tuple[str | None, tuple[Turn, ...], str, str]:
    """(system, context, input, output): the final assistant turn answers the last user turn
    before it, and every turn before that user turn is kept as context."""
    return _from_turns(_turns(messages, where), where, "messages", "content", "assistant message")


def _from_turns(turns: list[Turn], where: str, name: str, content: str,
                answer: str) -> tuple[str | None, tuple[Turn, ...], str, str]:
    last = max((i for i, (role, _) in enumerate(turns) if role == "assistant"), default=None)
    if last is None:
        hint = f"the final {answer} is the reference answer"
        raise DataError(f"{where}: field '{name}' has no {answer}", hint)
    user = max((i for i, (role, _) in enumerate(turns[:last]) if role == "user"), default=None)
    if user is None:
        raise DataError(f"{where}: field '{name}' has no user message before the final {answer}")
    _check_kept(turns, user, last, where, name)
    system = next((text for role, text in turns if role == "system"), None)
    context = tuple(turn for turn in turns[:user] if turn[0] != "system")
    text = _nonempty(turns[user][1], where, f"{name}[{user}].{content}")
    return system, context, text, _nonempty(turns[last][1], where, f"{name}[{last}].{content}")


def _check_kept(turns: list[Turn], user: int, last: int, where: str, name: str = "messages") -> None:
    """Every turn must have a place in the example: one system prompt, the context, the last user
    turn and its answer. A turn that fits none would be dropped without a word, so it is an error."""
    systems = [i for i, (role, _) in enumerate(turns) if role == "system"]
    if len(systems) > 1:
        raise DataError(f"{where}: field '{name}[{systems[1]}]' is a second system message",
                        hint="merge the system messages into the first one")
    between = "between the last user message and the final assistant message"
    for i, (role, _) in enumerate(turns):
        if role != "system" and (user < i < last or i > last):
            place = "after the final assistant message" if i > last else between
            raise DataError(f"{where}: field '{name}[{i}]' ({role}) comes {place}; it would be lost",
                            hint="end each conversation with a user message and the assistant's answer")


def _record_id(record: dict[str, Any], fields: FieldMap, where: str, default: str) -> str:
    value = record.get(fields.id) if fields.id else None
    if value is None or value == "":
        return default  # ids are optional; numbered ids are stable while the file is unchanged
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        found = _json_type(value)
        raise DataError(f"{where}: field '{fields.id}' must be a string or integer, found {found}")
    return str(value)


def _mapped(fields: FieldMap) -> bool:
    """Whether data.fields names other fields than the defaults: then they win over detection."""
    defaults = FieldMap()
    return (fields.input, fields.output) != (defaults.input, defaults.output)


def _has(record: dict[str, Any], name: str) -> bool:
    return record.get(name) is not None  # a saved dataset's row holds every column, None where unset


def _shape(record: dict[str, Any], fields: FieldMap, where: str) -> str:
    """Which shape a record has (a key of SHAPES), or a DataError for a record with no answer."""
    if "messages" in record:
        return "messages"
    if _mapped(fields):
        return "fields"
    if _has(record, "conversations"):
        return "sharegpt"
    if _has(record, "instruction"):
        return "alpaca"
    if fields.input in record or fields.output in record:
        return "prompt"
    if _has(record, "text"):
        found = ", ".join(record)
        raise DataError(f"{where}: a plain 'text' record has no answer to score (found: {found})",
                        hint="give each record an input and its reference answer: prompt/completion, "
                        "messages ending in an assistant turn, Alpaca instruction/output, ShareGPT "
                        "conversations, or name the fields in data.fields")
    return "prompt"  # reported as its missing field, with the data.fields hint


def _from_alpaca(record: dict[str, Any], where: str) -> tuple[str | None, str, str]:
    """(system, input, output): a non-empty `input` follows the instruction after a blank line."""
    instruction = _nonempty(_as_text(record["instruction"], where, "instruction"), where, "instruction")
    extra = record.get("input")
    extra = "" if extra is None else _as_text(extra, where, "input")
    text = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    if not _has(record, "output"):
        found = ", ".join(record)
        raise DataError(f"{where}: missing field 'output' (found: {found})",
                        hint="an Alpaca record holds instruction, input (optional) and output")
    answer = _nonempty(_as_text(record["output"], where, "output", answer=True), where, "output")
    system = record.get("system")
    system = None if system is None or system == "" else _as_text(system, where, "system")
    return system, text, answer


def _to_example(record: dict[str, Any], where: str, fields: FieldMap, split: str, n: int,
                shape: str | None = None) -> Example:
    system: str | None = None
    context: tuple[Turn, ...] = ()
    shape = shape or _shape(record, fields, where)
    if shape == "messages":
        system, context, text, answer = _from_messages(record["messages"], where)
    elif shape == "sharegpt":
        turns = _sharegpt_turns(record["conversations"], where)
        system, context, text, answer = _from_turns(turns, where, "conversations", "value", "gpt turn")
    elif shape == "alpaca":
        system, text, answer = _from_alpaca(record, where)
    else:
        text, answer = _from_fields(record, where, fields)
    ex_id = _record_id(record, fields, where, f"{split}-{n}")
    return Example(ex_id, text, answer, system=system, split=split, source=where, context=context)


@dataclass(frozen=True)
class SplitFile:
    """One split as read: its examples and the shape they were read as."""

    examples: list[Example]
    shape: str  # a key of SHAPES
    path: Path

    @property
    def note(self) -> str:
        split = self.examples[0].split if self.examples else "?"
        return f"data.{split}: read as {SHAPES[self.shape]}: {len(self.examples)} records ({self.path})"


def read_split(path: Path, fields: FieldMap, split: str, limit: int | None = None) -> SplitFile:
    """Every example of one split (the first `limit`) and its detected shape, or a DataError at
    the first bad record. A file holds one shape: the first record of another one is an error."""
    path = Path(path)
    unit, records = _records(path, split)
    examples: list[Example] = []
    first: dict[str, int] = {}
    shape: tuple[str, int] | None = None  # the file's shape and where it was first seen
    for n, record in records:
        where = _where(path, unit, n)
        this = _shape(record, fields, where)
        if shape is None:
            shape = (this, n)
        elif this != shape[0]:
            raise DataError(f"{where}: this record is {SHAPES[this]}, but the file's records before it "
                            f"are {SHAPES[shape[0]]} (from {unit} {shape[1]}); a file holds one format",
                            hint="convert the records to one shape, or split them into files")
        ex = _to_example(record, where, fields, split, len(examples), this)
        if ex.id in first:
            hint = "ids must be unique within a split"
            raise DataError(f"{where}: duplicate id '{ex.id}' (first at {unit} {first[ex.id]})", hint)
        first[ex.id] = n
        examples.append(ex)
        if len(examples) == limit:
            break  # stop reading: records past the limit are never looked at
    if not examples or shape is None:
        raise DataError(f"{path}: no examples", hint=f"data.{split} must hold at least one record")
    return SplitFile(examples, shape[0], path)


def load_split(path: Path, fields: FieldMap, split: str, limit: int | None = None) -> list[Example]:
    """Every example of one split (the first `limit`), or a DataError at the first bad record."""
    return read_split(path, fields, split, limit).examples
