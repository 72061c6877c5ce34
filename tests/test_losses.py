"""Losses of SPEC §6 against hand-computed values, MONAI, and a per-sample crop loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss as MonaiDiceLoss
from monai.losses import FocalLoss as MonaiFocalLoss

from ctxseg.losses import build_loss
from ctxseg.roi import roi_boxes

LN2, LN3 = math.log(2.0), math.log(3.0)


def two_pixels() -> tuple[torch.Tensor, torch.Tensor]:
    """One 1x2 image: pixel 0 logits (0, 0) label 0; pixel 1 logits (ln 3, 0) label 1.

    Softmax: pixel 0 (1/2, 1/2); pixel 1 (3/4, 1/4). CE: ln 2 and ln 4.
    """
    logits = torch.tensor([[[[0.0, LN3]], [[0.0, 0.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])  # (1, 1, 2)
    return logits, target


def random_batch(
    batch: int = 5, classes: int = 3, size: int = 24, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits and label maps with rectangles; sample 1 has no foreground."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, size, size, generator=gen) * 2
    target = torch.zeros(batch, size, size, dtype=torch.long)
    for b in range(batch):
        if b == 1:
            continue
        for label in range(1, classes):
            y0, x0 = (int(v) for v in torch.randint(0, size - 6, (2,), generator=gen))
            h, w = (int(v) for v in torch.randint(2, 7, (2,), generator=gen))
            target[b, y0 : y0 + h, x0 : x0 + w] = label
    target[4, 0:3, size - 4 :] = 1  # an object at the border
    return logits, target


# ---------------------------------------------------------------- cross-entropy


def test_ce_hand_computed() -> None:
    logits, target = two_pixels()
    loss = build_loss("ce", 2)
    assert loss(logits, target).item() == pytest.approx((LN2 + 2 * LN2) / 2, abs=1e-6)
    assert loss.parts(logits, target).keys() == {"loss"}


def test_wce_hand_computed_and_equal_to_torch() -> None:
    logits, target = two_pixels()
    loss = build_loss("wce", 2, weights=[0.25, 0.75])
    # (0.25 ln 2 + 0.75 ln 4) / (0.25 + 0.75)
    assert loss(logits, target).item() == pytest.approx(1.75 * LN2, abs=1e-6)
    logits, target = random_batch()
    weights = torch.tensor([0.1, 0.5, 0.4])
    expected = F.cross_entropy(logits, target, weight=weights)
    value = build_loss("wce", 3, weights=weights.tolist())(logits, target)
    torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-6)


def test_wce_auto_weights_are_normalised_inverse_frequencies() -> None:
    logits, target = two_pixels()
    # Frequencies 3 : 1 -> inverse 1/3 : 1 -> [0.25, 0.75], from counts or from fractions.
    for freqs in ([300, 100], [0.75, 0.25]):
        loss = build_loss("wce", 2, weights="auto", class_frequencies=freqs)
        torch.testing.assert_close(loss.weights, torch.tensor([0.25, 0.75]))
        assert loss(logits, target).item() == pytest.approx(1.75 * LN2, abs=1e-6)
    with pytest.raises(ValueError, match="class_frequencies"):
        build_loss("wce", 2)
    with pytest.raises(ValueError, match="positive"):
        build_loss("wce", 2, class_frequencies=[10, 0])


# ---------------------------------------------------------------- Dice


def test_log_jaccard_hand_computed() -> None:
    logits, target = two_pixels()
    logits = torch.zeros_like(logits)  # p = 1/2 everywhere
    # Per class: I = 1/2, P = 1, G = 1, union = P + G - I = 3/2; -log(1/3) = ln 3 per class.
    loss = build_loss("dice", 2, variant="log_jaccard")
    assert loss(logits, target).item() == pytest.approx(2 * LN3, abs=1e-6)


def test_log_jaccard_equals_the_authors_loop_summed_over_the_batch() -> None:
    logits, target = random_batch()
    probs = logits.softmax(dim=1)
    expected = torch.zeros(())
    eps = 1e-7
    for cls in range(3):  # as the authors' LossMulti with jaccard_weight = 1
        g = (target == cls).float()
        p = probs[:, cls]
        inter = (p * g).sum()
        union = p.sum() + g.sum()
        expected = expected - torch.log((inter + eps) / (union - inter + eps))
    value = build_loss("dice", 3, variant="log_jaccard")(logits, target)
    torch.testing.assert_close(value, expected, atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("batch", [True, False])
def test_soft_dice_equals_monai(include_background: bool, batch: bool) -> None:
    logits, target = random_batch()
    ours = build_loss("dice", 3, include_background=include_background, batch=batch)
    ref = MonaiDiceLoss(
        include_background=include_background, to_onehot_y=True, softmax=True, batch=batch
    )
    torch.testing.assert_close(
        ours(logits, target), ref(logits, target.unsqueeze(1)), atol=1e-6, rtol=1e-6
    )


# ---------------------------------------------------------------- focal


def test_focal_hand_computed() -> None:
    logits, target = two_pixels()
    # Pixel 0: p_t = 1/2 -> (1/2)^2 ln 2; pixel 1: p_t = 1/4 -> (3/4)^2 ln 4; alpha 4.
    expected = 4 * (0.25 * LN2 + 0.5625 * 2 * LN2) / 2
    assert build_loss("focal", 2, gamma=2, alpha=4)(logits, target).item() == pytest.approx(
        expected, abs=1e-6
    )
    # gamma 0 and alpha 1 is the plain CE.
    assert build_loss("focal", 2, gamma=0)(logits, target).item() == pytest.approx(
        1.5 * LN2, abs=1e-6
    )


@pytest.mark.parametrize("alpha", [None, [0.2, 1.0, 3.0]])
def test_focal_equals_monai_times_classes(alpha: list[float] | None) -> None:
    logits, target = random_batch()
    kwargs = {} if alpha is None else {"alpha": alpha}
    ours = build_loss("focal", 3, gamma=2.0, **kwargs)(logits, target)
    # MONAI averages over classes too (its value is 0 in the non-target channels).
    ref = MonaiFocalLoss(to_onehot_y=True, use_softmax=True, gamma=2.0, weight=alpha)
    torch.testing.assert_close(ours, 3 * ref(logits, target.unsqueeze(1)), atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------- context


BASES = [
    ("ce", {}),
    ("wce", {"weights": [0.1, 0.5, 0.4]}),
    ("focal", {"gamma": 2.0, "alpha": 4.0}),
    ("dice", {}),
    ("dice", {"variant": "log_jaccard"}),
]


def crop_loop_reference(
    base: torch.nn.Module,
    logits: torch.Tensor,
    target: torch.Tensor,
    mode: str,
    size: int | None,
    margin: int,
    min_size: int,
    lambda_roi: float,
) -> torch.Tensor:
    """The context loss as the authors would write it: crop each sample, loop, average."""
    boxes, has = roi_boxes(target, mode, size, margin, min_size)
    terms = []
    for b in range(len(target)):
        if not bool(has[b]):
            continue
        y0, x0, y1, x1 = boxes[b].tolist()
        crop_logits = logits[b : b + 1, :, y0:y1, x0:x1]
        crop_target = target[b : b + 1, y0:y1, x0:x1]
        terms.append(base(crop_logits, crop_target))
    roi = torch.stack(terms).mean() if terms else torch.zeros(())
    return base(logits, target) + lambda_roi * roi


@pytest.mark.parametrize(("base_name", "base_kwargs"), BASES)
@pytest.mark.parametrize(
    ("mode", "size", "margin", "min_size"),
    [("static", 10, 0, 1), ("dynamic", None, 0, 1), ("dynamic", None, 2, 9)],
)
def test_context_equals_per_sample_crop_loop(
    base_name: str,
    base_kwargs: dict,
    mode: str,
    size: int | None,
    margin: int,
    min_size: int,
) -> None:
    logits, target = random_batch()
    logits.requires_grad_(True)
    loss = build_loss(
        "context",
        3,
        base=base_name,
        roi=mode,
        roi_size=size,
        margin=margin,
        min_size=min_size,
        lambda_roi=0.7,
        **base_kwargs,
    )
    base = build_loss(base_name, 3, **base_kwargs)
    parts = loss.parts(logits, target)
    expected = crop_loop_reference(base, logits, target, mode, size, margin, min_size, 0.7)
    torch.testing.assert_close(parts["loss"], expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(parts["global"], base(logits, target), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(parts["loss"], parts["global"] + 0.7 * parts["roi"])
    # The gradients agree too.
    (grad,) = torch.autograd.grad(parts["loss"], logits)
    (grad_ref,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, grad_ref, atol=1e-6, rtol=1e-5)


def test_static_context_ce_equals_the_authors_mean_over_all_roi_pixels() -> None:
    logits, target = random_batch()
    keep = [0, 2, 3, 4]  # every kept sample has foreground: equal 10x10 boxes
    logits, target = logits[keep], target[keep]
    boxes, _ = roi_boxes(target, "static", 10)
    crops_logits = torch.stack(
        [logits[i, :, y0:y1, x0:x1] for i, (y0, x0, y1, x1) in enumerate(boxes.tolist())]
    )
    crops_target = torch.stack(
        [target[i, y0:y1, x0:x1] for i, (y0, x0, y1, x1) in enumerate(boxes.tolist())]
    )
    roi = build_loss("context", 3, roi="static", roi_size=10).parts(logits, target)["roi"]
    torch.testing.assert_close(roi, F.cross_entropy(crops_logits, crops_target))


@pytest.mark.parametrize(("base_name", "base_kwargs"), BASES)
def test_lambda_zero_equals_base(base_name: str, base_kwargs: dict) -> None:
    logits, target = random_batch()
    for mode in ("static", "dynamic"):
        loss = build_loss(
            "context", 3, base=base_name, roi=mode, roi_size=8, lambda_roi=0.0, **base_kwargs
        )
        base = build_loss(base_name, 3, **base_kwargs)
        assert torch.equal(loss(logits, target), base(logits, target))


@pytest.mark.parametrize(("base_name", "base_kwargs"), BASES)
@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_all_background_batch_gives_zero_roi_and_finite_gradients(
    base_name: str, base_kwargs: dict, mode: str
) -> None:
    logits = torch.randn(3, 3, 16, 16, requires_grad=True)
    target = torch.zeros(3, 16, 16, dtype=torch.long)
    loss = build_loss("context", 3, base=base_name, roi=mode, roi_size=8, **base_kwargs)
    parts = loss.parts(logits, target)
    assert parts["roi"].item() == 0.0
    torch.testing.assert_close(
        parts["loss"], build_loss(base_name, 3, **base_kwargs)(logits, target)
    )
    parts["loss"].backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_batch_size_one_dynamic_and_forward_equals_parts() -> None:
    logits, target = random_batch()
    loss = build_loss("context", 3, roi="dynamic", margin=1)
    for b in range(len(target)):
        one = loss.parts(logits[b : b + 1], target[b : b + 1])
        assert torch.equal(loss(logits[b : b + 1], target[b : b + 1]), one["loss"])
        assert one.keys() == {"loss", "global", "roi"}
        assert torch.isfinite(one["loss"])


def test_no_host_device_synchronisation() -> None:
    # Meta tensors have no data: anything that needs a value on the host (.item(), bool(),
    # nonzero(), data-dependent shapes) raises. The full context loss and its backward run.
    target = torch.zeros(4, 32, 32, dtype=torch.long, device="meta")
    with pytest.raises((RuntimeError, NotImplementedError)):
        bool(target.any())
    logits = torch.zeros(4, 3, 32, 32, device="meta", requires_grad=True)
    for base in ("ce", "focal", "dice"):
        for mode in ("static", "dynamic"):
            loss = build_loss("context", 3, base=base, roi=mode, roi_size=8, margin=2, min_size=9)
            loss(logits, target).backward()
    assert logits.grad.shape == logits.shape


# ---------------------------------------------------------------- building and validation


def test_build_loss_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown loss 'dise'"):
        build_loss("dise", 2)
    with pytest.raises(ValueError, match=r"does not take \['gamma'\]"):
        build_loss("ce", 2, gamma=2.0)
    with pytest.raises(ValueError, match="context base"):
        build_loss("context", 2, base="context", roi_size=8)
    with pytest.raises(ValueError, match="roi_size"):
        build_loss("context", 2, roi="static")
    with pytest.raises(ValueError, match="'box'"):
        build_loss("context", 2, roi="box")
    with pytest.raises(ValueError, match="lambda_roi"):
        build_loss("context", 2, roi="dynamic", lambda_roi=-1.0)
    with pytest.raises(ValueError, match="variant"):
        build_loss("dice", 2, variant="tversky")
    with pytest.raises(ValueError, match="alpha"):
        build_loss("focal", 3, alpha=[1.0, 2.0])
    with pytest.raises(ValueError, match="weights"):
        build_loss("wce", 3, weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="num_classes"):
        build_loss("ce", 1)
    with pytest.raises(ValueError, match="logits must be"):
        build_loss("ce", 3)(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="does not match"):
        build_loss("ce", 2)(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long))


def test_class_frequencies_is_accepted_by_every_loss() -> None:
    for name in ("ce", "dice", "focal"):
        build_loss(name, 2, class_frequencies=[10, 1])
    loss = build_loss("context", 2, base="wce", roi="dynamic", class_frequencies=[3, 1])
    torch.testing.assert_close(loss.base.weights, torch.tensor([0.25, 0.75]))
