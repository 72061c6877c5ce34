"""Tensor functions behind the loss modules (SPEC §6)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "inverse_frequency_weights",
    "masked_mean",
    "one_hot",
    "overlap_sums",
    "soft_dice_from_sums",
    "log_jaccard_from_sums",
]


def masked_mean(
    values: torch.Tensor, weights: torch.Tensor | None, mask: torch.Tensor
) -> torch.Tensor:
    """Per-sample (weighted) mean of a pixel map over the masked pixels.

    ``sum(values * weights * mask) / sum(weights * mask)`` per sample; a sample whose mask (or
    masked weight) is empty gives 0, never NaN.

    Shape:
        - values, weights, mask: ``(B, *S)`` (``*S`` = H, W or D, H, W).
        - Output: ``(B,)``.
    """
    m = mask.to(values.dtype)
    if weights is not None:
        m = m * weights
    dims = tuple(range(1, values.dim()))  # the spatial axes
    total = (values * m).sum(dim=dims)  # (B,)
    return total / m.sum(dim=dims).clamp(min=torch.finfo(values.dtype).tiny)


def one_hot(target: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot encoding of a label map with the class axis second.

    Shape:
        - target: ``(B, *S)`` int64.
        - Output: ``(B, C, *S)``.
    """
    return F.one_hot(target, num_classes).movedim(-1, 1).to(dtype)  # (B, C, *S)


def overlap_sums(
    probs: torch.Tensor, onehot: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft intersection, prediction mass and target mass per sample and class.

    Args:
        probs: softmax probabilities.
        onehot: one-hot target.
        mask: optional pixels to sum over (all pixels when None).

    Returns:
        ``(intersection, pred_sum, target_sum)``.

    Shape:
        - probs, onehot: ``(B, C, *S)``; mask ``(B, *S)`` bool (``*S`` = H, W or D, H, W).
        - Output: ``(B, C)`` each.
    """
    if mask is not None:
        m = mask.unsqueeze(1).to(probs.dtype)  # (B, 1, *S)
        probs = probs * m
        onehot = onehot * m
    dims = tuple(range(2, probs.dim()))
    return (probs * onehot).sum(dims), probs.sum(dims), onehot.sum(dims)


def soft_dice_from_sums(
    intersection: torch.Tensor,
    pred_sum: torch.Tensor,
    target_sum: torch.Tensor,
    smooth_nr: float,
    smooth_dr: float,
) -> torch.Tensor:
    """Soft Dice loss ``1 - (2 I + smooth_nr) / (P + G + smooth_dr)`` averaged over classes.

    The same formula as MONAI's ``DiceLoss``.

    Shape:
        - Inputs: ``(..., C)``.
        - Output: ``(...)``.
    """
    dice = (2.0 * intersection + smooth_nr) / (pred_sum + target_sum + smooth_dr)
    return (1.0 - dice).mean(dim=-1)


def log_jaccard_from_sums(
    intersection: torch.Tensor, pred_sum: torch.Tensor, target_sum: torch.Tensor, eps: float
) -> torch.Tensor:
    """The authors' "Dice" baseline: ``-sum_c log((I + eps) / (U - I + eps))`` (SPEC §6).

    ``U = P + G``, so ``U - I`` is the soft union.

    Shape:
        - Inputs: ``(..., C)``.
        - Output: ``(...)``.
    """
    union = pred_sum + target_sum - intersection
    return -torch.log((intersection + eps) / (union + eps)).sum(dim=-1)


def inverse_frequency_weights(class_frequencies: Sequence[float]) -> list[float]:
    """Class weights proportional to ``1 / frequency``, normalised to sum 1.

    Args:
        class_frequencies: pixel counts or fractions of each class in the training set.

    Raises:
        ValueError: a frequency that is not positive and finite (a class absent from the
            training set has no inverse frequency).
    """
    freqs = [float(f) for f in class_frequencies]
    bad = [f for f in freqs if not (f > 0 and f != float("inf"))]
    if not freqs or bad:
        raise ValueError(
            f"class_frequencies must be positive and finite, got {list(class_frequencies)}"
        )
    inverse = [1.0 / f for f in freqs]
    total = sum(inverse)
    return [w / total for w in inverse]
