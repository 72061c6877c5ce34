"""From a raw image / mask pair to a :class:`PreparedCase`, shared by the preparers."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from ctxseg.data.io import RawDataError, check_label_values, check_same_grid, read_volume
from ctxseg.data.preprocess import preprocess_image, preprocess_label
from ctxseg.data.store import PreparedCase, PreparedStore, write_store

log = logging.getLogger(__name__)


def prepare_images(
    image: sitk.Image,
    label: sitk.Image,
    params: dict,
    labels: Iterable[int],
    *,
    case: str,
    patient: str,
    phase: str | None,
    image_path: Path | str,
    label_path: Path | str,
) -> PreparedCase:
    """Check an image / mask pair (same grid, known label values) and preprocess it.

    Raises:
        RawDataError: Naming the offending file(s).
    """
    check_same_grid(image, label, image_path, label_path)
    check_label_values(sitk.GetArrayViewFromImage(label), labels, label_path)
    try:
        array, geometry = preprocess_image(image, params)
    except ValueError as err:
        raise RawDataError(f"{image_path}: {err}") from err
    target = preprocess_label(label, params)
    spacing = tuple(float(s) for s in geometry["prepared_spacing"])
    return PreparedCase(case, patient, phase, array, target, spacing, geometry)  # type: ignore[arg-type]


def prepare_files(
    image_path: Path,
    label_path: Path,
    params: dict,
    labels: Iterable[int],
    *,
    case: str,
    patient: str,
    phase: str | None = None,
) -> PreparedCase:
    """Read an image and its mask from disk and prepare them (see :func:`prepare_images`)."""
    image = read_volume(image_path)
    label = read_volume(label_path)
    if label.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        array = sitk.GetArrayViewFromImage(label)
        if (array != array.round()).any():
            raise RawDataError(f"{label_path}: mask has non-integer values")
    return prepare_images(
        image, label, params, labels, case=case, patient=patient, phase=phase,
        image_path=image_path, label_path=label_path,
    )  # fmt: skip


def finish(
    out: str | os.PathLike,
    cases: Iterable[PreparedCase],
    meta: Mapping[str, Any],
    splits: Mapping[str, Any],
    overwrite: bool,
) -> PreparedStore:
    """Write the store (atomically), log the time taken and open it."""
    start = time.perf_counter()
    meta = dict(meta)
    if "note" in splits:
        meta.setdefault("split_note", splits["note"])
    path = write_store(out, cases, meta, splits, overwrite=overwrite)
    store = PreparedStore.open(path)
    log.info(
        "prepared %s: %d cases, %d slices of %s in %.1f s -> %s",
        meta.get("name"), len(store.cases), len(store.slices), store.image_size,
        time.perf_counter() - start, path,
    )  # fmt: skip
    return store
