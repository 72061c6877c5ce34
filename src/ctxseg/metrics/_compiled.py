"""The compiled Hausdorff paths, where numba is installed (optional): whole pairs, far voxels.

Two entry points to the loops of ``_kernels.py``:

- :func:`hausdorff_pairs` measures whole pairs compiled: both surfaces extracted by rows, and
  each directed distance from its largest values only. Every 16th voxel is measured first;
  its largest value (the maximum) or a value a little below the percentile (a percentile) is
  a floor, and every other voxel's search stops at the first row that puts it at or below
  the floor. :mod:`ctxseg.metrics.hausdorff` sends slices and volumes of thick slices
  here: per-call NumPy overheads and whole-box passes, not the arithmetic, are most of the
  NumPy path's time on masks of ACDC's size or a batch of 2-D slices.
- :func:`nearest_distances` measures the far voxels the NumPy path's look-ups leave in
  near-isotropic volumes (the row search alone), exactly, within a limit.

numba is optional (``pip install ctxseg[fast]``; the Makefile installs it): without it, with
``CTXSEG_NUMBA=0`` in the environment, or (with a warning) where it is installed but cannot
be imported, :func:`available` is false and the NumPy path runs, with the same results. numba
is imported at the first compiled call; compiling the loops takes some 20 s once, cached on
disk where the package folder is writable.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np

__all__ = ["AVAILABLE", "INSTALLED", "available", "hausdorff_pairs", "nearest_distances"]

# numba is imported at the first compiled call only (its import takes about 0.3 s)
INSTALLED = importlib.util.find_spec("numba") is not None
AVAILABLE = INSTALLED and os.environ.get("CTXSEG_NUMBA", "1") != "0"  # may still fail to import
CACHE_ON_DISK = True  # read by _kernels.py as it is imported; False where numba can write none


def available() -> bool:
    """Whether the compiled paths run: numba installed, importable, and not switched off."""
    return AVAILABLE and _kernels() is not None


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
    squared = _kernels().search_many(
        query_rows // height, query_rows % height, query_flat - query_rows * width,
        starts, positions, depth, height, _as_scale(scale), _NO_RING, limit * limit,
    )  # fmt: skip
    return np.sqrt(squared)


def hausdorff_pairs(
    pred: np.ndarray, target: np.ndarray, scale: np.ndarray, percentile: float | None
) -> np.ndarray:
    """Hausdorff distance or percentile HD of each pair of 2-D or 3-D masks, compiled whole.

    Surfaces by rows, each directed distance from its largest values only (a sample first,
    then every voxel stopped as soon as it cannot matter): see ``_kernels.py``. Same results
    as the NumPy path of :func:`ctxseg.metrics.hausdorff_distance_batch`.

    Args:
        pred, target: boolean masks.
        scale: the spacing of the spatial axes.
        percentile: in (0, 100], or None for the maximum.

    Shape:
        pred, target: (N, Y, X) or (N, Z, Y, X) bool; returns (N,) float64.
    """
    planar = pred.ndim == 3
    if planar:  # (N, 1, Y, X): one slice each, no neighbours across slices
        pred, target, scale = pred[:, None], target[:, None], np.concatenate([[1.0], scale])
    pred = np.ascontiguousarray(pred).view(np.uint8)
    target = np.ascontiguousarray(target).view(np.uint8)
    spacing = _as_scale(scale)
    ring = _ring(pred.shape[1], pred.shape[2], spacing[0], spacing[1])
    q = -1.0 if percentile is None else float(percentile)
    return _kernels().hausdorff_pairs(pred, target, spacing, q, planar, ring)


def _as_scale(scale: np.ndarray) -> tuple[float, float, float]:
    return float(scale[0]), float(scale[1]), float(scale[2])


_NO_RING = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), -1.0)
_RING_SIZE = 256  # (slice, row) offsets a voxel's search visits nearest first


@functools.lru_cache(maxsize=64)
def _ring(
    depth: int, height: int, s0: float, s1: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The ``_RING_SIZE`` nearest (slice, row) offsets, sorted by distance; cached.

    Returns:
        ``(dz, dy, squared, reach)``: every offset whose squared distance is below ``reach``
        is in the ring, none at or beyond it; read-only arrays.
    """
    slices, rows = min(depth - 1, 32), min(height - 1, 128)
    dz, dy = np.arange(-slices, slices + 1), np.arange(-rows, rows + 1)
    grid_z, grid_y = (g.ravel() for g in np.meshgrid(dz, dy, indexing="ij"))
    squared = (grid_z * s0) ** 2 + (grid_y * s1) ** 2
    order = np.argsort(squared, kind="stable")
    grid_z, grid_y, squared = grid_z[order], grid_y[order], squared[order]
    reach = math.inf  # offsets beyond the grid, where it does not span every slice or row
    if slices < depth - 1:
        reach = ((slices + 1) * s0) ** 2
    if rows < height - 1:
        reach = min(reach, ((rows + 1) * s1) ** 2)
    if squared.size > _RING_SIZE:
        reach = min(reach, float(squared[_RING_SIZE]))
    kept = squared < reach
    ring = (grid_z[kept].astype(np.int64), grid_y[kept].astype(np.int64), squared[kept])
    for array in ring:
        array.flags.writeable = False
    return (*ring, float(reach))


@functools.cache
def _kernels() -> ModuleType | None:
    """The compiled loops (``_kernels.py``, compiled on first call; cached on disk where it
    can be, else kept in memory with a warning), or None, with a warning, where numba is
    installed but cannot be imported."""
    global CACHE_ON_DISK
    while True:
        try:  # (by its name: the package attribute would outlive a test's removal of the module)
            return importlib.import_module("ctxseg.metrics._kernels")
        except Exception as error:  # installed but broken (a NumPy it does not support, say)
            if CACHE_ON_DISK and "no locator available" in str(error):
                CACHE_ON_DISK = False  # nowhere to write numba's cache: compile in memory
                warnings.warn(
                    "numba finds no writable folder for its cache (neither beside "
                    f"{Path(__file__).parent} nor its user cache): the Hausdorff loops compile "
                    "anew in each process (about 20 s); set NUMBA_CACHE_DIR to a writable "
                    "folder to keep them",
                    RuntimeWarning,
                    stacklevel=4,
                )
                continue
            warnings.warn(
                f"numba is installed but cannot be imported ({error}); Hausdorff distances run "
                "in NumPy instead (same results, slower); CTXSEG_NUMBA=0 silences this",
                RuntimeWarning,
                stacklevel=4,
            )
            return None
