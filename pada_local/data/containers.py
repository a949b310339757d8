"""File containers: the raw records of one split file, each with where it was read.

JSON Lines (.jsonl, .json; a .json file may also hold one JSON array), CSV with a header,
Parquet and Hugging Face `save_to_disk` folders (both through `datasets`). What a record means
(its shape) is shapes.py's business; here a bad file stops with a `DataError` naming the file
and the line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError

JSONL_SUFFIXES = (".jsonl", ".json")
SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
Record = tuple[int, dict[str, Any]]  # (line number, or row index for saved datasets; record)


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

