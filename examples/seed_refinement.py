"""Seed a diffpy.srfit refinement with DeepStruc's top candidate, then refine further.

    python examples/seed_refinement.py [DATA.gr] [--element Au] [-o seeded_fit]

1. ``DeepStruc.pretrained()`` samples candidate structures for the PDF and
   ``ranking.solve`` refines each (scale, zoomscale, Uiso, delta2) and ranks them by Rw.
2. The top candidate seeds an ordinary srfit recipe (``refine.make_recipe``), which this
   script extends as any diffpy script would: every atom's x, y, z becomes a free
   variable (kept near its start by a restraint), and the fit is refined again.
3. The refined structure and srfit's results are written to the output folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffpy_deepstruc.fileio import atomic_write_text
from diffpy_deepstruc.generator import DeepStruc
from diffpy_deepstruc.pdfdata import load_pdf
from diffpy_deepstruc.ranking import prepare_outdir, solve
from diffpy_deepstruc.refine import make_recipe, refine_recipe, refined_structure
from diffpy_deepstruc.structures import write_structure

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=HERE / "data" / "Au55_icosahedron.gr")
    parser.add_argument("--element", default=None, help="metal (default: header)")
    parser.add_argument("-n", type=int, default=20, help="candidates to sample")
    parser.add_argument("-o", "--outdir", default="seeded_fit")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)

    out = prepare_outdir(args.outdir, force=args.force)
    pdf = load_pdf(args.data)
    result = solve(pdf, n=args.n, element=args.element, model=DeepStruc.pretrained())
    top = result.best
    print(f"top candidate: {top.n_atoms} atoms, Rw {top.rw:.4f} after the standard recipe")

    # An ordinary srfit recipe, seeded with the top candidate, extended by hand.
    s = result.settings
    recipe = make_recipe(
        top.structure,
        pdf,
        qmin=s.qmin,
        qmax=s.qmax,
        qdamp=s.qdamp,
        qbroad=s.qbroad,
        rmin=s.rmin,
        rmax=s.rmax,
        uiso=top.parameters.get("Uiso"),
        delta2=top.parameters["delta2"],
        scale=top.parameters["scale"],
    )
    refine_recipe(recipe)  # scale, zoomscale, Uiso, delta2 as before
    phase = recipe.cluster.G.phase
    for i, atom in enumerate(phase.getScatterers()):
        for axis in ("x", "y", "z"):
            par = getattr(atom, axis)
            var = recipe.addVar(par, name=f"{axis}_{i}", tags=["xyz"])
            # keep each coordinate within ~0.1 (lattice units, ~0.1 A) of its start
            recipe.restrain(var, lb=par.value - 0.1, ub=par.value + 0.1, sig=0.01)
    recipe.fix("zoomscale")  # positions now carry the size
    final = refine_recipe(recipe)
    print(f"after freeing {3 * len(phase.getScatterers())} coordinates: Rw {final.rw:.4f}")

    refined = refined_structure(recipe)
    write_structure(refined, out / "refined.xyz")
    write_structure(refined, out / "refined.stru")
    atomic_write_text(out / "fit_results.txt", str(final.fit_results.formatResults()))
    print(f"wrote {out}/refined.xyz, refined.stru, fit_results.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
