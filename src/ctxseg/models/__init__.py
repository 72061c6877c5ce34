"""Networks: the U-Nets (SPEC §4) by name, and the discriminators of Seg-GLGAN.

Example:
    >>> model = create_model("unet32", in_channels=1, num_classes=2)
    >>> model.size_multiple
    32
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ctxseg.models.unet import UNet32, UNet64BN

__all__ = ["MODELS", "UNet32", "UNet64BN", "create_discriminator", "create_model"]

MODELS: dict[str, type[nn.Module]] = {"unet32": UNet32, "unet64bn": UNet64BN}


def create_model(name: str, in_channels: int = 1, num_classes: int = 2, **kwargs: Any) -> nn.Module:
    """Build a segmentation network by name.

    Args:
        name: ``"unet32"`` (context-CE experiments) or ``"unet64bn"`` (GAN experiments).
        in_channels: image channels.
        num_classes: classes, background included.
        **kwargs: further constructor arguments of the network.

    Returns:
        The network; it outputs raw logits ``(B, num_classes, H, W)`` and has an int attribute
        ``size_multiple`` that H and W must be multiples of.

    Raises:
        ValueError: unknown name, or a channel / class count below 1.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return MODELS[name](in_channels=in_channels, num_classes=num_classes, **kwargs)


def create_discriminator(*args: Any, **kwargs: Any) -> nn.Module:
    """Build a Seg-GLGAN discriminator; see ``ctxseg.models.discriminator.create_discriminator``.

    Imported lazily so that the U-Nets do not depend on the discriminator module.
    """
    from ctxseg.models.discriminator import create_discriminator as _create

    return _create(*args, **kwargs)
