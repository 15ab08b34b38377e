"""Benchmark: do a model's samples follow the PDF of a structure it was not trained on?

For a seeded subset of the model's test-split structures (recorded in its latent map,
``latent_map.csv`` beside the model, made by ``bench_latent.py --make-map``), one of
each structure's catalog PDFs is given to ``DeepStruc.generate(n=20)``.  A sample is
*right* when its structure type -- the type of the nearest training-split point of the
latent map to the sample's latent point -- is the structure's and its atom count is
within 10 % of the structure's.  Reports, per structure type and overall, the mean
number of right samples out of 20 and the fraction of PDFs with at least 15 right (the
conditioning target of the generator issue), plus the exact atom count of the first
(prior-mean) sample and of any sample.  ``--sampling prior`` draws the mixture
components in proportion to their weights instead of 20 distinct ones.

With a model trained on a shape-wise split (``deepstruc train --split-by shape``) every
test structure's geometry is absent from training; with a structure-wise split the same
geometry occurs in training under other metals.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_conditioning.py --model runs/ship_v6b \\
        --catalog runs/catalog_imperfect.h5 --count 100
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch


def conditioning(
    model: str, catalog: str, count: int, samples: int, seed: int, distinct: bool = True
) -> dict:
    import h5py

    from diffpy_deepstruc.latent import as_deepstruc, load_latent_map, model_map_path

    ds = as_deepstruc(model)
    path = model_map_path(ds)
    if path is None:
        raise SystemExit(f"{model}: no latent_map.csv beside the model")
    table = load_latent_map(path)
    train = table.split == "train"
    test = np.flatnonzero((table.split == "test") & (table.pdf >= 0))
    if not len(test):
        raise SystemExit(f"{path}: no test-split rows (was it made from {catalog}?)")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(test, min(count, len(test)), replace=False))
    zt, tt = table.z[train], table.type[train]
    per_type: dict[str, list[dict]] = defaultdict(list)
    with h5py.File(catalog, "r") as h5:
        r = h5["r"][()]
        for k in pick:
            g = h5["pdfs/g"][int(table.pdf[k])].astype(float)
            el = str(table.element[k])
            n_true, t_true = int(table.n_atoms[k]), str(table.type[k])
            cands = ds.generate((r, g), n=samples, element=el, seed=seed, distinct=distinct)
            right = 0
            counts = []
            for c in cands:
                z = np.asarray(c.latent[: zt.shape[1]], float)
                t = str(tt[int(np.argmin(((zt - z) ** 2).sum(1)))])
                counts.append(c.n_atoms)
                right += t == t_true and abs(c.n_atoms - n_true) <= 0.1 * n_true
            per_type[t_true].append(
                {
                    "right": right,
                    "exact_first": counts[0] == n_true,
                    "exact_any": n_true in counts,
                }
            )
    out = {"model": model, "samples": samples, "distinct": distinct, "types": {}}
    rows = []
    for t, items in sorted(per_type.items()):
        rows += items
        out["types"][t] = _agg(items, samples)
    out["overall"] = _agg(rows, samples)
    return out


def _agg(items: list[dict], samples: int) -> dict:
    right = np.array([i["right"] for i in items], float)
    return {
        "pdfs": len(items),
        "mean_right": float(right.mean()),
        "at_least_15": float(np.mean(right >= 0.75 * samples)),
        "exact_first": float(np.mean([i["exact_first"] for i in items])),
        "exact_any": float(np.mean([i["exact_any"] for i in items])),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["pretrained"])
    ap.add_argument("--catalog", required=True, help="the models' training catalog")
    ap.add_argument("--count", type=int, default=100, help="test structures")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--sampling",
        choices=["distinct", "prior"],
        default="distinct",
        help="distinct mixture components (generate's default) or ancestral sampling",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    results = []
    print(
        "| model | type | PDFs | right samples of 20 (mean) | PDFs with >= 15 right | "
        "exact count, first sample | exact count, any |"
    )
    print("|---|---|---|---|---|---|---|")
    for m in args.model:
        res = conditioning(
            m,
            args.catalog,
            args.count,
            args.samples,
            args.seed,
            args.sampling == "distinct",
        )
        results.append(res)
        for t, a in [*res["types"].items(), ("all", res["overall"])]:
            print(
                f"| {m} | {t} | {a['pdfs']} | {a['mean_right']:.1f} | "
                f"{a['at_least_15']:.2f} | {a['exact_first']:.2f} | {a['exact_any']:.2f} |",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
