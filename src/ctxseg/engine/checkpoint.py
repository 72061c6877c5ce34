"""Checkpoints: atomic writes, safe loads (``weights_only=True``), a model rebuilt from one file.

A checkpoint is a plain dict that ``torch.load(weights_only=True)`` can read back, so it holds
only tensors and plain Python types:

- ``model``: the unwrapped model's ``state_dict``; ``optimizer``: the optimiser's;
- ``epoch``: completed epochs; ``best``: ``{"value": float | None, "epoch": int | None}``
  (mean foreground validation Dice);
- ``config``: :meth:`ctxseg.engine.config.Config.to_dict`; ``num_classes``, ``label_names``;
- ``preprocessing``: the store's ``dataset.json["preprocessing"]``, so that ``predict`` works
  from the checkpoint alone; ``image_size``;
- ``rng``: python / numpy / torch / cuda generator states as tensors and plain types;
- ``extra``: :meth:`Trainer.extra_state` (e.g. the discriminator and its optimiser);
- ``ctxseg_version``.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ctxseg import __version__

__all__ = [
    "get_rng_state",
    "link_checkpoint",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "set_rng_state",
]


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then a rename.

    A reader (or a run killed while saving) sees either the old file or the new one, never a
    half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"ctxseg_version": __version__, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def link_checkpoint(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Make ``path`` a copy of the checkpoint ``source`` atomically (a hard link when possible).

    A later :func:`save_checkpoint` to either path replaces that path only (a rename), so the
    two files never change together.
    """
    source, path = Path(source), Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable ctxseg checkpoint (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for a corrupt or foreign file
        raise ValueError(f"{path}: not a readable checkpoint ({err})") from err
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a ctxseg checkpoint (a {type(state).__name__})")
    missing = [key for key in ("model", "config", "num_classes") if key not in state]
    if missing:
        raise ValueError(f"{path}: not a ctxseg checkpoint (missing {missing})")
    return state


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network stored in a checkpoint, in eval mode on ``device``.

    Returns:
        ``(model, checkpoint)``: the model with its weights loaded and the checkpoint dict
        (config, ``num_classes``, ``label_names``, ``preprocessing``, ...).
    """
    from ctxseg.engine.config import config_from_dict
    from ctxseg.models import create_model

    state = load_checkpoint(path)
    config = config_from_dict(state["config"], source=f"{path} (stored config)")
    model = create_model(config.model.name, in_channels=1, num_classes=int(state["num_classes"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def get_rng_state() -> dict[str, Any]:
    """Every random generator's state, as tensors and plain types (``weights_only``-loadable)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`get_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
