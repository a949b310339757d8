"""`pada doctor`: what this machine has, and what to do about what is missing."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import sys
from typing import Any

from . import models
from .backends import TRAINERS, choose_trainer


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _check(name: str, ok: bool, detail: str, fix: str = "", required: bool = True) -> dict[str, Any]:
    status = "ok" if ok else ("missing" if required else "optional")
    return {"check": name, "status": status, "detail": detail, "fix": "" if ok else fix, "required": required}


def _torch() -> dict[str, Any]:
    if importlib.util.find_spec("torch") is None:
        return _check("torch", False, "not installed",
                      "pip install torch==2.13.0 (CPU) first, then the project")
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append(f"cuda ({torch.cuda.get_device_name(0)})")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return _check("torch", True, f"{torch.__version__}; devices: {', '.join(devices)}")


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
    rows = []
    for name, (_, _, package, install) in TRAINERS.items():
        found = importlib.util.find_spec(package) is not None
        rows.append(_check(f"trainer: {name}", found, "importable" if found else "not installed", install,
                           required=name == "peft"))
    chosen, why = choose_trainer("auto")
    rows.append(_check("trainer: auto", True, f"would use '{chosen}': {why}"))
    if importlib.util.find_spec("unsloth") is not None and chosen != "unsloth":
        rows.append(_check("trainer: unsloth", True,
                           "installed, but without CUDA it runs its slow CPU fallback", required=False))
    return rows


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
        _torch(),
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
    from .errors import PadaError

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
