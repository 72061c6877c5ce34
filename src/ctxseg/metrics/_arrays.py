"""Input normalisation shared by the metrics: NumPy or torch in, NumPy out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def to_numpy(array: ArrayLike, name: str) -> np.ndarray:
    """Return ``array`` as a NumPy array (a torch tensor is detached and moved to the CPU).

    Raises:
        TypeError: if ``array`` is neither a NumPy array nor a torch tensor.
    """
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    if isinstance(array, np.ndarray):
        return array
    raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(array).__name__}")


def to_mask(array: ArrayLike, name: str) -> np.ndarray:
    """Return ``array`` as a boolean NumPy mask (non-boolean: non-zero is foreground)."""
    array = to_numpy(array, name)
    return array if array.dtype == np.bool_ else array != 0


def check_pair(pred: np.ndarray, target: np.ndarray, ndims: Sequence[int]) -> None:
    """Raise ``ValueError`` unless ``pred`` and ``target`` share one shape of an allowed rank."""
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {pred.shape} and {target.shape}"
        )
    if pred.ndim not in ndims:
        allowed = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"expected {allowed} arrays, got shape {pred.shape}")


def check_spacing(spacing: Sequence[float] | float | None, ndim: int) -> np.ndarray:
    """Return the voxel spacing as a float64 array of length ``ndim`` (``None`` means 1 everywhere).

    Raises:
        ValueError: if the spacing is not one value or ``ndim`` values, all positive and finite.
    """
    if spacing is None:
        return np.ones(ndim)
    values = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    if values.size == 1:
        values = np.repeat(values, ndim)
    if values.shape != (ndim,) or not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(f"spacing must be 1 or {ndim} positive finite values, got {spacing}")
    return values
