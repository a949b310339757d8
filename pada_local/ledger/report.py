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

from .rules import effective_status
from .runs import Ledger
from .store import RunStore

Row = dict[str, Any]
Source = Ledger | RunStore  # a RunStore is wrapped in a Ledger: every read goes through the ledger
Point = tuple[str, float | None, float | None]  # (label, val %, test %)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def as_ledger(source: Source) -> Ledger:
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
    ledger = as_ledger(source)
    rows = []
    for run in ledger.runs():
        rounds = ledger.for_run(run["id"]).rounds()
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
    ledger = as_ledger(source)
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
    return sum(s["seconds"] or 0 for s in ledger.for_run(row["id"]).stages()) or row["seconds"]


# ---------------------------------------------------------------- one run


def round_table(source: Source, run_id: str) -> list[Row]:
    """One row for zero-shot, then one per round: scores, samples, time."""
    rounds = as_ledger(source).for_run(run_id).rounds()
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
    ledger = as_ledger(source)
    run = dict(ledger.run(run_id))
    run["status"] = effective_status(run)
    run["config"] = json.loads(run.pop("config_json") or "{}")
    run["versions"] = json.loads(run.pop("versions_json") or "{}")
    stages = ledger.for_run(run_id).stages()
    for s in stages:
        s["detail"] = json.loads(s.pop("detail_json") or "null")
    return {
        "run": run, "rounds": ledger.for_run(run_id).rounds(), "stages": stages,
        "patterns": [{**{k: p[k] for k in ("round", "cluster", "name", "description", "strategy", "size")},
                      "keywords": pattern_keywords(p)} for p in ledger.for_run(run_id).pattern_rows()],
        "metrics": ledger.for_run(run_id).metrics(),
        "counts": ledger.for_run(run_id).counts(),
    }


def run_view(source: Source, run_id: str) -> dict[str, Any]:
    """Everything the TUI's run screen shows, read in one go (it compares two reads to skip
    redrawing an unchanged screen)."""
    ledger = as_ledger(source)
    run, rounds = ledger.run(run_id), ledger.for_run(run_id).rounds()
    return {
        "run": {**run, "status": effective_status(run)},
        "config": ledger.for_run(run_id).config(),
        "table": round_table(ledger, run_id),
        "scores": score_series(ledger, run_id),
        "loss": loss_series(ledger, run_id),
        "stages": {r["round"]: stage_rows(ledger, run_id, r["round"]) for r in rounds},
        "rounds": {r["round"]: r for r in rounds},
        "artifacts": ledger.for_run(run_id).artifacts(),
    }


def stage_rows(source: Source, run_id: str, round_: int) -> list[Row]:
    """A round's stages with tokens summed and the stage's detail as a dict."""
    return [{"stage": s["stage"], "status": s["status"], "items": s["items"], "seconds": s["seconds"],
             "finished_at": s["finished_at"],
             "tokens": (s["prompt_tokens"] or 0) + (s["completion_tokens"] or 0),
             "detail": json.loads(s.get("detail_json") or "null") or {}}
            for s in as_ledger(source).for_run(run_id).stages(round_)]


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
    for r in as_ledger(source).for_run(run_id).rounds():
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
    for s in as_ledger(source).for_run(run_id).train_steps():
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
    return sorted({p["round"] for p in as_ledger(source).for_run(run_id).pattern_rows()})


def patterns(source: Source, run_id: str, round_: int) -> list[PatternView]:
    """A round's patterns, each with the analyses and validation failures behind it and
    whether those failures were fixed when the student was evaluated after this round."""
    ledger = as_ledger(source)
    failures = _failures(ledger, run_id, round_)
    fixed = {m["pattern_id"]: m["value"] for m in ledger.for_run(run_id).metrics(round_, "pattern_fixed")}
    cands = ledger.for_run(run_id).candidate_rows(round_)
    return [_pattern_view(p, fixed.get(p["id"]), failures.get(p["cluster"], []), cands)
            for p in ledger.for_run(run_id).pattern_rows(round_)]


def _failures(ledger: Ledger, run_id: str, round_: int) -> dict[int, list[Failure]]:
    """cluster -> the failures its analyses explain. Patterns of round r are mined from the
    failures of the student evaluated after round r-1, and checked again after round r."""
    failed = _by_item(ledger.for_run(run_id).eval_items(round_ - 1, "validation"))
    after = _by_item(ledger.for_run(run_id).eval_items(round_, "validation"))
    by_cluster: dict[int, list[Failure]] = {}
    for a in ledger.for_run(run_id).analysis_rows(round_):
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
    ledger = as_ledger(source)
    names = {p["id"]: p["name"] for p in ledger.for_run(run_id).pattern_rows()}
    rows = ledger.for_run(run_id).candidate_rows()
    for c in rows:
        c["pattern"] = names.get(c["pattern_id"], "-") if c["pattern_id"] is not None else "-"
    return rows


def compare_runs(source: Source, run_ids: list[str]) -> list[Row]:
    """Per run, what the compare view puts side by side: the run, its rounds and score
    series, samples accepted and rejected (effective verdicts), and its total round time."""
    ledger = as_ledger(source)
    return [_comparison(ledger, run_id) for run_id in run_ids]


def _comparison(ledger: Ledger, run_id: str) -> Row:
    rounds = ledger.for_run(run_id).rounds()
    verdicts = [c["effective"] for c in ledger.for_run(run_id).candidate_rows()]
    return {"run": ledger.run(run_id), "rounds": rounds, "scores": score_series(ledger, run_id),
            "accepted": verdicts.count("accepted"), "rejected": verdicts.count("rejected"),
            "seconds": sum(x["seconds"] or 0 for x in rounds)}
