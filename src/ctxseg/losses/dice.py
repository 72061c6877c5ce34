"""Soft Dice loss and the authors' soft log-Jaccard "Dice" baseline (SPEC §6)."""

from __future__ import annotations

import torch

from ctxseg.losses._functional import (
    log_jaccard_from_sums,
    one_hot,
    overlap_sums,
    soft_dice_from_sums,
)
from ctxseg.losses.base import SegmentationLoss

__all__ = ["DiceLoss"]

DICE_VARIANTS = ("soft", "log_jaccard")


class DiceLoss(SegmentationLoss):
    """Overlap loss over softmax probabilities.

    - ``variant="soft"``: ``1 - (2 I + smooth_nr) / (P + G + smooth_dr)`` per class, averaged
      over classes; per sample then averaged over the batch (``batch=False``, MONAI's
      ``DiceLoss(softmax=True, to_onehot_y=True)``) or with the sums taken over the whole
      batch (``batch=True``).
    - ``variant="log_jaccard"``: the authors' baseline, ``-sum_c log((I + eps) / (U - I + eps))``
      with ``U = P + G``, background included, I and U summed over the whole batch, eps 1e-7.

    ``I``, ``P``, ``G`` are the sums of ``p * g``, ``p`` and ``g`` over the pixels (p softmax
    probability, g one-hot target). As the ROI term of the context loss, each sample's value is
    the same formula with the sums taken over its ROI pixels only.

    Args:
        num_classes: classes C, background included.
        variant: ``"soft"`` or ``"log_jaccard"``.
        include_background: keep class 0 in the class sum / mean.
        smooth_nr: soft variant, added to the numerator.
        smooth_dr: soft variant, added to the denominator.
        eps: log-Jaccard variant, added to both terms of the ratio.
        batch: sum over the batch before the ratio; default False for soft, True for
            log_jaccard (as the authors).

    Shape:
        - logits: ``(B, C, H, W)`` or ``(B, C, D, H, W)``; target ``(B, H, W)`` /
          ``(B, D, H, W)`` int64 (or another form of :meth:`SegmentationLoss.label_map`);
          output scalar.
    """

    def __init__(
        self,
        num_classes: int,
        variant: str = "soft",
        include_background: bool = True,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        eps: float = 1e-7,
        batch: bool | None = None,
    ) -> None:
        super().__init__(num_classes)
        if variant not in DICE_VARIANTS:
            raise ValueError(f"dice variant must be one of {DICE_VARIANTS}, got {variant!r}")
        if smooth_nr < 0 or smooth_dr < 0 or eps < 0:
            raise ValueError(
                f"smoothing terms must be >= 0, got smooth_nr={smooth_nr}, "
                f"smooth_dr={smooth_dr}, eps={eps}"
            )
        self.variant = variant
        self.include_background = bool(include_background)
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)
        self.eps = float(eps)
        self.batch = (variant == "log_jaccard") if batch is None else bool(batch)

    def _from_sums(
        self, intersection: torch.Tensor, pred_sum: torch.Tensor, target_sum: torch.Tensor
    ) -> torch.Tensor:
        """Loss from ``(..., C)`` sums -> ``(...)``."""
        if not self.include_background:
            intersection, pred_sum, target_sum = (
                intersection[..., 1:],
                pred_sum[..., 1:],
                target_sum[..., 1:],
            )
        if self.variant == "soft":
            return soft_dice_from_sums(
                intersection, pred_sum, target_sum, self.smooth_nr, self.smooth_dr
            )
        return log_jaccard_from_sums(intersection, pred_sum, target_sum, self.eps)

    def global_and_roi(
        self, logits: torch.Tensor, target: torch.Tensor, roi_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        probs = torch.softmax(logits.float(), dim=1)  # (B, C, *S)
        onehot = one_hot(target, self.num_classes, probs.dtype)  # (B, C, *S)
        sums = overlap_sums(probs, onehot)  # 3 x (B, C)
        if self.batch:
            whole = self._from_sums(*(s.sum(dim=0) for s in sums))  # over (C,) sums
        else:
            whole = self._from_sums(*sums).mean()  # (B,) -> scalar
        roi = None
        if roi_mask is not None:
            roi = self._from_sums(*overlap_sums(probs, onehot, roi_mask))  # (B,)
        return whole, roi

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, variant={self.variant!r}, "
            f"include_background={self.include_background}, batch={self.batch}"
        )
