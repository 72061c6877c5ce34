"""nnU-Net raw layout preparation: labels formats, slice axis, size, channel choice, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from ctxseg.data.io import RawDataError
from ctxseg.data.nnunet import prepare_nnunet

# Coarsest spacing on x (array axis 2): slices must be cut along x.
SPACING = (4.0, 0.8, 0.8)  # (x, y, z) mm
SHAPE = (40, 36, 5)  # (z, y, x)


def write_dataset(tmp_path, n=4, channels=2, labels=None, v1=False):
    raw = tmp_path / "Dataset042_Toy"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    names = {"0": "T2", "1": "ADC"} if channels == 2 else {"0": "T2"}
    labels = labels or {"background": 0, "zone": 1, "lesion": 2}
    info = {"labels": labels, "file_ending": ".nii.gz", "numTraining": n, "name": "Toy"}
    info.update({"modality": names} if v1 else {"channel_names": names})
    (raw / "dataset.json").write_text(json.dumps(info))
    for i in range(n):
        rng = np.random.default_rng(i)
        label = np.zeros(SHAPE, np.uint8)
        label[10:30, 8:20, 1:4] = 1
        label[15:20, 10:14, 2] = 2
        for c in range(channels):
            image = rng.normal(100 + 500 * c, 20, SHAPE).astype(np.float32)
            write(raw / "imagesTr" / f"toy_{i:03d}_{c:04d}.nii.gz", image)
        write(raw / "labelsTr" / f"toy_{i:03d}.nii.gz", label)
    return raw


def write(path, array):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    sitk.WriteImage(image, str(path))


def test_slices_along_coarsest_axis_with_derived_size(tmp_path):
    raw = write_dataset(tmp_path)
    store = prepare_nnunet(raw, tmp_path / "out")
    params = store.meta["preprocessing"]
    assert params["slice_axis"] == 2
    # In-plane (z, y) = (40, 36) voxels -> rounded up to multiples of 32: (64, 64).
    assert store.image_size == (64, 64) and store.images.shape == (4 * 5, 64, 64)
    case = store.case("toy_001")
    assert case["spacing"] == pytest.approx([4.0, 0.8, 0.8])
    assert store.labels_names == ["background", "zone", "lesion"]
    assert store.meta["channel_used"] == {"0": "T2"}
    # Slice x = 2 holds the lesion: 5 (z) x 4 (y) pixels of class 2, 20 x 12 - 20 of class 1.
    row = store.slices[store.case_rows("toy_000").start + 2]
    assert row["slice_index"] == 2 and row["fg_pixels"] == [240 - 20, 20]
    assert [len(store.splits[k]) for k in ("train", "val", "test")] == [2, 1, 1]


def test_channel_choice_and_size(tmp_path):
    raw = write_dataset(tmp_path)
    a = prepare_nnunet(raw, tmp_path / "a", size=48, channel=0)
    b = prepare_nnunet(raw, tmp_path / "b", size=48, channel=1)
    assert a.image_size == (48, 48) and b.meta["channel_used"] == {"1": "ADC"}
    assert not np.array_equal(a.images, b.images)
    with pytest.raises(RawDataError, match="no channel 2"):
        prepare_nnunet(raw, tmp_path / "c", channel=2)


def test_v1_labels_and_spacing_override(tmp_path):
    raw = write_dataset(
        tmp_path, channels=1, labels={"0": "background", "1": "zone", "2": "lesion"}, v1=True
    )
    store = prepare_nnunet(raw, tmp_path / "out", size=32, spacing=(None, None, 2.0))
    # x resampled 4 mm -> 2 mm: 10 slices; all axes now 2.0 / 0.8 / 0.8 -> x is still coarsest.
    assert store.meta["preprocessing"]["slice_axis"] == 2
    assert store.case("toy_000")["num_slices"] == 10
    assert store.labels_names == ["background", "zone", "lesion"]


def test_errors(tmp_path):
    raw = write_dataset(tmp_path, labels={"background": 0, "a": 1, "b": 3})
    with pytest.raises(RawDataError, match=r"dataset.json: label values \[0, 1, 3\]"):
        prepare_nnunet(raw, tmp_path / "out")
    raw = write_dataset(tmp_path / "r", labels={"background": 0, "whole": [1, 2]})
    with pytest.raises(RawDataError, match="region-based"):
        prepare_nnunet(raw, tmp_path / "out")
    raw = write_dataset(tmp_path / "s")
    (raw / "labelsTr" / "toy_002.nii.gz").unlink()
    with pytest.raises(RawDataError, match="toy_002_0000.nii.gz: image without segmentation"):
        prepare_nnunet(raw, tmp_path / "out")
    raw = write_dataset(tmp_path / "t", labels={"background": 0, "zone": 1})
    with pytest.raises(RawDataError, match=r"toy_000.nii.gz: label values \[2\] outside"):
        prepare_nnunet(raw, tmp_path / "out")
    (tmp_path / "u").mkdir()
    with pytest.raises(RawDataError, match="dataset.json missing"):
        prepare_nnunet(tmp_path / "u", tmp_path / "out")
    assert not (tmp_path / "out").exists()
