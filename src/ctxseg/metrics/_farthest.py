"""The plain Hausdorff distance (the maximum) from the look-ups, with little KD-tree work.

Only the largest distance of a pair counts, so most voxels need no exact distance:

- :func:`candidates`: coarse cells bound every voxel's distance from below and above; a
  voxel whose upper bound is below the largest lower bound cannot be the farthest and is
  not looked up at all (a far false-positive speck leaves little else).
- :func:`farthest`: after the look-ups, an unsettled voxel whose upper bound (its distance
  to a sample of the other surface) cannot beat the largest exact distance found so far is
  skipped; the most promising are measured one by one, the rest (if any) by KD-tree.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from ctxseg.metrics._nearest import TREE_OPTIONS, points, tree_distances

__all__ = ["candidates", "farthest"]

_ONE_BY_ONE = 8  # unsettled voxels the plain HD measures one by one before a KD-tree
_BOUND_EVERY = 16  # the plain HD bounds unsettled distances through every 16th other voxel
_CELL_VOXELS = 12  # the plain HD's coarse cells: about 12 voxels of the finest spacing wide
_CELL_PAIRS = 1 << 18  # cell pairs up to which their distances are computed all at once


def candidates(
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
    corners = [points(c, grid, cells * scale) for c in centres]  # same shift for all cells
    near = _cell_distances(corners[0], corners[1])
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
    matrix product (rounding errors far below the margin :func:`candidates` adds), many to
    KD-trees.

    Shape:
        first: (P, D), second: (M, D); returns (P,) and (M,).
    """
    if first.shape[0] * second.shape[0] > _CELL_PAIRS:
        return (
            cKDTree(second, **TREE_OPTIONS).query(first, k=1)[0],
            cKDTree(first, **TREE_OPTIONS).query(second, k=1)[0],
        )
    squared = np.einsum("md,md->m", second, second) - 2.0 * (first @ second.T)  # (P, M)
    squared += np.einsum("pd,pd->p", first, first)[:, None]
    return (
        np.sqrt(np.maximum(squared.min(axis=1), 0.0)),
        np.sqrt(np.maximum(squared.min(axis=0), 0.0)),
    )


def farthest(
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
            :func:`ctxseg.metrics.hausdorff._look_up`; ``distances`` is filled in place.
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
            found = np.maximum(found, _group_max(settled, query_flat // block, shape[0]))
        bound = np.empty(0)
        if pending.size:
            sample = cKDTree(points(other_flat[::_BOUND_EVERY], shape, scale), **TREE_OPTIONS)
            bound = sample.query(points(query_flat[pending], shape, scale), k=1)[0]
        upper.append(bound)
    for i in sorted(range(2), key=lambda i: -np.max(upper[i], initial=-np.inf)):
        query_flat, other_flat, distances, pending = directions[i]
        groups = query_flat // block
        distances[pending] = 0.0  # cannot exceed ``found``, unless needed below
        needed = _largest_first(
            query_flat, other_flat, pending, upper[i], found, distances, shape, scale
        )
        if needed.size:
            distances[needed] = tree_distances(
                query_flat[needed], other_flat, shape, scale, only_max=True
            )
            np.maximum.at(found, groups[needed], distances[needed])
    return found


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
            others = points(other_flat[lo:hi], shape, scale)
        point = points(query_flat[pending[j : j + 1]], shape, scale)
        difference = others - point  # (M, D)
        distances[pending[j]] = np.sqrt(np.min(np.einsum("md,md->m", difference, difference)))
        found[group] = max(found[group], distances[pending[j]])
        alive &= upper > found[groups]
        alive[j] = False
    return pending[alive]


def _group_max(values: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """The largest value of each group (0 for a group without values).

    Shape:
        values, groups: (P,) with ``groups`` sorted; returns (n,).
    """
    if n == 1:
        return np.max(values, keepdims=True)
    largest = np.zeros(n)
    np.maximum.at(largest, groups, values)
    return largest
