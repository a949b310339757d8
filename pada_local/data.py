"""Read the dataset splits into `Example`s and check them before anything expensive runs.

Containers: JSON Lines (.jsonl, .json; a .json file may also hold one JSON array), CSV with a
header, Parquet and Hugging Face `save_to_disk` folders (both through `datasets`), and an
mlx-lm style folder (`data.dir`: train.jsonl, valid.jsonl, test.jsonl). Record shapes, detected
per file and stated ("read as Alpaca: 300 records"): chat `messages` (OpenAI / Hugging Face),
`prompt`/`completion`, Alpaca (`instruction`/`input`/`output`), ShareGPT (`conversations` of
`from`/`value`), or the fields named in `data.fields` (which then win over detection). A file
holds one shape. Reading stops at the first bad record with a `DataError` naming the file, the
line and the field: a split is used whole or not at all, so a typo never silently shrinks the data.
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
from .errors import DataError, PadaError
from .textsim import NgramIndex, normalize

ROLES = ("system", "user", "assistant")
SPLITS = ("train", "validation", "test")
# Split pairs checked for leaks: the first of each pair is indexed, the second queried.
PAIRS = (("train", "validation"), ("train", "test"), ("validation", "test"))
JSONL_SUFFIXES = (".jsonl", ".json")
SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
SHOWN = 3  # held-out items named in the cross-split duplicate warning
MLX_FILES = {"train": "train.jsonl", "validation": "valid.jsonl", "test": "test.jsonl"}
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


def _read_json_array(path: Path, text: str) -> Iterator[Record]:
    """A .json file holding one array of objects (Alpaca's own files look like this)."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno})") from None
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON array of objects, found {_json_type(items)}")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(f"{path}[{i}]: expected a JSON object, found {_json_type(item)}")
        yield i, item


def _read_parquet(path: Path) -> Iterator[Record]:
    import tempfile

    try:
        import datasets  # heavy import, only for this format
    except ImportError:
        hint = "install the `datasets` package"
        raise DataError(f"{path}: reading Parquet needs `datasets`", hint) from None
    from datasets.utils.tqdm import are_progress_bars_disabled

    bars = not are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        with tempfile.TemporaryDirectory() as cache:
            rows = list(datasets.Dataset.from_parquet(str(path), cache_dir=cache, keep_in_memory=True))
    except Exception as err:  # pyarrow and datasets raise many types for a damaged file
        raise DataError(f"{path}: cannot read the Parquet file ({err})") from None
    finally:
        if bars:
            datasets.enable_progress_bars()
    yield from enumerate(rows)


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
    if path.suffix.lower() == ".json" and (text := _read_text(path)).lstrip().startswith("["):
        return "item", _read_json_array(path, text)
    if path.suffix.lower() in JSONL_SUFFIXES:
        return "line", _read_jsonl(path)
    if path.suffix.lower() == ".parquet":
        return "row", _read_parquet(path)
    if path.suffix.lower() == ".csv":
        return "line", _read_csv(path)
    hint = "use .jsonl or .json (JSON Lines), .csv, .parquet, or a datasets save_to_disk folder"
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


# ---------------------------------------------------------------- splits and checks


@dataclass
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example] = field(default_factory=list)
    # How each split was read ("data.train: read as Alpaca: 300 records (path)"); empty for
    # splits built in code.
    notes: list[str] = field(default_factory=list)
    shapes: dict[str, str] = field(default_factory=dict)  # split -> a key of SHAPES


def load_splits(cfg: DataConfig) -> Splits:
    """All configured splits; a missing test split is an empty list."""
    notes: list[str] = []
    shapes: dict[str, str] = {}
    if cfg.dir is not None:
        _check_mlx_dir(cfg)
        notes.append(f"data.dir: an mlx-lm style folder ({cfg.dir})")

    def read(split: str) -> list[Example]:
        got = read_split(getattr(cfg, split), cfg.fields, split, cfg.limit)
        notes.append(got.note)
        shapes[split] = got.shape
        return got.examples

    train, validation = read("train"), read("validation")
    test = read("test") if cfg.test is not None else []
    return Splits(train=train, validation=validation, test=test, notes=notes, shapes=shapes)


def _check_mlx_dir(cfg: DataConfig) -> None:
    assert cfg.dir is not None
    if not cfg.dir.is_dir():
        raise DataError(f"{cfg.dir}: data.dir is not a folder",
                        hint="point data.dir at a folder holding train.jsonl and valid.jsonl")
    for split in ("train", "validation"):
        if not Path(getattr(cfg, split)).is_file():
            raise DataError(f"{cfg.dir}: no {MLX_FILES[split]} in the data.dir folder",
                            hint="an mlx-lm data folder holds train.jsonl, valid.jsonl and, "
                                 "optionally, test.jsonl")


@dataclass
class DataReport:
    counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how each split was read: said, not warned


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
    return DataReport(counts=counts, warnings=_duplicate_warnings(dups), duplicates=dups,
                      notes=list(splits.notes))


# ---------------------------------------------------------------- `pada data check`

PERCENTILES = (50, 90, 99)
LONG_TAIL = 3.0  # the longest example this many times the median is a long tail worth a warning
IMBALANCE = 3.0  # the commonest label this many times the rarest is worth a warning


@dataclass
class DataCheck:
    """What `pada data check` says: (level, text) lines, level info / warning / error."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    rendered: dict[str, str] = field(default_factory=dict)  # "training" / "evaluation" -> the text

    def add(self, level: str, text: str) -> None:
        self.lines.append((level, text))

    @property
    def exit_code(self) -> int:
        levels = {level for level, _ in self.lines}
        return 2 if "error" in levels else 1 if "warning" in levels else 0


def _percentile(values: list[int], q: int) -> int:
    ordered = sorted(values)
    return ordered[max(-(-q * len(ordered) // 100) - 1, 0)]  # nearest rank


def _in_split_duplicates(items: list[Example], split: str) -> str | None:
    first: dict[str, str] = {}
    repeats: list[tuple[str, str]] = []
    for ex in items:
        key = normalize(ex.full_input())
        if key in first:
            repeats.append((ex.id, first[key]))
        else:
            first[key] = ex.id
    if not repeats:
        return None
    shown = "; ".join(f"'{a}' repeats '{b}'" for a, b in repeats[:SHOWN])
    more = "; ..." if len(repeats) > SHOWN else ""
    return f"data.{split}: {len(repeats)} of {len(items)} inputs repeat an earlier one, e.g. {shown}{more}"


def _overlap_lines(dups: list[Duplicate]) -> list[str]:
    """One line per split pair with repeated inputs."""
    out = []
    for a, b in PAIRS:
        first: dict[str, Duplicate] = {}
        for dup in dups:
            if (dup[0], dup[2]) == (a, b):
                first.setdefault(dup[3], dup)
        if first:
            shown = "; ".join(_describe(d) for d in list(first.values())[:SHOWN])
            more = "; ..." if len(first) > SHOWN else ""
            out.append(f"overlap {a}/{b}: {len(first)} {b} items repeat a {a} input, e.g. {shown}{more}")
    return out


def _label_lines(cfg: Any, splits: Splits, check: DataCheck) -> None:
    from .scoring import normalize as label_norm

    labels = [label_norm(x) for x in cfg.task.scorer.labels or []]
    for split in SPLITS:
        items: list[Example] = getattr(splits, split)
        if not items:
            continue
        counts: dict[str, int] = {}
        for ex in items:
            key = label_norm(ex.output)
            counts[key] = counts.get(key, 0) + 1
        shown = ", ".join(f"{k} {v} ({100 * v / len(items):.0f}%)"
                          for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        check.add("info", f"data.{split} labels: {shown}")
        if split != "train":
            continue
        missing = [x for x in labels if x not in counts]
        if missing:
            check.add("warning", f"data.train has no example of the label(s) {', '.join(missing)}")
        elif len(counts) > 1 and max(counts.values()) >= IMBALANCE * min(counts.values()):
            top = max(counts, key=lambda k: counts[k])
            low = min(counts, key=lambda k: counts[k])
            check.add("warning", f"data.train labels are unbalanced: {top} {counts[top]} vs {low} "
                                 f"{counts[low]} ({counts[top] / counts[low]:.1f}x)")


def _length_lines(cfg: Any, splits: Splits, tokenizer: Any, check: DataCheck) -> None:
    from .backends.lengths import chat_ids, fit_examples
    from .prompts import student_messages
    from .train import training_examples

    examples = training_examples(cfg.task, splits.train, [])
    fit = fit_examples(tokenizer, examples, cfg.train.max_length)
    lengths = list(fit.lengths)
    summary = ", ".join(f"p{q} {_percentile(lengths, q)}" for q in PERCENTILES)
    check.add("info", f"data.train tokens (prompt + answer, the student's chat template): {summary}, "
                      f"max {max(lengths)}")
    median = _percentile(lengths, 50)
    if max(lengths) >= LONG_TAIL * max(median, 1):
        check.add("warning", f"data.train lengths have a long tail: the longest is {max(lengths)} tokens, "
                             f"{max(lengths) / max(median, 1):.1f}x the median ({median})")
    if fit.dropped_ids:
        from .backends.lengths import dropped_warning, suggest_max_length

        check.add("warning", dropped_warning(fit.dropped_ids, len(examples), cfg.train.max_length)
                  + f"; train.max_length={suggest_max_length(lengths)} keeps 99% of them")
    else:
        check.add("info", f"train.max_length={cfg.train.max_length} keeps every training example")
    for split in ("validation", "test"):
        items: list[Example] = getattr(splits, split)
        if items:
            prompts = [len(chat_ids(tokenizer, student_messages(cfg.task, ex.input, ex.system, ex.context),
                                    generation_prompt=True)) for ex in items]
            shown = ", ".join(f"p{q} {_percentile(prompts, q)}" for q in PERCENTILES)
            check.add("info", f"data.{split} prompt tokens: {shown}, max {max(prompts)}")
    ex = splits.train[0]
    prompt = list(student_messages(cfg.task, ex.input, ex.system, ex.context))
    full = [*prompt, {"role": "assistant", "content": ex.output}]
    check.rendered["training"] = tokenizer.apply_chat_template(full, tokenize=False)
    check.rendered["evaluation"] = tokenizer.apply_chat_template(prompt, tokenize=False,
                                                                 add_generation_prompt=True)
    check.rendered["example"] = f"{ex.id}, {ex.source}"


def _student_tokenizer(cfg: Any) -> Any:
    from . import models
    from .backends.lengths import _tokenizer

    return _tokenizer(models.tokenizer_source(models.resolve_student(cfg.models.student)))


def data_check(cfg: Any, tokenizer: Any = None) -> DataCheck:
    """Everything `pada data check` reports about a config's data, before any compute: per split
    the detected format and counts, labels, duplicates, overlaps, token lengths under the
    student's chat template, what train.max_length drops, and one example as the student sees it.
    `tokenizer`: the student's (None: read from the config's student, no model weights loaded)."""
    from .scoring import Scorer

    check = DataCheck()
    try:
        splits = load_splits(cfg.data)
        report = check_splits(splits, threshold=cfg.quality.dup_ngram)
    except DataError as err:
        check.add("error", str(err))
        return check
    for note in report.notes:
        check.add("info", note)
    check.add("info", "counts: " + ", ".join(f"{k} {v}" for k, v in report.counts.items()))
    scorer = Scorer(cfg.task.scorer)
    for split in SPLITS:
        items: list[Example] = getattr(splits, split)
        line = _in_split_duplicates(items, split)
        if line is not None:
            check.add("warning", line)
        try:
            if items:
                scorer.check_references([(ex.id, ex.output) for ex in items], f"data.{split}")
        except PadaError as err:
            check.add("error", str(err))
    overlaps = _overlap_lines(report.duplicates)
    for line in overlaps:
        check.add("warning", line)
    if not overlaps:
        check.add("info", "overlaps: no input repeated across train, validation and test")
    if cfg.task.scorer.kind == "label":
        _label_lines(cfg, splits, check)
    try:
        tokenizer = _student_tokenizer(cfg) if tokenizer is None else tokenizer
    except Exception as err:  # a missing model (PadaError) or a tokenizer transformers cannot read
        check.add("warning", f"token lengths not checked: the student's tokenizer is not readable ({err})")
        return check
    _length_lines(cfg, splits, tokenizer, check)
    return check
