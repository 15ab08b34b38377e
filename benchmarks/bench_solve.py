"""Benchmark: one ``solve`` (20 candidates, 2 cores), split into its stages.

Stages, from one call of :func:`diffpy_deepstruc.ranking.solve` (``workers`` processes
for the refinements, as ``deepstruc solve --workers 2``):

- ``network``: PDF preprocessing, prior and decoder (``sampling`` minus the next two);
- ``trilateration``: :func:`diffpy_deepstruc.trilateration.trilaterate` over all
  candidates (timed by wrapping it);
- ``scale fit``: :func:`diffpy_deepstruc.generator.fit_scale` (likewise);
- ``refinement``: the srfit refinements (``SolveResult.timings["refinement"]``);
- ``total``: the whole call (target <= 10 s on 2 cores).

The PDF: ``--data FILE`` (needs Qmax in its header, or ``--qmax``), else an Au
icosahedron (147 atoms) simulated in the catalog's parameter ranges.  Model: the shipped
one, or ``--model DIR``.  ``--repeat`` runs it several times (the first includes the
worker start-up) and reports each.  The documented run::

    OMP_NUM_THREADS=1 python benchmarks/bench_solve.py --workers 2 -n 20 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def _timed(module, name: str, acc: dict) -> None:
    real = getattr(module, name)

    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            acc[name] = acc.get(name, 0.0) + time.perf_counter() - t

    setattr(module, name, wrapper)


def simulated_pdf(element: str = "Au"):
    from diffpy_deepstruc.clusters import icosahedron
    from diffpy_deepstruc.debye import PDFParameters, pdf_from_arrays
    from diffpy_deepstruc.pdfdata import PDFData

    atoms = icosahedron(element, 4)
    xyz = atoms.get_positions()
    p = PDFParameters(
        rmin=0.0,
        rmax=30.0,
        rstep=0.01,
        qmin=0.9,
        qmax=24.0,
        qdamp=0.035,
        qbroad=0.01,
        delta2=2.0,
    )
    r, g = pdf_from_arrays(xyz, [element] * len(xyz), np.full(len(xyz), 0.008), p)
    meta = {
        "composition": f"{element}{len(xyz)}",
        "qmin": 0.9,
        "qmax": 24.0,
        "qdamp": 0.035,
        "qbroad": 0.01,
    }
    return PDFData(r=r, g=g, dg=None, metadata=meta, source=f"{element}{len(xyz)} ico")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint folder (default: the shipped model)")
    ap.add_argument("--data", help=".gr file (default: a simulated Au147 icosahedron)")
    ap.add_argument("--element", help="the metal (default: from the file's composition)")
    ap.add_argument("--qmax", type=float, help="Qmax when the file's header lacks it")
    ap.add_argument("-n", type=int, default=20, help="candidates (20)")
    ap.add_argument("--workers", type=int, default=2, help="refinement processes (2)")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs (2)")
    ap.add_argument("--json", help="write the numbers to this file")
    args = ap.parse_args()

    import torch

    from diffpy_deepstruc import generator, ranking, trilateration
    from diffpy_deepstruc.generator import DeepStruc
    from diffpy_deepstruc.pdfdata import load_pdf

    torch.set_num_threads(1)
    model = DeepStruc.load(args.model) if args.model else DeepStruc.pretrained()
    pdf = load_pdf(args.data) if args.data else simulated_pdf()
    acc: dict[str, float] = {}
    _timed(trilateration, "trilaterate", acc)
    _timed(generator, "fit_scale", acc)

    runs = []
    for k in range(args.repeat):
        acc.clear()
        res = ranking.solve(
            pdf,
            n=args.n,
            element=args.element,
            model=model,
            qmax=args.qmax,
            workers=args.workers,
            seed=k,
        )
        t = res.timings
        tri, fs = acc.get("trilaterate", 0.0), acc.get("fit_scale", 0.0)
        runs.append(
            {
                "network": t["sampling"] - tri - fs,
                "trilateration": tri,
                "scale fit": fs,
                "sampling": t["sampling"],
                "refinement": t["refinement"],
                "total": t["total"],
                "best_rw": res.best.rw,
                "n_atoms_best": res.best.n_atoms,
                "n_ranked": len(res.candidates),
            }
        )

    print(
        f"data: {pdf.source}; model: {res.model}; {args.n} candidates, "
        f"{args.workers} refinement processes, {os.cpu_count()} CPUs"
    )
    print(
        "| run | network (s) | trilateration (s) | scale fit (s) | refinement (s) | "
        "total (s) | best Rw | atoms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k, r in enumerate(runs, start=1):
        print(
            f"| {k} | {r['network']:.2f} | {r['trilateration']:.2f} | {r['scale fit']:.2f} "
            f"| {r['refinement']:.2f} | {r['total']:.2f} | {r['best_rw']:.3f} "
            f"| {r['n_atoms_best']} |"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"runs": runs, "n": args.n, "workers": args.workers}, indent=1)
        )


if __name__ == "__main__":
    main()
