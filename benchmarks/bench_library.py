"""Benchmark: the large shape library (size, load, one-product screening, build).

1. The shipped library (``pretrained/shapes_large.safetensors`` + the training shapes):
   shapes per type, file sizes, load time.
2. Screening all shapes against an exact-engine PDF (Pt, r 1.5..30 A step 0.01) of a
   ~1000-atom fcc cut, 1 % noise: :meth:`ShapeLibrary.screen_all` with its defaults
   and as a single product (no scale scan, one Uiso); first call (dense matrix built)
   and repeats.
   The top shapes are printed (type, atoms).
3. Build time of :func:`build_large_library` for ``--build-nmax`` atoms (serial, this
   process); the shipped build's time is in its own log (``deepstruc library``).

Prints markdown; ``--json FILE`` keeps the numbers.  Documented run (2 shared cores)::

    OMP_NUM_THREADS=1 python benchmarks/bench_library.py --json runs/bench_library.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-nmax", type=int, default=600, help="atoms, step 3 (600)")
    ap.add_argument("--repeat", type=int, default=5, help="timed screening repeats (5)")
    ap.add_argument("--json", default=None, help="write the numbers here")
    args = ap.parse_args()

    from diffpy_deepstruc.clusters import build_cluster
    from diffpy_deepstruc.debye import PDFParameters, pdf_from_arrays
    from diffpy_deepstruc.generator import nn_peak_position
    from diffpy_deepstruc.library import build_large_library, pretrained_library

    out: dict = {}
    folder = Path(str(resources.files("diffpy_deepstruc") / "pretrained"))
    sizes = {
        f.name: f.stat().st_size
        for f in sorted(folder.glob("shapes*"))
        if f.suffix in (".safetensors", ".json")
    }
    t0 = time.perf_counter()
    lib = pretrained_library(full=True)
    t_load = time.perf_counter() - t0
    if lib is None:
        raise SystemExit("no shapes_large.safetensors shipped")
    train = np.array([lib.is_training(i) for i in range(len(lib))])
    large = ~train
    types = np.array(lib.types)
    per_type = {
        t: [
            int((types[large] == t).sum()),
            int(lib.n_atoms[large][types[large] == t].max()),
        ]
        for t in sorted(set(types[large]))
    }
    print("## Shipped shape library\n")
    print(
        f"{len(lib)} shapes: {int(train.sum())} training shapes, {int(large.sum())} large"
    )
    print("\n| type | large shapes | largest (atoms) |\n|---|---|---|")
    for t, (n, mx) in per_type.items():
        print(f"| {t} | {n} | {mx} |")
    print("\n| file | bytes |\n|---|---|")
    for name, b in sizes.items():
        print(f"| {name} | {b:,} |")
    print(f"\nload (both files, digests checked): {t_load:.2f} s")
    out.update(
        n_shapes=len(lib),
        n_training=int(train.sum()),
        per_type=per_type,
        file_bytes=sizes,
        load_s=t_load,
    )

    atoms = build_cluster("fcc", "Pt", {"layers": [7, 10, 6]}, nn=2.80)
    params = PDFParameters(
        rmin=1.5, rmax=30.0, rstep=0.01, qmin=0.9, qmax=23.0, qdamp=0.035
    )
    r, g = pdf_from_arrays(atoms.positions, "Pt", 0.007, params, backend="torch")
    g = g + np.random.default_rng(1).normal(0, 0.01 * np.abs(g).max(), g.size)
    peak = nn_peak_position(r, g)
    kw = dict(qmin=0.9, qmax=23.0, qdamp=0.035, nn=peak, k=5)
    t0 = time.perf_counter()
    best = lib.screen_all(r, g, **kw)
    t_first = time.perf_counter() - t0
    times = {}
    variants = (
        ("default (3 passes: scale probe, 3 Uiso)", {}),
        ("one product (scan=0, one Uiso)", {"scan": 0.0, "uiso": 0.006}),
    )
    for label, extra in variants:
        ts = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            lib.screen_all(r, g, **kw, **extra)
            ts.append(time.perf_counter() - t0)
        times[label] = float(np.median(ts))
    print(
        f"\n## Screening all {len(lib)} shapes ({len(r)} data points, Pt fcc {len(atoms)} atoms)\n"
    )
    print(f"first call (dense histogram matrix built): {t_first:.3f} s")
    for label, t in times.items():
        print(f"{label}: median {t:.3f} s over {args.repeat}")
    print("\ntop 5: " + "; ".join(f"{lib.label(i)[:40]} ({s:.4f})" for i, s, _ in best))
    out.update(screen_first_s=t_first, screen_s=times, top=[lib.label(i) for i, *_ in best])

    t0 = time.perf_counter()
    small = build_large_library(n_max=args.build_nmax)
    t_build = time.perf_counter() - t0
    print(f"\n## Build, 201..{args.build_nmax} atoms, serial\n")
    print(f"{len(small)} shapes in {t_build:.1f} s: {dict(Counter(small.types))}")
    out.update(build_nmax=args.build_nmax, build_shapes=len(small), build_s=t_build)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
