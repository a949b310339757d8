"""The comparison report on recorded runs (no model runs): the paired interval for the last
round beside the selected one, `pada` against every other strategy, the selection rules, a
running cell left out of every number, and costs counted like for like."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pada_local.ledger.compare_report import comparison_report
from pada_local.ledger.rules import beats, select_round
from pada_local.ledger.runs import Ledger
from pada_local.ledger.store import RunStore
from pada_local.run.compare import parse_variant, round0_inputs

from .conftest import add_run, set_round

N = 40  # items per split


def _items(split: str, right: int) -> list[dict[str, Any]]:
    return [{"model": "trained", "split": split, "item_id": f"{split[0]}{i}", "input": "q", "reference": "a",
             "prediction": "a" if i < right else "b", "score": float(i < right)} for i in range(N)]


def _cell(store: RunStore, strategy: str, seed: int, scores: list[tuple[int, int]], status: str = "finished",
          round0_from: str | None = None) -> str:
    """A recorded run: per round (validation right, test right) out of N items each."""
    run_id = add_run(store, name=f"g/{strategy}/s{seed}", strategy=strategy, seed=seed)
    run = Ledger(store).for_run(run_id)
    for r, (val, test) in enumerate(scores):
        reused = round0_from if r == 0 else None
        run.write_stage(r, "eval", rows={"eval_items": _items("validation", val) + _items("test", test)},
                        stats={"seconds": 0.0 if reused else 20.0})
        if r >= 1:
            run.write_stage(r, "teacher_check" if r == 1 else "generate",
                            stats={"seconds": 5.0, "prompt_tokens": 100, "completion_tokens": 10})
        set_round(store, run_id, r, status="done", val_score=val / N, test_score=test / N, reused_from=reused,
                  n_synthetic=10 * r, n_accepted=8 * r)
    status_fields: dict[str, Any] = {"status": status}
    if status == "running":
        status_fields["pid"] = os.getpid()  # alive: really running
    Ledger(store).set_run(run_id, **status_fields)
    return run_id


def _grid(path: Path, select: str, running: bool = False) -> str:
    """none / llm2llm / pada x 3 seeds, rounds 0 and 1. pada's round 1 loses one validation item
    but gains 10 of 40 on test; llm2llm gains 4 on test; none's second model is the same."""
    with RunStore(path) as store:
        ledger = Ledger(store)
        config = {"raw": {"loop": {"select": select}}, "base": "."}
        cid = ledger.create_comparison(name="g", config=config, strategies=["none", "llm2llm", "pada"],
                                       seeds=[0, 1, 2])
        for seed in (0, 1, 2):
            none = _cell(store, "none", seed, [(20, 20 + seed), (20, 20 + seed)])
            ledger.add_comparison_run(cid, none, "none", seed)
            llm = _cell(store, "llm2llm", seed, [(20, 20 + seed), (20, 24 + seed)], round0_from=none)
            ledger.add_comparison_run(cid, llm, "llm2llm", seed)
            last = running and seed == 2
            pada = _cell(store, "pada", seed, [(20, 20 + seed), (19, 30 + seed)], round0_from=none,
                         status="running" if last else "finished")
            ledger.add_comparison_run(cid, pada, "pada", seed)
        ledger.mark_comparison(cid, "running" if running else "finished")
    return cid


def _report(path: Path, cid: str) -> dict[str, Any]:
    with RunStore(path) as store:
        return comparison_report(store, cid, n_boot=300)


def test_the_last_rounds_gain_is_reported_when_validation_picks_round_0(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    result = _report(path, _grid(path, "best_val"))
    pada = next(s for s in result["strategies"] if s["strategy"] == "pada")
    assert {c["selected_round"] for c in result["cells"] if c["strategy"] == "pada"} == {0}
    assert pada["vs_none"]["difference"] == pytest.approx(0.0)
    last = pada["vs_none_last"]
    assert last["difference"] == pytest.approx(10 / N) and last["low"] > 0 and last["wins"] == 3
    assert last["verdict"] == "better than none"
    assert pada["test_by_rule"]["last"] == pytest.approx(pada["test_last"]["mean"])


def test_keep_the_last_round_unless_validation_says_it_is_worse_beyond_noise(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    result = _report(path, _grid(path, "last_unless_worse"))
    assert result["select"] == "last_unless_worse"
    assert {c["selected_round"] for c in result["cells"] if c["strategy"] == "pada"} == {1}
    pada = next(s for s in result["strategies"] if s["strategy"] == "pada")
    assert pada["vs_none"]["low"] > 0  # one validation item lost is noise: the gain is the headline


def test_pada_is_compared_with_every_other_augmenting_strategy(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    result = _report(path, _grid(path, "last_unless_worse"))
    (pair,) = result["pairs"]
    assert (pair["a"], pair["b"]) == ("pada", "llm2llm")
    assert pair["last"]["difference"] == pytest.approx(6 / N) and pair["last"]["low"] > 0
    assert pair["selected"]["verdict"] == "better than llm2llm"


def test_a_running_cell_is_shown_and_left_out_of_every_number(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    result = _report(path, _grid(path, "best_val", running=True))
    pada = next(s for s in result["strategies"] if s["strategy"] == "pada")
    assert pada["seeds"] == [0, 1] and pada["vs_none"]["seeds"] == 2
    assert [(c["strategy"], c["seed"], c["status"]) for c in result["running"]] == [("pada", 2, "running")]


def test_costs_count_the_teacher_check_and_round_0_once_per_seed(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    result = _report(path, _grid(path, "best_val"))
    by = {s["strategy"]: s for s in result["strategies"]}
    assert by["pada"]["teacher_tokens"] == 3 * 110  # the teacher check's tokens count
    assert by["none"]["seconds"] == by["pada"]["seconds"] == 3 * 25.0  # round 0 is not charged to `none`
    assert result["cost"]["round0_seconds"] == {0: 20.0, 1: 20.0, 2: 20.0}


def test_mcnemar_needs_more_than_a_few_items_to_call_a_round_worse() -> None:
    right = {f"v{i}": 1.0 for i in range(40)}
    one_less = {**right, "v0": 0.0}
    assert not beats(right, one_less)  # 1 item of 40 is noise
    eight_less = {k: (0.0 if i < 8 else 1.0) for i, k in enumerate(right)}
    assert beats(right, eight_less) and not beats(eight_less, right)
    assert not beats(right, right)


def test_selection_rules_pick_their_rounds() -> None:
    rounds = [{"round": 0, "val_score": 0.5, "test_score": 0.5}, {"round": 1, "val_score": 0.45, "test_score": 0.7}]
    items = {0: {f"v{i}": float(i < 20) for i in range(40)}, 1: {f"v{i}": float(i < 18) for i in range(40)}}
    assert select_round(rounds, "best_val")["round"] == 0
    assert select_round(rounds, "last")["round"] == 1
    assert select_round(rounds, "last_unless_worse", items.__getitem__)["round"] == 1
    items[1] = {f"v{i}": float(i < 8) for i in range(40)}  # 12 items worse: beyond noise
    assert select_round(rounds, "last_unless_worse", items.__getitem__)["round"] == 0


def test_a_variant_is_a_named_strategy_with_overrides() -> None:
    assert parse_variant("pada-random=pada models.teacher=openai:http://127.0.0.1:9/v1#random") == (
        "pada-random", {"strategy": "pada", "set": ["models.teacher=openai:http://127.0.0.1:9/v1#random"]})
    for bad in ("pada", "x=nope", "pada=pada", "x=pada loop.budget"):
        with pytest.raises(Exception, match="variant"):
            parse_variant(bad)


def test_round_0_is_shared_only_by_cells_with_the_same_round_0_inputs() -> None:
    base = {"data": {"train": "t"}, "task": {"name": "x"}, "train": {"lr": 1e-4}, "loop": {"seed": 0,
            "strategy": "none"}, "models": {"student": "s", "teacher": "a"}}
    other_teacher = {**base, "models": {"student": "s", "teacher": "b"}, "loop": {"seed": 0, "strategy": "pada"}}
    other_training = {**base, "train": {"lr": 1e-3}}
    assert round0_inputs(base) == round0_inputs(other_teacher)
    assert round0_inputs(base) != round0_inputs(other_training)
    assert round0_inputs(base) != round0_inputs({**base, "loop": {"seed": 1}})
