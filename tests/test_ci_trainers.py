"""The trainer paths CI can run without a GPU or a Mac.

- Unsloth (CUDA only; not installed in CI): its backend's own code with a stand-in for the Unsloth
  library and the GPU (tests/child_trainers.py: FakeFastLanguageModel, pretend_cuda). What a
  TrainSpec becomes in Unsloth's and TRL's arguments; the child-process protocol with the real
  UnslothTrainer (Unsloth imported first, its output in the log, steps and the adapter back); the
  adapter's layout and that the evaluation path loads it. These claim the mapping and the layout,
  not that Unsloth trains: that is tests/test_backends.py on a CUDA machine (make check-hardware).
- MLX: tests/test_backends.py trains with mlx-lm on MLX's CPU build, which `make test` installs
  on Linux. `make test` names the trainers it installed for (PADA_TEST_REQUIRE_TRAINERS), and
  a trainer named there that cannot run fails here, so CI cannot skip those tests unseen.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import types
from pathlib import Path

import pytest

from pada_local.backends.base import TrainExample, TrainSpec

from .child_trainers import (
    BROKEN_UNSLOTH,
    FAKE_UNSLOTH,
    STAND_IN_GPU,
    STAND_IN_PEAK_MB,
    UNSLOTH_BANNER,
    FakeFastLanguageModel,
    pretend_cuda,
    sft_record,
    write_package,
)

EXAMPLES = tuple(TrainExample(({"role": "user", "content": f"Echo {w}"},), w.upper(), id=f"ex-{w}")
                 for w in ("cat", "dog", "sun", "map", "sky"))


@pytest.fixture
def stand_in_unsloth(monkeypatch):
    """`import unsloth` gives the stand-in, in this process (for its child: FAKE_UNSLOTH)."""
    module = types.ModuleType("unsloth")
    module.FastLanguageModel = FakeFastLanguageModel  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "unsloth", module)
    monkeypatch.setattr(FakeFastLanguageModel, "calls", [])
    return FakeFastLanguageModel


def _lora_tensors(adapter_dir: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(adapter_dir / "adapter_model.safetensors"))


# ---------------------------------------------------------------- the mapping


@pytest.mark.parametrize("capability, dtype, torch_dtype", [((8, 0), "bf16", "torch.bfloat16"),
                                                            ((7, 5), "fp16", "torch.float16")])
def test_unsloth_gets_the_spec_as_unsloth_and_trl_arguments(tiny_llama, tmp_path, monkeypatch,
                                                            stand_in_unsloth, capability, dtype, torch_dtype):
    from pada_local.backends import device, peft_trainer, unsloth_trainer

    pretend_cuda(capability, monkeypatch.setattr)
    assert device.train_dtype("cuda", capability) == dtype  # Ampere and newer: bf16; Turing: fp16
    built = []

    def sft_trainer(model, tokenizer, args, rows, callback, **extra):  # built, not run
        built.append(sft_record(args, rows, extra))

    monkeypatch.setattr(peft_trainer, "sft_trainer", sft_trainer)
    spec = TrainSpec(tiny_llama, EXAMPLES, tmp_path / "adapter", rank=4, alpha=8, dropout=0.1,
                     target_modules=("q_proj", "v_proj"), epochs=3.0, max_steps=7, lr=5e-4, batch_size=2,
                     grad_accum=3, max_length=128, seed=11)
    model, tokenizer = unsloth_trainer._load(unsloth_trainer._import_unsloth(), spec, dtype)
    unsloth_trainer._sft_trainer(spec, model, tokenizer, dtype, callback=None)

    assert stand_in_unsloth.calls == [
        ("from_pretrained", {"model_name": str(tiny_llama), "max_seq_length": 128, "dtype": torch_dtype,
                             "load_in_4bit": True, "use_exact_model_name": True, "local_files_only": True}),
        ("get_peft_model", {"r": 4, "target_modules": ["q_proj", "v_proj"], "lora_alpha": 8,
                            "lora_dropout": 0.1, "bias": "none", "use_gradient_checkpointing": "unsloth",
                            "random_state": 11, "max_seq_length": 128}),
    ]
    assert tokenizer.pad_token is not None
    [sft] = built
    assert sft.pop("rows") == [
        {"prompt": list(ex.prompt_messages), "completion": [{"role": "assistant", "content": ex.answer}]}
        for ex in EXAMPLES]
    assert sft == {
        "output_dir": str(tmp_path / "adapter.work"), "num_train_epochs": 3.0, "max_steps": 7,
        "learning_rate": 5e-4, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 3,
        "max_length": 128, "padding_free": False, "seed": 11, "data_seed": 11, "completion_only_loss": True,
        "gradient_checkpointing": False,  # Unsloth's own, from get_peft_model
        "lr_scheduler_type": "cosine", "warmup_steps": 0,
        "bf16": dtype == "bf16", "fp16": dtype == "fp16", "use_cpu": False, "dataset_num_proc": 1,
        "save_strategy": "no", "report_to": [],
        "extra": [],  # no peft_config (the model is already a PeftModel), TRL's own collator
    }


def test_unsloth_refuses_what_it_cannot_honour_before_loading_anything(tmp_path, stand_in_unsloth,
                                                                         monkeypatch):
    from pada_local.backends.unsloth_trainer import UnslothTrainer
    from pada_local.errors import ConfigError

    pretend_cuda((8, 9), monkeypatch.setattr)
    for spec in (TrainSpec(tmp_path, EXAMPLES, tmp_path / "a", target_modules=("q_proj", "embed_tokens")),
                 TrainSpec(tmp_path, EXAMPLES, tmp_path / "a", precision="fp32")):
        with pytest.raises(ConfigError, match="unsloth"):
            UnslothTrainer().train(spec)
    assert stand_in_unsloth.calls == []


def test_get_trainer_runs_unsloth_in_its_child_process_on_a_cuda_machine(monkeypatch):
    import pada_local.backends as backends
    from pada_local.backends.child import ChildTrainer
    from pada_local.backends.unsloth_trainer import UnslothTrainer

    pretend_cuda((8, 6), monkeypatch.setattr)
    real = backends._has
    monkeypatch.setattr(backends, "_has", lambda m: m == "unsloth" or real(m))
    assert backends.choose_trainer("auto")[0] == "unsloth"
    trainer = backends.get_trainer("unsloth")
    assert isinstance(trainer, ChildTrainer)
    assert (trainer.module, trainer.cls) == ("pada_local.backends.unsloth_trainer", "UnslothTrainer")
    assert UnslothTrainer.first_import == "unsloth"  # imported first in the child, before transformers


# ---------------------------------------------------------------- in its child process, with the layout


def test_unsloth_trainer_in_its_child_process_writes_a_peft_adapter(tiny_llama, tmp_path, monkeypatch, capfd):
    import numpy as np
    import torch

    from pada_local.backends.child import ChildTrainer
    from pada_local.backends.device import read_info
    from pada_local.backends.hf import load_model

    monkeypatch.setenv("PYTHONPATH", str(write_package(tmp_path / "site", FAKE_UNSLOTH)))
    cache_here = (Path.cwd() / "unsloth_compiled_cache").exists()
    steps = []
    spec = TrainSpec(tiny_llama, EXAMPLES, tmp_path / "adapter", max_steps=3, batch_size=2, lr=1e-2,
                     rank=4, alpha=8, max_length=96, seed=3)
    trainer = ChildTrainer("unsloth", "tests.child_trainers:FakeCudaUnslothTrainer")
    adapter = trainer.train(spec, on_step=steps.append)

    # The protocol: steps and the adapter came back; everything printed went to the child's log.
    assert "unsloth" not in sys.modules  # this process never imported it
    assert capfd.readouterr().out == ""
    work = tmp_path / "adapter.child"
    log = (work / "train.log").read_text()
    assert UNSLOTH_BANNER in log and "Unsloth: Fast Llama patching." in log
    assert "stand-in unsloth imported; already loaded: []; statistics off: True" in log  # before torch & co
    assert (work / "unsloth_compiled_cache").is_dir()  # its compile cache in the run folder ...
    assert (Path.cwd() / "unsloth_compiled_cache").exists() == cache_here  # ... not where pada was started
    assert adapter.steps == 3 and [s.step for s in steps] == [1, 2, 3] and adapter.tokens > 0
    assert all(s.loss is not None and s.loss > 0 and s.total_steps == 3 for s in steps)
    assert [s.step for s in adapter.history] == [1, 2, 3] and adapter.dropped_ids == ()

    # What Unsloth and TRL were given (the mapping in full: the test above).
    calls = json.loads((work / "stand_in_calls.json").read_text())
    (load, kwargs), (peft, lora) = calls["unsloth"]
    assert (load, kwargs["model_name"], kwargs["dtype"], kwargs["load_in_4bit"]) == \
        ("from_pretrained", str(tiny_llama.resolve()), "torch.bfloat16", True)
    assert (peft, lora["r"], lora["lora_alpha"], lora["random_state"]) == ("get_peft_model", 4, 8, 3)
    [sft] = calls["sft"]
    assert (sft["bf16"], sft["use_cpu"], sft["max_steps"], sft["dataset_num_proc"]) == (True, False, 3, 1)

    # The layout: a plain PEFT adapter, the tokenizer, how it was trained; nothing half-written left.
    assert adapter.path == (tmp_path / "adapter").resolve()
    config = json.loads((adapter.path / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 4, 8)
    assert sorted(config["target_modules"]) == sorted(spec.target_modules)
    weights = _lora_tensors(adapter.path)
    assert len(weights) == 2 * 4 * 2  # A and B, four projections, two layers
    assert weights["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].shape == (4, 64)
    assert any(abs(t).sum() > 0 for k, t in weights.items() if "lora_B" in k)  # B starts at zero: it trained
    assert (adapter.path / "tokenizer_config.json").is_file()
    assert read_info(adapter.path) == {
        "backend": "unsloth", "device": "cuda", "gpu": STAND_IN_GPU, "capability": "8.0",
        "compute_dtype": "bf16", "base_weights": "4-bit nf4", "merge_dtype": "fp32",
        "peak_memory_mb": STAND_IN_PEAK_MB}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "adapter.child", "site"]  # no .tmp/.work

    # The evaluation path loads it like any adapter, and it changes the model.
    ids = torch.tensor([[1, 2, 3, 4, 500, 77]])
    with torch.no_grad():
        base = load_model(tiny_llama, None, device="cpu")(ids).logits.numpy()
        tuned = load_model(tiny_llama, adapter.path, device="cpu")(ids).logits.numpy()
    assert not np.allclose(base, tuned, atol=1e-4)


def test_unsloth_that_cannot_be_imported_fails_the_stage_with_its_error(tmp_path, monkeypatch):
    """Unsloth's import failing in the child (a torchvision built for another torch) reaches the
    parent as one error naming it, with the child's log kept; the parent lives on."""
    from pada_local.backends.child import ChildTrainer
    from pada_local.errors import PadaError

    monkeypatch.setenv("PYTHONPATH", str(write_package(tmp_path / "site", BROKEN_UNSLOTH)))
    with pytest.raises(PadaError, match="torchvision::nms does not exist") as err:
        ChildTrainer("unsloth").train(TrainSpec(tmp_path, EXAMPLES, tmp_path / "adapter"))
    assert err.value.hint == "pip uninstall -y torchvision"  # the usual cause, and its fix
    assert "torchvision::nms" in (tmp_path / "adapter.child" / "train.log").read_text()
    assert not (tmp_path / "adapter").exists()


DEADLOCK_S = 60.0  # the pool trainer's child takes a few seconds; longer is the deadlock this guards


def test_a_trainer_that_forks_a_pool_finishes_in_its_child_process(tmp_path, monkeypatch):
    """The child's stop watcher reads fd 0 itself: a thread blocked in sys.stdin's reader held its
    lock, and a worker forked by a datasets pool (TRL starts one for the Unsloth backend's
    dataset_num_proc=1) closed its stdin first and waited for that lock forever."""
    import subprocess
    import threading

    import psutil

    from pada_local.backends import child

    started: list[subprocess.Popen] = []
    popen = subprocess.Popen

    def recorded(*args, **kwargs):
        started.append(popen(*args, **kwargs))
        return started[-1]

    def end_the_deadlock() -> None:  # the child and what it forked; the parent then sees it die
        for proc in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                tree = psutil.Process(proc.pid)
                for p in [*tree.children(recursive=True), tree]:
                    p.kill()

    monkeypatch.setattr(child.subprocess, "Popen", recorded)
    watchdog = threading.Timer(DEADLOCK_S, end_the_deadlock)
    watchdog.start()
    try:
        adapter = child.ChildTrainer("unsloth", "tests.child_trainers:PoolUsingTrainer").train(
            TrainSpec(tmp_path, EXAMPLES, tmp_path / "adapter"))
    finally:
        watchdog.cancel()
    assert adapter.tokens == sum(len(ex.answer) for ex in EXAMPLES)


# ---------------------------------------------------------------- what CI must not skip


def test_the_trainers_make_test_installed_for_can_run_here():
    from pada_local.backends import choose_trainer

    required = [n for n in os.environ.get("PADA_TEST_REQUIRE_TRAINERS", "").split(",") if n.strip()]
    if not required:
        pytest.skip("PADA_TEST_REQUIRE_TRAINERS is unset: `make test` sets it to the trainers it installs")
    for name in required:
        assert choose_trainer(name.strip()) == (name.strip(), "named in the config")
