"""Context loss: a base loss over the whole image plus lambda times the same loss over the ROI.

Murugesan et al., ISBI 2020, section 2.2.1; SPEC §5-6.
"""

from __future__ import annotations

import torch

from ctxseg.losses.base import SegmentationLoss
from ctxseg.roi import ROI_MODES, box_mask, roi_boxes

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

    Args:
        base: the base loss module (any loss of this package but a context loss).
        roi: ``"static"`` or ``"dynamic"``.
        roi_size: side of the static ROI (50 for PROMISE12, 60 for ACDC in the paper).
        margin: dynamic ROI, pixels added around the tight box.
        min_size: dynamic ROI, minimum box side.
        lambda_roi: weight of the ROI term (1 in the paper).

    Shape:
        - logits: ``(B, C, H, W)``; target ``(B, H, W)`` int64; output scalar.
    """

    def __init__(
        self,
        base: SegmentationLoss,
        roi: str = "static",
        roi_size: int | None = None,
        margin: int = 0,
        min_size: int = 1,
        lambda_roi: float = 1.0,
    ) -> None:
        if not isinstance(base, SegmentationLoss) or isinstance(base, ContextLoss):
            raise ValueError(f"base must be a non-context ctxseg loss, got {type(base).__name__}")
        super().__init__(base.num_classes)
        if roi not in ROI_MODES:
            raise ValueError(f"roi must be one of {ROI_MODES}, got {roi!r}")
        if roi == "static" and (not isinstance(roi_size, int) or roi_size < 1):
            raise ValueError(f"static ROI needs an int roi_size >= 1, got {roi_size!r}")
        if not isinstance(margin, int) or margin < 0:
            raise ValueError(f"margin must be an int >= 0, got {margin!r}")
        if not isinstance(min_size, int) or min_size < 1:
            raise ValueError(f"min_size must be an int >= 1, got {min_size!r}")
        if not lambda_roi >= 0:
            raise ValueError(f"lambda_roi must be >= 0, got {lambda_roi}")
        self.base = base
        self.roi = roi
        self.roi_size = roi_size
        self.margin = margin
        self.min_size = min_size
        self.lambda_roi = float(lambda_roi)

    def parts(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss": global + lambda_roi * roi, "global": ..., "roi": ...}``, one base pass."""
        self.check_inputs(logits, target)
        boxes, has_roi = roi_boxes(target, self.roi, self.roi_size, self.margin, self.min_size)
        roi_mask = box_mask(boxes, *target.shape[-2:])  # (B, H, W)
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
        return (
            f"roi={self.roi!r}, roi_size={self.roi_size}, margin={self.margin}, "
            f"min_size={self.min_size}, lambda_roi={self.lambda_roi}"
        )
