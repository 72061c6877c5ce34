"""Adversarial training: GAN and Seg-GLGAN on the U-Net trainer (SPEC §4, §6).

One training step, in the authors' order (and pix2pix's): the generator's forward pass, then
one discriminator step on the real map and the *detached* fake map, then one generator step
``segmentation loss + lambda_adv * BCE(D(fake), 1)`` against the just-updated discriminator.

Unlike the authors' code (SPEC §6), the generator step does *not* detach the fake map: the
adversarial gradient flows through the discriminator into the generator. The discriminator's
parameters are frozen (``requires_grad`` off) during the generator step, so only the
generator receives gradients there and only the generator's optimiser steps; conversely the
discriminator step sees the fake map detached, so it never touches the generator.

What the discriminator compares - the paper's softmax against one-hot maps, or a remedy for the
softness cue that lets it separate them whatever their shape (issue 9) - is made by
:func:`ctxseg.engine.disc_inputs.discriminator_inputs` from the ``adversarial`` config; instance
noise and one-sided label smoothing are applied here.

The step logic lives in plain functions (:func:`discriminator_step`, :func:`generator_loss`)
that :class:`AdversarialTrainer` composes; it overrides only the set-up of the discriminator,
the step and the extra checkpoint state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctxseg.engine.config import AdversarialConfig
from ctxseg.engine.disc_inputs import add_instance_noise, discriminator_inputs
from ctxseg.engine.trainer import Trainer
from ctxseg.models import create_discriminator
from ctxseg.roi import roi_boxes

__all__ = [
    "AdversarialTrainer",
    "adversarial_boxes",
    "adversarial_discriminator",
    "adversarial_maps",
    "discriminator_inputs",
    "discriminator_step",
    "frozen",
    "generator_loss",
]


def adversarial_discriminator(
    adv: AdversarialConfig, num_classes: int, image_size: tuple[int, int]
) -> torch.nn.Module:
    """The discriminator an ``adversarial`` config section describes, for maps of this size."""
    return create_discriminator(
        adv.discriminator,
        num_classes=num_classes,
        image_size=image_size,
        roi=adv.roi,
        roi_size=adv.roi_size if adv.roi == "static" else None,
        with_image=adv.with_image,
        min_roi=adv.min_roi,
    )


def adversarial_maps(
    adv: AdversarialConfig,
    logits: Tensor,
    target: Tensor,
    image: Tensor | None,
    epoch: int,
) -> tuple[Tensor, Tensor]:
    """The discriminator's ``(fake, real)`` maps as the ``adversarial`` config selects them.

    :func:`~ctxseg.engine.disc_inputs.discriminator_inputs` with the config's ``real_maps``,
    ``fake_maps``, ``scale_tau``, ``gumbel_tau`` and (``with_image``) the image, then instance
    noise of sigma ``adv.noise_at(epoch)`` on the class-map channels of both. The same noisy
    fake map serves the discriminator step (detached) and the generator step.

    Shape:
        - logits: ``(B, C, H, W)``; target: ``(B, H, W)`` int64; image: ``(B, 1, H, W)``.
        - fake, real: ``(B, C[+1], H, W)``.
    """
    num_classes = logits.shape[1]
    fake, real = discriminator_inputs(
        logits,
        target,
        image if adv.with_image else None,
        real_maps=adv.real_maps,
        fake_maps=adv.fake_maps,
        scale_tau=adv.scale_tau,
        gumbel_tau=adv.gumbel_tau,
    )
    sigma = adv.noise_at(epoch)
    fake = add_instance_noise(fake, sigma, num_classes)
    real = add_instance_noise(real, sigma, num_classes)
    return fake, real


def adversarial_boxes(
    adv: AdversarialConfig, target: Tensor
) -> tuple[Tensor | None, Tensor | None]:
    """The target's ROI boxes for the discriminator (``(None, None)`` for the plain one).

    Shape:
        - target: ``(B, H, W)`` int64; boxes ``(B, 4)``, has_roi ``(B,)``.
    """
    if adv.discriminator == "plain":
        return None, None
    if adv.roi == "static":
        return roi_boxes(target, "static", size=adv.roi_size)
    return roi_boxes(target, "dynamic", margin=adv.margin, min_size=adv.min_roi)


def _bce(scores: Tensor, label: float) -> Tensor:
    """Mean binary cross-entropy of logits against a constant label, in float32 at least."""
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
    return F.binary_cross_entropy_with_logits(scores, torch.full_like(scores, label))


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Turn off ``requires_grad`` of a module's parameters for the block, then restore it.

    Inside, a backward pass through the module computes gradients for its *input* only: the
    module's parameters receive none (and their weight gradients are not even computed).
    """
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def discriminator_step(
    disc: nn.Module,
    optimizer: torch.optim.Optimizer,
    real: Tensor,
    fake: Tensor,
    boxes: Tensor | None,
    has_roi: Tensor | None,
    autocast: Any = None,
    real_label: float = 1.0,
) -> dict[str, Tensor]:
    """One discriminator update: ``0.5 * (BCE(D(real), 1) + BCE(D(fake.detach()), 0))`` (SPEC §6).

    Real and fake go through the discriminator as one batch of 2B (it has no normalisation
    layer, so this equals two separate passes). With ``real_label < 1`` the real term is
    ``BCE(D(real), real_label)``: one-sided label smoothing (Salimans et al. 2016), which keeps
    D from driving its logits on real maps to infinity; the fake label stays 0.

    Args:
        disc: the discriminator (possibly DDP-wrapped).
        optimizer: its optimiser; the only one that steps here.
        real: target maps (one-hot, or scaled towards the prediction).
        fake: generator maps; detached here, so the generator gets no gradient.
        boxes: the target's ROI boxes (ignored by the plain discriminator).
        has_roi: whether each sample has an ROI.
        autocast: a context manager factory for the forward pass (mixed precision), or None.
        real_label: the target of the real term, in (0.5, 1].

    Returns:
        Detached scalars ``d_loss``, ``d_real`` (mean sigmoid of D(real)) and ``d_fake``.

    Shape:
        - real, fake: ``(B, C[+1], H, W)``; boxes: ``(B, 4)``; has_roi: ``(B,)``.
    """
    batch = real.shape[0]
    maps = torch.cat([real, fake.detach()], dim=0)  # (2B, C, H, W)
    boxes2 = None if boxes is None else boxes.repeat(2, 1)  # (2B, 4)
    has_roi2 = None if has_roi is None else has_roi.repeat(2)  # (2B,)
    optimizer.zero_grad(set_to_none=True)
    with autocast() if autocast is not None else nullcontext():
        scores = disc(maps, boxes2, has_roi2)  # (2B,)
    d_real, d_fake = scores[:batch], scores[batch:]
    d_loss = 0.5 * (_bce(d_real, real_label) + _bce(d_fake, 0.0))
    d_loss.backward()
    optimizer.step()
    with torch.no_grad():
        return {
            "d_loss": d_loss.detach(),
            "d_real": torch.sigmoid(d_real.float()).mean(),
            "d_fake": torch.sigmoid(d_fake.float()).mean(),
        }


def generator_loss(
    disc: nn.Module,
    fake: Tensor,
    boxes: Tensor | None,
    has_roi: Tensor | None,
    autocast: Any = None,
) -> Tensor:
    """The generator's adversarial term ``BCE(D(fake), 1)``, differentiable w.r.t. ``fake``.

    The discriminator's parameters are frozen while it runs, so a backward pass of the result
    gives gradients to the generator (through ``fake``) and none to the discriminator. Pass the
    *unwrapped* discriminator under DDP: nothing of it is to be synchronised here.

    Shape:
        - fake: ``(B, C[+1], H, W)`` with the generator's graph; boxes: ``(B, 4)``;
          has_roi: ``(B,)``.
        - Output: scalar.
    """
    with frozen(disc), autocast() if autocast is not None else nullcontext():
        scores = disc(fake, boxes, has_roi)  # (B,)
    return _bce(scores, 1.0)


class AdversarialTrainer(Trainer):
    """The U-Net trainer with a discriminator: GAN (plain) and Seg-GLGAN (context) runs.

    Configured by ``config.adversarial`` (:class:`ctxseg.engine.config.AdversarialConfig`).
    Logged per epoch (``train_<key>``): ``loss`` (generator total), ``seg`` (segmentation
    loss) and its other parts under their own names (``global``, ``roi``), ``adv`` (the
    generator's BCE(D(fake), 1) before the weight ``lambda_adv``), ``d_loss``, ``d_real`` and
    ``d_fake`` (mean D probabilities, from the discriminator step).
    """

    def setup_extra(self) -> None:
        adv = self.config.adversarial
        if adv is None:
            raise ValueError("AdversarialTrainer needs config.adversarial (it is null)")
        height, width = (int(s) for s in self.store.image_size)
        disc = adversarial_discriminator(adv, self.store.num_classes, (height, width))
        disc = disc.to(self.device)
        if self.channels_last:
            disc = disc.to(memory_format=torch.channels_last)
        self.disc_module = disc
        self.disc = self.wrap_ddp(disc)
        self.d_optimizer = self.make_optimizer(disc.parameters(), adv.optim)
        self.epoch = 0  # set by on_epoch_start; 0 for a train_step called outside fit()

    def on_epoch_start(self, epoch: int) -> None:
        """The learning rates, and the epoch that sets the instance-noise sigma."""
        super().on_epoch_start(epoch)
        self.epoch = epoch

    def train_step(self, image: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Generator forward, one discriminator step, one generator step (SPEC §6).

        No host synchronisation except, for the dynamic ROI, reading the box sizes once per
        discriminator call (twice a step): the crop shapes must be known on the host.

        Shape:
            image: ``(B, 1, H, W)`` float32; target: ``(B, H, W)`` int64; on ``self.device``.
        """
        adv = self.config.adversarial
        self.disc.train()
        boxes, has_roi = adversarial_boxes(adv, target)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.model(image)  # (B, C, H, W)
        parts = self.loss_fn.parts(logits.float(), target)
        fake, real = adversarial_maps(adv, logits, target, image, self.epoch)

        d_stats = discriminator_step(
            self.disc, self.d_optimizer, real, fake, boxes, has_roi, self.autocast, adv.real_label
        )
        adv_loss = generator_loss(self.disc_module, fake, boxes, has_roi, self.autocast)
        total = parts["loss"] + adv.lambda_adv * adv_loss
        total.backward()
        self.optimizer.step()

        # The segmentation parts keep the U-Net runs' names ("global", "roi") so that curves
        # compare; their "loss" becomes "seg" and "loss" is the generator's total.
        logged = {("seg" if k == "loss" else k): v.detach() for k, v in parts.items()}
        return {"loss": total.detach(), **logged, "adv": adv_loss.detach(), **d_stats}

    def extra_state(self) -> dict[str, Any]:
        return {
            "discriminator": self.disc_module.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        missing = [k for k in ("discriminator", "d_optimizer") if k not in state]
        if missing:
            raise ValueError(f"checkpoint has no {missing} to resume the adversarial run from")
        self.disc_module.load_state_dict(state["discriminator"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
