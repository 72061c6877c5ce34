"""Focal loss (SPEC §6; Lin et al. 2017) as the authors used it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ctxseg.losses.base import PixelwiseLoss

__all__ = ["FocalLoss"]


class FocalLoss(PixelwiseLoss):
    """Mean over pixels of ``alpha_y * (1 - p_y) ** gamma * -log(p_y)``.

    ``p_y`` is the softmax probability of the target class. ``alpha`` is a scalar factor, as
    the authors used it (4 for PROMISE12, 1 for ACDC), or one factor per class picked by the
    target class (a factor, not a normaliser: the mean is a plain mean over pixels). Equals
    ``C`` times MONAI's ``FocalLoss(use_softmax=True, to_onehot_y=True, weight=alpha)`` mean.

    Args:
        num_classes: classes C, background included.
        gamma: focusing exponent (>= 0); 2 in the paper.
        alpha: scalar factor or one non-negative factor per class.

    Shape:
        - logits: ``(B, C, H, W)`` or ``(B, C, D, H, W)``; target ``(B, H, W)`` /
          ``(B, D, H, W)`` int64 (or another form of :meth:`SegmentationLoss.label_map`);
          output scalar.
    """

    def __init__(
        self, num_classes: int, gamma: float = 2.0, alpha: float | Sequence[float] = 1.0
    ) -> None:
        super().__init__(num_classes)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        if isinstance(alpha, (int, float)):
            if alpha < 0:
                raise ValueError(f"alpha must be >= 0, got {alpha}")
            self.alpha = float(alpha)
            self.class_alpha = None
        else:
            values = [float(a) for a in alpha]
            if len(values) != num_classes or min(values) < 0:
                raise ValueError(f"alpha must be {num_classes} values >= 0, got {values}")
            self.alpha = None
            self.register_buffer("class_alpha", torch.tensor(values, dtype=torch.float32))

    def pixel_terms(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        log_probs = F.log_softmax(logits.float(), dim=1)  # (B, C, *S)
        log_pt = log_probs.gather(1, target.unsqueeze(1)).squeeze(1)  # (B, *S)
        values = (1.0 - log_pt.exp()).clamp(min=0).pow(self.gamma) * -log_pt
        factor = (
            self.alpha if self.class_alpha is None else self.class_alpha.to(target.device)[target]
        )
        return values * factor, None

    def extra_repr(self) -> str:
        alpha = self.alpha if self.class_alpha is None else self.class_alpha.tolist()
        return f"num_classes={self.num_classes}, gamma={self.gamma}, alpha={alpha}"
