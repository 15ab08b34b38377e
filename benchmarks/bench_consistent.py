"""Benchmark: does the consistent set keep the truth and reject wrong structures?

A known cluster (Au55 Mackay icosahedron, expanded 1 %, Uiso 0.008 A^2, delta2 2 A^2,
Qmax 25, Qmin 0.7, Qdamp 0.04 1/A) is simulated with ``debye.pdf_from_arrays``;
each draw adds Gaussian noise of ``--noise`` x max |G| (band-limited to Qmax like a
measured PDF's, or white per point with ``--white``) and sets dG to that level.  Every
candidate is refined with ``refine.fit_structure`` (scale, zoomscale, Uiso, delta2)
over ``--rmin..--rmax`` and the set is decided with ``consistent.assess`` -- the test the
solver uses.  Candidates:

* ``truth``: the simulated structure (unexpanded; the fit finds the 1 %);
* ``jitter0.05``: the truth with every atom moved by a seeded random 0.05 A rms
  (a model the data cannot tell from the truth: reported, not judged);
* ``ico43``: the truth without its 12 vertices (same type, 22 % too few atoms);
* ``cubo55``: a cuboctahedron of 55 atoms (fcc: wrong type, same count);
* ``deca39``: an Ino decahedron of 39 atoms (wrong type and count);
* ``ico147``: the next Mackay icosahedron (147 atoms).

Prints one markdown row per candidate: how often it is in the set, its median Rw and
Rw / Rw_best.  Example (about 3 minutes on one core)::

    OMP_NUM_THREADS=1 python benchmarks/bench_consistent.py --draws 40 --noise 0.02
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from diffpy_deepstruc import clusters, debye
from diffpy_deepstruc.consistent import assess, band_limited_noise, estimate_noise
from diffpy_deepstruc.refine import fit_structure
from diffpy_deepstruc.structures import arrays_to_structure

QMIN, QMAX, QDAMP = 0.7, 25.0, 0.04


def candidates(seed: int = 0) -> dict[str, np.ndarray]:
    """Coordinates (A) of the candidates, truth first."""
    truth = clusters.icosahedron("Au", 3).positions
    rad = np.linalg.norm(truth, axis=1)
    jit = truth + np.random.default_rng(seed).normal(0, 0.05 / np.sqrt(3), truth.shape)
    return {
        "truth": truth,
        "jitter0.05": jit,
        "ico43": truth[np.argsort(rad)[:43]],
        "cubo55": clusters.octahedron("Au", 5, 2).positions,
        "deca39": clusters.decahedron("Au", 3, 2, 0).positions,
        "ico147": clusters.icosahedron("Au", 4).positions,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--noise", type=float, default=0.02, help="sigma / max |G|")
    ap.add_argument("--white", action="store_true", help="white noise per grid point")
    ap.add_argument("--rstep", type=float, default=0.05, help="data grid (A)")
    ap.add_argument("--rmin", type=float, default=1.5)
    ap.add_argument("--rmax", type=float, default=15.0)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--json", default=None, help="write every Rw here")
    args = ap.parse_args(argv)

    cands = candidates()
    truth = cands["truth"]
    p = dict(rmin=0.0, rmax=args.rmax, rstep=args.rstep, qmin=QMIN, qmax=QMAX, qdamp=QDAMP)
    r, g = debye.pdf_from_arrays(truth * 1.01, "Au", 0.008, p)
    sigma = args.noise * float(np.abs(g).max())
    dg = np.full_like(g, sigma)
    t0 = time.perf_counter()
    rows, texts = [], []
    for seed in range(args.draws):
        rng = np.random.default_rng(1000 + seed)
        if args.white:
            noise = rng.normal(0, sigma, g.shape)
        else:
            noise = band_limited_noise(r, sigma, QMAX, rng, QMIN)
        gn = g + noise
        rws = []
        for xyz in cands.values():
            fit = fit_structure(
                arrays_to_structure(xyz, "Au", 0.005),
                r,
                gn,
                dg=dg,
                qmin=QMIN,
                qmax=QMAX,
                qdamp=QDAMP,
                rmin=args.rmin,
                rmax=args.rmax,
            )
            rws.append(fit.rw)
        sel = (r >= args.rmin) & (r <= args.rmax)
        res = assess(
            rws,
            4,
            rmin=args.rmin,
            rmax=args.rmax,
            qmax=QMAX,
            alpha=args.alpha,
            noise=estimate_noise(r, gn, dg=dg),
            g=gn[sel],
            labels=list(cands),
        )
        rows.append((rws, res.consistent.tolist(), res.ratio.tolist(), res.rw_expected))
        texts.append(res.text)
    secs = time.perf_counter() - t0
    print(
        f"Au55 icosahedron, {args.draws} draws, noise {args.noise:g} x max|G| "
        f"({'white' if args.white else 'band-limited'}), r {args.rmin:g}-{args.rmax:g} A "
        f"step {args.rstep:g}, alpha {args.alpha:g}, threshold R <= "
        f"{res.threshold:.4f} ({res.n_obs:.1f} independent points), {secs:.0f} s\n"
    )
    print("| candidate | atoms | in the set | median Rw | median Rw/Rw_best |")
    print("|---|---|---|---|---|")
    rw = np.array([x[0] for x in rows])
    ok = np.array([x[1] for x in rows])
    ratio = np.array([x[2] for x in rows])
    for k, (name, xyz) in enumerate(cands.items()):
        print(
            f"| {name} | {len(xyz)} | {ok[:, k].sum()}/{args.draws} "
            f"({100 * ok[:, k].mean():.0f} %) | {np.median(rw[:, k]):.4f} | "
            f"{np.median(ratio[:, k]):.3f} |"
        )
    print(f"\nmedian expected Rw from the noise: {np.median([x[3] for x in rows]):.4f}")
    print(f"first draw: {texts[0]}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"args": vars(args), "names": list(cands), "rows": rows}, fh, indent=1
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
