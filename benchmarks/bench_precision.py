"""Training slices/s of every method, fp32 against the fast path (bf16 + channels-last), on CPU.

For CE, context CE (static, dynamic), GAN and Seg-GLGAN (static, dynamic), the real training
step of the trainers (``Trainer.train_step`` / ``AdversarialTrainer.train_step``: forward,
backward, Adam; the discriminator step too) runs at the paper's sizes (unet32, batch 16,
128 x 128 PROMISE12 and 160 x 160 ACDC) once in fp32 (``train.amp: off``,
``channels_last: off``) and once on the fast path (``amp: auto``, ``channels_last: auto``),
interleaved round by round. Printed per method: slices/s of both, their ratio, the step's
FLOPs (counted by ``torch.utils.flop_counter``) and the fraction of the machine's peak that
the step reaches, the peak being a measured large matrix product in the same precision.

    python benchmarks/bench_precision.py [--quick] [--rounds N] [--threads T] [--sizes 128 160]
                                         [--device cpu|cuda]

On CUDA the fast path is bf16 autocast with channels-last and fused Adam, as training uses it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from _common import interleaved, machine_line, make_batch, timed
from ctxseg.data.store import PreparedCase, write_store
from ctxseg.engine.config import config_from_dict
from ctxseg.engine.factory import create_trainer

BATCH = 16
FP32 = {"amp": "off", "channels_last": "off"}
FAST = {"amp": "auto", "channels_last": "auto"}


def methods(size: int) -> dict[str, tuple[dict, dict | None]]:
    """Method -> (loss section, adversarial section) at the paper's ROI for this size."""
    roi = 50 if size == 128 else 60
    return {
        "CE": ({"name": "ce"}, None),
        "context static": ({"name": "context", "roi": "static", "roi_size": roi}, None),
        "context dynamic": ({"name": "context", "roi": "dynamic", "min_size": 16}, None),
        "GAN": ({"name": "ce"}, {"discriminator": "plain"}),
        "Seg-GLGAN static": (
            {"name": "ce"},
            {"discriminator": "context", "roi": "static", "roi_size": roi},
        ),
        "Seg-GLGAN dynamic": ({"name": "ce"}, {"discriminator": "context", "roi": "dynamic"}),
    }


def make_store(root: Path, image: torch.Tensor, target: torch.Tensor) -> Path:
    """A one-case store holding the batch (a trainer needs a store to start)."""
    case = PreparedCase(
        "c0", "p0", None, image[:, 0].numpy(), target.numpy().astype(np.uint8), (1.0, 1.0, 1.0)
    )
    meta = {"name": "bench", "labels": {"0": "background", "1": "object"}}
    return write_store(root / "store", [case], meta, {"seed": 0, "train": ["c0"], "val": [],
                                                      "test": []})  # fmt: skip


def step_fn(
    loss: dict, adversarial: dict | None, path: dict, store: Path, run_dir: Path,
    image: torch.Tensor, target: torch.Tensor, device: str = "cpu",
) -> tuple[Callable[[], None], str]:  # fmt: skip
    """One training step of the trainer the sections select, and its fast-path description."""
    raw = {
        "experiment": "bench",
        "data": {"root": str(store)},
        "loss": loss,
        "train": {"batch_size": BATCH, "device": device, **path},
        "adversarial": adversarial,
    }
    trainer = create_trainer(config_from_dict(raw), run_dir, quiet=True)
    image, target = image.to(trainer.device), target.to(trainer.device)
    if trainer.channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    cuda = trainer.device.type == "cuda"

    def step() -> None:
        trainer.train_step(image, target)
        if cuda:  # time the work, not its launch
            torch.cuda.synchronize(trainer.device)

    return step, trainer.fast.reason


def step_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call (matrix products and convolutions, forward and backward)."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def peak_flops(dtype: torch.dtype, device: str = "cpu", reps: int = 5) -> float:
    """Measured FLOP/s of a large square matrix product in ``dtype`` (the reference peak)."""
    n = 8192 if device == "cuda" else 2048
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)

    def product() -> None:
        torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()

    product()  # warm-up
    times = [timed(product) for _ in range(reps)]
    return 2 * n**3 / min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two rounds, 128 px only")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 160])
    parser.add_argument("--methods", nargs="+", default=None, help="subset of the method names")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.rounds, args.sizes = 2, [128]
    print(machine_line())
    if args.device == "cuda":
        print(f"device: {torch.cuda.get_device_name()}")
        torch.backends.cuda.matmul.allow_tf32 = False  # an fp32 peak, not TF32's
    peak = {"fp32": peak_flops(torch.float32, args.device),
            "bf16": peak_flops(torch.bfloat16, args.device)}  # fmt: skip
    print(
        f"measured peak (large matrix product on {args.device}): fp32 "
        f"{peak['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s"
    )
    header = (
        f"{'size':>4}  {'method':<18} {'fp32 sl/s':>9} {'fast sl/s':>9} {'ratio':>6} "
        f"{'GFLOP/step':>10} {'fp32 %peak':>10} {'fast %peak':>10}"
    )
    rows = []
    for size in args.sizes:
        image, target = make_batch(BATCH, torch.Generator().manual_seed(0), size=size)
        chosen = methods(size)
        if args.methods:
            chosen = {k: v for k, v in chosen.items() if k in args.methods}
        with tempfile.TemporaryDirectory() as tmp:
            store = make_store(Path(tmp), image, target)
            fns, flops, reason = {}, {}, ""
            for i, (name, (loss, adv)) in enumerate(chosen.items()):
                for tag, path in (("fp32", FP32), ("fast", FAST)):
                    run = Path(tmp) / f"run{i}{tag}"
                    fn, why = step_fn(loss, adv, path, store, run, image, target, args.device)
                    fns[(name, tag)] = fn
                    reason = why if tag == "fast" else reason
                flops[name] = step_flops(fns[(name, "fp32")])
            print(f"\n{size} x {size}, batch {BATCH}, {args.rounds} interleaved rounds; fast path: "
                  f"{reason}")  # fmt: skip
            times = interleaved({f"{k[0]}|{k[1]}": fn for k, fn in fns.items()}, args.rounds)
        print(header)
        fast_precision = "bf16" if "bf16" in reason else "fp32"
        for name in chosen:
            t32 = statistics.median(times[f"{name}|fp32"])
            tfast = statistics.median(times[f"{name}|fast"])
            paired = statistics.median(
                a / b for a, b in zip(times[f"{name}|fp32"], times[f"{name}|fast"], strict=True)
            )
            row = (
                f"{size:>4}  {name:<18} {BATCH / t32:9.2f} {BATCH / tfast:9.2f} {paired:6.2f} "
                f"{flops[name] / 1e9:10.1f} {100 * flops[name] / t32 / peak['fp32']:9.1f}% "
                f"{100 * flops[name] / tfast / peak[fast_precision]:9.1f}%"
            )
            rows.append(row)
            print(row)
    print("\nratio: paired median of fp32 step time / fast step time (same round)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
