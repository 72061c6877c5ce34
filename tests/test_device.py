"""The training and inference path on the test device (``CTXSEG_TEST_DEVICE``, default cpu).

On the CPU these run in the normal suite; ``benchmarks/gpu_check.sh`` runs them with
``CTXSEG_TEST_DEVICE=cuda`` on a GPU machine, where they exercise what the CPU cannot: data
resident on the GPU, fused Adam, cuDNN, bf16 autocast on CUDA, the dynamic discriminator's
padded passes in bf16. Each test compares the device against a CPU reference or checks an
invariant that must hold on any device; tolerances are stated where bf16 is involved.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ctxseg.engine.checkpoint import load_model
from ctxseg.engine.config import load_config
from ctxseg.engine.factory import create_trainer
from ctxseg.engine.inference import predict_labels
from ctxseg.losses import build_loss
from ctxseg.roi import box_mask, roi_boxes
from test_trainer import make_store, write_config

DEVICE = os.environ.get("CTXSEG_TEST_DEVICE", "cpu")


@pytest.fixture(scope="module")
def device() -> torch.device:
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"CTXSEG_TEST_DEVICE={DEVICE} but CUDA is not available")
    return torch.device(DEVICE)


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 64 px: the discriminators need at least 40.
    return make_store(tmp_path_factory.mktemp("store") / "tiny", cases=6, slices=4, size=64)


ADVERSARIAL = {
    "gan": {"discriminator": "plain"},
    "seg_glgan_dynamic": {"discriminator": "context", "roi": "dynamic", "min_roi": 20},
}


@pytest.mark.parametrize("method", ["ce", "context_dynamic", "gan", "seg_glgan_dynamic"])
def test_one_epoch_on_the_device_trains_every_parameter(
    device: torch.device, store_root: Path, tmp_path: Path, method: str
) -> None:
    """The fast path of the device (bf16 on CUDA and native-bf16 CPUs), the data where the
    trainer puts it, fused Adam on CUDA; every parameter moves and stays finite."""
    sections: dict = {"train": {"epochs": 1, "batch_size": 4, "device": device.type}}
    if method == "context_dynamic":
        sections["loss"] = {"name": "context", "roi": "dynamic", "min_size": 8}
    elif method != "ce":
        sections["loss"] = {"name": "ce"}
        sections["adversarial"] = ADVERSARIAL[method]
    config = load_config(write_config(tmp_path / "c.yaml", store_root, **sections))
    trainer = create_trainer(config, tmp_path / "run", quiet=True)
    assert trainer.device.type == device.type
    if device.type == "cuda":
        assert trainer.fast.bf16 and trainer.channels_last
        assert trainer.data_device.type == "cuda"  # a tiny set fits: held on the GPU
        assert trainer.optimizer.param_groups[0]["fused"]
    params = [p for opt, _ in trainer._schedules for g in opt.param_groups for p in g["params"]]
    before = [p.detach().clone() for p in params]
    summary = trainer.fit()
    assert np.isfinite(summary["last"]["train_loss"])
    moved = [not torch.equal(b, p.detach()) for b, p in zip(before, params, strict=True)]
    assert all(moved), f"{moved.count(False)} parameter tensors did not change"
    assert all(torch.isfinite(p).all() for p in params)
    model, _ = load_model(tmp_path / "run" / "checkpoint_last.pt", "cpu")  # loads anywhere
    assert next(model.parameters()).device.type == "cpu"


def test_losses_and_boxes_on_the_device_equal_the_cpu(device: torch.device) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, 40, 48, generator=generator)
    target = torch.zeros(6, 40, 48, dtype=torch.long)
    target[0, 5:15, 10:30] = 1
    target[1, 30:40, 40:48] = 2  # at the border
    target[3, 18:22, 20:22] = 1  # tiny; sample 2 and 4, 5 empty
    for mode, kwargs in (("static", {"size": 16}), ("dynamic", {"margin": 2, "min_size": 8})):
        boxes, has = roi_boxes(target, mode, **kwargs)
        d_boxes, d_has = roi_boxes(target.to(device), mode, **kwargs)
        assert torch.equal(d_boxes.cpu(), boxes) and torch.equal(d_has.cpu(), has)
        assert torch.equal(box_mask(d_boxes, 40, 48).cpu(), box_mask(boxes, 40, 48))
    for base in ("ce", "wce", "dice", "focal"):
        extra = {"weights": [0.2, 0.5, 0.3]} if base == "wce" else {}
        loss = build_loss("context", 3, base=base, roi="dynamic", min_size=8, **extra)
        cpu = loss.parts(logits, target)
        dev = loss.to(device).parts(logits.to(device), target.to(device))
        for key, value in cpu.items():
            torch.testing.assert_close(dev[key].cpu(), value, rtol=1e-5, atol=1e-6)


def test_bf16_inference_on_the_device_matches_fp32_on_the_cpu(
    device: torch.device, store_root: Path, tmp_path: Path
) -> None:
    """Tolerance: labels of a trained model differ on at most 1% of the pixels."""
    train = {"epochs": 8, "batch_size": 4, "device": device.type, "val_hd": False}
    config = load_config(write_config(tmp_path / "c.yaml", store_root, train=train))
    create_trainer(config, tmp_path / "run", quiet=True).fit()
    model, _ = load_model(tmp_path / "run" / "checkpoint_last.pt", "cpu")
    images = torch.rand(12, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    reference = predict_labels(model, images, 4).numpy()
    fast = predict_labels(model.to(device), images.to(device), 4, amp=True,
                          channels_last=True).cpu().numpy()  # fmt: skip
    assert np.mean(fast != reference) <= 0.01
