"""Trainers that fail the way a GPU library fails, for the child-process runner's tests
(backends/child.py). They stand in for a crashing library, not for the runner under test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pada_local.backends.base import StepInfo
from pada_local.backends.unsloth_trainer import UnslothTrainer
from pada_local.errors import ConfigError

METAL_ABORT = ("libc++abi: terminating due to uncaught exception of type std::runtime_error: "
               "[METAL] Command buffer execution failed: Caused GPU Timeout Error "
               "(00000002:kIOGPUCommandBufferCallbackErrorTimeout)")


class AbortingTrainer:
    """One step, then a C++-style abort after printing what Metal prints."""

    name = "aborting"

    def train(self, spec, on_step=None, should_stop=None):
        if on_step is not None:
            on_step(StepInfo(1, 3, 2.5, 1e-3, 0.3, None, 0.1))
        print("loading weights... done", file=sys.stderr)
        print(METAL_ABORT, file=sys.stderr, flush=True)
        os.abort()


class RaisingTrainer:
    name = "raising"

    def train(self, spec, on_step=None, should_stop=None):
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")


class ConfigErrorTrainer:
    name = "config-error"

    def train(self, spec, on_step=None, should_stop=None):
        raise ConfigError("train.target_modules: qkv not found", hint="modules there: q_proj")


class FlakyPeftTrainer:
    """Aborts the first time it trains into a folder, then trains for real with peft: a crash
    that a resume gets past."""

    name = "flaky"
    own_process = True

    def train(self, spec, on_step=None, should_stop=None):
        marker = Path(spec.out_dir).parent / "crashed-once"
        if not marker.exists():
            marker.write_text("1")
            print(METAL_ABORT, file=sys.stderr, flush=True)
            os.abort()
        from pada_local.backends.peft_trainer import PeftTrainer

        return PeftTrainer().train(spec, on_step=on_step, should_stop=should_stop)


class ImportOrderTrainer:
    """Reports whether its first import was loaded, and which heavy libraries were, at start."""

    name = "import-order"
    first_import = "decimal"

    def train(self, spec, on_step=None, should_stop=None):
        heavy = sorted(m for m in ("torch", "transformers", "trl", "peft") if m in sys.modules)
        raise ConfigError(f"first: {'decimal' in sys.modules}; heavy: {heavy}")


class HangingExitTrainer:
    """Replies, then hangs on its way out (as a CUDA teardown can)."""

    name = "hanging-exit"

    def train(self, spec, on_step=None, should_stop=None):
        import atexit
        import time

        from pada_local.backends.base import Adapter

        atexit.register(time.sleep, 600)
        return Adapter(Path(spec.out_dir), 1, 0.1, 0)


# ---------------------------------------------------------------- a stand-in for the Unsloth library
# For tests/test_ci_trainers.py: the Unsloth backend's own code (unsloth_trainer.py, child.py) runs
# for real; the Unsloth library and the CUDA GPU are what these replace. They show that the spec is
# mapped and the adapter laid out as it should be, not that Unsloth trains.

UNSLOTH_BANNER = "Unsloth: Will patch your computer to enable 2x faster free finetuning."
STAND_IN_GPU = "NVIDIA Stand-in GPU"
STAND_IN_PEAK_MB = 64.0

# The package `unsloth` as a test writes it into a folder on PYTHONPATH for the child process: it
# says what was loaded before it (the child must import it before transformers), prints Unsloth's
# banner on stdout, and makes its compile cache where Unsloth would (UNSLOTH_COMPILE_LOCATION).
FAKE_UNSLOTH = f'''
import os, sys
from pathlib import Path

heavy = sorted(m for m in ("torch", "transformers", "trl", "peft") if m in sys.modules)
print("{UNSLOTH_BANNER}")
print(f"stand-in unsloth imported; already loaded: {{heavy}}; "
      f"statistics off: {{os.environ.get('UNSLOTH_DISABLE_STATISTICS') == '1'}}", file=sys.stderr)
Path(os.environ.get("UNSLOTH_COMPILE_LOCATION", "unsloth_compiled_cache")).mkdir(parents=True, exist_ok=True)
from tests.child_trainers import FakeFastLanguageModel as FastLanguageModel
'''
# The same package where Unsloth's own import fails, as it does beside a torchvision built for another torch.
BROKEN_UNSLOTH = 'raise RuntimeError("operator torchvision::nms does not exist")\n'


def write_package(folder: Path, source: str, name: str = "unsloth") -> Path:
    (folder / name).mkdir(parents=True, exist_ok=True)
    (folder / name / "__init__.py").write_text(source)
    return folder


class FakeFastLanguageModel:
    """`unsloth.FastLanguageModel` as UnslothTrainer calls it. The keyword names are those of
    Unsloth's `FastLanguageModel.from_pretrained` and `get_peft_model` (unsloth/models/loader.py,
    llama.py; `local_files_only` goes through its **kwargs), so an argument Unsloth does not take
    is a TypeError here. Each call is recorded; the answers are what Unsloth answers with, a
    tokenizer and a PEFT LoRA model, made by transformers + peft (fp32 on the CPU, no 4-bit)."""

    calls: list[tuple[str, dict]] = []

    @classmethod
    def from_pretrained(cls, *, model_name, max_seq_length=2048, dtype=None, load_in_4bit=True,
                        use_exact_model_name=False, local_files_only=False):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cls.calls.append(("from_pretrained", {
            "model_name": model_name, "max_seq_length": max_seq_length, "dtype": str(dtype),
            "load_in_4bit": load_in_4bit, "use_exact_model_name": use_exact_model_name,
            "local_files_only": local_files_only}))
        print("==((====))==  Unsloth: Fast Llama patching.")  # Unsloth's notice, on stdout
        return AutoModelForCausalLM.from_pretrained(model_name), AutoTokenizer.from_pretrained(model_name)

    @classmethod
    def get_peft_model(cls, model, *, r=16, target_modules=None, lora_alpha=16, lora_dropout=0.0,
                       bias="none", use_gradient_checkpointing="unsloth", random_state=3407,
                       max_seq_length=2048):
        from peft import LoraConfig, get_peft_model

        cls.calls.append(("get_peft_model", {
            "r": r, "target_modules": target_modules, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
            "bias": bias, "use_gradient_checkpointing": use_gradient_checkpointing,
            "random_state": random_state, "max_seq_length": max_seq_length}))
        lora = LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                          target_modules=target_modules, bias=bias, task_type="CAUSAL_LM")
        return get_peft_model(model, lora)


SFT_FIELDS = ("output_dir", "num_train_epochs", "max_steps", "learning_rate", "per_device_train_batch_size",
              "gradient_accumulation_steps", "max_length", "padding_free", "seed", "data_seed",
              "completion_only_loss", "gradient_checkpointing", "lr_scheduler_type", "warmup_steps",
              "bf16", "fp16", "use_cpu", "dataset_num_proc", "save_strategy", "report_to")


def sft_record(args, rows, extra) -> dict:
    """What a TRL SFTTrainer is built with: the settings above, the rows, extra keyword arguments."""
    record = {f: getattr(args, f) for f in SFT_FIELDS}
    for enum in ("lr_scheduler_type", "save_strategy"):
        record[enum] = str(getattr(record[enum], "value", record[enum]))
    record["rows"] = [dict(r) for r in rows]
    record["extra"] = sorted(extra)
    return record


def pretend_cuda(capability: tuple[int, int], set_=setattr) -> None:
    """Make this process look as if it had a CUDA GPU of `capability` that torch can use (to the
    device checks, torch.cuda's queries and transformers' bf16 check); training still runs on the
    CPU. `set_` is monkeypatch.setattr in a test, plain setattr in a child process."""
    import torch
    import transformers.training_args

    from pada_local.backends import device

    arch = (f"sm_{capability[0]}{capability[1]}",)
    gpu = device.TorchCuda("2.13.0", "13.0", True, STAND_IN_GPU, capability, arch)
    set_(device, "torch_cuda", lambda: gpu)
    set_(torch.cuda, "get_device_capability", lambda *a: capability)
    set_(torch.cuda, "get_device_name", lambda *a: STAND_IN_GPU)
    set_(torch.cuda, "reset_peak_memory_stats", lambda *a: None)
    set_(torch.cuda, "max_memory_allocated", lambda *a: int(STAND_IN_PEAK_MB * 2**20))
    set_(transformers.training_args, "is_torch_bf16_gpu_available", lambda: capability >= (8, 0))


class PoolUsingTrainer:
    """Maps its examples through a datasets pool of one process, as TRL does with
    dataset_num_proc=1 (the Unsloth backend's setting: datasets 4 and 5 fork a pool even for one)."""

    name = "pool"

    def train(self, spec, on_step=None, should_stop=None):
        from datasets import Dataset

        from pada_local.backends.base import Adapter

        rows = Dataset.from_list([{"answer": ex.answer} for ex in spec.examples])
        rows = rows.map(lambda row: {"n": len(row["answer"])}, num_proc=1)
        return Adapter(Path(spec.out_dir), 1, 0.1, sum(rows["n"]))


class FakeCudaUnslothTrainer(UnslothTrainer):
    """UnslothTrainer itself (its `first_import` included), in its child process, on a stand-in
    Ampere GPU (capability 8.0: bf16), with the stand-in `unsloth` package (FAKE_UNSLOTH) on the
    path. It writes what Unsloth and TRL were given to `stand_in_calls.json` in the child's folder."""

    def train(self, spec, on_step=None, should_stop=None):
        import json

        from pada_local.backends import peft_trainer

        pretend_cuda((8, 0))
        built = peft_trainer.sft_trainer
        sft: list[dict] = []

        def recording(model, tokenizer, args, rows, callback, **extra):
            sft.append(sft_record(args, rows, extra))
            return built(model, tokenizer, args, rows, callback, **extra)

        peft_trainer.sft_trainer = recording
        try:
            return super().train(spec, on_step=on_step, should_stop=should_stop)
        finally:
            calls = {"unsloth": FakeFastLanguageModel.calls, "sft": sft}
            (Path.cwd() / "stand_in_calls.json").write_text(json.dumps(calls, default=str))
