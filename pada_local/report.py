"""Run summaries for `pada runs`, `pada runs show` and the end of `pada demo` (plain data;
the CLI and the TUI format it)."""

from __future__ import annotations

import json
from typing import Any

from .store import RunStore


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def run_rows(store: RunStore) -> list[dict[str, Any]]:
    from .loop import effective_status

    rows = []
    for run in store.runs():
        rounds = store.rounds(run["id"])
        rows.append({
            "id": run["id"], "name": run["name"], "task": run["task"], "strategy": run["strategy"],
            "student": run["student"], "teacher": run["teacher"], "status": effective_status(run),
            "rounds": sum(r["status"] == "done" for r in rounds), "best_round": run["best_round"],
            "best_val": run["best_val"], "best_test": run["best_test"], "created_at": run["created_at"],
            "seconds": round(sum(r["seconds"] or 0 for r in rounds), 1),
        })
    return rows


def round_table(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    """One row for zero-shot, then one per round: scores, samples, time."""
    rounds = store.rounds(run_id)
    rows: list[dict[str, Any]] = []
    first = next((r for r in rounds if r["round"] == 0), None)
    if first is not None and first["zero_shot_val"] is not None:
        rows.append({"round": "zero-shot", "val": _pct(first["zero_shot_val"]), "test": _pct(first["zero_shot_test"]),
                     "accepted": "-", "rejected": "-", "train_items": "-", "seconds": "-", "status": "done"})
    for r in rounds:
        rows.append({"round": str(r["round"]), "val": _pct(r["val_score"]), "test": _pct(r["test_score"]),
                     "accepted": "-" if r["n_accepted"] is None else r["n_accepted"],
                     "rejected": "-" if r["n_rejected"] is None else r["n_rejected"],
                     "train_items": r["n_train"] if r["n_train"] is not None else "-",
                     "seconds": "-" if r["seconds"] is None else f"{r['seconds']:.0f}",
                     "status": r["stop_reason"] or r["status"]})
    return rows


def run_detail(store: RunStore, run_id: str) -> dict[str, Any]:
    """Everything `pada runs show --json` prints: the run, its rounds, stages and patterns."""
    from .loop import effective_status

    run = dict(store.run(run_id))
    run["status"] = effective_status(run)
    run["config"] = json.loads(run.pop("config_json") or "{}")
    run["versions"] = json.loads(run.pop("versions_json") or "{}")
    stages = store.stages(run_id)
    for s in stages:
        s["detail"] = json.loads(s.pop("detail_json") or "null")
    return {
        "run": run, "rounds": store.rounds(run_id), "stages": stages,
        "patterns": [{k: p[k] for k in ("round", "cluster", "name", "description", "strategy", "size")}
                     for p in store.rows("patterns", run_id)],
        "metrics": store.rows("metrics", run_id),
        "counts": {t: store.count(t, run_id) for t in ("eval_items", "analyses", "clusters", "patterns",
                                                       "candidates", "train_steps", "metrics", "artifacts")},
    }
