"""DDP under torchrun: two CPU processes (gloo) train one run, written once by rank 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from ctxseg.engine.checkpoint import load_checkpoint
from ctxseg.engine.config import load_config
from ctxseg.engine.progress import read_metrics
from ctxseg.engine.sampling import epoch_plan, shard_batches
from ctxseg.engine.trainer import Trainer
from test_trainer import make_store, write_config

REPO = Path(__file__).resolve().parents[1]


def test_shards_of_a_batch_are_disjoint_equal_and_make_the_whole_batch() -> None:
    order, _ = epoch_plan(11, seed=5, world_size=3)
    assert order.shape == (12,) and sorted(order[:11].tolist()) == list(range(11))
    assert torch.equal(order[11:], order[:1])  # padded with the first slice
    single = [index for _, index in shard_batches(order, 6)]
    parts = [[index for _, index in shard_batches(order, 6, rank, 3)] for rank in range(3)]
    for b, batch in enumerate(single):
        shares = [parts[rank][b] for rank in range(3)]
        assert {len(s) for s in shares} == {len(batch) // 3}
        merged = torch.stack(shares, dim=1).reshape(-1)  # rank r holds positions r, r + 3, ...
        assert torch.equal(merged, batch)


def test_two_process_gloo_run_writes_one_valid_run_folder(tmp_path: Path) -> None:
    root = make_store(tmp_path / "tiny")
    # Plain CE and SGD in fp32, so that the 2-process run must match one process on the same
    # global batches up to float rounding (Adam would amplify rounding in near-zero gradients;
    # bf16 rounding is coarser than the comparison's tolerance).
    config_path = write_config(
        tmp_path / "c.yaml",
        root,
        loss={"name": "ce"},
        optim={"name": "sgd", "lr": 0.1},
        train={"epochs": 1, "batch_size": 4, "amp": "off"},
    )
    run = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "ctxseg", "train", str(config_path), "--out", str(run), "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=240)
    assert done.returncode == 0, done.stderr.decode()[-3000:]

    # One run folder, only rank 0's files, no leftovers of atomic writes.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "ddp", "tiny"]
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint_best.pt",
        "checkpoint_last.pt",
        "config.yaml",
        "metrics.csv",
        "progress.png",
        "runtime.json",
    ]
    rows = read_metrics(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1]
    ddp = load_checkpoint(run / "checkpoint_last.pt")
    assert ddp["epoch"] == 1
    assert not any(key.startswith("module.") for key in ddp["model"])  # the unwrapped model

    single_run = tmp_path / "single"
    Trainer(load_config(config_path), single_run, quiet=True).fit()
    single = load_checkpoint(single_run / "checkpoint_last.pt")
    for key, value in single["model"].items():
        assert torch.allclose(ddp["model"][key], value, rtol=1e-4, atol=1e-6), key
    single_loss = read_metrics(single_run / "metrics.csv")[0]["train_loss"]
    assert abs(rows[0]["train_loss"] - single_loss) < 1e-5
