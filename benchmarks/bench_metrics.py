"""Time ctxseg's Hausdorff distance against MONAI's ``compute_hausdorff_distance`` on CPU.

Four cases (issue 10), each with the plain HD and the HD95: a batch of 256 2-D 128 x 128 slices
and one 48 x 128 x 128 volume at spacing (3, 0.625, 0.625) mm, each with clean and with
speckled predictions. The masks are prostate-like (see :func:`organ`):

- clean, a trained network's prediction: the reference organ shifted by N(0, 1) voxel along
  each in-plane axis and N(0, 0.5) slice along z, radii scaled by U(0.9, 1.1), its own
  boundary roughness;
- speckled, an early-training or hard-case prediction: the organ shifted by N(0, 2) voxels
  in-plane and N(0, 1) slice along z, radii scaled by U(0.8, 1.2), with false-negative holes
  (3 discs per 2-D slice, 6 balls per volume, radius 1-2.5 voxels, inside the blob) and
  isolated false-positive voxels scattered uniformly over the whole slice or volume (20-60 per
  2-D slice, 30-60 per volume: "a few dozen").

The 2-D batch mixes slices as a stack of real ones does: 1 in 6 has no organ (clean: both
empty, NaN; speckled: only the stray voxels, +inf), 1 in 12 has the organ missed (clean:
empty prediction; speckled: stray voxels only), the rest the organ and its prediction.

The candidates run interleaved, round after round, so machine load hits all alike. Printed
per case: the median wall and CPU time of each, the ratio MONAI / ctxseg (median over the
rounds of the same-round ratio), and the largest difference of ctxseg's result to MONAI's
(finite values: MONAI returns NaN where one mask is empty and a percentile is asked, ctxseg
+inf) and to an exact float64 reference (scipy erosion, KD-tree, ``np.percentile``). MONAI
rounds distances to float32 and takes its percentile in float32 arithmetic, so a percentile
between far-apart distances (a stray voxel next to the blob's boundary) can differ from the
exact value by about 1e-4. MONAI's time depends on torch's thread count (ctxseg does not use
torch here), so each case runs with one torch thread and with the default count, side by
side.

With ``--prepared DIR`` (a store from ``ctxseg prepare``, e.g. real PROMISE12 or ACDC),
volumes are also made from its real labels (class ``--label``, up to ``--cases`` cases):
the reference is the case's mask; the clean prediction is it shifted by up to 2 voxels
in-plane and 1 slice, then dilated or eroded by one voxel; the speckled one adds 40 stray
voxels over the volume. Printed per kind: the ratios over the cases (smallest, median,
largest) and the largest difference to the exact reference; then, as an evaluation of a
test set runs, each tool over all the volumes of a kind in turn (:func:`bench_sets`).
Where numba is installed, last: ctxseg's compiled paths against its NumPy path alone,
paired on the same masks (:func:`bench_paths`).

    python benchmarks/bench_metrics.py [--quick] [--repeats N] [--only 2d|3d] [--seed S]
        [--prepared DIR [--label K] [--cases N]]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from _common import machine_line
from ctxseg.metrics import hausdorff_distance, hausdorff_distance_batch

SLICE = (128, 128)
VOLUME = (48, 128, 128)
SPACING_3D = (3.0, 0.625, 0.625)
_SETTLE = 0.05  # seconds of pause for torch's idle threads to stop spinning


def ellipsoid(
    rng: np.random.Generator, shape: tuple[int, ...], centre: np.ndarray, radii: np.ndarray
) -> np.ndarray:
    """A rough ellipsoid mask: per-voxel noise on the level set roughens the boundary.

    Shape:
        returns ``shape`` bool.
    """
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    level = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
    return level < 1 + rng.normal(0, 0.08, shape).astype(np.float32)


def organ(
    rng: np.random.Generator, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A prostate-like reference: centre near the middle, radii 12-22% of each axis.

    Returns:
        ``(mask, centre, radii)`` with the mask ``shape`` bool.
    """
    size = np.asarray(shape, dtype=np.float64)
    centre = size / 2 + rng.uniform(-0.05, 0.05, len(shape)) * size
    radii = size * rng.uniform(0.12, 0.22, len(shape))
    return ellipsoid(rng, shape, centre, radii), centre, radii


def prediction(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    centre: np.ndarray,
    radii: np.ndarray,
    speckled: bool,
) -> np.ndarray:
    """A prediction of the organ ``(centre, radii)``: clean or speckled (module docstring).

    Shape:
        returns ``shape`` bool.
    """
    # the first axis of a volume is z: shifts along it are counted in slices
    shift_sd = np.full(len(shape), 2.0 if speckled else 1.0)
    if len(shape) == 3:
        shift_sd[0] = 1.0 if speckled else 0.5
    scale = rng.uniform(0.8, 1.2) if speckled else rng.uniform(0.9, 1.1)
    pred = ellipsoid(rng, shape, centre + rng.normal(0, shift_sd), radii * scale)
    if speckled:
        add_holes(rng, pred, 3 if len(shape) == 2 else 6)
        add_strays(
            rng, pred, int(rng.integers(20, 61) if len(shape) == 2 else rng.integers(30, 61))
        )
    return pred


def add_holes(rng: np.random.Generator, mask: np.ndarray, count: int) -> None:
    """Punch ``count`` balls of radius 1-2.5 voxels, centred inside the mask, out of it."""
    inside = np.argwhere(mask)
    if inside.size == 0:
        return
    grids = np.meshgrid(*[np.arange(s) for s in mask.shape], indexing="ij", sparse=True)
    for centre in inside[rng.integers(0, len(inside), count)]:
        radius = rng.uniform(1.0, 2.5)
        mask &= sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) > radius**2


def add_strays(rng: np.random.Generator, mask: np.ndarray, count: int) -> None:
    """Set ``count`` voxels drawn uniformly over the whole array (false positives)."""
    mask[tuple(rng.integers(0, s, count) for s in mask.shape)] = True


def slice_batch(rng: np.random.Generator, n: int, speckled: bool) -> tuple[np.ndarray, np.ndarray]:
    """N 128 x 128 slices: 1 in 6 without organ, 1 in 12 with the organ missed, the rest both.

    Shape:
        returns pred, target: (N, 128, 128) bool.
    """
    pred, target = np.zeros((2, n, *SLICE), bool)
    for i in range(n):
        kind = rng.random()
        if kind >= 1 / 6:
            target[i], centre, radii = organ(rng, SLICE)
            if kind >= 1 / 4:
                pred[i] = prediction(rng, SLICE, centre, radii, speckled)
        if speckled and kind < 1 / 4:  # no organ predicted: only the stray voxels
            add_strays(rng, pred[i], int(rng.integers(20, 61)))
    return pred, target


def volume_pair(rng: np.random.Generator, speckled: bool) -> tuple[np.ndarray, np.ndarray]:
    """One 48 x 128 x 128 volume: the organ and its prediction.

    Shape:
        returns pred, target: (48, 128, 128) bool.
    """
    target, centre, radii = organ(rng, VOLUME)
    return prediction(rng, VOLUME, centre, radii, speckled), target


def monai_hd(
    pred: np.ndarray, target: np.ndarray, spacing: tuple[float, ...] | None, percentile
) -> np.ndarray:
    """MONAI's HD of each pair, foreground channel of a two-channel one-hot input.

    Shape:
        pred, target: (N, *S) bool; returns (N,).
    """
    from monai.metrics import compute_hausdorff_distance

    def one_hot(mask: np.ndarray) -> torch.Tensor:
        mask_t = torch.from_numpy(mask)
        return torch.stack([~mask_t, mask_t], dim=1)  # (N, 2, *S)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(
            one_hot(pred), one_hot(target), percentile=percentile, spacing=spacing
        )
    return hd[:, 0].double().numpy()


def exact_hd(
    pred: np.ndarray, target: np.ndarray, spacing: tuple[float, ...] | None, percentile
) -> np.ndarray:
    """An independent float64 reference: scipy-eroded surfaces, KD-tree, ``np.percentile``.

    Shape:
        pred, target: (N, *S) bool; returns (N,) (NaN both empty, +inf one empty).
    """
    scale = np.ones(pred.ndim - 1) if spacing is None else np.asarray(spacing)
    out = np.full(pred.shape[0], np.nan)
    for i, (p, t) in enumerate(zip(pred, target, strict=True)):
        if p.any() != t.any():
            out[i] = np.inf
        if not (p.any() and t.any()):
            continue
        surfaces = [np.argwhere(m ^ ndimage.binary_erosion(m)) * scale for m in (p, t)]
        directed = [cKDTree(surfaces[1 - k]).query(surfaces[k], k=1)[0] for k in range(2)]
        reduce = np.max if percentile is None else functools.partial(np.percentile, q=percentile)
        out[i] = max(reduce(d) for d in directed)
    return out


def interleaved(
    ours: Callable[[], object],
    theirs: Callable[[], object],
    repeats: int,
    default_threads: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, object]]:
    """Run MONAI (default threads, then one thread) and ctxseg round after round.

    Returns:
        ``(wall, cpu, results)``: per candidate (``monai-n``, ``monai-1``, ``ctxseg``) the
        wall and CPU seconds of every round (CPU: all threads of the process), and the last
        round's result.
    """
    # MONAI with all threads first: torch's idle worker threads spin for a while after an
    # operation, and on 2 cores a spinning thread slows (and counts in the CPU time of) what
    # runs next; a pause lets them sleep before MONAI's 1-thread run, which ctxseg follows
    # (pausing before ctxseg instead would let other work evict its data from the caches)
    runs = {"monai-n": (theirs, default_threads), "monai-1": (theirs, 1), "ctxseg": (ours, None)}
    wall: dict[str, list[float]] = {key: [] for key in runs}
    cpu: dict[str, list[float]] = {key: [] for key in runs}
    results = {}
    for _ in range(repeats):
        for key, (fn, count) in runs.items():
            if count is not None:
                torch.set_num_threads(count)
            if key == "monai-1":
                time.sleep(_SETTLE)
            start, start_cpu = time.perf_counter(), time.process_time()
            results[key] = fn()
            wall[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)
    torch.set_num_threads(default_threads)
    return wall, cpu, results


def bench(
    name: str,
    ours: Callable[[], np.ndarray],
    theirs: Callable[[], np.ndarray],
    reference: Callable[[], np.ndarray],
    repeats: int,
    default_threads: int,
) -> None:
    """Time ctxseg and MONAI (with 1 and with the default torch threads) interleaved.

    Prints the median wall and CPU times (CPU: all threads of the process; less disturbed by
    other work on a shared machine), the ratios, and the largest difference of ctxseg's
    result to MONAI's and to an exact float64 reference.
    """
    wall, cpu, results = interleaved(ours, theirs, repeats, default_threads)
    finite = np.isfinite(results["monai-1"])  # MONAI: NaN for a one-sided miss with a percentile
    to_monai = np.max(np.abs(results["ctxseg"][finite] - results["monai-1"][finite]), initial=0.0)
    exact = reference()
    same = np.isfinite(exact)
    to_exact = np.max(np.abs(results["ctxseg"][same] - exact[same]), initial=0.0)
    conventions = np.array_equal(results["ctxseg"][~same], exact[~same], equal_nan=True)
    w = {key: statistics.median(values) * 1e3 for key, values in wall.items()}
    c = {key: statistics.median(values) * 1e3 for key, values in cpu.items()}

    def paired(times: dict[str, list[float]], key: str) -> float:
        """Median over the rounds of MONAI's time over ctxseg's in the same round."""
        return statistics.median(m / o for m, o in zip(times[key], times["ctxseg"], strict=True))

    print(
        f"{name:<27} {w['ctxseg']:7.2f} ({c['ctxseg']:6.2f}) | "
        f"{w['monai-1']:7.1f} ({c['monai-1']:6.1f}) {paired(wall, 'monai-1'):5.1f}x "
        f"({paired(cpu, 'monai-1'):5.1f}x) | "
        f"{w['monai-n']:7.1f} ({c['monai-n']:6.1f}) {paired(wall, 'monai-n'):5.1f}x "
        f"({paired(cpu, 'monai-n'):5.1f}x) | {to_monai:.1e} {to_exact:.1e}"
        + ("" if conventions else "  NaN/inf differ from the reference!"),
        flush=True,
    )


def label_volumes(
    store_dir: Path, label: int, count: int, rng: np.random.Generator
) -> list[tuple[str, np.ndarray, np.ndarray, tuple[float, ...]]]:
    """Clean and speckled prediction/reference pairs made from a prepared store's labels.

    Returns:
        ``(name, pred, target, spacing)`` for up to ``count`` cases with the class present,
        clean then speckled for each.
    """
    from ctxseg.data import PreparedStore

    store = PreparedStore.open(store_dir)
    out = []
    for case in store.cases[:count]:
        target = np.asarray(store.labels[store.case_rows(case["case"])]) == label
        if not target.any():
            continue
        spacing = tuple(float(s) for s in case["spacing"])
        shift = (int(rng.integers(-1, 2)), *(int(v) for v in rng.integers(-2, 3, 2)))
        clean = np.roll(target, shift, axis=(0, 1, 2))
        grow = ndimage.binary_dilation if rng.random() < 0.5 else ndimage.binary_erosion
        clean = grow(clean)
        speckled = clean.copy()
        add_strays(rng, speckled, 40)
        out += [(f"{case['case']} clean", clean, target, spacing)]
        out += [(f"{case['case']} speckled", speckled, target, spacing)]
    return out


def bench_volumes(
    pairs: list[tuple[str, np.ndarray, np.ndarray, tuple[float, ...]]],
    repeats: int,
    default_threads: int,
) -> None:
    """Ratios MONAI / ctxseg (CPU time, and wall against MONAI's default threads) per kind.

    Each pair runs ``repeats`` rounds of :func:`interleaved`; per kind (clean or speckled,
    HD or HD95) the smallest, median and largest of the pairs' ratios of median times.
    """
    for percentile in (None, 95):
        tag = "HD" if percentile is None else "HD95"
        for kind in ("clean", "speckled"):
            cpu_one, wall_n, times, worst = [], [], [], 0.0
            for name, pred, target, spacing in pairs:
                if not name.endswith(kind):
                    continue
                p, t = pred[None], target[None]
                wall, cpu, results = interleaved(
                    lambda p=pred, t=target, s=spacing, q=percentile: hausdorff_distance(
                        p, t, spacing=s, percentile=q
                    ),
                    lambda p=p, t=t, s=spacing, q=percentile: monai_hd(p, t, s, q),
                    repeats,
                    default_threads,
                )
                ours = results["ctxseg"]
                worst = max(worst, abs(ours - float(exact_hd(p, t, spacing, percentile)[0])))
                cpu_one.append(statistics.median(cpu["monai-1"]) / statistics.median(cpu["ctxseg"]))
                wall_n.append(
                    statistics.median(wall["monai-n"]) / statistics.median(wall["ctxseg"])
                )
                times.append(statistics.median(wall["ctxseg"]) * 1e3)
            if not times:
                continue

            def spread(values: list[float]) -> str:
                return (
                    f"{min(values):5.1f}x / {statistics.median(values):5.1f}x / {max(values):5.1f}x"
                )

            print(
                f"{tag:<5} {kind:<9} {len(times):2d} volumes | ctxseg {min(times):5.2f}-"
                f"{max(times):5.2f} ms | vs MONAI 1 thread, CPU: {spread(cpu_one)} | vs MONAI "
                f"{default_threads} threads, wall: {spread(wall_n)} | to exact {worst:.1e}",
                flush=True,
            )


def bench_sets(
    pairs: list[tuple[str, np.ndarray, np.ndarray, tuple[float, ...]]],
    repeats: int,
    default_threads: int,
) -> None:
    """Each tool over all the volumes of a kind in turn, as an evaluation of a test set runs.

    Round after round, MONAI (one torch thread) over every volume, then ctxseg over every
    volume; printed per kind: CPU ms a volume (medians) and the ratio MONAI / ctxseg (median
    and smallest over the rounds of the same-round ratio).
    """
    torch.set_num_threads(1)
    for percentile in (None, 95):
        tag = "HD" if percentile is None else "HD95"
        for kind in ("clean", "speckled"):
            chosen = [(p, t, s) for name, p, t, s in pairs if name.endswith(kind)]
            if not chosen:
                continue
            theirs, ours = [], []
            for _ in range(repeats):
                start = time.process_time()
                for p, t, s in chosen:
                    monai_hd(p[None], t[None], s, percentile)
                middle = time.process_time()
                for p, t, s in chosen:
                    hausdorff_distance(p, t, spacing=s, percentile=percentile)
                theirs.append(middle - start)
                ours.append(time.process_time() - middle)
            ratios = [m / o for m, o in zip(theirs, ours, strict=True)]
            each = 1e3 / len(chosen)
            print(
                f"{tag:<5} {kind:<9} {len(chosen):2d} volumes in turn | ctxseg "
                f"{statistics.median(ours) * each:5.2f} ms, MONAI 1 thread "
                f"{statistics.median(theirs) * each:6.2f} ms a volume (CPU) | ratio "
                f"{statistics.median(ratios):5.1f}x (smallest {min(ratios):5.1f}x)",
                flush=True,
            )
    torch.set_num_threads(default_threads)


def bench_paths(
    cases: list[tuple[str, np.ndarray, np.ndarray, tuple[float, ...] | None]], repeats: int
) -> None:
    """ctxseg's compiled paths against its NumPy path alone, paired on the same masks.

    ``CTXSEG_NUMBA`` toggled in-process (``_compiled.AVAILABLE``), the two interleaved round
    by round; printed per group and percentile: the ratio NumPy / compiled of the median CPU
    times, smallest / median / largest over the group's cases. Both must give the same
    number (checked).

    Args:
        cases: ``(group, pred, target, spacing)``; pred and target are one pair, or a batch
            when 3-D with ``spacing`` None (2-D slices).
    """
    from ctxseg.metrics import _compiled

    def run(pred: np.ndarray, target: np.ndarray, spacing, percentile) -> np.ndarray:
        if spacing is None:
            return hausdorff_distance_batch(pred, target, percentile=percentile)
        return np.array([hausdorff_distance(pred, target, spacing=spacing, percentile=percentile)])

    saved = _compiled.AVAILABLE
    for percentile in (None, 95):
        groups: dict[str, list[float]] = {}
        for group, pred, target, spacing in cases:
            times: dict[bool, list[float]] = {False: [], True: []}
            results = {}
            try:
                for _ in range(repeats):
                    for compiled in (False, True):
                        _compiled.AVAILABLE = compiled
                        start = time.process_time()
                        results[compiled] = run(pred, target, spacing, percentile)
                        times[compiled].append(time.process_time() - start)
            finally:
                _compiled.AVAILABLE = saved
            np.testing.assert_allclose(results[True], results[False], rtol=1e-12, equal_nan=True)
            ratio = statistics.median(times[False]) / statistics.median(times[True])
            groups.setdefault(group, []).append(ratio)
        tag = "HD" if percentile is None else "HD95"
        for group, ratios in groups.items():
            print(
                f"{tag:<5} {group:<34} {len(ratios):2d} | NumPy / compiled, CPU: "
                f"{min(ratios):5.2f}x / {statistics.median(ratios):5.2f}x / {max(ratios):5.2f}x",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 10")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (5 times as many in 3-D)")
    parser.add_argument("--only", choices=("2d", "3d"), default=None, help="run one size only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated masks")
    parser.add_argument(
        "--prepared", type=Path, default=None, help="also: a prepared store's labels"
    )
    parser.add_argument("--label", type=int, default=1, help="class of --prepared to use")
    parser.add_argument("--cases", type=int, default=10, help="cases of --prepared to use")
    args = parser.parse_args()
    pairs = []
    if args.prepared is not None:  # before minutes of timing, not after
        from ctxseg.data import StoreError

        try:
            pairs = label_volumes(
                args.prepared, args.label, args.cases, np.random.default_rng(args.seed)
            )
        except StoreError as error:
            parser.error(str(error))
        if not pairs:
            parser.error(f"no case of {args.prepared} (first {args.cases}) has class {args.label}")
    repeats = args.repeats or (3 if args.quick else 10)
    default_threads = torch.get_num_threads()
    import monai

    print(machine_line())
    from ctxseg.metrics import _compiled

    search = "compiled (numba)" if _compiled.available() else "NumPy only (no numba)"
    print(
        f"numpy {np.__version__}, scipy {scipy.__version__}, monai {monai.__version__}; "
        f"{repeats} interleaved rounds ({5 * repeats} for the volume); ctxseg's slices, thick "
        f"slices and far voxels: {search}; {time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(
        "ms, median wall (CPU) per call; ratio MONAI / ctxseg by wall (CPU), median over the"
        " rounds; largest |difference| of ctxseg to MONAI and to an exact float64 reference"
    )
    print(
        f"{'case':<27} {'ctxseg':>16} | {'MONAI, 1 torch thread':>32} | "
        f"{f'MONAI, {default_threads} torch threads':>32} | to MONAI, exact"
    )
    rng = np.random.default_rng(args.seed)
    synthetic = []
    for speckled in (False, True):
        kind = "speckled" if speckled else "clean"
        pred2d, target2d = slice_batch(rng, 256, speckled)
        pred3d, target3d = volume_pair(rng, speckled)
        synthetic += [(f"2-D 256 slices {kind}", pred2d, target2d, None)]
        synthetic += [(f"3-D volume {kind}", pred3d, target3d, SPACING_3D)]
        both = int((pred2d.any(axis=(1, 2)) & target2d.any(axis=(1, 2))).sum())
        print(
            f"{kind}: 2-D {both} of 256 slices with both masks, {int(pred2d.sum())} predicted "
            f"pixels; 3-D {int(pred3d.sum())} predicted, {int(target3d.sum())} reference voxels"
        )
        for percentile in (None, 95):
            tag = "HD" if percentile is None else "HD95"
            if args.only != "3d":
                bench(
                    f"{tag} 2-D 256 slices, {kind}",
                    lambda p=pred2d, t=target2d, q=percentile: hausdorff_distance_batch(
                        p, t, percentile=q
                    ),
                    lambda p=pred2d, t=target2d, q=percentile: monai_hd(p, t, None, q),
                    lambda p=pred2d, t=target2d, q=percentile: exact_hd(p, t, None, q),
                    repeats,
                    default_threads,
                )
            if args.only != "2d":  # a volume is quick: more rounds
                bench(
                    f"{tag} 3-D volume, {kind}",
                    lambda p=pred3d, t=target3d, q=percentile: np.array(
                        [hausdorff_distance(p, t, spacing=SPACING_3D, percentile=q)]
                    ),
                    lambda p=pred3d, t=target3d, q=percentile: monai_hd(
                        p[None], t[None], SPACING_3D, q
                    ),
                    lambda p=pred3d, t=target3d, q=percentile: exact_hd(
                        p[None], t[None], SPACING_3D, q
                    ),
                    5 * repeats,
                    default_threads,
                )
    if pairs:
        print(
            f"{args.prepared}: class {args.label}, {len(pairs) // 2} cases, spacing "
            f"{sorted({p[3] for p in pairs})} mm; {repeats} interleaved rounds each; ratio per "
            "volume of the medians; smallest / median / largest over the volumes"
        )
        bench_volumes(pairs, repeats, default_threads)
        print(
            "the same volumes as a test set: each tool over all of a kind in turn, "
            f"{repeats} rounds; CPU time"
        )
        bench_sets(pairs, repeats, default_threads)
    if _compiled.available():
        print(
            f"ctxseg's compiled paths against its NumPy path alone, paired, {repeats} rounds "
            "(smallest / median / largest over the volumes; a synthetic case is one)"
        )
        kinds = [f"{args.prepared.name} {name.rsplit(' ', 1)[1]}" for name, *_ in pairs]
        prepared = [(kind, *pair[1:]) for kind, pair in zip(kinds, pairs, strict=True)]
        sizes = ("2-D", "3-D") if args.only is None else (f"{args.only[0]}-D",)
        bench_paths([c for c in synthetic if c[0][:3] in sizes] + prepared, repeats)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
