"""Strata of the test slices, for the paper's claim about small structures.

- **Object size**: for each class, the test slices that contain it are cut into thirds by the
  class's target area (pixels), at the 1/3 and 2/3 quantiles over all such test slices
  (``small`` / ``medium`` / ``large``). The edges depend on the test targets only, so every
  method is stratified alike.
- **Cardiac position**: within each case, the slices with any foreground are cut into thirds
  by slice order; the third with the smaller left-ventricle cavity (class ``LV``, else all
  foreground) is ``apical``, the other end ``basal``, the rest ``mid``. The volumes' slice
  order is not the same in every data set, hence the anatomical rule rather than the index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["SIZE_STRATA", "POSITIONS", "cardiac_positions", "size_strata"]

SIZE_STRATA = ("small", "medium", "large")
POSITIONS = ("apical", "mid", "basal")


def size_strata(target_pixels: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """The size third of every slice that contains the class.

    Args:
        target_pixels: the class's target area per slice (0 where absent).

    Returns:
        ``(strata, (edge1, edge2))``: ``strata`` an object array of ``"small"``,
        ``"medium"``, ``"large"`` or ``""`` (class absent); a slice of area ``a`` is small
        when ``a <= edge1``, large when ``a > edge2``.

    Shape:
        target_pixels: (N,); strata (N,).
    """
    area = np.asarray(target_pixels, dtype=np.float64)
    present = area > 0
    strata = np.full(area.shape, "", dtype=object)
    if not present.any():
        return strata, (float("nan"), float("nan"))
    edge1, edge2 = (float(q) for q in np.quantile(area[present], [1 / 3, 2 / 3]))
    strata[present & (area <= edge1)] = "small"
    strata[present & (area > edge1) & (area <= edge2)] = "medium"
    strata[present & (area > edge2)] = "large"
    return strata, (edge1, edge2)


def cardiac_positions(
    slices: Sequence[Mapping[str, Any]], foreground_keys: Sequence[str], lv_key: str | None
) -> np.ndarray:
    """Apical / mid / basal label of every slice with foreground (``""`` for the others).

    Args:
        slices: per-slice records in case order (``case``, ``slice_index`` and the target
            areas), as in ``per_slice.csv``.
        foreground_keys: the keys of the per-class target areas (``target_px_<class>``).
        lv_key: the key of the left-ventricle area (the apex has the smallest cavity), or None
            to use all foreground.

    Returns:
        An object array, one label per record.
    """
    labels = np.full(len(slices), "", dtype=object)
    by_case: dict[str, list[int]] = {}
    for i, row in enumerate(slices):
        if sum(float(row[k]) for k in foreground_keys) > 0:
            by_case.setdefault(str(row["case"]), []).append(i)
    for rows in by_case.values():
        rows = sorted(rows, key=lambda i: int(slices[i]["slice_index"]))
        thirds = np.array_split(np.asarray(rows), 3)
        if len(rows) < 3:
            labels[rows] = "mid"
            continue
        keys = [lv_key] if lv_key else list(foreground_keys)
        cavity = [np.mean([sum(float(slices[i][k]) for k in keys) for i in p]) for p in thirds]
        first, last = ("apical", "basal") if cavity[0] < cavity[2] else ("basal", "apical")
        labels[thirds[0]] = first
        labels[thirds[1]] = "mid"
        labels[thirds[2]] = last
    return labels
