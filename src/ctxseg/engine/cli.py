"""``ctxseg train``: the training verb."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

__all__ = ["add_override_argument", "register_cli", "resume_command", "run_train"]

log = logging.getLogger(__name__)


def add_override_argument(parser: argparse.ArgumentParser, example: str) -> None:
    """The ``--set KEY=VALUE`` option (repeatable) of the verbs that load experiment configs."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=(
            f"override a config value, repeatable (default: none); {example}. An override that "
            "changes the kind of experiment (loss, ROI, discriminator) also needs a new name: "
            "--set experiment=NAME"
        ),
    )


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ctxseg train``."""
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
    add_override_argument(parser, "e.g. --set loss.lambda_roi=0.5")
    parser.add_argument(
        "--epochs", type=int, help="shortcut for --set train.epochs=N (default: the config's)"
    )
    parser.add_argument(
        "--out", type=Path, help="run folder (default: runs/<dataset>/<experiment>)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from checkpoint_last.pt (a run stopped before its first one starts over)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing run in the run folder"
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        help="where to train (default: the config's train.device)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    parser.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    """``ctxseg train``: load the config, build the trainer, fit."""
    from ctxseg.engine.config import load_config
    from ctxseg.engine.factory import create_trainer
    from ctxseg.engine.trainer import NonFiniteError
    from ctxseg.errors import CLIError

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
    except KeyboardInterrupt:  # Ctrl-C: where the run stands and how to go on, in one line
        if trainer.is_main:
            print(
                f"ctxseg train: {_interrupted(args, run_dir, config.train.epochs)}", file=sys.stderr
            )
        return 130
    if trainer.is_main:
        best = summary["best_value"]
        shown = "n/a" if best is None else f"{best:.4f} (epoch {summary['best_epoch']})"
        log.info("finished %s: best validation mean Dice %s", run_dir, shown)
    return 0


def resume_command(args: argparse.Namespace, run_dir: Path) -> str:
    """The shell command that resumes the run ``args`` started (same config and overrides)."""
    argv = ["ctxseg", "train", str(args.config)]
    for override in args.overrides:
        argv += ["--set", override]
    if args.epochs is not None:
        argv += ["--epochs", str(args.epochs)]
    argv += ["--out", str(run_dir)]
    if args.device is not None:
        argv += ["--device", args.device]
    if args.quiet:
        argv.append("--quiet")
    return shlex.join([*argv, "--resume"])


def _interrupted(args: argparse.Namespace, run_dir: Path, epochs: int) -> str:
    from ctxseg.engine.checkpoint import checkpoint_epoch

    last = run_dir / "checkpoint_last.pt"
    epoch = checkpoint_epoch(last) if last.is_file() else None
    if epoch is None:
        where = f"no checkpoint was written yet in {run_dir}"
    else:
        where = f"the last checkpoint is {last} (epoch {epoch} of {epochs})"
    return f"interrupted; {where}; continue with: {resume_command(args, run_dir)}"
