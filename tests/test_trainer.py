"""The training loop: a CLI run's folder, checkpoints, metrics, hooks, non-finite stop."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ctxseg.data.store import PreparedCase, PreparedStore, write_store
from ctxseg.engine.checkpoint import load_checkpoint, load_model
from ctxseg.engine.config import load_config
from ctxseg.engine.inference import predict_labels
from ctxseg.engine.precision import inference_fast_path
from ctxseg.engine.sampling import epoch_seed
from ctxseg.engine.trainer import NonFiniteError, Trainer
from ctxseg.metrics import dice_score_batch

SIZE = 32


def make_store(
    root: Path, seed: int = 0, cases: int = 5, slices: int = 3, size: int = SIZE
) -> Path:
    """A tiny 3-class store of 32x32 slices: a disc (class 1) with a ring around it (class 2).

    Cases 0..cases-3 train, then one val and one test case; the last slice of every case is
    empty (no foreground), so the foreground-only selection is exercised.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    prepared = []
    for i in range(cases):
        image = rng.uniform(0, 0.2, (slices, size, size)).astype(np.float32)
        label = np.zeros((slices, size, size), np.uint8)
        for z in range(slices - 1):
            cy, cx = rng.integers(10, size - 10, 2)
            r = rng.integers(3, 6)
            dist = np.hypot(yy - cy, xx - cx)
            label[z][dist < r + 3] = 2
            label[z][dist < r] = 1
            image[z][label[z] == 1] += 0.7
            image[z][label[z] == 2] += 0.4
        prepared.append(
            PreparedCase(f"c{i}", f"p{i}", None, image.clip(0, 1), label, (2.0, 1.0, 1.0), {})
        )
    ids = [c.case for c in prepared]
    splits = {"seed": 0, "train": ids[:-2], "val": [ids[-2]], "test": [ids[-1]]}
    meta = {"name": "tiny", "labels": {"0": "background", "1": "disc", "2": "ring"}}
    return write_store(root, prepared, meta, splits)


def write_config(path: Path, root: Path, **sections: dict) -> Path:
    """A tiny experiment YAML over ``root``; ``sections`` update its top-level mappings."""
    raw = {
        "experiment": "tiny_context",
        "seed": 3,
        "data": {"root": str(root)},
        "model": {"name": "unet32"},
        "loss": {"name": "context", "roi": "static", "roi_size": 12},
        "optim": {"lr": 1.0e-3},
        "train": {"epochs": 2, "batch_size": 3, "device": "cpu"},
    }
    for key, value in sections.items():
        # A loss section replaces the default; a section the default lacks is added as it is.
        merge = isinstance(value, dict) and key != "loss" and key in raw
        raw[key] = {**raw[key], **value} if merge else value
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("store") / "tiny")


def test_epoch_seed_depends_on_seed_and_epoch() -> None:
    seeds = {epoch_seed(s, e) for s in range(3) for e in range(3)}
    assert len(seeds) == 9
    assert epoch_seed(1, 2) == epoch_seed(1, 2)


def run_cli(*argv: str) -> int:
    from ctxseg.cli import main

    return main([str(a) for a in argv])


def test_cli_one_epoch_writes_a_complete_run_folder(store_root: Path, tmp_path: Path) -> None:
    config_path = write_config(tmp_path / "c.yaml", store_root)
    run = tmp_path / "run"
    assert run_cli("train", config_path, "--set", "train.epochs=1", "--out", run, "--quiet") == 0
    names = {"config.yaml", "metrics.csv", "checkpoint_last.pt", "checkpoint_best.pt"}
    assert names | {"progress.png"} <= {p.name for p in run.iterdir()}
    assert (run / "progress.png").read_bytes()[:4] == b"\x89PNG"

    config = load_config(config_path, ["train.epochs=1"])
    assert yaml.safe_load((run / "config.yaml").read_text()) == config.to_dict()
    with open(run / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and rows[0]["epoch"] == "1"
    for key in ("train_loss", "train_global", "train_roi", "lr", "time"):
        assert math.isfinite(float(rows[0][key])), key
    # loss = global + lambda * roi, averaged over the epoch's steps (lambda_roi defaults to 1).
    total = float(rows[0]["train_global"]) + float(rows[0]["train_roi"])
    assert float(rows[0]["train_loss"]) == pytest.approx(total, rel=1e-5)
    assert float(rows[0]["lr"]) == 1e-3

    last = load_checkpoint(run / "checkpoint_last.pt")
    assert last["epoch"] == 1 and last["num_classes"] == 3
    assert last["label_names"] == ["background", "disc", "ring"]
    assert last["config"] == config.to_dict()
    assert set(last["rng"]) >= {"python", "numpy", "torch"}

    # The logged validation Dice is the mean per-slice Dice of the best checkpoint's
    # predictions on the val split (recomputed here from the files alone).
    model, best = load_model(run / "checkpoint_best.pt")
    assert best["best"] == {"value": pytest.approx(float(rows[0]["val_dice_mean"])), "epoch": 1}
    store = PreparedStore.open(store_root)
    val = store.indices("val", foreground_only=True)
    fast = inference_fast_path(model, best, "cpu")  # the path validation ran on
    pred = predict_labels(
        model,
        np.asarray(store.images[val])[:, None],
        amp=fast.bf16,
        channels_last=fast.channels_last,
    )
    dice = dice_score_batch(pred, np.asarray(store.labels[val]), [1, 2])
    for label, name in ((1, "disc"), (2, "ring")):
        assert float(rows[0][f"val_dice_{name}"]) == pytest.approx(np.nanmean(dice[label]))
    expected_mean = np.mean([np.nanmean(dice[1]), np.nanmean(dice[2])])
    assert float(rows[0]["val_dice_mean"]) == pytest.approx(expected_mean)
    assert float(rows[0]["val_hd_disc"]) >= 0

    # A second run into the same folder is refused, naming the remedy.
    code = run_cli("train", config_path, "--epochs", "1", "--out", run, "--quiet")
    assert code == 2


def test_data_in_memory_are_the_train_and_val_slices_only(store_root: Path, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "c.yaml", store_root))
    trainer = Trainer(config, tmp_path / "run", quiet=True)
    store = trainer.store
    train_rows = store.indices("train", foreground_only=True)
    val_rows = store.indices("val", foreground_only=True)
    assert train_rows.size == 6 and val_rows.size == 2  # 3 train cases x 2 foreground slices
    assert torch.equal(trainer.train_images[:, 0], torch.from_numpy(store.images[train_rows]))
    assert torch.equal(trainer.val_labels, torch.from_numpy(store.labels[val_rows]))
    assert trainer.train_images.dtype == torch.float32 and trainer.train_labels.dtype == torch.uint8


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    store_root: Path, tmp_path: Path
) -> None:
    class Exploding(Trainer):
        """In the 2nd epoch (2 steps): a NaN logged loss, then NaN weights after the last step
        (whose logged values are still finite: the weights must be checked on their own)."""

        def train_step(self, image: torch.Tensor, target: torch.Tensor) -> dict:
            parts = super().train_step(image, target)
            self.step_now += 1
            if self.epoch_now == 1 and self.step_now == 1:
                parts["loss"] = parts["loss"] * float("nan")
            if self.epoch_now == 1 and self.step_now == 2:
                with torch.no_grad():
                    next(self.module.parameters()).fill_(float("nan"))
            return parts

        def on_epoch_start(self, epoch: int) -> None:
            self.epoch_now, self.step_now = epoch, 0
            super().on_epoch_start(epoch)

    run = tmp_path / "run"
    config = load_config(write_config(tmp_path / "c.yaml", store_root))
    trainer = Exploding(config, run, quiet=True)
    with pytest.raises(
        NonFiniteError, match=r"epoch 2: non-finite training value\(s\) \['loss', 'model weights'\]"
    ):
        trainer.fit()
    last = load_checkpoint(run / "checkpoint_last.pt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values())
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 2  # header + epoch 1


def test_missing_real_dataset_names_the_prepare_command(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", tmp_path / "prepared" / "promise12")
    with pytest.raises(FileNotFoundError, match="ctxseg prepare promise12 --raw"):
        Trainer(load_config(path), tmp_path / "run", quiet=True)


def test_missing_phantom_is_prepared(
    store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    phantoms = pytest.importorskip("ctxseg.data.phantoms")
    calls = []

    def fake_prepare(kind: str, out: Path, **kwargs: object) -> PreparedStore:
        calls.append(kind)
        make_store(Path(out))
        return PreparedStore.open(out)

    monkeypatch.setattr(phantoms, "prepare_phantom", fake_prepare)
    root = tmp_path / "prepared" / "phantom-prostate"
    trainer = Trainer(load_config(write_config(tmp_path / "c.yaml", root)), tmp_path / "run")
    assert calls == ["prostate"] and trainer.store.root == root


def test_predict_labels_pads_to_the_size_multiple_and_crops_back() -> None:
    from ctxseg.models import create_model

    torch.manual_seed(0)
    model = create_model("unet32", 1, 3)
    images = np.random.default_rng(0).random((3, 1, 40, 36), dtype=np.float32)
    pred = predict_labels(model, images, batch_size=2)
    padded = torch.nn.functional.pad(torch.from_numpy(images), (0, 28, 0, 24))  # to 64 x 64
    with torch.no_grad():
        expected = model.eval()(padded)[..., :40, :36].argmax(1).numpy().astype(np.uint8)
    assert pred.dtype == np.uint8 and pred.shape == (3, 40, 36)
    np.testing.assert_array_equal(pred, expected)


def test_on_device_augmentation_matches_a_per_sample_reference() -> None:
    from ctxseg.engine.augment import apply_augment, draw_augment

    generator = torch.Generator().manual_seed(0)
    image = torch.rand(16, 1, 8, 8)
    target = torch.randint(0, 3, (16, 8, 8))
    params = draw_augment(16, generator)
    out_image, out_target = apply_augment(image, target, params)
    for i in range(16):
        img, tgt = image[i, 0], target[i]
        dims = [d for d, flag in enumerate(params[i, :2].tolist()) if flag]
        if dims:
            img, tgt = img.flip(dims), tgt.flip(dims)
        k = int(params[i, 2])
        img, tgt = torch.rot90(img, k, (0, 1)), torch.rot90(tgt, k, (0, 1))
        img = (img * params[i, 3]).clamp(0, 1)
        assert torch.allclose(out_image[i, 0], img) and torch.equal(out_target[i], tgt)
    assert len({tuple(p[:3].tolist()) for p in params}) > 4  # the draws vary between samples


def test_tensorboard_is_optional_with_a_clear_error(tmp_path: Path) -> None:
    import importlib.util

    from ctxseg.engine.progress import RunLog

    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ValueError, match=r"train.tensorboard: true needs the tensorboard"):
            RunLog(tmp_path, tensorboard=True)
    else:
        log = RunLog(tmp_path, tensorboard=True)
        log.append({"epoch": 1, "train_loss": 0.5})
        log.close()
        assert any((tmp_path / "tensorboard").iterdir())
    RunLog(tmp_path, tensorboard=True, enabled=False)  # other ranks never import it


def test_checkpoints_are_atomic_and_links_independent(tmp_path: Path) -> None:
    from ctxseg.engine.checkpoint import link_checkpoint, save_checkpoint

    best, last = tmp_path / "best.pt", tmp_path / "last.pt"
    save_checkpoint(best, {"model": {"w": torch.zeros(2)}, "config": {}, "num_classes": 2})
    link_checkpoint(best, last)
    assert load_checkpoint(last)["model"]["w"].tolist() == [0.0, 0.0]
    save_checkpoint(last, {"model": {"w": torch.ones(2)}, "config": {}, "num_classes": 2})
    assert load_checkpoint(best)["model"]["w"].tolist() == [0.0, 0.0]  # best untouched
    assert load_checkpoint(last)["model"]["w"].tolist() == [1.0, 1.0]
    assert load_checkpoint(last)["ctxseg_version"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temp files
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a PyTorch checkpoint file"):
        load_checkpoint(tmp_path / "junk.pt")


@pytest.mark.parametrize("train_slices", ["foreground", "all"])
def test_auto_class_weights_count_the_slices_trained_on(
    tmp_path: Path, store_root: Path, train_slices: str
) -> None:
    config = load_config(
        write_config(
            tmp_path / "c.yaml",
            store_root,
            data={"train_slices": train_slices},
            loss={"name": "wce", "weights": "auto"},
        )
    )
    trainer = Trainer(config, tmp_path / "run", quiet=True)
    store = PreparedStore.open(store_root)
    counts = store.class_frequencies("train", foreground_only=train_slices == "foreground")
    expected = (1.0 / counts) / (1.0 / counts).sum()  # inverse frequency, summing to 1
    np.testing.assert_allclose(trainer.loss_fn.weights.cpu().numpy(), expected, rtol=1e-6)
