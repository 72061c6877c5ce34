"""``ctxseg table``: the paper's Table 1 from evaluated runs, beside the paper's own figures.

Each run folder must have been scored by ``ctxseg evaluate`` (its
``eval_<split>_<checkpoint>/summary.json``); every number is read from that summary, never
recomputed, so ``table`` and ``evaluate`` cannot disagree. A row shows the slice protocol that
the paper reports (SPEC §8: Dice and HD in pixels per 2-D slice with the structure, mean over
slices; for ACDC the mean over RV, Myo and LV) with missed slices counted at the image diagonal
in the headline HD, the HD over detected structures and the miss count beside it, the volume
protocol's Dice and HD95 in mm, and the paper's Dice and HD for the same data set and
experiment where the paper has them (SPEC §2).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import yaml

from ctxseg.engine.config import config_from_dict
from ctxseg.evaluation import report
from ctxseg.evaluation.methods import PAPER_TABLE1

__all__ = ["PAPER_TABLE1", "collect_rows", "format_table", "register_cli"]

# The paper's row order; other experiments follow in the order given.
ROW_ORDER = tuple(PAPER_TABLE1["promise12"])

HEADERS = (
    "data set",
    "experiment",
    "slice Dice",
    "slice HD (px)",
    "HD detected",
    "missed",
    "volume Dice",
    "volume HD95 (mm)",
    "paper Dice",
    "paper HD",
)


def _number(value: Any) -> float:
    """A summary value as a float (``summary.json`` spells NaN and infinity as strings)."""
    return float(value) if value is not None else math.nan


def _run_row(run_dir: Path, split: str, checkpoint: str) -> dict[str, Any]:
    """One table row from a run folder's config and evaluation summary."""
    summary_path = run_dir / f"eval_{split}_{checkpoint}" / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(
            f"{summary_path} not found: run `ctxseg evaluate {run_dir} --split {split} "
            f"--checkpoint {checkpoint}` first"
        )
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: {run_dir} is not a ctxseg run folder")
    config = config_from_dict(yaml.safe_load(config_path.read_text()), str(config_path))
    try:
        summary = json.loads(summary_path.read_text())
        slice_classes = summary["slice"]["classes"].values()
        slice_mean, volume_mean = summary["slice"]["mean"], summary["volume"]["mean"]
        row = {
            "dataset": config.dataset_name(),
            "experiment": config.experiment,
            "slice_dice": _number(slice_mean["dice"]),
            "slice_hd": _number(slice_mean["hd"]),
            "slice_hd_detected": _number(slice_mean["hd_detected"]),
            "missed": sum(int(c["hd"]["n_missed"]) for c in slice_classes),
            "volume_dice": _number(volume_mean["dice"]),
            "volume_hd95": _number(volume_mean["hd95"]),
            "split_label": summary.get("split_label", f"{split} split"),
            "notes": list(summary.get("notes", [])),
        }
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{summary_path}: not an evaluation summary ({err!r})") from None
    paper = PAPER_TABLE1.get(row["dataset"], {}).get(row["experiment"])
    row["paper_dice"], row["paper_hd"] = paper if paper else (None, None)
    return row


def collect_rows(
    run_dirs: list[str | Path], split: str = "test", checkpoint: str = "best"
) -> list[dict[str, Any]]:
    """Table rows of evaluated runs, sorted by data set and then in the paper's row order.

    Args:
        run_dirs: run folders of ``ctxseg train``, each scored by ``ctxseg evaluate``.
        split: the evaluated split.
        checkpoint: ``"best"`` or ``"last"``.

    Returns:
        One dict per run: ``dataset``, ``experiment``, ``slice_dice``, ``slice_hd``, ``missed``,
        ``volume_dice``, ``volume_hd95``, ``paper_dice``, ``paper_hd`` (None where the paper
        has no such row).

    Raises:
        FileNotFoundError: a run folder without its config or evaluation summary.
        ValueError: no run folders, or an unreadable summary.
    """
    if not run_dirs:
        raise ValueError("no run folders given")
    rows = [_run_row(Path(run), split, checkpoint) for run in run_dirs]

    def order(row: dict[str, Any]) -> tuple[str, int]:
        rank = ROW_ORDER.index(row["experiment"]) if row["experiment"] in ROW_ORDER else 99
        return row["dataset"], rank

    return sorted(rows, key=order)


def format_table(rows: list[dict[str, Any]], markdown: bool = True) -> str:
    """The rows as a Markdown (or plain terminal) table with the columns of ``HEADERS``."""
    keys = (
        "dataset", "experiment", "slice_dice", "slice_hd", "slice_hd_detected", "missed",
        "volume_dice", "volume_hd95", "paper_dice", "paper_hd",
    )  # fmt: skip
    render = report.markdown_table if markdown else report.plain_table
    return render(HEADERS, [[row[k] for k in keys] for row in rows])


def table_notes(rows: list[dict[str, Any]]) -> list[str]:
    """The lines under the table: the split scored, the miss penalty, spacing assumptions."""
    notes = sorted({row["split_label"] for row in rows})
    notes.append(
        "slice HD: mean over slices with the structure, a missed structure counted at the "
        "image diagonal; `HD detected`: over found structures only; `missed`: slices where a "
        "class in the target was not predicted at all (summed over classes)"
    )
    notes += sorted({n for row in rows for n in row["notes"]})
    return notes


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ctxseg table RUN_DIR... [--split] [--checkpoint] [--out FILE]``."""
    parser = subparsers.add_parser(
        "table",
        help="the paper's Table 1 from evaluated runs, beside the paper's figures",
        description=(
            "The paper's Table 1 from evaluated runs (each scored by `ctxseg evaluate`), "
            "with the paper's Dice and HD beside ours."
        ),
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="evaluated run folders")
    parser.add_argument(
        "--split",
        choices=("test", "val"),
        default="test",
        help="the evaluated split (default: test; val is labelled as the model-selection split)",
    )
    parser.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="whose evaluation to read: best (highest validation Dice) or last (default: best)",
    )
    parser.add_argument(
        "--out", type=Path, help="also write the Markdown table to this file (default: print only)"
    )
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    rows = collect_rows(args.run_dirs, args.split, args.checkpoint)
    notes = table_notes(rows)
    print(format_table(rows, markdown=False))
    print("\n".join(notes))
    if args.out:
        lines = "\n".join(f"- {n}" for n in notes)
        report.write_text(args.out, f"{format_table(rows)}\n\n{lines}\n")
        print(f"written to {args.out}")
    return 0
