"""``ctxseg demo``: the main job on the built-in prostate phantom, end to end, on a laptop CPU.

Prepares a small prostate phantom (synthetic PROMISE12-layout scans, prepared by the same code
as real data), trains three U-Nets with the same seed - cross-entropy, context CE with a static
ROI and context CE with a dynamic ROI (paper Table 1, SPEC §6) - evaluates each on the test
split under both protocols of SPEC §8, prints a side-by-side table and draws an overlay figure.

To fit in a few minutes on two CPU cores the demo departs from the paper's settings, and says
so in its output: slices of 64 x 64 pixels at 2 mm (the paper: 128 x 128 at 1 mm), the ROI
sizes scaled with the pixel size (static 50 mm -> 25 px), 20 epochs at learning rate 1e-3
instead of 150 at 1e-4 (about 6.5 minutes on 2 CPU cores, measured; ``--quick``: seconds).
Everything else comes from ``configs/phantom-prostate/<experiment>.yaml``. The numbers are
what a short run gives, not the paper's; ``ctxseg train`` with the configs as they are runs the
full protocol.

Output folder (default ``outputs/demo``, as ``make demo``): ``data/phantom-prostate`` (the
store), ``runs/<experiment>`` (each run folder with its ``eval_test_best``), ``demo.md`` and
``demo.json`` (the table), ``overlay.png``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctxseg.engine.config import BUILTIN_CONFIGS
from ctxseg.engine.distributed import resolve_device
from ctxseg.evaluation import report
from ctxseg.evaluation.evaluate import evaluate_run

log = logging.getLogger(__name__)

# (experiment config name, label in the table and the figure)
METHODS = (
    ("unet_ce", "U-Net CE"),
    ("unet_context_static", "context CE, static ROI"),
    ("unet_context_dynamic", "context CE, dynamic ROI"),
)
CONFIGS = BUILTIN_CONFIGS / "phantom-prostate"


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo: data, training length and learning rate.

    Attributes:
        cases: phantom cases (split 70/30 by case into train+val / test, val 15%).
        size: prepared slice size in pixels (square; unet32 needs a multiple of 32).
        spacing: prepared voxel size in mm (isotropic).
        epochs: training epochs of every method.
        batch_size: slices per step.
        lr: Adam learning rate.
    """

    cases: int = 10
    size: int = 64
    spacing: float = 2.0
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.cases < 3:
            raise ValueError(f"cases must be >= 3 (train, val and test), got {self.cases}")
        if self.size < 32 or self.size % 32:
            raise ValueError(f"size must be a positive multiple of 32, got {self.size}")
        for name in ("spacing", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


FULL = DemoSettings()
QUICK = DemoSettings(cases=4, size=32, spacing=4.0, epochs=1, batch_size=16, lr=1e-3)


def prepare_demo_data(out: Path, settings: DemoSettings, seed: int) -> Any:
    """Write the prostate phantoms in PROMISE12's layout and prepare them at the demo's size."""
    from ctxseg.data.phantoms import write_prostate_phantoms
    from ctxseg.data.promise12 import prepare_promise12

    with tempfile.TemporaryDirectory(prefix="ctxseg-demo-") as tmp:
        write_prostate_phantoms(Path(tmp) / "raw", settings.cases, seed)
        return prepare_promise12(
            Path(tmp) / "raw", out, seed=seed, overwrite=True, size=settings.size,
            spacing=settings.spacing, name="phantom-prostate",
        )  # fmt: skip


def _overrides(config_path: Path, store: Path, settings: DemoSettings, seed: int) -> list[str]:
    """``--set`` overrides: the demo's data, length and learning rate; ROI sizes in pixels."""
    from ctxseg.engine.config import load_config

    loss = load_config(config_path, [f"data.root={store}"]).loss
    overrides = [
        f"data.root={store}",
        f"seed={seed}",
        f"train.epochs={settings.epochs}",
        f"train.batch_size={settings.batch_size}",
        f"optim.lr={settings.lr}",
    ]
    # The configs give ROI sizes in pixels of 1 mm; keep them the same in millimetres.
    for key in ("roi_size", "margin", "min_size"):
        value = getattr(loss, key)
        if value:
            overrides.append(f"loss.{key}={max(1, round(value / settings.spacing))}")
    return overrides


def _pick_slices(labels: np.ndarray, count: int) -> np.ndarray:
    """Foreground slices at spread quantiles of the object size (small apex/base to mid-gland).

    Shape:
        labels: (N, H, W); returns (<= count,) indices into it.
    """
    size = (labels > 0).reshape(len(labels), -1).sum(axis=1)  # (N,)
    fg = np.flatnonzero(size > 0)
    if fg.size == 0:
        return fg
    ordered = fg[np.argsort(size[fg], kind="stable")]
    at = np.linspace(0.1, 0.9, min(count, fg.size)) * (fg.size - 1)
    return np.unique(ordered[np.round(at).astype(int)])


def draw_overlay(
    path: Path,
    image: np.ndarray,
    truth: np.ndarray,
    preds: dict[str, np.ndarray],
    titles: list[str] | None = None,
    count: int = 4,
) -> None:
    """Image slices with the truth and every method's prediction as contours.

    ``count`` foreground slices are shown, from small (apex / base) to large (mid-gland).

    Shape:
        image, truth: (N, H, W); each prediction (N, H, W).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    picks = _pick_slices(truth, count)
    colors = ["#ff4040", "#40a0ff", "#ffd000", "#c040ff"]
    panels = max(len(picks), 1)
    fig, axes = plt.subplots(1, panels, figsize=(3.0 * panels, 3.6), layout="constrained")
    axes = np.atleast_1d(axes)
    height, width = truth.shape[1:]
    # Contours of masks padded by one background pixel: a mask touching the border (or
    # covering the whole slice) still gets a closed outline.
    ys, xs = np.arange(-1, height + 1), np.arange(-1, width + 1)

    def outline(ax: Any, mask: np.ndarray, color: str, lw: float) -> None:
        if mask.any():
            ax.contour(xs, ys, np.pad(mask, 1).astype(float), levels=[0.5], colors=color,
                       linewidths=lw)  # fmt: skip

    for ax, i in zip(axes, picks, strict=False):
        ax.imshow(image[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        outline(ax, truth[i] > 0, "#30ff30", 2.0)
        for color, pred in zip(colors, preds.values(), strict=False):
            outline(ax, pred[i] > 0, color, 1.2)
        ax.set_title(titles[i] if titles else f"{int((truth[i] > 0).sum())} px", fontsize=9)
        ax.axis("off")
    handles = [Line2D([], [], color="#30ff30", lw=2, label="truth")]
    handles += [
        Line2D([], [], color=c, lw=1.2, label=n) for c, n in zip(colors, preds, strict=False)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8,
               frameon=False)  # fmt: skip
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(results: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    headers = [
        "method", "slice Dice", "slice HD (px)", "missed", "FP slices", "volume Dice",
        "volume HD (mm)", "volume HD95 (mm)", "train (s)",
    ]  # fmt: skip
    rows = []
    for r in results:
        s, v = r["summary"]["slice"], r["summary"]["volume"]
        (cls,) = s["classes"].values()  # the prostate phantom has one foreground class
        rows.append([
            r["label"], s["mean"]["dice"], s["mean"]["hd"], cls["hd"]["n_missed"],
            cls["false_positive"], v["mean"]["dice"], v["mean"]["hd"], v["mean"]["hd95"],
            f"{r['train_s']:.0f}",
        ])  # fmt: skip
    return headers, rows


#: The demo's output folder when none is given (``make demo`` uses the same).
DEFAULT_OUT = "outputs/demo"


def run_demo(
    out_dir: str | Path = DEFAULT_OUT,
    quick: bool = False,
    device: str | None = "cpu",
    seed: int = 0,
    settings: DemoSettings | None = None,
    configs_dir: str | Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Prepare a phantom, train CE / context CE static / dynamic, evaluate, compare.

    Args:
        out_dir: output folder (see the module docstring); existing demo runs are replaced.
        quick: the tiny settings (:data:`QUICK`, about a minute) instead of :data:`FULL`.
        device: ``"cpu"`` (default, what the timings refer to), ``"cuda"`` or ``"auto"``.
        seed: seed of the phantoms, the split and every training run.
        settings: explicit sizes (overrides ``quick``).
        configs_dir: folder of the ``unet_*.yaml`` experiment configs (default the shipped
            ``ctxseg/configs/phantom-prostate``).
        quiet: no progress bars or per-epoch log lines.

    Returns:
        ``{"settings", "seed", "device", "seconds", "methods": [{"experiment", "label",
        "run_dir", "train_s", "summary"}], "table": str (Markdown), "figure": str,
        "text": str (the table and notes for the terminal)}``.

    Raises:
        FileNotFoundError: the experiment configs are not found.
    """
    from ctxseg.engine.config import load_config
    from ctxseg.engine.factory import create_trainer

    settings = settings or (QUICK if quick else FULL)
    configs = Path(configs_dir) if configs_dir is not None else CONFIGS
    missing = [e for e, _ in METHODS if not (configs / f"{e}.yaml").is_file()]
    if missing:
        raise FileNotFoundError(f"experiment configs {missing} not found in {configs} (--configs)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = str(resolve_device(device))
    start = time.perf_counter()
    seconds: dict[str, float] = {}

    store = prepare_demo_data(out / "data" / "phantom-prostate", settings, seed)
    seconds["prepare"] = time.perf_counter() - start
    log.info("demo data: %s (%.1f s)", store, seconds["prepare"])

    results = []
    for experiment, label in METHODS:
        path = configs / f"{experiment}.yaml"
        config = load_config(path, _overrides(path, store.root.resolve(), settings, seed))
        run_dir = out / "runs" / experiment
        t0 = time.perf_counter()
        trainer = create_trainer(config, run_dir, device=dev, quiet=quiet, overwrite=True)
        trainer.fit()
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = evaluate_run(run_dir, "test", "best", device=dev, quiet=True)
        seconds[f"evaluate_{experiment}"] = time.perf_counter() - t0
        seconds[f"train_{experiment}"] = train_s
        log.info("%s: trained in %.1f s, test slice Dice %.4f", label, train_s,
                 summary["slice"]["mean"]["dice"])  # fmt: skip
        results.append({"experiment": experiment, "label": label, "run_dir": str(run_dir),
                        "train_s": train_s, "summary": summary})  # fmt: skip

    rows = np.load(Path(results[0]["summary"]["out_dir"]) / "rows.npy")
    preds = {r["label"]: np.load(Path(r["summary"]["out_dir"]) / "pred.npy") for r in results}
    figure = out / "overlay.png"
    labels = np.asarray(store.labels[rows])  # (N, H, W)
    titles = [
        f"{store.slices[r]['case']} z={store.slices[r]['slice_index']}, "
        f"{int((labels[i] > 0).sum())} px"
        for i, r in enumerate(rows)
    ]
    draw_overlay(figure, np.asarray(store.images[rows]), labels, preds, titles)
    seconds["total"] = time.perf_counter() - start

    headers, table = _table(results)
    s = settings
    note = (
        f"Prostate phantom, {s.cases} cases ({len(store.case_ids('train'))} train, "
        f"{len(store.case_ids('val'))} val, {len(store.case_ids('test'))} test), {s.size}x{s.size} "
        f"slices at {s.spacing:g} mm; unet32, {s.epochs} epochs, batch {s.batch_size}, Adam "
        f"{s.lr:g}, seed {seed}, device {dev}; best checkpoint by validation Dice. Test split: "
        "slice protocol (per 2-D slice with prostate, HD in pixels; `missed`: slices with no "
        "prediction, Dice 0, left out of the HD mean; `FP slices`: slices without prostate where "
        "some was predicted - training sees foreground slices only, as in the paper) and volume "
        "protocol (per case, mm). "
        f"Total {seconds['total']:.0f} s. A short demo run, not the paper's 150 epochs."
    )
    markdown = report.markdown_table(headers, table)
    report.write_text(out / "demo.md", f"{markdown}\n\n{note}\n")
    result = {"settings": asdict(s), "seed": seed, "device": dev, "seconds": seconds,
              "methods": results, "table": markdown, "figure": str(figure)}  # fmt: skip
    report.write_json(out / "demo.json", result)
    result["text"] = (f"{report.plain_table(headers, table)}\n{note}\n"
                      f"table: {out / 'demo.md'}, figure: {figure}")  # fmt: skip
    return result


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ctxseg demo [--out DIR] [--quick]``."""
    parser = subparsers.add_parser(
        "demo",
        help="prepare a phantom, train CE and context CE briefly, compare (CPU, minutes)",
        description=(
            "Prepares a small prostate phantom (synthetic PROMISE12-layout scans, prepared by the "
            "same code as real data), trains three U-Nets with the same seed - cross-entropy, "
            "context CE with a static ROI and context CE with a dynamic ROI (the paper's Table 1) "
            "- evaluates each on the test split per 2-D slice and per 3-D case, prints a "
            "side-by-side table and draws an overlay figure. Shortened to run in minutes on a "
            "CPU: 64 x 64 slices at 2 mm, 20 epochs at learning rate 1e-3."
        ),
    )
    parser.add_argument(
        "--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default: {DEFAULT_OUT})"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, about a minute")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto (default: cpu)")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the phantoms, the split and every training run (default: 0)",
    )
    parser.add_argument(
        "--epochs", type=int, help="epochs of every method (default: 20; with --quick 1)"
    )
    parser.add_argument(
        "--configs",
        metavar="DIR",
        help="folder of the unet_*.yaml configs (default: the shipped phantom-prostate ones)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    settings = QUICK if args.quick else FULL
    if args.epochs is not None:
        settings = DemoSettings(**{**asdict(settings), "epochs": args.epochs})
    result = run_demo(args.out, device=args.device, seed=args.seed, settings=settings,
                      configs_dir=args.configs, quiet=args.quiet)  # fmt: skip
    print(result["text"])
    return 0
