"""What the discriminator sees: the fake and real class maps and their remedies (issue 9).

The paper's inputs (SPEC §4) are the generator's softmax probabilities ("fake") against the
one-hot target ("real"). A softmax never reaches exactly 0 or 1, so a discriminator can tell the
two apart by softness alone, whatever the shape: it then scores a pixel-perfect prediction as
fake and a wrongly shaped one-hot mask as real, and its gradient mostly pushes the generator to
saturate its probabilities (``docs/seg-glgan.md``). The remedies here take that cue away:

- ``real_maps="scaled"`` (Luc et al. 2016, "Semantic segmentation using adversarial networks",
  section 3.2, "scaling"): the real map is the target mixed with the (detached) prediction so
  that the true class gets ``max(tau, p_true)`` and the other classes share the rest in
  proportion to their predicted probabilities. A correct prediction then equals its real map.
- ``fake_maps="straight_through"``: the fake map is the one-hot argmax in the forward pass, with
  the gradient of the probabilities in the backward pass (Bengio et al. 2013).
- ``fake_maps="gumbel"``: a hard Gumbel-softmax sample (Jang et al. 2017), one-hot in the forward
  pass, the gradient of the tempered relaxed sample in the backward pass.
- the image as one more channel (a conditional discriminator, pix2pix / Luc et al.), and
  instance noise (Sønderby et al. 2017) on the class-map channels, in the trainer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "FAKE_MAPS",
    "REAL_MAPS",
    "add_instance_noise",
    "discriminator_inputs",
    "hard_gumbel",
    "scaled_real_maps",
    "straight_through",
]

REAL_MAPS = ("onehot", "scaled")
FAKE_MAPS = ("soft", "straight_through", "gumbel")


def scaled_real_maps(probs: Tensor, target: Tensor, tau: float) -> Tensor:
    """Luc et al.'s "scaling" of the one-hot target towards the prediction.

    With ``l`` the true class of a pixel and ``p`` the prediction there, the real map is
    ``y_l = max(tau, p_l)`` and ``y_c = (1 - y_l) * p_c / sum_{k != l} p_k`` for ``c != l``
    (an even share where the prediction gives the other classes nothing). Where the prediction
    puts at least ``tau`` on the true class the real map *is* the prediction (bit for bit);
    where it is wrong or unsure, the true class gets ``tau``. ``tau = 1`` gives the one-hot
    target.

    Args:
        probs: predicted probabilities; detached here (the real map carries no gradient).
        target: label map.
        tau: the least probability of the true class, in ``(0, 1]``.

    Returns:
        The real maps, rows summing to 1.

    Shape:
        - probs: ``(B, C, H, W)``; target: ``(B, H, W)`` int64.
        - Output: ``(B, C, H, W)``, the dtype of probs.
    """
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"scale_tau must be in (0, 1], got {tau}")
    probs = probs.detach()
    num_classes = probs.shape[1]
    onehot = F.one_hot(target, num_classes).permute(0, 3, 1, 2).to(probs.dtype)  # (B, C, H, W)
    p_true = (probs * onehot).sum(dim=1, keepdim=True)  # (B, 1, H, W)
    y_true = p_true.clamp(min=tau)  # (B, 1, H, W)
    others = probs * (1 - onehot)  # (B, C, H, W), zero at the true class
    others_sum = others.sum(dim=1, keepdim=True)  # (B, 1, H, W)
    # Summing the other classes (rather than 1 - p_true) keeps the shares exact in float.
    even = (1 - onehot) / (num_classes - 1)
    share = torch.where(others_sum > 0, others / others_sum.clamp(min=1e-30), even)
    scaled = onehot * y_true + share * (1 - y_true)  # (B, C, H, W)
    # Where p_true >= tau the formula gives the prediction back; take it as it is, so that a
    # right prediction equals its real map bit for bit (no rounding for D to pick up).
    return torch.where(p_true >= tau, probs, scaled)


def straight_through(probs: Tensor) -> Tensor:
    """One-hot argmax in the forward pass, the identity on ``probs`` in the backward pass.

    Shape:
        - probs: ``(B, C, H, W)``.
        - Output: ``(B, C, H, W)``, exactly 0 / 1 in value, ``d out / d probs = I``.
    """
    hard = F.one_hot(probs.argmax(dim=1), probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    # probs - probs.detach() is exactly 0 in value, so the forward value is exactly one-hot
    # ((hard + probs) - probs would round 1 + p - p off by an ulp).
    return hard + (probs - probs.detach())


def hard_gumbel(logits: Tensor, temperature: float) -> Tensor:
    """A hard Gumbel-softmax sample over the class axis (draws from the global generator).

    Forward: ``one_hot(argmax(logits + g))`` with ``g`` standard Gumbel noise, i.e. a sample of
    the predicted class distribution at every pixel; backward: the gradient of
    ``softmax((logits + g) / temperature)`` (``F.gumbel_softmax(hard=True)``, with the forward
    value exactly one-hot as in :func:`straight_through`).

    Shape:
        - logits: ``(B, C, H, W)``.
        - Output: ``(B, C, H, W)``.
    """
    if not 0 < temperature < float("inf"):
        raise ValueError(f"gumbel_tau must be finite and > 0, got {temperature}")
    gumbels = -torch.empty_like(logits).exponential_().log()  # (B, C, H, W) standard Gumbel
    relaxed = ((logits + gumbels) / temperature).softmax(dim=1)  # (B, C, H, W)
    return straight_through(relaxed)


def discriminator_inputs(
    logits: Tensor,
    target: Tensor,
    image: Tensor | None = None,
    *,
    real_maps: str = "onehot",
    fake_maps: str = "soft",
    scale_tau: float = 0.9,
    gumbel_tau: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """The fake and real maps the discriminator compares (SPEC §4; remedies of issue 9).

    The defaults are the paper's inputs: softmax probabilities against the one-hot target.

    Args:
        logits: generator output.
        target: label map.
        image: when given, concatenated to both maps as one more channel (conditional D).
        real_maps: ``"onehot"`` (paper) or ``"scaled"`` (:func:`scaled_real_maps`).
        fake_maps: ``"soft"`` (paper: softmax), ``"straight_through"`` (:func:`straight_through`)
            or ``"gumbel"`` (:func:`hard_gumbel`).
        scale_tau: ``tau`` of the scaled real maps.
        gumbel_tau: temperature of the Gumbel-softmax relaxation (backward pass only).

    Returns:
        ``(fake, real)``: float32 at least; ``fake`` carries the generator's graph.

    Raises:
        ValueError: an unknown ``real_maps`` / ``fake_maps``, or ``"scaled"`` real maps with
            one-hot fake maps (the real maps would be the soft ones: the cue, reversed).

    Shape:
        - logits: ``(B, C, H, W)``; target: ``(B, H, W)`` int64; image: ``(B, 1, H, W)``.
        - fake, real: ``(B, C[+1], H, W)``.
    """
    if real_maps not in REAL_MAPS:
        raise ValueError(f"real_maps must be one of {REAL_MAPS}, got {real_maps!r}")
    if fake_maps not in FAKE_MAPS:
        raise ValueError(f"fake_maps must be one of {FAKE_MAPS}, got {fake_maps!r}")
    if real_maps == "scaled" and fake_maps != "soft":
        raise ValueError(f"real_maps 'scaled' needs fake_maps 'soft', got {fake_maps!r}")
    num_classes = logits.shape[1]
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    probs = logits.softmax(dim=1)  # (B, C, H, W)
    if fake_maps == "soft":
        fake = probs
    elif fake_maps == "straight_through":
        fake = straight_through(probs)
    else:
        fake = hard_gumbel(logits, gumbel_tau)
    if real_maps == "onehot":
        real = F.one_hot(target, num_classes).permute(0, 3, 1, 2).to(fake.dtype)  # (B, C, H, W)
    else:
        real = scaled_real_maps(probs, target, scale_tau)
    if image is not None:
        image = image.to(fake.dtype)
        fake = torch.cat([fake, image], dim=1)
        real = torch.cat([real, image], dim=1)
    return fake, real


def add_instance_noise(maps: Tensor, sigma: float, channels: int) -> Tensor:
    """Gaussian instance noise on the first ``channels`` channels (the class maps).

    Instance noise (Sønderby et al. 2017, "Amortised MAP inference for image super-resolution";
    Arjovsky & Bottou 2017) blurs the real and fake distributions into each other so that the
    discriminator cannot win on a difference far smaller than ``sigma``. The image channel of a
    conditional discriminator is the condition, not the sample: it is left as it is. The noise
    carries no gradient, so ``d out / d maps = I``. Draws from the global generator.

    Shape:
        - maps: ``(B, C[+1], H, W)``.
        - Output: same as maps.
    """
    if not sigma >= 0:
        raise ValueError(f"instance noise sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return maps
    noise = torch.zeros_like(maps)
    noise[:, :channels] = torch.randn_like(maps[:, :channels]) * sigma  # (B, C, H, W)
    return maps + noise
