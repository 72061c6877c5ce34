"""Cost of a Seg-GLGAN training step against a CE step of the same generator (issue 5).

Times the real training steps of the trainers, ``Trainer.train_step`` (unet32, CE, Adam) and
``AdversarialTrainer.train_step`` (the same unet32 and CE plus one discriminator step and the
adversarial term), at 128x128, batch 16, on CPU, for the GAN (plain discriminator) and
Seg-GLGAN with a static 50x50 and a dynamic ROI. The candidates run interleaved, round after
round, so machine load hits all of them alike; the median step time of each and its ratio to
CE are printed (target: Seg-GLGAN <= 1.6x CE).

It also times the dynamic local branch alone (forward + backward): crops padded to the batch's
largest box in one pass, boxes grouped by size into at most three padded passes (the default;
both need one host sync for the sizes), and every crop padded to the whole image (no sync).

    python benchmarks/bench_gan.py [--quick] [--rounds N] [--threads T]
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _common import interleaved, machine_line, make_batch, parse_step_args, report
from ctxseg.data.store import PreparedCase, write_store
from ctxseg.engine.adversarial import discriminator_inputs
from ctxseg.engine.config import config_from_dict
from ctxseg.engine.factory import create_trainer
from ctxseg.models import create_discriminator
from ctxseg.models.roi_crop import crop_padded
from ctxseg.roi import roi_boxes

SIZE = 128
BATCH = 16

CANDIDATES: dict[str, dict | None] = {
    "ce": None,
    "gan (plain D)": {"discriminator": "plain"},
    "seg-glgan static 50": {"discriminator": "context", "roi": "static", "roi_size": 50},
    "seg-glgan dynamic": {"discriminator": "context", "roi": "dynamic", "min_roi": 20},
}


def make_store(root: Path, image: torch.Tensor, target: torch.Tensor) -> Path:
    """A one-case prepared store holding the batch (the trainers need one to start)."""
    case = PreparedCase(
        "c0",
        "p0",
        None,
        image[:, 0].numpy(),
        target.numpy().astype(np.uint8),
        (1.0, 1.0, 1.0),
    )
    meta = {"name": "bench", "labels": {"0": "background", "1": "object"}}
    splits = {"seed": 0, "train": ["c0"], "val": [], "test": []}
    return write_store(root / "store", [case], meta, splits)


def step_fn(
    adversarial: dict | None, store: Path, run_dir: Path, image: torch.Tensor, target: torch.Tensor
) -> Callable[[], None]:
    """A closure running one training step of the trainer the config selects."""
    raw = {
        "experiment": "bench",
        "data": {"root": str(store)},
        "loss": {"name": "ce"},
        "train": {"batch_size": BATCH, "device": "cpu"},
        "adversarial": adversarial,
    }
    trainer = create_trainer(config_from_dict(raw), run_dir, quiet=True)

    def step() -> None:
        trainer.train_step(image, target)

    return step


def local_branch_fns(target: torch.Tensor) -> dict[str, Callable[[], None]]:
    """The dynamic local branch (forward + backward) three ways.

    Padded to the batch's largest box in one pass (``max_groups=1``), in up to three passes of
    boxes grouped by size (the default), and every crop padded to the whole image.
    """
    torch.manual_seed(0)
    disc = create_discriminator("context", 2, SIZE, roi="dynamic")
    fake, _ = discriminator_inputs(torch.randn(len(target), 2, SIZE, SIZE), target)
    boxes, _ = roi_boxes(target, "dynamic", min_size=20)
    crops, sizes = crop_padded(fake, boxes)
    full = F.pad(crops, (0, SIZE - crops.shape[-1], 0, SIZE - crops.shape[-2]))

    def run(max_groups: int | None) -> Callable[[], None]:
        def step() -> None:
            disc.zero_grad(set_to_none=True)
            if max_groups is None:
                features = disc.local_branch(full, sizes)
            else:
                disc.max_groups = max_groups
                features = disc._dynamic_features(fake, boxes)
            features.sum().backward()

        return step

    h, w = crops.shape[-2:]
    return {
        f"one pass {h}x{w}": run(1),
        "grouped, <= 3 passes": run(3),
        f"whole image {SIZE}x{SIZE}": run(None),
    }


def main() -> None:
    args = parse_step_args(__doc__.splitlines()[0], rounds=7)
    rounds = args.rounds
    print(machine_line())
    image, target = make_batch(BATCH, torch.Generator().manual_seed(0), size=SIZE)
    boxes, _ = roi_boxes(target, "dynamic", min_size=20)
    sides = (boxes[:, 2:] - boxes[:, :2]).float()
    print(
        f"batch {BATCH} x 1 x {SIZE} x {SIZE}; dynamic boxes {sides.min():.0f}-{sides.max():.0f}"
        f" px (mean side {sides.mean():.1f}); {rounds} interleaved rounds"
    )

    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp), image, target)
        fns = {
            name: step_fn(adv, store, Path(tmp) / f"run{i}", image, target)
            for i, (name, adv) in enumerate(CANDIDATES.items())
        }
        times = interleaved(fns, rounds)
    report("training step of unet32 + its discriminator (forward, backward, Adam)", times, "ce")

    local = interleaved(local_branch_fns(target), rounds=max(rounds, 5))
    report("dynamic local branch alone (forward + backward)", local, next(iter(local)))
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end (shared machine: noisy figures)")


if __name__ == "__main__":
    main()
