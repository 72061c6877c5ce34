"""Time the preparation of the real sets and the opening / reading of the prepared stores.

    python benchmarks/bench_prepare.py [--repeats 2]

Uses ``$CTXSEG_SHARED_DATA`` (default ``../shared/data``); writes stores to a temporary folder
and removes them. Prints, per dataset: preparation wall time (median of the repeats), the
time to open the store (memory-mapped) and to read every training slice through
``SliceDataset``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from ctxseg.data.acdc import prepare_acdc
from ctxseg.data.dataset import SliceDataset
from ctxseg.data.promise12 import prepare_promise12
from ctxseg.data.store import PreparedStore

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    root = Path(os.environ.get("CTXSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
    jobs = [
        ("acdc-ssl4mis", prepare_acdc, root / "acdc-ssl4mis"),
        ("prostate-promise12-layout", prepare_promise12, root / "prostate-promise12-layout"),
    ]
    print(f"cpus: {os.cpu_count()}, data: {root}")
    print(
        f"{'dataset':28s} {'slices':>7s} {'prepare s':>10s} {'open ms':>8s} {'read train s':>12s}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, prepare, raw in jobs:
            if not raw.is_dir():
                print(f"{name:28s} missing at {raw}")
                continue
            times = []
            for r in range(args.repeats):
                start = time.perf_counter()
                store = prepare(raw, Path(tmp) / name, overwrite=r > 0)
                times.append(time.perf_counter() - start)
            start = time.perf_counter()
            store = PreparedStore.open(Path(tmp) / name)
            open_ms = 1e3 * (time.perf_counter() - start)
            dataset = SliceDataset(store, "train")
            start = time.perf_counter()
            for i in range(len(dataset)):
                dataset[i]
            read_s = time.perf_counter() - start
            print(
                f"{name:28s} {len(store.slices):7d} {statistics.median(times):10.1f} "
                f"{open_ms:8.1f} {read_s:12.2f}"
            )


if __name__ == "__main__":
    main()
