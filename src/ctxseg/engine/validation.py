"""Validation during training: the reported slice protocol on the val slices (SPEC §8).

The checkpoint is selected on the same numbers the evaluation reports, with the same rules
(:func:`ctxseg.evaluation.protocols.summarize_slices`): a class is scored on the slices whose
target has it; a missed structure is Dice 0 and counts at the image diagonal in the HD mean;
a slice where the class is predicted but absent from the target is not in that class's means.
Both run the same fast path (bf16 autocast where ``train.amp`` chooses it, recorded in
``summary.json``). The one remaining difference from ``ctxseg evaluate`` is the slices:
validation scores the slices the config names (``data.val_slices``, foreground only by
default), evaluation every slice of the test cases; by the rule above both score the same
slices of a class, except that validation never sees the false-positive slices that
evaluation counts beside its means.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ctxseg.engine.inference import predict_labels
from ctxseg.evaluation.protocols import slice_metrics, summarize_slices

__all__ = ["validate_slices"]


def validate_slices(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    label_names: Sequence[str],
    batch_size: int = 32,
    device: torch.device | str | None = None,
    amp: bool = False,
    channels_last: bool = False,
    with_hd: bool = True,
) -> dict[str, float]:
    """Mean per-slice Dice (and HD in pixels) of every foreground class, and their mean.

    Args:
        model: the network (evaluated in eval mode, no gradients).
        images: the val slices.
        labels: their label maps.
        label_names: class names, index = class value (background first).
        batch_size: slices per forward pass.
        device: where to run the model.
        amp: bf16 autocast (the fast path of :func:`ctxseg.engine.inference.predict_labels`).
        channels_last: channels-last batches (the model's own memory format).
        with_hd: also compute the Hausdorff distances (the slower part, on the CPU).

    Returns:
        ``{"val_dice_<name>", "val_dice_mean", "val_hd_<name>", "val_hd_mean",
        "val_missed"}`` (HD with misses at the image diagonal; ``val_missed`` the number of
        missed structures over all classes); empty when there are no val slices.

    Shape:
        images: ``(N, 1, H, W)`` float32; labels: ``(N, H, W)`` uint8.
    """
    if images.shape[0] == 0:
        return {}
    pred = predict_labels(
        model, images, batch_size, device=device, amp=amp, channels_last=channels_last
    )
    target = labels.cpu().numpy()
    metrics = slice_metrics(pred.cpu().numpy(), target, len(label_names), with_hd=with_hd)
    summary = summarize_slices(metrics, label_names, target.shape[1:])
    row: dict[str, float] = {}
    for name, stats in summary["classes"].items():
        row[f"val_dice_{name}"] = stats["dice"]["mean"]
    row["val_dice_mean"] = summary["mean"]["dice"]
    if with_hd:
        for name, stats in summary["classes"].items():
            row[f"val_hd_{name}"] = stats["hd"]["mean"]
        row["val_hd_mean"] = summary["mean"]["hd"]
        row["val_missed"] = float(sum(s["hd"]["n_missed"] for s in summary["classes"].values()))
    return row
