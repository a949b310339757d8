"""Backends by name, imported only when used, so `pada --help` never loads torch."""

from __future__ import annotations

import importlib.util
from typing import Any

from ..errors import BackendUnavailable
from .registry import GENERATORS, TRAINERS

__all__ = ["GENERATORS", "TRAINERS", "choose_trainer", "get_generator", "get_trainer", "trainer_problems"]


def get_generator(name: str, *args: Any, **kwargs: Any) -> Any:
    """Build the named generator; its library is imported only now."""
    if name not in GENERATORS:
        raise BackendUnavailable(f"unknown generator backend '{name}'",
                                 hint=f"one of: {', '.join(GENERATORS)}")
    module, cls = GENERATORS[name]
    return getattr(importlib.import_module(module), cls)(*args, **kwargs)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


MLX_INSTALLS = ("apple-silicon", "linux")  # mlx has wheels there only (Linux: its CPU build)
_INSTALL = {name: spec[3] for name, spec in TRAINERS.items()}


def choose_trainer(requested: str) -> tuple[str, str]:
    """(backend, why) for `auto` or a named backend; raises if it cannot run here."""
    if requested != "auto":
        _check_available(requested)
        return requested, "named in the config"
    from . import device

    tc = device.torch_cuda()
    if device.cuda_usable(tc):
        return _on_cuda(tc)
    kind = device.machine_kind()
    if kind == "apple-silicon":
        if _has("mlx_lm") and _mlx_runs():
            return "mlx", "Apple Silicon and mlx-lm installed"
        return "peft", f"Apple Silicon without mlx-lm: transformers + peft on MPS ({_INSTALL['mlx']} for MLX)"
    problem = device.cuda_problem(device.nvidia_driver(), tc)
    if problem is not None:
        return "peft", f"transformers + peft on the CPU: {problem}"
    if kind == "intel-mac":
        return "peft", "Intel Mac: transformers + peft on the CPU (MLX and unsloth need other hardware)"
    return "peft", "no usable GPU here: transformers + peft on the CPU"


def _on_cuda(tc: Any) -> tuple[str, str]:
    gpu = f"CUDA GPU {tc.name} (compute capability {tc.capability[0]}.{tc.capability[1]})"
    if _has("unsloth"):
        return "unsloth", f"{gpu} and unsloth installed"
    return "peft", f"{gpu}: transformers + peft on the GPU; unsloth is not installed ({_INSTALL['unsloth']})"


def _check_available(name: str) -> None:
    if name not in TRAINERS:
        raise BackendUnavailable(f"unknown trainer backend '{name}'",
                                 hint=f"one of: auto, {', '.join(TRAINERS)}")
    from . import device

    module, _, package, install = TRAINERS[name]
    if name == "mlx" and device.machine_kind() not in MLX_INSTALLS:
        raise BackendUnavailable("MLX runs on Apple Silicon only; it does not install on this machine",
                                 hint="use train.backend 'peft' (or 'auto')")
    if not _has(package) or importlib.util.find_spec(module) is None:
        raise BackendUnavailable(f"trainer backend '{name}' is not installed here", hint=install)
    if name == "unsloth":
        refuse_without_cuda()
    if name == "mlx" and not _mlx_runs():
        raise BackendUnavailable("mlx-lm is installed but MLX itself cannot run here",
                                 hint="on Linux: pip install 'mlx[cpu]'; MLX is meant for Apple Silicon")


def refuse_without_cuda() -> None:
    """Unsloth's CPU and Apple paths swap in other code than the CUDA one our set-up is for."""
    from . import device

    tc = device.torch_cuda()
    if device.cuda_usable(tc):
        return
    problem = device.cuda_problem(device.nvidia_driver(), tc)
    where = "Apple Silicon: use train.backend 'mlx' (or 'auto')" \
        if device.machine_kind() == "apple-silicon" else "use train.backend 'peft' (or 'auto')"
    raise BackendUnavailable("unsloth trains on a CUDA GPU only, and this machine has none usable"
                             + ("" if problem is None else f" ({problem})"), hint=where)


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
    """The trainer; one whose library patches others (`own_process`) runs in a child process."""
    _check_available(name)
    module, cls, _, _ = TRAINERS[name]
    trainer_cls = getattr(importlib.import_module(module), cls)
    if getattr(trainer_cls, "own_process", False):
        from .child import ChildTrainer

        return ChildTrainer(name)
    return trainer_cls()
