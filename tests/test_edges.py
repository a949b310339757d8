"""Edge errors a user meets: each ends in a clean message and exit code 2, creates nothing it
should not, and loses nothing (issue: nothing silently lost or cut)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pada_local.cli import main
from pada_local.errors import PadaError
from pada_local.ledger.runs import Ledger
from pada_local.ledger.store import RunStore
from pada_local.records import EvalRow, TrainResult

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


@pytest.mark.parametrize("stage", ["zero_shot", "train", "eval", "quality"])
def test_a_crash_between_stage_rows_and_round_summary_writes_neither(tmp_path: Path, stage: str) -> None:
    """A stage's rows and the round summary it changes are one transaction: a kill between the
    two leaves the stage undone (so a resume redoes it), never a done stage without its summary."""
    with Ledger.open(tmp_path / "r.db") as ledger:
        run_id = ledger.create_run(config=CFG, versions={})
        ledger.for_run(run_id).open_round(0)

        def boom(*_: object, **__: object) -> None:
            raise KeyboardInterrupt  # what a kill at that point looks like to the transaction

        run = ledger.for_run(run_id)
        run._upsert_round = boom  # type: ignore[method-assign]
        row = EvalRow("v1", "validation", "q", "a", "a", 1.0)
        trained = TrainResult(tmp_path / "adapter", 3, (), ())
        write = {"zero_shot": lambda: run.record_zero_shot([row], {}, {"validation": 1.0, "test": None}),
                 "train": lambda: run.record_training(0, trained, {}),
                 "eval": lambda: run.record_eval(0, [row], [], {}, {"validation": 1.0, "test": None, "train": None}),
                 "quality": lambda: run.record_verdicts(0, [], {})}[stage]
        with pytest.raises(KeyboardInterrupt):
            write()
        assert not ledger.for_run(run_id).stage_done(0, stage)
        assert ledger.for_run(run_id).eval_items(0, "validation", model="zero-shot") == []
        assert ledger.for_run(run_id).eval_items(0, "validation") == []
