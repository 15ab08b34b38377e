"""Training of the shape-code generator, and its checkpoint (safetensors + JSON).

The catalog's structures become shape codes (:mod:`.codes`); the PDFs and the split come
from the distance models' data path (:func:`diffpy_deepstruc.training.prepare_data`,
:func:`~diffpy_deepstruc.training.split_structures`), so a shape-wise split holds out the
same shapes for both kinds of model at the same seed.

Loss per PDF: cross-entropy of the family (label smoothing 0.1) + mean squared error of
the family's normalised numbers, for the latent point the model trains on (CVAE: a posterior sample;
DAE: the prior mean) and, for the CVAE, also for the prior mean (Sohn et al.'s hybrid
CVAE/GSNN objective: the first sample ``solve`` reads is the prior mean), plus
``beta`` x KL(q || p) for the CVAE.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as fn

from ..checkpoint import CONFIG_NAME, WEIGHTS_NAME, check_overwrite, sha256_file
from ..errors import CatalogError, CheckpointError, ParameterError
from ..fileio import atomic_write_bytes, atomic_write_text
from ..preprocess import PreprocessConfig
from .codes import encode, family_slots
from .network import CodeNet, CodeNetConfig

__all__ = [
    "CodeTable",
    "TrainCodeConfig",
    "code_table",
    "load_codegen",
    "save_codegen",
    "train_codegen",
]

FORMAT = "diffpy-deepstruc-shapegen"
FORMAT_VERSION = 1


@dataclass
class CodeTable:
    """The catalog's structures as shape codes.

    Attributes
    ----------
    families : list of str
    family : int ``[M]`` family index of each structure (-1: no code).
    theta : float ``[M, T]`` numbers, zero-padded.
    mask : float ``[M, T]`` 1 where a slot is used.
    skipped : dict
        Structure type -> number of its structures without a code (builders this
        module does not know; they are left out of training).
    """

    families: list
    family: np.ndarray
    theta: np.ndarray
    mask: np.ndarray
    skipped: dict


def code_table(types: np.ndarray, builders: np.ndarray) -> CodeTable:
    """Shape codes of the structures ``(type, builder entry)``."""
    codes: list[tuple[str, np.ndarray] | None] = []
    skipped: dict[str, int] = {}
    cache: dict[tuple[str, str], tuple[str, np.ndarray] | None] = {}
    for t, b in zip(types, builders, strict=True):
        key = (str(t), str(b))
        if key not in cache:
            try:
                cache[key] = encode(*key)
            except (ParameterError, CatalogError):
                cache[key] = None
        if cache[key] is None:
            skipped[key[0]] = skipped.get(key[0], 0) + 1
        codes.append(cache[key])
    families = sorted({c[0] for c in codes if c is not None})
    index = {f: i for i, f in enumerate(families)}
    T = max((len(family_slots(f)) for f in families), default=1)
    M = len(codes)
    fam = np.full(M, -1, dtype=np.int64)
    theta = np.zeros((M, T), dtype=np.float32)
    mask = np.zeros((M, T), dtype=np.float32)
    for i, c in enumerate(codes):
        if c is None:
            continue
        fam[i] = index[c[0]]
        theta[i, : len(c[1])] = c[1]
        mask[i, : len(c[1])] = 1.0
    return CodeTable(families, fam, theta, mask, skipped)


def _stats(table: CodeTable, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per family and slot mean and std ``[F, T]`` over the structures ``rows``
    (std 1 where a slot never varies or a family is absent)."""
    F, T = len(table.families), table.theta.shape[1]
    mean, std = np.zeros((F, T)), np.ones((F, T))
    for f in range(F):
        r = rows[table.family[rows] == f]
        if not len(r):
            continue
        th = table.theta[r].astype(float)
        mean[f] = th.mean(0)
        s = th.std(0)
        std[f] = np.where(s > 1e-6, s, 1.0)
    return mean, std


@dataclass
class TrainCodeConfig:
    """Settings of :func:`train_codegen` (stored in the checkpoint).

    ``augment``: random shape codes drawn beside the catalog's training shapes
    (:func:`~diffpy_deepstruc.shapegen.augment.random_shapes`, seed ``augment_seed``,
    ``workers`` processes); none repeats a catalog shape, held-out ones included.
    The kept weights are those of the epoch with the fewest validation decoding errors
    at the prior mean: wrong families (1 - accuracy) + the numbers' normalised MSE.
    ``temperature`` and ``roundings``: the generator's defaults (stored as
    ``sampling``; 0.5 and 8 were chosen on the validation split, see docs/shapegen.md).
    """

    kind: str = "cvae"
    split_by: str = "shape"
    split_fractions: tuple = (0.8, 0.1, 0.1)
    seed: int = 0
    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-5
    beta: float = 0.05
    anneal_epochs: int = 2
    code_weight: float = 1.0
    mean_weight: float = 1.0
    latent: int = 8
    model: dict = field(default_factory=dict)
    threads: int = 1
    temperature: float = 0.5
    roundings: int = 8
    label_smoothing: float = 0.1
    augment: int = 0
    augment_seed: int = 1
    workers: int = 1
    max_val_pdfs: int = 4096
    time_limit: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("cvae", "dae"):
            raise ParameterError(f"kind must be 'cvae' or 'dae', not {self.kind!r}")
        if self.split_by not in ("structure", "shape"):
            raise ParameterError(
                f"split_by must be 'structure' or 'shape', not {self.split_by!r}"
            )
        for name in ("epochs", "batch_size", "latent", "threads"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ParameterError(f"{name} must be a positive integer, not {v!r}")


def _losses(model: CodeNet, x, fam, th, mask, cfg: TrainCodeConfig, beta: float):
    c = model.condition(x)
    mu_p, lv_p = model.prior(c)

    def recon(z):
        logits, codes = model.decode(z)
        ce = fn.cross_entropy(logits, fam, label_smoothing=cfg.label_smoothing)
        pred = codes[torch.arange(len(fam)), fam]
        mse = (((pred - th) ** 2) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return ce, mse.mean(), logits

    ce_m, mse_m, logits_m = recon(mu_p)
    terms = {"ce_mean": ce_m, "mse_mean": mse_m}
    if model.kind == "cvae":
        F = len(model.config.families)
        code = torch.cat([fn.one_hot(fam, F).float(), th * mask], dim=1)
        mu_q, lv_q = model.posterior(c, code)
        z = mu_q + torch.exp(0.5 * lv_q) * torch.randn_like(mu_q)
        ce, mse, _ = recon(z)
        kl = 0.5 * (lv_p - lv_q + (lv_q.exp() + (mu_q - mu_p) ** 2) / lv_p.exp() - 1.0)
        kl = kl.sum(-1).mean()
        loss = ce + cfg.code_weight * mse + beta * kl
        loss = loss + cfg.mean_weight * (ce_m + cfg.code_weight * mse_m)
        terms.update(ce=ce, mse=mse, kl=kl)
    else:
        loss = ce_m + cfg.code_weight * mse_m
    terms["loss"] = loss
    terms["acc_mean"] = (logits_m.argmax(1) == fam).float().mean()
    return loss, terms


@dataclass
class _Arrays:
    """What the loop reads: PDFs ``[P, L]``, each PDF's structure (catalog rows, then
    the random shapes), each structure's family, normalised code and slot mask, the
    training and validation PDF rows, and the code statistics."""

    pdf: np.ndarray
    structure_of: np.ndarray
    family: np.ndarray
    theta: np.ndarray
    mask: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    table: CodeTable
    split: dict
    n_augmented: int
    elements: list


def _arrays(catalog, cfg: TrainCodeConfig, pre, cache_dir, progress, rng) -> _Arrays:
    """The catalog's PDFs and codes, split, normalised, plus the random shapes."""
    import h5py

    from ..training import _pdf_rows, _str_array, prepare_data, split_structures

    data = prepare_data(catalog, pre, cache_dir=cache_dir, progress=progress)
    with h5py.File(catalog, "r") as h5:
        builders = _str_array(h5["structures/builder"])
    table = code_table(data.types, builders)
    groups = np.arange(len(data.shape_of)) if cfg.split_by == "structure" else data.shape_of
    split = split_structures(data.types, groups, cfg.seed, cfg.split_fractions)
    coded = table.family >= 0
    train_s = split["train"][coded[split["train"]]]
    mean, std = _stats(table, train_s)
    ok = np.flatnonzero(coded)
    theta = np.zeros_like(table.theta)
    theta[ok] = (table.theta[ok] - mean[table.family[ok]]) / std[table.family[ok]]

    def rows_of(structs: np.ndarray) -> np.ndarray:
        r = _pdf_rows(data, structs)
        return r[coded[data.pdf_structure[r]]]

    a = _Arrays(
        pdf=data.pdf,
        structure_of=data.pdf_structure,
        family=table.family,
        theta=theta,
        mask=table.mask,
        train_rows=rows_of(split["train"]),
        val_rows=rows_of(split["val"]),
        mean=mean,
        std=std,
        table=table,
        split=split,
        n_augmented=0,
        elements=sorted({str(e) for e in data.elements}),
    )
    if cfg.augment:
        aug = _augmented(catalog, data, table, train_s, cfg, pre, cache_dir)
        M, P = len(a.family), len(a.pdf)
        a_th = (aug["theta"] - mean[aug["family"]]) / std[aug["family"]]
        a.pdf = np.concatenate([a.pdf, aug["pdf"]])
        a.structure_of = np.concatenate([a.structure_of, M + aug["shape_of"]])
        a.family = np.concatenate([a.family, aug["family"]])
        a.mask = np.concatenate([a.mask, aug["mask"]])
        a.theta = np.concatenate([a.theta, (a_th * aug["mask"]).astype(np.float32)])
        a.train_rows = np.concatenate([a.train_rows, P + np.arange(len(aug["pdf"]))])
        a.n_augmented = len(aug["family"])
    if cfg.max_val_pdfs and len(a.val_rows) > cfg.max_val_pdfs:
        a.val_rows = np.sort(rng.choice(a.val_rows, cfg.max_val_pdfs, replace=False))
    return a


def _fit(model: CodeNet, a: _Arrays, cfg: TrainCodeConfig, rng, progress, t0):
    """The epochs; the model ends with the weights of the best validation score.

    Returns
    -------
    (log rows, best epoch, best score)
    """
    pdf, fam = torch.from_numpy(a.pdf), torch.from_numpy(a.family)
    theta, mask = torch.from_numpy(a.theta), torch.from_numpy(a.mask)

    def batch(rows):
        s = torch.from_numpy(a.structure_of[rows])
        return pdf[torch.from_numpy(rows)], fam[s], theta[s], mask[s]

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = int(np.ceil(len(a.train_rows) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps, pct_start=0.1
    )
    log: list[dict[str, float]] = []
    best, best_state, best_epoch = np.inf, None, -1
    for epoch in range(cfg.epochs):
        model.train()
        beta = cfg.beta * min(1.0, (epoch + 1) / max(cfg.anneal_epochs, 1))
        perm = rng.permutation(a.train_rows)
        it = range(steps)
        if progress:
            from tqdm import tqdm

            it = tqdm(
                it, desc=f"epoch {epoch + 1}/{cfg.epochs}", file=sys.stderr, mininterval=5
            )
        tot = 0.0
        for k in it:
            rows = perm[k * cfg.batch_size : (k + 1) * cfg.batch_size]
            loss, _ = _losses(model, *batch(rows), cfg, beta)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            tot += float(loss.detach())
        model.eval()
        with torch.no_grad():
            vals = [
                _losses(model, *batch(a.val_rows[i : i + 512]), cfg, beta)[1]
                for i in range(0, len(a.val_rows), 512)
            ]
        v = {k: float(np.mean([float(d[k]) for d in vals])) for k in vals[0]}
        # what decoding gets wrong at the prior mean: the family (argmax) and the numbers
        score = (1.0 - v["acc_mean"]) + cfg.code_weight * v["mse_mean"]
        row = {
            "epoch": epoch + 1,
            "train_loss": tot / steps,
            "val_score": score,
            **{f"val_{k}": x for k, x in v.items()},
            "seconds": time.time() - t0,
        }
        log.append(row)
        if progress:
            print(json.dumps(row), file=sys.stderr, flush=True)
        if score < best:
            best, best_epoch = score, epoch + 1
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
        if cfg.time_limit and time.time() - t0 > cfg.time_limit:
            break
    model.load_state_dict(best_state)
    model.eval()
    if model.kind == "dae":
        with torch.no_grad():
            sub = rng.choice(a.train_rows, min(4096, len(a.train_rows)), replace=False)
            mu = model.prior(model.condition(pdf[torch.from_numpy(sub)]))[0]
            model.latent_noise.copy_(0.25 * mu.std(0))
    return log, best_epoch, best


def train_codegen(
    catalog: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: TrainCodeConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
    preprocess: PreprocessConfig | None = None,
) -> dict[str, Any]:
    """Train a shape-code CVAE or DAE on a catalog and write its checkpoint.

    Parameters
    ----------
    catalog : path
        A catalog file (``deepstruc catalog``).
    out_dir : path
        Checkpoint folder (``model.safetensors``, ``config.json``, ``loss_log.csv``).
    cfg : TrainCodeConfig
    cache_dir : path, optional
        Cache of the preprocessed PDFs (shared with ``deepstruc train``).
    force : bool
        Replace an existing checkpoint.
    progress : bool
        Progress bars and one JSON line per epoch on stderr.
    preprocess : PreprocessConfig, optional
        How PDFs become network inputs (default: the distance models' default).

    Returns
    -------
    dict
        Summary: random shapes added, epochs run, best epoch and its validation row,
        seconds.
    """
    cfg = cfg or TrainCodeConfig()
    out = Path(out_dir)
    check_overwrite(out, force)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    pre = preprocess or PreprocessConfig()
    rng = np.random.default_rng(cfg.seed + 1)
    a = _arrays(catalog, cfg, pre, cache_dir, progress, rng)
    model = CodeNet(
        CodeNetConfig(
            kind=cfg.kind,
            families=a.table.families,
            n_slots=int(a.table.theta.shape[1]),
            n_points=pre.n_points,
            latent=cfg.latent,
            **cfg.model,
        )
    )
    log, best_epoch, best = _fit(model, a, cfg, rng, progress, t0)
    config = {
        "kind": cfg.kind,
        "families": a.table.families,
        "theta_mean": a.mean.tolist(),
        "theta_std": a.std.tolist(),
        "preprocess": pre.to_dict(),
        "sampling": {"temperature": cfg.temperature, "roundings": cfg.roundings},
        "elements": a.elements,
        "catalog": {
            "file": Path(catalog).name,
            "sha256": sha256_file(catalog),
            "skipped": a.table.skipped,
        },
        "split": {
            "by": cfg.split_by,
            "seed": cfg.seed,
            "fractions": list(cfg.split_fractions),
            "test": a.split["test"].tolist(),
            "val": a.split["val"].tolist(),
        },
        "training": {
            **asdict(cfg),
            "augmented_shapes": a.n_augmented,
            "best_epoch": best_epoch,
            "best_val_score": best,
            "seconds": time.time() - t0,
            "torch_version": torch.__version__,
        },
    }
    save_codegen(model, config, out, overwrite=True)
    lines = [",".join(log[0])] + [",".join(f"{x:.6g}" for x in r.values()) for r in log]
    atomic_write_text(out / "loss_log.csv", "\n".join(lines) + "\n", overwrite=True)
    return {
        "augmented_shapes": a.n_augmented,
        "best_epoch": best_epoch,
        "epochs": len(log),
        "val": log[best_epoch - 1],
        "seconds": time.time() - t0,
    }


def _augmented(catalog, data, table: CodeTable, train_s, cfg, pre, cache_dir) -> dict:
    """Random training shapes (:func:`~.augment.random_shapes`) as arrays: ``pdf``
    (preprocessed), ``shape_of``, ``family`` (index into ``table.families``), ``theta``
    and ``mask`` per shape; cached in ``cache_dir``."""
    import h5py

    from ..elements import nearest_neighbour_distance
    from ..preprocess import BatchResampler
    from .augment import geometry_key, random_shapes
    from .codes import build

    key = hashlib.sha256(
        json.dumps(
            [
                data.catalog_sha256,
                pre.to_dict(),
                table.families,
                train_s.tolist(),
                cfg.augment,
                cfg.augment_seed,
                2,  # 2: canonical layer counts (codes.canonical_code)
            ],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:20]
    cache = Path(cache_dir) / f"shapegen-augment-{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        return {k: z[k] for k in z.files}
    F = table.families
    first: dict[tuple, int] = {}
    for i in np.flatnonzero(table.family >= 0):
        first.setdefault((int(table.family[i]), table.theta[i].tobytes()), int(i))
    nn = nearest_neighbour_distance("Au")
    exclude = set()
    for (f, _), i in first.items():
        if F[f].startswith("relaxed/"):
            continue
        k = int(table.mask[i].sum())
        atoms = build(F[f], table.theta[i, :k], "Au", nn)
        exclude.add(geometry_key(atoms.positions, nn))
    train_codes = {}
    for i in train_s:
        f = int(table.family[i])
        train_codes[(f, table.theta[i].tobytes())] = (
            F[f],
            table.theta[i, : int(table.mask[i].sum())],
        )
    with h5py.File(catalog, "r") as h5:
        if "config" not in h5.attrs:
            raise CatalogError(
                f"{catalog}: no 'config' attribute (instrument ranges, noise, sizes); "
                "random shapes need it: build the catalog with `deepstruc catalog`, or "
                "train with --augment 0"
            )
        config = json.loads(h5.attrs["config"])
        r = h5["r"][()]
    shapes = random_shapes(
        [v[0] for v in train_codes.values()],
        [v[1] for v in train_codes.values()],
        cfg.augment,
        config,
        exclude,
        seed=cfg.augment_seed,
        workers=cfg.workers,
    )
    index = {f: i for i, f in enumerate(F)}
    keep = [i for i, f in enumerate(shapes.families) if f in index]
    T = table.theta.shape[1]
    theta = np.zeros((len(keep), T), np.float32)
    mask = np.zeros((len(keep), T), np.float32)
    for j, i in enumerate(keep):
        theta[j, : len(shapes.theta[i])] = shapes.theta[i]
        mask[j, : len(shapes.theta[i])] = 1.0
    new_id = np.full(len(shapes.families), -1)
    new_id[keep] = np.arange(len(keep))
    rows = np.flatnonzero(new_id[shapes.shape_of] >= 0)
    out = {
        "pdf": BatchResampler(r, pre)(shapes.g[rows])[0].astype(np.float32),
        "shape_of": new_id[shapes.shape_of[rows]].astype(np.int64),
        "family": np.array([index[shapes.families[i]] for i in keep], dtype=np.int64),
        "theta": theta,
        "mask": mask,
    }
    if cache is not None:
        import io

        buf = io.BytesIO()
        np.savez(buf, **out)
        atomic_write_bytes(cache, buf.getvalue(), overwrite=True)
    return out


def save_codegen(
    model: CodeNet,
    config: dict[str, Any],
    directory: str | os.PathLike,
    overwrite: bool = False,
) -> Path:
    """Write a shape-code model (weights as safetensors, everything else as JSON)."""
    from safetensors.torch import save as st_save

    d = Path(directory)
    check_overwrite(d, overwrite)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = st_save(state, metadata={"format": FORMAT})
    cfg = dict(config)
    cfg.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        model=model.config.to_dict(),
        weights={
            "file": WEIGHTS_NAME,
            "sha256": __import__("hashlib").sha256(data).hexdigest(),
        },
    )
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(d / WEIGHTS_NAME, data, overwrite=True)
    atomic_write_text(
        d / CONFIG_NAME, json.dumps(cfg, indent=1, sort_keys=True) + "\n", overwrite=True
    )
    return d


_CONFIG_KEYS = ("families", "theta_mean", "theta_std", "preprocess", "model", "weights")


def load_codegen(directory: str | os.PathLike) -> tuple[CodeNet, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_codegen` (no pickle).

    Raises
    ------
    CheckpointError
        Missing or malformed files, a weights digest that does not match.
    """
    from safetensors.torch import load as st_load

    d = Path(directory)
    cpath, wpath = d / CONFIG_NAME, d / WEIGHTS_NAME
    if not cpath.is_file() or not wpath.is_file():
        raise CheckpointError(
            f"{d}: not a shape-code model ({CONFIG_NAME} and {WEIGHTS_NAME} needed)"
        )
    try:
        cfg = json.loads(cpath.read_text(encoding="utf-8"))
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"{cpath}: not JSON ({exc})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        fmt = cfg.get("format") if isinstance(cfg, dict) else None
        raise CheckpointError(f"{cpath}: format {fmt!r}, expected {FORMAT!r}")
    data = wpath.read_bytes()
    if hashlib.sha256(data).hexdigest() != cfg.get("weights", {}).get("sha256"):
        raise CheckpointError(f"{wpath}: weights do not match the digest in {CONFIG_NAME}")
    missing = [k for k in _CONFIG_KEYS if k not in cfg]
    if missing:
        raise CheckpointError(f"{cpath}: missing {', '.join(missing)}")
    try:
        model = CodeNet(CodeNetConfig.from_dict(dict(cfg["model"])))
        shape = (len(cfg["families"]), model.config.n_slots)
        for k in ("theta_mean", "theta_std"):
            if np.asarray(cfg[k], dtype=float).shape != shape:
                raise ParameterError(f"{k} is not {shape[0]} x {shape[1]} numbers")
        PreprocessConfig.from_dict(cfg["preprocess"])
        model.load_state_dict(st_load(data))
    except (RuntimeError, ParameterError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{d}: {exc}") from None
    return model.eval(), cfg
