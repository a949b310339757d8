"""Trainer backends beside peft: choice and install hints (fast, any venv), then real training
with Unsloth (CUDA only: refused here, trained on a GPU machine) and mlx-lm (a tiny Llama built
in-process), each checked through the evaluation path (`pada_local.backends.hf.load_model`).
Unsloth and MLX train in a child process (backends/child.py), as `get_trainer` runs them.

The main venv has neither package, so the real tests skip there with the install command;
they run in `.venv-unsloth` / `.venv-mlx` (see README, "Trainers"); `make check-hardware` runs
them on a GPU machine or a Mac. Machine cases with faked detection: tests/test_hardware.py.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pada_local.backends.base import TrainExample, TrainSpec

EXAMPLES = tuple(TrainExample(({"role": "user", "content": f"Echo {w}"},), w.upper())
                 for w in ("cat", "dog", "sun", "map", "sky"))


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _mlx_runs() -> bool:
    if not _installed("mlx_lm"):
        return False
    try:  # on Linux mlx-lm installs without a runtime; `mlx[cpu]` provides it
        import mlx.core  # noqa: F401
    except ImportError:
        return False
    return True


def _cuda() -> bool:
    from pada_local.backends import device

    return device.cuda_usable(device.torch_cuda())


needs_unsloth = pytest.mark.skipif(
    not _installed("unsloth"),
    reason="unsloth is not installed here: make setup-unsloth TORCH=cu126 (or cu130) on a CUDA machine")
needs_unsloth_cuda = pytest.mark.skipif(
    not (_installed("unsloth") and _cuda()),
    reason="unsloth trains on a CUDA GPU this torch can use: make setup-unsloth TORCH=cu126 there")
needs_mlx = pytest.mark.skipif(
    not _mlx_runs(),
    reason="mlx-lm cannot run here: pip install 'pada-local[mlx]' (plus 'mlx[cpu]' on Linux, e.g. into .venv-mlx)")


# --- choice, install hints, config checks: no model, any venv ---------------------------------


@pytest.mark.parametrize("name, package", [("unsloth", "unsloth"), ("mlx", "mlx_lm")])
def test_named_backend_not_installed_fails_with_install_command(monkeypatch, name, package):
    import pada_local.backends as backends
    from pada_local.errors import BackendUnavailable

    if _installed(package):  # this venv has it: make it look absent, the message is what is checked
        real = backends._has
        monkeypatch.setattr(backends, "_has", lambda m: m != package and real(m))
    for ask in (backends.choose_trainer, backends.get_trainer):
        with pytest.raises(BackendUnavailable) as err:
            ask(name)
        assert err.value.hint == f"pip install 'pada-local[{name}]'"
        assert f"pip install 'pada-local[{name}]'" in str(err.value)


def test_unknown_backend_names_the_choices():
    from pada_local.backends import choose_trainer
    from pada_local.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="unknown trainer backend 'axolotl'") as err:
        choose_trainer("axolotl")
    assert "peft" in err.value.hint and "unsloth" in err.value.hint and "mlx" in err.value.hint


def test_auto_is_peft_without_cuda_or_apple_silicon():
    from pada_local.backends import choose_trainer, device

    if _cuda() or device.machine_kind() == "apple-silicon":
        pytest.skip("this machine has a CUDA GPU or Apple Silicon")
    name, why = choose_trainer("auto")
    assert name == "peft" and "peft" in why


@pytest.mark.parametrize("module", ["unsloth_trainer", "mlx_trainer"])
def test_fields_a_backend_cannot_honour_are_listed(module):
    from pada_local.config import TrainConfig

    mod = importlib.import_module(f"pada_local.backends.{module}")
    assert mod.unsupported(TrainConfig()) == []
    assert mod.unsupported(TrainSpec(Path("."), EXAMPLES, Path("out"))) == []
    problems = mod.unsupported(TrainConfig(target_modules=["q_proj", "lm_head"]))
    assert len(problems) == 1 and "lm_head" in problems[0] and "train.target_modules" in problems[0]
    problems = mod.unsupported(TrainConfig(precision="fp32"))
    assert len(problems) == 1 and "train.precision" in problems[0] and "peft" in problems[0]


def test_backend_modules_load_their_libraries_lazily():
    code = ("import sys, pada_local.backends.unsloth_trainer, pada_local.backends.mlx_trainer;"
            "print(sorted(m for m in ('unsloth', 'mlx', 'mlx_lm', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_mlx_step_count_matches_transformers_trainer():
    from pada_local.backends.mlx_trainer import _fill_batches, total_steps

    spec = TrainSpec(Path("."), EXAMPLES, Path("out"), batch_size=8, epochs=2.0)
    assert total_steps(spec, 20, 8) == 6  # ceil(20 / 8) = 3 per epoch
    assert total_steps(TrainSpec(Path("."), EXAMPLES, Path("out"), batch_size=2, grad_accum=2, epochs=1.5), 9, 2) == 3
    assert total_steps(TrainSpec(Path("."), EXAMPLES, Path("out"), max_steps=7), 20, 8) == 7
    rows = [([i, i + 1], 1) for i in range(5)]
    filled = _fill_batches(rows, 2, seed=0)
    assert len(filled) == 6 and all(r in filled for r in rows)  # every example trains each epoch


# --- Unsloth (QLoRA on CUDA, in a child process; refused without CUDA) -------------------------


def _lora_b_moved(adapter_dir: Path) -> bool:
    from safetensors.numpy import load_file

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    lora_b = [t for k, t in weights.items() if "lora_B" in k]
    return bool(lora_b) and any(abs(t).sum() > 0 for t in lora_b)  # B starts at zero


def _logits(model_dir: Path, adapter: Path | None, ids: list[list[int]]):
    import torch

    from pada_local.backends.hf import load_model

    with torch.no_grad():
        return load_model(model_dir, adapter, device="cpu")(torch.tensor(ids)).logits.float().numpy()


@needs_unsloth
def test_unsloth_without_cuda_is_refused_before_it_is_imported(tmp_path):
    from pada_local.backends.unsloth_trainer import UnslothTrainer
    from pada_local.errors import BackendUnavailable

    if _cuda():
        pytest.skip("this machine has a usable CUDA GPU")
    with pytest.raises(BackendUnavailable, match="CUDA GPU only"):
        UnslothTrainer().train(TrainSpec(tmp_path, EXAMPLES, tmp_path / "adapter"))
    assert "unsloth" not in sys.modules


@pytest.mark.slow
@needs_unsloth_cuda
def test_unsloth_trains_and_adapter_loads_in_evaluation_path(student_dir, tmp_path, capfd):
    import numpy as np

    from pada_local.backends import get_trainer
    from pada_local.backends.device import read_info

    steps = []
    spec = TrainSpec(student_dir, EXAMPLES[:4], tmp_path / "adapter", max_steps=3, batch_size=2, lr=1e-3,
                     rank=4, alpha=8)
    cache_here = (Path.cwd() / "unsloth_compiled_cache").exists()
    adapter = get_trainer("unsloth").train(spec, on_step=steps.append)  # in its child process
    assert "unsloth" not in sys.modules  # this process never imported it
    assert capfd.readouterr().out == ""  # Unsloth's banners go to the child's log
    info = read_info(adapter.path)
    assert info["device"] == "cuda" and info["compute_dtype"] in ("bf16", "fp16") and info["peak_memory_mb"] > 0
    assert (Path.cwd() / "unsloth_compiled_cache").exists() == cache_here  # it went to the run folder
    assert adapter.steps == 3 and [s.step for s in steps] == [1, 2, 3] and adapter.tokens > 0
    assert all(s.loss is not None and s.loss > 0 and s.total_steps == 3 for s in steps)
    config = json.loads((adapter.path / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 4, 8)
    assert sorted(config["target_modules"]) == sorted(spec.target_modules)
    assert _lora_b_moved(adapter.path)
    assert not (tmp_path / "adapter.tmp").exists() and not (tmp_path / "adapter.work").exists()
    ids = [[1, 2, 3, 4, 500, 77]]
    assert not np.allclose(_logits(student_dir, None, ids), _logits(student_dir, adapter.path, ids), atol=1e-4)


@pytest.mark.slow
@needs_unsloth_cuda
def test_unsloth_stops_when_told(student_dir, tmp_path):
    from pada_local.backends import get_trainer

    spec = TrainSpec(student_dir, EXAMPLES[:4], tmp_path / "adapter", max_steps=4, batch_size=2, rank=4, alpha=8)
    adapter = get_trainer("unsloth").train(spec, should_stop=lambda: True)  # asked at the end of each step
    assert adapter.steps < 4 and (adapter.path / "adapter_model.safetensors").is_file()


# --- mlx-lm (a tiny Llama with the real SmolLM2 tokenizer; Apple Silicon in earnest) ------------


def _mlx_logits(model_dir: Path, adapter: Path | None, ids: list[list[int]]):
    import mlx.core as mx
    import mlx_lm
    import numpy as np

    model, _ = mlx_lm.load(str(model_dir), adapter_path=None if adapter is None else str(adapter))
    return np.array(model(mx.array(ids)).astype(mx.float32))


@needs_mlx
def test_mlx_trains_and_peft_adapter_matches_mlx(tiny_llama, tmp_path, capfd):
    import numpy as np
    from safetensors.numpy import load_file

    from pada_local.backends.mlx_trainer import MLXTrainer

    steps = []
    spec = TrainSpec(tiny_llama, EXAMPLES, tmp_path / "adapter", max_steps=3, batch_size=2, grad_accum=2,
                     lr=1e-2, rank=4, alpha=8)
    adapter = MLXTrainer(load_in_4bit=False).train(spec, on_step=steps.append)
    assert capfd.readouterr().out == ""
    assert adapter.steps == 3 and [s.step for s in steps] == [1, 2, 3] and adapter.tokens > 0
    assert all(s.loss is not None and s.loss > 0 for s in steps)
    assert [round(s.lr, 6) for s in steps] == [0.01, 0.0075, 0.0025]  # cosine, as the peft trainer
    weights = load_file(str(adapter.path / "adapter_model.safetensors"))
    assert len(weights) == 2 * 4 * 2  # A and B, four projections, two layers
    assert weights["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].shape == (4, 64)
    assert weights["base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight"].shape == (32, 4)
    config = json.loads((adapter.path / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 4, 8)
    assert _lora_b_moved(adapter.path)
    ids = [[1, 2, 3, 4, 500, 77]]
    tuned = _logits(tiny_llama, adapter.path, ids)
    assert not np.allclose(_logits(tiny_llama, None, ids), tuned, atol=1e-3)
    # mlx-lm reading its own adapter and peft reading the converted one compute the same model.
    np.testing.assert_allclose(_mlx_logits(tiny_llama, adapter.path / "mlx", ids), tuned, atol=1e-4)


@needs_mlx
def test_mlx_qlora_on_a_4bit_base_gives_a_full_precision_adapter(tiny_llama, tmp_path):
    import numpy as np

    from pada_local.backends.mlx_trainer import MLXTrainer

    spec = TrainSpec(tiny_llama, EXAMPLES, tmp_path / "adapter", max_steps=2, batch_size=2, lr=1e-2, rank=4, alpha=8)
    adapter = MLXTrainer(load_in_4bit=True).train(spec)
    ids = [[1, 2, 3, 4, 500, 77]]
    assert adapter.steps == 2
    assert not np.allclose(_logits(tiny_llama, None, ids), _logits(tiny_llama, adapter.path, ids), atol=1e-3)


@needs_mlx
def test_mlx_stops_when_told_and_rejects_unknown_modules(tiny_llama, tmp_path):
    from pada_local.backends.mlx_trainer import MLXTrainer
    from pada_local.errors import ConfigError

    spec = TrainSpec(tiny_llama, EXAMPLES, tmp_path / "adapter", max_steps=5, batch_size=2, rank=4, alpha=8)
    adapter = MLXTrainer(load_in_4bit=False).train(spec, should_stop=lambda: True)  # asked after each step
    assert adapter.steps == 1 and (adapter.path / "adapter_model.safetensors").is_file()
    bad = TrainSpec(tiny_llama, EXAMPLES, tmp_path / "bad", max_steps=1, target_modules=("q_proj", "qkv"))
    with pytest.raises(ConfigError, match="qkv"):
        MLXTrainer(load_in_4bit=False).train(bad)


@needs_mlx
def test_mlx_in_its_child_process_records_how_it_trained(tiny_llama, tmp_path):
    from pada_local.backends import get_trainer
    from pada_local.backends.child import ChildTrainer
    from pada_local.backends.device import read_info

    trainer = get_trainer("mlx")
    assert isinstance(trainer, ChildTrainer)
    spec = TrainSpec(tiny_llama, EXAMPLES, tmp_path / "adapter", max_steps=2, batch_size=2, rank=4, alpha=8)
    steps = []
    adapter = trainer.train(spec, on_step=steps.append)
    assert adapter.steps == 2 and [s.step for s in steps] == [1, 2]
    info = read_info(adapter.path)
    assert info["backend"] == "mlx" and info["peak_memory_mb"] > 0 and info["merge_dtype"] == "fp32"


@needs_mlx
def test_mlx_loss_counts_answer_tokens_only():
    import mlx.core as mx

    from pada_local.backends.mlx_trainer import answer_loss

    vocab = 10

    def model(inputs):  # uniform logits: every counted target costs log(vocab)
        return mx.zeros((*inputs.shape, vocab))

    batch = mx.array([[1, 2, 3, 4, 0, 0], [5, 6, 7, 8, 9, 0]])
    lengths = mx.array([[2, 4], [3, 5]])  # (answer offset, real length): targets 3,4 and 8,9
    loss, ntoks = answer_loss(model, batch, lengths)
    assert int(ntoks.item()) == 4  # mlx-lm's default_loss would also count one padding per row
    assert abs(loss.item() - float(mx.log(mx.array(vocab)).item())) < 1e-5
