"""Exact distances of far voxels by a compiled row search, where numba is installed (optional).

The voxels that the array look-ups of :mod:`ctxseg.metrics.hausdorff` leave (nothing of the
other surface within a few millimetres) are few but far: with 10 mm slices, whole slices of
a missed or extra end slice, 10-40 mm from the other surface. In NumPy their exact distances
take a row table, rounds of row scans and all pairs (``_rows.py``, ``_nearest.py``), whose
fixed costs and per-call overheads outweigh the work on volumes of ACDC's size. Compiled, the
same row search is a loop per voxel: the other surface stored as rows (sorted positions along
the last axis), rows visited by slice offset and then row offset, nearest first, slices
without any voxel skipped, the nearest position in a row by binary search, and the search
stops once the next row's offset alone is no nearer than the best distance found, which makes
the result exact.

numba is optional (``pip install ctxseg[fast]``; the Makefile installs it): without it, with
``CTXSEG_NUMBA=0`` in the environment, or (with a warning) where it is installed but cannot
be imported, :func:`available` is false and the NumPy path runs, with the same results. numba
is imported at the first search, which compiles the loop (about a second; cached on disk
where the package folder is writable).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import warnings
from collections.abc import Callable

import numpy as np

__all__ = ["AVAILABLE", "INSTALLED", "available", "nearest_distances"]

# numba is imported on the first search only (its import takes about 0.3 s)
INSTALLED = importlib.util.find_spec("numba") is not None
AVAILABLE = INSTALLED and os.environ.get("CTXSEG_NUMBA", "1") != "0"  # may still fail to import


def available() -> bool:
    """Whether the compiled search runs: numba installed, importable, and not switched off."""
    return AVAILABLE and _search() is not None


def nearest_distances(
    query_flat: np.ndarray,
    other_flat: np.ndarray,
    shape: tuple[int, ...],
    scale: np.ndarray,
    limit: float = math.inf,
) -> np.ndarray:
    """Exact distance from each voxel to the nearest voxel of its pair's other surface.

    Args:
        query_flat: flat indices of the voxels in the batch of ``shape`` (N, Z, Y, X).
        other_flat: sorted flat indices of the other surface (every pair queried has some).
        shape: (N, Z, Y, X) of the batch.
        scale: voxel spacing (3,) of the spatial axes.
        limit: distances beyond it are not searched for: +inf there (every distance
            returned finite is exact and at most ``limit``; every +inf one is at least it).

    Shape:
        query_flat: (Q,); other_flat: (M,); returns (Q,) float64.
    """
    depth, height, width = shape[1:]
    slices = shape[0] * depth
    rows = other_flat // width
    starts = np.zeros(slices * height + 1, np.int64)  # (N * Z * Y + 1,) CSR row starts
    np.cumsum(np.bincount(rows, minlength=slices * height), out=starts[1:])
    positions = other_flat - rows * width  # (M,) along the rows, sorted within each row
    query_rows = query_flat // width
    squared = _search()(
        query_rows // height, query_rows % height, query_flat - query_rows * width,
        starts, positions, depth, height, float(scale[0]), float(scale[1]), float(scale[2]),
        limit * limit,
    )  # fmt: skip
    return np.sqrt(squared)


def _search_loop(
    slice_of: np.ndarray,
    row_of: np.ndarray,
    column_of: np.ndarray,
    starts: np.ndarray,
    positions: np.ndarray,
    depth: int,
    height: int,
    s0: float,
    s1: float,
    s2: float,
    limit: float,
) -> np.ndarray:
    """Squared distances (mm^2) of voxels (global slice n * Z + z, row, column) to the rows.

    Compiled by numba (:func:`_search`); the tests also run it as plain Python. Slices are
    searched outwards within the voxel's own pair only; squared distances beyond ``limit``
    are not searched for (+inf).
    """
    slices = starts.size // height  # N * Z
    # each slice's first and last row holding voxels (empty slices: first > last)
    first = np.full(slices, height, np.int64)
    last = np.full(slices, -1, np.int64)
    for s in range(slices):
        for y in range(height):
            if starts[s * height + y + 1] > starts[s * height + y]:
                if first[s] == height:
                    first[s] = y
                last[s] = y
    out = np.empty(slice_of.size)
    for i in range(slice_of.size):
        z, y, x = slice_of[i], row_of[i], column_of[i]
        low = z - z % depth  # the pair's first slice
        best = math.inf
        cut = limit  # nothing at or beyond it can count: the best found, or the limit
        for k in range(2 * depth + 1):  # slice offsets 0, -1, 1, -2, 2, ...
            dz = (k + 1) // 2 if k % 2 else -(k // 2)
            across = (dz * s0) ** 2
            if across >= cut:
                break
            zz = z + dz
            if zz < low or zz >= low + depth or first[zz] > last[zz]:
                continue
            reach = max(y - first[zz], last[zz] - y)
            for j in range(2 * reach + 1):  # row offsets 0, -1, 1, -2, 2, ...
                dy = (j + 1) // 2 if j % 2 else -(j // 2)
                offset = across + (dy * s1) ** 2
                if offset >= cut:
                    break
                yy = y + dy
                if yy < first[zz] or yy > last[zz]:
                    continue
                a, b = starts[zz * height + yy], starts[zz * height + yy + 1]
                if a == b:
                    continue
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
                best = min(best, offset + (dx * s2) ** 2)
                cut = min(cut, best)
        out[i] = best if best <= limit else math.inf
    return out


@functools.cache
def _search() -> Callable[..., np.ndarray] | None:
    """:func:`_search_loop` compiled by numba (on first use; cached on disk where it can be),
    or None, with a warning, where numba is installed but cannot be imported."""
    try:
        import numba
    except Exception as error:  # installed but broken (a NumPy it does not support, say)
        warnings.warn(
            f"numba is installed but cannot be imported ({error}); Hausdorff distances run in "
            "NumPy instead (same results, slower on thick slices); CTXSEG_NUMBA=0 silences this",
            RuntimeWarning,
            stacklevel=4,
        )
        return None
    return numba.njit(cache=True, nogil=True)(_search_loop)
