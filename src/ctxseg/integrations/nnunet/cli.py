"""``ctxseg nnunet-path``: print the folder to put in ``nnUNet_extTrainer``.

Usage: ``export nnUNet_extTrainer=$(ctxseg nnunet-path)``, then
``nnUNetv2_train DATASET 3d_fullres 0 -tr nnUNetTrainerContextCE``.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

__all__ = ["register_cli", "trainer_path"]


def trainer_path() -> Path:
    """The folder holding the module that exports ctxseg's nnU-Net trainers.

    Raises:
        ValueError: nnU-Net v2 is not installed (the trainers could not be imported).
    """
    if importlib.util.find_spec("nnunetv2") is None:
        raise ValueError("nnU-Net v2 is not installed: pip install 'ctxseg[nnunet]'")
    return Path(__file__).resolve().parent / "ext"


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ctxseg nnunet-path``."""
    parser = subparsers.add_parser(
        "nnunet-path",
        help="print the folder to put in nnUNet_extTrainer (nnU-Net v2 context-CE trainers)",
        description=(
            "Print the folder holding ctxseg's nnU-Net v2 trainers (nnUNetTrainerContextCE, "
            "nnUNetTrainerContextCEOnly). Use: export nnUNet_extTrainer=$(ctxseg nnunet-path). "
            "Several folders may be joined with ':'. Details: docs/nnunet.md."
        ),
    )
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    print(trainer_path())
    return 0
