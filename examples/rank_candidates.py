"""Sample candidates for a PDF, refine and rank them, and plot the ranking.

    python examples/rank_candidates.py [DATA.gr] [--element Au] [-n 20] [-o ranked]

The same job as ``deepstruc solve``, through the Python API, plus one extra figure:
Rw against atom count for every ranked candidate (``ranking.png``), which shows at a
glance whether the best candidates agree on the particle size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

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

    print(f"{'rank':>4} {'Rw':>8} {'atoms':>6}  merged samples")
    for k, c in enumerate(result.candidates, start=1):
        print(f"{k:>4} {c.rw:8.4f} {c.n_atoms:>6}  {sorted(c.merged)}")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter([c.n_atoms for c in result.candidates], [c.rw for c in result.candidates])
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
