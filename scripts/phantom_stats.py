"""Statistics and a figure of the phantoms beside the real data sets (for docs/data.md).

Prepares the two phantoms (default size) and the real sets of ``$CTXSEG_SHARED_DATA`` (default
``../shared/data``) with the project's own preparers, then prints one Markdown table per
anatomy: per class, how often it appears on a slice and how much of the slice it covers, the
share of empty slices, how the cross-section shrinks towards the ends of the organ, and image
intensity figures. Writes ``docs/img/phantoms_vs_real.png`` (a few slices with mask contours).

    .venv/bin/python scripts/phantom_stats.py [--data DIR] [--figure PATH] [--json PATH]

The preparation times it prints are single runs on whatever machine runs it (not benchmarks).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np
from scipy import ndimage

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from ctxseg.data.acdc import prepare_acdc  # noqa: E402
from ctxseg.data.phantoms import prepare_phantom  # noqa: E402
from ctxseg.data.promise12 import prepare_promise12  # noqa: E402
from ctxseg.data.store import PreparedStore  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COLOURS = {1: "#3b82f6", 2: "#22c55e", 3: "#ef4444"}


def class_stats(labels: np.ndarray, cls: int | None) -> dict[str, float]:
    """Per-slice foreground fraction of one class (``None``: any foreground).

    Shape:
        labels: ``(N, H, W)``.
    """
    mask = labels > 0 if cls is None else labels == cls
    frac = mask.reshape(len(mask), -1).mean(axis=1)  # (N,)
    present = frac[frac > 0]
    q = np.percentile(present, [5, 50, 95]) if present.size else [np.nan] * 3
    return {
        "slices_with": float((frac > 0).mean()),
        "mean": float(present.mean()) if present.size else np.nan,
        "p5": float(q[0]),
        "median": float(q[1]),
        "p95": float(q[2]),
    }


def end_profile(store: PreparedStore) -> dict[str, float]:
    """Mean foreground fraction on the largest slice of each case vs on its first and last.

    The end slices are the apex and base (prostate) or the apex and basal slice (heart).
    """
    largest, ends = [], []
    for case in store.cases:
        rows = store.case_rows(case["case"])
        frac = (np.asarray(store.labels[rows]) > 0).reshape(case["num_slices"], -1).mean(1)
        nz = np.flatnonzero(frac)
        if nz.size == 0:
            continue
        largest.append(frac.max())
        ends.extend([frac[nz[0]], frac[nz[-1]]])
    return {"largest": float(np.mean(largest)), "ends": float(np.mean(ends))}


def intensity_stats(images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean intensity in the foreground and in a 5-pixel ring around it, and their contrast.

    ``contrast = (mean_fg - mean_ring) / std_ring``: near 0 means the organ is no brighter or
    darker than what surrounds it (the task needs shape and context, not a threshold).

    Shape:
        images, labels: ``(N, H, W)`` over slices with foreground.
    """
    fg = labels > 0
    ring = ndimage.binary_dilation(fg, np.ones((1, 3, 3), bool), iterations=5) & ~fg
    img = np.asarray(images, dtype=np.float64)
    return {
        "image_mean": float(img.mean()),
        "image_median": float(np.median(img)),
        "fg_mean": float(img[fg].mean()),
        "ring_mean": float(img[ring].mean()),
        "contrast": float((img[fg].mean() - img[ring].mean()) / img[ring].std()),
    }


def store_stats(store: PreparedStore) -> dict:
    labels = np.asarray(store.labels)
    fg_rows = [i for s in ("train", "val", "test") for i in store.indices(s, True).tolist()]
    sel = np.sort(np.asarray(fg_rows))
    classes = {"any": class_stats(labels, None)}
    if store.num_classes > 2:
        classes.update({store.labels_names[c]: class_stats(labels, c) for c in (1, 2, 3)})
    counts = np.bincount(labels.ravel(), minlength=store.num_classes).astype(float)
    return {
        "pixel_share": (counts[1:] / counts[1:].sum()).tolist(),  # of all foreground pixels
        "cases": len(store.cases),
        "slices": len(labels),
        "empty": float(1 - classes["any"]["slices_with"]),
        "classes": classes,
        "ends": end_profile(store),
        "intensity": intensity_stats(store.images[sel], labels[sel]),
    }


def markdown(title: str, stats: dict[str, dict]) -> str:
    """A table with one column per data set."""
    names = list(stats)
    lines = [
        f"#### {title}",
        "",
        "| | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]

    def row(label: str, fn) -> None:
        lines.append(f"| {label} | " + " | ".join(fn(stats[n]) for n in names) + " |")

    row("cases (volumes)", lambda s: str(s["cases"]))
    row("slices", lambda s: str(s["slices"]))
    row("empty slices", lambda s: f"{100 * s['empty']:.1f} %")
    for cls in stats[names[0]]["classes"]:
        row(
            f"**{cls}**: slices with it",
            lambda s, c=cls: f"{100 * s['classes'][c]['slices_with']:.1f} %",
        )
        row(
            f"{cls}: fraction of slice, mean / median",
            lambda s, c=cls: (
                f"{100 * s['classes'][c]['mean']:.2f} / {100 * s['classes'][c]['median']:.2f} %"
            ),
        )
        row(
            f"{cls}: 5th - 95th percentile",
            lambda s, c=cls: (
                f"{100 * s['classes'][c]['p5']:.2f} - {100 * s['classes'][c]['p95']:.2f} %"
            ),
        )
    if len(stats[names[0]]["pixel_share"]) > 1:
        row(
            "share of foreground pixels (RV / Myo / LV)",
            lambda s: " / ".join(f"{100 * v:.1f}" for v in s["pixel_share"]) + " %",
        )
    row("largest slice of a case, mean", lambda s: f"{100 * s['ends']['largest']:.2f} %")
    row("first / last labelled slice, mean", lambda s: f"{100 * s['ends']['ends']:.2f} %")
    row(
        "image mean / median",
        lambda s: f"{s['intensity']['image_mean']:.3f} / {s['intensity']['image_median']:.3f}",
    )
    row(
        "foreground mean / 5-px ring mean",
        lambda s: f"{s['intensity']['fg_mean']:.3f} / {s['intensity']['ring_mean']:.3f}",
    )
    row("contrast (fg - ring) / std(ring)", lambda s: f"{s['intensity']['contrast']:+.2f}")
    return "\n".join(lines) + "\n"  # fmt: skip


def pick_slices(store: PreparedStore, case: dict, n: int = 3) -> list[int]:
    """Rows of a case: an end slice, a middle one, the other end (labelled range)."""
    rows = store.case_rows(case["case"])
    fg = np.asarray([sum(store.slices[r]["fg_pixels"]) for r in range(rows.start, rows.stop)])
    nz = np.flatnonzero(fg)
    idx = np.linspace(nz[0], nz[-1], n).round().astype(int)
    return [rows.start + int(i) for i in idx]


def figure(stores: dict[str, PreparedStore], path: Path, seed: int = 1) -> None:
    """One row per data set: two cases x three slices (end, middle, end) with contours."""
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(stores), 6, figsize=(12, 2.15 * len(stores)))
    for r, (name, store) in enumerate(stores.items()):
        ed = [c for c in store.cases if c.get("phase") in (None, "ED")]
        for k, case in enumerate(rng.choice(len(ed), 2, replace=False)):
            for j, row in enumerate(pick_slices(store, ed[case])):
                ax = axes[r, 3 * k + j]
                ax.imshow(store.images[row], cmap="gray", vmin=0, vmax=1)
                lab = np.asarray(store.labels[row])
                for c in range(1, store.num_classes):
                    if (lab == c).any():
                        ax.contour(lab == c, [0.5], colors=COLOURS[c], linewidths=1.0)
                ax.set_xticks([])
                ax.set_yticks([])
                if k == 0 and j == 0:
                    ax.set_ylabel(name, fontsize=9)
    fig.tight_layout(pad=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=62)
    plt.close(fig)
    # A palette of 160 greys plus the contour colours: the noisy MR texture costs a fraction
    # of the RGB size and the contours keep their colours.
    colours = [(g, g, g) for g in np.linspace(0, 255, 160).round().astype(int)]
    colours += [tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in COLOURS.values()]
    palette = Image.new("P", (1, 1))
    palette.putpalette([v for c in colours for v in c] + [0] * 3 * (256 - len(colours)))
    rgb = Image.open(buf).convert("RGB")
    rgb.quantize(palette=palette, dither=Image.Dither.NONE).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = os.environ.get("CTXSEG_SHARED_DATA", str(REPO.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=Path(default_data))
    parser.add_argument(
        "--figure", type=Path, default=REPO / "docs" / "img" / "phantoms_vs_real.png"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ctxseg-stats-") as tmp:
        tmp = Path(tmp)
        jobs = {
            "PROMISE12-layout (real)": lambda o: prepare_promise12(
                args.data / "prostate-promise12-layout", o
            ),
            "prostate phantom": lambda o: prepare_phantom("prostate", o),
            "ACDC (real)": lambda o: prepare_acdc(args.data / "acdc-ssl4mis", o),
            "cardiac phantom": lambda o: prepare_phantom("cardiac", o),
        }
        stores, stats = {}, {}
        for i, (name, job) in enumerate(jobs.items()):
            t = time.perf_counter()
            stores[name] = job(tmp / str(i))
            print(f"prepared {name}: {time.perf_counter() - t:.1f} s, {stores[name]}")
            stats[name] = store_stats(stores[name])
        names = list(stats)
        print()
        print(markdown("Prostate (128 x 128 at 1 mm)", {n: stats[n] for n in names[:2]}))
        print(markdown("Heart (160 x 160)", {n: stats[n] for n in names[2:]}))
        figure(stores, args.figure)
        print(f"figure: {args.figure} ({args.figure.stat().st_size // 1024} KB)")
        if args.json:
            args.json.write_text(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
