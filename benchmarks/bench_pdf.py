"""Benchmark: speed of the Debye PDF engine (``diffpy_deepstruc.debye``).

Times one G(r) for 55-, 201- and 1016-atom clusters and the throughput of
``pdf_batch`` on a batch of clusters of 20-200 atoms, each for

* symmetric clusters (ASE ``Icosahedron``, ``Octahedron``, ``Decahedron``,
  ``FaceCenteredCubic``...), which have few unique interatomic distances, and
* the same clusters with every atom displaced at random (Gaussian, 0.05 A), which
  have none: every pair is a distinct distance.

Batches are run once with one Uiso for all clusters (one grid kernel serves all) and
once with a random Uiso per cluster (a different extended r-range and Q grid per
cluster, as in a catalog).  Default parameters: ``PDFParameters()`` (r 0-30 A by 0.01,
Qmax 25).  Prints markdown tables and the conditions of the run::

    python benchmarks/bench_pdf.py                  # torch's default threads
    python benchmarks/bench_pdf.py --threads 1
    python benchmarks/bench_pdf.py --device cuda
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from ase.cluster import (
    BodyCenteredCubic,
    Decahedron,
    FaceCenteredCubic,
    HexagonalClosedPacked,
    Icosahedron,
    Octahedron,
    SimpleCubic,
)

from diffpy_deepstruc import debye

_CUBIC = [(1, 0, 0), (1, 1, 0), (1, 1, 1)]
_HEX = [(2, -1, -1, 0), (0, 1, -1, 0), (0, 0, 0, 1)]
_METALS = {"Au": 2.884, "Ag": 2.889, "Pt": 2.775, "Pd": 2.751, "Cu": 2.556, "Ni": 2.492}


def single_clusters() -> dict[str, np.ndarray]:
    """The clusters timed one at a time (Au positions, A)."""
    return {
        "55 (icosahedron)": Icosahedron("Au", 3).positions,
        "201 (trunc. octahedron)": Octahedron("Au", 7, 2).positions,
        "1016 (decahedron)": Decahedron("Au", 6, 2, 2).positions,
    }


def cluster_pool(nmin: int = 20, nmax: int = 200) -> list[np.ndarray]:
    """Every ASE-built shape with nmin..nmax atoms, nearest neighbours at 1 A."""
    shapes = []
    for k in range(2, 6):
        shapes.append(Icosahedron("Cu", k, latticeconstant=np.sqrt(2)))
    for p in range(2, 5):
        for q in range(1, 4):
            for r in range(0, 3):
                shapes.append(Decahedron("Cu", p, q, r, latticeconstant=np.sqrt(2)))
    for length in range(3, 9):
        for cut in range(0, (length + 1) // 2):
            shapes.append(Octahedron("Cu", length, cut, latticeconstant=np.sqrt(2)))
    for n in range(2, 6):
        for m in range(n, n + 2):
            shapes.append(
                FaceCenteredCubic("Cu", _CUBIC, [n, m, n], latticeconstant=np.sqrt(2))
            )
            shapes.append(
                BodyCenteredCubic("Fe", _CUBIC, [n, m, n], latticeconstant=2 / np.sqrt(3))
            )
            shapes.append(SimpleCubic("Po", _CUBIC, [n, m, n], latticeconstant=1.0))
            shapes.append(
                HexagonalClosedPacked("Co", _HEX, [n, n, m], latticeconstant=(1.0, 1.633))
            )
    pool = [a.positions - a.positions.mean(axis=0) for a in shapes]
    return [x for x in pool if nmin <= len(x) <= nmax]


def make_batch(n: int, perturb: bool, random_uiso: bool, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    pool = cluster_pool()
    metals = list(_METALS)
    batch = []
    for _ in range(n):
        el = metals[rng.integers(len(metals))]
        xyz = pool[rng.integers(len(pool))] * _METALS[el]
        if perturb:
            xyz = xyz + rng.normal(0.0, 0.05, xyz.shape)
        uiso = float(rng.uniform(0.003, 0.015)) if random_uiso else 0.005
        batch.append((xyz, el, uiso))
    return batch


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: plans, form factors, caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats (best kept)")
    ap.add_argument("--batch", type=int, default=1000, help="clusters per batch")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    params = debye.PDFParameters()
    rng = np.random.default_rng(args.seed)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# Debye engine benchmark ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {dev}, load avg {load:.1f})\n"
    )
    print(f"Parameters: {params.to_dict()}\n")

    print(f"## One PDF (pdf_from_arrays, method='auto', best of {args.repeats})\n")
    print("| atoms | symmetric (ms) | perturbed 0.05 A (ms) |")
    print("|---|---|---|")
    for name, xyz in single_clusters().items():
        noisy = xyz + rng.normal(0.0, 0.05, xyz.shape)
        t_sym = best_time(
            lambda x=xyz: debye.pdf_from_arrays(
                x, "Au", 0.005, params, backend="torch", device=dev
            ),
            args.repeats,
        )
        t_per = best_time(
            lambda x=noisy: debye.pdf_from_arrays(
                x, "Au", 0.005, params, backend="torch", device=dev
            ),
            args.repeats,
        )
        print(f"| {name} | {1e3 * t_sym:.1f} | {1e3 * t_per:.1f} |")

    print(f"\n## Batch of {args.batch} clusters of 20-200 atoms (pdf_batch)\n")
    print("| clusters | Uiso | atoms (mean) | time (s) | PDFs/s |")
    print("|---|---|---|---|---|")
    for perturb in (False, True):
        for random_uiso in (False, True):
            batch = make_batch(args.batch, perturb, random_uiso, args.seed)
            mean_n = np.mean([len(b[0]) for b in batch])
            debye.pdf_batch(batch[:20], params, device=dev)  # warm-up
            t = best_time(
                lambda b=batch: debye.pdf_batch(b, params, device=dev),
                max(1, args.repeats - 2),
            )
            kind = "perturbed" if perturb else "symmetric"
            uk = "random per cluster" if random_uiso else "0.005 for all"
            print(f"| {kind} | {uk} | {mean_n:.0f} | {t:.2f} | {args.batch / t:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
