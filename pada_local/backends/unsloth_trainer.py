"""LoRA with Unsloth: 4-bit QLoRA on a CUDA GPU, and nowhere else.

The model comes from `FastLanguageModel` (4-bit, bitsandbytes), LoRA from its `get_peft_model`,
training from TRL's SFTTrainer on the same conversational prompt/completion rows as the peft
backend (loss on the answer only). The adapter is saved in plain PEFT format, so evaluation
loads it with transformers + peft like any other.

Unsloth patches transformers/TRL for the whole process when imported, so it runs in a child
process (`own_process`, backends/child.py) that imports it first; the parent's evaluation
never sees its patches. Without CUDA it is refused: its CPU fallback is plain transformers and
on Apple Silicon it swaps in MLX stand-ins our TRL set-up does not fit (use 'peft' or 'mlx').
Its GGUF export (`save_pretrained_gguf`) is never called: it installs packages and clones
llama.cpp by itself; `pada export` does that job.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, ModelError
from .base import Adapter, StepInfo, TrainSpec

# Unsloth trains these in full (modules_to_save) when named as LoRA targets: not LoRA.
_FULL_MODULES = ("embed_tokens", "lm_head")


def unsupported(spec_or_cfg: Any) -> list[str]:
    """Config fields this backend cannot honour as the other backends do (TrainSpec or TrainConfig)."""
    full = [m for m in spec_or_cfg.target_modules if m in _FULL_MODULES]
    problems = []
    if full:
        problems.append(f"train.target_modules: unsloth trains {', '.join(full)} in full, not as LoRA; "
                        "remove them or use backend 'peft'")
    if getattr(spec_or_cfg, "precision", "auto") == "fp32":
        problems.append("train.precision: unsloth trains a 4-bit base in bf16 or fp16; "
                        "use backend 'peft' for fp32")
    return problems


def import_failed(err: BaseException) -> Exception:
    """What an unsloth import that failed means (the child runner asks, as it imports it first)."""
    from ..errors import BackendUnavailable

    # The usual one: a torchvision built for another torch, pulled in by unsloth's install.
    fix = "pip uninstall -y torchvision" if "torchvision" in repr(err) else "use train.backend 'peft'"
    return BackendUnavailable(f"unsloth is installed but cannot be imported: {err}", hint=fix)


class UnslothTrainer:
    name = "unsloth"
    own_process = True  # get_trainer wraps it in a ChildTrainer
    first_import = "unsloth"  # before transformers, or its patches are partial
    import_failed = staticmethod(import_failed)  # the child runner's explanation of a failed import

    def train(
        self,
        spec: TrainSpec,
        on_step: Callable[[StepInfo], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Adapter:
        problems = unsupported(spec)
        if problems:
            raise ConfigError("; ".join(problems))
        from . import refuse_without_cuda

        refuse_without_cuda()  # before the import: Unsloth without CUDA is other code
        # Unsloth prints banners and notices on stdout, which carries results only.
        with contextlib.redirect_stdout(sys.stderr):
            return self._train(spec, on_step, should_stop)

    def _train(self, spec: TrainSpec, on_step: Callable[[StepInfo], None] | None,
               should_stop: Callable[[], bool] | None) -> Adapter:
        fast = _import_unsloth()
        import torch

        from .device import peak_memory_mb, train_dtype, write_info
        from .hf import quiet_libraries
        from .lengths import fit_spec
        from .peft_trainer import TokenCounter, progress_callback, replace_dir

        quiet_libraries()
        capability = tuple(torch.cuda.get_device_capability(0))
        dtype = train_dtype("cuda", capability)  # type: ignore[arg-type]
        torch.cuda.reset_peak_memory_stats()
        model, tokenizer = _load(fast, spec, dtype)
        spec, dropped = fit_spec(spec, tokenizer)  # with Unsloth's tokenizer: it is the one TRL uses
        history: list[StepInfo] = []
        counter = TokenCounter()  # the shared SFT settings leave TRL's own count off
        callback = progress_callback(history, on_step, should_stop, counter)
        trainer = _sft_trainer(spec, model, tokenizer, dtype, callback)
        counter.wrap(trainer)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        tmp = spec.out_dir.with_name(spec.out_dir.name + ".tmp")
        trainer.model.save_pretrained(str(tmp))  # PeftModel: adapter_config.json + adapter_model.safetensors
        tokenizer.save_pretrained(str(tmp))
        # How it trained goes into the folder before it moves into place, as the peft trainer does:
        # a crash in between never leaves an adapter without its record.
        write_info(tmp, backend="unsloth", device="cuda", gpu=torch.cuda.get_device_name(0),
                   capability=".".join(map(str, capability)), compute_dtype=dtype, base_weights="4-bit nf4",
                   merge_dtype="fp32", peak_memory_mb=peak_memory_mb("cuda"))
        replace_dir(tmp, spec.out_dir)
        return Adapter(spec.out_dir, trainer.state.global_step, seconds, counter.real, tuple(history),
                       dropped, padded_tokens=counter.padded)


def _import_unsloth() -> Any:
    try:
        from unsloth import FastLanguageModel
    except Exception as err:  # noqa: BLE001 - any failure of a third-party import is "cannot run here"
        raise import_failed(err) from None
    return FastLanguageModel




def _load(fast: Any, spec: TrainSpec, dtype: str) -> tuple[Any, Any]:
    from .device import torch_dtype

    # dtype explicit: Unsloth's own choice trusts is_bf16_supported(), which counts emulation.
    model, tokenizer = fast.from_pretrained(
        model_name=str(spec.base_dir), max_seq_length=spec.max_length, dtype=torch_dtype(dtype),
        load_in_4bit=True, use_exact_model_name=True, local_files_only=True,
    )
    if getattr(tokenizer, "chat_template", None) is None:
        raise ModelError(f"{spec.base_dir}: the tokenizer has no chat template", hint="use an instruct model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = fast.get_peft_model(
        model, r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
        target_modules=list(spec.target_modules), bias="none", random_state=spec.seed,
        # Unsloth's offloaded checkpointing: its memory win on a laptop GPU.
        use_gradient_checkpointing="unsloth", max_seq_length=spec.max_length,
    )
    return model, tokenizer


def _sft_trainer(spec: TrainSpec, model: Any, tokenizer: Any, dtype: str, callback: Any) -> Any:
    from .device import precision_args
    from .peft_trainer import sft_config, sft_rows, sft_trainer

    # gradient checkpointing stays off here: Unsloth's own is set by get_peft_model.
    args = sft_config(spec, **precision_args("cuda", dtype), dataset_num_proc=1)
    return sft_trainer(model, tokenizer, args, sft_rows(spec), callback)
