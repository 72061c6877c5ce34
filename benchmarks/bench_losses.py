"""Cost of the context loss in a full U-Net training step, against plain cross-entropy.

Times one training step of ``unet32`` (forward, loss, backward, Adam) at 128x128, batch 16, on
CPU, for three losses: CE, context CE with a static 50x50 ROI, and context CE with a dynamic ROI
(issue 2, SPEC §6). The candidates run interleaved, round after round, so machine load hits all
of them alike; the median step time of each and its ratio to CE are printed (target: context
<= 1.05x CE). Because a step takes seconds on a small CPU and shared-machine noise is larger
than the loss itself, the loss alone (forward + backward on fixed logits) is timed the same way.

It also prints the training throughput (slices/s) of the dynamic-ROI context loss at batch 16
against batch 1, the batch size the authors' per-sample cropping forced on them.

    python benchmarks/bench_losses.py [--quick] [--rounds N] [--threads T]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from ctxseg.losses import build_loss
from ctxseg.models import create_model

SIZE = 128
BATCH = 16

CANDIDATES: dict[str, dict] = {
    "ce": {"name": "ce"},
    "context static 50": {"name": "context", "roi": "static", "roi_size": 50},
    "context dynamic": {"name": "context", "roi": "dynamic"},
}


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_batch(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Prostate-like slices: an ellipse of random size and place; one slice in eight empty.

    Shape:
        returns image ``(batch, 1, SIZE, SIZE)`` float32 and target ``(batch, SIZE, SIZE)``.
    """
    rows = torch.arange(SIZE, dtype=torch.float32)[:, None]
    cols = torch.arange(SIZE, dtype=torch.float32)[None, :]
    target = torch.zeros(batch, SIZE, SIZE, dtype=torch.long)
    for b in range(batch):
        if b % 8 == 7:
            continue
        cy, cx = (SIZE / 2 + 20 * (torch.rand(2, generator=gen) - 0.5)).tolist()
        ry, rx = (8 + 20 * torch.rand(2, generator=gen)).tolist()
        target[b] = (((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 < 1).long()
    image = 0.3 + 0.4 * target.float() + 0.1 * torch.randn(batch, SIZE, SIZE, generator=gen)
    return image.clamp(0, 1).unsqueeze(1), target


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


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: dict[str, Callable[[], None]], rounds: int, per_round: int) -> dict:
    """Run every candidate ``per_round`` times per round, ``rounds`` rounds, after a warm-up."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].extend(timed(fn) for _ in range(per_round))
    return times


def report(title: str, times: dict[str, list[float]], reference: str) -> None:
    print(f"\n{title}")
    base = statistics.median(times[reference])
    for name, values in times.items():
        med = statistics.median(values)
        spread = f"{1000 * min(values):.1f}-{1000 * max(values):.1f}"
        # Ratios of runs made side by side (same round, same position) drift less than the
        # ratio of medians when the machine load changes during the run.
        paired = statistics.median(v / r for v, r in zip(values, times[reference], strict=True))
        print(
            f"  {name:<20} median {1000 * med:10.2f} ms  (min-max {spread} ms, n={len(values)})"
            f"  ratio to {reference}: of medians {med / base:.3f}, paired {paired:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two rounds only (a smoke run)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of steps")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = 2 if args.quick else args.rounds

    print(
        f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} at start"
    )
    gen = torch.Generator().manual_seed(0)
    image, target = make_batch(BATCH, gen)
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
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end (shared machine: noisy figures)")


if __name__ == "__main__":
    main()
