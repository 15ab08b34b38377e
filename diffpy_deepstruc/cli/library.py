"""``deepstruc library``: the shape libraries the solver screens against the data.

Two libraries: the training shapes (the distinct shapes of a training catalog,
``--catalog``) and the large shapes (every distinct cut of ``--nmin..--nmax`` atoms of
the chosen ``--types``, stored as builder arguments and screening histograms; without
``--catalog``).  ``--base`` appends the large shapes to a training-shape library, which
keeps its training flags.  The large build is deterministic (the same file for any
``--workers`` or ``--scheduler``) and resumable: finished work units are kept in
``OUTPUT.parts/`` and an interrupted build picks up from there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from ._args import add_scheduler, positive_int


def _words(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [w for v in values for w in v.replace(",", " ").split()]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Declare the ``library`` sub-command."""
    from ..library import LARGE_N_MAX, LARGE_N_MIN, LARGE_TYPES

    p = subparsers.add_parser(
        "library",
        help="build the shape libraries (training shapes, large shapes) used by solve",
        description=(
            "With --catalog: collect every distinct cluster shape (type + builder "
            "arguments) of a training catalog into a shape library (safetensors + JSON). "
            "Without: enumerate the distinct shapes of --nmin..--nmax atoms (builder "
            "arguments and pair-distance histograms for fast screening; coordinates are "
            "regenerated on demand). The shipped libraries were built with: deepstruc "
            "library --catalog runs/catalog.h5 -o diffpy_deepstruc/pretrained/"
            "shapes.safetensors, and deepstruc library --base diffpy_deepstruc/pretrained/"
            "shapes.safetensors -o diffpy_deepstruc/pretrained/shapes_large.safetensors "
            "--variants imperfect --workers 2"
        ),
    )
    p.add_argument("--catalog", default=None, help="HDF5 training catalog")
    p.add_argument("-o", "--output", required=True, help="output .safetensors file")
    p.add_argument(
        "--base",
        default=None,
        metavar="SHAPES.safetensors",
        help="training-shape library the large shapes are appended to (kept by reference)",
    )
    p.add_argument(
        "--nmin",
        type=positive_int,
        default=LARGE_N_MIN,
        metavar="N",
        help=f"fewest atoms of the large shapes ({LARGE_N_MIN})",
    )
    p.add_argument(
        "--nmax",
        type=positive_int,
        default=LARGE_N_MAX,
        metavar="N",
        help=f"most atoms of the large shapes ({LARGE_N_MAX})",
    )
    p.add_argument(
        "--types",
        nargs="+",
        default=None,
        metavar="TYPE",
        help=f"structure types (default all: {' '.join(LARGE_TYPES)})",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=[],
        metavar="NAME",
        help="registered extra shape sets to add (see docs/library.md)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"local worker processes (default 1; this machine has {os.cpu_count()} cores)",
    )
    add_scheduler(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing library and discard the kept units of an unfinished build",
    )
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``deepstruc library``."""
    from collections import Counter

    from ..errors import ParameterError
    from ..fileio import check_writable
    from ..library import (
        build_large_library,
        build_shape_library,
        load_shape_library,
        merge_libraries,
        save_shape_library,
    )

    if args.catalog is not None:
        lib = build_shape_library(args.catalog)
        out = save_shape_library(lib, args.output, overwrite=args.force)
        counts = Counter(lib.types)
        print(f"{len(lib)} distinct shapes from {args.catalog} -> {out}")
        print("  " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
        return 0
    out = Path(args.output)
    check_writable(out, args.force)
    check_writable(out.with_suffix(".json"), args.force)
    if args.nmin > args.nmax:
        raise ParameterError(f"--nmin ({args.nmin}) must not exceed --nmax ({args.nmax})")
    base = load_shape_library(args.base) if args.base else None
    parts = out.with_name(out.name + ".parts")
    if args.force:
        shutil.rmtree(parts, ignore_errors=True)  # start over

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    lib = build_large_library(
        _words(args.types),
        args.nmin,
        args.nmax,
        _words(args.variants) or (),
        workers=args.workers,
        scheduler=args.scheduler,
        work_dir=parts,
        log=None if args.quiet else log,
    )
    n_large = len(lib)
    if base is not None:
        lib = merge_libraries(base, lib)
    save_shape_library(lib, out, overwrite=args.force, base=args.base)
    shutil.rmtree(parts, ignore_errors=True)
    counts = Counter(lib.types[len(lib) - n_large :])
    print(
        f"{n_large} large shapes ({args.nmin}..{args.nmax} atoms)"
        + (f" after {len(lib) - n_large} training shapes" if base is not None else "")
        + f" -> {out} ({out.stat().st_size / 1e6:.2f} MB)"
    )
    print("  " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
    return 0
