"""The hardware check (issue #14): run it the day a CUDA GPU or an Apple Silicon Mac is at hand.

    make check-hardware            # or: .venv/bin/python scripts/check_hardware.py [--cpu] [--config F]

1. `pada doctor`;
2. the backend tests (tests/test_backends.py, tests/test_hardware.py) in every venv that exists
   (.venv, .venv-unsloth, .venv-mlx);
3. a one-round run on the demo task (or --config) with `auto`'s trainer, the peak memory per
   stage (device allocator on CUDA/MPS, process RSS on the CPU; the trainer's own peak from the
   child process);
4. the last round's trained score on the test split computed three ways, side by side: in the
   run's own process, in a fresh process (merged adapter, as evaluation loads it), and from the
   unmerged adapter in fp32.

Without a usable CUDA GPU or Apple Silicon it stops after step 1 with exit code 2, saying so;
`--cpu` runs every step on the CPU anyway (to check the script itself).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENVS = (".venv", ".venv-unsloth", ".venv-mlx")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="run everything on the CPU even without a GPU")
    parser.add_argument("--config", type=Path, help="a task config instead of the demo task")
    parser.add_argument("--skip-tests", action="store_true", help="leave out step 2")
    parser.add_argument("--score", nargs=3, metavar=("RUN_CONFIG", "ADAPTER", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.score is not None:  # step 4's fresh process
        print(json.dumps(score(Path(args.score[0]), Path(args.score[1]), args.score[2])))
        return 0
    _section("1. pada doctor")
    subprocess.run([str(Path(sys.executable).parent / "pada"), "doctor"], cwd=ROOT, check=False)
    where = _accelerator()
    if where == "cpu" and not args.cpu:
        print("\nNo usable CUDA GPU or Apple Silicon here (doctor says why): the hardware steps are "
              "skipped. `--cpu` runs them on the CPU to check this script.", file=sys.stderr)
        return 2
    failed = 0 if args.skip_tests else _tests()
    return max(failed, _run_and_score(args.config, where))


def _section(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def _accelerator() -> str:
    from pada_local.backends import device

    if device.cuda_usable(device.torch_cuda()):
        return "cuda"
    return "mps" if device.machine_kind() == "apple-silicon" else "cpu"


def _tests() -> int:
    _section("2. backend tests")
    worst = 0
    for venv in VENVS:
        python = ROOT / venv / "bin" / "python"
        if not python.is_file():
            print(f"{venv}: not set up (make setup-unsloth / setup-mlx), skipped")
            continue
        print(f"{venv}:", flush=True)
        done = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "tests/test_backends.py", "tests/test_hardware.py"], cwd=ROOT, check=False)
        worst = max(worst, 1 if done.returncode not in (0, 5) else 0)
    return worst


# ---------------------------------------------------------------- 3. one round, peak memory


class PeakPerStage:
    """A reporter: the peak memory of each stage, reset when the stage starts."""

    def __init__(self, where: str) -> None:
        self.where, self.peaks = where, {}  # type: dict[str, float]

    def __call__(self, event: Any) -> None:
        key = f"round {event.round} {event.stage}" if event.round is not None else event.stage
        if event.kind == "start":
            self._reset()
        elif event.kind == "end":
            self.peaks[key] = max(self.peaks.get(key, 0.0), self._peak())
        elif event.kind == "log" and event.message:
            print(f"  [{key}] {event.message}", file=sys.stderr)

    def _reset(self) -> None:
        import torch

        if self.where == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def _peak(self) -> float:
        from pada_local.backends.device import peak_memory_mb

        return peak_memory_mb(self.where) or 0.0


def _run_and_score(config: Path | None, where: str) -> int:
    from pada_local.config import load
    from pada_local.ledger.runs import Ledger
    from pada_local.run import loop
    from pada_local.tasks import DEMO_CONFIG

    _section(f"3. one round on {'the demo task' if config is None else config} ({where})")
    work = Path(tempfile.mkdtemp(prefix="pada-hw-"))
    cfg = load(config or DEMO_CONFIG, [f"store={work / 'runs.db'}", f"workdir={work / 'work'}",
                                       "loop.rounds=1", "loop.fixed_rounds=true"])
    peaks = PeakPerStage(where)
    run_id = loop.start(cfg, report=peaks)
    with Ledger.open_existing(work / "runs.db") as ledger:
        rounds = ledger.for_run(run_id).rounds()
        last = max(r["round"] for r in rounds if r["adapter_path"])
        train = ledger.for_run(run_id).stage_detail(last, "train") or {}
        in_process = next(r["test_score"] for r in rounds if r["round"] == last)
        adapter = Path(next(r["adapter_path"] for r in rounds if r["round"] == last))
    print(f"run {run_id} in {work}; trainer: {train.get('backend', cfg.train.backend)} "
          f"on {train.get('device')}, compute {train.get('compute_dtype')}")
    print(f"{'stage':<40} {'peak MB':>10}")
    for stage, mb in peaks.peaks.items():
        print(f"{stage:<40} {mb:>10.0f}")
    print(f"{'last train (the trainer itself)':<40} {train.get('peak_memory_mb') or 0:>10.0f}")
    (work / "config.json").write_text(json.dumps({"config": str(config or DEMO_CONFIG)}))
    return _scores(work, adapter, in_process)


# ---------------------------------------------------------------- 4. the trained score, three ways


def _scores(work: Path, adapter: Path, in_process: float | None) -> int:
    _section("4. trained score on the test split, three ways")
    rows = [("in the run's process (merged)", in_process)]
    modes = (("merged", "fresh process (merged)"), ("unmerged-fp32", "fresh process, unmerged fp32"))
    for mode, label in modes:
        command = [sys.executable, __file__, "--score", str(work / "config.json"), str(adapter), mode]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            rows.append((label, None))
            continue
        rows.append((label, json.loads(done.stdout.strip().splitlines()[-1])["test"]))
    for label, value in rows:
        print(f"{label:<34} {'failed' if value is None else f'{100 * value:.1f}%'}")
    values = [v for _, v in rows if v is not None]
    return 0 if len(values) == len(rows) else 1


def score(run_config: Path, adapter: Path, mode: str) -> dict[str, Any]:
    """The test-split score of `adapter`, evaluated as the loop does, in this process."""
    from pada_local.backends.device import pick_device
    from pada_local.backends.hf import HFGenerator
    from pada_local.config import load
    from pada_local.models import prepare_student, resolve_student
    from pada_local.run import loop
    from pada_local.stages.evaluate import accuracy, evaluate

    cfg = load(Path(json.loads(run_config.read_text())["config"]), ["loop.rounds=1"])
    prepared = loop.preflight(cfg)
    student_dir = prepare_student(resolve_student(cfg.models.student))
    dev = pick_device()
    gen = HFGenerator(student_dir, adapter if mode == "merged" else None,
                      max_new_tokens=cfg.task.max_new_tokens, device=dev)
    if mode == "unmerged-fp32":
        gen.model = _unmerged_fp32(student_dir, adapter, dev)
    rows = evaluate(gen, prepared.splits.test, cfg.task, prepared.scorer, options=prepared.options)
    return {"mode": mode, "device": dev, "test": accuracy(rows)}


def _unmerged_fp32(student_dir: Path, adapter: Path, dev: str) -> Any:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(student_dir), dtype=torch.float32, use_safetensors=True)
    return PeftModel.from_pretrained(base, str(adapter)).to(dev).eval()


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
