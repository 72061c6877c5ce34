"""ACDC preparation: the official NIfTI + Info.cfg layout and the SSL4MIS HDF5 layout."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import SimpleITK as sitk

from ctxseg.data.acdc import SSL4MIS_SPACING, prepare_acdc
from ctxseg.data.io import RawDataError
from ctxseg.data.preprocess import restore_label

SPACING = (1.4, 1.4, 10.0)  # (x, y, z) mm


def heart(z, h, w, seed):
    rng = np.random.default_rng(seed)
    image = rng.normal(200, 30, (z, h, w)).astype(np.float32).clip(0)
    label = np.zeros((z, h, w), np.uint8)
    cy, cx = h // 2, w // 2
    label[1:-1, cy - 6 : cy + 6, cx - 12 : cx - 4] = 1  # RV
    label[1:-1, cy - 5 : cy + 5, cx - 3 : cx + 9] = 2  # Myo
    label[1:-1, cy - 3 : cy + 3, cx - 1 : cx + 7] = 3  # LV
    return image, label


def write_official(raw, n_patients, shape=(4, 30, 26)):
    for p in range(1, n_patients + 1):
        folder = raw / "training" / f"patient{p:03d}"
        folder.mkdir(parents=True)
        es = 5 + p
        (folder / "Info.cfg").write_text(f"ED: 1\nES: {es}\nGroup: NOR\nNbFrame: 20\n")
        for frame in (1, es):
            image, label = heart(*shape, seed=p * 100 + frame)
            for array, suffix in ((image.astype(np.int16), ""), (label, "_gt")):
                vol = sitk.GetImageFromArray(array)
                vol.SetSpacing(SPACING)
                vol.SetOrigin((3.0, -2.0, 40.0))
                sitk.WriteImage(
                    vol, str(folder / f"patient{p:03d}_frame{frame:02d}{suffix}.nii.gz")
                )


def write_ssl4mis(raw, slice_patients, volume_patients, shape=(3, 20, 24)):
    data = raw / "data"
    data.mkdir(parents=True)
    for p in slice_patients + volume_patients:
        for frame in (1, 2):
            image, label = heart(*shape, seed=p * 10 + frame)
            image = image / image.max()
            stem = f"patient{p:03d}_frame{frame:02d}"
            if p in volume_patients:
                with h5py.File(data / f"{stem}.h5", "w") as f:
                    f["image"], f["label"] = image, label
            else:
                for k in range(shape[0]):
                    with h5py.File(data / f"{stem}_slice_{k + 1}.h5", "w") as f:
                        f["image"], f["label"] = image[k], label[k]
    names = {
        name: [f"patient{p:03d}_frame{f:02d}" for p in patients for f in (1, 2)]
        for name, patients in (("train", slice_patients), ("val", volume_patients))
    }
    for name, lines in names.items():
        (raw / f"{name}.list").write_text("\n".join(lines) + "\n")


def test_official_layout(tmp_path):
    raw = tmp_path / "acdc"
    write_official(raw, 6)
    store = prepare_acdc(raw, tmp_path / "out", seed=1, size=24)
    assert store.meta["source_format"] == "acdc"
    assert store.labels_names == ["background", "RV", "Myo", "LV"]
    assert len(store.cases) == 12 and store.images.shape == (48, 24, 24)
    case = store.case("patient003_frame08")  # ES = 5 + 3 from Info.cfg
    assert case["phase"] == "ES" and case["patient"] == "patient003"
    assert store.case("patient003_frame01")["phase"] == "ED"
    assert case["spacing"] == pytest.approx([10.0, 1.4, 1.4])  # kept, no resampling
    assert case["geometry"]["crop_start"] == [3, 1]  # 30 -> 24 rows, 26 -> 24 columns
    images = np.asarray(store.images)
    assert images.min() == 0.0 and images.max() == 1.0
    # 6 patients: 2 test, 1 val, 3 train; both phases of a patient in one part.
    for name, n in (("train", 3), ("val", 1), ("test", 2)):
        patients = [store.case(c)["patient"] for c in store.case_ids(name)]
        assert len(set(patients)) == n and len(patients) == 2 * n
    # Each patient sits in exactly one split.
    parts = [
        {store.case(c)["patient"] for c in store.case_ids(k)} for k in ("train", "val", "test")
    ]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == 6


def test_official_restore_label_round_trip(tmp_path):
    raw = tmp_path / "acdc"
    write_official(raw, 1, shape=(4, 30, 18))
    store = prepare_acdc(raw, tmp_path / "out", size=24)
    case = store.case("patient001_frame01")
    restored = restore_label(store.labels[store.case_rows(case["case"])], case["geometry"])
    path = raw / "training" / "patient001" / "patient001_frame01_gt.nii.gz"
    original = sitk.ReadImage(str(path))
    np.testing.assert_allclose(restored.GetOrigin(), original.GetOrigin())
    back, truth = sitk.GetArrayFromImage(restored), sitk.GetArrayFromImage(original)
    # Rows 3..26 are inside the 24-row crop (start 3); all 18 columns are (padded to 24).
    np.testing.assert_array_equal(back[:, 3:27], truth[:, 3:27])
    assert (back[:, :3] == 0).all() and (back[:, 27:] == 0).all()


def test_official_bad_input(tmp_path):
    raw = tmp_path / "acdc"
    write_official(raw, 2)
    (raw / "training" / "patient002" / "patient002_frame07_gt.nii.gz").unlink()
    with pytest.raises(RawDataError, match="patient002_frame07.nii.gz: image without segmentation"):
        prepare_acdc(raw, tmp_path / "out")
    (raw / "training" / "patient001" / "Info.cfg").write_text("Group: NOR\n")
    with pytest.raises(RawDataError, match="patient001/Info.cfg: needs 'ED: n' and 'ES: m'"):
        prepare_acdc(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_ssl4mis_layout_lists_and_restacking(tmp_path):
    raw = tmp_path / "ssl"
    write_ssl4mis(raw, slice_patients=[1, 2, 3, 4], volume_patients=[5, 6])
    store = prepare_acdc(raw, tmp_path / "out", size=24)
    assert store.meta["source_format"] == "acdc-ssl4mis"
    assert store.meta["assumed_spacing"] == list(SSL4MIS_SPACING)
    assert store.case("patient002_frame02")["spacing"] == list(SSL4MIS_SPACING)
    assert store.case("patient002_frame02")["phase"] == "ES"
    # Lists without a test part: val.list (patients 5, 6) is the test split; round(0.15 * 4)
    # = 1 patient of train.list is drawn into val; the other 3 train.
    test_patients = {store.case(c)["patient"] for c in store.case_ids("test")}
    val_patients = {store.case(c)["patient"] for c in store.case_ids("val")}
    assert test_patients == {"patient005", "patient006"}
    assert len(val_patients) == 1 and val_patients < {f"patient00{i}" for i in range(1, 5)}
    assert len(store.case_ids("train")) == 6 and store.indices("test").size == 4 * 3
    assert "val.list patients are the test split" in store.meta["split_note"]
    assert store.splits["note"] == store.meta["split_note"]
    # Re-stacked slices keep their order K = 1..Z: compare with the source volume.
    image, label = heart(3, 20, 24, seed=2 * 10 + 2)
    rows = store.case_rows("patient002_frame02")
    # 20 rows padded to 24 (start -2); 24 columns kept.
    np.testing.assert_array_equal(store.labels[rows][:, 2:22, :], label)
    assert store.slices[rows.start + 1]["slice_index"] == 1


def test_ssl4mis_missing_slice(tmp_path):
    raw = tmp_path / "ssl"
    write_ssl4mis(raw, slice_patients=[1, 2], volume_patients=[3])
    (raw / "data" / "patient002_frame01_slice_2.h5").unlink()
    with pytest.raises(RawDataError, match=r"patient002_frame01 slice files \[2\] missing"):
        prepare_acdc(raw, tmp_path / "out")


def test_ssl4mis_bad_label(tmp_path):
    raw = tmp_path / "ssl"
    write_ssl4mis(raw, slice_patients=[1], volume_patients=[2])
    with h5py.File(raw / "data" / "patient002_frame01.h5", "r+") as f:
        f["label"][0, 0, 0] = 7
    with pytest.raises(RawDataError, match=r"patient002_frame01.h5: label values \[7\]"):
        prepare_acdc(raw, tmp_path / "out")


def test_nothing_found(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(RawDataError, match="no ACDC data found"):
        prepare_acdc(tmp_path / "raw", tmp_path / "out")


def test_ssl4mis_data_folder_finds_the_lists_of_its_parent(tmp_path, caplog):
    raw = tmp_path / "ssl"
    write_ssl4mis(raw, slice_patients=[1, 2, 3, 4], volume_patients=[5, 6])
    from_parent = prepare_acdc(raw / "data", tmp_path / "deep", size=24)
    assert "using the split lists of" in caplog.text
    assert from_parent.splits == prepare_acdc(raw, tmp_path / "top", size=24).splits
    for name in ("train", "val"):
        (raw / f"{name}.list").unlink()
    caplog.clear()
    drawn = prepare_acdc(raw / "data", tmp_path / "drawn", size=24)
    assert "no train.list / val.list / test.list" in caplog.text
    assert drawn.meta["split_note"].startswith("no split lists: a seeded random split")
