"""Edge errors a user meets: each ends in a clean message and exit code 2, creates nothing it
should not, and loses nothing (issue: nothing silently lost or cut)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pada_local.backends.base import StepInfo
from pada_local.cli import main
from pada_local.errors import PadaError
from pada_local.ledger.run import RunLedger
from pada_local.ledger.runs import Ledger
from pada_local.ledger.store import RunStore
from pada_local.records import Artifact, Candidate, EvalRow, Reason, TrainResult, Verdict

from .conftest import add_run

CFG = {"name": "x", "task": {"name": "t"}, "loop": {"strategy": "pada", "seed": 0},
       "models": {"student": "s", "teacher": "t"}}


def _pada(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pada_local.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120)


def test_resume_refuses_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--resume", "abc", "--set", "loop.rounds=5", "--store", str(tmp_path / "r.db")]) == 2
    assert "saved config" in capsys.readouterr().err
    assert not (tmp_path / "r.db").exists()


@pytest.mark.parametrize("args", [["run", "--resume", "nope"], ["export", "nope"], ["runs"],
                                  ["runs", "show", "nope"]])
def test_unknown_run_in_an_empty_folder_creates_nothing(tmp_path: Path, args: list[str]) -> None:
    done = _pada(args, tmp_path)
    assert done.returncode == 2
    assert "no run store" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_config_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: ok\ntask:\n  name: caf\xe9\n")
    assert main(["config", str(bad)]) == 2
    assert f"{bad}:3: not UTF-8 text" in capsys.readouterr().err


def test_runs_piped_keeps_the_id_whole(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r.db") as store:
        ids = [add_run(store, name="a rather long run name to squeeze the table", task="sentiment-long-name",
                       strategy="paraphrase", student="smollm2-135m", teacher="smollm2-135m") for _ in range(2)]
    done = _pada(["runs", "--store", str(tmp_path / "r.db")], tmp_path, COLUMNS="80")
    assert done.returncode == 0
    for run_id in ids:
        assert run_id in done.stdout


def test_a_burst_of_runs_gets_distinct_ids(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r.db") as store:
        ids = [add_run(store, name=None, strategy="none", teacher=None) for _ in range(300)]
        assert len(set(ids)) == 300
        with pytest.raises(PadaError, match="already exists"):  # an id the user chose is an error
            add_run(store, name=None, strategy="none", teacher=None, run_id=ids[0])


def _write_stage(run: RunLedger, stage: str, folder: Path) -> None:
    """What the loop records at the end of `stage` in round 0 (quality: of two stored candidates)."""
    rows = [EvalRow("v1", "validation", "q1", "a", "a", 1.0),
            EvalRow("v2", "validation", "q2", "b", "a", 0.0), EvalRow("t1", "test", "q3", "a", "a", 1.0)]
    steps = tuple(StepInfo(i, 2, 1.0 / i, 1e-4, 0.5 * i, 100.0, 0.1) for i in (1, 2))
    files = (Artifact("adapter", folder / "adapter", "0" * 64, 10),
             Artifact("train_set", folder / "t.jsonl", "1" * 64, 5))
    trained = TrainResult(folder / "adapter", 3, steps, files)
    metrics = [{"name": "accuracy", "split": "validation", "value": 0.5},
               {"name": "accuracy", "split": "test", "value": 1.0}]
    verdicts = [Verdict("k1", Reason.ACCEPTED, "ok", 4.0), Verdict("k2", Reason.DUPLICATE, "duplicate of k1")]
    {"zero_shot": lambda: run.record_zero_shot(rows, {}, {"validation": 0.5, "test": 1.0}),
     "train": lambda: run.record_training(0, trained, {}),
     "eval": lambda: run.record_eval(0, rows, metrics, {}, {"validation": 0.5, "test": 1.0, "train": 0.75}),
     "quality": lambda: run.record_verdicts(0, verdicts, {})}[stage]()


# What each stage writes: its rows (table -> count once written) and the round summary fields.
_STAGE_ROWS: dict[str, dict[str, int]] = {
    "zero_shot": {"eval_items": 3}, "train": {"train_steps": 2, "artifacts": 2},
    "eval": {"eval_items": 3, "metrics": 2}, "quality": {"candidates": 2}}
_SUMMARY: dict[str, dict[str, float]] = {
    "zero_shot": {"zero_shot_val": 0.5, "zero_shot_test": 1.0}, "train": {"n_train": 3},
    "eval": {"val_score": 0.5, "test_score": 1.0, "train_score": 0.75},
    "quality": {"n_synthetic": 2, "n_accepted": 1, "n_rejected": 1}}


@pytest.mark.parametrize("stage", ["zero_shot", "train", "eval", "quality"])
def test_a_crash_between_stage_rows_and_round_summary_writes_neither_and_a_resume_writes_both_once(
        tmp_path: Path, stage: str) -> None:
    """A stage's rows and the round summary it changes are one transaction: a kill between the
    two leaves the stage undone, never a done stage without its summary; the resume (a new
    process, so a new connection) writes the stage again, and it is then done once, with its
    summary and without a duplicate row."""
    with Ledger.open(tmp_path / "r.db") as ledger:
        run_id = ledger.create_run(config=CFG, versions={})
        run = ledger.for_run(run_id)
        run.open_round(0)
        if stage == "quality":  # generation stored them, one by one, before quality control
            for key in ("k1", "k2"):
                made = Candidate(key, "pattern", None, None, f"in {key}", "a", "raw", None, "p")
                run.add_candidate(0, made, {})

        def boom(*_: object, **__: object) -> None:
            raise KeyboardInterrupt  # what a kill at that point looks like to the transaction

        run._upsert_round = boom  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            _write_stage(run, stage, tmp_path)

    with Ledger.open_existing(tmp_path / "r.db") as ledger:  # after the crash: nothing of the stage
        run = ledger.for_run(run_id)
        assert not run.stage_done(0, stage)
        assert ledger.store.count("stages", run_id) == 0
        summary = run.round(0)
        assert all(summary[k] is None for k in _SUMMARY[stage]), summary
        assert summary["adapter_path"] is None
        for table in _STAGE_ROWS[stage]:
            if table == "candidates":
                assert {x["verdict"] for x in run.candidate_rows(0)} == {"pending"}
            else:
                assert ledger.store.count(table, run_id) == 0, table

    with Ledger.open_existing(tmp_path / "r.db") as ledger:  # the resume: the stage again, no crash
        run = ledger.for_run(run_id)
        run.open_round(0)
        assert not run.stage_done(0, stage)  # so the loop redoes it
        _write_stage(run, stage, tmp_path)

    with Ledger.open_existing(tmp_path / "r.db") as ledger:
        run = ledger.for_run(run_id)
        assert run.stage_done(0, stage)
        assert [(x["round"], x["stage"], x["status"]) for x in run.stages()] == [(0, stage, "done")]
        summary = run.round(0)
        assert {k: summary[k] for k in _SUMMARY[stage]} == _SUMMARY[stage]
        if stage == "train":
            assert summary["adapter_path"] == str(tmp_path / "adapter")
        for table, n in _STAGE_ROWS[stage].items():
            assert ledger.store.count(table, run_id) == n, table
        if stage == "quality":
            verdicts = {x["key"]: x["verdict"] for x in run.candidate_rows(0)}
            assert verdicts == {"k1": "accepted", "k2": "rejected"}
        if stage in ("zero_shot", "eval"):
            model = "zero-shot" if stage == "zero_shot" else "trained"
            assert [x["item_id"] for x in run.eval_items(0, "validation", model=model)] == ["v1", "v2"]
