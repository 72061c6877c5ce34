"""Raw readers: every bad file gives an error naming it and the problem."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from ctxseg.data.io import (
    RawDataError,
    check_label_values,
    check_same_grid,
    checksums,
    read_volume,
    sha256,
)


def write(path, array, spacing=(1.0, 1.0, 2.0), compress=False):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


def test_reads_mhd_zraw_and_nifti(tmp_path):
    array = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    for name, compress in (
        ("a.mhd", True),
        ("b.mhd", False),
        ("c.nii.gz", False),
        ("d.nii", False),
    ):
        image = read_volume(write(tmp_path / name, array, compress=compress))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), array)
        assert image.GetSpacing() == (1.0, 1.0, 2.0)
    assert (tmp_path / "a.zraw").is_file() and (tmp_path / "b.raw").is_file()


def test_missing_empty_unreadable(tmp_path):
    with pytest.raises(RawDataError, match="missing.nii.gz.*does not exist"):
        read_volume(tmp_path / "missing.nii.gz")
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(RawDataError, match="empty.nii.gz: empty file"):
        read_volume(tmp_path / "empty.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"not a volume at all")
    with pytest.raises(RawDataError, match="junk.nii.gz: unreadable volume"):
        read_volume(tmp_path / "junk.nii.gz")
    write(tmp_path / "v.mhd", np.zeros((2, 2, 2), np.uint8), compress=True)
    (tmp_path / "v.zraw").unlink()
    with pytest.raises(RawDataError, match="v.mhd: data file named by its header .*v.zraw"):
        read_volume(tmp_path / "v.mhd")


def test_nan_and_dimension(tmp_path):
    array = np.zeros((2, 3, 3), np.float32)
    array[1, 1, 1] = np.nan
    with pytest.raises(RawDataError, match="nan.nii.gz: 1 NaN"):
        read_volume(write(tmp_path / "nan.nii.gz", array))
    array[0, 0, 0] = np.inf
    with pytest.raises(RawDataError, match="nan.mhd: 2 NaN or infinite"):
        read_volume(write(tmp_path / "nan.mhd", array))
    flat = sitk.GetImageFromArray(np.zeros((3, 3), np.float32))
    sitk.WriteImage(flat, str(tmp_path / "flat.nii.gz"))
    with pytest.raises(RawDataError, match="flat.nii.gz: expected a single-channel 3-D"):
        read_volume(tmp_path / "flat.nii.gz")


def test_grid_mismatch_names_both_files():
    a = sitk.GetImageFromArray(np.zeros((2, 3, 4), np.uint8))
    b = sitk.GetImageFromArray(np.zeros((2, 3, 4), np.uint8))
    check_same_grid(a, b, "img.mhd", "seg.mhd")
    b.SetSpacing((1.0, 1.0, 3.0))
    with pytest.raises(RawDataError, match="between image img.mhd and mask seg.mhd: spacing"):
        check_same_grid(a, b, "img.mhd", "seg.mhd")
    c = sitk.GetImageFromArray(np.zeros((2, 3, 5), np.uint8))
    with pytest.raises(RawDataError, match="size"):
        check_same_grid(a, c, "img.mhd", "seg.mhd")
    d = sitk.GetImageFromArray(np.zeros((2, 3, 4), np.uint8))
    d.SetOrigin((0.0, 0.5, 0.0))
    with pytest.raises(RawDataError, match="origin"):
        check_same_grid(a, d, "img.mhd", "seg.mhd")


def test_label_values():
    check_label_values(np.array([0, 1, 1]), (0, 1), "m.mhd")
    with pytest.raises(RawDataError, match=r"m.mhd: label values \[2, 255\] outside .*\[0, 1\]"):
        check_label_values(np.array([0, 2, 255]), (0, 1), "m.mhd")


def test_checksums_cover_mhd_data_file(tmp_path):
    write(tmp_path / "a.mhd", np.ones((2, 2, 2), np.uint8), compress=True)
    sums = checksums([tmp_path / "a.mhd"], tmp_path)
    assert sorted(sums) == ["a.mhd", "a.zraw"]
    assert sums["a.zraw"] == sha256(tmp_path / "a.zraw")
    import hashlib

    assert sums["a.mhd"] == hashlib.sha256((tmp_path / "a.mhd").read_bytes()).hexdigest()
