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

import contextlib
import os
import random
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ctxseg import __version__
from ctxseg.errors import os_error_at
from ctxseg.evaluation.report import remove_partials

__all__ = [
    "checkpoint_epoch",
    "get_rng_state",
    "link_checkpoint",
    "load_checkpoint",
    "load_model",
    "remove_partial_checkpoints",
    "save_checkpoint",
    "set_rng_state",
]

# The temporary names of save_checkpoint and link_checkpoint: what a killed writer leaves.
_PARTIAL_PATTERNS = (".checkpoint_*.tmp", ".checkpoint_*.link")


class _Sink:
    """A file object for ``torch.save`` that keeps the ``OSError`` of a failed write.

    ``torch.save`` reports a failed write (a full disk) as ``RuntimeError: unexpected pos``;
    the kept error lets :func:`save_checkpoint` report the real cause instead.
    """

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.handle.flush()


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then a rename.

    A reader (or a run killed while saving) sees either the old file or the new one, never a
    half-written one. A temporary left by a killed process is removed by
    :func:`remove_partial_checkpoints` when the run folder is next used.

    Raises:
        OSError: the file could not be written (a full disk, ...); it names ``path``, the
            previous file at ``path`` is unchanged and the temporary is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"ctxseg_version": __version__, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            sink = _Sink(handle)
            try:
                torch.save(state, sink)
            except RuntimeError as err:
                if sink.error is None:
                    raise
                raise sink.error from err
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):  # a second error must not hide the first
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise os_error_at(err, path, " (the previous file is kept)") from err
        raise


def link_checkpoint(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Make ``path`` a copy of the checkpoint ``source`` atomically (a hard link when possible).

    A later :func:`save_checkpoint` to either path replaces that path only (a rename), so the
    two files never change together.

    Raises:
        OSError: naming ``path``; the previous file at ``path`` is unchanged.
    """
    source, path = Path(source), Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.link")
    try:
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:  # a file system without hard links
            shutil.copyfile(source, tmp)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise os_error_at(err, path, " (the previous file is kept)") from err
        raise


def remove_partial_checkpoints(folder: str | os.PathLike) -> list[str]:
    """Delete the temporaries of checkpoint writes that never finished (a killed process).

    Only the process that owns the run folder (its lock) may call this: another one's
    temporary may be in the middle of being written.

    Returns:
        The names of the deleted files.
    """
    return remove_partials(folder, _PARTIAL_PATTERNS)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable ctxseg checkpoint (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as handle:  # torch.save has written zip archives since torch 1.6
        head = handle.read(4)
    if head != b"PK\x03\x04":
        raise ValueError(f"{path}: not a PyTorch checkpoint file (not a zip archive)")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path}: not a readable checkpoint: truncated or corrupt (its zip archive has no "
            "end; the file was cut short)"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for a corrupt or foreign file
        raise ValueError(f"{path}: {_load_problem(err)}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a ctxseg checkpoint (a {type(state).__name__})")
    missing = [key for key in ("model", "config", "num_classes") if key not in state]
    if missing:
        raise ValueError(f"{path}: not a ctxseg checkpoint (missing {missing})")
    return state


def _load_problem(err: Exception) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused, in one line.

    Never torch's own text: it advises ``weights_only=False``, which would run the file's code.
    """
    text = str(err)
    found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"global '?([\w.]+)", text)
    if found or "Unsupported operand" in text or "weights_only" in text.replace("\n", " "):
        what = f" ({found.group(1)})" if found else ""
        return (
            f"refused: it holds Python code{what} or objects other than tensors and plain data; "
            "a ctxseg checkpoint never does, and ctxseg never runs code from a data file"
        )
    reason = next((line.strip() for line in text.splitlines() if line.strip()), type(err).__name__)
    return f"not a readable checkpoint: truncated or corrupt ({reason[:160]})"


def checkpoint_epoch(path: str | os.PathLike) -> int | None:
    """A checkpoint's ``epoch``, its tensors memory-mapped, not read; None if unreadable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(state["epoch"])
    except Exception:  # only for messages: an unreadable file has no epoch to show
        return None


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
