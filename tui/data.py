"""Presentation of the read model for the screens: filtering, sorting and formatting rows.

The rows themselves come from `pada_local.ledger.report` (which reads them through the run ledger);
nothing here reads the store, and nothing here decides a rule such as a verdict or a status.
"""

from __future__ import annotations

from typing import Any

from pada_local import printing

from .format import duration, pct, started

VERDICT_FILTERS = ("all", "accepted", "rejected", "pending", "changed by you")
Row = dict[str, Any]


# ---------------------------------------------------------------- runs


def matches(row: Row, text: str) -> bool:
    """True when every word of the filter occurs in one of the row's text fields."""
    haystack = " ".join(str(row.get(k) or "") for k in
                        ("id", "name", "task", "student", "teacher", "strategy", "status")).lower()
    return all(word in haystack for word in text.lower().split())


def sort_rows(rows: list[Row], key: str, reverse: bool) -> list[Row]:
    """Sort by one column; missing values always sort last, whatever the direction."""
    present = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]
    present.sort(key=lambda r: (str(type(r[key])), r[key]), reverse=reverse)
    return present + missing


# ---------------------------------------------------------------- one run


def detail_line(detail: dict[str, Any]) -> str:
    """A stage's detail flattened to one short line, keys in order."""
    return ", ".join(f"{k}={_short(v)}" for k, v in sorted(detail.items()))


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + " ".join(f"{k}:{v}" for k, v in value.items()) + "}"
    return str(value)


# ---------------------------------------------------------------- samples


def filter_samples(rows: list[Row], *, round_: int | None = None, pattern: int | str | None = None,
                   verdict: str = "all") -> list[Row]:
    """pattern: a pattern id, 'none' (samples without a pattern: error-correcting or
    paraphrase) or None (any). verdict: one of VERDICT_FILTERS."""
    return [c for c in rows if _in_round(c, round_) and _of_pattern(c, pattern) and _has_verdict(c, verdict)]


def _in_round(c: Row, round_: int | None) -> bool:
    return round_ is None or c["round"] == round_


def _of_pattern(c: Row, pattern: int | str | None) -> bool:
    if pattern == "none":
        return c["pattern_id"] is None
    return not isinstance(pattern, int) or c["pattern_id"] == pattern


def _has_verdict(c: Row, verdict: str) -> bool:
    if verdict == "changed by you":
        return bool(c.get("human_verdict"))
    return verdict == "all" or c["effective"] == verdict


# ---------------------------------------------------------------- compare


def compare_rows(runs: list[Row]) -> list[tuple[str, list[str]]]:
    """Rows of (label, one value per run) for the compare table, from report.compare_runs:
    scores per round, samples accepted/rejected, time."""
    infos = [(x["run"], x["rounds"]) for x in runs]
    rows: list[tuple[str, list[str]]] = [
        (label, [r[key] or "-" for r, _ in infos]) for label, key in
        (("name", "name"), ("strategy", "strategy"), ("student", "student"), ("teacher", "teacher"))]
    rows.append(("zero-shot val / test", [_pair(_round(rs, 0), "zero_shot_val", "zero_shot_test")
                                          for _, rs in infos]))
    last = max((x["round"] for _, rs in infos for x in rs), default=-1)
    rows += [(f"round {n} val / test", [_pair(_round(rs, n), "val_score", "test_score") for _, rs in infos])
             for n in range(last + 1)]
    return rows + _compare_totals(runs)


def _compare_totals(runs: list[Row]) -> list[tuple[str, list[str]]]:
    best = [x["run"] for x in runs]
    return [
        ("selected round", [str(r["best_round"]) if r["best_round"] is not None else "-" for r in best]),
        ("best val / test", [f"{pct(r['best_val'])} / {pct(r['best_test'])}" for r in best]),
        ("samples accepted", [str(x["accepted"]) for x in runs]),
        ("samples rejected", [str(x["rejected"]) for x in runs]),
        ("time", [duration(x["seconds"]) for x in runs]),
        ("stopped", [r.get("stop_reason") or "-" for r in best]),
    ]


def run_label(run: Row) -> str:
    """A run's name (or id) and strategy: a chart legend entry."""
    return f"{run['name'] or run['id']} ({run['strategy']})"


def _round(rounds: list[Row], n: int) -> Row | None:
    return next((x for x in rounds if x["round"] == n), None)


def _pair(row: Row | None, a: str, b: str) -> str:
    return "-" if row is None else f"{pct(row[a])} / {pct(row[b])}"


# ---------------------------------------------------------------- comparisons (`pada compare`)

# The columns of `pada compare`'s terminal table (printing.comparison), with the difference to
# `none` moved next to the test scores so that the answer stays visible at 80 columns.
COMPARISON_COLUMNS = ("strategy", "seeds", "test (selected)", "test (last round)", "vs none (95% CI)",
                      "wins", "val (selected)", "accepted/generated", "teacher tokens", "time")
COMPARISON_LIST_COLUMNS = ("id", "name", "status", "strategies", "seeds", "started")


def comparison_list_cells(row: Row) -> tuple[str, ...]:
    """One row of report.comparison_list for the comparisons picker."""
    return (row["id"], row["name"] or "-", row["status"], ",".join(row["strategies"]),
            ",".join(map(str, row["seeds"])), started(row["created_at"]))


def comparison_title(result: Row) -> str:
    return (f"comparison {result['id']} ({result['status']}): sealed-test accuracy in %, mean ± sd over "
            f"seeds {', '.join(map(str, result['seeds']))}, selected by {result.get('select', 'best_val')}")


def comparison_cells(s: Row) -> tuple[str, ...]:
    """One strategy of report.comparison_report as a table row, in COMPARISON_COLUMNS order."""
    vs = s.get("vs_none")
    return (s["strategy"], str(len(s["seeds"])), printing.pm(s["test_selected"]),
            printing.pm(s["test_last"]), printing.interval(vs),
            "-" if vs is None else f"{vs['wins']}/{vs['seeds']}",
            printing.pm(s["val_selected"]), f"{s['accepted']}/{s['generated']}", str(s["teacher_tokens"]),
            duration(s["seconds"]))


def progress_line(result: Row) -> str | None:
    """How far an unfinished comparison got; None once it finished."""
    if result["status"] == "finished":
        return None
    done = sum(c["status"] == "finished" for c in result["cells"])
    total = len(result["strategies"]) * len(result["seeds"])
    return f"comparison {result['status']}: {done} of {total} runs finished (r: read it again)"


def seed_scores(result: Row) -> list[tuple[str, list[tuple[int, float]], float | None]]:
    """Per strategy, the sealed-test score (selected round, in %) of each seed and their mean:
    the comparison chart's points."""
    out = []
    for s in result["strategies"]:
        cells = [c for c in result["cells"]
                 if c["strategy"] == s["strategy"] and c["test_selected"] is not None]
        mean = s["test_selected"]["mean"]
        out.append((s["strategy"], [(c["seed"], 100 * c["test_selected"]) for c in cells],
                    None if mean is None else 100 * mean))
    return out
