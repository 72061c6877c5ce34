"""The one place where per-slice / per-case values become the numbers a report prints (SPEC §8).

Two rules hold everywhere (``evaluate``, ``table``, ``reproduce``, validation during training):

- **A miss never improves a Hausdorff mean.** A structure with exactly one empty mask (HD +inf:
  the prediction missed it, or predicted one where there is none) counts at a stated
  *penalty*: the image diagonal in pixels (slice protocol) or the volume's diagonal in mm
  (volume protocol). The headline mean includes these penalties; the mean over detected
  structures (finite values only) and the number of misses stand beside it. Both-empty pairs
  (NaN: nothing to score) are left out and counted.
- **A class mean never drops a class silently.** The mean over classes is NaN when any class
  has no value, and the summary names those classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ctxseg.metrics import summarize

__all__ = [
    "class_mean",
    "image_diagonal",
    "summarize_dice",
    "summarize_distances",
    "volume_diagonal",
]


def image_diagonal(height: int, width: int) -> float:
    """The slice protocol's miss penalty: the image diagonal in pixels."""
    return math.hypot(height, width)


def volume_diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """The volume protocol's miss penalty: the volume's diagonal in mm.

    Args:
        shape: voxels per axis ``(Z, H, W)``.
        spacing: mm per axis, same order.
    """
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing, strict=True))))


def summarize_dice(values: np.ndarray | Sequence[float]) -> dict[str, float | int]:
    """Dice over scored structures: a miss is already 0; NaN (both empty) left out and counted.

    Returns:
        :func:`ctxseg.metrics.summarize`'s dict (``mean``, ``std``, ``median``, ``min``,
        ``max``, ``n``, ``n_finite``, ``n_nan``, ``n_inf``).
    """
    return summarize(np.asarray(values, dtype=np.float64))


def summarize_distances(
    values: np.ndarray | Sequence[float],
    penalty: float | np.ndarray | Sequence[float],
    missed: np.ndarray | Sequence[bool] | None = None,
) -> dict[str, Any]:
    """Hausdorff distances with each one-sided miss counted at ``penalty`` (SPEC §8).

    Args:
        values: HD per scored structure: finite, +inf (exactly one mask empty) or NaN (both
            empty).
        penalty: the value a +inf counts as: one number, or one per value (a case's own
            volume diagonal).
        missed: which +inf values are misses (prediction empty, target not); the other +inf
            values are false alarms (target empty, prediction not). Default: every +inf is a
            miss.

    Returns:
        - ``mean``: the headline, over every non-NaN value with +inf replaced by its penalty;
          ``std`` and ``median`` of the same values;
        - ``mean_detected``: over the finite values only (NaN when there are none);
        - ``n`` (values), ``n_scored`` (non-NaN), ``n_detected`` (finite), ``n_missed``,
          ``n_false_alarm``, ``n_nan`` (both empty, left out);
        - ``penalty`` (the value, or the mean of the per-value penalties of the misses) and
          ``penalty_range`` ``[min, max]`` of the penalties applied (None when none applied).

    Example:
        >>> s = summarize_distances([2.0, 4.0, float("inf"), float("nan")], penalty=10.0)
        >>> s["mean"], s["mean_detected"], s["n_missed"], s["n_nan"]
        (5.333333333333333, 3.0, 1, 1)
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    pen = np.broadcast_to(np.asarray(penalty, dtype=np.float64), array.shape)
    if not np.all(np.isfinite(pen)) or np.any(pen <= 0):
        raise ValueError(f"penalty must be finite and > 0, got {penalty!r}")
    if np.any(array == -np.inf):
        raise ValueError("a Hausdorff distance of -inf is not a distance")
    inf = np.isposinf(array)
    miss = inf if missed is None else inf & np.asarray(missed, dtype=bool).ravel()
    scored = ~np.isnan(array)
    penalised = np.where(inf, pen, array)[scored]
    finite = array[np.isfinite(array)]
    applied = pen[inf]
    if applied.size:
        shown, spread = float(applied.mean()), [float(applied.min()), float(applied.max())]
    else:
        shown, spread = (float(pen.flat[0]) if pen.size else None), None

    def stat(fn: Any, x: np.ndarray) -> float:
        return float(fn(x)) if x.size else math.nan

    return {
        "mean": stat(np.mean, penalised),
        "std": stat(np.std, penalised),
        "median": stat(np.median, penalised),
        "mean_detected": stat(np.mean, finite),
        "n": int(array.size),
        "n_scored": int(scored.sum()),
        "n_detected": int(finite.size),
        "n_missed": int(miss.sum()),
        "n_false_alarm": int((inf & ~miss).sum()),
        "n_nan": int((~scored).sum()),
        "penalty": shown,
        "penalty_range": spread,
    }


def class_mean(
    per_class: Mapping[str, Mapping[str, Any]], metric: str, key: str = "mean"
) -> tuple[float, list[str]]:
    """The mean over classes of ``per_class[name][metric][key]``; NaN if any class has none.

    Returns:
        ``(mean, classes_without_value)``: the mean is NaN whenever the list is not empty, so a
        class with no finite value is never dropped from a class mean silently.
    """
    values, missing = [], []
    for name, stats in per_class.items():
        value = stats[metric].get(key)
        if value is None or not math.isfinite(float(value)):
            missing.append(name)
        else:
            values.append(float(value))
    if missing or not values:
        return math.nan, missing
    return float(np.mean(values)), missing
