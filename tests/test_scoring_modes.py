"""Log-likelihood and judge scoring inside real runs (embedded models, tiny sizes), plus the
config rules around scorer modes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from pada_local.config import ScorerConfig, load
from pada_local.ledger.runs import Ledger
from pada_local.run import loop
from pada_local.scoring import Scorer

from .conftest import write_jsonl

GOOD = ["I loved this film, it was wonderful.", "A delightful and moving story.", "Great acting and a fine plot.",
        "Truly a joy to watch.", "Brilliant, funny and warm.", "An excellent evening at the cinema."]
BAD = ["I hated every minute of it.", "A dull and tedious mess.", "Terrible acting and a silly plot.",
       "A waste of two hours.", "Boring, slow and cold.", "The worst film this year."]


def test_default_mode_per_kind() -> None:
    assert ScorerConfig(kind="label", labels=["a", "b"]).effective_mode == "loglik"
    assert ScorerConfig(kind="choice").effective_mode == "loglik"
    assert ScorerConfig(kind="exact").effective_mode == "generate"
    assert ScorerConfig(kind="label", labels=["a"], mode="generate").effective_mode == "generate"
    with pytest.raises(ValueError, match="loglik"):
        ScorerConfig(kind="numeric", mode="loglik")


def test_options_are_spelled_as_in_train() -> None:
    sc = Scorer(ScorerConfig(kind="label", labels=["positive", "negative", "mixed"]))
    assert sc.options(["Positive", "Positive", "positive", "negative."]) == ["Positive", "negative.", "mixed"]
    ch = Scorer(ScorerConfig(kind="choice", choices="ABCDE"))
    assert ch.options(["A", "(B)", "C", "D", "B"]) == ["A", "B", "C", "D"]


def _sentiment(folder: Path, mode: str, rounds: int = 0) -> Path:
    rows = [{"prompt": t, "completion": "positive"} for t in GOOD] + \
           [{"prompt": t, "completion": "negative"} for t in BAD]
    for split, pick in (("train", slice(0, 4)), ("validation", slice(4, 5)), ("test", slice(5, 6))):
        part = rows[pick] + rows[6:][pick]
        write_jsonl(folder / f"{split}.jsonl", [{"id": f"{split}{i}", **r} for i, r in enumerate(part)])
    cfg = {"name": f"sentiment-{mode}",
           "data": {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"},
           "task": {"name": "sentiment", "description": "Is a film review positive or negative?",
                    "system_prompt": "Answer with one word: positive or negative.",
                    "scorer": {"kind": "label", "labels": ["positive", "negative"], "mode": mode},
                    "max_new_tokens": 8},
           "train": {"max_steps": 2, "batch_size": 4, "rank": 4, "alpha": 8, "max_length": 64},
           "loop": {"strategy": "none", "rounds": rounds}}
    path = folder / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["loglik", "generate"])
def test_label_task_runs_in_both_modes(tmp_path: Path, mode: str) -> None:
    cfg = load(_sentiment(tmp_path, mode), [f"store={tmp_path / 'r.db'}", f"workdir={tmp_path / 'w'}"])
    run_id = loop.start(cfg)
    with Ledger.open(cfg.store) as ledger:
        rows = ledger.for_run(run_id).eval_items(0, "validation", model="zero-shot")
        assert len(rows) == 2
        if mode == "loglik":
            # The prediction is one of the labels, and each label's log-probability is kept.
            assert all(r["prediction"] in ("positive", "negative") for r in rows)
            for r in rows:
                logprobs = json.loads(r["logprobs_json"])
                assert set(logprobs) == {"positive", "negative"} and all(v < 0 for v in logprobs.values())
                assert r["prediction"] == max(logprobs, key=logprobs.__getitem__)
        else:
            assert all(r["logprobs_json"] is None for r in rows)
        assert ledger.run(run_id)["status"] == "finished"
        # Evaluation stages count the student's tokens in either mode (they used to record 0).
        zero_shot = next(s for s in ledger.for_run(run_id).stages(0) if s["stage"] == "zero_shot")
        assert zero_shot["prompt_tokens"] > 0


def _judge_task(folder: Path) -> Path:
    rows = [{"prompt": "Name a colour of the sky on a clear day.", "completion": "blue"},
            {"prompt": "Name an animal that barks.", "completion": "a dog"},
            {"prompt": "Name a fruit that is yellow.", "completion": "a banana"},
            {"prompt": "Name a drink made from leaves.", "completion": "tea"},
            {"prompt": "Name a season that is cold.", "completion": "winter"},
            {"prompt": "Name a planet in our solar system.", "completion": "Mars"}]
    write_jsonl(folder / "train.jsonl", [{"id": f"t{i}", **r} for i, r in enumerate(rows[:4])])
    write_jsonl(folder / "validation.jsonl", [{"id": "v0", **rows[4]}])
    write_jsonl(folder / "test.jsonl", [{"id": "x0", **rows[5]}])
    cfg = {"name": "judged",
           "data": {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"},
           "task": {"name": "name-one", "description": "Name one thing of the asked kind.",
                    "system_prompt": "Answer in a few words.",
                    "scorer": {"kind": "judge", "rubric": "Correct if the answer names a thing of the asked kind."},
                    "max_new_tokens": 8},
           "teacher": {"n_ctx": 1024, "max_tokens": 64},
           "train": {"max_steps": 1, "batch_size": 4, "rank": 4, "alpha": 8, "max_length": 64},
           # review: candidates are made even when the judge's check fails, so its grading path runs
           "loop": {"rounds": 1, "budget": 3, "analysis_cap": 2, "fixed_rounds": True,
                    "generate_unconfirmed": "review"}}
    path = folder / "judged.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@contextmanager
def _judged_run(tmp_path: Path, *overrides: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The judge task run to its end: the run's view and its stored judge check, checked for
    what every judge-task run must show (finished; the check graded 4 items both ways)."""
    cfg = load(_judge_task(tmp_path), [f"store={tmp_path / 'r.db'}", f"workdir={tmp_path / 'w'}", *overrides])
    run_id = loop.start(cfg)
    with Ledger.open(cfg.store) as ledger:
        run = ledger.for_run(run_id)
        assert run.row()["status"] == "finished", run.row()["error"]
        check = (run.stage_detail(1, "teacher_check") or {})["judge"]
        assert check["n"] == 4 and set(check["items"][0]) >= {"reference_correct", "wrong_correct", "told_apart"}
        yield run, check


@pytest.mark.slow
def test_judge_task_runs_the_default_strategy_with_its_judge_checked(tmp_path: Path) -> None:
    """The default strategy, `pada`, on a judge-scored task: the judge is checked before round 1
    and stored with its items; the round's failures are the ones the judge marked wrong (its
    verdicts are the validation scores, so what `pada` targets follows them); and a judge that
    fails its check accepts no sample. (The candidates' grading path: the test below.)"""
    with _judged_run(tmp_path) as (run, check):
        assert run.config()["loop"]["strategy"] == "pada"
        assert run.stage_done(1, "patterns") and run.stage_done(1, "quality")
        wrong = [i for i, score in run.item_scores(0).items() if score == 0]
        assert (run.stage_detail(1, "analyze") or {})["failures"] == len(wrong)
        if not check["trusted"]:
            assert run.round(1)["n_accepted"] == 0


@pytest.mark.slow
def test_judge_task_run_checks_its_judge_and_lets_only_a_trusted_one_decide(tmp_path: Path) -> None:
    """A judge-scored task runs with the judge on: its judge is checked first (it grades a train
    item's own reference and another item's, and must tell them apart), and a judge that fails the
    check decides no sample, saying why; one that passes grades each candidate. (With the default
    loop.generate_unconfirmed: skip, a failed check skips generation instead.) `paraphrase` makes
    its candidates from train items whatever the student got wrong: the embedded judge passes every
    answer of the round-0 student here, which leaves `pada` nothing to target and no candidate."""
    with _judged_run(tmp_path, "loop.strategy=paraphrase") as (run, check):
        assert run.stage_done(1, "quality")
        reasons = [c["reason"] for c in run.candidate_rows(1)]
        assert len(reasons) == 3
        cheap = ("unparseable", "wrong format", "duplicate", "contamination", "copies the prompt")
        decided = [r for r in reasons if not r.startswith(cheap)]
        if check["trusted"]:  # every candidate the cheap checks let through was graded by the judge
            assert all("judge" in r for r in decided), reasons
        else:  # nothing it said decided a sample, and the rejection quotes the check
            assert all(r.startswith("answer not confirmed: judge told the reference") for r in decided), reasons
            assert run.round(1)["n_accepted"] == 0