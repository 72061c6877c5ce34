"""Does a discriminator judge the shape of a mask, or only how soft it is? (issue 9)

A probe, not a training method: a discriminator is trained alone on synthetic cases, with the
inputs an :class:`~ctxseg.engine.config.AdversarialConfig` selects (the same functions the GAN
trainer calls), against "predictions" whose shape is known exactly:

- *perfect*: the softmax of a pixel-perfect prediction (the true class at ``confidence``),
- *shifted*: the same, of the target moved by ``shift`` px in one of the four directions,
- *eroded*: the same, of the target's foreground eroded by ``erode`` px.

A useful discriminator cannot tell a perfect prediction from its target (held-out accuracy near
0.5) and can tell the wrong shapes (accuracy near 1). With the paper's inputs (softmax against
one-hot) it tells all of them apart by softness. ``tests/test_disc_separation.py`` and
``benchmarks/disc_separation.py`` use it.

The cases: one elliptic object per image (random centre, semi-axes and angle), visible in the
image as a brighter region in a noisy textured background, so that a conditional discriminator
(``with_image``) can check that the mask fits it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctxseg.engine.adversarial import (
    adversarial_boxes,
    adversarial_discriminator,
    adversarial_maps,
    discriminator_step,
    generator_loss,
)
from ctxseg.engine.config import AdversarialConfig

__all__ = [
    "KINDS",
    "Cases",
    "ProbeSettings",
    "build_discriminator",
    "confidence_gradient",
    "confident_logits",
    "eroded",
    "evaluate",
    "make_cases",
    "run_probe",
    "shifted",
    "train_discriminator",
]

KINDS = ("perfect", "shifted", "eroded")


@dataclass(frozen=True)
class ProbeSettings:
    """Sizes of one probe. The defaults are the paper's (128 px, batch 16, Adam 1e-4).

    Attributes:
        size: image side.
        steps: discriminator updates.
        batch: cases per update (the discriminator sees ``batch`` real and ``batch`` fake maps).
        lr: Adam learning rate of the discriminator.
        confidence: probability of the predicted class in every fake map.
        shift: pixels a shifted prediction is moved by.
        erode: pixels an eroded prediction loses at its border.
        wrong_fraction: share of the training fakes with a wrong shape (half shifted, half
            eroded); 0 trains on perfect predictions only, as the issue's review did.
        train_cases: size of the training pool; the held-out cases are drawn apart.
        test_cases: held-out cases.
        seed: seeds the cases, the initial weights and the batches.
    """

    size: int = 128
    steps: int = 300
    batch: int = 16
    lr: float = 1e-4
    confidence: float = 0.9975
    shift: int = 6
    erode: int = 3
    wrong_fraction: float = 0.5
    train_cases: int = 512
    test_cases: int = 128
    seed: int = 0


@dataclass
class Cases:
    """Images and targets of the probe.

    Shape:
        - image: ``(N, 1, H, W)`` float32 in [0, 1]; target: ``(N, H, W)`` int64 in {0, 1}.
    """

    image: Tensor
    target: Tensor

    def __getitem__(self, index: Tensor) -> Cases:
        return Cases(self.image[index], self.target[index])

    def __len__(self) -> int:
        return self.target.shape[0]


def make_cases(n: int, size: int, margin: int, generator: torch.Generator) -> Cases:
    """``n`` images of one ellipse each, at least ``margin`` px from every border.

    The semi-axes are 10-28% of the side (at least 5 px), so that an erosion of a few pixels
    leaves an object; the image is 0.5 inside, 0.2 outside, plus a smooth texture and noise.

    Shape:
        - Output: image ``(n, 1, size, size)``, target ``(n, size, size)``.
    """
    u = torch.rand(n, 6, generator=generator)
    low, high = max(5.0, 0.10 * size), 0.28 * size
    a = low + (high - low) * u[:, 0]  # (n,) semi-axes
    b = low + (high - low) * u[:, 1]
    angle = math.pi * u[:, 2]
    reach = torch.maximum(a, b) + margin + 1  # (n,) keep the whole object inside after a shift
    cy = reach + (size - 2 * reach) * u[:, 3]
    cx = reach + (size - 2 * reach) * u[:, 4]
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    dy, dx = yy - cy[:, None, None], xx - cx[:, None, None]  # (n, size, size)
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    u1, v1 = dx * cos + dy * sin, -dx * sin + dy * cos
    target = ((u1 / a[:, None, None]) ** 2 + (v1 / b[:, None, None]) ** 2 <= 1).long()
    phase = 2 * math.pi * u[:, 5, None, None]
    texture = 0.05 * torch.sin(xx / 7 + phase) * torch.cos(yy / 5 - phase)  # (n, size, size)
    noise = 0.05 * torch.randn(n, size, size, generator=generator)
    image = (0.2 + 0.3 * target + texture + noise).clamp(0, 1)
    return Cases(image[:, None].float(), target)


def shifted(target: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """Each mask moved by ``shift`` px up, down, left or right (drawn per sample).

    The cases keep every object ``shift`` px from the border, so nothing wraps around.

    Shape:
        - target: ``(N, H, W)``; Output: ``(N, H, W)``.
    """
    direction = torch.randint(0, 4, (target.shape[0],), generator=generator).tolist()
    moves = {0: (shift, 1), 1: (-shift, 1), 2: (shift, 2), 3: (-shift, 2)}
    out = torch.empty_like(target)
    for i, d in enumerate(direction):
        amount, dim = moves[d]
        out[i] = torch.roll(target[i], amount, dims=dim - 1)
    return out


def eroded(target: Tensor, radius: int) -> Tensor:
    """The foreground eroded by a ``(2 radius + 1)`` square (``radius`` px off its border).

    Shape:
        - target: ``(N, H, W)`` in {0, 1}; Output: ``(N, H, W)`` int64.
    """
    background = (target == 0).float()[:, None]  # (N, 1, H, W)
    grown = F.max_pool2d(background, 2 * radius + 1, stride=1, padding=radius)
    return (grown[:, 0] == 0).long()


def confident_logits(mask: Tensor, num_classes: int, confidence: Tensor | float) -> Tensor:
    """Logits whose softmax puts ``confidence`` on the mask's class, the rest shared evenly.

    ``confidence`` may be a tensor that requires grad (the generator-side gradient).

    Shape:
        - mask: ``(N, H, W)`` int64; Output: ``(N, C, H, W)`` float32.
    """
    confidence = torch.as_tensor(confidence, dtype=torch.float32)
    onehot = F.one_hot(mask, num_classes).permute(0, 3, 1, 2).float()  # (N, C, H, W)
    low = torch.log((1 - confidence) / (num_classes - 1))
    return onehot * torch.log(confidence) + (1 - onehot) * low


def build_discriminator(adv: AdversarialConfig, size: int, num_classes: int = 2) -> nn.Module:
    """The discriminator an :class:`AdversarialConfig` describes, for ``size`` px maps (the
    trainer's own :func:`~ctxseg.engine.adversarial.adversarial_discriminator`)."""
    return adversarial_discriminator(adv, num_classes, (size, size))


def _maps(
    adv: AdversarialConfig, cases: Cases, mask: Tensor, confidence: Tensor | float
) -> tuple[Tensor, Tensor]:
    """``(fake, real)`` as the trainer builds them (at epoch 0) for predictions of ``mask``.

    Both in the standard layout: identical maps then get bit-identical scores (a memory layout
    can change the convolution's rounding), so that ties in :func:`evaluate` are exact.
    """
    logits = confident_logits(mask, 2, confidence)
    fake, real = adversarial_maps(adv, logits, cases.target, cases.image, 0)
    return fake.contiguous(), real.contiguous()


def _wrong_masks(cases: Cases, settings: ProbeSettings, generator: torch.Generator) -> Tensor:
    """Per case a perfect, shifted or eroded mask, drawn with the probe's wrong fraction."""
    u = torch.rand(len(cases), generator=generator)
    kind = (u < settings.wrong_fraction).long() + (u < settings.wrong_fraction / 2).long()
    masks = cases.target.clone()
    masks[kind == 1] = eroded(cases.target[kind == 1], settings.erode)
    masks[kind == 2] = shifted(cases.target[kind == 2], settings.shift, generator)
    return masks


def train_discriminator(
    disc: nn.Module, adv: AdversarialConfig, cases: Cases, settings: ProbeSettings
) -> list[dict[str, float]]:
    """Train ``disc`` with :func:`discriminator_step` on real maps against predicted ones.

    Args:
        disc: the discriminator, trained in place.
        adv: which maps it sees (``real_maps``, ``fake_maps``, ``with_image``, noise at
            epoch 0, ``real_label``) and its ROI.
        cases: the training pool.
        settings: steps, batch, learning rate, confidence and the share of wrong shapes.

    Returns:
        The step statistics (``d_loss``, ``d_real``, ``d_fake``) per step.
    """
    generator = torch.Generator().manual_seed(settings.seed + 1)
    optimizer = torch.optim.Adam(disc.parameters(), lr=settings.lr)
    history = []
    disc.train()
    for _ in range(settings.steps):
        index = torch.randint(0, len(cases), (settings.batch,), generator=generator)
        batch = cases[index]
        masks = _wrong_masks(batch, settings, generator)
        with torch.no_grad():
            fake, real = _maps(adv, batch, masks, settings.confidence)
        boxes, has_roi = adversarial_boxes(adv, batch.target)
        stats = discriminator_step(
            disc, optimizer, real, fake, boxes, has_roi, real_label=adv.real_label
        )
        history.append({k: float(v) for k, v in stats.items()})
    return history


@torch.no_grad()
def _scores(disc: nn.Module, adv: AdversarialConfig, maps: Tensor, target: Tensor) -> Tensor:
    boxes, has_roi = adversarial_boxes(adv, target)
    return disc(maps, boxes, has_roi)  # (N,)


def evaluate(
    disc: nn.Module, adv: AdversarialConfig, cases: Cases, settings: ProbeSettings
) -> dict[str, float]:
    """Held-out separation of each kind of prediction from its target.

    Returns:
        Per kind ``k`` in :data:`KINDS`: ``acc_k``, the held-out accuracy of D as the share
        of all (real map, fake map) pairs of those predictions that D orders right, ties
        counting half (:func:`_auc`; 0.5: no separation, exactly 0.5 for identical inputs;
        1: perfect separation). ``thr_acc_k``: the balanced accuracy of D's 0.5 threshold
        instead (the review's measure; it drifts with D's bias while D trains against fakes
        that are sometimes identical to the real maps). ``d_real_k`` / ``d_fake_k``: the mean
        D probabilities. ``rank_shifted`` / ``rank_eroded``: the share of cases whose perfect
        prediction D scores above their wrong one (what the generator's gradient can follow).
        ``onehot_shifted_real``: the share of one-hot shifted masks (with the image channel
        when D takes one) that D calls real; ``onehot_shifted_over_perfect``: the
        :func:`_auc` of those wrong one-hot masks against the perfect predictions (1: D
        prefers any wrong one-hot mask to any right soft prediction).
    """
    generator = torch.Generator().manual_seed(settings.seed + 2)
    disc.eval()
    masks = {
        "perfect": cases.target,
        "shifted": shifted(cases.target, settings.shift, generator),
        "eroded": eroded(cases.target, settings.erode),
    }
    out: dict[str, float] = {}
    fake_scores = {}
    for kind, mask in masks.items():
        fake, real = _maps(adv, cases, mask, settings.confidence)
        s_real = _scores(disc, adv, real, cases.target)
        s_fake = _scores(disc, adv, fake, cases.target)
        fake_scores[kind] = s_fake
        out[f"acc_{kind}"] = _auc(s_real, s_fake)
        threshold = 0.5 * ((s_real > 0).float().mean() + (s_fake < 0).float().mean())
        out[f"thr_acc_{kind}"] = float(threshold)
        out[f"d_real_{kind}"] = float(torch.sigmoid(s_real).mean())
        out[f"d_fake_{kind}"] = float(torch.sigmoid(s_fake).mean())
    for kind in ("shifted", "eroded"):
        out[f"rank_{kind}"] = _paired_accuracy(fake_scores["perfect"], fake_scores[kind])
    onehot = F.one_hot(masks["shifted"], 2).permute(0, 3, 1, 2).float()  # (N, 2, H, W)
    if adv.with_image:
        onehot = torch.cat([onehot, cases.image], dim=1)
    s_onehot = _scores(disc, adv, onehot.contiguous(), cases.target)
    out["onehot_shifted_real"] = float((s_onehot > 0).float().mean())
    out["onehot_shifted_over_perfect"] = _auc(s_onehot, fake_scores["perfect"])
    return out


def _paired_accuracy(better: Tensor, worse: Tensor) -> float:
    """Share of cases ``i`` with ``better[i] > worse[i]``, ties counting half."""
    return float(((better > worse).float() + 0.5 * (better == worse).float()).mean())


def _auc(real: Tensor, fake: Tensor) -> float:
    """Share of all (real, fake) pairs, across cases, that D orders right; ties count half.

    The ROC AUC, i.e. the accuracy of a two-alternative choice between a random real and a
    random fake map. Unlike a per-case comparison it is not fooled by a tiny difference of
    the same sign in every case (an untrained D scores ``0.995 * onehot + 0.0025`` apart from
    the one-hot map consistently); unlike the 0.5 threshold it does not drift with D's bias.
    """
    diff = real[:, None] - fake[None, :]  # (N_real, N_fake)
    return float(((diff > 0).float() + 0.5 * (diff == 0).float()).mean())


def confidence_gradient(
    disc: nn.Module, adv: AdversarialConfig, cases: Cases, confidence: float
) -> float:
    """``d adv / d confidence`` at a pixel-perfect prediction, ``adv = BCE(D(fake), 1)``.

    The generator's adversarial term (mean over the cases) as a function of one confidence
    shared by every pixel of every case. Negative: the term pushes the generator to be surer
    of a prediction that is already right. With straight-through or Gumbel fake maps this is
    the surrogate gradient the generator receives.
    """
    disc.eval()
    c = torch.tensor(confidence, requires_grad=True)
    fake, _ = _maps(adv, cases, cases.target, c)
    boxes, has_roi = adversarial_boxes(adv, cases.target)
    (grad,) = torch.autograd.grad(generator_loss(disc, fake, boxes, has_roi), c)
    return float(grad)


def run_probe(
    adv: AdversarialConfig, settings: ProbeSettings
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Build, train and evaluate one discriminator; the same seed gives the same numbers.

    Returns:
        ``(evaluation, history)``: :func:`evaluate` plus ``grad_confidence``
        (:func:`confidence_gradient` on the held-out cases), and the training statistics.
    """
    generator = torch.Generator().manual_seed(settings.seed)
    margin = settings.shift
    # The discriminator's activations on these flat maps reach denormal floats, which the CPU
    # computes 5x slower (measured); flushing them to zero changes nothing visible here.
    torch.set_flush_denormal(True)
    try:
        return _probe(adv, settings, generator, margin)
    finally:
        torch.set_flush_denormal(False)  # the default (torch offers no getter to restore)


def _probe(
    adv: AdversarialConfig, settings: ProbeSettings, generator: torch.Generator, margin: int
) -> tuple[dict[str, float], list[dict[str, float]]]:
    train = make_cases(settings.train_cases, settings.size, margin, generator)
    test = make_cases(settings.test_cases, settings.size, margin, generator)
    torch.manual_seed(settings.seed)  # initial weights, and the Gumbel / instance-noise draws
    disc = build_discriminator(adv, settings.size)
    history = train_discriminator(disc, adv, train, settings)
    result = evaluate(disc, adv, test, settings)
    result["grad_confidence"] = confidence_gradient(disc, adv, test, settings.confidence)
    return result, history
