"""Trainers that fail the way a GPU library fails, for the child-process runner's tests
(backends/child.py). They stand in for a crashing library, not for the runner under test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pada_local.backends.base import StepInfo
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
