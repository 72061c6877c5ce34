"""The order of an epoch's slices, a function of ``(seed, epoch)``, and its split between processes.

Everything random about an epoch (its shuffle, its augmentation) is drawn from a generator
seeded with :func:`epoch_seed`, so an epoch repeats exactly whenever it is run again: that is
what makes a resumed run equal to an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ctxseg.engine.augment import draw_augment

__all__ = ["epoch_plan", "epoch_seed", "shard_batches"]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's randomness, a function of the run seed and the 0-based epoch."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)


def shard_batches(
    order: torch.Tensor, batch_size: int, rank: int = 0, world_size: int = 1
) -> Iterator[tuple[int, torch.Tensor]]:
    """This process's part of each global batch of an epoch's slice order.

    Global batch ``b`` is ``order[b * batch_size : (b + 1) * batch_size]``; process ``rank``
    takes every ``world_size``-th element of it, so the processes' parts of a batch are
    disjoint, of equal size (``len(order)`` and ``batch_size`` are multiples of
    ``world_size``) and together the batch a single process would use.

    Yields:
        ``(start, index)``: the batch's first position in ``order`` and this process's indices.
    """
    for start in range(0, order.shape[0], batch_size):
        yield start, order[start : start + batch_size][rank::world_size]


def epoch_plan(
    n: int, seed: int, world_size: int = 1, augment: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The shuffled slice order of an epoch and, when augmenting, each position's parameters.

    As ``DistributedSampler``, the order is padded with its first elements to a multiple of
    ``world_size`` so that every process gets the same number of slices.

    Args:
        n: number of training slices.
        seed: the epoch's seed (:func:`epoch_seed`).
        world_size: number of processes.
        augment: also draw augmentation parameters (:func:`ctxseg.engine.augment.draw_augment`).

    Returns:
        ``(order, params)``: int64 ``(n + pad,)`` and float32 ``(n + pad, 4)`` or None; on CPU.
    """
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)  # (n,)
    params = draw_augment(n, generator) if augment else None
    pad = (-n) % world_size
    order = torch.cat([order, order[:pad]])  # (n + pad,)
    if params is not None:
        params = torch.cat([params, params[:pad]])  # (n + pad, 4)
    return order, params
