"""Reading raw volumes (MetaImage ``.mhd`` + ``.raw`` / ``.zraw``, NIfTI) with clear errors.

Every reader error names the file and the problem: missing, empty, unreadable, a ``.mhd``
header whose data file is missing, a volume that is not 3-D, NaN voxels. Image and mask pairs
are checked to share one voxel grid.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

VOLUME_SUFFIXES = (".mhd", ".nii.gz", ".nii")


class RawDataError(ValueError):
    """A raw input file or folder that cannot be prepared (the message names it)."""


def strip_suffix(path: Path) -> str:
    """File name without its volume suffix (``Case01.nii.gz`` -> ``Case01``)."""
    name = path.name
    for suffix in VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def mhd_data_file(path: Path) -> Path | None:
    """The data file a ``.mhd`` header names (``ElementDataFile``), or ``None`` if local."""
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ElementDataFile":
            value = value.strip()
            return None if value == "LOCAL" else path.parent / value
    raise RawDataError(f"{path}: MetaImage header has no ElementDataFile line")


# Bytes per voxel component of the MetaImage element types.
_MET_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}  # fmt: skip


def _mhd_header(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def check_mhd_data_size(path: Path) -> None:
    """Refuse a ``.mhd`` whose data file is shorter than its header says (a cut-short copy).

    ITK reports such a file as "No such file or directory", which sends users looking for a
    file that is there. Compressed data (``.zraw``) is checked against ``CompressedDataSize``
    when the header has it; raw data against the voxel count times the element size.

    Raises:
        RawDataError: naming the data file, its size and the size the header promises.
    """
    header = _mhd_header(path)
    data = mhd_data_file(path)
    if data is None or not data.is_file():
        return
    compressed = header.get("CompressedData", "False").lower() == "true"
    try:
        if compressed:
            expected = int(header.get("CompressedDataSize", "0"))
        else:
            voxels = int(np.prod([int(v) for v in header.get("DimSize", "").split()]))
            channels = int(header.get("ElementNumberOfChannels", "1"))
            expected = voxels * channels * _MET_BYTES[header.get("ElementType", "")]
            expected += max(int(header.get("HeaderSize", "0")), 0)
    except (KeyError, ValueError):
        return  # a header this check does not understand: ITK will say what it finds
    size = data.stat().st_size
    if expected and size < expected:
        raise RawDataError(
            f"{data}: truncated: holds {size} bytes, its header {path.name} promises {expected}"
            f"{' (compressed)' if compressed else ''}; copy the file again"
        )


def source_files(path: Path) -> list[Path]:
    """The file itself and, for a ``.mhd``, the data file it names."""
    files = [path]
    if path.suffix == ".mhd":
        data = mhd_data_file(path)
        if data is not None:
            files.append(data)
    return files


def read_volume(path: str | os.PathLike, pixel_type: int | None = None) -> sitk.Image:
    """Read a 3-D volume and check it.

    Args:
        path: A ``.mhd``, ``.nii`` or ``.nii.gz`` file.
        pixel_type: Optional SimpleITK pixel type to cast to (e.g. ``sitk.sitkFloat32``).

    Returns:
        The image with its spacing, origin and direction.

    Raises:
        RawDataError: Missing, empty or unreadable file, missing ``.mhd`` data file, a volume
            that is not 3-D (a single channel), or NaN / infinite voxels.
    """
    path = Path(path)
    for file in source_files(path) if path.is_file() else [path]:
        if not file.is_file():
            what = "data file named by its header" if file != path else "file"
            raise RawDataError(f"{path}: {what} {file} does not exist")
        if file.stat().st_size == 0:
            raise RawDataError(f"{file}: empty file")
    if path.suffix == ".mhd":
        check_mhd_data_size(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise RawDataError(f"{path}: unreadable volume ({_itk_reason(err)})") from err
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise RawDataError(
            f"{path}: expected a single-channel 3-D volume, got {image.GetDimension()}-D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s) of size {image.GetSize()}"
        )
    if min(image.GetSize()) == 0:
        raise RawDataError(f"{path}: volume of size {image.GetSize()} has no voxels")
    if pixel_type is not None:
        image = sitk.Cast(image, pixel_type)
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        if path.name.endswith((".nii", ".nii.gz")):
            array = _nifti_float_data(path)  # ITK's NIfTI reader turns NaN into 0 silently
        bad = int((~np.isfinite(array)).sum())
        if bad:
            raise RawDataError(f"{path}: {bad} NaN or infinite voxel(s)")
    return image


def _itk_reason(err: RuntimeError) -> str:
    """ITK's reason for a failed read, without its stale ``errno`` text.

    ITK appends ``Reason: <strerror(errno)>`` whatever failed, so a corrupt file that exists
    reads "No such file or directory"; that line is dropped.
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Reason:")]
    if not lines:
        return "corrupt or not a volume"
    text = lines[-1].split("ERROR: ", 1)[-1]
    return f"corrupt or not a volume: {text}"


def _nifti_float_data(path: Path) -> np.ndarray:
    """The voxels of a floating-point NIfTI file as stored (NaN kept), read with nibabel."""
    import nibabel

    return np.asanyarray(nibabel.load(str(path)).dataobj)


def check_same_grid(
    image: sitk.Image, label: sitk.Image, image_path: Path | str, label_path: Path | str
) -> None:
    """Check that a mask lies on its image's voxel grid (size, spacing, origin, direction).

    Tolerances (enough for headers rounded to float32): spacing ``1e-4 * max(spacing)`` mm,
    origin ``1e-3 * max(spacing)`` mm, direction cosines 1e-4.

    Raises:
        RawDataError: Naming both files and the differing property.
    """
    checks = [
        ("size", image.GetSize(), label.GetSize(), 0.0),
        ("spacing", image.GetSpacing(), label.GetSpacing(), 1e-4 * max(image.GetSpacing())),
        ("origin", image.GetOrigin(), label.GetOrigin(), 1e-3 * max(image.GetSpacing())),
        ("direction", image.GetDirection(), label.GetDirection(), 1e-4),
    ]
    for name, a, b, tol in checks:
        if len(a) != len(b) or not np.allclose(a, b, rtol=0, atol=tol):
            a_txt = tuple(round(v, 4) for v in a)
            b_txt = tuple(round(v, 4) for v in b)
            raise RawDataError(
                f"geometry mismatch between image {image_path} and mask {label_path}: "
                f"{name} {a_txt} vs {b_txt}"
            )


def check_label_values(label: np.ndarray, allowed: Iterable[int], path: Path | str) -> None:
    """Raise if the mask holds a value outside the dataset's labels.

    Raises:
        RawDataError: Naming the file, the unexpected values and the allowed ones.
    """
    values = np.unique(label)
    allowed = sorted(int(v) for v in allowed)
    extra = sorted(set(values.tolist()) - set(allowed))
    if extra:
        raise RawDataError(f"{path}: label values {extra} outside the dataset's labels {allowed}")


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def checksums(files: Iterable[Path], root: Path) -> dict[str, str]:
    """SHA-256 of each file (and a ``.mhd``'s data file), keyed by the path relative to root."""
    sums = {}
    for path in files:
        for file in source_files(Path(path)):
            sums[str(Path(file).relative_to(root))] = sha256(Path(file))
    return dict(sorted(sums.items()))
