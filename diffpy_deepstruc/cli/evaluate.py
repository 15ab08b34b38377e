"""``deepstruc evaluate``: score a trained model on a split of its catalog."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="score a model on the test (or validation) split of its catalog",
        description="Generate candidates for the PDFs of a catalog split and report the "
        "exact atom-count rate, the coordinate MAE (Hungarian assignment, rotation and "
        "isotropic scale) and the PDF MSE / Pearson, per structure type and overall, for "
        "the prior-mean sample and the best of N.",
    )
    p.add_argument(
        "--model",
        required=True,
        help="model folder (config.json + model.safetensors), or a shipped model: "
        "pretrained, pretrained-dae (distance), shapecode, shapecode-dae",
    )
    p.add_argument("--catalog", required=True, help="the catalog the model was trained on")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")
    p.add_argument(
        "--samples", type=int, default=20, help="candidates per PDF (default 20)"
    )
    p.add_argument(
        "--max-structures",
        type=int,
        default=200,
        help="evaluate a seeded, type-stratified subset of at most this many "
        "structures (0 = all; default 200)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="shape-code models: spread of the latent draws (default: the checkpoint's)",
    )
    p.add_argument(
        "--roundings",
        type=int,
        default=None,
        help="shape-code models: alternative roundings of the prior-mean code among the "
        "samples (default: the checkpoint's)",
    )
    p.add_argument(
        "--guided",
        type=int,
        default=0,
        metavar="M",
        help="shape-code models: guided sampling; draw M distinct proposals per PDF, "
        "screen them against the PDF (its simulated instrument, as a header gives it) "
        "and score the --samples best-fitting, best first (default 0: plain samples)",
    )
    p.add_argument(
        "--repeats",
        action="store_true",
        help="with --guided: draw the samples from the proposals with repeats, each as "
        "often as the data favour it (Rw ratio over the fit range's independent points)",
    )
    p.add_argument(
        "--sites",
        action="store_true",
        help="also match the sites of up to 5 exact-count samples per PDF to the truth "
        "(slow); reports the fraction of PDFs with >= 90 %% of sites matched",
    )
    p.add_argument("-o", "--output", default=None, help="write the full report as JSON")
    p.add_argument("--force", action="store_true", help="replace an existing report")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args) -> int:
    from ..errors import ParameterError
    from ..fileio import atomic_write_text, check_writable
    from ..metrics import evaluate, format_table

    if args.samples < 1:
        raise ParameterError("--samples must be >= 1")
    if args.guided and args.guided < args.samples:
        raise ParameterError(
            f"--guided {args.guided}: draw at least --samples ({args.samples}) proposals"
        )
    if args.output:
        check_writable(args.output, args.force)
    from ..shapegen.generator import load_generator

    gen = load_generator(args.model)
    sampling = {"temperature": args.temperature, "roundings": args.roundings}
    if any(v is not None for v in sampling.values()):
        from ..shapegen import ShapeGenerator

        if not isinstance(gen, ShapeGenerator):
            raise ParameterError("--temperature and --roundings are for shape-code models")
        gen = ShapeGenerator(gen.model, gen.meta, **sampling)
    rep = evaluate(
        args.model,
        args.catalog,
        split=args.split,
        samples=args.samples,
        max_structures=args.max_structures or None,
        seed=args.seed,
        progress=not args.no_progress,
        generator=gen,
        sites=args.sites,
        guided=args.guided,
        repeats=args.repeats,
    )
    rep["model"] = args.model
    print(
        f"{rep['kind']} on {rep['split']} split: {rep['n_pdfs']} PDFs"
        + (" (type-stratified subset)" if rep["subset"] else "")
        + f", {rep['samples']} samples each"
        + (
            f" (guided: the best-fitting of {args.guided} distinct proposals"
            + (", drawn with repeats by how the data favour them)" if args.repeats else ")")
            if args.guided
            else ""
        )
    )
    first = "best-fitting sample" if args.guided else "prior-mean sample"
    print(
        f"count@1/MAE@1/Pear@1: {first}; count@N: any of N exact; MAE@N, Pear@N: "
        "best of N by MAE; PearSel: best of N by Pearson; PearTrue: true structure"
        + (
            "; right: samples of the true type (or with its very atoms) within 10 % of the "
            "true count; right75: "
            "PDFs with >= 3/4 of the samples right"
            if "right_mean" in rep["overall"]
            else ""
        )
        + (
            "; sites90: PDFs with >= 90 % of sites matched by a sample"
            if args.sites
            else ""
        )
        + (
            "; wrongfit: PDFs whose best-fitting sample has the wrong count and fits "
            "at least as well as the true structure"
            if args.guided
            else ""
        )
    )
    print(format_table(rep))
    t = rep["overall"].get("sample_seconds")
    if t:
        print(f"sampling time per PDF: median {t['median']:.2f} s, mean {t['mean']:.2f} s")
    if args.output:
        atomic_write_text(
            args.output, json.dumps(rep, indent=1) + "\n", overwrite=args.force
        )
        print(f"report written to {args.output}")
    return 0
