"""The compiled far-voxel search (``ctxseg.metrics._compiled``) against all-pairs distances.

Its Python source runs uncompiled here too, so the search itself is checked where numba is
not installed; the compiled kernel, the limit and the Hausdorff path that uses it are
checked where it is (skipped, with the reason, elsewhere).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from ctxseg.metrics import _compiled, hausdorff_distance
from test_metrics_speckled import nearest_distances

needs_numba = pytest.mark.skipif(
    not _compiled.INSTALLED, reason="numba not installed (pip install ctxseg[fast])"
)


def thick_batch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Three pairs of sparse surfaces at thick slices: some slices of the other surface empty,
    one pair's other surface in a single slice, voxels on the box's edges.

    Returns:
        ``(query_flat, other_flat, shape)``: sorted flat indices into a (3, 9, 13, 17) batch.
    """
    shape = (3, 9, 13, 17)
    grid = np.arange(math.prod(shape)).reshape(shape)
    other = [
        grid[0, 2:5][rng.random((3, 13, 17)) < 0.15],
        grid[1, 4][rng.random((13, 17)) < 0.3],
        grid[2][rng.random((9, 13, 17)) < 0.05],
    ]
    query = grid[rng.random(shape) < 0.2]
    query = np.concatenate([query, [0, grid.size - 1, grid[1, 8, 12, 16]]])
    return np.unique(query), np.sort(np.concatenate(other)), shape


@pytest.mark.parametrize("spacing", [(10.0, 1.5625, 1.5625), (3.0, 0.625, 0.7), (1.0, 1.0, 1.0)])
def test_search_equals_all_pairs_in_python(spacing):
    """The search's own loop, run as plain Python: every pair's distances exact, searched
    within the pair only (a nearer voxel of the next pair's other surface is ignored)."""
    query, other, shape = thick_batch(np.random.default_rng(5))
    scale = np.asarray(spacing)
    rows = other // shape[3]
    starts = np.zeros(shape[0] * shape[1] * shape[2] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=starts.size - 1), out=starts[1:])
    query_rows = query // shape[3]
    squared = _compiled._search_loop(
        query_rows // shape[2], query_rows % shape[2], query - query_rows * shape[3], starts,
        other - rows * shape[3], shape[1], shape[2], *map(float, spacing), math.inf,
    )  # fmt: skip
    expected = nearest_distances(query, other, shape, scale)
    np.testing.assert_allclose(np.sqrt(squared), expected, rtol=1e-12)


@needs_numba
@pytest.mark.parametrize("spacing", [(10.0, 1.5625, 1.5625), (3.0, 0.625, 0.7), (1.0, 1.0, 1.0)])
def test_compiled_search_equals_all_pairs_and_keeps_to_its_limit(spacing):
    """Compiled: exact distances; with a limit, every finite one exact and within it, every
    +inf one at least as far (so the settled ones come nearest first, as ``needed`` wants)."""
    query, other, shape = thick_batch(np.random.default_rng(7))
    scale = np.asarray(spacing)
    expected = nearest_distances(query, other, shape, scale)
    found = _compiled.nearest_distances(query, other, shape, scale)
    np.testing.assert_allclose(found, expected, rtol=1e-12)
    limit = float(np.median(expected))
    capped = _compiled.nearest_distances(query, other, shape, scale, limit)
    settled = np.isfinite(capped)
    np.testing.assert_allclose(capped[settled], expected[settled], rtol=1e-12)
    assert np.all(capped[settled] <= limit) and np.all(expected[~settled] >= limit - 1e-9)
    assert 0 < settled.sum() < query.size


@needs_numba
def test_hausdorff_of_missed_slices_searches_far_voxels_compiled(monkeypatch):
    """With numba, a volume pair whose prediction misses slices (far voxels 20-30 mm off at
    10 mm slices) measures them by the compiled search; the result equals all pairs."""
    monkeypatch.setattr(_compiled, "AVAILABLE", True)
    calls = []
    search = _compiled.nearest_distances
    monkeypatch.setattr(
        _compiled, "nearest_distances", lambda q, *a: calls.append(q.size) or search(q, *a)
    )  # fmt: skip
    yy, xx = np.mgrid[:40, :44]
    target = np.zeros((10, 40, 44), bool)
    target[1:8] = (yy - 20) ** 2 + (xx - 22) ** 2 < 11**2
    pred = np.zeros_like(target)
    pred[4:7] = (yy - 21) ** 2 + (xx - 20) ** 2 < 9**2
    spacing = (10.0, 1.5625, 1.5625)
    scale = np.asarray(spacing)
    surfaces = [np.flatnonzero(m & ~ndimage.binary_erosion(m)) for m in (pred, target)]
    shape = (1, *target.shape)
    expected = max(
        nearest_distances(surfaces[0], surfaces[1], shape, scale).max(),
        nearest_distances(surfaces[1], surfaces[0], shape, scale).max(),
    )
    assert hausdorff_distance(pred, target, spacing=spacing) == pytest.approx(expected, rel=1e-12)
    assert calls and sum(calls) > 100  # the target's missed slices, searched compiled


def test_numba_can_be_switched_off_by_the_environment():
    """``CTXSEG_NUMBA=0`` keeps the NumPy path even where numba is installed."""
    code = "import ctxseg.metrics._compiled as c; print(c.AVAILABLE)"
    env = {**os.environ, "CTXSEG_NUMBA": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_a_numba_that_cannot_be_imported_falls_back_to_numpy_with_a_warning(monkeypatch):
    """numba installed but broken (a NumPy it does not support, say): one warning that names
    the problem, and the NumPy path gives the same distance."""
    yy, xx = np.mgrid[:30, :30]
    target = np.zeros((8, 30, 30), bool)
    target[1:7] = (yy - 15) ** 2 + (xx - 15) ** 2 < 8**2
    pred = np.zeros_like(target)
    pred[3:5] = target[3:5]
    spacing = (10.0, 1.5, 1.5)
    expected = hausdorff_distance(pred, target, spacing=spacing)
    monkeypatch.setattr(_compiled, "AVAILABLE", True)
    monkeypatch.setitem(sys.modules, "numba", None)  # ``import numba`` now fails
    _compiled._search.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="numba is installed but cannot be imported"):
            assert not _compiled.available()
        assert hausdorff_distance(pred, target, spacing=spacing) == expected
    finally:
        _compiled._search.cache_clear()  # the next test imports the real numba again
