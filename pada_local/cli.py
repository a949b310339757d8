"""`pada ...`: the command line. Errors become one clean message and an exit code here only.

Heavy libraries are imported inside the commands that need them, so `pada --help` is instant.
stdout carries results; progress, warnings and errors go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import Cancelled, PadaError

if TYPE_CHECKING:
    from .records import ExportResult


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _table(rows: list[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
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


# ---------------------------------------------------------------- models / doctor


def cmd_models(args: argparse.Namespace) -> int:
    from . import models

    if args.prepare:
        spec = models.resolve_student("smollm2-135m")
        models.prepare_student(spec, log=_err)
        source = models.smollm2_gguf()
        if source is not None:
            models.teacher_copy(source, log=_err)
    rows = models.catalogue_rows() + models.user_model_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _table(rows, ["role", "name", "ready", "path"], title=f"models (folder: {models.models_dir()})")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import collect, config_checks

    report = collect()
    if args.config is not None:
        from .config import load

        report["checks"] += config_checks(load(Path(args.config), []))
    ok = all(c["status"] != "missing" for c in report["checks"] if c.get("required"))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if ok else 1
    _table(report["checks"], ["check", "status", "detail", "fix"], title="pada doctor")
    return 0 if ok else 1


def cmd_config(args: argparse.Namespace) -> int:
    from .config import Config, dump, load

    if args.schema:
        print(json.dumps(Config.model_json_schema(), indent=2))
        return 0
    if args.config is None:
        raise PadaError("give a config file, or --schema", hint="pada config examples/own-task.yaml")
    cfg = load(Path(args.config), args.set)
    print(json.dumps(dump(cfg), indent=2))
    return 0


# ---------------------------------------------------------------- run / runs / demo


def _store_path(args: argparse.Namespace) -> Path:
    import os

    return Path(args.store or os.environ.get("PADA_STORE", "runs/pada.db")).resolve()


def _run_loop(start: Any) -> Any:
    from .progress import RichReporter

    with RichReporter() as reporter:
        return start(reporter)


def cmd_run(args: argparse.Namespace) -> int:
    from . import loop
    from .config import load

    if args.resume is not None:
        if args.set or args.config is not None:
            raise PadaError("a resume continues with the run's saved config; "
                            "--set and a config file do not apply",
                            hint="drop them, or start a new run: pada run CONFIG --set ...")
        run_id = _run_loop(lambda rep: loop.resume(_store_path(args), args.resume, report=rep))
        store = _store_path(args)
    else:
        if args.config is None:
            raise PadaError("give a config file, or --resume RUN_ID", hint="pada run examples/own-task.yaml")
        overrides = list(args.set) + ([f"store={args.store}"] if args.store else [])
        cfg = load(Path(args.config), overrides)
        run_id = _run_loop(lambda rep: loop.start(cfg, report=rep))
        store = cfg.store
    _print_summary(store, run_id)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from . import loop
    from .config import load
    from .tasks import DEMO_CONFIG

    overrides = list(args.set) + ([f"loop.rounds={args.rounds}"] if args.rounds is not None else [])
    overrides += [f"store={args.store}"] if args.store else []
    cfg = load(DEMO_CONFIG, overrides)
    _err(f"demo: task '{cfg.task.name}', student {cfg.models.student}, teacher {cfg.models.teacher}, "
         f"{cfg.loop.rounds} rounds; store {cfg.store}")
    run_id = _run_loop(lambda rep: loop.start(cfg, report=rep))
    _print_summary(cfg.store, run_id)
    return 0


def _print_summary(store_path: Path, run_id: str) -> None:
    from .report import round_table
    from .runs import Ledger

    with Ledger.open_existing(store_path) as ledger:
        run = ledger.run(run_id)
        rows = round_table(ledger, run_id)
    cols = ["round", "val", "test", "accepted", "rejected", "train_items", "seconds", "status"]
    _table(rows, cols, title=f"run {run_id} ({run['strategy']}): scores in % on validation and sealed test")
    best = run["best_round"]
    print(f"best round by validation: {best}; stopped: {run['stop_reason']}")
    print(f"details: pada runs show {run_id}   resume/continue: pada run --resume {run_id}")


def cmd_runs(args: argparse.Namespace) -> int:
    from .report import run_detail, run_rows
    from .runs import Ledger

    path = _store_path(args)
    with Ledger.open_existing(path) as ledger:
        if args.action == "show":
            if args.run_id is None:
                raise PadaError("which run?", hint="pada runs show RUN_ID")
            run_id = ledger.resolve(args.run_id)
            detail = run_detail(ledger, run_id)
            if args.json:
                print(json.dumps(detail, indent=2, default=str))
                return 0
            _show_run(ledger, run_id, detail)
            return 0
        rows = run_rows(ledger)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        for r in rows:
            for k in ("best_val", "best_test"):
                r[k] = "-" if r[k] is None else f"{100 * r[k]:.1f}"
        cols = ["id", "name", "task", "strategy", "status", "rounds", "best_round", "best_val", "best_test",
                "seconds", "created_at"]
        _table(rows, cols, title=f"runs in {path}")
    return 0


def _show_run(ledger: Any, run_id: str, detail: dict[str, Any]) -> None:
    from .report import name_with_keywords, round_table, stage_notes

    run = detail["run"]
    print(f"run {run_id}: {run['name']} [{run['status']}] strategy={run['strategy']} "
          f"student={run['student']} teacher={run['teacher']} stop: {run.get('stop_reason') or '-'}")
    cols = ["round", "val", "test", "accepted", "rejected", "train_items", "seconds", "status"]
    _table(round_table(ledger, run_id), cols, title="rounds")
    stages = [{**s, "tokens": (s["prompt_tokens"] or 0) + (s["completion_tokens"] or 0)}
              for s in detail["stages"]]
    _table(stages, ["round", "stage", "seconds", "items", "tokens"], title="stages")
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
        _table(named, ["round", "cluster", "size", "name", "strategy"], title="patterns")
    print("rows stored: " + ", ".join(f"{k} {v}" for k, v in detail["counts"].items()))


def cmd_export(args: argparse.Namespace) -> int:
    """`pada export`: results on stdout, progress on stderr; exit 1 when verification failed."""
    from .export import export_run
    from .progress import RichReporter

    store, fmt, lora_gguf = _store_path(args), args.format or "gguf", bool(args.lora_gguf)
    allow = bool(args.yes) or _ask_consent(fmt, lora_gguf)
    try:
        with RichReporter() as reporter:
            result = export_run(store, args.run_id, round=args.round, fmt=fmt, quant=args.quant,
                                out=None if args.out is None else Path(args.out), lora_gguf=lora_gguf,
                                verify=not args.no_verify, allow_fetch=allow, report=reporter)
    except KeyboardInterrupt:
        raise Cancelled("export interrupted; no file was left under the final name") from None
    print_result(result)
    return 0 if result.ok else 1


def _ask_consent(fmt: str, lora_gguf: bool) -> bool:
    """Ask before downloading the converter, only when it is needed, missing, and someone is
    at the terminal to answer."""
    from . import converter
    from .export import needs_fetch

    if not sys.stdin.isatty() or not needs_fetch(fmt, lora_gguf):
        return False
    version = converter.llama_cpp_version()
    print(f"GGUF export needs llama.cpp's converter, taken from llama-cpp-python=={version}'s source on PyPI "
          f"(~{converter.SDIST_MB} MB download, ~2 MB kept in {converter.converter_dir(version)}). "
          "Fetch it now? [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def print_result(result: ExportResult) -> None:
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


# ---------------------------------------------------------------- compare


def cmd_compare(args: argparse.Namespace) -> int:
    from . import compare
    from .config import from_dict, load_raw
    from .report import comparison_list, comparison_report
    from .runs import Ledger

    if args.list or args.show is not None:
        with Ledger.open_existing(_store_path(args)) as ledger:
            if args.list:
                rows = comparison_list(ledger)
                return _print_json(rows) if args.json else _list_comparisons(rows)
            result = comparison_report(ledger, args.show)
    elif args.resume is not None:
        if args.set or args.config is not None:
            raise PadaError("a resumed comparison keeps its saved config; "
                            "--set and a config file do not apply")
        cid = _run_loop(lambda rep: compare.resume(_store_path(args), args.resume, report=rep))
        result = _report_of(_store_path(args), cid)
    else:
        if args.config is None:
            raise PadaError("give a config file, or --resume / --show ID",
                            hint="pada compare task.yaml --seeds 3")
        overrides = list(args.set) + ([f"store={args.store}"] if args.store else [])
        path = Path(args.config)
        raw = load_raw(path, overrides)
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
        base = path.parent.resolve()
        cid = _run_loop(lambda rep: compare.start(raw, base, strategies, args.seeds, report=rep))
        result = _report_of(from_dict(raw, base).store, cid)
    return _print_json(result) if args.json else _show_comparison(result)


def _report_of(store: Path, cid: str) -> dict[str, Any]:
    from .report import comparison_report
    from .runs import Ledger

    with Ledger.open_existing(store) as ledger:
        return comparison_report(ledger, cid)


def _print_json(data: Any) -> int:
    print(json.dumps(data, indent=2, default=str))
    return 0


def _list_comparisons(rows: list[dict[str, Any]]) -> int:
    for r in rows:
        r["strategies"], r["seeds"] = ",".join(r["strategies"]), ",".join(map(str, r["seeds"]))
    _table(rows, ["id", "name", "status", "strategies", "seeds", "created_at"], title="comparisons")
    return 0


def _pm(spread: dict[str, float | None]) -> str:
    mean, sd = spread["mean"], spread["sd"]
    if mean is None:
        return "-"
    return f"{100 * mean:.1f}" + ("" if sd is None else f" ± {100 * sd:.1f}")


def _show_comparison(result: dict[str, Any]) -> int:
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
    _table(rows, cols, title=f"comparison {result['id']} ({result['status']}): sealed-test accuracy in %, "
                             f"mean ± sd over seeds {result['seeds']}")
    for s in result["strategies"]:
        _print_verdict(s)
    c = result["cost"]
    print(f"cost: {c['rounds_computed']} rounds computed for {c['rounds_naive']} rounds reported "
          f"({c['rounds_saved']} saved by computing round 0 once per seed)")
    return 0


def _print_verdict(s: dict[str, Any]) -> None:
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


def cmd_data(args: argparse.Namespace) -> int:
    """`pada data check CONFIG` (exit 0 fine, 1 warnings, 2 errors) and `pada data export RUN`."""
    if args.action == "check":
        from .config import load
        from .data import data_check

        check = data_check(load(Path(args.target), args.set))
        for level, text in check.lines:
            print(text if level == "info" else f"{level}: {text}")
        if check.rendered:
            print(f"\none example ({check.rendered['example']}) as the student sees it in training:")
            print(check.rendered["training"])
            print("\n... and in evaluation (the student continues from here):")
            print(check.rendered["evaluation"])
        return check.exit_code
    from .dataset_export import export_dataset
    from .runs import Ledger

    if args.set:
        raise PadaError("--set applies to `pada data check` only")
    with Ledger.open_existing(_store_path(args)) as ledger:
        done = export_dataset(ledger, args.target, fmt=args.format, round_=args.round,
                              synthetic_only=args.synthetic_only,
                              out=None if args.out is None else Path(args.out))
    counts = ", ".join(f"{k} {v}" for k, v in sorted(done.counts.items()))
    what = "synthetic samples" if done.synthetic_only else "training set"
    print(f"{done.out}: round {done.round} {what}, {done.rows} records ({counts}), format {done.fmt}")
    return 0


def cmd_teacher(args: argparse.Namespace) -> int:
    """`pada teacher check CONFIG`: can this teacher (and judge) confirm samples on this task?
    Exit 0 when every check passes, 1 when one does not (the run would still go on)."""
    from .config import load
    from .teachercheck import standalone

    cfg = load(Path(args.config), args.set)
    baseline = None if args.baseline is None else args.baseline / 100
    checks = _run_loop(lambda rep: standalone(cfg, report=rep, baseline=baseline))
    if args.json:
        print(json.dumps([c.stats() for c in checks], indent=2))
    else:
        for c in checks:
            print(c.line())
    return 0 if all(c.trusted for c in checks) else 1


def cmd_tui(args: argparse.Namespace) -> int:
    from tui.app import run as run_tui

    return int(run_tui(_store_path(args)) or 0)


# ---------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pada", description="pada-local: pattern-guided data augmentation for small models, offline.")
    p.add_argument("--version", action="version", version=f"pada-local {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    m = sub.add_parser("models", help="list known models, where they are and whether they are ready")
    m.add_argument("--prepare", action="store_true",
                   help="make the default student's HF folder (and the teacher's Q8_0 copy) now")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.set_defaults(func=cmd_models)

    d = sub.add_parser("doctor", help="what this machine has and what to do about what is missing")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.add_argument("--config", help="also check this config's models; a teacher behind a server is probed")
    d.set_defaults(func=cmd_doctor)

    c = sub.add_parser("config", help="validate a config and print it resolved (or its JSON schema)")
    c.add_argument("config", nargs="?", help="YAML config file")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field")
    c.add_argument("--schema", action="store_true", help="print the config's JSON schema")
    c.set_defaults(func=cmd_config)

    r = sub.add_parser("run", help="start a run from a config, or resume one")
    r.add_argument("config", nargs="?", help="YAML config file")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    r.add_argument("--resume", metavar="RUN_ID",
                   help="continue an interrupted run from its last finished stage")
    r.add_argument("--store", help="run store (default: $PADA_STORE or runs/pada.db)")
    r.set_defaults(func=cmd_run)

    dm = sub.add_parser("demo", help="run the loop on the shipped demo task with the embedded models")
    dm.add_argument("--rounds", type=int, help="augmentation rounds (default 2)")
    dm.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    dm.add_argument("--store", help="run store (default: $PADA_STORE or runs/pada.db)")
    dm.set_defaults(func=cmd_demo)

    rs = sub.add_parser("runs", help="run history: list runs, or `runs show RUN_ID`")
    rs.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    rs.add_argument("run_id", nargs="?", help="run id (a unique prefix is enough)")
    rs.add_argument("--json", action="store_true", help="machine-readable output")
    rs.add_argument("--store", help="run store (default: $PADA_STORE or runs/pada.db)")
    rs.set_defaults(func=cmd_runs)

    ex = sub.add_parser("export",
                        help="export a run's tuned student: adapter, merged model or GGUF (verified)")
    ex.add_argument("run_id", help="run id (a unique prefix is enough)")
    ex.add_argument("--round", type=int, help="round to export (default: the run's best round)")
    ex.add_argument("--format", choices=["adapter", "merged", "gguf"], default="gguf", help="what to export")
    ex.add_argument("--quant", choices=["f16", "q8_0", "q4_0", "q4_k_m"],
                    help="GGUF quantization (default q8_0)")
    ex.add_argument("--out", help="output folder (default <workdir>/<run>/export-<format>[-<quant>], "
                                  "-r<N> for a round other than the best)")
    ex.add_argument("--lora-gguf", action="store_true", help="also write the adapter as a GGUF LoRA")
    ex.add_argument("--no-verify", action="store_true", help="skip the verification of the exported model")
    ex.add_argument("--yes", action="store_true",
                    help="consent to fetching llama.cpp's converter from PyPI if missing")
    ex.add_argument("--store", help="run store (default: $PADA_STORE or runs/pada.db)")
    ex.set_defaults(func=cmd_export)

    cp = sub.add_parser("compare",
                        help="does augmentation help on my task? strategies x seeds, judged on test")
    cp.add_argument("config", nargs="?", help="YAML config file (the task, models and budget)")
    cp.add_argument("--strategies", default="none,llm2llm,paraphrase,pada",
                    help="comma-separated strategies; `none` is the baseline (default: all four)")
    cp.add_argument("--seeds", type=int, default=3, help="seeds per strategy, from loop.seed on (default 3)")
    cp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    cp.add_argument("--resume", metavar="ID", help="continue an interrupted comparison")
    cp.add_argument("--show", metavar="ID", help="print a comparison's report")
    cp.add_argument("--list", action="store_true", help="list the comparisons in the store")
    cp.add_argument("--json", action="store_true", help="machine-readable output")
    cp.add_argument("--store", help="run store (default: $PADA_STORE or runs/pada.db)")
    cp.set_defaults(func=cmd_compare)

    tu = sub.add_parser("tui", help="open the terminal UI on the run store")
    tu.add_argument("--store", help="run store (default: $PADA_STORE or runs/pada.db)")
    tu.set_defaults(func=cmd_tui)

    da = sub.add_parser("data", help="check a config's data before any compute (`data check CONFIG`), "
                                     "or export a run's curated data (`data export RUN`)")
    da.add_argument("action", choices=["check", "export"])
    da.add_argument("target", help="check: a YAML config file; export: a run id (a unique prefix is enough)")
    da.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="check: override a config field")
    da.add_argument("--round", type=int,
                    help="export: the round (default: the best round; --synthetic-only: the last)")
    da.add_argument("--synthetic-only", action="store_true",
                    help="export: the accepted synthetic samples of rounds 1..N alone")
    da.add_argument("--format", choices=["messages", "alpaca", "sharegpt", "hf"], default="messages",
                    help="export: chat messages JSONL (default), Alpaca JSONL, ShareGPT JSONL, "
                         "or a datasets save_to_disk folder")
    da.add_argument("--out",
                    help="export: output folder (default <workdir>/<run>/dataset-<what>-r<N>-<format>)")
    da.add_argument("--store", help="export: run store (default: $PADA_STORE or runs/pada.db)")
    da.set_defaults(func=cmd_data)

    te = sub.add_parser("teacher", help="`teacher check CONFIG`: how well the teacher solves this task's "
                                        "train items, against the student (a run does this before round 1)")
    te.add_argument("action", choices=["check"])
    te.add_argument("config", help="YAML config file")
    te.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    te.add_argument("--baseline", type=float, metavar="PCT",
                    help="the student's validation accuracy to beat, in percent (default: the untrained "
                         "student, measured)")
    te.add_argument("--json", action="store_true", help="machine-readable output, with every item")
    te.set_defaults(func=cmd_teacher)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        return _default(parser)
    try:
        return int(args.func(args) or 0)
    except Cancelled as err:
        _err(f"stopped: {err}")
        return err.exit_code
    except PadaError as err:
        _err(f"error: {err}")
        return err.exit_code
    except KeyboardInterrupt:
        _err("interrupted; finished work is kept (`pada runs` lists it, `pada run --resume ID` continues)")
        return 130


def _default(parser: argparse.ArgumentParser) -> int:
    # With no command, open the TUI when there is a terminal; otherwise print help.
    if sys.stdin.isatty() and sys.stdout.isatty():
        return cmd_tui(argparse.Namespace(store=None))
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
