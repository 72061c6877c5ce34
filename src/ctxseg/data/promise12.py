"""PROMISE12 preparation (SPEC §3): ``CaseNN.mhd`` + ``CaseNN_segmentation.mhd`` -> store.

The challenge ships MetaImage files (``.mhd`` + ``.raw``, or ``.zraw`` when compressed); NIfTI
files with the same names are accepted too. Each volume is resampled to 1 mm isotropic (linear
for images, nearest for masks), normalised to [0, 1] (percentile clip, then min-max), centre-
cropped / padded to 128 x 128 and cut into axial slices. Each case is its own patient.
"""

from __future__ import annotations

import os
from pathlib import Path

from ctxseg.data.cases import finish, prepare_files
from ctxseg.data.io import VOLUME_SUFFIXES, RawDataError, checksums, strip_suffix
from ctxseg.data.preprocess import make_params
from ctxseg.data.splits import make_splits, read_list_files
from ctxseg.data.store import PreparedStore

LABELS = {"0": "background", "1": "prostate"}
MASK_SUFFIX = "_segmentation"


def find_promise12_pairs(raw: Path) -> list[tuple[str, Path, Path]]:
    """``(case, image, mask)`` for every image in ``raw``, sorted by case.

    Raises:
        RawDataError: Missing or empty folder, an image without its segmentation, a
            segmentation without its image, or two files for one name.
    """
    if not raw.is_dir():
        raise RawDataError(f"{raw}: raw PROMISE12 folder does not exist")
    volumes: dict[str, Path] = {}
    for path in sorted(raw.iterdir()):
        if path.is_file() and path.name.endswith(VOLUME_SUFFIXES):
            name = strip_suffix(path)
            if name in volumes:
                raise RawDataError(f"{raw}: both {volumes[name].name} and {path.name} found")
            volumes[name] = path
    if not volumes:
        raise RawDataError(
            f"{raw}: no CaseNN.mhd / .nii / .nii.gz volumes found (empty or wrong folder)"
        )
    pairs = []
    for name, path in volumes.items():
        if name.endswith(MASK_SUFFIX):
            if name[: -len(MASK_SUFFIX)] not in volumes:
                raise RawDataError(f"{path}: segmentation without its image")
            continue
        mask = volumes.get(name + MASK_SUFFIX)
        if mask is None:
            raise RawDataError(f"{path}: image without segmentation ({name}{MASK_SUFFIX}.mhd)")
        pairs.append((name, path, mask))
    return pairs


def prepare_promise12(
    raw: str | os.PathLike,
    out: str | os.PathLike,
    seed: int = 0,
    overwrite: bool = False,
    size: int = 128,
    spacing: float = 1.0,
    test_fraction: float = 0.3,
    val_fraction: float = 0.15,
    name: str = "promise12",
) -> PreparedStore:
    """Prepare a PROMISE12-layout folder into a store.

    Args:
        raw: Folder with ``CaseNN.mhd`` and ``CaseNN_segmentation.mhd`` (or NIfTI).
        out: Store folder to create.
        seed: Split seed (``train.list`` / ``val.list`` / ``test.list`` in ``raw`` win).
        overwrite: Replace an existing store at ``out``.
        size: Slice size (square).
        spacing: Isotropic target spacing in mm.
        test_fraction: Fraction of cases in test (paper: 0.3).
        val_fraction: Fraction of the remaining cases in val.
        name: Dataset name in ``dataset.json``.

    Returns:
        The opened store.
    """
    raw = Path(raw)
    pairs = find_promise12_pairs(raw)
    params = make_params((size, size), (spacing, spacing, spacing), slice_axis=0)
    case_ids = [case for case, _, _ in pairs]
    splits = make_splits(
        case_ids, seed, test_fraction, val_fraction, given=read_list_files(raw) or None
    )
    meta = {
        "name": name,
        "source_format": "promise12",
        "labels": LABELS,
        "preprocessing": params,
        "sources": checksums([p for _, img, msk in pairs for p in (img, msk)], raw),
    }
    cases = (
        prepare_files(img, msk, params, (0, 1), case=case, patient=case) for case, img, msk in pairs
    )
    return finish(out, cases, meta, splits, overwrite)
