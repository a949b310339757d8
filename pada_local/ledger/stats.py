"""Small statistics for comparisons: mean and spread over seeds, and a seeded paired bootstrap
over seeds and test items (the uncertainty of a difference between two strategies)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def mean_sd(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None for the spread of a single value)."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def paired_bootstrap(diffs: Mapping[int, Sequence[float]], *, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """(estimate, low, high) of the mean per-item difference. `diffs` maps each seed to the
    per-item differences on the test items (both strategies scored on the same items). Each
    replicate resamples seeds, then items within each drawn seed, so the interval carries both
    the seed-to-seed and the item-to-item variation."""
    import numpy as np

    per_seed = [np.asarray(v, dtype=float) for _, v in sorted(diffs.items()) if len(v)]
    if not per_seed:
        raise ValueError("no paired test items to compare")
    estimate = float(np.mean([d.mean() for d in per_seed]))
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        picks = rng.integers(0, len(per_seed), len(per_seed))
        draws = [per_seed[i][rng.integers(0, len(per_seed[i]), len(per_seed[i]))] for i in picks]
        reps[b] = np.mean([d.mean() for d in draws])
    tail = (1 - level) / 2
    return estimate, float(np.quantile(reps, tail)), float(np.quantile(reps, 1 - tail))
