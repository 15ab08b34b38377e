"""Benchmark: does a model's decoder reproduce its training shapes as physical clusters?

Decodes the latent means of the mixture components (one per training shape) of each
model and counts the decoded clusters whose shortest pair distance is at least 0.8
times their nearest-neighbour distance (the median of every atom's closest distance),
the validity rule of ``benchmarks/bench_latent.py``.  Also gives the median
trilateration residual.  ``--count`` seeded components per model (all when 0).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_decoder.py --model pretrained runs/cvae_v6
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.distance import pdist, squareform

REPO = Path(__file__).resolve().parents[1]


def physical(xyz: np.ndarray, factor: float = 0.8) -> bool:
    """Shortest pair distance >= ``factor`` x the median closest-neighbour distance."""
    if len(xyz) < 2:
        return False
    d = squareform(pdist(xyz))
    np.fill_diagonal(d, np.inf)
    nn = float(np.median(d.min(axis=1)))
    return bool(d.min() >= factor * nn)


def decoder_numbers(name: str, count: int, seed: int) -> dict:
    from diffpy_deepstruc.latent import as_deepstruc

    ds = as_deepstruc(name)
    means = ds.model.comp_mean.detach().cpu().numpy()
    idx = np.arange(len(means))
    if 0 < count < len(means):
        idx = np.sort(np.random.default_rng(seed).choice(len(means), count, replace=False))
    pdf = REPO / "examples" / "data" / "Au55_icosahedron.gr"  # sets only the scale
    from diffpy_deepstruc.pdfdata import load_pdf

    out = ds.decode_unit(means[idx], load_pdf(pdf))
    ok = [physical(d["xyz"]) for d in out]
    return {
        "model": name,
        "components": int(len(means)),
        "decoded": int(len(idx)),
        "physical": float(np.mean(ok)),
        "residual_median": float(np.median([d["residual"] for d in out])),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["pretrained", "pretrained-dae"])
    ap.add_argument("--count", type=int, default=80, help="components per model (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print("| model | components | decoded | physical | median residual |")
    print("|---|---|---|---|---|")
    for name in args.model:
        r = decoder_numbers(name, args.count, args.seed)
        print(
            f"| {r['model']} | {r['components']} | {r['decoded']} | "
            f"{r['physical']:.3f} | {r['residual_median']:.2e} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
