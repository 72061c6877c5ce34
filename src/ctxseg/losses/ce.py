"""Cross-entropy and weighted cross-entropy (SPEC §6)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ctxseg.losses.base import PixelwiseLoss

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(PixelwiseLoss):
    """Pixel-wise cross-entropy over softmax, optionally class-weighted.

    Without weights the value is the mean CE over all pixels. With ``weights`` it is the
    weighted mean ``sum(w[y] * CE) / sum(w[y])``, as ``torch.nn.CrossEntropyLoss(weight=...)``
    and the authors' ``NLLLoss(weight=...)`` compute it (PROMISE12 [0.25, 0.75],
    ACDC [0.1, 0.5, 0.2, 0.2]).

    Args:
        num_classes: classes C, background included.
        weights: one non-negative weight per class, or None.

    Shape:
        - logits: ``(B, C, H, W)``; target ``(B, H, W)`` int64; output scalar.

    Example:
        >>> loss = CrossEntropyLoss(2, weights=[0.25, 0.75])
        >>> value = loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    """

    def __init__(self, num_classes: int, weights: Sequence[float] | None = None) -> None:
        super().__init__(num_classes)
        if weights is not None:
            weights = [float(w) for w in weights]
            if len(weights) != num_classes or min(weights) < 0 or sum(weights) <= 0:
                raise ValueError(
                    f"weights must be {num_classes} non-negative values, not all 0; got {weights}"
                )
            self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))
        else:
            self.weights = None

    def pixel_terms(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        values = F.cross_entropy(logits.float(), target, reduction="none")  # (B, H, W)
        weights = None if self.weights is None else self.weights.to(target.device)[target]
        return values, weights

    def extra_repr(self) -> str:
        w = None if self.weights is None else [round(v, 6) for v in self.weights.tolist()]
        return f"num_classes={self.num_classes}, weights={w}"
