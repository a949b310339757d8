"""Stage: LoRA-train the student from the base model on D_train ∪ accepted synthetic samples."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from .backends.base import Adapter, StepInfo, TrainExample, TrainSpec
from .backends.lengths import dropped_warning
from .config import TaskConfig, TrainConfig
from .data import Example
from .events import Event, Reporter, silent
from .prompts import student_messages
from .seeds import derive


def training_examples(task: TaskConfig, train: Sequence[Example],
                      synthetic: Sequence[tuple[str, str]]) -> tuple[TrainExample, ...]:
    """Chat-form pairs rendered like evaluation prompts (same system prompt, same template, a
    conversation's earlier turns kept); synthetic samples are single-turn."""
    real = [TrainExample(student_messages(task, ex.input, ex.system, ex.context), ex.output, ex.id)
            for ex in train]
    made = [TrainExample(student_messages(task, text), answer, f"synthetic-{i}")
            for i, (text, answer) in enumerate(synthetic, 1)]
    return tuple(real + made)


def spec_for(cfg: TrainConfig, base_dir: Path, examples: tuple[TrainExample, ...], out_dir: Path,
             round_: int = 0) -> TrainSpec:
    """Each round trains with its own seed, derived from train.seed."""
    return TrainSpec(
        base_dir=base_dir, examples=examples, out_dir=out_dir, rank=cfg.rank, alpha=cfg.alpha,
        dropout=cfg.dropout, target_modules=tuple(cfg.target_modules), epochs=cfg.epochs,
        max_steps=cfg.max_steps, lr=cfg.lr, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
        max_length=cfg.max_length, seed=derive(0 if cfg.seed is None else cfg.seed, "train", round_),
        precision=cfg.precision,
    )


def train_student(trainer: object, spec: TrainSpec, *, report: Reporter = silent, round_: int | None = None,
                  should_stop: Callable[[], bool] | None = None) -> Adapter:
    total = _expected_steps(spec)
    report(Event("start", "train", round_, total=total))

    def on_step(info: StepInfo) -> None:
        rate = "" if info.tokens_per_s is None else f" {info.tokens_per_s:.0f} tok/s"
        loss = "" if info.loss is None else f"loss {info.loss:.3f}"
        report(Event("advance", "train", round_, advance=1, message=f"{loss}{rate}"))

    adapter = trainer.train(spec, on_step=on_step, should_stop=should_stop)  # type: ignore[attr-defined]
    if adapter.dropped_ids:  # the backend left them out rather than cut their answers
        report(Event("log", "train", round_,
                     message=dropped_warning(adapter.dropped_ids, len(spec.examples), spec.max_length)))
    report(Event("end", "train", round_))
    return adapter


def _expected_steps(spec: TrainSpec) -> int:
    if spec.max_steps is not None:
        return spec.max_steps
    per_epoch = -(-len(spec.examples) // (spec.batch_size * spec.grad_accum))
    return max(1, int(per_epoch * spec.epochs + 0.999))
