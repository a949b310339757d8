"""Every check before anything expensive, in one place: the config's data (formats, splits,
references the scorer can read), the models named, the trainer backend and the fields it can
honour, the training examples' lengths, and the teacher and judge (a GGUF file that exists, a
server that answers a capability probe). `pada run`, `pada compare` and `pada teacher check` all
start here; no model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..data.splits import DataReport, Splits, check_splits, load_splits
from ..errors import ConfigError
from ..scoring import Scorer
from ..tasks import get_verifier


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
    from .. import models

    splits = load_splits(cfg.data)
    report = check_splits(splits, threshold=cfg.quality.dup_ngram)
    scorer = Scorer(cfg.task.scorer)
    for name, items in (("train", splits.train), ("validation", splits.validation), ("test", splits.test)):
        if items:
            scorer.check_references([(ex.id, ex.output) for ex in items], f"data.{name}")
    verifier = get_verifier(cfg.task.verifier)
    student = models.resolve_student(cfg.models.student)
    models.resolve_embedder(cfg.models.embedder)
    endpoint_warnings = teacher_warnings(cfg) if needs_teacher(cfg) else []
    trainer = _trainer(cfg)
    options = None
    if cfg.task.scorer.effective_mode == "loglik":
        options = scorer.options([ex.output for ex in splits.train])
    warnings = list(report.warnings) + _length_warnings(cfg, splits, models.tokenizer_source(student))
    return Prepared(cfg, splits, report, scorer, verifier, trainer, options, warnings + endpoint_warnings)


def needs_teacher(cfg: Config) -> bool:
    """A run that augments, or whose scorer is a judge, needs its teacher (and judge)."""
    return cfg.loop.strategy != "none" and cfg.loop.rounds > 0 or cfg.task.scorer.kind == "judge"


def teacher_warnings(cfg: Config) -> list[str]:
    """The teacher (and a separate judge) checked for reachability; warnings to say up front."""
    found = check_teacher(cfg, "teacher")
    return found + (check_teacher(cfg, "judge") if cfg.models.judge is not None else [])


def check_teacher(cfg: Config, role: str) -> list[str]:
    """A GGUF teacher must exist; a served one must answer a capability probe (the server answers,
    serves the model, honours one tiny schema request). Warnings for plain http elsewhere."""
    from .. import models

    endpoint = cfg.models.judge_endpoint if role == "judge" else cfg.models.teacher_endpoint
    if endpoint is None:
        name = cfg.models.judge if role == "judge" else cfg.models.teacher
        models.resolve_teacher(name or cfg.models.teacher, role=role)
        return []
    from ..backends.openai_endpoint import url_warnings
    from .engines import served

    gen: Any = served(endpoint)
    try:
        gen.probe()
    finally:
        gen.close()
    return url_warnings(endpoint.base_url)


def _trainer(cfg: Config) -> str:
    from ..backends import choose_trainer, trainer_problems

    trainer, _ = choose_trainer(cfg.train.backend)
    problems = trainer_problems(trainer, cfg.train)
    if problems:
        raise ConfigError(f"train: the '{trainer}' backend cannot honour: " + "; ".join(problems),
                          hint="change those fields or train.backend")
    return trainer


def _length_warnings(cfg: Config, splits: Splits, tokenizer: Path) -> list[str]:
    """Training examples longer than train.max_length are left out, not cut: say so up front."""
    from ..backends.lengths import truncation_report
    from ..stages.train import training_examples

    found = truncation_report(tokenizer, training_examples(cfg.task, splits.train, []), cfg.train.max_length)
    return [] if found.warning is None else [found.warning]
