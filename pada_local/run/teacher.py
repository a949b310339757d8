"""`pada teacher check CONFIG`: can this teacher (and judge) confirm samples on this task?

The same routine a run calls before round 1 (stages/teachercheck.run_checks: the same seeded
train items, prompts and scorer). Without a run's round-0 score to set beside it, the baseline
is the untrained student on validation, lower than a trained one: a teacher that passes here may
still fail inside a run.
"""

from __future__ import annotations

from ..config import Config
from ..events import Reporter, silent
from ..stages.evaluate import accuracy, evaluate
from ..stages.teachercheck import CheckResult, run_checks
from .engines import Engines
from .preflight import preflight


def standalone(cfg: Config, *, report: Reporter = silent, baseline: float | None = None) -> list[CheckResult]:
    p = preflight(cfg)
    engines = Engines(cfg, p.trainer, report)
    try:
        against = "the student {:.0f}% on validation (given)"
        if baseline is None:
            against = "the untrained student {:.0f}% on validation; a run compares with its round-0 model"
            rows = evaluate(engines.student(None), p.splits.validation, cfg.task, p.scorer, options=p.options,
                            report=report, stage="eval validation (zero-shot)")
            baseline = accuracy(rows) or 0.0
        judge = engines.judge() if cfg.models.judge is not None else None
        return run_checks(engines.teacher(), judge, p.splits.train, cfg.task, p.scorer,
                          n=cfg.quality.teacher_check or 32, seed=cfg.loop.seed, baseline=baseline,
                          margin=cfg.quality.teacher_margin, sound=cfg.quality.teacher_pass, against=against,
                          report=report)
    finally:
        engines.close()
