"""`pada ...`: the command line. Errors become one clean message and an exit code here only.

Heavy libraries are imported inside the commands that need them, so `pada --help` is instant.
stdout carries results; progress, warnings and errors go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .errors import Cancelled, PadaError


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
    # With no command, open the TUI when there is a terminal and the TUI exists.
    tui = getattr(_default, "tui", None)
    if tui is not None and sys.stdin.isatty() and sys.stdout.isatty():
        return int(tui() or 0)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
