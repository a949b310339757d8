"""What this machine's accelerator can do, and the numeric types that follow from it.

Detection reads the hardware through three small functions (`nvidia_driver`, `torch_cuda`,
`mac_info`) that tests replace; every decision below them (`cuda_problem`, `train_dtype`, ...)
is a pure function of what they return, so each machine's case is testable on any machine.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Oldest Linux driver per CUDA major version of a torch build (CUDA 12's minor-version
# compatibility lets any 12.x run on 525.60.13+; CUDA 13.0 needs the 580 series).
MIN_DRIVER = {"12": "525.60.13", "13": "580.65.06"}
SETUP_HINT = "see README, 'Set-up per machine': make setup TORCH=cu126 (GPUs 5.0-9.0) or TORCH=cu130 (7.5+)"
INFO_FILE = "pada_training.json"  # beside the adapter's weights: how it was trained


@dataclass(frozen=True)
class NvidiaDriver:
    """The NVIDIA driver as nvidia-smi reports it; gpus are (name, compute capability)."""

    version: str
    gpus: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TorchCuda:
    """What the installed torch says about CUDA."""

    torch_version: str
    cuda: str | None  # torch.version.cuda: None for a CPU-only build
    available: bool
    name: str | None = None
    capability: tuple[int, int] | None = None
    arch_list: tuple[str, ...] = ()


@dataclass(frozen=True)
class MacInfo:
    macos: tuple[int, int]
    chip: str  # "Apple M2 Pro", or an Intel brand string


# ---------------------------------------------------------------- detection (faked in tests)


def nvidia_driver() -> NvidiaDriver | None:
    """The driver and its GPUs, without torch: tells a GPU exists even when torch cannot see it."""
    query = ["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return _proc_driver()
    rows = [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.count(",") >= 2]
    if not rows:
        return _proc_driver()
    return NvidiaDriver(rows[0][2], tuple((r[0], r[1]) for r in rows))


def _proc_driver() -> NvidiaDriver | None:
    # Linux without nvidia-smi on PATH still shows a loaded kernel module here.
    path = Path("/proc/driver/nvidia/version")
    found = re.search(r"Kernel Module\s+(\S+)", path.read_text()) if path.is_file() else None
    return None if found is None else NvidiaDriver(found.group(1))


def torch_cuda() -> TorchCuda | None:
    """None when torch is not installed; importing it is what doctor and training do anyway."""
    if "torch" not in sys.modules and importlib.util.find_spec("torch") is None:
        return None
    import torch

    cuda = getattr(torch.version, "cuda", None)
    if not torch.cuda.is_available():
        return TorchCuda(torch.__version__, cuda, False)
    return TorchCuda(torch.__version__, cuda, True, torch.cuda.get_device_name(0),
                     tuple(torch.cuda.get_device_capability(0)),  # type: ignore[arg-type]
                     tuple(torch.cuda.get_arch_list()))


def mac_info() -> MacInfo | None:
    if sys.platform != "darwin":
        return None
    release = platform.mac_ver()[0] or "0.0"
    parts = [int(p) for p in release.split(".")[:2] if p.isdigit()] + [0, 0]
    try:
        chip = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        chip = ""
    return MacInfo((parts[0], parts[1]), chip or platform.machine())


def machine_kind() -> str:
    """apple-silicon, intel-mac, windows or linux: what can be installed here depends on it."""
    if sys.platform == "darwin":
        return "apple-silicon" if platform.machine() == "arm64" else "intel-mac"
    return "windows" if sys.platform.startswith("win") else "linux"


# ---------------------------------------------------------------- decisions (pure)


def arch_covers(capability: tuple[int, int], arch_list: tuple[str, ...]) -> bool:
    """True when torch ships kernels this GPU runs: an sm_XY cubin runs on the same major with an
    equal or higher minor (sm_86 code runs on an sm_89 laptop GPU), compute_XY PTX on anything
    newer. The list alone would wrongly refuse the common 8.9 and 6.1 laptop GPUs."""
    major, minor = capability
    for arch in arch_list:
        kind, _, digits = arch.partition("_")
        if not digits.isdigit():
            continue
        a_major, a_minor = int(digits[:-1]), int(digits[-1])
        if kind == "sm" and a_major == major and a_minor <= minor:
            return True
        if kind == "compute" and (a_major, a_minor) <= capability:
            return True
    return False


def cuda_usable(tc: TorchCuda | None) -> bool:
    """torch sees a GPU and has kernels for it: the one condition for training on CUDA."""
    return (tc is not None and tc.available and tc.capability is not None
            and arch_covers(tc.capability, tc.arch_list))


def _older(version: str, than: str) -> bool:
    def parse(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", v))

    return parse(version) < parse(than)


def cuda_problem(driver: NvidiaDriver | None, tc: TorchCuda | None) -> str | None:
    """A plain sentence when an NVIDIA GPU is here but this torch cannot use it; else None."""
    if tc is not None and tc.available:
        if tc.capability is None or cuda_usable(tc):
            return None
        cap = f"{tc.capability[0]}.{tc.capability[1]}"
        return (f"{tc.name} has compute capability {cap}, but this torch (CUDA {tc.cuda}) has no "
                f"kernels for it (it has {' '.join(tc.arch_list) or 'none'}): training would stop with "
                f"'no kernel image'; {SETUP_HINT}")
    if driver is None:
        return None
    gpu = driver.gpus[0][0] if driver.gpus else "an NVIDIA GPU"
    if tc is None:
        return f"{gpu} (driver {driver.version}) is here but torch is not installed; {SETUP_HINT}"
    if tc.cuda is None:
        return (f"{gpu} (driver {driver.version}) is here but torch {tc.torch_version} is a CPU-only "
                f"build, so training runs on the CPU; {SETUP_HINT}")
    need = MIN_DRIVER.get(tc.cuda.split(".")[0])
    if need is not None and _older(driver.version, need):
        return (f"{gpu}: driver {driver.version} is too old for this torch's CUDA {tc.cuda} "
                f"(needs {need} or newer), so training runs on the CPU; update the driver, or "
                f"make setup TORCH=cu126 (driver {MIN_DRIVER['12']}+)")
    return (f"{gpu} (driver {driver.version}) is here but torch {tc.torch_version} (CUDA {tc.cuda}) "
            "cannot reach it; check that nvidia-smi works for this user")


def mps_bf16(mac: MacInfo | None) -> bool:
    """bf16 on MPS needs macOS 14, and M1/M2 have no bf16 units: there it is emulated, slowly."""
    if mac is None or mac.macos < (14, 0):
        return False
    return re.search(r"\bM[12]\b", mac.chip) is None


def train_dtype(device: str, capability: tuple[int, int] | None = None, mac: MacInfo | None = None) -> str:
    """The compute type for training and evaluation on `device`: bf16 where the hardware has it,
    fp16 where bf16 is emulated or missing (CUDA before Ampere 8.0 -
    torch.cuda.is_bf16_supported() counts Turing's emulation - and MPS per `mps_bf16`), fp32 on CPU."""
    if device == "cuda":
        return "bf16" if capability is not None and capability >= (8, 0) else "fp16"
    if device == "mps":
        return "bf16" if mps_bf16(mac) else "fp16"
    return "fp32"


def device_dtype(device: str) -> str:
    """`train_dtype` for this machine's `device`, detected."""
    capability = None
    if device == "cuda":
        import torch

        capability = tuple(torch.cuda.get_device_capability(0))
    return train_dtype(device, capability, mac_info() if device == "mps" else None)  # type: ignore[arg-type]


def cpu_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes in bf16 natively (x86 AVX512-BF16 or AMX). Elsewhere bf16 on the
    CPU is emulated and slower than fp32. Only Linux says, in /proc/cpuinfo."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                  if line.startswith("flags") and ":" in line), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def training_dtype(device: str) -> str:
    """The type LoRA training runs in: `device_dtype`, except on a CPU with native bf16, where
    bf16 weights under bf16 autocast (LoRA's own weights kept in fp32 by peft) measured 1.3x the
    tokens/s of fp32 (benchmarks/bench_trainers.py); evaluation on the CPU stays fp32."""
    if device == "cpu" and cpu_native_bf16():
        return "bf16"
    return device_dtype(device)


def torch_dtype(name: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def precision_args(device: str, dtype: str) -> dict[str, bool]:
    """TRL/transformers settings for mixed precision with this compute type."""
    return {"use_cpu": device == "cpu", "bf16": dtype == "bf16", "fp16": dtype == "fp16"}


# ---------------------------------------------------------------- recorded with the run


def write_info(adapter_dir: Path, **info: Any) -> None:
    """How the adapter was trained (device, types, peak memory): read back into the stage's record."""
    (adapter_dir / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def read_info(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def reset_peak(device: str) -> None:
    """Start the device's peak-memory count afresh (CUDA keeps one per process)."""
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(device: str) -> float | None:
    """CUDA: the peak allocation since the last reset. MPS has no peak counter: what the Metal
    driver holds now. CPU: the process's peak RSS."""
    import torch

    if device == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if device == "mps":
        return round(torch.mps.driver_allocated_memory() / 2**20, 1)
    try:
        import resource
    except ImportError:  # Windows: the CPU figure is simply left out
        return None
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, 1)


def training_detail(adapter_dir: Path) -> dict[str, Any]:
    """How the adapter was trained, for the train stage's record. Trainers in a child process
    write it themselves; for the in-process peft trainer it is this process's device, written
    down here so that the adapter folder carries it too."""
    info = read_info(adapter_dir)
    if not info:
        device = pick_device()
        info = {"device": device, "compute_dtype": training_dtype(device), "merge_dtype": "fp32",
                "peak_memory_mb": peak_memory_mb(device)}
        if adapter_dir.is_dir():
            write_info(adapter_dir, **info)
    return {k: v for k, v in info.items() if k != "backend"}


def pick_device() -> str:
    """CUDA only where torch has kernels for the GPU (a Pascal GPU under a CUDA 13 build would
    stop with 'no kernel image'), else MPS, else the CPU."""
    import torch

    if cuda_usable(torch_cuda()):
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
