"""Does bf16 autocast train like fp32? Validation and test Dice over seeds, side by side.

Trains the demo's U-Net CE run (prostate phantom, 64 x 64 at 2 mm, Adam 1e-3, 20 epochs) with
several seeds twice: fp32 (``train.amp=off``, default memory format) and the CPU fast path
(``train.amp=bf16``, channels-last), through ``ctxseg reproduce``'s grid (so both are ordinary,
resumable run folders). Printed: per seed the best validation Dice (the number that selects
the checkpoint) and the test slice Dice of each, their means and standard deviations, and
whether the difference of the means lies within the seed-to-seed spread.

    python benchmarks/bf16_parity.py [--seeds 0 1 2] [--epochs 20] [--out /tmp/ctxseg-parity]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np

from _common import machine_line
from ctxseg.engine.progress import read_metrics
from ctxseg.evaluation.demo import DEMO
from ctxseg.evaluation.reproduce import reproduce

PATHS = {
    "fp32": ["train.amp=off", "train.channels_last=off"],
    "bf16": ["train.amp=bf16", "train.channels_last=on"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=DEMO.epochs)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ctxseg-parity")
    args = parser.parse_args()
    print(machine_line())
    preset = dataclasses.replace(DEMO, methods=("unet_ce",), seeds=tuple(args.seeds),
                                 epochs=args.epochs)  # fmt: skip
    values: dict[str, dict[str, list[float]]] = {}
    for name, sets in PATHS.items():
        out = args.out / name
        agg = reproduce(None, out, device="cpu", preset=preset, overrides=sets)
        val = []
        for seed in args.seeds:
            rows = read_metrics(out / "runs" / "unet_ce" / f"seed{seed}" / "metrics.csv")
            val.append(max(r["val_dice_mean"] for r in rows if r.get("val_dice_mean") is not None))
        test = agg["table"]["unet_ce"]["prostate"]["slice_dice"]["values"]
        values[name] = {"val": val, "test": list(test)}
        print(f"{name}: {agg['seconds'] / 60:.1f} min for {len(args.seeds)} runs")
    print(f"\nU-Net CE, prostate phantom 64 x 64, {args.epochs} epochs, seeds {args.seeds}")
    print(f"{'':<6} {'':<5} " + " ".join(f"seed {s:<3}" for s in args.seeds) + "    mean      sd")
    for metric in ("val", "test"):
        for name in PATHS:
            v = np.asarray(values[name][metric])
            cells = " ".join(f"{x:8.4f}" for x in v)
            print(f"{metric:<6} {name:<5} {cells}  {v.mean():7.4f} {v.std(ddof=1):7.4f}")
        a, b = (np.asarray(values[n][metric]) for n in PATHS)
        diff = abs(a.mean() - b.mean())
        spread = max(a.std(ddof=1), b.std(ddof=1))
        verdict = "within" if diff <= spread else "OUTSIDE"
        print(f"{metric}: |mean bf16 - mean fp32| = {diff:.4f}, {verdict} the larger seed sd "
              f"{spread:.4f}")  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
