"""The engine's verbs: ``train`` here; ``evaluate``, ``predict``, ``demo``, ``table`` elsewhere."""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path

__all__ = ["register"]

log = logging.getLogger(__name__)

# Modules that add one verb each through ``register_cli(subparsers)``.
_VERB_MODULES = (
    "ctxseg.engine.evaluate",
    "ctxseg.engine.predict",
    "ctxseg.engine.demo",
    "ctxseg.engine.table",
    "ctxseg.integrations.nnunet.cli",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train``, ``evaluate``, ``predict``, ``demo`` and ``table`` to ``ctxseg``."""
    parser = subparsers.add_parser(
        "train",
        help="train a network from an experiment config",
        description=(
            "Train from an experiment YAML (configs/<dataset>/<experiment>.yaml, or the shipped "
            "<dataset>/<experiment> by name). The run folder "
            "(default runs/<dataset>/<experiment>) receives config.yaml, metrics.csv, "
            "checkpoint_last.pt, checkpoint_best.pt and progress.png. Several processes: "
            "torchrun --nproc_per_node N -m ctxseg train CONFIG."
        ),
    )
    parser.add_argument(
        "config", help="experiment YAML file, or a shipped one by name, e.g. promise12/unet_ce"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set loss.lambda_roi=0.5 (repeatable)",
    )
    parser.add_argument("--epochs", type=int, help="shortcut for --set train.epochs=N")
    parser.add_argument("--out", type=Path, help="run folder (default runs/<dataset>/<experiment>)")
    parser.add_argument("--resume", action="store_true", help="continue from checkpoint_last.pt")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing run in the run folder"
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), help="default: the config's train.device"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    parser.set_defaults(func=run_train)
    for name in _VERB_MODULES:
        importlib.import_module(name).register_cli(subparsers)


def run_train(args: argparse.Namespace) -> int:
    """``ctxseg train``: load the config, build the trainer, fit."""
    from ctxseg.cli import CLIError
    from ctxseg.engine.config import load_config
    from ctxseg.engine.trainer import NonFiniteError, create_trainer

    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    config = load_config(args.config, overrides)
    run_dir = args.out or Path("runs") / config.dataset_name() / config.experiment
    trainer = create_trainer(
        config,
        run_dir,
        device=args.device,
        quiet=args.quiet,
        resume=args.resume,
        overwrite=args.overwrite,
    )
    try:
        summary = trainer.fit()
    except NonFiniteError as err:
        raise CLIError(str(err)) from err
    if trainer.is_main:
        best = summary["best_value"]
        shown = "n/a" if best is None else f"{best:.4f} (epoch {summary['best_epoch']})"
        log.info("finished %s: best validation mean Dice %s", run_dir, shown)
    return 0
