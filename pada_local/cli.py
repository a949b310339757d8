"""`pada ...`: the command line. Errors become one clean message and an exit code here only.

Heavy libraries are imported inside the commands that need them, so `pada --help` is instant.
stdout carries results; progress, warnings and errors go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

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
        table.add_column(col)
    for row in rows:
        table.add_row(*("-" if row.get(c) is None else escape(str(row.get(c))) for c in columns))
    Console().print(table)


# ---------------------------------------------------------------- models / doctor


def cmd_models(args: argparse.Namespace) -> int:
    from . import models

    if args.prepare:
        spec = models.resolve_student("smollm2-135m")
        models.prepare_student(spec, log=_err)
    rows = models.catalogue_rows() + models.user_model_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _table(rows, ["role", "name", "ready", "path"], title=f"models (folder: {models.models_dir()})")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import collect

    report = collect()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _table(report["checks"], ["check", "status", "detail", "fix"], title="pada doctor")
    return 0 if all(c["status"] != "missing" for c in report["checks"] if c.get("required")) else 1


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


def _run_loop(start: Any) -> str:
    from .progress import RichReporter

    with RichReporter() as reporter:
        return start(reporter)


def cmd_run(args: argparse.Namespace) -> int:
    from . import loop
    from .config import load

    if args.resume is not None:
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

    with Ledger.open(store_path) as ledger:
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
    if not path.exists():
        raise PadaError(f"no run store at {path}", hint="start a run with `pada demo` or `pada run CONFIG`")
    with Ledger.open(path) as ledger:
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
        _table(rows, ["id", "name", "task", "strategy", "status", "rounds", "best_round", "best_val", "best_test",
                      "seconds", "created_at"], title=f"runs in {path}")
    return 0


def _show_run(ledger: Any, run_id: str, detail: dict[str, Any]) -> None:
    from .report import round_table

    run = detail["run"]
    print(f"run {run_id}: {run['name']} [{run['status']}] strategy={run['strategy']} "
          f"student={run['student']} teacher={run['teacher']} stop: {run.get('stop_reason') or '-'}")
    _table(round_table(ledger, run_id), ["round", "val", "test", "accepted", "rejected", "train_items", "seconds",
                                        "status"], title="rounds")
    stages = [{**s, "tokens": (s["prompt_tokens"] or 0) + (s["completion_tokens"] or 0)} for s in detail["stages"]]
    _table(stages, ["round", "stage", "seconds", "items", "tokens"], title="stages")
    if detail["patterns"]:
        _table(detail["patterns"], ["round", "cluster", "size", "name", "strategy"], title="patterns")
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


def cmd_tui(args: argparse.Namespace) -> int:
    from tui.app import run as run_tui

    return int(run_tui(_store_path(args)) or 0)


# ---------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pada", description="pada-local: pattern-guided data augmentation for small models, offline.")
    p.add_argument("--version", action="version", version=f"pada-local {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    m = sub.add_parser("models", help="list known models, where they are and whether they are ready")
    m.add_argument("--prepare", action="store_true", help="make the default student's HF folder now")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.set_defaults(func=cmd_models)

    d = sub.add_parser("doctor", help="what this machine has and what to do about what is missing")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.set_defaults(func=cmd_doctor)

    c = sub.add_parser("config", help="validate a config and print it resolved (or its JSON schema)")
    c.add_argument("config", nargs="?", help="YAML config file")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field")
    c.add_argument("--schema", action="store_true", help="print the config's JSON schema")
    c.set_defaults(func=cmd_config)

    r = sub.add_parser("run", help="start a run from a config, or resume one")
    r.add_argument("config", nargs="?", help="YAML config file")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    r.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run from its last finished stage")
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

    ex = sub.add_parser("export", help="export a run's tuned student: adapter, merged model or GGUF (verified)")
    ex.add_argument("run_id", help="run id (a unique prefix is enough)")
    ex.add_argument("--round", type=int, help="round to export (default: the run's best round)")
    ex.add_argument("--format", choices=["adapter", "merged", "gguf"], default="gguf", help="what to export")
    ex.add_argument("--quant", choices=["f16", "q8_0", "q4_0", "q4_k_m"], help="GGUF quantization (default q8_0)")
    ex.add_argument("--out", help="output folder (default <workdir>/<run>/export-<format>[-<quant>], -r<N> for a round other than the best)")
    ex.add_argument("--lora-gguf", action="store_true", help="also write the adapter as a GGUF LoRA")
    ex.add_argument("--no-verify", action="store_true", help="skip the verification of the exported model")
    ex.add_argument("--yes", action="store_true", help="consent to fetching llama.cpp's converter from PyPI if missing")
    ex.add_argument("--store", help="run store (default: $PADA_STORE or runs/pada.db)")
    ex.set_defaults(func=cmd_export)

    tu = sub.add_parser("tui", help="open the terminal UI on the run store")
    tu.add_argument("--store", help="run store (default: $PADA_STORE or runs/pada.db)")
    tu.set_defaults(func=cmd_tui)
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
