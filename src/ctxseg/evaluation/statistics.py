"""Statistics of a comparison of methods: spread over seeds, paired tests over test cases.

A difference between two methods is reported with the paired Wilcoxon signed-rank test over
the test cases (SciPy), the median paired difference and the number of pairs; the spread over
training seeds is the sample standard deviation. Nothing here averages a NaN in or out
silently: a pair with a missing value is dropped and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["paired_wilcoxon", "seed_spread"]


def seed_spread(values: Sequence[float]) -> dict[str, float | int]:
    """Mean and sample standard deviation over seeds.

    Returns:
        ``{"mean", "std", "n", "n_nan"}``; ``std`` is NaN with fewer than 2 finite values.

    Example:
        >>> seed_spread([0.80, 0.82, 0.84])["std"]
        0.01999999999999999
    """
    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    return {
        "mean": float(finite.mean()) if finite.size else math.nan,
        "std": float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
        "n": int(finite.size),
        "n_nan": int(array.size - finite.size),
    }


def paired_wilcoxon(a: Sequence[float], b: Sequence[float]) -> dict[str, float | int]:
    """Paired Wilcoxon signed-rank test of ``a`` against ``b`` (two-sided).

    Args:
        a: one value per test case for the method.
        b: the reference method's values for the same cases, same order.

    Returns:
        ``{"n" (pairs used), "n_dropped" (pairs with a NaN or inf), "median_diff"
        (median of a - b), "statistic", "p_value"}``; with no non-zero difference the p-value
        is 1.0 (the methods agree on every case), with no pair at all it is NaN.

    Raises:
        ValueError: ``a`` and ``b`` of different lengths.
    """
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values of different lengths: {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    result = {
        "n": int(keep.sum()),
        "n_dropped": int((~keep).sum()),
        "median_diff": float(np.median(diff)) if diff.size else math.nan,
        "statistic": math.nan,
        "p_value": math.nan,
    }
    if diff.size == 0:
        return result
    if not np.any(diff != 0):
        result["p_value"] = 1.0
        return result
    test = wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
    result["statistic"] = float(test.statistic)
    result["p_value"] = float(test.pvalue)
    return result
