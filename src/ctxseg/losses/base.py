"""The shared shape of every loss: ``forward``, ``parts`` and a global + per-sample ROI pass.

A base loss computes, in one pass over the logits, its value over all pixels and, when an ROI
mask is given, its value over each sample's ROI pixels; the context loss (SPEC §6) composes
the two, so no loss is ever evaluated twice and nothing is cropped.

Every loss takes 2-D or 3-D inputs, and its target in any of the forms MONAI pipelines pass
(:meth:`SegmentationLoss.label_map` turns them into one label map first).
"""

from __future__ import annotations

import torch
from torch import nn

from ctxseg.losses._functional import masked_mean

__all__ = ["PixelwiseLoss", "SegmentationLoss"]


class SegmentationLoss(nn.Module):
    """Base class: ``loss(logits, target) -> scalar`` and ``loss.parts(...) -> dict``.

    Subclasses implement :meth:`global_and_roi`, which sees the target as a label map.

    Args:
        num_classes: classes C, background included.

    Attributes:
        ignore_index: a label whose pixels count nowhere (None: every pixel counts); only the
            cross-entropy losses take one.

    Shape:
        - logits: ``(B, C, H, W)`` or ``(B, C, D, H, W)`` raw scores.
        - target: a label map ``(B, H, W)`` / ``(B, D, H, W)`` (labels in ``[0, C)``), the same
          with a channel axis of 1, ``(B, 1, ...)``, or one-hot ``(B, C, ...)``
          (see :meth:`label_map`).
        - Output: scalar.
    """

    ignore_index: int | None = None

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.num_classes = num_classes

    def check_inputs(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Raise ``ValueError`` for shapes that do not match (shapes only: no device sync)."""
        self.label_map(logits, target)

    def label_map(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The target as an int64 label map, from any of the accepted forms.

        - ``(B, *S)``: a label map (any dtype: MONAI and nnU-Net keep labels in floats).
        - ``(B, 1, *S)``: a label map with a channel axis (MONAI's ``to_onehot_y`` input,
          nnU-Net's target).
        - ``(B, C, *S)``: one-hot, read by its argmax along the class axis (a pixel whose C
          values are all 0 becomes class 0).

        Only shapes are checked, so nothing is read on the host.

        Raises:
            ValueError: logits not ``(B, C, H, W)`` / ``(B, C, D, H, W)``, or a target shape
                that fits none of the forms.

        Shape:
            - logits: ``(B, C, *S)``; target as above; output ``(B, *S)`` int64.
        """
        if logits.dim() not in (4, 5) or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits must be (B, {self.num_classes}, H, W) or (B, {self.num_classes}, D, H, "
                f"W), got shape {tuple(logits.shape)}"
            )
        batch, spatial = logits.shape[:1], logits.shape[2:]
        if target.shape == batch + spatial:
            return target.long()  # (B, *S); a no-op for int64
        if target.dim() == logits.dim() and target.shape[:1] + target.shape[2:] == batch + spatial:
            if target.shape[1] == 1:
                return target[:, 0].long()  # (B, *S)
            if target.shape[1] == self.num_classes:
                return target.argmax(dim=1)  # (B, *S)
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}: "
            f"expected (B, *S), (B, 1, *S) or one-hot (B, {self.num_classes}, *S)"
        )

    def global_and_roi(
        self, logits: torch.Tensor, target: torch.Tensor, roi_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The loss over all pixels, and per sample over its ROI pixels.

        Args:
            logits: raw scores.
            target: int64 label map (the output of :meth:`label_map`).
            roi_mask: pixels of each sample's ROI, or None to skip the ROI values.

        Returns:
            ``(global, roi)``: a scalar, and ``(B,)`` per-sample ROI values (None without a mask).
            Each ROI value is what the loss gives for that sample's ROI pixels alone, as if the
            ROI had been cropped out and passed in as a batch of one.

        Shape:
            - logits: ``(B, C, *S)``; target, roi_mask: ``(B, *S)`` (``*S`` = H, W or D, H, W).
        """
        raise NotImplementedError

    def parts(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss and the terms it is made of, for logging: here ``{"loss": value}``."""
        value, _ = self.global_and_roi(logits, self.label_map(logits, target), None)
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
            - logits: ``(B, C, *S)``; target: ``(B, *S)`` int64.
            - Output: ``(B, *S)`` float32 each.
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
