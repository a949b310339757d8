"""The hardware paths, checked on a CPU machine.

- Machine cases (issue #14): `auto` and `pada doctor` for a CUDA laptop without unsloth, a Pascal
  GPU under a CUDA 13 torch, a driver too old, a CPU-only torch beside a GPU, Apple Silicon with
  and without mlx-lm, an Intel Mac, Windows. The detection functions are faked: the fakes stand
  in for hardware, and the code under test is the decision and the message.
- Numeric types per device and the Metal micro-batch: pure functions.
- The child-process trainer for real: the peft trainer run through it trains a tiny model and
  returns an adapter the evaluation path loads; a child that aborts from "C++" or raises becomes
  a clear error in a parent that lives on; and in the loop, a crashed train stage fails the run
  with the child's last error line and `resume` gets past it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pada_local.backends import device
from pada_local.backends.base import TrainExample, TrainSpec
from pada_local.backends.device import MacInfo, NvidiaDriver, TorchCuda
from pada_local.ledger.runs import Ledger

CU126 = ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90")
CU130 = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120")
EXAMPLES = tuple(TrainExample(({"role": "user", "content": f"Echo {w}"},), w.upper())
                 for w in ("cat", "dog", "sun", "map", "sky"))


def _gpu(cap: tuple[int, int], arch: tuple[str, ...] = CU130,
         name: str = "NVIDIA GeForce RTX 4060 Laptop GPU", cuda: str = "13.0") -> TorchCuda:
    return TorchCuda("2.13.0", cuda, True, name, cap, arch)


def _machine(monkeypatch, *, tc: TorchCuda | None = None, driver: NvidiaDriver | None = None,
             kind: str = "linux", installed: tuple[str, ...] = (), mlx_runs: bool = False) -> None:
    """Fake the hardware and which packages are installed; everything else is real."""
    import pada_local.backends as backends

    if tc is None:
        tc = TorchCuda("2.13.0+cpu", None, False)
    monkeypatch.setattr(device, "torch_cuda", lambda: tc)
    monkeypatch.setattr(device, "nvidia_driver", lambda: driver)
    monkeypatch.setattr(device, "machine_kind", lambda: kind)
    mac = MacInfo((14, 5), "Apple M3") if kind == "apple-silicon" else None
    monkeypatch.setattr(device, "mac_info", lambda: mac)
    real = backends._has
    optional = {"unsloth", "mlx_lm"}
    monkeypatch.setattr(backends, "_has", lambda m: m in installed if m in optional else real(m))
    monkeypatch.setattr(backends, "_mlx_runs", lambda: mlx_runs)


# ---------------------------------------------------------------- capability and driver decisions


@pytest.mark.parametrize("cap, arch, covered", [
    ((8, 9), CU130, True),   # an Ada laptop GPU runs torch's sm_86 kernels (same major, lower minor)
    ((8, 6), CU130, True),
    ((12, 1), CU130, True),  # compute_120 PTX is compiled for newer GPUs at load time
    ((7, 5), CU130, True),
    ((6, 1), CU130, False),  # Pascal: no kernel image in a CUDA 13 build
    ((7, 0), CU130, False),
    ((6, 1), CU126, True),
    ((5, 2), CU126, True),
    ((3, 7), CU126, False),
])
def test_arch_list_coverage(cap, arch, covered):
    assert device.arch_covers(cap, arch) is covered
    assert device.cuda_usable(_gpu(cap, arch)) is covered


def test_cuda_problem_says_what_is_wrong():
    driver = NvidiaDriver("550.54.14", (("NVIDIA GeForce GTX 1060", "6.1"),))
    cpu_torch = TorchCuda("2.13.0+cpu", None, False)
    assert "CPU-only build" in device.cuda_problem(driver, cpu_torch)
    assert "GTX 1060" in device.cuda_problem(driver, cpu_torch)
    old = device.cuda_problem(driver, TorchCuda("2.13.0", "13.0", False))
    assert "too old" in old and "550.54.14" in old and "580" in old and "TORCH=cu126" in old
    pascal = device.cuda_problem(driver, _gpu((6, 1), name="NVIDIA GeForce GTX 1060"))
    assert "6.1" in pascal and "no kernels" in pascal and "TORCH=cu126" in pascal
    assert device.cuda_problem(None, cpu_torch) is None  # no GPU at all: nothing is wrong
    assert device.cuda_problem(driver, _gpu((8, 9))) is None
    assert "not installed" in device.cuda_problem(driver, None)


def test_nvidia_smi_output_is_read(monkeypatch):
    """nvidia-smi's CSV (faked: there is no GPU here), and its absence."""
    out = "NVIDIA GeForce RTX 4060 Laptop GPU, 8.9, 560.35.03\n"
    monkeypatch.setattr(device.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a[0], 0, stdout=out, stderr=""))
    gpus = (("NVIDIA GeForce RTX 4060 Laptop GPU", "8.9"),)
    assert device.nvidia_driver() == NvidiaDriver("560.35.03", gpus)

    def missing(*a, **k):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(device.subprocess, "run", missing)
    monkeypatch.setattr(device, "_proc_driver", lambda: None)
    assert device.nvidia_driver() is None


# ---------------------------------------------------------------- `auto` per machine


def test_auto_on_a_cuda_laptop_without_unsloth_trains_peft_on_the_gpu(monkeypatch):
    from pada_local.backends import choose_trainer

    _machine(monkeypatch, tc=_gpu((8, 9)))
    name, why = choose_trainer("auto")
    assert name == "peft" and "RTX 4060" in why and "8.9" in why
    assert "unsloth is not installed" in why and "pip install 'pada-local[unsloth]'" in why
    assert "no CUDA" not in why


def test_auto_on_a_cuda_laptop_with_unsloth_picks_it(monkeypatch):
    from pada_local.backends import choose_trainer

    _machine(monkeypatch, tc=_gpu((8, 6)), installed=("unsloth",))
    assert choose_trainer("auto")[0] == "unsloth"


def test_auto_never_picks_cuda_for_a_gpu_torch_has_no_kernels_for(monkeypatch):
    from pada_local.backends import choose_trainer

    driver = NvidiaDriver("580.82.07", (("NVIDIA GeForce GTX 1060", "6.1"),))
    _machine(monkeypatch, tc=_gpu((6, 1), name="NVIDIA GeForce GTX 1060"), driver=driver,
             installed=("unsloth",))
    name, why = choose_trainer("auto")
    assert name == "peft" and "on the CPU" in why and "no kernels" in why and "TORCH=cu126" in why


@pytest.mark.parametrize("tc, words", [
    (TorchCuda("2.13.0", "13.0", False), "too old"),
    (TorchCuda("2.13.0+cpu", None, False), "CPU-only build"),
])
def test_auto_says_why_a_present_gpu_is_not_used(monkeypatch, tc, words):
    from pada_local.backends import choose_trainer

    _machine(monkeypatch, tc=tc, driver=NvidiaDriver("550.54.14", (("NVIDIA RTX A2000 Laptop GPU", "8.6"),)))
    name, why = choose_trainer("auto")
    assert name == "peft" and words in why and "A2000" in why


def test_auto_on_apple_silicon(monkeypatch):
    from pada_local.backends import choose_trainer

    _machine(monkeypatch, kind="apple-silicon", installed=("mlx_lm",), mlx_runs=True)
    assert choose_trainer("auto") == ("mlx", "Apple Silicon and mlx-lm installed")
    _machine(monkeypatch, kind="apple-silicon")
    name, why = choose_trainer("auto")
    assert name == "peft" and "MPS" in why and "pip install 'pada-local[mlx]'" in why


@pytest.mark.parametrize("kind", ["intel-mac", "windows"])
def test_mlx_is_never_offered_where_it_cannot_install(monkeypatch, kind):
    from pada_local.backends import choose_trainer
    from pada_local.errors import BackendUnavailable

    _machine(monkeypatch, kind=kind)
    name, why = choose_trainer("auto")
    assert name == "peft" and "pada-local[mlx]" not in why
    with pytest.raises(BackendUnavailable, match="Apple Silicon only") as err:
        choose_trainer("mlx")
    assert "pip install" not in str(err.value) and "peft" in err.value.hint


@pytest.mark.parametrize("kind, pointer", [("linux", "'peft'"), ("apple-silicon", "'mlx'"),
                                           ("windows", "'peft'")])
def test_unsloth_without_cuda_is_refused_with_a_pointer(monkeypatch, tmp_path, kind, pointer):
    from pada_local.backends import choose_trainer
    from pada_local.backends.unsloth_trainer import UnslothTrainer
    from pada_local.errors import BackendUnavailable

    _machine(monkeypatch, kind=kind, installed=("unsloth",))
    with pytest.raises(BackendUnavailable, match="CUDA GPU only") as err:
        choose_trainer("unsloth")
    assert pointer in err.value.hint
    # The trainer itself refuses before importing unsloth (which is not even installed here).
    with pytest.raises(BackendUnavailable, match="CUDA GPU only"):
        UnslothTrainer().train(TrainSpec(tmp_path, EXAMPLES, tmp_path / "adapter"))


def test_gpu_trainers_run_in_a_child_process(monkeypatch):
    import pada_local.backends as backends
    from pada_local.backends.child import ChildTrainer

    _machine(monkeypatch, kind="apple-silicon", installed=("mlx_lm",), mlx_runs=True)
    trainer = backends.get_trainer("mlx")
    assert isinstance(trainer, ChildTrainer) and trainer.module == "pada_local.backends.mlx_trainer"
    assert not isinstance(backends.get_trainer("peft"), ChildTrainer)  # CPU users keep one process


def test_evaluation_and_peft_use_the_cpu_when_torch_has_no_kernels_for_the_gpu(monkeypatch):
    from pada_local.backends.device import pick_device

    _machine(monkeypatch, tc=_gpu((6, 1), name="NVIDIA GeForce GTX 1060"))
    assert pick_device() in ("cpu", "mps")  # (a Mac says mps)
    _machine(monkeypatch, tc=_gpu((8, 6)))
    assert pick_device() == "cuda"


# ---------------------------------------------------------------- `pada doctor` per machine


def _rows(monkeypatch, **machine) -> dict[str, dict]:
    from pada_local import doctor

    _machine(monkeypatch, **machine)
    monkeypatch.setattr(doctor, "unsloth_import_error", lambda: None)
    return {row["check"]: row for row in doctor.collect()["checks"]}


def test_doctor_on_a_cpu_only_torch_beside_a_gpu(monkeypatch):
    driver = NvidiaDriver("560.35.03", (("NVIDIA GeForce RTX 3050 Laptop GPU", "8.6"),))
    rows = _rows(monkeypatch, driver=driver)
    assert "CPU-only build" in rows["torch"]["detail"]
    gpu = rows["gpu"]
    assert gpu["status"] == "unusable" and "RTX 3050" in gpu["detail"] and "CPU-only build" in gpu["detail"]
    assert "TORCH=cu126" in gpu["fix"]
    assert "CPU-only build" in rows["trainer: auto"]["detail"]


def test_doctor_on_a_usable_gpu_prints_capability_and_arch_list(monkeypatch):
    rows = _rows(monkeypatch, tc=_gpu((8, 9)), installed=("unsloth",))
    assert "CUDA 13.0 build" in rows["torch"]["detail"]
    gpu = rows["gpu"]
    assert gpu["status"] == "ok" and "compute capability 8.9" in gpu["detail"] and "yes" in gpu["detail"]
    assert "sm_86" in gpu["detail"]
    assert rows["trainer: unsloth"]["status"] == "ok"
    assert "would use 'unsloth'" in rows["trainer: auto"]["detail"]


def test_doctor_on_a_pascal_gpu_under_cuda_13(monkeypatch):
    rows = _rows(monkeypatch, tc=_gpu((6, 1), name="NVIDIA GeForce GTX 1060"), installed=("unsloth",))
    assert rows["gpu"]["status"] == "unusable" and "torch has kernels for it: NO" in rows["gpu"]["detail"]
    assert rows["trainer: unsloth"]["status"] == "unusable"  # installed is not usable
    assert "would use 'peft'" in rows["trainer: auto"]["detail"]


def test_doctor_reports_installed_unsloth_without_cuda_as_unusable(monkeypatch):
    rows = _rows(monkeypatch, installed=("unsloth",))
    row = rows["trainer: unsloth"]
    assert row["status"] == "unusable" and "CUDA GPU only" in row["detail"] and "peft" in row["fix"]
    assert "gpu" not in rows  # no GPU here: nothing to say about one


@pytest.mark.parametrize("kind", ["intel-mac", "windows"])
def test_doctor_does_not_offer_mlx_where_it_cannot_install(monkeypatch, kind):
    row = _rows(monkeypatch, kind=kind)["trainer: mlx"]
    assert row["status"] == "n/a" and row["fix"] == "" and "Apple Silicon" in row["detail"]


def test_unsloth_import_probe_runs_in_a_throwaway_process():
    from pada_local.doctor import unsloth_import_error

    failure = unsloth_import_error()
    if importlib_has("unsloth"):
        pytest.skip("unsloth is installed here: the probe's failure path is what is checked")
    assert failure is not None and "unsloth" in failure  # ModuleNotFoundError: No module named 'unsloth'
    assert "unsloth" not in sys.modules


def importlib_has(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# ---------------------------------------------------------------- numeric types per device


@pytest.mark.parametrize("dev, cap, mac, dtype", [
    ("cpu", None, None, "fp32"),
    ("cuda", (8, 9), None, "bf16"),
    ("cuda", (8, 0), None, "bf16"),
    ("cuda", (7, 5), None, "fp16"),  # Turing: is_bf16_supported() says yes, but it is emulated
    ("cuda", (6, 1), None, "fp16"),
    ("mps", None, MacInfo((13, 6), "Apple M3 Pro"), "fp16"),  # bf16 on MPS needs macOS 14
    ("mps", None, MacInfo((14, 5), "Apple M1"), "fp16"),  # M1/M2 emulate bf16
    ("mps", None, MacInfo((15, 1), "Apple M2 Max"), "fp16"),
    ("mps", None, MacInfo((14, 5), "Apple M3"), "bf16"),
    ("mps", None, MacInfo((15, 0), "Apple M4 Pro"), "bf16"),
])
def test_train_dtype_per_device(dev, cap, mac, dtype):
    assert device.train_dtype(dev, cap, mac) == dtype
    args = device.precision_args(dev, dtype)
    assert args == {"use_cpu": dev == "cpu", "bf16": dtype == "bf16", "fp16": dtype == "fp16"}


@pytest.mark.parametrize("batch, length, memory_gb, micro", [
    (8, 256, 16, 8),   # 2048 tokens fit a 16 GB laptop's slice
    (8, 512, 16, 4),
    (8, 1024, 16, 2),
    (6, 512, 16, 3),   # a divisor of the batch, so accumulation keeps it exact
    (8, 4096, 16, 1),
    (8, 1024, 64, 8),
])
def test_metal_micro_batch_fits_a_16gb_laptop(batch, length, memory_gb, micro):
    from pada_local.backends.mlx_trainer import metal_micro_batch

    assert metal_micro_batch(batch, length, memory_gb * 2**30) == micro


def test_lora_is_merged_in_fp32_then_cast(tiny_llama, tmp_path, monkeypatch):
    """On a bf16 device the evaluation path merges in fp32, then casts: bit for bit the
    reference merge, not a merge into bf16 weights (which rounds small updates away)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from pada_local.backends.hf import load_model
    from pada_local.backends.peft_trainer import PeftTrainer

    spec = TrainSpec(tiny_llama, EXAMPLES, tmp_path / "adapter", max_steps=1, batch_size=2, lr=1e-2,
                     rank=4, alpha=8)
    adapter = PeftTrainer().train(spec)
    monkeypatch.setattr(device, "device_dtype", lambda dev: "bf16")  # as on an Ampere GPU
    model = load_model(tiny_llama, adapter.path, device="cpu")
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama), dtype=torch.float32)
    ref = PeftModel.from_pretrained(base, str(adapter.path)).merge_and_unload().to(torch.bfloat16)
    got, want = model.state_dict(), ref.state_dict()
    assert got.keys() == want.keys()
    assert all(got[k].dtype == torch.bfloat16 and torch.equal(got[k], want[k]) for k in got)


# ---------------------------------------------------------------- the child process, for real


def test_peft_through_the_child_runner_trains_a_usable_adapter(tiny_llama, tmp_path, capfd):
    import numpy as np
    import torch

    from pada_local.backends.child import ChildTrainer
    from pada_local.backends.hf import load_model

    steps = []
    spec = TrainSpec(tiny_llama, EXAMPLES, tmp_path / "adapter", max_steps=3, batch_size=2, lr=1e-2,
                     rank=4, alpha=8)
    adapter = ChildTrainer("peft").train(spec, on_step=steps.append)
    assert capfd.readouterr().out == ""  # the child's output goes to its log, not our stdout
    assert adapter.steps == 3 and [s.step for s in steps] == [1, 2, 3] and all(s.loss > 0 for s in steps)
    assert adapter.path == (tmp_path / "adapter").resolve()
    config = json.loads((adapter.path / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (4, 8)
    log = tmp_path / "adapter.child" / "train.log"
    assert log.is_file()
    ids = torch.tensor([[1, 2, 3, 4, 500, 77]])
    with torch.no_grad():
        base = load_model(tiny_llama, None, device="cpu")(ids).logits.numpy()
        tuned = load_model(tiny_llama, adapter.path, device="cpu")(ids).logits.numpy()
    assert not np.allclose(base, tuned, atol=1e-4)


def test_the_child_stops_when_told(tiny_llama, tmp_path):
    from pada_local.backends.child import ChildTrainer

    spec = TrainSpec(tiny_llama, EXAMPLES, tmp_path / "adapter", max_steps=50, batch_size=2, rank=4,
                     alpha=8)
    seen = []
    adapter = ChildTrainer("peft").train(spec, on_step=seen.append, should_stop=lambda: bool(seen))
    assert adapter.steps < 50 and (adapter.path / "adapter_model.safetensors").is_file()


def test_the_child_gets_offline_switches_and_its_cache_in_the_run_folder(tmp_path):
    from pada_local.backends.child import child_env

    env = child_env(tmp_path / "adapter.child")
    assert env["UNSLOTH_COMPILE_LOCATION"] == str(tmp_path / "adapter.child" / "unsloth_compiled_cache")
    assert env["UNSLOTH_DISABLE_STATISTICS"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert env["TRANSFORMERS_OFFLINE"] == "1" and env["HF_DATASETS_OFFLINE"] == "1"


def test_a_child_that_aborts_is_a_clear_error_and_the_parent_lives(tmp_path):
    from pada_local.backends.child import ChildTrainer, TrainingFailed

    from .child_trainers import METAL_ABORT

    steps = []
    spec = TrainSpec(tmp_path, EXAMPLES, tmp_path / "adapter")
    with pytest.raises(TrainingFailed) as err:
        ChildTrainer("mlx", "tests.child_trainers:AbortingTrainer").train(spec, on_step=steps.append)
    message = str(err.value)
    assert "SIGABRT" in message and "Command buffer execution failed" in message
    assert METAL_ABORT[:60] in message and "--resume" in err.value.hint and "train.log" in err.value.hint
    assert [s.step for s in steps] == [1]  # progress crossed the boundary before the crash
    assert os.getpid() > 0  # still here


def test_a_child_exception_keeps_its_message_and_kind(tmp_path):
    from pada_local.backends.child import ChildTrainer, TrainingFailed
    from pada_local.errors import ConfigError

    spec = TrainSpec(tmp_path, EXAMPLES, tmp_path / "adapter")
    with pytest.raises(TrainingFailed, match="RuntimeError: CUDA error: no kernel image"):
        ChildTrainer("unsloth", "tests.child_trainers:RaisingTrainer").train(spec)
    with pytest.raises(ConfigError, match="qkv not found") as err:
        ChildTrainer("mlx", "tests.child_trainers:ConfigErrorTrainer").train(spec)
    assert err.value.hint == "modules there: q_proj"


def test_a_child_that_replies_but_hangs_on_exit_is_ended(tmp_path, monkeypatch):
    import time

    from pada_local.backends import child

    monkeypatch.setattr(child, "EXIT_GRACE_S", 2.0)
    start = time.monotonic()
    adapter = child.ChildTrainer("mlx", "tests.child_trainers:HangingExitTrainer").train(
        TrainSpec(tmp_path, EXAMPLES, tmp_path / "adapter"))
    assert adapter.steps == 1 and time.monotonic() - start < 60


def test_last_error_line_prefers_the_cpp_message_over_the_stack_dump(tmp_path):
    from pada_local.backends.child import last_error_line

    log = tmp_path / "train.log"
    log.write_text("loading\nterminate called after throwing an instance of 'std::runtime_error'\n"
                   "  what():  [metal::malloc] Attempting to allocate 17179869184 bytes\n\n"
                   "Fatal Python error: Aborted\n\nCurrent thread 0x1 (most recent call first):\n"
                   '  File "x.py", line 3 in <module>\n')
    assert last_error_line(log).startswith("what():  [metal::malloc]")
    log.write_text("step 1\nFatal Python error: Aborted\n\nThread 0x2:\n  File \"y.py\", line 1\n")
    assert last_error_line(log) == "Fatal Python error: Aborted"
    assert last_error_line(tmp_path / "none.log") == "it wrote nothing"


def test_the_child_imports_its_library_before_transformers(tmp_path):
    """The child imports the trainer's `first_import` before transformers and torch (Unsloth's
    rule): the trainer reports what was loaded when it started."""
    from pada_local.backends.child import ChildTrainer
    from pada_local.errors import ConfigError

    spec = TrainSpec(tmp_path, EXAMPLES, tmp_path / "adapter")
    with pytest.raises(ConfigError) as err:
        ChildTrainer("unsloth", "tests.child_trainers:ImportOrderTrainer").train(spec)
    assert err.value.message == "first: True; heavy: []"


@pytest.mark.slow
def test_a_crashed_train_stage_fails_the_run_and_resume_gets_past_it(tmp_path, monkeypatch):
    import pada_local.backends as backends
    from pada_local.backends.child import TrainingFailed
    from pada_local.config import load
    from pada_local.run import loop

    from .conftest import tiny_task

    # The peft backend, run as a GPU backend is (in a child), by a trainer that aborts once.
    flaky = ("tests.child_trainers", "FlakyPeftTrainer", "transformers", "pip install 'pada-local'")
    monkeypatch.setitem(backends.TRAINERS, "peft", flaky)
    cfg = load(tiny_task(tmp_path), [f"store={tmp_path / 'runs.db'}", f"workdir={tmp_path / 'work'}",
                                     "train.backend=peft", "loop.strategy=none"])
    with pytest.raises(TrainingFailed, match="SIGABRT"):
        loop.start(cfg)
    with Ledger.open_existing(tmp_path / "runs.db") as ledger:
        run_id = ledger.runs()[0]["id"]
        row = ledger.run(run_id)
        assert row["status"] == "failed" and "Command buffer execution failed" in row["error"]
        assert ledger.for_run(run_id).stage_done(0, "zero_shot") and not ledger.for_run(run_id).stage_done(0, "train")
    loop.resume(tmp_path / "runs.db", run_id)
    with Ledger.open_existing(tmp_path / "runs.db") as ledger:
        assert ledger.run(run_id)["status"] == "finished" and ledger.for_run(run_id).stage_done(0, "train")
        detail = ledger.for_run(run_id).stage_detail(0, "train")
    # bf16 on a CPU with native bf16 (device.training_dtype), else fp32; merged in fp32 either way
    assert detail["device"] == "cpu" and detail["compute_dtype"] == device.training_dtype("cpu")
    assert detail["merge_dtype"] == "fp32"
    assert detail["peak_memory_mb"] > 0
