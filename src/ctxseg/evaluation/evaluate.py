"""``ctxseg evaluate``: score a trained run on its test split, both protocols of SPEC §8.

The network sees whole prepared slices (no ROI: the ROI is a training device only, SPEC §1).
Its label maps are scored by the slice protocol (the paper's: per 2-D slice with the
structure, HD in pixels) and the volume protocol (the challenges': per case, HD and HD95 in
mm), :mod:`ctxseg.evaluation.protocols`. Every Hausdorff mean counts a missed structure at a
stated penalty and shows the mean over detected structures and the miss count beside it
(:mod:`ctxseg.evaluation.summary`).

The test split is the default and the split to report. The validation split chose the
checkpoint (``checkpoint_best``); it can be scored on request (``--split val``), and everything
written then says "validation split (used for model selection)".

Results go to ``RUN_DIR/eval_<split>_<checkpoint>/``: ``per_slice.csv``, ``per_case.csv``,
``summary.json``, ``summary.md`` and the predictions ``pred.npy`` (uint8, ``(N, H, W)``) with
their store rows ``rows.npy``, so that every number can be recomputed from the files.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctxseg.data.store import PreparedStore
from ctxseg.engine.distributed import resolve_device
from ctxseg.engine.precision import inference_fast_path
from ctxseg.evaluation import report
from ctxseg.evaluation.protocols import score

log = logging.getLogger(__name__)

SPLITS = ("test", "val")
CHECKPOINTS = ("best", "last")
SELECTION_NOTE = "validation split (used for model selection): not an unbiased estimate"


def split_label(split: str) -> str:
    """How a report names the scored split; the validation split always carries its warning."""
    return SELECTION_NOTE if split == "val" else f"{split} split"


def summary_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The report table of a summary: one row per protocol and class, plus the class mean.

    Columns: protocol, class, n (slices or cases scored), Dice, HD (misses at the penalty),
    HD over detected structures, HD95 (volume only, misses at the penalty), missed (target has
    the class, prediction none), false alarms (volume: prediction has the class, target none),
    empty (both empty, left out), FP slices (slice protocol: the class predicted on a slice
    without it, not in the slice means).
    """
    headers = [
        "protocol", "class", "n", "Dice", "HD", "HD detected", "HD95", "missed",
        "false alarm", "empty", "FP slices",
    ]  # fmt: skip
    rows: list[list[Any]] = []
    for protocol in ("slice", "volume"):
        part = summary[protocol]
        label = f"{protocol} ({part['unit']})"
        for name, stats in part["classes"].items():
            hd = stats["hd"]
            rows.append([
                label, name, hd["n_scored"], stats["dice"]["mean"], hd["mean"],
                hd["mean_detected"], stats["hd95"]["mean"] if "hd95" in stats else None,
                hd["n_missed"], hd["n_false_alarm"] if protocol == "volume" else None,
                hd["n_nan"], stats.get("false_positive"),
            ])  # fmt: skip
        if len(part["classes"]) > 1:
            mean = part["mean"]
            rows.append([
                label, "mean", None, mean["dice"], mean["hd"], mean["hd_detected"],
                mean.get("hd95"), None, None, None, None,
            ])  # fmt: skip
    return headers, rows


def summary_notes(summary: dict[str, Any]) -> list[str]:
    """The lines printed under every summary table: penalties, units, assumptions, gaps."""
    slice_part, volume_part = summary["slice"], summary["volume"]
    notes = [
        f"slice: per 2-D slice where the class is in the target, HD in pixels; a missed "
        f"structure counts as Dice 0 and, in `HD`, at the image diagonal "
        f"({slice_part['penalty']:.1f} px). volume: per case, HD/HD95 in mm; a miss or false "
        f"alarm counts at the volume's diagonal (mean {_fmt(volume_part['penalty'])} mm).",
        "`HD detected`: mean over structures that were found (misses left out; never report "
        "it alone). `empty`: both masks empty, left out. `FP slices`: slices without the class "
        "in the target where it was predicted (not in the slice means). `mean`: mean of the "
        "class means, NaN when a class has no value.",
    ]
    for protocol in ("slice", "volume"):
        for metric, names in summary[protocol].get("classes_without_value", {}).items():
            notes.append(f"{protocol} {metric}: no value for class(es) {', '.join(names)}")
    notes += summary.get("notes", [])
    return notes


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _open_store(ckpt: dict[str, Any], data_root: str | Path | None) -> PreparedStore:
    root = Path(data_root if data_root is not None else ckpt["config"]["data"]["root"])
    if data_root is None and not root.exists():
        raise FileNotFoundError(
            f"the run's prepared store {root} (data.root of its config; a relative path is "
            "taken against the current directory) does not exist: pass --data-root"
        )
    return PreparedStore.open(root)


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    checkpoint: str = "best",
    device: str | torch.device | None = None,
    batch_size: int = 32,
    data_root: str | Path | None = None,
    quiet: bool = False,
    amp: str | None = None,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint on a split under both protocols of SPEC §8.

    Args:
        run_dir: the run folder written by ``ctxseg train``.
        split: ``"test"`` or ``"val"``.
        checkpoint: ``"best"`` or ``"last"`` (``checkpoint_<name>.pt`` in the run folder).
        device: ``"auto"`` / ``None`` (CUDA if available), ``"cpu"``, ``"cuda"``.
        batch_size: slices per forward pass.
        data_root: the prepared store; default the one in the checkpoint's config
            (``data.root``, relative paths against the current directory).
        quiet: do not print the table.
        amp: ``auto | bf16 | off``; default the run's ``train.amp``, so the checkpoint is
            scored on the path that validated it
            (:func:`ctxseg.engine.precision.inference_fast_path`).

    Returns:
        The summary (also written to ``summary.json``), with ``"out_dir"`` added.

    Raises:
        ValueError: a bad split or checkpoint name, or an empty split.
        FileNotFoundError: no such run folder or checkpoint file.
    """
    from ctxseg.engine.checkpoint import load_model
    from ctxseg.engine.inference import predict_labels

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    ckpt_path = run_dir / f"checkpoint_{checkpoint}.pt"
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path} does not exist (has the run trained?)")

    dev = resolve_device(device)
    model, ckpt = load_model(ckpt_path, dev)
    fast = inference_fast_path(model, ckpt, dev, amp)
    store = _open_store(ckpt, data_root)
    if int(ckpt["num_classes"]) != store.num_classes:
        raise ValueError(
            f"{ckpt_path} predicts {ckpt['num_classes']} classes but the store {store.root} has "
            f"{store.num_classes}"
        )
    rows = store.indices(split)
    if rows.size == 0:
        sizes = ", ".join(
            f"{name} {len(store.case_ids(name))}" for name in ("train", "val", "test")
        )
        raise ValueError(
            f"split {split!r} of {store.root} has no slices (cases per split: {sizes}); "
            "re-prepare the data set with this version of ctxseg, which always keeps a test part"
        )

    start = time.perf_counter()
    images = torch.from_numpy(np.asarray(store.images[rows]))[:, None]  # (N, 1, H, W)
    pred = predict_labels(
        model, images, batch_size, dev, amp=fast.bf16, channels_last=fast.channels_last
    )
    pred = np.asarray(pred, dtype=np.uint8)  # (N, H, W)
    predict_s = time.perf_counter() - start
    start = time.perf_counter()
    per_slice, per_case, summary = score(store, rows, pred)
    metrics_s = time.perf_counter() - start

    out_dir = run_dir / f"eval_{split}_{checkpoint}"
    out_dir.mkdir(exist_ok=True)
    np.save(out_dir / "pred.npy", pred)
    np.save(out_dir / "rows.npy", rows)
    report.write_csv(out_dir / "per_slice.csv", per_slice, list(per_slice[0]))
    report.write_csv(out_dir / "per_case.csv", per_case, list(per_case[0]))
    summary = {
        "run_dir": str(run_dir),
        "split": split,
        "checkpoint": checkpoint,
        "epoch": ckpt.get("epoch"),
        "data_root": str(store.root),
        "split_label": split_label(split),
        "precision": fast.to_dict(),
        **summary,
        "seconds": {"predict": predict_s, "metrics": metrics_s},
    }
    report.write_json(out_dir / "summary.json", summary)
    headers, table = summary_rows(summary)
    title = (
        f"{run_dir.name}: {split_label(split)}, checkpoint {checkpoint} (epoch "
        f"{ckpt.get('epoch')}), {summary['num_slices']} slices of {summary['num_cases']} cases"
    )
    notes = "\n".join(f"- {line}" for line in summary_notes(summary))
    report.write_text(
        out_dir / "summary.md",
        f"# {title}\n\n{report.markdown_table(headers, table)}\n\n{notes}\n",
    )
    if not quiet:
        print(title)
        print(report.plain_table(headers, table))
        print(notes)
        print(f"written to {out_dir}")
    return {**summary, "out_dir": str(out_dir)}


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ctxseg evaluate RUN_DIR [--split] [--checkpoint] [--device]``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score a trained run on its test split: slice and volume protocols",
        description=(
            "Score a run's checkpoint on its test split under two protocols: per 2-D slice "
            "(the paper's; Dice and Hausdorff distance in pixels) and per 3-D case (Dice, HD "
            "and HD95 in mm). A missed structure counts at the image (volume) diagonal in the "
            "HD means; the mean over detected structures and the miss counts stand beside it. "
            "Writes RUN_DIR/eval_<split>_<checkpoint>/ (summary.json, summary.md, "
            "per_slice.csv, per_case.csv, pred.npy, rows.npy)."
        ),
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder of `ctxseg train`")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="test",
        help="the split to score: test, the one to report (default: test), or val, the one "
        "that chose the checkpoint (its outputs are then labelled as model selection)",
    )
    parser.add_argument(
        "--checkpoint",
        choices=CHECKPOINTS,
        default="best",
        help="best (highest validation Dice) or last (final epoch) (default: best)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument(
        "--batch-size", type=int, default=32, help="slices per forward pass (default: 32)"
    )
    parser.add_argument(
        "--data-root", default=None, help="prepared store (default: data.root of the run's config)"
    )
    parser.add_argument(
        "--amp",
        choices=("auto", "bf16", "off"),
        default=None,
        help="bf16 autocast: auto | bf16 | off (default: the run's train.amp, the path that "
        "validated the checkpoint)",
    )
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    evaluate_run(
        args.run_dir,
        split=args.split,
        checkpoint=args.checkpoint,
        device=args.device,
        batch_size=args.batch_size,
        data_root=args.data_root,
        amp=args.amp,
    )
    return 0
