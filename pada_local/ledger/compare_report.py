"""The read model of a comparison (`pada compare`): per strategy the sealed-test scores over
seeds, for the selected round and for the last one; the paired difference of every strategy to
`none` and of `pada` (and its variants) to every other strategy, each with a bootstrap interval;
what each spent; and the per-pattern evidence. Plain data for the CLI and the TUI, joined from the
ledger's rows; nothing here writes, and the selection rule is the ledger's (rules.py).

A cell whose run has not finished is shown as running and left out of every mean and interval:
a seed counts once its run is done.
"""

from __future__ import annotations

import json
from typing import Any

from .report import Source, as_ledger
from .rules import SELECTIONS, select_round
from .run import RunLedger
from .stats import mean_sd, paired_bootstrap
from .store import Row

TEACHER_STAGES = ("analyze", "patterns", "strategies", "teacher_check", "generate", "quality")
WHICH = ("selected", "last")  # the two models of a cell the report sets side by side


def comparison_list(source: Source) -> list[Row]:
    ledger = as_ledger(source)
    return [{"id": c["id"], "name": c["name"], "status": c["status"],
             "strategies": json.loads(c["strategies_json"]), "seeds": json.loads(c["seeds_json"]),
             "created_at": c["created_at"]} for c in ledger.comparisons()]


def comparison_report(source: Source, comparison_id: str, *, n_boot: int = 2000,
                      select: str | None = None) -> dict[str, Any]:
    """Everything `pada compare --show` prints (and `--json` gives). `select`: read the cells
    under another selection rule than the comparison's own (the models are the same)."""
    ledger = as_ledger(source)
    row = ledger.comparison(comparison_id)
    saved = json.loads(row["config_json"] or "{}")
    rule = select or str(((saved.get("raw") or {}).get("loop") or {}).get("select") or "best_val")
    cells = [{**x, **_cell_result(ledger.for_run(x["run_id"]), rule)}
             for x in ledger.comparison_runs(row["id"])]
    strategies = json.loads(row["strategies_json"])
    done = {s: [c for c in cells if c["strategy"] == s and c["status"] == "finished"] for s in strategies}
    return {"id": row["id"], "name": row["name"], "status": row["status"], "select": rule,
            "seeds": json.loads(row["seeds_json"]), "variants": saved.get("variants") or {},
            "strategies": [_summary(s, done[s], done.get("none", []), n_boot) for s in strategies],
            "pairs": _pairs(strategies, saved.get("variants") or {}, done, n_boot),
            "running": [{k: c[k] for k in ("strategy", "seed", "run_id", "status")}
                        for c in cells if c["status"] != "finished"],
            "cells": [{k: v for k, v in c.items() if not k.startswith("_")} for c in cells],
            "cost": {**ledger.comparison_cost(row["id"]), "round0_seconds": _round0_seconds(cells)}}


def _cell_result(run: RunLedger, rule: str) -> Row:
    """One run of the grid: the round the comparison's rule selects and the last round, their
    scores and per-item test results; the test score every other rule would have selected; and
    what the run spent in its own rounds (round 0 is reported once per seed, in the cost)."""
    rounds = run.done_rounds()
    by_rule = {name: select_round(rounds, name, run.item_scores) for name in SELECTIONS}
    chosen, last = by_rule[rule], (rounds[-1] if rounds else None)
    stages = [s for s in run.stages() if s["round"] >= 1]
    return {"selected_round": _get(chosen, "round"), "last_round": _get(last, "round"),
            "test_selected": _get(chosen, "test_score"), "val_selected": _get(chosen, "val_score"),
            "test_last": _get(last, "test_score"), "val_last": _get(last, "val_score"),
            "test_by_rule": {name: _get(x, "test_score") for name, x in by_rule.items()},
            "generated": sum(r["n_synthetic"] or 0 for r in rounds),
            "accepted": sum(r["n_accepted"] or 0 for r in rounds),
            "teacher_tokens": sum((s["prompt_tokens"] or 0) + (s["completion_tokens"] or 0)
                                  for s in stages if s["stage"] in TEACHER_STAGES),
            "seconds": round(sum(s["seconds"] or 0 for s in stages), 1),
            "round0_seconds": round(sum(s["seconds"] or 0 for s in run.stages(0)), 1),
            "round0_reused": bool(rounds and rounds[0]["reused_from"]),
            "_test": {w: {} if x is None else run.item_scores(x["round"], "test")
                      for w, x in (("selected", chosen), ("last", last))},
            "patterns": _pattern_evidence(run, [r["round"] for r in rounds])}


def _get(row: Any, key: str) -> Any:
    return None if row is None else row[key]


def _round0_seconds(cells: list[Row]) -> dict[int, float]:
    """Round 0 is computed once per seed and shared: its time, once per seed."""
    return {c["seed"]: c["round0_seconds"] for c in cells if not c["round0_reused"] and c["round0_seconds"]}


def _summary(strategy: str, cells: list[Row], baseline: list[Row], n_boot: int) -> Row:
    def spread(key: str) -> dict[str, float | None]:
        mean, sd = mean_sd([c[key] for c in cells if c[key] is not None])
        return {"mean": mean, "sd": sd}

    out: Row = {"strategy": strategy, "seeds": [c["seed"] for c in cells],
                "test_selected": spread("test_selected"), "test_last": spread("test_last"),
                "val_selected": spread("val_selected"), "val_last": spread("val_last"),
                "test_by_rule": {rule: mean_sd([c["test_by_rule"][rule] for c in cells
                                                if c["test_by_rule"][rule] is not None])[0]
                                 for rule in SELECTIONS},
                "generated": sum(c["generated"] for c in cells),
                "accepted": sum(c["accepted"] for c in cells),
                "teacher_tokens": sum(c["teacher_tokens"] for c in cells),
                "seconds": round(sum(c["seconds"] for c in cells), 1)}
    if strategy != "none":
        out["vs_none"] = versus(cells, baseline, "selected", n_boot)
        out["vs_none_last"] = versus(cells, baseline, "last", n_boot)
        out["patterns"] = _pattern_totals(cells)
    return out


def versus(cells: list[Row], other: list[Row], which: str, n_boot: int) -> Row | None:
    """The paired difference of two strategies (same seed, same test items) for the selected or
    the last model of each cell, with a seeded bootstrap over seeds and items."""
    base = {c["seed"]: c for c in other}
    diffs: dict[int, list[float]] = {}
    wins = 0
    for c in cells:
        b = base.get(c["seed"])
        if b is None or not c["_test"][which] or not b["_test"][which]:
            continue
        mine, theirs = c["_test"][which], b["_test"][which]
        diffs[c["seed"]] = [mine[i] - theirs[i] for i in sorted(set(mine) & set(theirs))]
        wins += (c[f"test_{which}"] or 0) > (b[f"test_{which}"] or 0)
    if not diffs:
        return None
    estimate, low, high = paired_bootstrap(diffs, n_boot=n_boot, seed=0)
    against = (other[0]["strategy"] if other else "none")
    verdict = "no measurable difference at this size" if low <= 0 <= high else \
        (f"better than {against}" if low > 0 else f"worse than {against}")
    if against == "none" and low <= 0 <= high:
        verdict = "no measurable gain at this size"
    return {"difference": estimate, "low": low, "high": high, "wins": wins, "seeds": len(diffs),
            "verdict": verdict}


def _pairs(strategies: list[str], variants: dict[str, Any], done: dict[str, list[Row]],
           n_boot: int) -> list[Row]:
    """`pada` (and every variant of it) against every other augmenting strategy: does targeting
    beat untargeted augmentation of the same size? (Against `none`: vs_none.)"""
    def base(name: str) -> str:
        return str((variants.get(name) or {}).get("strategy", name))

    out = []
    for a in (s for s in strategies if base(s) == "pada"):
        for b in (s for s in strategies if s not in (a, "none")):
            out.append({"a": a, "b": b, **{w: versus(done[a], done[b], w, n_boot) for w in WHICH}})
    return out


def _pattern_evidence(run: RunLedger, rounds: list[int]) -> list[Row]:
    """Per round with patterns, per pattern: of the validation failures behind it, the share the
    next model fixed, against the share of the other validation failures it fixed."""
    out = []
    for r in (x for x in rounds if x >= 1):
        clusters = run.cluster_of(r)
        if not clusters:
            continue
        before, after = run.item_scores(r - 1), run.item_scores(r)
        failed = {i for i, s in before.items() if s == 0}
        names = {p["cluster"]: p["name"] for p in run.pattern_rows(r)}
        for cluster_id in sorted(set(clusters.values())):
            mine = failed & {i for i, c in clusters.items() if c == cluster_id}
            other = failed - mine
            out.append({"round": r, "cluster": cluster_id, "pattern": names.get(cluster_id, ""),
                        "targeted": len(mine), "targeted_fixed": sum(after.get(i, 0) > 0 for i in mine),
                        "other": len(other), "other_fixed": sum(after.get(i, 0) > 0 for i in other)})
    return out


def _pattern_totals(cells: list[Row]) -> Row | None:
    """Over seeds and rounds: failures behind any pattern fixed, against failures behind none."""
    by_round: dict[tuple[int, int], list[Row]] = {}
    for c in cells:
        for p in c["patterns"]:
            by_round.setdefault((c["seed"], p["round"]), []).append(p)
    if not by_round:
        return None
    total = {"targeted": 0, "targeted_fixed": 0, "other": 0, "other_fixed": 0}
    for rows in by_round.values():
        total["targeted"] += sum(p["targeted"] for p in rows)
        total["targeted_fixed"] += sum(p["targeted_fixed"] for p in rows)
        untargeted = rows[0]["other"] - sum(p["targeted"] for p in rows[1:])  # failures behind no pattern
        fixed_untargeted = rows[0]["other_fixed"] - sum(p["targeted_fixed"] for p in rows[1:])
        total["other"] += untargeted
        total["other_fixed"] += fixed_untargeted
    shares = {"targeted_share": total["targeted_fixed"] / total["targeted"] if total["targeted"] else None,
              "other_share": total["other_fixed"] / total["other"] if total["other"] else None}
    return {**total, **shares}
