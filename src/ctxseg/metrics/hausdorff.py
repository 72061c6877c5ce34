"""Symmetric surface Hausdorff distance and HD95 between binary masks (SPEC §8).

The definition is MONAI's ``compute_hausdorff_distance`` (1.6): the surface of a mask is the
mask minus its binary erosion by the face-connected cross (voxels outside the image count as
background), distances are exact Euclidean distances between surface voxel centres scaled by
the voxel spacing, the percentile variant takes the percentile (linear interpolation) of each
directed distance set and then the larger of the two. MedPy's ``hd`` uses the same surfaces
(its ``hd95`` takes one percentile of both directed sets pooled: a different number).

Empty masks (SPEC §8): both empty gives NaN, exactly one empty gives +inf, with or without a
percentile (MONAI would return NaN for a percentile over a one-sided miss).

Speed, with exact results: the masks of a batch are packed to bits, cropped to their common
foreground box and eroded together (``_surface.py``). Each surface voxel's distance to the
other surface then comes from the cheapest of three exact means, nearest first:

1. array look-ups of the offsets in a small box (3.6 mm with 3 x 0.625 x 0.625 mm
   voxels, 5 mm with 1 mm voxels, 6 voxels in 2-D), several offsets a round, nearest offsets
   first: most voxels of a fair prediction settle here;
2. in volumes, row scans (``_rows.py``) for the rest, up to 10 mm with such voxels: the other
   surface stored row by row, each row giving the distance along it at once, so a voxel two
   thick slices off settles in tens of rows instead of hundreds of look-ups or a costly
   KD-tree search (a handful of voxels are compared with every voxel of the other surface
   instead, ``_nearest.py``);
3. a KD-tree (``_nearest.py``), one per direction for the whole batch, with the batch index
   as an extra coordinate spaced so far apart that every nearest neighbour is found in its
   own mask, for the voxels beyond the rows' reach (far false-positive specks) and, in 2-D,
   where its searches are cheap, for all the look-ups leave.

Where numba is installed (``pip install ctxseg[fast]``; ``CTXSEG_NUMBA=0`` turns it off),
2-D masks and volumes of thick slices (at least ``_THICK`` times the in-plane spacing, as
ACDC's 5-10 mm) are measured whole by compiled loops instead (``_compiled.py``,
``_kernels.py``): surfaces by rows, and each directed distance from its largest values
only, after a sample has set a floor below which no voxel's exact distance is needed. In
near-isotropic volumes, where the distance levels below count the many tied distances
faster, steps 2 and 3 are one compiled row search, and a volume whose box stray voxels
stretch is searched by it from the start, up to the look-up box's reach first. The results
are the same, exactly.

A single pair (a volume) whose box is not stretched by stray voxels takes a shorter way
(``_far.py``): look-up distances have few distinct values, so both surfaces are widened
level by level as bit dilations and the voxels within each level counted; the value at a
rank (the maximum, a percentile) is the first level whose count passes it, and only the
last few hundred voxels, if any, are looked up. A walk still open after ``_BOX_TEST_LEVEL``
levels (at once when a rank lies among the voxels of slices the other mask misses) first
counts the voxels within the whole box: a rank beyond it (a missed slice) skips the
remaining levels, and only the voxels beyond are measured, as far as the rank needs. For
the plain HD, voxels with nothing in the whole box hold the maximum when there are any, and
alone go to rows and tree (or, when they and the other surface are few, to all pairs).

Look-ups and row scans both settle voxels nearest first and check after every round whether
a percentile's rank falls among the settled distances, then stop (HD95 of a good prediction
needs no row scan or tree at all). The plain HD needs only the farthest voxel
(``_farthest.py``): for a single pair whose masks' boxes lie far apart, coarse cells rule out
most voxels before any look-up, and voxels left beyond the rows' reach are bounded through a
sample of the other surface before any KD-tree.
``benchmarks/bench_metrics.py`` compares the speed with MONAI's on clean and speckled
predictions (figures in ``docs/benchmarks.md``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np

from ctxseg.metrics import _compiled as compiled
from ctxseg.metrics._arrays import ArrayLike, check_pair, check_spacing, to_mask
from ctxseg.metrics._far import Dilations, Levels, Widening, level_plan, popcount, row_spans
from ctxseg.metrics._farthest import box_gap, candidates, farthest, worth_pruning
from ctxseg.metrics._nearest import few_distances, tree_distances
from ctxseg.metrics._rows import row_offsets, row_table, scan
from ctxseg.metrics._surface import Surfaces, bit_indices, mask_edges, pack_rows, surfaces

__all__ = ["hausdorff_distance", "hausdorff_distance_batch", "mask_edges"]

# most neighbour offsets the array look-ups try, 2-D and 3-D (at most 255: _first_hits' codes)
_LOOKUP_STEPS = {2: 128, 3: 900}
_MOST_LEVELS = 30  # most distinct distances in the box: the distance levels walk them one by one
_CHUNK_LOOKUPS = 1 << 16  # array look-ups per round (several offsets a round)
_NEEDED_ROUND = 32  # most offsets a round after the first for a percentile (stops early)
_FEW = 64  # unsettled voxels up to which comparing with every voxel beats a table or tree
_FEW_PAIRS = 1 << 20  # voxels beyond the rows times other voxels: below, compared with all
_FEW_LEFT = 256  # voxels beyond a distance level up to which look-ups beat widening further
# the distance level at which a percentile's walk, if still open, tests the whole box first
_BOX_TEST_LEVEL = 10
_SAMPLE_EVERY = 16  # the plain HD within the box: a lower bound from every 16th voxel
# slice spacing over in-plane spacing from which a volume is measured compiled whole
_THICK = 3.0
# Most packed bytes of a surface's box per surface voxel for counting by distance levels:
# whole-box work pays for a fair prediction (about 1.3 here), not for a few stray voxels
# that stretch the box over the whole volume (about 28).
_BYTES_PER_VOXEL = 4


def hausdorff_distance(
    pred: ArrayLike,
    target: ArrayLike,
    spacing: Sequence[float] | float | None = None,
    percentile: float | None = None,
) -> float:
    """Symmetric surface Hausdorff distance between two 2-D or 3-D masks (SPEC §8).

    Args:
        pred: predicted mask; boolean, or any dtype with non-zero as foreground.
        target: reference mask of the same shape.
        spacing: voxel size per axis in the array's axis order, or one value for all axes;
            ``None`` measures in voxels.
        percentile: ``None`` for the maximum (HD); e.g. ``95`` for HD95, the 95th percentile of
            each directed distance set, then the larger of the two. Must be in (0, 100].

    Returns:
        The distance in the unit of ``spacing``; NaN when both masks are empty, +inf when
        exactly one is.

    Shape:
        pred, target: (H, W) or (D, H, W).

    Example:
        >>> a = np.zeros((5, 5), bool); a[1:4, 1:4] = True
        >>> hausdorff_distance(a, np.roll(a, 1, axis=1))
        1.0
    """
    pred_mask, target_mask = to_mask(pred, "pred"), to_mask(target, "target")
    check_pair(pred_mask, target_mask, (2, 3))
    return float(_hausdorff_batch(pred_mask[None], target_mask[None], spacing, percentile)[0])


def hausdorff_distance_batch(
    pred: ArrayLike,
    target: ArrayLike,
    spacing: Sequence[float] | float | None = None,
    percentile: float | None = None,
) -> np.ndarray:
    """Hausdorff distance of each pair of masks in a batch, as :func:`hausdorff_distance`.

    Equal to calling :func:`hausdorff_distance` on every pair, but vectorised over the batch.

    Args:
        pred: predicted masks, the first axis indexes the batch.
        target: reference masks of the same shape.
        spacing: voxel size of the spatial axes (shared by all pairs), or one value.
        percentile: as in :func:`hausdorff_distance`.

    Returns:
        float64 array of N distances (NaN: both empty, +inf: exactly one empty).

    Shape:
        pred, target: (N, H, W) or (N, D, H, W); returns (N,).
    """
    pred_mask, target_mask = to_mask(pred, "pred"), to_mask(target, "target")
    check_pair(pred_mask, target_mask, (3, 4))
    return _hausdorff_batch(pred_mask, target_mask, spacing, percentile)


def _hausdorff_batch(
    pred: np.ndarray,
    target: np.ndarray,
    spacing: Sequence[float] | float | None,
    percentile: float | None,
) -> np.ndarray:
    """Hausdorff distances of N boolean mask pairs; see :func:`hausdorff_distance_batch`.

    Shape:
        pred, target: (N, *S) bool; returns (N,) float64.
    """
    if percentile is not None and not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100] or None, got {percentile}")
    n = pred.shape[0]
    scale = check_spacing(spacing, pred.ndim - 1)
    if compiled.available() and (pred.ndim == 3 or scale[0] >= _THICK * scale[1:].max()):
        # slices, and volumes of thick slices: the whole pair compiled (measured faster there;
        # on near-isotropic volumes the distance levels below count ties faster)
        return compiled.hausdorff_pairs(pred, target, scale, percentile)
    pred_bits = pack_rows(pred)  # (N, *S[:-1], bytes): 8 voxels a byte
    target_bits = pack_rows(target)
    pred_any = pred_bits.reshape(n, -1).any(axis=1)
    target_any = target_bits.reshape(n, -1).any(axis=1)
    result = np.full(n, np.nan)
    result[pred_any != target_any] = np.inf
    both = np.flatnonzero(pred_any & target_any)
    if both.size == 0:
        return result
    radii, offsets, offset_distances = _lookup_offsets(tuple(scale.tolist()))
    surf = surfaces(pred_bits, target_bits, both, radii)
    # C-order strides of the spatial axes turn an offset into a step between flat indices
    strides = np.array([math.prod(surf.shape[axis + 1 :]) for axis in range(1, len(surf.shape))])
    flat_steps = offsets @ strides
    block = math.prod(surf.shape[1:])  # pair i has the flat indices [i * block, (i+1) * block)
    queries = (surf.pred_flat, surf.target_flat)
    # A single pair by distance levels when its voxels are many for the box; a box widened
    # by stray voxels over the whole volume takes the per-voxel path (look-ups cost less).
    voxels = surf.pred_flat.size + surf.target_flat.size
    if both.size == 1 and surf.pred_bits.size <= _BYTES_PER_VOXEL * voxels:
        result[both] = _single_pair(surf, scale, percentile, flat_steps, offset_distances)
        return result
    elif percentile is None and both.size == 1:
        gap = box_gap(surf.pred_bits, surf.target_bits, scale)  # a lower bound on the HD
        if worth_pruning(gap, scale):  # a far speck: most voxels cannot be the farthest
            queries = candidates(surf.pred_flat, surf.target_flat, surf.shape, scale)
    # where numba is installed, a box stretched by stray voxels is searched compiled from the
    # start for the plain HD, and for percentiles at thick slices: with near-cubic voxels the
    # look-ups, which stop once a percentile's rank is settled, cost less (measured)
    searched = compiled.available() and len(surf.shape) == 4
    thick = searched and scale[0] >= _THICK * scale[1:].max()
    directions, needs = [], []
    for d, (query_flat, other_flat) in enumerate(
        ((queries[0], surf.target_flat), (queries[1], surf.pred_flat))
    ):
        needed = _needed(query_flat // block, both.size, percentile)
        if searched and (needed is None or thick):
            # nearest first as the look-ups: exact up to the box's reach, then as needed
            reach = math.inf if needed is None else float(offset_distances[-1])
            distances = compiled.nearest_distances(query_flat, other_flat, surf.shape, scale, reach)
            pending = np.flatnonzero(distances == np.inf)
            if needed is not None and pending.size:
                pending = pending[needed(pending)]
        else:  # (the unpacked look-up arrays only here: the compiled search needs none)
            other_lookup = surf.target_lookup if d == 0 else surf.pred_lookup
            distances, pending = _look_up(
                query_flat, other_lookup, flat_steps, offset_distances, needed
            )
        if pending.size:
            pending = _measure(
                query_flat, other_flat, distances, pending, surf.shape, scale, needed
            )
        directions.append((query_flat, other_flat, distances, pending))
        needs.append(needed)
    if percentile is None:
        result[both] = farthest(directions, surf.shape, scale)
        return result
    directed = []
    for (query_flat, other_flat, distances, pending), needed in zip(directions, needs, strict=True):
        groups = query_flat // block
        pending = pending[needed(pending)]
        if pending.size:
            distances[pending] = tree_distances(query_flat[pending], other_flat, surf.shape, scale)
        directed.append(_reduce(distances, groups, both.size, percentile))
    result[both] = np.maximum(*directed)
    return result


def _single_pair(
    surf: Surfaces,
    scale: np.ndarray,
    percentile: float | None,
    flat_steps: np.ndarray,
    step_distances: np.ndarray,
) -> float:
    """HD or percentile HD of a single pair, counting voxels by distance level (``_far.py``).

    Look-up distances are discrete: the distinct offset distances of the box. Widening both
    surfaces level by level and counting the voxels within each level gives the sorted
    distances without measuring any voxel: the value at a rank is the first level whose
    count passes the rank. When few voxels are left beyond the level reached, or a rank lies
    beyond the whole box, the voxels beyond are measured one by one instead (look-ups with
    only the offsets beyond the level, then row scans and the KD-tree). For the plain HD,
    voxels with nothing in the whole box (far) hold the maximum when there are any: they
    alone are measured.

    Args:
        surf: the surfaces of one pair.
        scale: the voxel spacing.
        percentile: as in :func:`hausdorff_distance`.
        flat_steps, step_distances: the look-up offsets as flat index steps, and their
            distances.

    Returns:
        The distance.
    """
    spacing = tuple(scale.tolist())
    size = surf.pred_bits.size
    totals = np.array([surf.pred_flat.size, surf.target_flat.size])
    whole = _ball(spacing, None)  # the whole box: the largest span any ball needs
    dilations = Dilations(surf.bits, surf.pred_bits.shape, int(whole[1].max()))
    if percentile is None:
        near = dilations.within(*whole)  # (2 * P,) voxels with the other within the box
        if np.any(popcount(near.reshape(2, size)) < totals):
            return _farthest_beyond(surf, scale, near)
        return _farthest_within(surf, spacing, dilations, flat_steps, step_distances)
    rank = percentile / 100.0 * (totals - 1)
    low = np.floor(rank).astype(np.int64)
    high = np.minimum(low + 1, totals - 1)
    lower, upper = [math.nan, math.nan], [math.nan, math.nan]  # the values at low and high
    levels = _level_plan(spacing)
    widening = Widening(dilations, levels)
    test_level = _box_test_level(surf, levels, scale[0], low)
    for level, distance in enumerate(levels.distances.tolist()):
        if level == test_level:
            # Ranks beyond the whole box (a missed slice, say) skip the rest of the walk:
            # only the voxels beyond the box are measured, as far as the ranks need.
            near = dilations.within(*whole)  # (2 * P,) voxels with the other in the box
            in_box = popcount(near.reshape(2, size))  # (2,)
            for d in range(2):
                if math.isnan(upper[d]) and in_box[d] <= low[d]:
                    lower[d], upper[d] = _ranked_beyond(
                        _voxels_outside(surf, near, d), d, flat_steps.size, int(in_box[d]),
                        (int(low[d]), int(high[d])), surf, scale, flat_steps, step_distances,
                    )  # fmt: skip
            if not any(math.isnan(upper[d]) for d in range(2)):
                break
        inside = widening.widen(level)
        counts = popcount(inside.reshape(2, size))  # (2,) voxels within ``distance``
        for d in range(2):
            if math.isnan(lower[d]) and counts[d] > low[d]:
                lower[d] = distance
            if math.isnan(upper[d]) and counts[d] > high[d]:
                upper[d] = distance
        open_ = [d for d in range(2) if math.isnan(upper[d])]
        if not open_:
            break
        last = level == levels.distances.size - 1
        if not last and sum(int(totals[d] - counts[d]) for d in open_) > _FEW_LEFT:
            continue
        # few voxels left beyond this level, or beyond the whole box: measured one by one
        for d in open_:
            ranked = _ranked_beyond(
                _voxels_outside(surf, inside, d), d, int(levels.ends[level]), int(counts[d]),
                (int(low[d]), int(high[d])), surf, scale, flat_steps, step_distances,
            )  # fmt: skip
            lower[d] = ranked[0] if math.isnan(lower[d]) else lower[d]
            upper[d] = ranked[1]
        break
    return max(
        lo + (r - k) * (up - lo) for lo, up, r, k in zip(lower, upper, rank, low, strict=True)
    )


def _box_test_level(surf: Surfaces, levels: Levels, step: float, low: np.ndarray) -> int:
    """The distance level at which a percentile's walk first tests the whole box.

    ``_BOX_TEST_LEVEL``, or 0 when a rank lies, for certain, among voxels at least a slice
    spacing away whose level the walk would reach only after that one: the voxels of slices
    where the other surface has none (a missed or an extra slice).

    Shape:
        low: (2,) the lower rank of each direction.
    """
    if levels.distances.size <= _BOX_TEST_LEVEL or levels.distances[_BOX_TEST_LEVEL] > step:
        return _BOX_TEST_LEVEL
    depth = surf.pred_bits.shape[1]
    per_slice = popcount(surf.bits.reshape(2, depth, -1))  # (2, Z) voxels of each slice
    totals = per_slice.sum(axis=1)
    for d in range(2):
        apart = int(per_slice[d][per_slice[1 - d] == 0].sum())  # a slice spacing away at least
        if low[d] >= totals[d] - apart:
            return 0
    return _BOX_TEST_LEVEL


def _ranked_beyond(
    voxels: np.ndarray,
    d: int,
    start: int,
    before: int,
    ranks: tuple[int, int],
    surf: Surfaces,
    scale: np.ndarray,
    flat_steps: np.ndarray,
    step_distances: np.ndarray,
) -> tuple[float, float]:
    """The distances at two ranks of a direction, from its voxels beyond a distance level.

    Args:
        voxels: flat indices of direction ``d``'s voxels beyond the level (sorted).
        d: 0 for the prediction's voxels (measured to the reference), 1 the other way.
        start: the first look-up offset that can hit them.
        before: how many of the direction's voxels lie within the level (ranks below).
        ranks: the two ranks (low, high) among all of the direction's distances; the high
            one at least ``before``.
        surf, scale, flat_steps, step_distances: as in :func:`_beyond_level`.

    Returns:
        The distances at the two ranks; at the low one, NaN if it lies within the level.
    """
    first, second = ranks[0] - before, ranks[1] - before  # ranks among the voxels beyond
    found = _beyond_level(voxels, d, start, surf, scale, flat_steps, step_distances, second + 1)
    ordered = np.partition(found, [max(first, 0), second])
    return float(ordered[first]) if first >= 0 else math.nan, float(ordered[second])


def _beyond_level(
    voxels: np.ndarray,
    d: int,
    start: int,
    surf: Surfaces,
    scale: np.ndarray,
    flat_steps: np.ndarray,
    step_distances: np.ndarray,
    wanted: int,
) -> np.ndarray:
    """Exact distances of voxels with nothing of the other surface in the first offsets.

    Look-ups with the offsets from ``start`` on, then row scans and the KD-tree for those
    beyond the box (as in the general path). Distances settle nearest first, so once the
    ``wanted`` smallest are settled the rest are not measured (left at +inf: farther than
    all of them).

    Args:
        voxels: flat indices of the voxels (sorted), of direction ``d``'s surface.
        d: 0 for the prediction's voxels (measured to the reference), 1 the other way.
        start: the first look-up offset that can hit.
        surf, scale: the surfaces and the voxel spacing.
        flat_steps, step_distances: the look-up offsets as flat index steps, and their
            distances.
        wanted: how many of the smallest distances must be exact.

    Shape:
        voxels: (V,); returns (V,).
    """
    other_lookup, other_flat = (
        (surf.target_lookup, surf.target_flat) if d == 0 else (surf.pred_lookup, surf.pred_flat)
    )

    def needed(pending: np.ndarray) -> np.ndarray:  # all until the wanted ones are settled
        return np.full(pending.size, voxels.size - pending.size < wanted)

    distances = np.full(voxels.size, np.inf)
    pending = np.arange(voxels.size)
    if start < flat_steps.size:
        distances, pending = _look_up(
            voxels, other_lookup, flat_steps[start:], step_distances[start:], needed
        )
    if pending.size:
        pending = _measure(voxels, other_flat, distances, pending, surf.shape, scale, needed)
    if pending.size:
        distances[pending] = tree_distances(voxels[pending], other_flat, surf.shape, scale)
    return distances


def _farthest_within(
    surf: Surfaces,
    spacing: tuple[float, ...],
    dilations: Dilations,
    flat_steps: np.ndarray,
    step_distances: np.ndarray,
) -> float:
    """The plain HD of a pair whose voxels all lie within the look-up box of the other.

    The largest distance of a sample of voxels (every ``_SAMPLE_EVERY``-th, looked up) is a
    lower bound on the HD: the voxels with a voxel of the other surface in the ball of the
    offsets no longer than it cannot exceed it (found for all at once, ``_far.py``; with a
    bound of 0, the voxels on both surfaces); the few others are looked up with only the
    offsets beyond that ball.

    Args:
        surf: the surfaces of one pair.
        spacing: the voxel spacing.
        dilations: the pair's surfaces dilated along rows (``_far.py``).
        flat_steps, step_distances: the look-up offsets as flat index steps, and their
            distances.
    """
    lookups = (surf.target_lookup, surf.pred_lookup)
    bound = 0.0
    for query_flat, other_lookup in zip((surf.pred_flat, surf.target_flat), lookups, strict=True):
        found, _ = _look_up(query_flat[::_SAMPLE_EVERY], other_lookup, flat_steps, step_distances)
        bound = max(bound, float(found.max()))
    # voxels with the other within ``bound`` (the offsets up to it: a ball) cannot exceed it
    count = int(np.searchsorted(step_distances, bound, side="right"))
    near = dilations.within(*_ball(spacing, count))
    largest = bound
    for d, other_lookup in enumerate(lookups):
        beyond = _voxels_outside(surf, near, d)  # at least ``bound`` away
        if beyond.size:
            found, _ = _look_up(beyond, other_lookup, flat_steps[count:], step_distances[count:])
            largest = max(largest, float(found.max()))
    return largest


def _farthest_beyond(surf: Surfaces, scale: np.ndarray, near: np.ndarray) -> float:
    """The plain HD of a pair with far voxels: the largest distance among those alone.

    Args:
        surf: the surfaces of one pair.
        scale: the voxel spacing.
        near: each surface's voxels with a voxel of the other in the whole look-up box.
    """
    others = (surf.target_flat, surf.pred_flat)
    directions = []
    for d in range(2):
        far = _voxels_outside(surf, near, d)
        distances = np.full(far.size, np.inf)
        pending = np.arange(far.size)
        if far.size:
            pending = _measure(far, others[d], distances, pending, surf.shape, scale, None)
        directions.append((far, others[d], distances, pending))
    return float(farthest(directions, surf.shape, scale)[0])


def _voxels_outside(surf: Surfaces, near: np.ndarray, d: int) -> np.ndarray:
    """Flat indices of direction ``d``'s surface voxels whose bit is not set in ``near``.

    Shape:
        near: (2 * P,) uint8, the prediction's bytes then the reference's; returns (V,).
    """
    half = slice(d * surf.pred_bits.size, (d + 1) * surf.pred_bits.size)
    return bit_indices(surf.bits[half] & ~near[half])


@functools.lru_cache(maxsize=64)
def _ball(spacing: tuple[float, ...], count: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The ball of a spacing's first ``count`` look-up offsets (None: all), by rows; cached.

    The first offsets in order of distance, cut where the distance changes, are a ball.
    """
    return row_spans(_lookup_offsets(spacing)[1][:count])


@functools.lru_cache(maxsize=64)
def _level_plan(spacing: tuple[float, ...]) -> Levels:
    """The distance levels of a spacing's look-up box (``_far.level_plan``); cached."""
    _, offsets, distances = _lookup_offsets(spacing)
    return level_plan(offsets, distances)


def _measure(
    query_flat: np.ndarray,
    other_flat: np.ndarray,
    distances: np.ndarray,
    pending: np.ndarray,
    shape: tuple[int, ...],
    scale: np.ndarray,
    needed: Callable[[np.ndarray], np.ndarray] | None,
) -> np.ndarray:
    """Distances of the voxels the look-ups left: against every voxel if few, else by rows.

    Row scans pay in volumes, where reaching a distance ``r`` takes about ``pi r^2`` rows
    against a KD-tree's costly 3-D searches (measured on clean volumes with voxels 3-6 mm
    off: about 1 us a voxel by rows, table included, against 3 us by tree, build included).
    In 2-D the tree searches are cheap and a row table of a whole batch of slices is not
    (measured on speckled slices: 15 ms by rows against 8 by tree), so the rest of a 2-D
    batch goes to the KD-tree (the caller's last step).

    Args:
        query_flat, other_flat: flat indices of the query and the other surface.
        distances: distances of ``query_flat``, +inf at ``pending``; filled in place.
        pending: indices into ``query_flat`` of the voxels to measure.
        shape: shape (N, *S) of the batch.
        scale: voxel spacing of the spatial axes.
        needed: as in :func:`ctxseg.metrics._rows.scan`.

    Returns:
        The indices of the voxels still unsettled: farther than a row scan reaches (all in
        2-D), needed; none in volumes where the compiled search (``_compiled.py``) runs.
    """
    if compiled.available() and len(shape) == 4:  # the row search compiled: exact for all
        found = compiled.nearest_distances(query_flat[pending], other_flat, shape, scale)
        distances[pending] = found
        return pending[:0]
    offsets = row_offsets(tuple(scale.tolist()))
    if pending.size <= _FEW:
        reach = math.sqrt(offsets[2]) * scale[-1]  # as far as rows reach
        distances[pending] = few_distances(query_flat[pending], other_flat, shape, scale, reach)
        return pending[:0]
    if len(shape) < 4:  # 2-D masks: (N, H, W)
        return pending
    table = row_table(other_flat, shape, offsets, near=query_flat[pending])
    squared, left = scan(query_flat, pending, table, shape, offsets, needed)
    distances[pending] = np.sqrt(squared[pending]) * scale[-1]  # tables count row spacings
    distances[left] = np.inf
    if left.size and left.size * other_flat.size <= _FEW_PAIRS:
        distances[left] = few_distances(query_flat[left], other_flat, shape, scale)
        return left[:0]
    return left


@functools.lru_cache(maxsize=64)
def _lookup_offsets(spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The look-up box for a spacing and the offsets in it whose distance a look-up settles.

    The box has about the same physical reach along every axis (fewer voxels along a coarse
    axis) and is the widest with at most ``_LOOKUP_STEPS`` offsets: beyond that the look-ups
    cost more than what comes next spares (measured): the KD-tree in 2-D, row tables in 3-D.
    In 3-D the box holds up to 900 offsets and ``_MOST_LEVELS`` distinct distances (509
    offsets, 23 distances, 5 mm at 1 mm voxels; 183 offsets, 26 distances, 3.6 mm at 3 x
    0.625 x 0.625 mm): on volumes of real PROMISE12 labels at 1 mm, a box of 117 offsets
    left the voxels 3-5 mm off to row scans, which cost more than the longer look-ups; at
    3 x 0.625 x 0.625 mm a box of 837 offsets had 84 distances, and walking them cost more.

    Returns:
        ``(radii, offsets, distances)``: box half-widths in voxels (D,), offsets (K, D) and
        their distances (K,) sorted by distance; read-only (cached).
    """
    scale = np.asarray(spacing)
    budget = _LOOKUP_STEPS[min(scale.size, 3)]
    best = _steps(np.zeros(scale.size, np.int64), scale)
    for reach in range(1, 32):
        candidate = _steps(np.ceil(reach * scale.min() / scale).astype(np.int64), scale)
        if candidate[2].size > budget or np.unique(candidate[2]).size > _MOST_LEVELS:
            break
        best = candidate
    for array in best:
        array.flags.writeable = False
    return best


def _steps(radii: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets in the box of half-widths ``radii`` whose distance a look-up settles exactly.

    Every voxel outside the box is at least ``bound = min((radii + 1) * scale)`` away, so among
    the offsets within ``bound``, taken in order of distance, the first that lands on the other
    surface gives the exact nearest distance.

    Shape:
        radii, scale: (D,); returns radii, offsets (K, D) int64 and distances (K,), sorted by
        distance.
    """
    axes = [np.arange(-r, r + 1) for r in radii]
    offsets = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, radii.size)
    distances = np.sqrt(np.sum((offsets * scale) ** 2, axis=1))
    keep = distances <= np.min((radii + 1) * scale)
    order = np.argsort(distances[keep], kind="stable")
    return radii, offsets[keep][order], distances[keep][order]


def _look_up(
    query_flat: np.ndarray,
    other_lookup: np.ndarray,
    flat_steps: np.ndarray,
    step_distances: np.ndarray,
    needed: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the other surface settled by neighbour look-ups, nearest offsets first.

    Args:
        query_flat: flat indices of the first surface in the padded batch.
        other_lookup: the second surface as a flat boolean array over the padded batch.
        flat_steps: flat index steps of the look-up offsets, sorted by distance.
        step_distances: their distances.
        needed: as in :func:`ctxseg.metrics._rows.scan`; checked after every round, so a
            percentile stops once its rank is settled.

    Returns:
        ``(distances, pending)``: distances with +inf where unsettled, and the indices of
        the needed ones among those entries, whose distance exceeds every settled one.
    """
    distances = np.full(query_flat.size, np.inf)
    pending = np.arange(query_flat.size)
    start = 0
    while start < flat_steps.size and pending.size:
        # Offsets in chunks of about _CHUNK_LOOKUPS look-ups (all the rest once that many
        # cover them, or _NEEDED_ROUND at most for a percentile, to stop early), the first
        # hit in a chunk being the nearest: few Python rounds.
        stop = min(flat_steps.size, start + 255)  # (_first_hits codes offsets in a byte)
        if needed is not None and start:
            stop = min(stop, start + _NEEDED_ROUND)
        if pending.size * (stop - start) > _CHUNK_LOOKUPS:
            stop = start + max(1, _CHUNK_LOOKUPS // pending.size)
        # offsets first: reductions along the long (voxel) axis are the fast ones
        hits = other_lookup[flat_steps[start:stop, None] + query_flat[pending]]  # (K', P)
        nearest = _first_hits(hits, step_distances[start:stop])
        found = nearest < np.inf
        distances[pending[found]] = nearest[found]
        pending = pending[~found]
        if needed is not None and pending.size:
            pending = pending[needed(pending)]
        start = stop
    return distances, pending


def _first_hits(hits: np.ndarray, step_distances: np.ndarray) -> np.ndarray:
    """The distance of each voxel's first hit (+inf where none), offsets sorted by distance.

    Row k of hits is weighted K - k and the largest weight of a column names its first hit:
    a uint8 multiply and a maximum over the rows, both vectorised (``argmax`` along the
    offsets is not).

    Shape:
        hits: (K, P) bool, offsets by voxels (K <= 255); step_distances: (K,); returns (P,).
    """
    rows = hits.shape[0]
    weights = np.arange(rows, 0, -1, dtype=np.uint8)[:, None]  # (K, 1)
    code = (hits.view(np.uint8) * weights).max(axis=0)  # (P,): K - first hit, 0 for none
    nearest = np.full(hits.shape[1], np.inf)
    found = code > 0
    nearest[found] = step_distances[rows - code[found]]
    return nearest


def _needed(
    groups: np.ndarray, n: int, percentile: float | None
) -> Callable[[np.ndarray], np.ndarray] | None:
    """What tells which unsettled distances a percentile still needs exactly (None: the max).

    Distances settle nearest first, so the unsettled ones are the largest of their mask: a
    percentile whose rank falls among the settled ones does not need them (HD95 of a good
    prediction often needs no row scan or KD-tree); the maximum needs them all.

    Args:
        groups: mask index of every distance.
        n: number of masks.
        percentile: as in :func:`hausdorff_distance`.

    Returns:
        ``needed(pending)``: for the indices of the unsettled distances, which of them are
        needed; ``None`` for the maximum.

    Shape:
        groups: (P,); pending: (Q,); ``needed`` returns (Q,) bool.
    """
    if percentile is None:
        return None
    counts = _counts(groups, n)
    rank = percentile / 100.0 * (counts - 1)
    highest = np.minimum(np.floor(rank).astype(np.int64) + 1, counts - 1)  # as in _reduce
    slack = int(np.sum(counts - 1 - highest))  # unsettled distances some mask can spare

    def needed(pending: np.ndarray) -> np.ndarray:
        if pending.size > slack:  # most masks still need theirs: keeping all is always exact
            return np.ones(pending.size, bool)
        unsettled = _counts(groups[pending], n)
        return (highest >= counts - unsettled)[groups[pending]]

    return needed


def _counts(groups: np.ndarray, n: int) -> np.ndarray:
    """How many entries each of the n groups has (``bincount``, skipped for one group).

    Shape:
        groups: (P,) in ``range(n)``; returns (n,).
    """
    return np.array([groups.size]) if n == 1 else np.bincount(groups, minlength=n)


def _reduce(
    distances: np.ndarray, groups: np.ndarray, n: int, percentile: float | None
) -> np.ndarray:
    """Per-group maximum or percentile (linear interpolation, as ``torch.quantile``).

    Shape:
        distances, groups: (P,) with ``groups`` sorted; returns (n,). Every group in
        ``range(n)`` must have at least one value.
    """
    if n == 1 and percentile is None:
        return np.max(distances, keepdims=True)
    counts = _counts(groups, n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if percentile is None:
        return np.maximum.reduceat(distances, starts)
    rank = percentile / 100.0 * (counts - 1)
    low = np.floor(rank).astype(np.int64)
    high = np.minimum(low + 1, counts - 1)
    if n == 1:  # one volume: partial sorting around the two ranks is enough
        ordered = np.partition(distances, np.unique([low[0], high[0]]))
    else:  # sorted within each mask: one sort of the mask index plus the (capped) distance
        # (two distances closer than the key's rounding, some 1e-10, may swap: no difference)
        cap = 2.0 * float(np.max(distances, where=np.isfinite(distances), initial=0.0)) + 1.0
        key = groups * (2.0 * cap) + np.minimum(distances, cap)
        ordered = distances[np.argsort(key, kind="stable")]  # (fast on the sorted groups)
    below, above = ordered[starts + low], ordered[starts + high]
    return below + (rank - low) * (above - below)
