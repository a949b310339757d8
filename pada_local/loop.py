"""The Central Orchestrator: the only module that composes the stages and writes the store.

Every stage's results land in the store in one transaction together with its "done" mark, so
a run stopped anywhere (Ctrl-C, a crash, kill -9) resumes from the last finished stage.
Generation is finer still: each sample is stored as it is made, under a stable key.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .analyze import Analysis, Clustering, Pattern, analyze_failures, cluster, draft_strategies, name_patterns, sample_failures
from .config import Config, dump, from_dict
from .errors import ConfigError
from .data import DataReport, Example, Splits, check_splits, load_splits
from .errors import Cancelled, PadaError
from .evaluate import EvalRow, accuracy, evaluate
from .events import Event, Reporter, silent
from .export import sha256_file
from .generate import Candidate, Job, plan_jobs, run_jobs
from .leakage import LeakGuard
from .scoring import Scorer
from .store import RunStore
from .tasks import get_verifier

StopCheck = Callable[[], bool]


# ---------------------------------------------------------------- preflight (no models loaded)


@dataclass
class Prepared:
    cfg: Config
    splits: Splits
    report: DataReport
    scorer: Scorer
    verifier: Callable[[str], str | None] | None
    trainer: str


def preflight(cfg: Config) -> Prepared:
    """Everything that can be checked before a model loads: data, scorer fit, models, backend."""
    from . import models
    from .backends import choose_trainer, trainer_problems

    splits = load_splits(cfg.data)
    report = check_splits(splits, threshold=cfg.quality.dup_ngram)
    scorer = Scorer(cfg.task.scorer)
    for name, items in (("train", splits.train), ("validation", splits.validation), ("test", splits.test)):
        if items:
            scorer.check_references([(ex.id, ex.output) for ex in items], f"data.{name}")
    verifier = get_verifier(cfg.task.verifier)
    models.resolve_student(cfg.models.student)
    models.resolve_embedder(cfg.models.embedder)
    if cfg.loop.strategy != "none" and cfg.loop.rounds > 0 or cfg.task.scorer.kind == "judge":
        models.resolve_teacher(cfg.models.teacher)
        if cfg.models.judge is not None:
            models.resolve_teacher(cfg.models.judge)
    trainer, _ = choose_trainer(cfg.train.backend)
    problems = trainer_problems(trainer, cfg.train)
    if problems:
        raise ConfigError(f"train: the '{trainer}' backend cannot honour: " + "; ".join(problems),
                          hint="change those fields or train.backend")
    return Prepared(cfg, splits, report, scorer, verifier, trainer)


# ---------------------------------------------------------------- engines, loaded lazily


class Engines:
    """Models load on first use: round 0 never loads the teacher."""

    def __init__(self, cfg: Config, trainer_name: str, report: Reporter) -> None:
        self.cfg, self.trainer_name, self.report = cfg, trainer_name, report
        self._teacher: Any = None
        self._judge: Any = None
        self._embedder: Any = None

    def _log(self, message: str) -> None:
        self.report(Event("log", "models", message=message))

    def student_dir(self) -> Path:
        from .models import prepare_student, resolve_student

        return prepare_student(resolve_student(self.cfg.models.student), log=self._log)

    def student(self, adapter: Path | None) -> Any:
        from .backends.hf import HFGenerator

        return HFGenerator(self.student_dir(), adapter=adapter, max_new_tokens=self.cfg.task.max_new_tokens)

    def teacher(self) -> Any:
        if self._teacher is None:
            self._teacher = self._llama(self.cfg.models.teacher)
        return self._teacher

    def judge(self) -> Any:
        if self.cfg.models.judge is None:
            return self.teacher()
        if self._judge is None:
            self._judge = self._llama(self.cfg.models.judge)
        return self._judge

    def _llama(self, name: str) -> Any:
        from .backends.llama_cpp import LlamaCppGenerator
        from .models import resolve_teacher

        t = self.cfg.teacher
        self._log(f"loading teacher {name}")
        return LlamaCppGenerator(resolve_teacher(name), n_ctx=t.n_ctx, n_threads=t.n_threads,
                                 n_gpu_layers=t.n_gpu_layers, temperature=t.temperature,
                                 max_tokens=t.max_tokens, seed=t.seed)

    def embedder(self) -> Any:
        if self._embedder is None:
            from .backends.embed import SentenceEmbedder
            from .models import resolve_embedder

            self._embedder = SentenceEmbedder(resolve_embedder(self.cfg.models.embedder))
        return self._embedder

    def trainer(self) -> Any:
        from .backends import get_trainer

        return get_trainer(self.trainer_name)

    def close(self) -> None:
        for gen in (self._teacher, self._judge):
            if gen is not None:
                gen.close()


# ---------------------------------------------------------------- stage bookkeeping


class _Tally:
    """Seconds and teacher tokens spent by one stage."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def add(self, completions: Any) -> None:
        for c in completions:
            if c is not None:
                self.prompt_tokens += c.prompt_tokens
                self.completion_tokens += c.completion_tokens

    def stats(self, items: int, **detail: Any) -> dict[str, Any]:
        return {"seconds": round(time.perf_counter() - self.t0, 3), "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "items": items, "detail": detail or None}


class _Counted:
    """A Generator proxy that adds every reply's tokens to a stage's tally."""

    supports_schema = True

    def __init__(self, inner: Any, tally: _Tally) -> None:
        self.inner, self.tally = inner, tally

    def generate(self, requests: Any, on_item: Any = None) -> Any:
        out = self.inner.generate(requests, on_item=on_item)
        self.tally.add(out)
        return out


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"pada-local": __version__, "python": platform.python_version()}
    for dist in ("torch", "transformers", "peft", "trl", "llama-cpp-python", "sentence-transformers"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


# ---------------------------------------------------------------- the orchestrator


class Orchestrator:
    def __init__(self, prepared: Prepared, store: RunStore, run_id: str, *, report: Reporter = silent,
                 should_stop: StopCheck | None = None) -> None:
        self.p, self.cfg, self.store, self.run_id = prepared, prepared.cfg, store, run_id
        self.report = report
        self.should_stop = should_stop or (lambda: False)
        self.engines = Engines(self.cfg, prepared.trainer, report)
        self.guard = LeakGuard(prepared.splits.validation + prepared.splits.test, near=self.cfg.quality.dup_ngram)
        self.workdir = Path(self.cfg.workdir) / run_id

    # -- public

    def run(self) -> str:
        self.store.set_run(self.run_id, status="running", pid=os.getpid(), error=None)
        try:
            reason = self._rounds()
        except Cancelled:
            self.store.set_run(self.run_id, status="cancelled")
            raise
        except KeyboardInterrupt:
            self.store.set_run(self.run_id, status="interrupted")
            raise
        except Exception as err:
            self.store.set_run(self.run_id, status="failed", error=f"{type(err).__name__}: {err}")
            raise
        finally:
            self.engines.close()
        self._finish(reason)
        return self.run_id

    def _rounds(self) -> str:
        self._round0()
        rounds = self.cfg.loop.rounds if self.cfg.loop.strategy != "none" else 0
        for r in range(1, rounds + 1):
            reason = self._stop_before(r)
            if reason is not None:
                return reason
            if not self._round(r):
                return f"round {r} accepted no samples"
        return self._stop_before(rounds + 1) or f"{rounds} rounds done"

    def _check(self) -> None:
        if self.should_stop():
            raise Cancelled("cancelled by the user; `pada run --resume " + self.run_id + "` continues")

    def _stage(self, r: int, name: str) -> bool:
        """True when the stage still has to run (resume skips finished stages)."""
        self._check()
        done = self.store.stage_done(self.run_id, r, name)
        if done:
            self.report(Event("log", name, r, message="already done (resumed)"))
        return not done

    # -- round 0: zero-shot, then LoRA on D_train alone

    def _open_round(self, r: int) -> None:
        """Mark a round running; a resumed round keeps its first start time."""
        known = any(x["round"] == r and x["started_at"] for x in self.store.rounds(self.run_id))
        self.store.upsert_round(self.run_id, r, status="running", **({} if known else {"started_at": _now()}))

    def _round0(self) -> None:
        self._open_round(0)
        if self._stage(0, "zero_shot"):
            self._zero_shot()
        if self._stage(0, "train"):
            self._train(0, [])
        if self._stage(0, "eval"):
            self._eval(0, [])
        self._close_round(0)

    def _zero_shot(self) -> None:
        tally = _Tally()
        student = self.engines.student(None)
        rows = self._eval_rows(student, "zero-shot", 0, include_train=False)
        val, test = _acc(rows, "validation"), _acc(rows, "test")
        self.store.write_stage(self.run_id, 0, "zero_shot", rows={"eval_items": [_eval_dict(r, "zero-shot") for r in rows]},
                               stats=tally.stats(len(rows), val=val, test=test))
        self.store.upsert_round(self.run_id, 0, zero_shot_val=val, zero_shot_test=test)

    def _eval_rows(self, student: Any, model: str, r: int, include_train: bool) -> list[EvalRow]:
        s = self.p.splits
        rows: list[EvalRow] = []
        parts = [("validation", s.validation), ("test", s.test)] + ([("train", s.train)] if include_train else [])
        for split, items in parts:
            if items:
                judge = self.engines.judge() if self.cfg.task.scorer.kind == "judge" else None
                rows += evaluate(student, items, self.cfg.task, self.p.scorer, judge=judge, report=self.report,
                                 stage=f"eval {split} ({model})", round_=r, should_stop=self.should_stop)
        return rows

    # -- rounds 1..T

    def _round(self, r: int) -> bool:
        self._open_round(r)
        patterns: list[Pattern] = []
        if self.cfg.loop.strategy == "pada":
            patterns = self._patterns(r)
        candidates = self._generate(r, patterns)
        accepted = self._quality(r, candidates)
        if accepted == 0:
            self.store.upsert_round(self.run_id, r, status="stopped", stop_reason="no samples accepted",
                                    finished_at=_now())
            return False
        synthetic = self._accepted_pool(r)
        if self._stage(r, "train"):
            self._train(r, synthetic)
        if self._stage(r, "eval"):
            self._eval(r, synthetic)
        self._close_round(r)
        return True

    def _previous_eval(self, r: int, split: str) -> list[dict[str, Any]]:
        return self.store.rows("eval_items", self.run_id, r - 1, model="trained", split=split)

    def _patterns(self, r: int) -> list[Pattern]:
        analyses = self._analyses(r)
        clustering = self._clusters(r, analyses)
        if self._stage(r, "patterns"):
            self._name_patterns(r, analyses, clustering)
        if self._stage(r, "strategies"):
            self._strategies(r)
        return self._load_patterns(r)

    def _analyses(self, r: int) -> list[Analysis]:
        if self._stage(r, "analyze"):
            failures = [_row_to_eval(x) for x in self._previous_eval(r, "validation") if x["score"] == 0]
            picked = sample_failures(failures, self.cfg.loop.analysis_cap, self.cfg.loop.seed + r)
            tally = _Tally()
            result = analyze_failures(_Counted(self.engines.teacher(), tally), picked, self.cfg.task, seed=self.cfg.loop.seed * 7919 + r * 131,
                                      report=self.report, round_=r)
            rows = [{"item_id": a.item_id, "root_cause": a.root_cause, "error_scenario": a.error_scenario,
                     "raw": a.raw, "ok": int(a.ok)} for a in result]
            self.store.write_stage(self.run_id, r, "analyze", rows={"analyses": rows},
                                   stats=tally.stats(len(rows), failures=len(failures), analysed=len(picked),
                                                     invalid=sum(not a.ok for a in result)))
        stored = self.store.rows("analyses", self.run_id, r)
        return [Analysis(x["item_id"], x["root_cause"] or "", x["error_scenario"] or "", x["raw"] or "", bool(x["ok"]))
                for x in stored]

    def _clusters(self, r: int, analyses: list[Analysis]) -> Clustering:
        usable = [a for a in analyses if a.ok]
        if self._stage(r, "cluster"):
            tally = _Tally()
            vectors = self.engines.embedder().embed([a.text for a in usable])
            result = cluster(vectors, self.cfg.loop.k_max, self.cfg.loop.seed) if usable else Clustering([], 0, {})
            sizes = {c: result.labels.count(c) for c in sorted(set(result.labels))}
            rows = {"clusters": [{"cluster": c, "size": n, "k": result.k, "inertia_json": json.dumps(result.inertias)}
                                 for c, n in sizes.items()],
                    "analyses": [{"item_id": a.item_id, "cluster": label} for a, label in zip(usable, result.labels)]}
            self.store.write_stage(self.run_id, r, "cluster", rows=rows, stats=tally.stats(len(usable), k=result.k))
        stored = {x["item_id"]: x["cluster"] for x in self.store.rows("analyses", self.run_id, r)}
        labels = [stored[a.item_id] for a in usable]
        return Clustering(labels, len(set(labels)), {})

    def _name_patterns(self, r: int, analyses: list[Analysis], clustering: Clustering) -> None:
        usable = [a for a in analyses if a.ok]
        tally = _Tally()
        found = name_patterns(_Counted(self.engines.teacher(), tally), usable, clustering.labels, self.cfg.task,
                              seed=self.cfg.loop.seed * 31 + r, report=self.report, round_=r) if usable else []
        rows = [{"cluster": p.cluster, "name": self._safe(p.name, f"pattern {p.cluster}"),
                 "description": self._safe(p.description, "(withheld: it quoted a held-out item)"),
                 "size": p.size, "raw": p.raw} for p in found]
        self.store.write_stage(self.run_id, r, "patterns", rows={"patterns": rows}, stats=tally.stats(len(rows)))

    def _strategies(self, r: int) -> None:
        import random

        patterns = self._load_patterns(r)
        rng = random.Random(self.cfg.loop.seed + r)
        exemplars = rng.sample(self.p.splits.train, min(self.cfg.loop.exemplars, len(self.p.splits.train)))
        tally = _Tally()
        drafted = draft_strategies(_Counted(self.engines.teacher(), tally), patterns, self.cfg.task, exemplars,
                                   seed=self.cfg.loop.seed * 17 + r, report=self.report, round_=r)
        rows = [{"cluster": p.cluster, "strategy": self._safe(p.strategy, f"Write new questions like the training examples that exercise: {p.name}.")}
                for p in drafted]
        self.store.write_stage(self.run_id, r, "strategies", rows={"patterns": rows}, stats=tally.stats(len(rows)))

    def _safe(self, text: str, fallback: str) -> str:
        """Teacher text with any held-out item removed; withheld entirely if a near copy stays."""
        scrubbed = self.guard.scrub(text)
        return fallback if self.guard.find(scrubbed) else scrubbed

    def _load_patterns(self, r: int) -> list[Pattern]:
        return [Pattern(x["cluster"], x["name"], x["description"], x["size"], x["raw"] or "", x["strategy"] or "")
                for x in self.store.rows("patterns", self.run_id, r)]

    # -- generation and quality control

    def _jobs(self, r: int, patterns: list[Pattern]) -> list[Job]:
        train_failures = [_row_to_eval(x) for x in self._previous_eval(r, "train") if x["score"] == 0]
        budget = self.cfg.loop.budget if self.cfg.loop.budget is not None else len(self.p.splits.train)
        pools = self._pattern_pools(r, patterns) if patterns else {}
        jobs = plan_jobs(self.cfg.loop.strategy, r, budget, patterns, train_failures, self.p.splits.train,
                         self.cfg.loop.seed, pools)
        # Candidate keys are unique across the whole store: scope them to this run.
        return [replace(j, key=f"{self.run_id}/{j.key}") for j in jobs]

    def _pattern_pools(self, r: int, patterns: list[Pattern], size: int = 8) -> dict[int, tuple[Example, ...]]:
        """Per pattern, the train items nearest (by embedding) to the validation failures behind
        it. Only train items reach the prompt; validation only steers which ones."""
        import numpy as np

        val = {x["item_id"]: x["input"] for x in self._previous_eval(r, "validation")}
        members: dict[int, list[str]] = {}
        for a in self.store.rows("analyses", self.run_id, r):
            if a["cluster"] is not None and a["item_id"] in val:
                members.setdefault(a["cluster"], []).append(val[a["item_id"]])
        train = self.p.splits.train
        train_vecs = self.engines.embedder().embed([ex.input for ex in train])
        pools = {}
        for p in patterns:
            if members.get(p.cluster):
                centre = self.engines.embedder().embed(members[p.cluster]).mean(axis=0)
                order = np.argsort(-(train_vecs @ centre), kind="stable")[:size]
                pools[p.cluster] = tuple(train[int(i)] for i in order)
        return pools

    def _generate(self, r: int, patterns: list[Pattern]) -> list[dict[str, Any]]:
        if self._stage(r, "generate"):
            jobs = self._jobs(r, patterns)
            have = {x["key"] for x in self.store.rows("candidates", self.run_id, r)}
            todo = [j for j in jobs if j.key not in have]
            pattern_ids = {x["cluster"]: x["id"] for x in self.store.rows("patterns", self.run_id, r)}
            tally = _Tally()

            def keep(c: Candidate) -> None:
                self.store.add_rows("candidates", [_candidate_row(self.run_id, r, c, pattern_ids)])
                self._check()

            run_jobs(_Counted(self.engines.teacher(), tally), todo, self.cfg.task, self.p.splits.train, self.cfg.loop.exemplars,
                     on_candidate=keep, report=self.report, round_=r, total=len(jobs), done=len(jobs) - len(todo))
            by_source = {s: sum(j.source == s for j in jobs) for s in {j.source for j in jobs}}
            self.store.write_stage(self.run_id, r, "generate", stats=tally.stats(len(jobs), **by_source))
        return self.store.rows("candidates", self.run_id, r)

    def _quality(self, r: int, candidates: list[dict[str, Any]]) -> int:
        from .quality import QualityControl

        if self._stage(r, "quality"):
            tally = _Tally()
            pool = [(x["key"], x["input"]) for x in self._accepted_rows(r - 1)]
            qc = QualityControl(teacher=_Counted(self.engines.teacher(), tally), judge=_Counted(self.engines.judge(), tally), embedder=self.engines.embedder(),
                                scorer=self.p.scorer, task=self.cfg.task, cfg=self.cfg.quality, train=self.p.splits.train,
                                held_out=self.p.splits.validation + self.p.splits.test, pool=pool, verifier=self.p.verifier,
                                guard=self.guard)
            verdicts = qc.review([_row_to_candidate(x) for x in candidates], report=self.report, round_=r)
            rows = [{"key": v.key, "verdict": "accepted" if v.accepted else "rejected", "reason": v.reason,
                     "judge_score": v.judge_score, **({} if v.output is None else {"output": v.output})}
                    for v in verdicts]
            n_ok = sum(v.accepted for v in verdicts)
            self.store.write_stage(self.run_id, r, "quality", rows={"candidates": rows},
                                   stats=tally.stats(len(rows), accepted=n_ok, rejected=len(rows) - n_ok,
                                                     reasons=_reason_counts(verdicts)))
            self.store.upsert_round(self.run_id, r, n_synthetic=len(rows), n_accepted=n_ok, n_rejected=len(rows) - n_ok)
        return sum(_effective(x) == "accepted" for x in self.store.rows("candidates", self.run_id, r))

    def _accepted_rows(self, up_to: int) -> list[dict[str, Any]]:
        """Accepted samples of rounds 1..up_to; a human verdict overrides the automatic one."""
        out: list[dict[str, Any]] = []
        for r in range(1, up_to + 1):
            out += [x for x in self.store.rows("candidates", self.run_id, r) if _effective(x) == "accepted"]
        return out

    def _accepted_pool(self, r: int) -> list[tuple[str, str]]:
        rows = self._accepted_rows(r)
        leaks = self.guard.check_all([x["input"] for x in rows])
        if leaks:  # quality control rejects these; only a human "accept" can bring one back
            first = rows[leaks[0][0]]
            raise PadaError(f"leakage guard: {len(leaks)} accepted samples match held-out items "
                            f"(e.g. candidate {first['id']} matches {leaks[0][1].split} item {leaks[0][1].item_id})",
                            hint="reject those samples (a human verdict), then resume the run")
        return [(x["input"], x["output"]) for x in rows]

    # -- training and evaluation

    def _train(self, r: int, synthetic: list[tuple[str, str]]) -> None:
        from .train import spec_for, train_student, training_examples

        tally = _Tally()
        examples = training_examples(self.cfg.task, self.p.splits.train, synthetic)
        out = self.workdir / f"round-{r}" / "adapter"
        out.parent.mkdir(parents=True, exist_ok=True)
        train_file = _write_jsonl(out.parent / "train.jsonl", [{"messages": [*ex.prompt_messages,
                                  {"role": "assistant", "content": ex.answer}]} for ex in examples])
        spec = spec_for(self.cfg.train, self.engines.student_dir(), examples, out)
        adapter = train_student(self.engines.trainer(), spec, report=self.report, round_=r, should_stop=self.should_stop)
        self._check()
        steps = [{"step": h.step, "loss": h.loss, "lr": h.lr, "tokens_per_s": h.tokens_per_s, "epoch": h.epoch,
                  "seconds": h.seconds} for h in adapter.history]
        weights = out / "adapter_model.safetensors"
        artifact = {"kind": "adapter", "path": str(out), "sha256": sha256_file(weights), "bytes": weights.stat().st_size,
                    "created_at": _now(), "meta_json": json.dumps({"steps": adapter.steps, "tokens": adapter.tokens})}
        train_set = {"kind": "train_set", "path": str(train_file), "sha256": sha256_file(train_file),
                     "bytes": train_file.stat().st_size, "created_at": _now(), "meta_json": json.dumps({"items": len(examples)})}
        self.store.write_stage(self.run_id, r, "train", rows={"train_steps": steps, "artifacts": [artifact, train_set]},
                               stats=tally.stats(len(examples), steps=adapter.steps, tokens=adapter.tokens,
                                                 backend=self.p.trainer))
        self.store.upsert_round(self.run_id, r, adapter_path=str(out), n_train=len(examples))

    def _eval(self, r: int, synthetic: list[tuple[str, str]]) -> None:
        tally = _Tally()
        adapter = Path(self._round_row(r)["adapter_path"])
        rows = self._eval_rows(self.engines.student(adapter), "trained", r, include_train=True)
        scores = {split: _acc(rows, split) for split in ("validation", "test", "train")}
        metrics = [{"name": "accuracy", "split": split, "value": v} for split, v in scores.items() if v is not None]
        metrics += self._pattern_metrics(r, rows)
        self.store.write_stage(self.run_id, r, "eval",
                               rows={"eval_items": [_eval_dict(x, "trained") for x in rows], "metrics": metrics},
                               stats=tally.stats(len(rows), **{k: v for k, v in scores.items()}))
        self.store.upsert_round(self.run_id, r, val_score=scores["validation"], test_score=scores["test"],
                                train_score=scores["train"])

    def _pattern_metrics(self, r: int, rows: list[EvalRow]) -> list[dict[str, Any]]:
        """Per pattern: the share of the validation failures behind it that this round fixed."""
        now = {x.item_id: x.score for x in rows if x.split == "validation"}
        by_cluster: dict[int, list[str]] = {}
        for a in self.store.rows("analyses", self.run_id, r):
            if a["cluster"] is not None:
                by_cluster.setdefault(a["cluster"], []).append(a["item_id"])
        out = []
        for p in self.store.rows("patterns", self.run_id, r):
            items = by_cluster.get(p["cluster"], [])
            if items:
                fixed = sum(now.get(i, 0.0) for i in items) / len(items)
                out.append({"name": "pattern_fixed", "split": "validation", "pattern_id": p["id"], "value": fixed})
        return out

    # -- decisions

    def _round_row(self, r: int) -> dict[str, Any]:
        return next(x for x in self.store.rounds(self.run_id) if x["round"] == r)

    def _close_round(self, r: int) -> None:
        seconds = sum(s["seconds"] or 0 for s in self.store.stages(self.run_id, r))
        self.store.upsert_round(self.run_id, r, status="done", finished_at=_now(), seconds=round(seconds, 2))

    def _stop_before(self, r: int) -> str | None:
        rounds = [x for x in self.store.rounds(self.run_id) if x["status"] == "done" and x["val_score"] is not None]
        if not rounds:
            return None
        last = rounds[-1]
        if last["val_score"] >= 1.0:
            return f"no validation failures left after round {last['round']}"
        best = max(rounds, key=lambda x: (x["val_score"], -x["round"]))
        if last["round"] - best["round"] >= self.cfg.loop.patience:
            return f"no better validation score for {self.cfg.loop.patience} rounds"
        return None

    def _finish(self, reason: str) -> None:
        rounds = [x for x in self.store.rounds(self.run_id) if x["val_score"] is not None]
        best = max(rounds, key=lambda x: (x["val_score"], -x["round"])) if rounds else None
        self.store.set_run(self.run_id, status="finished", finished_at=_now(), stop_reason=reason,
                           best_round=None if best is None else best["round"],
                           best_val=None if best is None else best["val_score"],
                           best_test=None if best is None else best["test_score"])
        self.report(Event("log", "run", message=f"finished: {reason}"))


# ---------------------------------------------------------------- helpers


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Written under a temporary name and renamed: never a half-written file under the final name."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    tmp.replace(path)
    return path


def _acc(rows: list[EvalRow], split: str) -> float | None:
    return accuracy([x for x in rows if x.split == split])


def _eval_dict(x: EvalRow, model: str) -> dict[str, Any]:
    return {"model": model, "split": x.split, "item_id": x.item_id, "input": x.input, "reference": x.reference,
            "prediction": x.prediction, "score": x.score}


def _row_to_eval(x: dict[str, Any]) -> EvalRow:
    return EvalRow(x["item_id"], x["split"], x["input"], x["reference"], x["prediction"] or "", x["score"])


def _candidate_row(run_id: str, r: int, c: Candidate, pattern_ids: dict[int, int]) -> dict[str, Any]:
    return {"key": c.key, "run_id": run_id, "round": r, "source": c.source,
            "pattern_id": None if c.pattern_cluster is None else pattern_ids.get(c.pattern_cluster),
            "origin_item_id": c.origin_item_id, "input": c.input, "output": c.output, "raw": c.raw,
            "verdict": "pending", "reason": c.parse_error, "created_at": _now(), "prompt": c.prompt}


def _row_to_candidate(x: dict[str, Any]) -> Candidate:
    unparsed = x["reason"] if x["verdict"] == "pending" and x["reason"] else None
    return Candidate(x["key"], x["source"], None, x["origin_item_id"], x["input"] or "", x["output"] or "",
                     x["raw"] or "", unparsed, "")


def _effective(x: dict[str, Any]) -> str:
    return x.get("human_verdict") or x["verdict"]


def _reason_counts(verdicts: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in verdicts:
        head = "accepted" if v.accepted else v.reason.split(":")[0]
        counts[head] = counts.get(head, 0) + 1
    return counts


# ---------------------------------------------------------------- entry points


def start(cfg: Config, *, report: Reporter = silent, should_stop: StopCheck | None = None,
          on_created: Callable[[str], None] | None = None) -> str:
    """Check everything, record the run, run it. Returns the run id."""
    prepared = preflight(cfg)
    for warning in prepared.report.warnings:
        report(Event("log", "data", message=f"warning: {warning}"))
    with RunStore(cfg.store) as store:
        run_id = store.create_run(name=cfg.name, task=cfg.task.name, strategy=cfg.loop.strategy,
                                  student=cfg.models.student, teacher=cfg.models.teacher, config=dump(cfg),
                                  seed=cfg.loop.seed, versions=versions())
        if on_created is not None:
            on_created(run_id)
        report(Event("log", "run", message=f"run {run_id} (store {cfg.store})"))
        return Orchestrator(prepared, store, run_id, report=report, should_stop=should_stop).run()


def resume(store_path: Path, run_id: str, *, report: Reporter = silent, should_stop: StopCheck | None = None) -> str:
    """Continue an interrupted run from its last finished stage, with its saved config."""
    with RunStore(store_path) as store:
        run_id = store.resolve_run_id(run_id)
        run = store.run(run_id)
        if run["status"] == "finished":
            raise PadaError(f"run {run_id} is already finished", hint=f"pada runs show {run_id}")
        if run["status"] == "running" and _alive(run.get("pid")) and run.get("pid") != os.getpid():
            raise PadaError(f"run {run_id} is still running (pid {run['pid']})", hint="stop it first, or wait")
        cfg = from_dict(json.loads(run["config_json"]), Path.cwd(), f"run {run_id} config")
        prepared = preflight(cfg)
        report(Event("log", "run", message=f"resuming run {run_id}"))
        return Orchestrator(prepared, store, run_id, report=report, should_stop=should_stop).run()


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def effective_status(run: dict[str, Any]) -> str:
    """A 'running' run whose process is gone was interrupted (kill -9, a crash, a reboot)."""
    if run["status"] == "running" and not _alive(run.get("pid")):
        return "interrupted"
    return run["status"]

