"""Benchmark: ``solve`` on particles that are not catalog cuts (issue 13's table).

Particles from ``benchmarks/offcatalog.py`` (its own generator and seed 20261129, never
used for training or for choosing settings): off-centre cuts, surface vacancies,
partial shells, relaxed particles, rods, 250-3000 atoms, s/p-block metals.  For each:
the PDF simulated like measured data, :func:`diffpy_deepstruc.solve.solve` with its
defaults (the element from the header), and the true structure refined with the same
srfit recipe on the same data.  Per kind:

- ``refused``: solves that stopped with an error (goal 0);
- ``exact``: top candidate with the true atom count;
- ``sites``: fraction of the true sites the top candidate reproduces within 0.3 nn after
  translation + rotation (:func:`diffpy_deepstruc.metrics.sites_matched`);
- ``exact & >= 90 % sites``;
- ``dRw``: top candidate's Rw minus the truth's own Rw (same recipe, same data);
- ``top from``: where the top candidates came from; seconds per solve.

    OMP_NUM_THREADS=1 python benchmarks/bench_offcatalog.py --count 8 --json runs/offcat.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def run_particle(p, model, solve_options: dict, noise_scale: float = 1.0) -> dict:
    """Solve one particle's PDF (its noise times ``noise_scale``); compare the top
    candidate with the truth."""
    from offcatalog import simulate, with_noise_scale

    from diffpy_deepstruc.errors import DeepStrucError
    from diffpy_deepstruc.metrics import sites_matched
    from diffpy_deepstruc.refine import make_recipe, refine_recipe
    from diffpy_deepstruc.solve import solve
    from diffpy_deepstruc.structures import atoms_to_structure, structure_arrays

    if noise_scale != 1.0:
        p = with_noise_scale(p, noise_scale)
    pdf = simulate(p)
    truth = p.atoms.get_positions()
    row = {"name": p.name, "kind": p.kind, "element": p.element, "atoms": len(truth)}
    if noise_scale != 1.0:
        row["noise_scale"] = noise_scale
    t = time.perf_counter()
    try:
        res = solve(pdf, model=model, **solve_options)
    except DeepStrucError as exc:
        row.update(refused=True, error=str(exc), seconds=time.perf_counter() - t)
        return row
    row["seconds"] = time.perf_counter() - t
    best = res.best
    s = res.settings
    rec = make_recipe(
        atoms_to_structure(p.atoms, uiso=0.005), pdf, qmin=s.qmin, qmax=s.qmax,
        qdamp=s.qdamp, qbroad=s.qbroad, rmin=s.rmin, rmax=s.rmax, rstep=s.rstep,
    )  # fmt: skip
    rw_true = refine_recipe(rec, uncertainties=False).rw
    nn = float(
        np.median(np.sort(np.linalg.norm(truth[:, None] - truth[None], axis=-1))[:, 1])
    )
    xyz = structure_arrays(best.structure)[0]
    row.update(
        refused=False,
        top_atoms=best.n_atoms,
        exact=best.n_atoms == len(truth),
        sites=sites_matched(xyz, truth, nn),
        rw=best.rw,
        rw_true=rw_true,
        d_rw=best.rw - rw_true,
        source=best.source.split("{")[0].strip(),
        consistent=int(sum(c.consistent for c in res.candidates)),
        # the counts the data do not tell apart from the top candidate's (completion)
        count_range=None if best.count_range is None else list(best.count_range),
        in_range=None
        if best.count_range is None
        else best.count_range.contains(len(truth)),
        timings={k: round(v, 3) for k, v in res.timings.items()},
    )
    return row


def summarise(rows: list[dict]) -> list[dict]:
    """One line per kind."""
    by = defaultdict(list)
    for r in rows:
        by[r["kind"]].append(r)
    out = []
    for kind, rs in by.items():
        ok = [r for r in rs if not r["refused"]]
        src = defaultdict(int)
        for r in ok:
            src["model" if r["source"] == "model" else r["source"].split(":")[0]] += 1
        out.append(
            {
                "kind": kind,
                "n": len(rs),
                "atoms": f"{min(r['atoms'] for r in rs)}-{max(r['atoms'] for r in rs)}",
                "refused": sum(r["refused"] for r in rs),
                "exact": sum(r["exact"] for r in ok),
                "sites_median": float(np.median([r["sites"] for r in ok])) if ok else None,
                "exact_90": sum(r["exact"] and r["sites"] >= 0.9 for r in ok),
                "d_rw_median": float(np.median([r["d_rw"] for r in ok])) if ok else None,
                "d_rw_max": float(np.max([r["d_rw"] for r in ok])) if ok else None,
                "within_001": sum(r["d_rw"] <= 0.01 for r in ok),
                "with_range": sum(r.get("in_range") is not None for r in ok),
                "in_range": sum(bool(r.get("in_range")) for r in ok),
                "top_from": ", ".join(f"{k} {v}" for k, v in sorted(src.items())),
                "seconds_median": float(np.median([r["seconds"] for r in rs])),
                "seconds_max": float(np.max([r["seconds"] for r in rs])),
            }
        )
    return out


def print_table(summary: list[dict]) -> None:
    """The README's markdown table of :func:`summarise`'s lines."""
    print(
        "| kind | particles | atoms | refused | exact count | median sites matched | "
        "exact & >= 90 % sites | median dRw | max dRw | dRw <= 0.01 | "
        "true count in the data's range | top from | median s | max s |"
    )
    print("|---" * 14 + "|")
    for s in summary:
        print(
            f"| {s['kind']} | {s['n']} | {s['atoms']} | {s['refused']} | {s['exact']} | "
            f"{s['sites_median']:.2f} | {s['exact_90']} | {s['d_rw_median']:.3f} | "
            f"{s['d_rw_max']:.3f} | {s['within_001']} | "
            f"{s.get('in_range', 0)} of {s.get('with_range', 0)} | {s['top_from']} | "
            f"{s['seconds_median']:.1f} | {s['seconds_max']:.1f} |"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=8, help="particles per kind (8)")
    ap.add_argument("--kinds", nargs="+", help="kinds (default: all)")
    ap.add_argument("--json", help="write every row and the summary here")
    ap.add_argument("--no-complete", action="store_true", help="skip the completion stage")
    ap.add_argument(
        "--library-k",
        type=int,
        default=None,
        help="library shapes screened beside the model's samples (solve's default 5; "
        "0: the model's samples alone)",
    )
    ap.add_argument(
        "--model",
        nargs="+",
        default=None,
        help="checkpoint folders or shipped names (distance or shape-code models, "
        "see deepstruc solve --model; default: solve's, pretrained and shapecode)",
    )
    ap.add_argument(
        "--search-k",
        type=int,
        default=None,
        help="shape-code samples walked to better codes (solve's default 3; 0: none)",
    )
    ap.add_argument(
        "--noise-scale",
        type=float,
        default=1.0,
        help="the particles' noise times this (1: 0.5-2 %% of max|G|; 0.1: the noise "
        "of the measured PDFs in ../shared, as bench_completion.py's second level)",
    )
    ap.add_argument(
        "--proposals",
        type=int,
        default=None,
        help="guided sampling of the shape-code models (solve's default 0: plain)",
    )
    args = ap.parse_args(argv)

    import torch
    from offcatalog import KINDS, make_offcatalog

    from diffpy_deepstruc.solve import load_models

    torch.set_num_threads(1)
    model = load_models(args.model)
    opts = {"complete_k": 0} if args.no_complete else {}
    if args.library_k is not None:
        opts["library_k"] = args.library_k
    if args.search_k is not None:
        opts["search_k"] = args.search_k
    if args.proposals is not None:
        opts["proposals"] = args.proposals
    rows = []
    for kind in args.kinds or KINDS:
        for p in make_offcatalog(kind, args.count):
            row = run_particle(p, model, opts, args.noise_scale)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json).write_text(json.dumps({"rows": rows}, indent=1))
    summary = summarise(rows)
    print()
    print_table(summary)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
