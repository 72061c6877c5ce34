"""Hausdorff distance / HD95 on speckled predictions (issue 10): exact against MONAI and an
all-pairs reference, through every path of the implementation (look-ups, row scans, KD-tree,
few-voxel comparison, coarse-cell pruning), plus the row-scan helpers on their own.

A speckled prediction is what a network gives early in training or on a hard case: the organ
roughly right (shifted, rescaled), false-negative holes inside it and isolated false-positive
voxels scattered over the whole slice or volume, some far beyond a row scan's reach.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import cdist

from ctxseg.metrics import hausdorff_distance, hausdorff_distance_batch, mask_edges
from ctxseg.metrics._farthest import box_gap, worth_pruning
from ctxseg.metrics._nearest import few_distances, points
from ctxseg.metrics._rows import row_offsets, row_table, scan, start_rows

pytestmark = pytest.mark.usefixtures("distance_search")  # NumPy and compiled far-voxel search

monai_metrics = pytest.importorskip("monai.metrics")


def speckled_pair(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    strays: int,
    holes: int,
    shift: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A rough ellipsoid reference and its speckled prediction.

    The prediction is the ellipsoid shifted by N(0, ``shift``) voxels per axis and rescaled by
    U(0.8, 1.2), minus ``holes`` balls of radius 1-2.5 voxels centred inside it, plus
    ``strays`` voxels drawn uniformly over the whole array.

    Shape:
        returns pred, target: ``shape`` bool.
    """
    grids = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    size = np.asarray(shape, dtype=np.float64)
    centre = size * rng.uniform(0.3, 0.7, len(shape))
    radii = size * rng.uniform(0.12, 0.3, len(shape))

    def blob(c: np.ndarray, r: np.ndarray) -> np.ndarray:
        level = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grids, c, r, strict=True))
        return level < 1 + rng.normal(0, 0.1, shape)

    target = blob(centre, radii)
    pred = blob(centre + rng.normal(0, shift, len(shape)), radii * rng.uniform(0.8, 1.2))
    inside = np.argwhere(pred)
    for hole in inside[rng.integers(0, len(inside), holes)] if inside.size else []:
        pred &= sum((g - h) ** 2 for g, h in zip(grids, hole, strict=True)) > rng.uniform(1, 6.25)
    pred[tuple(rng.integers(0, s, strays) for s in shape)] = True
    return pred, target


def brute_force_hd(pred: np.ndarray, target: np.ndarray, spacing, percentile) -> float:
    """All-pairs distances between the scipy-eroded surfaces, MONAI's conventions."""
    if not pred.any() and not target.any():
        return math.nan
    if not pred.any() or not target.any():
        return math.inf
    surface = [
        np.argwhere(mask ^ ndimage.binary_erosion(mask)) * np.asarray(spacing)
        for mask in (pred, target)
    ]
    pairwise = cdist(surface[0], surface[1])
    directed = [pairwise.min(axis=1), pairwise.min(axis=0)]
    if percentile is None:
        return float(max(d.max() for d in directed))
    return float(max(np.percentile(d, percentile) for d in directed))


def monai_hd(pred: np.ndarray, target: np.ndarray, spacing, percentile) -> np.ndarray:
    """MONAI's HD of each pair, foreground channel of a two-channel one-hot input.

    Shape:
        pred, target: (N, *S) bool; returns (N,).
    """

    def one_hot(mask: np.ndarray) -> torch.Tensor:
        mask_t = torch.as_tensor(mask)
        return torch.stack([~mask_t, mask_t], dim=1)  # (N, 2, *S)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = monai_metrics.compute_hausdorff_distance(
            one_hot(pred), one_hot(target), percentile=percentile, spacing=spacing
        )
    return hd[:, 0].double().numpy()


def speckled_slices(rng: np.random.Generator, n: int, shape: tuple[int, int]) -> tuple:
    """A batch as a real stack gives it: organ slices, empty ones, misses and false alarms.

    Shape:
        returns pred, target: (n, *shape) bool.
    """
    pred, target = np.zeros((2, n, *shape), bool)
    for i in range(n):
        kind = i % 8
        if kind == 0:
            continue  # both empty: NaN
        if kind == 1:
            pred[i][tuple(rng.integers(0, s, 30) for s in shape)] = True  # false alarm: inf
            continue
        if kind == 2:
            target[i] = speckled_pair(rng, shape, 0, 0)[1]  # missed: inf
            continue
        pred[i], target[i] = speckled_pair(rng, shape, int(rng.integers(5, 40)), 3)
    return pred, target


# ---------------------------------------------------------------- against MONAI


@pytest.mark.parametrize("percentile", [None, 95])
@pytest.mark.parametrize("spacing", [None, (0.7, 1.3)])
def test_speckled_slices_equal_monai(spacing, percentile):
    rng = np.random.default_rng(10 + (spacing is None) + 2 * (percentile is None))
    pred, target = speckled_slices(rng, 40, (96, 80))
    ours = hausdorff_distance_batch(pred, target, spacing=spacing, percentile=percentile)
    expected = monai_hd(pred, target, spacing, percentile)
    finite = np.isfinite(expected)  # MONAI: NaN for a one-sided miss with a percentile
    assert finite.sum() >= 20
    np.testing.assert_allclose(ours[finite], expected[finite], rtol=0, atol=1e-4)
    pred_any, target_any = pred.any(axis=(1, 2)), target.any(axis=(1, 2))
    assert np.all(np.isnan(ours[~pred_any & ~target_any]))
    assert np.all(np.isinf(ours[pred_any != target_any]))
    assert np.all(np.isfinite(ours[pred_any & target_any]))


@pytest.mark.parametrize("percentile", [None, 95])
@pytest.mark.parametrize(
    ("shape", "spacing"),
    [((24, 64, 64), (3.0, 0.625, 0.625)), ((20, 40, 48), None), ((16, 48, 40), (0.8, 2.0, 1.1))],
)
def test_speckled_volume_equals_monai(shape, spacing, percentile):
    rng = np.random.default_rng(sum(shape) + (percentile is None))
    for strays, holes in ((40, 6), (3, 0), (400, 10)):
        pred, target = speckled_pair(rng, shape, strays, holes, shift=1.5)
        expected = monai_hd(pred[None], target[None], spacing, percentile)[0]
        ours = hausdorff_distance(pred, target, spacing=spacing, percentile=percentile)
        assert ours == pytest.approx(expected, abs=1e-4)


# ---------------------------------------------------------------- against all pairs


@pytest.mark.parametrize("percentile", [None, 95, 50])
@pytest.mark.parametrize(
    ("shape", "spacing"),
    [
        ((220, 60), (1.0, 1.0)),  # specks far from the blob: the KD-tree
        ((64, 70), (0.3, 2.5)),
        ((28, 60, 56), (3.0, 0.625, 0.625)),  # strays beyond the anisotropic row reach
        ((12, 30, 34), (1.0, 1.0, 1.0)),
        ((10, 24, 30), (0.5, 4.0, 0.7)),
    ],
)
def test_speckled_equal_brute_force(shape, spacing, percentile):
    """Exact to rounding, not merely within MONAI's float32 tolerance."""
    rng = np.random.default_rng(len(shape) * 100 + int(spacing[-1] * 10) + (percentile or 0))
    cases = [speckled_pair(rng, shape, strays, 4) for strays in (0, 8, 60)]
    pred, target = (np.stack(masks) for masks in zip(*cases, strict=True))
    batch = hausdorff_distance_batch(pred, target, spacing=spacing, percentile=percentile)
    for i, (p, t) in enumerate(cases):
        expected = brute_force_hd(p, t, spacing, percentile)
        assert batch[i] == pytest.approx(expected, rel=1e-9, abs=1e-9)
        single = hausdorff_distance(p, t, spacing=spacing, percentile=percentile)
        assert single == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_many_small_random_cases_equal_brute_force():
    """Random small masks, spacings and percentiles through every path, against all pairs."""
    rng = np.random.default_rng(2024)
    checked = 0
    for case in range(240):
        ndim = 2 + case % 2
        shape = tuple(int(s) for s in rng.integers(6, 40 if ndim == 2 else 18, ndim))
        spacing = tuple(float(s) for s in rng.choice([0.4, 0.625, 1.0, 1.5, 3.0], ndim))
        percentile = [None, 95, 50, 100, 5][case % 5]
        pred, target = speckled_pair(
            rng, shape, int(rng.integers(0, 25)), int(rng.integers(0, 3)), shift=3.0
        )
        if case % 17 == 0:
            pred[:] = False  # an empty prediction now and then
        expected = brute_force_hd(pred, target, spacing, percentile)
        ours = hausdorff_distance(pred, target, spacing=spacing, percentile=percentile)
        if math.isnan(expected):
            assert math.isnan(ours)
        else:
            assert ours == pytest.approx(expected, rel=1e-9, abs=1e-9), (case, shape, spacing)
        checked += math.isfinite(expected)
    assert checked > 200


def test_rows_longer_than_float32_holds_exactly_equal_brute_force():
    """Rows over 4096 voxels store float64 squares; distances along them stay exact."""
    rng = np.random.default_rng(9)
    pred, target = np.zeros((2, 40, 4200), bool)
    target[10:30, 50:70] = True  # two squares 4000 voxels apart along the rows
    target[12:28, 4150:4170] = True
    pred[15:25, 2100:2130] = True  # one in between: distances of ~2000 voxels along rows
    pred[tuple(rng.integers(0, s, 40) for s in pred.shape)] = True
    for percentile in (None, 95):
        expected = brute_force_hd(pred, target, (1.0, 0.5), percentile)
        ours = hausdorff_distance(pred, target, spacing=(1.0, 0.5), percentile=percentile)
        assert ours == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------- the helpers


def nearest_distances(query_flat, other_flat, shape, scale) -> np.ndarray:
    """Reference: every query voxel against every other voxel of its own pair."""
    block = math.prod(shape[1:])
    out = np.empty(query_flat.size)
    for i, flat in enumerate(query_flat):
        pair = flat // block
        others = other_flat[(other_flat // block) == pair]
        out[i] = np.min(cdist(points(np.array([flat]), shape, scale), points(others, shape, scale)))
    return out


@pytest.mark.parametrize(
    ("shape", "spacing"),
    [
        ((3, 40, 48), (1.0, 1.0)),
        ((2, 9, 30, 24), (3.0, 0.625, 0.625)),
        ((1, 8, 20, 16), (0.7, 2.0, 1.3)),
    ],
)
def test_row_scan_settles_exactly_and_leaves_only_voxels_beyond_its_reach(shape, spacing):
    rng = np.random.default_rng(len(shape))
    scale = np.asarray(spacing)
    size = math.prod(shape)
    query = np.sort(rng.choice(size, 300, replace=False))
    other = np.sort(rng.choice(size, 40, replace=False))
    block = math.prod(shape[1:])
    other = other[np.isin(other // block, np.unique(query // block))]  # a pair has both
    query = query[np.isin(query // block, np.unique(other // block))]
    offsets = row_offsets(tuple(spacing))
    table = row_table(other, shape, offsets)
    squared, left = scan(query, np.arange(query.size), table, shape, offsets)
    expected = nearest_distances(query, other, shape, scale)
    settled = np.setdiff1d(np.arange(query.size), left)
    assert settled.size > 0
    np.testing.assert_allclose(np.sqrt(squared[settled]) * scale[-1], expected[settled], rtol=1e-12)
    reach = math.sqrt(offsets[2]) * scale[-1]
    assert np.all(expected[left] >= reach - 1e-9)  # only voxels beyond the reach are left
    assert np.all(np.sqrt(squared[left]) * scale[-1] >= expected[left] - 1e-9)  # upper bounds


def nearest_only(total: int, count: int):
    """A scan's ``needed`` for which only the ``count`` nearest of ``total`` voxels matter."""

    def needed(pending: np.ndarray) -> np.ndarray:
        return np.full(pending.size, total - pending.size < count)

    return needed


def test_row_scan_drops_what_the_result_no_longer_needs():
    rng = np.random.default_rng(5)
    shape, spacing = (1, 30, 40), (1.0, 1.0)
    query = np.sort(rng.choice(1200, 200, replace=False))
    other = np.sort(rng.choice(1200, 10, replace=False))
    offsets = row_offsets(spacing)
    table = row_table(other, shape, offsets)

    needed = nearest_only(query.size, 50)
    squared, left = scan(query, np.arange(query.size), table, shape, offsets, needed)
    expected = nearest_distances(query, other, shape, np.asarray(spacing))
    exact = np.isfinite(squared)
    np.testing.assert_allclose(np.sqrt(squared[exact]), expected[exact], rtol=1e-12)
    assert 50 <= exact.sum() < query.size  # stopped once 50 were settled
    assert expected[exact].max() <= expected[~exact].min()  # the nearest ones, in order
    assert left.size == 0


def test_row_offsets_are_sorted_and_reach_beyond_every_offset():
    for spacing in [(1.0, 1.0), (3.0, 0.625, 0.625), (0.625, 0.625, 3.0), (100.0, 1.0)]:
        offsets, squared, reach = row_offsets(spacing)
        scale = np.asarray(spacing[:-1]) / spacing[-1]
        np.testing.assert_allclose(squared, np.sum((offsets * scale) ** 2, axis=1))
        assert np.all(np.diff(squared) >= 0) and squared[0] == 0
        assert squared[-1] < reach
        # every row offset outside the list is at least as long as the reach
        box = np.abs(offsets).max(axis=0) + 2
        grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in box], indexing="ij"), -1)
        grid = grid.reshape(-1, len(box))
        listed = {tuple(o) for o in offsets.tolist()}
        outside = np.array([o for o in grid.tolist() if tuple(o) not in listed])
        assert np.min(np.sum((outside * scale) ** 2, axis=1)) >= reach - 1e-12


@pytest.mark.parametrize("entries", [1 << 18, 100])  # all at once, and a row at a time
def test_few_distances_equal_all_pairs_within_each_pair(monkeypatch, entries):
    monkeypatch.setattr("ctxseg.metrics._nearest._SERIAL_PRODUCT", entries)
    rng = np.random.default_rng(6)
    shape, scale = (3, 7, 11, 13), np.array([2.0, 0.5, 0.8])
    block = math.prod(shape[1:])
    other = np.sort(rng.choice(math.prod(shape), 60, replace=False))
    query = rng.choice(math.prod(shape), 9, replace=False)
    query = query[np.isin(query // block, np.unique(other // block))]
    np.testing.assert_allclose(
        few_distances(query, other, shape, scale),
        nearest_distances(query, other, shape, scale),
        rtol=1e-12,
    )


def test_box_gap_is_a_lower_bound_that_flags_far_specks():
    rng = np.random.default_rng(7)
    scale = np.array([3.0, 0.625, 0.625])
    pred, target = speckled_pair(rng, (24, 64, 64), 0, 0, shift=0.5)

    def gap(pred: np.ndarray, target: np.ndarray) -> float:
        bits = [np.packbits(mask_edges(mask), axis=-1)[None] for mask in (pred, target)]
        return box_gap(*bits, scale)

    assert gap(pred, target) <= brute_force_hd(pred, target, scale, None)
    assert not worth_pruning(gap(pred, target), scale)
    pred[0, 0, 0] = True  # a speck in a far corner: the HD is large, pruning pays
    assert gap(pred, target) <= brute_force_hd(pred, target, scale, None)
    assert worth_pruning(gap(pred, target), scale)
    assert hausdorff_distance(pred, target, spacing=scale) == pytest.approx(
        brute_force_hd(pred, target, scale, None), rel=1e-9
    )


# ------------------------------------------------ single pairs by distance levels (issue 10)


@pytest.mark.parametrize("few_left", [0, 256, 1 << 30])  # widen to the end, usual, at once
@pytest.mark.parametrize("percentile", [None, 95, 50, 100, 3])
def test_single_pairs_by_distance_levels_equal_brute_force(monkeypatch, few_left, percentile):
    """The level counting path (forced on for every pair) is exact on clean and speckled
    pairs: ranks settled by levels, by look-ups of the voxels left, and beyond the box
    (plain HD: far voxels; a percentile: the general path takes over)."""
    monkeypatch.setattr("ctxseg.metrics.hausdorff._FEW_LEFT", few_left)
    monkeypatch.setattr("ctxseg.metrics.hausdorff._BYTES_PER_VOXEL", 1 << 30)
    rng = np.random.default_rng(11 + few_left % 7 + int(percentile or 0))
    for case in range(24):
        ndim = 2 + case % 2
        shape = (16, 40, 36) if ndim == 3 else (60, 52)
        spacing = [(3.0, 0.625, 0.625), (1.0, 1.0, 1.0), (0.7, 1.9)][case % 3][:ndim]
        spacing = spacing if len(spacing) == ndim else (1.0,) * ndim
        strays = [0, 0, 3, 20][case % 4]
        pred, target = speckled_pair(rng, shape, strays, case % 3, shift=[0.5, 1.5, 3][case % 3])
        expected = brute_force_hd(pred, target, spacing, percentile)
        ours = hausdorff_distance(pred, target, spacing=spacing, percentile=percentile)
        assert ours == pytest.approx(expected, rel=1e-9, abs=1e-9), (case, spacing)


def test_level_plan_and_widening_match_a_brute_force_dilation():
    from ctxseg.metrics._far import Dilations, Widening, level_plan, popcount
    from ctxseg.metrics._surface import pack_rows, surfaces
    from ctxseg.metrics.hausdorff import _lookup_offsets

    spacing = (3.0, 0.625, 0.625)
    radii, offsets, distances = _lookup_offsets(spacing)
    levels = level_plan(offsets, distances)
    np.testing.assert_array_equal(levels.distances, np.unique(distances))
    assert levels.ends[-1] == offsets.shape[0] and np.all(np.diff(levels.ends) > 0)
    rng = np.random.default_rng(3)
    pred, target = speckled_pair(rng, (12, 30, 28), 5, 2)
    surf = surfaces(pack_rows(pred[None]), pack_rows(target[None]), np.array([0]), radii)
    most = max(int(spans.max()) for spans in levels.spans if spans.size)
    widening = Widening(Dilations(surf.bits, surf.pred_bits.shape, most), levels)
    size = surf.pred_bits.size
    shape = surf.shape[1:]
    masks = [np.unpackbits(b.reshape(-1)).reshape(shape).astype(bool) for b in surf_bits(surf)]
    for level in range(levels.distances.size):
        inside = widening.widen(level)
        for d in range(2):
            # brute force: voxels of surface d with a voxel of the other within the level
            other = masks[1 - d]
            grown = np.zeros_like(other)
            for offset in offsets[: levels.ends[level]]:
                grown |= np.roll(other, tuple(-offset), axis=(0, 1, 2))
            expected = masks[d] & grown
            got = np.unpackbits(inside[d * size : (d + 1) * size]).reshape(shape).astype(bool)
            np.testing.assert_array_equal(got, expected)
            assert popcount(inside[d * size : (d + 1) * size]) == expected.sum()


def surf_bits(surf) -> tuple[np.ndarray, np.ndarray]:
    return surf.pred_bits, surf.target_bits


def test_popcount_without_numpy_bitwise_count(monkeypatch):
    from ctxseg.metrics import _far

    packed = np.random.default_rng(0).integers(0, 256, (3, 50), dtype=np.uint8)
    expected = np.unpackbits(packed, axis=-1).sum(axis=-1)
    np.testing.assert_array_equal(_far.popcount(packed), expected)
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    np.testing.assert_array_equal(_far.popcount(packed), expected)


@pytest.mark.parametrize("reach", [0.5, 3.0, 100.0])  # slab of no slice, a few, all
def test_few_distances_by_slab_equal_all_pairs(reach):
    """The slab pass is exact: voxels whose nearest may lie outside are compared with all."""
    rng = np.random.default_rng(int(reach * 10))
    shape, scale = (1, 20, 15, 13), np.array([2.0, 0.5, 0.8])
    size = math.prod(shape)
    other = np.sort(rng.choice(size, 25, replace=False))
    query = np.sort(rng.choice(size, 40, replace=False))
    np.testing.assert_allclose(
        few_distances(query, other, shape, scale, reach),
        nearest_distances(query, other, shape, scale),
        rtol=1e-12,
    )


@pytest.mark.parametrize("far_apart", [False, True])
def test_row_table_for_some_voxels_only_scans_them_exactly(far_apart):
    """A table built only for the rows some voxels reach gives them the same result; with
    nothing of the other surface in reach, every one of them is left beyond it."""
    rng = np.random.default_rng(9)
    shape, spacing = (1, 30, 40, 24), (3.0, 0.625, 0.625)
    scale = np.asarray(spacing)
    plane = 40 * 24
    other = np.sort(rng.choice(10 * plane, 300, replace=False))  # slices 0-9
    lowest = 25 if far_apart else 5  # slices 25-29 lie beyond a row scan's reach (10 mm)
    query = np.sort(rng.choice(np.arange(lowest * plane, 30 * plane), 20, replace=False))
    offsets = row_offsets(spacing)
    full = scan(query, np.arange(query.size), row_table(other, shape, offsets), shape, offsets)
    near = row_table(other, shape, offsets, near=query)
    squared, left = scan(query, np.arange(query.size), near, shape, offsets)
    np.testing.assert_array_equal(left, full[1])
    settled = np.setdiff1d(np.arange(query.size), left)
    np.testing.assert_array_equal(squared[settled], full[0][settled])
    expected = nearest_distances(query, other, shape, scale)
    np.testing.assert_allclose(np.sqrt(squared[settled]) * scale[-1], expected[settled])
    assert (left.size == query.size) if far_apart else (settled.size > 0)


# ------------------------------------------------ thick slices, missed slices (issue 10)


def thick_slice_pair(rng: np.random.Generator, strays: int) -> tuple[np.ndarray, np.ndarray]:
    """An ACDC-like pair at 10 mm slices: the prediction misses the first slices of the
    reference and runs on past its last ones (whole slices of far voxels), shifted in-plane.

    Shape:
        returns pred, target: (10, 40, 44) bool.
    """
    target = np.zeros((10, 40, 44), bool)
    pred = np.zeros_like(target)
    yy, xx = np.mgrid[:40, :44]
    first, last = int(rng.integers(1, 3)), int(rng.integers(6, 8))
    for z in range(first, last + 1):
        radius = rng.uniform(5, 12)
        target[z] = (yy - 20) ** 2 + (xx - 22) ** 2 < radius**2
    dy, dx = rng.integers(-3, 4, 2)
    for z in range(first + int(rng.integers(1, 4)), min(last + int(rng.integers(0, 3)), 9) + 1):
        pred[z] = (yy - 20 - dy) ** 2 + (xx - 22 - dx) ** 2 < rng.uniform(4, 12) ** 2
    pred[tuple(rng.integers(0, s, strays) for s in pred.shape)] = True
    return pred, target


def test_row_scan_skips_offsets_into_empty_slices_exactly(monkeypatch):
    """Voxels whose neighbouring slices hold none of the other surface read only the
    offsets into filled slices (their own group), and still settle exactly, nearest first:
    with a ``needed`` that stops after the 60 nearest, those are the 60 nearest of all."""
    monkeypatch.setattr("ctxseg.metrics._rows._SPLIT_READS", 1)  # any saving: a group
    from ctxseg.metrics._rows import _slice_groups

    spacing = (10.0, 1.5625, 1.5625)
    scale = np.asarray(spacing)
    shape = (2, 9, 14, 16)
    grid = np.arange(math.prod(shape)).reshape(shape)
    rng = np.random.default_rng(21)
    # the other surface fills slices 5-6 of pair 0 and slice 2 of pair 1; queries everywhere
    other = np.sort(np.concatenate([grid[0, 5:7].ravel(), grid[1, 2].ravel()]))
    other = np.sort(rng.choice(other, 60, replace=False))
    query = np.sort(rng.choice(grid.size, 400, replace=False))
    offsets = row_offsets(spacing)
    table = row_table(other, shape, offsets)
    start_row = start_rows(query, shape, table)
    groups = _slice_groups(table, start_row, np.arange(query.size), offsets[0])
    assert len(groups) > 2 and min(read.size for _, read in groups[1:]) < offsets[0].shape[0]
    squared, left = scan(query, np.arange(query.size), table, shape, offsets)
    expected = nearest_distances(query, other, shape, scale)
    settled = np.setdiff1d(np.arange(query.size), left)
    np.testing.assert_allclose(np.sqrt(squared[settled]) * scale[-1], expected[settled], rtol=1e-12)
    assert np.all(expected[left] >= math.sqrt(offsets[2]) * scale[-1] - 1e-9)
    assert np.all(np.diff(left) > 0)  # sorted, as the callers expect

    needed = nearest_only(query.size, 60)
    squared, left = scan(query, np.arange(query.size), table, shape, offsets, needed)
    exact = np.isfinite(squared)
    np.testing.assert_allclose(
        np.sqrt(squared[exact]) * scale[-1], expected[exact], rtol=1e-12
    )  # fmt: skip
    assert 60 <= exact.sum() < query.size and left.size == 0
    assert expected[exact].max() <= expected[~exact].min()  # nearest first across groups


@pytest.mark.parametrize("box_test_level", [0, 10, 1 << 10])  # at once, usual, never
@pytest.mark.parametrize("few_pairs", [0, 1 << 20])  # KD-tree beyond the rows, or all pairs
def test_thick_slices_with_missed_slices_equal_brute_force(
    monkeypatch, box_test_level, few_pairs, distance_search
):
    """Whole slices of far voxels (missed or extra slices at 10 mm), with and without stray
    voxels: the plain HD and percentiles whose ranks lie within and beyond the look-up box
    equal the all-pairs reference, however the whole-box test and the voxels beyond the
    rows are scheduled. (With numba these spacings are measured whole by the compiled
    kernels instead: the same results, none of the NumPy scheduling to check.)"""
    import ctxseg.metrics.hausdorff as hausdorff

    monkeypatch.setattr(hausdorff, "_BOX_TEST_LEVEL", box_test_level)
    monkeypatch.setattr(hausdorff, "_FEW_PAIRS", few_pairs)
    calls = []
    ranked = hausdorff._ranked_beyond
    monkeypatch.setattr(
        hausdorff, "_ranked_beyond", lambda *a: calls.append(a[2]) or ranked(*a)
    )  # fmt: skip
    rng = np.random.default_rng(31)
    spacing = (10.0, 1.5625, 1.5625)
    for case in range(12):
        pred, target = thick_slice_pair(rng, strays=[0, 0, 6][case % 3])
        for percentile in (None, 95, 50, 5, 100):
            expected = brute_force_hd(pred, target, spacing, percentile)
            ours = hausdorff_distance(pred, target, spacing=spacing, percentile=percentile)
            assert ours == pytest.approx(expected, rel=1e-9, abs=1e-9), (case, percentile)
    steps = hausdorff._lookup_offsets(spacing)[1].shape[0]
    if box_test_level == 0 and distance_search == "numpy":  # ranks beyond the whole box
        assert steps in calls  # skipped the walk


def test_ranks_in_missed_slices_test_the_whole_box_before_the_walk(monkeypatch, distance_search):
    """A percentile whose rank lies among the voxels of slices the other mask misses (a slice
    spacing away at least, beyond most distance levels) tests the whole box at once, not
    after ``_BOX_TEST_LEVEL`` levels; a pair with the same slices walks as usual. Both exact."""
    import ctxseg.metrics.hausdorff as hausdorff

    chosen = []
    level_of = hausdorff._box_test_level
    monkeypatch.setattr(
        hausdorff, "_box_test_level", lambda *a: chosen.append(level_of(*a)) or chosen[-1]
    )  # fmt: skip
    yy, xx = np.mgrid[:40, :44]
    target = np.zeros((10, 40, 44), bool)
    target[1:7] = (yy - 20) ** 2 + (xx - 22) ** 2 < 10**2
    missed = target.copy()
    missed[3:7] = False  # the prediction misses 4 of the 6 slices
    shifted = np.roll(target, 1, axis=2)  # the same slices, one voxel off in-plane
    spacing = (10.0, 1.5625, 1.5625)
    for pred, level in ((missed, 0), (shifted, hausdorff._BOX_TEST_LEVEL)):
        chosen.clear()
        ours = hausdorff_distance(pred, target, spacing=spacing, percentile=95)
        assert ours == pytest.approx(brute_force_hd(pred, target, spacing, 95), rel=1e-9)
        assert chosen == ([level] if distance_search == "numpy" else [])  # numba: compiled


@pytest.mark.parametrize("shift", [0, 1])
def test_plain_hd_within_the_box_looks_up_only_voxels_beyond_the_sample_bound(
    monkeypatch, shift, distance_search
):
    """The plain HD of a pair within the look-up box: a sample of voxels gives a lower bound,
    and the voxels with the other surface no farther than it are not looked up. For
    identical masks (bound 0) that is every voxel; shifted by a voxel, those on both."""
    import ctxseg.metrics.hausdorff as hausdorff

    looked_up = []
    look_up = hausdorff._look_up
    monkeypatch.setattr(
        hausdorff, "_look_up", lambda query, *a: looked_up.append(query.size) or look_up(query, *a)
    )  # fmt: skip
    zz, yy, xx = np.mgrid[:12, :40, :44]
    target = ((zz - 6) / 5.0) ** 2 + ((yy - 20) / 14.0) ** 2 + ((xx - 22) / 16.0) ** 2 < 1
    pred = np.roll(target, shift, axis=2)
    spacing = (3.0, 0.625, 0.625)
    ours = hausdorff_distance(pred, target, spacing=spacing)
    assert ours == pytest.approx(brute_force_hd(pred, target, spacing, None), abs=1e-12)
    if distance_search == "compiled":  # thick slices: measured whole by the compiled kernels
        assert looked_up == []
        return
    surface = int(mask_edges(target).sum())
    samples = looked_up[:2]  # every 16th voxel of each surface
    assert all(size <= -(-surface // 16) + 1 for size in samples)
    if shift == 0:
        assert ours == 0.0 and len(looked_up) == 2  # no voxel beyond a bound of 0
    else:
        assert ours == pytest.approx(0.625) and sum(looked_up[2:]) < surface // 4
