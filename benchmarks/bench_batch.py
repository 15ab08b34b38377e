"""Benchmark: solving a series of PDFs (``deepstruc solve FOLDER -o OUT``).

Makes ``--count`` (50) PDFs: clusters built with :mod:`diffpy_deepstruc.clusters` over
several structure types and metals (the model's own metals), simulated with
:mod:`diffpy_deepstruc.debye` with instrument and sample parameters drawn in the
catalog's ranges (:class:`diffpy_deepstruc.catalog.SimulationRanges`), written with
:func:`diffpy_deepstruc.pdfdata.write_pdf` (header: composition, Qmin, Qmax, Qdamp,
Qbroad).  Then solves the series twice with the same options:

1. locally: :func:`diffpy_deepstruc.batch.solve_series` with ``--workers`` processes;
2. through a ``dask.distributed.LocalCluster`` (``--workers`` single-threaded worker
   processes), as ``deepstruc solve --scheduler ADDRESS`` does,

and reports the wall time per PDF, checks that both give the same table (apart from
timing) and prints markdown (``--json FILE`` keeps the numbers).  Model: the shipped one
(``DeepStruc.pretrained()``), or ``--model DIR``.  The documented run (2 cores)::

    OMP_NUM_THREADS=1 python benchmarks/bench_batch.py --workers 2 -n 20 \\
        --json runs/bench_batch.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

TYPES = ("fcc", "icosahedron", "decahedron", "octahedron", "bcc", "hcp")


def _cluster(kind: str, element: str, rng: np.random.Generator):
    from diffpy_deepstruc import clusters as C

    if kind == "fcc":
        return C.fcc_cluster(element, [int(x) for x in rng.integers(2, 4, 3)])
    if kind == "bcc":
        return C.bcc_cluster(element, [int(x) for x in rng.integers(2, 4, 3)])
    if kind == "hcp":
        return C.hcp_cluster(element, [int(x) for x in rng.integers(2, 4, 3)])
    if kind == "icosahedron":
        return C.icosahedron(element, int(rng.integers(2, 4)))
    if kind == "decahedron":
        return C.decahedron(element, int(rng.integers(2, 4)), int(rng.integers(1, 3)), 0)
    return C.octahedron(element, int(rng.integers(3, 6)), 1)


def make_series(folder: Path, count: int, metals: list[str], seed: int = 0) -> list[dict]:
    """Write ``count`` simulated PDFs into ``folder``; their parameters."""
    from diffpy_deepstruc.catalog import SimulationRanges
    from diffpy_deepstruc.debye import PDFParameters, pdf_from_arrays
    from diffpy_deepstruc.pdfdata import write_pdf

    rng = np.random.default_rng(seed)
    ranges = SimulationRanges()
    made = []
    for i in range(count):
        kind, el = TYPES[i % len(TYPES)], metals[(i // len(TYPES)) % len(metals)]
        atoms = _cluster(kind, el, rng)
        draw = {
            k: float(rng.uniform(*getattr(ranges, k)))
            for k in ("qmin", "qmax", "qdamp", "qbroad", "delta2", "uiso", "scale")
        }
        p = PDFParameters(
            rmin=0.0,
            rmax=30.0,
            rstep=0.01,
            qmin=draw["qmin"],
            qmax=draw["qmax"],
            qdamp=draw["qdamp"],
            qbroad=draw["qbroad"],
            delta2=draw["delta2"],
            scale=draw["scale"],
        )
        xyz = atoms.get_positions()
        r, g = pdf_from_arrays(xyz, [el] * len(xyz), np.full(len(xyz), draw["uiso"]), p)
        name = f"{i:02d}_{el}{len(xyz)}_{kind}"
        meta = {
            "composition": f"{el}{len(xyz)}",
            "qmin": draw["qmin"],
            "qmax": draw["qmax"],
            "qdamp": draw["qdamp"],
            "qbroad": draw["qbroad"],
            "type": kind,
        }
        write_pdf(folder / f"{name}.gr", r, g, meta, overwrite=True)
        made.append({"name": name, "natoms": len(xyz), **draw})
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint folder (default: the shipped model)")
    ap.add_argument("--count", type=int, default=50, help="PDFs in the series (50)")
    ap.add_argument("-n", type=int, default=20, help="candidates per PDF (20)")
    ap.add_argument("--workers", type=int, default=2, help="processes / Dask workers (2)")
    ap.add_argument("--skip-dask", action="store_true", help="local run only")
    ap.add_argument("--keep", help="keep the PDFs and results in this folder")
    ap.add_argument("--json", help="write the numbers to this file")
    args = ap.parse_args()

    import torch

    from diffpy_deepstruc.batch import solve_series
    from diffpy_deepstruc.generator import DeepStruc

    torch.set_num_threads(1)
    model = DeepStruc.load(args.model) if args.model else DeepStruc.pretrained()
    metals = model.elements or ["Au", "Pt", "Pd", "Ag", "Cu", "Ni"]
    metals = [m for m in ("Au", "Pt", "Pd", "Ag", "Cu", "Ni") if m in metals] or metals[:6]

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-batch-"))
    data = work / "pdfs"
    data.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    made = make_series(data, args.count, metals)
    t_make = time.perf_counter() - t
    opts = {"n": args.n, "model": args.model}
    res: dict = {
        "count": args.count,
        "n": args.n,
        "workers": args.workers,
        "metals": metals,
        "cpus": os.cpu_count(),
        "simulate_s": round(t_make, 2),
        "natoms": [m["natoms"] for m in made],
    }

    def stable(rows):
        return [
            {k: v for k, v in r.items() if k not in ("seconds", "outdir")} for r in rows
        ]

    t = time.perf_counter()
    local = solve_series([data], work / "local", workers=args.workers, **opts)
    res["local_s"] = time.perf_counter() - t
    res["local_ok"] = sum(r["status"] == "ok" for r in local)
    if not args.skip_dask:
        from dask.distributed import Client, LocalCluster

        with (
            LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            ) as lc,
            Client(lc) as client,
        ):
            client.run(lambda: __import__("torch").set_num_threads(1))
            t = time.perf_counter()
            dask_rows = solve_series(
                [data], work / "dask", scheduler=lc.scheduler_address, **opts
            )
            res["dask_s"] = time.perf_counter() - t
        res["dask_ok"] = sum(r["status"] == "ok" for r in dask_rows)
        res["same_table"] = stable(local) == stable(dask_rows)

    print("| series | PDFs | candidates/PDF | workers | wall (s) | per PDF (s) | solved |")
    print("|---|---|---|---|---|---|---|")
    for key in ("local", "dask"):
        if f"{key}_s" in res:
            print(
                f"| {key} | {args.count} | {args.n} | {args.workers} | {res[f'{key}_s']:.1f} "
                f"| {res[f'{key}_s'] / args.count:.2f} | {res[f'{key}_ok']}/{args.count} |"
            )
    if "same_table" in res:
        print(f"\nsame table locally and on Dask (apart from timing): {res['same_table']}")
    print(
        f"clusters: {min(res['natoms'])}-{max(res['natoms'])} atoms, metals "
        f"{', '.join(metals)}; simulating the {args.count} PDFs took {t_make:.1f} s"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
