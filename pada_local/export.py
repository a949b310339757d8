"""Stage: export a run's tuned student (PEFT adapter | merged 16-bit safetensors | GGUF), verified.

- adapter: the round's PEFT LoRA folder as trained (weights, config, tokenizer, template).
- merged: LoRA merged into the base in bf16, saved as safetensors with tokenizer + template.
- gguf: the merged model converted by llama.cpp's own converter (the version matching the
  installed llama-cpp-python, see converter.py) to f16/q8_0, then quantized by llama.cpp
  (`llama_model_quantize`) for q4_0/q4_k_m; `lora_gguf` also writes the adapter as a GGUF LoRA.

Everything is written into a hidden temporary folder next to the final one and renamed at the
end: an interruption, a missing converter, an unsupported architecture or a full disk leaves
nothing under the final name. Before the rename, the exported files are verified: loaded (by
llama.cpp for GGUF, by transformers otherwise), the chat template rendered and compared with
the one the student was trained with, generation checked to stop at the end-of-turn token, and
a slice of the validation set scored next to the in-memory model (base + adapter). A drop of
more than MAX_DROP points fails the export: its files go to `<out>.unverified`, never to `<out>`.
A model card (README.md), an Ollama Modelfile and export.json (checksums, verification) go
alongside, and every file is recorded with its sha256 in the run store's artifacts.
"""

from __future__ import annotations

import argparse
import errno
import gc
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from . import converter as conv_mod
from .errors import Cancelled, PadaError
from .events import Reporter, StageProgress, silent

FORMATS = ("adapter", "merged", "gguf")
QUANTS = ("f16", "q8_0", "q4_0", "q4_k_m")
DEFAULT_QUANT = "q8_0"
CONVERTER_TYPES = {"f16": "f16", "q8_0": "q8_0", "q4_0": "f16", "q4_k_m": "f16"}  # what convert writes first
LLAMA_FTYPES = {"q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
MAX_DROP = 15.0  # points of the validation slice: more is a failed export
SLICE = 20  # validation items scored through the exported model
MANIFEST = "export.json"
# Base models we know by name: (hub id, licence identifier).
KNOWN_BASES = {"smollm2-135m": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")}
# Tokens chat models end a turn with (besides eos), as in backends/hf.py.
TURN_END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")
PROBES = ("What is 2 plus 2?", "Say hello.")  # short prompts any instruct model ends quickly
PROBE_TOKENS = 64


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class ExportedFile:
    path: Path  # absolute, under the export folder
    sha256: str
    bytes: int
    role: str  # model | adapter | lora | tokenizer | card | modelfile | config | manifest


@dataclass(frozen=True)
class Check:
    """One exported model, loaded and tried: what worked and what it scored."""

    target: str  # file or folder name in the export, e.g. "x-q8_0.gguf"
    engine: str  # "llama.cpp" or "transformers"
    loads: bool
    template_ok: bool
    stops: bool
    score: float | None  # share of slice items right (0..1)
    agreement: float | None  # share of slice items predicted exactly as the in-memory model did
    n_items: int
    seconds: float
    problems: tuple[str, ...] = ()
    chat_format: str | None = None  # what llama-cpp-python chose for this file

    def drop(self, reference: float) -> float | None:
        return None if self.score is None else 100 * (reference - self.score)


@dataclass(frozen=True)
class Verification:
    reference_score: float  # in-memory model (base + adapter, transformers) on the slice
    n_items: int
    max_drop: float
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(_check_passed(c, self.reference_score, self.max_drop) for c in self.checks)


@dataclass(frozen=True)
class ExportResult:
    run_id: str
    round: int
    format: str
    quant: str | None
    out_dir: Path  # the final folder, or `<out>.unverified` when verification failed
    files: tuple[ExportedFile, ...]
    verification: Verification | None  # None with verify=False
    seconds: float

    @property
    def ok(self) -> bool:
        return self.verification is None or self.verification.passed


def _check_passed(c: Check, reference: float, max_drop: float) -> bool:
    drop = c.drop(reference)
    # One item flipping is noise on a small slice (1 of 7 is 14 points): a failure needs more.
    tolerated = max(max_drop, 100 / c.n_items if c.n_items else 0.0)
    broken = any(p.startswith("config") for p in c.problems)  # e.g. a leaked quantization_config
    return c.loads and c.template_ok and c.stops and not broken and drop is not None and drop <= tolerated


# ---------------------------------------------------------------- what to export


@dataclass(frozen=True)
class _Plan:
    run_id: str
    round: int
    fmt: str
    quant: str | None
    out: Path
    cfg: Any  # config.Config
    spec: Any  # models.StudentSpec
    adapter: Path
    run: dict[str, Any]
    round_row: dict[str, Any]
    slug: str
    lora_gguf: bool
    store: Path


def _plan(store: Any, run_id: str, round_: int | None, fmt: str, quant: str | None, out: Path | None,
          lora_gguf: bool) -> _Plan:
    from . import models
    from .config import from_dict

    _check_choice(fmt, quant)
    run_id = store.resolve_run_id(run_id)
    run = store.run(run_id)
    cfg = from_dict(json.loads(run["config_json"]), Path.cwd(), "run config")
    row = _round_row(store, run, round_)
    adapter = Path(row["adapter_path"])
    if not (adapter / "adapter_config.json").is_file():
        raise PadaError(f"round {row['round']}'s adapter is missing: {adapter}",
                        hint="the run's folder was moved or deleted; re-run that round (`pada run --resume`)")
    spec = models.resolve_student(cfg.models.student)
    quant = quant if quant is not None or fmt != "gguf" else DEFAULT_QUANT
    slug = _slug(f"{spec.name}-{cfg.task.name}")
    out = Path(out) if out is not None else _default_out(cfg, run, row["round"], fmt, quant)
    return _Plan(run_id, row["round"], fmt, quant, out.expanduser().resolve(), cfg, spec, adapter, run, row, slug,
                 lora_gguf, Path(store.path))


def _check_choice(fmt: str, quant: str | None) -> None:
    if fmt not in FORMATS:
        raise PadaError(f"unknown export format {fmt!r}", hint=f"one of {', '.join(FORMATS)}")
    if quant is not None and quant not in QUANTS:
        raise PadaError(f"unknown quantization {quant!r}", hint=f"one of {', '.join(QUANTS)}")
    if quant is not None and fmt != "gguf":
        raise PadaError(f"--quant applies to --format gguf only (the {fmt} export is 16-bit)",
                        hint="drop --quant, or use --format gguf")


def _round_row(store: Any, run: dict[str, Any], round_: int | None) -> dict[str, Any]:
    """The asked round, else the run's best, else the best-scoring round with an adapter."""
    rows = [r for r in store.rounds(run["id"]) if r["adapter_path"]]
    if not rows:
        raise PadaError(f"run {run['id']} has no trained round yet", hint="let the run finish round 0 first")
    wanted = round_ if round_ is not None else run["best_round"]
    if wanted is None:
        return max(rows, key=lambda r: (r["val_score"] if r["val_score"] is not None else -1.0, -r["round"]))
    found = [r for r in rows if r["round"] == wanted]
    if not found:
        have = ", ".join(str(r["round"]) for r in rows)
        raise PadaError(f"run {run['id']} has no trained round {wanted}", hint=f"rounds with an adapter: {have}")
    return found[0]


def _default_out(cfg: Any, run: dict[str, Any], round_: int, fmt: str, quant: str | None) -> Path:
    # runs/<run>/export-<format>[-<quant>]; a round other than the best one is named too.
    name = f"export-{fmt}" + (f"-{quant}" if quant is not None else "")
    name += "" if run["best_round"] == round_ else f"-r{round_}"
    return Path(cfg.workdir) / run["id"] / name


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.") or "model"


# ---------------------------------------------------------------- the export


def export_run(store_path: Path, run_id: str, *, round: int | None = None, fmt: str = "gguf",
               quant: str | None = None, out: Path | None = None, lora_gguf: bool = False,
               verify: bool = True, allow_fetch: bool = False, report: Reporter = silent,
               record: bool = True) -> ExportResult:
    """Export one round's student; see the module docstring. Raises PadaError on user errors.
    `record=False` keeps the files out of the run's artifacts (benchmarks into a temp folder)."""
    from .store import RunStore

    start = time.perf_counter()
    store_path = Path(store_path)
    if not store_path.exists():
        raise PadaError(f"no run store at {store_path}", hint="start a run with `pada demo` or `pada run CONFIG`")
    with RunStore(store_path) as store:
        plan = _plan(store, run_id, round, fmt, quant, out, lora_gguf)
    progress = StageProgress(report, "export", plan.round, total=_step_count(plan, verify))
    try:
        conv = _converter_for(plan, allow_fetch, progress)
        _check_destination(plan)
        _check_space(plan)
        final, files, verification = _build(plan, conv, verify, progress, report)
    except BaseException:
        progress.end("failed: nothing was left under the final name")  # closes the TUI's/CLI's bar
        raise
    result = ExportResult(plan.run_id, plan.round, plan.fmt, plan.quant, final, files, verification,
                          time.perf_counter() - start)
    if record:
        with RunStore(store_path) as store:
            _record(store, result)
    progress.end("verified" if verification is not None and result.ok else
                 "NOT verified" if verification is None else "verification FAILED")
    return result


def _step_count(plan: _Plan, verify: bool) -> int:
    steps = {"adapter": 1, "merged": 1, "gguf": 2 + (plan.quant in LLAMA_FTYPES)}[plan.fmt]
    return steps + int(plan.lora_gguf) + int(verify) + 2  # + card/modelfile + move into place


def _converter_for(plan: _Plan, allow_fetch: bool, progress: StageProgress) -> Any:
    """The converter when this export needs it, checked against the base architecture first."""
    if plan.fmt != "gguf" and not plan.lora_gguf:
        return None
    conv = conv_mod.ensure(allow_fetch, log=progress.log)
    conv_mod.check_dependencies()
    conv_mod.check_architecture(conv, plan.spec.hf_dir)
    return conv


def _build(plan: _Plan, conv: Any, verify: bool, progress: StageProgress,
           report: Reporter) -> tuple[Path, tuple[ExportedFile, ...], Verification | None]:
    """Write into a temporary folder, verify there, then move it into place (or aside)."""
    tmp, scratch = _temp_paths(plan.out)
    _clean_stale(plan.out)
    try:
        with _disk_errors(plan.out):
            main = _write(plan, conv, tmp, scratch, progress)
            verification = _verify(plan, conv, tmp, scratch, main, report) if verify else None
            progress.step(message="verified" if verify else "verification skipped")
            _write_extras(plan, tmp, main, verification)
            progress.step(message="model card and Modelfile written")
            passed = verification is None or verification.passed
            final = plan.out if passed else _unverified(plan.out)
            _move_into_place(tmp, final)
            if passed and (_unverified(plan.out) / MANIFEST).is_file():
                shutil.rmtree(_unverified(plan.out))  # an earlier failed attempt, now superseded
            progress.step(message=f"-> {final}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return final, _listed_files(final), verification


def _write(plan: _Plan, conv: Any, tmp: Path, scratch: Path, progress: StageProgress) -> Path:
    """The format's files into `tmp`; returns the main thing to verify (file or folder)."""
    tmp.mkdir(parents=True)
    if plan.fmt == "adapter":
        main = _write_adapter(plan, tmp, progress)
    elif plan.fmt == "merged":
        main = _write_merged(plan, tmp, progress)
    else:
        main = _write_gguf(plan, conv, tmp, scratch, progress)
    if plan.lora_gguf:
        _write_lora_gguf(plan, conv, tmp, scratch, progress)
    return main


# ---------------------------------------------------------------- formats


def _write_adapter(plan: _Plan, tmp: Path, progress: StageProgress) -> Path:
    for item in sorted(plan.adapter.iterdir()):
        if item.is_file() and item.name != "README.md":  # peft's template card; ours replaces it
            shutil.copy2(item, tmp / item.name)
    progress.step(message="adapter copied")
    return tmp


def _write_merged(plan: _Plan, dest: Path, progress: StageProgress) -> Path:
    """LoRA merged into the base at fp32, then saved in bf16 with tokenizer and template."""
    import torch

    from .backends.hf import load_model, load_tokenizer

    progress.log("merging the LoRA adapter into the base model")
    with _quiet():
        model = load_model(plan.spec.hf_dir, plan.adapter, device="cpu")
    tokenizer = load_tokenizer(plan.spec.hf_dir)
    model = model.to(torch.bfloat16)
    _strip_quantization(model)
    model.generation_config.eos_token_id = _turn_end_ids(tokenizer)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dest), safe_serialization=True)
    tokenizer.save_pretrained(str(dest))
    del model
    gc.collect()
    _check_saved_config(dest)
    progress.step(message="merged model saved (bf16 safetensors)")
    return dest


@contextmanager
def _quiet() -> Iterator[None]:
    # peft asks transformers a deprecated question while loading: noise on the user's screen.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _strip_quantization(model: Any) -> None:
    # A base prepared from a GGUF may still carry its quantizer; the merged weights are plain.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _check_saved_config(dest: Path) -> None:
    config = json.loads((dest / "config.json").read_text())
    if "quantization_config" in config:  # would make loaders expect quantized weights
        config.pop("quantization_config")
        (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def _write_gguf(plan: _Plan, conv: Any, tmp: Path, scratch: Path, progress: StageProgress) -> Path:
    """Merged bf16 (scratch) -> llama.cpp converter -> f16/q8_0 -> llama.cpp quantize if asked."""
    assert plan.quant is not None
    merged = _write_merged(plan, scratch / "merged", progress)
    first = CONVERTER_TYPES[plan.quant]
    final = tmp / f"{plan.slug}-{plan.quant}.gguf"
    converted = final if first == plan.quant else scratch / f"{plan.slug}-{first}.gguf"
    progress.log(f"converting with llama.cpp's {conv_mod.HF_SCRIPT} ({conv.version}) to {first}")
    _convert(plan, conv, conv_mod.HF_SCRIPT, [str(merged), "--outfile", str(converted), "--outtype", first,
                                              "--model-name", plan.slug], scratch / "convert.log")
    progress.step(message=f"converted to {first} GGUF")
    shutil.rmtree(merged, ignore_errors=True)  # free the disk before quantizing
    if converted != final:
        progress.log(f"quantizing with llama.cpp to {plan.quant}")
        quantize(converted, final, plan.quant, scratch / "quantize.log")
        converted.unlink()
        progress.step(message=f"quantized to {plan.quant}")
    return final


def _write_lora_gguf(plan: _Plan, conv: Any, tmp: Path, scratch: Path, progress: StageProgress) -> Path:
    """The adapter as a GGUF LoRA (f16), for llama.cpp's base + adapter form."""
    out = tmp / f"{plan.slug}-lora-f16.gguf"
    progress.log(f"converting the adapter with llama.cpp's {conv_mod.LORA_SCRIPT}")
    args = ["--base", str(plan.spec.hf_dir), "--outfile", str(out), "--outtype", "f16", str(plan.adapter)]
    _convert(plan, conv, conv_mod.LORA_SCRIPT, args, scratch / "convert-lora.log")
    progress.step(message="GGUF LoRA written")
    return out


def _base_gguf(plan: _Plan, conv: Any, scratch: Path) -> Path:
    """A GGUF of the base to apply the GGUF LoRA to: the student's own GGUF when it came
    from one, else the base converted (f16) for the check only."""
    if plan.spec.gguf is not None:
        return plan.spec.gguf
    out = scratch / "base-f16.gguf"
    _convert(plan, conv, conv_mod.HF_SCRIPT, [str(plan.spec.hf_dir), "--outfile", str(out), "--outtype", "f16"],
             scratch / "convert-base.log")
    return out


def _convert(plan: _Plan, conv: Any, script: str, args: list[str], log_file: Path) -> None:
    """Run a converter; turn its failures into what the user can do about them."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        conv_mod.run(conv, script, args, log_file)
    except conv_mod.ConverterFailed as err:
        raise _converter_error(plan, conv, err) from None


def _converter_error(plan: _Plan, conv: Any, err: conv_mod.ConverterFailed) -> PadaError:
    if "No space left on device" in err.output:
        return _disk_full(plan.out)
    if re.search(r"is not supported|not supported!", err.output):
        return conv_mod.unsupported(conv_mod.model_architecture(plan.spec.hf_dir), conv)
    log = plan.out.with_name(plan.out.name + ".error.log")
    log.write_text(err.output)
    return PadaError(f"llama.cpp's {err.script} failed (exit {err.code}):\n{err.tail()}",
                     hint=f"its full output is in {log}; --format merged still works without it")


def quantize(src: Path, dst: Path, quant: str, log_file: Path) -> None:
    """llama.cpp's quantizer, in a child process: its C code logs to stderr (kept in
    `log_file`), and a crash or Ctrl-C there cannot take this process down half-way."""
    cmd = [sys.executable, "-m", "pada_local.export", "quantize", str(src), str(dst), quant]
    with log_file.open("w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0 or not dst.is_file():
        text = log_file.read_text(errors="replace")
        if "No space left" in text:
            raise OSError(errno.ENOSPC, "No space left on device")
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise PadaError(f"llama.cpp could not quantize to {quant} (exit {done.returncode}):\n{tail}",
                        hint="try --quant q8_0 or f16")


def _quantize_main(src: str, dst: str, quant: str) -> int:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, LLAMA_FTYPES[quant])
    params.nthread = os.cpu_count() or 1
    return int(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)))


# ---------------------------------------------------------------- temporary folders, disk, moving


def _unverified(out: Path) -> Path:
    return out.with_name(out.name + ".unverified")


def _temp_paths(out: Path) -> tuple[Path, Path]:
    pid = os.getpid()
    return out.with_name(f".{out.name}.tmp-{pid}"), out.with_name(f".{out.name}.scratch-{pid}")


def _clean_stale(out: Path) -> None:
    """Remove the temporary folders of an export that was killed (its process is gone)."""
    if not out.parent.is_dir():
        return
    for path in out.parent.glob(f".{out.name}.*-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_destination(plan: _Plan) -> None:
    """Replace only our own earlier exports; never a folder the user filled themselves."""
    out = plan.out
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / MANIFEST).is_file())):
        raise PadaError(f"{out} exists and is not a pada export", hint="choose another --out, or move that away")
    out.parent.mkdir(parents=True, exist_ok=True)


def _check_space(plan: _Plan) -> None:
    need = _space_needed(plan)
    free = shutil.disk_usage(plan.out.parent).free
    if free < need:
        raise _disk_full(plan.out, need, free)


def _space_needed(plan: _Plan) -> int:
    """A generous estimate: 16-bit merged weights, the converted file, a quantized copy."""
    if plan.fmt == "adapter":
        return 2 * sum(f.stat().st_size for f in plan.adapter.iterdir() if f.is_file())
    base = sum(f.stat().st_size for f in plan.spec.hf_dir.glob("*.safetensors"))
    params = base / _bytes_per_param(plan.spec.hf_dir)
    copies = 1 if plan.fmt == "merged" else 2 + (plan.quant in LLAMA_FTYPES)
    return int(2 * params * copies * 1.1)


def _bytes_per_param(model_dir: Path) -> int:
    config = json.loads((model_dir / "config.json").read_text())
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return 4 if "32" in dtype else 2


def _disk_full(out: Path, need: int | None = None, free: int | None = None) -> PadaError:
    amounts = "" if need is None or free is None else f": about {_mb(need)} needed, {_mb(free)} free"
    return PadaError(f"not enough disk space for the export in {out.parent}{amounts}",
                     hint="free some space, or give --out a folder on another disk; nothing was left behind")


@contextmanager
def _disk_errors(out: Path) -> Iterator[None]:
    """Turn 'No space left on device' anywhere in the export into the disk-full PadaError."""
    try:
        yield
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise _disk_full(out) from None
        raise


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename the finished folder to its final name; an earlier export there is replaced only
    once the new one is complete."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    try:
        tmp.rename(final)
    except BaseException:
        if old.exists() and not final.exists():
            old.rename(final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _mb(n: float) -> str:
    if n < 1e6:
        return f"{n / 1e3:.1f} kB"
    return f"{n / 1e6:.0f} MB" if n < 1e9 else f"{n / 1e9:.1f} GB"


# ---------------------------------------------------------------- verification


@dataclass(frozen=True)
class _Item:
    input: str
    reference: str
    system: str | None = None


def _verify(plan: _Plan, conv: Any, tmp: Path, scratch: Path, main: Path, report: Reporter) -> Verification:
    """The exported model(s) next to the in-memory model, on the same validation slice."""
    items = _slice(plan)
    n_models = 1 + 1 + int(plan.lora_gguf)
    progress = StageProgress(report, "verify", plan.round, total=n_models * len(items))
    ref_preds, ref_score = _reference(plan, items, progress)
    checks = [_check_main(plan, main, items, ref_preds, progress)]
    if plan.lora_gguf:
        checks.append(_check_lora(plan, conv, tmp, scratch, items, ref_preds, progress))
    progress.end()
    return Verification(ref_score, len(items), MAX_DROP, tuple(checks))


def _slice(plan: _Plan) -> list[_Item]:
    """Up to SLICE validation items spread over the split (data files are often grouped by
    kind): from the data file (exact prompts), else from the run store."""
    from .data import load_split
    from .errors import DataError

    try:
        examples = load_split(plan.cfg.data.validation, plan.cfg.data.fields, "validation", plan.cfg.data.limit)
        return _spread([_Item(ex.input, ex.output, ex.system) for ex in examples], SLICE)
    except (DataError, OSError):
        pass
    from .store import RunStore

    with RunStore(plan.store) as store:
        rows = store.rows("eval_items", plan.run_id, plan.round, model="trained", split="validation")
    if not rows:
        raise PadaError("no validation items to verify the export on", hint="use --no-verify to skip verification")
    return _spread([_Item(r["input"], r["reference"]) for r in rows], SLICE)


def _spread(items: list[_Item], k: int) -> list[_Item]:
    """k items at even steps through the list (all of them when there are fewer)."""
    if len(items) <= k:
        return items
    return [items[i * len(items) // k] for i in range(k)]


def _messages(plan: _Plan, item: _Item) -> tuple[dict[str, str], ...]:
    from .evaluate import student_messages

    return student_messages(plan.cfg.task, item.input, item.system)


_REFERENCE: dict[tuple[Any, ...], tuple[list[str], float]] = {}


def _reference(plan: _Plan, items: list[_Item], progress: StageProgress) -> tuple[list[str], float]:
    """The in-memory model's predictions (base + adapter, transformers, greedy); cached per
    process because several exports of one round share them."""
    from .backends.hf import HFGenerator

    key = (str(plan.spec.hf_dir), sha256_file(plan.adapter / "adapter_model.safetensors"), tuple(items),
           plan.cfg.task.model_dump_json())
    if key not in _REFERENCE:
        progress.log("scoring the in-memory model (base + adapter) on the validation slice")
        with _quiet():
            gen = HFGenerator(plan.spec.hf_dir, plan.adapter, max_new_tokens=plan.cfg.task.max_new_tokens)
        preds = [c.text for c in gen.generate(_requests(plan, items))]
        del gen
        gc.collect()
        _REFERENCE[key] = (preds, _score(plan, items, preds, preds))
    progress.step(len(items))
    return _REFERENCE[key]


def _requests(plan: _Plan, items: list[_Item], max_tokens: int | None = None) -> list[Any]:
    from .backends.base import ChatRequest

    cap = plan.cfg.task.max_new_tokens if max_tokens is None else max_tokens
    return [ChatRequest(_messages(plan, it), max_tokens=cap, temperature=0.0, seed=0) for it in items]


def _score(plan: _Plan, items: list[_Item], preds: list[str], ref_preds: list[str]) -> float:
    """The task's scorer; a judge-scored task counts agreement with the in-memory model
    instead (a judge would need the teacher, and the export must not change answers)."""
    from .scoring import Scorer

    if not items:
        return 0.0
    if plan.cfg.task.scorer.kind == "judge":
        return _agreement(preds, ref_preds)
    scorer = Scorer(plan.cfg.task.scorer)
    return sum(scorer.score(p, it.reference) for p, it in zip(preds, items)) / len(items)


def _agreement(preds: Sequence[str], ref_preds: Sequence[str]) -> float:
    same = sum(p.strip() == r.strip() for p, r in zip(preds, ref_preds))
    return same / len(preds) if preds else 0.0


def _check_main(plan: _Plan, main: Path, items: list[_Item], ref_preds: list[str],
                progress: StageProgress) -> Check:
    if plan.fmt == "gguf":
        return _check_gguf(plan, main.name, main, None, items, ref_preds, progress)
    if plan.fmt == "merged":
        return _check_hf(plan, plan.out.name, main, None, items, ref_preds, progress)
    return _check_hf(plan, plan.out.name, plan.spec.hf_dir, main, items, ref_preds, progress)


def _check_lora(plan: _Plan, conv: Any, tmp: Path, scratch: Path, items: list[_Item], ref_preds: list[str],
                progress: StageProgress) -> Check:
    """The GGUF LoRA applied by llama.cpp on a GGUF of the base."""
    lora = tmp / f"{plan.slug}-lora-f16.gguf"
    return _check_gguf(plan, lora.name, _base_gguf(plan, conv, scratch), lora, items, ref_preds, progress)


# -- llama.cpp


def _check_gguf(plan: _Plan, target: str, model: Path, lora: Path | None, items: list[_Item],
                ref_preds: list[str], progress: StageProgress) -> Check:
    """Load with llama-cpp-python, compare its chat template, probe the stop, score the slice."""
    start = time.perf_counter()
    try:
        llm = _load_llama(model, lora)
    except Exception as err:  # llama.cpp reports a bad file in several ways
        progress.step(len(items))
        return Check(target, "llama.cpp", False, False, False, None, None, len(items), 0.0, (f"load failed: {err}",))
    try:
        problems = _gguf_template_problems(plan, llm, items)
        stops = _llama_stops(plan, llm, items)
        preds = [_llama_answer(llm, plan, it) for it in _progressing(items, progress)]
    finally:
        llm.close()
    if not stops:
        problems.append("generation did not stop at the end-of-turn token on the probe prompts")
    return Check(target, "llama.cpp", True, not any(p.startswith("template") for p in problems), stops,
                 _score(plan, items, preds, ref_preds), _agreement(preds, ref_preds), len(items),
                 time.perf_counter() - start, tuple(problems), llm.chat_format)


def _load_llama(model: Path, lora: Path | None) -> Any:
    from llama_cpp import Llama

    kwargs: dict[str, Any] = {"lora_path": str(lora)} if lora is not None else {}
    return Llama(model_path=str(model), n_ctx=2048, n_threads=os.cpu_count() or 1, seed=0, verbose=False, **kwargs)


def _gguf_template_problems(plan: _Plan, llm: Any, items: list[_Item]) -> list[str]:
    """The GGUF must carry the chat template the student was trained with, ending a turn with
    the token llama.cpp stops on."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from .backends.hf import load_tokenizer, render_prompt

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return ["template: the GGUF has no tokenizer.chat_template (llama.cpp would fall back to another format)"]
    eos, bos = _token_text(llm, llm.token_eos()), _token_text(llm, llm.token_bos())
    msgs = list(_messages(plan, items[0] if items else _Item(PROBES[0], "")))
    got = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)(messages=msgs).prompt
    tokenizer = load_tokenizer(plan.spec.hf_dir)
    problems = []
    if got != render_prompt(tokenizer, msgs):
        problems.append("template: the GGUF's chat template renders a different prompt than the student's")
    if eos not in _turn_suffix(tokenizer):
        problems.append(f"template: the GGUF's end token {eos!r} does not end an assistant turn")
    return problems


def _token_text(llm: Any, token: int) -> str:
    return "" if token == -1 else llm.detokenize([token], special=True).decode(errors="replace")


def _llama_chat(llm: Any, messages: Sequence[dict[str, str]], max_tokens: int) -> tuple[str, str | None]:
    llm.reset()  # a clean KV cache per prompt, as in backends/llama_cpp.py
    reply = llm.create_chat_completion(messages=list(messages), temperature=0.0, max_tokens=max_tokens, seed=0)
    choice = reply["choices"][0]
    return (choice["message"].get("content") or "").strip(), choice.get("finish_reason")


def _llama_answer(llm: Any, plan: _Plan, item: _Item) -> str:
    return _llama_chat(llm, _messages(plan, item), plan.cfg.task.max_new_tokens)[0]


def _llama_stops(plan: _Plan, llm: Any, items: list[_Item]) -> bool:
    """On a short prompt, generation must end with finish_reason 'stop' (the end-of-turn
    token), not run to the token cap: the 'babbles after export' failure."""
    for text in (*PROBES, *(it.input for it in items[:2])):
        _, finish = _llama_chat(llm, _messages(plan, _Item(text, "")), PROBE_TOKENS)
        if finish == "stop":
            return True
    return False


# -- transformers


def _check_hf(plan: _Plan, target: str, model_dir: Path, adapter: Path | None, items: list[_Item],
              ref_preds: list[str], progress: StageProgress) -> Check:
    """Load the exported folder with transformers, compare the template, probe, score."""
    from .backends.hf import HFGenerator

    start = time.perf_counter()
    try:
        with _quiet():
            gen = HFGenerator(model_dir, adapter, max_new_tokens=plan.cfg.task.max_new_tokens)
    except Exception as err:  # a broken export fails in many ways; report it, do not crash
        progress.step(len(items))
        return Check(target, "transformers", False, False, False, None, None, len(items), 0.0, (f"load failed: {err}",))
    problems = _hf_template_problems(plan, adapter or model_dir, items)
    stops = _hf_stops(plan, gen, items)
    preds = [c.text for c in gen.generate(_requests(plan, items), on_item=lambda i, _: progress.step())]
    del gen
    gc.collect()
    if not stops:
        problems.append("generation did not stop at the end-of-turn token on the probe prompts")
    return Check(target, "transformers", True, not any(p.startswith("template") for p in problems), stops,
                 _score(plan, items, preds, ref_preds), _agreement(preds, ref_preds), len(items),
                 time.perf_counter() - start, tuple(problems))


def _hf_template_problems(plan: _Plan, folder: Path, items: list[_Item]) -> list[str]:
    from .backends.hf import load_tokenizer, render_prompt

    msgs = list(_messages(plan, items[0] if items else _Item(PROBES[0], "")))
    try:
        exported = load_tokenizer(folder)
    except Exception as err:
        return [f"template: the exported tokenizer does not load ({err})"]
    if render_prompt(exported, msgs) != render_prompt(load_tokenizer(plan.spec.hf_dir), msgs):
        return ["template: the exported chat template renders a different prompt than the student's"]
    config = folder / "config.json"
    if config.is_file() and "quantization_config" in json.loads(config.read_text()):
        return ["config: config.json still carries a quantization_config"]
    return []


def _hf_stops(plan: _Plan, gen: Any, items: list[_Item]) -> bool:
    # transformers stops at an end-of-turn id; fewer tokens than the cap means it did.
    # One probe at a time: the first that stops settles it.
    for text in (*PROBES, *(it.input for it in items[:2])):
        done = gen.generate(_requests(plan, [_Item(text, "")], max_tokens=PROBE_TOKENS))[0]
        if done.completion_tokens < PROBE_TOKENS:
            return True
    return False


def _progressing(items: list[_Item], progress: StageProgress) -> Iterator[_Item]:
    for it in items:
        yield it
        progress.step()


# ---------------------------------------------------------------- chat template facts


def _turn_end_ids(tokenizer: Any) -> list[int] | int:
    from .backends.hf import _stop_ids

    ids = _stop_ids(tokenizer)
    return ids[0] if len(ids) == 1 else ids


def _turn_suffix(tokenizer: Any) -> str:
    """What the template writes after an assistant reply (e.g. '<|im_end|>\\n')."""
    msgs = [{"role": "user", "content": "PADAUSER0"}, {"role": "assistant", "content": "PADAREPLY0"}]
    text = tokenizer.apply_chat_template(msgs, tokenize=False)
    return text.split("PADAREPLY0", 1)[-1] if "PADAREPLY0" in text else ""


def _adds_bos(tokenizer: Any) -> bool:
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(tokenizer.bos_token) and bool(ids) and ids[0] == tokenizer.bos_token_id


def stop_tokens(tokenizer: Any) -> list[str]:
    """Token texts generation must stop on: eos and the end-of-turn tokens the vocabulary has."""
    vocab = tokenizer.get_vocab()
    found = [t for t in (tokenizer.eos_token, *TURN_END_TOKENS) if t and t in vocab and t in _turn_suffix(tokenizer)]
    return list(dict.fromkeys(found or [tokenizer.eos_token]))


def ollama_template(tokenizer: Any, system: str | None) -> str | None:
    """An Ollama (Go) template that renders exactly the prompt the student was trained on,
    derived by rendering the tokenizer's own template around placeholder words; None when the
    template hides them (then Ollama falls back to the GGUF's template)."""
    msgs = ([{"role": "system", "content": "PADASYSTEM0"}] if system is not None else [])
    msgs.append({"role": "user", "content": "PADAUSER0"})
    prompt = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    suffix = _turn_suffix(tokenizer)
    if "PADAUSER0" not in prompt or (system is not None and "PADASYSTEM0" not in prompt) or not suffix:
        return None
    if _adds_bos(tokenizer) and prompt.startswith(tokenizer.bos_token):
        prompt = prompt[len(tokenizer.bos_token):]  # llama.cpp adds this BOS itself
    prompt = prompt.replace("PADASYSTEM0", "{{ .System }}").replace("PADAUSER0", "{{ .Prompt }}")
    return prompt + "{{ .Response }}" + suffix


# ---------------------------------------------------------------- model card, Modelfile, manifest


def _write_extras(plan: _Plan, tmp: Path, main: Path, verification: Verification | None) -> None:
    from .backends.hf import load_tokenizer

    tokenizer = load_tokenizer(plan.spec.hf_dir)
    (tmp / "Modelfile").write_text(modelfile(plan, tmp, tokenizer))
    (tmp / "README.md").write_text(model_card(plan, tmp, verification))
    manifest = _manifest(plan, tmp, verification)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def modelfile(plan: _Plan, folder: Path, tokenizer: Any) -> str:
    """An Ollama Modelfile: FROM the export, the student's template, system prompt and stops."""
    system = plan.cfg.task.system_prompt
    lines = [f"# Ollama Modelfile for {plan.slug} (pada-local run {plan.run_id}, round {plan.round})",
             f"# ollama create {plan.slug} -f Modelfile", *_modelfile_from(plan, folder)]
    template = ollama_template(tokenizer, system)
    if template is None:
        lines.append("# TEMPLATE: not derivable from the tokenizer's template; Ollama uses the GGUF's own")
    else:
        lines.append(f'TEMPLATE """{template}"""')
    if system is not None:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{t}"' for t in stop_tokens(tokenizer)]
    lines += ["# the student was evaluated with greedy decoding", "PARAMETER temperature 0"]
    return "\n".join(lines) + "\n"


def _modelfile_from(plan: _Plan, folder: Path) -> list[str]:
    ggufs = sorted(p.name for p in folder.glob("*.gguf") if "-lora-" not in p.name)
    lora = sorted(p.name for p in folder.glob("*-lora-*.gguf"))
    if ggufs:
        return [f"FROM ./{ggufs[0]}"]
    if plan.fmt == "merged":
        return ["FROM ."]
    base = plan.spec.gguf if lora and plan.spec.gguf is not None else plan.spec.hf_dir
    return ["# the base model (not part of this export):", f"FROM {base}",
            f"ADAPTER ./{lora[0]}" if lora else "ADAPTER ."]


def _base_identity(plan: _Plan) -> tuple[str, str]:
    """(how to name the base model, its licence)."""
    from . import models

    hub, licence = KNOWN_BASES.get(plan.spec.name, (None, None))
    entry = models.CATALOGUE.get(("student", plan.spec.name))
    if licence is None:
        licence = entry.licence.lower() if entry is not None else _licence_from_card(plan.spec.hf_dir)
    source = f" (from {plan.spec.gguf.name})" if plan.spec.gguf is not None else ""
    return (hub or str(plan.spec.hf_dir)) + source, licence


def _licence_from_card(model_dir: Path) -> str:
    card = model_dir / "README.md"
    found = re.search(r"^license:\s*(\S+)", card.read_text(errors="replace"), re.M) if card.is_file() else None
    return found.group(1) if found else "unknown (check the base model's licence)"


def model_card(plan: _Plan, folder: Path, verification: Verification | None) -> str:
    base, licence = _base_identity(plan)
    parts = [
        f"---\nlicense: {licence.split(' ')[0]}\ntags: [pada-local, lora, {plan.fmt}]\n---\n",
        f"# {plan.slug} ({plan.fmt}{'' if plan.quant is None else ', ' + plan.quant})\n",
        f"Base model: **{base}**, fine-tuned with LoRA by pada-local run `{plan.run_id}` "
        f"(\"{plan.run.get('name')}\"), round {plan.round}.\n",
        _card_files(folder), _card_method(plan), _card_scores(plan, verification), _card_usage(plan, folder),
        f"## Licence\n\nThe base model's licence applies: **{licence}**. This export adds LoRA weights "
        "trained on the run's data; check that data's terms too.\n",
    ]
    return "\n".join(parts)


def _card_files(folder: Path) -> str:
    rows = [f"| {p.name} | {_mb(p.stat().st_size)} |" for p in sorted(folder.iterdir()) if p.is_file()]
    return "## Files\n\n| file | size |\n|---|---|\n" + "\n".join(rows) + "\n\nChecksums: `export.json`.\n"


def _card_method(plan: _Plan) -> str:
    cfg, row = plan.cfg, plan.round_row
    scorer = cfg.task.scorer.kind
    return (f"## Data and method\n\n- Task: **{cfg.task.name}**: {cfg.task.description or '-'} "
            f"(scored by `{scorer}`, greedy, {cfg.task.max_new_tokens} new tokens at most)\n"
            f"- System prompt: {cfg.task.system_prompt!r}\n"
            f"- Training items in this round: {row.get('n_train')} ({_augmentation(plan)})\n"
            f"- LoRA: r={cfg.train.rank}, alpha={cfg.train.alpha}, modules {', '.join(cfg.train.target_modules)}, "
            f"lr {cfg.train.lr}, backend {cfg.train.backend}\n"
            f"- Format: {_format_text(plan)}\n")


def _augmentation(plan: _Plan) -> str:
    if plan.round == 0:
        return "round 0: the training split only, no synthetic data"
    row, cfg = plan.round_row, plan.cfg
    return (f"the training split plus synthetic samples that passed quality control, "
            f"{row.get('n_accepted') or 0} accepted in this round; augmentation {cfg.loop.strategy}, "
            f"teacher {cfg.models.teacher}")


def _format_text(plan: _Plan) -> str:
    if plan.fmt == "adapter":
        return "PEFT LoRA adapter (load it on the base model)"
    if plan.fmt == "merged":
        return "LoRA merged into the base, bf16 safetensors"
    how = "llama.cpp's converter" + ("" if plan.quant not in LLAMA_FTYPES else " + llama.cpp quantize")
    return f"GGUF {plan.quant} ({how})" + (", plus a GGUF LoRA (f16)" if plan.lora_gguf else "")


def _card_scores(plan: _Plan, verification: Verification | None) -> str:
    row = plan.round_row
    lines = ["## Scores\n", f"- Run (in-memory model, full splits): validation {_pct(row.get('val_score'))}, "
             f"test {_pct(row.get('test_score'))}"]
    if verification is None:
        lines.append("- Export verification: skipped (--no-verify)")
    else:
        lines.append(f"- Verification on {verification.n_items} validation items: in-memory "
                     f"{_pct(verification.reference_score)}; "
                     + "; ".join(f"{c.target} {_pct(c.score)} (agreement {_pct(c.agreement)}, "
                                 f"stops {'yes' if c.stops else 'NO'}, template {'ok' if c.template_ok else 'WRONG'})"
                                 for c in verification.checks)
                     + f" -> {'passed' if verification.passed else 'FAILED'} (max drop {MAX_DROP:.0f} points)")
    return "\n".join(lines) + "\n"


def _card_usage(plan: _Plan, folder: Path) -> str:
    ggufs = sorted(p.name for p in folder.glob("*.gguf") if "-lora-" not in p.name)
    loras = sorted(p.name for p in folder.glob("*-lora-*.gguf"))
    text = "## Use\n\n"
    if ggufs:
        code = _llama_snippet(plan, f"model_path=\"{ggufs[0]}\"")
    elif loras:  # the adapter export with its GGUF LoRA: the base GGUF comes from elsewhere
        base = plan.spec.gguf.name if plan.spec.gguf is not None else "<the base model as GGUF>"
        code = _llama_snippet(plan, f"model_path=\"{base}\", lora_path=\"{loras[0]}\"")
    elif plan.fmt == "merged":
        code = ("from transformers import AutoModelForCausalLM, AutoTokenizer\n"
                "tok = AutoTokenizer.from_pretrained(\".\"); model = AutoModelForCausalLM.from_pretrained(\".\")")
    else:
        code = ("from peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n"
                f"base = AutoModelForCausalLM.from_pretrained(\"{plan.spec.hf_dir}\")\n"
                "model = PeftModel.from_pretrained(base, \".\")")
    if ggufs and loras:
        text += f"`{loras[0]}` is the same fine-tune as a LoRA for llama.cpp, to apply on the base GGUF.\n\n"
    return text + f"```python\n{code}\n```\n\nOllama: `ollama create {plan.slug} -f Modelfile`.\n"


def _llama_snippet(plan: _Plan, model_args: str) -> str:
    # The system prompt the student was trained with belongs in every request.
    system = plan.cfg.task.system_prompt
    msgs = [{"role": "system", "content": system}] if system is not None else []
    msgs.append({"role": "user", "content": "..."})
    return (f"from llama_cpp import Llama\nllm = Llama({model_args}, verbose=False)\n"
            f"reply = llm.create_chat_completion(messages={json.dumps(msgs)}, temperature=0)\n"
            "print(reply[\"choices\"][0][\"message\"][\"content\"])")


def _manifest(plan: _Plan, folder: Path, verification: Verification | None) -> dict[str, Any]:
    from . import __version__

    files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    return {"pada_local": __version__, "run_id": plan.run_id, "round": plan.round, "format": plan.fmt,
            "quant": plan.quant, "base": str(plan.spec.hf_dir), "llama_cpp_python": _installed("llama-cpp-python"),
            "files": files, "verification": None if verification is None else _verification_dict(verification)}


def _verification_dict(v: Verification) -> dict[str, Any]:
    return {"passed": v.passed, "reference_score": v.reference_score, "n_items": v.n_items,
            "max_drop": v.max_drop, "checks": [asdict(c) for c in v.checks]}


def _installed(dist: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- files and the run store


_ROLES = {".gguf": "model", ".safetensors": "model", ".md": "card", ".jinja": "tokenizer"}


def _role(path: Path) -> str:
    if path.name == "Modelfile":
        return "modelfile"
    if path.name == MANIFEST:
        return "manifest"
    if "-lora-" in path.name:
        return "lora"
    if path.name.startswith("adapter_"):
        return "adapter"
    if path.name.startswith("tokenizer") or path.name.startswith("special_tokens"):
        return "tokenizer"
    return _ROLES.get(path.suffix, "config")


def _listed_files(folder: Path) -> tuple[ExportedFile, ...]:
    manifest = json.loads((folder / MANIFEST).read_text())["files"]
    files = [ExportedFile(folder / name, info["sha256"], info["bytes"], _role(folder / name))
             for name, info in manifest.items()]
    man = folder / MANIFEST
    return (*files, ExportedFile(man, sha256_file(man), man.stat().st_size, "manifest"))


def _record(store: Any, result: ExportResult) -> None:
    """Each exported file as an artifact, replacing the rows of an earlier export to the same
    folder, in one transaction."""
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta = {"format": result.format, "quant": result.quant, "out_dir": str(result.out_dir),
            "verified": None if result.verification is None else result.verification.passed}
    rows = [{"run_id": result.run_id, "round": result.round, "kind": f"export_{f.role}", "path": str(f.path),
             "sha256": f.sha256, "bytes": f.bytes, "created_at": now, "meta_json": json.dumps(meta)}
            for f in result.files]
    with store.transaction():
        store.db.conn.execute("DELETE FROM artifacts WHERE run_id = ? AND kind LIKE 'export_%' AND path LIKE ?",
                              [result.run_id, f"{result.out_dir}{os.sep}%"])
        store.add_rows("artifacts", rows)


# ---------------------------------------------------------------- the command line


def cli_export(args: argparse.Namespace, store_path: Path) -> int:
    """`pada export`: results on stdout, progress on stderr; exit 1 when verification failed."""
    from .progress import RichReporter

    fmt = args.format or "gguf"
    allow = bool(args.yes) or _ask_consent(fmt, bool(args.lora_gguf))
    try:
        with RichReporter() as reporter:
            result = export_run(store_path, args.run_id, round=args.round, fmt=fmt, quant=args.quant,
                                out=None if args.out is None else Path(args.out), lora_gguf=bool(args.lora_gguf),
                                verify=not args.no_verify, allow_fetch=allow, report=reporter)
    except KeyboardInterrupt:
        raise Cancelled("export interrupted; no file was left under the final name") from None
    print_result(result)
    return 0 if result.ok else 1


def needs_fetch(fmt: str, lora_gguf: bool = False) -> bool:
    """Whether this export needs llama.cpp's converter and it is not cached yet: the moment to
    ask the user (CLI prompt, TUI dialog) before passing allow_fetch=True."""
    return (fmt == "gguf" or lora_gguf) and conv_mod.find() is None


def _ask_consent(fmt: str, lora_gguf: bool) -> bool:
    """Ask before downloading the converter, only when it is needed, missing, and someone is
    at the terminal to answer."""
    if not sys.stdin.isatty() or not needs_fetch(fmt, lora_gguf):
        return False
    version = conv_mod.llama_cpp_version()
    print(f"GGUF export needs llama.cpp's converter, taken from llama-cpp-python=={version}'s source on PyPI "
          f"(~{conv_mod.SDIST_MB} MB download, ~2 MB kept in {conv_mod.converter_dir(version)}). Fetch it now? [y/N] ",
          end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def print_result(result: ExportResult) -> None:
    print(f"export of run {result.run_id} round {result.round}: {result.format}"
          f"{'' if result.quant is None else ' ' + result.quant} -> {result.out_dir}")
    for f in result.files:
        print(f"  {f.path.name:<40} {_mb(f.bytes):>9}  sha256 {f.sha256[:16]}")
    v = result.verification
    if v is None:
        print("verification: skipped (--no-verify)")
        return
    print(f"verification on {v.n_items} validation items: in-memory model {_pct(v.reference_score)}")
    for c in v.checks:
        drop = c.drop(v.reference_score)
        drop_text = "-" if drop is None else f"{drop:.1f}"
        print(f"  {c.target} ({c.engine}): score {_pct(c.score)}, drop {drop_text} points, "
              f"agreement {_pct(c.agreement)}, template {'ok' if c.template_ok else 'WRONG'}, "
              f"stops at end of turn {'yes' if c.stops else 'NO'}, {c.seconds:.1f}s")
        for p in c.problems:
            print(f"    problem: {p}")
    print("verified: passed" if v.passed else f"verification FAILED: files kept aside in {result.out_dir}")


def _main(argv: Sequence[str]) -> int:
    """`python -m pada_local.export quantize SRC DST QUANT` (the child process of quantize())."""
    if len(argv) == 4 and argv[0] == "quantize" and argv[3] in LLAMA_FTYPES:
        return _quantize_main(argv[1], argv[2], argv[3])
    print("usage: python -m pada_local.export quantize SRC.gguf DST.gguf q4_0|q4_k_m", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
