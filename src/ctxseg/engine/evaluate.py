"""``ctxseg evaluate``: score a trained run on the val or test split, both protocols of SPEC §8.

The network sees whole prepared slices (no ROI: the ROI is a training device only, SPEC §1).
Its label maps are scored two ways:

- **slice** (the paper's protocol): per 2-D slice, Dice and Hausdorff distance in pixels for
  every foreground class. For class ``c`` a slice counts when ``c`` is present in the target;
  a prediction that misses it entirely counts as Dice 0 and HD +inf (reported as ``missed``,
  left out of the HD mean). Slices where the target lacks ``c`` but the prediction has it are
  not in the class's means; their number is reported as ``false_positive``.
- **volume** (the challenges'): per case, the slices stacked into the prepared 3-D volume,
  Dice, HD and HD95 in mm with the prepared spacing ``(z, y, x)``, per class, mean over cases
  (a case where the class is absent from both masks is NaN: left out and counted).

Every mean sits beside the counts of :func:`ctxseg.metrics.summarize`. The class mean
("mean" row) is the mean of the per-class means. Results go to
``RUN_DIR/eval_<split>_<checkpoint>/``: ``per_slice.csv``, ``per_case.csv``, ``summary.json``,
``summary.md`` and the predictions ``pred.npy`` (uint8, ``(N, H, W)``) with their store rows
``rows.npy``, so that every number can be recomputed from the files.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctxseg.data.store import PreparedStore
from ctxseg.engine import report
from ctxseg.engine.distributed import resolve_device
from ctxseg.metrics import (
    dice_score,
    dice_score_batch,
    hausdorff_distance,
    hausdorff_distance_batch,
    summarize,
)

log = logging.getLogger(__name__)

SPLITS = ("test", "val")
CHECKPOINTS = ("best", "last")


def slice_metrics(
    pred: np.ndarray, target: np.ndarray, num_classes: int
) -> dict[int, dict[str, np.ndarray]]:
    """Per-slice Dice and HD (pixels) of every foreground class, SPEC §8 conventions.

    Args:
        pred: predicted label maps.
        target: reference label maps.
        num_classes: classes including background (0).

    Returns:
        ``{c: {"dice": (N,), "hd": (N,), "target_pixels": (N,), "pred_pixels": (N,)}}`` for
        ``c`` in ``1..C-1``; Dice/HD NaN when both masks are empty, 0/+inf when one is.

    Shape:
        pred, target: (N, H, W) integer label maps.
    """
    labels = list(range(1, num_classes))
    dice = dice_score_batch(pred, target, labels)
    out: dict[int, dict[str, np.ndarray]] = {}
    for c in labels:
        p, t = pred == c, target == c
        out[c] = {
            "dice": np.asarray(dice[c], dtype=np.float64),
            "hd": hausdorff_distance_batch(p, t),
            "target_pixels": t.reshape(len(t), -1).sum(axis=1),  # (N,)
            "pred_pixels": p.reshape(len(p), -1).sum(axis=1),  # (N,)
        }
    return out


def volume_metrics(
    pred: np.ndarray, target: np.ndarray, num_classes: int, spacing: tuple[float, ...]
) -> dict[int, dict[str, float]]:
    """Dice, HD and HD95 (mm) of every foreground class for one 3-D case.

    Args:
        pred: predicted label volume.
        target: reference label volume.
        num_classes: classes including background.
        spacing: voxel size ``(z, y, x)`` in mm.

    Returns:
        ``{c: {"dice", "hd", "hd95"}}`` for ``c`` in ``1..C-1``.

    Shape:
        pred, target: (Z, H, W).
    """
    labels = list(range(1, num_classes))
    dice = dice_score(pred, target, labels)
    out = {}
    for c in labels:
        p, t = pred == c, target == c
        out[c] = {
            "dice": float(dice[c]),
            "hd": hausdorff_distance(p, t, spacing=spacing),
            "hd95": hausdorff_distance(p, t, spacing=spacing, percentile=95),
        }
    return out


def _class_mean(stats: list[dict[str, Any]]) -> float:
    """Mean of per-class means, ignoring classes without any finite value."""
    means = [s["mean"] for s in stats if s["mean"] is not None and math.isfinite(s["mean"])]
    return float(np.mean(means)) if means else math.nan


def score(
    store: PreparedStore, rows: np.ndarray, pred: np.ndarray
) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Score predictions of store rows under both protocols.

    Args:
        store: the prepared dataset the rows index.
        rows: slice rows, whole cases in store order (as :meth:`PreparedStore.indices` gives).
        pred: predicted label maps of those rows.

    Returns:
        ``(per_slice rows, per_case rows, summary)``; the summary has ``"slice"`` and
        ``"volume"`` entries, each with ``"classes"`` (name -> metric -> summarize dict) and
        ``"mean"`` (metric -> mean of class means).

    Shape:
        rows: (N,); pred: (N, H, W) uint8.
    """
    if pred.shape != (len(rows), *store.image_size):
        raise ValueError(
            f"pred shape {pred.shape} does not match {len(rows)} rows of {store.image_size}"
        )
    target = np.asarray(store.labels[rows])  # (N, H, W)
    names = store.labels_names
    classes = range(1, store.num_classes)

    per_slice_metrics = slice_metrics(pred, target, store.num_classes)
    per_slice = []
    for i, row in enumerate(rows):
        meta = store.slices[int(row)]
        entry: dict[str, Any] = {
            "row": int(row),
            "case": meta["case"],
            "slice_index": meta["slice_index"],
        }
        for c in classes:
            m = per_slice_metrics[c]
            entry[f"dice_{names[c]}"] = float(m["dice"][i])
            entry[f"hd_{names[c]}"] = float(m["hd"][i])
            entry[f"target_px_{names[c]}"] = int(m["target_pixels"][i])
            entry[f"pred_px_{names[c]}"] = int(m["pred_pixels"][i])
        per_slice.append(entry)

    slice_summary: dict[str, Any] = {"unit": "px", "classes": {}}
    for c in classes:
        m = per_slice_metrics[c]
        present = m["target_pixels"] > 0
        slice_summary["classes"][names[c]] = {
            "dice": summarize(m["dice"][present]),
            "hd": summarize(m["hd"][present]),
            "false_positive": int(np.sum(~present & (m["pred_pixels"] > 0))),
        }
    slice_summary["mean"] = {
        k: _class_mean([v[k] for v in slice_summary["classes"].values()]) for k in ("dice", "hd")
    }

    per_case = []
    case_values: dict[int, dict[str, list[float]]] = {
        c: {"dice": [], "hd": [], "hd95": []} for c in classes
    }
    scored = {store.slices[int(r)]["case"] for r in rows}
    for case in store.cases:
        if case["case"] not in scored:
            continue
        first, depth = case["first"], case["num_slices"]
        at = np.flatnonzero(rows == first)
        span = slice(int(at[0]), int(at[0]) + depth) if at.size else slice(0, 0)
        if not np.array_equal(rows[span], np.arange(first, first + depth)):
            raise ValueError(f"rows do not hold all slices of case {case['case']!r} in order")
        spacing = tuple(float(s) for s in case["spacing"])
        values = volume_metrics(pred[span], target[span], store.num_classes, spacing)
        entry = {
            "case": case["case"],
            "num_slices": case["num_slices"],
            "spacing": " ".join(f"{s:g}" for s in spacing),
        }
        for c in classes:
            for k, v in values[c].items():
                entry[f"{k}_{names[c]}"] = v
                case_values[c][k].append(v)
        per_case.append(entry)

    volume_summary: dict[str, Any] = {"unit": "mm", "classes": {}}
    for c in classes:
        volume_summary["classes"][names[c]] = {
            k: summarize(np.asarray(v, dtype=np.float64)) for k, v in case_values[c].items()
        }
    volume_summary["mean"] = {
        k: _class_mean([v[k] for v in volume_summary["classes"].values()])
        for k in ("dice", "hd", "hd95")
    }
    summary = {
        "num_slices": int(len(rows)),
        "num_cases": len(per_case),
        "classes": [names[c] for c in classes],
        "slice": slice_summary,
        "volume": volume_summary,
    }
    return per_slice, per_case, summary


def _count(stats: dict[str, Any], key: str) -> int:
    return int(stats.get(key, 0) or 0)


def summary_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The report table of a summary: one row per protocol and class, plus the class mean.

    Columns: protocol, class, n (slices or cases scored), Dice, HD, HD95 (volume only), missed
    (HD +inf: one mask empty), empty (NaN: both empty, left out), false-positive slices.
    """
    headers = ["protocol", "class", "n", "Dice", "HD", "HD95", "missed", "empty", "FP slices"]
    rows: list[list[Any]] = []
    for protocol in ("slice", "volume"):
        part = summary[protocol]
        label = f"{protocol} ({part['unit']})"
        for name, stats in part["classes"].items():
            hd = stats["hd"]
            rows.append(
                [
                    label,
                    name,
                    _count(stats["dice"], "n"),
                    stats["dice"]["mean"],
                    hd["mean"],
                    stats["hd95"]["mean"] if "hd95" in stats else None,
                    _count(hd, "n_inf"),
                    _count(hd, "n_nan"),
                    stats.get("false_positive"),
                ]
            )
        if len(part["classes"]) > 1:
            mean = part["mean"]
            rows.append(
                [label, "mean", None, mean["dice"], mean["hd"], mean.get("hd95"), None, None, None]
            )
    return headers, rows


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
            f"split {split!r} of {store.root} has no slices (cases per split: {sizes}); a data "
            "set whose shipped lists define no test part is evaluated with --split val"
        )

    start = time.perf_counter()
    images = torch.from_numpy(np.asarray(store.images[rows]))[:, None]  # (N, 1, H, W)
    pred = np.asarray(predict_labels(model, images, batch_size, dev), dtype=np.uint8)  # (N, H, W)
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
        **summary,
        "seconds": {"predict": predict_s, "metrics": metrics_s},
    }
    report.write_json(out_dir / "summary.json", summary)
    headers, table = summary_rows(summary)
    title = (
        f"{run_dir.name}: {split} split, checkpoint {checkpoint} (epoch {ckpt.get('epoch')}), "
        f"{summary['num_slices']} slices of {summary['num_cases']} cases"
    )
    report.write_text(
        out_dir / "summary.md",
        f"# {title}\n\n{report.markdown_table(headers, table)}\n\n{_NOTES}\n",
    )
    if not quiet:
        print(title)
        print(report.plain_table(headers, table))
        print(f"written to {out_dir}")
    return {**summary, "out_dir": str(out_dir)}


_NOTES = (
    "slice: per 2-D slice where the class is in the target, HD in pixels; volume: per case, "
    "HD/HD95 in mm. Dice means include misses as 0; HD means are over finite values, with "
    "`missed` (HD inf: prediction or target empty) and `empty` (both empty, left out) counted "
    "beside them. `FP slices`: slices without the class in the target where it was predicted "
    "(not in the slice means). `mean`: mean of the class means."
)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ctxseg evaluate RUN_DIR [--split] [--checkpoint] [--device]``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score a trained run on the test (or val) split, slice and volume protocols",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder of `ctxseg train`")
    parser.add_argument("--split", choices=SPLITS, default="test")
    parser.add_argument("--checkpoint", choices=CHECKPOINTS, default="best")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--data-root", default=None, help="prepared store (default: data.root of the run's config)"
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
    )
    return 0
