"""One method per step of a round: gather the step's inputs from the ledger, call its stage
(stages/), record what it made in one transaction with the step's done mark. Which steps run,
in which order, and when a run stops is the orchestrator's business (loop.py); how a step
decides is its stage's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..events import Event, Reporter
from ..leakage import LeakGuard
from ..ledger.run import RunLedger
from ..records import Analysis, Candidate, Clustering, EvalRow, Job, Pattern, Trust
from ..seeds import derive
from ..stages import analyze, balance, evaluate, generate, teachercheck, train
from ..stages.quality import QualityControl, review_round, student_confidence, unconfirmable
from .engines import Counted, Engines, Tally
from .preflight import Prepared

SKIPPED = ("skipped: nothing could accept a sample ({}). A teacher that passes its check, a task verifier "
           "or quality.unconfirmed: student would make samples count; loop.generate_unconfirmed: review "
           "generates them for a person to review")


class Steps:
    def __init__(self, prepared: Prepared, run: RunLedger, engines: Engines, report: Reporter,
                 should_stop: Callable[[], bool], check: Callable[[], None]) -> None:
        self.p, self.cfg, self.run, self.engines = prepared, prepared.cfg, run, engines
        self.report, self.should_stop, self.check = report, should_stop, check
        self.task, self.loop, self.train_set = prepared.cfg.task, prepared.cfg.loop, prepared.splits.train
        self.held_out = prepared.splits.validation + prepared.splits.test
        self.guard = LeakGuard(self.held_out, near=self.cfg.quality.dup_ngram)
        self.workdir = Path(self.cfg.workdir) / run.id

    def _teacher(self, tally: Tally) -> Counted:
        return Counted(self.engines.teacher(), tally)

    # -- evaluation and training

    def zero_shot(self) -> None:
        tally = Tally()
        rows = self._evaluate(self.engines.student(None), "zero-shot", 0, with_train=False)
        scores = evaluate.split_scores(rows, ("validation", "test"))
        tally.add_eval(rows)
        self.run.record_zero_shot(rows, tally.stats(len(rows), val=scores["validation"], test=scores["test"]),
                                  scores)

    def train(self, r: int) -> None:
        tally, samples = Tally(), self.run.accepted(r)
        self.guard.require_clean(samples)
        result, detail = train.train_round(
            self.engines.trainer(), self.cfg.train, self.task, self.engines.student_dir(), self.train_set,
            [(x.input, x.output) for x in samples], self.workdir / f"round-{r}" / "adapter",
            report=self.report, round_=r, should_stop=self.should_stop)
        self.check()
        self.run.record_training(r, result, tally.stats(result.n_train, backend=self.p.trainer, **detail))

    def eval(self, r: int) -> None:
        tally = Tally()
        rows = self._evaluate(self.engines.student(self.run.adapter(r)), "trained", r, with_train=True)
        scores = evaluate.split_scores(rows)
        tally.add_eval(rows)
        metrics = evaluate.round_metrics(rows, self.run.cluster_of(r), self.run.pattern_ids(r))
        self.run.record_eval(r, rows, metrics, tally.stats(len(rows), **scores), scores)

    def _evaluate(self, student: Any, model: str, r: int, with_train: bool) -> list[EvalRow]:
        s = self.p.splits
        parts = [("validation", s.validation), ("test", s.test)]
        parts += [("train", s.train)] if with_train else []
        judge = self.engines.judge() if self.task.scorer.kind == "judge" else None
        return evaluate.evaluate_splits(student, parts, self.task, self.p.scorer, judge=judge,
                                        options=self.p.options, model=model, report=self.report, round_=r,
                                        should_stop=self.should_stop)

    # -- patterns: analyses, clusters, names, strategies

    def analyze(self, r: int) -> None:
        failures = [x for x in self.run.eval_rows(r - 1, "validation") if x.failed]
        seed = self.loop.seed
        picked = analyze.sample_failures(failures, self.loop.analysis_cap, derive(seed, "sample_failures", r))
        tally = Tally()
        found = analyze.analyze_failures(self._teacher(tally), picked, self.task, seed=seed,
                                         report=self.report, round_=r, items=self.p.splits.validation)
        invalid = sum(not a.ok for a in found)
        stats = tally.stats(len(found), failures=len(failures), analysed=len(picked), invalid=invalid)
        self.run.record_analyses(r, found, stats)

    def cluster(self, r: int, usable: list[Analysis]) -> None:
        tally = Tally()
        found = analyze.cluster_analyses(self.engines.embedder(), usable, self.loop.k_max,
                                         derive(self.loop.seed, "cluster", r))
        self.run.record_clusters(r, usable, found, tally.stats(len(usable), k=found.k))

    def name_patterns(self, r: int, usable: list[Analysis], clustering: Clustering) -> None:
        tally = Tally()
        named = analyze.describe_patterns(self._teacher(tally), usable, clustering.labels, self.task,
                                          self.guard, seed=self.loop.seed, report=self.report, round_=r)
        self.run.record_patterns(r, named, tally.stats(len(named)))

    def draft_strategies(self, r: int) -> None:
        tally = Tally()
        drafted, replaced = analyze.draft_strategies(self._teacher(tally), self.run.patterns(r), self.task,
                                                     self.train_set, self.loop.exemplars, self.guard,
                                                     seed=self.loop.seed, report=self.report, round_=r)
        replaced_texts = {"replaced": replaced} if replaced else {}  # the teacher's own, kept
        self.run.record_strategies(r, drafted, tally.stats(len(drafted), **replaced_texts))

    # -- the teacher check, generation and quality control

    def teacher_check(self) -> None:
        """Checked once per run, in round 1, before generation."""
        q, tally = self.cfg.quality, Tally()
        judge = Counted(self.engines.judge(), tally) if self.cfg.models.judge is not None else None
        checks = teachercheck.run_checks(
            self._teacher(tally), judge, self.train_set, self.task, self.p.scorer, n=q.teacher_check,
            seed=self.loop.seed, baseline=self.run.round(0)["val_score"] or 0.0, margin=q.teacher_margin,
            sound=q.teacher_pass, report=self.report, round_=1)
        for c in checks:
            self.report(Event("log", "teacher check", 1, message=c.line()))
        self.run.mark_stage(1, "teacher_check", tally.stats(sum(c.n for c in checks),
                                                            **{c.role: c.stats() for c in checks}))

    def generate(self, r: int, patterns: list[Pattern], trust: Trust) -> None:
        jobs, tally = self._jobs(r, patterns), Tally()
        why = unconfirmable(self.cfg.quality, trust, self.p.verifier is not None, jobs)
        if why is not None and self.loop.generate_unconfirmed == "skip":
            self.report(Event("log", "generate", r, message=SKIPPED.format(why)))
            self.run.mark_stage(r, "generate", tally.stats(0, skipped=why))
            return
        have, pattern_ids = self.run.candidate_keys(r), self.run.pattern_ids(r)

        def keep(c: Candidate) -> None:  # stored as it is made: a resumed round makes what is missing
            self.run.add_candidate(r, c, pattern_ids)
            self.check()

        generate.run_jobs(self._teacher(tally), jobs, self.task, self.train_set, self.loop.exemplars,
                          on_candidate=keep, have=have, report=self.report, round_=r)
        by_source = {s: sum(j.source == s for j in jobs) for s in {j.source for j in jobs}}
        self.run.mark_stage(r, "generate", tally.stats(len(jobs), **by_source))

    def _jobs(self, r: int, patterns: list[Pattern]) -> list[Job]:
        train, validation = self.train_set, self.run.eval_rows(r - 1, "validation")
        clusters = self.run.cluster_of(r) if patterns else {}
        pools = generate.pattern_pools(self.engines.embedder(), patterns, validation, clusters, train) \
            if patterns else {}
        answers = generate.answers_for(self.task, self.loop, self.p.scorer, self.p.verifier is not None,
                                       train, validation, clusters, self._label_mix(r))
        failed = [x for x in self.run.eval_rows(r - 1, "train") if x.failed]
        return generate.plan_round(self.loop, r, patterns, failed, train, pools, answers, scope=self.run.id)

    def quality(self, r: int, trust: Trust) -> None:
        tally, earlier = Tally(), self.run.accepted(r - 1)
        # Reviewed in plan order whatever order a server answered in: of two near-copies the
        # duplicate check keeps the first.
        candidates = sorted(self.run.candidates(r), key=lambda c: generate.job_order(c.key))
        if not candidates:  # generation was skipped (or made nothing): no model to load for it
            self.run.record_verdicts(r, [], tally.stats(0, accepted=0, rejected=0, reasons={}))
            return
        qc = self._quality_control(r, trust, tally, candidates, [(x.key, x.input) for x in earlier])
        verdicts, detail = review_round(qc, candidates, self._label_mix(r), report=self.report, round_=r)
        self.run.record_verdicts(r, verdicts, tally.stats(len(verdicts), **detail))

    def _label_mix(self, r: int) -> balance.LabelMix | None:
        """The bound round r's training-set label mix is kept within (label and choice tasks)."""
        train, earlier = [ex.output for ex in self.train_set], [x.output for x in self.run.accepted(r - 1)]
        return balance.label_mix_for(self.task.scorer.kind, self.p.scorer, train, earlier,
                                     self.cfg.quality.max_label_tv, derive(self.loop.seed, "balance", r))

    def _quality_control(self, r: int, trust: Trust, tally: Tally, candidates: list[Candidate],
                         pool: list[tuple[str, str]]) -> QualityControl:
        return QualityControl(
            teacher=self._teacher(tally), judge=Counted(self.engines.judge(), tally),
            embedder=self.engines.embedder(), scorer=self.p.scorer, task=self.task, cfg=self.cfg.quality,
            train=self.train_set, held_out=self.held_out, pool=pool, verifier=self.p.verifier,
            guard=self.guard, trust=trust, student_p=self._student_confidence(r, trust, candidates))

    def _student_confidence(self, r: int, trust: Trust,
                            candidates: list[Candidate]) -> dict[str, float] | None:
        """With an untrusted teacher and `unconfirmed: student`, the previous round's student
        weighs the labels the jobs chose."""
        if trust.teacher or self.cfg.quality.unconfirmed != "student" or \
                not any(c.target is not None for c in candidates):
            return None
        options = self.p.options or self.p.scorer.options([ex.output for ex in self.train_set])
        return student_confidence(self.engines.student(self.run.adapter(r - 1)), self.task,
                                          self.p.scorer, candidates, options, report=self.report, round_=r)
