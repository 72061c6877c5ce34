"""``predict``: raw volume in, label volume out in the input's own geometry."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from ctxseg.data.io import read_volume
from ctxseg.data.phantoms.prostate import write_prostate_phantoms
from ctxseg.data.preprocess import make_params, preprocess_image, preprocess_label
from ctxseg.engine.checkpoint import save_checkpoint
from ctxseg.engine.config import config_from_dict
from ctxseg.engine.predict import find_inputs, output_name, predict, predict_volume
from ctxseg.metrics import dice_score
from ctxseg.models import create_model

# A tilted scan off the origin: direction and origin must survive the round trip.
ANGLE = 0.3
DIRECTION = (np.cos(ANGLE), -np.sin(ANGLE), 0.0, np.sin(ANGLE), np.cos(ANGLE), 0.0, 0.0, 0.0, 1.0)
ORIGIN = (-12.5, 40.25, 7.0)


class OracleModel(nn.Module):
    """Predicts the prepared truth: looks each input slice up among the prepared slices."""

    size_multiple = 1

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
        super().__init__()
        self.images = torch.from_numpy(images)  # (Z, H, W)
        self.labels = torch.from_numpy(labels).long()  # (Z, H, W)
        self.num_classes = num_classes
        self.dummy = nn.Parameter(torch.zeros(()))  # gives the model a device

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        flat = self.images.flatten(1)  # (Z, H*W)
        rows = [int(torch.nonzero((flat == x.flatten()).all(dim=1))[0]) for x in image[:, 0]]
        onehot = nn.functional.one_hot(self.labels[rows], self.num_classes)  # (B, H, W, C)
        return onehot.permute(0, 3, 1, 2).float()  # (B, C, H, W)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """One prostate phantom (anisotropic 0.75 x 0.75 x 3.6-4 mm) as a tilted .nii.gz."""
    raw = tmp_path_factory.mktemp("raw")
    (path,) = write_prostate_phantoms(raw, cases=1, seed=3)
    image, label = sitk.ReadImage(str(path)), sitk.ReadImage(str(raw / "Case00_segmentation.mhd"))
    for volume in (image, label):
        volume.SetDirection(DIRECTION)
        volume.SetOrigin(ORIGIN)
    scans = tmp_path_factory.mktemp("scans")
    sitk.WriteImage(image, str(scans / "Case00.nii.gz"))
    sitk.WriteImage(label, str(scans / "Case00_segmentation.nii.gz"))
    return scans, image, label


def assert_same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


def test_predict_volume_round_trip_with_oracle(phantom):
    """Preprocess -> predict -> restore gives back the truth in the scan's geometry."""
    _, image, label = phantom
    params = make_params(size=(96, 96), spacing=(1.0, 1.0, 1.0))
    images, _ = preprocess_image(image, params)
    prepared = preprocess_label(label, params)
    oracle = OracleModel(images, prepared, num_classes=2)
    restored = predict_volume(oracle, image, params, batch_size=7)

    assert restored.GetPixelID() == sitk.sitkUInt8
    assert_same_geometry(restored, image)
    pred, truth = sitk.GetArrayFromImage(restored), sitk.GetArrayFromImage(label)
    # Up to the 1 mm resampling and back (nearest neighbour both ways), the truth comes back.
    assert dice_score(pred, truth, [1])[1] > 0.9
    assert np.all(pred[:, :, :5] == 0)  # outside the 96 mm crop: background
    assert truth.sum() > 0


def tiny_checkpoint(path, params, num_classes=2):
    """A checkpoint of an untrained unet32, as training writes it (weights, config, params)."""
    config = config_from_dict(
        {"experiment": "t", "data": {"root": "unused"}, "loss": {"name": "ce"}}
    )
    torch.manual_seed(0)
    model = create_model("unet32", in_channels=1, num_classes=num_classes)
    save_checkpoint(path, {
        "model": model.state_dict(), "config": config.to_dict(), "num_classes": num_classes,
        "label_names": ["background", "prostate"][:num_classes], "preprocessing": params,
        "epoch": 0,
    })  # fmt: skip
    return model


def test_predict_folder_writes_labels_in_input_geometry(phantom, tmp_path):
    scans, image, _ = phantom
    params = make_params(size=(32, 32), spacing=(4.0, 4.0, 4.0))
    model = tiny_checkpoint(tmp_path / "ckpt.pt", params)
    mhd = tmp_path / "in"
    mhd.mkdir()
    sitk.WriteImage(image, str(mhd / "Case07.mhd"))

    written = predict(tmp_path / "ckpt.pt", scans, tmp_path / "out", device="cpu")
    assert [p.name for p in written] == ["Case00_pred.nii.gz"]  # the label file is skipped
    out = sitk.ReadImage(str(written[0]))
    assert_same_geometry(out, image)
    assert out.GetPixelID() == sitk.sitkUInt8

    # The labels are the model's own prediction, mapped back: compare with a direct call.
    scan = read_volume(scans / "Case00.nii.gz")
    expected = predict_volume(model.eval(), scan, params, device="cpu")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(expected))

    (single,) = predict(tmp_path / "ckpt.pt", mhd / "Case07.mhd", tmp_path / "out", device="cpu")
    assert single.name == "Case07_pred.mha"
    assert_same_geometry(sitk.ReadImage(str(single)), image)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "Case00_pred.nii.gz",
        "Case07_pred.mha",
    ]  # no temporary files left


def test_inputs_and_errors(tmp_path):
    assert output_name("a/Case01.nii.gz") == "Case01_pred.nii.gz"
    assert output_name("Case01.nii") == "Case01_pred.nii"
    assert output_name("Case01.mhd") == "Case01_pred.mha"
    with pytest.raises(ValueError, match="unsupported"):
        output_name("Case01.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_inputs(tmp_path / "missing.nii.gz")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "Case01_gt.nii.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="no volume"):
        find_inputs(tmp_path)
    (tmp_path / "Case01.nii.gz").write_bytes(b"")
    assert find_inputs(tmp_path) == [tmp_path / "Case01.nii.gz"]
    params = make_params(size=(32, 32))
    tiny_checkpoint(tmp_path / "ckpt.pt", params)
    with pytest.raises(ValueError, match="empty file"):
        predict(tmp_path / "ckpt.pt", tmp_path, tmp_path / "out", device="cpu")
