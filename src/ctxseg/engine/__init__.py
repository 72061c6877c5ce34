"""Training, checkpoints and inference (SPEC §7): configs, the trainer, the run folder."""

from ctxseg.engine.checkpoint import load_checkpoint, load_model, save_checkpoint
from ctxseg.engine.config import (
    AdversarialConfig,
    Config,
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    config_from_dict,
    load_config,
)
from ctxseg.engine.factory import create_trainer
from ctxseg.engine.inference import predict_labels
from ctxseg.engine.trainer import NonFiniteError, Trainer

__all__ = [
    "AdversarialConfig",
    "Config",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "NonFiniteError",
    "OptimConfig",
    "TrainConfig",
    "Trainer",
    "config_from_dict",
    "create_trainer",
    "load_checkpoint",
    "load_config",
    "load_model",
    "predict_labels",
    "save_checkpoint",
]
