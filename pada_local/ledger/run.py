"""One run's records: its lifecycle, rounds and steps, and every step's rows, written in one
transaction with the step's done mark. `Ledger.for_run(run_id)` (runs.py) gives the `RunLedger`
bound to a run, so the orchestrator and the readers never thread the run id by hand. It maps
stored rows to the records of records.py for the stages, and hands plain dicts to readers
(report, TUI) that only display them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PadaError
from ..files import now, pid_alive
from ..records import Analysis, Candidate, Clustering, EvalRow, Pattern, Sample, TrainResult, Verdict
from .rules import effective_verdict, select_round
from .store import Row
from .store import now as exact_now  # to the millisecond: run rows and step marks, as ever

if TYPE_CHECKING:
    from .runs import Ledger


class RunLedger:
    """Everything about one run: its lifecycle, rounds and stages, and each stage's records."""

    def __init__(self, ledger: Ledger, run_id: str) -> None:
        self.ledger, self.id, self.store = ledger, run_id, ledger.store

    def _rows(self, table: str, r: int | None = None, **equals: Any) -> list[Row]:
        return self.store.rows(table, self.id, r, **equals)

    # ------------------------------------------------------------ the run

    def row(self) -> Row:
        return self.ledger.run(self.id)

    def config(self) -> dict[str, Any]:
        """The config the run was started with (a resume uses it, not the file)."""
        return dict(json.loads(self.row()["config_json"] or "{}"))

    def mark_running(self) -> None:
        self.ledger.set_run(self.id, status="running", pid=os.getpid(), error=None)

    def mark_stopped(self, status: str, error: str | None = None) -> None:
        """cancelled / interrupted / failed (with the error)."""
        self.ledger.set_run(self.id, status=status, **({} if error is None else {"error": error}))

    def finish(self, reason: str, rule: str = "best_val") -> None:
        """Finished: record why it stopped and the round it selects (the run's result)."""
        chosen = self.selected_round(rule)
        self.ledger.set_run(self.id, status="finished", finished_at=now(), stop_reason=reason,
                            best_round=None if chosen is None else chosen["round"],
                            best_val=None if chosen is None else chosen["val_score"],
                            best_test=None if chosen is None else chosen["test_score"])

    def selected_round(self, rule: str) -> Row | None:
        """The round `rule` selects (rules.select_round) among the finished, scored rounds."""
        found = select_round(self.done_rounds(), rule, self.item_scores)
        return None if found is None else dict(found)

    def item_scores(self, r: int, split: str = "validation") -> dict[str, float]:
        """Round r's trained model, item by item, on a split."""
        return {x["item_id"]: x["score"] or 0.0 for x in self.eval_items(r, split)}

    def check_resumable(self) -> None:
        """Refuse to continue a finished run, or one whose process still runs."""
        run = self.row()
        if run["status"] == "finished":
            raise PadaError(f"run {self.id} is already finished", hint=f"pada runs show {self.id}")
        pid = run.get("pid")
        if run["status"] == "running" and pid_alive(pid) and pid != os.getpid():
            raise PadaError(f"run {self.id} is still running (pid {pid})", hint="stop it first, or wait")

    # ------------------------------------------------------------ rounds and stages

    def rounds(self) -> list[Row]:
        return self._rows("rounds", order="round")

    def round(self, r: int) -> Row:
        return next(x for x in self.rounds() if x["round"] == r)

    def adapter(self, r: int) -> Path:
        """The adapter folder round r trained."""
        return Path(self.round(r)["adapter_path"])

    def _upsert_round(self, r: int, **fields: Any) -> None:
        self.store.write("rounds", [{"run_id": self.id, "round": r, **fields}])

    def open_round(self, r: int) -> None:
        """Mark a round running; a resumed round keeps its first start time."""
        known = any(x["round"] == r and x["started_at"] for x in self.rounds())
        self._upsert_round(r, status="running", **({} if known else {"started_at": now()}))

    def close_round(self, r: int, note: str | None = None) -> None:
        """Done, with its time; `note` says what was unusual (shown where a stop reason would be)."""
        seconds = sum(s["seconds"] or 0 for s in self.stages(r))
        extra = {} if note is None else {"stop_reason": note}
        self._upsert_round(r, status="done", finished_at=now(), seconds=round(seconds, 2), **extra)

    def stop_round(self, r: int, reason: str) -> None:
        self._upsert_round(r, status="stopped", stop_reason=reason, finished_at=now())

    def done_rounds(self) -> list[Row]:
        """Finished rounds with a validation score: what the stop rules and selection look at."""
        return [x for x in self.rounds() if x["status"] == "done" and x["val_score"] is not None]

    def stage_done(self, r: int, stage: str) -> bool:
        return self.store.count("stages", self.id, r, stage=stage, status="done") > 0

    def stages(self, r: int | None = None) -> list[Row]:
        return self._rows("stages", r)

    def stage_detail(self, r: int, stage: str) -> dict[str, Any] | None:
        """A finished stage's recorded detail (its `detail` stats), or None."""
        for x in self._rows("stages", r, stage=stage, status="done"):
            return json.loads(x["detail_json"]) if x["detail_json"] else {}
        return None

    def write_stage(self, r: int, stage: str, *, rows: Mapping[str, Sequence[Row]] | None = None,
                    stats: Mapping[str, Any] | None = None) -> None:
        """A stage's rows and its done mark, in one transaction: either everything is stored or
        nothing is. Rows re-written under the same unique key replace the old ones, so re-running
        a stage never duplicates."""
        with self.store.transaction():
            for table, items in (rows or {}).items():
                self.store.write(table, [{"run_id": self.id, "round": r, **x} for x in items])
            self.store.write("stages", [self._stage_row(r, stage, stats or {})])

    def _stage_row(self, r: int, stage: str, stats: Mapping[str, Any]) -> Row:
        extra = {k: v for k, v in stats.items() if k != "detail"}
        row = {"run_id": self.id, "round": r, "stage": stage, "status": "done", "finished_at": exact_now(),
               **extra}
        if stats.get("detail") is not None:
            row["detail_json"] = json.dumps(stats["detail"], sort_keys=True, default=str)
        return row

    def mark_stage(self, r: int, stage: str, stats: Mapping[str, Any]) -> None:
        """A stage whose rows were stored as it went (generation): only its done mark."""
        self.write_stage(r, stage, stats=stats)

    # ------------------------------------------------------------ evaluation

    def record_zero_shot(self, rows: Sequence[EvalRow], stats: Mapping[str, Any],
                         scores: Mapping[str, float | None]) -> None:
        with self.store.transaction():
            self.write_stage(0, "zero_shot", stats=stats,
                             rows={"eval_items": [_eval_row(x, "zero-shot") for x in rows]})
            self._upsert_round(0, zero_shot_val=scores["validation"], zero_shot_test=scores["test"])

    def record_eval(self, r: int, rows: Sequence[EvalRow], metrics: Sequence[Row], stats: Mapping[str, Any],
                    scores: Mapping[str, float | None]) -> None:
        with self.store.transaction():
            self.write_stage(r, "eval", stats=stats, rows={
                "eval_items": [_eval_row(x, "trained") for x in rows], "metrics": list(metrics)})
            self._upsert_round(r, val_score=scores["validation"], test_score=scores["test"],
                               train_score=scores["train"])

    def eval_rows(self, r: int, split: str, model: str = "trained") -> list[EvalRow]:
        return [EvalRow(x["item_id"], x["split"], x["input"], x["reference"], x["prediction"] or "",
                        x["score"]) for x in self.eval_items(r, split, model)]

    def eval_items(self, r: int, split: str, model: str = "trained") -> list[Row]:
        """Stored evaluation rows as dicts (readers: export verification, the TUI)."""
        return self._rows("eval_items", r, model=model, split=split)

    # ------------------------------------------------------------ analysis and patterns

    def record_analyses(self, r: int, analyses: Sequence[Analysis], stats: Mapping[str, Any]) -> None:
        rows = [{"item_id": a.item_id, "root_cause": a.root_cause, "error_scenario": a.error_scenario,
                 "raw": a.raw, "ok": int(a.ok)} for a in analyses]
        self.write_stage(r, "analyze", rows={"analyses": rows}, stats=stats)

    def analyses(self, r: int) -> list[Analysis]:
        return [Analysis(x["item_id"], x["root_cause"] or "", x["error_scenario"] or "", x["raw"] or "",
                         bool(x["ok"])) for x in self._rows("analyses", r)]

    def analysis_rows(self, r: int | None = None) -> list[Row]:
        return self._rows("analyses", r)

    def record_clusters(self, r: int, usable: Sequence[Analysis], result: Clustering,
                        stats: Mapping[str, Any]) -> None:
        sizes = {c: result.labels.count(c) for c in sorted(set(result.labels))}
        inertias = json.dumps(result.inertias)
        rows = {"clusters": [{"cluster": c, "size": n, "k": result.k, "inertia_json": inertias}
                             for c, n in sizes.items()],
                "analyses": [{"item_id": a.item_id, "cluster": label}
                             for a, label in zip(usable, result.labels, strict=True)]}
        self.write_stage(r, "cluster", rows=rows, stats=stats)

    def cluster_of(self, r: int) -> dict[str, int]:
        """item id -> cluster, for the analyses that were clustered."""
        return {x["item_id"]: x["cluster"] for x in self._rows("analyses", r) if x["cluster"] is not None}

    def record_patterns(self, r: int, patterns: Sequence[Pattern], stats: Mapping[str, Any]) -> None:
        rows = [{"cluster": p.cluster, "name": p.name, "description": p.description, "size": p.size,
                 "raw": p.raw, "keywords_json": json.dumps(list(p.keywords))} for p in patterns]
        self.write_stage(r, "patterns", rows={"patterns": rows}, stats=stats)

    def record_strategies(self, r: int, patterns: Sequence[Pattern], stats: Mapping[str, Any]) -> None:
        rows = [{"cluster": p.cluster, "strategy": p.strategy} for p in patterns]
        self.write_stage(r, "strategies", rows={"patterns": rows}, stats=stats)

    def patterns(self, r: int) -> list[Pattern]:
        return [Pattern(x["cluster"], x["name"], x["description"], x["size"], x["raw"] or "",
                        x["strategy"] or "", tuple(json.loads(x["keywords_json"] or "[]")))
                for x in self._rows("patterns", r)]

    def pattern_rows(self, r: int | None = None) -> list[Row]:
        return self._rows("patterns", r)

    def pattern_ids(self, r: int) -> dict[int, int]:
        """cluster -> pattern row id."""
        return {x["cluster"]: x["id"] for x in self._rows("patterns", r)}

    # ------------------------------------------------------------ candidates

    def candidate_keys(self, r: int) -> set[str]:
        return {x["key"] for x in self._rows("candidates", r)}

    def add_candidate(self, r: int, c: Candidate, pattern_ids: Mapping[int, int]) -> None:
        """Stored the moment it is made (a crash loses at most the sample in flight)."""
        row = {"key": c.key, "run_id": self.id, "round": r, "source": c.source,
               "pattern_id": None if c.pattern_cluster is None else pattern_ids.get(c.pattern_cluster),
               "origin_item_id": c.origin_item_id, "input": c.input, "output": c.output, "raw": c.raw,
               "verdict": "pending", "reason": c.parse_error, "created_at": now(), "prompt": c.prompt,
               "target": c.target, "expression": c.expression}
        self.store.write("candidates", [row], "ignore")

    def candidates(self, r: int) -> list[Candidate]:
        """A round's candidates as quality control reviews them."""
        return [_candidate(x) for x in self._rows("candidates", r)]

    def candidate_rows(self, r: int | None = None) -> list[Row]:
        """Stored candidates with their effective verdict added (readers: the TUI, reports)."""
        rows = self._rows("candidates", r)
        for c in rows:
            c["effective"] = effective_verdict(c)
        return rows

    def record_verdicts(self, r: int, verdicts: Sequence[Verdict], stats: Mapping[str, Any]) -> None:
        """Quality control's verdicts and the round's sample counts, in one transaction."""
        rows = [{"key": v.key, "verdict": "accepted" if v.accepted else "rejected", "reason": v.reason,
                 "judge_score": v.judge_score, **({} if v.output is None else {"output": v.output})}
                for v in verdicts]
        n_ok = sum(v.accepted for v in verdicts)
        with self.store.transaction():
            self.write_stage(r, "quality", rows={"candidates": rows}, stats=stats)
            self._upsert_round(r, n_synthetic=len(rows), n_accepted=n_ok, n_rejected=len(rows) - n_ok)

    def accepted(self, up_to: int, since: int = 1) -> list[Sample]:
        """Accepted samples of rounds since..up_to, by effective verdict, in round and row order."""
        out: list[Sample] = []
        for r in range(since, up_to + 1):
            out += [Sample(x["id"], x["key"], x["input"], x["output"])
                    for x in self._rows("candidates", r) if effective_verdict(x) == "accepted"]
        return out

    # ------------------------------------------------------------ training

    def record_training(self, r: int, result: TrainResult, stats: Mapping[str, Any]) -> None:
        steps = [{"step": h.step, "loss": h.loss, "lr": h.lr, "tokens_per_s": h.tokens_per_s,
                  "epoch": h.epoch, "seconds": h.seconds} for h in result.history]
        artifacts = [{"kind": a.kind, "path": str(a.path), "sha256": a.sha256, "bytes": a.bytes,
                      "created_at": now(), "meta_json": json.dumps(a.meta)} for a in result.artifacts]
        with self.store.transaction():
            self.write_stage(r, "train", stats=stats, rows={"train_steps": steps, "artifacts": artifacts})
            self._upsert_round(r, adapter_path=str(result.adapter), n_train=result.n_train)

    def train_steps(self) -> list[Row]:
        return self._rows("train_steps")

    # ------------------------------------------------------------ metrics and artifacts

    def metrics(self, r: int | None = None, name: str | None = None) -> list[Row]:
        return self._rows("metrics", r, **({} if name is None else {"name": name}))

    def artifacts(self, kind: str | None = None) -> list[Row]:
        return self._rows("artifacts", None, **({} if kind is None else {"kind": kind}))

    def record_export(self, out_dir: Path, rows: Iterable[Row]) -> None:
        """An export's files as artifacts (kind export_<role>), replacing the rows of an earlier
        export to the same folder, in one transaction."""
        prefix = f"{out_dir}{os.sep}"
        with self.store.transaction():
            for old in self.artifacts():
                if old["kind"].startswith("export_") and old["path"].startswith(prefix):
                    self.store.delete("artifacts", id=old["id"])
            self.store.write("artifacts", [{"run_id": self.id, **row} for row in rows], "ignore")

    def counts(self) -> dict[str, int]:
        """Rows stored per table for this run (what `pada runs show` lists)."""
        tables = ("eval_items", "analyses", "clusters", "patterns", "candidates", "train_steps", "metrics",
                  "artifacts")
        return {t: self.store.count(t, self.id) for t in tables}


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
