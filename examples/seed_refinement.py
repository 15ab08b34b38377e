"""Seed a diffpy.srfit refinement with DeepStruc's top candidate, then refine further.

    python examples/seed_refinement.py [DATA.gr] [--element Au] [-o seeded_fit]

1. ``DeepStruc.pretrained()`` samples candidate structures for the PDF and
   ``ranking.solve`` refines each (scale, zoomscale, Uiso, delta2) and ranks them by Rw.
2. The top candidate seeds an ordinary srfit recipe (``refine.make_recipe``) on the
   *same r-grid as the solve* (``rstep`` from its settings), refined again with the
   same four parameters: the baseline every later step is compared with.
3. The script extends the recipe as any diffpy script would: each shell of atoms (atoms
   at the same distance from the cluster's centre, within 0.25 A) gets its own radial
   expansion ``s_k`` (a symmetric "breathing" of the cluster; zoomscale is fixed, the
   shells carry the size), and the fit is refined again on the same grid.  Hamilton's
   R-ratio test (``diffpy_deepstruc.consistent``) says whether the extra parameters
   improve the fit significantly.
4. The refined structure and srfit's results are written to the output folder.

Why not free every x, y, z?  A PDF depends on interatomic distances only.  With all
3N coordinates free, the three translations and three rotations of the whole cluster
change no distance, so the data cannot determine them: srfit's covariance matrix is
singular and it reports coordinate uncertainties of ~1e13.  Fix the centre and the
orientation (e.g. fix one atom and constrain two more), or refine symmetric
parameters such as the per-shell expansion used here, whose uncertainties are finite.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from diffpy_deepstruc.consistent import (
    estimate_noise,
    independent_points,
    r_ratio_threshold,
)
from diffpy_deepstruc.fileio import atomic_write_text
from diffpy_deepstruc.generator import DeepStruc
from diffpy_deepstruc.pdfdata import load_pdf
from diffpy_deepstruc.ranking import prepare_outdir, solve
from diffpy_deepstruc.refine import make_recipe, refine_recipe, refined_structure
from diffpy_deepstruc.structures import write_structure

HERE = Path(__file__).resolve().parent
SHELL_GAP = 0.25  # A: atoms whose distances from the centre differ less share a shell

WHY = """\
Step 3 refines one radial expansion s_k per shell of atoms (the shell's atoms move
together along their directions from the cluster's centre; an atom at the centre
stays), not every x, y, z.
A PDF depends on interatomic distances only: with all 3N coordinates free, the three
translations and three rotations of the whole cluster change no distance, so srfit's
covariance matrix is singular and the coordinate uncertainties come out as ~1e13.
Fix the centre and orientation (e.g. fix one atom and constrain two more) or refine
symmetric parameters like these to get finite uncertainties.
"""


def shells(radii: np.ndarray, gap: float = SHELL_GAP) -> np.ndarray:
    """Shell index of each atom: a new shell starts where sorted radii jump by > gap."""
    order = np.argsort(radii)
    jumps = np.diff(radii[order]) > gap
    idx = np.empty(len(radii), dtype=int)
    idx[order] = np.concatenate([[0], np.cumsum(jumps)])
    return idx


def pdf_dg_on(pdf, x: np.ndarray) -> np.ndarray | None:
    """The file's dG on the points x (None when the file has no dG column)."""
    return None if pdf.dg is None else np.interp(x, pdf.r, pdf.dg)


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
    s = result.settings
    rstep = s.rstep or "that of the data"
    print(
        f"1. top candidate: {top.n_atoms} atoms, Rw {top.rw:.4f} in the solve "
        f"(r {s.rmin:g}-{s.rmax:g} A, rstep {rstep})"
    )

    # An ordinary srfit recipe, seeded with the top candidate, on the solve's grid.
    recipe = make_recipe(
        top.structure,
        pdf,
        qmin=s.qmin,
        qmax=s.qmax,
        qdamp=s.qdamp,
        qbroad=s.qbroad,
        rmin=s.rmin,
        rmax=s.rmax,
        rstep=s.rstep,
        uiso=top.parameters.get("Uiso"),
        delta2=top.parameters["delta2"],
        scale=top.parameters["scale"],
    )
    base = refine_recipe(recipe)  # scale, zoomscale, Uiso, delta2 as before
    x = np.asarray(recipe.cluster.profile.x)
    grid = f"{x.size} points, r {x[0]:g}-{x[-1]:g} A, step {np.mean(np.diff(x)):.3g} A"
    print(f"2. same four parameters in a new srfit recipe ({grid}): Rw {base.rw:.4f}")

    # Symmetric breathing: one radial expansion per shell about the cluster's centre
    # (an atom at the centre, if any, stays there).
    phase = recipe.cluster.G.phase
    atoms = phase.getScatterers()
    frac = np.array([[a.x.value, a.y.value, a.z.value] for a in atoms])
    centre = frac.mean(axis=0)
    radii = np.linalg.norm(frac - centre, axis=1) * base.values["zoomscale"]
    moving = radii > SHELL_GAP
    shell = np.full(len(atoms), -1)
    shell[moving] = shells(radii[moving])
    n_shells = int(shell.max()) + 1
    for k in range(n_shells):
        recipe.newVar(f"s_{k}", 1.0, tags=["shells"])
    for i, atom in enumerate(atoms):
        if shell[i] < 0:
            continue
        for axis, c, x0 in zip(("x", "y", "z"), centre, frac[i], strict=True):
            expr = f"{float(c)!r} + {float(x0 - c)!r} * s_{shell[i]}"
            recipe.constrain(getattr(atom, axis), expr)
    recipe.fix("zoomscale")  # the shells now carry the size
    final = refine_recipe(recipe)
    print(
        f"3. one radial expansion per shell ({n_shells} shells instead of zoomscale), "
        f"same grid: Rw {final.rw:.4f}"
    )
    # srfit's uncertainties assume independent points weighted by dG (1 when the file
    # has none): scale them to the noise and to the independent points of the range.
    n_obs = independent_points(s.rmin, s.rmax, s.qmax)
    prof = recipe.cluster.profile
    noise = estimate_noise(prof.x, prof.y, prof.ycalc, pdf_dg_on(pdf, prof.x))
    factor = math.sqrt(len(prof.x) / n_obs)
    if noise.source != "dG":
        factor *= noise.sigma
    unc_note = (
        f"srfit's uncertainties x {factor:.3g} (noise: {noise.detail}; "
        f"{len(prof.x)} grid points hold {n_obs:.0f} independent points)"
    )
    for k in range(n_shells):
        v = final.values[f"s_{k}"]
        u = final.uncertainties.get(f"s_{k}", float("nan")) * factor
        r0 = float(np.mean(radii[shell == k]))
        print(
            f"   shell {k}: {int(np.sum(shell == k)):3d} atoms at {r0:5.2f} A, "
            f"s = {v:.5f} +- {u:.2g}"
        )
    print(f"   (+- : {unc_note})")

    # Does the breathing improve the fit significantly? Hamilton's test, nested models:
    # b = n_shells - 1 added parameters, m = 3 + n_shells refined in all.
    m = 3 + n_shells
    verdict = "no extra parameters"
    if n_shells > 1 and n_obs > m:
        thr = r_ratio_threshold(m, n_obs, 0.05, n_tested=n_shells - 1)
        ratio = base.rw / final.rw if final.rw > 0 else float("inf")
        verdict = (
            f"Rw(4 parameters) / Rw(shells) = {ratio:.4f} vs Hamilton's "
            f"R_(b={n_shells - 1}, n-m={n_obs - m:.0f}, 0.05) = {thr:.4f}: the per-shell "
            f"expansion {'does' if ratio > thr else 'does not'} improve the fit "
            "significantly"
        )
    print(f"   {verdict}")
    print(
        "   not every x, y, z: with all free, the cluster's rotations and translations "
        "change no distance and srfit's uncertainties blow up (see fit_results.txt)"
    )

    refined = refined_structure(recipe)
    write_structure(refined, out / "refined.xyz")
    write_structure(refined, out / "refined.stru")
    text = (
        f"# seed_refinement.py on {args.data}\n"
        f"# fit grid of every step: {grid}\n"
        f"# solve: Rw {top.rw:.6f}; same 4 parameters in srfit: Rw {base.rw:.6f}; "
        f"per-shell expansion ({n_shells} shells): Rw {final.rw:.6f}\n"
        f"# {verdict}\n# +- of s_k: {unc_note}\n#\n"
        + "".join(f"# {line}\n" for line in WHY.splitlines())
        + "\n"
    )
    text += str(final.fit_results.formatResults())
    atomic_write_text(out / "fit_results.txt", text)
    print(f"wrote {out}/refined.xyz, refined.stru, fit_results.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
