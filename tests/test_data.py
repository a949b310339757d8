"""Dataset loading, its error messages, split checks, and the text-similarity helpers (no models)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pada_local.config import DataConfig, FieldMap
from pada_local.data.shapes import load_split
from pada_local.data.splits import Splits, check_splits, cross_split_duplicates, load_splits
from pada_local.errors import DataError
from pada_local.records import Example
from pada_local.textsim import NgramIndex, jaccard, normalize, shingles

FIELDS = FieldMap()


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def error_of(path: Path, fields: FieldMap = FIELDS, split: str = "train") -> str:
    with pytest.raises(DataError) as info:
        load_split(path, fields, split)
    return str(info.value)


def ex(id_: str, text: str, split: str = "train") -> Example:
    return Example(id=id_, input=text, output="x", split=split)


# ---------------------------------------------------------------- formats


def test_prompt_completion_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [{"id": "a", "prompt": "2+2?", "completion": "4"}, {"prompt": "3+3?", "completion": "6"}],
    )
    got = load_split(path, FIELDS, "train")
    assert got[0] == Example("a", "2+2?", "4", None, "train", f"{path}:1")
    assert got[1].id == "train-1" and got[1].output == "6" and got[1].source == f"{path}:2"


def test_chat_messages(tmp_path: Path) -> None:
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "two"},
    ]
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": msgs}, {"messages": msgs[1:3]}])
    first, second = load_split(path, FIELDS, "validation")
    assert (first.system, first.input, first.output) == ("Be brief.", "second", "two")
    assert (second.system, second.input, second.output) == (None, "first", "one")
    assert first.split == "validation" and first.id == "validation-0"


def test_field_mapping_and_json_suffix(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.json", [{"uid": 7, "question": "q?", "answer": 42, "flag": True}])
    got = load_split(path, FieldMap(input="question", output="answer", id="uid"), "train")
    assert got == [Example("7", "q?", "42", None, "train", f"{path}:1")]


def test_answer_booleans_and_floats_become_text(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl", [{"prompt": "a", "completion": True}, {"prompt": "b", "completion": 1.5}]
    )
    assert [e.output for e in load_split(path, FIELDS, "train")] == ["true", "1.5"]


def test_configured_mapping_that_does_not_fit_is_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "completion": "c"}])
    with pytest.raises(DataError, match=r"(?s)d.jsonl:1: missing field 'question'.*data.fields.input"):
        load_split(path, FieldMap(input="question", output="answer"), "train")


def test_no_id_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": "z", "prompt": "p", "completion": "c"}])
    assert load_split(path, FieldMap(id=None), "test")[0].id == "test-0"


def test_blank_lines_skipped_and_line_numbers_kept(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('\n{"prompt": "a", "completion": "b"}\n\n{"prompt": "c", "completion": "d"}\n')
    assert [e.source for e in load_split(path, FIELDS, "train")] == [f"{path}:2", f"{path}:4"]


def test_csv(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "d.csv", ["id", "question", "answer"], [["q1", "multi\nline", "yes"], ["q2", "b", "no"]]
    )
    got = load_split(path, FieldMap(input="question", output="answer"), "train")
    assert [(e.id, e.input, e.output) for e in got] == [("q1", "multi\nline", "yes"), ("q2", "b", "no")]
    assert got[0].source == f"{path}:2" and got[1].source == f"{path}:4"


def test_save_to_disk(tmp_path: Path) -> None:
    from datasets import Dataset

    folder = tmp_path / "saved"
    Dataset.from_dict({"prompt": ["a", "b"], "completion": ["1", "2"]}).save_to_disk(str(folder))
    got = load_split(folder, FIELDS, "train")
    assert [(e.id, e.input, e.output) for e in got] == [("train-0", "a", "1"), ("train-1", "b", "2")]
    assert got[1].source == f"{folder}[1]"


def test_save_to_disk_chat(tmp_path: Path) -> None:
    from datasets import Dataset

    msgs = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]
    Dataset.from_dict({"messages": msgs}).save_to_disk(str(tmp_path / "chat"))
    got = load_split(tmp_path / "chat", FIELDS, "train")
    assert (got[0].input, got[0].output) == ("hi", "hello")


def test_save_to_disk_dataset_dict_asks_for_split(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    part = Dataset.from_dict({"prompt": ["a"], "completion": ["1"]})
    DatasetDict({"train": part, "test": part}).save_to_disk(str(tmp_path / "dd"))
    msg = error_of(tmp_path / "dd")
    assert "dd" in msg and "train, test" in msg and "data.train" in msg


def test_save_to_disk_missing_field(tmp_path: Path) -> None:
    from datasets import Dataset

    Dataset.from_dict({"prompt": ["a"], "answer": ["1"]}).save_to_disk(str(tmp_path / "s"))
    msg = error_of(tmp_path / "s")
    assert f"{tmp_path / 's'}[0]" in msg and "missing field 'completion'" in msg


def test_limit(tmp_path: Path) -> None:
    records = [{"prompt": f"p{i}", "completion": "c"} for i in range(5)]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    with path.open("a") as fh:
        fh.write("not json, never read\n")
    assert [e.input for e in load_split(path, FIELDS, "train", limit=2)] == ["p0", "p1"]


def test_load_splits_and_limit(tmp_path: Path) -> None:
    for name in ("train", "val", "test"):
        records = [{"prompt": f"{name} {i}", "completion": "c"} for i in range(3)]
        write_jsonl(tmp_path / f"{name}.jsonl", records)
    cfg = DataConfig(train=tmp_path / "train.jsonl", validation=tmp_path / "val.jsonl", limit=2)
    splits = load_splits(cfg)
    assert (len(splits.train), len(splits.validation), splits.test) == (2, 2, [])
    assert splits.validation[0].split == "validation"
    cfg.test = tmp_path / "test.jsonl"
    assert [e.id for e in load_splits(cfg).test] == ["test-0", "test-1"]


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    msg = error_of(tmp_path / "nope.jsonl")
    assert "nope.jsonl: file not found" in msg and "data.train" in msg


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("hello\n")
    msg = error_of(path)
    assert "data.txt" in msg and "unknown file type '.txt'" in msg


def test_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    assert "not a `save_to_disk` dataset" in error_of(tmp_path / "plain")


def test_invalid_json_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": oops}\n')
    msg = error_of(path)
    assert f"{path}:2: not valid JSON (" in msg and "JSON Lines" in msg


def test_json_not_an_object(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "arr.jsonl", [["a", "b"]])
    assert f"{path}:1: expected a JSON object, found array" in error_of(path)


def test_missing_field(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [{"prompt": "a", "completion": "b"}, {"prompt": "x", "answer": "y"}],
    )
    msg = error_of(path)
    assert f"{path}:2: missing field 'completion' (found: prompt, answer)" in msg
    assert "data.fields.output" in msg


def test_missing_input_field_hint(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "completion": "b"}])
    msg = error_of(path)
    assert f"{path}:1: missing field 'prompt'" in msg and "data.fields.input" in msg


def test_csv_missing_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", ["prompt", "answer"], [["a", "b"]])
    msg = error_of(path)
    assert f"{path}:2: missing field 'completion' (found: prompt, answer)" in msg


def test_empty_value(tmp_path: Path) -> None:
    records = [{"prompt": "a", "completion": "b"}, {"prompt": "  ", "completion": "c"}]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    assert f"{path}:2: empty value for field 'prompt'" in error_of(path)


def test_csv_empty_cell(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", ["prompt", "completion"], [["a", "b"], ["c", ""]])
    assert f"{path}:3: empty value for field 'completion'" in error_of(path)


def test_non_string_values(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "completion": ["b"]}])
    assert f"{path}:1: field 'completion' must be a string, found array" in error_of(path)
    path = write_jsonl(tmp_path / "e.jsonl", [{"prompt": 5, "completion": "b"}])
    assert f"{path}:1: field 'prompt' must be a string, found number" in error_of(path)


def test_messages_without_assistant(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    assert f"{path}:1: field 'messages' has no assistant message" in error_of(path)


def test_messages_bad_role(tmp_path: Path) -> None:
    msgs = [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": msgs}])
    msg = error_of(path)
    assert f"{path}:1: field 'messages[1].role' is 'bot'" in msg and "assistant" in msg


def test_messages_without_user(tmp_path: Path) -> None:
    msgs = [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": msgs}])
    assert f"{path}:1: field 'messages' has no user message" in error_of(path)


def test_messages_empty_answer_and_bad_shape(tmp_path: Path) -> None:
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": msgs}])
    assert f"{path}:1: empty value for field 'messages[1].content'" in error_of(path)
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": []}])
    assert f"{path}:1: field 'messages' must be a non-empty list" in error_of(path)


def test_duplicate_id(tmp_path: Path) -> None:
    records = [{"id": "x", "prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}]
    path = write_jsonl(tmp_path / "d.jsonl", records + [{"id": "x", "prompt": "e", "completion": "f"}])
    assert f"{path}:3: duplicate id 'x' (first at line 1)" in error_of(path)


def test_empty_split(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    assert f"{path}: no examples" in error_of(path, split="validation")
    csv_path = write_csv(tmp_path / "h.csv", ["prompt", "completion"], [])
    assert f"{csv_path}: no examples" in error_of(csv_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"prompt": "a", "completion": "b"}\n{"prompt": "\xff"}\n')
    assert f"{path}:2: not UTF-8 text" in error_of(path)


# ---------------------------------------------------------------- split checks


def test_cross_split_duplicates_exact_and_near() -> None:
    base = "the quick brown fox jumps over the lazy dog near the river bank today"
    splits = Splits(
        train=[ex("t1", base), ex("t2", "completely unrelated words about baking bread at home")],
        validation=[ex("v1", base.upper() + "!", "validation"), ex("v2", "what is 7 times 6", "validation")],
        test=[ex("s1", base.replace("today", "tonight"), "test"), ex("s2", "a fresh new question", "test")],
    )
    dups = cross_split_duplicates(splits)
    assert ("train", "t1", "validation", "v1", 1.0) in dups
    near = [d for d in dups if d[:4] == ("train", "t1", "test", "s1")]
    assert len(near) == 1 and 0.8 <= near[0][4] < 1.0
    assert any(d[:4] == ("validation", "v1", "test", "s1") for d in dups)
    ids = {d[1] for d in dups} | {d[3] for d in dups}
    assert not ids & {"t2", "v2", "s2"}


def test_check_splits_counts_and_warnings() -> None:
    splits = Splits(
        train=[ex("t1", "how many legs does a spider have")],
        validation=[ex("v1", "How many legs does a spider have?", "validation"),
                    ex("v2", "what colour is the sky at noon", "validation")],
    )
    report = check_splits(splits)
    assert report.counts == {"train": 1, "validation": 2, "test": 0}
    assert len(report.warnings) == 1 and "'v1'" in report.warnings[0] and "'t1'" in report.warnings[0]


def test_partial_overlap_is_one_summary_line() -> None:
    texts = [f"question number {i} about item {i}" for i in range(25)]
    splits = Splits(
        train=[ex(f"t{i}", t) for i, t in enumerate(texts)],
        validation=[ex(f"v{i}", t, "validation") for i, t in enumerate(texts)]
        + [ex("fresh", "a question nobody asked before", "validation")],
    )
    report = check_splits(splits)
    assert len(report.duplicates) == 25
    (line,) = report.warnings
    assert line.startswith("25 held-out items repeat an input of another split")
    assert all(f"validation 'v{i}'" in line for i in range(3)) and "'v3'" not in line
    assert line.endswith("; ...")


@pytest.mark.parametrize("split, earlier", [("validation", "train"), ("test", "train"), ("test", "validation")])
def test_a_held_out_split_identical_to_an_earlier_one_is_an_error(tmp_path: Path, split: str,
                                                                  earlier: str) -> None:
    def rows(name: str) -> list[dict[str, str]]:
        if name not in (split, earlier):
            return [{"prompt": f"Spell the {name} word {i}", "completion": name} for i in range(3)]
        shout = str.upper if name == split else str  # equal after normalisation is equal
        return [{"prompt": shout(f"What is {i} plus {i}?"), "completion": str(2 * i)} for i in range(4)]

    files = {name: write_jsonl(tmp_path / f"{name}.jsonl", rows(name)) for name in ("train", "validation", "test")}
    splits = load_splits(DataConfig(**{name: str(path) for name, path in files.items()}))
    with pytest.raises(DataError) as info:
        check_splits(splits)
    assert str(info.value).startswith(f"{files[split]}: the {split} split repeats the {earlier} split")
    assert "4 inputs" in str(info.value)


def test_check_splits_no_duplicates_no_warnings() -> None:
    splits = Splits(train=[ex("t", "alpha beta gamma delta")], validation=[ex("v", "one two three four")])
    assert check_splits(splits).warnings == []


def test_check_splits_empty_validation() -> None:
    with pytest.raises(DataError, match="validation split is empty"):
        check_splits(Splits(train=[ex("t", "a")], validation=[]))


# ---------------------------------------------------------------- textsim


def test_normalize() -> None:
    assert normalize("  Hello,   WORLD!  (ok) ") == "hello world ok"
    assert normalize("it's 2 + -5 ... -- done.") == "it's 2 + -5 done"


def test_shingles() -> None:
    assert shingles("a b c d") == frozenset({("a", "b", "c"), ("b", "c", "d")})
    assert shingles("Hi there!") == frozenset({("hi", "there")})
    assert shingles("  ...  ") == frozenset()


def test_jaccard() -> None:
    a, b = frozenset({1, 2, 3}), frozenset({2, 3, 4})
    assert jaccard(a, b) == pytest.approx(0.5)
    assert jaccard(a, a) == 1.0
    assert jaccard(frozenset(), frozenset()) == 0.0


def test_index_query_and_best() -> None:
    index = NgramIndex([("a", "the cat sat on the mat"), ("b", "a dog ran in the park"), ("c", "Hi!")])
    assert index.query("The cat sat on the mat.", 0.8) == [("a", 1.0)]
    hits = index.query("the cat sat on the rug", 0.3)
    expected = jaccard(shingles("the cat sat on the rug"), shingles("the cat sat on the mat"))
    assert [k for k, _ in hits] == ["a"] and hits[0][1] == pytest.approx(expected)
    assert index.query("the cat sat on the rug", 0.9) == []
    assert index.query("hi", 0.99) == [("c", 1.0)]
    assert index.best("a dog ran in the park today") == ("b", pytest.approx(0.8))
    assert index.best("nothing in common here") == (None, 0.0)
    assert len(index) == 3


def test_index_repeated_keys_and_add() -> None:
    index: NgramIndex[str] = NgramIndex()
    index.add("k", "one two three")
    index.add("k", "one two three four")
    assert [k for k, _ in index.query("one two three", 0.5)] == ["k", "k"]


def test_index_scales() -> None:
    index = NgramIndex((i, f"item {i} has the value {i * 7} and label {i % 3}") for i in range(5000))
    assert index.query("item 4321 has the value 30247 and label 1", 0.8) == [(4321, 1.0)]
