"""Training in a child process, for trainers whose library patches others (Unsloth rewrites the
transformers model classes for the whole process) or can abort from C++ (MLX on Metal).

The parent starts `python -m pada_local.backends.child JOB` in a folder beside the adapter
(`<adapter>.child/`: the job, the child's log, Unsloth's compile cache). The child imports the
trainer's library before anything else, trains, and sends pickled messages back on its stdout:
("step", StepInfo) per step, then ("done", Adapter) or ("error", (kind, message, hint)). Everything
the libraries print goes to the log. A stop request is a "stop" line on the child's stdin. A child
that dies without a reply (a crash, a C++ abort) becomes TrainingFailed with the log's last error
line: the train stage fails, the run is marked failed, and `pada run --resume` retries the stage.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from .. import errors
from ..errors import PadaError
from .base import Adapter, StepInfo, TrainSpec
from .registry import TRAINERS

EXIT_GRACE_S = 120.0  # how long a child that has replied may take to exit


class TrainingFailed(PadaError):
    """The trainer's child process failed or died; the stage can be retried by resuming."""


@dataclass(frozen=True)
class Job:
    module: str  # the in-process trainer class, resolved by the parent (backends.TRAINERS)
    cls: str
    spec: TrainSpec
    kwargs: dict[str, Any] = field(default_factory=dict)


# Offline and quiet: no hub calls (model folders are local), no Unsloth statistics ping; the
# compile cache goes under the run folder instead of the working directory.
def child_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_HUB_DISABLE_TELEMETRY="1", UNSLOTH_DISABLE_STATISTICS="1",
               UNSLOTH_COMPILE_LOCATION=str(work / "unsloth_compiled_cache"),
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    # The child must find this package even when it is not installed (a checkout on PYTHONPATH).
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


class ChildTrainer:
    """A Trainer that runs backend `name` in a child process; same interface as the others.
    `target` ("module:Class") names a trainer class outside backends.TRAINERS."""

    def __init__(self, name: str, target: str | None = None, **kwargs: Any) -> None:
        if target is None:
            target = ":".join(TRAINERS[name][:2])
        self.name, self.kwargs = name, kwargs
        self.module, _, self.cls = target.partition(":")

    def train(self, spec: TrainSpec, on_step: Callable[[StepInfo], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> Adapter:
        spec = replace(spec, base_dir=spec.base_dir.resolve(), out_dir=spec.out_dir.resolve())
        work = spec.out_dir.with_name(spec.out_dir.name + ".child")
        work.mkdir(parents=True, exist_ok=True)
        job = work / "job.pkl"
        job.write_bytes(pickle.dumps(Job(self.module, self.cls, spec, self.kwargs)))
        log_path = work / "train.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "pada_local.backends.child", str(job)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                    cwd=work, env=child_env(work))
        try:
            reply = _follow(proc, on_step, should_stop)
            with contextlib.suppress(subprocess.TimeoutExpired):  # a hung exit: _end kills it
                proc.wait(timeout=EXIT_GRACE_S)
        finally:
            _end(proc)
        return _result(self.name, reply, proc.returncode, log_path)


def _follow(proc: subprocess.Popen, on_step: Callable[[StepInfo], None] | None,
            should_stop: Callable[[], bool] | None) -> tuple[str, Any] | None:
    """Forward steps until the child closes its end; returns its final message, if any."""
    assert proc.stdout is not None
    messages: queue.Queue[tuple[str, Any]] = queue.Queue()
    threading.Thread(target=_read, args=(proc.stdout, messages), daemon=True).start()
    reply, asked, replied_at = None, False, 0.0
    while True:
        try:
            kind, value = messages.get(timeout=0.2)
        except queue.Empty:
            kind, value = "", None
        # The end of its output, or a reply and then no exit (CUDA teardown can hang).
        if kind == "eof" or (reply is not None and time.monotonic() - replied_at > EXIT_GRACE_S):
            return reply
        if kind == "step" and on_step is not None:
            on_step(value)
        elif kind in ("done", "error"):
            reply, replied_at = (kind, value), time.monotonic()
        if not asked and should_stop is not None and should_stop():
            asked = _ask_stop(proc)


def _read(stream: IO[bytes], messages: queue.Queue[tuple[str, Any]]) -> None:
    try:
        while True:
            messages.put(pickle.load(stream))
    except (EOFError, pickle.UnpicklingError, OSError, ValueError):
        messages.put(("eof", None))


def _ask_stop(proc: subprocess.Popen) -> bool:
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"stop\n")
        proc.stdin.flush()
    except (BrokenPipeError, OSError):
        pass  # already gone: its exit is handled by the caller
    return True


def _end(proc: subprocess.Popen) -> None:
    """Never leave a child behind (the parent was interrupted, or the child hangs on exit)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def _result(name: str, reply: tuple[str, Any] | None, returncode: int | None, log: Path) -> Adapter:
    hint = f"the child's full output is in {log}; `pada run --resume RUN_ID` retries the stage"
    if reply is not None and reply[0] == "done":
        adapter: Adapter = reply[1]
        return adapter
    if reply is not None:
        kind, message, own_hint = reply[1]
        cls = getattr(errors, kind, None)
        if isinstance(cls, type) and issubclass(cls, PadaError):
            raise cls(message, hint=own_hint)
        raise TrainingFailed(f"training with '{name}' failed: {message}", hint=hint)
    raise TrainingFailed(f"training with '{name}' died in its child process ({_how(returncode)}): "
                         f"{last_error_line(log)}", hint=hint)


def _how(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


_ERRORISH = re.compile(r"error|what\(\)|abort|exception|killed|out of memory|terminate", re.I)
_FAULT = ("Fatal Python error",)  # faulthandler's report: what follows is its stack dump


def last_error_line(log: Path) -> str:
    """The line of the child's log that says what went wrong: a C++ `what():` or error line
    before faulthandler's stack dump, else faulthandler's own line, else the last line."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    cut = next((i for i, line in enumerate(lines) if line.startswith(_FAULT)), len(lines))
    for line in reversed(lines[:cut]):
        if _ERRORISH.search(line):
            return line[:300]
    if cut < len(lines):
        return lines[cut][:300]
    return lines[-1][:300] if lines else "it wrote nothing"


# ---------------------------------------------------------------- the child side


def main(job_path: str) -> int:
    # The protocol keeps the real stdout; fd 1 then points at the log, so library prints
    # (banners, notices, C++ messages) never mix with the messages.
    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()

    def send(kind: str, value: Any) -> None:
        pickle.dump((kind, value), proto)
        proto.flush()

    try:
        job: Job = pickle.loads(Path(job_path).read_bytes())
        trainer = _trainer(job)
        adapter = trainer.train(job.spec, on_step=lambda info: send("step", info), should_stop=stop.is_set)
        send("done", adapter)
    except PadaError as err:
        send("error", (type(err).__name__, err.message, err.hint))
        return 1
    except BaseException as err:  # noqa: BLE001 - everything reaches the parent as one message
        import traceback

        traceback.print_exc()
        send("error", ("", f"{type(err).__name__}: {err}", None))
        return 1
    return 0


def _trainer(job: Job) -> Any:
    """The in-process trainer class, with its library imported first (before transformers)."""
    trainer_cls = getattr(importlib.import_module(job.module), job.cls)
    first = getattr(trainer_cls, "first_import", None)
    if first is not None:
        started = time.perf_counter()
        try:
            importlib.import_module(first)
        except Exception as err:  # the trainer knows what its library's failures mean, if anyone does
            explain = getattr(trainer_cls, "import_failed", None)
            if explain is None:
                raise
            import traceback

            traceback.print_exc()  # the whole story stays in the child's log
            raise explain(err) from None
        print(f"pada: imported {first} first ({time.perf_counter() - started:.1f}s)", file=sys.stderr)
    return trainer_cls(**job.kwargs)


def _watch_stdin(stop: threading.Event) -> None:
    """A "stop" line, or the parent closing the pipe (it died), ends training after this step.

    Reads file descriptor 0 directly, not `sys.stdin`: a thread blocked in `sys.stdin`'s reader
    holds its lock, and a worker that `datasets` forks (even with dataset_num_proc=1) closes
    sys.stdin first and waits on that lock forever."""
    pending = b""
    while True:
        chunk = os.read(0, 4096)
        if not chunk:
            break
        pending += chunk
        if any(line.strip() == b"stop" for line in pending.split(b"\n")):
            break
    stop.set()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
