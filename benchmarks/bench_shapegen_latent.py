"""Benchmark: the latent space of a shape-code model (issue 16's map and interpolation).

The model's latent is 8-D; the map is its 2-D principal-component view, fitted on the
training structures' prior means (one PDF per structure).  Reported, as
``bench_latent.py`` does for the distance models (same functions of
:mod:`diffpy_deepstruc.latent`): the 5-nearest-neighbour type accuracy of the test
structures (stacking-faulted ones excluded) in the 2-D view and in the full latent, the
Spearman correlation of the stacking-faulted structures' position along the fcc -> hcp
direction with their hcp fraction, and the validity of latent interpolations between
the PDFs of two test structures of different types (interior steps that build into a
physical particle).  Measured PDFs given with ``--data`` are placed on the map and
labelled with the vote of their 5 nearest training points.

    OMP_NUM_THREADS=1 python benchmarks/bench_shapegen_latent.py --model runs/sg_cvae \\
        --catalog runs/catalog_imperfect.h5 --plot runs/sg_map_cvae.png \\
        --data ../shared/data/experimental/JQ_S1.gr:Pt \\
        ../shared/data/experimental/Au144PET_100K-00000.gr:Au
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def _strip(gen, z0: np.ndarray, z1: np.ndarray, steps: int, path: str) -> list[str]:
    """Build the codes along ``z0 -> z1`` (the first buildable of each point's two
    most probable) and draw them side by side; returns the captions."""
    from diffpy_deepstruc.errors import ParameterError
    from diffpy_deepstruc.plots import plot_structure_row
    from diffpy_deepstruc.shapegen.codes import build

    structures, labels = [], []
    for options in gen.codes(np.linspace(z0, z1, steps)):
        for fam, theta, _p in options:
            try:
                atoms = build(fam, theta, "Au")
            except ParameterError:
                continue
            structures.append(atoms)
            labels.append(f"{len(atoms)}\n{fam}")
            break
        else:
            labels.append("(!) no build")
    plot_structure_row(
        structures,
        [lab for lab in labels if not lab.startswith("(!)")],
        path,
        title=f"{gen.kind.upper()} shape-code latent: fcc -> icosahedron (test PDFs)",
        overwrite=True,
    )
    return labels


def main(argv: list[str] | None = None) -> int:
    import h5py
    import torch

    from diffpy_deepstruc.catalog import unit_physical
    from diffpy_deepstruc.errors import ParameterError
    from diffpy_deepstruc.latent import LatentMap, knn_type_accuracy, stacking_spearman
    from diffpy_deepstruc.metrics import first_pdf_rows
    from diffpy_deepstruc.pdfdata import load_pdf
    from diffpy_deepstruc.preprocess import BatchResampler
    from diffpy_deepstruc.shapegen import ShapeGenerator
    from diffpy_deepstruc.shapegen.codes import build
    from diffpy_deepstruc.training import _str_array

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--train-count", type=int, default=4000, help="training structures")
    ap.add_argument("--pairs", type=int, default=40, help="interpolation pairs")
    ap.add_argument("--steps", type=int, default=10, help="points per interpolation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", help="write the 2-D map here (PNG)")
    ap.add_argument("--data", nargs="*", default=[], help="measured PDFs as FILE:ELEMENT")
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument(
        "--strip",
        help="write the structures along the interpolation from the first test fcc "
        "structure to the first test icosahedron here (PNG)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    gen = ShapeGenerator.load(args.model)
    split = gen.meta["split"]
    rng = np.random.default_rng(args.seed)
    with h5py.File(args.catalog, "r") as h5:
        types = _str_array(h5["structures/type"])
        elements = _str_array(h5["structures/element"])
        hcp = h5["structures/hcp_fraction"][()].astype(float)
        natoms = h5["structures/natoms"][()]
        held = set(split["test"]) | set(split["val"])
        train_s = np.array([i for i in range(len(types)) if i not in held])
        train_s = np.sort(rng.choice(train_s, min(args.train_count, len(train_s)), False))
        test_s = np.asarray(split["test"])
        structs = np.concatenate([train_s, test_s])
        rows = first_pdf_rows(h5["pdfs/structure"][()], structs)
        g = np.stack([h5["pdfs/g"][j] for j in rows])
        r = h5["r"][()]
    x, _ = BatchResampler(r, gen.preprocess_config)(g)
    with torch.no_grad():
        z = gen.model.prior(gen.model.condition(torch.from_numpy(x)))[0].numpy()
    n_tr = len(train_s)
    mean = z[:n_tr].mean(0)
    _, _, vt = np.linalg.svd(z[:n_tr] - mean, full_matrices=False)
    view = vt[:2]

    def table(points: np.ndarray) -> LatentMap:
        m = len(structs)
        return LatentMap(
            z=points,
            label=[str(i) for i in structs],
            index=structs,
            type=types[structs],
            element=elements[structs],
            n_atoms=natoms[structs],
            hcp_fraction=hcp[structs],
            split=["train"] * n_tr + ["test"] * (m - n_tr),
            shape=[str(i) for i in structs],
            pdf=rows,
        )

    out: dict = {"model": args.model, "train_points": n_tr, "test_points": len(test_s)}
    for name, pts in (("2d", (z - mean) @ view.T), ("full", z)):
        t = table(pts)
        out[f"knn5_{name}"] = knn_type_accuracy(t, 5)["accuracy"]
        try:
            out[f"stacking_spearman_{name}"] = stacking_spearman(t, split="train")["rho"]
        except ParameterError as exc:
            out[f"stacking_spearman_{name}"] = str(exc)
    # interpolation between the prior means of two test PDFs of different types
    te = np.arange(n_tr, len(structs))
    valid, total = 0, 0
    for _ in range(args.pairs):
        a, b = rng.choice(te, 2, replace=False)
        while types[structs[a]] == types[structs[b]]:
            a, b = rng.choice(te, 2, replace=False)
        path = np.linspace(z[a], z[b], args.steps)[1:-1]
        for options in gen.codes(path):
            total += 1
            for fam, theta, _p in options:
                try:
                    atoms = build(fam, theta, "Au", 1.0)
                except ParameterError:
                    continue
                if len(atoms) >= 4 and unit_physical(atoms.positions):
                    valid += 1
                    break
    out["interpolation_valid"] = valid / max(total, 1)
    if args.strip:
        ends = [
            n_tr + int(np.flatnonzero(types[test_s] == t)[0])
            for t in ("fcc", "icosahedron")
        ]
        out["strip"] = _strip(gen, z[ends[0]], z[ends[1]], args.steps, args.strip)
    out["interpolation_steps"] = total
    placed = {}
    for item in args.data:
        path, _, el = item.rpartition(":")
        mu, _ = gen.encode(load_pdf(path))
        p2 = (mu - mean) @ view.T
        d = np.linalg.norm(((z[:n_tr] - mean) @ view.T) - p2, axis=1)
        near = types[structs[np.argsort(d)[:5]]]
        vals, counts = np.unique(near, return_counts=True)
        placed[path] = {
            "xy": p2.tolist(),
            "nearest_types": dict(zip(vals.tolist(), counts.tolist(), strict=True)),
        }
    out["data"] = placed
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    if args.plot:
        from pathlib import Path

        from diffpy_deepstruc.plots import plot_latent_map

        pts = (z[:n_tr] - mean) @ view.T
        plot_latent_map(
            pts,
            list(types[train_s]),
            args.plot,
            data={Path(k).stem: np.asarray(v["xy"]) for k, v in placed.items()},
            title=f"{gen.kind.upper()} shape-code latent, 2-D principal view",
            overwrite=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
