"""``ctxseg demo``: the main job on the built-in prostate phantom, end to end, on a laptop CPU.

A small grid of :mod:`ctxseg.evaluation.reproduce`: prostate phantoms (synthetic
PROMISE12-layout scans, prepared by the same code as real data), three U-Nets - cross-entropy,
context CE with a static ROI, context CE with a dynamic ROI (paper Table 1) - each trained
with three seeds, evaluated on the test cases under both protocols and compared: mean and
spread over the seeds, and the paired test of each context loss against CE over the test
cases. The seed spread is printed because it is what tells a real difference from noise: one
seed's ranking of the methods changes from machine to machine (CPU kernels, thread counts and
bf16 availability change the floating-point rounding, and training amplifies it).

To fit a laptop CPU, the demo departs from the paper's settings and says so: 64 x 64 slices
at 2 mm (the paper: 128 x 128 at 1 mm), ROI sizes scaled with the pixel size, 20 epochs at
learning rate 1e-3 instead of 150 at 1e-4. Output folder (default ``outputs/demo``): the
grid's ``results.md``, ``results.csv``, ``boxplots.png``, ``overlays.png``, the run folders
``runs/<experiment>/seed<k>``, and the demo's own table ``demo.md`` / ``demo.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

from ctxseg.evaluation import report
from ctxseg.evaluation.methods import label_of
from ctxseg.evaluation.reproduce import GridPreset, reproduce

__all__ = ["DEMO", "QUICK_DEMO", "run_demo"]

METHODS = ("unet_ce", "unet_context_static", "unet_context_dynamic")
DEMO = GridPreset(methods=METHODS, seeds=(0, 1, 2), cases=10, size=64, spacing=2.0, epochs=20)
#: A smoke run of the whole path (tests): tiny slices, one epoch, two seeds.
QUICK_DEMO = GridPreset(methods=METHODS, seeds=(0, 1), cases=4, size=32, spacing=4.0, epochs=1)


def _cell(stats: dict[str, Any], digits: int) -> str:
    mean, std = stats["mean"], stats["std"]
    if not math.isfinite(mean):
        return report.format_value(mean)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(std) else f"{mean:.{digits}f}"


def demo_table(agg: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The demo's terminal table: one row per method, mean ± sd over seeds, test against CE."""
    headers = ["method", "slice Dice", "slice HD (px)", "missed", "volume Dice",
               "volume HD95 (mm)", "ΔDice vs CE", "p"]  # fmt: skip
    (name,) = agg["classes"]  # the prostate phantom has one foreground class
    rows = []
    for method in agg["methods"]:
        stats = agg["table"][method][name]
        test = agg["tests"].get(method, {}).get(name)
        rows.append([
            label_of(method), _cell(stats["slice_dice"], 4), _cell(stats["slice_hd"], 2),
            f"{stats['slice_missed']['mean']:.1f}", _cell(stats["volume_dice"], 4),
            _cell(stats["volume_hd95"], 2),
            "(ref.)" if test is None else f"{test['dice']['median_diff']:+.4f}",
            "-" if test is None else report.format_value(test["dice"]["p_value"], 3),
        ])  # fmt: skip
    return headers, rows


def noise_note(agg: dict[str, Any]) -> str:
    """How large a difference between methods is within seed-to-seed noise, in words."""
    (name,) = agg["classes"]
    spreads = [agg["table"][m][name]["slice_dice"]["std"] for m in agg["methods"]]
    spreads = [s for s in spreads if math.isfinite(s)]
    if not spreads:
        return "One seed per method: no spread to judge a difference by."
    return (
        f"Seed-to-seed standard deviation of the slice Dice: {min(spreads):.4f}-"
        f"{max(spreads):.4f}. A difference between methods smaller than about twice that, or "
        "with p >= 0.05, is noise at this budget: it can flip on another machine or seed."
    )


def run_demo(
    out_dir: str | Path = "outputs/demo",
    quick: bool = False,
    device: str = "cpu",
    seeds: list[int] | None = None,
    epochs: int | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Train and compare CE and context CE (static, dynamic) on the prostate phantom.

    Args:
        out_dir: output folder; an earlier demo there is resumed or reused (runs finished with
            the same settings are not trained again).
        quick: :data:`QUICK_DEMO` (a smoke run of seconds) instead of :data:`DEMO`.
        device: ``"cpu"`` (default, what the timings refer to), ``"cuda"`` or ``"auto"``.
        seeds: training seeds (default the preset's).
        epochs: epochs of every run (default the preset's).
        quiet: no progress bars.

    Returns:
        The grid's aggregate (:func:`ctxseg.evaluation.results.aggregate`) with ``"table"``
        (Markdown), ``"text"`` (for the terminal) and ``"seconds"``.
    """
    preset = QUICK_DEMO if quick else DEMO
    if seeds is not None:
        preset = dataclasses.replace(preset, seeds=tuple(seeds))
    if epochs is not None:
        preset = dataclasses.replace(preset, epochs=epochs)
    out = Path(out_dir)
    agg = reproduce(None, out, device=device, preset=preset, quiet=quiet)
    headers, rows = demo_table(agg)
    p = preset
    cases = len(next(iter(agg["cases"].values())))
    note = (
        f"Prostate phantom ({p.cases} cases, {p.size}x{p.size} slices at {p.spacing:g} mm), "
        f"unet32, {p.epochs} epochs, batch 16, Adam {p.lr:g}, seeds {list(p.seeds)}, device "
        f"{device}; best checkpoint by validation Dice; test split. Cells: mean ± sd over the "
        "seeds. slice: per 2-D slice with prostate, HD in pixels with a missed slice counted "
        "at the image diagonal; `missed`: slices with no prediction (mean over seeds); volume: "
        "per case, mm. ΔDice: median paired difference over test cases against CE, p: Wilcoxon "
        f"(with {cases} test cases no p can be below {2 / 2**cases:.3g}). {noise_note(agg)} "
        f"A short demo, not the paper's 150 epochs. Total {agg['seconds'] / 60:.1f} min."
    )
    markdown = report.markdown_table(headers, rows)
    report.write_text(out / "demo.md", f"{markdown}\n\n{note}\n")
    report.write_json(out / "demo.json", {
        "preset": dataclasses.asdict(p), "device": device, "seconds": agg["seconds"],
        "methods": agg["methods"], "table": agg["table"], "tests": agg["tests"],
    })  # fmt: skip
    text = (
        f"{report.plain_table(headers, rows)}\n{note}\n"
        f"table: {out / 'demo.md'}; full report: {out / 'results.md'}; figures: "
        f"{out / 'overlays.png'}, {out / 'boxplots.png'}"
    )
    return {**agg, "table_md": markdown, "text": text}


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ctxseg demo [--out DIR] [--quick]``."""
    parser = subparsers.add_parser(
        "demo",
        help="train CE and context CE on a built-in phantom and compare them (CPU, minutes)",
        description=(
            "Prepare a synthetic prostate data set (no download), train U-Nets with CE and with "
            "context CE (static and dynamic ROI), three seeds each, evaluate them on the test "
            "cases and print the comparison with its seed spread and paired tests."
        ),
    )
    parser.add_argument("--out", default="outputs/demo", metavar="DIR",
                        help="output folder (default: outputs/demo)")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and one epoch: a smoke run of the whole path")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto (default: cpu)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="training seeds (default: 0 1 2)")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of every run (default: 20)")  # fmt: skip
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    result = run_demo(args.out, quick=args.quick, device=args.device, seeds=args.seeds,
                      epochs=args.epochs, quiet=not args.progress)  # fmt: skip
    print(result["text"])
    return 0
