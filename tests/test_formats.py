"""The common dataset formats, written here by hand, read to the same examples (no models)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pada_local.config import DataConfig, FieldMap, from_dict
from pada_local.data.shapes import read_split
from pada_local.data.splits import check_splits, load_splits
from pada_local.errors import ConfigError, DataError

FIELDS = FieldMap()
# (system, context, input, output) of each example, the same in every format below.
SAME = [
    (None, (), "Name a colour.\n\nOne word.", "red"),
    (None, (), "Say hi.", "hi"),
]
LINES = {
    "alpaca.jsonl": [
        '{"instruction": "Name a colour.", "input": "One word.", "output": "red"}',
        '{"instruction": "Say hi.", "input": "", "output": "hi"}',
    ],
    "chat.jsonl": [
        '{"messages": [{"role": "user", "content": "Name a colour.\\n\\nOne word."}, '
        '{"role": "assistant", "content": "red"}]}',
        '{"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi"}]}',
    ],
    "sharegpt.jsonl": [
        '{"conversations": [{"from": "human", "value": "Name a colour.\\n\\nOne word."}, '
        '{"from": "gpt", "value": "red"}]}',
        '{"conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "hi"}]}',
    ],
    "pc.jsonl": [
        '{"prompt": "Name a colour.\\n\\nOne word.", "completion": "red"}',
        '{"prompt": "Say hi.", "completion": "hi"}',
    ],
}
SHAPE_OF = {"alpaca.jsonl": "alpaca", "chat.jsonl": "messages", "sharegpt.jsonl": "sharegpt",
            "pc.jsonl": "prompt"}


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def seen(path: Path, fields: FieldMap = FIELDS) -> list[tuple[object, ...]]:
    return [(e.system, e.context, e.input, e.output) for e in read_split(path, fields, "train").examples]


def error_of(path: Path, fields: FieldMap = FIELDS) -> str:
    with pytest.raises(DataError) as info:
        read_split(path, fields, "train")
    return str(info.value)


@pytest.mark.parametrize("name", sorted(LINES))
def test_each_jsonl_format_reads_to_the_same_examples(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, LINES[name])
    got = read_split(path, FIELDS, "train")
    assert got.shape == SHAPE_OF[name] and seen(path) == SAME
    assert got.note.startswith("data.train: read as ") and ": 2 records" in got.note


def test_alpaca_note_and_json_array(tmp_path: Path) -> None:
    path = tmp_path / "alpaca_data.json"  # Alpaca's own release is one JSON array
    path.write_text('[\n  {"instruction": "Name a colour.", "input": "One word.", "output": "red"},\n'
                    '  {"instruction": "Say hi.", "input": "  ", "output": "hi"}\n]\n')
    got = read_split(path, FIELDS, "train")
    assert got.note == f"data.train: read as Alpaca: 2 records ({path})"
    assert seen(path) == SAME and got.examples[1].source == f"{path}[1]"


def test_csv_alpaca(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerows([["instruction", "input", "output"], ["Name a colour.", "One word.", "red"],
                      ["Say hi.", "", "hi"]])
    assert seen(path) == SAME


def test_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"instruction": ["Name a colour.", "Say hi."], "input": ["One word.", ""],
                             "output": ["red", "hi"]}), str(path))
    got = read_split(path, FIELDS, "train")
    assert got.shape == "alpaca" and seen(path) == SAME and got.examples[0].source == f"{path}[0]"
    chat = tmp_path / "chat.parquet"
    pq.write_table(pa.table({"messages": [[{"role": "user", "content": "Say hi."},
                                           {"role": "assistant", "content": "hi"}]]}), str(chat))
    assert seen(chat) == SAME[1:]


def test_sharegpt_multi_turn_and_system(tmp_path: Path) -> None:
    convo = [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "first"},
             {"from": "gpt", "value": "one"}, {"from": "human", "value": "second"},
             {"from": "gpt", "value": "two"}]
    path = write(tmp_path / "s.jsonl", [json.dumps({"id": "c1", "conversations": convo})])
    (ex,) = read_split(path, FIELDS, "train").examples
    assert (ex.id, ex.system, ex.context, ex.input, ex.output) == (
        "c1", "Be brief.", (("user", "first"), ("assistant", "one")), "second", "two")


def test_sharegpt_errors_name_the_field(tmp_path: Path) -> None:
    bad_role = [{"from": "bot", "value": "x"}]
    path = write(tmp_path / "s.jsonl", [json.dumps({"conversations": bad_role})])
    assert f"{path}:1: field 'conversations[0].from' is 'bot'" in error_of(path)
    no_answer = [{"from": "human", "value": "x"}]
    path = write(tmp_path / "t.jsonl", [json.dumps({"conversations": no_answer})])
    assert f"{path}:1: field 'conversations' has no gpt turn" in error_of(path)
    empty = [{"from": "human", "value": "x"}, {"from": "gpt", "value": " "}]
    path = write(tmp_path / "u.jsonl", [json.dumps({"conversations": empty})])
    assert f"{path}:1: empty value for field 'conversations[1].value'" in error_of(path)


def test_alpaca_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", ['{"instruction": "x", "input": ""}'])
    assert f"{path}:1: missing field 'output'" in error_of(path)
    path = write(tmp_path / "b.jsonl", ['{"instruction": "x", "input": 3, "output": "y"}'])
    assert f"{path}:1: field 'input' must be a string, found number" in error_of(path)


def test_mixed_shapes_name_the_first_line_of_the_second(tmp_path: Path) -> None:
    path = write(tmp_path / "m.jsonl", [LINES["pc.jsonl"][0], "", LINES["pc.jsonl"][1],
                                        LINES["alpaca.jsonl"][0], LINES["chat.jsonl"][0]])
    msg = error_of(path)
    assert (f"{path}:4: this record is Alpaca, but the file's records before it are prompt/completion "
            "(from line 1)") in msg


def test_plain_text_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", ['{"text": "Once upon a time"}'])
    msg = error_of(path)
    assert f"{path}:1: a plain 'text' record has no answer to score" in msg


def test_explicit_fields_win_over_detection(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", ['{"instruction": "Say hi.", "input": "", "output": "hi", "q": "Q"}'])
    got = read_split(path, FieldMap(input="q", output="output"), "train")
    assert got.shape == "fields" and (got.examples[0].input, got.examples[0].output) == ("Q", "hi")


def test_mlx_folder(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    write(folder / "train.jsonl", LINES["pc.jsonl"])
    write(folder / "valid.jsonl", ['{"prompt": "Say bye.", "completion": "bye"}'])
    cfg = from_dict({"data": {"dir": "data"}}, tmp_path)
    assert cfg.data.train == folder / "train.jsonl" and cfg.data.test is None
    splits = load_splits(cfg.data)
    assert [e.output for e in splits.validation] == ["bye"] and splits.test == []
    report = check_splits(splits)
    assert report.notes[0] == f"data.dir: an mlx-lm style folder ({folder})"
    assert "data.validation: read as prompt/completion: 1 records" in report.notes[2]
    write(folder / "test.jsonl", ['{"prompt": "Say yes.", "completion": "yes"}'])
    cfg = from_dict({"data": {"dir": str(folder)}}, tmp_path)
    assert [e.output for e in load_splits(cfg.data).test] == ["yes"]
    # a saved config (split paths are the folder's own files) validates again
    again = from_dict({"data": cfg.data.model_dump(mode="json")}, Path("/"))
    assert again.data == cfg.data


def test_mlx_folder_cannot_be_combined_and_needs_its_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.dir cannot be combined with data.train"):
        from_dict({"data": {"dir": "data", "train": "x.jsonl"}}, tmp_path)
    (tmp_path / "data").mkdir()
    cfg = from_dict({"data": {"dir": "data"}}, tmp_path)
    with pytest.raises(DataError, match="no train.jsonl in the data.dir folder"):
        load_splits(cfg.data)


def test_existing_shapes_keep_no_dir() -> None:
    cfg = DataConfig(train=Path("a.jsonl"), validation=Path("b.jsonl"))
    assert cfg.dir is None and cfg.test is None
