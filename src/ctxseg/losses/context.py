"""Context loss: a base loss over the whole image plus lambda times the same loss over the ROI.

Murugesan et al., ISBI 2020, section 2.2.1; SPEC §5-6.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctxseg.losses.base import SegmentationLoss
from ctxseg.roi import ROI_MODES, box_mask, check_sizes, roi_boxes

__all__ = ["ContextLoss"]


class ContextLoss(SegmentationLoss):
    """``base(all pixels) + lambda_roi * L_roi`` (SPEC §6).

    The ROI of each sample comes from its target (:func:`ctxseg.roi.roi_boxes`, static or
    dynamic). ``L_roi`` is, for each sample with foreground, the base loss over its ROI pixels
    alone (for a pixel-wise base such as CE the mean over the ROI pixels; for Dice the Dice of
    the ROI), then the mean over those samples; 0 when no sample has foreground. With equal-size
    static boxes and CE this equals the authors' mean over all ROI pixels of the batch.

    Cost: the base loss runs once; the ROI term reuses its per-pixel map (or its per-class
    sums) through a box mask, for every batch size and both ROI kinds, without cropping.

    In 3-D the ROI is a box of voxels (a cube for the static ROI). Sizes are voxel counts (one
    int, or one per spatial axis), or lengths in mm with ``spacing`` (see :mod:`ctxseg.roi`).
    A base with an ``ignore_index`` (cross-entropy) leaves that label out of the ROI's
    foreground as well as out of both means.

    Args:
        base: the base loss module (any loss of this package but a context loss).
        roi: ``"static"`` or ``"dynamic"``.
        roi_size: side of the static ROI (50 for PROMISE12, 60 for ACDC in the paper).
        margin: dynamic ROI, voxels added around the tight box.
        min_size: dynamic ROI, minimum box side.
        lambda_roi: weight of the ROI term (1 in the paper).
        spacing: voxel size in mm per spatial axis; when given, ``roi_size``, ``margin`` and
            ``min_size`` are lengths in mm.

    Shape:
        - logits: ``(B, C, H, W)`` or ``(B, C, D, H, W)``; target in any form of
          :meth:`SegmentationLoss.label_map`; output scalar.
    """

    def __init__(
        self,
        base: SegmentationLoss,
        roi: str = "static",
        roi_size: int | Sequence[int] | float | None = None,
        margin: int | Sequence[int] | float = 0,
        min_size: int | Sequence[int] | float = 1,
        lambda_roi: float = 1.0,
        spacing: Sequence[float] | None = None,
    ) -> None:
        if not isinstance(base, SegmentationLoss) or isinstance(base, ContextLoss):
            raise ValueError(f"base must be a non-context ctxseg loss, got {type(base).__name__}")
        super().__init__(base.num_classes)
        if roi not in ROI_MODES:
            raise ValueError(f"roi must be one of {ROI_MODES}, got {roi!r}")
        if roi == "static" and roi_size is None:
            raise ValueError("static ROI needs a roi_size, got None")
        spacing = None if spacing is None else tuple(float(s) for s in spacing)
        check_sizes(
            roi_size=roi_size if roi == "static" else None,
            margin=margin,
            min_size=min_size,
            spacing=spacing,
        )
        if not lambda_roi >= 0:
            raise ValueError(f"lambda_roi must be >= 0, got {lambda_roi}")
        self.base = base
        self.roi = roi
        self.roi_size = roi_size
        self.margin = margin
        self.min_size = min_size
        self.lambda_roi = float(lambda_roi)
        self.spacing = spacing

    def parts(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss": global + lambda_roi * roi, "global": ..., "roi": ...}``, one base pass."""
        target = self.label_map(logits, target)  # (B, *S) int64
        roi_target = target
        if self.base.ignore_index is not None:  # an ignored pixel is no object to look at
            roi_target = target.masked_fill(target == self.base.ignore_index, 0)
        boxes, has_roi = roi_boxes(
            roi_target, self.roi, self.roi_size, self.margin, self.min_size, self.spacing
        )
        roi_mask = box_mask(boxes, *target.shape[1:])  # (B, *S)
        whole, per_sample = self.base.global_and_roi(logits, target, roi_mask)
        # torch.where, not a product, so that a placeholder box of an empty slice can never
        # bring a NaN in; the count is clamped so a batch without foreground gives 0.
        kept = torch.where(has_roi, per_sample, torch.zeros_like(per_sample))  # (B,)
        roi_term = kept.sum() / has_roi.sum().clamp(min=1).to(kept.dtype)
        return {"loss": whole + self.lambda_roi * roi_term, "global": whole, "roi": roi_term}

    def global_and_roi(
        self, logits: torch.Tensor, target: torch.Tensor, roi_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise ValueError("a context loss cannot be the base of another context loss")

    def extra_repr(self) -> str:
        text = (
            f"roi={self.roi!r}, roi_size={self.roi_size}, margin={self.margin}, "
            f"min_size={self.min_size}, lambda_roi={self.lambda_roi}"
        )
        return text if self.spacing is None else f"{text}, spacing={self.spacing}"
