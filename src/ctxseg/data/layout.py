"""The pieces of the prepared-store format shared by its writer and reader (docs/data-format.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FORMAT_VERSION = 1
SPLIT_NAMES = ("train", "val", "test")
FILES = ("dataset.json", "splits.json", "cases.json", "slices.json", "images.npy", "labels.npy")


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
