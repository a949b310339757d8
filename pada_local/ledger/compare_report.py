"""The read model of a comparison (`pada compare`): per strategy the sealed-test scores over
seeds, the paired differences with bootstrap intervals, what each spent, and the per-pattern
evidence. Plain data for the CLI and the TUI, joined from the ledger's rows; nothing here
writes, and the selection rule is the ledger's (rules.py)."""

from __future__ import annotations

import json
from typing import Any

from .report import Source, as_ledger
from .rules import best_round
from .runs import Ledger
from .store import Row

TEACHER_STAGES = ("analyze", "patterns", "strategies", "generate", "quality")


def comparison_list(source: Source) -> list[Row]:
    ledger = as_ledger(source)
    return [{"id": c["id"], "name": c["name"], "status": c["status"],
             "strategies": json.loads(c["strategies_json"]), "seeds": json.loads(c["seeds_json"]),
             "created_at": c["created_at"]} for c in ledger.comparisons()]


def comparison_report(source: Source, comparison_id: str, *, n_boot: int = 2000) -> dict[str, Any]:
    """Per strategy: sealed-test accuracy (selected round and last round) mean ± sd over seeds,
    the paired difference to `none` with a 95% bootstrap interval and the share of seeds won,
    validation scores, samples, teacher tokens, time; per-pattern evidence for `pada`."""

    ledger = as_ledger(source)
    row = ledger.comparison(comparison_id)
    cells = [{**x, **_cell_result(ledger, x["run_id"])} for x in ledger.comparison_runs(row["id"])]
    strategies = json.loads(row["strategies_json"])
    baseline = [c for c in cells if c["strategy"] == "none"]
    return {"id": row["id"], "name": row["name"], "status": row["status"],
            "seeds": json.loads(row["seeds_json"]),
            "strategies": [_strategy_summary(s, [c for c in cells if c["strategy"] == s], baseline, n_boot)
                           for s in strategies],
            "cells": [{k: v for k, v in c.items() if not k.startswith("_")} for c in cells],
            "cost": ledger.comparison_cost(row["id"])}


def _cell_result(ledger: Ledger, run_id: str) -> Row:
    """One run of the grid: its selected round (best validation, same rule for every strategy)
    and last round, their scores and per-item test results, and what the run spent."""
    run = ledger.for_run(run_id)
    rounds = run.done_rounds()
    chosen, last = best_round(rounds), (rounds[-1] if rounds else None)
    fresh = {r["round"] for r in run.rounds() if r["reused_from"] is None}
    stages = [s for s in run.stages() if s["round"] in fresh]
    return {"selected_round": None if chosen is None else chosen["round"],
            "test_selected": None if chosen is None else chosen["test_score"],
            "val_selected": None if chosen is None else chosen["val_score"],
            "test_last": None if last is None else last["test_score"],
            "val_last": None if last is None else last["val_score"],
            "generated": sum(r["n_synthetic"] or 0 for r in rounds),
            "accepted": sum(r["n_accepted"] or 0 for r in rounds),
            "teacher_tokens": sum((s["prompt_tokens"] or 0) + (s["completion_tokens"] or 0)
                                  for s in stages if s["stage"] in TEACHER_STAGES),
            "seconds": round(sum(s["seconds"] or 0 for s in stages), 1),
            "_test_items": {} if chosen is None else _item_scores(ledger, run_id, chosen["round"], "test"),
            "patterns": _pattern_evidence(ledger, run_id, [r["round"] for r in rounds])}


def _item_scores(ledger: Ledger, run_id: str, r: int, split: str) -> dict[str, float]:
    return {x["item_id"]: x["score"] or 0.0 for x in ledger.for_run(run_id).eval_items(r, split)}


def _strategy_summary(strategy: str, cells: list[Row], baseline: list[Row], n_boot: int) -> Row:
    from .stats import mean_sd

    def spread(key: str) -> dict[str, float | None]:
        mean, sd = mean_sd([c[key] for c in cells if c[key] is not None])
        return {"mean": mean, "sd": sd}

    out: Row = {"strategy": strategy, "seeds": [c["seed"] for c in cells],
                "test_selected": spread("test_selected"), "test_last": spread("test_last"),
                "val_selected": spread("val_selected"), "generated": sum(c["generated"] for c in cells),
                "accepted": sum(c["accepted"] for c in cells),
                "teacher_tokens": sum(c["teacher_tokens"] for c in cells),
                "seconds": round(sum(c["seconds"] for c in cells), 1)}
    if strategy != "none":
        out["vs_none"] = _versus(cells, baseline, n_boot)
        out["patterns"] = _pattern_totals(cells)
    return out


def _versus(cells: list[Row], baseline: list[Row], n_boot: int) -> Row | None:
    """The paired difference to `none` (same seed, same test items), with a seeded bootstrap."""
    from .stats import paired_bootstrap

    base = {c["seed"]: c for c in baseline}
    diffs, wins, paired = {}, 0, 0
    for c in cells:
        b = base.get(c["seed"])
        if b is None or not c["_test_items"]:
            continue
        items = sorted(set(c["_test_items"]) & set(b["_test_items"]))
        diffs[c["seed"]] = [c["_test_items"][i] - b["_test_items"][i] for i in items]
        paired += 1
        wins += (c["test_selected"] or 0) > (b["test_selected"] or 0)
    if not paired:
        return None
    estimate, low, high = paired_bootstrap(diffs, n_boot=n_boot, seed=0)
    verdict = "no measurable gain at this size" if low <= 0 <= high else \
        ("better than none" if low > 0 else "worse than none")
    return {"difference": estimate, "low": low, "high": high, "wins": wins, "seeds": paired,
            "verdict": verdict}


def _pattern_evidence(ledger: Ledger, run_id: str, rounds: list[int]) -> list[Row]:
    """Per round with patterns: of the validation failures behind its patterns, the share the
    next model fixed, against the share of the other validation failures it fixed."""
    out = []
    for r in (x for x in rounds if x >= 1):
        targeted_all = set(ledger.for_run(run_id).cluster_of(r))
        if not targeted_all:
            continue
        before = _item_scores(ledger, run_id, r - 1, "validation")
        after = _item_scores(ledger, run_id, r, "validation")
        failed = {i for i, s in before.items() if s == 0}
        targeted, other = failed & targeted_all, failed - targeted_all
        out.append({"round": r, "targeted": len(targeted),
                    "targeted_fixed": sum(after.get(i, 0) > 0 for i in targeted),
                    "other": len(other), "other_fixed": sum(after.get(i, 0) > 0 for i in other)})
    return out


def _pattern_totals(cells: list[Row]) -> Row | None:
    rows = [p for c in cells for p in c["patterns"]]
    if not rows:
        return None
    total = {k: sum(p[k] for p in rows) for k in ("targeted", "targeted_fixed", "other", "other_fixed")}
    total["targeted_share"] = total["targeted_fixed"] / total["targeted"] if total["targeted"] else None
    total["other_share"] = total["other_fixed"] / total["other"] if total["other"] else None
    return total
