"""`pada compare`: every strategy with every seed on the same data, models and budget.

Sequencing only: each cell of the grid is an ordinary run (the orchestrator in loop.py) with
`loop.fixed_rounds` on, so every strategy trains the same number of models and picks its
result by the same rule; the runs are grouped under a comparison record in the store. Round 0
(zero-shot + LoRA on D_train) depends only on the seed, so it is computed once per seed and
reused by the other strategies (recorded as reused, same adapter file and checksum). A
comparison resumes like a run: finished cells are skipped, an interrupted one continues.
The numbers it reports are computed in ledger/report.py (comparison_report).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import Config, apply_overrides, dump, from_dict
from ..errors import Cancelled, ConfigError
from ..events import Event, Reporter, silent
from ..ledger.comparisons import check_not_running
from ..ledger.runs import Ledger
from .engines import versions
from .loop import Orchestrator, StopCheck
from .preflight import preflight

STRATEGIES = ("none", "llm2llm", "paraphrase", "pada")


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """`NAME=STRATEGY key=value ...` (as `--variant` takes it): a named cell of the grid that runs
    STRATEGY with those config overrides, e.g. another teacher: `pada-big=pada models.teacher=...`."""
    head, *overrides = text.split()
    name, sep, strategy = head.partition("=")
    if not sep or not name or strategy not in STRATEGIES:
        hint = f"STRATEGY is one of {', '.join(STRATEGIES)}, e.g. pada-half=pada loop.budget=50"
        raise ConfigError(f"--variant {text!r}: expected NAME=STRATEGY [key=value ...]", hint=hint)
    if name in STRATEGIES:
        raise ConfigError(f"--variant {text!r}: {name} is a strategy's own name; give the variant another")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"--variant {text!r}: {bad[0]!r} is not key=value")
    return name, {"strategy": strategy, "set": overrides}


def plan(raw: dict[str, Any], base: Path, strategies: Sequence[str], n_seeds: int,
         variants: dict[str, dict[str, Any]] | None = None) -> tuple[list[str], list[int]]:
    """Check the grid before anything runs: known strategies (and variants, whose configs must
    validate), `none` included (the baseline every other strategy is measured against), at least
    one seed and one round."""
    variants = variants or {}
    unknown = [s for s in strategies if s not in STRATEGIES and s not in variants]
    if unknown:
        raise ConfigError(f"unknown strategies: {', '.join(unknown)}",
                          hint=f"choose from {', '.join(STRATEGIES)}, or define it with --variant")
    if "none" not in strategies:
        raise ConfigError("a comparison needs the `none` baseline", hint="add none to --strategies")
    if n_seeds < 1:
        raise ConfigError("--seeds must be at least 1")
    cfg = from_dict(raw, base, "comparison config")
    if cfg.loop.rounds < 1:
        raise ConfigError("a comparison needs loop.rounds >= 1", hint="--set loop.rounds=2")
    for name, variant in variants.items():
        from_dict(_with_variant(raw, variant), base, f"comparison variant {name}")
    first = cfg.loop.seed
    return list(dict.fromkeys([*strategies, *variants])), [first + i for i in range(n_seeds)]


def _with_variant(raw: dict[str, Any], variant: dict[str, Any]) -> dict[str, Any]:
    changed = apply_overrides(copy.deepcopy(raw), list(variant["set"]))
    changed.setdefault("loop", {})["strategy"] = variant["strategy"]
    return changed


def cell_config(saved: dict[str, Any], name: str, seed: int) -> Config:
    """One cell's config: the comparison's config with this strategy (or variant) and seed, fixed
    rounds."""
    variant = (saved.get("variants") or {}).get(name)
    raw = copy.deepcopy(saved["raw"]) if variant is None else _with_variant(saved["raw"], variant)
    raw.setdefault("loop", {}).update(strategy=name if variant is None else variant["strategy"], seed=seed,
                                      fixed_rounds=True)
    raw["name"] = f"{saved['raw'].get('name', 'run')}/{name}/s{seed}"
    return from_dict(raw, Path(saved["base"]), f"comparison cell {name}/seed {seed}")


def round0_inputs(config: dict[str, Any]) -> str:
    """What round 0 (zero-shot, then LoRA on D_train) depends on: two cells whose inputs are equal
    may share it. A variant that changes the teacher shares it; one that changes training does not."""
    parts = {k: config.get(k) for k in ("data", "task", "train")}
    parts["student"] = (config.get("models") or {}).get("student")
    parts["seed"] = (config.get("loop") or {}).get("seed")
    return json.dumps(parts, sort_keys=True, default=str)


def start(raw: dict[str, Any], base: Path, strategies: Sequence[str], n_seeds: int, *,
          variants: dict[str, dict[str, Any]] | None = None, report: Reporter = silent,
          should_stop: StopCheck | None = None, on_created: Callable[[str], None] | None = None) -> str:
    """Record a new comparison and run its grid. Returns the comparison id."""
    strategies, seeds = plan(raw, base, strategies, n_seeds, variants)
    cfg = from_dict(raw, base, "comparison config")
    _warn_fixed_seeds(raw, report)
    # Pin the run outputs to absolute paths, so a resume from another folder finds them.
    saved = {"raw": {**raw, "store": str(cfg.store), "workdir": str(cfg.workdir)}, "base": str(base),
             "variants": variants or {}}
    with Ledger.open(cfg.store) as ledger:
        cid = ledger.create_comparison(name=cfg.name, config=saved, strategies=strategies, seeds=seeds)
        if on_created is not None:
            on_created(cid)
        report(Event("log", "compare", message=f"comparison {cid} (store {cfg.store})"))
        return Grid(ledger, cid, report, should_stop).run()


def resume(store: Path, comparison_id: str, *, report: Reporter = silent,
           should_stop: StopCheck | None = None, variants: dict[str, dict[str, Any]] | None = None) -> str:
    """Continue a comparison: finished runs are skipped, an interrupted one resumes. `variants`
    grow the grid by more cells on the same config and seeds (round 0 is shared with them as
    with any variant whose inputs to it are the same)."""
    with Ledger.open_existing(store) as ledger:
        row = ledger.comparison(comparison_id)
        check_not_running(row)
        cid = row["id"]
        if variants:
            _extend(ledger, row, variants)
        report(Event("log", "compare", message=f"resuming comparison {cid}"
                     + (f" with {', '.join(variants)} added" if variants else "")))
        return Grid(ledger, cid, report, should_stop).run()


def _extend(ledger: Ledger, row: dict[str, Any], variants: dict[str, dict[str, Any]]) -> None:
    saved = json.loads(row["config_json"])
    strategies: list[str] = json.loads(row["strategies_json"])
    taken = [name for name in variants if name in strategies]
    if taken:
        raise ConfigError(f"the comparison already has a cell named {taken[0]}",
                          hint="give the variant another name")
    seeds: list[int] = json.loads(row["seeds_json"])
    raw = {**saved["raw"], "loop": {**(saved["raw"].get("loop") or {}), "seed": seeds[0]}}
    every = {**saved.get("variants", {}), **variants}
    grown, _ = plan(raw, Path(saved["base"]), [*strategies, *variants], len(seeds), every)  # validates them
    ledger.extend_comparison(row["id"], {**saved, "variants": every}, grown)


def _warn_fixed_seeds(raw: dict[str, Any], report: Reporter) -> None:
    for section in ("train", "teacher"):
        if isinstance(raw.get(section), dict) and raw[section].get("seed") is not None:
            report(Event("log", "compare", message=f"warning: {section}.seed is set, so every seed of the "
                         f"comparison uses it; unset it to let loop.seed vary {section}"))


class Grid:
    """Runs the cells of one comparison in order: seed by seed, strategy by strategy."""

    def __init__(self, ledger: Ledger, cid: str, report: Reporter, should_stop: StopCheck | None) -> None:
        self.ledger, self.cid, self.report = ledger, cid, report
        self.should_stop = should_stop or (lambda: False)
        row = ledger.comparison(cid)
        self.saved = json.loads(row["config_json"])
        self.strategies: list[str] = json.loads(row["strategies_json"])
        self.seeds: list[int] = json.loads(row["seeds_json"])

    def run(self) -> str:
        self.ledger.mark_comparison(self.cid, "running")
        cells = [(seed, strategy) for seed in self.seeds for strategy in self.strategies]
        self.report(Event("start", "grid", None, total=len(cells)))
        try:
            for seed, strategy in cells:
                self._cell(strategy, seed)
                self.report(Event("advance", "grid", None, advance=1, message=f"{strategy} seed {seed}"))
        except (Cancelled, KeyboardInterrupt):
            self.ledger.mark_comparison(self.cid, "interrupted")
            raise
        except Exception as err:
            self.ledger.mark_comparison(self.cid, "failed", error=f"{type(err).__name__}: {err}")
            raise
        self.report(Event("end", "grid", None))
        self.ledger.mark_comparison(self.cid, "finished")
        return self.cid

    def _cell(self, strategy: str, seed: int) -> None:
        known = {(x["strategy"], x["seed"]): x for x in self.ledger.comparison_runs(self.cid)}
        cell = known.get((strategy, seed))
        if cell is not None and cell["status"] == "finished":
            return
        cfg = cell_config(self.saved, strategy, seed)
        if cell is None:
            run_id = self._new_run(cfg, strategy, seed)
        else:
            run_id = cell["run_id"]
            self.ledger.for_run(run_id).check_resumable()
        self.report(Event("log", "compare", message=f"{strategy}, seed {seed}: run {run_id}"))
        prepared = preflight(cfg)
        Orchestrator(prepared, self.ledger, run_id, report=self.report, should_stop=self.should_stop).run()

    def _new_run(self, cfg: Config, strategy: str, seed: int) -> str:
        run_id = self.ledger.create_run(config=dump(cfg), versions=versions())
        self.ledger.add_comparison_run(self.cid, run_id, strategy, seed)
        source = self._round0_source(seed, run_id)
        if source is not None:
            self.ledger.reuse_round(source, run_id, 0)
            self.report(Event("log", "compare", message=f"round 0 reused from run {source}"))
        # Not running until the orchestrator starts it.
        self.ledger.for_run(run_id).mark_stopped("interrupted")
        return run_id

    def _round0_source(self, seed: int, run_id: str) -> str | None:
        """A run of this comparison and seed whose round 0 is complete and had the same inputs."""
        mine = round0_inputs(self.ledger.for_run(run_id).config())
        for x in self.ledger.comparison_runs(self.cid):
            if x["seed"] == seed and x["run_id"] != run_id and self._round0_done(x["run_id"]) and \
                    round0_inputs(self.ledger.for_run(x["run_id"]).config()) == mine:
                return str(x["run_id"])
        return None

    def _round0_done(self, run_id: str) -> bool:
        run = self.ledger.for_run(run_id)
        return all(run.stage_done(0, s) for s in ("zero_shot", "train", "eval"))
