"""Sample candidates for a PDF, refine and rank them, and plot the ranking.

    python examples/rank_candidates.py [DATA.gr] [--element Au] [-n 20] [-o ranked]

The same job as ``deepstruc solve``, through the Python API, plus one extra figure:
Rw against atom count for every ranked candidate (``ranking.png``), which shows at a
glance whether the best candidates agree on the particle size, and which candidates
the data allow: ``consistent.assess`` marks those whose fit is not significantly
worse than the best (Hamilton's R-ratio test, see ``docs/consistent.md``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diffpy_deepstruc.consistent import assess, estimate_noise  # noqa: E402
from diffpy_deepstruc.generator import DeepStruc  # noqa: E402
from diffpy_deepstruc.latent import shipped_map_or_none  # noqa: E402
from diffpy_deepstruc.ranking import prepare_outdir, solve, write_solution  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=HERE / "data" / "Au55_icosahedron.gr")
    parser.add_argument("--element", default=None, help="metal (default: header)")
    parser.add_argument("-n", type=int, default=20, help="candidates to sample")
    parser.add_argument("-o", "--outdir", default="ranked")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)

    out = prepare_outdir(args.outdir, force=args.force)
    model = DeepStruc.pretrained()
    result = solve(args.data, n=args.n, element=args.element, model=model, workers=2)
    write_solution(result, out, latent_map=shipped_map_or_none(model))

    # Which candidates fit not significantly worse than the best?  Hamilton's R-ratio
    # test over the independent points of the fit range, 4 refined parameters each.
    # The noise (for the expected Rw): the file's dG, else the data beyond the best
    # candidate's diameter (+ 5 A), else the best fit's difference curve.
    st = result.settings
    pdf, best = result.pdf, result.best
    xyz = best.structure.xyz_cartn
    diameter = float(np.max(np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)))
    g_fit = np.interp(best.r, pdf.r, pdf.g)
    noise = estimate_noise(
        pdf.r,
        pdf.g,
        np.interp(pdf.r, best.r, best.g_calc, left=np.nan, right=np.nan),
        pdf.dg,
        tail_from=diameter + 5.0,
        qmax=st.qmax,
        qmin=st.qmin,
        rmin=st.rmin,
        rmax=st.rmax,
    )
    test = assess(
        [c.rw for c in result.candidates],
        4,
        rmin=st.rmin,
        rmax=st.rmax,
        qmax=st.qmax,
        noise=noise,
        g=g_fit,
    )
    print(f"{'rank':>4} {'Rw':>8} {'atoms':>6}  {'consistent':<10}  source")
    for k, (c, ok) in enumerate(
        zip(result.candidates, test.consistent, strict=True), start=1
    ):
        source = getattr(c, "source", "model").split("{")[0].strip()
        if source == "model":
            source = f"model sample {c.index}"
        if c.merged:
            source += f" (same as samples {', '.join(str(i) for i in sorted(c.merged))})"
        print(f"{k:>4} {c.rw:8.4f} {c.n_atoms:>6}  {'yes' if ok else '':<10}  {source}")
    print(test.text)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter([c.n_atoms for c in result.candidates], [c.rw for c in result.candidates])
    kept = [c for c, ok in zip(result.candidates, test.consistent, strict=True) if ok]
    ax.scatter(
        [c.n_atoms for c in kept],
        [c.rw for c in kept],
        s=90,
        facecolors="none",
        edgecolors="black",
        label="consistent with the data",
    )
    best = result.best
    ax.scatter([best.n_atoms], [best.rw], color="tab:red", label="top candidate")
    ax.set_xlabel("atoms")
    ax.set_ylabel("Rw")
    ax.legend(frameon=False)
    fig.savefig(out / "ranking.png", dpi=120, bbox_inches="tight")
    print(f"wrote {out}/ (ranking.csv, fit_XX.png, latent.png, ranking.png)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
