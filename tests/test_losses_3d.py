"""Losses on 3-D volumes and on MONAI-style targets, and cross-entropy's ignore_index.

References: a per-sample crop loop (the context loss as one would write it by hand), MONAI's
DiceLoss and FocalLoss, and torch's cross_entropy.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss as MonaiDiceLoss
from monai.losses import FocalLoss as MonaiFocalLoss

from ctxseg.losses import build_loss
from ctxseg.roi import roi_boxes

BASES = [
    ("ce", {}),
    ("wce", {"weights": [0.1, 0.5, 0.4]}),
    ("focal", {"gamma": 2.0, "alpha": 4.0}),
    ("focal", {"gamma": 2.0, "alpha": [0.2, 1.0, 3.0]}),
    ("dice", {}),
    ("dice", {"include_background": False, "batch": True}),
    ("dice", {"variant": "log_jaccard"}),
]


def random_volumes(
    batch: int = 4, classes: int = 3, shape: tuple[int, int, int] = (10, 14, 12), seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits and label volumes with boxes; sample 1 is empty; objects at the border."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, *shape, generator=gen) * 2
    target = torch.zeros(batch, *shape, dtype=torch.long)
    for b in range(batch):
        if b == 1:
            continue
        for label in range(1, classes):
            z, y, x = (int(torch.randint(0, max(e - 3, 1), (1,), generator=gen)) for e in shape)
            d, h, w = (int(v) for v in torch.randint(1, 5, (3,), generator=gen))
            target[b, z : z + d, y : y + h, x : x + w] = label
    target[0, -2:, :3, -4:] = 1  # touching three faces
    target[batch - 1, 0, :, 0] = 2  # a line along a whole edge
    return logits, target


def crop_loop_reference(
    base: torch.nn.Module,
    logits: torch.Tensor,
    target: torch.Tensor,
    boxes: torch.Tensor,
    has: torch.Tensor,
    lambda_roi: float,
) -> torch.Tensor:
    """The context loss written by hand: crop each sample's box, loop, average, add."""
    terms = []
    for b in range(len(target)):
        if not bool(has[b]):
            continue
        z0, y0, x0, z1, y1, x1 = boxes[b].tolist()
        crop_logits = logits[b : b + 1, :, z0:z1, y0:y1, x0:x1]
        crop_target = target[b : b + 1, z0:z1, y0:y1, x0:x1]
        terms.append(base(crop_logits, crop_target))
    roi = torch.stack(terms).mean() if terms else torch.zeros(())
    return base(logits, target) + lambda_roi * roi


# ---------------------------------------------------------------- 3-D against references


@pytest.mark.parametrize(("base_name", "base_kwargs"), BASES)
@pytest.mark.parametrize(
    ("mode", "size", "margin", "min_size"),
    [
        ("static", 5, 0, 1),
        ("static", (3, 6, 8), 0, 1),
        ("dynamic", None, 0, 1),
        ("dynamic", None, (1, 2, 2), 6),
    ],
)
def test_3d_context_equals_per_sample_crop_loop(
    base_name: str, base_kwargs: dict, mode: str, size, margin, min_size
) -> None:
    logits, target = random_volumes()
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
    boxes, has = roi_boxes(target, mode, size, margin, min_size)
    assert has.tolist() == [True, False, True, True]
    parts = loss.parts(logits, target)
    expected = crop_loop_reference(base, logits, target, boxes, has, 0.7)
    torch.testing.assert_close(parts["loss"], expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(parts["global"], base(logits, target), atol=1e-6, rtol=1e-6)
    (grad,) = torch.autograd.grad(parts["loss"], logits)
    (grad_ref,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, grad_ref, atol=1e-6, rtol=1e-5)


def test_3d_static_context_in_mm_equals_the_voxel_sides() -> None:
    logits, target = random_volumes()
    # 6 mm at (3, 1, 0.75) mm -> (2, 6, 8) voxels.
    in_mm = build_loss("context", 3, roi="static", roi_size=6.0, spacing=(3.0, 1.0, 0.75))
    in_voxels = build_loss("context", 3, roi="static", roi_size=(2, 6, 8))
    assert torch.equal(in_mm(logits, target), in_voxels(logits, target))


def test_3d_ce_and_wce_equal_torch() -> None:
    logits, target = random_volumes()
    torch.testing.assert_close(build_loss("ce", 3)(logits, target), F.cross_entropy(logits, target))
    weights = torch.tensor([0.1, 0.5, 0.4])
    torch.testing.assert_close(
        build_loss("wce", 3, weights=weights.tolist())(logits, target),
        F.cross_entropy(logits, target, weight=weights),
    )


@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("batch", [True, False])
def test_3d_soft_dice_equals_monai(include_background: bool, batch: bool) -> None:
    logits, target = random_volumes()
    ours = build_loss("dice", 3, include_background=include_background, batch=batch)
    ref = MonaiDiceLoss(
        include_background=include_background, to_onehot_y=True, softmax=True, batch=batch
    )
    torch.testing.assert_close(
        ours(logits, target), ref(logits, target.unsqueeze(1)), atol=1e-6, rtol=1e-6
    )


@pytest.mark.parametrize("alpha", [None, [0.2, 1.0, 3.0]])
def test_3d_focal_equals_monai_times_classes(alpha: list[float] | None) -> None:
    logits, target = random_volumes()
    kwargs = {} if alpha is None else {"alpha": alpha}
    ours = build_loss("focal", 3, gamma=2.0, **kwargs)(logits, target)
    ref = MonaiFocalLoss(to_onehot_y=True, use_softmax=True, gamma=2.0, weight=alpha)
    torch.testing.assert_close(ours, 3 * ref(logits, target.unsqueeze(1)), atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------- MONAI-style targets


def target_forms(target: torch.Tensor, classes: int) -> dict[str, torch.Tensor]:
    """The same labels in every accepted form."""
    onehot = F.one_hot(target, classes).movedim(-1, 1)  # (B, C, *S)
    return {
        "int32": target.int(),
        "float": target.float(),
        "channel int": target.unsqueeze(1),
        "channel float": target.unsqueeze(1).float(),
        "one-hot float": onehot.float(),
        "one-hot int": onehot,
    }


def random_slices() -> tuple[torch.Tensor, torch.Tensor]:
    logits, target = random_volumes(shape=(1, 16, 18), seed=5)
    return logits[:, :, 0], target[:, 0]  # (B, C, H, W), (B, H, W)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("base_name", "base_kwargs"), BASES)
def test_channel_and_one_hot_targets_give_the_label_map_value(
    dims: int, base_name: str, base_kwargs: dict
) -> None:
    logits, target = random_volumes() if dims == 3 else random_slices()
    losses = [
        build_loss(base_name, 3, **base_kwargs),
        build_loss("context", 3, base=base_name, roi="dynamic", margin=1, **base_kwargs),
        build_loss("context", 3, base=base_name, roi="static", roi_size=4, **base_kwargs),
    ]
    for loss in losses:
        expected = loss.parts(logits, target)
        for form, other in target_forms(target, 3).items():
            got = loss.parts(logits, other)
            assert got.keys() == expected.keys()
            for key in expected:
                assert torch.equal(got[key], expected[key]), (form, key)


def test_bad_target_shapes_are_named() -> None:
    logits, target = random_volumes()
    loss = build_loss("context", 3, roi="dynamic")
    with pytest.raises(ValueError, match=r"expected \(B, \*S\), \(B, 1, \*S\) or one-hot"):
        loss(logits, target.unsqueeze(1).expand(-1, 2, -1, -1, -1))  # 2 channels, 3 classes
    with pytest.raises(ValueError, match="does not match"):
        loss(logits, target[:, :, :-1])
    with pytest.raises(ValueError, match=r"logits must be \(B, 3, H, W\) or \(B, 3, D, H, W\)"):
        loss(logits[:, :, 0, 0], target[:, 0, 0])


# ---------------------------------------------------------------- ignore_index


def with_ignored(target: torch.Tensor, ignore: int, seed: int = 7) -> torch.Tensor:
    """The target with a random tenth of the voxels (and all of sample 0's fg) set to ignore."""
    gen = torch.Generator().manual_seed(seed)
    out = target.clone()
    out[torch.rand(target.shape, generator=gen) < 0.1] = ignore
    out[0][target[0] > 0] = ignore  # sample 0: only ignored voxels and background left
    return out


@pytest.mark.parametrize("weights", [None, [0.1, 0.5, 0.4]])
@pytest.mark.parametrize("ignore", [3, -100])
def test_ce_ignore_index_equals_torch(weights: list[float] | None, ignore: int) -> None:
    logits, target = random_volumes()
    target = with_ignored(target, ignore)
    kwargs = {} if weights is None else {"weights": weights}
    ours = build_loss("wce" if weights else "ce", 3, ignore_index=ignore, **kwargs)
    w = None if weights is None else torch.tensor(weights)
    expected = F.cross_entropy(logits, target, weight=w, ignore_index=ignore)
    torch.testing.assert_close(ours(logits, target), expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_context_ce_ignore_index_leaves_ignored_voxels_out_of_the_roi(mode: str) -> None:
    logits, target = random_volumes()
    target = with_ignored(target, 3)
    logits.requires_grad_(True)
    loss = build_loss("context", 3, roi=mode, roi_size=5, margin=1, ignore_index=3)
    base = build_loss("ce", 3, ignore_index=3)
    # The ROI comes from the target with ignored voxels as background: sample 0 has none left.
    boxes, has = roi_boxes(target.masked_fill(target == 3, 0), mode, 5, 1)
    assert has.tolist() == [False, False, True, True]
    parts = loss.parts(logits, target)
    expected = crop_loop_reference(base, logits, target, boxes, has, 1.0)
    torch.testing.assert_close(parts["loss"], expected, atol=1e-6, rtol=1e-6)
    # No gradient reaches an ignored voxel.
    (grad,) = torch.autograd.grad(parts["loss"], logits)
    assert grad.movedim(1, -1)[target == 3].abs().max() == 0
    assert grad.abs().sum() > 0


def test_all_ignored_batch_gives_zero_and_finite_gradients() -> None:
    logits = torch.randn(2, 3, 4, 5, 6, requires_grad=True)
    target = torch.full((2, 4, 5, 6), 3)
    parts = build_loss("context", 3, roi="dynamic", ignore_index=3).parts(logits, target)
    assert parts["loss"].item() == 0.0 and parts["roi"].item() == 0.0
    parts["loss"].backward()
    assert torch.isfinite(logits.grad).all()


def test_ignore_index_is_only_taken_by_cross_entropy() -> None:
    with pytest.raises(ValueError, match=r"does not take \['ignore_index'\]"):
        build_loss("dice", 3, ignore_index=3)
    with pytest.raises(ValueError, match="ignore_index must be an int"):
        build_loss("ce", 3, ignore_index=2.5)


# ---------------------------------------------------------------- no host synchronisation


def test_no_host_device_synchronisation_3d() -> None:
    target = torch.zeros(2, 6, 16, 16, dtype=torch.long, device="meta")
    with pytest.raises((RuntimeError, NotImplementedError)):
        bool(target.any())
    logits = torch.zeros(2, 3, 6, 16, 16, device="meta", requires_grad=True)
    onehot = torch.zeros(2, 3, 6, 16, 16, device="meta")
    for base, kwargs in (("ce", {"ignore_index": 3}), ("focal", {}), ("dice", {})):
        for mode in ("static", "dynamic"):
            loss = build_loss(
                "context", 3, base=base, roi=mode, roi_size=4, margin=1, min_size=5, **kwargs
            )
            for form in (target, target.unsqueeze(1).float(), onehot):
                loss(logits, form).backward()
    assert logits.grad.shape == logits.shape


def test_context_size_arguments_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="roi_size"):
        build_loss("context", 3, roi="static", roi_size=(4, 0, 4))
    with pytest.raises(ValueError, match="roi_size"):
        build_loss("context", 3, roi="static", roi_size=4.5)  # mm needs a spacing
    with pytest.raises(ValueError, match="margin"):
        build_loss("context", 3, roi="dynamic", margin=-2.0, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="min_size"):
        build_loss("context", 3, roi="dynamic", min_size=(2, 2), spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match=r"margin needs one value per axis \(2 or 3\)"):
        build_loss("context", 3, roi="dynamic", margin=(1, 1, 1, 1))
    loss = build_loss("context", 3, roi="static", roi_size=(2, 4, 4))
    with pytest.raises(ValueError, match="or 2 such ints"):  # 3 sides for 2-D input
        loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long))
