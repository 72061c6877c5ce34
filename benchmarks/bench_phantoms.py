"""Time the phantoms at their default size: raw generation alone and the full prepare_phantom.

    .venv/bin/python benchmarks/bench_phantoms.py [--rounds 2] [--threads 2]

Rounds interleave the two kinds, so machine load hits both alike. Prints wall time and the
process's CPU time (user + system, all threads): on a shared machine the wall time is an upper
bound, and the CPU time is close to what an idle machine would take for this mostly
single-threaded work. The load average is printed too.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="BLAS / ITK threads (2 cores)")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[var] = str(args.threads)

    from ctxseg.data.phantoms import (
        DEFAULT_CASES,
        prepare_phantom,
        write_cardiac_phantoms,
        write_prostate_phantoms,
    )

    writers = {"prostate": write_prostate_phantoms, "cardiac": write_cardiac_phantoms}
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    print(f"cpus {os.cpu_count()}, load average at start {os.getloadavg()[0]:.1f}")
    for r in range(args.rounds):
        for kind, write in writers.items():
            with tempfile.TemporaryDirectory() as tmp:
                t, c = time.perf_counter(), time.process_time()
                write(Path(tmp) / "raw", DEFAULT_CASES[kind], r)
                took = (time.perf_counter() - t, time.process_time() - c)
                times.setdefault((kind, "generate raw"), []).append(took)
                t, c = time.perf_counter(), time.process_time()
                prepare_phantom(kind, Path(tmp) / "store", seed=r)
                took = (time.perf_counter() - t, time.process_time() - c)
                times.setdefault((kind, "prepare_phantom"), []).append(took)
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    for (kind, step), ts in times.items():
        n = DEFAULT_CASES[kind]
        runs = ", ".join(f"{w:.1f} s wall / {c:.1f} s cpu" for w, c in ts)
        print(f"{kind:9s} {step:16s} {n} cases: {runs}")


if __name__ == "__main__":
    main()
