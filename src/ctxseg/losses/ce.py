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

    With ``ignore_index`` the pixels of that label weigh 0 everywhere (both means leave them
    out, as ``torch.nn.CrossEntropyLoss(ignore_index=...)``; a batch of ignored pixels only
    gives 0), and a context loss around this one leaves them out of the ROI's foreground.
    nnU-Net's ignore label, the label after the last class, is the use case.

    Args:
        num_classes: classes C, background included.
        weights: one non-negative weight per class, or None.
        ignore_index: a label to leave out (any int; it need not lie in ``[0, C)``), or None.

    Shape:
        - logits: ``(B, C, H, W)`` or ``(B, C, D, H, W)``; target ``(B, H, W)`` /
          ``(B, D, H, W)`` int64 (or another form of :meth:`SegmentationLoss.label_map`);
          output scalar.

    Example:
        >>> loss = CrossEntropyLoss(2, weights=[0.25, 0.75])
        >>> value = loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    """

    def __init__(
        self,
        num_classes: int,
        weights: Sequence[float] | None = None,
        ignore_index: int | None = None,
    ) -> None:
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
        if ignore_index is not None and (
            isinstance(ignore_index, bool) or not isinstance(ignore_index, int)
        ):
            raise ValueError(f"ignore_index must be an int or None, got {ignore_index!r}")
        self.ignore_index = ignore_index

    def pixel_terms(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.ignore_index is None:
            values = F.cross_entropy(logits.float(), target, reduction="none")  # (B, *S)
            weights = None if self.weights is None else self.weights.to(target.device)[target]
            return values, weights
        keep = target != self.ignore_index  # (B, *S)
        # Ignored pixels get a valid class so that indexing stays in range; weight 0 removes them.
        safe = torch.where(keep, target, torch.zeros_like(target))  # (B, *S)
        values = F.cross_entropy(logits.float(), safe, reduction="none")  # (B, *S)
        weights = keep.to(values.dtype)
        if self.weights is not None:
            weights = weights * self.weights.to(target.device)[safe]
        return values, weights

    def extra_repr(self) -> str:
        w = None if self.weights is None else [round(v, 6) for v in self.weights.tolist()]
        text = f"num_classes={self.num_classes}, weights={w}"
        return text if self.ignore_index is None else f"{text}, ignore_index={self.ignore_index}"
