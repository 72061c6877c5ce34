"""nnU-Net v2 trainers with ctxseg's context cross-entropy; each overrides only the loss.

- ``nnUNetTrainerContextCE``: nnU-Net's Dice + CE with the CE replaced by the context CE
  (``CE + lambda * CE over the ROI``, SPEC §6), dynamic ROI by default.
- ``nnUNetTrainerContextCEOnly``: the context CE alone.

Everything else (network, augmentation, schedule, deep supervision and its weights, ignore
label, checkpoints, inference) is nnU-Net's. The ROI settings come from ``CTXSEG_*``
environment variables or a ``"ctxseg"`` plans entry (:mod:`.settings`). nnU-Net finds these
classes through ``nnUNet_extTrainer`` (``export nnUNet_extTrainer=$(ctxseg nnunet-path)``),
at training and at prediction time.
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn

from ctxseg.integrations.nnunet.loss import replace_ce_with_context_ce
from ctxseg.integrations.nnunet.settings import PLANS_KEY, ContextCESettings

__all__ = ["nnUNetTrainerContextCE", "nnUNetTrainerContextCEOnly"]


class nnUNetTrainerContextCE(nnUNetTrainer):
    """nnU-Net's default trainer with Dice + context CE instead of Dice + CE."""

    #: False in the CE-only variant: drop nnU-Net's Dice term.
    keep_dice = True

    def context_ce_settings(self) -> ContextCESettings:
        """The ROI settings for this configuration (plans entries, then the environment)."""
        return ContextCESettings.resolve(
            [
                ("plans", self.plans_manager.plans.get(PLANS_KEY)),
                (
                    f"plans configuration {self.configuration_name!r}",
                    self.configuration_manager.configuration.get(PLANS_KEY),
                ),
            ]
        )

    def _build_loss(self) -> nn.Module:
        if self.label_manager.has_regions:
            raise ValueError(
                f"{type(self).__name__} needs label-based training (softmax + CE); this dataset "
                "defines regions, which nnU-Net trains with sigmoid + BCE"
            )
        settings = self.context_ce_settings()
        loss = replace_ce_with_context_ce(
            super()._build_loss(),
            settings,
            num_classes=self.label_manager.num_segmentation_heads,
            ignore_label=self.label_manager.ignore_label,
            spacing=self.configuration_manager.spacing,
            patch_size=self.configuration_manager.patch_size,
            scales=self._get_deep_supervision_scales(),
            keep_dice=self.keep_dice,
        )
        self.print_to_log_file(
            f"ctxseg: {'Dice + ' if self.keep_dice else ''}context CE, {settings.describe()}",
            also_print_to_console=True,
        )
        return loss


class nnUNetTrainerContextCEOnly(nnUNetTrainerContextCE):
    """The context CE alone (no Dice term), deep supervision as nnU-Net's."""

    keep_dice = False
