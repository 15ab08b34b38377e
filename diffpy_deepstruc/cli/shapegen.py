"""``deepstruc shapegen``: train a shape-code generator (CVAE or DAE) on a catalog."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._args import positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "shapegen",
        help="train a shape-code generator (samples shapes absent from its catalog)",
        description="Train a PDF-conditioned CVAE or DAE whose decoder writes a shape "
        "code (a builder family and its numbers) instead of atom distances, on a catalog "
        "plus random shape codes drawn between its shapes; writes config.json, "
        "model.safetensors and loss_log.csv.  `deepstruc solve --model` and `deepstruc "
        "evaluate --model` read the folder.",
    )
    p.add_argument("--catalog", required=True, help="training catalog (.h5)")
    p.add_argument("-o", "--output", required=True, help="model folder to write")
    p.add_argument("--model", choices=("cvae", "dae"), default="cvae")
    p.add_argument("--latent", type=positive_int, default=8, help="latent dimensions (8)")
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs (10)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--beta", type=float, default=0.05, help="KL weight of the CVAE")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, batches, split")
    p.add_argument(
        "--split-by",
        choices=("structure", "shape"),
        default="shape",
        help="split unit: a shape with all its metals (default) or a catalog structure",
    )
    p.add_argument(
        "--augment",
        type=int,
        default=150000,
        help="random shape codes drawn beside the catalog's training shapes (150000: "
        "about 15000 new shapes on the imperfect catalog, 15 min with 2 workers; 0: none)",
    )
    p.add_argument("--augment-seed", type=int, default=1, help="seed of those draws")
    p.add_argument("--workers", type=positive_int, default=1, help="processes drawing")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    p.add_argument(
        "--cache-dir",
        default=None,
        help="where the preprocessed data are cached (default: beside the output)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from ..shapegen.training import TrainCodeConfig, train_codegen

    cfg = TrainCodeConfig(
        kind=args.model,
        latent=args.latent,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        beta=args.beta,
        seed=args.seed,
        split_by=args.split_by,
        augment=args.augment,
        augment_seed=args.augment_seed,
        workers=args.workers,
        threads=args.threads,
    )
    out = Path(args.output)
    cache = args.cache_dir or (out.resolve().parent / ".deepstruc-cache")
    res = train_codegen(
        args.catalog,
        out,
        cfg,
        cache_dir=cache,
        force=args.force,
        progress=not args.no_progress,
    )
    v = res["val"]
    print(
        f"{res['epochs']} epochs on the catalog's training shapes and "
        f"{res['augmented_shapes']} random shapes; best at epoch {res['best_epoch']} "
        f"(validation family accuracy {v['val_acc_mean']:.3f}, code MSE "
        f"{v['val_mse_mean']:.3f}), {res['seconds'] / 60:.1f} min; model in {out}"
    )
    return 0
