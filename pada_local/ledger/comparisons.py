"""The comparison tables of the ledger: a comparison (strategies x seeds on the same data), the
runs of its grid, and what the grid cost. `Ledger` (runs.py) carries these methods; they live
here so each file reads as one subject."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import PadaError
from ..files import now, pid_alive
from .rules import effective_status
from .store import Row, RunStore
from .store import now as exact_now


class Comparisons:
    """Comparison reads and writes; mixed into `Ledger`, which owns the store."""

    store: RunStore

    def create_comparison(self, *, name: str | None, config: Mapping[str, Any], strategies: Sequence[str],
                          seeds: Sequence[int]) -> str:
        stamp = exact_now()
        row = {"name": name, "config_json": dict(config), "strategies_json": list(strategies),
               "seeds_json": list(seeds), "status": "running", "pid": os.getpid(), "created_at": stamp,
               "updated_at": stamp}
        return self.store.insert_new("comparisons", row, prefix="cmp-")

    def comparison(self, prefix: str) -> Row:
        """The one comparison whose id is `prefix` or starts with it, its status effective as a
        run's is (a dead process reads interrupted)."""
        cid = self.store.resolve_prefix("comparisons", prefix, what="comparison",
                                        hint="list them: pada compare --list")
        row = self.store.rows("comparisons", id=cid)[0]
        return {**row, "status": effective_status(row)}

    def comparisons(self) -> list[Row]:
        rows = self.store.rows("comparisons", order="created_at DESC, rowid DESC")
        return [{**row, "status": effective_status(row)} for row in rows]

    def comparison_runs(self, comparison_id: str) -> list[Row]:
        """(run_id, strategy, seed) of each run in the grid, with the run's effective status."""
        out = []
        for x in self.store.rows("comparison_runs", comparison_id=comparison_id):
            run = self.store.rows("runs", id=x["run_id"])[0]
            out.append({**x, "status": effective_status(run)})
        return out

    def add_comparison_run(self, comparison_id: str, run_id: str, strategy: str, seed: int) -> None:
        self.store.write("comparison_runs", [{"comparison_id": comparison_id, "run_id": run_id,
                                              "strategy": strategy, "seed": seed}], "error")

    def mark_comparison(self, comparison_id: str, status: str, error: str | None = None) -> None:
        fields: dict[str, Any] = {"status": status, "pid": os.getpid(), "updated_at": exact_now()}
        if status == "finished":
            fields["finished_at"] = now()
        if error is not None:
            fields["error"] = error
        self.store.update("comparisons", {"id": comparison_id}, **fields)

    def extend_comparison(self, comparison_id: str, config: Mapping[str, Any],
                          strategies: Sequence[str]) -> None:
        """A grid grown by more cells (their variants in `config`); the finished cells stay."""
        self.store.update("comparisons", {"id": comparison_id}, config_json=dict(config),
                          strategies_json=list(strategies), updated_at=exact_now())

    def comparison_cost(self, comparison_id: str) -> dict[str, int]:
        """Rounds computed against rounds a naive grid would compute (every strategy, every round)."""
        rounds = [r for x in self.store.rows("comparison_runs", comparison_id=comparison_id)
                  for r in self.store.rows("rounds", x["run_id"], order="round") if r["status"] == "done"]
        computed = sum(r["reused_from"] is None for r in rounds)
        naive = len(rounds)
        return {"rounds_computed": computed, "rounds_naive": naive, "rounds_saved": naive - computed}

    def comparison_config(self, comparison_id: str) -> dict[str, Any]:
        return dict(json.loads(self.comparison(comparison_id)["config_json"] or "{}"))


def check_not_running(row: Mapping[str, Any]) -> None:
    """Refuse to resume a comparison whose process still runs."""
    if row["status"] == "running" and pid_alive(row.get("pid")):
        raise PadaError(f"comparison {row['id']} is still running (pid {row['pid']})",
                        hint="stop it first, or wait")
