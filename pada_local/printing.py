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


SELECTED_BY = {"best_val": "best by validation", "last": "the last",
               "last_unless_worse": "the last, unless an earlier one is better on validation beyond noise"}


def run_summary(store_path: Path, run_id: str) -> None:
    from .ledger.report import round_table
    from .ledger.runs import Ledger

    with Ledger.open_existing(store_path) as ledger:
        run = ledger.run(run_id)
        rows = round_table(ledger, run_id)
        rule = (ledger.for_run(run_id).config().get("loop") or {}).get("select", "best_val")
    cols = ["round", "val", "test", "accepted", "rejected", "train_items", "seconds", "status"]
    table(rows, cols, title=f"run {run_id} ({run['strategy']}): scores in % on validation and sealed test")
    print(f"selected round ({SELECTED_BY.get(rule, rule)}): {run['best_round']}; "
          f"stopped: {run['stop_reason']}")
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


def pm(spread: dict[str, float | None]) -> str:
    """{mean, sd} of 0..1 scores as '83.5 ± 1.2' (no spread for one seed), '-' when missing."""
    mean, sd = spread["mean"], spread["sd"]
    if mean is None:
        return "-"
    return f"{100 * mean:.1f}" + ("" if sd is None else f" ± {100 * sd:.1f}")


def interval(vs: dict[str, Any] | None, unit: str = "") -> str:
    """A paired difference and its 95% interval in points: '+1.2 [-3.0, +5.1]'."""
    if vs is None:
        return "-"
    return f"{100 * vs['difference']:+.1f}{unit} [{100 * vs['low']:+.1f}, {100 * vs['high']:+.1f}]"


def comparison(result: dict[str, Any]) -> int:
    rows = []
    for s in result["strategies"]:
        vs = s.get("vs_none")
        rows.append({"strategy": s["strategy"], "seeds": len(s["seeds"]),
                     "test (selected)": pm(s["test_selected"]), "test (last round)": pm(s["test_last"]),
                     "val (selected)": pm(s["val_selected"]), "vs none (95% CI)": interval(vs),
                     "vs none, last round": interval(s.get("vs_none_last")),
                     "wins": "-" if vs is None else f"{vs['wins']}/{vs['seeds']}",
                     "accepted/generated": f"{s['accepted']}/{s['generated']}",
                     "teacher tokens": s["teacher_tokens"], "seconds": s["seconds"]})
    cols = list(rows[0]) if rows else []
    table(rows, cols, title=f"comparison {result['id']} ({result['status']}): sealed-test accuracy in %, "
                             f"mean ± sd over seeds {result['seeds']}, selected by {result['select']}")
    for line in comparison_lines(result):
        print(line)
    return 0


def comparison_lines(result: dict[str, Any]) -> list[str]:
    """The sentences under a comparison's table (the CLI prints them, the TUI shows them): each
    strategy against `none`, `pada` against the other strategies, its patterns, cells still
    running, and what the grid cost."""
    lines = [f"still running, left out of every number: {c['strategy']} seed {c['seed']} (run {c['run_id']})"
             for c in result.get("running", [])]
    for s in result["strategies"]:
        lines += strategy_lines(s)
    for pair in result.get("pairs", []):
        lines.append(f"{pair['a']} vs {pair['b']}: selected {interval(pair['selected'], ' points')}, "
                     f"last round {interval(pair['last'], ' points')}"
                     + ("" if pair["selected"] is None else f": {pair['selected']['verdict']}"))
    lines += pattern_lines(result)
    c = result["cost"]
    shared = c.get("round0_seconds") or {}
    lines.append(f"cost: {c['rounds_computed']} rounds computed for {c['rounds_naive']} rounds reported "
                 f"({c['rounds_saved']} saved by computing round 0 once per seed"
                 + (f"; round 0 took {', '.join(f'{v:.0f} s' for v in shared.values())} per seed, shared)"
                    if shared else ")"))
    return lines


def pattern_lines(result: dict[str, Any]) -> list[str]:
    """Each pattern of each finished cell: its own validation failures the next model fixed,
    against the other failures of that round."""
    lines = []
    for c in result["cells"]:
        for p in c.get("patterns") or [] if c["status"] == "finished" else []:
            lines.append(f"  {c['strategy']} seed {c['seed']} round {p['round']} pattern {p['cluster']} "
                         f"{p['pattern'][:48]!r}: {p['targeted_fixed']}/{p['targeted']} of its failures "
                         f"fixed, {p['other_fixed']}/{p['other']} of the others")
    return lines


def strategy_lines(s: dict[str, Any]) -> list[str]:
    """One strategy against `none` (selected and last round) and, for `pada`, whether the failures
    behind its patterns were fixed more often than the others."""
    vs, last, pat = s.get("vs_none"), s.get("vs_none_last"), s.get("patterns")
    lines = []
    if vs is not None:
        tail = "" if last is None else f"; last round {interval(last, ' points')}"
        lines.append(f"{s['strategy']} vs none: {interval(vs, ' points')}, better on {vs['wins']} of "
                     f"{vs['seeds']} seeds: {vs['verdict']}{tail}")
    if pat is not None and pat["targeted_share"] is not None:
        other = "-" if pat["other_share"] is None else f"{100 * pat['other_share']:.0f}%"
        lines.append(f"  patterns: {pat['targeted_fixed']}/{pat['targeted']} targeted validation failures "
                     f"fixed ({100 * pat['targeted_share']:.0f}%) vs {pat['other_fixed']}/{pat['other']} "
                     f"other failures ({other})")
    return lines
