"""The two evaluation protocols of SPEC §8: per 2-D slice (the paper's) and per 3-D case.

- **slice**: per 2-D slice, Dice and Hausdorff distance in pixels for every foreground class.
  For class ``c`` a slice is scored when ``c`` is in the target; a prediction that misses it
  entirely scores Dice 0 and HD +inf (a *miss*, counted at the image diagonal in the HD mean,
  :mod:`ctxseg.evaluation.summary`). Slices where the target lacks ``c`` but the prediction has
  it are not in the class's means; their number is reported as ``false_positive``.
- **volume**: per case, the slices stacked into the prepared 3-D volume, Dice, HD and HD95 in
  mm with the prepared spacing ``(z, y, x)``, per class. A case where the class is absent from
  both masks is NaN (left out, counted); exactly one empty mask is Dice 0 and HD +inf (a miss
  when the prediction is empty, a false alarm when the target is), counted at the volume's
  diagonal in mm.

Validation during training scores its slices with :func:`slice_metrics` and
:func:`summarize_slices`, the same inclusion rules as the reported slice protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ctxseg.data.store import PreparedStore
from ctxseg.evaluation.summary import (
    class_mean,
    image_diagonal,
    summarize_dice,
    summarize_distances,
    volume_diagonal,
)
from ctxseg.metrics import (
    dice_score,
    dice_score_batch,
    hausdorff_distance,
    hausdorff_distance_batch,
)

__all__ = [
    "score",
    "slice_metrics",
    "spacing_note",
    "summarize_slices",
    "volume_metrics",
]


def slice_metrics(
    pred: np.ndarray, target: np.ndarray, num_classes: int, with_hd: bool = True
) -> dict[int, dict[str, np.ndarray]]:
    """Per-slice Dice and HD (pixels) of every foreground class, SPEC §8 conventions.

    Args:
        pred: predicted label maps.
        target: reference label maps.
        num_classes: classes including background (0).
        with_hd: also compute the Hausdorff distances.

    Returns:
        ``{c: {"dice": (N,), "hd": (N,), "target_pixels": (N,), "pred_pixels": (N,)}}`` for
        ``c`` in ``1..C-1``; Dice/HD NaN when both masks are empty, 0/+inf when one is
        (``"hd"`` absent without ``with_hd``).

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
            "target_pixels": t.reshape(len(t), -1).sum(axis=1),  # (N,)
            "pred_pixels": p.reshape(len(p), -1).sum(axis=1),  # (N,)
        }
        if with_hd:
            out[c]["hd"] = hausdorff_distance_batch(p, t)  # (N,)
    return out


def summarize_slices(
    metrics: dict[int, dict[str, np.ndarray]],
    label_names: Sequence[str],
    image_size: Sequence[int],
) -> dict[str, Any]:
    """The slice protocol's summary of :func:`slice_metrics` (SPEC §8 inclusion rules).

    Returns:
        ``{"unit": "px", "penalty": <image diagonal>, "classes": {name: {"dice", "hd",
        "false_positive"}}, "mean": {"dice", "hd", "hd_detected"},
        "classes_without_value": {metric: [names]}}``.
    """
    penalty = image_diagonal(*image_size)
    classes: dict[str, Any] = {}
    for c, m in metrics.items():
        present = m["target_pixels"] > 0  # the class is scored where the target has it
        entry: dict[str, Any] = {"dice": summarize_dice(m["dice"][present])}
        if "hd" in m:
            entry["hd"] = summarize_distances(m["hd"][present], penalty)
        entry["false_positive"] = int(np.sum(~present & (m["pred_pixels"] > 0)))
        classes[label_names[c]] = entry
    return {"unit": "px", "penalty": penalty, "classes": classes, **_means(classes)}


def _means(classes: dict[str, Any]) -> dict[str, Any]:
    """Class means of every metric present, and the classes each mean lacks."""
    first = next(iter(classes.values()), {})
    keys = [("dice", "dice", "mean")]
    for metric in ("hd", "hd95"):
        if metric in first:
            keys += [(metric, metric, "mean"), (f"{metric}_detected", metric, "mean_detected")]
    mean, without = {}, {}
    for name, metric, key in keys:
        mean[name], missing = class_mean(classes, metric, key)
        if missing:
            without[name] = missing
    return {"mean": mean, "classes_without_value": without}


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
        ``{c: {"dice", "hd", "hd95", "missed"}}`` for ``c`` in ``1..C-1``; ``missed`` is 1.0
        when the target has the class and the prediction has none of it.

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
            "missed": float(t.any() and not p.any()),
        }
    return out


def spacing_note(store: PreparedStore) -> str | None:
    """A visible note when the store's millimetres come from an assumed spacing, else None."""
    assumed = store.meta.get("assumed_spacing")
    if not assumed:
        return None
    why = store.meta.get("assumed_spacing_note", "the source files store no spacing")
    mm = " x ".join(f"{s:g}" for s in assumed)
    return f"mm values assume a voxel spacing of ({mm}) mm (z, y, x): {why}"


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
        ``"volume"`` entries (see :func:`summarize_slices`), ``"classes"``, ``"num_slices"``,
        ``"num_cases"`` and ``"notes"`` (the spacing assumption, when there is one).

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
    depth_of = {c["case"]: c["num_slices"] for c in store.cases}

    per_slice_metrics = slice_metrics(pred, target, store.num_classes)
    per_slice = []
    for i, row in enumerate(rows):
        meta = store.slices[int(row)]
        entry: dict[str, Any] = {
            "row": int(row),
            "case": meta["case"],
            "slice_index": meta["slice_index"],
            "num_slices": depth_of[meta["case"]],
        }
        for c in classes:
            m = per_slice_metrics[c]
            entry[f"dice_{names[c]}"] = float(m["dice"][i])
            entry[f"hd_{names[c]}"] = float(m["hd"][i])
            entry[f"target_px_{names[c]}"] = int(m["target_pixels"][i])
            entry[f"pred_px_{names[c]}"] = int(m["pred_pixels"][i])
        per_slice.append(entry)
    slice_summary = summarize_slices(per_slice_metrics, names, store.image_size)

    per_case = []
    values: dict[int, dict[str, list[float]]] = {
        c: {"dice": [], "hd": [], "hd95": [], "missed": [], "penalty": []} for c in classes
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
        penalty = volume_diagonal((depth, *store.image_size), spacing)
        case_values = volume_metrics(pred[span], target[span], store.num_classes, spacing)
        entry = {
            "case": case["case"],
            "num_slices": depth,
            "spacing": " ".join(f"{s:g}" for s in spacing),
            "diagonal_mm": penalty,
        }
        for c in classes:
            for k, v in case_values[c].items():
                if k != "missed":
                    entry[f"{k}_{names[c]}"] = v
                values[c][k].append(v)
            values[c]["penalty"].append(penalty)
        per_case.append(entry)

    volume_classes: dict[str, Any] = {}
    for c in classes:
        v = values[c]
        missed = np.asarray(v["missed"], dtype=bool)
        volume_classes[names[c]] = {
            "dice": summarize_dice(v["dice"]),
            "hd": summarize_distances(v["hd"], v["penalty"] or 1.0, missed),
            "hd95": summarize_distances(v["hd95"], v["penalty"] or 1.0, missed),
        }
    penalties = [e["diagonal_mm"] for e in per_case]
    volume_summary = {
        "unit": "mm",
        "penalty": float(np.mean(penalties)) if penalties else None,
        "classes": volume_classes,
        **_means(volume_classes),
    }
    note = spacing_note(store)
    summary = {
        "num_slices": int(len(rows)),
        "num_cases": len(per_case),
        "classes": [names[c] for c in classes],
        "slice": slice_summary,
        "volume": volume_summary,
        "notes": [note] if note else [],
    }
    return per_slice, per_case, summary
