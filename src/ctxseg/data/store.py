"""The prepared-slice store: one folder per prepared dataset (format in docs/data-format.md).

A preparer (PROMISE12, ACDC, nnU-Net, phantoms) turns raw volumes into :class:`PreparedCase`
objects and hands them to :func:`write_store`, which streams every slice into two ``.npy``
arrays and writes the metadata beside them. :meth:`PreparedStore.open` memory-maps the arrays,
so opening a whole dataset costs milliseconds whatever its size.

The folder is built in a temporary sibling and renamed into place, so a reader never sees a
half-written dataset and a failed run leaves an existing one untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ctxseg import __version__

FORMAT_VERSION = 1
SPLIT_NAMES = ("train", "val", "test")
_FILES = ("dataset.json", "splits.json", "cases.json", "slices.json", "images.npy", "labels.npy")


@dataclass
class PreparedCase:
    """One prepared volume (a case: a patient, or one phase of a patient).

    Attributes:
        case: Unique case id (e.g. ``"Case07"``, ``"patient001_ED"``).
        patient: Patient id; splits never put one patient in two parts.
        phase: Cardiac phase (``"ED"``, ``"ES"``) or ``None``.
        image: Prepared intensities, float32 in [0, 1].
        label: Prepared label map, uint8 class indices.
        spacing: Prepared voxel spacing in mm, in array axis order ``(z, y, x)``.
        geometry: What :func:`ctxseg.data.preprocess.restore_label` needs to map a prediction
            back to the source volume (JSON-serialisable).

    Shape:
        image, label: ``(Z, H, W)``, slices along the first axis.
    """

    case: str
    patient: str
    phase: str | None
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    geometry: dict[str, Any] = field(default_factory=dict)


class StoreError(ValueError):
    """A prepared store that is missing, incomplete or inconsistent."""


def slice_box(label: np.ndarray) -> list[int] | None:
    """Tight half-open box ``[y0, x0, y1, x1)`` of all foreground (label > 0), or ``None``.

    Shape:
        label: ``(H, W)``.
    """
    rows = np.flatnonzero(label.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(label.any(axis=0))
    return [int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1]


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


def check_splits(splits: Mapping[str, Any], patients: Mapping[str, str]) -> None:
    """Check that ``splits`` puts every case in exactly one part and no patient in two.

    Args:
        splits: ``{"seed": int, "train": [...], "val": [...], "test": [...]}``.
        patients: Case id -> patient id, for every case of the dataset.

    Raises:
        ValueError: Naming the offending case or patient.
    """
    missing = [name for name in SPLIT_NAMES if name not in splits]
    if missing:
        raise ValueError(f"splits lacks the parts {missing}")
    part_of: dict[str, str] = {}
    for name in SPLIT_NAMES:
        for case in splits[name]:
            if case not in patients:
                raise ValueError(f"splits[{name!r}] names unknown case {case!r}")
            if case in part_of:
                raise ValueError(f"case {case!r} is in both {part_of[case]!r} and {name!r}")
            part_of[case] = name
    unassigned = sorted(set(patients) - set(part_of))
    if unassigned:
        raise ValueError(
            f"cases in no split: {unassigned[:5]}{' ...' if len(unassigned) > 5 else ''}"
        )
    patient_part: dict[str, str] = {}
    for case, part in part_of.items():
        other = patient_part.setdefault(patients[case], part)
        if other != part:
            raise ValueError(f"patient {patients[case]!r} is in both {other!r} and {part!r}")


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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
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
        {"seed": splits.get("seed"), **{name: list(splits[name]) for name in SPLIT_NAMES}},
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


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise StoreError(f"{path.parent} is not a complete prepared store: {path.name} is missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreError(f"{path}: not valid JSON ({err})") from err


class PreparedStore:
    """A prepared dataset opened for reading (arrays memory-mapped, read-only).

    Attributes:
        root: The store folder.
        meta: ``dataset.json``.
        splits: ``splits.json``.
        images: float32 ``(N, H, W)`` memory map, values in [0, 1].
        labels: uint8 ``(N, H, W)`` memory map.
        slices: Per-slice metadata (``case, phase, slice_index, split, fg_pixels, box``).
        cases: Per-case metadata (``case, patient, phase, first, num_slices, spacing, geometry``).
        num_classes: Number of classes, background included.
        labels_names: Class names, index = class value.
        image_size: ``(H, W)``.
    """

    def __init__(
        self,
        root: Path,
        meta: dict,
        splits: dict,
        images: np.ndarray,
        labels: np.ndarray,
        slices: list[dict],
        cases: list[dict],
    ) -> None:
        self.root = root
        self.meta = meta
        self.splits = splits
        self.images = images
        self.labels = labels
        self.slices = slices
        self.cases = cases
        self.num_classes = int(meta["num_classes"])
        self.labels_names = [meta["labels"][str(k)] for k in range(self.num_classes)]
        self.image_size = (int(meta["image_size"][0]), int(meta["image_size"][1]))
        self._case_index = {c["case"]: i for i, c in enumerate(cases)}
        split_of = {c: name for name in SPLIT_NAMES for c in splits[name]}
        # (N,) split name and foreground flag of every slice row, for fast selection.
        self._slice_split = np.array([split_of[s["case"]] for s in slices], dtype=object)
        self._slice_fg = np.array([sum(s["fg_pixels"]) > 0 for s in slices], dtype=bool)

    @classmethod
    def open(cls, path: str | os.PathLike) -> PreparedStore:
        """Open and validate a prepared store.

        Raises:
            StoreError: (a ``ValueError``) naming the folder or file and what is wrong.
        """
        root = Path(path)
        if not root.is_dir():
            raise StoreError(f"prepared store {root} does not exist (run `ctxseg prepare ...`)")
        for name in _FILES:
            if not (root / name).is_file():
                raise StoreError(f"{root} is not a complete prepared store: {name} is missing")
        meta = _read_json(root / "dataset.json")
        splits = _read_json(root / "splits.json")
        cases = _read_json(root / "cases.json")
        slices = _read_json(root / "slices.json")
        try:
            images = np.load(root / "images.npy", mmap_mode="r")
            labels = np.load(root / "labels.npy", mmap_mode="r")
        except (ValueError, OSError) as err:
            raise StoreError(f"{root}: cannot read images.npy / labels.npy ({err})") from err
        for key in ("labels", "num_classes", "image_size"):
            if key not in meta:
                raise StoreError(f"{root / 'dataset.json'}: missing key {key!r}")
        size = tuple(meta["image_size"])
        n = len(slices)
        if images.dtype != np.float32 or images.shape != (n, *size):
            raise StoreError(
                f"{root / 'images.npy'}: expected float32 {(n, *size)}, "
                f"got {images.dtype} {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.shape != (n, *size):
            raise StoreError(
                f"{root / 'labels.npy'}: expected uint8 {(n, *size)}, "
                f"got {labels.dtype} {labels.shape}"
            )
        row = 0
        for case in cases:
            if case["first"] != row or case["num_slices"] < 1:
                raise StoreError(
                    f"{root / 'cases.json'}: case {case['case']!r} rows not contiguous"
                )
            row += case["num_slices"]
        if row != n:
            raise StoreError(f"{root / 'cases.json'}: cases cover {row} rows, arrays have {n}")
        try:
            check_splits(splits, {c["case"]: c["patient"] for c in cases})
        except ValueError as err:
            raise StoreError(f"{root / 'splits.json'}: {err}") from err
        return cls(root, meta, splits, images, labels, slices, cases)

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={len(self.splits[name])}" for name in SPLIT_NAMES)
        return (
            f"PreparedStore({str(self.root)!r}, {len(self.slices)} slices of "
            f"{self.image_size}, cases {parts})"
        )

    def _check_split(self, split: str) -> None:
        if split not in (*SPLIT_NAMES, "all"):
            raise ValueError(f"split must be one of {(*SPLIT_NAMES, 'all')}, got {split!r}")

    def indices(self, split: str, foreground_only: bool = False) -> np.ndarray:
        """Slice rows of a split (``"train"``, ``"val"``, ``"test"`` or ``"all"``), in order.

        Args:
            split: The part.
            foreground_only: Keep only slices whose label has any foreground class.

        Returns:
            int64 row indices into :attr:`images` / :attr:`labels`.
        """
        self._check_split(split)
        keep = np.ones(len(self.slices), bool) if split == "all" else self._slice_split == split
        if foreground_only:
            keep &= self._slice_fg
        return np.flatnonzero(keep).astype(np.int64)

    def case_ids(self, split: str) -> list[str]:
        """Case ids of a split in store order."""
        self._check_split(split)
        wanted = None if split == "all" else set(self.splits[split])
        return [c["case"] for c in self.cases if wanted is None or c["case"] in wanted]

    def case(self, case_id: str) -> dict[str, Any]:
        """The ``cases.json`` entry of a case."""
        if case_id not in self._case_index:
            raise KeyError(f"no case {case_id!r} in {self.root}")
        return self.cases[self._case_index[case_id]]

    def case_rows(self, case_id: str) -> slice:
        """The contiguous rows of a case's slices."""
        case = self.case(case_id)
        return slice(case["first"], case["first"] + case["num_slices"])

    def class_frequencies(self, split: str = "train") -> np.ndarray:
        """Pixel count of every class over the split's slices.

        Returns:
            int64 array ``(C,)``; index 0 is background.
        """
        rows = self.indices(split)
        counts = np.zeros(self.num_classes, np.int64)
        if rows.size == 0:
            return counts
        # (R, C-1) foreground pixel counts of the rows.
        fg = np.array([self.slices[r]["fg_pixels"] for r in rows], dtype=np.int64)
        counts[1:] = fg.sum(axis=0)
        counts[0] = rows.size * self.image_size[0] * self.image_size[1] - counts[1:].sum()
        return counts
