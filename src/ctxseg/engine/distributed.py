"""Device choice and the process group for DDP under ``torchrun`` (one process per device).

``torchrun --nproc_per_node N -m ctxseg train ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; :meth:`DistContext.from_env` then joins the process group (NCCL on CUDA, gloo
on CPU). Without those variables everything here is a no-op, so one code path serves both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistContext", "resolve_device"]


def resolve_device(name: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``; under DDP ``cuda:LOCAL_RANK``.

    Raises:
        ValueError: CUDA asked for but not available, or an unknown name.
    """
    if isinstance(name, torch.device):
        return name
    name = name or "auto"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        return torch.device(name) if ":" in name else torch.device("cuda", local_rank)
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")


@dataclass
class DistContext:
    """This process's place in a (possibly one-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device_name: str | None) -> DistContext:
        """Join the process group described by the ``torchrun`` environment, if any."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        owns = False
        if not dist.is_initialized():
            device = resolve_device(device_name, local_rank)
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            owns = True
        return cls(rank=rank, world_size=world_size, local_rank=local_rank, owns_group=owns)

    def barrier(self) -> None:
        if self.enabled:
            # NCCL wants to know this process's GPU (else it guesses from the rank and warns).
            cuda = dist.get_backend() == "nccl"
            dist.barrier(device_ids=[torch.cuda.current_device()] if cuda else None)

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of ``tensor`` over the processes (in place; returns it)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor /= self.world_size
        return tensor

    def close(self) -> None:
        """Wait for every process, then leave the group if this context joined it."""
        if self.enabled:
            self.barrier()
            if self.owns_group:
                dist.destroy_process_group()
                self.owns_group = False
