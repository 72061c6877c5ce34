"""nnU-Net v2 end to end with the context-CE trainer: raw phantom -> plan -> train -> predict.

Runs nnU-Net's own commands, as the README tells a user to, on a tiny phantom (6 volumes of
16 x 32 x 32 voxels, two labels) in 2d and 3d_fullres on the CPU. nnU-Net trains 250
iterations per epoch for 1000 epochs; this test shortens that with a subclass written to a
folder that joins ``nnUNet_extTrainer`` beside ``ctxseg nnunet-path`` (nnU-Net's supported way
to add trainers; its own ``nnUNetTrainer_1epoch`` still runs 250 iterations): 1 epoch of 2
training and 1 validation iterations. Opt-in: ``pytest --run-slow tests/test_nnunet_e2e.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "nnunetv2",
    reason="nnU-Net v2 is not installed: pip install 'ctxseg[nnunet]' (make install does)",
)
SimpleITK = pytest.importorskip("SimpleITK")

from ctxseg.integrations.nnunet.cli import trainer_path  # noqa: E402

pytestmark = pytest.mark.slow

DATASET_ID = 951
DATASET = f"Dataset{DATASET_ID}_CtxsegToy"
SHAPE = (16, 32, 32)  # (z, y, x)
SPACING_XYZ = (1.0, 1.0, 2.0)  # SimpleITK order
SHORT_TRAINER = "nnUNetTrainerContextCE_tiny"
SHORT_TRAINER_SOURCE = f'''
"""Test-only: nnUNetTrainerContextCE shortened to 1 epoch of 2 + 1 iterations."""

import torch

from ctxseg.integrations.nnunet.trainers import nnUNetTrainerContextCE


class {SHORT_TRAINER}(nnUNetTrainerContextCE):
    # nnU-Net records the __init__ arguments by name: the signature must stay its own.
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1
'''


def phantom_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (z, y, x) volume: a bright ellipsoid (label 1) holding a darker blob (label 2)."""
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in SHAPE), indexing="ij")
    cz, cy, cx = rng.uniform(6, 10), rng.uniform(12, 20), rng.uniform(12, 20)
    organ = ((z - cz) / 5) ** 2 + ((y - cy) / 9) ** 2 + ((x - cx) / 8) ** 2 <= 1
    lesion = ((z - cz) / 2) ** 2 + ((y - cy - 2) / 3) ** 2 + ((x - cx) / 3) ** 2 <= 1
    label = np.where(lesion, 2, np.where(organ, 1, 0)).astype(np.uint8)
    image = 100 + 300 * organ - 150 * lesion + rng.normal(0, 20, SHAPE)
    return image.astype(np.float32), label


def write_raw_dataset(raw: Path, cases: int = 6) -> Path:
    """nnU-Net's raw layout: imagesTr/, labelsTr/, imagesTs/ and dataset.json."""
    root = raw / DATASET
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)

    def write(array: np.ndarray, path: Path) -> None:
        image = SimpleITK.GetImageFromArray(array)
        image.SetSpacing(SPACING_XYZ)
        SimpleITK.WriteImage(image, str(path))

    for i in range(cases):
        image, label = phantom_case(rng)
        write(image, root / "imagesTr" / f"toy_{i:03d}_0000.nii.gz")
        write(label, root / "labelsTr" / f"toy_{i:03d}.nii.gz")
    image, _ = phantom_case(rng)
    write(image, root / "imagesTs" / "toy_900_0000.nii.gz")
    info = {
        "channel_names": {"0": "MR"},
        "labels": {"background": 0, "organ": 1, "lesion": 2},
        "numTraining": cases,
        "file_ending": ".nii.gz",
        "name": "CtxsegToy",
    }
    (root / "dataset.json").write_text(json.dumps(info, indent=2))
    return root


def run(command: list[str], env: dict[str, str], log: Path) -> str:
    """Run one nnU-Net command; its output goes to ``log``; fail with the log's tail."""
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    log.write_text(output)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}:\n{output[-4000:]}")
    return output


def test_plan_train_and_predict_with_the_context_ce_trainer(tmp_path: Path) -> None:
    try:
        import torchvision  # noqa: F401
    except Exception as err:  # a CUDA torchvision beside a CPU torch raises RuntimeError
        pytest.skip(
            "nnU-Net's trainer search imports its Primus trainers, which need timm and so a "
            f"torchvision that loads; here it does not ({type(err).__name__}: {err})"
        )
    raw = write_raw_dataset(tmp_path / "raw")
    extra = tmp_path / "short_trainers"
    extra.mkdir()
    (extra / "ctxseg_test_short_trainers.py").write_text(SHORT_TRAINER_SOURCE)
    env = dict(os.environ)
    for var in list(env):
        if var.startswith("CTXSEG_ROI") or var == "CTXSEG_LAMBDA_ROI":
            del env[var]  # the defaults: dynamic ROI, lambda 1
    env.update(
        nnUNet_raw=str(tmp_path / "raw"),
        nnUNet_preprocessed=str(tmp_path / "preprocessed"),
        nnUNet_results=str(tmp_path / "results"),
        nnUNet_extTrainer=os.pathsep.join([str(trainer_path()), str(extra)]),
        nnUNet_n_proc_DA="1",  # planning sets torch's threads to it: must be >= 1
        nnUNet_def_n_proc="1",  # the final validation's export pool: 8 spawned workers otherwise
        nnUNet_compile="f",
    )
    # Training augments in the main process with 0 (no worker processes on a 2-core CI box).
    train_env = {**env, "nnUNet_n_proc_DA": "0"}
    bin_dir = Path(sys.executable).parent
    logs = tmp_path / "logs"
    logs.mkdir()
    run(
        [str(bin_dir / "nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "2d",
         "3d_fullres", "-np", "1", "--verify_dataset_integrity"],
        env,
        logs / "plan.txt",
    )  # fmt: skip
    for config in ("2d", "3d_fullres"):
        out = run(
            [str(bin_dir / "nnUNetv2_train"), str(DATASET_ID), config, "0", "-tr", SHORT_TRAINER,
             "-device", "cpu"],
            train_env,
            logs / f"train_{config}.txt",
        )  # fmt: skip
        # Our loss was built, with the default settings, and the epoch's loss is a number.
        assert "ctxseg: Dice + context CE, roi=dynamic margin=0 min_size=1 lambda_roi=1" in out
        losses = [float(v) for v in re.findall(r"train_loss (-?\d+\.\d+)", out)]
        assert len(losses) == 1 and np.isfinite(losses[0]), out[-2000:]
        fold = tmp_path / "results" / DATASET / f"{SHORT_TRAINER}__nnUNetPlans__{config}" / "fold_0"
        assert (fold / "checkpoint_final.pth").is_file()
        assert (fold / "validation" / "summary.json").is_file()
        pred_dir = tmp_path / f"pred_{config}"
        run(
            [str(bin_dir / "nnUNetv2_predict"), "-i", str(raw / "imagesTs"), "-o", str(pred_dir),
             "-d", str(DATASET_ID), "-c", config, "-f", "0", "-tr", SHORT_TRAINER, "-device",
             "cpu", "-npp", "1", "-nps", "1", "--disable_progress_bar"],
            env,
            logs / f"predict_{config}.txt",
        )  # fmt: skip
        pred = SimpleITK.ReadImage(str(pred_dir / "toy_900.nii.gz"))
        array = SimpleITK.GetArrayFromImage(pred)
        assert array.shape == SHAPE and pred.GetSpacing() == pytest.approx(SPACING_XYZ)
        assert set(np.unique(array).tolist()) <= {0, 1, 2}
