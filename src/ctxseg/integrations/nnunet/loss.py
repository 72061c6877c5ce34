"""nnU-Net's loss with its cross-entropy replaced by ctxseg's context CE (SPEC §6).

Composition, not a copy: the Dice term is nnU-Net's own ``DC_and_CE_loss`` object with its CE
weight set to 0 (so its Dice, its batch-Dice setting and its ignore-label mask stay exactly
nnU-Net's), and the CE term is :class:`ctxseg.losses.ContextLoss` around
:class:`ctxseg.losses.CrossEntropyLoss` with nnU-Net's ignore label as ``ignore_index``. With
deep supervision every output gets its own context CE, whose ROI comes from that output's
(downsampled) target and whose ROI sizes are scaled to it; the outputs are weighted with the
weights nnU-Net computed for its own wrapper.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from torch import nn

from ctxseg.integrations.nnunet.settings import ContextCESettings
from ctxseg.losses import ContextLoss, CrossEntropyLoss

__all__ = ["DiceAndContextCE", "PerScaleDeepSupervision", "replace_ce_with_context_ce"]


class DiceAndContextCE(nn.Module):
    """``dice(out, target) + weight_ce * context_ce(out, target)`` for one output.

    Args:
        dice: nnU-Net's ``DC_and_CE_loss`` with ``weight_ce == 0`` (its Dice term alone), or
            None for the context CE alone.
        context_ce: ctxseg's context loss around CE.
        weight_ce: nnU-Net's CE weight (1 in its default trainer).

    Shape:
        - net_output: ``(B, C, *S)`` logits; target: ``(B, 1, *S)`` labels as nnU-Net's data
          loader gives them (any dtype); output scalar.
    """

    def __init__(self, dice: nn.Module | None, context_ce: ContextLoss, weight_ce: float) -> None:
        super().__init__()
        if dice is not None and getattr(dice, "weight_ce", 0) != 0:
            raise ValueError("the Dice term must have weight_ce == 0, or the CE counts twice")
        self.dice = dice
        self.context_ce = context_ce
        self.weight_ce = float(weight_ce)

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        value = self.weight_ce * self.context_ce(net_output, target)
        if self.dice is not None:
            value = value + self.dice(net_output, target)
        return value


class PerScaleDeepSupervision(DeepSupervisionWrapper):
    """nnU-Net's deep-supervision sum with one loss per output: ``sum_i w_i * loss_i(out_i, t_i)``.

    A subclass of nnU-Net's wrapper so that code which checks for it still finds it; outputs
    whose weight is 0 are skipped as nnU-Net skips them.

    Args:
        losses: one loss per output, highest resolution first.
        weight_factors: nnU-Net's weights, one per output.
    """

    def __init__(self, losses: Sequence[nn.Module], weight_factors: Sequence[float]) -> None:
        if len(losses) != len(weight_factors):
            raise ValueError(f"{len(losses)} losses for {len(weight_factors)} weights")
        super().__init__(losses[0], weight_factors)
        self.scale_losses = nn.ModuleList(losses)

    def forward(self, *args: Sequence[torch.Tensor]) -> torch.Tensor:
        if not all(isinstance(a, (tuple, list)) for a in args):
            raise ValueError(
                f"every argument must be a list of outputs, got {[type(a) for a in args]}"
            )
        terms = [
            weight * loss(*inputs)
            for weight, loss, inputs in zip(
                self.weight_factors, self.scale_losses, zip(*args, strict=True), strict=True
            )
            if weight != 0
        ]
        return sum(terms)  # type: ignore[return-value]


def replace_ce_with_context_ce(
    nnunet_loss: nn.Module,
    settings: ContextCESettings,
    *,
    num_classes: int,
    ignore_label: int | None,
    spacing: Sequence[float],
    patch_size: Sequence[int],
    scales: Sequence[Sequence[float]] | None,
    keep_dice: bool = True,
) -> nn.Module:
    """The loss nnU-Net built (``nnUNetTrainer._build_loss``) with its CE made a context CE.

    Args:
        nnunet_loss: ``DC_and_CE_loss``, or nnU-Net's ``DeepSupervisionWrapper`` around one.
            Its CE weight is set to 0 in place (the object is then the Dice term alone).
        settings: the ROI settings.
        num_classes: nnU-Net's segmentation heads (labels without the ignore label).
        ignore_label: nnU-Net's ignore label, or None.
        spacing: the configuration's spacing (mm per axis).
        patch_size: the configuration's patch size.
        scales: the per-axis factor of every output (``_get_deep_supervision_scales()``), or
            None without deep supervision.
        keep_dice: False for the context CE alone (``nnUNetTrainerContextCEOnly``).

    Returns:
        ``PerScaleDeepSupervision`` with deep supervision, else one ``DiceAndContextCE``.

    Raises:
        ValueError: a loss that is not nnU-Net's Dice + CE (region-based training uses BCE, for
            which no context CE is defined here), or scales that do not match the weights.
    """
    wrapped = isinstance(nnunet_loss, DeepSupervisionWrapper)
    dice_ce = nnunet_loss.loss if wrapped else nnunet_loss
    if not isinstance(dice_ce, DC_and_CE_loss):
        raise ValueError(
            f"the context CE replaces the CE of nnU-Net's DC_and_CE_loss, got "
            f"{type(dice_ce).__name__} (region-based training is not supported)"
        )
    weight_ce = float(dice_ce.weight_ce)
    dice_ce.weight_ce = 0  # from now on nnU-Net computes the Dice term only
    dice = dice_ce if keep_dice else None
    ndim = len(patch_size)

    def one_output(scale: Sequence[float]) -> DiceAndContextCE:
        context = ContextLoss(
            CrossEntropyLoss(num_classes, ignore_index=ignore_label),
            **settings.context_kwargs(spacing, scale, patch_size),  # type: ignore[arg-type]
        )
        return DiceAndContextCE(dice, context, weight_ce)

    if not wrapped:
        return one_output((1.0,) * ndim)
    if scales is None or len(scales) != len(nnunet_loss.weight_factors):
        raise ValueError(
            f"deep supervision needs one scale per output weight "
            f"({len(nnunet_loss.weight_factors)}), got {scales}"
        )
    return PerScaleDeepSupervision(
        [one_output(tuple(float(f) for f in s)) for s in scales], nnunet_loss.weight_factors
    )
