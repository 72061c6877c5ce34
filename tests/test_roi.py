"""ROI boxes of SPEC §5: hand-computed cases and a per-sample reference loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctxseg.roi import box_mask, roi_boxes


def label_map(height: int, width: int, *rects: tuple[int, int, int, int, int]) -> torch.Tensor:
    """(H, W) int64 map with rectangles ``(y0, x0, y1, x1, label)`` painted in order."""
    t = torch.zeros(height, width, dtype=torch.long)
    for y0, x0, y1, x1, label in rects:
        t[y0:y1, x0:x1] = label
    return t


def reference_box(
    target: np.ndarray, mode: str, size: int, margin: int, min_size: int
) -> tuple[list[int], bool]:
    """SPEC §5 for one slice, written plainly from the text with NumPy."""
    height, width = target.shape
    ys, xs = np.nonzero(target > 0)
    if len(ys) == 0:
        if mode == "static":
            y0 = min(max(height // 2 - size // 2, 0), height - size)
            x0 = min(max(width // 2 - size // 2, 0), width - size)
            return [y0, x0, y0 + size, x0 + size], False
        return [0, 0, height, width], False
    if mode == "static":
        cy, cx = int(np.mean(ys)), int(np.mean(xs))
        y0 = min(max(cy - size // 2, 0), height - size)
        x0 = min(max(cx - size // 2, 0), width - size)
        return [y0, x0, y0 + size, x0 + size], True
    box = []
    for lo, hi, extent in ((ys.min(), ys.max() + 1, height), (xs.min(), xs.max() + 1, width)):
        start, stop = max(lo - margin, 0), min(hi + margin, extent)
        while stop - start < min(min_size, extent):  # grow one pixel at a time, after first
            if stop - start < min_size and stop < extent and (stop - lo) <= (hi - start):
                stop += 1
            elif start > 0:
                start -= 1
            else:
                stop += 1
        box.append((start, stop))
    (y0, y1), (x0, x1) = box
    return [int(y0), int(x0), int(y1), int(x1)], True


def test_static_box_centred_on_truncated_centroid() -> None:
    # Rows 5..8 (mean 6.5 -> 6), columns 6..10 (mean 8): rows [6 - 2, 6 + 2), cols [6, 10).
    t = label_map(16, 16, (5, 6, 9, 11, 2))[None]
    boxes, has = roi_boxes(t, "static", size=4)
    assert boxes.tolist() == [[4, 6, 8, 10]]
    assert has.tolist() == [True]
    # Odd size: rows [cy - 2, cy - 2 + 5).
    assert roi_boxes(t, "static", size=5)[0].tolist() == [[4, 6, 9, 11]]


def test_static_box_merges_classes_and_shifts_inside_at_borders() -> None:
    t = torch.stack(
        [
            label_map(10, 12, (0, 0, 2, 2, 1)),  # centroid (0, 0): box shifted to the corner
            label_map(10, 12, (8, 10, 10, 12, 3)),  # centroid (8, 10): shifted to the far corner
            label_map(10, 12, (0, 0, 1, 1, 1), (0, 11, 1, 12, 2)),  # classes merged: cx = 5
        ]
    )
    boxes, has = roi_boxes(t, "static", size=6)
    assert boxes.tolist() == [[0, 0, 6, 6], [4, 6, 10, 12], [0, 2, 6, 8]]
    assert has.all()


def test_dynamic_box_margin_min_size_and_clipping() -> None:
    t = torch.stack(
        [
            label_map(10, 12, (5, 6, 9, 11, 2)),  # tight [5, 9) x [6, 11)
            label_map(10, 12, (1, 0, 3, 2, 1)),  # tight [1, 3) x [0, 2)
            label_map(10, 12, (4, 5, 5, 6, 1)),  # a single pixel
        ]
    )
    boxes, has = roi_boxes(t, "dynamic")
    assert boxes.tolist() == [[5, 6, 9, 11], [1, 0, 3, 2], [4, 5, 5, 6]]
    # Margin 1, clipped: [4, 10) x [5, 12) ; [0, 4) x [0, 3) ; [3, 6) x [4, 7).
    boxes, _ = roi_boxes(t, "dynamic", margin=1)
    assert boxes.tolist() == [[4, 5, 10, 12], [0, 0, 4, 3], [3, 4, 6, 7]]
    # min_size 5: the single pixel grows symmetrically (odd pixel after): [2, 7) x [3, 8);
    # the second box grows to [0, 5) x [0, 5) (shifted right at the border, keeping 5 pixels).
    boxes, _ = roi_boxes(t, "dynamic", min_size=5)
    assert boxes.tolist() == [[5, 6, 10, 11], [0, 0, 5, 5], [2, 3, 7, 8]]
    # min_size 4 from a 1-pixel box: need 3, one before and two after: [3, 7) x [4, 8).
    assert roi_boxes(t[2:], "dynamic", min_size=4)[0].tolist() == [[3, 4, 7, 8]]
    # min_size larger than the image: the whole image.
    assert roi_boxes(t[2:], "dynamic", min_size=50)[0].tolist() == [[0, 0, 10, 12]]
    assert has.all()


def test_empty_slice_has_no_roi_and_a_placeholder_box() -> None:
    t = torch.stack([torch.zeros(10, 12, dtype=torch.long), label_map(10, 12, (2, 2, 4, 4, 1))])
    boxes, has = roi_boxes(t, "static", size=4)
    assert has.tolist() == [False, True]
    assert boxes[0].tolist() == [3, 4, 7, 8]  # the static square at the image centre (5, 6)
    boxes, has = roi_boxes(t, "dynamic", margin=2, min_size=3)
    assert has.tolist() == [False, True]
    assert boxes[0].tolist() == [0, 0, 10, 12]  # the whole image


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_batch_equals_per_sample_reference(mode: str) -> None:
    gen = torch.Generator().manual_seed(0)
    height, width, batch = 23, 31, 40
    target = torch.zeros(batch, height, width, dtype=torch.long)
    for b in range(batch - 4):  # the last four slices stay empty
        for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
            y0, x0 = (int(v) for v in torch.randint(0, 20, (2,), generator=gen))
            h, w = (int(v) for v in torch.randint(1, 9, (2,), generator=gen))
            label = int(torch.randint(1, 4, (1,), generator=gen))
            target[b, y0 : y0 + h, x0 : x0 + w] = label
    for size, margin, min_size in ((7, 0, 1), (20, 3, 12), (1, 1, 30)):
        boxes, has = roi_boxes(target, mode, size=size, margin=margin, min_size=min_size)
        assert boxes.dtype == torch.int64 and boxes.shape == (batch, 4)
        for b in range(batch):
            ref_box, ref_has = reference_box(target[b].numpy(), mode, size, margin, min_size)
            assert boxes[b].tolist() == ref_box, (b, size, margin, min_size)
            assert bool(has[b]) == ref_has


def test_box_mask() -> None:
    boxes = torch.tensor([[1, 2, 3, 5], [0, 0, 4, 6]])
    mask = box_mask(boxes, 4, 6)
    expected = torch.zeros(2, 4, 6, dtype=torch.bool)
    expected[0, 1:3, 2:5] = True
    expected[1] = True
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_bad_arguments() -> None:
    t = torch.zeros(1, 8, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="'box'"):
        roi_boxes(t, "box")
    with pytest.raises(ValueError, match="size"):
        roi_boxes(t, "static")
    with pytest.raises(ValueError, match="does not fit"):
        roi_boxes(t, "static", size=9)
    with pytest.raises(ValueError, match="margin"):
        roi_boxes(t, "dynamic", margin=-1)
    with pytest.raises(ValueError, match="min_size"):
        roi_boxes(t, "dynamic", min_size=0)
    with pytest.raises(ValueError, match="integer"):
        roi_boxes(t.float(), "dynamic")
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        roi_boxes(t[0], "dynamic")
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        box_mask(torch.zeros(3, dtype=torch.long), 4, 4)


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_no_host_device_synchronisation(mode: str) -> None:
    # Meta tensors carry no data, so any value read on the host (.item(), bool(), nonzero())
    # raises; boxes and masks are still computed with the right shapes.
    target = torch.zeros(6, 20, 24, dtype=torch.long, device="meta")
    with pytest.raises((RuntimeError, NotImplementedError)):
        target.nonzero().tolist()
    boxes, has = roi_boxes(target, mode, size=8, margin=2, min_size=5)
    assert boxes.shape == (6, 4) and has.shape == (6,) and boxes.device.type == "meta"
    assert box_mask(boxes, 20, 24).shape == (6, 20, 24)
