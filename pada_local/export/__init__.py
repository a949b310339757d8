"""Export a run's tuned student, verified: the public API, and the order of the work.

- adapter: the round's PEFT LoRA folder as trained (weights, config, tokenizer, template).
- merged: LoRA merged into the base in bf16, saved as safetensors with tokenizer + template.
- gguf: the merged model converted by llama.cpp's own converter to f16/q8_0, then quantized by
  llama.cpp for q4_0/q4_k_m; `lora_gguf` also writes the adapter as a GGUF LoRA.

The work, one module each: plan (what to export), formats (writing the files), verify (the
exported model next to the in-memory one), card (model card, Modelfile, manifest) and placement
(a hidden temporary folder renamed at the end, so an interruption, a missing converter, an
unsupported architecture or a full disk leaves nothing under the final name). A drop of more
than MAX_DROP points fails the export: its files go to `<out>.unverified`, never to `<out>`.
Every file is recorded with its sha256 in the run's artifacts, through the run ledger.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..events import Event, Reporter, StageProgress, silent
from ..files import now
from ..ledger.runs import Ledger
from ..records import Check, ExportedFile, ExportResult, Verification
from . import converter, placement
from .card import listed_files, write_extras
from .converter import Converter
from .formats import converter_for, write
from .plan import DEFAULT_QUANT, FORMATS, QUANTS, Plan, make_plan
from .template import ollama_template, stop_tokens
from .verify import MAX_DROP, verify_export

__all__ = ["DEFAULT_QUANT", "FORMATS", "MAX_DROP", "QUANTS", "Check", "ExportResult", "ExportedFile",
           "Verification", "export_run", "needs_fetch", "ollama_template", "stop_tokens", "verify_export"]


def export_run(store_path: Path, run_id: str, *, round: int | None = None, fmt: str = "gguf",
               quant: str | None = None, out: Path | None = None, lora_gguf: bool = False,
               verify: bool = True, allow_fetch: bool = False, report: Reporter = silent,
               record: bool = True) -> ExportResult:
    """Export one round's student; see the module docstring. Raises PadaError on user errors.
    `record=False` keeps the files out of the run's artifacts (benchmarks into a temp folder)."""
    start = time.perf_counter()
    plan = make_plan(Path(store_path), run_id, round, fmt, quant, out, lora_gguf)
    progress = StageProgress(report, "export", plan.round, total=_step_count(plan, verify))
    try:
        conv = converter_for(plan, allow_fetch, progress)
        placement.check_destination(plan.out)
        placement.check_space(plan)
        with _ctrl_c_kept() as check:
            final, files, verification = _build(plan, conv, verify, progress, report, check)
    except BaseException:
        progress.end("failed: nothing was left under the final name")  # closes the TUI's/CLI's bar
        raise
    result = ExportResult(plan.run_id, plan.round, plan.fmt, plan.quant, final, files, verification,
                          time.perf_counter() - start)
    if record:
        _record(plan.store, result)
    progress.end("verified" if verification is not None and result.ok else
                 "NOT verified" if verification is None else "verification FAILED")
    return result


def needs_fetch(fmt: str, lora_gguf: bool = False) -> bool:
    """Whether this export needs llama.cpp's converter and it is not cached yet: the moment to
    ask the user (CLI prompt, TUI dialog) before passing allow_fetch=True."""
    return (fmt == "gguf" or lora_gguf) and converter.find() is None


def _step_count(plan: Plan, verify: bool) -> int:
    steps = {"adapter": 1, "merged": 1, "gguf": 2 + plan.quantizes}[plan.fmt]
    return steps + int(plan.lora_gguf) + int(verify) + 2  # + card/modelfile + move into place


def _build(plan: Plan, conv: Converter | None, verify: bool, progress: StageProgress, report: Reporter,
           check: Callable[[], None]) -> tuple[Path, tuple[ExportedFile, ...], Verification | None]:
    """Write into a temporary folder, verify there, then move it into place (or aside).
    `check` raises KeyboardInterrupt for a Ctrl-C that was dropped on the way (_ctrl_c_kept)."""
    with placement.workspace(plan.out) as (tmp, scratch):
        main = write(plan, conv, tmp, scratch, progress)
        check()

        def checked(event: Event) -> None:  # verification reports every item: stop there too
            check()
            report(event)

        verification = verify_export(plan, conv, tmp, scratch, main, checked) if verify else None
        check()
        progress.step(message="verified" if verify else "verification skipped")
        write_extras(plan, tmp, verification)
        progress.step(message="model card and Modelfile written")
        check()  # the last moment: nothing is under the final name yet
        final = placement.place(tmp, plan.out, verification is None or verification.passed)
        progress.step(message=f"-> {final}")
    return final, listed_files(final), verification


@contextmanager
def _ctrl_c_kept() -> Iterator[Callable[[], None]]:
    """Yields `check()`, which raises KeyboardInterrupt once Ctrl-C was pressed.

    Python raises KeyboardInterrupt in the first Python code that runs after SIGINT. When C code
    is running, that can be a callback of the C code into Python, and there ctypes prints the
    exception and drops it: llama-cpp-python's log callback, which llama.cpp calls throughout
    the loading of a GGUF during verification, is one. The export would then run to the end and
    place its files. So, while an export runs in the main thread under Python's own SIGINT
    handler (not where SIGINT is ignored or handled by someone else), the handler also keeps a
    mark that the export checks between its steps."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield lambda: None
        return
    pressed = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        pressed.set()
        raise KeyboardInterrupt

    def check() -> None:
        if pressed.is_set():
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _record(store_path: Path, result: ExportResult) -> None:
    """Each exported file as an artifact; the ledger replaces an earlier export to that folder."""
    at = now()
    meta = json.dumps({"format": result.format, "quant": result.quant, "out_dir": str(result.out_dir),
                       "verified": None if result.verification is None else result.verification.passed})
    rows = [{"round": result.round, "kind": f"export_{f.role}", "path": str(f.path), "sha256": f.sha256,
             "bytes": f.bytes, "created_at": at, "meta_json": meta} for f in result.files]
    with Ledger.open(store_path) as ledger:
        ledger.for_run(result.run_id).record_export(result.out_dir, rows)
