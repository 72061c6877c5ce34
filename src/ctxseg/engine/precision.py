"""The fast path of a device: bf16 autocast and channels-last, chosen once and recorded.

Training, validation, ``evaluate`` and ``predict`` all take the same path, so a checkpoint is
selected on the numbers that are reported (the ``train.amp`` / ``train.channels_last`` keys,
or ``--amp`` / ``--channels-last`` of the inference verbs):

- ``amp: auto`` uses bf16 autocast on CUDA and on CPUs that compute bf16 natively
  (``avx512_bf16`` or ``amx_bf16`` in the CPU flags: Intel Cooper Lake / Sapphire Rapids and
  later, AMD Zen 4 and later), and fp32 elsewhere (emulated bf16 is slower than fp32).
  ``amp: bf16`` forces bf16, ``amp: off`` forces fp32.
- ``channels_last: auto`` uses the channels-last memory format on CUDA and on x86 CPUs whose
  PyTorch kernels use AVX-512 (oneDNN's convolutions are faster in NHWC there, measured in
  ``benchmarks/bench_precision.py``), and the default format elsewhere.

Under autocast the convolutions run in bf16; losses, softmax and the metrics stay float32
(the trainer casts the logits up before the loss).
"""

from __future__ import annotations

import functools
import platform
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["FastPath", "cpu_bf16_flags", "inference_fast_path", "resolve_fast_path"]

AMP_CHOICES = ("auto", "bf16", "off")
CHANNELS_LAST_CHOICES = ("auto", "on", "off")
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_bf16_flags() -> tuple[str, ...]:
    """The native-bf16 CPU flags of this machine (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return tuple(f for f in _NATIVE_BF16_FLAGS if f in flags)


@dataclass(frozen=True)
class FastPath:
    """How a model runs on a device.

    Attributes:
        device_type: ``"cpu"`` or ``"cuda"``.
        bf16: bf16 autocast on.
        channels_last: channels-last memory format for the model and its inputs.
        reason: why, in words (logged and saved in the run folder).
    """

    device_type: str
    bf16: bool
    channels_last: bool
    reason: str

    def autocast(self) -> AbstractContextManager:
        """bf16 autocast on this device, or a no-op context."""
        if self.bf16:
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return nullcontext()

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def to_dict(self) -> dict[str, Any]:
        """The choice and the machine it was made on, for the run folder."""
        return {
            **asdict(self),
            "precision": self.precision,
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_bf16_flags": list(cpu_bf16_flags()),
            "threads": torch.get_num_threads(),
        }


def resolve_fast_path(
    device: torch.device | str, amp: str | bool = "auto", channels_last: str | bool = "auto"
) -> FastPath:
    """Choose bf16 / channels-last for ``device`` from the ``auto | bf16 | off`` settings.

    Args:
        device: where the model runs.
        amp: ``"auto"``, ``"bf16"`` or ``"off"`` (``False`` means ``"off"``, ``True``
            ``"bf16"``).
        channels_last: ``"auto"``, ``"on"`` or ``"off"`` (booleans accepted likewise).

    Raises:
        ValueError: an unknown setting.
    """
    device = torch.device(device)
    amp = {False: "off", True: "bf16"}.get(amp, amp) if isinstance(amp, bool) else amp
    if isinstance(channels_last, bool):
        channels_last = "on" if channels_last else "off"
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {AMP_CHOICES}, got {amp!r}")
    if channels_last not in CHANNELS_LAST_CHOICES:
        raise ValueError(
            f"channels_last must be one of {CHANNELS_LAST_CHOICES}, got {channels_last!r}"
        )
    cuda = device.type == "cuda"
    flags = cpu_bf16_flags()
    if amp == "auto":
        bf16 = cuda or (device.type == "cpu" and bool(flags))
        if cuda:
            why = "bf16 autocast (CUDA)"
        elif bf16:
            why = f"bf16 autocast (the CPU has native bf16: {', '.join(flags)})"
        else:
            why = "fp32 (no native bf16 on this device)"
    else:
        bf16 = amp == "bf16"
        why = f"{'bf16 autocast' if bf16 else 'fp32'} (amp: {amp})"
    avx512 = device.type == "cpu" and torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    if channels_last == "auto":
        fast_nhwc = cuda or avx512
        why += ", channels-last" if fast_nhwc else ", default memory format"
    else:
        fast_nhwc = channels_last == "on"
        layout = "channels-last" if fast_nhwc else "default memory format"
        why += f", {layout} (channels_last: {channels_last})"
    return FastPath(device.type, bf16, fast_nhwc, why)


def inference_fast_path(
    model: torch.nn.Module,
    checkpoint: dict[str, Any],
    device: torch.device | str,
    amp: str | None = None,
    channels_last: str | None = None,
) -> FastPath:
    """The fast path for inference with a checkpoint's model: the run's own settings by default.

    ``evaluate`` and ``predict`` run the network as its training run validated it
    (``train.amp`` / ``train.channels_last`` of the stored config, resolved on ``device``), so
    the reported numbers come from the path that selected the checkpoint. The model is moved
    to the channels-last format when the path uses it.

    Args:
        model: the checkpoint's network, on ``device``.
        checkpoint: the checkpoint dict (its ``config``).
        device: where the model runs.
        amp: override of ``train.amp`` (``auto | bf16 | off``), or None.
        channels_last: override of ``train.channels_last`` (``auto | on | off``), or None.
    """
    train = (checkpoint.get("config") or {}).get("train") or {}
    fast = resolve_fast_path(
        device,
        amp if amp is not None else train.get("amp", "auto"),
        channels_last if channels_last is not None else train.get("channels_last", "auto"),
    )
    if fast.channels_last:
        model.to(memory_format=torch.channels_last)
    return fast
