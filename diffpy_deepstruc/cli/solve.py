"""``deepstruc solve``: measured PDF -> ranked, refined candidate structures."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import DeepStrucError, ParameterError
from ._args import int_range, non_negative_float, path_arg, seed_int, word

#: Upper bounds of -n and --workers (a typo like -n 2000000 would exhaust memory).
MAX_CANDIDATES: int = 10_000
MAX_WORKERS: int = 512


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Declare the ``solve`` sub-command."""
    p = subparsers.add_parser(
        "solve",
        help="sample candidate structures for a PDF, refine them with srfit, rank by Rw",
        description=(
            "Sample N candidate structures from the generative model for a measured PDF, "
            "refine each with a diffpy.srfit recipe (scale, isotropic expansion, Uiso, "
            "delta2 free; Qdamp/Qbroad fixed) and rank them by Rw."
        ),
    )
    p.add_argument(
        "data",
        nargs="+",
        type=path_arg,
        help="PDF file (.gr); several files or a folder solve a series into -o",
    )
    p.add_argument(
        "-n",
        type=int_range(1, MAX_CANDIDATES),
        default=20,
        help="candidates to sample from each model (20)",
    )
    p.add_argument(
        "-o",
        "--outdir",
        type=path_arg,
        help="output folder (default: <data stem>_deepstruc)",
    )
    p.add_argument(
        "--element", type=word, help="the metal (default: from the file's composition)"
    )
    p.add_argument("--rmin", type=non_negative_float, help="fit range start, A (1.5)")
    p.add_argument(
        "--rmax", type=non_negative_float, help="fit range end, A (min(30, data))"
    )
    p.add_argument(
        "--rstep",
        type=non_negative_float,
        help="fit-grid spacing, A (default: the data's own points, as make_recipe)",
    )
    p.add_argument(
        "--qmin", type=non_negative_float, help="Qmin, 1/A (default: header, else 0)"
    )
    p.add_argument("--qmax", type=non_negative_float, help="Qmax, 1/A (default: header)")
    p.add_argument(
        "--qdamp", type=non_negative_float, help="Qdamp, 1/A (default: header, else 0)"
    )
    p.add_argument(
        "--qbroad", type=non_negative_float, help="Qbroad, 1/A (default: header, else 0)"
    )
    p.add_argument(
        "--model",
        type=path_arg,
        action="append",
        help="checkpoint folder: a distance model (deepstruc train) or a shape-code "
        "model (deepstruc shapegen), or a shipped one: pretrained, pretrained-dae "
        "(distance), shapecode, shapecode-dae; repeat it to sample from several; "
        "default: pretrained and shapecode",
    )
    p.add_argument("--seed", type=seed_int, default=0, help="sampling seed (0)")
    p.add_argument(
        "--workers",
        type=int_range(1, MAX_WORKERS),
        default=os.cpu_count() or 1,
        help="completions and refinements in parallel (default: all cores)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        type=word,
        help="series: run on an existing Dask scheduler (tcp://host:8786)",
    )
    p.add_argument(
        "--library-k",
        type=int,
        default=5,
        metavar="K",
        help="also screen the K shape-library structures (any size, to 4000 atoms) that "
        "best match the data (5; 0: only the model's samples)",
    )
    p.add_argument(
        "--refine-k",
        type=int_range(1, MAX_CANDIDATES),
        default=5,
        metavar="K",
        help="distinct candidates, best by the batched screening, refined with srfit (5)",
    )
    p.add_argument(
        "--search-k",
        type=int_range(0, MAX_CANDIDATES),
        default=3,
        metavar="K",
        help="walk the K best shape-code samples to neighbouring codes that fit "
        "better (3; 0: no code search)",
    )
    p.add_argument(
        "--proposals",
        type=int_range(0, 100_000),
        default=0,
        metavar="M",
        help="guided sampling: each shape-code model draws M distinct proposals, "
        "screens them against the data and keeps its -n best-fitting (with the "
        "neighbouring codes of its 5 best); 0: -n plain samples (0)",
    )
    p.add_argument(
        "--complete-k",
        type=int_range(0, MAX_CANDIDATES),
        default=3,
        metavar="K",
        help="complete the K best distinct candidates atom by atom (3)",
    )
    p.add_argument(
        "--no-complete",
        action="store_true",
        help="skip the completion stage (same as --complete-k 0)",
    )
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="torch device of the batched screening (default: cpu)",
    )
    p.add_argument(
        "--threads",
        type=int_range(1, MAX_WORKERS),
        default=1,
        help="torch CPU threads of this process (default 1: the batched sums are small, "
        "and more threads slow them down on a shared machine)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing result")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``deepstruc solve``."""
    from pathlib import Path

    from ..latent import model_map_or_none
    from ..pdfdata import load_pdf
    from ..solve import (
        discard_outdir,
        load_models,
        prepare_outdir,
        solve,
        write_solution,
    )

    if args.force and args.resume:
        raise ParameterError("--force and --resume exclude each other")
    import torch

    torch.set_num_threads(args.threads)
    if len(args.data) > 1 or Path(args.data[0]).is_dir():
        return _run_series(args)
    if args.scheduler:
        raise ParameterError(
            "--scheduler is for a series (several files or a folder); a single PDF is "
            "solved here, its refinements in --workers local processes"
        )
    data = args.data[0]
    pdf = load_pdf(data)
    outdir = Path(args.outdir or f"{Path(data).stem}_deepstruc")
    # the cheap checks first: nothing is created or removed before they all pass
    _check_outdir_only(outdir, args.force, args.resume)
    models = load_models(args.model)
    prepare_outdir(outdir, force=args.force, resume=args.resume)
    report: dict = {}
    try:
        result = solve(
            pdf,
            n=args.n,
            element=args.element,
            model=models,
            seed=args.seed,
            qmin=args.qmin,
            qmax=args.qmax,
            qdamp=args.qdamp,
            qbroad=args.qbroad,
            rmin=args.rmin,
            rmax=args.rmax,
            rstep=args.rstep,
            library_k=max(0, args.library_k),
            refine_k=args.refine_k,
            complete_k=0 if args.no_complete else args.complete_k,
            search_k=args.search_k,
            proposals=args.proposals,
            workers=min(args.workers, args.refine_k),
            outdir=outdir,
            resume=args.resume,
            progress=not args.no_progress,
            device=args.device,
            while_waiting=lambda: report.update(_prepare_report(models)),
        )
    except DeepStrucError:
        discard_outdir(outdir)  # bad input: leave nothing behind that this run made
        raise
    except KeyboardInterrupt:
        kept = len(list((outdir / "partial").glob("candidate_*.json")))
        print(
            f"deepstruc: interrupted; {kept} finished candidate(s) kept in "
            f"{outdir / 'partial'}; run the same command with --resume to continue",
            file=sys.stderr,
        )
        raise
    maps = report.get("maps") or [model_map_or_none(m) for m in models]
    write_solution(result, outdir, latent_maps=maps, overwrite=True, workers=args.workers)
    print_result(result)
    print(f"results in {outdir}/ (report.html, ranking.csv, summary.json, fit_XX.png)")
    return 0


def _prepare_report(models) -> dict:
    """What the report needs, loaded while the workers complete and refine: every
    model's latent map; matplotlib imported and its fonts loaded."""
    from .. import plots
    from ..latent import model_map_or_none

    plots.warm_up()
    return {"maps": [model_map_or_none(m) for m in models]}


def print_result(result) -> None:
    """The terminal summary of one solve: settings, notes, the ranking."""
    from ..solve import nearest_neighbour_distance
    from ..solve.report import describe_source, guided_note

    s = result.settings
    rstep = "data points" if s.rstep is None else f"step {s.rstep:g} A"
    print(
        f"{result.pdf.source}: {result.element}, fit {s.rmin:g}-{s.rmax:g} A ({rstep}), "
        f"Qmin {s.qmin:g}, Qmax {s.qmax:g}, Qdamp {s.qdamp:g}, Qbroad {s.qbroad:g}"
    )
    for note in result.notes:
        print(f"  note: {note}")
    print(
        f"  {result.n_sampled} sampled{guided_note(result)} + {result.n_library} "
        "library shapes, "
        f"{len(result.screened)} distinct screened, "
        f"{max(result.n_refined, len(result.candidates))} refined with srfit "
        f"({len(result.candidates)} distinct); {result.timings['total']:.1f} s"
    )
    print(f"  {'rank':>4} {'Rw':>8} {'fits':>5} {'atoms':>5} {'NN (A)':>7}  file  source")
    for k, c in enumerate(result.candidates[:10], start=1):
        src = describe_source(c)
        print(
            f"  {k:>4} {c.rw:8.4f} {'yes' if c.consistent else 'no':>5} {c.n_atoms:>5} "
            f"{nearest_neighbour_distance(c.structure):7.3f}  candidate_{k:02d}.xyz  {src}"
        )
    text = (result.consistent_test or {}).get("text")
    if text:
        print(f"  {text}")


def _check_outdir_only(outdir, force: bool, resume: bool) -> None:
    """Refuse an unusable output folder before any work (nothing is created)."""
    from ..errors import OutputExistsError

    if outdir.exists() and not outdir.is_dir():
        raise OutputExistsError(f"{outdir} exists and is not a folder; choose another -o")
    if resume and not force and (outdir / "summary.json").is_file():
        raise OutputExistsError(
            f"{outdir} holds a finished result (summary.json); nothing to resume -- "
            "pass --force to redo it or choose another -o"
        )


def _run_series(args: argparse.Namespace) -> int:
    """Solve several PDFs (``deepstruc solve a.gr b.gr ...`` or a folder)."""
    from pathlib import Path

    from ..batch import check_series_outdir, find_pdf_files, solve_series
    from ..solve import load_models

    if not args.outdir:
        raise ParameterError("a series needs an output folder: -o OUTDIR")
    out = Path(args.outdir)
    files = find_pdf_files(args.data)
    check_series_outdir(out, force=args.force, resume=args.resume)
    if args.model:
        load_models(args.model)  # a bad checkpoint fails here, not once per PDF
    options = {
        "n": args.n,
        "element": args.element,
        "seed": args.seed,
        "qmin": args.qmin,
        "qmax": args.qmax,
        "qdamp": args.qdamp,
        "qbroad": args.qbroad,
        "rmin": args.rmin,
        "rmax": args.rmax,
        "rstep": args.rstep,
        "library_k": max(0, args.library_k),
        "refine_k": args.refine_k,
        "complete_k": 0 if args.no_complete else args.complete_k,
        "search_k": args.search_k,
        "proposals": args.proposals,
        "threads": args.threads,
        "model": [str(Path(m).resolve()) for m in args.model] if args.model else None,
        "force": args.force,
    }

    def show(row):
        print(
            f"  {Path(row['file']).name}: {row['status']}"
            + (
                f", Rw {row['best_rw']}, {row['n_atoms']} atoms"
                if str(row["status"]).startswith("ok")
                else ""
            ),
            flush=True,
        )

    print(f"solving {len(files)} PDFs into {out}/", flush=True)
    try:
        rows = solve_series(
            files,
            out,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=not args.no_progress,
            on_row=show,
            **options,
        )
    except KeyboardInterrupt:
        print(
            f"deepstruc: interrupted; finished PDFs are kept in {out}/ (series.csv lists "
            "them); run the same command with --resume to continue",
            file=sys.stderr,
        )
        raise
    n_ok = sum(str(r["status"]).startswith("ok") for r in rows)
    print(f"{n_ok}/{len(rows)} solved; table {out}/series.csv, plot {out}/series.png")
    return 0 if n_ok == len(rows) else 1
