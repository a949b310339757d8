"""RunStore: schema, migrations, atomic stage writes, and concurrent readers/writers."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlite_utils

from pada_local import store as store_mod
from pada_local.errors import PadaError
from pada_local.store import MIGRATIONS, RunStore, migrate_001_initial

TABLES = {"runs", "rounds", "stages", "eval_items", "analyses", "clusters", "patterns",
          "candidates", "train_steps", "metrics", "artifacts", "_migrations"}


def _new_run(s: RunStore, id: str | None = None, seed: int | None = 0) -> str:
    return s.create_run(id=id, name="t", task="sst2", strategy="pada", student="smol",
                        teacher="smol", config={"lr": 1e-4}, seed=seed,
                        versions={"pada": "0.1"})


def _eval_row(item: str, score: float = 1.0) -> dict:
    return {"model": "trained", "split": "validation", "item_id": item, "input": "x",
            "reference": "y", "prediction": "y", "score": score}


@pytest.fixture
def s(tmp_path: Path):
    with RunStore(tmp_path / "sub" / "runs.db") as st:
        yield st


# -- schema and migrations ---------------------------------------------------------------------

def test_schema_created(s: RunStore) -> None:
    assert TABLES <= set(s.db.table_names())
    assert s.schema_version() == len(MIGRATIONS) >= 4
    assert {"human_verdict", "human_at"} <= set(s.db["candidates"].columns_dict)
    assert s.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert s.db.execute("PRAGMA busy_timeout").fetchone()[0] == 10000


def test_reopen_applies_nothing_new(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with RunStore(path) as a:
        _new_run(a, "r1")
    with RunStore(path) as b:
        assert b.schema_version() == len(MIGRATIONS) and b.run("r1")["seed"] == 0


def test_upgrade_from_v1_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    migrate_001_initial(db)
    db["_migrations"].insert({"name": MIGRATIONS[0][0], "applied_at": "2024"}, pk="name")
    db.execute("INSERT INTO runs (id, status, created_at, updated_at) "
               "VALUES ('old', 'finished', '2024', '2024')")
    db.execute("INSERT INTO candidates (key, run_id, round, input, verdict) "
               "VALUES ('k1', 'old', 0, 'hi', 'accepted')")
    db.close()
    with RunStore(path) as st:
        assert st.schema_version() == len(MIGRATIONS)
        assert "artifacts" in st.db.table_names()
        (cand,) = st.rows("candidates", "old")
        assert cand["input"] == "hi" and cand["human_verdict"] is None
        st.set_human_verdict(cand["id"], "rejected")
        assert st.rows("candidates", "old")[0]["human_verdict"] == "rejected"


def test_newer_store_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with RunStore(path) as st:
        st.db.execute("INSERT INTO _migrations VALUES ('999_future', 'x')")
    with pytest.raises(PadaError, match="newer pada-local"):
        RunStore(path)


def test_text_file_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not sqlite\n" * 100)
    with pytest.raises(PadaError, match="not a pada-local run store") as err:
        RunStore(path)
    assert err.value.hint and str(path) in err.value.message


def test_foreign_sqlite_db_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    sqlite_utils.Database(path)["dogs"].insert({"name": "Cleo"})
    with pytest.raises(PadaError, match="not a pada-local run store"):
        RunStore(path)
    assert sqlite_utils.Database(path).table_names() == ["dogs"]  # left untouched


def test_wal_mode(s: RunStore) -> None:
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- runs --------------------------------------------------------------------------------------

def test_create_run_and_set_run(s: RunStore) -> None:
    rid = _new_run(s)  # generated id: YYYYmmdd-HHMMSS-xxxx
    assert len(rid) == 20 and rid[8] == "-" and rid[15] == "-"
    run = s.run(rid)
    assert run["status"] == "running" and run["seed"] == 0 and run["pid"] > 0
    s.set_run(rid, status="finished", best_val=0.5, best_round=0)
    run2 = s.run(rid)
    assert (run2["status"], run2["best_round"]) == ("finished", 0)
    assert run2["updated_at"] >= run["updated_at"]
    with pytest.raises(ValueError):
        s.set_run(rid, status="bogus")
    with pytest.raises(PadaError, match="already exists"):
        _new_run(s, rid)


def test_unknown_run_hint(s: RunStore) -> None:
    with pytest.raises(PadaError) as err:
        s.run("nope")
    assert "pada runs" in (err.value.hint or "")


def test_runs_newest_first(s: RunStore) -> None:
    for rid in ("a", "b", "c"):
        _new_run(s, rid)
    assert [r["id"] for r in s.runs()] == ["c", "b", "a"]


def test_resolve_run_id(s: RunStore) -> None:
    for rid in ("20250101-000000-aaaa", "20250101-000000-aabb", "20250202-000000-cccc", "2025"):
        _new_run(s, rid)
    assert s.resolve_run_id("20250202") == "20250202-000000-cccc"
    assert s.resolve_run_id("20250101-000000-aab") == "20250101-000000-aabb"
    assert s.resolve_run_id("2025") == "2025"  # an exact id wins over longer ones
    with pytest.raises(PadaError, match="ambiguous"):
        s.resolve_run_id("20250101")
    with pytest.raises(PadaError, match="no run matches"):
        s.resolve_run_id("1999")
    with pytest.raises(PadaError):
        s.resolve_run_id("2025%")  # no LIKE wildcards


def test_delete_run_cascades(s: RunStore) -> None:
    keep, gone = _new_run(s, "keep"), _new_run(s, "gone")
    for rid in (keep, gone):
        s.upsert_round(rid, 0, status="done")
        s.write_stage(rid, 0, "evaluate", rows={"eval_items": [_eval_row("1")],
                                                "metrics": [{"name": "acc", "value": 1.0}]})
        s.add_rows("candidates", [{"key": f"{rid}-k", "run_id": rid, "round": 0}])
    s.delete_run(gone)
    for table in store_mod.ROUND_TABLES:
        assert s.count(table, gone) == 0
    assert s.count("eval_items", keep) == 1 and s.count("candidates", keep) == 1
    with pytest.raises(PadaError):
        s.delete_run(gone)


# -- stage writes ------------------------------------------------------------------------------

def test_write_stage_and_read(s: RunStore) -> None:
    rid = _new_run(s)
    assert not s.stage_done(rid, 0, "evaluate")
    s.write_stage(rid, 0, "evaluate",
                  rows={"eval_items": [_eval_row("1"), _eval_row("2", 0.0)]},
                  stats={"seconds": 1.5, "items": 2, "prompt_tokens": 0,
                         "detail": {"batch": 8}})
    assert s.stage_done(rid, 0, "evaluate") and not s.stage_done(rid, 1, "evaluate")
    (st,) = s.stages(rid, 0)
    assert (st["status"], st["items"], st["prompt_tokens"]) == ("done", 2, 0)
    assert st["detail_json"] == '{"batch": 8}'
    assert [r["item_id"] for r in s.rows("eval_items", rid, 0)] == ["1", "2"]
    assert s.count("eval_items", rid, score=0.0) == 1


def test_write_stage_is_atomic(s: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = _new_run(s)
    real_write, calls = RunStore._write, []

    def failing_write(self, table, rows, on_conflict):  # fail after the first insert landed
        real_write(self, table, rows, on_conflict)
        calls.append(table)
        if len(calls) == 1:
            raise RuntimeError("crash mid-stage")

    monkeypatch.setattr(RunStore, "_write", failing_write)
    with pytest.raises(RuntimeError):
        s.write_stage(rid, 0, "analyze", rows={"eval_items": [_eval_row("1")],
                                               "analyses": [{"item_id": "1"}]})
    monkeypatch.undo()
    assert calls == ["eval_items"]
    assert s.count("eval_items", rid) == 0 and s.count("analyses", rid) == 0
    assert not s.stage_done(rid, 0, "analyze")


def test_write_stage_bad_column_writes_nothing(s: RunStore) -> None:
    rid = _new_run(s)
    with pytest.raises(ValueError, match="no column"):
        s.write_stage(rid, 0, "analyze", rows={"eval_items": [_eval_row("1")],
                                               "analyses": [{"item_id": "1", "oops": 1}]})
    assert s.count("eval_items", rid) == 0 and not s.stage_done(rid, 0, "analyze")


def test_write_stage_rerun_does_not_duplicate(s: RunStore) -> None:
    rid = _new_run(s)
    pats = [{"cluster": c, "name": f"p{c}"} for c in range(3)]
    s.write_stage(rid, 1, "patterns", rows={"patterns": pats, "metrics": [
        {"name": "acc", "split": "validation", "value": 0.5},
        {"name": "acc", "split": "validation", "pattern_id": 1, "value": 0.1},
        {"name": "n", "value": 3}]})
    ids = [p["id"] for p in s.rows("patterns", rid, 1)]
    pats[0]["name"] = "renamed"
    s.write_stage(rid, 1, "patterns", rows={"patterns": pats, "metrics": [
        {"name": "acc", "split": "validation", "value": 0.7},
        {"name": "acc", "split": "validation", "pattern_id": 1, "value": 0.2},
        {"name": "n", "value": 4}]})
    after = s.rows("patterns", rid, 1)
    assert [p["id"] for p in after] == ids  # updated in place: pattern ids stay valid
    assert after[0]["name"] == "renamed"
    assert s.count("metrics", rid) == 3 and s.count("stages", rid) == 1
    assert s.rows("metrics", rid, 1, name="acc", pattern_id=None)[0]["value"] == 0.7
    assert s.rows("metrics", rid, 1, pattern_id=1)[0]["value"] == 0.2
    assert s.rows("metrics", rid, name="n", split=None)[0]["value"] == 4


def test_add_rows_ignores_duplicate_keys(s: RunStore) -> None:
    rid = _new_run(s)
    chunk = [{"key": f"k{i}", "run_id": rid, "round": 0, "source": "pattern",
              "input": f"in{i}", "verdict": "pending"} for i in range(5)]
    s.add_rows("candidates", chunk[:3])
    s.add_rows("candidates", chunk)  # a resumed run re-sends its last chunk
    assert [r["key"] for r in s.rows("candidates", rid)] == [f"k{i}" for i in range(5)]
    with pytest.raises(sqlite3.IntegrityError):
        s.add_rows("candidates", chunk[:1], ignore_duplicates=False)
    with pytest.raises(sqlite3.IntegrityError):  # DO NOTHING covers key clashes only
        s.add_rows("candidates", [{"key": "k9", "run_id": rid}])


def test_clear_round(s: RunStore) -> None:
    rid = _new_run(s)
    for rnd in (0, 1):
        s.upsert_round(rid, rnd, status="done", val_score=0.5)
        s.write_stage(rid, rnd, "train", rows={
            "train_steps": [{"step": i, "loss": 1.0 / (i + 1)} for i in range(3)],
            "artifacts": [{"kind": "adapter", "path": f"/a/{rnd}", "sha256": "0"}]})
    s.clear_round(rid, 1)
    assert [r["round"] for r in s.rounds(rid)] == [0]
    assert s.count("train_steps", rid, 1) == 0 and s.count("train_steps", rid, 0) == 3
    assert s.count("artifacts", rid) == 1 and not s.stage_done(rid, 1, "train")


def test_upsert_round_updates_given_columns(s: RunStore) -> None:
    rid = _new_run(s)
    s.upsert_round(rid, 0, status="running", zero_shot_val=0.0)
    s.upsert_round(rid, 0, status="done", val_score=0.6)
    (r,) = s.rounds(rid)
    assert (r["status"], r["zero_shot_val"], r["val_score"]) == ("done", 0.0, 0.6)


def test_nested_transactions(s: RunStore) -> None:
    rid = _new_run(s)
    with s.transaction():
        s.upsert_round(rid, 0, status="a")
        with pytest.raises(RuntimeError), s.transaction():
            s.upsert_round(rid, 1, status="b")
            raise RuntimeError  # the caller catches it: only the inner block is undone
    assert [r["round"] for r in s.rounds(rid)] == [0]
    with pytest.raises(RuntimeError), s.transaction():
        s.upsert_round(rid, 2, status="c")
        s.write_stage(rid, 2, "x")
        raise RuntimeError
    assert [r["round"] for r in s.rounds(rid)] == [0] and not s.stage_done(rid, 2, "x")


def test_set_human_verdict(s: RunStore) -> None:
    rid = _new_run(s)
    s.add_rows("candidates", [{"key": "k", "run_id": rid, "round": 0, "verdict": "accepted"}])
    cid = s.rows("candidates", rid)[0]["id"]
    s.set_human_verdict(cid, "rejected")
    row = s.rows("candidates", rid)[0]
    assert row["human_verdict"] == "rejected" and row["human_at"]
    with pytest.raises(ValueError):
        s.set_human_verdict(cid, "maybe")
    with pytest.raises(PadaError):
        s.set_human_verdict(cid + 99, "accepted")


def test_connection_belongs_to_its_thread(s: RunStore) -> None:
    errors: list[BaseException] = []
    t = threading.Thread(target=lambda: _capture(errors, s.runs))
    t.start()
    t.join()
    assert errors and isinstance(errors[0], sqlite3.ProgrammingError)


def _capture(errors: list[BaseException], fn) -> None:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        errors.append(exc)


# -- concurrency -------------------------------------------------------------------------------

N_WRITES = 200


def _write_many(path: str, run_id: str, pause: float = 0.0) -> None:
    """A writer with its own connection: many small transactions, like a training loop."""
    with RunStore(path) as w:
        for i in range(N_WRITES):
            w.write_stage(run_id, 0, f"s{i}", rows={"train_steps": [{"step": i, "loss": 1.0}]})
            time.sleep(pause)


def _read_until_done(s: RunStore, run_id: str, alive) -> list[int]:
    """Read in a loop while the writer runs; return how many steps each read saw."""
    seen = []
    while alive():
        seen.append(len(s.rows("train_steps", run_id, 0)))
        s.stages(run_id)
    return seen


def test_thread_writer_while_reading(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with RunStore(path) as reader:
        rid = _new_run(reader)
        errors: list[BaseException] = []
        t = threading.Thread(target=lambda: _capture(errors, lambda: _write_many(str(path), rid)))
        t.start()
        seen = _read_until_done(reader, rid, t.is_alive)
        t.join()
        assert not errors, errors
        assert any(0 < n < N_WRITES for n in seen)  # reads really overlapped the writes
        assert reader.count("train_steps", rid) == N_WRITES


def test_process_writer_while_reading_and_writing(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with RunStore(path) as main:
        rid = _new_run(main)
        # The pause lets the main process's writes in: SQLite's busy handler is not fair, and
        # a writer committing back to back can hold the lock for its whole burst.
        proc = mp.get_context("spawn").Process(target=_write_many, args=(str(path), rid, 0.002))
        proc.start()
        seen: list[int] = []
        while proc.is_alive():  # like the TUI: read often, write now and then (a verdict)
            seen.append(len(main.rows("train_steps", rid, 0)))
            if len(seen) % 10 == 0:
                main.upsert_round(rid, 1, n_train=len(seen))
            time.sleep(0.001)
        proc.join()
        assert proc.exitcode == 0
        assert any(0 < n < N_WRITES for n in seen)
        assert main.count("train_steps", rid) == N_WRITES
        assert main.count("stages", rid) == N_WRITES
