"""Exact distances to a surface by scanning its rows, for the voxels a few voxels away.

The array look-ups of :mod:`ctxseg.metrics.hausdorff` settle the voxels whose nearest voxel
on the other surface lies in a small box; the rest come here. A surface is stored row by row
along the last axis: for each row that holds surface voxels,
the squared distance from every position of the row to the nearest surface voxel of that row
(a 1-D distance transform). The squared distance from a voxel to the surface is the minimum,
over the rows around it, of the row's squared offset plus that row's entry at the voxel's
position. Rows are visited in order of their offset's length, and a voxel is settled as soon
as its best distance is no larger than the next row's offset: no row further away can give
less. One row covers a whole line of voxels, so reaching a distance ``r`` costs about ``2 r``
rows in 2-D and ``pi r^2`` in 3-D (per unit spacing), where looking up single voxels would cost
``pi r^2`` and ``4/3 pi r^3``. With thick slices (3 mm against 0.625 mm in-plane, say) a
voxel 6 mm away, two slices off, settles after some 50 rows where single voxels would take
some 700 look-ups. The voxels of a slice whose neighbouring slices hold none of the other
surface (a slice the other mask misses, at 10 mm slices say) skip the rows of those slices.
Beyond the rows scanned a KD-tree (``_nearest.py``) takes over.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["RowTable", "row_offsets", "row_table", "scan", "start_rows"]

_ROW_STEPS = 192  # most row offsets scanned; beyond them a KD-tree costs less
_CHUNK = 1 << 16  # most table reads a round (several row offsets a round)
_ROUND = 1 << 12  # fewest table reads a round: a round costs about as much as that many
_SPLIT_READS = 1 << 14  # fewest reads skipped for which voxels get their own offsets


@dataclass(frozen=True)
class RowTable:
    """One surface of a batch of pairs, stored by rows for :func:`scan`.

    Attributes:
        squared: squared distance, in voxels, from each position of a row to the row's nearest
            surface voxel; rows of ``width`` entries one after another, then one row of +inf
            for the rows without surface voxels. float32 holds these integers exactly.
        starts: for every row of the padded row space, where its entries start in
            ``squared`` (the +inf row for rows without surface voxels and for the margin).
        padded: shape of the padded row space: (N, *S[1:-1] + 2 * margin).
        margin: rows of margin on each side of every row axis but the pair axis.
        width: length S[-1] of a row.
    """

    squared: np.ndarray
    starts: np.ndarray
    padded: tuple[int, ...]
    margin: tuple[int, ...]
    width: int


@functools.lru_cache(maxsize=64)
def row_offsets(spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, float]:
    """The row offsets a scan visits for a spacing, nearest first, and the distance it reaches.

    The offsets fill a box about equally long along every row axis (fewer rows along a coarse
    axis), the widest with at most ``_ROW_STEPS`` offsets; only those no farther than every
    row outside the box are kept, so a voxel not settled by them is at least ``reach`` away.
    Lengths are in units of the spacing along the rows (the last axis).

    Args:
        spacing: voxel spacing of all spatial axes.

    Returns:
        ``(offsets, squared, reach)``: offsets (K, D - 1) int64 along the row axes, their
        squared lengths (K,) ascending, and the squared length ``reach`` of the nearest row
        outside them; read-only (cached).
    """
    scale = np.asarray(spacing[:-1], dtype=np.float64) / spacing[-1]
    best = _box(np.zeros(scale.size, np.int64), scale)
    for extent in range(1, 4 * _ROW_STEPS):
        candidate = _box(np.ceil(extent * scale.min() / scale).astype(np.int64), scale)
        if candidate[0].shape[0] > _ROW_STEPS:
            break
        best = candidate
    for array in best[:2]:
        array.flags.writeable = False
    return best


def _box(radii: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Row offsets in the box of half-widths ``radii`` no longer than any row outside it.

    Every row outside the box is at least ``min((radii + 1) * scale)`` away.

    Shape:
        radii, scale: (D - 1,); returns offsets (K, D - 1), squared lengths (K,) ascending and
        the squared bound.
    """
    axes = [np.arange(-r, r + 1) for r in radii]
    offsets = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, radii.size)
    squared = np.sum((offsets * scale) ** 2, axis=1)
    bound = float(np.min((radii + 1) * scale)) ** 2
    keep = squared < bound
    order = np.argsort(squared[keep], kind="stable")
    return offsets[keep][order], squared[keep][order], bound


def row_table(
    flat: np.ndarray,
    shape: tuple[int, ...],
    offsets: tuple[np.ndarray, np.ndarray, float],
    near: np.ndarray | None = None,
) -> RowTable:
    """Store a surface by rows: each row's squared distances to its nearest surface voxel.

    The nearest surface voxel of a row position is found without a loop: in the table, the
    surface voxels of a row split it into stretches (the positions up to half way to the next
    voxel), and repeating each voxel over its stretch gives every position its nearest one.

    Args:
        flat: sorted flat indices of the surface voxels in the batch of ``shape``.
        shape: (N, *S) of the batch (C order); rows run along the last axis.
        offsets: the row offsets of the scans, from :func:`row_offsets` (their extent is the
            table's margin).
        near: flat indices of the only voxels the table will be scanned for, or None (any):
            the table then holds only the rows their scans can reach (a few far voxels of a
            large surface need a small part of it).

    Shape:
        flat: (P,), non-empty.
    """
    width = shape[-1]
    margin = np.abs(offsets[0]).max(axis=0)  # (D - 1,) rows a scan reaches on each side
    padded = (shape[0], *(s + 2 * int(m) for s, m in zip(shape[1:-1], margin, strict=True)))
    rows = flat // width  # (P,) row of every voxel in the row space (N, *S[:-1])
    if near is not None:
        kept = np.flatnonzero(_reached_rows(near // width, shape, padded, margin, offsets[0])[rows])
        kept = kept if kept.size else np.zeros(1, np.int64)  # a table needs a row; any will do
        flat, rows = flat[kept], rows[kept]
    column = flat - rows * width
    first = np.empty(flat.size, bool)  # first voxel of its row
    first[0] = True
    np.not_equal(rows[1:], rows[:-1], out=first[1:])
    table_row = np.cumsum(first) - 1  # (P,) the table row of every voxel
    size = int(table_row[-1] + 1) * width
    # int32 positions and float32 squares (exact for rows up to 4096 voxels) move half the bytes
    index = np.int32 if size < 2**31 else np.int64
    position = (table_row * width + column).astype(index)  # (P,) ascending
    stretch = np.empty(flat.size, index)  # where each voxel's stretch starts
    stretch[first] = position[first] - column[first]
    later = np.flatnonzero(~first)
    stretch[later] = (position[later - 1] + position[later]) // 2 + 1  # ties: the earlier one
    gap = np.arange(size, dtype=index)
    gap -= np.repeat(position, np.diff(stretch, append=size))  # (size,) to the nearest
    squared = np.empty(size + width, np.float32 if width <= 4096 else np.float64)
    np.multiply(gap, gap, out=squared[:size], dtype=squared.dtype)  # squares in floats
    squared[size:] = np.inf
    starts = np.full(math.prod(padded), size, np.int64)
    starts[_padded_rows(rows[first], shape, padded, margin)] = np.arange(0, size, width)
    return RowTable(squared, starts, padded, tuple(int(m) for m in margin), width)


def _reached_rows(
    rows: np.ndarray,
    shape: tuple[int, ...],
    padded: tuple[int, ...],
    margin: np.ndarray,
    offsets: np.ndarray,
) -> np.ndarray:
    """Which rows of the row space (N, *S[:-1]) a scan from the given rows can read.

    Shape:
        rows: (R,) indices into the row space; offsets: (K, D - 1); returns a (prod(N,
        *S[:-1]),) bool array.
    """
    if rows.size > 1:  # sorted rows (query voxels are): drop repeats without np.unique's sort
        rows = rows[np.concatenate(([True], rows[1:] != rows[:-1]))]  # (repeats left: harmless)
    starts = _padded_rows(rows, shape, padded, margin)  # (U,)
    reached = np.zeros(math.prod(padded), bool)
    reached[(starts[:, None] + _row_steps(offsets, padded)[None, :]).reshape(-1)] = True
    inner = tuple(slice(int(m), int(m) + s) for m, s in zip(margin, shape[1:-1], strict=True))
    return reached.reshape(padded)[(slice(None), *inner)].reshape(-1)


def _row_steps(offsets: np.ndarray, padded: tuple[int, ...]) -> np.ndarray:
    """Row offsets as steps between row indices of the padded row space.

    Shape:
        offsets: (K, D - 1); returns (K,).
    """
    strides = [math.prod(padded[axis + 1 :]) for axis in range(1, len(padded))]
    return offsets @ np.array(strides, dtype=np.int64)


def _padded_rows(
    rows: np.ndarray, shape: tuple[int, ...], padded: tuple[int, ...], margin: np.ndarray
) -> np.ndarray:
    """Row indices in the row space (N, *S[:-1]) moved to the padded row space.

    Shape:
        rows: (R,); returns (R,).
    """
    out = np.zeros_like(rows)
    rest, size = rows, 1
    for axis in range(len(padded) - 1, 0, -1):  # division by a scalar: faster than unravel
        above = rest // shape[axis]
        out += (rest - above * shape[axis] + int(margin[axis - 1])) * size
        size *= padded[axis]
        rest = above
    return out + rest * size


def scan(
    query_flat: np.ndarray,
    pending: np.ndarray,
    table: RowTable,
    shape: tuple[int, ...],
    offsets: tuple[np.ndarray, np.ndarray, float],
    needed: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances from voxels to a surface stored by rows, nearest rows first.

    Voxels whose neighbouring slices (along the first row axis) hold none of the other
    surface skip the row offsets into those slices (:func:`_slice_groups`): with thick
    slices, a voxel of a slice the other mask misses would otherwise read every row of the
    empty slices around it before reaching a filled one.

    Args:
        query_flat: flat indices of the voxels in the batch of ``shape``.
        pending: indices into ``query_flat`` of the voxels to measure.
        table: the other surface, from :func:`row_table` with the same ``offsets``.
        shape: (N, *S) of the batch.
        offsets: from :func:`row_offsets`.
        needed: given indices of unsettled voxels, which of them the result still needs
            (their distances exceed every settled one); ``None``: all.

    Returns:
        ``(squared, left)``: squared distances of the ``pending`` voxels in units of the row
        spacing (as the offsets), +inf elsewhere and where ``needed`` dropped them; exact
        except at ``left``, the indices of the needed voxels farther than the reach, whose
        entries are only upper bounds.

    Shape:
        query_flat: (Q,); pending: (P,); returns (Q,) and (L,).
    """
    _, step_squared, reach = offsets
    steps = _row_steps(offsets[0], table.padded)  # (K,)
    rows = query_flat[pending] // table.width
    column = np.zeros_like(query_flat)  # (Q,) row position, start row: set where pending
    column[pending] = query_flat[pending] - rows * table.width
    start_row = np.zeros_like(query_flat)
    start_row[pending] = start_rows(query_flat[pending], shape, table)
    groups = _slice_groups(table, start_row, pending, offsets[0])  # [(members, offsets read)]
    squared = np.full(query_flat.size, np.inf)
    start, left = 0, pending.size
    while start < steps.size and left:
        # Row offsets a round: doubling (most voxels settle in the first rows), but at least
        # _ROUND reads (a round's fixed cost) and at most _CHUNK. Offsets first: minima along
        # the long (voxel) axis are the fast ones. Every group reads its offsets of the round.
        width = max(start + 1, _ROUND // left)
        stop = min(steps.size, start + width, start + max(1, _CHUNK // left))
        bound = step_squared[stop] if stop < steps.size else reach
        for members, read in groups:
            whole = read.size == steps.size  # every offset: a slice of them
            chosen = (
                slice(start, stop) if whole else read[slice(*np.searchsorted(read, [start, stop]))]
            )
            if members.size and (whole or chosen.size):  # (K',) offsets of this round
                cells = table.starts[steps[chosen, None] + start_row[members]]  # (K', P)
                cells += column[members]
                candidates = table.squared[cells] + step_squared[chosen, None]  # (K', P) float64
                squared[members] = np.minimum(squared[members], candidates.min(axis=0))
        groups = [(members[squared[members] > bound], read) for members, read in groups]
        if needed is not None and any(members.size for members, _ in groups):
            pending = np.concatenate([members for members, _ in groups])
            keep = needed(pending)
            if not keep.all():  # (usually all are kept until the rank is settled)
                squared[pending[~keep]] = np.inf  # above every settled distance; not measured
                ends = np.cumsum([members.size for members, _ in groups]).tolist()
                groups = [
                    (members[keep[end - members.size : end]], read)
                    for (members, read), end in zip(groups, ends, strict=True)
                ]
        left = sum(members.size for members, _ in groups)
        start = stop
    unsettled = [members for members, _ in groups]
    return squared, unsettled[0] if len(unsettled) == 1 else np.sort(np.concatenate(unsettled))


def start_rows(flat: np.ndarray, shape: tuple[int, ...], table: RowTable) -> np.ndarray:
    """The row of each voxel in the table's padded row space, where its scan starts.

    Shape:
        flat: (P,) indices into the batch of ``shape``; returns (P,).
    """
    return _padded_rows(flat // table.width, shape, table.padded, np.asarray(table.margin))


def _slice_groups(
    table: RowTable, start_row: np.ndarray, pending: np.ndarray, offsets: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Voxels grouped by the row offsets that can reach the other surface from their slice.

    An offset whose slice (along the first row axis) holds none of the table's surface reads
    only empty rows. Where skipping such offsets spares many reads, the voxels of the slices
    concerned form a group of their own, a slice a group, that reads only the others; every
    other voxel reads every offset (a group costs a gather every round). Volumes only (two
    row axes or more).

    Returns:
        ``[(members, read)]``: indices into the query voxels (sorted) and the indices of the
        offsets they read (sorted); the first group reads every offset.

    Shape:
        start_row: (Q,) padded start rows; pending: (P,); offsets: (K, D - 1).
    """
    everything = [(pending, np.arange(offsets.shape[0]))]
    if len(table.padded) < 3 or pending.size == 0:
        return everything
    slice_rows = math.prod(table.padded[2:])
    empty = table.squared.size - table.width  # the +inf row
    filled = (table.starts.reshape(-1, slice_rows) != empty).any(axis=1)  # (N * Z',)
    voxel_slice = start_row[pending] // slice_rows  # (P,) padded slice of every voxel
    counts = np.bincount(voxel_slice, minlength=filled.size)  # (N * Z',)
    slices = np.flatnonzero(counts)  # (U,) padded slices queried
    dz = offsets[:, 0] - offsets[:, 0].min()  # (K,) slice offsets, from 0
    around = filled[slices[:, None] + np.arange(int(dz.max()) + 1) + int(offsets[:, 0].min())]
    # (U, S) the slices around each queried one that hold some of the surface
    skipped = (~around) @ np.bincount(dz)  # (U,) offsets that read empty slices only
    own = np.flatnonzero(counts[slices] * skipped >= _SPLIT_READS)  # slices worth a group
    if own.size == 0:
        return everything
    group = np.zeros(filled.size, np.int64)
    group[slices[own]] = np.arange(1, own.size + 1)
    voxel_group = group[voxel_slice]  # (P,)
    reads = [np.flatnonzero(around[u][dz]) for u in own.tolist()]
    return [(pending[voxel_group == 0], everything[0][1])] + [
        (pending[voxel_group == g], read) for g, read in enumerate(reads, start=1)
    ]
