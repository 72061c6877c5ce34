"""Summaries of per-slice or per-case metric values that keep the misses visible (SPEC §8)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from ctxseg.metrics._arrays import ArrayLike, to_numpy

__all__ = ["summarize"]


def summarize(values: ArrayLike | Iterable[float]) -> dict[str, float | int]:
    """Mean and spread over the finite values, with counts of what was left out.

    NaN (both masks empty: nothing to score) and +inf (exactly one mask empty: a miss or a
    false alarm, HD only) are left out of the mean and standard deviation but counted, so a
    report never drops a miss silently (SPEC §8).

    Args:
        values: metric values, any shape (flattened).

    Returns:
        ``{"mean", "std", "median", "min", "max"}`` over the finite values (NaN when there are
        none; population std) and ``{"n", "n_finite", "n_nan", "n_inf"}`` counts.

    Example:
        >>> s = summarize([1.0, 3.0, float("nan"), float("inf")])
        >>> s["mean"], s["n"], s["n_nan"], s["n_inf"]
        (2.0, 4, 1, 1)
    """
    if isinstance(values, (np.ndarray, torch.Tensor)):
        values = to_numpy(values, "values")
    else:
        values = list(values)
    array = np.asarray(values, dtype=np.float64).ravel()
    finite = array[np.isfinite(array)]
    stats: dict[str, float | int] = {}
    reductions = {"mean": np.mean, "std": np.std, "median": np.median, "min": np.min, "max": np.max}
    for name, fn in reductions.items():
        stats[name] = float(fn(finite)) if finite.size else float("nan")
    stats.update(
        n=int(array.size),
        n_finite=int(finite.size),
        n_nan=int(np.isnan(array).sum()),
        n_inf=int(np.isinf(array).sum()),
    )
    return stats
