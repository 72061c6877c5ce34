"""Discriminators of SPEC §4 and the batched ROI crops of their local branch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ctxseg.models.discriminator import (
    ContextDiscriminator,
    PlainDiscriminator,
    create_discriminator,
)
from ctxseg.models.roi_crop import crop_padded, crop_static, grow_boxes, size_groups


def _boxes(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)


@pytest.mark.parametrize(
    ("image", "roi", "flat_global", "flat_local"),
    [(128, 50, 9216, 256), (160, 60, 16384, 576)],
)
def test_flatten_sizes_of_the_paper(image: int, roi: int, flat_global: int, flat_local: int):
    disc = create_discriminator("context", 2, image, roi="static", roi_size=roi)
    assert disc.global_branch.flat_features == flat_global
    assert disc.local_branch.flat_features == flat_local
    assert disc.global_branch.head[0].in_features == flat_global
    assert disc.local_branch.head[0].in_features == flat_local
    plain = create_discriminator("plain", 4, image)
    assert plain.global_branch.head[0].in_features == flat_global


def test_layer_structure_of_the_stack():
    disc = create_discriminator("plain", 3, 128, with_image=True)
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (4, 32, (9, 9), (0, 0)),
        (32, 64, (5, 5), (0, 0)),
        (64, 64, (5, 5), (0, 0)),
    ]
    assert sum(isinstance(m, torch.nn.AvgPool2d) for m in disc.modules()) == 3
    norms = (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d, torch.nn.GroupNorm)
    assert not any(isinstance(m, norms) for m in disc.modules())
    assert [m.negative_slope for m in disc.modules() if isinstance(m, torch.nn.LeakyReLU)] == [
        0.2
    ] * 5
    linears = [
        (m.in_features, m.out_features) for m in disc.modules() if isinstance(m, torch.nn.Linear)
    ]
    assert linears == [(9216, 512), (512, 64), (64, 1)]
    dyn = create_discriminator("context", 2, 128, roi="dynamic")
    assert sum(isinstance(m, torch.nn.AvgPool2d) for m in dyn.local_branch.modules()) == 0
    assert dyn.fc.in_features == 128


def test_plain_equals_hand_written_forward():
    torch.manual_seed(0)
    disc = PlainDiscriminator(2, 64)
    maps = torch.rand(3, 2, 64, 64)
    x = maps
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        x = torch.nn.functional.avg_pool2d(torch.nn.functional.leaky_relu(conv(x), 0.2), 2)
    fc1, fc2, fc3 = (m for m in disc.modules() if isinstance(m, torch.nn.Linear))
    lrelu = torch.nn.functional.leaky_relu
    expected = fc3(lrelu(fc2(lrelu(fc1(x.flatten(1)), 0.2)), 0.2)).squeeze(1)
    torch.testing.assert_close(disc(maps), expected)


def test_crop_static_matches_slicing_and_shifts_inside():
    maps = torch.arange(2 * 3 * 10 * 12, dtype=torch.float32).view(2, 3, 10, 12)
    boxes = _boxes([[2, 3, 6, 7], [-3, 9, 1, 13]])  # centres (4, 5) and (-1, 11)
    crops = crop_static(maps, boxes, 4)
    torch.testing.assert_close(crops[0], maps[0, :, 2:6, 3:7])
    torch.testing.assert_close(crops[1], maps[1, :, 0:4, 8:12])  # shifted inside


def test_grow_boxes_keeps_big_sides_and_shifts_inside():
    boxes = _boxes([[10, 10, 40, 15], [0, 95, 3, 100], [5, 5, 6, 6]])
    grown = grow_boxes(boxes, 20, 100, 100)
    assert grown.tolist() == [[10, 2, 40, 22], [0, 80, 20, 100], [0, 0, 20, 20]]


def _padded_area(groups: list[list[int]], sizes: list[tuple[int, int]]) -> int:
    return sum(len(g) * max(sizes[i][0] for i in g) * max(sizes[i][1] for i in g) for g in groups)


def test_size_groups_hand_computed_and_against_brute_force():
    sizes = [(20, 20), (50, 50), (21, 19), (48, 52)]
    assert size_groups(sizes, 1) == [[2, 0, 3, 1]]  # by area: 399, 400, 2496, 2500
    assert size_groups(sizes, 2) == [[2, 0], [3, 1]]  # 2 * 21 * 20 + 2 * 50 * 52
    assert _padded_area(size_groups(sizes, 2), sizes) == 840 + 5200
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(1, 8))
        sizes = [tuple(int(v) for v in rng.integers(17, 70, 2)) for _ in range(n)]
        order = sorted(range(n), key=lambda i: (sizes[i][0] * sizes[i][1], i))
        for k in (1, 2, 3):
            groups = size_groups(sizes, k)
            assert sorted(i for g in groups for i in g) == list(range(n))
            assert 1 <= len(groups) <= k and all(groups)
            brute = min(
                _padded_area(
                    [order[a:b] for a, b in zip((0, *cuts), (*cuts, n), strict=True)], sizes
                )
                for m in range(k)
                for cuts in itertools.combinations(range(1, n), m)
            )
            assert _padded_area(groups, sizes) == brute
    with pytest.raises(ValueError, match="0"):
        size_groups([(20, 20)], 0)


def test_crop_padded_zero_outside_each_box():
    maps = torch.rand(2, 2, 30, 30) + 1
    boxes = _boxes([[3, 4, 13, 24], [10, 0, 28, 7]])
    crops, sizes = crop_padded(maps, boxes)
    assert crops.shape == (2, 2, 18, 20)
    assert sizes.tolist() == [[10, 20], [18, 7]]
    torch.testing.assert_close(crops[0, :, :10, :20], maps[0, :, 3:13, 4:24])
    torch.testing.assert_close(crops[1, :, :18, :7], maps[1, :, 10:28, 0:7])
    assert crops[0, :, 10:].abs().sum() == 0 and crops[1, :, :, 7:].abs().sum() == 0


@pytest.mark.parametrize("max_groups", [1, 2, 3])
def test_dynamic_batched_local_branch_equals_each_crop_alone(max_groups: int):
    torch.manual_seed(1)
    disc = create_discriminator("context", 3, 64, roi="dynamic", min_roi=20)
    disc.max_groups = max_groups
    maps = torch.rand(5, 3, 64, 64)
    # Different sizes, one at the image border, one smaller than min_roi (grown to 20).
    boxes = _boxes(
        [[5, 7, 45, 30], [0, 40, 25, 64], [30, 30, 34, 36], [2, 2, 62, 62], [40, 3, 61, 25]]
    )
    grown = grow_boxes(boxes, 20, 64, 64)
    sizes = (grown[:, 2:] - grown[:, :2]).tolist()
    assert len(size_groups(sizes, max_groups)) == max_groups  # really split into groups
    has_roi = torch.ones(5, dtype=torch.bool)
    batched = disc.local_features(maps, boxes, has_roi)
    for i, (y0, x0, y1, x1) in enumerate(grown.tolist()):
        alone = disc.local_branch.stack(maps[i : i + 1, :, y0:y1, x0:x1]).mean(dim=(2, 3))
        torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-5, rtol=0)
    assert grown[2].tolist() == [22, 23, 42, 43]


def test_static_local_branch_equals_per_sample_crop():
    torch.manual_seed(2)
    disc = create_discriminator("context", 2, 96, roi="static", roi_size=40)
    maps = torch.rand(3, 2, 96, 96)
    boxes = _boxes([[10, 20, 50, 60], [56, 0, 96, 40], [30, 30, 70, 70]])
    has_roi = torch.ones(3, dtype=torch.bool)
    batched = disc.local_features(maps, boxes, has_roi)
    for i, (y0, x0, y1, x1) in enumerate(boxes.tolist()):
        alone = disc.local_branch(maps[i : i + 1, :, y0:y1, x0:x1])
        torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize("roi", ["static", "dynamic"])
def test_sample_without_roi_scores_from_the_global_branch_alone(roi: str):
    torch.manual_seed(3)
    disc = create_discriminator("context", 2, 64, roi=roi, roi_size=40 if roi == "static" else None)
    maps = torch.rand(2, 2, 64, 64)
    # Placeholder boxes as roi_boxes gives them (whole image for dynamic) must not matter.
    boxes = _boxes([[0, 0, 64, 64], [0, 0, 64, 64]])
    has_roi = torch.tensor([False, True])
    local = disc.local_features(maps, boxes, has_roi)
    assert local[0].abs().sum() == 0 and local[1].abs().sum() > 0
    scores = disc(maps, boxes, has_roi)
    glob = disc.global_branch(maps[:1])
    expected = disc.fc(torch.cat([torch.zeros(1, 64), glob], dim=1)).squeeze(1)
    torch.testing.assert_close(scores[:1], expected)
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize(
    ("kind", "roi"), [("plain", "static"), ("context", "static"), ("context", "dynamic")]
)
def test_gradients_reach_every_parameter_and_the_input(kind: str, roi: str):
    torch.manual_seed(4)
    disc = create_discriminator(kind, 2, 64, roi=roi, roi_size=40, with_image=True)
    maps = torch.rand(3, 3, 64, 64, requires_grad=True)
    boxes = _boxes([[5, 5, 45, 45], [10, 3, 50, 43], [20, 20, 60, 60]])
    if roi == "dynamic":
        boxes = _boxes([[5, 5, 30, 40], [10, 3, 50, 43], [20, 20, 40, 38]])
    scores = disc(maps, boxes, torch.ones(3, dtype=torch.bool))
    assert scores.shape == (3,)
    scores.sum().backward()
    for name, p in disc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert maps.grad.abs().sum() > 0


def test_invalid_arguments_name_the_value():
    with pytest.raises(ValueError, match="'patch'"):
        create_discriminator("patch", 2, 128)
    with pytest.raises(ValueError, match="'sliding'"):
        create_discriminator("context", 2, 128, roi="sliding", roi_size=50)
    with pytest.raises(ValueError, match="None"):
        create_discriminator("context", 2, 128, roi="static")
    with pytest.raises(ValueError, match="30"):
        create_discriminator("context", 2, 128, roi="static", roi_size=30)
    with pytest.raises(ValueError, match="16"):
        create_discriminator("context", 2, 128, roi="dynamic", min_roi=16)
    with pytest.raises(ValueError, match="32"):
        create_discriminator("plain", 2, 32)
    disc = ContextDiscriminator(2, 64, roi="static", roi_size=40)
    with pytest.raises(ValueError, match=r"\(96, 96\)"):
        disc(torch.rand(1, 2, 96, 96), _boxes([[0, 0, 40, 40]]), torch.ones(1, dtype=torch.bool))


def test_non_square_images():
    disc = create_discriminator("context", 2, (64, 96), roi="static", roi_size=40)
    assert disc.global_branch.flat_features == 64 * 4 * 8
    scores = disc(torch.rand(2, 2, 64, 96), _boxes([[0, 50, 40, 90]] * 2), torch.ones(2).bool())
    assert scores.shape == (2,)
