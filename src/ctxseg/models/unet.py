"""The two U-Nets of the paper's experiments (SPEC §4).

``UNet32`` is the network of the authors' context-CE experiments (no normalisation,
nearest-neighbour upsampling, a x4 pooling into the bottom level); ``UNet64BN`` is the classic
BatchNorm U-Net of their GAN experiments. Both return raw logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet32", "UNet64BN"]


def _check_size(x: torch.Tensor, multiple: int, name: str) -> None:
    """Raise a clear ``ValueError`` for an input the network cannot take."""
    if x.dim() != 4:
        raise ValueError(
            f"{name}: expected an image batch (B, C, H, W), got shape {tuple(x.shape)}"
        )
    height, width = x.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(
            f"{name}: input size {height}x{width} is not a multiple of {multiple}; "
            f"crop or pad the image to a multiple of {multiple}"
        )


class _DoubleConv(nn.Sequential):
    """Two 3x3 convolutions (padding 1, bias), each followed by ReLU, optionally BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool) -> None:
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers.append(nn.Conv2d(c_in, out_channels, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UNet32(nn.Module):
    """U-Net of the authors' context-CE experiments ("unet32", SPEC §4).

    Five levels of 32, 64, 128, 256, 512 channels, two 3x3 conv + ReLU per level, no
    normalisation; max-pool 2 three times then max-pool 4 into the bottom level; nearest
    upsampling (x4 from the bottom, then x2), concatenation with the skip, two 3x3 convs; 1x1
    output conv. 7,846,114 parameters for one input channel and two classes.

    Args:
        in_channels: image channels.
        num_classes: output channels (classes, background included).

    Shape:
        - Input: ``(B, in_channels, H, W)`` with H and W multiples of 32.
        - Output: ``(B, num_classes, H, W)`` raw logits.
    """

    size_multiple = 32
    _widths = (32, 64, 128, 256, 512)
    _pools = (2, 2, 2, 4)  # pooling factor below each of the first four levels

    def __init__(self, in_channels: int = 1, num_classes: int = 2) -> None:
        super().__init__()
        w = self._widths
        chans = (in_channels, *w[:-2])  # inputs of the first four levels
        self.down = nn.ModuleList(
            _DoubleConv(c_in, c_out, batch_norm=False)
            for c_in, c_out in zip(chans, w[:-1], strict=True)
        )
        self.bottom = _DoubleConv(w[-2], w[-1], batch_norm=False)
        # Decoder level i takes the upsampled level below (w[i + 1]) concatenated with skip w[i].
        self.up = nn.ModuleList(
            _DoubleConv(w[i + 1] + w[i], w[i], batch_norm=False) for i in reversed(range(4))
        )
        self.head = nn.Conv2d(w[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_size(x, self.size_multiple, "unet32")
        skips = []
        for block, pool in zip(self.down, self._pools, strict=True):
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, pool)
        x = self.bottom(x)  # (B, 512, H/32, W/32)
        for block, pool in zip(self.up, reversed(self._pools), strict=True):
            skip = skips.pop()
            x = F.interpolate(x, scale_factor=pool, mode="nearest")
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


class _UpBN(nn.Module):
    """2x2 transposed conv + BatchNorm + ReLU, concatenation with the skip, double conv.

    The BatchNorm + ReLU after the transposed conv is the authors' ``UNetUpBlock``; it is what
    makes the parameter count 31,044,354 (SPEC §4).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.upconv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.upnorm = nn.BatchNorm2d(out_channels)
        self.conv = _DoubleConv(2 * out_channels, out_channels, batch_norm=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.upnorm(self.upconv(x)), inplace=True)
        return self.conv(torch.cat([x, skip], dim=1))


class UNet64BN(nn.Module):
    """Classic BatchNorm U-Net of the authors' GAN experiments ("unet64bn", SPEC §4).

    64-128-256-512-1024 channels, (3x3 conv, BatchNorm, ReLU) x2 per level, max-pool 2 four
    times, 2x2 transposed-conv upsampling (+ BatchNorm + ReLU), 1x1 output conv. 31,044,354
    parameters for one input channel and two classes.

    Args:
        in_channels: image channels.
        num_classes: output channels (classes, background included).

    Shape:
        - Input: ``(B, in_channels, H, W)`` with H and W multiples of 16.
        - Output: ``(B, num_classes, H, W)`` raw logits.
    """

    size_multiple = 16
    _widths = (64, 128, 256, 512, 1024)

    def __init__(self, in_channels: int = 1, num_classes: int = 2) -> None:
        super().__init__()
        w = self._widths
        chans = (in_channels, *w[:-2])  # inputs of the first four levels
        self.down = nn.ModuleList(
            _DoubleConv(c_in, c_out, batch_norm=True)
            for c_in, c_out in zip(chans, w[:-1], strict=True)
        )
        self.bottom = _DoubleConv(w[-2], w[-1], batch_norm=True)
        self.up = nn.ModuleList(_UpBN(w[i + 1], w[i]) for i in reversed(range(4)))
        self.head = nn.Conv2d(w[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_size(x, self.size_multiple, "unet64bn")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)  # (B, 1024, H/16, W/16)
        for block in self.up:
            x = block(x, skips.pop())
        return self.head(x)
