"""The prepared-slice store: one folder per prepared dataset (format in docs/data-format.md).

A preparer (PROMISE12, ACDC, nnU-Net, phantoms) turns raw volumes into :class:`PreparedCase`
objects and hands them to :func:`write_store` (:mod:`ctxseg.data.writer`, re-exported here;
the format's shared pieces are in :mod:`ctxseg.data.layout`), which streams every slice
into two ``.npy`` arrays and writes the metadata beside them. :meth:`PreparedStore.open`
memory-maps the arrays, so opening a whole dataset costs milliseconds whatever its size.

The folder is built in a temporary sibling and renamed into place, so a reader never sees a
half-written dataset and a failed run leaves an existing one untouched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ctxseg.data.layout import (
    FILES,
    FORMAT_VERSION,
    SPLIT_NAMES,
    PreparedCase,
    StoreError,
    check_splits,
    slice_box,
)
from ctxseg.data.writer import write_store

__all__ = [
    "FORMAT_VERSION",
    "SPLIT_NAMES",
    "PreparedCase",
    "PreparedStore",
    "StoreError",
    "check_splits",
    "slice_box",
    "write_store",
]


def _open_array(path: Path) -> np.ndarray:
    """Memory-map one ``.npy`` file; a truncated, foreign or object file is named alone."""
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version not in readers:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = readers[version](handle)
            offset = handle.tell()
    except (ValueError, OSError, SyntaxError) as err:
        raise StoreError(f"{path}: not a NumPy .npy file ({err})") from err
    if dtype.hasobject:  # a pickle inside: loading it could run code
        raise StoreError(
            f"{path}: holds Python objects (dtype {dtype}); refused: a prepared store holds "
            "numbers only, and ctxseg never runs code from a data file"
        )
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size < expected:
        raise StoreError(
            f"{path}: truncated: its header promises {dtype} {shape} ({expected} bytes in all), "
            f"the file holds {size} bytes; prepare the store again"
        )
    try:
        return np.load(path, mmap_mode="r")
    except (ValueError, OSError) as err:
        raise StoreError(f"{path}: cannot be read ({err})") from err


def _check_label_values(root: Path, labels: np.ndarray, cases: list[dict], classes: int) -> None:
    """Refuse label values outside ``0 .. classes-1``, naming the values and the first case.

    One pass over the labels (uint8, a few tens of MB for a whole data set): cheap next to
    training on them, and it turns a tensor error deep in a loss (or NaN scores) into a message.
    """
    if labels.size == 0 or int(labels.max()) < classes:
        return
    rows = np.flatnonzero(labels.reshape(labels.shape[0], -1).max(axis=1) >= classes)
    values = np.unique(labels[rows])
    values = [int(v) for v in values[values >= classes]]
    first = int(rows[0])
    case = next(c for c in cases if c["first"] <= first < c["first"] + c["num_slices"])
    raise StoreError(
        f"{root / 'labels.npy'}: label values {values} outside the dataset's {classes} classes "
        f"(0..{classes - 1}), in {rows.size} slice(s), first in case {case['case']!r} slice "
        f"{first - case['first']}; prepare the store again"
    )


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

        Checks the files, the arrays' dtypes, shapes and sizes, the cases and splits, and that
        every label value is a class of the dataset (one pass over ``labels.npy``).

        Raises:
            StoreError: (a ``ValueError``) naming the folder or file and what is wrong.
        """
        root = Path(path)
        if not root.is_dir():
            raise StoreError(f"prepared store {root} does not exist (run `ctxseg prepare ...`)")
        for name in FILES:
            if not (root / name).is_file():
                raise StoreError(f"{root} is not a complete prepared store: {name} is missing")
        meta = _read_json(root / "dataset.json")
        splits = _read_json(root / "splits.json")
        cases = _read_json(root / "cases.json")
        slices = _read_json(root / "slices.json")
        images = _open_array(root / "images.npy")
        labels = _open_array(root / "labels.npy")
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
        _check_label_values(root, labels, cases, int(meta["num_classes"]))
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

    def class_frequencies(self, split: str = "train", foreground_only: bool = False) -> np.ndarray:
        """Pixel count of every class over the split's slices.

        Args:
            split: The part.
            foreground_only: Count only the slices with foreground (those a
                ``data.train_slices: foreground`` run trains on).

        Returns:
            int64 array ``(C,)``; index 0 is background.
        """
        rows = self.indices(split, foreground_only=foreground_only)
        counts = np.zeros(self.num_classes, np.int64)
        if rows.size == 0:
            return counts
        # (R, C-1) foreground pixel counts of the rows.
        fg = np.array([self.slices[r]["fg_pixels"] for r in rows], dtype=np.int64)
        counts[1:] = fg.sum(axis=0)
        counts[0] = rows.size * self.image_size[0] * self.image_size[1] - counts[1:].sum()
        return counts
