"""Read models for the screens: plain data assembled from the run store's public API.

Every function takes an open RunStore (the caller's thread owns it) and returns plain
dicts/dataclasses, so screens stay about layout and tests can check the data without a UI.
Nothing here writes, and nothing here repeats a stage's logic: it only joins stored rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pada_local.report import round_table, run_rows
from pada_local.store import RunStore

from .format import parse_time

# Runs that can be continued with `loop.resume` (a finished run cannot; a live one must not).
RESUMABLE = ("cancelled", "interrupted", "failed")
VERDICT_FILTERS = ("all", "accepted", "rejected", "pending", "changed by you")


# ---------------------------------------------------------------- runs


def runs(store: RunStore) -> list[dict[str, Any]]:
    """The runs table: report.run_rows plus a duration that keeps growing while a run runs."""
    rows = run_rows(store)
    now = datetime.now(timezone.utc)
    for row in rows:
        stamp = parse_time(row["created_at"])
        if row["status"] == "running" and stamp is not None:
            row["duration"] = (now - stamp).total_seconds()
        else:  # stage time counts unfinished rounds too (a cancelled run's round has no total yet)
            row["duration"] = sum(s["seconds"] or 0 for s in store.stages(row["id"])) or row["seconds"]
    return rows


def matches(row: dict[str, Any], text: str) -> bool:
    """True when every word of the filter occurs in one of the row's text fields."""
    haystack = " ".join(str(row.get(k) or "") for k in
                        ("id", "name", "task", "student", "teacher", "strategy", "status")).lower()
    return all(word in haystack for word in text.lower().split())


def sort_rows(rows: list[dict[str, Any]], key: str, reverse: bool) -> list[dict[str, Any]]:
    """Sort by one column; missing values always sort last, whatever the direction."""
    present = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]
    present.sort(key=lambda r: (str(type(r[key])), r[key]), reverse=reverse)
    return present + missing


# ---------------------------------------------------------------- one run


def config_of(run: dict[str, Any]) -> dict[str, Any]:
    return json.loads(run.get("config_json") or "{}")


def rounds_table(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    return round_table(store, run_id)


def stage_rows(store: RunStore, run_id: str, round_: int) -> list[dict[str, Any]]:
    """A round's stages with tokens summed and the detail flattened to one short line."""
    out = []
    for s in store.stages(run_id, round_):
        detail = json.loads(s.get("detail_json") or "null") or {}
        out.append({"stage": s["stage"], "status": s["status"], "items": s["items"],
                    "seconds": s["seconds"], "finished_at": s["finished_at"],
                    "tokens": (s["prompt_tokens"] or 0) + (s["completion_tokens"] or 0),
                    "detail": ", ".join(f"{k}={_short(v)}" for k, v in sorted(detail.items()))})
    return out


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + " ".join(f"{k}:{v}" for k, v in value.items()) + "}"
    return str(value)


def score_series(store: RunStore, run_id: str) -> list[tuple[str, float | None, float | None]]:
    """(label, val %, test %) for zero-shot and each round, for the score chart."""
    points: list[tuple[str, float | None, float | None]] = []
    for r in store.rounds(run_id):
        if r["round"] == 0 and r["zero_shot_val"] is not None:
            points.append(("zero-shot", _pct(r["zero_shot_val"]), _pct(r["zero_shot_test"])))
        if r["val_score"] is not None or r["test_score"] is not None:
            points.append((f"r{r['round']}", _pct(r["val_score"]), _pct(r["test_score"])))
    return points


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def loss_series(store: RunStore, run_id: str) -> dict[int, list[tuple[int, float]]]:
    """Training loss per round: {round: [(step, loss), ...]}."""
    series: dict[int, list[tuple[int, float]]] = {}
    for s in store.rows("train_steps", run_id):
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


def pattern_rounds(store: RunStore, run_id: str) -> list[int]:
    return sorted({p["round"] for p in store.rows("patterns", run_id)})


def patterns(store: RunStore, run_id: str, round_: int) -> list[PatternView]:
    """A round's patterns, each with the analyses and validation failures behind it and
    whether those failures were fixed when the student was evaluated after this round."""
    failed = _by_item(store.rows("eval_items", run_id, round_ - 1, model="trained", split="validation"))
    after = _by_item(store.rows("eval_items", run_id, round_, model="trained", split="validation"))
    fixed = {m["pattern_id"]: m["value"] for m in store.rows("metrics", run_id, round_, name="pattern_fixed")}
    by_cluster: dict[int, list[Failure]] = {}
    for a in store.rows("analyses", run_id, round_):
        if a["cluster"] is not None:
            by_cluster.setdefault(a["cluster"], []).append(_failure(a, failed, after))
    cands = store.rows("candidates", run_id, round_)
    return [PatternView(p["id"], p["round"], p["cluster"], p["name"] or "", p["description"] or "",
                        p["strategy"] or "", p["size"] or 0, fixed.get(p["id"]), by_cluster.get(p["cluster"], []),
                        sum(c["pattern_id"] == p["id"] for c in cands),
                        sum(c["pattern_id"] == p["id"] and effective(c) == "accepted" for c in cands))
            for p in store.rows("patterns", run_id, round_)]


def _by_item(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {x["item_id"]: x for x in rows}


def _failure(a: dict[str, Any], failed: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> Failure:
    item = failed.get(a["item_id"], {})
    later = after.get(a["item_id"])
    return Failure(a["item_id"], a["root_cause"] or "", a["error_scenario"] or "", item.get("input") or "",
                   item.get("reference") or "", item.get("prediction") or "",
                   None if later is None or later["score"] is None else later["score"] > 0)


# ---------------------------------------------------------------- samples


def effective(candidate: dict[str, Any]) -> str:
    """The verdict that counts: a person's verdict overrides quality control's (as in the loop)."""
    return candidate.get("human_verdict") or candidate["verdict"] or "pending"


def samples(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    """All candidates of a run with their effective verdict and their pattern's name."""
    names = {p["id"]: p["name"] for p in store.rows("patterns", run_id)}
    rows = store.rows("candidates", run_id)
    for c in rows:
        c["effective"] = effective(c)
        c["pattern"] = names.get(c["pattern_id"], "-") if c["pattern_id"] is not None else "-"
    return rows


def filter_samples(rows: list[dict[str, Any]], *, round_: int | None = None, pattern: int | str | None = None,
                   verdict: str = "all") -> list[dict[str, Any]]:
    """pattern: a pattern id, 'none' (samples without a pattern: error-correcting or
    paraphrase) or None (any). verdict: one of VERDICT_FILTERS."""
    out = []
    for c in rows:
        if round_ is not None and c["round"] != round_:
            continue
        if pattern == "none" and c["pattern_id"] is not None or isinstance(pattern, int) and c["pattern_id"] != pattern:
            continue
        if verdict == "changed by you" and not c.get("human_verdict"):
            continue
        if verdict not in ("all", "changed by you") and c["effective"] != verdict:
            continue
        out.append(c)
    return out


# ---------------------------------------------------------------- compare


def compare(store: RunStore, run_ids: list[str]) -> list[tuple[str, list[str]]]:
    """Rows of (label, one value per run) for the compare screen: scores per round,
    samples accepted/rejected, time."""
    from .format import duration, pct

    infos = [(store.run(i), store.rounds(i), samples(store, i)) for i in run_ids]
    rows: list[tuple[str, list[str]]] = [
        ("name", [r["name"] or "-" for r, _, _ in infos]),
        ("strategy", [r["strategy"] or "-" for r, _, _ in infos]),
        ("student", [r["student"] or "-" for r, _, _ in infos]),
        ("teacher", [r["teacher"] or "-" for r, _, _ in infos]),
        ("zero-shot val / test", [_pair(_round(rs, 0), "zero_shot_val", "zero_shot_test") for _, rs, _ in infos]),
    ]
    last = max((x["round"] for _, rs, _ in infos for x in rs), default=-1)
    for n in range(last + 1):
        rows.append((f"round {n} val / test", [_pair(_round(rs, n), "val_score", "test_score") for _, rs, _ in infos]))
    rows += [
        ("best round", [str(r["best_round"]) if r["best_round"] is not None else "-" for r, _, _ in infos]),
        ("best val / test", [f"{pct(r['best_val'])} / {pct(r['best_test'])}" for r, _, _ in infos]),
        ("samples accepted", [str(sum(effective(c) == "accepted" for c in cs)) for _, _, cs in infos]),
        ("samples rejected", [str(sum(effective(c) == "rejected" for c in cs)) for _, _, cs in infos]),
        ("time", [duration(sum(x["seconds"] or 0 for x in rs)) for _, rs, _ in infos]),
        ("stopped", [r.get("stop_reason") or "-" for r, _, _ in infos]),
    ]
    return rows


def _round(rounds: list[dict[str, Any]], n: int) -> dict[str, Any] | None:
    return next((x for x in rounds if x["round"] == n), None)


def _pair(row: dict[str, Any] | None, a: str, b: str) -> str:
    from .format import pct

    return "-" if row is None else f"{pct(row[a])} / {pct(row[b])}"
