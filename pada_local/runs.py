"""The run ledger: the one owner of run data.

Every read and write of a run's tables goes through a named method here; nothing outside this
module and store.py names a table. It alone defines the rules that several readers share:
- the effective verdict of a candidate (a person's verdict overrides quality control's),
- the effective status of a run (a "running" run whose process is gone was interrupted),
- the best round (highest validation score, earliest on a tie),
- what a resume may continue from,
- how an export's files are recorded.

It maps stored rows to the records of records.py for the stages, and hands plain dicts to
readers (report, TUI) that only display them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import PadaError
from .files import now, pid_alive
from .records import Analysis, Candidate, Clustering, EvalRow, Pattern, Sample, Verdict
from .store import RunStore

Row = dict[str, Any]

# Runs that can be continued with `pada run --resume` (a finished run cannot; a live one must not).
RESUMABLE = ("cancelled", "interrupted", "failed")


# ---------------------------------------------------------------- shared rules


def effective_verdict(candidate: Mapping[str, Any]) -> str:
    """The verdict that counts: a person's verdict overrides quality control's."""
    return candidate.get("human_verdict") or candidate.get("verdict") or "pending"


def effective_status(run: Mapping[str, Any]) -> str:
    """A 'running' run whose process is gone was interrupted (kill -9, a crash, a reboot)."""
    if run["status"] == "running" and not pid_alive(run.get("pid")):
        return "interrupted"
    return str(run["status"])


def best_round(rounds: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The round with the highest validation score; the earliest wins a tie."""
    scored = [x for x in rounds if x["val_score"] is not None]
    return max(scored, key=lambda x: (x["val_score"], -x["round"])) if scored else None


class Ledger:
    """Named reads and writes of runs over one RunStore (one per thread, like the store)."""

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

    # ------------------------------------------------------------ runs

    def create_run(self, *, config: Mapping[str, Any], versions: Mapping[str, Any],
                   run_id: str | None = None) -> str:
        """Record a new run (status 'running', owned by this process) from its saved config."""
        models, loop, task = config["models"], config["loop"], config["task"]
        return self.store.create_run(
            id=run_id, name=config.get("name"), task=task["name"], strategy=loop["strategy"],
            student=models["student"], teacher=models.get("teacher"), config=config,
            seed=loop.get("seed"), versions=versions)

    def resolve(self, prefix: str) -> str:
        return self.store.resolve_run_id(prefix)

    def run(self, run_id: str) -> Row:
        return self.store.run(run_id)

    def runs(self) -> list[Row]:
        return self.store.runs()

    def config(self, run_id: str) -> dict[str, Any]:
        """The config the run was started with (a resume uses it, not the file)."""
        return dict(json.loads(self.run(run_id)["config_json"] or "{}"))

    def delete_run(self, run_id: str) -> None:
        self.store.delete_run(run_id)

    def mark_running(self, run_id: str) -> None:
        self.store.set_run(run_id, status="running", pid=os.getpid(), error=None)

    def mark_stopped(self, run_id: str, status: str, error: str | None = None) -> None:
        """cancelled / interrupted / failed (with the error)."""
        self.store.set_run(run_id, status=status, **({} if error is None else {"error": error}))

    def finish(self, run_id: str, reason: str) -> None:
        """Finished: record why it stopped and its best round."""
        best = best_round(self.rounds(run_id))
        self.store.set_run(run_id, status="finished", finished_at=now(), stop_reason=reason,
                           best_round=None if best is None else best["round"],
                           best_val=None if best is None else best["val_score"],
                           best_test=None if best is None else best["test_score"])

    def check_resumable(self, run_id: str) -> None:
        """Refuse to continue a finished run, or one whose process still runs."""
        run = self.run(run_id)
        if run["status"] == "finished":
            raise PadaError(f"run {run_id} is already finished", hint=f"pada runs show {run_id}")
        pid = run.get("pid")
        if run["status"] == "running" and pid_alive(pid) and pid != os.getpid():
            raise PadaError(f"run {run_id} is still running (pid {pid})", hint="stop it first, or wait")

    # ------------------------------------------------------------ rounds and stages

    def rounds(self, run_id: str) -> list[Row]:
        return self.store.rounds(run_id)

    def round(self, run_id: str, r: int) -> Row:
        return next(x for x in self.rounds(run_id) if x["round"] == r)

    def open_round(self, run_id: str, r: int) -> None:
        """Mark a round running; a resumed round keeps its first start time."""
        known = any(x["round"] == r and x["started_at"] for x in self.rounds(run_id))
        self.store.upsert_round(run_id, r, status="running", **({} if known else {"started_at": now()}))

    def close_round(self, run_id: str, r: int, note: str | None = None) -> None:
        """Done, with its time; `note` says what was unusual (shown where a stop reason would be)."""
        seconds = sum(s["seconds"] or 0 for s in self.stages(run_id, r))
        extra = {} if note is None else {"stop_reason": note}
        self.store.upsert_round(run_id, r, status="done", finished_at=now(), seconds=round(seconds, 2),
                                **extra)

    def stop_round(self, run_id: str, r: int, reason: str) -> None:
        self.store.upsert_round(run_id, r, status="stopped", stop_reason=reason, finished_at=now())

    def done_rounds(self, run_id: str) -> list[Row]:
        """Finished rounds with a validation score: what the stop rules look at."""
        return [x for x in self.rounds(run_id) if x["status"] == "done" and x["val_score"] is not None]

    def stage_done(self, run_id: str, r: int, stage: str) -> bool:
        return self.store.stage_done(run_id, r, stage)

    def stages(self, run_id: str, r: int | None = None) -> list[Row]:
        return self.store.stages(run_id, r)

    def stage_detail(self, run_id: str, r: int, stage: str) -> dict[str, Any] | None:
        """A finished stage's recorded detail (its `detail` stats), or None."""
        import json

        for x in self.store.stages(run_id, r):
            if x["stage"] == stage and x["status"] == "done":
                return json.loads(x["detail_json"]) if x["detail_json"] else {}
        return None

    def mark_stage(self, run_id: str, r: int, stage: str, stats: Mapping[str, Any]) -> None:
        """A stage whose rows were stored as it went (generation): only its done mark."""
        self.store.write_stage(run_id, r, stage, stats=stats)

    # ------------------------------------------------------------ evaluation

    def record_zero_shot(self, run_id: str, rows: Sequence[EvalRow], stats: Mapping[str, Any],
                         val: float | None, test: float | None) -> None:
        with self.store.transaction():
            self.store.write_stage(run_id, 0, "zero_shot", stats=stats,
                                   rows={"eval_items": [_eval_row(x, "zero-shot") for x in rows]})
            self.store.upsert_round(run_id, 0, zero_shot_val=val, zero_shot_test=test)

    def record_eval(self, run_id: str, r: int, rows: Sequence[EvalRow], metrics: Sequence[Row],
                    stats: Mapping[str, Any], scores: Mapping[str, float | None]) -> None:
        with self.store.transaction():
            self.store.write_stage(run_id, r, "eval", stats=stats, rows={
                "eval_items": [_eval_row(x, "trained") for x in rows], "metrics": list(metrics)})
            self.store.upsert_round(run_id, r, val_score=scores["validation"], test_score=scores["test"],
                                    train_score=scores["train"])

    def eval_rows(self, run_id: str, r: int, split: str, model: str = "trained") -> list[EvalRow]:
        rows = self.store.rows("eval_items", run_id, r, model=model, split=split)
        return [EvalRow(x["item_id"], x["split"], x["input"], x["reference"], x["prediction"] or "",
                        x["score"]) for x in rows]

    def eval_items(self, run_id: str, r: int, split: str, model: str = "trained") -> list[Row]:
        """Stored evaluation rows as dicts (readers: export verification, the TUI)."""
        return self.store.rows("eval_items", run_id, r, model=model, split=split)

    # ------------------------------------------------------------ analysis and patterns

    def record_analyses(self, run_id: str, r: int, analyses: Sequence[Analysis],
                        stats: Mapping[str, Any]) -> None:
        rows = [{"item_id": a.item_id, "root_cause": a.root_cause, "error_scenario": a.error_scenario,
                 "raw": a.raw, "ok": int(a.ok)} for a in analyses]
        self.store.write_stage(run_id, r, "analyze", rows={"analyses": rows}, stats=stats)

    def analyses(self, run_id: str, r: int) -> list[Analysis]:
        return [Analysis(x["item_id"], x["root_cause"] or "", x["error_scenario"] or "", x["raw"] or "",
                         bool(x["ok"])) for x in self.store.rows("analyses", run_id, r)]

    def analysis_rows(self, run_id: str, r: int | None = None) -> list[Row]:
        return self.store.rows("analyses", run_id, r)

    def record_clusters(self, run_id: str, r: int, usable: Sequence[Analysis], result: Clustering,
                        stats: Mapping[str, Any]) -> None:
        sizes = {c: result.labels.count(c) for c in sorted(set(result.labels))}
        inertias = json.dumps(result.inertias)
        rows = {"clusters": [{"cluster": c, "size": n, "k": result.k, "inertia_json": inertias}
                             for c, n in sizes.items()],
                "analyses": [{"item_id": a.item_id, "cluster": label}
                             for a, label in zip(usable, result.labels, strict=True)]}
        self.store.write_stage(run_id, r, "cluster", rows=rows, stats=stats)

    def cluster_of(self, run_id: str, r: int) -> dict[str, int]:
        """item id -> cluster, for the analyses that were clustered."""
        return {x["item_id"]: x["cluster"] for x in self.store.rows("analyses", run_id, r)
                if x["cluster"] is not None}

    def record_patterns(self, run_id: str, r: int, patterns: Sequence[Pattern],
                        stats: Mapping[str, Any]) -> None:
        rows = [{"cluster": p.cluster, "name": p.name, "description": p.description, "size": p.size,
                 "raw": p.raw, "keywords_json": json.dumps(list(p.keywords))} for p in patterns]
        self.store.write_stage(run_id, r, "patterns", rows={"patterns": rows}, stats=stats)

    def record_strategies(self, run_id: str, r: int, patterns: Sequence[Pattern],
                          stats: Mapping[str, Any]) -> None:
        rows = [{"cluster": p.cluster, "strategy": p.strategy} for p in patterns]
        self.store.write_stage(run_id, r, "strategies", rows={"patterns": rows}, stats=stats)

    def patterns(self, run_id: str, r: int) -> list[Pattern]:
        return [Pattern(x["cluster"], x["name"], x["description"], x["size"], x["raw"] or "",
                        x["strategy"] or "", tuple(json.loads(x["keywords_json"] or "[]")))
                for x in self.store.rows("patterns", run_id, r)]

    def pattern_rows(self, run_id: str, r: int | None = None) -> list[Row]:
        return self.store.rows("patterns", run_id, r)

    def pattern_ids(self, run_id: str, r: int) -> dict[int, int]:
        """cluster -> pattern row id."""
        return {x["cluster"]: x["id"] for x in self.store.rows("patterns", run_id, r)}

    # ------------------------------------------------------------ candidates

    def candidate_keys(self, run_id: str, r: int) -> set[str]:
        return {x["key"] for x in self.store.rows("candidates", run_id, r)}

    def add_candidate(self, run_id: str, r: int, c: Candidate, pattern_ids: Mapping[int, int]) -> None:
        """Stored the moment it is made (a crash loses at most the sample in flight)."""
        row = {"key": c.key, "run_id": run_id, "round": r, "source": c.source,
               "pattern_id": None if c.pattern_cluster is None else pattern_ids.get(c.pattern_cluster),
               "origin_item_id": c.origin_item_id, "input": c.input, "output": c.output, "raw": c.raw,
               "verdict": "pending", "reason": c.parse_error, "created_at": now(), "prompt": c.prompt,
               "target": c.target, "expression": c.expression}
        self.store.add_rows("candidates", [row])

    def candidates(self, run_id: str, r: int) -> list[Candidate]:
        """A round's candidates as quality control reviews them."""
        return [_candidate(x) for x in self.store.rows("candidates", run_id, r)]

    def candidate_rows(self, run_id: str, r: int | None = None) -> list[Row]:
        """Stored candidates with their effective verdict added (readers: the TUI, reports)."""
        rows = self.store.rows("candidates", run_id, r)
        for c in rows:
            c["effective"] = effective_verdict(c)
        return rows

    def record_verdicts(self, run_id: str, r: int, verdicts: Sequence[Verdict],
                        stats: Mapping[str, Any]) -> None:
        """Quality control's verdicts and the round's sample counts, in one transaction."""
        rows = [{"key": v.key, "verdict": "accepted" if v.accepted else "rejected", "reason": v.reason,
                 "judge_score": v.judge_score, **({} if v.output is None else {"output": v.output})}
                for v in verdicts]
        n_ok = sum(v.accepted for v in verdicts)
        with self.store.transaction():
            self.store.write_stage(run_id, r, "quality", rows={"candidates": rows}, stats=stats)
            self.store.upsert_round(run_id, r, n_synthetic=len(rows), n_accepted=n_ok,
                                    n_rejected=len(rows) - n_ok)

    def set_human_verdict(self, candidate_id: int, verdict: str | None) -> None:
        self.store.set_human_verdict(candidate_id, verdict)

    def accepted(self, run_id: str, up_to: int, since: int = 1) -> list[Sample]:
        """Accepted samples of rounds since..up_to, by effective verdict, in round and row order."""
        out: list[Sample] = []
        for r in range(since, up_to + 1):
            out += [Sample(x["id"], x["key"], x["input"], x["output"])
                    for x in self.store.rows("candidates", run_id, r) if effective_verdict(x) == "accepted"]
        return out

    # ------------------------------------------------------------ training

    def record_training(self, run_id: str, r: int, steps: Sequence[Row], artifacts: Sequence[Row],
                        stats: Mapping[str, Any], adapter: Path, n_train: int) -> None:
        with self.store.transaction():
            self.store.write_stage(run_id, r, "train", stats=stats,
                                   rows={"train_steps": list(steps), "artifacts": list(artifacts)})
            self.store.upsert_round(run_id, r, adapter_path=str(adapter), n_train=n_train)

    def train_steps(self, run_id: str) -> list[Row]:
        return self.store.rows("train_steps", run_id)

    # ------------------------------------------------------------ metrics and artifacts

    def metrics(self, run_id: str, r: int | None = None, name: str | None = None) -> list[Row]:
        where: dict[str, Any] = {} if name is None else {"name": name}
        return self.store.rows("metrics", run_id, r, **where)

    def artifacts(self, run_id: str, kind: str | None = None) -> list[Row]:
        where: dict[str, Any] = {} if kind is None else {"kind": kind}
        return self.store.rows("artifacts", run_id, **where)

    def record_export(self, run_id: str, out_dir: Path, rows: Iterable[Row]) -> None:
        """An export's files as artifacts (kind export_<role>), replacing the rows of an earlier
        export to the same folder, in one transaction."""
        prefix = f"{out_dir}{os.sep}"
        with self.store.transaction():
            old = [a for a in self.artifacts(run_id) if a["kind"].startswith("export_")
                   and a["path"].startswith(prefix)]
            self.store.delete_rows("artifacts", [a["id"] for a in old])
            self.store.add_rows("artifacts", [{"run_id": run_id, **row} for row in rows])

    def counts(self, run_id: str) -> dict[str, int]:
        """Rows stored per table for one run (what `pada runs show` lists)."""
        tables = ("eval_items", "analyses", "clusters", "patterns", "candidates", "train_steps", "metrics",
                  "artifacts")
        return {t: self.store.count(t, run_id) for t in tables}

    # ------------------------------------------------------------ comparisons

    def create_comparison(self, *, name: str | None, config: Mapping[str, Any], strategies: Sequence[str],
                          seeds: Sequence[int]) -> str:
        return self.store.create_comparison(name=name, config=config, strategies=strategies, seeds=seeds)

    def comparison(self, prefix: str) -> Row:
        """A comparison, its status effective as a run's is (a dead process reads interrupted)."""
        row = self.store.comparison(prefix)
        return {**row, "status": effective_status(row)}

    def comparisons(self) -> list[Row]:
        return [{**row, "status": effective_status(row)} for row in self.store.comparisons()]

    def comparison_runs(self, comparison_id: str) -> list[Row]:
        """(run_id, strategy, seed) of each run in the grid, with the run's effective status."""
        out = []
        for x in self.store.comparison_runs(comparison_id):
            out.append({**x, "status": effective_status(self.run(x["run_id"]))})
        return out

    def add_comparison_run(self, comparison_id: str, run_id: str, strategy: str, seed: int) -> None:
        self.store.add_comparison_run(comparison_id, run_id, strategy, seed)

    def mark_comparison(self, comparison_id: str, status: str, error: str | None = None) -> None:
        fields: dict[str, Any] = {"status": status, "pid": os.getpid()}
        if status == "finished":
            fields["finished_at"] = now()
        if error is not None:
            fields["error"] = error
        self.store.set_comparison(comparison_id, **fields)

    def reuse_round(self, src: str, dst: str, r: int) -> None:
        """Round r of `src` becomes round r of `dst` (same rows, same adapter file and checksum),
        recorded as reused; only a round with every stage done may be reused."""
        stages = ("zero_shot", "train", "eval") if r == 0 else ("train", "eval")
        if not all(self.stage_done(src, r, s) for s in stages):
            raise PadaError(f"round {r} of run {src} is not finished; it cannot be reused")
        self.store.copy_round(src, dst, r)


# ---------------------------------------------------------------- row mappers


def _eval_row(x: EvalRow, model: str) -> Row:
    row = {"model": model, "split": x.split, "item_id": x.item_id, "input": x.input,
           "reference": x.reference, "prediction": x.prediction, "score": x.score}
    return row if x.logprobs is None else {**row, "logprobs_json": json.dumps(x.logprobs)}


def _candidate(x: Mapping[str, Any]) -> Candidate:
    # A pending row's reason is the parse error the generator recorded.
    unparsed = x["reason"] if x["verdict"] == "pending" and x["reason"] else None
    return Candidate(x["key"], x["source"], None, x["origin_item_id"], x["input"] or "", x["output"] or "",
                     x["raw"] or "", unparsed, "", target=x.get("target"), expression=x.get("expression"))
