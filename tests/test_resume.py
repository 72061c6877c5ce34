"""Resume: a run stopped at any point and resumed ends with the weights of an uninterrupted run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ctxseg.engine.checkpoint import load_checkpoint
from ctxseg.engine.config import load_config
from ctxseg.engine.progress import read_metrics
from ctxseg.engine.trainer import Trainer
from test_trainer import make_store, run_cli, write_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The config (2 epochs) and the folder of an uninterrupted run of it."""
    tmp = tmp_path_factory.mktemp("resume")
    root = make_store(tmp / "tiny")
    config_path = write_config(tmp / "c.yaml", root)
    run = tmp / "straight"
    Trainer(load_config(config_path), run, quiet=True).fit()
    return config_path, run


def assert_same_run(run: Path, reference: Path) -> None:
    """Bit-identical weights and optimiser state, and the same metrics rows (bar the time)."""
    got = load_checkpoint(run / "checkpoint_last.pt")
    want = load_checkpoint(reference / "checkpoint_last.pt")
    assert got["epoch"] == want["epoch"] == 2
    assert got["model"].keys() == want["model"].keys()
    for key, value in want["model"].items():
        assert torch.equal(got["model"][key], value), key
    for index, state in want["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(got["optimizer"]["state"][index][name], value), (index, name)
    assert got["best"] == want["best"]
    rows, ref = (  # repr: NaN (an HD mean with no finite value) must compare equal to itself
        [{k: repr(v) for k, v in row.items() if k != "time"} for row in read_metrics(d)]
        for d in (run / "metrics.csv", reference / "metrics.csv")
    )
    assert rows == ref and [r["epoch"] for r in rows] == ["1", "2"]


def test_resume_at_an_epoch_boundary(straight: tuple[Path, Path], tmp_path: Path) -> None:
    config_path, reference = straight
    run = tmp_path / "run"
    Trainer(load_config(config_path, ["train.epochs=1"]), run, quiet=True).fit()
    assert load_checkpoint(run / "checkpoint_last.pt")["epoch"] == 1
    assert run_cli("train", config_path, "--out", run, "--resume", "--quiet") == 0
    assert_same_run(run, reference)


def test_resume_after_a_crash_mid_epoch(straight: tuple[Path, Path], tmp_path: Path) -> None:
    class Crashing(Trainer):
        steps = 0

        def train_step(self, image: torch.Tensor, target: torch.Tensor) -> dict:
            Crashing.steps += 1
            if Crashing.steps == 4:  # the 2nd step of the 2nd epoch, after a first step in it
                raise KeyboardInterrupt("killed")
            return super().train_step(image, target)

    config_path, reference = straight
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        Crashing(load_config(config_path), run, quiet=True).fit()
    assert load_checkpoint(run / "checkpoint_last.pt")["epoch"] == 1
    Trainer(load_config(config_path), run, quiet=True, resume=True).fit()
    assert_same_run(run, reference)


def test_resume_after_sigkill(straight: tuple[Path, Path], tmp_path: Path) -> None:
    """A training process killed with SIGKILL (wherever it is after its first checkpoint)."""
    config_path, reference = straight
    run = tmp_path / "run"
    command = [sys.executable, "-m", "ctxseg", "train", str(config_path), "--out", str(run)]
    process = subprocess.Popen([*command, "--quiet"], cwd=REPO, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint_last.pt").exists() and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
    finally:
        process.kill()
        _, stderr = process.communicate()
    assert process.returncode in (0, -9), stderr.decode()
    assert run_cli("train", config_path, "--out", run, "--resume", "--quiet") == 0
    assert_same_run(run, reference)


def test_resume_refuses_a_changed_config(straight: tuple[Path, Path], tmp_path: Path) -> None:
    config_path, reference = straight
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in \['optim.lr'\]"):
        Trainer(load_config(config_path, ["optim.lr=0.5"]), reference, resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        Trainer(load_config(config_path), tmp_path / "empty", resume=True)
