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
foreground box and eroded together (``_surface.py``). A surface voxel whose nearest voxel on
the other surface lies in a small neighbourhood (the usual case) gets its distance from array
look-ups, nearest offsets first; only the rest go to a KD-tree, one per direction for the
whole batch, with the batch index as an extra coordinate spaced so far apart that every
nearest neighbour is found in its own mask. ``benchmarks/bench_metrics.py`` compares the
speed with MONAI's.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from ctxseg.metrics._arrays import ArrayLike, check_pair, check_spacing, to_mask
from ctxseg.metrics._surface import mask_edges, pack_rows, surfaces

__all__ = ["hausdorff_distance", "hausdorff_distance_batch", "mask_edges"]

_LOOKUP_STEPS = 128  # most neighbour offsets tried by array look-ups before the KD-tree
# the fastest cKDTree settings in benchmarks/bench_metrics.py (few queries per tree)
_TREE_OPTIONS = {"leafsize": 64, "balanced_tree": False, "compact_nodes": False}
_CHUNK_LOOKUPS = 1 << 16  # array look-ups per round (several offsets a round)
_SAMPLE_EVERY = 4  # for the plain HD, query every 4th far voxel first, then only possible maxima
_ONE_BY_ONE = 8  # unsettled voxels the plain HD measures one by one before a KD-tree
_BOUND_EVERY = 16  # the plain HD bounds unsettled distances through every 16th other voxel
_CELL_VOXELS = 12  # the plain HD's coarse cells: about 12 voxels of the finest spacing wide
_CELL_PAIRS = 1 << 18  # cell pairs up to which their distances are computed all at once


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
    if percentile is None and both.size == 1:
        queries = _candidates(surf.pred_flat, surf.target_flat, surf.shape, scale)
    directions = []
    for query_flat, other_lookup, other_flat in (
        (queries[0], surf.target_lookup, surf.target_flat),
        (queries[1], surf.pred_lookup, surf.pred_flat),
    ):
        distances, pending = _look_up(query_flat, other_lookup, flat_steps, offset_distances)
        directions.append((query_flat, other_flat, distances, pending))
    if percentile is None:
        result[both] = _maximum(directions, surf.shape, scale)
        return result
    directed = []
    for query_flat, other_flat, distances, pending in directions:
        groups = query_flat // block
        pending = pending[_needed(groups, pending, both.size, percentile)]
        if pending.size:
            distances[pending] = _tree_distances(query_flat[pending], other_flat, surf.shape, scale)
        directed.append(_reduce(distances, groups, both.size, percentile))
    result[both] = np.maximum(*directed)
    return result


def _candidates(
    pred_flat: np.ndarray, target_flat: np.ndarray, shape: tuple[int, ...], scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The voxels of a single pair's surfaces that can be the farthest (plain HD).

    Coarse cells (about ``_CELL_VOXELS`` of the finest spacing wide) bound every voxel's
    distance: with ``D`` the distance from its cell's centre to the nearest centre of a cell
    holding the other surface and ``w`` the cell diagonal, it lies in ``[D - w, D + w]``. The
    HD is at least the largest lower bound, so a voxel whose upper bound is below it cannot
    be the farthest: a far false-positive speck leaves little else to look up.

    Shape:
        pred_flat, target_flat: sorted flat indices in the padded (1, *S) batch; returns
        subsets of both.
    """
    cells = np.maximum(1, np.round(_CELL_VOXELS * scale.min() / scale)).astype(np.int64)
    grid = (1, *(-(-np.asarray(shape[1:]) // cells)).tolist())
    cell_of = [_cell_index(flat, shape, cells) for flat in (pred_flat, target_flat)]
    centres = []
    for cell in cell_of:
        occupied = np.zeros(math.prod(grid), bool)
        occupied[cell] = True
        centres.append(np.flatnonzero(occupied))
    points = [_points(c, grid, cells * scale) for c in centres]  # corners: same shift for all
    near = _cell_distances(points[0], points[1])
    # the cell diagonal, plus a margin for the rounding in _cell_distances
    extent = float(np.sqrt(np.sum((np.asarray(shape[1:]) * scale) ** 2)))
    diagonal = float(np.sqrt(np.sum(((cells - 1) * scale) ** 2))) + 1e-6 * (1.0 + extent)
    lower = max(float(near[0].max()), float(near[1].max())) - diagonal
    kept = []
    for flat, cell, centre, distance in zip(
        (pred_flat, target_flat), cell_of, centres, near, strict=True
    ):
        possible = np.zeros(math.prod(grid), bool)
        possible[centre[distance + diagonal >= lower]] = True
        kept.append(flat[possible[cell]])
    return kept[0], kept[1]


def _cell_index(flat: np.ndarray, shape: tuple[int, ...], cells: np.ndarray) -> np.ndarray:
    """Flat index of each voxel's cell in the grid of ``cells``-voxel cells (one pair).

    Shape:
        flat: (P,) indices into (1, *S); cells: (len(S),); returns (P,).
    """
    index = np.zeros_like(flat)
    rest, size = flat, 1
    for axis in range(len(shape) - 1, 0, -1):
        above = rest // shape[axis]
        index += (rest - above * shape[axis]) // cells[axis - 1] * size
        size *= -(-shape[axis] // int(cells[axis - 1]))
        rest = above
    return index


def _cell_distances(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each point of one set to the nearest of the other, both ways.

    Accurate to about 1e-8 of the coordinates' size: few cells go all pairs at once by a
    matrix product (rounding errors far below the margin :func:`_candidates` adds), many to
    KD-trees.

    Shape:
        first: (P, D), second: (M, D); returns (P,) and (M,).
    """
    if first.shape[0] * second.shape[0] > _CELL_PAIRS:
        return (
            cKDTree(second, **_TREE_OPTIONS).query(first, k=1)[0],
            cKDTree(first, **_TREE_OPTIONS).query(second, k=1)[0],
        )
    squared = np.einsum("md,md->m", second, second) - 2.0 * (first @ second.T)  # (P, M)
    squared += np.einsum("pd,pd->p", first, first)[:, None]
    return (
        np.sqrt(np.maximum(squared.min(axis=1), 0.0)),
        np.sqrt(np.maximum(squared.min(axis=0), 0.0)),
    )


def _maximum(
    directions: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    shape: tuple[int, ...],
    scale: np.ndarray,
) -> np.ndarray:
    """The plain HD of each pair from both directions' look-ups, querying the KD-tree little.

    Only the largest distance counts, so an unsettled voxel needs its exact distance only if
    it can exceed the largest exact one known for its pair. Its distance to a sample of the
    other surface (every ``_BOUND_EVERY``-th voxel: a small, quick tree) bounds it from
    above; the direction with the larger bounds goes first, and what it finds usually spares
    the other direction its full tree (a false-positive speck far away, say, outweighs every
    voxel of the reference).

    Args:
        directions: per direction ``(query_flat, other_flat, distances, pending)`` as from
            :func:`_look_up`; ``distances`` is filled in place.
        shape: shape (N, *S) of the padded batch.
        scale: voxel spacing of the spatial axes.

    Shape:
        returns (N,).
    """
    block = math.prod(shape[1:])
    found = np.zeros(shape[0])  # the largest exact distance known for each pair
    upper = []
    for query_flat, other_flat, distances, pending in directions:
        if distances.size:  # (a direction can have no candidates left)
            settled = np.where(distances < np.inf, distances, 0.0)
            found = np.maximum(found, _reduce(settled, query_flat // block, shape[0], None))
        bound = np.empty(0)
        if pending.size:
            sample = cKDTree(_points(other_flat[::_BOUND_EVERY], shape, scale), **_TREE_OPTIONS)
            bound = sample.query(_points(query_flat[pending], shape, scale), k=1)[0]
        upper.append(bound)
    for i in sorted(range(2), key=lambda i: -np.max(upper[i], initial=-np.inf)):
        query_flat, other_flat, distances, pending = directions[i]
        groups = query_flat // block
        distances[pending] = 0.0  # cannot exceed ``found``, unless needed below
        needed = _largest_first(
            query_flat, other_flat, pending, upper[i], found, distances, shape, scale
        )
        if needed.size:
            distances[needed] = _tree_distances(
                query_flat[needed], other_flat, shape, scale, only_max=True
            )
            np.maximum.at(found, groups[needed], distances[needed])
    return found


@functools.lru_cache(maxsize=64)
def _lookup_offsets(spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The look-up box for a spacing and the offsets in it whose distance a look-up settles.

    The box has about the same physical reach along every axis (fewer voxels along a coarse
    axis) and is the widest with at most ``_LOOKUP_STEPS`` offsets: beyond that the look-ups
    cost more than the KD-tree queries they save.

    Returns:
        ``(radii, offsets, distances)``: box half-widths in voxels (D,), offsets (K, D) and
        their distances (K,) sorted by distance; read-only (cached).
    """
    scale = np.asarray(spacing)
    best = _steps(np.zeros(scale.size, np.int64), scale)
    for reach in range(1, 16):
        candidate = _steps(np.ceil(reach * scale.min() / scale).astype(np.int64), scale)
        if candidate[2].size > _LOOKUP_STEPS:
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
) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the other surface settled by neighbour look-ups, nearest offsets first.

    Args:
        query_flat: flat indices of the first surface in the padded batch.
        other_lookup: the second surface as a flat boolean array over the padded batch.
        flat_steps: flat index steps of the look-up offsets, sorted by distance.
        step_distances: their distances.

    Returns:
        ``(distances, pending)``: distances with +inf where unsettled, and the indices of
        those entries, whose distance exceeds every settled one.
    """
    distances = np.full(query_flat.size, np.inf)
    pending = np.arange(query_flat.size)
    start = 0
    while start < flat_steps.size and pending.size:
        # Offsets in chunks of about _CHUNK_LOOKUPS look-ups (all the rest once that many
        # cover them), the first hit in a chunk being the nearest: few Python rounds.
        stop = flat_steps.size
        if pending.size * (stop - start) > _CHUNK_LOOKUPS:
            stop = start + max(1, _CHUNK_LOOKUPS // pending.size)
        # offsets first: reductions along the long (voxel) axis are the fast ones
        hits = other_lookup[flat_steps[start:stop, None] + query_flat[pending]]  # (K', P)
        nearest = _first_hits(hits, step_distances[start:stop])
        found = nearest < np.inf
        distances[pending[found]] = nearest[found]
        pending = pending[~found]
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
    groups: np.ndarray, pending: np.ndarray, n: int, percentile: float | None
) -> np.ndarray:
    """Which unsettled distances the result needs exactly.

    The unsettled distances are the largest of their mask, so a percentile that falls among
    the settled ones does not need them (HD95 of a good prediction often needs no KD-tree);
    the maximum needs them all.

    Shape:
        groups: (P,) mask index of every distance; pending: (Q,); returns (Q,) bool.
    """
    if percentile is None or pending.size == 0:
        return np.ones(pending.size, bool)
    counts = _counts(groups, n)
    unsettled = _counts(groups[pending], n)
    rank = percentile / 100.0 * (counts - 1)
    highest = np.minimum(np.floor(rank).astype(np.int64) + 1, counts - 1)  # as in _reduce
    return (highest >= counts - unsettled)[groups[pending]]


def _largest_first(
    query_flat: np.ndarray,
    other_flat: np.ndarray,
    pending: np.ndarray,
    upper: np.ndarray,
    found: np.ndarray,
    distances: np.ndarray,
    shape: tuple[int, ...],
    scale: np.ndarray,
) -> np.ndarray:
    """Measure the unsettled voxels with the largest upper bounds one by one, exactly.

    Each measured voxel (its distance to every voxel of its pair's other surface, cheaper
    than a KD-tree for a few voxels) raises ``found`` and drops the voxels whose bounds no
    longer exceed it; after ``_ONE_BY_ONE`` voxels the rest is left to the KD-tree. A batch
    of several pairs goes to the tree at once (one voxel prunes only its own pair).

    Args:
        query_flat, other_flat: flat indices of the query and the other surface.
        pending: indices into ``query_flat`` of the unsettled voxels.
        upper: (len(pending),) upper bounds of their distances.
        found: (N,) largest exact distance known per pair; raised in place.
        distances: distances of ``query_flat``; the measured ones are written in place.
        shape: shape (N, *S) of the padded batch.
        scale: voxel spacing of the spatial axes.

    Returns:
        The indices into ``query_flat`` still needed (bound above ``found``), unmeasured.
    """
    block = math.prod(shape[1:])
    groups = query_flat[pending] // block
    alive = upper > found[groups]
    group, others = -1, None
    for _ in range(_ONE_BY_ONE if shape[0] == 1 else 0):
        if not alive.any():
            break
        j = int(np.argmax(np.where(alive, upper, -np.inf)))
        if groups[j] != group:  # the other surface of this voxel's pair
            group = int(groups[j])
            lo, hi = np.searchsorted(other_flat, [group * block, (group + 1) * block])
            others = _points(other_flat[lo:hi], shape, scale)
        point = _points(query_flat[pending[j : j + 1]], shape, scale)
        difference = others - point  # (M, D)
        distances[pending[j]] = np.sqrt(np.min(np.einsum("md,md->m", difference, difference)))
        found[group] = max(found[group], distances[pending[j]])
        alive &= upper > found[groups]
        alive[j] = False
    return pending[alive]


def _tree_distances(
    query_flat: np.ndarray,
    other_flat: np.ndarray,
    shape: tuple[int, ...],
    scale: np.ndarray,
    only_max: bool = False,
) -> np.ndarray:
    """Distances from surface voxels to the nearest voxel of the other surface, by KD-tree.

    With ``only_max`` just each mask's largest distance must be exact: every
    ``_SAMPLE_EVERY``-th voxel is queried first, and a voxel whose distance cannot exceed its
    mask's largest sampled one (the distance to a set moves by at most the step between two
    voxels) is not queried; it gets 0 instead.

    Args:
        query_flat: sorted flat indices of the query voxels in the padded batch.
        other_flat: flat indices of the other surface.
        shape: shape (N, *S) of the padded batch.
        scale: voxel spacing of the spatial axes.
        only_max: need only the per-mask maximum.

    Returns:
        (Q,) float64 distances (exact, or with ``only_max`` exact where they can be a maximum).
    """
    # Nearest neighbours stay in their own mask, so the tree needs only the masks queried.
    block = math.prod(shape[1:])
    groups = query_flat // block
    queried = np.zeros(shape[0], bool)
    queried[groups] = True
    other_flat = other_flat[queried[other_flat // block]]
    tree = cKDTree(_points(other_flat, shape, scale), **_TREE_OPTIONS)
    points = _points(query_flat, shape, scale)
    if not only_max or query_flat.size < 4 * _SAMPLE_EVERY:
        return tree.query(points, k=1)[0]
    sampled = np.arange(0, query_flat.size, _SAMPLE_EVERY)
    distances = np.zeros(query_flat.size)
    distances[sampled] = tree.query(points[sampled], k=1)[0]
    largest = np.full(shape[0], -np.inf)
    np.maximum.at(largest, groups[sampled], distances[sampled])
    # Bound each voxel's distance through the sampled voxels before and after it (through a
    # voxel of another mask the bound exceeds the gap between masks: no voxel is skipped).
    bound = np.full(query_flat.size, np.inf)
    positions = np.arange(query_flat.size)
    for anchor in (
        positions - positions % _SAMPLE_EVERY,
        np.minimum(positions - positions % _SAMPLE_EVERY + _SAMPLE_EVERY, sampled[-1]),
    ):
        through = distances[anchor] + np.linalg.norm(points - points[anchor], axis=1)
        bound = np.minimum(bound, through)
    rest = np.flatnonzero((bound > largest[groups]) & (positions % _SAMPLE_EVERY != 0))
    distances[rest] = tree.query(points[rest], k=1)[0]
    return distances


def _points(flat: np.ndarray, shape: tuple[int, ...], scale: np.ndarray) -> np.ndarray:
    """Physical coordinates of voxels, with the batch index as a far-apart first coordinate.

    Any in-mask distance is below the diagonal of the box, so a gap between masks larger than
    that keeps every nearest neighbour inside its own mask (each mask has points in both
    surfaces). A single mask needs no batch coordinate.

    Shape:
        flat: (P,) indices into an array of ``shape`` (N, *S); returns (P, len(S) [+ 1]).
    """
    batched = shape[0] > 1
    points = np.empty((flat.size, len(shape) - 1 + batched))
    rest = flat
    for axis in range(len(shape) - 1, 0, -1):  # division by a scalar: much faster than unravel
        above = rest // shape[axis]
        points[:, axis - 1 + batched] = (rest - above * shape[axis]) * scale[axis - 1]
        rest = above
    if batched:
        gap = 2.0 * float(np.sqrt(np.sum((np.asarray(shape[1:]) * scale) ** 2))) + 1.0
        points[:, 0] = rest * gap
    return points


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
    else:
        ordered = distances[np.lexsort((distances, groups))]
    below, above = ordered[starts + low], ordered[starts + high]
    return below + (rank - low) * (above - below)
