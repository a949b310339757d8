"""The orchestrator: sequences the stages and makes the loop's decisions; nothing else.

Stages compute (evaluate, analyze, generate, quality, train), engines.py builds the models,
and the run ledger (runs.py) stores every result: each stage's rows land in one transaction
together with its "done" mark, so a run stopped anywhere (Ctrl-C, a crash, kill -9) resumes
from the last finished stage. Generation is finer still: each sample is stored as it is made,
under a stable key.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .analyze import analyze_failures, cluster, draft_strategies, name_patterns, sample_failures
from .config import Config, dump, from_dict
from .data import DataReport, Example, Splits, check_splits, load_splits
from .engines import Counted, Engines, Tally, versions
from .errors import Cancelled, ConfigError, PadaError
from .evaluate import accuracy, evaluate
from .events import Event, Reporter, silent
from .files import now, sha256_file, write_jsonl
from .generate import Answers, job_order, plan_jobs, run_jobs
from .keywords import group_texts, with_keywords
from .leakage import LeakGuard
from .quality import Trust
from .records import Analysis, Candidate, Clustering, EvalRow, Job, Pattern, Verdict
from .runs import Ledger, effective_status
from .scoring import Scorer
from .seeds import derive
from .tasks import get_verifier

StopCheck = Callable[[], bool]

__all__ = ["Orchestrator", "Prepared", "effective_status", "preflight", "resume", "start"]


# ---------------------------------------------------------------- preflight (no models loaded)


@dataclass
class Prepared:
    cfg: Config
    splits: Splits
    report: DataReport
    scorer: Scorer
    verifier: Callable[[str], str | None] | None
    trainer: str
    options: list[str] | None = None  # the answers weighed in log-likelihood scoring
    warnings: list[str] = field(default_factory=list)  # said once before the run starts


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
    student = models.resolve_student(cfg.models.student)
    models.resolve_embedder(cfg.models.embedder)
    endpoint_warnings: list[str] = []
    if cfg.loop.strategy != "none" and cfg.loop.rounds > 0 or cfg.task.scorer.kind == "judge":
        endpoint_warnings += _check_teacher(cfg, "teacher")
        if cfg.models.judge is not None:
            endpoint_warnings += _check_teacher(cfg, "judge")
    trainer, _ = choose_trainer(cfg.train.backend)
    problems = trainer_problems(trainer, cfg.train)
    if problems:
        raise ConfigError(f"train: the '{trainer}' backend cannot honour: " + "; ".join(problems),
                          hint="change those fields or train.backend")
    options = None
    if cfg.task.scorer.effective_mode == "loglik":
        options = scorer.options([ex.output for ex in splits.train])
    warnings = list(report.warnings) + _length_warnings(cfg, splits, models.tokenizer_source(student))
    warnings += endpoint_warnings
    return Prepared(cfg, splits, report, scorer, verifier, trainer, options, warnings)


def _check_teacher(cfg: Config, role: str) -> list[str]:
    """A GGUF teacher must exist; a served one must answer a capability probe (the server answers,
    serves the model, honours one tiny schema request). Warnings for plain http elsewhere."""
    from . import models

    endpoint = cfg.models.judge_endpoint if role == "judge" else cfg.models.teacher_endpoint
    if endpoint is None:
        name = cfg.models.judge if role == "judge" else cfg.models.teacher
        models.resolve_teacher(name or cfg.models.teacher, role=role)
        return []
    from .backends.openai_endpoint import OpenAIGenerator, url_warnings

    gen = OpenAIGenerator(endpoint.base_url, endpoint.model, api_key_env=endpoint.api_key_env,
                          timeout=endpoint.timeout, retries=min(endpoint.retries, 1), backoff=0.5)
    try:
        gen.probe()
    finally:
        gen.close()
    return url_warnings(endpoint.base_url)


def _length_warnings(cfg: Config, splits: Splits, tokenizer: Path) -> list[str]:
    """Training examples longer than train.max_length are left out, not cut: say so up front."""
    from .backends.lengths import truncation_report
    from .train import training_examples

    found = truncation_report(tokenizer, training_examples(cfg.task, splits.train, []), cfg.train.max_length)
    return [] if found.warning is None else [found.warning]


# ---------------------------------------------------------------- the orchestrator


class Orchestrator:
    def __init__(self, prepared: Prepared, ledger: Ledger, run_id: str, *, report: Reporter = silent,
                 should_stop: StopCheck | None = None) -> None:
        self.p, self.cfg, self.ledger, self.run_id = prepared, prepared.cfg, ledger, run_id
        self.report = report
        self.should_stop = should_stop or (lambda: False)
        self.engines = Engines(self.cfg, prepared.trainer, report)
        held_out = prepared.splits.validation + prepared.splits.test
        self.guard = LeakGuard(held_out, near=self.cfg.quality.dup_ngram)
        self.workdir = Path(self.cfg.workdir) / run_id

    # -- public

    def run(self) -> str:
        self.ledger.mark_running(self.run_id)
        try:
            reason = self._rounds()
        except Cancelled:
            self.ledger.mark_stopped(self.run_id, "cancelled")
            raise
        except KeyboardInterrupt:
            self.ledger.mark_stopped(self.run_id, "interrupted")
            raise
        except Exception as err:
            self.ledger.mark_stopped(self.run_id, "failed", error=f"{type(err).__name__}: {err}")
            raise
        finally:
            self.engines.close()
        self.ledger.finish(self.run_id, reason)
        self.report(Event("log", "run", message=f"finished: {reason}"))
        return self.run_id

    def _rounds(self) -> str:
        self._round0()
        loop = self.cfg.loop
        # `none` has nothing to add after round 0, except in a comparison, where it trains as
        # many models as the other strategies (one per round, each with that round's seed).
        rounds = loop.rounds if loop.strategy != "none" or loop.fixed_rounds else 0
        for r in range(1, rounds + 1):
            reason = None if loop.fixed_rounds else self._stop_before(r)
            if reason is not None:
                return reason
            if not self._round(r):
                return f"round {r} accepted no samples"
        return (None if loop.fixed_rounds else self._stop_before(rounds + 1)) or f"{rounds} rounds done"

    def _check(self) -> None:
        if self.should_stop():
            raise Cancelled("cancelled by the user; `pada run --resume " + self.run_id + "` continues")

    def _stage(self, r: int, name: str) -> bool:
        """True when the stage still has to run (resume skips finished stages)."""
        self._check()
        done = self.ledger.stage_done(self.run_id, r, name)
        if done:
            self.report(Event("log", name, r, message="already done (resumed)"))
        return not done

    # -- round 0: zero-shot, then LoRA on D_train alone

    def _round0(self) -> None:
        self.ledger.open_round(self.run_id, 0)
        if self._stage(0, "zero_shot"):
            self._zero_shot()
        if self._stage(0, "train"):
            self._train(0, [])
        if self._stage(0, "eval"):
            self._eval(0)
        self.ledger.close_round(self.run_id, 0)

    def _zero_shot(self) -> None:
        tally = Tally()
        rows = self._eval_rows(self.engines.student(None), "zero-shot", 0, include_train=False)
        val, test = _acc(rows, "validation"), _acc(rows, "test")
        tally.add_eval(rows)
        self.ledger.record_zero_shot(self.run_id, rows, tally.stats(len(rows), val=val, test=test), val, test)

    def _eval_rows(self, student: Any, model: str, r: int, include_train: bool) -> list[EvalRow]:
        s = self.p.splits
        rows: list[EvalRow] = []
        parts = [("validation", s.validation), ("test", s.test)]
        parts += [("train", s.train)] if include_train else []
        for split, items in parts:
            if items:
                judge = self.engines.judge() if self.cfg.task.scorer.kind == "judge" else None
                rows += evaluate(student, items, self.cfg.task, self.p.scorer, judge=judge,
                                 options=self.p.options, report=self.report,
                                 stage=f"eval {split} ({model})", round_=r, should_stop=self.should_stop)
        return rows

    # -- rounds 1..T

    def _round(self, r: int) -> bool:
        """One round; False when it accepted nothing and the run stops there."""
        self.ledger.open_round(self.run_id, r)
        note = None
        if self.cfg.loop.strategy != "none":
            patterns = self._patterns(r) if self.cfg.loop.strategy == "pada" else []
            trust = self._teacher_check(r)
            self._generate(r, patterns)
            if self._quality(r, trust) == 0:
                if not self.cfg.loop.fixed_rounds:
                    self.ledger.stop_round(self.run_id, r, "no samples accepted")
                    return False
                note = "no samples accepted: retrained on the previous set"
        synthetic = self._accepted_pool(r)
        if self._stage(r, "train"):
            self._train(r, synthetic)
        if self._stage(r, "eval"):
            self._eval(r)
        self.ledger.close_round(self.run_id, r, note)
        return True

    def _patterns(self, r: int) -> list[Pattern]:
        analyses = self._analyses(r)
        clustering = self._clusters(r, analyses)
        if self._stage(r, "patterns"):
            self._name_patterns(r, analyses, clustering)
        if self._stage(r, "strategies"):
            self._strategies(r)
        return self.ledger.patterns(self.run_id, r)

    def _analyses(self, r: int) -> list[Analysis]:
        if self._stage(r, "analyze"):
            failures = [x for x in self.ledger.eval_rows(self.run_id, r - 1, "validation") if x.score == 0]
            picked = sample_failures(failures, self.cfg.loop.analysis_cap, self._seed("sample_failures", r))
            tally = Tally()
            result = analyze_failures(self._teacher(tally), picked, self.cfg.task, seed=self.cfg.loop.seed,
                                      report=self.report, round_=r, items=self.p.splits.validation)
            invalid = sum(not a.ok for a in result)
            stats = tally.stats(len(result), failures=len(failures), analysed=len(picked), invalid=invalid)
            self.ledger.record_analyses(self.run_id, r, result, stats)
        return self.ledger.analyses(self.run_id, r)

    def _clusters(self, r: int, analyses: list[Analysis]) -> Clustering:
        usable = [a for a in analyses if a.ok]
        if self._stage(r, "cluster"):
            tally = Tally()
            vectors = self.engines.embedder().embed([a.text for a in usable])
            result = cluster(vectors, self.cfg.loop.k_max, self._seed("cluster", r)) if usable else \
                Clustering([], 0, {})
            self.ledger.record_clusters(self.run_id, r, usable, result, tally.stats(len(usable), k=result.k))
        stored = self.ledger.cluster_of(self.run_id, r)
        labels = [stored[a.item_id] for a in usable]
        return Clustering(labels, len(set(labels)), {})

    def _name_patterns(self, r: int, analyses: list[Analysis], clustering: Clustering) -> None:
        usable = [a for a in analyses if a.ok]
        tally = Tally()
        found = [] if not usable else name_patterns(
            self._teacher(tally), usable, clustering.labels, self.cfg.task,
            seed=self.cfg.loop.seed, report=self.report, round_=r)
        safe = [replace(p, name=self._safe(p.name, f"pattern {p.cluster}"),
                        description=self._safe(p.description, "(withheld: it quoted a held-out item)"))
                for p in found]
        # Keywords come from the analyses alone; a word that is a held-out item is dropped.
        groups = group_texts([a.text for a in usable], clustering.labels)
        named = with_keywords(safe, groups, allowed=lambda w: not self.guard.find(w)
                              and self.guard.scrub(w) == w)
        self.ledger.record_patterns(self.run_id, r, named, tally.stats(len(named)))

    def _strategies(self, r: int) -> None:
        patterns = self.ledger.patterns(self.run_id, r)
        rng = random.Random(self._seed("strategy_exemplars", r))
        exemplars = rng.sample(self.p.splits.train, min(self.cfg.loop.exemplars, len(self.p.splits.train)))
        tally = Tally()
        drafted = draft_strategies(self._teacher(tally), patterns, self.cfg.task, exemplars,
                                   seed=self.cfg.loop.seed, report=self.report, round_=r)
        fallback = "Write new questions like the training examples that exercise: {}."
        safe = [replace(p, strategy=self._safe(p.strategy, fallback.format(p.name))) for p in drafted]
        self.ledger.record_strategies(self.run_id, r, safe, tally.stats(len(safe)))

    def _safe(self, text: str, fallback: str) -> str:
        """Teacher text with any held-out item removed; withheld entirely if a near copy stays."""
        scrubbed = self.guard.scrub(text)
        return fallback if self.guard.find(scrubbed) else scrubbed

    def _seed(self, purpose: str, r: int) -> int:
        return derive(self.cfg.loop.seed, purpose, r)

    def _teacher(self, tally: Tally) -> Counted:
        return Counted(self.engines.teacher(), tally)

    # -- the teacher check (once per run, before round 1's generation)

    def _teacher_check(self, r: int) -> Trust:
        """Is the teacher (and a separate judge) good enough for its word to decide a sample?"""
        from .teachercheck import check_judge, check_teacher, from_stats, pick

        q = self.cfg.quality
        if q.teacher_check == 0 or self.cfg.task.scorer.kind == "judge":
            return Trust()  # no check asked for (or no scorer to check with): trusted as before
        first = 1  # checked once per run, before round 1's generation; later rounds read it
        # A later round reads round 1's check quietly (it is not a resumed stage of its own).
        todo = self._stage(first, "teacher_check") if r == first else \
            not self.ledger.stage_done(self.run_id, first, "teacher_check")
        if todo:
            tally = Tally()
            items = pick(self.p.splits.train, q.teacher_check, self._seed("teacher_check", 0))
            student = self.ledger.round(self.run_id, 0)["val_score"] or 0.0
            checks = [check_teacher(self._teacher(tally), items, self.cfg.task, self.p.scorer,
                                    baseline=student, margin=q.teacher_margin, report=self.report,
                                    round_=first)]
            if self.cfg.models.judge is not None:
                checks.append(check_judge(Counted(self.engines.judge(), tally), items, self.cfg.task,
                                          self.p.scorer, self.p.splits.train, margin=q.teacher_margin,
                                          seed=self._seed("judge_check", 0), report=self.report,
                                          round_=first))
            for c in checks:
                self.report(Event("log", "teacher check", first, message=c.line()))
            stats = tally.stats(sum(c.n for c in checks), **{c.role: c.stats() for c in checks})
            self.ledger.mark_stage(self.run_id, first, "teacher_check", stats)
        detail = self.ledger.stage_detail(self.run_id, first, "teacher_check") or {}
        teacher = from_stats(detail["teacher"])
        judge = from_stats(detail["judge"]) if "judge" in detail else teacher
        return Trust(teacher.trusted, judge.trusted, teacher.line())

    # -- generation and quality control

    def _jobs(self, r: int, patterns: list[Pattern]) -> list[Job]:
        train_failures = [x for x in self.ledger.eval_rows(self.run_id, r - 1, "train") if x.score == 0]
        budget = self.cfg.loop.budget if self.cfg.loop.budget is not None else len(self.p.splits.train)
        pools = self._pattern_pools(r, patterns) if patterns else {}
        jobs = plan_jobs(self.cfg.loop.strategy, r, budget, patterns, train_failures, self.p.splits.train,
                         self.cfg.loop.seed, pools, self._answers(r, patterns),
                         exemplar_sets=self.cfg.loop.exemplar_sets)
        # Candidate keys are unique across the whole store: scope them to this run.
        return [replace(j, key=f"{self.run_id}/{j.key}") for j in jobs]

    def _answers(self, r: int, patterns: list[Pattern]) -> Answers:
        """Who decides a sample's answer: a label picked first (label and choice tasks), an
        evaluated expression (numeric tasks), else the teacher."""
        kind, loop = self.cfg.task.scorer.kind, self.cfg.loop
        if kind == "numeric" and loop.computed_answers and self.p.verifier is None:
            return Answers("computed")  # (a task verifier knows the answer: it decides instead)
        if kind not in ("label", "choice") or not loop.label_first:
            return Answers()
        # Pattern jobs take the labels of the validation failures behind their pattern (the
        # references only: no validation text reaches a prompt).
        refs = {x.item_id: x.reference for x in self.ledger.eval_rows(self.run_id, r - 1, "validation")}
        behind: dict[int, list[str]] = {}
        for item_id, c in (self.ledger.cluster_of(self.run_id, r).items() if patterns else ()):
            if item_id in refs:
                behind.setdefault(c, []).append(refs[item_id])
        return Answers("label", self._label_of(), behind)

    def _label_of(self) -> Callable[[str], str | None]:
        """A reference -> the label as the training references spell it."""
        spelled = {self.p.scorer.extract(o): o for o in self.p.scorer.options(
            [ex.output for ex in self.p.splits.train])}
        return lambda ref: spelled.get(self.p.scorer.extract(ref))

    def _pattern_pools(self, r: int, patterns: list[Pattern],
                       size: int = 8) -> dict[int, tuple[Example, ...]]:
        """Per pattern, the train items nearest (by embedding) to the validation failures behind
        it. Only train items reach the prompt; validation only steers which ones."""
        import numpy as np

        val = {x.item_id: x.input for x in self.ledger.eval_rows(self.run_id, r - 1, "validation")}
        members: dict[int, list[str]] = {}
        for item_id, c in self.ledger.cluster_of(self.run_id, r).items():
            if item_id in val:
                members.setdefault(c, []).append(val[item_id])
        train = self.p.splits.train
        train_vecs = self.engines.embedder().embed([ex.input for ex in train])
        pools = {}
        for p in patterns:
            if members.get(p.cluster):
                centre = self.engines.embedder().embed(members[p.cluster]).mean(axis=0)
                order = np.argsort(-(train_vecs @ centre), kind="stable")[:size]
                pools[p.cluster] = tuple(train[int(i)] for i in order)
        return pools

    def _generate(self, r: int, patterns: list[Pattern]) -> None:
        if not self._stage(r, "generate"):
            return
        jobs = self._jobs(r, patterns)
        have = self.ledger.candidate_keys(self.run_id, r)
        todo = [j for j in jobs if j.key not in have]
        pattern_ids = self.ledger.pattern_ids(self.run_id, r)
        tally = Tally()

        def keep(c: Candidate) -> None:
            self.ledger.add_candidate(self.run_id, r, c, pattern_ids)
            self._check()

        run_jobs(self._teacher(tally), todo, self.cfg.task, self.p.splits.train, self.cfg.loop.exemplars,
                 on_candidate=keep, report=self.report, round_=r, total=len(jobs), done=len(jobs) - len(todo))
        by_source = {s: sum(j.source == s for j in jobs) for s in {j.source for j in jobs}}
        self.ledger.mark_stage(self.run_id, r, "generate", tally.stats(len(jobs), **by_source))

    def _quality(self, r: int, trust: Trust) -> int:
        """Review the round's candidates (once); the number accepted, human verdicts applied."""
        from .quality import QualityControl

        if self._stage(r, "quality"):
            tally = Tally()
            pool = [(x.key, x.input) for x in self.ledger.accepted(self.run_id, r - 1)]
            candidates = sorted(self.ledger.candidates(self.run_id, r), key=lambda c: job_order(c.key))
            student_p = self._student_confidence(r, candidates) \
                if not trust.teacher and self.cfg.quality.unconfirmed == "student" else None
            qc = QualityControl(teacher=self._teacher(tally), judge=Counted(self.engines.judge(), tally),
                                embedder=self.engines.embedder(), scorer=self.p.scorer, task=self.cfg.task,
                                cfg=self.cfg.quality, train=self.p.splits.train,
                                held_out=self.p.splits.validation + self.p.splits.test, pool=pool,
                                verifier=self.p.verifier, guard=self.guard, trust=trust, student_p=student_p)
            verdicts = qc.review(candidates, report=self.report, round_=r)
            verdicts, mix = self._balance(r, candidates, verdicts)
            n_ok = sum(v.accepted for v in verdicts)
            stats = tally.stats(len(verdicts), accepted=n_ok, rejected=len(verdicts) - n_ok,
                                reasons=_reason_counts(verdicts), **mix)
            self.ledger.record_verdicts(self.run_id, r, verdicts, stats)
        return len(self.ledger.accepted(self.run_id, r, since=r))

    def _student_confidence(self, r: int, candidates: Sequence[Candidate]) -> dict[str, float]:
        """Label-first candidates, weighed by the previous round's student (quality.unconfirmed:
        student)."""
        from .quality import student_confidence

        if not any(c.target is not None for c in candidates):
            return {}
        options = self.p.options or self.p.scorer.options([ex.output for ex in self.p.splits.train])
        student = self.engines.student(Path(self.ledger.round(self.run_id, r - 1)["adapter_path"]))
        return student_confidence(student, self.cfg.task, self.p.scorer, candidates, options,
                                  report=self.report, round_=r)

    def _balance(self, r: int, candidates: Sequence[Candidate],
                 verdicts: list[Verdict]) -> tuple[list[Verdict], dict[str, Any]]:
        """Label and choice tasks: keep the training set's label mix near D_train's by dropping a
        seeded choice of surplus samples (each rejected with that reason)."""
        from .balance import rebalance

        if self.cfg.task.scorer.kind not in ("label", "choice"):
            return verdicts, {}
        label = self._label_of()
        outputs = {c.key: c.output for c in candidates}
        new = [(v.key, label(v.output or outputs[v.key]) or "?") for v in verdicts if v.accepted]
        found = rebalance([label(ex.output) or "?" for ex in self.p.splits.train],
                          [label(x.output) or "?" for x in self.ledger.accepted(self.run_id, r - 1)], new,
                          self.cfg.quality.max_label_tv, self._seed("balance", r))
        why = "label balance: dropped to keep the label mix within TV {:g} of D_train's ({} surplus)"
        bound = self.cfg.quality.max_label_tv
        out = [replace(v, accepted=False, reason=why.format(bound, found.dropped[v.key]))
               if v.key in found.dropped else v for v in verdicts]
        if found.dropped:
            self.report(Event("log", "quality", r, message=f"label balance: dropped {len(found.dropped)} "
                              f"samples (TV {found.before:.2f} -> {found.after:.2f})"))
        return out, found.stats()

    def _accepted_pool(self, r: int) -> list[tuple[str, str]]:
        samples = self.ledger.accepted(self.run_id, r)
        leaks = self.guard.check_all([x.input for x in samples])
        if leaks:  # quality control rejects these; only a human "accept" can bring one back
            first, hit = samples[leaks[0][0]], leaks[0][1]
            raise PadaError(f"leakage guard: {len(leaks)} accepted samples match held-out items "
                            f"(e.g. candidate {first.id} matches {hit.split} item {hit.item_id})",
                            hint="reject those samples (a human verdict), then resume the run")
        return [(x.input, x.output) for x in samples]

    # -- training and evaluation

    def _train(self, r: int, synthetic: list[tuple[str, str]]) -> None:
        from .backends.device import reset_peak, training_detail
        from .backends.hf import pick_device
        from .train import spec_for, train_student, training_examples

        tally = Tally()
        examples = training_examples(self.cfg.task, self.p.splits.train, synthetic)
        out = self.workdir / f"round-{r}" / "adapter"
        out.parent.mkdir(parents=True, exist_ok=True)
        spec = spec_for(self.cfg.train, self.engines.student_dir(), examples, out, round_=r)
        reset_peak(pick_device())  # the stage records its own peak, not the evaluation's
        adapter = train_student(self.engines.trainer(), spec, report=self.report, round_=r,
                                should_stop=self.should_stop)
        self._check()
        # The recorded training set is what the trainer kept (too-long examples are left out).
        dropped = set(adapter.dropped_ids)
        kept = [ex for ex in examples if ex.id not in dropped]
        chats = [{"messages": [*ex.prompt_messages, {"role": "assistant", "content": ex.answer}]}
                 for ex in kept]
        train_file = write_jsonl(out.parent / "train.jsonl", chats)
        steps = [{"step": h.step, "loss": h.loss, "lr": h.lr, "tokens_per_s": h.tokens_per_s,
                  "epoch": h.epoch, "seconds": h.seconds} for h in adapter.history]
        artifacts = [_artifact("adapter", out, out / "adapter_model.safetensors",
                               {"steps": adapter.steps, "tokens": adapter.tokens}),
                     _artifact("train_set", train_file, train_file, {"items": len(kept)})]
        # tokens: the examples' own; padded_tokens: all the model processed (0: not counted)
        stats = tally.stats(len(kept), steps=adapter.steps, tokens=adapter.tokens,
                            padded_tokens=adapter.padded_tokens, backend=self.p.trainer,
                            dropped=adapter.dropped, dropped_ids=list(adapter.dropped_ids[:3]),
                            **training_detail(out))  # device, numeric types, peak memory
        self.ledger.record_training(self.run_id, r, steps, artifacts, stats, out, len(kept))

    def _eval(self, r: int) -> None:
        tally = Tally()
        adapter = Path(self.ledger.round(self.run_id, r)["adapter_path"])
        rows = self._eval_rows(self.engines.student(adapter), "trained", r, include_train=True)
        scores = {split: _acc(rows, split) for split in ("validation", "test", "train")}
        tally.add_eval(rows)
        metrics = [{"name": "accuracy", "split": split, "value": v}
                   for split, v in scores.items() if v is not None]
        metrics += self._pattern_metrics(r, rows)
        self.ledger.record_eval(self.run_id, r, rows, metrics, tally.stats(len(rows), **scores), scores)

    def _pattern_metrics(self, r: int, rows: list[EvalRow]) -> list[dict[str, Any]]:
        """Per pattern: the share of the validation failures behind it that this round fixed."""
        now_ = {x.item_id: x.score for x in rows if x.split == "validation"}
        by_cluster: dict[int, list[str]] = {}
        for item_id, c in self.ledger.cluster_of(self.run_id, r).items():
            by_cluster.setdefault(c, []).append(item_id)
        out = []
        for cluster_id, pattern_id in self.ledger.pattern_ids(self.run_id, r).items():
            items = by_cluster.get(cluster_id, [])
            if items:
                fixed = sum(now_.get(i, 0.0) for i in items) / len(items)
                out.append({"name": "pattern_fixed", "split": "validation", "pattern_id": pattern_id,
                            "value": fixed})
        return out

    # -- decisions

    def _stop_before(self, r: int) -> str | None:
        from .runs import best_round

        rounds = self.ledger.done_rounds(self.run_id)
        if not rounds:
            return None
        last = rounds[-1]
        if last["val_score"] >= 1.0:
            return f"no validation failures left after round {last['round']}"
        best = best_round(rounds)
        if best is not None and last["round"] - best["round"] >= self.cfg.loop.patience:
            return f"no better validation score for {self.cfg.loop.patience} rounds"
        return None


# ---------------------------------------------------------------- helpers


def _acc(rows: list[EvalRow], split: str) -> float | None:
    return accuracy([x for x in rows if x.split == split])


def _artifact(kind: str, path: Path, weights: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """An artifact row: the file that identifies it, with its checksum and size."""
    import json

    return {"kind": kind, "path": str(path), "sha256": sha256_file(weights), "bytes": weights.stat().st_size,
            "created_at": now(), "meta_json": json.dumps(meta)}


def _reason_counts(verdicts: Sequence[Verdict]) -> dict[str, int]:
    """Rejections counted by kind ("duplicate of train item 7 (0.99)" counts as "duplicate")."""
    counts: dict[str, int] = {}
    for v in verdicts:
        head = "accepted" if v.accepted else v.reason.split(":")[0]
        head = "duplicate" if head.startswith("duplicate of ") else head
        counts[head] = counts.get(head, 0) + 1
    return counts


# ---------------------------------------------------------------- entry points


def start(cfg: Config, *, report: Reporter = silent, should_stop: StopCheck | None = None,
          on_created: Callable[[str], None] | None = None) -> str:
    """Check everything, record the run, run it. Returns the run id."""
    prepared = preflight(cfg)
    for note in prepared.report.notes:  # how each split was read ("read as Alpaca: 300 records")
        report(Event("log", "data", message=note))
    for warning in prepared.warnings:
        report(Event("log", "data", message=f"warning: {warning}"))
    with Ledger.open(cfg.store) as ledger:
        run_id = ledger.create_run(config=dump(cfg), versions=versions())
        if on_created is not None:
            on_created(run_id)
        report(Event("log", "run", message=f"run {run_id} (store {cfg.store})"))
        return Orchestrator(prepared, ledger, run_id, report=report, should_stop=should_stop).run()


def resume(store_path: Path, run_id: str, *, report: Reporter = silent,
           should_stop: StopCheck | None = None) -> str:
    """Continue an interrupted run from its last finished stage, with its saved config."""
    with Ledger.open_existing(store_path) as ledger:
        run_id = ledger.resolve(run_id)
        ledger.check_resumable(run_id)
        cfg = from_dict(ledger.config(run_id), Path.cwd(), f"run {run_id} config")
        prepared = preflight(cfg)
        report(Event("log", "run", message=f"resuming run {run_id}"))
        return Orchestrator(prepared, ledger, run_id, report=report, should_stop=should_stop).run()
