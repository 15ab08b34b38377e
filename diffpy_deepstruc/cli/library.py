"""``deepstruc library``: collect the catalog's distinct shapes for the solver."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Declare the ``library`` sub-command."""
    p = subparsers.add_parser(
        "library",
        help="build the shape library (distinct catalog shapes) used by solve",
        description=(
            "Collect every distinct cluster shape (type + builder arguments) of a training "
            "catalog into a shape library (safetensors + JSON). deepstruc solve refines "
            "the library shapes of the sampled sizes that best match the data beside the "
            "model's samples. The shipped library was built with: deepstruc library "
            "--catalog runs/catalog.h5 -o diffpy_deepstruc/pretrained/shapes.safetensors"
        ),
    )
    p.add_argument("--catalog", required=True, help="HDF5 training catalog")
    p.add_argument("-o", "--output", required=True, help="output .safetensors file")
    p.add_argument("--force", action="store_true", help="replace an existing library")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``deepstruc library``."""
    from collections import Counter

    from ..library import build_shape_library, save_shape_library

    lib = build_shape_library(args.catalog)
    out = save_shape_library(lib, args.output, overwrite=args.force)
    counts = Counter(lib.types)
    print(f"{len(lib)} distinct shapes from {args.catalog} -> {out}")
    print("  " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
    return 0
