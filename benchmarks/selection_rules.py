"""Which selection rule (loop.select) reports what a strategy's models really score? Reads stored
comparisons and, for every cell, the sealed-test score of the round each rule selects; prints per
rule the mean over cells and the paired difference to `best_val` with a bootstrap interval over
cells. Every rule is computed from the same trained models: this costs no training.

    python benchmarks/selection_rules.py --store runs/sim.db cmp-... cmp-...
"""

from __future__ import annotations

import argparse
import sys

from pada_local.ledger.compare_report import comparison_report
from pada_local.ledger.rules import SELECTIONS
from pada_local.ledger.runs import Ledger


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("comparisons", nargs="+")
    ap.add_argument("--store", action="append", required=True, help="a run store (repeat for several)")
    ap.add_argument("--augmenting-only", action="store_true", help="leave out `none`'s cells")
    args = ap.parse_args()
    rows = []  # (comparison, strategy, seed, {rule: test})
    for cid in args.comparisons:
        for store in args.store:
            try:
                with Ledger.open_existing(store) as ledger:
                    report = comparison_report(ledger, cid, n_boot=10)
            except Exception:  # noqa: BLE001 - this store does not hold it
                continue
            for c in report["cells"]:
                if c["status"] == "finished" and not (args.augmenting_only and c["strategy"] == "none"):
                    rows.append((report["id"], c["strategy"], c["seed"], c["test_by_rule"]))
            break
        else:
            print(f"{cid}: not found in any store", file=sys.stderr)
    if not rows:
        return 1
    import numpy as np

    tests = {rule: np.array([r[3][rule] for r in rows], dtype=float) for rule in SELECTIONS}
    rng = np.random.default_rng(0)
    print(f"{len(rows)} cells from {len(args.comparisons)} comparisons")
    print(f"{'rule':<20} {'mean test %':>12} {'vs best_val (95% CI over cells)':>34}")
    for rule in SELECTIONS:
        diff = tests[rule] - tests["best_val"]
        boots = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(4000)]
        low, high = np.quantile(boots, [0.025, 0.975])
        print(f"{rule:<20} {100 * tests[rule].mean():>12.2f} "
              f"{100 * diff.mean():>+12.2f} [{100 * low:+.2f}, {100 * high:+.2f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
