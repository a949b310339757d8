"""`pada doctor`: what this machine has, and what to do about what is missing."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import backends, models
from .backends import MLX_INSTALLS, TRAINERS, choose_trainer, device, refuse_without_cuda
from .errors import PadaError


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _check(name: str, ok: bool, detail: str, fix: str = "", required: bool = True,
           status: str | None = None) -> dict[str, Any]:
    status = status or ("ok" if ok else ("missing" if required else "optional"))
    return {"check": name, "status": status, "detail": detail, "fix": "" if ok else fix, "required": required}


def _torch() -> list[dict[str, Any]]:
    """torch's build, the GPU it sees, and plainly when a GPU is here that it cannot use."""
    tc = device.torch_cuda()
    if tc is None:
        fix = ("Intel Macs have no torch 2.3+ wheels: use an Apple Silicon Mac, Linux or Windows"
               if device.machine_kind() == "intel-mac" else "make setup (TORCH=cpu|cu126|cu130: README)")
        return [_check("torch", False, "not installed", fix)]
    build = f"CUDA {tc.cuda} build" if tc.cuda else "CPU-only build"
    rows = [_check("torch", True, f"{tc.torch_version} ({build}); devices: {', '.join(_devices(tc))}")]
    problem = device.cuda_problem(device.nvidia_driver(), tc)
    if tc.available and tc.capability is not None:
        cap = f"{tc.capability[0]}.{tc.capability[1]}"
        covered = "yes" if device.cuda_usable(tc) else "NO"
        rows.append(_check("gpu", problem is None,
                           f"{tc.name}: compute capability {cap}; torch has kernels for it: {covered} "
                           f"(arch list {' '.join(tc.arch_list)})", device.SETUP_HINT, required=False,
                           status=None if problem is None else "unusable"))
    elif problem is not None:
        rows.append(_check("gpu", False, problem, device.SETUP_HINT, required=False, status="unusable"))
    return rows


def _devices(tc: device.TorchCuda) -> list[str]:
    import torch

    found = ["cpu"] + ([f"cuda ({tc.name})"] if tc.available else [])
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        mac = device.mac_info()
        found.append(f"mps ({device.train_dtype('mps', mac=mac)})")
    return found


def _llama() -> dict[str, Any]:
    if importlib.util.find_spec("llama_cpp") is None:
        return _check("llama-cpp-python", False, "not installed",
                      "pip install llama-cpp-python (compiles llama.cpp)")
    from .backends.llama_cpp import build_info

    info = build_info()
    gpu = "GPU offload" if info.get("gpu_offload") else "CPU only"
    # Only the features that are on: "AVX2 = 1 | ..." -> "AVX2 ..."
    flags = " ".join(f.split("=")[0].strip() for f in info.get("system_info", "").split("|")
                     if f.strip().endswith("= 1"))
    return _check("llama-cpp-python", True, f"{info['version']} ({gpu}); {flags}")


def _trainers() -> list[dict[str, Any]]:
    rows = [_trainer_row(name, package, install) for name, (_, _, package, install) in TRAINERS.items()]
    chosen, why = choose_trainer("auto")
    rows.append(_check("trainer: auto", True, f"would use '{chosen}': {why}"))
    return rows


def _trainer_row(name: str, package: str, install: str) -> dict[str, Any]:
    """Usable, not only installed: unsloth must import and find CUDA; MLX must fit the machine."""
    kind = device.machine_kind()
    if name == "mlx" and kind not in MLX_INSTALLS:
        return _check("trainer: mlx", False, "MLX runs on Apple Silicon only", "", required=False,
                      status="n/a")
    if not backends._has(package):
        return _check(f"trainer: {name}", False, "not installed", install, required=name == "peft")
    if name == "unsloth":
        return _unsloth_row()
    return _check(f"trainer: {name}", True, "importable")


def _unsloth_row() -> dict[str, Any]:
    try:
        refuse_without_cuda()
    except PadaError as err:
        return _check("trainer: unsloth", False, f"installed, not usable: {err.message}", err.hint or "",
                      required=False, status="unusable")
    failure = unsloth_import_error()
    if failure is not None:
        return _check("trainer: unsloth", False, f"installed, but importing it fails: {failure}",
                      "pip uninstall -y torchvision" if "torchvision" in failure else "reinstall unsloth",
                      required=False, status="unusable")
    return _check("trainer: unsloth", True, "imports and finds CUDA (it trains in its own process)")


def unsloth_import_error() -> str | None:
    """Import unsloth in a throw-away process (it patches transformers in whichever process
    imports it): None when it imports, else its last error line."""
    from .backends.child import child_env

    with tempfile.TemporaryDirectory() as tmp:
        try:
            done = subprocess.run([sys.executable, "-c", "import unsloth"], capture_output=True, text=True,
                                  timeout=300, cwd=tmp, env=child_env(Path(tmp)))
        except subprocess.TimeoutExpired:
            return "it took over 5 minutes"
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return lines[-1][:300] if lines else f"exit code {done.returncode}"


def _models() -> list[dict[str, Any]]:
    rows = []
    for entry in models.CATALOGUE.values():
        fix = "pada models --prepare" if entry.role == "student" else "make setup"
        path = entry.path()
        rows.append(_check(f"model: {entry.role} {entry.name}", entry.ready(),
                           "-" if path is None else str(path), fix))
    return rows


def collect() -> dict[str, Any]:
    checks = [
        _check("python", sys.version_info >= (3, 10),
               f"{platform.python_version()} on {platform.machine()} {sys.platform}",
               "use Python 3.10 or newer"),
        *_torch(),
        _llama(),
        *_trainers(),
        *_models(),
    ]
    for dist in ("transformers", "peft", "trl", "sentence-transformers", "sqlite-utils", "textual"):
        ver = _version(dist)
        checks.append(_check(dist, ver is not None, ver or "not installed", "pip install -e ."))
    return {"version": _version("pada-local"), "checks": checks}


def config_checks(cfg: Any) -> list[dict[str, Any]]:
    """`pada doctor --config CONFIG`: the config's own models, and for a teacher or judge behind a
    server the capability probe (it answers, serves the model, honours a schema request)."""
    rows = []
    for role in ("teacher", "judge"):
        endpoint = cfg.models.judge_endpoint if role == "judge" else cfg.models.teacher_endpoint
        name = cfg.models.judge if role == "judge" else cfg.models.teacher
        if endpoint is None and name is None:
            continue
        try:
            if endpoint is not None:
                detail = _probe(endpoint)
            else:
                detail = str(models.resolve_teacher(name, role=role))
            rows.append(_check(f"config: {role}", True, detail))
        except PadaError as err:
            rows.append(_check(f"config: {role}", False, str(err), err.hint or ""))
    try:
        spec = models.resolve_student(cfg.models.student)
        rows.append(_check("config: student", True, f"{spec.name}: {spec.hf_dir or spec.gguf}"))
    except PadaError as err:
        rows.append(_check("config: student", False, str(err), err.hint or ""))
    return rows


def _probe(endpoint: Any) -> str:
    from .backends.openai_endpoint import OpenAIGenerator, url_warnings

    gen = OpenAIGenerator(endpoint.base_url, endpoint.model, api_key_env=endpoint.api_key_env,
                          timeout=min(endpoint.timeout, 60.0), retries=1, backoff=0.5)
    try:
        mode = gen.probe()
    finally:
        gen.close()
    warnings = "; ".join(url_warnings(endpoint.base_url))
    return f"{endpoint.model} at {endpoint.base_url}: answers, structured output via {mode}" + (
        f" (warning: {warnings})" if warnings else "")
