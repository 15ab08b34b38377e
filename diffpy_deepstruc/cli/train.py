"""``deepstruc train``: train a CVAE or DAE on a catalog."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._args import int_range


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a CVAE or DAE on a structure catalog",
        description="Train the generative model on a catalog (HDF5) and write the best "
        "checkpoint (config.json + model.safetensors), loss_log.csv and a resumable state "
        "into the output folder.",
    )
    p.add_argument("--catalog", required=True, help="training catalog (.h5)")
    p.add_argument("-o", "--output", required=True, help="model folder to write")
    p.add_argument("--model", choices=("cvae", "dae"), default="cvae")
    p.add_argument("--latent", type=int, default=2, help="latent dimensions (default 2)")
    p.add_argument("--epochs", type=int, default=10, help="maximum epochs (default 10)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, batches and split")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: robust on shared CPUs)",
    )
    p.add_argument(
        "--patience", type=int, default=3, help="early-stopping patience (epochs)"
    )
    p.add_argument(
        "--beta", type=float, default=1e-3, help="final KL (CVAE) / latent-L2 (DAE) weight"
    )
    p.add_argument(
        "--split-by",
        choices=("structure", "shape"),
        default="structure",
        help="split unit: a catalog structure (default) or a shape with all metals",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=0.0,
        help="stop after this many minutes, keeping the best checkpoint",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="where the preprocessed data are cached (default: beside the output)",
    )
    p.add_argument(
        "--schedule",
        choices=("staged", "joint"),
        default="staged",
        help="staged (default): decoder and shape latents first, then the prior for "
        "--epochs epochs; joint: all networks together for --epochs epochs",
    )
    p.add_argument(
        "--shape-steps",
        type=int,
        default=10000,
        help="staged stage-1 steps (decoder + shape latents; default 10000)",
    )
    p.add_argument(
        "--stack-weight",
        type=float,
        default=5.0,
        help="staged stage 1: weight of the term placing stacking-faulted shapes on the "
        "fcc -> hcp line at their hcp-layer fraction (default 5; 0: off)",
    )
    p.add_argument(
        "--shape-std-floor",
        type=float,
        default=0.0,
        help="staged stage 1, CVAE: smallest shape-posterior std as a fraction of the "
        "RMS radius of the shape means (default 0: none)",
    )
    p.add_argument(
        "--gap-fraction",
        type=float,
        default=0.25,
        help="staged stage 1, CVAE: prior N(0, I) draws per batch (fraction of the "
        "batch) decoded to the nearest training shape (default 0.25; 0: none)",
    )
    p.add_argument(
        "--dense-hidden",
        type=int_range(16, 8192),
        default=None,
        metavar="N",
        help="width of the decoder's hidden layers (staged default 768); the last "
        "layer is solved by least squares on the shape means, so a catalog of many "
        "shapes needs at least as many hidden units as training shapes",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/last")
    p.add_argument("--force", action="store_true", help="replace an existing model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from ..training import TrainConfig, train

    cfg = TrainConfig(
        kind=args.model,
        latent=args.latent,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        patience=args.patience,
        beta=args.beta,
        split_by=args.split_by,
        time_limit=args.time_limit,
        schedule=args.schedule,
        shape_steps=args.shape_steps,
        stack_weight=args.stack_weight,
        shape_std_floor=args.shape_std_floor,
        gap_fraction=args.gap_fraction,
        model={} if args.dense_hidden is None else {"dense_hidden": args.dense_hidden},
    )
    out = Path(args.output)
    cache = args.cache_dir or (out.resolve().parent / ".deepstruc-cache")
    res = train(
        args.catalog,
        out,
        cfg,
        resume=args.resume,
        force=args.force,
        progress=not args.no_progress,
        cache_dir=cache,
        log=lambda m: print(m, flush=True),
    )
    print(
        f"{res.stopped}: {res.epochs_run} epochs, best validation loss "
        f"{res.best_val_loss:.5g} at epoch {res.best_epoch}, {res.seconds / 60:.1f} min; "
        f"model in {out}"
    )
    return 0
