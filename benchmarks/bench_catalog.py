"""Benchmark: building the training catalog.

1. Enumeration: time to list every distinct cluster (all types, all metals).
2. Simulation cost: mean time of one PDF (one torch thread, this process) over a
   sample of the catalog's structures, and the extrapolated build time.
3. ``--build``: the full build with ``deepstruc catalog``'s code path
   (:func:`diffpy_deepstruc.catalog.build_catalog`), timed end to end, with the file
   size and throughput.

Prints markdown; ``--json FILE`` keeps the numbers.  The documented run (2 cores)::

    python benchmarks/bench_catalog.py --build --out runs/catalog.h5 --workers 2 \\
        --json runs/bench_catalog.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from diffpy_deepstruc import catalog as C
from diffpy_deepstruc.clusters import enumerate_clusters
from diffpy_deepstruc.elements import nearest_neighbour_distance


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nmax", type=int, default=200)
    ap.add_argument("--variants", type=int, default=4)
    ap.add_argument("--elements", nargs="+", default=None)
    ap.add_argument("--types", nargs="+", default=None)
    ap.add_argument("--sample", type=int, default=60, help="structures timed in step 2")
    ap.add_argument("--build", action="store_true", help="run the full build (step 3)")
    ap.add_argument(
        "--out", default="runs/bench_catalog.h5", help="catalog written by --build"
    )
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--force", action="store_true", help="replace --out if it exists")
    ap.add_argument("--json", default=None, metavar="FILE")
    args = ap.parse_args()

    config = C.CatalogConfig(
        elements=args.elements, types=args.types, n_max=args.nmax, variants=args.variants
    )
    res: dict = {"cores": os.cpu_count(), "config": config.to_dict()}

    t0 = time.perf_counter()
    specs = list(
        enumerate_clusters(config.elements, config.types, config.n_min, config.n_max)
    )
    res["enumerate_s"] = time.perf_counter() - t0
    res["n_structures"] = len(specs)
    res["n_pdfs"] = len(specs) * config.variants

    rng = np.random.default_rng(0)
    pick = rng.choice(len(specs), size=min(args.sample, len(specs)), replace=False)
    with C.one_torch_thread():
        C.simulate_structure(
            specs[0].build().positions, specs[0].element, config, 0
        )  # warm
        t0 = time.perf_counter()
        for i in pick:
            s = specs[i]
            xyz = s.build(nearest_neighbour_distance(s.element)).positions
            C.simulate_structure(xyz, s.element, config, int(i))
        per = (time.perf_counter() - t0) / (len(pick) * config.variants)
    res["pdf_ms"] = 1e3 * per
    workers = args.workers or os.cpu_count() or 1
    res["estimate_s"] = res["enumerate_s"] + per * res["n_pdfs"] / workers

    print("## Catalog build benchmark\n")
    print(f"- structures: {res['n_structures']}, PDFs: {res['n_pdfs']}")
    print(f"- enumeration: {res['enumerate_s']:.1f} s")
    print(f"- one PDF (build + simulate, 1 thread): {res['pdf_ms']:.1f} ms")
    print(f"- estimated build on {workers} workers: {res['estimate_s'] / 60:.1f} min")

    if args.build:
        out = Path(args.out)
        t0 = time.perf_counter()
        report = C.build_catalog(
            out, config, workers=args.workers, overwrite=args.force, progress=True
        )
        res["build_s"] = time.perf_counter() - t0
        res["workers"] = report.workers
        res["resumed_from"] = report.resumed_from
        res["file_mb"] = out.stat().st_size / 1e6
        res["stats"] = report.stats
        print(
            f"- full build: {res['build_s']:.0f} s ({res['build_s'] / 60:.1f} min) on "
            f"{report.workers} workers, {res['file_mb']:.0f} MB"
            + (f" (resumed from {report.resumed_from})" if report.resumed_from else "")
        )
        print()
        print(C.format_stats(report.stats or {}))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
