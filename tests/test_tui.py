"""The terminal UI, driven with Textual's pilot over a store filled by a real tiny run (the
embedded models, CPU), plus SVG snapshots of the screens whose content is deterministic.

The real run is made once per module. Tests that change a store work on a copy of it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Button, DataTable, Input, Label, Select, Static, TabbedContent

from pada_local.config import dump, load
from pada_local.ledger import report as data  # the read model the screens show
from pada_local.ledger.compare_report import comparison_report
from pada_local.ledger.runs import Ledger
from pada_local.ledger.store import RunStore
from pada_local.run import loop
from tui.app import PadaApp, create_app
from tui.format import one_line
from tui.screens.compare import CompareScreen
from tui.screens.live import LiveScreen
from tui.screens.modals import ConfirmModal, ErrorModal
from tui.screens.new_run import NewRunScreen
from tui.screens.patterns import PatternsScreen
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen
from tui.screens.samples import SamplesScreen

from .conftest import add_run, set_round, tiny_task

SIZE = (100, 32)
slow = pytest.mark.slow  # tests that need the real run (models load); the snapshots do not


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """(store path, run id, config path) of a finished real run: one round of the loop."""
    folder = tmp_path_factory.mktemp("tui-run")
    config = tiny_task(folder, seed=321)
    cfg = load(config, [f"store={folder / 'runs.db'}", f"workdir={folder / 'work'}"])
    run_id = loop.start(cfg)
    return cfg.store, run_id, config


@pytest.fixture
def store_copy(real_run: tuple[Path, str, Path], tmp_path: Path) -> Path:
    """A private copy of the real run's store, for tests that change it."""
    src = sqlite3.connect(real_run[0])
    dst = sqlite3.connect(tmp_path / "copy.db")
    src.backup(dst)
    src.close()
    dst.close()
    return tmp_path / "copy.db"


def drive(app: PadaApp, scenario: Callable[[Any], Any], size: tuple[int, int] = SIZE) -> None:
    """Run a pilot scenario on the app, synchronously (no async test plugin needed)."""
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await scenario(pilot)

    asyncio.run(main())


async def wait_for(pilot: Any, condition: Callable[[], Any], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.1)


def table(app: PadaApp, selector: str) -> DataTable:
    return app.screen.query_one(selector, DataTable)


def column(t: DataTable, index: int) -> list[str]:
    return [str(t.get_row_at(i)[index]) for i in range(t.row_count)]


def no_errors(app: PadaApp) -> None:
    shown = [s for s in app.screen_stack if isinstance(s, ErrorModal)]
    assert not shown, [(s.message, s.hint) for s in shown]


def _add_baseline_run(path: Path, like: str) -> str:
    """A second (recorded, not computed) run on the same task, to sort, filter and compare."""
    with RunStore(path) as store:
        ref = Ledger(store).run(like)
        run_id = add_run(store, name="baseline", task=ref["task"], strategy="llm2llm", student=ref["student"],
                         teacher=ref["teacher"])
        set_round(store, run_id, 0, status="done", val_score=0.1, test_score=0.2, zero_shot_val=0.0,
                  zero_shot_test=0.0, seconds=12.0)
        Ledger(store).set_run(run_id, status="finished", best_round=0, best_val=0.1, best_test=0.2,
                              stop_reason="test")
    return run_id


def _test_items(scores: list[float]) -> list[dict[str, Any]]:
    return [{"model": "trained", "split": "test", "item_id": f"t{i}", "input": "q", "reference": "a",
             "prediction": "a" if score else "b", "score": score} for i, score in enumerate(scores)]


def _add_grid_run(store: RunStore, strategy: str, seed: int, test: list[list[float]],
                  reused_from: str | None = None) -> str:
    """One recorded (not computed) run of a comparison: rounds 0 and 1 with their sealed-test
    rows; validation rises with the round, so round 1 is the selected one. A round 0 reused
    from another run is recorded as such, as `pada compare` does."""
    name = f"grid/{strategy}/s{seed}"
    run_id = add_run(store, name=name, strategy=strategy, seed=seed)
    run = Ledger(store).for_run(run_id)
    made = 6 if strategy == "pada" else 0  # samples per augmentation round, 4 of them accepted
    for r, scores in enumerate(test):
        reuse = reused_from if r == 0 else None
        run.write_stage(r, "eval", rows={"eval_items": _test_items(scores)},
                        stats={"seconds": 0.0 if reuse else 30.0, "items": len(scores)})
        set_round(store, run_id, r, status="done", val_score=0.5 + 0.1 * r, reused_from=reuse,
                  test_score=sum(scores) / len(scores), n_synthetic=made * r, n_accepted=made * r * 2 // 3)
    if made:
        run.write_stage(1, "generate", stats={"seconds": 60.0, "prompt_tokens": 900, "completion_tokens": 100})
    Ledger(store).set_run(run_id, status="finished", best_round=1, best_val=0.6,
                          best_test=sum(test[1]) / len(test[1]))
    return run_id


def _add_comparison(path: Path) -> str:
    """A finished 2-strategy x 2-seed comparison, recorded by hand (no model runs): `pada`
    scores 20 points above `none` on the sealed test with every seed."""
    with RunStore(path) as store:
        ledger = Ledger(store)
        cid = ledger.create_comparison(name="grid", config={}, strategies=["none", "pada"], seeds=[0, 1])
        for seed in (0, 1):
            base = [1.0] * (5 + seed) + [0.0] * (5 - seed)
            none = _add_grid_run(store, "none", seed, [base, base])
            better = [1.0] * (7 + seed) + [0.0] * (3 - seed)
            ledger.add_comparison_run(cid, none, "none", seed)
            pada = _add_grid_run(store, "pada", seed, [base, better], reused_from=none)
            ledger.add_comparison_run(cid, pada, "pada", seed)
        ledger.mark_comparison(cid, "finished")
    return cid


# ---------------------------------------------------------------- runs screen


@slow
def test_runs_screen_lists_filters_and_sorts(real_run, store_copy):
    _, run_id, _ = real_run
    other = _add_baseline_run(store_copy, run_id)
    app = create_app(store_copy)

    async def scenario(pilot):
        assert isinstance(app.screen, RunsScreen)
        t = table(app, "#runs-table")
        assert t.row_count == 2
        assert set(column(t, 1)) == {"tiny", "baseline"}
        assert "finished" in column(t, 2)
        await pilot.press("slash", *"llm2llm")
        assert column(t, 1) == ["baseline"]
        app.screen.query_one("#runs-filter", Input).value = ""
        await pilot.press("escape")
        assert t.row_count == 2
        screen = app.screen
        screen._sort_by("name")  # same as clicking the header
        await pilot.pause()
        assert column(t, 1) == ["baseline", "tiny"]
        screen._sort_by("name")
        await pilot.pause()
        assert column(t, 1) == ["tiny", "baseline"]
        await pilot.press("s")  # next column
        assert screen.sort_key != "name"
        # mark both and compare them
        await pilot.press("space", "space", "c")
        assert isinstance(app.screen, CompareScreen)
        ct = table(app, "#compare-table")
        labels = column(ct, 0)
        assert "round 0 val / test" in labels and "samples accepted" in labels and "time" in labels
        assert len(ct.columns) == 3 and {str(c.label) for c in ct.columns.values()} >= {run_id, other}
        no_errors(app)

    drive(app, scenario)


@slow
def test_delete_asks_first(real_run, store_copy):
    _, run_id, _ = real_run
    _add_baseline_run(store_copy, run_id)
    app = create_app(store_copy)

    async def scenario(pilot):
        screen = app.screen
        victim = screen.current_id()
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        assert table(app, "#runs-table").row_count == 2
        await pilot.press("d", "y")
        await pilot.pause()
        assert table(app, "#runs-table").row_count == 1
        with RunStore(store_copy) as store:
            assert victim not in [r["id"] for r in Ledger(store).runs()]
            assert store.count("candidates", victim) == 0  # its rows went with it

    drive(app, scenario)


def test_a_stored_comparison_opens_in_the_compare_screen(tmp_path):
    from tui.screens.compare import ComparisonsModal
    from tui.widgets.charts import StrategyChart

    store_path = tmp_path / "runs.db"
    cid = _add_comparison(store_path)
    with RunStore(store_path) as store:
        expected = comparison_report(store, cid)
    pada = next(s for s in expected["strategies"] if s["strategy"] == "pada")
    app = create_app(store_path)

    async def scenario(pilot):
        assert "C: 1 stored comparison" in _plain(app.screen.query_one("#runs-empty", Static))
        await pilot.press("C", "escape")  # the picker closes without opening anything
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("C")
        assert isinstance(app.screen, ComparisonsModal)
        picker = table(app, "#comparisons-table")
        assert picker.get_row_at(0)[:5] == [cid, "grid", "finished", "none,pada", "0,1"]
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, CompareScreen) and screen.comparison_id == cid
        await wait_for(pilot, lambda: screen.result is not None, what="the comparison's report")
        t = table(app, "#compare-table")
        assert column(t, 0) == ["none", "pada"]
        none_row, pada_row = t.get_row_at(0), t.get_row_at(1)
        assert none_row[2] == "55.0 ± 7.1" and none_row[4] == "-"  # test (selected); no difference to itself
        assert pada_row[2] == "75.0 ± 7.1" and pada_row[3] == "75.0 ± 7.1" and pada_row[5] == "2/2"
        assert pada_row[4].startswith("+20.0 [") and pada_row[7] == "8/12" and pada_row[8] == "2000"
        notes = _plain(screen.query_one("#compare-verdicts", Static))
        assert "pada vs none: +20.0 points [" in notes
        assert f"better on 2 of 2 seeds: {pada['vs_none']['verdict']}" in notes
        assert "cost: 6 rounds computed for 8 rounds reported (2 saved" in notes
        chart = screen.query_one("#strategy-chart", StrategyChart)
        assert chart.size.height > 0 and "seed 1" in chart.plt.build()
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        no_errors(app)

    drive(app, scenario)


def test_a_comparison_that_cannot_be_read_shows_an_error(tmp_path):
    store_path = tmp_path / "runs.db"
    _add_comparison(store_path)
    app = create_app(store_path)

    async def scenario(pilot):
        app.push_screen(CompareScreen(comparison_id="cmp-gone"))  # deleted, or a stale id
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal), what="the error modal")
        assert "no comparison matches 'cmp-gone'" in app.screen.message
        await pilot.press("escape")
        assert "could not be read" in _plain(app.screen.query_one("#compare-verdicts", Static))

    drive(app, scenario)


def test_compare_marked_runs_still_works_beside_comparisons(tmp_path):
    store_path = tmp_path / "runs.db"
    _add_comparison(store_path)
    app = create_app(store_path)

    async def scenario(pilot):
        await pilot.press("space", "space", "c")
        assert isinstance(app.screen, CompareScreen) and app.screen.comparison_id is None
        assert "samples accepted" in column(table(app, "#compare-table"), 0)
        assert app.screen.query("#compare-chart") and not app.screen.query("#strategy-chart")
        no_errors(app)

    drive(app, scenario)


# ---------------------------------------------------------------- one run


@slow
def test_run_screen_shows_rounds_stages_charts_config_artifacts(real_run):
    store_path, run_id, _ = real_run
    app = create_app(store_path)
    with RunStore(store_path) as store:
        rounds = [r["round"] for r in Ledger(store).for_run(run_id).rounds()]
        stages = {n: len(store.rows("stages", run_id, n)) for n in rounds}
        n_artifacts = store.count("artifacts", run_id)

    async def scenario(pilot):
        await pilot.press("enter")
        assert isinstance(app.screen, RunScreen)
        await pilot.pause()
        assert column(table(app, "#rounds-table"), 0)[:2] == ["zero-shot", "0"]
        tabs = app.screen.query_one("#run-tabs", TabbedContent)
        for n in rounds:
            tabs.active = f"tab-round-{n}"
            await pilot.pause()
            assert table(app, f"#stages-{n}").row_count == stages[n]
        tabs.active = "tab-charts"
        await pilot.pause()
        score = app.screen.query_one("#score-chart")
        assert score.size.height > 0 and "zero-shot" in score.plt.build()
        tabs.active = "tab-config"
        await pilot.pause()
        assert "tiny-skills" in _plain(app.screen.query_one("#config-text", Static))
        tabs.active = "tab-artifacts"
        await pilot.pause()
        assert table(app, "#artifacts-table").row_count == n_artifacts > 0
        await pilot.press("r")  # a finished run cannot be resumed: a warning, no job
        assert app.job is None
        no_errors(app)

    drive(app, scenario)


@slow
def test_patterns_screen_shows_failures_and_fixes(real_run):
    store_path, run_id, _ = real_run
    with RunStore(store_path) as store:
        views = data.patterns(store, run_id, 1)
        fixed = {m["pattern_id"]: m["value"] for m in store.rows("metrics", run_id, 1, name="pattern_fixed")}
    assert views, "the tiny run mined no pattern"
    assert all(v.failures for v in views)
    assert {v.id: v.fixed for v in views if v.fixed is not None} == fixed
    app = create_app(store_path)

    async def scenario(pilot):
        await pilot.press("enter", "p")
        assert isinstance(app.screen, PatternsScreen)
        await pilot.pause()
        assert table(app, "#patterns-table").row_count == len(views)
        detail = app.screen.query_one("#pattern-detail", Static)
        text = _plain(detail)
        first = views[0]
        assert first.failures[0].input.split()[0] in text and "validation failures behind it" in text
        # Keywords beside every name: a column of the table, and after the name in the detail.
        shown = column(table(app, "#patterns-table"), 3)
        assert shown == [one_line(", ".join(v.keywords), 40) for v in views]
        assert not first.keywords or f"(keywords: {first.keywords[0]}" in text
        assert "shown to you only" in _plain(app.screen.query_one("#leak-note", Static))
        await pilot.press("s")  # the pattern's samples
        assert isinstance(app.screen, SamplesScreen)
        await pilot.pause()
        assert app.screen.pattern == first.id
        assert all(c["pattern_id"] == first.id for c in app.screen.shown)
        no_errors(app)

    drive(app, scenario)


def _plain(widget: Static) -> str:
    from rich.console import Console

    console = Console(width=200, color_system=None)
    with console.capture() as captured:
        console.print(widget.content)  # type: ignore[arg-type]
    return captured.get()


@slow
def test_samples_filters_and_human_verdicts(real_run, store_copy):
    _, run_id, _ = real_run
    app = create_app(store_copy)
    with RunStore(store_copy) as store:
        candidates = store.rows("candidates", run_id)
    rejected = [c for c in candidates if c["verdict"] == "rejected"]
    accepted = [c for c in candidates if c["verdict"] == "accepted"]

    async def scenario(pilot):
        await pilot.press("enter", "s")
        screen = app.screen
        assert isinstance(screen, SamplesScreen)
        await pilot.pause()
        assert table(app, "#samples-table").row_count == len(candidates)
        verdict = screen.query_one("#filter-verdict", Select)
        verdict.value = "rejected"
        await pilot.pause()
        assert len(screen.shown) == len(rejected)
        if rejected:
            target = screen.current()
            assert "reason" in _plain(screen.query_one("#sample-detail", Static))
            await pilot.press("a")  # accept a rejected sample
            with RunStore(store_copy) as store:
                row = next(c for c in store.rows("candidates", run_id) if c["id"] == target["id"])
            assert row["human_verdict"] == "accepted" and row["verdict"] == "rejected"
            assert len(screen.shown) == len(rejected) - 1  # it is no longer rejected
        verdict.value = "changed by you"
        await pilot.pause()
        assert len(screen.shown) == (1 if rejected else 0)
        if rejected:
            await pilot.press("u")
            with RunStore(store_copy) as store:
                assert not any(c["human_verdict"] for c in store.rows("candidates", run_id))
        verdict.value = "accepted"
        await pilot.pause()
        assert len(screen.shown) == len(accepted)
        no_errors(app)

    drive(app, scenario)


def test_samples_screen_exports_what_its_filters_show(real_run, store_copy, tmp_path):
    import json

    from tui.screens.modals import ExportModal

    _, run_id, _ = real_run
    app = create_app(store_copy)
    out = tmp_path / "picked"

    async def scenario(pilot):
        await pilot.press("enter", "s")
        screen = app.screen
        assert isinstance(screen, SamplesScreen)
        await pilot.pause()
        screen.query_one("#filter-verdict", Select).value = "rejected"
        await pilot.pause()
        shown = [c["id"] for c in screen.shown]
        await pilot.press("e")
        if not shown:  # nothing to export: it says so instead of writing an empty folder
            assert not isinstance(app.screen, ExportModal)
            return
        await wait_for(pilot, lambda: isinstance(app.screen, ExportModal), what="the export dialog")
        app.screen.query_one("#export-format", Select).value = "alpaca"
        app.screen.query_one("#export-folder", Input).value = str(out)
        await pilot.click("#export")
        await wait_for(pilot, lambda: (out / "export.json").exists(), what="the export")
        manifest = json.loads((out / "export.json").read_text())
        assert manifest["rows"] == len(shown) and "verdict rejected" in manifest["selection"]
        rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
        assert [r["candidate_id"] for r in rows] == shown and all(r["verdict"] == "rejected" for r in rows)
        assert set(rows[0]) >= {"instruction", "output", "source", "reason"}
        no_errors(app)

    drive(app, scenario)


# ---------------------------------------------------------------- new run, live progress, cancel, resume


def test_new_run_form_validates_in_place(tmp_path):
    app = create_app(tmp_path / "runs.db")

    async def scenario(pilot):
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, NewRunScreen)
        await pilot.pause()
        start = form.query_one("#start", Button)
        assert not start.disabled, form.validate()  # the demo config is valid as it stands

        def error(field: str) -> str:
            label = form.query_one(f"#e-{field}", Label)
            return str(label.content) if label.display else ""

        form.query_one("#f-loop-rounds", Input).value = ""
        form.query_one("#f-data-train", Input).value = str(tmp_path / "missing.jsonl")
        form.query_one("#f-task-scorer-kind", Select).value = "label"
        await pilot.pause()
        assert "integer" in error("loop-rounds")
        assert "no such file" in error("data-train")
        assert "labels" in error("task-scorer-kind")
        assert start.disabled
        form.query_one("#f-task-scorer-labels", Input).value = "yes, no"
        form.query_one("#f-loop-rounds", Input).value = "2"
        await pilot.pause()
        assert error("task-scorer-kind") == "" and error("loop-rounds") == ""
        await pilot.press("ctrl+s")  # refused: the training file is still missing
        assert isinstance(app.screen, NewRunScreen) and app.job is None
        assert not (tmp_path / "runs.db").exists()  # browsing and a refused form never create a store

    drive(app, scenario)


def test_a_config_file_loads_into_the_form_and_bad_ones_show_a_modal(tmp_path):
    config = tiny_task(tmp_path, seed=321)
    (tmp_path / "bad.yaml").write_text("data: {train: x.jsonl, validation: y.jsonl}\nloop: {roundz: 2}\n")
    app = create_app(tmp_path / "runs.db")

    async def scenario(pilot):
        await pilot.press("n")
        form = app.screen
        await pilot.pause()
        form.load_yaml(str(config))
        await pilot.pause()
        assert form.query_one("#f-name", Input).value == "tiny"
        assert form.query_one("#f-data-train", Input).value == str(tmp_path / "train.jsonl")
        assert form.query_one("#f-train-max_steps", Input).value == "2"
        form.load_yaml(str(tmp_path / "bad.yaml"))
        await pilot.pause()
        assert isinstance(app.screen, ErrorModal)
        assert "roundz" in app.screen.message and "schema" in (app.screen.hint or "")
        await pilot.press("escape")
        assert app.screen is form

    drive(app, scenario)


@slow
def test_start_watch_cancel_and_resume_a_run(real_run, tmp_path):
    _, _, config = real_run
    defaults = dump(load(config, ["loop.rounds=0", "name=from-tui"]))  # round 0 only: quick
    store_path = tmp_path / "runs.db"
    app = create_app(store_path, poll_seconds=0.5)
    app.new_run_defaults = defaults

    async def scenario(pilot):
        await pilot.press("n")
        await pilot.pause()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen), what="the progress screen")
        job = app.job
        await wait_for(pilot, lambda: job.run_id and job.stage, timeout=300, what="the first stage")
        await wait_for(pilot, lambda: job.completed > 0, timeout=300, what="progress")
        bar = app.screen.query_one("#job-progress")
        assert bar.total == job.total and job.rate is not None
        await pilot.press("c", "y")
        await wait_for(pilot, lambda: not job.running, timeout=300, what="the cancel")
        assert job.status == "cancelled", list(job.log)
        with RunStore(store_path) as store:
            assert Ledger(store).run(job.run_id)["status"] == "cancelled"
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        app.screen.reload()
        await pilot.pause()
        assert "cancelled" in column(table(app, "#runs-table"), 2)
        await pilot.press("r")  # resume it from where it stopped
        await wait_for(pilot, lambda: app.job is not job, what="the resume job")
        resumed = app.job
        await wait_for(pilot, lambda: not resumed.running, timeout=600, what="the resumed run to finish")
        assert resumed.status == "finished", list(resumed.log)
        assert any("resuming run" in line for line in resumed.log)
        with RunStore(store_path) as store:
            run = Ledger(store).run(job.run_id)
            assert run["status"] == "finished" and run["best_val"] is not None
        no_errors(app)

    drive(app, scenario)


def _fake_loop(report, should_stop, created):
    """A stand-in for loop.start: reports like a stage and stops only when asked."""
    from pada_local.errors import Cancelled
    from pada_local.events import Event

    created("fake-run")
    report(Event("log", "run", message="run fake-run"))
    report(Event("start", "generate", 1, total=1000))
    for _ in range(1000):
        if should_stop():
            raise Cancelled("cancelled by the user")
        report(Event("advance", "generate", 1, advance=1))
        time.sleep(0.02)
    return "fake-run"


def test_live_progress_cancel_and_quit_guard(tmp_path):
    from tui.jobs import Job

    app = create_app(tmp_path / "runs.db")

    async def scenario(pilot):
        app.start_job(Job("run", "run fake", _fake_loop))
        await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen), what="the progress screen")
        job = app.job
        await wait_for(pilot, lambda: job.completed >= 5, what="progress")
        await pilot.pause(0.3)
        assert job.run_id == "fake-run" and job.stage_label() == "round 1 · generate"
        assert app.screen.query_one("#job-progress").total == 1000
        assert "run fake-run" in list(job.log)[0]
        app.start_job(Job("run", "second", _fake_loop))  # one job at a time
        assert isinstance(app.screen, ErrorModal) and app.job is job
        await pilot.press("escape")
        await pilot.press("q")  # quitting while a job runs asks first
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        await pilot.press("c", "y")
        await wait_for(pilot, lambda: not job.running, what="the cancel")
        assert job.status == "cancelled" and "cancelled" in list(job.log)[-1]
        await pilot.press("escape")
        bar = app.screen.query_one("#job-bar", Static)
        await wait_for(pilot, lambda: "cancelled" in _plain(bar), timeout=3, what="the job bar")
        assert bar.display

    drive(app, scenario)


def test_export_runs_as_a_job_and_logs_where_it_went(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import tui.screens.export as export_screen
    from pada_local.events import Event

    store_path = tmp_path / "runs.db"
    with RunStore(store_path) as store:
        run_id = add_run(store, name="done")
        set_round(store, run_id, 0, status="done", val_score=0.5, test_score=0.5, seconds=1.0)
        Ledger(store).set_run(run_id, status="finished", best_round=0, best_val=0.5, best_test=0.5)
    calls = []

    def fake_export(path, run, *, report, **kwargs):
        calls.append((path, run, kwargs))
        report(Event("start", "export", 0, total=1))
        report(Event("end", "export", 0))
        return SimpleNamespace(out_dir=tmp_path / "export-adapter", ok=True)

    monkeypatch.setattr(export_screen, "export_function", lambda: fake_export)
    app = create_app(store_path)

    async def scenario(pilot):
        await pilot.press("enter", "e")
        await pilot.pause()
        app.screen.query_one("#export-format", Select).value = "adapter"
        app.screen.query_one("#export-round", Input).value = "0"
        await pilot.click("#export")
        await wait_for(pilot, lambda: app.job is not None and not app.job.running, what="the export")
        assert app.job.status == "finished", list(app.job.log)
        assert any("export-adapter (verified)" in line for line in app.job.log)
        assert calls == [(store_path.absolute(), run_id,
                          {"round": 0, "fmt": "adapter", "quant": None, "allow_fetch": False, "verify": True})]

    drive(app, scenario)


# ---------------------------------------------------------------- another process writing


WRITER = textwrap.dedent("""
    import sys, time
    from pada_local.ledger.runs import Ledger
    from pada_local.ledger.store import RunStore
    store = RunStore(sys.argv[1])
    ledger = Ledger(store)
    run_id = ledger.create_run(config={"name": "writer", "task": {"name": "t"}, "loop": {"strategy": "pada"},
                                       "models": {"student": "s", "teacher": "t"}}, versions={})
    run = ledger.for_run(run_id)
    print(run_id, flush=True)
    for r in range(4):
        time.sleep(0.6)
        run.open_round(r)
        items = [{"model": "trained", "split": "validation", "item_id": f"v{i}", "input": "q",
                  "reference": "a", "prediction": "a", "score": 1.0} for i in range(200)]
        run.write_stage(r, "eval", rows={"eval_items": items}, stats={"seconds": 0.1, "items": 200})
        store.write("rounds", [{"run_id": run_id, "round": r, "status": "done", "val_score": 0.2 * r,
                                "test_score": 0.1 * r, "seconds": 1.0}])
    ledger.set_run(run_id, status="finished", best_round=3, best_val=0.6, best_test=0.3)
""")


def test_rows_written_by_another_process_appear_without_locking_errors(tmp_path):
    store_path = tmp_path / "runs.db"
    RunStore(store_path).close()  # an empty store, as after `pada run` created it
    app = create_app(store_path, poll_seconds=0.2)

    async def scenario(pilot):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store_path)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            t = table(app, "#runs-table")
            await wait_for(pilot, lambda: t.row_count == 1, timeout=30, what="the new run")
            assert column(t, 1) == ["writer"]
            await pilot.press("enter")
            assert isinstance(app.screen, RunScreen)
            await wait_for(pilot, lambda: app.screen.query("#tab-round-1"), timeout=30, what="round 1")
            await wait_for(pilot, lambda: app.screen.query("#tab-round-3"), timeout=30, what="round 3")
            await wait_for(pilot, lambda: "finished" in _plain(app.screen.query_one("#run-summary", Static)),
                           timeout=30, what="the finished status")
            out, err = writer.communicate(timeout=30)
        finally:
            if writer.poll() is None:
                writer.kill()
        assert writer.returncode == 0, err
        assert column(table(app, "#rounds-table"), 0) == ["0", "1", "2", "3"]
        no_errors(app)

    drive(app, scenario)


# ---------------------------------------------------------------- errors


def test_a_file_that_is_not_a_store_shows_message_and_hint(tmp_path):
    bogus = tmp_path / "notes.db"
    bogus.write_text("not a database\n" * 100)
    app = create_app(bogus, poll_seconds=0.2)

    async def scenario(pilot):
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal), what="the error modal")
        modal = app.screen
        assert "not a pada-local run store" in modal.message and modal.hint
        assert "Traceback" not in _plain(modal.query_one("#error-message", Static))
        await pilot.pause(0.6)  # polls keep failing, but the same error is not shown again
        assert sum(isinstance(s, ErrorModal) for s in app.screen_stack) == 1
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)

    drive(app, scenario)


@slow
def test_export_without_the_export_module_explains_itself(real_run, monkeypatch):
    store_path, _, _ = real_run
    monkeypatch.setitem(sys.modules, "pada_local.export", None)  # as if not installed: import fails
    app = create_app(store_path)

    async def scenario(pilot):
        await pilot.press("enter", "e")
        await pilot.pause()
        await pilot.click("#export")
        await pilot.pause()
        assert isinstance(app.screen, ErrorModal)
        assert "export is not available" in app.screen.message and app.screen.hint
        assert app.job is None

    drive(app, scenario)


# ---------------------------------------------------------------- snapshots (80x24, deterministic screens)

NO_STORE = Path("/nonexistent-pada-tui-snapshot/runs/pada.db")  # never created: browsing creates nothing
FORM_DEFAULTS = {
    "name": "reviews",
    "models": {"teacher": "smollm2-135m", "student": "smollm2-135m"},
    "data": {"train": "/data/reviews/train.jsonl", "validation": "/data/reviews/validation.jsonl"},
    "task": {"name": "review-sentiment", "description": "Is a product review positive or negative?",
             "answer_format": "one word", "scorer": {"kind": "label", "labels": ["positive", "negative"]}},
    "loop": {"strategy": "pada", "rounds": 3},
}


async def _steady(pilot) -> None:
    """Let the screen settle and stop cursors blinking: the picture must not depend on load."""
    for _ in range(2):
        await pilot.pause(0.2)
        await pilot.wait_for_scheduled_animations()
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause(0.1)


def test_snapshot_empty_runs_screen(snap_compare):
    assert snap_compare(create_app(NO_STORE), run_before=_steady, terminal_size=(80, 24))


def test_snapshot_help_screen(snap_compare):
    async def open_help(pilot) -> None:
        await pilot.press("question_mark")
        await _steady(pilot)

    assert snap_compare(create_app(NO_STORE), run_before=open_help, terminal_size=(80, 24))


def test_snapshot_new_run_form_with_errors_in_place(snap_compare):
    app = create_app(NO_STORE)
    app.new_run_defaults = FORM_DEFAULTS  # paths that exist nowhere: their errors show in place

    async def open_form(pilot) -> None:
        # Validation messages arrive after the form mounts; wait until the screen is settled
        # so the snapshot does not depend on the machine's load.
        await pilot.press("n")
        await pilot.pause(0.3)
        await _steady(pilot)

    assert snap_compare(app, run_before=open_form, terminal_size=(80, 24))


def test_snapshot_comparison_screen(snap_compare, tmp_path, monkeypatch):
    import itertools

    import pada_local.ledger.store

    ids = itertools.count()
    monkeypatch.setattr(pada_local.ledger.store, "new_id",  # ids in the title
                        lambda prefix="": f"{prefix}snap-{next(ids)}")
    store_path = tmp_path / "runs.db"
    _add_comparison(store_path)

    async def open_comparison(pilot) -> None:
        await pilot.press("C", "enter")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "result", None) is not None,
                       what="the comparison's report")
        await _steady(pilot)

    assert snap_compare(create_app(store_path), run_before=open_comparison, terminal_size=(80, 24))
