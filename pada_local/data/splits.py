"""The splits of a run: read from the config, checked before anything expensive runs.

An empty validation split is an error (it drives every decision), and so is a held-out split
that repeats an earlier one whole; inputs repeated across splits are a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import DataConfig
from ..errors import DataError
from ..records import Example
from ..textsim import NgramIndex, normalize
from .shapes import read_split

SPLITS = ("train", "validation", "test")
# Split pairs checked for leaks: the first of each pair is indexed, the second queried.
PAIRS = (("train", "validation"), ("train", "test"), ("validation", "test"))
SHOWN = 3  # held-out items named in the cross-split duplicate warning
MLX_FILES = {"train": "train.jsonl", "validation": "valid.jsonl", "test": "test.jsonl"}
Duplicate = tuple[str, str, str, str, float]  # (split_a, id_a, split_b, id_b, score)


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
