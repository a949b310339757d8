"""The run ledger: the one owner of run data.

Every read and write of a run's tables goes through a named method of the ledger: this module
for the store as a whole (create, list, resolve and delete runs, reuse a round), run.py for one
run's records (`ledger.for_run(run_id)`), comparisons.py for the comparison tables; nothing else
names a table. The rules several readers share (effective verdict and status, best round, what
may be resumed) are in rules.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import PadaError
from .comparisons import Comparisons
from .run import RunLedger
from .schema import HUMAN_VERDICTS, ROUND_TABLES, RUN_STATUSES
from .store import Row, RunStore
from .store import now as exact_now  # to the millisecond: run rows and stage marks, as ever

RUNS_HINT = "list the runs in this store with `pada runs`"


class Ledger(Comparisons):
    """Named reads and writes over one RunStore (one per thread, like the store)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    @classmethod
    @contextmanager
    def open(cls, path: Path | str) -> Iterator[Ledger]:
        with RunStore(path) as store:
            yield cls(store)

    @classmethod
    @contextmanager
    def open_existing(cls, path: Path | str) -> Iterator[Ledger]:
        """Like open(), but a missing store is an error: reading must never create one."""
        if not Path(path).is_file():
            raise PadaError(f"no run store at {path}",
                            hint="start a run with `pada demo` or `pada run CONFIG`")
        with cls.open(path) as ledger:
            yield ledger

    @property
    def path(self) -> Path:
        return self.store.path

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.store.transaction():
            yield

    def for_run(self, run_id: str) -> RunLedger:
        """The ledger bound to one run (not checked: `row()` raises for a run that is not there)."""
        return RunLedger(self, run_id)

    # ------------------------------------------------------------ runs

    def create_run(self, *, config: Mapping[str, Any], versions: Mapping[str, Any],
                   run_id: str | None = None) -> str:
        """Record a new run (status 'running', owned by this process) from its saved config."""
        models, loop, task = config["models"], config["loop"], config["task"]
        stamp = exact_now()
        row = {"name": config.get("name"), "task": task["name"], "strategy": loop["strategy"],
               "student": models["student"], "teacher": models.get("teacher"), "status": "running",
               "config_json": dict(config), "seed": loop.get("seed"), "versions_json": dict(versions),
               "pid": os.getpid(), "created_at": stamp, "updated_at": stamp}
        try:
            return self.store.insert_new("runs", row, given=run_id)
        except Exception as err:
            if run_id is not None and "UNIQUE" in str(err):
                raise PadaError(f"run {run_id!r} already exists in {self.path}",
                                hint="choose another run id, or resume that run") from err
            raise

    def set_run(self, run_id: str, **fields: Any) -> None:
        """Update columns of a run (updated_at is set too)."""
        if "status" in fields and fields["status"] not in RUN_STATUSES:
            raise ValueError(f"run status {fields['status']!r} not in {RUN_STATUSES}")
        if self.store.update("runs", {"id": run_id}, **fields, updated_at=exact_now()) == 0:
            raise PadaError(f"no run {run_id!r} in {self.path}", hint=RUNS_HINT)

    def resolve(self, prefix: str) -> str:
        return self.store.resolve_prefix("runs", prefix, what="run", hint=RUNS_HINT)

    def run(self, run_id: str) -> Row:
        found = self.store.rows("runs", id=run_id)
        if not found:
            raise PadaError(f"no run {run_id!r} in {self.path}", hint=RUNS_HINT)
        return found[0]

    def runs(self) -> list[Row]:
        """All runs, newest first."""
        return self.store.rows("runs", order="created_at DESC, rowid DESC")

    def delete_run(self, run_id: str) -> None:
        """Delete a run; foreign keys cascade to all its rows."""
        if self.store.delete("runs", id=run_id) == 0:
            raise PadaError(f"no run {run_id!r} in {self.path}", hint=RUNS_HINT)

    def set_human_verdict(self, candidate_id: int, verdict: str | None) -> None:
        """Record a person's verdict on a candidate (None clears it)."""
        if verdict not in HUMAN_VERDICTS:
            raise ValueError(f"human verdict {verdict!r} not in {HUMAN_VERDICTS}")
        at = None if verdict is None else exact_now()
        if self.store.update("candidates", {"id": candidate_id}, human_verdict=verdict, human_at=at) == 0:
            raise PadaError(f"no candidate {candidate_id} in {self.path}")

    def reuse_round(self, src: str, dst: str, r: int) -> None:
        """Round r of `src` becomes round r of `dst` (same rows, same adapter file and checksum),
        recorded as reused; only a round with every stage done may be reused."""
        source = self.for_run(src)
        stages = ("zero_shot", "train", "eval") if r == 0 else ("train", "eval")
        if not all(source.stage_done(r, s) for s in stages):
            raise PadaError(f"round {r} of run {src} is not finished; it cannot be reused")
        with self.transaction():
            for table in ROUND_TABLES:
                cols = [c for c in self.store.columns(table) if c not in ("id", "run_id")]
                names = ", ".join(f"[{c}]" for c in cols)
                self.store.execute(f"INSERT INTO [{table}] (run_id, {names}) SELECT ?, {names} "
                                   f"FROM [{table}] WHERE run_id = ? AND round = ?", [dst, src, r])
            self.store.update("rounds", {"run_id": dst, "round": r}, reused_from=src)
