"""The fast path (bf16 autocast, channels-last): its choice, its record, and its labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ctxseg.data.store import PreparedStore
from ctxseg.engine import precision
from ctxseg.engine.checkpoint import load_model
from ctxseg.engine.config import load_config
from ctxseg.engine.inference import predict_labels
from ctxseg.engine.precision import inference_fast_path, resolve_fast_path
from ctxseg.engine.trainer import Trainer
from ctxseg.evaluation.evaluate import evaluate_run
from ctxseg.metrics import dice_score_batch
from test_trainer import make_store, write_config


@pytest.fixture
def cpu_flags(monkeypatch):
    """Set the CPU's native-bf16 flags seen by the fast-path choice."""

    def set_flags(*flags: str) -> None:
        monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: tuple(flags))

    return set_flags


def test_auto_uses_bf16_only_on_cpus_with_native_bf16(cpu_flags) -> None:
    cpu_flags("avx512_bf16")
    fast = resolve_fast_path("cpu")
    assert fast.bf16 and "native bf16: avx512_bf16" in fast.reason
    cpu_flags()
    fast = resolve_fast_path("cpu")
    assert not fast.bf16 and fast.reason.startswith("fp32 (no native bf16")
    assert resolve_fast_path("cpu", "bf16").bf16  # forced, even where emulated
    cpu_flags("amx_bf16")
    assert not resolve_fast_path("cpu", "off").bf16
    assert not resolve_fast_path("cpu", False).bf16 and resolve_fast_path("cpu", True).bf16
    assert resolve_fast_path("cpu", channels_last="on").channels_last
    assert not resolve_fast_path("cpu", channels_last="off").channels_last
    with pytest.raises(ValueError, match="amp must be one of"):
        resolve_fast_path("cpu", "fp16")
    with pytest.raises(ValueError, match="channels_last must be one of"):
        resolve_fast_path("cpu", channels_last="nhwc")


def test_cpu_flags_are_read_from_proc_cpuinfo() -> None:
    flags = precision.cpu_bf16_flags()
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        assert flags == ()
        return
    line = next(x for x in cpuinfo.read_text().splitlines() if x.startswith("flags"))
    assert set(flags) == {"avx512_bf16", "amx_bf16"} & set(line.split())


@pytest.mark.parametrize(
    ("typed", "expected"), [("off", "off"), ("no", "off"), ("bf16", "bf16"), ("auto", "auto")]
)
def test_set_train_amp_off_works_as_typed(tmp_path: Path, typed: str, expected: str) -> None:
    """YAML 1.1 reads a bare `off` as false; the config takes it as the word the user typed."""
    path = write_config(tmp_path / "c.yaml", tmp_path / "store")
    config = load_config(path, [f"train.amp={typed}", "train.channels_last=off"])
    assert config.train.amp == expected and config.train.channels_last == "off"
    with pytest.raises(ValueError, match=r"train\.amp: expected one of .*got True"):
        load_config(path, ["train.amp=on"])


def test_the_choice_is_saved_in_the_run_folder_and_resume_adds_to_it(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    path = write_config(tmp_path / "c.yaml", store, train={"epochs": 1, "amp": "bf16"})
    trainer = Trainer(load_config(path), tmp_path / "run", quiet=True)
    trainer.fit()
    record = json.loads((tmp_path / "run" / "runtime.json").read_text())
    (start,) = record["starts"]
    assert start["precision"] == "bf16" and start["from_epoch"] == 0
    assert start["device"] == "cpu" and start["torch"] == torch.__version__
    longer = write_config(tmp_path / "c2.yaml", store, train={"epochs": 2, "amp": "bf16"})
    Trainer(load_config(longer), tmp_path / "run", quiet=True, resume=True).fit()
    starts = json.loads((tmp_path / "run" / "runtime.json").read_text())["starts"]
    assert [s["from_epoch"] for s in starts] == [0, 1]


def test_bf16_labels_match_fp32_on_a_trained_model(tmp_path: Path) -> None:
    """Tolerance: on a trained model, bf16 and fp32 labels differ on at most 1% of the pixels
    and the mean foreground Dice of the two differs by at most 0.01."""
    store = make_store(tmp_path / "store", cases=6, slices=4)
    path = write_config(
        tmp_path / "c.yaml",
        store,
        train={"epochs": 12, "batch_size": 4, "amp": "off", "val_every": 12, "val_hd": False},
    )
    Trainer(load_config(path), tmp_path / "run", quiet=True).fit()
    model, ckpt = load_model(tmp_path / "run" / "checkpoint_last.pt")
    opened = PreparedStore.open(store)
    images = torch.from_numpy(np.array(opened.images))[:, None]  # (N, 1, H, W)
    target = np.asarray(opened.labels)
    fp32 = predict_labels(model, images, 8).numpy()
    bf16 = predict_labels(model, images, 8, amp=True, channels_last=True).numpy()
    dice_fp32 = dice_score_batch(fp32, target, [1, 2])
    assert np.nanmean(dice_fp32[1]) > 0.7  # a trained model, not a blank one
    assert np.mean(fp32 != bf16) <= 0.01
    dice_bf16 = dice_score_batch(bf16, target, [1, 2])
    for c in (1, 2):
        assert abs(np.nanmean(dice_bf16[c]) - np.nanmean(dice_fp32[c])) <= 0.01

    # evaluate takes the run's own path by default, and records it.
    fast = inference_fast_path(model, ckpt, "cpu")
    assert not fast.bf16  # the run trained with amp: off
    summary = evaluate_run(tmp_path / "run", device="cpu", quiet=True, checkpoint="last")
    assert summary["precision"]["precision"] == "fp32"
    summary = evaluate_run(
        tmp_path / "run", device="cpu", quiet=True, checkpoint="last", amp="bf16"
    )
    assert summary["precision"]["precision"] == "bf16"
