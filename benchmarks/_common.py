"""What the benchmark scripts share: the machine line, a synthetic batch, interleaved timing.

The scripts run as ``python benchmarks/<script>.py``, so this module is imported by its bare
name. Candidates are timed round by round, interleaved, so that a change of machine load hits
them all alike; the paired ratio (same round, same position) drifts less than the ratio of
medians.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

__all__ = [
    "cpu_model",
    "interleaved",
    "machine_line",
    "make_batch",
    "parse_step_args",
    "report",
    "timed",
]


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


def parse_step_args(description: str, rounds: int) -> argparse.Namespace:
    """``--quick``, ``--rounds`` and ``--threads`` of the training-step benchmarks.

    Applies ``--threads`` to torch and sets ``args.rounds`` to 2 under ``--quick``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="two rounds only (a smoke run)")
    parser.add_argument("--rounds", type=int, default=rounds, help="interleaved rounds of steps")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.rounds = 2
    return args


def machine_line() -> str:
    """CPU, threads, versions and the load average: the first line of every report."""
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} at start"
    )


def make_batch(
    batch: int, gen: torch.Generator, size: int = 128, empty_every: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prostate-like slices: an ellipse of random size (radii 8-28 px) and place.

    Args:
        batch: slices B.
        gen: the random generator.
        size: slice side S.
        empty_every: every ``empty_every``-th slice (1-based) is left without foreground;
            0 for none.

    Shape:
        returns image ``(B, 1, S, S)`` float32 in [0, 1] and target ``(B, S, S)`` int64.
    """
    rows = torch.arange(size, dtype=torch.float32)[:, None]
    cols = torch.arange(size, dtype=torch.float32)[None, :]
    target = torch.zeros(batch, size, size, dtype=torch.long)
    for b in range(batch):
        if empty_every and b % empty_every == empty_every - 1:
            continue
        cy, cx = (size / 2 + 20 * (torch.rand(2, generator=gen) - 0.5)).tolist()
        ry, rx = (8 + 20 * torch.rand(2, generator=gen)).tolist()
        target[b] = (((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 < 1).long()
    image = 0.3 + 0.4 * target.float() + 0.1 * torch.randn(batch, size, size, generator=gen)
    return image.clamp(0, 1).unsqueeze(1), target


def timed(fn: Callable[[], None]) -> float:
    """Wall time of one call, in seconds."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    fns: dict[str, Callable[[], None]], rounds: int, per_round: int = 1
) -> dict[str, list[float]]:
    """Run every candidate ``per_round`` times per round, ``rounds`` rounds, after a warm-up."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].extend(timed(fn) for _ in range(per_round))
    return times


def report(title: str, times: dict[str, list[float]], reference: str) -> None:
    """Print the median, spread and ratio to ``reference`` of every candidate."""
    print(f"\n{title}")
    base = statistics.median(times[reference])
    for name, values in times.items():
        med = statistics.median(values)
        spread = f"{1000 * min(values):.1f}-{1000 * max(values):.1f}"
        paired = statistics.median(v / r for v, r in zip(values, times[reference], strict=True))
        print(
            f"  {name:<22} median {1000 * med:10.2f} ms  (min-max {spread} ms, n={len(values)})"
            f"  ratio to {reference}: of medians {med / base:.3f}, paired {paired:.3f}"
        )
