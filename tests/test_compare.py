"""`pada compare` end to end at tiny size with the real embedded models: seeds reach training,
round 0 is computed once per seed and reused, `none` trains as many models as the others, a
killed comparison resumes without redoing finished runs, and the report holds together."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from pada_local.config import load, load_raw
from pada_local.errors import Cancelled, ConfigError
from pada_local.ledger.compare_report import comparison_report
from pada_local.ledger.runs import Ledger
from pada_local.ledger.stats import mean_sd, paired_bootstrap
from pada_local.run import compare, loop

from .conftest import tiny_task

pytestmark = pytest.mark.slow


def test_bootstrap_and_spread_arithmetic() -> None:
    assert mean_sd([0.5, 0.7]) == pytest.approx((0.6, 0.1414213), rel=1e-5)
    assert mean_sd([0.5]) == (0.5, None)
    est, low, high = paired_bootstrap({0: [1.0, 0.0, 1.0, 1.0], 1: [0.0, 1.0, 1.0, 1.0]}, n_boot=500)
    assert est == pytest.approx(0.75) and low <= est <= high
    assert paired_bootstrap({0: [0.0] * 5}, n_boot=50) == (0.0, 0.0, 0.0)
    again = paired_bootstrap({0: [1.0, 0.0, 1.0], 1: [0.0, -1.0, 1.0]}, n_boot=300, seed=3)
    assert again == paired_bootstrap({0: [1.0, 0.0, 1.0], 1: [0.0, -1.0, 1.0]}, n_boot=300, seed=3)


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 2-strategy x 2-seed comparison, cancelled during its third cell and resumed."""
    folder = tmp_path_factory.mktemp("compare")
    path = tiny_task(folder)
    overrides = [f"store={folder / 'runs.db'}", f"workdir={folder / 'work'}", "loop.budget=4"]
    raw = load_raw(path, overrides)
    cells_done: list[str] = []

    def stop_in_third_cell() -> bool:
        return len(cells_done) >= 2

    def report(event: Any) -> None:
        if event.stage == "grid" and event.kind == "advance":
            cells_done.append(event.message)

    with pytest.raises(Cancelled):
        compare.start(raw, folder, ["none", "pada"], 2, report=report, should_stop=stop_in_third_cell)
    store = load(path, overrides).store
    with Ledger.open(store) as ledger:
        cid = ledger.comparisons()[0]["id"]
        before = {x["run_id"]: ledger.run(x["run_id"])["finished_at"] for x in ledger.comparison_runs(cid)}
    compare.resume(store, cid)
    return {"store": store, "cid": cid, "before": before, "path": path, "overrides": overrides,
            "folder": folder}


def _cells(g: dict[str, Any]) -> dict[tuple[str, int], str]:
    with Ledger.open(g["store"]) as ledger:
        return {(x["strategy"], x["seed"]): x["run_id"] for x in ledger.comparison_runs(g["cid"])}


def _adapter_sha(ledger: Ledger, run_id: str, r: int) -> str:
    rows = [a for a in ledger.for_run(run_id).artifacts(kind="adapter") if a["round"] == r]
    return str(rows[0]["sha256"])


def test_resume_finished_every_cell_without_redoing_the_finished_ones(grid: dict[str, Any]) -> None:
    with Ledger.open(grid["store"]) as ledger:
        cells = ledger.comparison_runs(grid["cid"])
        assert len(cells) == 4 and all(c["status"] == "finished" for c in cells)
        assert ledger.comparison(grid["cid"])["status"] == "finished"
        for run_id, finished_at in grid["before"].items():
            if finished_at is not None:  # finished before the kill: untouched by the resume
                assert ledger.run(run_id)["finished_at"] == finished_at


def test_round0_is_computed_once_per_seed_and_reused(grid: dict[str, Any]) -> None:
    cells = _cells(grid)
    with Ledger.open(grid["store"]) as ledger:
        for seed in (0, 1):
            first, second = cells[("none", seed)], cells[("pada", seed)]
            r0 = {x["run_id"]: ledger.for_run(x["run_id"]).round(0) for x in ledger.comparison_runs(grid["cid"])}
            assert r0[first]["reused_from"] is None and r0[second]["reused_from"] == first
            assert _adapter_sha(ledger, first, 0) == _adapter_sha(ledger, second, 0)
            assert r0[first]["val_score"] == r0[second]["val_score"]
        assert _adapter_sha(ledger, cells[("none", 0)], 0) != _adapter_sha(ledger, cells[("none", 1)], 0)
        report = comparison_report(ledger, grid["cid"], n_boot=200)
    assert report["cost"]["rounds_saved"] == 2 and report["cost"]["rounds_naive"] == 8


def test_seed_reaches_training_and_round0_equals_a_fresh_computation(grid: dict[str, Any]) -> None:
    """A plain run with the same seed trains the same round-0 adapter, bit for bit, with the
    same scores: reusing round 0 changes nothing."""
    cfg = load(grid["path"], [*grid["overrides"], "loop.strategy=none", "loop.seed=1",
                              f"store={grid['folder'] / 'fresh.db'}"])
    run_id = loop.start(cfg)
    with Ledger.open(cfg.store) as fresh, Ledger.open(grid["store"]) as ledger:
        reused = _cells(grid)[("pada", 1)]
        assert _adapter_sha(fresh, run_id, 0) == _adapter_sha(ledger, reused, 0)
        assert fresh.for_run(run_id).round(0)["val_score"] == ledger.for_run(reused).round(0)["val_score"]
        assert fresh.for_run(run_id).round(0)["test_score"] == ledger.for_run(reused).round(0)["test_score"]


def test_none_trains_as_many_models_as_the_others_each_with_its_round_seed(grid: dict[str, Any]) -> None:
    cells = _cells(grid)
    with Ledger.open(grid["store"]) as ledger:
        for seed in (0, 1):
            none, pada = cells[("none", seed)], cells[("pada", seed)]
            assert [r["round"] for r in ledger.for_run(none).rounds()] == [r["round"] for r in ledger.for_run(pada).rounds()] == [0, 1]
            shas = [_adapter_sha(ledger, none, r) for r in (0, 1)]
            assert shas[0] != shas[1]  # round 1 retrains on D_train with its own seed
            assert ledger.run(none)["best_round"] is not None


def test_report_holds_together(grid: dict[str, Any]) -> None:
    with Ledger.open(grid["store"]) as ledger:
        report = comparison_report(ledger, grid["cid"], n_boot=200)
    by = {s["strategy"]: s for s in report["strategies"]}
    assert set(by) == {"none", "pada"} and by["none"]["seeds"] == [0, 1]
    vs = by["pada"]["vs_none"]
    assert vs["seeds"] == 2 and vs["low"] <= vs["difference"] <= vs["high"]
    assert vs["verdict"] in ("no measurable gain at this size", "better than none", "worse than none")
    assert by["pada"]["generated"] > 0 and by["pada"]["teacher_tokens"] > 0 and by["none"]["teacher_tokens"] == 0
    for s in report["strategies"]:
        assert s["test_selected"]["mean"] is not None


# ---------------------------------------------------------------- a real kill


def _compare_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pada_local.cli", "compare", *args]


def _grid_args(config: Path, store: Path, work: Path) -> list[str]:
    return [str(config), "--strategies", "none,pada", "--seeds", "2", "--set", f"store={store}",
            "--set", f"workdir={work}", "--set", "loop.budget=4"]


def _snapshot(store: Path) -> dict[tuple[str, int], dict[str, Any]] | None:
    """What the store says so far, read through a read-only connection (never a second writer,
    never a migration racing the one that creates the store): per cell (strategy, seed) its run's
    status and finished_at, and its done stages' finished_at. None until the grid has a cell."""
    if not store.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)) as con:
            cells = con.execute("SELECT c.strategy, c.seed, c.run_id, r.status, r.finished_at FROM "
                                "comparison_runs c JOIN runs r ON r.id = c.run_id").fetchall()
            stages = con.execute("SELECT run_id, round, stage, finished_at FROM stages "
                                 "WHERE status = 'done'").fetchall()
    except sqlite3.Error:  # not created yet, or a table not there yet
        return None
    if not cells:
        return None
    return {(s, seed): {"run_id": run_id, "status": status, "finished_at": finished_at,
                        "stages": {(r, st): at for rid, r, st, at in stages if rid == run_id}}
            for s, seed, run_id, status, finished_at in cells}


def _results(store: Path) -> tuple[dict[Any, Any], dict[str, Any]]:
    """The comparison's report: per (strategy, seed) what the cell selected and scored, and per
    strategy the means, counts and paired difference to `none` (no times, no ids)."""
    with Ledger.open_existing(store) as ledger:
        (row,) = ledger.comparisons()
        report = comparison_report(ledger, row["id"], n_boot=200)
    keys = ("selected_round", "last_round", "test_selected", "test_last", "val_selected", "val_last",
            "test_by_rule", "generated", "accepted")
    cells = {(c["strategy"], c["seed"]): {k: c[k] for k in keys} for c in report["cells"]}
    keep = ("seeds", "test_selected", "test_last", "val_selected", "val_last", "test_by_rule", "generated",
            "accepted", "vs_none", "vs_none_last")
    strategies = {s["strategy"]: {k: s.get(k) for k in keep} for s in report["strategies"]}
    return cells, {"status": report["status"], "strategies": strategies, "running": report["running"],
                   "rounds": {k: report["cost"][k] for k in ("rounds_computed", "rounds_naive")}}


@pytest.mark.slow
def test_compare_killed_with_sigkill_mid_cell_resumes_to_the_uninterrupted_report(tmp_path: Path) -> None:
    """`pada compare` killed with SIGKILL half-way through its third cell (round 0 trained, not
    yet evaluated), then `pada compare --resume`: the two finished cells and the killed cell's
    finished stages are not redone, every cell finishes, and the report equals that of the
    same comparison run without interruption in another store."""
    folder = tmp_path / "task"
    folder.mkdir()
    config = tiny_task(folder)
    reference, store = tmp_path / "reference.db", tmp_path / "killed.db"
    done = subprocess.run(_compare_cmd(*_grid_args(config, reference, tmp_path / "work-reference")),
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]

    with (tmp_path / "killed.log").open("w") as log:
        proc = subprocess.Popen(_compare_cmd(*_grid_args(config, store, tmp_path / "work-killed")),
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 3600
        while True:
            assert proc.poll() is None, "the comparison ended before it could be killed"
            assert time.time() < deadline, "the third cell never got half-way"
            seen = _snapshot(store)
            third = None if seen is None else seen.get(("none", 1))
            if third is not None and (0, "train") in third["stages"]:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert seen is not None and third is not None
    assert third["status"] == "running"  # half-way: round 0 trained, the run not finished
    finished = sorted(key for key, cell in seen.items() if cell["status"] == "finished")
    assert finished == [("none", 0), ("pada", 0)]  # loop.seed 0: seeds 0 and 1, seed by seed
    before = [seen[key] for key in finished]
    with Ledger.open_existing(store) as ledger:
        (row,) = ledger.comparisons()
        cid = row["id"]
        assert row["status"] == "interrupted"  # stored as running, by a process that is gone

    done = subprocess.run(_compare_cmd("--resume", cid, "--store", str(store)), capture_output=True,
                          text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]

    after = _snapshot(store)
    assert after is not None and sorted(after) == [("none", 0), ("none", 1), ("pada", 0), ("pada", 1)]
    assert all(cell["status"] == "finished" for cell in after.values())
    for cell in before:  # finished before the kill: neither the run nor any of its stages redone
        again = next(c for c in after.values() if c["run_id"] == cell["run_id"])
        assert again["finished_at"] == cell["finished_at"] and again["stages"] == cell["stages"]
    resumed = after[("none", 1)]
    assert resumed["run_id"] == third["run_id"]  # the killed cell continued, not started over
    for stage, finished_at in third["stages"].items():  # its finished stages were not redone
        assert resumed["stages"][stage] == finished_at, stage
    assert {(1, "eval"), (1, "train"), (0, "eval")} <= set(resumed["stages"])
    with Ledger.open_existing(store) as ledger:
        assert ledger.comparison(cid)["status"] == "finished"
        reused = ledger.for_run(after[("pada", 1)]["run_id"]).round(0)["reused_from"]
        assert reused == third["run_id"]  # round 0 of seed 1, finished by the resume, is shared

    got, want = _results(store), _results(reference)
    assert got[1]["status"] == "finished" and got[1]["running"] == []
    assert got[0] == want[0]
    assert got[1] == want[1]


def test_resume_with_a_variant_grows_a_finished_comparison_and_reuses_its_round0(tmp_path: Path) -> None:
    path = tiny_task(tmp_path)
    overrides = [f"store={tmp_path / 'runs.db'}", f"workdir={tmp_path / 'work'}"]
    cid = compare.start(load_raw(path, overrides), tmp_path, ["none"], 1)
    store = load(path, overrides).store
    with Ledger.open(store) as ledger:
        first = ledger.comparison_runs(cid)[0]
        finished_at = ledger.run(first["run_id"])["finished_at"]
    added = dict([compare.parse_variant("none-cap3=none loop.analysis_cap=3")])
    compare.resume(store, cid, variants=added)
    with Ledger.open(store) as ledger:
        row = ledger.comparison(cid)
        cells = {x["strategy"]: x for x in ledger.comparison_runs(cid)}
        assert row["status"] == "finished" and set(cells) == {"none", "none-cap3"}
        assert ledger.run(first["run_id"])["finished_at"] == finished_at  # the finished cell is kept
        new = ledger.for_run(cells["none-cap3"]["run_id"])
        assert cells["none-cap3"]["status"] == "finished" and new.round(0)["reused_from"] == first["run_id"]
        assert new.config()["loop"]["analysis_cap"] == 3
    with pytest.raises(ConfigError, match="already has a cell named none-cap3"):
        compare.resume(store, cid, variants=added)
