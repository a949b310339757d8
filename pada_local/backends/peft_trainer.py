"""LoRA with TRL's SFTTrainer + peft: CPU everywhere, CUDA/MPS where present.

Examples go in as conversational prompt/completion pairs, so TRL renders them with the
student's own chat template and takes the loss on the completion (the answer) only. An example
longer than max_length is left out first (lengths.fit_spec), never cut by TRL.
Training always starts from the base weights (LLM2LLM found that better than continuing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .base import Adapter, StepInfo, TrainSpec
from .batches import SharedPrefixCollator, example_tokens, supports_custom_mask


def unsupported(cfg: object) -> list[str]:
    """Config fields this backend cannot honour (none: it is the reference backend)."""
    return []


class PeftTrainer:
    name = "peft"

    def train(
        self,
        spec: TrainSpec,
        on_step: Callable[[StepInfo], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Adapter:
        from .device import pick_device
        from .hf import load_model, load_tokenizer, quiet_libraries
        from .lengths import fit_spec

        quiet_libraries()

        from .device import peak_memory_mb, training_dtype, write_info

        device = pick_device()
        dtype = "fp32" if spec.precision == "fp32" else training_dtype(device)
        tokenizer = load_tokenizer(spec.base_dir)
        spec, dropped = fit_spec(spec, tokenizer)  # TRL would cut them: drop them, named, instead
        model = load_model(spec.base_dir, device=device, dtype_name=dtype).train()
        history: list[StepInfo] = []
        counter = TokenCounter()
        layout = batch_layout(model)
        trainer = _sft_trainer(spec, model, tokenizer, device, dtype, layout,
                               progress_callback(history, on_step, should_stop, counter))
        counter.wrap(trainer)
        start = time.perf_counter()
        trainer.train()
        tmp = spec.out_dir.with_name(spec.out_dir.name + ".tmp")
        trainer.model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        # Into the folder before it moves into place: a finished adapter always says how it was trained.
        write_info(tmp, backend="peft", device=device, compute_dtype=dtype, merge_dtype="fp32",
                   peak_memory_mb=peak_memory_mb(device), batches=layout)
        replace_dir(tmp, spec.out_dir)
        return Adapter(spec.out_dir, trainer.state.global_step, time.perf_counter() - start, counter.real,
                       tuple(history), dropped, padded_tokens=counter.padded)


def sft_rows(spec: TrainSpec) -> Any:
    """The examples as a conversational prompt/completion dataset (loss on the answer only)."""
    from datasets import Dataset

    return Dataset.from_list([
        {"prompt": list(ex.prompt_messages), "completion": [{"role": "assistant", "content": ex.answer}]}
        for ex in spec.examples
    ])


def sft_config(spec: TrainSpec, padding_free: bool = False, **device: Any) -> Any:
    """TRL settings shared by every TRL-based backend; `device` adds use_cpu/bf16/fp16 etc.

    padding_free: each batch goes in as one row with its examples end to end (position ids
    restart per example); transformers then masks attention to each example's own block
    (masking_utils' packed-sequence mask), so the loss is the padded batch's, without computing
    padding (a quarter of the tokens of a batch of 8 real sentences). TRL then wants no
    max_length, which fit_spec has already enforced by leaving longer examples out."""
    import warnings

    from trl import SFTConfig

    # transformers renamed gradient checkpointing; we switch it off either way (small students
    # fit, and it only costs time here), so the rename warning is noise.
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
    return SFTConfig(
        output_dir=str(spec.out_dir.with_name(spec.out_dir.name + ".work")),
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps if spec.max_steps is not None else -1,
        learning_rate=spec.lr,
        per_device_train_batch_size=spec.batch_size,
        gradient_accumulation_steps=spec.grad_accum,
        max_length=None if padding_free else spec.max_length,
        padding_free=padding_free,
        seed=spec.seed,
        data_seed=spec.seed,
        completion_only_loss=True,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        gradient_checkpointing=False,
        lr_scheduler_type="cosine",
        warmup_steps=0,
        include_num_input_tokens_seen="no",  # TokenCounter counts with and without padding
        disable_tqdm=True,
        **device,
    )


def sft_trainer(model: Any, tokenizer: Any, args: Any, rows: Any, callback: Any, **extra: Any) -> Any:
    """An SFTTrainer whose progress goes through our callback only (the default printer would
    write dicts to stdout)."""
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer,
                         callbacks=[callback], **extra)
    trainer.remove_callback(PrinterCallback)
    return trainer


def _sft_trainer(spec: TrainSpec, model: Any, tokenizer: Any, device: str, dtype: str, layout: str,
                 callback: Any) -> Any:
    from peft import LoraConfig

    from .device import precision_args

    lora = LoraConfig(
        r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
        target_modules=list(spec.target_modules), task_type="CAUSAL_LM",
    )
    # dtype from device.training_dtype: fp16 where bf16 is emulated or missing (pre-Ampere CUDA,
    # older MPS), bf16 on a CPU with native bf16 (measured faster), else fp32 on a CPU.
    precision = precision_args(device, dtype)
    extra: dict[str, Any] = {"peft_config": lora}
    if layout == "shared-prefix":  # TRL's own collator would pad or pack; ours shares the opening
        extra["data_collator"] = SharedPrefixCollator()
    args = sft_config(spec, padding_free=layout == "padding-free", **precision)
    return sft_trainer(model, tokenizer, args, sft_rows(spec), callback, **extra)


def batch_layout(model: Any) -> str:
    """How a batch goes in: `shared-prefix` (batches.py: the examples' common prompt opening
    computed once; about half a step's tokens on short tasks) where the attention kernel takes a
    custom mask, else `padding-free` (examples end to end); `padded` (each example padded to the
    batch's longest) only for comparison. All three give the same loss."""
    return "shared-prefix" if supports_custom_mask(model) else "padding-free"


def progress_callback(history: list[StepInfo], on_step: Callable[[StepInfo], None] | None,
                      should_stop: Callable[[], bool] | None, counter: TokenCounter | None = None) -> Any:
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        """Turns the trainer's log events into StepInfo; asks it to stop when told to."""

        def __init__(self) -> None:
            self.t0 = time.perf_counter()
            self.last = (self.t0, 0)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any) -> None:
            if not logs or "loss" not in logs:
                return
            now = time.perf_counter()
            tokens = counter.real if counter is not None else int(state.num_input_tokens_seen or 0)
            rate = (tokens - self.last[1]) / max(now - self.last[0], 1e-9) if tokens else None
            self.last = (now, tokens)
            info = StepInfo(state.global_step, state.max_steps, _f(logs.get("loss")),
                            _f(logs.get("learning_rate")), _f(logs.get("epoch")), rate, now - self.t0)
            history.append(info)
            if on_step is not None:
                on_step(info)

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if should_stop is not None and should_stop():
                control.should_training_stop = True

    return _Progress()


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


class TokenCounter:
    """Counts the examples' own tokens (`real`) and the tokens the model processes (`padded`:
    padding included, TRL's own count; fewer than `real` when a shared opening is computed once).
    A forward hook, not the collator: the data loader runs a batch ahead, which would credit each
    step with the next one's tokens."""

    def __init__(self) -> None:
        self.real = self.padded = 0

    def wrap(self, trainer: Any) -> None:
        def count(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
            ids = kwargs.get("input_ids")
            if ids is None or not module.training:
                return
            mask, positions = kwargs.get("attention_mask"), kwargs.get("position_ids")
            self.padded += int(ids.numel())
            if mask is not None and mask.dim() == 2:  # padded rows
                self.real += int(mask.sum())
            elif positions is not None:  # one row: padding-free or shared-prefix
                self.real += example_tokens(positions)
            else:
                self.real += int(ids.numel())

        trainer.model.register_forward_pre_hook(count, with_kwargs=True)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished folder into place so a crash never leaves a half-written adapter."""
    import shutil

    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    shutil.rmtree(final.with_name(final.name + ".work"), ignore_errors=True)
