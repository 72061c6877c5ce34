"""The shared shape of every loss: ``forward``, ``parts`` and a global + per-sample ROI pass.

A base loss computes, in one pass over the logits, its value over all pixels and, when an ROI
mask is given, its value over each sample's ROI pixels; the context loss (SPEC §6) composes
the two, so no loss is ever evaluated twice and nothing is cropped.
"""

from __future__ import annotations

import torch
from torch import nn

from ctxseg.losses._functional import masked_mean

__all__ = ["PixelwiseLoss", "SegmentationLoss"]


class SegmentationLoss(nn.Module):
    """Base class: ``loss(logits, target) -> scalar`` and ``loss.parts(...) -> dict``.

    Subclasses implement :meth:`global_and_roi`.

    Args:
        num_classes: classes C, background included.

    Shape:
        - logits: ``(B, C, H, W)`` raw scores.
        - target: ``(B, H, W)`` int64 labels in ``[0, C)``.
        - Output: scalar.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.num_classes = num_classes

    def check_inputs(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Raise ``ValueError`` for shapes that do not match (shapes only: no device sync)."""
        if logits.dim() != 4 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits must be (B, {self.num_classes}, H, W), got shape {tuple(logits.shape)}"
            )
        if target.shape != logits.shape[:1] + logits.shape[2:]:
            raise ValueError(
                f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}"
            )

    def global_and_roi(
        self, logits: torch.Tensor, target: torch.Tensor, roi_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The loss over all pixels, and per sample over its ROI pixels.

        Args:
            logits: raw scores.
            target: labels.
            roi_mask: pixels of each sample's ROI, or None to skip the ROI values.

        Returns:
            ``(global, roi)``: a scalar, and ``(B,)`` per-sample ROI values (None without a mask).
            Each ROI value is what the loss gives for that sample's ROI pixels alone, as if the
            ROI had been cropped out and passed in as a batch of one.

        Shape:
            - roi_mask: ``(B, H, W)`` bool.
        """
        raise NotImplementedError

    def parts(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss and the terms it is made of, for logging: here ``{"loss": value}``."""
        self.check_inputs(logits, target)
        value, _ = self.global_and_roi(logits, target, None)
        return {"loss": value}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.parts(logits, target)["loss"]


class PixelwiseLoss(SegmentationLoss):
    """A loss that is a (weighted) mean of a per-pixel value map.

    Subclasses implement :meth:`pixel_terms`; the global value is the weighted mean over all
    pixels of the batch and the ROI value the weighted mean over each sample's ROI pixels, both
    from the same map.
    """

    def pixel_terms(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-pixel values and their averaging weights (None for a plain mean).

        Shape:
            - Output: ``(B, H, W)`` float32 each.
        """
        raise NotImplementedError

    def global_and_roi(
        self, logits: torch.Tensor, target: torch.Tensor, roi_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        values, weights = self.pixel_terms(logits, target)
        if weights is None:
            whole = values.mean()
        else:
            whole = (values * weights).sum() / weights.sum().clamp(
                min=torch.finfo(values.dtype).tiny
            )
        roi = None if roi_mask is None else masked_mean(values, weights, roi_mask)
        return whole, roi
