"""Volume preprocessing to 2-D slices and its inverse for predictions (SPEC §3).

Steps, each recorded in the per-case ``geometry`` so :func:`restore_label` can undo them:

1. Resample to the target spacing (``params["spacing"]``, mm in (z, y, x) order; ``None`` or a
   ``None`` entry keeps the source spacing of that axis), linear for images, nearest neighbour
   for labels. The grid keeps the source origin and direction; the size is
   ``round(size * spacing / target_spacing)``.
2. Normalise intensities to [0, 1]: clip to the ``lower`` / ``upper`` percentiles (0.5 / 99.5 by
   default, so a few outlier voxels do not squash the range) then min-max scale.
3. Move the slice axis (``params["slice_axis"]``, an index into (z, y, x); 0 = axial for
   PROMISE12 and ACDC) to the front.
4. Centre-crop or zero-pad each slice to ``params["size"]`` (H, W).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk

NORMALIZATION = "percentile-clip-minmax"


def make_params(
    size: tuple[int, int],
    spacing: tuple[float | None, float | None, float | None] | None = None,
    slice_axis: int = 0,
    lower_percentile: float = 0.5,
    upper_percentile: float = 99.5,
) -> dict[str, Any]:
    """Build and check the preprocessing parameters (``dataset.json["preprocessing"]``).

    Args:
        size: Slice size (H, W) after crop / pad.
        spacing: Target spacing in mm (z, y, x); ``None`` keeps the source spacing.
        slice_axis: Axis of the (z, y, x) array to slice along.
        lower_percentile: Intensity clipped below this percentile.
        upper_percentile: Intensity clipped above this percentile.

    Raises:
        ValueError: Showing the bad value.
    """
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be two positive ints (H, W), got {size}")
    if spacing is not None:
        spacing = tuple(None if s is None else float(s) for s in spacing)
        if len(spacing) != 3 or any(s is not None and s <= 0 for s in spacing):
            raise ValueError(f"spacing must be three positive numbers or None, got {spacing}")
    if slice_axis not in (0, 1, 2):
        raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis}")
    if not 0 <= lower_percentile < upper_percentile <= 100:
        raise ValueError(
            f"need 0 <= lower < upper <= 100, got {lower_percentile}, {upper_percentile}"
        )
    return {
        "spacing": None if spacing is None else list(spacing),
        "slice_axis": int(slice_axis),
        "size": list(size),
        "normalization": {
            "method": NORMALIZATION,
            "lower_percentile": float(lower_percentile),
            "upper_percentile": float(upper_percentile),
        },
        "image_interpolation": "linear",
        "label_interpolation": "nearest",
    }


def _resampled_grid(image: sitk.Image, params: dict) -> tuple[list[int], list[float]]:
    """Size and spacing (x, y, z) of the resampled grid."""
    src_spacing = list(image.GetSpacing())
    target = params.get("spacing")
    if target is None:
        return list(image.GetSize()), src_spacing
    spacing = [src_spacing[i] if target[2 - i] is None else float(target[2 - i]) for i in range(3)]
    size = [
        max(1, int(round(n * s / t)))
        for n, s, t in zip(image.GetSize(), src_spacing, spacing, strict=True)
    ]
    return size, spacing


def _resample(
    image: sitk.Image, size: list[int], spacing: list[float], interpolator: int, default: float
) -> sitk.Image:
    if list(image.GetSize()) == size and np.allclose(image.GetSpacing(), spacing, rtol=1e-6):
        return image
    return sitk.Resample(
        image, size, sitk.Transform(), interpolator, image.GetOrigin(), spacing,
        image.GetDirection(), default, image.GetPixelID(),
    )  # fmt: skip


def normalize_intensity(array: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """Clip to the ``lower`` / ``upper`` percentiles, then scale min-max to [0, 1].

    Raises:
        ValueError: For a constant volume (nothing to scale).
    """
    lo, hi = np.percentile(array, [lower, upper])
    if hi <= lo:  # e.g. mostly zeros: fall back to the full range
        lo, hi = float(array.min()), float(array.max())
    if hi <= lo:
        raise ValueError(f"constant intensity {lo}: nothing to normalise")
    out = (array.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def crop_or_pad(array: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, list[int]]:
    """Centre-crop or zero-pad the last two axes to ``size``.

    Returns:
        The new array and, per axis, the start of the window in the input (negative = padding):
        ``out[..., i, j] = array[..., i + start_y, j + start_x]`` where that is inside.

    Shape:
        array: ``(Z, h, w)`` -> ``(Z, H, W)``.
    """
    starts = [(n - s) // 2 for n, s in zip(array.shape[-2:], size, strict=True)]
    out = np.zeros((*array.shape[:-2], *size), array.dtype)
    src, dst = [], []
    for n, s, st in zip(array.shape[-2:], size, starts, strict=True):
        lo, hi = max(0, st), min(n, st + s)
        src.append(slice(lo, hi))
        dst.append(slice(lo - st, hi - st))
    out[(..., *dst)] = array[(..., *src)]
    return out, starts


def _axes(params: dict) -> list[int]:
    axis = int(params.get("slice_axis", 0))
    return [axis] + [a for a in range(3) if a != axis]


def _geometry(image: sitk.Image, params: dict, resampled: sitk.Image, starts: list[int]) -> dict:
    axes = _axes(params)
    spacing_zyx = list(resampled.GetSpacing())[::-1]
    return {
        "source": {
            "size": list(image.GetSize()),
            "spacing": list(image.GetSpacing()),
            "origin": list(image.GetOrigin()),
            "direction": list(image.GetDirection()),
        },
        "resampled": {"size": list(resampled.GetSize()), "spacing": list(resampled.GetSpacing())},
        "axes": axes,
        "crop_start": starts,
        "prepared_shape": [resampled.GetSize()[::-1][axes[0]], *params["size"]],
        "prepared_spacing": [spacing_zyx[a] for a in axes],
    }


def preprocess_image(image: sitk.Image, params: dict) -> tuple[np.ndarray, dict]:
    """Resample, normalise, reorient and crop / pad a volume (module docstring).

    Args:
        image: The source volume (any scalar pixel type).
        params: Preprocessing parameters from :func:`make_params`.

    Returns:
        ``(array, geometry)``: float32 slices in [0, 1] and the geometry dict
        (``prepared_spacing`` is the spacing of the array axes in mm).

    Shape:
        array: ``(Z, H, W)`` with ``(H, W) = params["size"]``.
    """
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    size, spacing = _resampled_grid(image, params)
    array = sitk.GetArrayViewFromImage(image)
    resampled = _resample(image, size, spacing, sitk.sitkLinear, float(array.min()))
    norm = params["normalization"]
    volume = normalize_intensity(
        sitk.GetArrayFromImage(resampled), norm["lower_percentile"], norm["upper_percentile"]
    )  # (z, y, x)
    volume = volume.transpose(_axes(params))  # (Z, h, w), slice axis first
    out, starts = crop_or_pad(volume, tuple(params["size"]))
    return np.ascontiguousarray(out), _geometry(image, params, resampled, starts)


def preprocess_label(label: sitk.Image, params: dict) -> np.ndarray:
    """The label counterpart of :func:`preprocess_image` (nearest neighbour, no scaling).

    Shape:
        returns ``(Z, H, W)`` uint8.
    """
    if label.GetPixelID() != sitk.sitkUInt8:
        label = sitk.Cast(label, sitk.sitkUInt8)
    size, spacing = _resampled_grid(label, params)
    resampled = _resample(label, size, spacing, sitk.sitkNearestNeighbor, 0)
    volume = sitk.GetArrayFromImage(resampled).transpose(_axes(params))  # (Z, h, w)
    out, _ = crop_or_pad(volume, tuple(params["size"]))
    return np.ascontiguousarray(out)


def restore_label(label: np.ndarray, geometry: dict) -> sitk.Image:
    """Map a prepared label volume back onto the source volume's grid.

    Undoes the crop / pad (outside the window is background), the axis move and the
    resampling (nearest neighbour onto the source size, spacing, origin and direction).

    Args:
        label: Prepared label map (e.g. a prediction).
        geometry: The case's ``geometry`` from ``cases.json`` / :func:`preprocess_image`.

    Returns:
        A uint8 ``SimpleITK.Image`` on the source grid.

    Shape:
        label: ``(Z, H, W)`` = ``geometry["prepared_shape"]``.
    """
    label = np.asarray(label)
    if list(label.shape) != list(geometry["prepared_shape"]):
        raise ValueError(
            f"label shape {label.shape} differs from the prepared shape "
            f"{tuple(geometry['prepared_shape'])}"
        )
    axes = geometry["axes"]
    resampled_zyx = geometry["resampled"]["size"][::-1]
    shape = [resampled_zyx[a] for a in axes]  # (Z, h, w) before the crop
    full = np.zeros(shape, np.uint8)
    src, dst = [], []
    for n, s, st in zip(shape[1:], label.shape[1:], geometry["crop_start"], strict=True):
        lo, hi = max(0, st), min(n, st + s)
        dst.append(slice(lo, hi))
        src.append(slice(lo - st, hi - st))
    full[(slice(None), *dst)] = label[(slice(None), *src)]
    full = full.transpose(np.argsort(axes))  # back to (z, y, x)
    source = geometry["source"]
    image = sitk.GetImageFromArray(np.ascontiguousarray(full))
    image.SetSpacing(geometry["resampled"]["spacing"])
    image.SetOrigin(source["origin"])
    image.SetDirection(source["direction"])
    if geometry["resampled"]["size"] == source["size"] and np.allclose(
        geometry["resampled"]["spacing"], source["spacing"], rtol=1e-6
    ):
        image.SetSpacing(source["spacing"])
        return image
    return sitk.Resample(
        image, source["size"], sitk.Transform(), sitk.sitkNearestNeighbor, source["origin"],
        source["spacing"], source["direction"], 0, sitk.sitkUInt8,
    )  # fmt: skip
