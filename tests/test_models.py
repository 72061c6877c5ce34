"""U-Nets of SPEC §4: parameter counts, shapes, gradients, size errors."""

from __future__ import annotations

import pytest
import torch

from ctxseg.models import UNet32, UNet64BN, create_model


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "count"), [("unet32", 7_846_114), ("unet64bn", 31_044_354)])
def test_parameter_count_matches_the_paper_networks(name: str, count: int) -> None:
    assert n_params(create_model(name, in_channels=1, num_classes=2)) == count


def test_parameter_count_follows_channels_and_classes() -> None:
    # One more input channel adds 9 * 32 weights to the first conv of unet32, two more classes
    # add 2 * (32 + 1) to its 1x1 head.
    assert n_params(create_model("unet32", 2, 4)) == 7_846_114 + 9 * 32 + 2 * 33


@pytest.mark.parametrize(("name", "multiple"), [("unet32", 32), ("unet64bn", 16)])
def test_size_multiple_attribute(name: str, multiple: int) -> None:
    assert create_model(name).size_multiple == multiple


@pytest.mark.parametrize(
    ("cls", "size"), [(UNet32, (32, 64)), (UNet32, (160, 32)), (UNet64BN, (32, 48))]
)
def test_output_is_logits_of_the_input_size(cls: type, size: tuple[int, int]) -> None:
    model = cls(in_channels=1, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, *size))
    assert out.shape == (2, 3, *size)
    assert torch.isfinite(out).all()
    # Raw logits, not log-probabilities: the class scores do not log-sum-exp to 0.
    assert not torch.allclose(out.logsumexp(dim=1), torch.zeros(2, *size), atol=1e-3)


@pytest.mark.parametrize("name", ["unet32", "unet64bn"])
def test_every_parameter_gets_a_finite_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, in_channels=1, num_classes=2)
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[:, 8:20, 10:24] = 1
    loss = torch.nn.functional.cross_entropy(model(torch.rand(2, 1, 32, 32)), target)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize(("name", "bad"), [("unet32", (48, 64)), ("unet64bn", (32, 40))])
def test_bad_input_size_is_a_value_error(name: str, bad: tuple[int, int]) -> None:
    model = create_model(name)
    with pytest.raises(ValueError, match=f"{bad[0]}x{bad[1]}"):
        model(torch.rand(1, 1, *bad))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown model 'unet'"):
        create_model("unet")
    with pytest.raises(ValueError, match="num_classes"):
        create_model("unet32", 1, 0)
    with pytest.raises(ValueError, match="expected an image batch"):
        create_model("unet32")(torch.rand(1, 32, 32))
