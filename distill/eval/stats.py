"""Small statistics: bootstrap confidence intervals and latency percentiles.

With 40 eval examples a 5-point gap can be noise; the interval says how much.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def bootstrap_ci(values: Sequence[float], samples: int = 1000, level: float = 0.95, seed: int = 0) -> list[float] | None:
    """Percentile-bootstrap interval of the mean of per-example scores; None when there
    are no values or `samples` is 0. Fixed seed: the same data gives the same interval."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0 or samples <= 0:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(samples, arr.size))
    means = arr[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return [float(lo), float(hi)]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100, linear interpolation); None for no values."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return float(np.percentile(np.asarray(vals, dtype=float), q))


def mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None
