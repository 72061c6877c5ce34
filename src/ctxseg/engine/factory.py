"""The trainer a config asks for (kept apart from both trainers, so neither imports the other)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctxseg.engine.adversarial import AdversarialTrainer
from ctxseg.engine.config import Config
from ctxseg.engine.trainer import Trainer

__all__ = ["create_trainer"]


def create_trainer(config: Config, run_dir: str | Path, **kwargs: Any) -> Trainer:
    """:class:`AdversarialTrainer` when ``config.adversarial`` is set, else :class:`Trainer`."""
    cls = AdversarialTrainer if config.adversarial is not None else Trainer
    return cls(config, run_dir, **kwargs)
