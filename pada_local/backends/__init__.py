"""Backends by name, imported only when used, so `pada --help` never loads torch."""

from __future__ import annotations

import importlib.util
import platform
import sys
from typing import Any

from ..errors import BackendUnavailable

TRAINERS = {
    "peft": ("pada_local.backends.peft_trainer", "PeftTrainer", "transformers", "pip install 'pada-local'"),
    "unsloth": ("pada_local.backends.unsloth_trainer", "UnslothTrainer", "unsloth",
                "pip install 'pada-local[unsloth]'"),
    "mlx": ("pada_local.backends.mlx_trainer", "MLXTrainer", "mlx_lm", "pip install 'pada-local[mlx]'"),
}

# Generators (teacher, judge, student inference) by name: module, class. A new kind of
# generator (an HTTP endpoint) is one more backend file and one more line here.
GENERATORS = {
    "llama_cpp": ("pada_local.backends.llama_cpp", "LlamaCppGenerator"),
    "hf": ("pada_local.backends.hf", "HFGenerator"),
    "openai": ("pada_local.backends.openai_endpoint", "OpenAIGenerator"),  # any OpenAI-compatible server
}


def get_generator(name: str, *args: Any, **kwargs: Any) -> Any:
    """Build the named generator; its library is imported only now."""
    if name not in GENERATORS:
        raise BackendUnavailable(f"unknown generator backend '{name}'",
                                 hint=f"one of: {', '.join(GENERATORS)}")
    module, cls = GENERATORS[name]
    return getattr(importlib.import_module(module), cls)(*args, **kwargs)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _cuda() -> bool:
    if "torch" not in sys.modules and not _has("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def is_apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def choose_trainer(requested: str) -> tuple[str, str]:
    """(backend, why) for `auto` or a named backend; raises if it cannot run here."""
    if requested != "auto":
        _check_available(requested)
        return requested, "named in the config"
    if _has("unsloth") and _cuda():
        return "unsloth", "CUDA GPU present and unsloth installed"
    if _has("mlx_lm") and is_apple_silicon() and _mlx_runs():
        return "mlx", "Apple Silicon and mlx-lm installed"
    return "peft", "no CUDA+unsloth or Apple Silicon+mlx-lm here: transformers + peft"


def _check_available(name: str) -> None:
    if name not in TRAINERS:
        raise BackendUnavailable(f"unknown trainer backend '{name}'",
                                 hint=f"one of: auto, {', '.join(TRAINERS)}")
    module, _, package, install = TRAINERS[name]
    if not _has(package) or importlib.util.find_spec(module) is None:
        raise BackendUnavailable(f"trainer backend '{name}' is not installed here", hint=install)
    if name == "mlx" and not _mlx_runs():
        raise BackendUnavailable("mlx-lm is installed but MLX itself cannot run here",
                                 hint="on Linux: pip install 'mlx[cpu]'; MLX is meant for Apple Silicon")


def _mlx_runs() -> bool:
    # mlx-lm installs on Linux without an MLX runtime; only importing mlx.core tells.
    try:
        importlib.import_module("mlx.core")
    except Exception:
        return False
    return True


def trainer_problems(name: str, cfg: Any) -> list[str]:
    """Config fields the chosen backend cannot honour: errors, never silently ignored."""
    check = getattr(importlib.import_module(TRAINERS[name][0]), "unsupported", None)
    return [] if check is None else list(check(cfg))


def get_trainer(name: str) -> Any:
    _check_available(name)
    module, cls, _, _ = TRAINERS[name]
    return getattr(importlib.import_module(module), cls)()
