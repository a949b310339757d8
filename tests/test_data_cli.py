"""`pada data check` and `pada data export`, on data and a stored run built by hand (no model weights;
one test reads the embedded student's tokenizer)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from pada_local.cli import main
from pada_local.config import DataConfig, dump, from_dict
from pada_local.data import check as data_mod
from pada_local.data.export import export_dataset
from pada_local.data.shapes import read_split
from pada_local.data.splits import load_splits
from pada_local.errors import DataError
from pada_local.files import sha256_file
from pada_local.ledger.runs import Ledger
from pada_local.records import Artifact, Candidate, Pattern, Reason, TrainResult, Verdict

SYSTEM = "Answer briefly."


class WordTokenizer:
    """A stand-in chat template: one token per whitespace-separated word."""

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = True,
                            return_dict: bool = False, add_generation_prompt: bool = False) -> Any:
        text = "".join(f"<{m['role']}> {m['content']} </{m['role']}> " for m in messages)
        text += "<assistant> " if add_generation_prompt else ""
        return {"input_ids": text.split()} if tokenize else text


def write_lines(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# ---------------------------------------------------------------- data check


def label_task(tmp: Path, train: list[tuple[str, str]], validation: list[tuple[str, str]]) -> Path:
    write_lines(tmp / "train.jsonl", [{"instruction": p, "input": "", "output": c} for p, c in train])
    write_lines(tmp / "val.jsonl", [{"instruction": p, "input": "", "output": c} for p, c in validation])
    cfg = tmp / "task.yaml"
    cfg.write_text("data: {train: train.jsonl, validation: val.jsonl}\n"
                   "task: {system_prompt: 'One word.', scorer: {kind: label, labels: [positive, negative]}}\n"
                   "train: {max_length: 64}\n")
    return cfg


Capture = pytest.CaptureFixture[str]


def run_check(cfg: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> tuple[int, str]:
    monkeypatch.setattr(data_mod, "_student_tokenizer", lambda cfg: WordTokenizer())
    code = main(["data", "check", str(cfg)])
    return code, capsys.readouterr().out


def test_check_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    train = [(f"review {i} was good", "positive") for i in range(4)]
    train += [(f"review {i} was awful", "negative") for i in range(4, 8)]
    cfg = label_task(tmp_path, train, [("a new review, fine", "positive"), ("bad bad", "negative")])
    code, out = run_check(cfg, monkeypatch, capsys)
    assert code == 0, out
    assert f"data.train: read as Alpaca: 8 records ({tmp_path / 'train.jsonl'})" in out
    assert "counts: train 8, validation 2, test 0" in out
    assert "data.train labels: positive 4 (50%), negative 4 (50%)" in out
    assert "overlaps: no input repeated" in out and "train.max_length=64 keeps every training example" in out
    assert "<system> One word. </system> <user> review 0 was good </user> <assistant> positive" in out


def test_check_reports_overlap_long_tail_imbalance_and_drops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    train = [(f"review number {i} was good", "positive") for i in range(9)]
    train += [("an awful review " + "very " * 80, "negative"), ("review number 3 was good", "positive")]
    cfg = label_task(tmp_path, train, [("review number 1 was good", "positive"), ("meh", "negative")])
    code, out = run_check(cfg, monkeypatch, capsys)
    assert code == 1, out
    assert "warning: data.train: 1 of 11 inputs repeat an earlier one, e.g. 'train-10' repeats 'train-3'" \
        in out
    assert "warning: overlap train/validation: 1 validation items repeat a train input" in out
    assert "warning: data.train labels are unbalanced: positive 10 vs negative 1 (10.0x)" in out
    assert "warning: data.train lengths have a long tail" in out
    assert "warning: 1 of 11 training examples are longer than train.max_length=64" in out


def test_check_errors_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = label_task(tmp_path, [("a", "positive")], [("b", "negative")])
    with (tmp_path / "train.jsonl").open("a") as fh:
        fh.write('{"prompt": "c", "completion": "positive"}\n')
    code, out = run_check(cfg, monkeypatch, capsys)
    assert code == 2 and "train.jsonl:2: this record is prompt/completion" in out
    cfg = label_task(tmp_path, [("a", "positive")], [("b", "maybe")])
    code, out = run_check(cfg, monkeypatch, capsys)
    assert code == 2 and "error:" in out and "maybe" in out


def _nearest_rank(values: list[int], q: int) -> int:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered) / 100) - 1, 0)]


def test_check_renders_and_counts_with_the_real_students_chat_template(
        tmp_path: Path, student_dir: Path, capsys: Capture) -> None:
    """No stand-in: `pada data check` reads the configured student's own tokenizer (the
    embedded SmolLM2, its folder only, no weights loaded) and shows ChatML, and its token counts
    are the real tokenizer's counts of that text, which also decide what max_length drops."""
    from transformers import AutoTokenizer

    train = [(f"review {i} was good", "positive") for i in range(4)]
    train += [(f"review {i} was awful", "negative") for i in range(4, 7)]
    train += [("a rather longer review that rambles on about the plot twists", "negative")]
    validation = [("a new review, fine", "positive"), ("bad bad", "negative")]
    cfg = label_task(tmp_path, train, validation)

    def chatml(user: str, answer: str | None) -> str:  # SmolLM2's template, written out by hand
        head = (f"<|im_start|>system\nOne word.<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
                "<|im_start|>assistant\n")
        return head if answer is None else f"{head}{answer}<|im_end|>\n"

    tok = AutoTokenizer.from_pretrained(str(student_dir))

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    lengths = [count(chatml(x, y)) for x, y in train]
    prompts = [count(chatml(x, None)) for x, _ in validation]
    assert max(lengths) < 64 and len(set(lengths)) > 1 and sorted(lengths)[-2] < max(lengths)
    # real subword tokens: not the word counts a stand-in tokenizer would give
    assert lengths[0] != len(chatml(*train[0]).split())

    code = main(["data", "check", str(cfg), "--set", f"models.student={student_dir}"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "token lengths not checked" not in out
    shown = ", ".join(f"p{q} {_nearest_rank(lengths, q)}" for q in (50, 90, 99))
    assert f"data.train tokens (prompt + answer, the student's chat template): {shown}, max {max(lengths)}" \
        in out
    shown = ", ".join(f"p{q} {_nearest_rank(prompts, q)}" for q in (50, 90, 99))
    assert f"data.validation prompt tokens: {shown}, max {max(prompts)}" in out
    assert "train.max_length=64 keeps every training example" in out
    # the example as the student sees it: ChatML with user and assistant turns, nothing else
    training, evaluation = chatml(*train[0]), chatml(train[0][0], None)
    assert f"as the student sees it in training:\n{training}\n" in out
    assert f"(the student continues from here):\n{evaluation}\n" in out
    assert "<|im_start|>user\nreview 0 was good<|im_end|>" in out and "<|im_start|>assistant\npositive" in out

    # the same counts decide what train.max_length drops: one below the longest drops exactly it
    cut = max(lengths) - 1
    code = main(["data", "check", str(cfg), "--set", f"models.student={student_dir}",
                 "--set", f"train.max_length={cut}"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert f"warning: 1 of 8 training examples are longer than train.max_length={cut} tokens " \
           "(prompt + answer) and are left out, not cut: train-7" in out


# ---------------------------------------------------------------- a stored run, by hand


ORIGINAL = [
    [{"role": "user", "content": "What is 2 plus 2?"}, {"role": "assistant", "content": "4"}],
    [{"role": "user", "content": "Count to two."}, {"role": "assistant", "content": "1 2"},
     {"role": "user", "content": "And three?"}, {"role": "assistant", "content": "1 2 3"}],
]


def stored_run(tmp: Path, multi_turn: bool = True) -> tuple[Path, str, Path]:
    """A run with one round: a pattern, three candidates (one rejected, then accepted by a
    person), and the train.jsonl the trainer read (the originals + the accepted samples)."""
    write_lines(tmp / "t.jsonl", [{"prompt": "x", "completion": "y"}])
    cfg = from_dict({"data": {"train": "t.jsonl", "validation": "t.jsonl"}, "workdir": str(tmp / "runs"),
                     "task": {"name": "sums", "system_prompt": SYSTEM}}, tmp)
    store = tmp / "pada.db"
    with Ledger.open(store) as ledger:
        run_id = ledger.create_run(config=dump(cfg), versions={})
        run = ledger.for_run(run_id)
        run.record_patterns(1, [Pattern(0, "carries", "sums that carry a ten", 2, "", keywords=("carry", "ten"))], {})
        ids = run.pattern_ids(1)
        made = [("k1", "pattern", 0, None, "What is 19 plus 3?", "22"),
                ("k2", "error", None, "train-0", "What is 2 plus 3?", "5"),
                ("k3", "pattern", 0, None, "What is 29 plus 3?", "32")]
        for key, source, cluster, origin, text, answer in made:
            candidate = Candidate(key, source, cluster, origin, text, answer, "", None, "p")
            run.add_candidate(1, candidate, ids)
        run.record_verdicts(1, [Verdict("k1", Reason.ACCEPTED, "ok", 4.0), Verdict("k2", Reason.ACCEPTED, "ok", 5.0),
                                Verdict("k3", Reason.JUDGE_LOW, "judge: score 2", 2.0)], {})
        k3 = next(c["id"] for c in run.candidate_rows(1) if c["key"] == "k3")
        ledger.set_human_verdict(k3, "accepted")
        accepted = [(c["input"], c["output"]) for c in run.candidate_rows(1) if c["effective"] == "accepted"]
        head = [{"role": "system", "content": SYSTEM}]
        chats = [head + m for m in (ORIGINAL if multi_turn else ORIGINAL[:1])]
        chats += [head + [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                  for q, a in accepted]
        folder = tmp / "runs" / run_id / "round-1"
        folder.mkdir(parents=True)
        train_file = write_lines(folder / "train.jsonl", [{"messages": m} for m in chats])
        artifact = Artifact("train_set", train_file, sha256_file(train_file), train_file.stat().st_size)
        run.record_training(1, TrainResult(folder / "adapter", len(chats), (), (artifact,)), {})
    return store, run_id, train_file


def test_export_training_set_round_trip(tmp_path: Path) -> None:
    store, run_id, train_file = stored_run(tmp_path)
    with Ledger.open_existing(store) as ledger:
        done = export_dataset(ledger, run_id, fmt="messages")
    assert done.out == (tmp_path / "runs" / run_id / "dataset-train-r1-messages").resolve()
    assert done.round == 1 and done.counts == {"original": 2, "pattern": 2, "error": 1}
    rows = [json.loads(x) for x in (done.out / "train.jsonl").read_text().splitlines()]
    by_text = {r["messages"][-2]["content"]: r for r in rows}
    assert by_text["What is 29 plus 3?"]["human_verdict"] == "accepted"
    assert by_text["What is 29 plus 3?"]["verdict"] == "rejected"
    assert by_text["What is 19 plus 3?"]["pattern"] == "carries"
    assert by_text["What is 19 plus 3?"]["pattern_keywords"] == ["carry", "ten"]
    assert by_text["What is 2 plus 3?"]["pattern_keywords"] is None
    assert by_text["What is 2 plus 3?"]["origin_item_id"] == "train-0"
    assert by_text["And three?"]["source"] == "original" and by_text["And three?"]["round"] == 0
    card = (done.out / "README.md").read_text()
    assert f"run `{run_id}`" in card and "| original | 2 |" in card
    # read back as training data, the same examples the trainer read
    again = load_splits(DataConfig(train=done.out / "train.jsonl", validation=train_file)).train
    recorded = read_split(train_file, DataConfig(train=train_file, validation=train_file).fields,
                          "train").examples
    assert [(e.system, e.context, e.input, e.output) for e in again] == \
        [(e.system, e.context, e.input, e.output) for e in recorded]


@pytest.mark.parametrize("fmt", ["messages", "alpaca", "sharegpt", "hf"])
def test_export_synthetic_only_each_format_reads_back(tmp_path: Path, fmt: str) -> None:
    import datasets

    store, run_id, _ = stored_run(tmp_path)
    with Ledger.open_existing(store) as ledger:
        done = export_dataset(ledger, run_id, fmt=fmt, synthetic_only=True, out=tmp_path / "out")
    assert done.rows == 3 and done.counts == {"pattern": 2, "error": 1}
    if fmt == "hf":
        ds = datasets.load_from_disk(str(done.out))
        path = done.out
    else:
        path = done.out / "train.jsonl"
        ds = datasets.Dataset.from_json(str(path), cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 3 and set(ds["source"]) == {"pattern", "error"}
    got = read_split(path, DataConfig(train=path, validation=path).fields, "train").examples
    assert [(e.system, e.input, e.output) for e in got] == [
        (SYSTEM, "What is 19 plus 3?", "22"), (SYSTEM, "What is 2 plus 3?", "5"),
        (SYSTEM, "What is 29 plus 3?", "32")]


def test_export_alpaca_refuses_multi_turn_and_replaces_its_own_folder(tmp_path: Path) -> None:
    store, run_id, _ = stored_run(tmp_path)
    with Ledger.open_existing(store) as ledger:
        with pytest.raises(DataError, match="(?s)record 2 is a conversation of 4 turns.*--format messages"):
            export_dataset(ledger, run_id, fmt="alpaca", round_=1)
        first = export_dataset(ledger, run_id, fmt="sharegpt", round_=1)
        again = export_dataset(ledger, run_id, fmt="sharegpt", round_=1)  # an earlier export: replaced
        assert first.out == again.out and not list(first.out.parent.glob(".*tmp*"))
        (tmp_path / "mine").mkdir()
        with pytest.raises(Exception, match="already exists"):
            export_dataset(ledger, run_id, fmt="sharegpt", out=tmp_path / "mine")


def test_export_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, run_id, train_file = stored_run(tmp_path, multi_turn=False)
    out = tmp_path / "alp"
    code = main(["data", "export", run_id[:8], "--format", "alpaca", "--out", str(out),
                 "--store", str(store)])
    assert code == 0 and "round 1 training set, 4 records" in capsys.readouterr().out
    first = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    assert (first["instruction"], first["input"], first["output"], first["system"]) == (
        "What is 2 plus 2?", "", "4", SYSTEM)
    train_file.write_text(train_file.read_text() + "\n")  # the recorded file changed: refused
    assert main(["data", "export", run_id, "--store", str(store)]) == 2
    assert "checksum differs" in capsys.readouterr().err
