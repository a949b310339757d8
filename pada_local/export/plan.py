"""What to export: the run and round (read through the run ledger), its config and student, the
output folder, and the checks on the user's choice of format and quantization."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PadaError
from ..ledger.runs import Ledger

if TYPE_CHECKING:
    from ..config import Config
    from ..models import StudentSpec

FORMATS = ("adapter", "merged", "gguf")
QUANTS = ("f16", "q8_0", "q4_0", "q4_k_m")
DEFAULT_QUANT = "q8_0"
# What llama.cpp's converter writes first; the quants it cannot write come from its quantizer.
CONVERTER_TYPES = {"f16": "f16", "q8_0": "q8_0", "q4_0": "f16", "q4_k_m": "f16"}
LLAMA_FTYPES = {"q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}


@dataclass(frozen=True)
class Plan:
    """One export, decided before any file is written."""

    run_id: str
    round: int
    fmt: str
    quant: str | None
    out: Path  # the final folder, absolute
    cfg: Config  # the config the run was started with
    spec: StudentSpec
    adapter: Path
    run: dict[str, Any]
    round_row: dict[str, Any]
    slug: str  # file and model name: <student>-<task>
    lora_gguf: bool
    store: Path

    @property
    def quantizes(self) -> bool:
        """Whether llama.cpp's quantizer runs after the converter."""
        return self.quant in LLAMA_FTYPES


def make_plan(store_path: Path, run_id: str, round_: int | None, fmt: str, quant: str | None,
              out: Path | None, lora_gguf: bool) -> Plan:
    """The export asked for, checked; raises PadaError on what the user can fix."""
    from ..config import from_dict
    from ..models import resolve_student

    if not store_path.exists():  # opening the ledger would create an empty store
        raise PadaError(f"no run store at {store_path}",
                        hint="start a run with `pada demo` or `pada run CONFIG`")
    check_choice(fmt, quant)
    with Ledger.open(store_path) as ledger:
        run_id = ledger.resolve(run_id)
        bound = ledger.for_run(run_id)
        run, raw, rounds = bound.row(), bound.config(), bound.rounds()
    cfg = from_dict(raw, Path.cwd(), "run config")
    row = _round_row(run, rounds, round_)
    adapter = Path(row["adapter_path"])
    if not (adapter / "adapter_config.json").is_file():
        raise PadaError(f"round {row['round']}'s adapter is missing: {adapter}",
                        hint="the run's folder was moved or deleted; re-run that round (`pada run --resume`)")
    spec = resolve_student(cfg.models.student)
    quant = quant if quant is not None or fmt != "gguf" else DEFAULT_QUANT
    out = Path(out) if out is not None else _default_out(cfg, run, row["round"], fmt, quant)
    return Plan(run_id, row["round"], fmt, quant, out.expanduser().resolve(), cfg, spec, adapter, run, row,
                _slug(f"{spec.name}-{cfg.task.name}"), lora_gguf, store_path)


def check_choice(fmt: str, quant: str | None) -> None:
    if fmt not in FORMATS:
        raise PadaError(f"unknown export format {fmt!r}", hint=f"one of {', '.join(FORMATS)}")
    if quant is not None and quant not in QUANTS:
        raise PadaError(f"unknown quantization {quant!r}", hint=f"one of {', '.join(QUANTS)}")
    if quant is not None and fmt != "gguf":
        raise PadaError(f"--quant applies to --format gguf only (the {fmt} export is 16-bit)",
                        hint="drop --quant, or use --format gguf")


def _round_row(run: dict[str, Any], rounds: list[dict[str, Any]], round_: int | None) -> dict[str, Any]:
    """The asked round, else the run's best, else the best-scoring round with an adapter."""
    rows = [r for r in rounds if r["adapter_path"]]
    if not rows:
        raise PadaError(f"run {run['id']} has no trained round yet", hint="let the run finish round 0 first")
    wanted = round_ if round_ is not None else run["best_round"]
    if wanted is None:
        return max(rows, key=lambda r: (r["val_score"] if r["val_score"] is not None else -1.0, -r["round"]))
    found = [r for r in rows if r["round"] == wanted]
    if not found:
        have = ", ".join(str(r["round"]) for r in rows)
        raise PadaError(f"run {run['id']} has no trained round {wanted}",
                        hint=f"rounds with an adapter: {have}")
    return found[0]


def _default_out(cfg: Config, run: dict[str, Any], round_: int, fmt: str, quant: str | None) -> Path:
    # runs/<run>/export-<format>[-<quant>]; a round other than the best one is named too.
    name = f"export-{fmt}" + (f"-{quant}" if quant is not None else "")
    name += "" if run["best_round"] == round_ else f"-r{round_}"
    return Path(cfg.workdir) / run["id"] / name


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.") or "model"
