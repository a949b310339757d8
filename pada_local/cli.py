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
from typing import Any

from . import arguments, printing
from .errors import Cancelled, PadaError


def _err(text: str) -> None:
    print(text, file=sys.stderr)


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
        printing.table(rows, ["role", "name", "ready", "path"], 
                       title=f"models (folder: {models.models_dir()})")
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
    printing.table(report["checks"], ["check", "status", "detail", "fix"], title="pada doctor")
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
    from .config import load
    from .run import loop

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
    printing.run_summary(store, run_id)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .config import load
    from .run import loop
    from .tasks import DEMO_CONFIG

    overrides = list(args.set) + ([f"loop.rounds={args.rounds}"] if args.rounds is not None else [])
    overrides += [f"store={args.store}"] if args.store else []
    cfg = load(DEMO_CONFIG, overrides)
    _err(f"demo: task '{cfg.task.name}', student {cfg.models.student}, teacher {cfg.models.teacher}, "
         f"{cfg.loop.rounds} rounds; store {cfg.store}")
    run_id = _run_loop(lambda rep: loop.start(cfg, report=rep))
    printing.run_summary(cfg.store, run_id)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .ledger.report import run_detail, run_rows
    from .ledger.runs import Ledger

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
            printing.run_details(ledger, run_id, detail)
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
        printing.table(rows, cols, title=f"runs in {path}")
    return 0


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
    printing.export_result(result)
    return 0 if result.ok else 1


def _ask_consent(fmt: str, lora_gguf: bool) -> bool:
    """Ask before downloading the converter, only when it is needed, missing, and someone is
    at the terminal to answer."""
    from .export import converter, needs_fetch

    if not sys.stdin.isatty() or not needs_fetch(fmt, lora_gguf):
        return False
    version = converter.llama_cpp_version()
    print(f"GGUF export needs llama.cpp's converter, taken from llama-cpp-python=={version}'s source on PyPI "
          f"(~{converter.SDIST_MB} MB download, ~2 MB kept in {converter.converter_dir(version)}). "
          "Fetch it now? [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


# ---------------------------------------------------------------- compare


def cmd_compare(args: argparse.Namespace) -> int:
    from .config import from_dict, load_raw
    from .ledger.compare_report import comparison_list, comparison_report
    from .ledger.runs import Ledger
    from .run import compare

    if args.list or args.show is not None:
        with Ledger.open_existing(_store_path(args)) as ledger:
            if args.list:
                rows = comparison_list(ledger)
                return printing.as_json(rows) if args.json else printing.comparison_list(rows)
            result = comparison_report(ledger, args.show, select=args.select)
    elif args.resume is not None:
        if args.set or args.config is not None:
            raise PadaError("a resumed comparison keeps its saved config; --set and a config file do not "
                            "apply", hint="--variant adds cells to it")
        added = dict(compare.parse_variant(v) for v in args.variant)
        cid = _run_loop(lambda rep: compare.resume(_store_path(args), args.resume, report=rep,
                                                   variants=added))
        result = _report_of(_store_path(args), cid)
    else:
        if args.config is None:
            raise PadaError("give a config file, or --resume / --show ID",
                            hint="pada compare task.yaml --seeds 3")
        overrides = list(args.set) + ([f"store={args.store}"] if args.store else [])
        path = Path(args.config)
        raw = load_raw(path, overrides)
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
        variants = dict(compare.parse_variant(v) for v in args.variant)
        base = path.parent.resolve()
        cid = _run_loop(lambda rep: compare.start(raw, base, strategies, args.seeds, variants=variants,
                                                  report=rep))
        result = _report_of(from_dict(raw, base).store, cid)
    return printing.as_json(result) if args.json else printing.comparison(result)


def _report_of(store: Path, cid: str) -> dict[str, Any]:
    from .ledger.compare_report import comparison_report
    from .ledger.runs import Ledger

    with Ledger.open_existing(store) as ledger:
        return comparison_report(ledger, cid)


def cmd_data(args: argparse.Namespace) -> int:
    """`pada data check CONFIG` (exit 0 fine, 1 warnings, 2 errors) and `pada data export RUN`."""
    if args.action == "check":
        from .config import load
        from .data.check import data_check

        check = data_check(load(Path(args.target), args.set))
        for level, text in check.lines:
            print(text if level == "info" else f"{level}: {text}")
        if check.rendered:
            print(f"\none example ({check.rendered['example']}) as the student sees it in training:")
            print(check.rendered["training"])
            print("\n... and in evaluation (the student continues from here):")
            print(check.rendered["evaluation"])
        return check.exit_code
    from .data.export import export_dataset
    from .ledger.runs import Ledger

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
    from .run.teacher import standalone

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = arguments.build()
    args = parser.parse_args(argv)
    if args.command is None:
        return _default(parser)
    command = globals()[f"cmd_{args.command_name}"]
    try:
        return int(command(args) or 0)
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
