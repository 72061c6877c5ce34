"""Dice overlap per label between label maps (SPEC §8).

Dice = 2 |P & T| / (|P| + |T|) for the voxels of one label. Empty masks (SPEC §8): both empty
gives NaN (left out of means and counted by :func:`ctxseg.metrics.summarize`), exactly one empty
gives 0.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ctxseg.metrics._arrays import ArrayLike, check_pair, to_numpy

__all__ = ["dice_score", "dice_score_batch"]


def dice_score(pred: ArrayLike, target: ArrayLike, labels: Iterable[int]) -> dict[int, float]:
    """Dice of each label between two label maps.

    Args:
        pred: predicted label map.
        target: reference label map of the same shape.
        labels: the labels to score (e.g. ``range(1, num_classes)``).

    Returns:
        ``{label: dice}``; NaN for a label absent from both maps, 0 for one absent from one.

    Shape:
        pred, target: (H, W) or (D, H, W).

    Example:
        >>> dice_score(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 1]]), [1])
        {1: 0.8}
    """
    pred_map, target_map = to_numpy(pred, "pred"), to_numpy(target, "target")
    check_pair(pred_map, target_map, (2, 3))
    scores = dice_score_batch(pred_map[None], target_map[None], labels)
    return {label: float(values[0]) for label, values in scores.items()}


def dice_score_batch(
    pred: ArrayLike, target: ArrayLike, labels: Iterable[int]
) -> dict[int, np.ndarray]:
    """Dice of each label for each pair of label maps in a batch, as :func:`dice_score`.

    Args:
        pred: predicted label maps, the first axis indexes the batch.
        target: reference label maps of the same shape.
        labels: the labels to score.

    Returns:
        ``{label: float64 array of N values}``.

    Shape:
        pred, target: (N, H, W) or (N, D, H, W); each value (N,).
    """
    pred_map, target_map = to_numpy(pred, "pred"), to_numpy(target, "target")
    check_pair(pred_map, target_map, (3, 4))
    n = pred_map.shape[0]
    pred_flat = pred_map.reshape(n, -1)  # (N, V)
    target_flat = target_map.reshape(n, -1)  # (N, V)
    scores = {}
    for label in labels:
        in_pred, in_target = pred_flat == label, target_flat == label
        overlap = np.count_nonzero(in_pred & in_target, axis=1)
        total = np.count_nonzero(in_pred, axis=1) + np.count_nonzero(in_target, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            scores[int(label)] = np.where(total > 0, 2.0 * overlap / total, np.nan)
    return scores
