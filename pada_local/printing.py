"""What `pada` prints on stdout: results as rich tables (as wide as they need when piped, so
scripts and people read the same text) or JSON. Progress and errors go to stderr elsewhere."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .records import ExportResult


def table(rows: list[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        # Ids are what users copy into the next command: never cut or wrapped.
        widest = max((len(str(r.get(col))) for r in rows), default=0)
        table.add_column(col, no_wrap=col == "id", min_width=widest if col == "id" else None, overflow="fold")
    for row in rows:
        table.add_row(*("-" if row.get(c) is None else escape(str(row.get(c))) for c in columns))
    # Piped output is read by scripts and people alike: as wide as it needs, not 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=400)
    console.print(table)


def run_summary(store_path: Path, run_id: str) -> None:
    from .ledger.report import round_table
    from .ledger.runs import Ledger

    with Ledger.open_existing(store_path) as ledger:
        run = ledger.run(run_id)
        rows = round_table(ledger, run_id)
    cols = ["round", "val", "test", "accepted", "rejected", "train_items", "seconds", "status"]
    table(rows, cols, title=f"run {run_id} ({run['strategy']}): scores in % on validation and sealed test")
    best = run["best_round"]
    print(f"best round by validation: {best}; stopped: {run['stop_reason']}")
    print(f"details: pada runs show {run_id}   resume/continue: pada run --resume {run_id}")


def run_details(ledger: Any, run_id: str, detail: dict[str, Any]) -> None:
    from .ledger.report import name_with_keywords, round_table, stage_notes

    run = detail["run"]
    print(f"run {run_id}: {run['name']} [{run['status']}] strategy={run['strategy']} "
          f"student={run['student']} teacher={run['teacher']} stop: {run.get('stop_reason') or '-'}")
    cols = ["round", "val", "test", "accepted", "rejected", "train_items", "seconds", "status"]
    table(round_table(ledger, run_id), cols, title="rounds")
    stages = [{**s, "tokens": (s["prompt_tokens"] or 0) + (s["completion_tokens"] or 0)}
              for s in detail["stages"]]
    table(stages, ["round", "stage", "seconds", "items", "tokens"], title="stages")
    for s in detail["stages"]:
        dropped = (s["detail"] or {}).get("dropped") if s["stage"] == "train" else None
        if dropped:
            ids = ", ".join((s["detail"] or {}).get("dropped_ids") or [])
            print(f"round {s['round']}: {dropped} training examples longer than train.max_length "
                  f"were left out (e.g. {ids})")
    for r in sorted({s["round"] for s in detail["stages"]}):
        for note in stage_notes([s for s in detail["stages"] if s["round"] == r]):
            print(f"round {r}: {note}")
    if detail["patterns"]:
        named = [{**p, "name": name_with_keywords(p["name"] or "", p["keywords"])}
                 for p in detail["patterns"]]
        table(named, ["round", "cluster", "size", "name", "strategy"], title="patterns")
    print("rows stored: " + ", ".join(f"{k} {v}" for k, v in detail["counts"].items()))


def export_result(result: ExportResult) -> None:
    """An export's folder, files and verification, on stdout."""
    from .export.card import mb, pct

    print(f"export of run {result.run_id} round {result.round}: {result.format}"
          f"{'' if result.quant is None else ' ' + result.quant} -> {result.out_dir}")
    for f in result.files:
        print(f"  {f.path.name:<40} {mb(f.bytes):>9}  sha256 {f.sha256[:16]}")
    v = result.verification
    if v is None:
        print("verification: skipped (--no-verify)")
        return
    print(f"verification on {v.n_items} validation items: in-memory model {pct(v.reference_score)}")
    for c in v.checks:
        drop = c.drop(v.reference_score)
        drop_text = "-" if drop is None else f"{drop:.1f}"
        print(f"  {c.target} ({c.engine}): score {pct(c.score)}, drop {drop_text} points, "
              f"agreement {pct(c.agreement)}, template {'ok' if c.template_ok else 'WRONG'}, "
              f"stops at end of turn {'yes' if c.stops else 'NO'}, {c.seconds:.1f}s")
        for p in c.problems:
            print(f"    problem: {p}")
    print("verified: passed" if v.passed else f"verification FAILED: files kept aside in {result.out_dir}")


def as_json(data: Any) -> int:
    print(json.dumps(data, indent=2, default=str))
    return 0


def comparison_list(rows: list[dict[str, Any]]) -> int:
    for r in rows:
        r["strategies"], r["seeds"] = ",".join(r["strategies"]), ",".join(map(str, r["seeds"]))
    table(rows, ["id", "name", "status", "strategies", "seeds", "created_at"], title="comparisons")
    return 0


def _pm(spread: dict[str, float | None]) -> str:
    mean, sd = spread["mean"], spread["sd"]
    if mean is None:
        return "-"
    return f"{100 * mean:.1f}" + ("" if sd is None else f" ± {100 * sd:.1f}")


def comparison(result: dict[str, Any]) -> int:
    rows = []
    for s in result["strategies"]:
        vs = s.get("vs_none")
        rows.append({"strategy": s["strategy"], "seeds": len(s["seeds"]),
                     "test (selected)": _pm(s["test_selected"]),
                     "test (last round)": _pm(s["test_last"]), "val (selected)": _pm(s["val_selected"]),
                     "vs none (95% CI)": "-" if vs is None else
                     f"{100 * vs['difference']:+.1f} [{100 * vs['low']:+.1f}, {100 * vs['high']:+.1f}]",
                     "wins": "-" if vs is None else f"{vs['wins']}/{vs['seeds']}",
                     "accepted/generated": f"{s['accepted']}/{s['generated']}",
                     "teacher tokens": s["teacher_tokens"], "seconds": s["seconds"]})
    cols = list(rows[0]) if rows else []
    table(rows, cols, title=f"comparison {result['id']} ({result['status']}): sealed-test accuracy in %, "
                             f"mean ± sd over seeds {result['seeds']}")
    for s in result["strategies"]:
        _verdict(s)
    c = result["cost"]
    print(f"cost: {c['rounds_computed']} rounds computed for {c['rounds_naive']} rounds reported "
          f"({c['rounds_saved']} saved by computing round 0 once per seed)")
    return 0


def _verdict(s: dict[str, Any]) -> None:
    vs, pat = s.get("vs_none"), s.get("patterns")
    if vs is not None:
        print(f"{s['strategy']} vs none: {100 * vs['difference']:+.1f} points "
              f"[{100 * vs['low']:+.1f}, {100 * vs['high']:+.1f}], "
              f"better on {vs['wins']} of {vs['seeds']} seeds: {vs['verdict']}")
    if pat is not None and pat["targeted_share"] is not None:
        other = "-" if pat["other_share"] is None else f"{100 * pat['other_share']:.0f}%"
        print(f"  patterns: {pat['targeted_fixed']}/{pat['targeted']} targeted validation failures fixed "
              f"({100 * pat['targeted_share']:.0f}%) vs {pat['other_fixed']}/{pat['other']} "
              f"other failures ({other})")
