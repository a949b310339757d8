"""Read the dataset splits into `Example`s and check them before anything expensive runs.

Formats: JSON Lines (chat `messages`, `prompt`/`completion`, or the fields named in
`data.fields`), CSV with a header, and a Hugging Face `save_to_disk` folder. Reading stops at
the first bad record with a `DataError` naming the file, the line and the field: a split is
used whole or not at all, so a typo never silently shrinks the data.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import DataConfig, FieldMap
from .errors import DataError
from .textsim import NgramIndex, normalize

ROLES = ("system", "user", "assistant")
SPLITS = ("train", "validation", "test")
# Split pairs checked for leaks: the first of each pair is indexed, the second queried.
PAIRS = (("train", "validation"), ("train", "test"), ("validation", "test"))
JSONL_SUFFIXES = (".jsonl", ".json")
SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
SHOWN = 3  # held-out items named in the cross-split duplicate warning

Record = tuple[int, dict[str, Any]]  # (line number, or row index for saved datasets; record)
Duplicate = tuple[str, str, str, str, float]  # (split_a, id_a, split_b, id_b, score)
Turn = tuple[str, str]  # (role, content): a pair, not a dict, so an Example stays hashable


@dataclass(frozen=True)
class Example:
    id: str
    input: str  # the (last) user turn
    output: str  # the answer to it: the final assistant turn
    system: str | None = None
    split: str = "train"
    source: str = ""  # "file:line" (or "folder[row]"), for messages that point at the record
    # A conversation's turns before `input` (user and assistant, no system): the student sees
    # them in training and evaluation, the teacher in analysis. Empty for single-turn items.
    context: tuple[Turn, ...] = ()

    def full_input(self) -> str:
        """Every input turn's text (earlier turns, then the last user turn), for comparisons."""
        return "\n".join([*(content for _, content in self.context), self.input])


# ---------------------------------------------------------------- reading raw records


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # a BOM left by Windows editors is harmless
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text", hint="save the file as UTF-8") from None


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number" if isinstance(value, (int, float)) else type(value).__name__)


def _parse_json(line: str, path: Path, lineno: int) -> dict[str, Any]:
    hint = "each line must hold one JSON object (JSON Lines), e.g. {\"prompt\": ..., \"completion\": ...}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg}, column {err.colno})", hint) from None
    if not isinstance(record, dict):
        raise DataError(f"{path}:{lineno}: expected a JSON object, found {_json_type(record)}", hint)
    return record


def _read_jsonl(path: Path) -> Iterator[Record]:
    for lineno, line in enumerate(_read_text(path).split("\n"), 1):
        if line.strip():  # blank lines (a trailing newline, spacing) carry nothing
            yield lineno, _parse_json(line, path, lineno)


def _csv_rows(reader: csv.DictReader) -> Iterator[Record]:
    _ = reader.fieldnames  # read the header now, so the first record's line number is right
    start = reader.line_num + 1
    for row in reader:
        # Short rows give None (treated as empty); extra cells sit under the None key (dropped).
        yield start, {k: "" if v is None else v for k, v in row.items() if k is not None}
        start = reader.line_num + 1  # a quoted cell may span lines; report where the record starts


def _read_csv(path: Path) -> Iterator[Record]:
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    try:
        yield from _csv_rows(reader)
    except csv.Error as err:
        raise DataError(f"{path}:{reader.line_num}: not valid CSV ({err})") from None


def _load_saved(path: Path, split: str) -> Any:
    try:
        from datasets import Dataset, load_from_disk  # heavy import, only for this format
    except ImportError:
        hint: str | None = "install the `datasets` package"  # the split hint below may be None
        raise DataError(f"{path}: reading a save_to_disk folder needs `datasets`", hint) from None
    try:
        ds = load_from_disk(str(path))
    except Exception as err:  # datasets raises many types for a damaged folder
        raise DataError(f"{path}: cannot load the saved dataset ({err})") from None
    if not isinstance(ds, Dataset):
        names = list(ds.keys())
        hint = f"set data.{split} to one split's subfolder, e.g. {path / names[0]}" if names else None
        raise DataError(f"{path}: holds several splits ({', '.join(names)}); which one?", hint)
    return ds


def _read_saved(path: Path, split: str) -> Iterator[Record]:
    yield from enumerate(_load_saved(path, split))


def _records(path: Path, split: str) -> tuple[str, Iterator[Record]]:
    """The unit records are counted in ("line" or "row") and the records themselves."""
    if not path.exists():
        hint = f"check data.{split} (relative paths are resolved against the config file's folder)"
        raise DataError(f"{path}: file not found", hint)
    if path.is_dir():
        if not any((path / marker).is_file() for marker in SAVED_MARKERS):
            raise DataError(f"{path}: a folder, but not a `save_to_disk` dataset (no dataset_info.json)")
        return "row", _read_saved(path, split)
    if path.suffix.lower() in JSONL_SUFFIXES:
        return "line", _read_jsonl(path)
    if path.suffix.lower() == ".csv":
        return "line", _read_csv(path)
    hint = "use .jsonl or .json (JSON Lines), .csv, or a datasets save_to_disk folder"
    raise DataError(f"{path}: unknown file type '{path.suffix or '(none)'}'", hint)


def _where(path: Path, unit: str, n: int) -> str:
    return f"{path}:{n}" if unit == "line" else f"{path}[{n}]"


# ---------------------------------------------------------------- records to examples


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


def _from_messages(messages: Any, where: str) -> tuple[str | None, tuple[Turn, ...], str, str]:
    """(system, context, input, output): the final assistant turn answers the last user turn
    before it, and every turn before that user turn is kept as context."""
    turns = _turns(messages, where)
    last = max((i for i, (role, _) in enumerate(turns) if role == "assistant"), default=None)
    if last is None:
        hint = "the final assistant message is the reference answer"
        raise DataError(f"{where}: field 'messages' has no assistant message", hint)
    user = max((i for i, (role, _) in enumerate(turns[:last]) if role == "user"), default=None)
    if user is None:
        raise DataError(f"{where}: field 'messages' has no user message before the final assistant message")
    _check_kept(turns, user, last, where)
    system = next((text for role, text in turns if role == "system"), None)
    context = tuple(turn for turn in turns[:user] if turn[0] != "system")
    text = _nonempty(turns[user][1], where, f"messages[{user}].content")
    return system, context, text, _nonempty(turns[last][1], where, f"messages[{last}].content")


def _check_kept(turns: list[Turn], user: int, last: int, where: str) -> None:
    """Every turn must have a place in the example: one system prompt, the context, the last user
    turn and its answer. A turn that fits none would be dropped without a word, so it is an error."""
    systems = [i for i, (role, _) in enumerate(turns) if role == "system"]
    if len(systems) > 1:
        raise DataError(f"{where}: field 'messages[{systems[1]}]' is a second system message",
                        hint="merge the system messages into the first one")
    between = "between the last user message and the final assistant message"
    for i, (role, _) in enumerate(turns):
        if role != "system" and (user < i < last or i > last):
            place = "after the final assistant message" if i > last else between
            raise DataError(f"{where}: field 'messages[{i}]' ({role}) comes {place}; it would be lost",
                            hint="end each conversation with a user message and the assistant's answer")


def _record_id(record: dict[str, Any], fields: FieldMap, where: str, default: str) -> str:
    value = record.get(fields.id) if fields.id else None
    if value is None or value == "":
        return default  # ids are optional; numbered ids are stable while the file is unchanged
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        found = _json_type(value)
        raise DataError(f"{where}: field '{fields.id}' must be a string or integer, found {found}")
    return str(value)


def _to_example(record: dict[str, Any], where: str, fields: FieldMap, split: str, n: int) -> Example:
    system: str | None = None
    context: tuple[Turn, ...] = ()
    if "messages" in record:
        system, context, text, answer = _from_messages(record["messages"], where)
    else:
        text, answer = _from_fields(record, where, fields)
    ex_id = _record_id(record, fields, where, f"{split}-{n}")
    return Example(ex_id, text, answer, system=system, split=split, source=where, context=context)


def load_split(path: Path, fields: FieldMap, split: str, limit: int | None = None) -> list[Example]:
    """Every example of one split (the first `limit`), or a DataError at the first bad record."""
    path = Path(path)
    unit, records = _records(path, split)
    examples: list[Example] = []
    first: dict[str, int] = {}
    for n, record in records:
        where = _where(path, unit, n)
        ex = _to_example(record, where, fields, split, len(examples))
        if ex.id in first:
            hint = "ids must be unique within a split"
            raise DataError(f"{where}: duplicate id '{ex.id}' (first at {unit} {first[ex.id]})", hint)
        first[ex.id] = n
        examples.append(ex)
        if len(examples) == limit:
            break  # stop reading: records past the limit are never looked at
    if not examples:
        raise DataError(f"{path}: no examples", hint=f"data.{split} must hold at least one record")
    return examples


# ---------------------------------------------------------------- splits and checks


@dataclass
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example] = field(default_factory=list)


def load_splits(cfg: DataConfig) -> Splits:
    """All configured splits; a missing test split is an empty list."""

    def read(split: str) -> list[Example]:
        return load_split(getattr(cfg, split), cfg.fields, split, cfg.limit)

    test = read("test") if cfg.test is not None else []
    return Splits(train=read("train"), validation=read("validation"), test=test)


@dataclass
class DataReport:
    counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)


def cross_split_duplicates(splits: Splits, threshold: float = 0.8) -> list[Duplicate]:
    """Inputs repeated across splits, exactly or nearly (shingle Jaccard >= threshold). A
    conversation compares whole: two chats that only end on the same "Thanks!" differ."""
    indexes = {a: NgramIndex((ex.id, ex.full_input()) for ex in getattr(splits, a))
               for a in ("train", "validation")}
    found: list[Duplicate] = []
    for a, b in PAIRS:
        for ex in getattr(splits, b):
            hits = indexes[a].query(ex.full_input(), threshold)
            found.extend((a, key, b, ex.id, score) for key, score in hits)
    return found


def _file_of(examples: list[Example], split: str) -> str:
    """The file a split was read from: its items' source is "file:line" or "folder[row]"."""
    source = examples[0].source if examples else ""
    return re.sub(r"(:\d+|\[\d+\])$", "", source) or f"data.{split}"


def _check_not_copies(splits: Splits) -> None:
    """A held-out split whose every input is also in an earlier split measures nothing the model
    did not see: most likely data.validation or data.test names the wrong file."""
    for a, b in PAIRS:
        items: list[Example] = getattr(splits, b)
        seen = {normalize(ex.full_input()) for ex in getattr(splits, a)}
        if items and all(normalize(ex.full_input()) in seen for ex in items):
            raise DataError(f"{_file_of(items, b)}: the {b} split repeats the {a} split (every one of "
                            f"its {len(items)} inputs is also a {a} input)",
                            hint=f"point data.{b} at held-out examples, not at the {a} data")


def _describe(dup: Duplicate) -> str:
    a, id_a, b, id_b, score = dup
    kind = "same input as" if score >= 1.0 else f"near copy (similarity {score:.2f}) of"
    return f"{b} '{id_b}' ({kind} {a} '{id_a}')"


def _duplicate_warnings(dups: list[Duplicate]) -> list[str]:
    """One summary line: a warning per item buries everything else the run prints."""
    first: dict[tuple[str, str], Duplicate] = {}
    for dup in dups:
        first.setdefault((dup[2], dup[3]), dup)  # count each held-out item once
    if not first:
        return []
    shown = "; ".join(_describe(dup) for dup in list(first.values())[:SHOWN])
    more = "; ..." if len(first) > SHOWN else ""
    return [f"{len(first)} held-out items repeat an input of another split, e.g. {shown}{more}"]


def check_splits(splits: Splits, threshold: float = 0.8) -> DataReport:
    """Counts and leak warnings. An empty validation split is an error (it drives every decision),
    and so is a held-out split that repeats an earlier one whole."""
    if not splits.validation:
        raise DataError("the validation split is empty", hint="point data.validation at a file with examples")
    _check_not_copies(splits)
    dups = cross_split_duplicates(splits, threshold)
    counts = {name: len(getattr(splits, name)) for name in SPLITS}
    return DataReport(counts=counts, warnings=_duplicate_warnings(dups), duplicates=dups)
