"""The plain Hausdorff distance (the maximum) with little work on voxels that cannot be it.

Only the largest distance of a pair counts, so most voxels need no exact distance:

- :func:`candidates`: coarse cells bound every voxel's distance from below and above; a
  voxel whose upper bound is below the largest lower bound cannot be the farthest and is
  not looked up at all (a far false-positive speck leaves little else).
  :func:`worth_pruning` tells cheaply when the cells can rule anything out.
- :func:`farthest`: a voxel still unsettled after the look-ups and row scans (beyond their
  reach) whose upper bound (its distance to a sample of the other surface) cannot beat the
  largest exact distance found so far is skipped; the rest go to the KD-tree.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from ctxseg.metrics._nearest import TREE_OPTIONS, points, tree_distances

__all__ = ["box_gap", "candidates", "farthest", "worth_pruning"]

_BOUND_EVERY = 16  # the plain HD bounds unsettled distances through every 16th other voxel
_CELL_VOXELS = 12  # the plain HD's coarse cells: about 12 voxels of the finest spacing wide
_CELL_PAIRS = 1 << 18  # cell pairs up to which their distances are computed all at once


def box_gap(pred_bits: np.ndarray, target_bits: np.ndarray, scale: np.ndarray) -> float:
    """A lower bound on a pair's HD: the largest gap between the sides of the two surfaces' boxes.

    The voxel on the far side of one surface's box is at least that gap away from every voxel
    of the other.

    Shape:
        pred_bits, target_bits: a single pair's surfaces packed along rows
        (``np.packbits(..., axis=-1)``), (1, *S[:-1], ceil(S[-1] / 8)) uint8; scale: (len(S),).
    """
    extents = [_extent(bits[0]) for bits in (pred_bits, target_bits)]
    return max(
        max(abs(a[0] - b[0]), abs(a[1] - b[1])) * float(step)
        for a, b, step in zip(*extents, scale, strict=True)
    )


def worth_pruning(gap: float, scale: np.ndarray) -> bool:
    """Whether :func:`candidates` can rule voxels out, given the pair's :func:`box_gap`.

    It rules a voxel out only when the HD exceeds the cell diagonal (a voxel is pruned when
    its cell bound falls two diagonals below the largest). The gap is a lower bound on the
    HD: when it exceeds the diagonal (a false-positive speck far out, say), pruning pays;
    otherwise (overlapping smooth masks) the cells would cost more than they save.
    """
    return gap > _cell_diagonal(scale)


def _extent(bits: np.ndarray) -> list[tuple[int, int]]:
    """First and last voxel index along every axis of a non-empty mask packed along rows.

    Shape:
        bits: (*S[:-1], ceil(S[-1] / 8)) uint8; returns len(S) pairs.
    """
    ends = []
    for _ in range(bits.ndim - 1):
        # the first axis's extent, then the OR over it: reductions of long contiguous rows
        hit = np.flatnonzero((bits.reshape(bits.shape[0], -1) != 0).any(axis=1))
        ends.append((int(hit[0]), int(hit[-1])))
        bits = np.bitwise_or.reduce(bits, axis=0)
    hit = np.flatnonzero(np.unpackbits(bits))  # the bits of all rows together, along a row
    ends.append((int(hit[0]), int(hit[-1])))
    return ends


def _cell_sizes(scale: np.ndarray) -> np.ndarray:
    """Voxels per coarse cell along each axis: about ``_CELL_VOXELS`` of the finest spacing.

    Shape:
        scale: (D,); returns (D,) int64.
    """
    return np.maximum(1, np.round(_CELL_VOXELS * scale.min() / scale)).astype(np.int64)


def _cell_diagonal(scale: np.ndarray) -> float:
    """The largest distance between two voxels of one coarse cell."""
    return float(np.sqrt(np.sum(((_cell_sizes(scale) - 1) * scale) ** 2)))


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
    cells = _cell_sizes(scale)
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
    diagonal = _cell_diagonal(scale) + 1e-6 * (1.0 + extent)
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
    """The plain HD of each pair, querying the KD-tree only for voxels that can be the largest.

    Only the largest distance counts, so a voxel the look-ups and row scans left unsettled
    needs its exact distance only if it can exceed the largest exact one known for its pair.
    Its distance to a sample of the other surface (every ``_BOUND_EVERY``-th voxel: a small,
    quick tree) bounds it from above; the direction with the larger bounds goes first, and
    what it finds usually spares the other direction its full tree (a false-positive speck
    far away, say, outweighs every voxel of the reference).

    Args:
        directions: per direction ``(query_flat, other_flat, distances, pending)``:
            ``distances`` exact except at the indices ``pending``; filled in place.
        shape: shape (N, *S) of the batch.
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
        needed = pending[upper[i] > found[groups[pending]]]
        if needed.size:
            distances[needed] = tree_distances(
                query_flat[needed], other_flat, shape, scale, only_max=True
            )
            np.maximum.at(found, groups[needed], distances[needed])
    return found


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
