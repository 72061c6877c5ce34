"""Does the discriminator judge the shape of the mask or its softness? (issue 9)

Trains one discriminator per (discriminator, inputs) pair with the separation probe of
``ctxseg.engine.separation`` at the paper's sizes (128 px, static ROI 50 px, Adam 1e-4,
batch 16, 300 steps; predictions at confidence 0.9975) and prints, on held-out cases:

- ``acc perfect``: held-out accuracy of D on target vs a pixel-perfect prediction, as the
  share of (real, fake) pairs it orders right (the ROC AUC; 0.5: it cannot tell them apart,
  as it should not), and ``acc@0.5 perfect`` the balanced accuracy of its 0.5 threshold,
- ``acc shifted`` / ``acc eroded``: the same against a prediction shifted by 6 px / eroded
  by 3 px (1.0: it catches the wrong shape),
- ``D(real)`` / ``D(fake)``: mean D probabilities on the target and the perfect prediction,
- ``rank shifted``: the share of cases whose perfect prediction D scores above the shifted one,
- ``1hot shifted real``: the share of one-hot shifted masks D calls real, and ``1hot shifted >
  perfect`` the share of (wrong one-hot, perfect soft) pairs that D orders that way round,
- ``dadv/dc``: d BCE(D(fake), 1) / d confidence at the perfect prediction (mean over the
  held-out batch; negative: the generator is pushed to saturate a prediction that is right).

"paper (perfect only)" trains on target vs perfect predictions alone (the issue's review); every
other row trains on fakes that are half perfect, a quarter shifted and a quarter eroded.

    python benchmarks/disc_separation.py [--quick] [--discriminators plain,static,dynamic]
        [--inputs paper,scaled,...] [--steps 300] [--lr 1e-4] [--threads 1] [--out rows.jsonl]

The settings of ``tests/test_disc_separation.py``: ``--size 48 --roi-size 40 --steps 200
--lr 3e-4 --confidence 0.95 --train-cases 256 --test-cases 64``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace

import torch

from _common import machine_line
from ctxseg.engine.config import AdversarialConfig
from ctxseg.engine.separation import ProbeSettings, run_probe

#: Inputs: the adversarial keys, and the share of wrong shapes among the training fakes.
INPUTS: dict[str, tuple[dict, float]] = {
    "paper (perfect only)": ({}, 0.0),
    "paper": ({}, 0.5),
    "scaled": ({"real_maps": "scaled"}, 0.5),
    "straight_through": ({"fake_maps": "straight_through"}, 0.5),
    "gumbel": ({"fake_maps": "gumbel"}, 0.5),
    "image": ({"with_image": True}, 0.5),
    "scaled + image": ({"real_maps": "scaled", "with_image": True}, 0.5),
    "straight_through + image": ({"fake_maps": "straight_through", "with_image": True}, 0.5),
    "noise 0.1": ({"noise_sigma": 0.1}, 0.5),
    "label 0.9": ({"real_label": 0.9}, 0.5),
}

COLUMNS = [
    ("acc perfect", "acc_perfect", "{:.3f}"),
    ("acc@0.5 perfect", "thr_acc_perfect", "{:.3f}"),
    ("acc shifted", "acc_shifted", "{:.3f}"),
    ("acc eroded", "acc_eroded", "{:.3f}"),
    ("D(real)", "d_real_perfect", "{:.3f}"),
    ("D(fake)", "d_fake_perfect", "{:.3f}"),
    ("rank shifted", "rank_shifted", "{:.3f}"),
    ("1hot shifted real", "onehot_shifted_real", "{:.3f}"),
    ("1hot shifted > perfect", "onehot_shifted_over_perfect", "{:.3f}"),
    ("dadv/dc", "grad_confidence", "{:.4g}"),
]


def discriminators(roi_size: int) -> dict[str, dict]:
    return {
        "plain": {"discriminator": "plain"},
        "static": {"discriminator": "context", "roi": "static", "roi_size": roi_size},
        "dynamic": {"discriminator": "context", "roi": "dynamic", "min_roi": 20},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="48 px, ROI 40, 20 steps (smoke)")
    parser.add_argument("--discriminators", default="plain,static,dynamic")
    parser.add_argument("--inputs", default=",".join(INPUTS), help="rows of INPUTS, by name")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--roi-size", type=int, default=50)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--confidence", type=float, default=0.9975)
    parser.add_argument("--train-cases", type=int, default=512)
    parser.add_argument("--test-cases", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="append every row as JSON to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.size, args.roi_size, args.steps = 48, 40, 20
    settings = ProbeSettings(
        size=args.size,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        confidence=args.confidence,
        train_cases=args.train_cases,
        test_cases=args.test_cases,
        seed=args.seed,
    )
    names = [n.strip() for n in args.inputs.split(",")]
    unknown = [n for n in names if n not in INPUTS]
    if unknown:
        parser.error(f"unknown --inputs {unknown}; known: {list(INPUTS)}")
    kinds = discriminators(args.roi_size)
    print(machine_line())
    print(
        f"probe: {settings.size} px, static ROI {args.roi_size}, Adam {settings.lr:g}, "
        f"batch {settings.batch}, {settings.steps} steps, confidence {settings.confidence}, "
        f"shift {settings.shift} px, erosion {settings.erode} px, "
        f"{settings.train_cases} training / {settings.test_cases} held-out cases, "
        f"seed {settings.seed}, device cpu"
    )
    header = ["D", "inputs", *(c[0] for c in COLUMNS), "time", "load"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    print(lines[0])
    print(lines[1])
    for disc in (d.strip() for d in args.discriminators.split(",")):
        for name in names:
            keys, wrong_fraction = INPUTS[name]
            adv = AdversarialConfig(**kinds[disc], **keys)
            adv.check()
            start = time.perf_counter()
            result, history = run_probe(adv, replace(settings, wrong_fraction=wrong_fraction))
            seconds = time.perf_counter() - start
            cells = [disc, name, *(fmt.format(result[key]) for _, key, fmt in COLUMNS)]
            cells += [f"{seconds:.0f} s", f"{os.getloadavg()[0]:.1f}"]
            line = "| " + " | ".join(cells) + " |"
            lines.append(line)
            print(line, flush=True)
            if args.out:
                row = {"discriminator": disc, "inputs": name, **result, "seconds": seconds}
                row["last_steps"] = history[-10:]
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    print("\n".join(["", *lines]))


if __name__ == "__main__":
    main()
