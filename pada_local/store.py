"""RunStore: everything a run keeps, in one SQLite file, over sqlite-utils.

One class owns the database. On open it enables WAL (so the TUI reads while a run writes),
sets a busy timeout (so two writers wait for each other instead of failing) and applies the
schema migrations this code knows. Each stage's results are written in one transaction, so a
crash never leaves half a stage behind.

A connection belongs to one thread (sqlite3 refuses cross-thread use): a worker thread or
process opens its own RunStore on the same path.

Conventions:
- Rows come back as plain dicts; JSON columns (``*_json``) stay JSON text.
- Writes take dict/list values for any column and store them as JSON text.
- ``metrics.pattern_id`` and ``metrics.split`` may be NULL ("whole round"/"no split"); the
  unique index uses ``ifnull(pattern_id, -1)`` and ``ifnull(split, '')`` because SQLite treats
  NULLs as distinct in UNIQUE, so NULL stays NULL for readers yet a re-write still replaces.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import sqlite_utils

from pada_local.errors import PadaError

RUN_STATUSES = ("running", "finished", "failed", "cancelled", "interrupted")
HUMAN_VERDICTS = ("accepted", "rejected", None)
_RUNS_HINT = "list the runs in this store with `pada runs`"

# ---------------------------------------------------------------------------------------------
# Schema migrations. Append only: a released migration is never edited, because stores written
# by older versions have already recorded it as applied.
# ---------------------------------------------------------------------------------------------

_FK = "run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE"

_V1: list[str] = [
    """CREATE TABLE runs (
        id TEXT PRIMARY KEY, name TEXT, task TEXT, strategy TEXT, student TEXT, teacher TEXT,
        status TEXT NOT NULL, config_json TEXT, seed INTEGER, versions_json TEXT, pid INTEGER,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL, finished_at TEXT,
        best_round INTEGER, best_val REAL, best_test REAL, error TEXT)""",
    "CREATE INDEX runs_created ON runs(created_at)",
    f"""CREATE TABLE rounds (
        {_FK}, round INTEGER NOT NULL, status TEXT, started_at TEXT, finished_at TEXT,
        val_score REAL, test_score REAL, train_score REAL, zero_shot_val REAL,
        zero_shot_test REAL, n_train INTEGER, n_synthetic INTEGER, n_accepted INTEGER,
        n_rejected INTEGER, adapter_path TEXT, seconds REAL,
        PRIMARY KEY (run_id, round))""",
    f"""CREATE TABLE stages (
        {_FK}, round INTEGER NOT NULL, stage TEXT NOT NULL, status TEXT, started_at TEXT,
        finished_at TEXT, seconds REAL, prompt_tokens INTEGER, completion_tokens INTEGER,
        items INTEGER, detail_json TEXT,
        PRIMARY KEY (run_id, round, stage))""",
    f"""CREATE TABLE eval_items (
        id INTEGER PRIMARY KEY AUTOINCREMENT, {_FK}, round INTEGER NOT NULL,
        model TEXT NOT NULL, split TEXT NOT NULL, item_id TEXT NOT NULL, input TEXT,
        reference TEXT, prediction TEXT, score REAL,
        UNIQUE (run_id, round, model, split, item_id))""",
    f"""CREATE TABLE analyses (
        id INTEGER PRIMARY KEY AUTOINCREMENT, {_FK}, round INTEGER NOT NULL,
        item_id TEXT NOT NULL, root_cause TEXT, error_scenario TEXT, raw TEXT, ok INTEGER,
        cluster INTEGER,
        UNIQUE (run_id, round, item_id))""",
    f"""CREATE TABLE clusters (
        {_FK}, round INTEGER NOT NULL, cluster INTEGER NOT NULL, size INTEGER, k INTEGER,
        inertia_json TEXT,
        PRIMARY KEY (run_id, round, cluster))""",
    f"""CREATE TABLE patterns (
        id INTEGER PRIMARY KEY AUTOINCREMENT, {_FK}, round INTEGER NOT NULL,
        cluster INTEGER NOT NULL, name TEXT, description TEXT, strategy TEXT, size INTEGER,
        raw TEXT,
        UNIQUE (run_id, round, cluster))""",
    f"""CREATE TABLE candidates (
        id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, {_FK},
        round INTEGER NOT NULL, source TEXT, pattern_id INTEGER, origin_item_id TEXT,
        input TEXT, output TEXT, raw TEXT, verdict TEXT, reason TEXT, judge_score REAL,
        created_at TEXT)""",
    f"""CREATE TABLE train_steps (
        {_FK}, round INTEGER NOT NULL, step INTEGER NOT NULL, loss REAL, lr REAL,
        tokens_per_s REAL, epoch REAL, seconds REAL,
        PRIMARY KEY (run_id, round, step))""",
    f"""CREATE TABLE metrics (
        id INTEGER PRIMARY KEY AUTOINCREMENT, {_FK}, round INTEGER NOT NULL,
        name TEXT NOT NULL, split TEXT, pattern_id INTEGER, value REAL)""",
    # Indexes on (run_id, round): the UNIQUE/PRIMARY KEY indexes above already lead with
    # (run_id, round) for every table except candidates, so only these are added.
    "CREATE INDEX candidates_run_round ON candidates(run_id, round)",
    """CREATE UNIQUE INDEX metrics_key ON metrics(
        run_id, round, name, ifnull(split, ''), ifnull(pattern_id, -1))""",
]


def migrate_001_initial(db: sqlite_utils.Database) -> None:
    """The first schema: runs and everything a round produces."""
    for sql in _V1:
        db.execute(sql)


def migrate_002_human_review(db: sqlite_utils.Database) -> None:
    """Additive: human review of candidates, and artifacts (adapters, exports) with checksums."""
    db.table("candidates").add_column("human_verdict", str)  # table(): a Table, not Table | View
    db.table("candidates").add_column("human_at", str)
    db.execute(f"""CREATE TABLE artifacts (
        id INTEGER PRIMARY KEY AUTOINCREMENT, {_FK}, round INTEGER, kind TEXT NOT NULL,
        path TEXT NOT NULL, sha256 TEXT, bytes INTEGER, created_at TEXT, meta_json TEXT)""")
    # round is NULL for run-level artifacts (an export); ifnull keeps the key unique anyway.
    db.execute("""CREATE UNIQUE INDEX artifacts_key
        ON artifacts(run_id, ifnull(round, -1), kind, path)""")


def migrate_003_stop_reason(db: sqlite_utils.Database) -> None:
    """Additive: why a run stopped (rounds done, no failures left, no samples, patience)."""
    db.table("runs").add_column("stop_reason", str)
    db.table("rounds").add_column("stop_reason", str)


def migrate_004_candidate_prompt(db: sqlite_utils.Database) -> None:
    """Additive: the exact prompt each candidate was generated from (for audits and the
    leakage check)."""
    db.table("candidates").add_column("prompt", str)


def migrate_005_eval_logprobs(db: sqlite_utils.Database) -> None:
    """Additive: per-option log-probabilities of an evaluation row (log-likelihood scoring)."""
    db.execute("ALTER TABLE eval_items ADD COLUMN logprobs_json TEXT")


def migrate_006_comparisons(db: sqlite_utils.Database) -> None:
    """Additive: comparisons (strategies x seeds on the same data), their runs, and which round
    was reused from another run (round 0 is computed once per seed)."""
    db.execute("""CREATE TABLE comparisons (
        id TEXT PRIMARY KEY, name TEXT, config_json TEXT, strategies_json TEXT, seeds_json TEXT,
        status TEXT NOT NULL, pid INTEGER, created_at TEXT NOT NULL, updated_at TEXT,
        finished_at TEXT, error TEXT)""")
    db.execute("""CREATE TABLE comparison_runs (
        comparison_id TEXT NOT NULL REFERENCES comparisons(id) ON DELETE CASCADE,
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        strategy TEXT NOT NULL, seed INTEGER NOT NULL,
        PRIMARY KEY (comparison_id, strategy, seed))""")
    db.execute("ALTER TABLE rounds ADD COLUMN reused_from TEXT")


def migrate_007_weak_teacher(db: sqlite_utils.Database) -> None:
    """Additive: a pattern's keywords (class-based TF-IDF over its analyses), a candidate's target
    label (label-first generation) and arithmetic expression (computed answers)."""
    db.execute("ALTER TABLE patterns ADD COLUMN keywords_json TEXT")
    db.execute("ALTER TABLE candidates ADD COLUMN target TEXT")
    db.execute("ALTER TABLE candidates ADD COLUMN expression TEXT")


MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = [
    ("001_initial", migrate_001_initial),
    ("002_human_review", migrate_002_human_review),
    ("003_stop_reason", migrate_003_stop_reason),
    ("004_candidate_prompt", migrate_004_candidate_prompt),
    ("005_eval_logprobs", migrate_005_eval_logprobs),
    ("006_comparisons", migrate_006_comparisons),
    ("007_weak_teacher", migrate_007_weak_teacher),
]

# Conflict targets for upserts: they must match a UNIQUE index exactly (expressions included).
_CONFLICT: dict[str, str | None] = {
    "rounds": "run_id, round",
    "stages": "run_id, round, stage",
    "eval_items": "run_id, round, model, split, item_id",
    "analyses": "run_id, round, item_id",
    "clusters": "run_id, round, cluster",
    "patterns": "run_id, round, cluster",
    "candidates": "key",
    "train_steps": "run_id, round, step",
    "metrics": "run_id, round, name, ifnull(split, ''), ifnull(pattern_id, -1)",
    "artifacts": "run_id, ifnull(round, -1), kind, path",
}
ROUND_TABLES: tuple[str, ...] = tuple(_CONFLICT)  # every table holding per-round rows


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _new_run_id() -> str:
    # Local time reads naturally in `pada runs`; the random suffix separates same-second runs.
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _cell(value: Any) -> Any:
    """Adapt a Python value to a column value: containers become JSON text, paths strings."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, Path):
        return str(value)
    return value


def _is_not_a_database(exc: sqlite3.DatabaseError) -> bool:
    name = getattr(exc, "sqlite_errorname", "")  # Python >= 3.11
    return name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "not a database" in str(exc)


class RunStore:
    """The run database. Open one per thread; use as a context manager or call close()."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._depth = 0  # transaction nesting depth, see transaction()
        self._columns: dict[str, list[str]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite_utils.Database(self.path)
        except sqlite3.DatabaseError as exc:
            raise self._open_error(exc) from exc
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise self._open_error(exc) from exc
        except BaseException:
            self.db.close()
            raise

    def _open(self) -> None:
        # busy_timeout first, so switching to WAL also waits for a writer holding the file.
        self.db.execute("PRAGMA busy_timeout=10000")
        self._check_is_store()
        self.db.enable_wal()
        self.db.execute("PRAGMA foreign_keys=ON")  # a no-op inside a transaction: set it now
        self._migrate()

    def _open_error(self, exc: sqlite3.DatabaseError) -> PadaError:
        if _is_not_a_database(exc):
            return PadaError(
                f"{self.path}: not a pada-local run store (not an SQLite database: {exc})",
                hint="point --store at a pada-local .db file, or at a new path to create one",
            )
        return PadaError(f"{self.path}: cannot open the run store ({exc})",
                         hint="check that the path is a writable file, not a directory")

    def _check_is_store(self) -> None:
        # Reading sqlite_master also surfaces "file is not a database" for a text file.
        tables = self.db.table_names()
        if tables and "_migrations" not in tables:
            raise PadaError(
                f"{self.path}: not a pada-local run store (an SQLite database of something "
                f"else, tables: {', '.join(sorted(tables)[:5])})",
                hint="use another path for the run store; this file was left untouched",
            )

    # -- migrations ----------------------------------------------------------------------------

    def _applied(self) -> list[str]:
        return [r["name"] for r in self.db.query("SELECT name FROM _migrations ORDER BY rowid")]

    def _migrate(self) -> None:
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        applied = self._applied()
        self._refuse_newer(applied)
        for name, migrate in MIGRATIONS:
            if name in applied:
                continue  # no write lock for what is done: readers never wait on a writer here
            with self.transaction():
                # Re-read under the write lock: another process may have just applied it.
                if name in self._applied():
                    continue
                migrate(self.db)
                self.db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                                [name, _now()])
        self._columns.clear()

    def _refuse_newer(self, applied: Sequence[str]) -> None:
        unknown = sorted(set(applied) - {name for name, _ in MIGRATIONS})
        if unknown:
            raise PadaError(
                f"{self.path}: written by a newer pada-local (unknown schema migrations: "
                f"{', '.join(unknown)})",
                hint="upgrade pada-local (pip install -U pada-local) to open this store",
            )

    def schema_version(self) -> int:
        """How many migrations this store has applied."""
        return self.db.execute("SELECT count(*) FROM _migrations").fetchone()[0]

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions --------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of writes. Nests: only the outermost block commits or rolls back;
        an inner block is a savepoint, so an inner failure the caller catches undoes only it."""
        if self._depth:
            with self._savepoint():
                yield
            return
        with self._outermost():
            yield

    @contextmanager
    def _outermost(self) -> Iterator[None]:
        conn = self.db.conn
        # IMMEDIATE takes the write lock now (waiting up to busy_timeout); a deferred BEGIN
        # that read first could fail at its first write with no wait at all under WAL.
        conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        conn, name = self.db.conn, f"pada_sp{self._depth}"
        conn.execute(f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield
            conn.execute(f"RELEASE {name}")
        except BaseException:
            if conn.in_transaction:  # an error may already have ended the transaction
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
            raise
        finally:
            self._depth -= 1

    # -- generic row writing -------------------------------------------------------------------

    def _table_columns(self, table: str) -> list[str]:
        if table not in self._columns:
            if table != "runs" and table not in _CONFLICT:
                raise ValueError(f"unknown table {table!r}; one of {', '.join(_CONFLICT)}")
            self._columns[table] = list(self.db[table].columns_dict)
        return self._columns[table]

    def _check_columns(self, table: str, columns: Sequence[str]) -> None:
        known = self._table_columns(table)
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise ValueError(f"table {table!r} has no column(s) {', '.join(unknown)}")

    def _write(self, table: str, rows: Sequence[Mapping[str, Any]],
               on_conflict: Literal["update", "ignore", "error"]) -> None:
        """Insert rows; on a unique-key clash update the given columns, skip, or raise.

        Updating in place (rather than INSERT OR REPLACE) keeps row ids stable, so
        candidates.pattern_id still points at its pattern after a stage is re-written."""
        groups: dict[tuple[str, ...], list[list[Any]]] = {}
        for row in rows:  # executemany needs one column list per statement
            groups.setdefault(tuple(row), []).append([_cell(v) for v in row.values()])
        for columns, values in groups.items():
            self._check_columns(table, columns)
            self.db.conn.executemany(self._insert_sql(table, columns, on_conflict), values)

    @staticmethod
    def _insert_sql(table: str, columns: Sequence[str], on_conflict: str) -> str:
        cols = ", ".join(f"[{c}]" for c in columns)
        sql = f"INSERT INTO [{table}] ({cols}) VALUES ({', '.join('?' * len(columns))})"
        if on_conflict == "ignore":
            return sql + " ON CONFLICT DO NOTHING"  # only key clashes; NOT NULL still raises
        sets = ", ".join(f"[{c}] = excluded.[{c}]" for c in columns if c != "id")
        if on_conflict == "update" and sets:
            return sql + f" ON CONFLICT ({_CONFLICT[table]}) DO UPDATE SET {sets}"
        return sql

    # -- writing API ---------------------------------------------------------------------------

    def create_run(self, *, id: str | None = None, name: str | None, task: str,
                   strategy: str, student: str, teacher: str | None,
                   config: Mapping[str, Any], seed: int | None,
                   versions: Mapping[str, Any]) -> str:
        """Record a new run with status 'running' owned by this process; return its id."""
        now = _now()
        row = dict(id=id, name=name, task=task, strategy=strategy, student=student,
                   teacher=teacher, status="running", config_json=dict(config), seed=seed,
                   versions_json=dict(versions), pid=os.getpid(), created_at=now,
                   updated_at=now)
        # A generated id that collides (a burst of runs in one second) is drawn again; only an
        # id the user chose is an error.
        for _ in range(1 if id is not None else 50):
            row["id"] = _new_run_id() if id is None else id
            try:
                with self.transaction():
                    self.db.conn.execute(self._insert_sql("runs", list(row), "error"),
                                         [_cell(v) for v in row.values()])
                return str(row["id"])
            except sqlite3.IntegrityError as exc:
                if id is not None:
                    raise PadaError(f"run {id!r} already exists in {self.path}",
                                    hint="choose another run id, or resume that run") from exc
        raise PadaError(f"could not draw a free run id in {self.path}", hint="try again")

    def set_run(self, run_id: str, **fields: Any) -> None:
        """Update columns of a run (updated_at is set too)."""
        if "status" in fields and fields["status"] not in RUN_STATUSES:
            raise ValueError(f"run status {fields['status']!r} not in {RUN_STATUSES}")
        fields["updated_at"] = _now()
        self._check_columns("runs", list(fields))
        sets = ", ".join(f"[{c}] = ?" for c in fields)
        with self.transaction():
            cur = self.db.conn.execute(f"UPDATE runs SET {sets} WHERE id = ?",
                                       [*map(_cell, fields.values()), run_id])
        if cur.rowcount == 0:
            raise PadaError(f"no run {run_id!r} in {self.path}", hint=_RUNS_HINT)

    def upsert_round(self, run_id: str, round: int, **fields: Any) -> None:
        """Create the round's row or update the given columns of it."""
        with self.transaction():
            self._write("rounds", [{"run_id": run_id, "round": round, **fields}], "update")

    def write_stage(self, run_id: str, round: int, stage: str, *,
                    rows: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                    stats: Mapping[str, Any] | None = None) -> None:
        """Write a stage's rows and mark it done, all in one transaction: either everything is
        stored or nothing is. Rows re-written under the same unique key replace the old ones,
        so re-running a stage never duplicates. run_id/round are filled in where missing."""
        with self.transaction():
            for table, items in (rows or {}).items():
                scoped = [{"run_id": run_id, "round": round, **r} for r in items]
                self._write(table, scoped, "update")
            self._write("stages", [self._stage_row(run_id, round, stage, stats or {})],
                        "update")

    @staticmethod
    def _stage_row(run_id: str, round: int, stage: str,
                   stats: Mapping[str, Any]) -> dict[str, Any]:
        extra = {k: v for k, v in stats.items() if k != "detail"}
        row = {"run_id": run_id, "round": round, "stage": stage, "status": "done",
               "finished_at": _now(), **extra}
        if stats.get("detail") is not None:
            row["detail_json"] = json.dumps(stats["detail"], sort_keys=True, default=str)
        return row

    def add_rows(self, table: str, rows: Sequence[Mapping[str, Any]], *,
                 ignore_duplicates: bool = True) -> None:
        """Insert rows in one transaction; rows whose unique key exists are skipped (or raise
        sqlite3.IntegrityError with ignore_duplicates=False). For chunked candidate writes."""
        with self.transaction():
            self._write(table, rows, "ignore" if ignore_duplicates else "error")

    def delete_rows(self, table: str, ids: Sequence[int]) -> None:
        """Delete rows of a per-run table by their row id, in one transaction."""
        if table not in ROUND_TABLES or "id" not in self._table_columns(table):
            raise ValueError(f"delete_rows() takes a table with an id column, not {table!r}")
        with self.transaction():
            self.db.conn.executemany(f"DELETE FROM [{table}] WHERE id = ?", [[i] for i in ids])

    def stage_done(self, run_id: str, round: int, stage: str) -> bool:
        cur = self.db.execute(
            "SELECT 1 FROM stages WHERE run_id = ? AND round = ? AND stage = ? "
            "AND status = 'done'", [run_id, round, stage])
        return cur.fetchone() is not None

    def clear_round(self, run_id: str, round: int) -> None:
        """Delete every row of one round, in every table, to redo it (files stay on disk)."""
        with self.transaction():
            for table in ROUND_TABLES:
                self.db.conn.execute(f"DELETE FROM [{table}] WHERE run_id = ? AND round = ?",
                                     [run_id, round])

    def copy_round(self, src: str, dst: str, round: int) -> None:
        """Copy every row of one round of run `src` into run `dst` (one transaction); the
        copy's round row names where it came from (rounds.reused_from)."""
        with self.transaction():
            for table in ROUND_TABLES:
                cols = [c for c in self._table_columns(table) if c not in ("id", "run_id")]
                names = ", ".join(f"[{c}]" for c in cols)
                self.db.conn.execute(
                    f"INSERT INTO [{table}] (run_id, {names}) SELECT ?, {names} FROM [{table}] "
                    "WHERE run_id = ? AND round = ?", [dst, src, round])
            self.db.conn.execute("UPDATE rounds SET reused_from = ? WHERE run_id = ? AND round = ?",
                                 [src, dst, round])

    # -- comparisons ---------------------------------------------------------------------------

    def create_comparison(self, *, name: str | None, config: Mapping[str, Any],
                          strategies: Sequence[str], seeds: Sequence[int]) -> str:
        now = _now()
        row = dict(id="", name=name, config_json=dict(config), strategies_json=list(strategies),
                   seeds_json=list(seeds), status="running", pid=os.getpid(), created_at=now, updated_at=now)
        for _ in range(50):  # a generated id that collides is drawn again
            row["id"] = "cmp-" + _new_run_id()
            try:
                with self.transaction():
                    cols = ", ".join(f"[{c}]" for c in row)
                    marks = ", ".join("?" * len(row))
                    self.db.conn.execute(f"INSERT INTO comparisons ({cols}) VALUES ({marks})",
                                         [_cell(v) for v in row.values()])
                return str(row["id"])
            except sqlite3.IntegrityError:
                continue
        raise PadaError(f"could not draw a free comparison id in {self.path}", hint="try again")

    def set_comparison(self, comparison_id: str, **fields: Any) -> None:
        fields["updated_at"] = _now()
        sets = ", ".join(f"[{c}] = ?" for c in fields)
        with self.transaction():
            self.db.conn.execute(f"UPDATE comparisons SET {sets} WHERE id = ?",
                                 [*map(_cell, fields.values()), comparison_id])

    def comparisons(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM comparisons ORDER BY created_at DESC, rowid DESC"))

    def comparison(self, prefix: str) -> dict[str, Any]:
        """The one comparison whose id is `prefix` or starts with it."""
        found = list(self.db.query("SELECT * FROM comparisons WHERE substr(id, 1, length(?)) = ? ORDER BY id",
                                   [prefix, prefix]))
        exact = [c for c in found if c["id"] == prefix]
        if exact or len(found) == 1:
            return (exact or found)[0]
        if not found:
            raise PadaError(f"no comparison matches {prefix!r} in {self.path}",
                            hint="list them: pada compare --list")
        raise PadaError(f"comparison id {prefix!r} is ambiguous", hint="type more characters of the id")

    def add_comparison_run(self, comparison_id: str, run_id: str, strategy: str, seed: int) -> None:
        with self.transaction():
            self.db.conn.execute("INSERT INTO comparison_runs VALUES (?, ?, ?, ?)",
                                 [comparison_id, run_id, strategy, seed])

    def comparison_runs(self, comparison_id: str) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM comparison_runs WHERE comparison_id = ? ORDER BY rowid",
                                  [comparison_id]))

    def set_human_verdict(self, candidate_id: int, verdict: str | None) -> None:
        """Record a person's verdict on a candidate (None clears it)."""
        if verdict not in HUMAN_VERDICTS:
            raise ValueError(f"human verdict {verdict!r} not in {HUMAN_VERDICTS}")
        at = None if verdict is None else _now()
        with self.transaction():
            cur = self.db.conn.execute(
                "UPDATE candidates SET human_verdict = ?, human_at = ? WHERE id = ?",
                [verdict, at, candidate_id])
        if cur.rowcount == 0:
            raise PadaError(f"no candidate {candidate_id} in {self.path}")

    def delete_run(self, run_id: str) -> None:
        """Delete a run; foreign keys cascade to all its rows."""
        with self.transaction():
            cur = self.db.conn.execute("DELETE FROM runs WHERE id = ?", [run_id])
        if cur.rowcount == 0:
            raise PadaError(f"no run {run_id!r} in {self.path}", hint=_RUNS_HINT)

    # -- reading API ---------------------------------------------------------------------------
    # Results are materialised lists, so no cursor keeps a WAL read snapshot open.

    def runs(self) -> list[dict[str, Any]]:
        """All runs, newest first."""
        return list(self.db.query("SELECT * FROM runs ORDER BY created_at DESC, rowid DESC"))

    def run(self, run_id: str) -> dict[str, Any]:
        found = list(self.db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
        if not found:
            raise PadaError(f"no run {run_id!r} in {self.path}", hint=_RUNS_HINT)
        return found[0]

    def rounds(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.db.query(
            "SELECT * FROM rounds WHERE run_id = ? ORDER BY round", [run_id]))

    def stages(self, run_id: str, round: int | None = None) -> list[dict[str, Any]]:
        return self.rows("stages", run_id, round)

    def _where(self, table: str, run_id: str, round: int | None,
               equals: Mapping[str, Any]) -> tuple[str, list[Any]]:
        if table not in ROUND_TABLES:  # runs has no run_id column: use run()/runs()
            raise ValueError(f"rows()/count() take one of {', '.join(ROUND_TABLES)}")
        self._check_columns(table, list(equals))
        clauses = ["run_id = ?"]
        params: list[Any] = [run_id]  # round and cell values join the run id
        if round is not None:
            clauses.append("round = ?")
            params.append(round)
        for col, value in equals.items():  # IS matches NULL too (pattern_id=None)
            clauses.append(f"[{col}] IS ?")
            params.append(_cell(value))
        return " AND ".join(clauses), params

    def rows(self, table: str, run_id: str, round: int | None = None,
             **equals: Any) -> list[dict[str, Any]]:
        """Rows of a per-run table, in insertion order; round=None means all rounds."""
        where, params = self._where(table, run_id, round, equals)
        return list(self.db.query(f"SELECT * FROM [{table}] WHERE {where} ORDER BY rowid",
                                  params))

    def count(self, table: str, run_id: str, round: int | None = None, **equals: Any) -> int:
        where, params = self._where(table, run_id, round, equals)
        return self.db.execute(f"SELECT count(*) FROM [{table}] WHERE {where}",
                               params).fetchone()[0]

    def resolve_run_id(self, prefix: str) -> str:
        """The one run whose id is `prefix` or starts with it."""
        ids = [r[0] for r in self.db.execute(
            "SELECT id FROM runs WHERE substr(id, 1, length(?)) = ? ORDER BY id",
            [prefix, prefix])]
        if prefix in ids:
            return prefix
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise PadaError(f"no run matches {prefix!r} in {self.path}", hint=_RUNS_HINT)
        raise PadaError(f"run id {prefix!r} is ambiguous: {', '.join(ids[:10])}",
                        hint="type more characters of the run id")
