"""Writing a prepared store atomically: built in a temporary sibling, then renamed into place.

Slices are streamed to disk case by case (the cases may come from a generator), so preparing
a large dataset never holds it all in memory.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ctxseg import __version__
from ctxseg.data.layout import FORMAT_VERSION, SPLIT_NAMES, PreparedCase, check_splits, slice_box
from ctxseg.errors import os_error_at


def _check_case(case: PreparedCase, num_classes: int, image_size: tuple[int, int]) -> None:
    name = f"case {case.case!r}"
    if case.image.ndim != 3 or case.label.shape != case.image.shape:
        raise ValueError(
            f"{name}: image {case.image.shape} and label {case.label.shape} must be equal (Z, H, W)"
        )
    if tuple(case.image.shape[1:]) != image_size:
        raise ValueError(
            f"{name}: slice size {tuple(case.image.shape[1:])} differs from the dataset's "
            f"{image_size}"
        )
    if case.image.shape[0] == 0:
        raise ValueError(f"{name}: no slices")
    if not np.isfinite(case.image).all():
        raise ValueError(f"{name}: image has NaN or infinite values")
    lo, hi = float(case.image.min()), float(case.image.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name}: image values [{lo}, {hi}] outside [0, 1]")
    if int(case.label.max()) >= num_classes:
        raise ValueError(
            f"{name}: label value {int(case.label.max())} outside the {num_classes} classes"
        )
    if len(case.spacing) != 3 or min(case.spacing) <= 0:
        raise ValueError(f"{name}: spacing {case.spacing} must be three positive numbers (z, y, x)")


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n")


def _npy_from_raw(raw_path: Path, npy_path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    """Prefix a file of raw C-order ``dtype`` values with an .npy header (one streamed copy)."""
    with open(npy_path, "wb") as out, open(raw_path, "rb") as raw:
        header = {
            "descr": np.lib.format.dtype_to_descr(dtype),
            "fortran_order": False,
            "shape": shape,
        }
        np.lib.format.write_array_header_1_0(out, header)
        shutil.copyfileobj(raw, out, length=16 << 20)
    raw_path.unlink()


def _is_store(path: Path) -> bool:
    return (path / "dataset.json").is_file()


def write_store(
    out_dir: str | os.PathLike,
    cases: Iterable[PreparedCase],
    meta: dict[str, Any],
    splits: Mapping[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write a prepared dataset folder atomically.

    Args:
        out_dir: Destination folder. It must not exist unless ``overwrite`` is set; even then
            only an existing prepared store (or an empty folder) is replaced.
        cases: Prepared cases in the order they are stored (consumed once; may be a generator).
        meta: The ``dataset.json`` content: at least ``name`` and ``labels``
            (``{"0": "background", "1": ...}``); ``num_classes``, ``image_size``,
            ``ctxseg_version`` and counts are added here.
        splits: ``{"seed": int, "train": [...], "val": [...], "test": [...]}`` over the case ids.
        overwrite: Replace an existing store (swapped in atomically after the new one is built).

    Returns:
        The destination path.

    Raises:
        FileExistsError: ``out_dir`` exists and ``overwrite`` is false, or it is not a store.
        ValueError: Inconsistent cases, labels or splits (nothing is written then).
        OSError: A write failed (a full disk, ...); it names ``out_dir``, the temporary folder
            is removed and an existing store is left as it was.
    """
    out = Path(out_dir).absolute()
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists (pass overwrite=True / --overwrite to replace it)")
        if not out.is_dir() or (any(out.iterdir()) and not _is_store(out)):
            raise FileExistsError(
                f"{out} exists and is not a prepared store; refusing to replace it"
            )
    labels = meta.get("labels")
    if not isinstance(labels, Mapping) or sorted(int(k) for k in labels) != list(
        range(len(labels))
    ):
        raise ValueError(f"meta['labels'] must map '0'..'C-1' to names, got {labels!r}")
    num_classes = len(labels)
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got labels {labels!r}")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _build(tmp, cases, dict(meta), splits, num_classes)
        _swap_in(tmp, out)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        # A failed write names no file, or the temporary folder now gone: name the store.
        if isinstance(err, OSError) and str(err.filename or tmp).startswith(str(tmp)):
            note = " (while writing the prepared store; " + (
                "the existing store is kept)" if out.exists() else "nothing was written)"
            )
            raise os_error_at(err, out, note) from err
        raise
    return out


def _build(
    tmp: Path,
    cases: Iterable[PreparedCase],
    meta: dict[str, Any],
    splits: Mapping[str, Any],
    num_classes: int,
) -> None:
    image_size: tuple[int, int] | None = (
        tuple(meta["image_size"]) if meta.get("image_size") is not None else None
    )
    case_rows: list[dict[str, Any]] = []
    slice_rows: list[dict[str, Any]] = []
    patients: dict[str, str] = {}
    with open(tmp / "images.raw", "wb") as fimg, open(tmp / "labels.raw", "wb") as flab:
        for case in cases:
            if image_size is None:
                image_size = (int(case.image.shape[1]), int(case.image.shape[2]))
            _check_case(case, num_classes, image_size)
            if case.case in patients:
                raise ValueError(f"duplicate case id {case.case!r}")
            patients[case.case] = case.patient
            image = np.ascontiguousarray(case.image, dtype=np.float32)
            label = np.ascontiguousarray(case.label, dtype=np.uint8)
            fimg.write(image.tobytes())
            flab.write(label.tobytes())
            first = len(slice_rows)
            # (Z, C) pixel count of every class on every slice, one bincount for the volume.
            offsets = np.arange(label.shape[0])[:, None] * num_classes
            counts = np.bincount(
                (label.reshape(label.shape[0], -1) + offsets).ravel(),
                minlength=label.shape[0] * num_classes,
            )
            counts = counts.reshape(label.shape[0], num_classes)
            for z in range(label.shape[0]):
                slice_rows.append(
                    {
                        "case": case.case,
                        "phase": case.phase,
                        "slice_index": z,
                        "fg_pixels": [int(c) for c in counts[z, 1:]],
                        "box": slice_box(label[z]),
                    }
                )
            case_rows.append(
                {
                    "case": case.case,
                    "patient": case.patient,
                    "phase": case.phase,
                    "first": first,
                    "num_slices": int(label.shape[0]),
                    "spacing": [float(s) for s in case.spacing],
                    "geometry": case.geometry,
                }
            )
    if not case_rows:
        raise ValueError("no cases to write")
    check_splits(splits, patients)
    split_of = {c: name for name in SPLIT_NAMES for c in splits[name]}
    for row in slice_rows:
        row["split"] = split_of[row["case"]]

    n = len(slice_rows)
    assert image_size is not None
    _npy_from_raw(tmp / "images.raw", tmp / "images.npy", np.dtype(np.float32), (n, *image_size))
    _npy_from_raw(tmp / "labels.raw", tmp / "labels.npy", np.dtype(np.uint8), (n, *image_size))
    meta.update(
        {
            "format_version": FORMAT_VERSION,
            "num_classes": num_classes,
            "image_size": list(image_size),
            "num_cases": len(case_rows),
            "num_slices": n,
            "ctxseg_version": __version__,
        }
    )
    _write_json(tmp / "dataset.json", meta)
    _write_json(
        tmp / "splits.json",
        {
            "seed": splits.get("seed"),
            **{name: list(splits[name]) for name in SPLIT_NAMES},
            **({"note": splits["note"]} if splits.get("note") else {}),
        },
    )
    _write_json(tmp / "cases.json", case_rows)
    _write_json(tmp / "slices.json", slice_rows)


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside, restored on failure."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
