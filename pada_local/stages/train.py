"""Stage: LoRA-train the student from the base model on D_train ∪ accepted synthetic samples."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..backends.base import Adapter, StepInfo, TrainExample, TrainSpec
from ..backends.lengths import dropped_warning
from ..config import TaskConfig, TrainConfig
from ..events import Event, Reporter, silent
from ..files import sha256_file, write_jsonl
from ..prompts import student_messages
from ..records import Artifact, Example, TrainResult
from ..seeds import derive


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


def train_round(trainer: object, cfg: TrainConfig, task: TaskConfig, base_dir: Path, train: Sequence[Example],
                synthetic: Sequence[tuple[str, str]], out_dir: Path, *, report: Reporter = silent,
                round_: int = 0, should_stop: Callable[[], bool] | None = None
                ) -> tuple[TrainResult, dict[str, Any]]:
    """Train from the base on D_train and the accepted samples; what it made (the adapter, the
    exact training set kept, the step history) and what to record of it (steps, tokens, the
    examples left out, the device, numeric types and peak memory)."""
    from ..backends.device import pick_device, reset_peak, training_detail

    examples = training_examples(task, train, synthetic)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    spec = spec_for(cfg, base_dir, examples, out_dir, round_=round_)
    reset_peak(pick_device())  # the stage records its own peak, not the evaluation's
    adapter = train_student(trainer, spec, report=report, round_=round_, should_stop=should_stop)
    # The recorded training set is what the trainer kept (too-long examples are left out).
    dropped = set(adapter.dropped_ids)
    kept = [ex for ex in examples if ex.id not in dropped]
    chats = [{"messages": [*ex.prompt_messages, {"role": "assistant", "content": ex.answer}]} for ex in kept]
    train_file = write_jsonl(out_dir.parent / "train.jsonl", chats)
    artifacts = (_artifact("adapter", out_dir, out_dir / "adapter_model.safetensors",
                           {"steps": adapter.steps, "tokens": adapter.tokens}),
                 _artifact("train_set", train_file, train_file, {"items": len(kept)}))
    # tokens: the examples' own; padded_tokens: all the model processed (0: not counted)
    detail = {"steps": adapter.steps, "tokens": adapter.tokens, "padded_tokens": adapter.padded_tokens,
              "dropped": adapter.dropped, "dropped_ids": list(adapter.dropped_ids[:3]),
              **training_detail(out_dir)}  # device, numeric types, peak memory
    return TrainResult(out_dir, len(kept), tuple(adapter.history), artifacts), detail


def _artifact(kind: str, path: Path, weights: Path, meta: dict[str, Any]) -> Artifact:
    """A file the stage made, identified by `weights` (its checksum and size)."""
    return Artifact(kind, path, sha256_file(weights), weights.stat().st_size, meta)


def _expected_steps(spec: TrainSpec) -> int:
    if spec.max_steps is not None:
        return spec.max_steps
    per_epoch = -(-len(spec.examples) // (spec.batch_size * spec.grad_accum))
    return max(1, int(per_epoch * spec.epochs + 0.999))
