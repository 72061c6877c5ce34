"""What makes two CPU training runs of the same config differ? (issue 8, the demo's numbers)

Trains the demo's U-Net CE run (prostate phantom, 64 x 64 at 2 mm, Adam 1e-3) for a few
epochs several times, changing one thing at a time - nothing (a repeat), the number of torch
threads, the precision (bf16 autocast or fp32), the memory format - and compares the final
weights bit for bit and the test Dice. Run on one machine, it separates what one machine
repeats exactly from what changes with the machine's settings; across machines the CPU's
instruction set changes the kernels (and with them the rounding) the same way a thread
count or precision change does here.

    python scripts/repeatability.py [--epochs 3] [--out /tmp/ctxseg-repeat]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

CASES = {
    "default (bf16 where native, channels-last, 2 threads)": {},
    "default, repeated": {},
    "1 torch thread": {"threads": 1},
    "fp32 (amp off, default memory format)": {"amp": "off", "channels_last": "off"},
    "fp32, repeated": {"amp": "off", "channels_last": "off"},
    "fp32, 1 torch thread": {"amp": "off", "channels_last": "off", "threads": 1},
    "fp32, channels-last": {"amp": "off", "channels_last": "on"},
}

CHILD = r"""
import json, sys, torch
from ctxseg.engine.config import load_config
from ctxseg.engine.factory import create_trainer
from ctxseg.evaluation.evaluate import evaluate_run
args = json.loads(sys.argv[1])
if args.get("threads"):
    torch.set_num_threads(args["threads"])
config = load_config(args["config"], args["overrides"])
create_trainer(config, args["run"], device="cpu", quiet=True, overwrite=True).fit()
summary = evaluate_run(args["run"], "test", "last", device="cpu", quiet=True)
print(json.dumps({"dice": summary["slice"]["mean"]["dice"], "threads": torch.get_num_threads(),
                  "precision": summary["precision"]["precision"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ctxseg-repeat")
    args = parser.parse_args()
    from ctxseg.engine.config import BUILTIN_CONFIGS, load_config
    from ctxseg.evaluation.demo import DEMO
    from ctxseg.evaluation.reproduce import prepare_preset_data, scaled_roi_overrides

    store = prepare_preset_data(args.out / "data", DEMO)
    config = BUILTIN_CONFIGS / "phantom-prostate" / "unet_ce.yaml"
    base = [f"data.root={store.root}", f"train.epochs={args.epochs}", *DEMO.overrides()]
    base += scaled_roi_overrides(load_config(config, base), DEMO.spacing)
    results = {}
    for i, (name, case) in enumerate(CASES.items()):
        run = args.out / f"run{i}"
        sets = [*base]
        for key in ("amp", "channels_last"):
            if key in case:
                sets.append(f"train.{key}={case[key]}")
        payload = {"config": str(config), "overrides": sets, "run": str(run),
                   "threads": case.get("threads")}  # fmt: skip
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(payload)],
                              capture_output=True, text=True, env=os.environ)  # fmt: skip
        if done.returncode:
            raise SystemExit(f"{name}: failed\n{done.stderr[-2000:]}")
        info = json.loads(done.stdout.strip().splitlines()[-1])
        weights = torch.load(run / "checkpoint_last.pt", weights_only=True)["model"]
        results[name] = (info, weights)
        print(f"{name:<52} test slice Dice {info['dice']:.4f} ({info['precision']}, "
              f"{info['threads']} threads)", flush=True)  # fmt: skip

    reference = {"default (bf16 where native, channels-last, 2 threads)": "default",
                 "fp32 (amp off, default memory format)": "fp32"}  # fmt: skip
    print(f"\nweights after {args.epochs} epochs against the first run of the same precision:")
    for name, (_, weights) in results.items():
        ref_name = next(r for r in reference if results[r][0]["precision"] ==
                        results[name][0]["precision"])  # fmt: skip
        if ref_name == name:
            continue
        ref = results[ref_name][1]
        equal = all(torch.equal(weights[k], ref[k]) for k in ref)
        diff = max(float((weights[k].float() - ref[k].float()).abs().max()) for k in ref)
        print(
            f"  {name:<52} vs {reference[ref_name]:<8} bit-identical {str(equal):<5} "
            f"max |diff| {diff:.3g}"
        )


if __name__ == "__main__":
    main()
