"""Figures of a comparison: box plots per method and overlays in the style of the paper.

- :func:`box_plots`: per-case Dice and HD (slice protocol, mean over seeds) of every method,
  one panel per class and metric.
- :func:`contour_overlay` (the paper's Fig. 3, prostate): test slices with the target and
  several methods' predictions as contours on the image.
- :func:`class_overlay` (the paper's Fig. 4, cardiac): class maps of the target and of each
  method over the image, with the region around the object enlarged below each panel.

Slices are picked among the small structures (the smallest size third), where the paper's
claim lies. Matplotlib runs headless (Agg).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["box_plots", "class_overlay", "contour_overlay", "pick_slices"]

CONTOUR_COLORS = ("#ff4040", "#40a0ff", "#ffd000", "#c040ff", "#ff9020", "#40e0d0")
CLASS_COLORS = ("#00000000", "#ff3030", "#30d030", "#3080ff", "#ffd000", "#c040ff")
TRUTH_COLOR = "#30ff30"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pick_slices(labels: np.ndarray, count: int, low: float = 0.1, high: float = 0.9) -> np.ndarray:
    """Foreground slices at spread quantiles ``[low, high]`` of the object size.

    Args:
        labels: label maps.
        count: how many slices at most.
        low: lowest size quantile (0.0 to 0.33 picks among the smallest third).
        high: highest size quantile.

    Shape:
        labels: (N, H, W); returns (<= count,) indices into it, smallest object first.
    """
    size = (labels > 0).reshape(len(labels), -1).sum(axis=1)  # (N,)
    fg = np.flatnonzero(size > 0)
    if fg.size == 0:
        return fg
    ordered = fg[np.argsort(size[fg], kind="stable")]
    at = np.linspace(low, high, min(count, fg.size)) * (fg.size - 1)
    return np.unique(ordered[np.round(at).astype(int)])


def box_plots(
    path: str | Path,
    cases: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]],
    labels: Mapping[str, str],
    classes: Sequence[str],
    title: str,
) -> None:
    """Box plots of per-case Dice and HD of every method, per class.

    Args:
        path: the PNG to write.
        cases: ``{method: {case: {class: {"dice", "hd"}}}}`` (see
            :func:`ctxseg.evaluation.results.aggregate`).
        labels: method -> its name on the axis.
        classes: the classes to show (and ``"mean"`` if wanted).
        title: the figure's title (data set, budget, unit).
    """
    plt = _pyplot()
    methods = list(cases)
    fig, axes = plt.subplots(
        2,
        len(classes),
        figsize=(max(6.0, 0.55 * len(methods) * len(classes)), 7.5),
        squeeze=False,
        layout="constrained",
    )
    for col, name in enumerate(classes):
        for row, (metric, unit) in enumerate((("dice", "Dice"), ("hd", "HD (px)"))):
            data = [
                [
                    v[name][metric]
                    for v in cases[m].values()
                    if name in v and np.isfinite(v[name][metric])
                ]
                for m in methods
            ]
            ax = axes[row, col]
            ax.boxplot(data, showmeans=True)
            ax.set_xticks(
                range(1, len(methods) + 1),
                [labels.get(m, m) for m in methods],
                rotation=60,
                ha="right",
                fontsize=7,
            )
            ax.set_ylabel(unit)
            ax.set_title(f"{name}: {unit} per test case", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def contour_overlay(
    path: str | Path,
    image: np.ndarray,
    truth: np.ndarray,
    preds: Mapping[str, np.ndarray],
    picks: Sequence[int],
    titles: Sequence[str] | None = None,
) -> None:
    """Image slices with the truth and every method's prediction as contours (paper Fig. 3).

    Shape:
        image, truth: (N, H, W); each prediction (N, H, W); ``picks`` index the N slices.
    """
    plt = _pyplot()
    from matplotlib.lines import Line2D

    panels = max(len(picks), 1)
    fig, axes = plt.subplots(1, panels, figsize=(3.0 * panels, 3.7), layout="constrained")
    axes = np.atleast_1d(axes)
    height, width = truth.shape[1:]
    # Contours of masks padded by one background pixel: a mask touching the border (or
    # covering the whole slice) still gets a closed outline.
    ys, xs = np.arange(-1, height + 1), np.arange(-1, width + 1)

    def outline(ax: Any, mask: np.ndarray, color: str, lw: float) -> None:
        if mask.any():
            ax.contour(
                xs, ys, np.pad(mask, 1).astype(float), levels=[0.5], colors=color, linewidths=lw
            )

    for k, (ax, i) in enumerate(zip(axes, picks, strict=False)):
        ax.imshow(image[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        outline(ax, truth[i] > 0, TRUTH_COLOR, 2.0)
        for color, pred in zip(CONTOUR_COLORS, preds.values(), strict=False):
            outline(ax, pred[i] > 0, color, 1.2)
        ax.set_title(titles[k] if titles else f"{int((truth[i] > 0).sum())} px", fontsize=8)
        ax.axis("off")
    handles = [Line2D([], [], color=TRUTH_COLOR, lw=2, label="truth")]
    handles += [
        Line2D([], [], color=c, lw=1.2, label=n)
        for c, n in zip(CONTOUR_COLORS, preds, strict=False)
    ]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), 4),
        fontsize=7,
        frameon=False,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _zoom_box(mask: np.ndarray, margin: int = 8, min_side: int = 24) -> tuple[int, int, int, int]:
    """A square around a mask's foreground (the region the paper's Fig. 4 enlarges)."""
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 0, 0, height, width
    cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
    side = max(min_side, int(max(np.ptp(ys), np.ptp(xs))) + 1 + 2 * margin)
    side = min(side, height, width)
    y0 = int(np.clip(cy - side // 2, 0, height - side))
    x0 = int(np.clip(cx - side // 2, 0, width - side))
    return y0, x0, y0 + side, x0 + side


def class_overlay(
    path: str | Path,
    image: np.ndarray,
    truth: np.ndarray,
    preds: Mapping[str, np.ndarray],
    picks: Sequence[int],
    class_names: Sequence[str],
    titles: Sequence[str] | None = None,
) -> None:
    """Class maps of the truth and each method over the image, the ROI enlarged (paper Fig. 4).

    For each picked slice, two rows: the whole slice with the class colours, and below it the
    square around the target's foreground, enlarged.

    Shape:
        image, truth: (N, H, W); each prediction (N, H, W).
    """
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch, Rectangle

    cmap = ListedColormap(CLASS_COLORS[: len(class_names)])
    columns = [("truth", truth), *preds.items()]
    rows = 2 * max(len(picks), 1)
    fig, axes = plt.subplots(
        rows,
        len(columns),
        figsize=(2.2 * len(columns), 2.2 * rows),
        squeeze=False,
        layout="constrained",
    )
    for r, i in enumerate(picks):
        y0, x0, y1, x1 = _zoom_box(truth[i] > 0)
        for c, (name, maps) in enumerate(columns):
            for zoom, ax in ((False, axes[2 * r, c]), (True, axes[2 * r + 1, c])):
                img, lab = image[i], maps[i]
                if zoom:
                    img, lab = img[y0:y1, x0:x1], lab[y0:y1, x0:x1]
                ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.imshow(
                    np.ma.masked_equal(lab, 0),
                    cmap=cmap,
                    vmin=0,
                    vmax=len(class_names) - 1,
                    alpha=0.55,
                    interpolation="nearest",
                )
                ax.axis("off")
                if not zoom:
                    ax.add_patch(
                        Rectangle(
                            (x0 - 0.5, y0 - 0.5),
                            x1 - x0,
                            y1 - y0,
                            fill=False,
                            edgecolor="white",
                            lw=0.8,
                            ls="--",
                        )
                    )
                    label = name if r == 0 else ""
                    sub = titles[r] if (titles and c == 0) else ""
                    ax.set_title("\n".join(t for t in (label, sub) if t), fontsize=7)
    handles = [
        Patch(color=CLASS_COLORS[k], label=class_names[k]) for k in range(1, len(class_names))
    ]
    fig.legend(
        handles=handles, loc="outside lower center", ncol=len(handles), fontsize=7, frameon=False
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
