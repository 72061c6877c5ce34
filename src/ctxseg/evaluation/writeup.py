"""``results.md`` / ``results.csv`` and the figures of an evaluated grid (``ctxseg reproduce``).

The numbers come from :func:`ctxseg.evaluation.results.aggregate`; this module only lays them
out: the header (budget, machine, split, assumptions), one table per class (and the class
mean) with seed spread, paired tests and the paper's figures, the strata tables, the figures,
and the failed runs, which are never left out silently.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ctxseg.data.store import PreparedStore
from ctxseg.evaluation import report
from ctxseg.evaluation.figures import box_plots, class_overlay, contour_overlay, pick_slices
from ctxseg.evaluation.grid import EVAL_DIR, GridRun
from ctxseg.evaluation.methods import label_of, paper_figures
from ctxseg.evaluation.results import TABLE_COLUMNS, aggregate, load_run

__all__ = ["CARDIAC", "write_results"]

CARDIAC = ("acdc", "phantom-cardiac")


def _fmt(stats: dict[str, Any], digits: int = 4) -> str:
    mean, std = stats["mean"], stats["std"]
    if not math.isfinite(mean):
        return report.format_value(mean, digits)
    text = f"{mean:.{digits}f}"
    return text + (f" ± {std:.{digits}f}" if math.isfinite(std) else "")


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def write_results(
    out: Path,
    runs: list[GridRun],
    outcomes: list[dict[str, Any]],
    dataset: str,
    store: PreparedStore,
    header: list[str],
) -> dict[str, Any]:
    """Aggregate the evaluated runs and write ``results.md``, ``results.csv`` and figures.

    Returns:
        The aggregate (:func:`ctxseg.evaluation.results.aggregate`) with ``"failed"`` added.
    """
    failed = [o for o in outcomes if o.get("error")]
    loaded = []
    for run in runs:
        try:
            loaded.append(load_run(run.method, run.seed, run.run_dir))
        except (FileNotFoundError, ValueError) as err:
            if not any(o["run_dir"] == str(run.run_dir) for o in failed):
                failed.append(
                    {
                        "method": run.method,
                        "seed": run.seed,
                        "run_dir": str(run.run_dir),
                        "error": str(err),
                    }
                )
    if not loaded:
        raise ValueError(f"no run of the grid in {out} could be evaluated; failures: {failed}")
    reference = "unet_ce" if any(r.method == "unet_ce" for r in loaded) else loaded[0].method
    agg = aggregate(loaded, reference=reference, cardiac=dataset in CARDIAC)
    agg["failed"] = failed
    summary = loaded[0].summary
    family = "acdc" if dataset == "acdc" else "promise12" if dataset == "promise12" else None

    md = [f"# Table 1 on {dataset}: {len(agg['methods'])} methods x seeds", ""]
    md += [f"- {line}" for line in header]
    md.append(
        f"- test split: {summary['num_cases']} cases, {summary['num_slices']} slices "
        f"({store.root}); {store.meta.get('split_note', 'split: see splits.json')}"
    )
    for note in summary.get("notes", []):
        md.append(f"- **{note}**")
    md.append(
        f"- slice protocol: per 2-D test slice with the structure, HD in pixels, a missed "
        f"structure counted at the image diagonal ({summary['slice']['penalty']:.1f} px); "
        "`HD det.`: over detected structures only; volume protocol: per case, HD95 in mm, "
        "misses at the volume diagonal. Each cell: mean ± standard deviation over the seeds "
        "(seed count per method in `seeds`); `missed`: mean over seeds of the missed "
        "structures (slices for the slice protocol)."
    )
    md.append(
        f"- paired test: Wilcoxon signed-rank (two-sided) of each method against "
        f"{label_of(reference)} over the {len(next(iter(agg['cases'].values())))} test cases, "
        "on the per-case slice-protocol value (mean over the case's slices, then over seeds); "
        "`ΔDice` / `ΔHD`: median paired difference (method - reference). No correction for "
        "multiple comparisons."
    )
    if failed:
        md.append(
            f"- **{len(failed)} run(s) failed or were not evaluated; they are not in the "
            "numbers below** (see the end of this file)"
        )
    md.append("")

    headers = [
        "method",
        "seeds",
        "slice Dice",
        "slice HD (px)",
        "HD det.",
        "missed",
        "volume Dice",
        "volume HD95 (mm)",
        "ΔDice",
        "p",
        "ΔHD",
        "p (HD)",
    ]
    if family:
        headers += ["paper Dice", "paper HD"]
    csv_rows: list[dict[str, Any]] = []
    for name in agg["classes"]:
        rows = []
        for method in agg["methods"]:
            stats = agg["table"][method][name]
            test = agg["tests"].get(method, {}).get(name)
            row = [
                label_of(method),
                len(agg["seeds"][method]),
                _fmt(stats["slice_dice"]),
                _fmt(stats["slice_hd"], 2),
                _fmt(stats["slice_hd_detected"], 2),
                f"{stats['slice_missed']['mean']:.1f}",
                _fmt(stats["volume_dice"]),
                _fmt(stats["volume_hd95"], 2),
                report.format_value(test["dice"]["median_diff"]) if test else "(ref.)",
                _p(test["dice"]["p_value"]) if test else "-",
                report.format_value(test["hd"]["median_diff"], 2) if test else "(ref.)",
                _p(test["hd"]["p_value"]) if test else "-",
            ]
            if family:
                paper = paper_figures(family, method) if name == agg["classes"][-1] else None
                row += list(paper) if paper else [None, None]
            rows.append(row)
            for key, *_ in TABLE_COLUMNS:
                for seed, value in zip(agg["seeds"][method], stats[key]["values"], strict=True):
                    csv_rows.append(
                        {
                            "kind": "run",
                            "method": method,
                            "seed": seed,
                            "class": name,
                            "metric": key,
                            "stratum": "",
                            "value": value,
                        }
                    )
                for stat in ("mean", "std"):
                    csv_rows.append(
                        {
                            "kind": f"seed_{stat}",
                            "method": method,
                            "seed": "",
                            "class": name,
                            "metric": key,
                            "stratum": "",
                            "value": stats[key][stat],
                        }
                    )
            if test:
                for metric in ("dice", "hd"):
                    for key in ("median_diff", "p_value", "n"):
                        csv_rows.append(
                            {
                                "kind": "wilcoxon",
                                "method": method,
                                "seed": "",
                                "class": name,
                                "metric": f"{metric}_{key}",
                                "stratum": "",
                                "value": test[metric][key],
                            }
                        )
        title = "class mean" if name == "mean" else name
        if len(agg["classes"]) > 1 or name != "mean":
            md += [f"## {title}", "", report.markdown_table(headers, rows), ""]
    if family:
        md.append(
            f"(paper: Murugesan et al. 2020, Table 1, {family}; the paper's protocol and "
            "budget differ: 150 epochs, its own split.)"
        )
        md.append("")

    for kind, title in (("size", "object-size thirds"), ("position", "cardiac position")):
        if kind not in agg["strata"]:
            continue
        md += [f"## Slice-protocol Dice / HD (px) by {title}", ""]
        if kind == "size":
            edges = ", ".join(
                f"{n}: <= {e[0]:.0f} / <= {e[1]:.0f} px" for n, e in agg["edges"].items()
            )
            md += [
                f"Thirds of the target area over the test slices ({edges}); mean over "
                "seeds; `missed` slices in brackets.",
                "",
            ]
        order = agg["strata_order"][kind]
        for name in agg["classes"]:
            if name == "mean":
                continue
            cells = []
            for method in agg["methods"]:
                strata = agg["strata"][kind][method].get(name, {})
                row = [label_of(method)]
                for stratum in order:
                    s = strata.get(stratum)
                    row.append(
                        "-" if s is None else f"{s['dice']:.3f} / {s['hd']:.2f} [{s['missed']:.1f}]"
                    )
                    if s is not None:
                        for metric in ("dice", "hd", "missed", "n"):
                            csv_rows.append(
                                {
                                    "kind": f"stratum_{kind}",
                                    "method": method,
                                    "seed": "",
                                    "class": name,
                                    "metric": metric,
                                    "stratum": stratum,
                                    "value": s[metric],
                                }
                            )
                cells.append(row)
            counts = agg["strata"][kind][agg["methods"][0]].get(name, {})
            heads = [f"{s} (n={int(counts[s]['n'])})" if s in counts else s for s in order]
            md += [f"### {name}", "", report.markdown_table(["method", *heads], cells), ""]

    figures = _figures(out, agg, loaded, store, dataset)
    md += ["## Figures", ""] + [f"![{f.stem}]({f.name})" for f in figures] + [""]
    if failed:
        md += ["## Failed or missing runs", ""]
        md += [
            f"- {label_of(f['method'])} seed {f['seed']} ({f['run_dir']}): {f['error']}"
            for f in failed
        ]
        md.append("")
    report.write_text(out / "results.md", "\n".join(md))
    report.write_csv(
        out / "results.csv",
        csv_rows,
        ["kind", "method", "seed", "class", "metric", "stratum", "value"],
    )
    return agg


def _figures(out: Path, agg: dict, loaded: list, store: PreparedStore, dataset: str) -> list[Path]:
    """Box plots and the small-structure overlays; returns the written files."""
    written = []
    boxes = out / "boxplots.png"
    classes = [c for c in agg["classes"] if c != "mean"]
    labels = {m: label_of(m) for m in agg["methods"]}
    box_plots(
        boxes,
        agg["cases"],
        labels,
        classes,
        f"{dataset}: per-case slice-protocol Dice and HD (px), mean over seeds",
    )
    written.append(boxes)
    first_seed = {}
    for run in loaded:
        first_seed.setdefault(run.method, run)
    preferred = ["unet_ce", "unet_context_static", "unet_context_dynamic", "seg_glgan_dynamic"]
    shown = [m for m in preferred if m in first_seed] or list(first_seed)[:4]
    rows = np.load(first_seed[shown[0]].run_dir / EVAL_DIR / "rows.npy")
    truth = np.asarray(store.labels[rows])
    image = np.asarray(store.images[rows])
    preds = {labels[m]: np.load(first_seed[m].run_dir / EVAL_DIR / "pred.npy") for m in shown}
    small = truth == 1 if dataset in CARDIAC else truth > 0  # RV: the small cardiac structure
    picks = pick_slices(small.astype(np.uint8), 3, low=0.05, high=0.3)
    titles = [
        f"{store.slices[int(rows[i])]['case']} z={store.slices[int(rows[i])]['slice_index']}"
        f", {int(small[i].sum())} px"
        for i in picks
    ]
    overlay = out / "overlays.png"
    if dataset in CARDIAC:
        class_overlay(overlay, image, truth, preds, picks, store.labels_names, titles)
    else:
        contour_overlay(overlay, image, truth, preds, picks, titles)
    written.append(overlay)
    return written
