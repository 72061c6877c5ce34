"""The compiled kernels (``ctxseg.metrics._kernels``, via ``_compiled``) against all pairs.

Where numba is installed: the whole-pair Hausdorff kernels against the all-pairs reference on
slices and volumes (strays, empty pairs, masks on the array's edges, ties), the far-voxel
search and its limit, which inputs take which path, and the fallbacks (``CTXSEG_NUMBA=0``,
a numba that cannot be imported). The same kernels also run as plain Python
(``NUMBA_DISABLE_JIT=1``), where NumPy checks every index numba would not.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from ctxseg.metrics import _compiled, hausdorff_distance
from test_metrics_speckled import brute_force_hd, nearest_distances, thick_slice_pair

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


def random_pairs(rng: np.random.Generator, shape: tuple[int, ...], count: int) -> tuple:
    """Blobs, shifted and grown or shrunk, some with stray voxels, some empty; the blobs of
    every other pair reach the array's edges.

    Shape:
        returns pred, target: (count, *shape) bool.
    """
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    pred, target = np.zeros((2, count, *shape), bool)
    for i in range(count):
        size = np.asarray(shape, float)
        centre = size * rng.uniform(0.0 if i % 2 else 0.3, 1.0 if i % 2 else 0.7, len(shape))
        radii = np.maximum(size * rng.uniform(0.15, 0.4, len(shape)), 1.0)
        target[i] = sum(
            ((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True)
        ) < 1  # fmt: skip
        moved = centre + rng.normal(0, 1.5, len(shape))
        pred[i] = sum(((g - c) / (r * rng.uniform(0.7, 1.3))) ** 2
                      for g, c, r in zip(grids, moved, radii, strict=True)) < 1  # fmt: skip
        if i % 3 == 1:
            pred[i][tuple(rng.integers(0, s, 6) for s in shape)] = True
    pred[-1] = False  # one pair with an empty prediction
    if count > 2:
        pred[-2] = target[-2] = False  # and one with both empty
    return pred, target


def all_pairs_hd(pred: np.ndarray, target: np.ndarray, spacing, percentile) -> list[float]:
    """The all-pairs reference of each pair of a batch."""
    return [brute_force_hd(p, t, spacing, percentile) for p, t in zip(pred, target, strict=True)]


CASES = [  # (shape of a pair, spacing): slices, thick slices, near-isotropic, odd in-plane
    ((24, 31), (1.0, 1.0)),
    ((2, 1), (0.8, 1.1)),  # narrower than an erosion: every voxel is on the surface
    ((9, 20, 23), (10.0, 1.5625, 1.5625)),
    ((12, 17, 15), (1.0, 1.0, 1.0)),
    ((7, 13, 19), (0.7, 2.0, 1.3)),
]


@needs_numba
@pytest.mark.parametrize(("shape", "spacing"), CASES)
def test_compiled_pairs_equal_all_pairs(shape, spacing):
    """The whole-pair kernels: plain HD and percentiles low to high (ranks among tied
    distances, the sample's first floor kept or too high) equal the all-pairs reference."""
    pred, target = random_pairs(np.random.default_rng(len(shape) + shape[0]), shape, 12)
    for percentile in (None, 5, 50, 90, 95, 100):
        found = _compiled.hausdorff_pairs(pred, target, np.asarray(spacing), percentile)
        expected = all_pairs_hd(pred, target, spacing, percentile)
        np.testing.assert_allclose(found, expected, rtol=1e-12, atol=1e-12, equal_nan=True)


@needs_numba
def test_thick_slices_with_missed_slices_equal_all_pairs_compiled():
    """ACDC-like pairs (missed and extra slices at 10 mm, stray voxels), through the public
    function: measured whole by the compiled kernels, equal to all pairs."""
    rng = np.random.default_rng(3)
    spacing = (10.0, 1.5625, 1.5625)
    for case in range(8):
        pred, target = thick_slice_pair(rng, strays=[0, 6][case % 2])
        for percentile in (None, 95, 50):
            expected = brute_force_hd(pred, target, spacing, percentile)
            found = hausdorff_distance(pred, target, spacing=spacing, percentile=percentile)
            assert found == pytest.approx(expected, rel=1e-12), (case, percentile)


@needs_numba
def test_a_percentile_whose_first_floor_is_too_high_is_measured_again_exactly():
    """A directed percentile whose sampled voxels (every 16th) are all far: the sample puts
    the first floor above the rank's value, too few voxels lie beyond it, and the pass runs
    again without it. Equal to the percentile of the exact distances either way."""
    from ctxseg.metrics import _kernels

    n = 160
    xs = np.where(np.arange(n) % 16 == 0, 100, np.arange(n) % 7 + 1)  # 10 far, 150 near
    query = (np.zeros(n, np.int64), np.zeros(n, np.int64), xs.astype(np.int64))
    starts = np.array([0, 1], np.int64)  # one row (slice 0, row 0) holding column 0
    other = (starts, np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64))
    ring = _compiled._ring(1, 1, 1.0, 1.0)
    distances = xs * 0.5
    for percentile in (90.0, 95.0, 99.0, 50.0):  # 90: 16 voxels beyond the first floor needed
        found = _kernels.directed(query, other, 1, 1, (1.0, 0.5, 0.5), ring, percentile, -1.0)
        assert found == pytest.approx(np.percentile(distances, percentile), rel=1e-12)
    assert _kernels.directed(query, other, 1, 1, (1.0, 0.5, 0.5), ring, -1.0, -1.0) == 50.0


@needs_numba
def test_slices_and_thick_volumes_are_measured_whole_compiled_near_isotropic_ones_not(monkeypatch):
    """With numba: 2-D masks and volumes of slices at least 3x the in-plane spacing go to the
    whole-pair kernels; a near-isotropic volume takes the NumPy path, whose far voxels (a far
    speck) still go to the compiled search. Without numba, neither runs."""
    monkeypatch.setattr(_compiled, "AVAILABLE", True)
    calls = []
    pairs, search = _compiled.hausdorff_pairs, _compiled.nearest_distances
    monkeypatch.setattr(
        _compiled, "hausdorff_pairs", lambda *a: calls.append("pairs") or pairs(*a)
    )  # fmt: skip
    monkeypatch.setattr(
        _compiled, "nearest_distances", lambda *a: calls.append("search") or search(*a)
    )  # fmt: skip
    pred, target = thick_slice_pair(np.random.default_rng(0), strays=0)
    hausdorff_distance(pred[4], target[4], spacing=(1.5, 1.5))
    hausdorff_distance(pred, target, spacing=(10.0, 1.5625, 1.5625), percentile=95)
    assert calls == ["pairs", "pairs"]
    calls.clear()
    far = target.copy()
    far[0, 0, 0] = True  # a far speck: the plain HD's candidate searched compiled
    hausdorff_distance(far, target, spacing=(1.0, 1.0, 1.0))
    assert calls == ["search"]
    calls.clear()
    monkeypatch.setattr(_compiled, "AVAILABLE", False)
    expected = brute_force_hd(far, target, (10.0, 1.5625, 1.5625), None)
    assert hausdorff_distance(far, target, spacing=(10.0, 1.5625, 1.5625)) == pytest.approx(
        expected, rel=1e-12
    )
    assert calls == []


def test_kernels_run_as_plain_python_equal_all_pairs():
    """``NUMBA_DISABLE_JIT=1``: the kernels run as the Python they are written in, where
    NumPy checks every index (numba does not), on a few pairs of each kind of case."""
    pytest.importorskip("numba", reason="numba not installed (pip install ctxseg[fast])")
    script = """
import sys
import numpy as np
sys.path[:0] = [sys.argv[1]]
from ctxseg.metrics import _compiled
from test_metrics_compiled import CASES, all_pairs_hd, random_pairs, thick_batch
from test_metrics_speckled import nearest_distances
assert _compiled.available()
for shape, spacing in CASES:
    pred, target = random_pairs(np.random.default_rng(1), shape, 4)
    for percentile in (None, 95, 50):
        found = _compiled.hausdorff_pairs(pred, target, np.asarray(spacing), percentile)
        expected = all_pairs_hd(pred, target, spacing, percentile)
        np.testing.assert_allclose(found, expected, rtol=1e-12, atol=1e-12, equal_nan=True)
query, other, shape = thick_batch(np.random.default_rng(2))
scale = np.asarray((10.0, 1.5625, 1.5625))
expected = nearest_distances(query, other, shape, scale)
np.testing.assert_allclose(_compiled.nearest_distances(query, other, shape, scale), expected)
print("ok")
"""
    tests = os.path.dirname(__file__)
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, tests], env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


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
    monkeypatch.delitem(sys.modules, "ctxseg.metrics._kernels", raising=False)
    _compiled._kernels.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="numba is installed but cannot be imported"):
            assert not _compiled.available()
        assert hausdorff_distance(pred, target, spacing=spacing) == expected
    finally:
        _compiled._kernels.cache_clear()  # the next test imports the real kernels again


def test_numba_with_no_writable_cache_folder_still_compiles_in_memory():
    """Where numba can write its cache nowhere (a read-only install, no writable home), the
    loops are compiled in memory, with one warning that says so, instead of falling back to
    NumPy (numba itself refuses ``cache=True`` there). numba's cache locators are emptied in
    a child process, as no folder being writable would leave them."""
    code = (
        "import warnings\n"
        "import numba.core.caching as caching\n"
        "caching.CacheImpl._locator_classes = []\n"
        "import ctxseg.metrics._compiled as c\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    kernels = c._kernels()\n"
        "print(kernels is not None, c.CACHE_ON_DISK, kernels._JIT['cache'])\n"
        "print(kernels.row_any(__import__('numpy').eye(3, dtype='uint8')[None]).tolist())\n"
        "print(' | '.join(str(w.message) for w in caught))\n"
    )
    env = {**os.environ, "CTXSEG_NUMBA": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded, row_any, warned = out.stdout.splitlines()
    assert loaded == "True False False"
    assert row_any == "[[1, 1, 1]]"
    assert "no writable folder for its cache" in warned and "NUMBA_CACHE_DIR" in warned
    assert "cannot be imported" not in warned
