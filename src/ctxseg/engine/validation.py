"""Validation during training: Dice and HD per foreground class on the val slices (SPEC §8)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ctxseg.engine.inference import predict_labels
from ctxseg.metrics import dice_score_batch, hausdorff_distance_batch, summarize

__all__ = ["validate_slices"]


def validate_slices(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    label_names: Sequence[str],
    batch_size: int = 32,
    device: torch.device | str | None = None,
    amp: bool = False,
    with_hd: bool = True,
) -> dict[str, float]:
    """Mean per-slice Dice (and HD in pixels) of every foreground class, and their mean.

    Slices where a class is absent from both the prediction and the target have no score for
    that class (NaN, left out of the mean); HD means are over the finite values, so a slice
    where exactly one side is empty (HD infinite) is left out of the HD mean but scores Dice 0.

    Args:
        model: the network (evaluated in eval mode, no gradients).
        images: the val slices.
        labels: their label maps.
        label_names: class names, index = class value (background first).
        batch_size: slices per forward pass.
        device: where to run the model.
        amp: bf16 autocast on CUDA.
        with_hd: also compute the Hausdorff distances (the slower part, on the CPU).

    Returns:
        ``{"val_dice_<name>": ..., "val_dice_mean": ..., "val_hd_<name>": ..., "val_hd_mean"}``;
        empty when there are no val slices.

    Shape:
        images: ``(N, 1, H, W)`` float32; labels: ``(N, H, W)`` uint8.
    """
    if images.shape[0] == 0:
        return {}
    pred = predict_labels(model, images, batch_size=batch_size, device=device, amp=amp)
    pred_np = pred.cpu().numpy()
    target_np = labels.cpu().numpy()
    classes = range(1, len(label_names))
    dice = dice_score_batch(pred_np, target_np, classes)  # {c: (N,)}
    row: dict[str, float] = {}
    for c in classes:
        row[f"val_dice_{label_names[c]}"] = summarize(dice[c])["mean"]
    row["val_dice_mean"] = _mean([row[f"val_dice_{label_names[c]}"] for c in classes])
    if with_hd:
        for c in classes:
            hd = hausdorff_distance_batch(pred_np == c, target_np == c)  # (N,)
            row[f"val_hd_{label_names[c]}"] = summarize(hd)["mean"]
        row["val_hd_mean"] = _mean([row[f"val_hd_{label_names[c]}"] for c in classes])
    return row


def _mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")
