"""Adversarial training (SPEC §6): the adversarial term really trains the generator, each step
updates only its own network, and the GAN trainer checkpoints and resumes the discriminator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ctxseg.data.store import PreparedCase, write_store
from ctxseg.engine.adversarial import (
    AdversarialTrainer,
    adversarial_boxes,
    adversarial_maps,
    discriminator_inputs,
    discriminator_step,
    generator_loss,
)
from ctxseg.engine.config import AdversarialConfig, config_from_dict, load_config
from ctxseg.engine.factory import create_trainer
from ctxseg.engine.trainer import Trainer
from ctxseg.models import create_discriminator
from ctxseg.roi import roi_boxes

SIZE = 64  # unet32 needs multiples of 32, the discriminator at least 40 px


def _target(batch: int = 2) -> torch.Tensor:
    target = torch.zeros(batch, SIZE, SIZE, dtype=torch.long)
    target[0, 10:30, 20:44] = 1
    if batch > 1:
        target[1, 35:60, 5:25] = 1
    return target


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("roi", "real_maps"), [("static", "onehot"), ("dynamic", "onehot"), ("static", "scaled")]
)
def test_adversarial_gradient_reaches_the_generator_and_is_the_true_gradient(
    roi: str, real_maps: str
):
    torch.manual_seed(0)
    gen = nn.Conv2d(1, 2, 3, padding=1).double()
    disc = create_discriminator("context", 2, SIZE, roi=roi, roi_size=40).double()
    image = torch.rand(2, 1, SIZE, SIZE, dtype=torch.float64)
    target = _target()
    boxes, has_roi = (
        roi_boxes(target, "static", size=40) if roi == "static" else roi_boxes(target, "dynamic")
    )

    def adversarial(weight: torch.Tensor) -> torch.Tensor:
        logits = F.conv2d(image, weight, gen.bias, padding=1)
        # Soft fake maps: the scaled real maps change only what D is trained on, not this term.
        fake, _ = discriminator_inputs(logits, target, real_maps=real_maps)
        return generator_loss(disc, fake, boxes, has_roi)

    weight = gen.weight.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(adversarial(weight), weight)
    assert grad.abs().sum() > 0
    # The directional derivative along a random direction matches finite differences.
    direction = torch.randn_like(weight)
    eps = 1e-7
    with torch.no_grad():
        numeric = (
            adversarial(weight + eps * direction) - adversarial(weight - eps * direction)
        ) / (2 * eps)
    torch.testing.assert_close((grad * direction).sum(), numeric, rtol=1e-4, atol=1e-9)
    # No gradient reaches the discriminator in the generator step.
    assert all(p.grad is None for p in disc.parameters())


REMEDIES = {
    "straight_through": {"fake_maps": "straight_through"},
    "gumbel": {"fake_maps": "gumbel", "gumbel_tau": 0.5},
    "straight_through + image": {"fake_maps": "straight_through", "with_image": True},
    "scaled + noise + smoothing": {
        "real_maps": "scaled",
        "noise_sigma": 0.1,
        "noise_decay_epochs": 10,
        "real_label": 0.9,
    },
}


@pytest.mark.parametrize("discriminator", ["plain", "static", "dynamic"])
@pytest.mark.parametrize("remedy", sorted(REMEDIES))
def test_adversarial_gradient_reaches_every_generator_parameter_with_each_remedy(
    remedy: str, discriminator: str
):
    """One-hot fake maps (straight-through, Gumbel) still pass the generator a gradient.

    For straight-through it is the surrogate ``J_softmax^T (d adv / d map)`` at the one-hot map,
    computed here independently from D's input gradient.
    """
    torch.manual_seed(5)
    kind = {"plain": {"discriminator": "plain"}, "static": {"roi_size": 40}}
    kind["dynamic"] = {"roi": "dynamic"}
    adv = AdversarialConfig(**kind[discriminator], **REMEDIES[remedy])
    gen = nn.Conv2d(1, 2, 3, padding=1)
    disc = create_discriminator(
        adv.discriminator, 2, SIZE, adv.roi, adv.roi_size, with_image=adv.with_image
    )
    image, target = torch.rand(2, 1, SIZE, SIZE), _target()
    boxes, has_roi = adversarial_boxes(adv, target)
    logits = gen(image)
    fake, _ = adversarial_maps(adv, logits, target, image, epoch=1)
    loss = generator_loss(disc, fake, boxes, has_roi)
    grads = torch.autograd.grad(loss, list(gen.parameters()), retain_graph=True)
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in disc.parameters())
    if adv.fake_maps == "straight_through":
        hard = fake.detach().requires_grad_(True)
        (map_grad,) = torch.autograd.grad(generator_loss(disc, hard, boxes, has_roi), hard)
        probs = logits.softmax(dim=1)
        expected = torch.autograd.grad(probs, list(gen.parameters()), map_grad[:, :2])
        for g, e in zip(grads, expected, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-7)


def test_authors_detached_input_gives_the_generator_no_gradient():
    torch.manual_seed(1)
    gen = nn.Conv2d(1, 2, 3, padding=1)
    disc = create_discriminator("context", 2, SIZE, roi="static", roi_size=40)
    image = torch.rand(2, 1, SIZE, SIZE)
    target = _target()
    boxes, has_roi = roi_boxes(target, "static", size=40)
    fake = gen(image).softmax(dim=1)
    ours = generator_loss(disc, fake, boxes, has_roi)
    grads = torch.autograd.grad(ours, list(gen.parameters()))
    assert all(g.abs().sum() > 0 for g in grads)
    # The authors' generator step: D(fake.detach()) with D frozen -> nothing reaches G.
    authors = generator_loss(disc, fake.detach(), boxes, has_roi)
    assert not authors.requires_grad
    total = F.cross_entropy(gen(image), target) + authors
    grads_authors = torch.autograd.grad(total, list(gen.parameters()))
    grads_ce = torch.autograd.grad(F.cross_entropy(gen(image), target), list(gen.parameters()))
    for a, b in zip(grads_authors, grads_ce, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the adversarial term adds nothing


def test_discriminator_step_loss_value_and_it_leaves_the_generator_alone():
    torch.manual_seed(2)
    gen = nn.Conv2d(1, 2, 3, padding=1)
    disc = create_discriminator("context", 2, SIZE, roi="dynamic")
    optimizer = torch.optim.SGD(disc.parameters(), lr=0.1)
    image, target = torch.rand(2, 1, SIZE, SIZE), _target()
    boxes, has_roi = roi_boxes(target, "dynamic", min_size=20)
    fake, real = discriminator_inputs(gen(image), target)
    with torch.no_grad():
        s_real, s_fake = disc(real, boxes, has_roi), disc(fake, boxes, has_roi)
    expected = 0.5 * (F.softplus(-s_real).mean() + F.softplus(s_fake).mean())
    g_before, d_before = _params(gen), _params(disc)
    stats = discriminator_step(disc, optimizer, real, fake, boxes, has_roi)
    torch.testing.assert_close(stats["d_loss"], expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(stats["d_real"], torch.sigmoid(s_real).mean())
    torch.testing.assert_close(stats["d_fake"], torch.sigmoid(s_fake).mean())
    assert all(p.grad is None for p in gen.parameters())
    assert _same(_params(gen), g_before)
    assert not _same(_params(disc), d_before)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())


def test_generator_step_leaves_the_discriminator_alone():
    torch.manual_seed(3)
    gen = nn.Conv2d(1, 2, 3, padding=1)
    disc = create_discriminator("plain", 2, SIZE)
    g_opt = torch.optim.SGD(gen.parameters(), lr=0.1)
    d_opt = torch.optim.SGD(disc.parameters(), lr=0.1)
    image, target = torch.rand(2, 1, SIZE, SIZE), _target()
    fake, real = discriminator_inputs(gen(image), target)
    discriminator_step(disc, d_opt, real, fake, None, None)
    d_after_d_step = _params(disc)
    d_grads = [p.grad.clone() for p in disc.parameters()]
    g_before = _params(gen)
    g_opt.zero_grad()
    (F.cross_entropy(gen(image), target) + generator_loss(disc, fake, None, None)).backward()
    g_opt.step()
    assert _same(_params(disc), d_after_d_step)
    assert _same([p.grad for p in disc.parameters()], d_grads)  # untouched by the G backward
    assert all(p.requires_grad for p in disc.parameters())  # frozen only inside the step
    assert not _same(_params(gen), g_before)


def test_discriminator_inputs_one_hot_softmax_and_image():
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    image = torch.rand(2, 1, 4, 4)
    fake, real = discriminator_inputs(logits, target, image)
    assert fake.shape == real.shape == (2, 4, 4, 4)
    torch.testing.assert_close(fake[:, :3], logits.softmax(1))
    torch.testing.assert_close(real[:, :3].argmax(1), target)
    torch.testing.assert_close(real[:, :3].sum(1), torch.ones(2, 4, 4))
    torch.testing.assert_close(fake[:, 3:], image)
    torch.testing.assert_close(real[:, 3:], image)


# --------------------------------------------------------------------------- with the Trainer


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory):
    """A tiny 2-class store of 64 x 64 slices: blobs of varying size, one empty slice."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    cases = []
    for c in range(3):
        label = np.zeros((4, SIZE, SIZE), np.uint8)
        for z in range(1, 4):
            cy, cx, r = rng.integers(18, 46), rng.integers(18, 46), rng.integers(5, 14)
            label[z] = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8)
        image = (0.3 + 0.4 * label + 0.1 * rng.random(label.shape)).astype(np.float32)
        cases.append(PreparedCase(f"c{c}", f"p{c}", None, image, label, (1.0, 1.0, 1.0)))
    root = tmp_path_factory.mktemp("gan") / "store"
    meta = {"name": "toy", "labels": {"0": "background", "1": "object"}}
    # One training batch per epoch (4 slices, one of them empty) keeps the tests fast.
    splits = {"seed": 0, "train": ["c0"], "val": ["c1"], "test": ["c2"]}
    write_store(root, cases, meta, splits)
    return root


def _config(store_root, adversarial, epochs: int = 1, loss: str = "ce"):
    raw = {
        "experiment": "tiny",
        "seed": 0,
        "data": {"root": str(store_root), "train_slices": "all"},
        "loss": {"name": loss},
        "train": {"epochs": epochs, "batch_size": 4, "device": "cpu", "val_hd": False},
        "adversarial": adversarial,
    }
    return config_from_dict(raw)


# The Seg-GLGAN run of these tests: static ROI, D with SGD + momentum (state to resume).
GAN = {
    "discriminator": "context",
    "roi": "static",
    "roi_size": 40,
    "optim": {"name": "sgd", "lr": 5e-3, "momentum": 0.9},
}


@pytest.fixture(scope="module")
def one_epoch(store_root, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One epoch each of CE, Seg-GLGAN with lambda_adv = 0, and Seg-GLGAN; same seed."""
    runs = tmp_path_factory.mktemp("runs")
    ce = create_trainer(_config(store_root, None), runs / "ce", quiet=True)
    zero = create_trainer(
        _config(store_root, {**GAN, "lambda_adv": 0.0}), runs / "zero", quiet=True
    )
    gan = create_trainer(_config(store_root, GAN), runs / "gan", quiet=True)
    out = {"ce_type": type(ce), "gan_type": type(gan), "gan_dir": runs / "gan"}
    out["g_init"], out["d_init"] = _params(gan.module), _params(gan.disc_module)
    for name, trainer in (("ce", ce), ("zero", zero), ("gan", gan)):
        trainer.fit()
        out[name] = _params(trainer.module)
    out["d_gan"] = _params(gan.disc_module)
    out["header"] = (runs / "gan" / "metrics.csv").read_text().splitlines()[0].split(",")
    return out


def test_adversarial_epoch_changes_the_generator_and_lambda_zero_is_plain_ce(one_epoch):
    assert one_epoch["ce_type"] is Trainer and one_epoch["gan_type"] is AdversarialTrainer
    # Same seed, same initial generator: the discriminator step leaves the generator exactly
    # as the CE run has it when lambda_adv = 0, and the adversarial term changes it otherwise.
    assert _same(one_epoch["zero"], one_epoch["ce"])
    assert not _same(one_epoch["gan"], one_epoch["ce"])
    assert not _same(one_epoch["gan"], one_epoch["g_init"])
    assert not _same(one_epoch["d_gan"], one_epoch["d_init"])
    for key in ("loss", "seg", "adv", "d_loss", "d_real", "d_fake"):
        assert f"train_{key}" in one_epoch["header"]


@pytest.mark.parametrize(
    "adversarial",
    [
        {"discriminator": "plain", "with_image": True},
        {"discriminator": "context", "roi": "dynamic", "min_roi": 20},
        {"discriminator": "plain", "with_image": True, "fake_maps": "straight_through"},
        {"discriminator": "context", "roi": "dynamic", "fake_maps": "gumbel"},
        {"discriminator": "context", "roi": "static", "roi_size": 40, "real_maps": "scaled"},
        {"discriminator": "plain", "noise_sigma": 0.2, "real_label": 0.9},
    ],
)
def test_train_step_logs_consistent_finite_values(store_root, tmp_path, adversarial):
    cfg = _config(store_root, {**adversarial, "lambda_adv": 0.5}, loss="context")
    cfg.loss.roi, cfg.loss.roi_size = "static", 40
    trainer = create_trainer(cfg, tmp_path / "run", quiet=True)
    image, target = trainer.train_images[:4], trainer.train_labels[:4].long()
    out = trainer.train_step(image, target)
    assert set(out) == {"loss", "seg", "global", "roi", "adv", "d_loss", "d_real", "d_fake"}
    assert all(v.dim() == 0 and not v.requires_grad and torch.isfinite(v) for v in out.values())
    torch.testing.assert_close(out["loss"], out["seg"] + 0.5 * out["adv"])
    torch.testing.assert_close(out["seg"], out["global"] + out["roi"])
    assert 0 < float(out["d_real"]) < 1 and 0 < float(out["d_fake"]) < 1


def test_resume_carries_the_discriminator_and_its_optimiser(store_root, one_epoch, tmp_path):
    whole = AdversarialTrainer(_config(store_root, GAN, epochs=2), tmp_path / "a", quiet=True)
    whole.fit()
    resumed = AdversarialTrainer(
        _config(store_root, GAN, epochs=2), one_epoch["gan_dir"], quiet=True, resume=True
    )
    assert _same(_params(resumed.disc_module), one_epoch["d_gan"])
    momentum = resumed.d_optimizer.state_dict()["state"]
    assert momentum and all("momentum_buffer" in s for s in momentum.values())
    resumed.fit()
    assert _same(_params(resumed.disc_module), _params(whole.disc_module))
    assert _same(_params(resumed.module), _params(whole.module))


# --------------------------------------------------------------------------- shipped configs

REPO = Path(__file__).resolve().parents[1]
DATASETS = {"promise12": (2, 128, 50), "phantom-prostate": (2, 128, 50)}
DATASETS |= {"acdc": (4, 160, 60), "phantom-cardiac": (4, 160, 60)}
GAN_EXPERIMENTS = ["gan", "seg_glgan_static", "seg_glgan_dynamic", "seg_glgan_static_context"]


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_shipped_gan_configs_have_the_paper_settings_and_build(dataset: str):
    num_classes, image_size, roi_size = DATASETS[dataset]
    for name in GAN_EXPERIMENTS:
        config = load_config(REPO / "configs" / dataset / f"{name}.yaml")
        adv = config.adversarial
        assert (config.optim.name, config.optim.lr, config.model.name) == ("adam", 1e-4, "unet32")
        assert (adv.lambda_adv, adv.optim.name, adv.optim.lr, adv.with_image) == (
            1.0,
            "adam",
            1e-4,
            False,
        )
        assert (adv.real_maps, adv.fake_maps, adv.real_label, adv.noise_sigma) == (
            "onehot",
            "soft",
            1.0,
            0.0,
        )  # the paper's discriminator inputs (issue 9): these configs are paper-faithful
        assert adv.discriminator == ("plain" if name == "gan" else "context")
        assert config.loss.name == ("context" if name.endswith("_context") else "ce")
        if adv.discriminator == "context" and adv.roi == "static":
            assert adv.roi_size == roi_size
            if config.loss.name == "context":
                assert (config.loss.roi, config.loss.roi_size) == ("static", roi_size)
        assert (adv.roi, adv.min_roi) == (("dynamic", 20) if "dynamic" in name else ("static", 20))
        disc = create_discriminator(
            adv.discriminator,
            num_classes,
            image_size,
            roi=adv.roi,
            roi_size=adv.roi_size if adv.roi == "static" else None,
            min_roi=adv.min_roi,
        )
        assert disc.global_branch.flat_features == (9216 if image_size == 128 else 16384)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_shape_variants_differ_from_the_paper_configs_only_in_the_discriminator_input(
    dataset: str,
):
    for name in ("gan", "seg_glgan_static", "seg_glgan_dynamic"):
        paper = load_config(REPO / "configs" / dataset / f"{name}.yaml").to_dict()
        shape = load_config(REPO / "configs" / dataset / f"{name}_shape.yaml").to_dict()
        assert (shape["experiment"], paper["experiment"]) == (f"{name}_shape", name)
        paper["experiment"] = shape["experiment"]
        paper["adversarial"] |= {"with_image": True, "fake_maps": "straight_through"}
        assert shape == paper
        for path in (f"{name}.yaml", f"{name}_shape.yaml"):
            assert "# Discriminator input:" in (REPO / "configs" / dataset / path).read_text()


@pytest.mark.parametrize("dataset", ["promise12", "acdc"])
def test_authors_settings_variant(dataset: str):
    config = load_config(REPO / "configs" / dataset / "seg_glgan_static_authors.yaml")
    adv = config.adversarial
    assert (adv.lambda_adv, adv.optim.name, adv.optim.lr, adv.optim.momentum) == (
        4e-4,
        "sgd",
        5e-3,
        0.0,
    )
    assert (config.optim.name, config.optim.lr, config.optim.step_every) == ("adam", 1e-3, 40)
    assert config.model.name == "unet64bn"
    assert config.optim.lr_at(39) == 1e-3 and config.optim.lr_at(40) == pytest.approx(1e-4)


def test_non_finite_discriminator_weights_stop_the_run(store_root, tmp_path):
    """NaN D weights after the epoch's last step, behind finite logged values, are caught."""
    from ctxseg.engine.checkpoint import load_checkpoint
    from ctxseg.engine.trainer import NonFiniteError

    class Breaking(AdversarialTrainer):
        def train_step(self, image, target):
            out = super().train_step(image, target)
            if self.breaks:
                with torch.no_grad():
                    next(self.disc_module.parameters()).fill_(float("nan"))
            return out

        def on_epoch_start(self, epoch):
            self.breaks = epoch == 1
            super().on_epoch_start(epoch)

    run = tmp_path / "run"
    trainer = Breaking(_config(store_root, GAN, epochs=2), run, quiet=True)
    with pytest.raises(NonFiniteError, match=r"epoch 2: .*'model weights'"):
        trainer.fit()
    assert load_checkpoint(run / "checkpoint_last.pt")["epoch"] == 1
