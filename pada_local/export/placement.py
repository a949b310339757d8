"""Where an export is written: a hidden temporary folder next to the final one, the destination
and disk-space checks, and the final rename (to `<out>.unverified` when verification failed), so
that an interruption, a failure or a full disk never leaves anything under the final name."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import PadaError
from ..files import pid_alive
from .card import MANIFEST, mb
from .plan import Plan


def unverified(out: Path) -> Path:
    return out.with_name(out.name + ".unverified")


def temp_paths(out: Path) -> tuple[Path, Path]:
    """(the folder that becomes the export, scratch for intermediate files), named by our pid."""
    pid = os.getpid()
    return out.with_name(f".{out.name}.tmp-{pid}"), out.with_name(f".{out.name}.scratch-{pid}")


@contextmanager
def workspace(out: Path) -> Iterator[tuple[Path, Path]]:
    """The temporary folders, removed whatever happens; a full disk anywhere inside becomes the
    disk-full PadaError."""
    tmp, scratch = temp_paths(out)
    clean_stale(out)
    try:
        with _disk_errors(out):
            yield tmp, scratch
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


def clean_stale(out: Path) -> None:
    """Remove the temporary folders of an export that was killed (its process is gone)."""
    if not out.parent.is_dir():
        return
    for path in out.parent.glob(f".{out.name}.*-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def check_destination(out: Path) -> None:
    """Replace only our own earlier exports; never a folder the user filled themselves."""
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / MANIFEST).is_file())):
        raise PadaError(f"{out} exists and is not a pada export",
                        hint="choose another --out, or move that away")
    out.parent.mkdir(parents=True, exist_ok=True)


def check_space(plan: Plan) -> None:
    need = _space_needed(plan)
    free = shutil.disk_usage(plan.out.parent).free
    if free < need:
        raise disk_full(plan.out, need, free)


def _space_needed(plan: Plan) -> int:
    """A generous estimate: 16-bit merged weights, the converted file, a quantized copy."""
    if plan.fmt == "adapter":
        return 2 * sum(f.stat().st_size for f in plan.adapter.iterdir() if f.is_file())
    base = sum(f.stat().st_size for f in plan.spec.hf_dir.glob("*.safetensors"))
    params = base / _bytes_per_param(plan.spec.hf_dir)
    copies = 1 if plan.fmt == "merged" else 2 + plan.quantizes
    return int(2 * params * copies * 1.1)


def _bytes_per_param(model_dir: Path) -> int:
    config = json.loads((model_dir / "config.json").read_text())
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return 4 if "32" in dtype else 2


def disk_full(out: Path, need: int | None = None, free: int | None = None) -> PadaError:
    amounts = "" if need is None or free is None else f": about {mb(need)} needed, {mb(free)} free"
    return PadaError(f"not enough disk space for the export in {out.parent}{amounts}",
                     hint="free some space, or give --out a folder on another disk; nothing was left behind")


@contextmanager
def _disk_errors(out: Path) -> Iterator[None]:
    try:
        yield
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise disk_full(out) from None
        raise


def place(tmp: Path, out: Path, passed: bool) -> Path:
    """Move the finished folder to `out`, or aside to `<out>.unverified`; returns where it went."""
    final = out if passed else unverified(out)
    _move_into_place(tmp, final)
    if passed and (unverified(out) / MANIFEST).is_file():
        shutil.rmtree(unverified(out))  # an earlier failed attempt, now superseded
    return final


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
