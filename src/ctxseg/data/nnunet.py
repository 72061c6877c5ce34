"""Preparation of any dataset in nnU-Net's raw layout, so that user data can be trained on.

``DatasetXXX_Name/`` holds ``dataset.json`` (``labels``, ``channel_names`` or v1 ``modality``,
``file_ending``), ``imagesTr/{case}_{CCCC}{ending}`` and ``labelsTr/{case}{ending}``.

- Slices are taken along the axis with the coarsest median spacing over the cases (z when all
  are equal), the usual acquisition axis of an anisotropic scan.
- One channel is used (``channel``, default 0); the store holds single-channel images, so the
  others are left out (logged, and recorded in ``dataset.json``).
- Spacing is kept unless ``spacing`` is given (mm, (z, y, x)). The slice size, unless given, is
  the median in-plane size rounded up to a multiple of 32 (the U-Nets' ``size_multiple``).
- Every case is its own patient; ``train.list`` / ``val.list`` / ``test.list`` beside
  ``dataset.json`` are respected. ``imagesTs`` (no labels) is not used.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ctxseg.data.cases import finish, prepare_files
from ctxseg.data.io import RawDataError, checksums
from ctxseg.data.preprocess import make_params
from ctxseg.data.splits import make_splits, read_list_files
from ctxseg.data.store import PreparedStore

log = logging.getLogger(__name__)


def read_nnunet_json(raw: Path) -> dict:
    """``dataset.json`` of an nnU-Net raw folder with labels normalised to ``{"0": name}``.

    Raises:
        RawDataError: Missing or invalid file, region-based or non-consecutive labels.
    """
    path = raw / "dataset.json"
    if not path.is_file():
        raise RawDataError(f"{raw}: not an nnU-Net raw dataset (dataset.json missing)")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RawDataError(f"{path}: not valid JSON ({err})") from err
    raw_labels = info.get("labels")
    if not isinstance(raw_labels, dict) or not raw_labels:
        raise RawDataError(f"{path}: needs a 'labels' mapping")
    labels: dict[int, str] = {}
    for key, value in raw_labels.items():
        if isinstance(value, list):
            raise RawDataError(f"{path}: region-based label {key!r}: {value} is not supported")
        # v2 maps name -> value, v1 maps "value" -> name.
        number, label_name = (value, key) if isinstance(value, int) else (key, value)
        try:
            labels[int(number)] = str(label_name)
        except ValueError as err:
            raise RawDataError(f"{path}: bad label entry {key!r}: {value!r}") from err
    if sorted(labels) != list(range(len(labels))):
        raise RawDataError(f"{path}: label values {sorted(labels)} must be 0..C-1 without gaps")
    channels = info.get("channel_names", info.get("modality", {"0": "image"}))
    return {
        "labels": {str(k): labels[k] for k in sorted(labels)},
        "channels": {str(k): str(v) for k, v in channels.items()},
        "file_ending": info.get("file_ending", ".nii.gz"),
        "name": info.get("name", raw.name),
    }


def find_nnunet_pairs(raw: Path, ending: str, channel: int) -> list[tuple[str, Path, Path]]:
    """``(case, image of the channel, label)`` for every case in ``labelsTr``.

    Raises:
        RawDataError: Missing folders, no cases, an image without its label or the reverse.
    """
    images_dir, labels_dir = raw / "imagesTr", raw / "labelsTr"
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise RawDataError(f"{raw}: {folder.name}/ missing")
    labels = {p.name[: -len(ending)]: p for p in labels_dir.iterdir() if p.name.endswith(ending)}
    suffix = f"_{channel:04d}{ending}"
    images = {p.name[: -len(suffix)]: p for p in images_dir.iterdir() if p.name.endswith(suffix)}
    if not images and not labels:
        raise RawDataError(f"{images_dir}: no *{suffix} images (empty dataset)")
    for case, path in sorted(images.items()):
        if case not in labels:
            raise RawDataError(f"{path}: image without segmentation (labelsTr/{case}{ending})")
    for case, path in sorted(labels.items()):
        if case not in images:
            raise RawDataError(f"{path}: segmentation without image (imagesTr/{case}{suffix})")
    return [(case, images[case], labels[case]) for case in sorted(images)]


def _header(path: Path) -> tuple[tuple[int, ...], tuple[float, ...]]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise RawDataError(f"{path}: unreadable volume header ({err})") from err
    return reader.GetSize(), reader.GetSpacing()


def plan_slicing(images: list[Path], spacing: tuple | None) -> tuple[int, tuple[int, int]]:
    """Slice axis (of the (z, y, x) array) and the median in-plane size, from the headers."""
    headers = [_header(p) for p in images]
    spacings = np.array([h[1][::-1] for h in headers], float)  # (N, 3) in (z, y, x)
    sizes = np.array([h[0][::-1] for h in headers], float) * spacings  # extents in mm
    for a, target in enumerate(spacing or (None, None, None)):
        if target is not None:
            spacings[:, a] = target
    median = np.median(spacings, axis=0)
    axis = int(np.argmax(median)) if median.max() > median.min() * (1 + 1e-3) else 0
    in_plane = [a for a in range(3) if a != axis]
    voxels = np.median(sizes / spacings, axis=0)  # (3,) median voxel counts after resampling
    return axis, (int(round(voxels[in_plane[0]])), int(round(voxels[in_plane[1]])))


def prepare_nnunet(
    raw: str | os.PathLike,
    out: str | os.PathLike,
    seed: int = 0,
    overwrite: bool = False,
    size: int | tuple[int, int] | None = None,
    spacing: tuple[float | None, float | None, float | None] | None = None,
    channel: int = 0,
    test_fraction: float = 0.3,
    val_fraction: float = 0.15,
) -> PreparedStore:
    """Prepare an nnU-Net raw dataset folder into a store (module docstring for the rules).

    Args:
        raw: The ``DatasetXXX_Name`` folder.
        out: Store folder to create.
        seed: Split seed.
        overwrite: Replace an existing store at ``out``.
        size: Slice size (int for square, or (H, W)); default derived from the data.
        spacing: Target spacing (z, y, x) in mm, ``None`` entries kept; default: keep all.
        channel: Input channel to use.
        test_fraction: Fraction of cases in test.
        val_fraction: Fraction of the remaining cases in val.

    Returns:
        The opened store.
    """
    raw = Path(raw)
    if not raw.is_dir():
        raise RawDataError(f"{raw}: nnU-Net raw folder does not exist")
    info = read_nnunet_json(raw)
    if str(channel) not in info["channels"]:
        raise RawDataError(f"{raw / 'dataset.json'}: no channel {channel} in {info['channels']}")
    if len(info["channels"]) > 1:
        log.warning("%s: %d channels, using only channel %d (%s)", raw, len(info["channels"]),
                    channel, info["channels"][str(channel)])  # fmt: skip
    pairs = find_nnunet_pairs(raw, info["file_ending"], channel)
    axis, median_size = plan_slicing([p[1] for p in pairs], spacing)
    if size is None:
        size = tuple(int(np.ceil(s / 32) * 32) for s in median_size)
    elif isinstance(size, int):
        size = (size, size)
    params = make_params(size, spacing, slice_axis=axis)
    ids = [case for case, _, _ in pairs]
    splits = make_splits(ids, seed, test_fraction, val_fraction, given=read_list_files(raw) or None)
    meta = {
        "name": info["name"],
        "source_format": "nnunet",
        "labels": info["labels"],
        "channel_used": {str(channel): info["channels"][str(channel)]},
        "channels_in_source": info["channels"],
        "preprocessing": params,
        "sources": checksums([p for _, img, lab in pairs for p in (img, lab)], raw),
    }
    values = range(len(info["labels"]))
    cases = (prepare_files(img, lab, params, values, case=case, patient=case)
             for case, img, lab in pairs)  # fmt: skip
    return finish(out, cases, meta, splits, overwrite)
