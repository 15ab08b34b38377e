"""Benchmark: the latent space of the shipped CVAE and DAE.

1. ``--make-map``: compute each model's latent map from its training catalog and write
   it beside the model (by default the shipped ones:
   ``diffpy_deepstruc/pretrained/latent_map.csv``, ``pretrained/dae/latent_map.csv``).  ``--cvae`` / ``--dae`` name other folders.
2. The map's numbers: k-nearest-neighbour recovery of the structure type (train-split
   points vote for test-split points; also with the same geometry in other metals
   removed from the voters), and the Spearman correlation between the stacking-faulted
   particles' position along the fcc -> hcp direction and their hcp fraction.
3. Interpolation validity: ``--pairs`` seeded pairs of test-split structures of
   *different types and the same metal*; each pair is interpolated with ``--steps``
   points (ends included) by both models, and a step is physically valid when no two
   atoms are closer than 0.8 x the metal's nearest-neighbour distance.
4. ``--figures DIR``: the CVAE map with the measured PDFs of ``../shared`` placed on it,
   and the interpolation strip of one pair for each model.

Prints markdown; ``--json`` keeps everything.  Example::

    python benchmarks/bench_latent.py --catalog runs/catalog.h5 --make-map \\
        --pairs 24 --steps 8 --figures docs/img --json runs/bench_latent.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffpy_deepstruc import latent
from diffpy_deepstruc.elements import nearest_neighbour_distance

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "diffpy_deepstruc" / "pretrained"


def _model_dir(kind: str, given: str | None) -> Path | None:
    d = Path(given) if given else PRETRAINED / ("dae" if kind == "dae" else "")
    return d if (d / "config.json").is_file() else None


def map_numbers(table: latent.LatentMap) -> dict:
    out = {}
    if table.zq is not None:
        out["knn5_posterior"] = latent.knn_type_accuracy(table, k=5, latent="posterior")
        try:
            s = latent.stacking_spearman(table, latent="posterior")
            out["stacking_posterior"] = {
                "rho": s["rho"],
                "pvalue": s["pvalue"],
                "n": s["n"],
            }
        except Exception as exc:  # noqa: BLE001
            out["stacking_posterior"] = {"error": str(exc)}
    for k in (1, 5, 10):
        out[f"knn{k}"] = latent.knn_type_accuracy(table, k=k)
    out["knn5_unseen_shapes"] = latent.knn_type_accuracy(table, k=5, unseen_shapes=True)
    out["knn5_with_stacking"] = latent.knn_type_accuracy(table, k=5, exclude=())
    try:
        s = latent.stacking_spearman(table)
        out["stacking"] = {"rho": s["rho"], "pvalue": s["pvalue"], "n": s["n"]}
        s = latent.stacking_spearman(table, split="test")
        out["stacking_test"] = {"rho": s["rho"], "pvalue": s["pvalue"], "n": s["n"]}
        s = latent.stacking_spearman(table, reference="stacking")
        out["stacking_ref_stacking"] = {"rho": s["rho"], "pvalue": s["pvalue"], "n": s["n"]}
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        out["stacking"] = {"error": str(exc)}
    return out


def reference_knn(model, catalog, table: latent.LatentMap) -> dict:
    """kNN type accuracy on the model's PDF condition vector ``c`` and on the
    preprocessed PDF itself, same split and PDFs: where the type information is."""
    import h5py

    from diffpy_deepstruc.latent import _input, _read_rows

    t = table.catalog_rows()
    with h5py.File(catalog, "r") as h5:
        r = h5["r"][()]
        g = _read_rows(h5["pdfs/g"], t.pdf.astype(np.int64))
    x = np.stack([_input(model, (r, gi)) for gi in g])
    with torch.no_grad():
        c = torch.cat(
            [
                model.model.condition(torch.from_numpy(x[a : a + 1024]))
                for a in range(0, len(x), 1024)
            ]
        ).numpy()
    out = {}
    for name, feat in (("condition", c), ("pdf_input", x)):
        u = latent.LatentMap(**{**t.__dict__, "z": feat, "zq": None})
        out[name] = {
            "knn5": latent.knn_type_accuracy(u, k=5)["accuracy"],
            "knn5_unseen_shapes": latent.knn_type_accuracy(u, k=5, unseen_shapes=True)[
                "accuracy"
            ],
        }
    return out


def pick_pairs(table: latent.LatentMap, n: int, seed: int, split: str = "test"):
    rng = np.random.default_rng(seed)
    types = table.type.astype(str)
    cand = np.flatnonzero(table.split == split)
    pairs, seen = [], set()
    tries = 0
    while len(pairs) < n and tries < 100 * n:
        tries += 1
        i, j = rng.choice(cand, 2, replace=False)
        if types[i] == types[j] or (
            table.element[i] != table.element[j] and tries < 50 * n
        ):  # same metal when possible
            continue
        key = (min(i, j), max(i, j))
        if key in seen:
            continue
        seen.add(key)
        pairs.append((int(i), int(j)))
    return pairs


def run_pairs(model, catalog, table, pairs, steps):
    import h5py

    rows = []
    with h5py.File(catalog, "r") as h5:
        r = h5["r"][()]
        g = {
            int(table.pdf[i]): h5["pdfs/g"][int(table.pdf[i])].astype(float)
            for p in pairs
            for i in p
        }
    for i, j in pairs:
        el = str(table.element[i])
        nn = nearest_neighbour_distance(el)
        path = latent.interpolate(
            model,
            (r, g[int(table.pdf[i])]),
            (r, g[int(table.pdf[j])]),
            steps=steps,
            element=el,
        )
        t = latent.interpolation_table(path, nn)
        rows.append(
            {
                "a": int(table.index[i]),
                "b": int(table.index[j]),
                "types": f"{table.type[i]}->{table.type[j]}",
                "element": el,
                "valid": [bool(x["valid"]) for x in t],
                "n_atoms": [int(x["n_atoms"]) for x in t],
                "dmin_over_nn": [float(x["min_dist_over_nn"]) for x in t],
            }
        )
    return rows


def summarize(rows):
    v = np.array([r["valid"] for r in rows], bool)
    d = np.array([r["dmin_over_nn"] for r in rows], float)
    return {
        "pairs": len(rows),
        "steps": int(v.shape[1]),
        "valid_all": float(v.mean()),
        "valid_interior": float(v[:, 1:-1].mean()),
        "valid_ends": float(v[:, [0, -1]].mean()),
        "pairs_all_valid": float(v.all(1).mean()),
        "median_dmin_over_nn": float(np.median(d)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalog", default=str(REPO / "runs" / "catalog.h5"))
    ap.add_argument("--cvae", default=None, help="CVAE folder (default: the shipped one)")
    ap.add_argument("--dae", default=None, help="DAE folder (default: the shipped one)")
    ap.add_argument(
        "--make-map",
        action="store_true",
        help="(re)compute the models' latent_map.csv (written beside them)",
    )
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figures", default=None, help="write the README figures here")
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=None, help="cache folder for the encoded catalog")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    report: dict = {"catalog": args.catalog, "steps": args.steps, "seed": args.seed}
    models, tables = {}, {}
    for kind in ("cvae", "dae"):
        d = _model_dir(kind, getattr(args, kind))
        if d is None:
            print(f"no {kind} model ({getattr(args, kind) or 'shipped'}); skipped")
            continue
        models[kind] = latent.as_deepstruc(d)
        f = d / latent.MAP_NAME
        t0 = time.time()
        if args.make_map or not f.is_file():
            table = latent.compute_latent_map(
                models[kind],
                args.catalog,
                progress=True,
                posterior=True,
                cache_dir=args.cache,
            )
            latent.save_latent_map(table, f, overwrite=True)
            print(f"{kind}: wrote {f} ({len(table)} structures, {time.time() - t0:.0f} s)")
        tables[kind] = latent.load_latent_map(f)

    for kind, table in tables.items():
        nums = map_numbers(table)
        report[f"{kind}_map"] = nums
        print(f"\n### {kind.upper()} latent map ({len(table)} structures)\n")
        print("| measure | value | n |\n|---|---|---|")
        for k in (
            "knn1",
            "knn5",
            "knn10",
            "knn5_unseen_shapes",
            "knn5_with_stacking",
            "knn5_posterior",
        ):
            if k not in nums:
                continue
            print(
                f"| {k} type accuracy (test vs train) | {nums[k]['accuracy']:.3f} | "
                f"{nums[k]['n_test']} |"
            )
        for k in (
            "stacking",
            "stacking_test",
            "stacking_ref_stacking",
            "stacking_posterior",
        ):
            s = nums.get(k, {})
            if "rho" in s:
                print(
                    f"| {k} Spearman(position fcc->hcp, hcp fraction) | {s['rho']:.3f} | "
                    f"{s['n']} |"
                )
        ref = reference_knn(models[kind], args.catalog, table)
        nums["reference"] = ref
        print(
            f"\nreference, kNN k=5 on what the latent is computed from: condition c "
            f"{ref['condition']['knn5']:.3f} (unseen shapes "
            f"{ref['condition']['knn5_unseen_shapes']:.3f}), preprocessed PDF "
            f"{ref['pdf_input']['knn5']:.3f} (unseen shapes "
            f"{ref['pdf_input']['knn5_unseen_shapes']:.3f})"
        )
        print(
            "\nper type (kNN k=5): "
            + ", ".join(
                f"{t} {v['accuracy']:.2f} ({v['count']})"
                for t, v in nums["knn5"]["per_type"].items()
            )
        )

    if "cvae" in tables:
        pairs = pick_pairs(tables["cvae"], args.pairs, args.seed)
        report["pairs"] = pairs
        print(
            f"\n### Interpolation validity ({len(pairs)} test-split pairs of different "
            f"types, same metal, {args.steps} steps)\n"
        )
        print(
            "| model | valid steps (all) | interior steps | end points | pairs valid "
            "throughout | median dmin/nn |\n|---|---|---|---|---|---|"
        )
        for kind, model in models.items():
            t0 = time.time()
            rows = run_pairs(model, args.catalog, tables["cvae"], pairs, args.steps)
            if not rows:
                continue
            s = summarize(rows)
            report[f"{kind}_interpolation"] = {
                "summary": s,
                "rows": rows,
                "seconds": time.time() - t0,
            }
            print(
                f"| {kind.upper()} | {s['valid_all']:.3f} | {s['valid_interior']:.3f} | "
                f"{s['valid_ends']:.3f} | {s['pairs_all_valid']:.3f} | "
                f"{s['median_dmin_over_nn']:.2f} |"
            )

    if args.figures and "cvae" in tables:
        make_figures(Path(args.figures), models, tables, args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float) + "\n")
        print(f"\nreport written to {args.json}")


def _shrink_png(path: Path, limit_kb: int = 290) -> Path:
    """Re-save a PNG with an adaptive palette (README figures stay small)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
    for colors in (256, 128, 64):
        q = im.convert("RGB").quantize(colors=colors)
        q.save(path, optimize=True)
        if path.stat().st_size < limit_kb * 1024:
            break
    return path


def make_figures(out: Path, models, tables, args) -> None:
    import h5py

    from diffpy_deepstruc.pdfdata import load_pdf
    from diffpy_deepstruc.plots import plot_latent_map, plot_structure_row
    from diffpy_deepstruc.structures import structure_to_atoms

    out.mkdir(parents=True, exist_ok=True)
    shared = REPO.parent / "shared" / "data" / "experimental"
    for kind, table in tables.items():
        cat = table.catalog_rows()
        data = {}
        for f in sorted(shared.glob("*.gr")):
            try:
                data[f.stem] = latent.encode(models[kind], load_pdf(f))[0][:2]
            except Exception as exc:  # noqa: BLE001
                print(f"{f.name}: not placed ({exc})")
        p = plot_latent_map(
            cat.points,
            list(cat.type),
            out / f"latent_map_{kind}.png",
            data=data,
            title=f"DeepStruc {kind.upper()} latent space",
            overwrite=True,
        )
        _shrink_png(p)
        print(f"wrote {p} ({p.stat().st_size // 1024} KB)")
    # one interpolation strip per model: fcc -> icosahedron of one metal (test split
    # when it holds both, else any split), mid-sized
    t = tables["cvae"]
    types = t.type.astype(str)

    def pick(ty, el, sel):
        c = np.flatnonzero(sel & (types == ty) & (t.element == el))
        c = c[np.argsort(t.n_atoms[c], kind="stable")]
        return int(c[len(c) // 2]) if len(c) else None

    i = j = None
    metals = ["Pt"] + sorted(set(map(str, t.element)) - {"Pt"})
    for sel in (t.split == "test", np.ones(len(t), bool)):
        for el in metals:
            i, j = pick("fcc", el, sel), pick("icosahedron", el, sel)
            if i is not None and j is not None:
                break
        if i is not None and j is not None:
            break
    if i is None or j is None:
        return
    print(
        f"interpolation strip: rows {t.index[i]} -> {t.index[j]} ({el}, splits "
        f"{t.split[i]}, {t.split[j]})"
    )
    with h5py.File(args.catalog, "r") as h5:
        r = h5["r"][()]
        a, b = (
            h5["pdfs/g"][int(t.pdf[i])].astype(float),
            h5["pdfs/g"][int(t.pdf[j])].astype(float),
        )
    nn = nearest_neighbour_distance(el)
    for kind, model in models.items():
        path = latent.interpolate(model, (r, a), (r, b), steps=args.steps, element=el)
        rows = latent.interpolation_table(path, nn)
        labels = [
            f"t={x['t']:.2f}\n{x['n_atoms']} atoms" + ("" if x["valid"] else " (!)")
            for x in rows
        ]
        p = plot_structure_row(
            [structure_to_atoms(s) for _, s in path],
            labels,
            out / f"interpolation_{kind}.png",
            title=f"{kind.upper()}: {el}{t.n_atoms[i]} fcc -> "
            f"{el}{t.n_atoms[j]} icosahedron ((!) = atoms closer "
            "than 0.8 nn)",
            overwrite=True,
        )
        _shrink_png(p)
        print(f"wrote {p} ({p.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
