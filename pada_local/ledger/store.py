"""RunStore: the SQLite file a run store lives in, over sqlite-utils. Plumbing only.

On open it enables WAL (so the TUI reads while a run writes), sets a busy timeout (so two writers
wait for each other instead of failing) and applies the schema migrations (schema.py). It offers
transactions that nest, and generic row access: write (upsert, skip or refuse on a key clash),
read, count, update, delete, an insert that draws a fresh id, and id-prefix resolution. What the
tables mean is the ledger's business (runs.py, comparisons.py): nothing here names a run.

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
import secrets
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import sqlite_utils

from ..errors import PadaError
from .schema import CONFLICT_KEYS, MIGRATIONS

Row = dict[str, Any]
OnConflict = Literal["update", "ignore", "error"]


def now() -> str:
    """A store time stamp: ISO 8601 in UTC, to the millisecond."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_id(prefix: str = "") -> str:
    """A fresh row id: local time (it reads naturally in `pada runs`) and a random suffix that
    separates ids drawn in the same second."""
    return f"{prefix}{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def cell(value: Any) -> Any:
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
                                [name, now()])
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

    # -- generic rows ----------------------------------------------------------------------------

    def columns(self, table: str) -> list[str]:
        if table not in self._columns:
            if table not in CONFLICT_KEYS:
                raise ValueError(f"unknown table {table!r}; one of {', '.join(CONFLICT_KEYS)}")
            self._columns[table] = list(self.db[table].columns_dict)
        return self._columns[table]

    def _check_columns(self, table: str, columns: Sequence[str]) -> None:
        known = self.columns(table)
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise ValueError(f"table {table!r} has no column(s) {', '.join(unknown)}")

    def write(self, table: str, rows: Sequence[Mapping[str, Any]],
              on_conflict: OnConflict = "update") -> None:
        """Insert rows in one transaction; on a unique-key clash update the given columns, skip
        the row, or raise sqlite3.IntegrityError.

        Updating in place (rather than INSERT OR REPLACE) keeps row ids stable, so
        candidates.pattern_id still points at its pattern after a stage is re-written."""
        groups: dict[tuple[str, ...], list[list[Any]]] = {}
        for row in rows:  # executemany needs one column list per statement
            groups.setdefault(tuple(row), []).append([cell(v) for v in row.values()])
        with self.transaction():
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
            return sql + f" ON CONFLICT ({CONFLICT_KEYS[table]}) DO UPDATE SET {sets}"
        return sql

    def insert_new(self, table: str, row: Mapping[str, Any], prefix: str = "",
                   given: str | None = None) -> str:
        """Insert a row under a fresh id: a drawn id that collides (a burst in one second) is
        drawn again; an id the caller gave is tried once (sqlite3.IntegrityError if taken)."""
        for _ in range(1 if given is not None else 50):
            row_id = new_id(prefix) if given is None else given
            try:
                self.write(table, [{**row, "id": row_id}], "error")
                return row_id
            except sqlite3.IntegrityError:
                if given is not None:
                    raise
        raise PadaError(f"could not draw a free id for a new row of {table} in {self.path}", hint="try again")

    def _where(self, table: str, equals: Mapping[str, Any]) -> tuple[str, list[Any]]:
        self._check_columns(table, list(equals))
        clauses = [f"[{col}] IS ?" for col in equals] or ["1"]  # IS matches NULL too (pattern_id=None)
        return " AND ".join(clauses), [cell(v) for v in equals.values()]

    @staticmethod
    def _scope(run_id: str | None, round: int | None, equals: Mapping[str, Any]) -> dict[str, Any]:
        scoped = {} if run_id is None else {"run_id": run_id}
        return {**scoped, **({} if round is None else {"round": round}), **equals}

    def rows(self, table: str, run_id: str | None = None, round: int | None = None,
             order: str = "rowid", **equals: Any) -> list[Row]:
        """Rows of a table matching the given columns (run_id and round are the common ones), in
        insertion order. Materialised lists, so no cursor keeps a WAL read snapshot open."""
        where, params = self._where(table, self._scope(run_id, round, equals))
        return list(self.db.query(f"SELECT * FROM [{table}] WHERE {where} ORDER BY {order}", params))

    def count(self, table: str, run_id: str | None = None, round: int | None = None, **equals: Any) -> int:
        where, params = self._where(table, self._scope(run_id, round, equals))
        return int(self.db.execute(f"SELECT count(*) FROM [{table}] WHERE {where}", params).fetchone()[0])

    def update(self, table: str, where: Mapping[str, Any], **fields: Any) -> int:
        """Set columns of the rows matching `where`, in one transaction; how many rows changed."""
        self._check_columns(table, list(fields))
        clause, params = self._where(table, where)
        sets = ", ".join(f"[{c}] = ?" for c in fields)
        with self.transaction():
            cur = self.db.conn.execute(f"UPDATE [{table}] SET {sets} WHERE {clause}",
                                       [*map(cell, fields.values()), *params])
        return int(cur.rowcount)

    def delete(self, table: str, **where: Any) -> int:
        """Delete the rows matching `where` (foreign keys cascade), in one transaction."""
        if not where:
            raise ValueError("delete() needs a condition")
        clause, params = self._where(table, where)
        with self.transaction():
            cur = self.db.conn.execute(f"DELETE FROM [{table}] WHERE {clause}", params)
        return int(cur.rowcount)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """A statement the generic calls cannot say (INSERT ... SELECT); inside a transaction."""
        with self.transaction():
            return self.db.conn.execute(sql, list(params))

    def resolve_prefix(self, table: str, prefix: str, *, what: str, hint: str) -> str:
        """The one id of `table` that is `prefix` or starts with it (ids users type shortened)."""
        ids = [r[0] for r in self.db.execute(
            f"SELECT id FROM [{table}] WHERE substr(id, 1, length(?)) = ? ORDER BY id", [prefix, prefix])]
        if prefix in ids or len(ids) == 1:
            return prefix if prefix in ids else str(ids[0])
        if not ids:
            raise PadaError(f"no {what} matches {prefix!r} in {self.path}", hint=hint)
        raise PadaError(f"{what} id {prefix!r} is ambiguous: {', '.join(ids[:10])}",
                        hint=f"type more characters of the {what} id")
