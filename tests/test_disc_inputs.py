"""What the discriminator sees (issue 9): the paper's maps and each remedy, value by value, the
config keys that select them and their validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ctxseg.engine.adversarial import adversarial_maps, discriminator_step
from ctxseg.engine.config import AdversarialConfig, config_from_dict
from ctxseg.engine.disc_inputs import (
    add_instance_noise,
    discriminator_inputs,
    hard_gumbel,
    scaled_real_maps,
    straight_through,
)
from ctxseg.models import create_discriminator


def test_scaled_real_maps_hand_computed():
    # One pixel per case, 3 classes, true class 0.
    probs = torch.tensor(
        [
            [0.95, 0.03, 0.02],  # confident and right: y = p exactly
            [0.60, 0.30, 0.10],  # right but unsure: the true class rises to tau = 0.9
            [0.05, 0.75, 0.20],  # wrong: tau for the truth, the rest 0.75 : 0.20
            [1.00, 0.00, 0.00],  # saturated: the one-hot target
        ]
    )[:, :, None, None]  # (4, 3, 1, 1)
    target = torch.zeros(4, 1, 1, dtype=torch.long)
    real = scaled_real_maps(probs, target, tau=0.9)[:, :, 0, 0]
    expected = torch.tensor(
        [
            [0.95, 0.03, 0.02],
            [0.90, 0.075, 0.025],  # 0.1 shared 3 : 1
            [0.90, 0.1 * 0.75 / 0.95, 0.1 * 0.20 / 0.95],
            [1.00, 0.00, 0.00],
        ]
    )
    torch.testing.assert_close(real, expected)
    # A wrong prediction that gives one other class nothing: the rest goes to the one it names.
    probs = torch.tensor([[0.0, 0.0, 1.0]])[:, :, None, None]
    real = scaled_real_maps(probs, torch.zeros(1, 1, 1, dtype=torch.long), tau=0.9)[0, :, 0, 0]
    torch.testing.assert_close(real, torch.tensor([0.9, 0.0, 0.1]))
    probs = torch.tensor([[0.5, 0.5, 0.0]])[:, :, None, None]
    real = scaled_real_maps(probs, torch.full((1, 1, 1), 2), tau=0.8)[0, :, 0, 0]
    torch.testing.assert_close(real, torch.tensor([0.1, 0.1, 0.8]))
    # The 0 / 0 guard (nothing on the other classes, the true class under 1: only an
    # unnormalised input gets there): even shares, no NaN.
    probs = torch.tensor([[0.95, 0.0, 0.0]])[:, :, None, None]
    real = scaled_real_maps(probs, torch.zeros(1, 1, 1, dtype=torch.long), tau=0.99)[0, :, 0, 0]
    torch.testing.assert_close(real, torch.tensor([0.99, 0.005, 0.005]))
    # tau = 1 is the one-hot target; the maps sum to 1; no gradient reaches the prediction.
    probs = torch.randn(2, 4, 5, 6).softmax(1).requires_grad_(True)
    target = torch.randint(0, 4, (2, 5, 6))
    onehot = F.one_hot(target, 4).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(scaled_real_maps(probs, target, 1.0), onehot)
    real = scaled_real_maps(probs, target, 0.7)
    torch.testing.assert_close(real.sum(1), torch.ones(2, 5, 6))
    assert not real.requires_grad
    with pytest.raises(ValueError, match="scale_tau"):
        scaled_real_maps(probs, target, 0.0)


def test_straight_through_is_one_hot_forward_and_identity_backward():
    logits = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    probs = logits.softmax(1)
    hard = straight_through(probs)
    torch.testing.assert_close(
        hard.detach(), F.one_hot(probs.argmax(1), 3).permute(0, 3, 1, 2).double()
    )
    upstream = torch.randn_like(hard)
    (grad,) = torch.autograd.grad(hard, logits, upstream, retain_graph=True)
    (expected,) = torch.autograd.grad(probs, logits, upstream)  # d hard / d probs = I
    torch.testing.assert_close(grad, expected)
    assert grad.abs().sum() > 0


def test_hard_gumbel_samples_the_predicted_distribution():
    torch.manual_seed(0)
    # Three classes at probabilities 0.7, 0.2, 0.1 on 20,000 pixels.
    logits = torch.log(torch.tensor([0.7, 0.2, 0.1]))[None, :, None, None].expand(1, 3, 100, 200)
    logits = logits.clone().requires_grad_(True)
    sample = hard_gumbel(logits, temperature=0.5)
    assert set(sample.detach().unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(sample.detach().sum(1), torch.ones(1, 100, 200))
    frequencies = sample.detach().mean(dim=(0, 2, 3))
    # Binomial standard error at 20,000 draws is at most 0.0035: 4 of them.
    torch.testing.assert_close(frequencies, torch.tensor([0.7, 0.2, 0.1]), rtol=0, atol=0.014)
    (grad,) = torch.autograd.grad((sample * torch.randn_like(sample)).sum(), logits)
    assert grad.abs().sum() > 0
    with pytest.raises(ValueError, match="gumbel_tau must be finite"):
        hard_gumbel(logits, 0.0)


def test_discriminator_inputs_remedies_and_their_checks():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    image = torch.rand(2, 1, 4, 4)
    probs = logits.softmax(1)
    onehot = F.one_hot(target, 3).permute(0, 3, 1, 2).float()
    fake, real = discriminator_inputs(logits, target, image, real_maps="scaled", scale_tau=0.8)
    torch.testing.assert_close(fake[:, :3], probs)
    torch.testing.assert_close(real[:, :3], scaled_real_maps(probs, target, 0.8))
    torch.testing.assert_close(real[:, 3:], image)
    fake, real = discriminator_inputs(logits, target, fake_maps="straight_through")
    torch.testing.assert_close(fake, F.one_hot(probs.argmax(1), 3).permute(0, 3, 1, 2).float())
    torch.testing.assert_close(real, onehot)
    fake, _ = discriminator_inputs(logits, target, fake_maps="gumbel", gumbel_tau=0.3)
    assert set(fake.unique().tolist()) == {0.0, 1.0}
    with pytest.raises(ValueError, match="fake_maps 'soft'"):
        discriminator_inputs(logits, target, real_maps="scaled", fake_maps="gumbel")
    with pytest.raises(ValueError, match="real_maps"):
        discriminator_inputs(logits, target, real_maps="smooth")
    with pytest.raises(ValueError, match="fake_maps"):
        discriminator_inputs(logits, target, fake_maps="hard")


def test_scaled_real_equals_a_correct_confident_prediction():
    """The point of the scaling: a right prediction surer than tau is its own real map."""
    target = torch.randint(0, 4, (2, 8, 8))
    logits = 6.0 * F.one_hot(target, 4).permute(0, 3, 1, 2).float()  # p_true = 0.9926
    fake, real = discriminator_inputs(logits, target, real_maps="scaled", scale_tau=0.9)
    torch.testing.assert_close(real, fake)
    fake, real = discriminator_inputs(logits, target)  # the paper's: they differ everywhere
    assert ((real - fake).abs() > 2e-3).all()


def test_instance_noise_on_class_maps_only_and_gradient_identity():
    torch.manual_seed(2)
    maps = torch.rand(4, 3, 64, 64, requires_grad=True)  # 2 classes + the image
    noisy = add_instance_noise(maps, 0.5, channels=2)
    noise = (noisy - maps).detach()
    torch.testing.assert_close(noise[:, 2], torch.zeros(4, 64, 64))
    assert abs(float(noise[:, :2].std()) - 0.5) < 0.01 and abs(float(noise[:, :2].mean())) < 0.01
    (grad,) = torch.autograd.grad(noisy.sum(), maps)
    torch.testing.assert_close(grad, torch.ones_like(maps))
    assert add_instance_noise(maps, 0.0, 2) is maps
    with pytest.raises(ValueError, match="sigma"):
        add_instance_noise(maps, float("nan"), 2)


def test_adversarial_maps_follow_the_config():
    torch.manual_seed(3)
    logits, target, image = (
        torch.randn(2, 2, 8, 8),
        torch.randint(0, 2, (2, 8, 8)),
        torch.rand(2, 1, 8, 8),
    )
    paper = AdversarialConfig()
    fake, real = adversarial_maps(paper, logits, target, image, epoch=0)
    torch.testing.assert_close(fake, logits.softmax(1))  # with_image off: the image is not used
    torch.testing.assert_close(real, F.one_hot(target, 2).permute(0, 3, 1, 2).float())
    noisy = AdversarialConfig(with_image=True, noise_sigma=0.2, noise_decay_epochs=4)
    assert [noisy.noise_at(e) for e in (0, 1, 2, 4, 9)] == pytest.approx([0.2, 0.15, 0.1, 0.0, 0.0])
    assert AdversarialConfig(noise_sigma=0.2).noise_at(100) == 0.2  # no decay: constant
    fake, real = adversarial_maps(noisy, logits, target, image, epoch=4)  # sigma 0: exact
    torch.testing.assert_close(fake[:, :2], logits.softmax(1))
    torch.testing.assert_close(fake[:, 2:], image)
    fake, real = adversarial_maps(noisy, logits, target, image, epoch=1)
    assert not torch.allclose(fake[:, :2], logits.softmax(1))
    torch.testing.assert_close(fake[:, 2:], image)  # the condition is never noised
    torch.testing.assert_close(real[:, 2:], image)


def test_one_sided_label_smoothing_in_the_discriminator_loss():
    torch.manual_seed(4)
    disc = create_discriminator("plain", 2, 48)
    optimizer = torch.optim.SGD(disc.parameters(), lr=0.0)
    real, fake = torch.rand(3, 2, 48, 48), torch.rand(3, 2, 48, 48)
    with torch.no_grad():
        s_real, s_fake = disc(real), disc(fake)
    stats = discriminator_step(disc, optimizer, real, fake, None, None, real_label=0.9)
    # BCE with logits against 0.9: 0.9 * softplus(-s) + 0.1 * softplus(s); the fake term as before.
    expected_real = (0.9 * F.softplus(-s_real) + 0.1 * F.softplus(s_real)).mean()
    expected = 0.5 * (expected_real + F.softplus(s_fake).mean())
    torch.testing.assert_close(stats["d_loss"], expected, rtol=1e-6, atol=1e-7)


def _adv(**values) -> dict:
    raw = {
        "experiment": "x",
        "data": {"root": "store"},
        "loss": {"name": "ce"},
        "adversarial": values,
    }
    return raw


def test_config_defaults_are_the_paper_inputs():
    adv = config_from_dict(_adv()).adversarial
    assert (adv.real_maps, adv.fake_maps, adv.with_image) == ("onehot", "soft", False)
    assert (adv.real_label, adv.noise_sigma, adv.noise_decay_epochs) == (1.0, 0.0, None)
    assert (adv.scale_tau, adv.gumbel_tau) == (0.9, 1.0)
    # A checkpoint's config saved before these keys existed loads with the same meaning.
    old = {"discriminator": "context", "roi": "static", "roi_size": 50, "lambda_adv": 1.0}
    assert config_from_dict(_adv(**old)).adversarial.real_maps == "onehot"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("scale_tau", 0.0, r"\(0, 1\]"),
        ("scale_tau", 1.5, r"\(0, 1\]"),
        ("scale_tau", math.nan, "must be a finite number"),
        ("gumbel_tau", 0.0, "finite and > 0"),
        ("gumbel_tau", math.inf, "must be a finite number"),
        ("gumbel_tau", math.nan, "must be a finite number"),
        ("real_label", 0.5, r"\(0.5, 1\]"),
        ("real_label", 1.1, r"\(0.5, 1\]"),
        ("real_label", math.nan, "must be a finite number"),
        ("noise_sigma", -0.1, "finite and >= 0"),
        ("noise_sigma", math.inf, "must be a finite number"),
        ("noise_sigma", math.nan, "must be a finite number"),
        ("noise_decay_epochs", 0, ">= 1 or null"),
        ("lambda_adv", math.inf, "must be a finite number"),
        ("lambda_adv", math.nan, "must be a finite number"),
        ("real_maps", "soft", "expected one of"),
        ("fake_maps", "onehot", "expected one of"),
    ],
)
def test_config_rejects_bad_values_naming_the_key(key: str, value, message: str):
    with pytest.raises(ValueError, match=rf"adversarial\.{key}: .*{message}"):
        config_from_dict(_adv(**{key: value}))


@pytest.mark.parametrize("fake_maps", ["straight_through", "gumbel"])
def test_config_rejects_scaled_real_maps_with_one_hot_fakes(fake_maps: str):
    with pytest.raises(ValueError, match=r"adversarial\.real_maps: 'scaled' needs fake_maps"):
        config_from_dict(_adv(real_maps="scaled", fake_maps=fake_maps))


def test_config_accepts_every_remedy():
    for values in (
        {"real_maps": "scaled", "scale_tau": 0.8},
        {"fake_maps": "straight_through"},
        {"fake_maps": "gumbel", "gumbel_tau": 0.5},
        {"with_image": True, "fake_maps": "straight_through"},
        {"noise_sigma": 0.1, "noise_decay_epochs": 50, "real_label": 0.9},
    ):
        adv = config_from_dict(_adv(**values)).adversarial
        assert all(getattr(adv, k) == v for k, v in values.items())
