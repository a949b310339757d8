"""How each format is written: the adapter copied as trained, the LoRA merged into bf16
safetensors, and GGUF through llama.cpp's own converter (the version matching the installed
llama-cpp-python, see converter.py) and llama.cpp's quantizer, which runs in a child process."""

from __future__ import annotations

import errno
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import PadaError
from ..events import StageProgress
from . import converter as conv_mod
from .converter import Converter
from .placement import disk_full
from .plan import CONVERTER_TYPES, LLAMA_FTYPES, Plan


def converter_for(plan: Plan, allow_fetch: bool, progress: StageProgress) -> Converter | None:
    """The converter when this export needs it, checked against the base architecture first."""
    if plan.fmt != "gguf" and not plan.lora_gguf:
        return None
    conv = conv_mod.ensure(allow_fetch, log=progress.log)
    conv_mod.check_dependencies()
    conv_mod.check_architecture(conv, plan.spec.hf_dir)
    return conv


def write(plan: Plan, conv: Converter | None, tmp: Path, scratch: Path, progress: StageProgress) -> Path:
    """The format's files into `tmp`; returns the main thing to verify (file or folder)."""
    tmp.mkdir(parents=True)
    if plan.fmt == "adapter":
        main = _write_adapter(plan, tmp, progress)
    elif plan.fmt == "merged":
        main = _write_merged(plan, tmp, progress)
    else:
        main = _write_gguf(plan, _needed(conv), tmp, scratch, progress)
    if plan.lora_gguf:
        _write_lora_gguf(plan, _needed(conv), tmp, scratch, progress)
    return main


def _needed(conv: Converter | None) -> Converter:
    assert conv is not None, "converter_for() returns one for every export that converts"
    return conv


def lora_gguf_path(plan: Plan, folder: Path) -> Path:
    return folder / f"{plan.slug}-lora-f16.gguf"


@contextmanager
def quiet_loading() -> Iterator[None]:
    # peft asks transformers a deprecated question while loading: noise on the user's screen.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


# ---------------------------------------------------------------- adapter and merged


def _write_adapter(plan: Plan, tmp: Path, progress: StageProgress) -> Path:
    for item in sorted(plan.adapter.iterdir()):
        if item.is_file() and item.name != "README.md":  # peft's template card; ours replaces it
            shutil.copy2(item, tmp / item.name)
    progress.step(message="adapter copied")
    return tmp


def _write_merged(plan: Plan, dest: Path, progress: StageProgress) -> Path:
    """LoRA merged into the base at fp32, then saved in bf16 with tokenizer and template."""
    import torch

    from ..backends.hf import load_model, load_tokenizer

    progress.log("merging the LoRA adapter into the base model")
    with quiet_loading():
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


def _turn_end_ids(tokenizer: Any) -> list[int] | int:
    # The ids the student stops on, so that loaders of the merged folder stop there too.
    from ..backends.hf import stop_token_ids

    ids = stop_token_ids(tokenizer)
    return ids[0] if len(ids) == 1 else ids


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


# ---------------------------------------------------------------- GGUF


def _write_gguf(plan: Plan, conv: Converter, tmp: Path, scratch: Path, progress: StageProgress) -> Path:
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


def _write_lora_gguf(plan: Plan, conv: Converter, tmp: Path, scratch: Path, progress: StageProgress) -> Path:
    """The adapter as a GGUF LoRA (f16), for llama.cpp's base + adapter form."""
    out = lora_gguf_path(plan, tmp)
    progress.log(f"converting the adapter with llama.cpp's {conv_mod.LORA_SCRIPT}")
    args = ["--base", str(plan.spec.hf_dir), "--outfile", str(out), "--outtype", "f16", str(plan.adapter)]
    _convert(plan, conv, conv_mod.LORA_SCRIPT, args, scratch / "convert-lora.log")
    progress.step(message="GGUF LoRA written")
    return out


def base_gguf(plan: Plan, conv: Converter, scratch: Path) -> Path:
    """A GGUF of the base to apply the GGUF LoRA to: the student's own GGUF when it came
    from one, else the base converted (f16) for the check only."""
    if plan.spec.gguf is not None:
        return plan.spec.gguf
    out = scratch / "base-f16.gguf"
    args = [str(plan.spec.hf_dir), "--outfile", str(out), "--outtype", "f16"]
    _convert(plan, conv, conv_mod.HF_SCRIPT, args, scratch / "convert-base.log")
    return out


def _convert(plan: Plan, conv: Converter, script: str, args: list[str], log_file: Path) -> None:
    """Run a converter; turn its failures into what the user can do about them."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        conv_mod.run(conv, script, args, log_file)
    except conv_mod.ConverterFailed as err:
        raise _converter_error(plan, conv, err) from None


def _converter_error(plan: Plan, conv: Converter, err: conv_mod.ConverterFailed) -> PadaError:
    if "No space left on device" in err.output:
        return disk_full(plan.out)
    if re.search(r"is not supported|not supported!", err.output):
        return conv_mod.unsupported(conv_mod.model_architecture(plan.spec.hf_dir), conv)
    log = plan.out.with_name(plan.out.name + ".error.log")
    log.write_text(err.output)
    return PadaError(f"llama.cpp's {err.script} failed (exit {err.code}):\n{err.tail()}",
                     hint=f"its full output is in {log}; --format merged still works without it")


def quantize(src: Path, dst: Path, quant: str, log_file: Path) -> None:
    """llama.cpp's quantizer, in a child process (export/__main__.py): its C code logs to stderr
    (kept in `log_file`), and a crash or Ctrl-C there cannot take this process down half-way."""
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


def quantize_here(src: str, dst: str, quant: str) -> int:
    """The quantization itself, in this process: what the child process runs."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, LLAMA_FTYPES[quant])
    params.nthread = os.cpu_count() or 1
    return int(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)))
