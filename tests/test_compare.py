"""`pada compare` end to end at tiny size with the real embedded models: seeds reach training,
round 0 is computed once per seed and reused, `none` trains as many models as the others, a
killed comparison resumes without redoing finished runs, and the report holds together."""

from __future__ import annotations

from typing import Any

import pytest

from pada_local.config import load, load_raw
from pada_local.errors import Cancelled
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
        assert fresh.round(run_id, 0)["val_score"] == ledger.for_run(reused).round(0)["val_score"]
        assert fresh.round(run_id, 0)["test_score"] == ledger.for_run(reused).round(0)["test_score"]


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
