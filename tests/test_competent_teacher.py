"""The regime the method is for: a teacher far stronger than the student. A real run with the
embedded student, where the teacher is the simulated competent teacher (benchmarks/sim_teacher.py,
a measuring instrument answering from gold labels of a reserve pool) behind the ordinary endpoint
client: it passes the teacher check, its re-solves confirm samples, those samples train, and every
accepted label is the pool's own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pada_local.config import load
from pada_local.ledger.runs import Ledger
from pada_local.run import loop
from pada_local.stages.balance import distribution, tv_distance

from .test_sim_teacher import Sim, write_task

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_against_the_sim(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("competent")
    parts = write_task(folder)
    sim = Sim(folder, "--similarity", "words")
    try:
        cfg = {
            "name": "competent", "store": str(folder / "runs.db"), "workdir": str(folder / "work"),
            "models": {"teacher": f"openai:{sim.url}#sim"},
            "data": {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"},
            "task": {"name": "topics", "description": "Decide the topic of a short news sentence: sports, food "
                     "or weather.", "system_prompt": "Topic: sports, food or weather? One word.",
                     "answer_format": "one word: sports, food or weather",
                     "scorer": {"kind": "label", "labels": ["sports", "food", "weather"]}},
            "teacher": {"concurrency": 1},
            "train": {"max_steps": 2, "batch_size": 4, "rank": 4, "alpha": 8, "max_length": 64},
            "loop": {"rounds": 1, "budget": 8, "analysis_cap": 4, "k_max": 2},
        }
        path = folder / "competent.yaml"
        path.write_text(yaml.safe_dump(cfg))
        run_id = loop.start(load(path))
        stats = sim.stats()
    finally:
        sim.stop()
    return {"store": folder / "runs.db", "run_id": run_id, "parts": parts, "stats": stats}


def test_the_competent_teacher_passes_its_check(run_against_the_sim: dict[str, Any]) -> None:
    with Ledger.open_existing(run_against_the_sim["store"]) as ledger:
        detail = ledger.for_run(run_against_the_sim["run_id"]).stage_detail(1, "teacher_check")
    assert detail is not None and detail["teacher"]["trusted"] and detail["teacher"]["accuracy"] == 1.0


def test_its_re_solves_confirm_samples_that_then_train(run_against_the_sim: dict[str, Any]) -> None:
    with Ledger.open_existing(run_against_the_sim["store"]) as ledger:
        run = ledger.for_run(run_against_the_sim["run_id"])
        accepted = [c for c in run.candidate_rows(1) if c["effective"] == "accepted"]
        assert accepted and run.round(1)["n_accepted"] == len(accepted)
        assert all(c["reason"].startswith("accepted: the teacher's re-solve agrees") for c in accepted)
        train_set = [a for a in run.artifacts(kind="train_set") if a["round"] == 1]
    records = [json.loads(line) for line in Path(train_set[0]["path"]).read_text().splitlines()]
    trained = {r["messages"][-2]["content"] for r in records}
    assert {c["input"] for c in accepted} <= trained  # they reached the training set


def test_every_accepted_label_is_the_pools_own(run_against_the_sim: dict[str, Any]) -> None:
    parts = run_against_the_sim["parts"]
    gold = {r["prompt"]: r["completion"] for r in parts["pool"]}
    held_out = {r["prompt"] for r in parts["validation"] + parts["test"]}
    with Ledger.open_existing(run_against_the_sim["store"]) as ledger:
        accepted = [c for c in ledger.for_run(run_against_the_sim["run_id"]).candidate_rows(1)
                    if c["effective"] == "accepted"]
    assert all(c["input"] in gold and c["output"] == gold[c["input"]] for c in accepted)
    assert not {c["input"] for c in accepted} & held_out
    assert run_against_the_sim["stats"]["by_kind"]["SolveReply"] > 0


def test_every_job_aims_at_a_label_and_the_aims_keep_the_label_balance(
        run_against_the_sim: dict[str, Any]) -> None:
    """Label-first jobs on a label task, their labels with D_train's within quality.max_label_tv
    (tests/test_weak_teacher.py checks how loop.plan_label_mix moves a tilted plan)."""
    with Ledger.open_existing(run_against_the_sim["store"]) as ledger:
        run = ledger.for_run(run_against_the_sim["run_id"])
        quality = run.stage_detail(1, "quality")
        targets = [c["target"] for c in run.candidate_rows(1)]
    train = [r["completion"] for r in run_against_the_sim["parts"]["train"]]
    assert targets and None not in targets
    assert tv_distance(distribution(train + targets), distribution(train)) <= 0.1 + 1e-9
    assert quality is not None and quality["label_tv"] <= 0.1 + 1e-9
