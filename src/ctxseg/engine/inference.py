"""Slice-wise inference: label maps from whole images (no ROI at inference, SPEC §1)."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["predict_labels"]


@torch.no_grad()
def predict_labels(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    amp: bool = False,
    channels_last: bool = False,
) -> np.ndarray | torch.Tensor:
    """Arg-max label maps of a stack of slices.

    Images whose height or width is not a multiple of ``model.size_multiple`` are zero-padded
    at the bottom and right and the prediction is cropped back. The model is put in eval mode
    for the call and its previous mode is restored afterwards.

    Args:
        model: a segmentation network returning logits.
        images: float slices in [0, 1], NumPy or torch.
        batch_size: slices per forward pass.
        device: where to run; default the model's device.
        amp: bf16 autocast on the device (the fast path of
            :func:`ctxseg.engine.precision.resolve_fast_path`); the arg-max is taken of the
            float32 logits.
        channels_last: feed the batches in the channels-last memory format (a model already in
            that format runs fastest so).

    Returns:
        uint8 label maps: a NumPy array for NumPy input, else a tensor on ``images``' device.

    Shape:
        images: ``(N, 1, H, W)``; returns ``(N, H, W)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    as_numpy = isinstance(images, np.ndarray)
    data = torch.from_numpy(np.ascontiguousarray(images)) if as_numpy else images
    if data.dim() != 4 or data.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W), got shape {tuple(data.shape)}")
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    n, _, height, width = data.shape
    multiple = int(getattr(model, "size_multiple", 1))
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    pred = torch.empty((n, height, width), dtype=torch.uint8, device=device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, batch_size):
            batch = data[start : start + batch_size].to(device, torch.float32, non_blocking=True)
            if pad_h or pad_w:
                batch = F.pad(batch, (0, pad_w, 0, pad_h))  # (B, 1, H + pad_h, W + pad_w)
            batch = batch.contiguous(memory_format=memory_format)
            with torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext():
                logits = model(batch)  # (B, C, H', W')
            pred[start : start + batch_size] = logits[..., :height, :width].float().argmax(dim=1)
    finally:
        model.train(was_training)
    if as_numpy:
        return pred.cpu().numpy()
    return pred.to(data.device)
