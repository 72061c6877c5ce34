"""Exact distances from surface voxels to the other surface for the far ones (SPEC §8's HD).

The voxels that the array look-ups and the row scans of :mod:`ctxseg.metrics.hausdorff`
leave unsettled get their distance here: a handful against every voxel of the other surface,
more by KD-tree. Voxels are points in physical coordinates; for a batch, the pair index is an
extra coordinate spaced so far apart that every nearest neighbour is found in its own pair.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["TREE_OPTIONS", "few_distances", "points", "tree_distances"]

# the fastest cKDTree settings in benchmarks/bench_metrics.py (few queries per tree)
TREE_OPTIONS = {"leafsize": 64, "balanced_tree": False, "compact_nodes": False}
# Most multiply-adds in one matrix product of few_distances: OpenBLAS runs products of up to
# 4 * 65536 on one thread; larger ones wake its threads, which then spin for a while on the
# other cores (twice the CPU time on 2 cores for no gain at these sizes).
_SERIAL_PRODUCT = 1 << 18
_SAMPLE_EVERY = 4  # for the plain HD, query every 4th far voxel first, then only possible maxima


def tree_distances(
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
    tree = cKDTree(points(other_flat, shape, scale), **TREE_OPTIONS)
    coords = points(query_flat, shape, scale)
    if not only_max or query_flat.size < 4 * _SAMPLE_EVERY:
        return tree.query(coords, k=1)[0]
    sampled = np.arange(0, query_flat.size, _SAMPLE_EVERY)
    distances = np.zeros(query_flat.size)
    distances[sampled] = tree.query(coords[sampled], k=1)[0]
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
        through = distances[anchor] + np.linalg.norm(coords - coords[anchor], axis=1)
        bound = np.minimum(bound, through)
    rest = np.flatnonzero((bound > largest[groups]) & (positions % _SAMPLE_EVERY != 0))
    distances[rest] = tree.query(coords[rest], k=1)[0]
    return distances


def few_distances(
    query_flat: np.ndarray,
    other_flat: np.ndarray,
    shape: tuple[int, ...],
    scale: np.ndarray,
    reach: float | None = None,
) -> np.ndarray:
    """Exact distances of a few voxels, each against every voxel of its pair's other surface.

    For a handful of voxels this costs less than building a KD-tree or a row table. With
    ``reach``, the voxels are first compared only with the other surface's voxels in the
    slab of first-axis slices within ``reach`` of theirs (a contiguous run of the sorted
    indices): a distance no larger than the slab's edge is exact, since every voxel outside
    lies farther along that axis alone; the rest are compared with all.

    Args:
        query_flat: flat indices of the voxels (a few) in the batch of ``shape``.
        other_flat: sorted flat indices of the other surface.
        shape: shape (N, *S) of the batch.
        scale: voxel spacing of the spatial axes.
        reach: the slab's half-width along the first spatial axis, or None (no slab).

    Shape:
        query_flat: (Q,); returns (Q,).
    """
    if reach is not None and query_flat.size:
        plane = math.prod(shape[2:])  # flat indices per slice of the first spatial axis
        first, last = int(query_flat.min()) // plane, int(query_flat.max()) // plane
        pair = first // shape[1] * shape[1]  # the first slice of the first voxel's pair
        if last < pair + shape[1]:  # all in one pair: the slab stays within it
            width = int(reach // scale[0])  # slices on each side of the queries' own
            lo = max(first - width, pair) * plane
            hi = min(last + width + 1, pair + shape[1]) * plane
            start, stop = np.searchsorted(other_flat, [lo, hi])
            if stop > start:
                distances = _all_pairs(query_flat, other_flat[start:stop], shape, scale)
                beyond = distances > (width + 1) * scale[0]  # something outside may be nearer
                if beyond.any():
                    distances[beyond] = _all_pairs(query_flat[beyond], other_flat, shape, scale)
                return distances
    return _all_pairs(query_flat, other_flat, shape, scale)


def _all_pairs(
    query_flat: np.ndarray, other_flat: np.ndarray, shape: tuple[int, ...], scale: np.ndarray
) -> np.ndarray:
    """Exact distances of voxels, each against every given voxel of its pair.

    Shape:
        query_flat: (Q,); other_flat: (M,) sorted; returns (Q,).
    """
    block = math.prod(shape[1:])
    single = (1, *shape[1:])  # coordinates within a pair
    pairs = query_flat // block
    distances = np.full(query_flat.size, np.inf)  # (inf: no other voxel given in the pair)
    if pairs.size == 0:
        return distances
    lowest, highest = int(pairs.min()), int(pairs.max())
    for pair in [lowest] if lowest == highest else np.unique(pairs).tolist():
        lo, hi = np.searchsorted(other_flat, [pair * block, (pair + 1) * block])
        if hi == lo:
            continue
        others = points(other_flat[lo:hi] - pair * block, single, scale)  # (M, D)
        # |o - q|^2 - |q|^2 = |o|^2 - 2 o.q: one matrix product of (q, 1) with (-2 o, |o|^2)
        # ranks the other voxels for each query voxel
        weights = np.empty((others.shape[1] + 1, others.shape[0]))  # (D + 1, M)
        np.multiply(others.T, -2.0, out=weights[:-1])
        weights[-1] = np.einsum("md,md->m", others, others)
        mine = np.flatnonzero(pairs == pair)
        rows = max(1, _SERIAL_PRODUCT // weights.size)
        for start in range(0, mine.size, rows):
            chunk = mine[start : start + rows]
            queries = np.ones((chunk.size, weights.shape[0]))  # (Q', D + 1)
            queries[:, :-1] = points(query_flat[chunk] - pair * block, single, scale)
            nearest = others[np.argmin(queries @ weights, axis=1)]  # (Q', D)
            # the distance itself from the difference (no cancellation error)
            distances[chunk] = np.sqrt(np.sum((nearest - queries[:, :-1]) ** 2, axis=1))
    return distances


def points(flat: np.ndarray, shape: tuple[int, ...], scale: np.ndarray) -> np.ndarray:
    """Physical coordinates of voxels, with the batch index as a far-apart first coordinate.

    Any in-mask distance is below the diagonal of the box, so a gap between masks larger than
    that keeps every nearest neighbour inside its own mask (each mask has points in both
    surfaces). A single mask needs no batch coordinate.

    Shape:
        flat: (P,) indices into an array of ``shape`` (N, *S); returns (P, len(S) [+ 1]).
    """
    batched = shape[0] > 1
    coords = np.empty((flat.size, len(shape) - 1 + batched))
    rest = flat
    for axis in range(len(shape) - 1, 0, -1):  # division by a scalar: much faster than unravel
        above = rest // shape[axis]
        coords[:, axis - 1 + batched] = (rest - above * shape[axis]) * scale[axis - 1]
        rest = above
    if batched:
        gap = 2.0 * float(np.sqrt(np.sum((np.asarray(shape[1:]) * scale) ** 2))) + 1.0
        coords[:, 0] = rest * gap
    return coords
