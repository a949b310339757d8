"""The read model of runs, shared by the CLI and the TUI: plain data assembled from the ledger.

Every function takes a Ledger (or an open RunStore, which it wraps; the caller's thread owns
the store) and returns plain dicts or dataclasses; the CLI and the TUI format them. Nothing
here writes, and nothing repeats a stage's logic or a ledger rule (effective verdict,
effective status, best round): it only joins stored rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .runs import Ledger, effective_status
from .store import RunStore

Row = dict[str, Any]
Source = Ledger | RunStore  # a RunStore is wrapped in a Ledger: every read goes through the ledger
Point = tuple[str, float | None, float | None]  # (label, val %, test %)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _ledger(source: Source) -> Ledger:
    """Callers that hold an open RunStore (tests, scripts) get it wrapped: reads still go
    through the ledger's named methods."""
    return source if isinstance(source, Ledger) else Ledger(source)


def parse_time(text: str | None) -> datetime | None:
    """Store timestamps are ISO 8601 in UTC; None or junk gives None."""
    if not text:
        return None
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


# ---------------------------------------------------------------- runs


def run_rows(source: Source) -> list[Row]:
    """One summary row per run (`pada runs`)."""
    ledger = _ledger(source)
    rows = []
    for run in ledger.runs():
        rounds = ledger.rounds(run["id"])
        rows.append({
            "id": run["id"], "name": run["name"], "task": run["task"], "strategy": run["strategy"],
            "student": run["student"], "teacher": run["teacher"], "status": effective_status(run),
            "rounds": sum(r["status"] == "done" for r in rounds), "best_round": run["best_round"],
            "best_val": run["best_val"], "best_test": run["best_test"], "created_at": run["created_at"],
            "seconds": round(sum(r["seconds"] or 0 for r in rounds), 1),
        })
    return rows


def run_list(source: Source) -> list[Row]:
    """run_rows plus a duration that keeps growing while a run runs (the TUI's runs table)."""
    ledger = _ledger(source)
    rows = run_rows(ledger)
    now = datetime.now(timezone.utc)
    for row in rows:
        row["duration"] = _duration(ledger, row, now)
    return rows


def _duration(ledger: Ledger, row: Row, now: datetime) -> float:
    stamp = parse_time(row["created_at"])
    if row["status"] == "running" and stamp is not None:
        return (now - stamp).total_seconds()
    # Stage time counts unfinished rounds too (a cancelled run's round has no total yet).
    return sum(s["seconds"] or 0 for s in ledger.stages(row["id"])) or row["seconds"]


# ---------------------------------------------------------------- one run


def round_table(source: Source, run_id: str) -> list[Row]:
    """One row for zero-shot, then one per round: scores, samples, time."""
    rounds = _ledger(source).rounds(run_id)
    rows: list[Row] = []
    first = next((r for r in rounds if r["round"] == 0), None)
    if first is not None and first["zero_shot_val"] is not None:
        rows.append({"round": "zero-shot", "val": _pct(first["zero_shot_val"]),
                     "test": _pct(first["zero_shot_test"]), "accepted": "-", "rejected": "-",
                     "train_items": "-", "seconds": "-", "status": "done"})
    rows += [_round_row(r) for r in rounds]
    return rows


def _round_row(r: Row) -> Row:
    return {"round": str(r["round"]), "val": _pct(r["val_score"]), "test": _pct(r["test_score"]),
            "accepted": "-" if r["n_accepted"] is None else r["n_accepted"],
            "rejected": "-" if r["n_rejected"] is None else r["n_rejected"],
            "train_items": r["n_train"] if r["n_train"] is not None else "-",
            "seconds": "-" if r["seconds"] is None else f"{r['seconds']:.0f}",
            "status": r["stop_reason"] or r["status"]}


def run_detail(source: Source, run_id: str) -> dict[str, Any]:
    """Everything `pada runs show --json` prints: the run, its rounds, stages and patterns."""
    ledger = _ledger(source)
    run = dict(ledger.run(run_id))
    run["status"] = effective_status(run)
    run["config"] = json.loads(run.pop("config_json") or "{}")
    run["versions"] = json.loads(run.pop("versions_json") or "{}")
    stages = ledger.stages(run_id)
    for s in stages:
        s["detail"] = json.loads(s.pop("detail_json") or "null")
    return {
        "run": run, "rounds": ledger.rounds(run_id), "stages": stages,
        "patterns": [{**{k: p[k] for k in ("round", "cluster", "name", "description", "strategy", "size")},
                      "keywords": pattern_keywords(p)} for p in ledger.pattern_rows(run_id)],
        "metrics": ledger.metrics(run_id),
        "counts": ledger.counts(run_id),
    }


def run_view(source: Source, run_id: str) -> dict[str, Any]:
    """Everything the TUI's run screen shows, read in one go (it compares two reads to skip
    redrawing an unchanged screen)."""
    ledger = _ledger(source)
    run, rounds = ledger.run(run_id), ledger.rounds(run_id)
    return {
        "run": {**run, "status": effective_status(run)},
        "config": ledger.config(run_id),
        "table": round_table(ledger, run_id),
        "scores": score_series(ledger, run_id),
        "loss": loss_series(ledger, run_id),
        "stages": {r["round"]: stage_rows(ledger, run_id, r["round"]) for r in rounds},
        "rounds": {r["round"]: r for r in rounds},
        "artifacts": ledger.artifacts(run_id),
    }


def stage_rows(source: Source, run_id: str, round_: int) -> list[Row]:
    """A round's stages with tokens summed and the stage's detail as a dict."""
    return [{"stage": s["stage"], "status": s["status"], "items": s["items"], "seconds": s["seconds"],
             "finished_at": s["finished_at"],
             "tokens": (s["prompt_tokens"] or 0) + (s["completion_tokens"] or 0),
             "detail": json.loads(s.get("detail_json") or "null") or {}}
            for s in _ledger(source).stages(run_id, round_)]


def stage_notes(stages: Sequence[Row]) -> list[str]:
    """The plain lines a reader needs from stage details: the teacher check's verdicts and the
    training set's label mix next to D_train's (stages as `stage_rows` or `run_detail` give them)."""
    notes: list[str] = []
    for s in stages:
        d = s.get("detail") or {}
        if s["stage"] == "teacher_check":
            notes += [d[k]["line"] for k in ("teacher", "judge") if k in d]
        if s["stage"] == "quality" and d.get("label_mix"):
            dropped = d.get("dropped_for_balance") or 0
            tail = f", {dropped} dropped for balance)" if dropped else ")"
            notes.append(f"label mix {_mix(d['label_mix'])} (D_train {_mix(d['label_mix_train'])}; "
                         f"distance {d['label_tv']:.2f}{tail}")
    return notes


def _mix(shares: dict[str, float]) -> str:
    return ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items())


def score_series(source: Source, run_id: str) -> list[Point]:
    """(label, val %, test %) for zero-shot and each round, for the score charts."""
    points: list[Point] = []
    for r in _ledger(source).rounds(run_id):
        if r["round"] == 0 and r["zero_shot_val"] is not None:
            points.append(("zero-shot", _percent(r["zero_shot_val"]), _percent(r["zero_shot_test"])))
        if r["val_score"] is not None or r["test_score"] is not None:
            points.append((f"r{r['round']}", _percent(r["val_score"]), _percent(r["test_score"])))
    return points


def _percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


def loss_series(source: Source, run_id: str) -> dict[int, list[tuple[int, float]]]:
    """Training loss per round: {round: [(step, loss), ...]}."""
    series: dict[int, list[tuple[int, float]]] = {}
    for s in _ledger(source).train_steps(run_id):
        if s["loss"] is not None:
            series.setdefault(s["round"], []).append((s["step"], s["loss"]))
    return series


# ---------------------------------------------------------------- patterns


@dataclass
class Failure:
    """One validation failure behind a pattern, with the teacher's analysis of it."""

    item_id: str
    root_cause: str
    error_scenario: str
    input: str
    reference: str
    prediction: str
    fixed: bool | None  # after this round's training; None while not evaluated yet


@dataclass
class PatternView:
    id: int
    round: int
    cluster: int
    name: str
    description: str
    strategy: str
    size: int
    fixed: float | None  # share of its failures fixed (metric 'pattern_fixed'), None if unknown
    failures: list[Failure] = field(default_factory=list)
    samples: int = 0
    accepted: int = 0
    keywords: list[str] = field(default_factory=list)  # shown beside the name, always


def pattern_keywords(p: Row) -> list[str]:
    """A pattern row's keywords; [] for rows stored before keywords existed."""
    return list(json.loads(p.get("keywords_json") or "[]"))


def name_with_keywords(name: str, keywords: list[str]) -> str:
    """A pattern's name with its keywords beside it, as `runs show` and the TUI print it."""
    return f"{name} (keywords: {', '.join(keywords)})" if keywords else name


def pattern_rounds(source: Source, run_id: str) -> list[int]:
    return sorted({p["round"] for p in _ledger(source).pattern_rows(run_id)})


def patterns(source: Source, run_id: str, round_: int) -> list[PatternView]:
    """A round's patterns, each with the analyses and validation failures behind it and
    whether those failures were fixed when the student was evaluated after this round."""
    ledger = _ledger(source)
    failures = _failures(ledger, run_id, round_)
    fixed = {m["pattern_id"]: m["value"] for m in ledger.metrics(run_id, round_, "pattern_fixed")}
    cands = ledger.candidate_rows(run_id, round_)
    return [_pattern_view(p, fixed.get(p["id"]), failures.get(p["cluster"], []), cands)
            for p in ledger.pattern_rows(run_id, round_)]


def _failures(ledger: Ledger, run_id: str, round_: int) -> dict[int, list[Failure]]:
    """cluster -> the failures its analyses explain. Patterns of round r are mined from the
    failures of the student evaluated after round r-1, and checked again after round r."""
    failed = _by_item(ledger.eval_items(run_id, round_ - 1, "validation"))
    after = _by_item(ledger.eval_items(run_id, round_, "validation"))
    by_cluster: dict[int, list[Failure]] = {}
    for a in ledger.analysis_rows(run_id, round_):
        if a["cluster"] is not None:
            by_cluster.setdefault(a["cluster"], []).append(_failure(a, failed, after))
    return by_cluster


def _pattern_view(p: Row, fixed: float | None, failures: list[Failure], cands: list[Row]) -> PatternView:
    mine = [c for c in cands if c["pattern_id"] == p["id"]]
    return PatternView(p["id"], p["round"], p["cluster"], p["name"] or "", p["description"] or "",
                       p["strategy"] or "", p["size"] or 0, fixed, failures, len(mine),
                       sum(c["effective"] == "accepted" for c in mine), pattern_keywords(p))


def _by_item(rows: list[Row]) -> dict[str, Row]:
    return {x["item_id"]: x for x in rows}


def _failure(a: Row, failed: dict[str, Row], after: dict[str, Row]) -> Failure:
    item = failed.get(a["item_id"], {})
    later = after.get(a["item_id"])
    return Failure(a["item_id"], a["root_cause"] or "", a["error_scenario"] or "", item.get("input") or "",
                   item.get("reference") or "", item.get("prediction") or "",
                   None if later is None or later["score"] is None else later["score"] > 0)


# ---------------------------------------------------------------- samples and comparison


def samples(source: Source, run_id: str) -> list[Row]:
    """All candidates of a run with their effective verdict and their pattern's name."""
    ledger = _ledger(source)
    names = {p["id"]: p["name"] for p in ledger.pattern_rows(run_id)}
    rows = ledger.candidate_rows(run_id)
    for c in rows:
        c["pattern"] = names.get(c["pattern_id"], "-") if c["pattern_id"] is not None else "-"
    return rows


def compare_runs(source: Source, run_ids: list[str]) -> list[Row]:
    """Per run, what the compare view puts side by side: the run, its rounds and score
    series, samples accepted and rejected (effective verdicts), and its total round time."""
    ledger = _ledger(source)
    return [_comparison(ledger, run_id) for run_id in run_ids]


def _comparison(ledger: Ledger, run_id: str) -> Row:
    rounds = ledger.rounds(run_id)
    verdicts = [c["effective"] for c in ledger.candidate_rows(run_id)]
    return {"run": ledger.run(run_id), "rounds": rounds, "scores": score_series(ledger, run_id),
            "accepted": verdicts.count("accepted"), "rejected": verdicts.count("rejected"),
            "seconds": sum(x["seconds"] or 0 for x in rounds)}


# ---------------------------------------------------------------- comparisons (`pada compare`)

TEACHER_STAGES = ("analyze", "patterns", "strategies", "generate", "quality")


def comparison_list(source: Source) -> list[Row]:
    ledger = _ledger(source)
    return [{"id": c["id"], "name": c["name"], "status": c["status"],
             "strategies": json.loads(c["strategies_json"]), "seeds": json.loads(c["seeds_json"]),
             "created_at": c["created_at"]} for c in ledger.comparisons()]


def comparison_report(source: Source, comparison_id: str, *, n_boot: int = 2000) -> dict[str, Any]:
    """Per strategy: sealed-test accuracy (selected round and last round) mean ± sd over seeds,
    the paired difference to `none` with a 95% bootstrap interval and the share of seeds won,
    validation scores, samples, teacher tokens, time; per-pattern evidence for `pada`."""
    from .compare import cost

    ledger = _ledger(source)
    row = ledger.comparison(comparison_id)
    cells = [{**x, **_cell_result(ledger, x["run_id"])} for x in ledger.comparison_runs(row["id"])]
    strategies = json.loads(row["strategies_json"])
    baseline = [c for c in cells if c["strategy"] == "none"]
    return {"id": row["id"], "name": row["name"], "status": row["status"],
            "seeds": json.loads(row["seeds_json"]),
            "strategies": [_strategy_summary(s, [c for c in cells if c["strategy"] == s], baseline, n_boot)
                           for s in strategies],
            "cells": [{k: v for k, v in c.items() if not k.startswith("_")} for c in cells],
            "cost": cost(ledger, row["id"])}


def _cell_result(ledger: Ledger, run_id: str) -> Row:
    """One run of the grid: its selected round (best validation, same rule for every strategy)
    and last round, their scores and per-item test results, and what the run spent."""
    from .runs import best_round

    rounds = [r for r in ledger.rounds(run_id) if r["status"] == "done" and r["val_score"] is not None]
    chosen, last = best_round(rounds), (rounds[-1] if rounds else None)
    fresh = {r["round"] for r in ledger.rounds(run_id) if r["reused_from"] is None}
    stages = [s for s in ledger.stages(run_id) if s["round"] in fresh]
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
    return {x["item_id"]: x["score"] or 0.0 for x in ledger.eval_items(run_id, r, split)}


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
        targeted_all = set(ledger.cluster_of(run_id, r))
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
