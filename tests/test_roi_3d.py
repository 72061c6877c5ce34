"""3-D ROI boxes, per-axis sizes and sizes in mm: hand-computed cases and a NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctxseg.roi import box_mask, roi_boxes, voxel_sides


def volume(shape: tuple[int, int, int], *boxes: tuple[int, ...]) -> torch.Tensor:
    """(D, H, W) int64 map with boxes ``(z0, y0, x0, z1, y1, x1, label)`` painted in order."""
    t = torch.zeros(shape, dtype=torch.long)
    for z0, y0, x0, z1, y1, x1, label in boxes:
        t[z0:z1, y0:y1, x0:x1] = label
    return t


def reference_box(
    target: np.ndarray, mode: str, sides: tuple, margins: tuple, min_sizes: tuple
) -> tuple[list[int], bool]:
    """SPEC §5 for one sample of any dimension, axis by axis, written plainly with NumPy.

    Static: start at the truncated mean coordinate minus side // 2, then clamped into the
    image (the image centre when empty). Dynamic: tight extent, margin, clip; then an interval
    of length max(current, min(min_size, extent)) centred on it (the odd voxel after), clamped.
    """
    coords = np.nonzero(target > 0)
    has = len(coords[0]) > 0
    starts, stops = [], []
    for axis, extent in enumerate(target.shape):
        if mode == "static":
            centre = int(np.mean(coords[axis])) if has else extent // 2
            start = min(max(centre - sides[axis] // 2, 0), extent - sides[axis])
            starts.append(start)
            stops.append(start + sides[axis])
            continue
        if not has:
            starts.append(0)
            stops.append(extent)
            continue
        lo, hi = int(coords[axis].min()), int(coords[axis].max()) + 1
        start, stop = max(lo - margins[axis], 0), min(hi + margins[axis], extent)
        length = max(stop - start, min(min_sizes[axis], extent))
        start = start - (length - (stop - start)) // 2
        start = min(max(start, 0), extent - length)
        starts.append(start)
        stops.append(start + length)
    return starts + stops, has


def random_volumes(batch: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """Random boxes of labels 1-3; the last two volumes stay empty; one object at a corner."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.zeros((batch, *shape), dtype=torch.long)
    for b in range(batch - 2):
        for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
            start = [int(torch.randint(0, e, (1,), generator=gen)) for e in shape]
            size = [int(torch.randint(1, 6, (1,), generator=gen)) for _ in shape]
            label = int(torch.randint(1, 4, (1,), generator=gen))
            z, y, x = start
            target[b, z : z + size[0], y : y + size[1], x : x + size[2]] = label
    target[0, -2:, -3:, :2] = 2  # an object touching three faces of the volume
    return target


def test_static_cube_centred_on_truncated_centroid_and_shifted_inside() -> None:
    # Slices 2..4 (mean 3), rows 5..8 (mean 6.5 -> 6), columns 6..10 (mean 8).
    t = torch.stack(
        [
            volume((8, 16, 16), (2, 5, 6, 5, 9, 11, 2)),
            volume((8, 16, 16), (0, 0, 0, 1, 1, 1, 1)),  # at the corner: shifted inside
            volume((8, 16, 16), (7, 15, 15, 8, 16, 16, 3)),  # at the far corner
        ]
    )
    boxes, has = roi_boxes(t, "static", size=4)
    assert boxes.dtype == torch.int64 and boxes.shape == (3, 6)
    assert boxes.tolist() == [[1, 4, 6, 5, 8, 10], [0, 0, 0, 4, 4, 4], [4, 12, 12, 8, 16, 16]]
    assert has.all()
    # Per-axis sides: a box of 3 x 5 x 7 voxels around the same centre (3, 6, 8).
    boxes, _ = roi_boxes(t[:1], "static", size=(3, 5, 7))
    assert boxes.tolist() == [[2, 4, 5, 5, 9, 12]]


def test_dynamic_box_margin_min_size_and_clipping() -> None:
    t = torch.stack(
        [
            volume((6, 10, 12), (1, 5, 6, 3, 9, 11, 2)),  # tight [1,3) x [5,9) x [6,11)
            volume((6, 10, 12), (3, 4, 5, 4, 5, 6, 1)),  # a single voxel
        ]
    )
    boxes, has = roi_boxes(t, "dynamic")
    assert boxes.tolist() == [[1, 5, 6, 3, 9, 11], [3, 4, 5, 4, 5, 6]]
    # Margin 1, clipped at the far y border: [0, 4) x [4, 10) x [5, 12).
    boxes, _ = roi_boxes(t, "dynamic", margin=1)
    assert boxes.tolist() == [[0, 4, 5, 4, 10, 12], [2, 3, 4, 5, 6, 7]]
    # min_size 4 from one voxel: need 3, one before and two after: [2, 6) x [3, 7) x [4, 8).
    assert roi_boxes(t[1:], "dynamic", min_size=4)[0].tolist() == [[2, 3, 4, 6, 7, 8]]
    # min_size 5 on z (extent 6) from [3, 4): [1, 6); larger than the image: the whole axis.
    boxes, _ = roi_boxes(t[1:], "dynamic", min_size=(5, 50, 1))
    assert boxes.tolist() == [[1, 0, 5, 6, 10, 6]]
    assert has.all()


def test_empty_volume_has_no_roi_and_a_placeholder_box() -> None:
    t = torch.stack(
        [torch.zeros(6, 10, 12, dtype=torch.long), volume((6, 10, 12), (0,) * 3 + (1,) * 3 + (1,))]
    )
    boxes, has = roi_boxes(t, "static", size=4)
    assert has.tolist() == [False, True]
    assert boxes[0].tolist() == [1, 3, 4, 5, 7, 8]  # the cube at the volume centre (3, 5, 6)
    boxes, has = roi_boxes(t, "dynamic", margin=2, min_size=3)
    assert has.tolist() == [False, True]
    assert boxes[0].tolist() == [0, 0, 0, 6, 10, 12]  # the whole volume


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_batch_equals_per_sample_reference(mode: str) -> None:
    shape = (9, 17, 14)
    target = random_volumes(24, shape, seed=1)
    cases = [(5, 0, 1), ((3, 8, 6), (1, 2, 0), (4, 12, 3)), (1, 2, 30), (9, 3, (2, 17, 7))]
    for size, margin, min_size in cases:
        boxes, has = roi_boxes(target, mode, size=size, margin=margin, min_size=min_size)
        assert boxes.shape == (24, 6)
        per_axis = [v if isinstance(v, tuple) else (v,) * 3 for v in (size, margin, min_size)]
        for b in range(len(target)):
            ref_box, ref_has = reference_box(target[b].numpy(), mode, *per_axis)
            assert boxes[b].tolist() == ref_box, (b, size, margin, min_size)
            assert bool(has[b]) == ref_has


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_the_2d_reference_holds_for_2d_targets_with_per_axis_sizes(mode: str) -> None:
    gen = torch.Generator().manual_seed(3)
    target = (torch.rand(12, 13, 19, generator=gen) > 0.97).long() * 2
    target[-1] = 0
    boxes, has = roi_boxes(target, mode, size=(5, 11), margin=(2, 0), min_size=(1, 9))
    assert boxes.shape == (12, 4)
    for b in range(len(target)):
        ref_box, ref_has = reference_box(target[b].numpy(), mode, (5, 11), (2, 0), (1, 9))
        assert boxes[b].tolist() == ref_box
        assert bool(has[b]) == ref_has


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_a_one_slice_volume_gives_the_2d_boxes(mode: str) -> None:
    target = random_volumes(10, (1, 20, 24), seed=2)
    boxes3, has3 = roi_boxes(target, mode, size=(1, 7, 7), margin=(0, 2, 2), min_size=(1, 9, 9))
    boxes2, has2 = roi_boxes(target[:, 0], mode, size=7, margin=2, min_size=9)
    assert torch.equal(boxes3[:, [1, 2, 4, 5]], boxes2) and torch.equal(has3, has2)
    assert (boxes3[:, 0] == 0).all() and (boxes3[:, 3] == 1).all()


def test_sizes_in_mm_with_anisotropic_spacing() -> None:
    # 50 mm at (3, 0.7, 0.7) mm: 50 / 3 = 16.7 -> 17 slices, 50 / 0.7 = 71.4 -> 71 voxels.
    assert voxel_sides(50, (3.0, 0.7, 0.7)) == (17, 71, 71)
    # Halves round up (not to even); the minimum applies.
    assert voxel_sides(5, (2.0, 10.0, 4.0)) == (3, 1, 1)
    assert voxel_sides(0, (2.0, 1.0), minimum=0) == (0, 0)
    target = random_volumes(8, (20, 40, 40), seed=4)
    spacing = (2.5, 0.8, 0.8)
    for mode in ("static", "dynamic"):
        in_mm = roi_boxes(target, mode, size=20.0, margin=2, min_size=12.0, spacing=spacing)
        # 20 mm -> (8, 25, 25); 2 mm -> (1, 3, 3) (2.5 rounds up); 12 mm -> (5, 15, 15).
        in_voxels = roi_boxes(
            target, mode, size=(8, 25, 25), margin=(1, 3, 3), min_size=(5, 15, 15)
        )
        assert torch.equal(in_mm[0], in_voxels[0]) and torch.equal(in_mm[1], in_voxels[1])


def test_box_mask_3d() -> None:
    boxes = torch.tensor([[1, 2, 0, 3, 4, 5], [0, 0, 0, 2, 4, 6]])
    mask = box_mask(boxes, 2, 4, 6)
    expected = torch.zeros(2, 2, 4, 6, dtype=torch.bool)
    expected[0, 1:3, 2:4, 0:5] = True
    expected[1] = True
    assert mask.dtype == torch.bool and torch.equal(mask, expected)


def test_bad_arguments() -> None:
    t = torch.zeros(1, 4, 8, 8, dtype=torch.long)
    with pytest.raises(ValueError, match=r"does not fit in a 4x8x8"):
        roi_boxes(t, "static", size=5)
    with pytest.raises(ValueError, match=r"size must be an int >= 1 or 3 such ints"):
        roi_boxes(t, "static", size=(2, 2))
    with pytest.raises(ValueError, match="size"):
        roi_boxes(t, "static", size=2.5)  # a float needs a spacing
    with pytest.raises(ValueError, match="spacing must have 3 values"):
        roi_boxes(t, "dynamic", spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="spacing must be positive"):
        roi_boxes(t, "dynamic", spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="one length in mm"):
        roi_boxes(t, "dynamic", margin=(1, 1, 1), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="margin"):
        roi_boxes(t, "dynamic", margin=(0, -1, 0))
    with pytest.raises(ValueError, match=r"\(B, H, W\) or \(B, D, H, W\)"):
        roi_boxes(t[None], "dynamic")
    with pytest.raises(ValueError, match=r"\(B, 4\) or \(B, 6\)"):
        box_mask(torch.zeros(2, 5, dtype=torch.long), 4, 4)
    with pytest.raises(ValueError, match="need 3 spatial sizes"):
        box_mask(torch.zeros(2, 6, dtype=torch.long), 4, 4)


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_no_host_device_synchronisation_3d(mode: str) -> None:
    # Meta tensors carry no data: any value read on the host raises.
    target = torch.zeros(3, 10, 20, 24, dtype=torch.long, device="meta")
    with pytest.raises((RuntimeError, NotImplementedError)):
        target.nonzero().tolist()
    boxes, has = roi_boxes(target, mode, size=8, margin=2, min_size=(3, 5, 5))
    assert boxes.shape == (3, 6) and has.shape == (3,) and boxes.device.type == "meta"
    boxes, _ = roi_boxes(target, mode, size=8.0, margin=2.0, min_size=5.0, spacing=(2, 1, 1))
    assert box_mask(boxes, 10, 20, 24).shape == (3, 10, 20, 24)
