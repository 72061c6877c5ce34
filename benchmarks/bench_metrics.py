"""Time ctxseg's Hausdorff distance against MONAI's ``compute_hausdorff_distance`` on CPU.

Two cases (issue 2): a batch of 256 2-D 128x128 slices and one 3-D 128x128x48 volume pair,
with prostate-like shapes (noisy ellipsoids, the prediction shifted and rescaled with a few
false-positive specks), each with and without percentile 95. The candidates run interleaved,
repeat after repeat, so machine load hits both; the median time of each is printed with the
ratio, and the results are checked to agree within 1e-4.

MONAI's time depends on torch's thread count (ctxseg does not use torch here): on a busy
machine its default threads can be several times slower than ``--threads 1``, so run both
settings before quoting a ratio.

    python benchmarks/bench_metrics.py [--quick] [--repeats N] [--threads T] [--only 2d|3d]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

import numpy as np
import scipy
import torch

from _common import cpu_model
from ctxseg.metrics import hausdorff_distance, hausdorff_distance_batch


def ellipsoid(
    rng: np.random.Generator, shape: tuple[int, ...], centre: np.ndarray, radii: np.ndarray
) -> np.ndarray:
    """A noisy ellipsoid mask: boundary roughness from per-voxel noise on the level set.

    Shape:
        returns ``shape`` bool.
    """
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    level = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
    return level < 1 + rng.normal(0, 0.08, shape).astype(np.float32)


def prostate_pair(
    rng: np.random.Generator, shape: tuple[int, ...], specks: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reference and prediction: an organ-sized ellipsoid and a shifted, rescaled copy.

    Shape:
        returns two ``shape`` bool arrays.
    """
    size = np.asarray(shape, dtype=np.float64)
    centre = size / 2 + rng.uniform(-0.05, 0.05, len(shape)) * size
    radii = size * rng.uniform(0.12, 0.22, len(shape))
    target = ellipsoid(rng, shape, centre, radii)
    pred = ellipsoid(
        rng, shape, centre + rng.normal(0, 1.5, len(shape)), radii * rng.uniform(0.85, 1.15)
    )
    for _ in range(specks):  # false positives far from the organ
        pred[tuple(rng.integers(0, s) for s in shape)] = True
    return pred, target


def slice_batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """N 128x128 slices with organ cross-sections; 1 in 6 has none, 1 in 12 a lone speck.

    Shape:
        returns two (N, 128, 128) bool arrays.
    """
    pred, target = np.zeros((2, n, 128, 128), bool)
    for i in range(n):
        kind = rng.random()
        if kind < 1 / 6:
            continue  # nothing in either: NaN
        if kind < 1 / 4:
            pred[i, rng.integers(0, 128), rng.integers(0, 128)] = True  # a false alarm: inf
            continue
        pred[i], target[i] = prostate_pair(rng, (128, 128), specks=int(rng.random() < 0.2))
    return pred, target


def monai_hd(pred: np.ndarray, target: np.ndarray, spacing, percentile) -> np.ndarray:
    """MONAI's HD of each pair, foreground channel of a two-channel one-hot input."""
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


def bench(name: str, candidates: dict, repeats: int) -> None:
    """Run the candidates interleaved ``repeats`` times; print medians and the ratio.

    Wall time is what a user waits; CPU time (all threads of the process) is less disturbed
    by other work on a shared machine. Both are medians over the repeats.
    """
    wall: dict[str, list[float]] = {key: [] for key in candidates}
    cpu: dict[str, list[float]] = {key: [] for key in candidates}
    results = {}
    for _ in range(repeats):
        for key, fn in candidates.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            results[key] = fn()
            wall[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)
    ours, theirs = results["ctxseg"], results["monai"]
    finite = np.isfinite(theirs)  # MONAI gives NaN for a one-sided miss with a percentile
    agree = np.allclose(ours[finite], theirs[finite], rtol=0, atol=1e-4)
    for label, times in (("wall", wall), ("cpu", cpu)):
        med = {key: statistics.median(values) for key, values in times.items()}
        print(
            f"{name:<32} {label:<4} ctxseg {med['ctxseg'] * 1e3:8.2f} ms  "
            f"monai {med['monai'] * 1e3:8.2f} ms  speed-up {med['monai'] / med['ctxseg']:6.1f}x"
            + (f"  agree(1e-4) {agree}" if label == "wall" else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 10")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (MONAI)")
    parser.add_argument("--only", choices=("2d", "3d"), default=None, help="run one case only")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 10)
    if args.threads:
        torch.set_num_threads(args.threads)
    import monai

    print(
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}; python {platform.python_version()}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, torch {torch.__version__}, "
        f"monai {monai.__version__}; {repeats} interleaved repeats, median"
    )
    rng = np.random.default_rng(0)
    pred2d, target2d = slice_batch(rng, 256)
    pred3d, target3d = prostate_pair(rng, (48, 128, 128), specks=5)
    spacing3d = (3.0, 0.625, 0.625)
    print(
        f"2-D: {pred2d.shape}, {int((pred2d & target2d).any(axis=(1, 2)).sum())} slices with "
        f"foreground in both; 3-D: {pred3d.shape} spacing {spacing3d}, "
        f"{int(target3d.sum())} target voxels"
    )
    for percentile in (None, 95):
        tag = "HD" if percentile is None else "HD95"
        if args.only != "3d":
            bench(
                f"{tag} 2-D batch 256x128x128",
                {
                    "ctxseg": lambda p=percentile: hausdorff_distance_batch(
                        pred2d, target2d, percentile=p
                    ),
                    "monai": lambda p=percentile: monai_hd(pred2d, target2d, None, p),
                },
                repeats,
            )
        if args.only != "2d":
            bench(
                f"{tag} 3-D 48x128x128 anisotropic",
                {
                    "ctxseg": lambda p=percentile: np.array(
                        [hausdorff_distance(pred3d, target3d, spacing=spacing3d, percentile=p)]
                    ),
                    "monai": lambda p=percentile: monai_hd(
                        pred3d[None], target3d[None], spacing3d, p
                    ),
                },
                repeats,
            )


if __name__ == "__main__":
    main()
