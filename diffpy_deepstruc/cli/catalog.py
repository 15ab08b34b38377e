"""``deepstruc catalog``: build the training catalog (clusters + simulated PDFs, HDF5).

Calls :func:`diffpy_deepstruc.catalog.build_catalog` and prints the catalog statistics
(counts per structure type and metal, size histogram), which are also stored in the
file's ``stats`` attribute.  An interrupted build resumes when the same command is run
again; ``--force`` starts over.  ``--imperfect`` adds imperfect particles (off-centre
cuts, ellipsoids, rods, surface vacancies, partial shells, twins, relaxed surfaces) after
the ideal clusters; without it the catalog is the ideal enumeration, as before.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..catalog import (
    DEFAULT_IMPERFECT_COUNT,
    ELEMENT_PRESETS,
    IMPERFECT_KINDS,
    CatalogConfig,
    ImperfectOptions,
    SimulationRanges,
    build_catalog,
    format_stats,
)
from ..clusters import STRUCTURE_TYPES
from ..errors import ElementError, ParameterError
from ._args import add_scheduler, path_arg, word


def _words(values: list[str] | None) -> list[str] | None:
    """Accept ``--types fcc bcc`` as well as ``--types fcc,bcc``."""
    if values is None:
        return None
    return [w for v in values for w in v.replace(",", " ").split()]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Declare ``deepstruc catalog`` and its arguments."""
    p = subparsers.add_parser(
        "catalog",
        help="build the training catalog (clusters and simulated PDFs)",
        description=(
            "Enumerate every distinct cluster of the chosen structure types and metals, "
            "simulate VARIANTS PDFs of each with randomly drawn instrument and sample "
            "parameters (Qmin, Qmax, Qdamp, Qbroad, delta2, Uiso, scale, noise; ranges in "
            "docs/catalog.md), and store them in an HDF5 catalog. Runs on all local cores, "
            "or on a Dask cluster with --scheduler. An interrupted build resumes when the "
            "same command is run again."
        ),
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        type=path_arg,
        metavar="CATALOG.h5",
        help="file to write",
    )
    p.add_argument(
        "--nmax",
        type=int,
        default=200,
        metavar="N",
        help="most atoms per cluster (200; also the padded size of /structures/xyz and "
        "the size the model's representation is padded to: keep 200 for the shipped model)",
    )
    p.add_argument(
        "--nmin", type=int, default=5, metavar="N", help="fewest atoms per cluster (5)"
    )
    p.add_argument(
        "--types",
        nargs="+",
        default=None,
        metavar="TYPE",
        help=f"structure types (default all: {' '.join(STRUCTURE_TYPES)})",
    )
    p.add_argument(
        "--elements",
        nargs="+",
        default=None,
        metavar="EL",
        help="metals: symbols and/or presets "
        f"({', '.join(ELEMENT_PRESETS)}); default d-block (Sc..Zn, Y..Cd, Hf..Hg)",
    )
    p.add_argument(
        "--imperfect",
        nargs="*",
        default=None,
        metavar="KIND",
        help="add imperfect particles of these kinds after the ideal clusters (no KIND: "
        f"all of {' '.join(IMPERFECT_KINDS)}; relaxed = ASE EMT for Al Cu Ag Au Ni Pd Pt, "
        "the contraction model for other metals)",
    )
    p.add_argument(
        "--imperfect-count",
        nargs="+",
        default=None,
        metavar="N|KIND=N",
        help=f"imperfect structures per kind and metal ({DEFAULT_IMPERFECT_COUNT}), "
        "e.g. 60 or vacancies=80 twin=20",
    )
    p.add_argument(
        "--imperfect-source",
        default=None,
        type=word,
        metavar="NAME",
        help="variant grid of the geometric kinds: catalog (default, sized to "
        "--nmin..--nmax) or a shape-library variant set such as imperfect (250+ atoms)",
    )
    p.add_argument(
        "--variants",
        type=int,
        default=4,
        metavar="K",
        help="simulated PDFs per structure, each with its own parameter draw (4)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (0)")
    p.add_argument(
        "--rmax", type=float, default=30.0, metavar="A", help="r-grid end, exclusive (30)"
    )
    p.add_argument(
        "--rstep", type=float, default=0.05, metavar="A", help="r-grid step (0.05)"
    )
    p.add_argument(
        "--no-noise", action="store_true", help="simulate noiseless PDFs (noise range 0)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help=f"local worker processes (default: all {os.cpu_count()} cores)",
    )
    add_scheduler(p)
    p.add_argument(
        "--block-size",
        type=int,
        default=32,
        metavar="B",
        help="structures per work unit and per write (32)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing catalog and discard an unfinished build",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _check_metals(elements: list[str] | None) -> None:
    """Refuse non-metals early: the catalog holds metal nanoparticles."""
    from ..elements import is_metal, normalize_element

    for sym in elements or []:
        el = normalize_element(sym)
        if not is_metal(el):
            raise ElementError(
                f"--elements: {el} is not a metal; the catalog holds metal nanoparticles"
            )


def _counts(values: list[str] | None) -> int | dict[str, int] | None:
    """``--imperfect-count``: ``N`` for every kind, or ``KIND=N`` items."""
    words = _words(values)
    if not words:
        return None
    if len(words) == 1 and "=" not in words[0]:
        return _int("--imperfect-count", words[0])
    out: dict[str, int] = {}
    for w in words:
        kind, eq, n = w.partition("=")
        if not eq:
            raise ParameterError(
                f"--imperfect-count: give one number or KIND=N items, got {' '.join(words)}"
            )
        out[kind.strip().lower()] = _int(f"--imperfect-count {kind}", n)
    return out


def _int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ParameterError(f"{name}: {text!r} is not an integer") from None


def _imperfect(args: argparse.Namespace) -> ImperfectOptions | None:
    """The imperfect options, or None when ``--imperfect`` is not given."""
    if args.imperfect is None:
        if args.imperfect_count is not None or args.imperfect_source is not None:
            raise ParameterError(
                "--imperfect-count and --imperfect-source need --imperfect"
            )
        return None
    kinds = _words(args.imperfect) or None
    return ImperfectOptions(
        kinds=tuple(kinds) if kinds else None,
        counts=_counts(args.imperfect_count),
        source=args.imperfect_source or "catalog",
    )


def run(args: argparse.Namespace) -> int:
    """Build the catalog and print its statistics."""
    elements = _words(args.elements)
    _check_metals([e for e in elements or [] if e.lower() not in ELEMENT_PRESETS])
    ranges = SimulationRanges(noise=(0.0, 0.0)) if args.no_noise else SimulationRanges()
    config = CatalogConfig(
        elements=elements,
        types=_words(args.types),
        n_min=args.nmin,
        n_max=args.nmax,
        variants=args.variants,
        seed=args.seed,
        rmax=args.rmax,
        rstep=args.rstep,
        ranges=ranges,
        imperfect=_imperfect(args),
    )

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        report = build_catalog(
            args.output,
            config,
            workers=args.workers,
            scheduler=args.scheduler,
            block_size=args.block_size,
            overwrite=args.force,
            progress=not args.quiet,
            log=None if args.quiet else log,
        )
    except (OSError, TimeoutError) as exc:
        if args.scheduler is None:
            raise
        raise ParameterError(
            f"cannot use the Dask scheduler at {args.scheduler}: {exc}; the finished "
            "blocks are kept and the same command resumes the build"
        ) from None
    print(format_stats(report.stats or {}))
    print(
        f"wrote {report.path}: {report.n_structures} structures, {report.n_pdfs} PDFs "
        f"in {report.elapsed_s:.1f} s (workers: {report.workers})"
    )
    return 0
