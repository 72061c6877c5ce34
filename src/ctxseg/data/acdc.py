"""ACDC preparation (SPEC §3) from either of its two common layouts, detected automatically.

(a) The official challenge layout: ``patientNNN/Info.cfg`` (``ED: n``, ``ES: m``) beside
    ``patientNNN_frameNN.nii.gz`` and ``patientNNN_frameNN_gt.nii.gz``, with the real spacing in
    the NIfTI header. The ``patientNNN`` folders may sit in ``raw`` or one level below
    (``training/``, ``testing/``).
(b) The SSL4MIS / SS-Net HDF5 layout: ``data/patientNNN_frame0F.h5`` whole volumes and
    ``data/patientNNN_frame0F_slice_K.h5`` slices (re-stacked by K = 1..Z), datasets ``image``
    and ``label``, ``frame01`` = ED and ``frame02`` = ES. It stores no spacing, so
    :data:`SSL4MIS_SPACING` is assumed and recorded in ``dataset.json``.

Both keep the in-plane spacing (no resampling, as the paper), normalise to [0, 1] (percentile
clip, then min-max), centre-crop / pad to 160 x 160 and cut along z. A case is one phase of a
patient, named by its volume file (``patient001_frame01``); splits keep a patient's phases
together, and ``train.list`` / ``val.list`` / ``test.list`` in ``raw`` are respected.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ctxseg.data.cases import finish, prepare_files, prepare_images
from ctxseg.data.io import RawDataError, check_label_values, checksums
from ctxseg.data.preprocess import make_params
from ctxseg.data.splits import make_splits, read_list_files
from ctxseg.data.store import PreparedCase, PreparedStore

log = logging.getLogger(__name__)

LABELS = {"0": "background", "1": "RV", "2": "Myo", "3": "LV"}
#: Spacing (z, y, x) in mm assumed for the SSL4MIS layout: ACDC's most common values
#: (in-plane 1.37-1.68 mm, most often 1.5625; slices 5-10 mm apart, most often 10).
SSL4MIS_SPACING = (10.0, 1.5625, 1.5625)
_H5_NAME = re.compile(r"^(patient\d+)_(frame\d+)(?:_slice_(\d+))?\.h5$")


def _read_info(path: Path) -> dict[str, int]:
    if not path.is_file():
        raise RawDataError(f"{path}: Info.cfg missing (needed for the ED / ES frames)")
    info = {}
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("ED", "ES"):
            try:
                info[key.strip()] = int(float(value))
            except ValueError as err:
                raise RawDataError(f"{path}: bad {key.strip()} frame {value.strip()!r}") from err
    if set(info) != {"ED", "ES"}:
        raise RawDataError(f"{path}: needs 'ED: n' and 'ES: m' lines, found {sorted(info)}")
    return info


def _official_cases(raw: Path) -> list[tuple[str, str, str, Path, Path]]:
    """``(case, patient, phase, image, mask)`` of the official layout."""
    folders = sorted(
        {p for p in [*raw.glob("patient*"), *raw.glob("*/patient*")] if p.is_dir()},
        key=lambda p: p.name,
    )
    out = []
    for folder in folders:
        info = _read_info(folder / "Info.cfg")
        for phase in ("ED", "ES"):
            case = f"{folder.name}_frame{info[phase]:02d}"
            image = next((folder / f"{case}{s}" for s in (".nii.gz", ".nii")
                          if (folder / f"{case}{s}").is_file()), None)  # fmt: skip
            if image is None:
                raise RawDataError(f"{folder}: {phase} frame {case}.nii.gz (from Info.cfg) missing")
            mask = folder / image.name.replace(case, f"{case}_gt")
            if not mask.is_file():
                raise RawDataError(f"{image}: image without segmentation ({mask.name})")
            if any(c[0] == case for c in out):  # ED == ES frame: keep one case
                continue
            out.append((case, folder.name, phase, image, mask))
    return out


def _ssl4mis_files(raw: Path) -> dict[str, dict]:
    """Volume stem -> {"volume": path} or {"slices": {K: path}} of the HDF5 layout."""
    folder = raw / "data" if (raw / "data").is_dir() else raw
    found: dict[str, dict] = {}
    for path in sorted(folder.glob("*.h5")):
        match = _H5_NAME.match(path.name)
        if match is None:
            raise RawDataError(f"{path}: not an SSL4MIS name (patientNNN_frameFF[_slice_K].h5)")
        stem = f"{match[1]}_{match[2]}"
        entry = found.setdefault(stem, {"slices": {}})
        if match[3] is None:
            entry["volume"] = path
        else:
            entry["slices"][int(match[3])] = path
    return found


def _read_h5(path: Path, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    if path.stat().st_size == 0:
        raise RawDataError(f"{path}: empty file")
    try:
        with h5py.File(path, "r") as f:
            if "image" not in f or "label" not in f:
                raise RawDataError(f"{path}: needs datasets 'image' and 'label', has {list(f)}")
            image, label = f["image"][()], f["label"][()]
    except OSError as err:
        raise RawDataError(f"{path}: unreadable HDF5 file ({err})") from err
    if image.ndim != ndim or image.shape != label.shape:
        raise RawDataError(
            f"{path}: expected {ndim}-D image and label of one shape, got {image.shape} and "
            f"{label.shape}"
        )
    if not np.isfinite(image).all():
        raise RawDataError(f"{path}: {int((~np.isfinite(image)).sum())} NaN or infinite voxel(s)")
    return image.astype(np.float32), label


def _ssl4mis_volume(stem: str, entry: dict) -> tuple[np.ndarray, np.ndarray, Path]:
    if "volume" in entry:
        image, label = _read_h5(entry["volume"], 3)
        return image, label, entry["volume"]
    ks = sorted(entry["slices"])
    if ks != list(range(1, len(ks) + 1)):
        missing = sorted(set(range(1, ks[-1] + 1)) - set(ks))
        raise RawDataError(f"{entry['slices'][ks[0]].parent}: {stem} slice files {missing} missing")
    pairs = [_read_h5(entry["slices"][k], 2) for k in ks]
    shapes = {p[0].shape for p in pairs}
    if len(shapes) > 1:
        raise RawDataError(f"{stem}: slice files of different sizes {sorted(shapes)}")
    image = np.stack([p[0] for p in pairs])  # (Z, H, W), slice K -> z = K - 1
    label = np.stack([p[1] for p in pairs])
    return image, label, entry["slices"][ks[0]].parent / f"{stem}_slice_*.h5"


def _ssl4mis_cases(raw: Path, found: dict[str, dict], params: dict) -> Iterator[PreparedCase]:
    z, y, x = SSL4MIS_SPACING
    for stem, entry in found.items():
        image_arr, label_arr, where = _ssl4mis_volume(stem, entry)
        check_label_values(label_arr, range(len(LABELS)), where)
        image = sitk.GetImageFromArray(image_arr)
        label = sitk.GetImageFromArray(label_arr.astype(np.uint8))
        for img in (image, label):
            img.SetSpacing((x, y, z))
        patient, frame = stem.split("_")
        yield prepare_images(
            image, label, params, range(len(LABELS)), case=stem, patient=patient,
            phase="ED" if frame == "frame01" else "ES", image_path=where, label_path=where,
        )  # fmt: skip


def _list_files(raw: Path) -> dict[str, list[str]] | None:
    """The split lists in ``raw``, or in its parent when ``raw`` is the SSL4MIS ``data`` folder.

    SSL4MIS keeps ``train.list`` / ``val.list`` beside its ``data/`` folder; a user who points
    ``--raw`` at ``data/`` itself still gets the shipped split (and is told so). Without any
    list a seeded random split is drawn, said loudly.
    """
    for folder in (raw, raw.parent):
        lists = read_list_files(folder)
        if lists:
            if folder != raw:
                log.warning("using the split lists of %s (none in %s)", folder, raw)
            return lists
    log.warning(
        "no train.list / val.list / test.list in %s or its parent: a seeded random split by "
        "patient is drawn (70/30 train+val/test)",
        raw,
    )
    return None


def prepare_acdc(
    raw: str | os.PathLike,
    out: str | os.PathLike,
    seed: int = 0,
    overwrite: bool = False,
    size: int = 160,
    test_fraction: float = 0.3,
    val_fraction: float = 0.15,
    name: str = "acdc",
) -> PreparedStore:
    """Prepare an ACDC folder (official or SSL4MIS layout) into a store.

    Args:
        raw: The ACDC folder.
        out: Store folder to create.
        seed: Split seed, for patients not named in list files.
        overwrite: Replace an existing store at ``out``.
        size: Slice size (square).
        test_fraction: Fraction of (unlisted) patients in test.
        val_fraction: Fraction of the remaining patients in val.
        name: Dataset name in ``dataset.json``.

    Returns:
        The opened store.

    Raises:
        RawDataError: Missing folder, neither layout found, or a bad file (named).
    """
    raw = Path(raw)
    if not raw.is_dir():
        raise RawDataError(f"{raw}: raw ACDC folder does not exist")
    params = make_params((size, size), spacing=None, slice_axis=0)
    meta = {"name": name, "labels": LABELS, "preprocessing": params}
    given = _list_files(raw)
    official = _official_cases(raw)
    if official:
        ids = [c[0] for c in official]
        groups = {c[0]: c[1] for c in official}
        meta.update(
            source_format="acdc", sources=checksums([p for c in official for p in c[3:]], raw)
        )
        cases = (
            prepare_files(img, msk, params, range(len(LABELS)), case=case, patient=pat, phase=ph)
            for case, pat, ph, img, msk in official
        )
    else:
        found = _ssl4mis_files(raw)
        if not found:
            raise RawDataError(
                f"{raw}: no ACDC data found (neither patientNNN/Info.cfg folders nor "
                f"SSL4MIS patientNNN_frameFF*.h5 files)"
            )
        ids = list(found)
        groups = {stem: stem.split("_")[0] for stem in found}
        files = [
            p for e in found.values() for p in [*e["slices"].values(), *[e.get("volume")]] if p
        ]
        meta.update(
            source_format="acdc-ssl4mis",
            assumed_spacing=list(SSL4MIS_SPACING),
            assumed_spacing_note="SSL4MIS HDF5 stores no spacing; (z, y, x) mm assumed",
            sources=checksums(files, raw),
        )
        cases = _ssl4mis_cases(raw, found, params)
    splits = make_splits(ids, seed, test_fraction, val_fraction, groups=groups, given=given)
    return finish(out, cases, meta, splits, overwrite)
