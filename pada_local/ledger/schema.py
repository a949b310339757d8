"""The run store's schema: the migrations that build it, and each table's unique key.

Append only: a released migration is never edited, because stores written by older versions
have already recorded it as applied. store.py applies them when a store opens; the ledger is
the only code that names these tables when it reads and writes runs.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

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

RUN_STATUSES = ("running", "finished", "failed", "cancelled", "interrupted")
HUMAN_VERDICTS = ("accepted", "rejected", None)

# Per-round tables: the conflict targets of their upserts, which must match a UNIQUE index exactly
# (expressions included).
_ROUNDS: dict[str, str] = {
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
ROUND_TABLES: tuple[str, ...] = tuple(_ROUNDS)  # every table holding per-round rows
# Every table's unique key, for upserts (a primary key or a UNIQUE index).
CONFLICT_KEYS: dict[str, str] = {"runs": "id", "comparisons": "id",
                                 "comparison_runs": "comparison_id, strategy, seed", **_ROUNDS}
