"""MR appearance shared by the phantoms: smooth tissue variation, bias field, Rician noise.

A magnitude MR image is ``|B * S + n|`` where ``S`` is the tissue signal, ``B`` a smooth
receive-coil sensitivity (the bias field) and ``n`` complex Gaussian noise; the magnitude of
complex Gaussian noise makes the noise Rician (dark regions are biased upwards, never negative).
Tissue signal is not flat either: a smooth multiplicative variation of a few per cent plus a fine
mottled texture. All fields are defined in millimetres, so they do not depend on the grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .shapes import Grid


@dataclass
class PhantomVolume:
    """One synthetic scan and its label map.

    Attributes:
        image: scanner-like integer intensities.
        label: class indices, uint8.
        spacing: voxel size in mm, ``(z, y, x)``.

    Shape:
        image, label: ``(Z, Y, X)``.
    """

    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]


def smooth_field(
    grid: Grid,
    rng: np.random.Generator,
    wavelengths: tuple[float, float],
    components: int = 8,
) -> np.ndarray:
    """Random smooth field with zero mean and unit RMS: a sum of plane waves.

    ``sum_k cos(k_k . p + phi_k)`` with random directions and wavelengths log-uniform in
    ``wavelengths`` (mm). Each wave is a product of 1-D complex exponentials, so the cost is one
    broadcast multiply per component.

    Args:
        grid: the voxel grid.
        rng: random generator.
        wavelengths: ``(shortest, longest)`` wavelength in mm.
        components: number of plane waves.

    Returns:
        float32 field of ``grid.shape`` ``(Z, Y, X)``.
    """
    lo, hi = wavelengths
    if not 0 < lo <= hi:
        raise ValueError(f"wavelengths must satisfy 0 < lo <= hi, got {wavelengths}")
    if components < 1:
        raise ValueError(f"components must be >= 1, got {components}")
    z, y, x = (grid.axis(i).astype(np.float64) for i in range(3))
    out = np.zeros(grid.shape, dtype=np.float32)
    for _ in range(components):
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction) + 1e-12
        k = 2 * np.pi / np.exp(rng.uniform(np.log(lo), np.log(hi))) * direction  # (kx, ky, kz)
        phase = rng.uniform(0, 2 * np.pi)
        zy = np.exp(1j * (k[2] * z[:, None] + k[1] * y[None, :] + phase))  # (Z, Y)
        ex = np.exp(1j * k[0] * x)  # (X,)
        # Re(zy * ex) without forming a complex volume: two real broadcasts.
        out += zy.real.astype(np.float32)[:, :, None] * ex.real.astype(np.float32)
        out -= zy.imag.astype(np.float32)[:, :, None] * ex.imag.astype(np.float32)
    return out * np.float32(np.sqrt(2.0 / components))


def bias_field(grid: Grid, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Multiplicative coil sensitivity ``exp(strength * f)`` with ``f`` of wavelength >= the FOV.

    Args:
        strength: log-amplitude; 0.2 gives about +-20 % across the field of view.

    Returns:
        float32 positive field ``(Z, Y, X)`` with geometric mean about 1.
    """
    if strength < 0:
        raise ValueError(f"strength must be >= 0, got {strength}")
    fov = max(n * s for n, s in zip(grid.shape[1:], grid.spacing[1:], strict=True))
    f = smooth_field(grid, rng, (1.5 * fov, 4.0 * fov), components=4)
    return np.exp(np.float32(strength) * f)


def mottle(grid: Grid, rng: np.random.Generator, sigma_mm: float = 1.2) -> np.ndarray:
    """Fine tissue texture: white noise smoothed in-plane by ``sigma_mm``, unit RMS.

    Returns:
        float32 ``(Z, Y, X)``.
    """
    noise = rng.standard_normal(grid.shape, dtype=np.float32)
    sig = (0.0, sigma_mm / grid.spacing[1], sigma_mm / grid.spacing[2])
    out = ndimage.gaussian_filter(noise, sig, truncate=3.0)
    return out / np.float32(out.std() + 1e-12)


def rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of standard deviation ``sigma``.

    Shape:
        Input and output: any, float32.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    re = signal + np.float32(sigma) * rng.standard_normal(signal.shape, dtype=np.float32)
    im = np.float32(sigma) * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.sqrt(re * re + im * im)


def to_uint(image: np.ndarray, peak: float, dtype: type = np.uint16) -> np.ndarray:
    """Scale a float image (about [0, 1]) to scanner-like integers with the given peak value."""
    info = np.iinfo(dtype)
    return np.clip(np.rint(image * np.float32(peak)), 0, info.max).astype(dtype)


def write_volume(array: np.ndarray, spacing: tuple[float, float, float], path: Path) -> None:
    """Write a ``(Z, Y, X)`` array with ``(z, y, x)`` spacing, origin at the volume centre.

    The format follows the file name (``.mhd`` writes an uncompressed ``.raw`` beside it, as
    PROMISE12's own files; ``.nii.gz`` a compressed NIfTI).
    """
    img = sitk.GetImageFromArray(array)
    img.SetSpacing([float(s) for s in spacing[::-1]])  # SimpleITK wants (x, y, z)
    size = array.shape[::-1]
    img.SetOrigin([-(n - 1) / 2 * float(s) for n, s in zip(size, spacing[::-1], strict=True)])
    sitk.WriteImage(img, str(path), useCompression=str(path).endswith(".gz"))
