"""Benchmark: how well a shape-code model reads the code of an unseen shape's PDF.

For every PDF of a split (default: validation) of the model's catalog, the prior-mean
code against the true code: family accuracy per true family, and the mean absolute
error of each number (in the builders' units: layers, nn, ...; the twelve stacking
symbols pooled as ``env``) when the family is taken as the true one.

    OMP_NUM_THREADS=1 python benchmarks/bench_shapegen_codes.py --model runs/sg_cvae \\
        --catalog runs/catalog_imperfect.h5 --split val

``--round-trip`` (no model needed) instead checks that every distinct builder entry of
the catalog survives encode -> decode -> build: the same atom count and sorted pair
distances as the stored structure (to 1e-3 A).

``--degeneracy`` (no model or catalog needed) counts, per lattice, the ASE layer-count
triples with counts 1-6 that give 5-200 atoms and the distinct geometries among them
(why :func:`~diffpy_deepstruc.shapegen.codes.canonical_code` exists).
"""

from __future__ import annotations

import argparse
from collections import defaultdict


def round_trip(catalog: str) -> int:
    """Encode, decode and rebuild every distinct builder entry of ``catalog``."""
    import h5py
    import numpy as np

    from diffpy_deepstruc.errors import ParameterError
    from diffpy_deepstruc.shapegen.codes import build, encode
    from diffpy_deepstruc.training import _str_array

    def dists(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d[np.triu_indices(len(x), 1)])

    seen, families, bad = set(), set(), []
    with h5py.File(catalog, "r") as h5:
        types = _str_array(h5["structures/type"])
        builders = _str_array(h5["structures/builder"])
        elements = _str_array(h5["structures/element"])
        natoms = h5["structures/natoms"][()]
        for i, key in enumerate(zip(types, builders, strict=True)):
            if key in seen:
                continue
            seen.add(key)
            try:
                fam, theta = encode(*key)
                atoms = build(fam, theta, elements[i])
            except ParameterError as exc:
                bad.append(f"{key}: {exc}")
                continue
            families.add(fam)
            x = h5["structures/xyz"][i, : natoms[i]].astype(float)
            if (
                len(atoms) != natoms[i]
                or np.abs(dists(atoms.positions) - dists(x)).max() > 1e-3
            ):
                bad.append(f"{key}: rebuilt differently")
    print(
        f"{len(seen)} distinct builder entries, {len(families)} families, {len(bad)} fail"
    )
    for line in bad[:20]:
        print("  " + line)
    return 1 if bad else 0


def degeneracy(top: int = 6, n_min: int = 5, n_max: int = 200) -> int:
    """Print, per lattice, how many layer-count triples cut how many geometries."""
    import itertools

    from diffpy_deepstruc.shapegen.codes import LATTICES, build, geometry_key

    for lat in LATTICES:
        keys = []
        for t in itertools.product(range(1, top + 1), repeat=3):
            atoms = build(lat, list(t), "Au", 1.0)
            if n_min <= len(atoms) <= n_max:
                keys.append(geometry_key(atoms.positions))
        print(f"{lat}: {len(keys)} triples with {n_min}-{n_max} atoms, "
              f"{len(set(keys))} geometries")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    import h5py
    import numpy as np
    import torch

    from diffpy_deepstruc.preprocess import PreprocessConfig
    from diffpy_deepstruc.shapegen.codes import family_slots
    from diffpy_deepstruc.shapegen.training import code_table, load_codegen
    from diffpy_deepstruc.training import _pdf_rows, _str_array, prepare_data

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--round-trip", action="store_true", help="check the codes only")
    ap.add_argument(
        "--degeneracy", action="store_true", help="count degenerate layer codes only"
    )
    ap.add_argument("--catalog")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--cache-dir", default="runs/.deepstruc-cache")
    args = ap.parse_args(argv)
    if args.degeneracy:
        return degeneracy()
    if not args.catalog:
        ap.error("--catalog is needed (unless --degeneracy)")
    if args.round_trip:
        return round_trip(args.catalog)
    if not args.model:
        ap.error("--model is needed (or --round-trip)")
    model, cfg = load_codegen(args.model)
    pre = PreprocessConfig.from_dict(cfg["preprocess"])
    data = prepare_data(args.catalog, pre, cache_dir=args.cache_dir)
    with h5py.File(args.catalog, "r") as h5:
        table = code_table(data.types, _str_array(h5["structures/builder"]))
    fams = cfg["families"]
    index = {f: i for i, f in enumerate(fams)}
    mean, std = np.asarray(cfg["theta_mean"]), np.asarray(cfg["theta_std"])
    rows = _pdf_rows(data, np.asarray(cfg["split"][args.split]))
    rows = rows[table.family[data.pdf_structure[rows]] >= 0]
    with torch.no_grad():
        c = model.condition(torch.from_numpy(data.pdf[rows]))
        logits, codes = model.decode(model.prior(c)[0])
    pred = logits.argmax(1).numpy()
    err, hit = defaultdict(list), defaultdict(list)
    for i, s in enumerate(data.pdf_structure[rows]):
        name = table.families[table.family[s]]
        k = len(family_slots(name))
        f = index.get(name)
        hit[name].append(f is not None and pred[i] == f)
        if f is not None:
            theta = codes[i, f, :k].numpy() * std[f, :k] + mean[f, :k]
            err[name].append(np.abs(theta - table.theta[s, :k]))
    print(
        f"{args.split} split, {len(rows)} PDFs: family accuracy "
        f"{np.mean([h for v in hit.values() for h in v]):.3f}"
    )
    for name in sorted(hit):
        slots = [s.name for s in family_slots(name)]
        line = f"{name:28s} n={len(hit[name]):5d} family {np.mean(hit[name]):.2f}"
        if err[name]:
            e = np.mean(err[name], axis=0)
            env = [j for j, s in enumerate(slots) if s.startswith("env")]
            line += "  " + " ".join(
                f"{s}:{v:.2f}"
                for s, v in zip(slots, e, strict=True)
                if not s.startswith("env")
            )
            if env:
                line += f" env:{e[env].mean():.2f}"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
