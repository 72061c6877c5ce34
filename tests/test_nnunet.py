"""nnU-Net v2 trainers: the loss their ``_build_loss`` gives, against one composed by hand.

A real trainer object is built from a small hand-written plans dict (no data, no training);
its loss is called on nnU-Net-shaped outputs (a list of scales, targets (B, 1, ...)) and
compared with nnU-Net's Dice written out from its formula plus ctxseg's context CE at each
scale, weighted with nnU-Net's deep-supervision weights written out from their rule.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip(
    "nnunetv2",
    reason="nnU-Net v2 is not installed: pip install 'ctxseg[nnunet]' (make install does)",
)

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer  # noqa: E402

from ctxseg.integrations.nnunet.cli import trainer_path  # noqa: E402
from ctxseg.integrations.nnunet.loss import PerScaleDeepSupervision  # noqa: E402
from ctxseg.integrations.nnunet.trainers import (  # noqa: E402
    nnUNetTrainerContextCE,
    nnUNetTrainerContextCEOnly,
)
from ctxseg.losses import build_loss  # noqa: E402

# Four stages -> three supervised outputs (nnU-Net drops the lowest): these per-axis factors.
CONFIGS = {
    "2d": {
        "patch_size": [32, 28],
        "spacing": [1.0, 1.0],
        "strides": [[1, 1], [2, 2], [2, 2], [2, 2]],
        "scales": [(1, 1), (0.5, 0.5), (0.25, 0.25)],
    },
    "3d_fullres": {
        "patch_size": [8, 24, 20],
        "spacing": [3.0, 1.0, 1.0],
        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
        "scales": [(1, 1, 1), (1, 0.5, 0.5), (0.5, 0.25, 0.25)],
    },
}
# nnU-Net's rule: 1 / 2**i, the lowest output 0, normalised: [1, 0.5, 0] / 1.5.
DS_WEIGHTS = [1 / 1.5, 0.5 / 1.5, 0.0]
ENV = (
    "CTXSEG_ROI",
    "CTXSEG_ROI_SIZE",
    "CTXSEG_ROI_MARGIN",
    "CTXSEG_ROI_MIN_SIZE",
    "CTXSEG_LAMBDA_ROI",
)


@pytest.fixture(autouse=True)
def nnunet_env(tmp_path, monkeypatch):
    """No CTXSEG_* settings from the caller's shell; nnU-Net's folders in tmp_path."""
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))


def make_trainer(cls, config="3d_fullres", labels=None, entry=None, batch_dice=True, regions=None):
    """A trainer of ``cls`` as nnU-Net builds it from plans, on the CPU, not initialised."""
    c = CONFIGS[config]
    configuration = {
        "data_identifier": f"nnUNetPlans_{config}",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": c["patch_size"],
        "spacing": c["spacing"],
        "batch_dice": batch_dice,
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"strides": c["strides"]},
            "_kw_requires_import": [],
        },
    }
    if entry is not None:
        configuration["ctxseg"] = entry
    plans = {
        "dataset_name": "Dataset999_Toy",
        "plans_name": "nnUNetPlans",
        "label_manager": "LabelManager",
        "configurations": {config: configuration},
        "continue_training": False,
    }
    dataset_json = {
        "labels": labels or {"background": 0, "a": 1, "b": 2},
        "channel_names": {"0": "MR"},
        "file_ending": ".nii.gz",
        "numTraining": 4,
    }
    if regions is not None:
        dataset_json["regions_class_order"] = regions
    return cls(plans, config, 0, dataset_json, device=torch.device("cpu"))


def outputs_and_targets(config, classes=3, ignore=None, seed=0):
    """Logits and (B, 1, ...) float targets at each output, targets downsampled as nnU-Net."""
    gen = torch.Generator().manual_seed(seed)
    c = CONFIGS[config]
    patch = c["patch_size"]
    target = torch.zeros(2, 1, *patch)
    # Sample 0: two objects, one at the border; sample 1: empty (its ROI term is left out).
    if config == "2d":
        target[0, 0, 4:14, 6:12] = 1
        target[0, 0, 20:32, 22:28] = 2
    else:
        target[0, 0, 2:6, 4:14, 6:12] = 1
        target[0, 0, 5:8, 16:24, 14:20] = 2
    if ignore is not None:
        target[torch.rand(target.shape, generator=gen) < 0.1] = ignore
    outputs, targets = [], []
    for scale in c["scales"]:
        shape = [round(p * f) for p, f in zip(patch, scale, strict=True)]
        outputs.append(torch.randn(2, classes, *shape, generator=gen, requires_grad=True))
        targets.append(F.interpolate(target, shape, mode="nearest-exact"))
    return outputs, targets


def nnunet_dice(logits, target, batch_dice, ignore=None):
    """nnU-Net's Dice term (MemoryEfficientSoftDiceLoss, no background, smooth 1e-5) written out."""
    label = target[:, 0].long()
    mask = torch.ones_like(target)
    if ignore is not None:
        mask = (target != ignore).float()
        label = torch.where(label == ignore, 0, label)
    probs = logits.softmax(dim=1)[:, 1:]
    onehot = F.one_hot(label, logits.shape[1]).movedim(-1, 1).float()[:, 1:]
    axes = tuple(range(2, logits.dim()))
    inter = (probs * onehot * mask).sum(axes)
    pred = (probs * mask).sum(axes)
    gt = (onehot * mask).sum(axes)
    if batch_dice:
        inter, pred, gt = inter.sum(0), pred.sum(0), gt.sum(0)
    return -((2 * inter + 1e-5) / (pred + gt + 1e-5)).mean()


def expected_loss(outputs, targets, context_kwargs, with_dice=True, batch_dice=True, ignore=None):
    """sum_i w_i * (Dice_i + context CE_i), the ROI kwargs of each output given by hand."""
    total = torch.zeros(())
    for weight, logits, target, kwargs in zip(
        DS_WEIGHTS, outputs, targets, context_kwargs, strict=True
    ):
        extra = {} if ignore is None else {"ignore_index": ignore}
        ce = build_loss("context", 3, base="ce", **kwargs, **extra)(logits, target[:, 0].long())
        dice = nnunet_dice(logits, target, batch_dice, ignore) if with_dice else 0.0
        total = total + weight * (ce + dice)
    return total


@pytest.mark.parametrize("config", ["2d", "3d_fullres"])
def test_default_trainer_loss_is_dice_plus_dynamic_context_ce(config):
    trainer = make_trainer(nnUNetTrainerContextCE, config)
    loss = trainer._build_loss()
    assert isinstance(loss, PerScaleDeepSupervision)
    outputs, targets = outputs_and_targets(config)
    value = loss(outputs, targets)
    dynamic = [{"roi": "dynamic"}] * 3  # margin 0, min_size 1 at every scale
    torch.testing.assert_close(
        value, expected_loss(outputs, targets, dynamic), atol=1e-6, rtol=1e-6
    )
    # The ROI term is really there: lambda 0 would give a different value.
    no_roi = expected_loss(outputs, targets, [{"roi": "dynamic", "lambda_roi": 0.0}] * 3)
    assert abs(value.item() - no_roi.item()) > 1e-3
    value.backward()
    assert outputs[0].grad.abs().sum() > 0 and outputs[1].grad.abs().sum() > 0
    assert outputs[2].grad is None  # weight 0, skipped as nnU-Net skips it


@pytest.mark.parametrize("config", ["2d", "3d_fullres"])
def test_lambda_zero_equals_nnunet_own_loss(config, monkeypatch):
    ours = make_trainer(nnUNetTrainerContextCE, config)
    theirs = make_trainer(nnUNetTrainer, config)
    monkeypatch.setenv("CTXSEG_LAMBDA_ROI", "0")
    outputs, targets = outputs_and_targets(config)
    torch.testing.assert_close(
        ours._build_loss()(outputs, targets),
        theirs._build_loss()(outputs, targets),
        atol=1e-6,
        rtol=1e-6,
    )


def test_static_roi_in_mm_from_the_plans_is_scaled_per_output():
    entry = {"roi": "static", "roi_size": "12mm", "lambda_roi": 0.5}
    trainer = make_trainer(nnUNetTrainerContextCE, "3d_fullres", entry=entry)
    loss = trainer._build_loss()
    # 12 mm at (3, 1, 1) mm: (4, 12, 12) voxels; then x (1, .5, .5) and x (.5, .25, .25).
    sides = [(4, 12, 12), (4, 6, 6), (2, 3, 3)]
    assert [m.context_ce.roi_size for m in loss.scale_losses] == sides
    outputs, targets = outputs_and_targets("3d_fullres", seed=1)
    kwargs = [{"roi": "static", "roi_size": s, "lambda_roi": 0.5} for s in sides]
    torch.testing.assert_close(
        loss(outputs, targets), expected_loss(outputs, targets, kwargs), atol=1e-6, rtol=1e-6
    )


def test_environment_overrides_the_plans(monkeypatch):
    entry = {"roi": "static", "roi_size": 8}
    trainer = make_trainer(nnUNetTrainerContextCE, "2d", entry=entry)
    monkeypatch.setenv("CTXSEG_ROI", "dynamic")
    monkeypatch.setenv("CTXSEG_ROI_MARGIN", "4")
    monkeypatch.setenv("CTXSEG_ROI_MIN_SIZE", "6")
    loss = trainer._build_loss()
    outputs, targets = outputs_and_targets("2d", seed=2)
    # margin 4 and min_size 6 voxels at full resolution: (2, 3) then (1, 2) below (halves up).
    kwargs = [
        {"roi": "dynamic", "margin": (4, 4), "min_size": (6, 6)},
        {"roi": "dynamic", "margin": (2, 2), "min_size": (3, 3)},
        {"roi": "dynamic", "margin": (1, 1), "min_size": (2, 2)},
    ]
    torch.testing.assert_close(
        loss(outputs, targets), expected_loss(outputs, targets, kwargs), atol=1e-6, rtol=1e-6
    )


@pytest.mark.parametrize("config", ["2d", "3d_fullres"])
def test_context_ce_only_trainer(config):
    trainer = make_trainer(nnUNetTrainerContextCEOnly, config, batch_dice=False)
    outputs, targets = outputs_and_targets(config, seed=3)
    expected = expected_loss(outputs, targets, [{"roi": "dynamic"}] * 3, with_dice=False)
    torch.testing.assert_close(
        trainer._build_loss()(outputs, targets), expected, atol=1e-6, rtol=1e-6
    )


def test_ignore_label_is_left_out_of_dice_ce_and_roi(monkeypatch):
    labels = {"background": 0, "a": 1, "b": 2, "ignore": 3}
    trainer = make_trainer(nnUNetTrainerContextCE, "3d_fullres", labels)
    loss = trainer._build_loss()
    outputs, targets = outputs_and_targets("3d_fullres", ignore=3, seed=4)
    expected = expected_loss(outputs, targets, [{"roi": "dynamic"}] * 3, ignore=3)
    torch.testing.assert_close(loss(outputs, targets), expected, atol=1e-6, rtol=1e-6)
    # And with lambda 0 it is nnU-Net's own loss with its ignore label.
    monkeypatch.setenv("CTXSEG_LAMBDA_ROI", "0")
    theirs = make_trainer(nnUNetTrainer, "3d_fullres", labels)
    torch.testing.assert_close(
        trainer._build_loss()(outputs, targets),
        theirs._build_loss()(outputs, targets),
        atol=1e-6,
        rtol=1e-6,
    )


def test_without_deep_supervision_one_output():
    trainer = make_trainer(nnUNetTrainerContextCE, "2d")
    trainer.enable_deep_supervision = False
    loss = trainer._build_loss()
    outputs, targets = outputs_and_targets("2d", seed=5)
    ce = build_loss("context", 3, roi="dynamic")(outputs[0], targets[0])
    expected = ce + nnunet_dice(outputs[0], targets[0], batch_dice=True)
    torch.testing.assert_close(loss(outputs[0], targets[0]), expected, atol=1e-6, rtol=1e-6)


def test_bad_settings_are_named(monkeypatch):
    trainer = make_trainer(nnUNetTrainerContextCE, "3d_fullres")
    monkeypatch.setenv("CTXSEG_ROI", "static")
    with pytest.raises(ValueError, match="CTXSEG_ROI_SIZE"):
        trainer._build_loss()
    monkeypatch.setenv("CTXSEG_ROI_SIZE", "10")  # 10 slices > the 8 of the patch
    with pytest.raises(ValueError, match=r"larger than the patch \(8, 24, 20\)"):
        trainer._build_loss()
    monkeypatch.setenv("CTXSEG_ROI_SIZE", "ten")
    with pytest.raises(ValueError, match=r"\$CTXSEG_ROI_SIZE: roi_size must be ints"):
        trainer._build_loss()
    bad_entry = make_trainer(nnUNetTrainerContextCE, "2d", entry={"roi_sise": 8})
    with pytest.raises(
        ValueError, match=r"plans configuration '2d': unknown 'ctxseg' keys \['roi_sise'\]"
    ):
        bad_entry._build_loss()


def test_region_based_training_is_refused():
    labels = {"background": 0, "whole": [1, 2], "core": 2}
    trainer = make_trainer(nnUNetTrainerContextCE, "2d", labels, regions=[1, 2])
    with pytest.raises(ValueError, match="region"):
        trainer._build_loss()


def test_nnunet_finds_the_trainers_through_nnunet_path(monkeypatch):
    try:
        import torchvision  # noqa: F401
    except Exception as err:  # a CUDA torchvision beside a CPU torch raises RuntimeError
        pytest.skip(
            "nnU-Net's trainer search imports its Primus trainers, which need timm and so a "
            f"torchvision that loads; here it does not ({type(err).__name__}: {err})"
        )
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    monkeypatch.setenv("nnUNet_extTrainer", str(trainer_path()))
    for cls in (nnUNetTrainerContextCE, nnUNetTrainerContextCEOnly):
        assert recursive_find_trainer_class_by_name(cls.__name__) is cls


def test_nnunets_external_trainer_search_finds_the_trainers_in_nnunet_path():
    """The call nnU-Net makes for each folder of nnUNet_extTrainer, on ``ctxseg nnunet-path``.

    It needs no torchvision (nnU-Net's search of its own trainers, tested above, does), so it
    runs in every environment that has nnU-Net.
    """
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    path = str(trainer_path())
    for cls in (nnUNetTrainerContextCE, nnUNetTrainerContextCEOnly):
        found = recursive_find_python_class(
            path, cls.__name__, None, base_folder=path, cleanup_imports_from_base_folder=True
        )
        assert found is not None and found.__name__ == cls.__name__
        assert issubclass(found, nnUNetTrainer)


def test_nnunet_path_verb(capsys, monkeypatch):
    from ctxseg.cli import main

    assert main(["nnunet-path"]) == 0
    path = capsys.readouterr().out.strip()
    assert path == str(trainer_path())
    assert (trainer_path() / "ctxseg_nnunet_trainers.py").is_file()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert main(["nnunet-path"]) == 2
    assert "pip install 'ctxseg[nnunet]'" in capsys.readouterr().err
