"""``deepstruc latent``: the structure map of the latent space, and interpolation.

``deepstruc latent map [--model M] [--catalog C] [--data a.gr ...] -o map.png``
    The catalog structures' latent points coloured by type, measured PDFs as labelled
    crosses; the same numbers in ``map.csv`` beside the figure.  Without ``--catalog``
    the map that comes with the model (``latent_map.csv`` in its folder) is used.
``deepstruc latent interpolate A.gr B.gr [--steps 8] [--element Pt] -o DIR``
    Structures decoded along the latent line from A to B: ``step_XX.xyz``,
    ``interpolation.csv`` (latent point, atom count, shortest distance / nn, validity,
    element) and ``interpolation.png`` (the structures in a row).  The metal comes from
    the inputs' composition headers unless ``--element`` is given; without either the
    command stops, and the output says which it used.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path


def _steps(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 2:
        raise argparse.ArgumentTypeError("--steps must be at least 2")
    return v


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "latent",
        help="latent-space map of structure types, data placement and interpolation",
        description="Look at the 2-D latent space: where structure types and measured PDFs "
        "lie, and what the model decodes between two PDFs.",
    )
    sub = p.add_subparsers(dest="latent_command", metavar="ACTION")
    sub.required = True
    model_help = (
        "model folder (config.json + model.safetensors), or a shipped model: "
        "pretrained, pretrained-dae (distance), shapecode, shapecode-dae (default: "
        "pretrained)"
    )

    m = sub.add_parser(
        "map",
        help="structure-type map with measured PDFs placed on it",
        description="Latent points (prior means p(z|PDF)) of the catalog structures, "
        "coloured by type, with measured PDFs as labelled crosses; writes the figure and "
        "a CSV of the same numbers (same name, .csv).",
    )
    m.add_argument("--model", default="pretrained", help=model_help)
    m.add_argument(
        "--catalog",
        default=None,
        help="catalog (HDF5) to place on the map; default: the map shipped with the model",
    )
    m.add_argument(
        "--data",
        nargs="+",
        default=[],
        metavar="GR",
        help="measured PDFs (.gr) to place on the map",
    )
    m.add_argument("-o", "--output", required=True, help="figure file (e.g. map.png)")
    m.add_argument("--title", default=None, help="figure title")
    m.add_argument("--force", action="store_true", help="replace existing files")
    m.add_argument("--no-progress", action="store_true")
    m.set_defaults(_latent=_run_map)

    i = sub.add_parser(
        "interpolate",
        help="decode structures along the latent line between two PDFs",
        description="Decode structures at evenly spaced points of the line from A's prior "
        "mean to B's (the decoder's PDF condition interpolated alongside); writes one "
        "xyz file per step, interpolation.csv and interpolation.png into DIR.",
    )
    i.add_argument("pdf_a", metavar="A.gr")
    i.add_argument("pdf_b", metavar="B.gr")
    i.add_argument(
        "--steps", type=_steps, default=8, help="points, ends included (default 8)"
    )
    i.add_argument(
        "--element",
        default=None,
        help="metal of the decoded structures (default: the one metal both inputs' "
        "composition headers name; required when they name none or differ)",
    )
    i.add_argument("--model", default="pretrained", help=model_help)
    i.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    i.add_argument("--force", action="store_true", help="replace existing files in DIR")
    i.set_defaults(_latent=_run_interpolate)
    return p


def run(args) -> int:
    return int(args._latent(args) or 0)


def _run_map(args) -> int:
    from ..errors import ParameterError
    from ..fileio import check_writable
    from ..latent import (
        as_deepstruc,
        compute_latent_map,
        encode,
        header_metal,
        load_latent_map,
        model_map_path,
        save_latent_map,
    )
    from ..pdfdata import load_pdf
    from ..plots import plot_latent_map

    png = Path(args.output)
    csv_path = png.with_suffix(".csv")
    if png.suffix.lower() == ".csv":
        raise ParameterError("-o names the figure (e.g. map.png); the CSV goes beside it")
    check_writable(png, args.force)
    check_writable(csv_path, args.force)
    ds = as_deepstruc(args.model)
    pdfs = [load_pdf(f) for f in args.data]  # fail on bad data before the slow part
    if args.catalog:
        table = compute_latent_map(ds, args.catalog, progress=not args.no_progress)
        source = args.catalog
    else:
        f = model_map_path(ds)
        if f is None:
            raise ParameterError(
                f"no latent map comes with the {ds.kind} model "
                f"({args.model}); pass --catalog CATALOG.h5 to compute one"
            )
        table = load_latent_map(f).catalog_rows()
        source = str(f)
    labels, zs, els = [], [], []
    for f, pdf in zip(args.data, pdfs, strict=True):
        mu, _ = encode(ds, pdf)
        labels.append(Path(f).stem)
        zs.append(mu)
        els.append(header_metal(pdf) or "")
    if labels:
        table = table.with_data(labels, zs, els)
    save_latent_map(table, csv_path, overwrite=args.force)
    cat = table.catalog_rows()
    xy = [cat.project(z) for z in zs]
    data = dict(zip(labels, xy, strict=True))
    title = args.title or (
        f"DeepStruc {ds.kind.upper()} latent space"
        if table.view() is None
        else f"shape-code {ds.kind.upper()} latent, 2-D principal view"
    )
    plot_latent_map(
        cat.points,
        list(cat.type),
        png,
        data=data,
        title=title,
        axes=table.axis_labels,
        overwrite=args.force,
    )
    print(
        f"{len(cat)} structures from {source}" + (f", {len(labels)} data" if labels else "")
    )
    at = "z" if table.view() is None else "map (principal view)"
    for lab, z, el in zip(labels, xy, els, strict=True):
        what = f"metal {el} (header)" if el else "no single metal in the header"
        print(f"  {lab}: {at} = ({z[0]:.4g}, {z[1]:.4g}); {what}")
    print(f"map written to {png} and {csv_path}")
    return 0


def _run_interpolate(args) -> int:
    from ..elements import nearest_neighbour_distance
    from ..errors import OutputExistsError
    from ..fileio import atomic_write_text
    from ..latent import (
        as_deepstruc,
        interpolate,
        interpolation_element,
        interpolation_table,
    )
    from ..pdfdata import load_pdf
    from ..plots import plot_structure_row
    from ..structures import structure_to_atoms, write_structure

    out = Path(args.output)
    names = [f"step_{k:02d}.xyz" for k in range(args.steps)]
    names += ["interpolation.csv", "interpolation.png"]
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder")
    clash = [n for n in names if (out / n).exists()]
    if clash and not args.force:
        raise OutputExistsError(
            f"{out}: holds {clash[0]} (and {len(clash) - 1} more); use --force to replace"
        )
    a, b = load_pdf(args.pdf_a), load_pdf(args.pdf_b)
    sym, note = interpolation_element(
        a, b, args.element, (Path(args.pdf_a).name, Path(args.pdf_b).name)
    )
    ds = as_deepstruc(args.model)
    path = interpolate(ds, a, b, steps=args.steps, element=sym)
    nn = nearest_neighbour_distance(sym)
    rows = interpolation_table(path, nn, element=sym)
    out.mkdir(parents=True, exist_ok=True)
    for k, (_, s) in enumerate(path):
        write_structure(s, out / f"step_{k:02d}.xyz", overwrite=args.force)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "interpolation.csv", buf.getvalue(), overwrite=args.force)
    labels = [
        f"t={r['t']:.2f}\n{r['n_atoms']} atoms" + ("" if r["valid"] else " (!)")
        for r in rows
    ]
    title = (
        f"{ds.kind.upper()}: {Path(args.pdf_a).stem} -> {Path(args.pdf_b).stem} "
        f"({sym}; (!) = atoms closer than 0.8 nn)"
    )
    plot_structure_row(
        [structure_to_atoms(s) for _, s in path],
        labels,
        out / "interpolation.png",
        title=title,
        overwrite=args.force,
    )
    n_valid = sum(r["valid"] for r in rows)
    print(f"element: {note}; structures sized and judged with its nn = {nn:.3f} A")
    print(
        f"{ds.kind}: {len(rows)} steps, {n_valid} physically valid "
        f"(no two atoms closer than 0.8 x {nn:.3f} A)"
    )
    for r in rows:
        print(
            f"  t={r['t']:.2f}  z=({r['z1']:.4g}, {r['z2']:.4g})  {r['n_atoms']:3d} atoms  "
            f"dmin/nn={r['min_dist_over_nn']:.2f}  {'valid' if r['valid'] else 'INVALID'}"
        )
    print(f"written to {out}/ (step_XX.xyz, interpolation.csv, interpolation.png)")
    return 0
