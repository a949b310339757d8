"""The orchestrator: sequences a run's rounds and their steps, and decides when the run stops;
nothing else.

Each step (steps.py) gathers its inputs from the run ledger, calls its stage (stages/) and
records the result in one transaction together with its "done" mark, so a run stopped anywhere
(Ctrl-C, a crash, kill -9) resumes from the last finished step: the orchestrator skips what is
done. Generation is finer still: each sample is stored as it is made, under a stable key.
preflight.py checks everything before a model loads; engines.py builds the models.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config import Config, dump, from_dict
from ..errors import Cancelled
from ..events import Event, Reporter, silent
from ..ledger.rules import best_round
from ..ledger.runs import Ledger
from ..records import Clustering, Pattern, Trust
from ..stages import teachercheck
from .engines import Engines, versions
from .preflight import Prepared, preflight
from .steps import Steps

StopCheck = Callable[[], bool]

__all__ = ["Orchestrator", "resume", "start"]


class Orchestrator:
    def __init__(self, prepared: Prepared, ledger: Ledger, run_id: str, *, report: Reporter = silent,
                 should_stop: StopCheck | None = None) -> None:
        self.cfg, self.run_, self.report = prepared.cfg, ledger.for_run(run_id), report
        self.should_stop = should_stop or (lambda: False)
        self.engines = Engines(self.cfg, prepared.trainer, report)
        self.steps = Steps(prepared, self.run_, self.engines, report, self.should_stop, self._check)

    def run(self) -> str:
        self.run_.mark_running()
        try:
            reason = self._rounds()
        except Cancelled:
            self.run_.mark_stopped("cancelled")
            raise
        except KeyboardInterrupt:
            self.run_.mark_stopped("interrupted")
            raise
        except Exception as err:
            self.run_.mark_stopped("failed", error=f"{type(err).__name__}: {err}")
            raise
        finally:
            self.engines.close()
        self.run_.finish(reason, self.cfg.loop.select)
        self.report(Event("log", "run", message=f"finished: {reason}"))
        return self.run_.id

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
            raise Cancelled("cancelled by the user; `pada run --resume " + self.run_.id + "` continues")

    def _todo(self, r: int, step: str) -> bool:
        """True when the step still has to run (resume skips finished steps)."""
        self._check()
        done = self.run_.stage_done(r, step)
        if done:
            self.report(Event("log", step, r, message="already done (resumed)"))
        return not done

    # -- round 0: zero-shot, then LoRA on D_train alone; then rounds 1..T

    def _round0(self) -> None:
        self.run_.open_round(0)
        if self._todo(0, "zero_shot"):
            self.steps.zero_shot()
        self._train_and_eval(0)
        self.run_.close_round(0)

    def _round(self, r: int) -> bool:
        """One round; False when it accepted nothing and the run stops there."""
        self.run_.open_round(r)
        note = None
        if self.cfg.loop.strategy != "none":
            patterns = self._patterns(r) if self.cfg.loop.strategy == "pada" else []
            trust = self._teacher_check(r)
            if self._todo(r, "generate"):
                self.steps.generate(r, patterns, trust)
            if self._todo(r, "quality"):
                self.steps.quality(r, trust)
            if not self.run_.accepted(r, since=r):
                if not self.cfg.loop.fixed_rounds:
                    self.run_.stop_round(r, "no samples accepted")
                    return False
                note = "no samples accepted: retrained on the previous set"
        self._train_and_eval(r)
        self.run_.close_round(r, note)
        return True

    def _train_and_eval(self, r: int) -> None:
        if self._todo(r, "train"):
            self.steps.train(r)
        if self._todo(r, "eval"):
            self.steps.eval(r)

    def _patterns(self, r: int) -> list[Pattern]:
        if self._todo(r, "analyze"):
            self.steps.analyze(r)
        usable = [a for a in self.run_.analyses(r) if a.ok]
        if self._todo(r, "cluster"):
            self.steps.cluster(r, usable)
        stored = self.run_.cluster_of(r)
        labels = [stored[a.item_id] for a in usable]
        if self._todo(r, "patterns"):
            self.steps.name_patterns(r, usable, Clustering(labels, len(set(labels)), {}))
        if self._todo(r, "strategies"):
            self.steps.draft_strategies(r)
        return self.run_.patterns(r)

    def _teacher_check(self, r: int) -> Trust:
        """Is the teacher (and a separate judge) good enough for its word to decide a sample?"""
        if self.cfg.quality.teacher_check == 0:
            return Trust()  # no check asked for: trusted as before
        # Checked once per run in round 1; a later round reads it quietly (not a resumed step).
        if self._todo(1, "teacher_check") if r == 1 else not self.run_.stage_done(1, "teacher_check"):
            self.steps.teacher_check()
        return teachercheck.trust_of(self.run_.stage_detail(1, "teacher_check") or {})

    def _stop_before(self, r: int) -> str | None:
        """The one decision: stop when nothing is left to fix or validation stopped improving."""
        rounds = self.run_.done_rounds()
        if not rounds:
            return None
        last, best = rounds[-1], best_round(rounds)
        if last["val_score"] >= 1.0:
            return f"no validation failures left after round {last['round']}"
        if best is not None and last["round"] - best["round"] >= self.cfg.loop.patience:
            return f"no better validation score for {self.cfg.loop.patience} rounds"
        return None


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
    """Continue an interrupted run from its last finished step, with its saved config."""
    with Ledger.open_existing(store_path) as ledger:
        run = ledger.for_run(ledger.resolve(run_id))
        run.check_resumable()
        cfg = from_dict(run.config(), Path.cwd(), f"run {run.id} config")
        prepared = preflight(cfg)
        report(Event("log", "run", message=f"resuming run {run.id}"))
        return Orchestrator(prepared, ledger, run.id, report=report, should_stop=should_stop).run()
