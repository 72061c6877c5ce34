"""Dice, surface Hausdorff distance and summaries (SPEC §8) against hand-computed values,
MONAI's ``compute_hausdorff_distance``, MedPy's ``hd`` and per-slice reference loops."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import cdist

from ctxseg.metrics import (
    dice_score,
    dice_score_batch,
    hausdorff_distance,
    hausdorff_distance_batch,
    mask_edges,
    summarize,
)

monai_metrics = pytest.importorskip("monai.metrics")
pytestmark = pytest.mark.usefixtures("distance_search")  # NumPy and compiled far-voxel search
medpy_binary = pytest.importorskip("medpy.metric.binary")


def blobs(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """Noisy ellipsoids (some touching the border) plus scattered false-positive specks.

    Shape:
        returns (n, *shape) bool.
    """
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    out = np.zeros((n, *shape), bool)
    for i in range(n):
        radius2 = sum(
            ((g - rng.uniform(0.0, s)) / rng.uniform(0.1 * s, 0.4 * s)) ** 2
            for g, s in zip(grids, shape, strict=True)
        )
        out[i] = radius2 < 1 + rng.normal(0, 0.2, shape)
        out[i] |= rng.random(shape) < rng.choice([0.0, 0.002])
    return out


def monai_hd(pred: np.ndarray, target: np.ndarray, spacing, percentile) -> np.ndarray:
    """MONAI's HD of each (pred, target) pair, foreground channel of a two-channel one-hot.

    Shape:
        pred, target: (N, *S) bool; returns (N,).
    """

    def one_hot(mask: np.ndarray) -> torch.Tensor:
        mask_t = torch.as_tensor(mask)
        return torch.stack([~mask_t, mask_t], dim=1)  # (N, 2, *S)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # MONAI's small torch ops run faster on one thread
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hd = monai_metrics.compute_hausdorff_distance(
                one_hot(pred), one_hot(target), percentile=percentile, spacing=spacing
            )
    finally:
        torch.set_num_threads(threads)
    return hd[:, 0].double().numpy()


# ---------------------------------------------------------------- Dice


def test_dice_hand_computed():
    pred = np.array([[0, 1, 2], [1, 1, 2]])
    target = np.array([[0, 1, 1], [0, 1, 2]])
    scores = dice_score(pred, target, labels=[0, 1, 2, 3])
    # label 0: |P|=1 |T|=2 overlap 1; label 1: 3, 3, 2; label 2: 2, 1, 1; label 3 absent.
    assert scores[0] == pytest.approx(2 / 3)
    assert scores[1] == pytest.approx(2 / 3)
    assert scores[2] == pytest.approx(2 / 3)
    assert np.isnan(scores[3])
    assert dice_score(pred, pred, [1, 2]) == {1: 1.0, 2: 1.0}


def test_dice_one_empty_is_zero_and_torch_matches_numpy():
    target = np.zeros((4, 4), np.int64)
    target[1:3, 1:3] = 1
    assert dice_score(np.zeros_like(target), target, [1]) == {1: 0.0}
    assert dice_score(target, np.zeros_like(target), [1]) == {1: 0.0}
    rng = np.random.default_rng(0)
    pred3d, target3d = rng.integers(0, 3, (2, 5, 6, 7))
    ours = dice_score(torch.from_numpy(pred3d), torch.from_numpy(target3d), [1, 2])
    assert ours == dice_score(pred3d, target3d, [1, 2])


def test_dice_batch_equals_per_slice_loop():
    rng = np.random.default_rng(1)
    pred, target = rng.integers(0, 3, (2, 6, 8, 8))
    pred[0], target[0] = 0, 0  # both empty for labels 1 and 2
    batch = dice_score_batch(torch.from_numpy(pred), torch.from_numpy(target), [1, 2])
    for i in range(6):
        single = dice_score(pred[i], target[i], [1, 2])
        for label in (1, 2):
            np.testing.assert_equal(batch[label][i], single[label])
    assert np.isnan(batch[1][0])


# ---------------------------------------------------------------- Hausdorff, hand-computed


def test_hd_hand_computed_shift_and_points():
    square = np.zeros((7, 7), bool)
    square[1:4, 1:4] = True
    assert hausdorff_distance(square, np.roll(square, 2, axis=1)) == pytest.approx(2.0)
    a, b = np.zeros((6, 6), bool), np.zeros((6, 6), bool)
    a[0, 0], b[3, 4] = True, True
    assert hausdorff_distance(a, b) == pytest.approx(5.0)
    assert hausdorff_distance(a, b, spacing=(2.0, 1.0)) == pytest.approx(np.sqrt(36 + 16))
    # 3-D: two voxels three slices apart at slice spacing 2.5
    c, d = np.zeros((5, 3, 3), bool), np.zeros((5, 3, 3), bool)
    c[0, 1, 1], d[3, 1, 1] = True, True
    assert hausdorff_distance(c, d, spacing=(2.5, 0.5, 0.5)) == pytest.approx(7.5)


def test_hd_uses_surfaces_not_volumes():
    outer = np.zeros((9, 9), bool)
    outer[2:7, 2:7] = True  # 5x5 square: its surface is the outer ring
    inner = np.zeros((9, 9), bool)
    inner[3:6, 3:6] = True  # 3x3 square: 8 surface pixels around an eroded centre
    # outer corner (2, 2) to the nearest inner surface pixel (3, 3): sqrt(2)
    assert hausdorff_distance(outer, inner) == pytest.approx(np.sqrt(2))


def test_hd_percentile_hand_computed():
    line = np.zeros((3, 8), bool)
    line[0, 0:5] = True  # 1 pixel thick: every pixel is on the surface
    point = np.zeros((3, 8), bool)
    point[0, 0] = True
    # directed line -> point {0, 1, 2, 3, 4}; point -> line {0}
    assert hausdorff_distance(line, point) == pytest.approx(4.0)
    assert hausdorff_distance(line, point, percentile=95) == pytest.approx(3.8)  # rank 0.95*4
    assert hausdorff_distance(point, line, percentile=50) == pytest.approx(2.0)
    assert hausdorff_distance(line, point, percentile=100) == pytest.approx(4.0)


def test_mask_edges_equals_scipy_erosion():
    rng = np.random.default_rng(2)
    for shape in [(12, 17), (6, 9, 11)]:
        mask = blobs(rng, 1, shape)[0]
        expected = mask ^ ndimage.binary_erosion(mask)
        np.testing.assert_array_equal(mask_edges(mask), expected)
    thin = np.ones((2, 7), bool)  # every voxel touches the outside along the short axis
    np.testing.assert_array_equal(mask_edges(thin), thin)
    batch = blobs(rng, 3, (10, 10))
    np.testing.assert_array_equal(
        mask_edges(batch, batched=True), np.stack([mask_edges(m) for m in batch])
    )


def brute_force_hd(pred: np.ndarray, target: np.ndarray, spacing, percentile) -> float:
    """All-pairs distances between the scipy-eroded surfaces (both masks non-empty)."""
    points = [
        np.argwhere(mask ^ ndimage.binary_erosion(mask)) * np.asarray(spacing)
        for mask in (pred, target)
    ]
    pairwise = cdist(points[0], points[1])
    directed = [pairwise.min(axis=1), pairwise.min(axis=0)]
    if percentile is None:
        return max(d.max() for d in directed)
    return max(np.percentile(d, percentile) for d in directed)


@pytest.mark.parametrize(
    "spacing",
    [(1.0, 1.0), (0.7, 2.3), (5.0, 0.4), (1e-3, 1.0), (100.0, 1.0), (3.0, 0.6, 0.6), (0.5, 2, 9)],
)
def test_hd_equals_brute_force_for_any_spacing(spacing):
    # The look-up neighbourhood depends on the spacing: exactness must not.
    rng = np.random.default_rng(int(sum(spacing) * 1000) % 2**32)
    shape = (30, 34) if len(spacing) == 2 else (9, 16, 14)
    pred, target = blobs(rng, 6, shape), blobs(rng, 6, shape)
    pred[1] = np.roll(target[1], 1, axis=-1)  # mostly near each other: look-ups settle most
    keep = pred.any(axis=tuple(range(1, pred.ndim))) & target.any(axis=tuple(range(1, pred.ndim)))
    for percentile in (None, 95, 50):  # the median depends on the near distances too
        ours = hausdorff_distance_batch(pred, target, spacing=spacing, percentile=percentile)
        for i in np.flatnonzero(keep):
            expected = brute_force_hd(pred[i], target[i], spacing, percentile)
            assert ours[i] == pytest.approx(expected, rel=1e-9, abs=1e-9)


# ---------------------------------------------------------------- Hausdorff vs MONAI / MedPy


@pytest.mark.parametrize("percentile", [None, 95])
@pytest.mark.parametrize(
    ("shape", "spacing"),
    [
        ((40, 48), None),
        ((40, 48), (0.7, 1.9)),
        ((12, 30, 26), None),
        ((12, 30, 26), (3.0, 0.6, 0.8)),
    ],
)
def test_hd_equals_monai_on_random_blobs(shape, spacing, percentile):
    rng = np.random.default_rng(len(shape) * 10 + (spacing is None) + (percentile is None) * 2)
    n = 24 if len(shape) == 2 else 4
    pred, target = blobs(rng, n, shape), blobs(rng, n, shape)
    pred[0] |= target[0]  # some shared surface too
    expected = monai_hd(pred, target, spacing, percentile)
    np.testing.assert_allclose(
        hausdorff_distance_batch(pred, target, spacing=spacing, percentile=percentile),
        expected,
        rtol=0,
        atol=1e-4,
    )
    single = hausdorff_distance(pred[1], target[1], spacing=spacing, percentile=percentile)
    assert single == pytest.approx(expected[1], abs=1e-4)


def test_hd_equals_medpy_hd():
    rng = np.random.default_rng(3)
    for shape, spacing in [
        ((30, 30), (1.0, 1.0)),
        ((30, 30), (0.5, 2.0)),
        ((8, 20, 20), (2.5, 1, 1)),
    ]:
        pred, target = blobs(rng, 2, shape)
        expected = medpy_binary.hd(pred, target, voxelspacing=spacing)
        assert hausdorff_distance(pred, target, spacing=spacing) == pytest.approx(
            expected, abs=1e-6
        )


# ---------------------------------------------------------------- conventions and inputs


@pytest.mark.parametrize("percentile", [None, 95])
def test_hd_empty_mask_conventions(percentile):
    empty = np.zeros((8, 8), bool)
    full = empty.copy()
    full[2:5, 3:6] = True
    assert np.isnan(hausdorff_distance(empty, empty, percentile=percentile))
    assert hausdorff_distance(empty, full, percentile=percentile) == np.inf
    assert hausdorff_distance(full, empty, percentile=percentile) == np.inf
    batch = hausdorff_distance_batch(
        np.stack([empty, full, empty, full]),
        np.stack([empty, empty, full, full]),
        percentile=percentile,
    )
    np.testing.assert_equal(batch, [np.nan, np.inf, np.inf, 0.0])


def test_hd_batch_equals_per_slice_and_torch_input():
    rng = np.random.default_rng(4)
    pred, target = blobs(rng, 10, (32, 36)), blobs(rng, 10, (32, 36))
    pred[2], target[5], pred[7], target[7] = False, False, False, False
    for percentile in (None, 95):
        batch = hausdorff_distance_batch(
            torch.from_numpy(pred),
            torch.from_numpy(target),
            spacing=(1.5, 0.5),
            percentile=percentile,
        )
        loop = [
            hausdorff_distance(p, t, spacing=(1.5, 0.5), percentile=percentile)
            for p, t in zip(pred, target, strict=True)
        ]
        np.testing.assert_allclose(batch, loop, rtol=0, atol=1e-12)
    # a batch of 3-D volumes
    volumes_pred, volumes_target = blobs(rng, 3, (5, 12, 12)), blobs(rng, 3, (5, 12, 12))
    np.testing.assert_allclose(
        hausdorff_distance_batch(volumes_pred, volumes_target, spacing=(2.0, 1.0, 1.0)),
        [
            hausdorff_distance(p, t, spacing=(2.0, 1.0, 1.0))
            for p, t in zip(volumes_pred, volumes_target, strict=True)
        ],
        rtol=0,
        atol=1e-12,
    )
    # a 0/1 integer tensor counts non-zero as foreground
    assert hausdorff_distance(torch.from_numpy(pred[0]).long(), target[0]) == pytest.approx(
        hausdorff_distance(pred[0], target[0])
    )


def test_hd_rejects_bad_arguments():
    mask = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="same shape"):
        hausdorff_distance(mask, np.ones((4, 5), bool))
    with pytest.raises(ValueError, match="percentile"):
        hausdorff_distance(mask, mask, percentile=0)
    with pytest.raises(ValueError, match="spacing"):
        hausdorff_distance(mask, mask, spacing=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="spacing"):
        hausdorff_distance(mask, mask, spacing=(1.0, -2.0))
    with pytest.raises(ValueError, match="2-D or 3-D"):
        hausdorff_distance(mask[0], mask[0])
    with pytest.raises(TypeError, match="pred"):
        hausdorff_distance([[True]], mask)


def test_summarize_counts_misses():
    summary = summarize([2.0, 4.0, np.nan, np.inf, np.inf])
    assert summary["mean"] == pytest.approx(3.0)
    assert summary["std"] == pytest.approx(1.0)
    assert (summary["n"], summary["n_finite"], summary["n_nan"], summary["n_inf"]) == (5, 2, 1, 2)
    empty = summarize(torch.tensor([float("nan")]))
    assert np.isnan(empty["mean"]) and empty["n_nan"] == 1


@pytest.mark.realdata
def test_hd_equals_monai_on_real_prostate_masks(shared_data):
    """A real gland mask against an eroded, shifted copy, per volume (mm) and per slice."""
    sitk = pytest.importorskip("SimpleITK")
    path = shared_data / "prostate-promise12-layout" / "Case00_segmentation.mhd"
    image = sitk.ReadImage(str(path))
    target = sitk.GetArrayFromImage(image) > 0  # (Z, Y, X)
    spacing = tuple(reversed(image.GetSpacing()))  # SimpleITK's (x, y, z) -> (z, y, x)
    pred = np.roll(ndimage.binary_erosion(target, iterations=2), (1, 3, -2), axis=(0, 1, 2))
    for percentile in (None, 95):
        ours = hausdorff_distance(pred, target, spacing=spacing, percentile=percentile)
        expected = monai_hd(pred[None], target[None], spacing, percentile)[0]
        assert ours == pytest.approx(expected, abs=1e-4)
        slices = hausdorff_distance_batch(pred, target, percentile=percentile)
        per_slice = monai_hd(pred, target, None, percentile)
        finite = np.isfinite(per_slice)  # MONAI: NaN for a one-sided miss with a percentile
        np.testing.assert_allclose(slices[finite], per_slice[finite], rtol=0, atol=1e-4)
        assert np.all(np.isinf(slices[pred.any(axis=(1, 2)) != target.any(axis=(1, 2))]))
