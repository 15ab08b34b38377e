"""Benchmark: a whole solve against ONE srfit refinement of the true structure.

For each case, in the same run and process (2 cores, ``OMP_NUM_THREADS=1``):

- ``truth``: one srfit refinement of the true structure on the same data
  (:func:`diffpy_deepstruc.refine.make_recipe` + ``refine_recipe``, srreal's
  ``DebyePDFGenerator`` when importable, else the project's), its cold first call and a
  warm repeat;
- ``solve``: the whole pipeline, :func:`diffpy_deepstruc.solve.solve` (model samples,
  library, batched screening, srfit finalists, ranking) plus
  :func:`~diffpy_deepstruc.solve.write_solution` (ranking, structures, figures,
  report), warm (the model loaded once, as in a series); the stages are listed;
- ``cli``: with ``--cli``, the whole ``deepstruc solve`` command as a fresh process,
  against a fresh process that imports the package and refines the truth once.

Cases: the bundled Au55 example; off-catalog particles of <= 200 atoms from
``benchmarks/offcatalog.py`` (seed 20261129, never used for training); a simulated
561-atom Au icosahedron.  ``--series N`` adds the throughput of a series of N simulated
PDFs solved one after another in one process (PDFs per second per core).

    OMP_NUM_THREADS=1 python benchmarks/bench_solve.py --cli --json runs/bench_solve.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def ico561_pdf():
    """A simulated Au561 icosahedron PDF (structure, PDFData)."""
    from ase.cluster import Icosahedron

    from diffpy_deepstruc.debye import PDFParameters, pdf_from_arrays
    from diffpy_deepstruc.pdfdata import PDFData
    from diffpy_deepstruc.structures import atoms_to_structure

    atoms = Icosahedron("Au", 6)
    p = PDFParameters(
        rmin=0.0, rmax=40.0, rstep=0.01, qmin=0.9, qmax=24.0, qdamp=0.035, qbroad=0.01,
        delta2=2.0,
    )  # fmt: skip
    r, g = pdf_from_arrays(atoms.get_positions(), "Au", 0.008, p)
    rng = np.random.default_rng(561)
    g = g + rng.normal(0, 0.01 * np.abs(g).max(), g.shape)
    meta = {"composition": "Au561", "qmin": 0.9, "qmax": 24.0, "qdamp": 0.035,
            "qbroad": 0.01}  # fmt: skip
    return atoms_to_structure(atoms, uiso=0.008), PDFData(r=r, g=g, metadata=meta,
                                                         source="Au561_ico.gr")  # fmt: skip


def cases(n_offcatalog: int):
    """(name, true Structure, PDFData, element) for each case."""
    from diffpy_deepstruc.pdfdata import load_pdf
    from diffpy_deepstruc.structures import atoms_to_structure, read_structure

    ex = REPO / "examples" / "data"
    out = [("Au55 example", read_structure(ex / "Au55_icosahedron.xyz"),
            load_pdf(ex / "Au55_icosahedron.gr"), "Au")]  # fmt: skip
    from offcatalog import make_offcatalog, simulate

    for kind in ("vacancies", "offcentre", "partial_shell") if n_offcatalog else ():
        for p in make_offcatalog(kind, n_offcatalog):
            out.append((p.name, atoms_to_structure(p.atoms), simulate(p), p.element))
    s, pdf = ico561_pdf()
    out.append(("Au561 icosahedron", s, pdf, "Au"))
    return out


def refine_truth(structure, pdf) -> tuple[float, float]:
    """One srfit refinement of the truth on the data's own points: (seconds, Rw)."""
    from diffpy_deepstruc.refine import make_recipe, refine_recipe

    t = time.perf_counter()
    res = refine_recipe(make_recipe(structure, pdf))
    return time.perf_counter() - t, res.rw


def solve_once(pdf, element, model, outdir: Path) -> dict:
    """The whole pipeline in this process, files included."""
    from diffpy_deepstruc.latent import model_map_or_none
    from diffpy_deepstruc.solve import prepare_outdir, solve, write_solution

    t = time.perf_counter()
    res = solve(pdf, element=element, model=model)
    t_write = time.perf_counter()
    maps = [model_map_or_none(m) for m in model]  # as `deepstruc solve`: every map
    write_solution(res, prepare_outdir(outdir), latent_maps=maps)
    end = time.perf_counter()
    return {
        "seconds": end - t,
        "write": end - t_write,
        **{k: v for k, v in res.timings.items() if k != "total"},
        "rw": res.best.rw,
        "n_atoms": res.best.n_atoms,
        "source": res.best.source.split("{")[0].strip(),
    }


def cli_pair(pdf_path: Path, truth_path: Path, element: str, outdir: Path) -> dict:
    """Fresh processes: ``deepstruc solve`` vs importing and refining the truth once."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "diffpy_deepstruc", "solve", str(pdf_path), "-o",
         str(outdir), "--element", element, "--no-progress"],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    t_solve = time.perf_counter() - t
    code = (
        "import torch; torch.set_num_threads(1)\n"
        "from diffpy_deepstruc.pdfdata import load_pdf\n"
        "from diffpy_deepstruc.refine import make_recipe, refine_recipe\n"
        "from diffpy_deepstruc.structures import read_structure\n"
        f"refine_recipe(make_recipe(read_structure({str(truth_path)!r}), "
        f"load_pdf({str(pdf_path)!r})))\n"
    )
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    t_truth = time.perf_counter() - t
    return {"cli_solve": t_solve, "cli_truth": t_truth, "cli_ratio": t_solve / t_truth}


def series(model, count: int) -> dict:
    """Solve ``count`` simulated off-catalog PDFs one after another (one core)."""
    from offcatalog import make_offcatalog, simulate

    from diffpy_deepstruc.solve import solve

    pdfs = []
    kinds = ("vacancies", "offcentre", "partial_shell", "relaxed", "sp_metals")
    per = -(-count // len(kinds))
    for kind in kinds:
        pdfs += [(simulate(p), p.element) for p in make_offcatalog(kind, per)]
    pdfs = pdfs[:count]
    t = time.perf_counter()
    for pdf, el in pdfs:
        solve(pdf, element=el, model=model)
    dt = time.perf_counter() - t
    return {"count": len(pdfs), "seconds": dt, "pdfs_per_s_per_core": len(pdfs) / dt}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--offcatalog", type=int, default=2, help="particles per kind (2)")
    ap.add_argument("--cli", action="store_true", help="also time fresh processes")
    ap.add_argument("--series", type=int, default=0, help="series throughput over N PDFs")
    ap.add_argument("--json", help="write the numbers to this file")
    args = ap.parse_args(argv)

    import torch

    from diffpy_deepstruc.debye import srreal_available
    from diffpy_deepstruc.pdfdata import write_pdf
    from diffpy_deepstruc.solve import default_models
    from diffpy_deepstruc.structures import write_structure

    torch.set_num_threads(1)
    model = default_models()  # solve's: the shipped distance and shape-code CVAEs
    gen = "srreal DebyePDFGenerator" if srreal_available() else "the project's generator"
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-solve-"))
    for k, (name, truth, pdf, el) in enumerate(cases(args.offcatalog)):
        cold, rw_true = refine_truth(truth, pdf)
        warm, _ = refine_truth(truth, pdf)
        row = {"case": name, "atoms": len(truth), "truth_cold": cold, "truth": warm,
               "rw_true": rw_true}  # fmt: skip
        row.update(solve_once(pdf, el, model, tmp / f"s{k}"))
        row["ratio"] = row["seconds"] / warm
        if args.cli:
            gr = write_pdf(tmp / f"c{k}.gr", pdf.r, pdf.g, pdf.metadata, dg=pdf.dg)
            xyz = write_structure(truth, tmp / f"c{k}.xyz")
            row.update(cli_pair(gr, xyz, el, tmp / f"cli{k}"))
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                          for k, v in row.items()}), flush=True)  # fmt: skip
    print(f"\ntruth refined with {gen}; {os.cpu_count()} CPUs, one torch thread\n")
    head = ("| case | atoms | truth srfit (s) | solve (s) | ratio | screening (s) | "
            "code search (s) | completion (s) | srfit finalists (s) | files (s) | top Rw | truth Rw | "
            "top atoms |")  # fmt: skip
    if args.cli:
        head += " CLI solve (s) | CLI truth (s) | CLI ratio |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        line = (
            f"| {r['case']} | {r['atoms']} | {r['truth']:.2f} | {r['seconds']:.2f} | "
            f"{r['ratio']:.1f} | {r['screening']:.2f} | {r.get('code search', 0):.2f} | "
            f"{r.get('completion', 0):.2f} | "
            f"{r['refinement']:.2f} | "
            f"{r['write']:.2f} | {r['rw']:.4f} | {r['rw_true']:.4f} | {r['n_atoms']} |"
        )
        if args.cli:
            line += f" {r['cli_solve']:.1f} | {r['cli_truth']:.1f} | {r['cli_ratio']:.1f} |"
        print(line)
    out = {"rows": rows, "generator": gen}
    if args.series:
        out["series"] = series(model, args.series)
        s = out["series"]
        print(f"\nseries of {s['count']} PDFs: {s['seconds']:.1f} s, "
              f"{s['pdfs_per_s_per_core']:.2f} PDFs/s on one core")  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
