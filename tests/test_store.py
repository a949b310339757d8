"""The run store and the ledger over it: schema, migrations, atomic stage writes, run rows, and
concurrent readers/writers."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlite_utils

from pada_local.errors import PadaError
from pada_local.ledger import schema
from pada_local.ledger.runs import Ledger
from pada_local.ledger.schema import MIGRATIONS, migrate_001_initial
from pada_local.ledger.store import RunStore

TABLES = {"runs", "rounds", "stages", "eval_items", "analyses", "clusters", "patterns",
          "candidates", "train_steps", "metrics", "artifacts", "_migrations"}


def _new_run(s: RunStore, id: str | None = None, seed: int | None = 0) -> str:
    config = {"name": "t", "task": {"name": "sst2"}, "loop": {"strategy": "pada", "seed": seed},
              "models": {"student": "smol", "teacher": "smol"}, "train": {"lr": 1e-4}}
    return Ledger(s).create_run(config=config, versions={"pada": "0.1"}, run_id=id)


def _round(s: RunStore, rid: str, r: int, **fields: object) -> None:
    s.write("rounds", [{"run_id": rid, "round": r, **fields}])


def _stage(s: RunStore, rid: str, r: int, stage: str, **kw: object) -> None:
    Ledger(s).for_run(rid).write_stage(r, stage, **kw)  # type: ignore[arg-type]


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
        assert b.schema_version() == len(MIGRATIONS) and Ledger(b).run("r1")["seed"] == 0


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
        Ledger(st).set_human_verdict(cand["id"], "rejected")
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
    run = Ledger(s).run(rid)
    assert run["status"] == "running" and run["seed"] == 0 and run["pid"] > 0
    Ledger(s).set_run(rid, status="finished", best_val=0.5, best_round=0)
    run2 = Ledger(s).run(rid)
    assert (run2["status"], run2["best_round"]) == ("finished", 0)
    assert run2["updated_at"] >= run["updated_at"]
    with pytest.raises(ValueError):
        Ledger(s).set_run(rid, status="bogus")
    with pytest.raises(PadaError, match="already exists"):
        _new_run(s, rid)


def test_unknown_run_hint(s: RunStore) -> None:
    with pytest.raises(PadaError) as err:
        Ledger(s).run("nope")
    assert "pada runs" in (err.value.hint or "")


def test_runs_newest_first(s: RunStore) -> None:
    for rid in ("a", "b", "c"):
        _new_run(s, rid)
    assert [r["id"] for r in Ledger(s).runs()] == ["c", "b", "a"]


def test_resolve_run_id(s: RunStore) -> None:
    for rid in ("20250101-000000-aaaa", "20250101-000000-aabb", "20250202-000000-cccc", "2025"):
        _new_run(s, rid)
    assert Ledger(s).resolve("20250202") == "20250202-000000-cccc"
    assert Ledger(s).resolve("20250101-000000-aab") == "20250101-000000-aabb"
    assert Ledger(s).resolve("2025") == "2025"  # an exact id wins over longer ones
    with pytest.raises(PadaError, match="ambiguous"):
        Ledger(s).resolve("20250101")
    with pytest.raises(PadaError, match="no run matches"):
        Ledger(s).resolve("1999")
    with pytest.raises(PadaError):
        Ledger(s).resolve("2025%")  # no LIKE wildcards


def test_delete_run_cascades(s: RunStore) -> None:
    keep, gone = _new_run(s, "keep"), _new_run(s, "gone")
    for rid in (keep, gone):
        _round(s, rid, 0, status="done")
        _stage(s, rid, 0, "evaluate", rows={"eval_items": [_eval_row("1")],
                                                "metrics": [{"name": "acc", "value": 1.0}]})
        s.write("candidates", [{"key": f"{rid}-k", "run_id": rid, "round": 0}], "ignore")
    Ledger(s).delete_run(gone)
    for table in schema.ROUND_TABLES:
        assert s.count(table, gone) == 0
    assert s.count("eval_items", keep) == 1 and s.count("candidates", keep) == 1
    with pytest.raises(PadaError):
        Ledger(s).delete_run(gone)


# -- stage writes ------------------------------------------------------------------------------

def test_write_stage_and_read(s: RunStore) -> None:
    rid = _new_run(s)
    assert not Ledger(s).for_run(rid).stage_done(0, "evaluate")
    _stage(s, rid, 0, "evaluate",
                  rows={"eval_items": [_eval_row("1"), _eval_row("2", 0.0)]},
                  stats={"seconds": 1.5, "items": 2, "prompt_tokens": 0,
                         "detail": {"batch": 8}})
    assert Ledger(s).for_run(rid).stage_done(0, "evaluate") and not Ledger(s).for_run(rid).stage_done(1, "evaluate")
    (st,) = Ledger(s).for_run(rid).stages(0)
    assert (st["status"], st["items"], st["prompt_tokens"]) == ("done", 2, 0)
    assert st["detail_json"] == '{"batch": 8}'
    assert [r["item_id"] for r in s.rows("eval_items", rid, 0)] == ["1", "2"]
    assert s.count("eval_items", rid, score=0.0) == 1


def test_write_stage_is_atomic(s: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = _new_run(s)
    real_write, calls = RunStore.write, []

    def failing_write(self, table, rows, on_conflict="update"):  # fail after the first insert landed
        real_write(self, table, rows, on_conflict)
        calls.append(table)
        if len(calls) == 1:
            raise RuntimeError("crash mid-stage")

    monkeypatch.setattr(RunStore, "write", failing_write)
    with pytest.raises(RuntimeError):
        _stage(s, rid, 0, "analyze", rows={"eval_items": [_eval_row("1")],
                                               "analyses": [{"item_id": "1"}]})
    monkeypatch.undo()
    assert calls == ["eval_items"]
    assert s.count("eval_items", rid) == 0 and s.count("analyses", rid) == 0
    assert not Ledger(s).for_run(rid).stage_done(0, "analyze")


def test_write_stage_bad_column_writes_nothing(s: RunStore) -> None:
    rid = _new_run(s)
    with pytest.raises(ValueError, match="no column"):
        _stage(s, rid, 0, "analyze", rows={"eval_items": [_eval_row("1")],
                                               "analyses": [{"item_id": "1", "oops": 1}]})
    assert s.count("eval_items", rid) == 0 and not Ledger(s).for_run(rid).stage_done(0, "analyze")


def test_write_stage_rerun_does_not_duplicate(s: RunStore) -> None:
    rid = _new_run(s)
    pats = [{"cluster": c, "name": f"p{c}"} for c in range(3)]
    _stage(s, rid, 1, "patterns", rows={"patterns": pats, "metrics": [
        {"name": "acc", "split": "validation", "value": 0.5},
        {"name": "acc", "split": "validation", "pattern_id": 1, "value": 0.1},
        {"name": "n", "value": 3}]})
    ids = [p["id"] for p in s.rows("patterns", rid, 1)]
    pats[0]["name"] = "renamed"
    _stage(s, rid, 1, "patterns", rows={"patterns": pats, "metrics": [
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
    s.write("candidates", chunk[:3], "ignore")
    s.write("candidates", chunk, "ignore")  # a resumed run re-sends its last chunk
    assert [r["key"] for r in s.rows("candidates", rid)] == [f"k{i}" for i in range(5)]
    with pytest.raises(sqlite3.IntegrityError):
        s.write("candidates", chunk[:1], "error")
    with pytest.raises(sqlite3.IntegrityError):  # DO NOTHING covers key clashes only
        s.write("candidates", [{"key": "k9", "run_id": rid}], "ignore")


def test_a_round_write_updates_the_given_columns(s: RunStore) -> None:
    rid = _new_run(s)
    _round(s, rid, 0, status="running", zero_shot_val=0.0)
    _round(s, rid, 0, status="done", val_score=0.6)
    (r,) = Ledger(s).for_run(rid).rounds()
    assert (r["status"], r["zero_shot_val"], r["val_score"]) == ("done", 0.0, 0.6)


def test_nested_transactions(s: RunStore) -> None:
    rid = _new_run(s)
    with s.transaction():
        _round(s, rid, 0, status="a")
        with pytest.raises(RuntimeError), s.transaction():
            _round(s, rid, 1, status="b")
            raise RuntimeError  # the caller catches it: only the inner block is undone
    assert [r["round"] for r in Ledger(s).for_run(rid).rounds()] == [0]
    with pytest.raises(RuntimeError), s.transaction():
        _round(s, rid, 2, status="c")
        _stage(s, rid, 2, "x")
        raise RuntimeError
    assert [r["round"] for r in Ledger(s).for_run(rid).rounds()] == [0] and not Ledger(s).for_run(rid).stage_done(2, "x")


def test_set_human_verdict(s: RunStore) -> None:
    rid = _new_run(s)
    s.write("candidates", [{"key": "k", "run_id": rid, "round": 0, "verdict": "accepted"}], "ignore")
    cid = s.rows("candidates", rid)[0]["id"]
    Ledger(s).set_human_verdict(cid, "rejected")
    row = s.rows("candidates", rid)[0]
    assert row["human_verdict"] == "rejected" and row["human_at"]
    with pytest.raises(ValueError):
        Ledger(s).set_human_verdict(cid, "maybe")
    with pytest.raises(PadaError):
        Ledger(s).set_human_verdict(cid + 99, "accepted")


def test_connection_belongs_to_its_thread(s: RunStore) -> None:
    errors: list[BaseException] = []
    t = threading.Thread(target=lambda: _capture(errors, Ledger(s).runs))
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
            _stage(w, run_id, 0, f"s{i}", rows={"train_steps": [{"step": i, "loss": 1.0}]})
            time.sleep(pause)


def _read_until_done(s: RunStore, run_id: str, alive) -> list[int]:
    """Read in a loop while the writer runs; return how many steps each read saw."""
    seen = []
    while alive():
        seen.append(len(s.rows("train_steps", run_id, 0)))
        Ledger(s).for_run(run_id).stages()
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
                _round(main, rid, 1, n_train=len(seen))
            time.sleep(0.001)
        proc.join()
        assert proc.exitcode == 0
        assert any(0 < n < N_WRITES for n in seen)
        assert main.count("train_steps", rid) == N_WRITES
        assert main.count("stages", rid) == N_WRITES
