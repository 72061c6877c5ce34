"""Compiled loops of the Hausdorff distance (numba): surfaces by rows, and the row search.

Imported by :mod:`ctxseg.metrics._compiled` only, at the first compiled call, and only where
numba is installed (``pip install ctxseg[fast]``): this module imports numba itself.

A surface is stored by rows, as the NumPy path's row tables (``_rows.py``): ``starts``
(CSR row starts over the ``Z * Y`` rows of a mask, or of a batch's slices stacked) and the
sorted positions along each row. The distance from a voxel to such a surface is found row by
row, nearest rows first: first the rows of a small *ring* of (slice, row) offsets sorted by
distance, then, only for a voxel whose nearest voxel may lie beyond the ring, the slices
outwards from its own and the rows outwards within each. The nearest position in a row comes
from a binary search; the search stops once the next row's offset alone is no nearer than the
best distance found, so the result is exact. Two early stops make a percentile cheap: a
``floor`` (a voxel within it cannot change the result: it stops at the first row that shows
this) and a ``limit`` (nothing beyond it is searched for).

numba does not check bounds: every index here stays within its array by construction (the
tests run these loops as plain Python too, where NumPy checks them).

Shape:
    masks are uint8 (0 or 1), C-contiguous (N, Z, Y, X); a 2-D batch is (N, 1, Y, X).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ctxseg.metrics._compiled import CACHE_ON_DISK

_JIT = {"cache": CACHE_ON_DISK, "nogil": True}  # compiled once, kept on disk where it can be
_INLINE = {**_JIT, "inline": "always"}  # per-voxel helpers: no call (and array) overhead
_SAMPLE_EVERY = 16  # the first pass of a directed distance: every 16th voxel, measured exactly
_GUESS_MARGIN = 5.0  # a percentile's first floor: the sample's value this many points lower


@numba.njit(**_JIT)
def row_any(mask: np.ndarray) -> np.ndarray:
    """1 for each row (z, y) of a (Z, Y, X) mask with some voxel set (vectorised OR).

    Shape:
        mask: (Z, Y, X) uint8; returns (Z, Y) uint8.
    """
    depth, height, width = mask.shape
    out = np.zeros((depth, height), np.uint8)
    for z in range(depth):
        for y in range(height):
            acc = np.uint8(0)
            for x in range(width):
                acc |= mask[z, y, x]
            out[z, y] = acc
    return out


@numba.njit(**_JIT)
def surface_rows(
    mask: np.ndarray, planar: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A mask's surface (the mask minus its erosion by the face-connected cross, voxels
    outside the array counting as background), by rows.

    Each row holding voxels is eroded as whole-row vector operations into a buffer, then the
    set bytes are gathered eight at a time (zero words skipped).

    Args:
        mask: one (Z, Y, X) mask, uint8.
        planar: 2-D masks stacked as (1, Y, X): no neighbours across slices.

    Returns:
        ``(starts, zs, ys, xs)``: CSR row starts over the Z * Y rows, and the voxels' slice,
        row and column in raster order (so the columns are sorted within each row).

    Shape:
        starts: (Z * Y + 1,) int64; zs, ys, xs: (V,) int64.
    """
    depth, height, width = mask.shape
    filled = row_any(mask)
    flat = mask.reshape(-1)
    rows = 0
    for z in range(depth):
        for y in range(height):
            rows += int(filled[z, y])  # (int: a uint8 sum would wrap as plain Python)
    stride = (width + 7) // 8 * 8  # buffer rows padded to whole 8-byte words
    buffer = np.zeros(max(rows, 1) * stride, np.uint8)
    plane = height * width
    count = 0
    row = 0
    for z in range(depth):
        for y in range(height):
            if not filled[z, y]:
                continue
            base = (z * height + y) * width
            here = flat[base : base + width]
            out = buffer[row * stride : row * stride + width]
            edge = y == 0 or y == height - 1 or (not planar and (z == 0 or z == depth - 1))
            if edge or width < 3:  # the whole row touches the outside
                for x in range(width):
                    out[x] = here[x]
            else:
                middle = flat[base + 1 : base + width - 1]
                left = flat[base : base + width - 2]
                right = flat[base + 2 : base + width]
                up = flat[base + 1 - width : base - 1]
                down = flat[base + 1 + width : base + 2 * width - 1]
                inner = buffer[row * stride + 1 : row * stride + width - 1]
                if planar:
                    for x in range(width - 2):
                        inner[x] = middle[x] & (1 ^ (left[x] & right[x] & up[x] & down[x]))
                else:
                    before = flat[base + 1 - plane : base + width - 1 - plane]
                    after = flat[base + 1 + plane : base + width - 1 + plane]
                    for x in range(width - 2):
                        inner[x] = middle[x] & (
                            1 ^ (left[x] & right[x] & up[x] & down[x] & before[x] & after[x])
                        )
                out[0] = here[0]
                out[width - 1] = here[width - 1]
            total = 0
            for x in range(width):
                total += int(out[x])
            count += total
            row += 1
    zs = np.empty(count, np.int64)
    ys = np.empty(count, np.int64)
    xs = np.empty(count, np.int64)
    starts = np.zeros(depth * height + 1, np.int64)
    words = buffer.view(np.uint64)
    per_row = stride // 8
    found = 0
    row = 0
    for z in range(depth):
        for y in range(height):
            if filled[z, y]:
                for word in range(row * per_row, (row + 1) * per_row):
                    if words[word]:
                        for i in range(8 * word, 8 * word + 8):
                            if buffer[i]:
                                zs[found] = z
                                ys[found] = y
                                xs[found] = i - row * stride
                                found += 1
                row += 1
            starts[z * height + y + 1] = found
    return starts, zs, ys, xs


@numba.njit(**_JIT)
def row_extents(starts: np.ndarray, slices: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Each slice's first and last row holding voxels (an empty slice: first > last).

    Shape:
        starts: (slices * height + 1,); returns two (slices,) int64.
    """
    first = np.full(slices, height, np.int64)
    last = np.full(slices, -1, np.int64)
    for s in range(slices):
        for y in range(height):
            if starts[s * height + y + 1] > starts[s * height + y]:
                if first[s] == height:
                    first[s] = y
                last[s] = y
    return first, last


@numba.njit(**_INLINE)
def _row_squared(x: int, a: int, b: int, positions: np.ndarray, step: float) -> float:
    """Squared distance along a row from column x to the nearest of positions[a:b] (a < b)."""
    lo, hi = a, b  # the first position >= x
    while lo < hi:
        mid = (lo + hi) // 2
        if positions[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    dx = positions[lo] - x if lo < b else 1 << 30
    if lo > a and x - positions[lo - 1] < dx:
        dx = x - positions[lo - 1]
    return (dx * step) ** 2


@numba.njit(**_INLINE)
def nearest_squared(
    z: int,
    y: int,
    x: int,
    low: int,
    high: int,
    starts: np.ndarray,
    positions: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    height: int,
    scale: tuple[float, float, float],
    ring: tuple[np.ndarray, np.ndarray, np.ndarray, float],
    floor: float,
    limit: float,
) -> float:
    """Squared distance (mm^2) from voxel (z, y, x) to the nearest voxel of the rows.

    Args:
        z, y, x: the voxel: global slice, row, column.
        low, high: the slices [low, high) it may look in (its own pair's).
        starts, positions, first, last: the other surface by rows (``surface_rows``,
            ``row_extents``).
        height: rows per slice.
        scale: squared distances are ``(dz * s0)^2 + (dy * s1)^2 + (dx * s2)^2``.
        ring: ``(dz, dy, squared, reach)``: (slice, row) offsets sorted by squared distance,
            holding every offset nearer than ``reach``; visited first.
        floor: once a row gives a value at or below it, the search stops and returns that
            value (an upper bound; -1 for none).
        limit: rows at or beyond it are not searched (squared).

    Returns:
        The exact squared distance when it lies in (floor, limit]; a value at most ``floor``
        when the distance does; +inf when it is beyond ``limit``.
    """
    s0, s1, s2 = scale
    ring_dz, ring_dy, ring_sq, reach = ring
    best = math.inf
    for r in range(ring_sq.size):
        offset = ring_sq[r]
        if offset >= min(best, limit):
            return best if best <= limit else math.inf
        zz = z + ring_dz[r]
        yy = y + ring_dy[r]
        if zz < low or zz >= high or yy < first[zz] or yy > last[zz]:
            continue
        a, b = starts[zz * height + yy], starts[zz * height + yy + 1]
        if a < b:
            best = min(best, offset + _row_squared(x, a, b, positions, s2))
            if best <= floor:
                return best
    if best <= reach:  # every offset nearer than the reach was visited
        return best if best <= limit else math.inf
    for k in range(2 * (high - low) + 1):  # slice offsets 0, -1, 1, -2, 2, ...
        dz = (k + 1) // 2 if k % 2 else -(k // 2)
        across = (dz * s0) ** 2
        if across >= min(best, limit):
            break
        zz = z + dz
        if zz < low or zz >= high or first[zz] > last[zz]:
            continue
        down = min(y, last[zz])  # the next row at or below y, walking down
        up = max(y + 1, first[zz])  # the next row above y, walking up
        while True:
            if down >= first[zz] and (up > last[zz] or y - down <= up - y):
                yy = down
                down -= 1
            elif up <= last[zz]:
                yy = up
                up += 1
            else:
                break
            offset = across + ((yy - y) * s1) ** 2
            if offset >= min(best, limit):
                break
            a, b = starts[zz * height + yy], starts[zz * height + yy + 1]
            if a < b:
                best = min(best, offset + _row_squared(x, a, b, positions, s2))
                if best <= floor:
                    return best
    return best if best <= limit else math.inf


@numba.njit(**_JIT)
def search_many(
    slice_of: np.ndarray,
    row_of: np.ndarray,
    column_of: np.ndarray,
    starts: np.ndarray,
    positions: np.ndarray,
    depth: int,
    height: int,
    scale: tuple[float, float, float],
    ring: tuple[np.ndarray, np.ndarray, np.ndarray, float],
    limit: float,
) -> np.ndarray:
    """Exact squared distances of voxels (global slice n * Z + z, row, column) to the rows of
    a batch, each within its own pair's slices; +inf beyond ``limit`` (squared).

    Shape:
        slice_of, row_of, column_of: (Q,); starts: (N * Z * Y + 1,); returns (Q,).
    """
    first, last = row_extents(starts, starts.size // height, height)
    out = np.empty(slice_of.size)
    for i in range(slice_of.size):
        z = slice_of[i]
        low = z - z % depth
        out[i] = nearest_squared(
            z, row_of[i], column_of[i], low, low + depth, starts, positions, first, last,
            height, scale, ring, -1.0, limit,
        )  # fmt: skip
    return out


@numba.njit(**_INLINE)
def _push(heap: np.ndarray, size: int, value: float) -> int:
    """Keep the ``heap.size`` largest values in a min-heap; returns the new size."""
    if size < heap.size:
        i = size
        heap[i] = value
        while i > 0 and heap[(i - 1) // 2] > heap[i]:
            parent = (i - 1) // 2
            heap[parent], heap[i] = heap[i], heap[parent]
            i = parent
        return size + 1
    heap[0] = value  # (the caller pushes only values above the smallest)
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            return size
        if child + 1 < size and heap[child + 1] < heap[child]:
            child += 1
        if heap[child] >= heap[i]:
            return size
        heap[i], heap[child] = heap[child], heap[i]
        i = child


@numba.njit(**_JIT)
def _largest(
    zs: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    keep: int,
    guess: float,
    sampled: np.ndarray,
    other: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    depth: int,
    height: int,
    scale: tuple[float, float, float],
    ring: tuple[np.ndarray, np.ndarray, np.ndarray, float],
) -> tuple[np.ndarray, int]:
    """The ``keep`` largest squared distances of the voxels above ``guess`` (a min-heap).

    The sampled voxels (every ``_SAMPLE_EVERY``-th, exact in ``sampled``) go in first; every
    other voxel stops as soon as it is shown to be at or below the floor: ``guess``, or the
    smallest kept value once ``keep`` values are kept.

    Returns:
        ``(heap, size)``: fewer than ``keep`` values when fewer voxels lie above ``guess``.
    """
    starts, positions, first, last = other
    heap = np.empty(keep)
    size = 0
    for value in sampled:
        if value > guess and (size < keep or value > heap[0]):
            size = _push(heap, size, value)
    for i in range(zs.size):
        if i % _SAMPLE_EVERY == 0:
            continue
        floor = max(guess, heap[0]) if size == keep else guess
        value = nearest_squared(
            zs[i], ys[i], xs[i], 0, depth, starts, positions, first, last, height, scale,
            ring, floor, math.inf,
        )  # fmt: skip
        if value > floor:
            size = _push(heap, size, value)
    return heap, size


@numba.njit(**_JIT)
def directed(
    query: tuple[np.ndarray, np.ndarray, np.ndarray],
    other: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    depth: int,
    height: int,
    scale: tuple[float, float, float],
    ring: tuple[np.ndarray, np.ndarray, np.ndarray, float],
    percentile: float,
    floor: float,
) -> float:
    """The maximum (``percentile`` < 0) or percentile of the distances from one surface to
    the other (linear interpolation between ranks, as ``torch.quantile``).

    Every ``_SAMPLE_EVERY``-th voxel is measured exactly first. For the maximum, that
    sample's largest value is a floor: only voxels beyond it are measured exactly. For a
    percentile, the sample's value ``_GUESS_MARGIN`` points lower is a first floor; should
    fewer voxels than the rank needs lie beyond it, the pass runs again without it.

    Args:
        query: the surface measured from: slices, rows, columns.
        other: the surface measured to, by rows, with its row extents.
        floor: a value already known to be at least reached (the other direction's maximum:
            only larger values matter), or -1.

    Returns:
        The distance in mm; for the maximum, ``floor`` when no voxel lies beyond it.
    """
    zs, ys, xs = query
    starts, positions, first, last = other
    n = zs.size
    sampled = np.empty((n + _SAMPLE_EVERY - 1) // _SAMPLE_EVERY)
    for j in range(sampled.size):
        i = j * _SAMPLE_EVERY
        sampled[j] = nearest_squared(
            zs[i], ys[i], xs[i], 0, depth, starts, positions, first, last, height, scale,
            ring, -1.0, math.inf,
        )  # fmt: skip
    if percentile < 0:
        known = max(floor * floor if floor >= 0 else -1.0, sampled.max())
        heap, size = _largest(zs, ys, xs, 1, known, sampled, other, depth, height, scale, ring)
        return math.sqrt(heap[0] if size else known)
    rank = percentile / 100.0 * (n - 1)
    low = int(math.floor(rank))
    high = min(low + 1, n - 1)
    keep = n - low  # the values at ranks low .. n - 1
    guess = -1.0
    if sampled.size > 1 and percentile > _GUESS_MARGIN:
        # just below the sample's value: distances tie often (on a 1 mm grid, most are 1, 2,
        # sqrt 5, ...), and the voxels tied with it may be the ones the rank needs
        guess = np.quantile(sampled, (percentile - _GUESS_MARGIN) / 100.0) * (1.0 - 1e-9)
    heap, size = _largest(zs, ys, xs, keep, guess, sampled, other, depth, height, scale, ring)
    if size < keep:  # the guess was too high: no floor but the kept values
        heap, size = _largest(zs, ys, xs, keep, -1.0, sampled, other, depth, height, scale, ring)
    ordered = np.sort(heap)
    below = math.sqrt(ordered[0])
    above = math.sqrt(ordered[high - low])
    return below + (rank - low) * (above - below)


@numba.njit(**_JIT)
def hausdorff_pairs(
    pred: np.ndarray,
    target: np.ndarray,
    scale: tuple[float, float, float],
    percentile: float,
    planar: bool,
    ring: tuple[np.ndarray, np.ndarray, np.ndarray, float],
) -> np.ndarray:
    """Symmetric surface Hausdorff distance (``percentile`` < 0) or percentile HD per pair.

    Returns:
        NaN where both masks are empty, +inf where exactly one is.

    Shape:
        pred, target: (N, Z, Y, X) uint8; returns (N,) float64.
    """
    count, depth, height, _ = pred.shape
    out = np.empty(count)
    for n in range(count):
        p_starts, p_z, p_y, p_x = surface_rows(pred[n], planar)
        t_starts, t_z, t_y, t_x = surface_rows(target[n], planar)
        if p_z.size == 0 or t_z.size == 0:
            out[n] = math.nan if p_z.size == t_z.size else math.inf
            continue
        p_first, p_last = row_extents(p_starts, depth, height)
        t_first, t_last = row_extents(t_starts, depth, height)
        to_target = directed(
            (p_z, p_y, p_x), (t_starts, t_x, t_first, t_last), depth, height, scale, ring,
            percentile, -1.0,
        )  # fmt: skip
        known = to_target if percentile < 0 else -1.0  # only a larger maximum matters
        to_pred = directed(
            (t_z, t_y, t_x), (p_starts, p_x, p_first, p_last), depth, height, scale, ring,
            percentile, known,
        )  # fmt: skip
        out[n] = max(to_target, to_pred)
    return out
