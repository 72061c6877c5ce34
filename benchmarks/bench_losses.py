"""Cost of the context loss in a full U-Net training step, against plain cross-entropy.

Times one training step of ``unet32`` (forward, loss, backward, Adam) at 128x128, batch 16, on
CPU, for three losses: CE, context CE with a static 50x50 ROI, and context CE with a dynamic ROI
(issue 2, SPEC §6). The candidates run interleaved, round after round, so machine load hits all
of them alike; the median step time of each and its ratio to CE are printed (target: context
<= 1.05x CE). Because a step takes seconds on a small CPU and shared-machine noise is larger
than the loss itself, the loss alone (forward + backward on fixed logits) is timed the same way.

It also prints the training throughput (slices/s) of the dynamic-ROI context loss at batch 16
against batch 1, the batch size the authors' per-sample cropping forced on them, and the loss
alone on a 3-D nnU-Net-sized batch (2 x 3 x 64 x 128 x 128 logits, issue 11) for CE, Dice and
their context forms.

    python benchmarks/bench_losses.py [--quick] [--rounds N] [--threads T]
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable

import torch

from _common import interleaved, machine_line, make_batch, parse_step_args, report
from ctxseg.losses import build_loss
from ctxseg.models import create_model

SIZE = 128
BATCH = 16

CANDIDATES: dict[str, dict] = {
    "ce": {"name": "ce"},
    "context static 50": {"name": "context", "roi": "static", "roi_size": 50},
    "context dynamic": {"name": "context", "roi": "dynamic"},
}


def train_step_fn(
    loss_kwargs: dict, image: torch.Tensor, target: torch.Tensor
) -> Callable[[], None]:
    """A closure running one full training step of a fresh, seeded unet32 with Adam."""
    torch.manual_seed(0)
    model = create_model("unet32", in_channels=1, num_classes=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = build_loss(num_classes=2, **loss_kwargs)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(image), target)
        loss.backward()
        optimizer.step()

    return step


def loss_only_fn(loss_kwargs: dict, target: torch.Tensor) -> Callable[[], None]:
    """A closure running the loss forward and backward on fixed logits (no network)."""
    logits = torch.randn(len(target), 2, SIZE, SIZE, requires_grad=True)
    loss_fn = build_loss(num_classes=2, **loss_kwargs)

    def step() -> None:
        logits.grad = None
        loss_fn(logits, target).backward()

    return step


VOLUME = (2, 3, 64, 128, 128)  # B, C, D, H, W: a typical nnU-Net 3d_fullres batch on a GPU
VOLUME_CANDIDATES: dict[str, dict] = {
    "ce": {"name": "ce"},
    "context ce static 48": {"name": "context", "roi": "static", "roi_size": (24, 48, 48)},
    "context ce dynamic": {"name": "context", "roi": "dynamic", "margin": 4},
    "dice": {"name": "dice"},
    "context dice dynamic": {"name": "context", "base": "dice", "roi": "dynamic", "margin": 4},
}


def volume_loss_fn(loss_kwargs: dict, target: torch.Tensor) -> Callable[[], None]:
    """The loss forward and backward on fixed 3-D logits, target given as (B, 1, D, H, W)."""
    logits = torch.randn(*VOLUME, requires_grad=True)
    loss_fn = build_loss(num_classes=VOLUME[1], **loss_kwargs)
    target = target.unsqueeze(1)  # (B, 1, D, H, W), the form nnU-Net and MONAI pass

    def step() -> None:
        logits.grad = None
        loss_fn(logits, target).backward()

    return step


def volume_target() -> torch.Tensor:
    """Two volumes: an ellipsoid of label 1 holding a smaller one of label 2."""
    batch, _, depth, height, width = VOLUME
    z, y, x = torch.meshgrid(
        *(torch.arange(n, dtype=torch.float32) for n in (depth, height, width)), indexing="ij"
    )
    target = torch.zeros(batch, depth, height, width, dtype=torch.long)  # (B, D, H, W)
    for b, (cz, cy, cx) in enumerate([(30, 60, 70), (20, 50, 40)]):
        outer = ((z - cz) / 12) ** 2 + ((y - cy) / 30) ** 2 + ((x - cx) / 25) ** 2 < 1
        inner = ((z - cz) / 5) ** 2 + ((y - cy) / 10) ** 2 + ((x - cx) / 8) ** 2 < 1
        target[b][outer] = 1
        target[b][inner] = 2
    return target


def main() -> None:
    args = parse_step_args(__doc__.splitlines()[0], rounds=5)
    rounds = args.rounds
    print(machine_line())
    gen = torch.Generator().manual_seed(0)
    image, target = make_batch(BATCH, gen, size=SIZE, empty_every=8)
    print(
        f"batch {BATCH} x 1 x {SIZE} x {SIZE}, {int((target.flatten(1) > 0).any(1).sum())}"
        f" slices with foreground; {rounds} interleaved rounds"
    )

    loss_times = interleaved(
        {name: loss_only_fn(kw, target) for name, kw in CANDIDATES.items()},
        rounds=rounds,
        per_round=20,
    )
    report("loss alone (forward + backward on fixed logits)", loss_times, "ce")

    step_fns = {name: train_step_fn(kw, image, target) for name, kw in CANDIDATES.items()}
    image1, target1 = image[:1], target[:1]
    step_fns["context dynamic, batch 1"] = train_step_fn(
        CANDIDATES["context dynamic"], image1, target1
    )
    step_times = interleaved(step_fns, rounds=rounds, per_round=1)
    batch1 = step_times.pop("context dynamic, batch 1")
    report("full unet32 training step (forward, loss, backward, Adam)", step_times, "ce")

    # The fastest run of each is the least disturbed by other processes: the extra cost of a
    # context loss, taken from the loss-alone minima, against the median CE training step.
    ce_step = statistics.median(step_times["ce"])
    print("\nextra cost of the loss (fastest loss-alone run minus CE's) per CE training step")
    for name in CANDIDATES:
        extra = min(loss_times[name]) - min(loss_times["ce"])
        print(f"  {name:<20} {1000 * extra:8.2f} ms = {100 * extra / ce_step:.3f}% of a step")

    t16 = statistics.median(step_times["context dynamic"])
    t1 = statistics.median(batch1)
    print("\ndynamic-ROI context training throughput")
    print(f"  batch 16: {BATCH / t16:8.2f} slices/s  (median step {1000 * t16:.1f} ms)")
    print(f"  batch  1: {1 / t1:8.2f} slices/s  (median step {1000 * t1:.1f} ms)")
    print(f"  speed-up of batch 16 over batch 1: {BATCH * t1 / t16:.2f}x")

    target3 = volume_target()
    volume_times = interleaved(
        {name: volume_loss_fn(kw, target3) for name, kw in VOLUME_CANDIDATES.items()},
        rounds=rounds,
        per_round=2,
    )
    report(f"3-D loss alone, logits {VOLUME}, target (B, 1, D, H, W)", volume_times, "ce")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end (shared machine: noisy figures)")


if __name__ == "__main__":
    main()
