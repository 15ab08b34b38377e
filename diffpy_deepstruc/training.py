"""Training: dataset from a catalog, structure-wise split, loss, loop, resume.

Pipeline (``deepstruc train``, :func:`train`):

1. :func:`prepare_data` reads the catalog (HDF5, schema in ``docs/architecture.md``),
   preprocesses every PDF once (:mod:`diffpy_deepstruc.preprocess`) and encodes every
   *distinct shape* once (:func:`diffpy_deepstruc.representation.encode`): structures
   built with the same type and builder arguments are the same unit-sphere shape for
   every metal, only ``scale`` differs.  The result is cached as ``.npz`` beside the
   output (keyed by the catalog's SHA-256 and the preprocessing), so a restart does not
   redo it.  Satellite distances and the aDM are computed from the cached unit-sphere
   coordinates per batch (cheap), never stored.
2. :func:`split_structures` splits *structures* (catalog rows, all their simulated PDFs
   together) into train/validation/test, stratified by structure type, seeded.
   ``split_by="shape"`` groups every metal of one shape together instead (stricter).
3. :func:`train` runs the loop: AdamW, cosine learning-rate decay, linear KL (or, for
   the DAE, latent-L2) annealing, early stopping on the validation loss, a checkpoint of
   the best model (:func:`~diffpy_deepstruc.checkpoint.save_checkpoint`), a resumable
   training state (safetensors + JSON, no pickle) and a CSV loss log.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from . import __version__
from .checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    check_overwrite,
    load_checkpoint,
    save_checkpoint,
    sha256_file,
)
from .errors import CatalogError, CheckpointError, ParameterError
from .fileio import atomic_write_bytes, atomic_write_text
from .models import DeepStrucNet, ModelConfig, build_model, pairwise_distances
from .preprocess import BatchResampler, PreprocessConfig

__all__ = [
    "TrainConfig",
    "TrainingData",
    "prepare_data",
    "split_structures",
    "compute_losses",
    "train",
    "batch_targets",
    "read_catalog_meta",
]

LOG_COLUMNS = (
    "epoch",
    "lr",
    "beta",
    "train_loss",
    "train_sat",
    "train_adm",
    "train_sort",
    "train_mask",
    "train_scale",
    "train_latent",
    "train_prior",
    "val_loss",
    "val_sat",
    "val_adm",
    "val_sort",
    "val_mask",
    "val_scale",
    "val_latent",
    "val_count_exact",
    "seconds",
)


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (recorded in the checkpoint config).

    Attributes
    ----------
    kind : {"cvae", "dae"}
    latent : int
    epochs : int
        Maximum epochs.
    batch_size : int
    lr : float
        Peak learning rate (cosine decay to ``lr * lr_final``).
    weight_decay : float
    seed : int
        Seeds weights, batches, sampling and the split.
    split_fractions : (float, float, float)
        Train, validation, test fractions of the structures.
    split_by : {"structure", "shape"}
        Unit of the split: a catalog structure (one shape, one metal), or a shape with
        all its metals.
    patience : int
        Early stopping: epochs without validation improvement (after annealing).
    beta : float
        Final KL weight (CVAE) or latent L2 weight (DAE).
    anneal_epochs : int
        Epochs of linear annealing of ``beta`` from 0.
    weights : dict
        Loss weights of the reconstruction terms ``sat``, ``adm``, ``sort``, ``mask``,
        ``scale``.
    threads : int
        torch CPU threads (fixed for reproducibility).
    device : str
        "cpu" or "cuda".
    time_limit : float
        Stop after this many minutes (0: no limit); the best checkpoint is kept.
    max_val_pdfs : int
        Validation PDFs used per epoch (a fixed seeded subset; 0 = all).
    adm_rows : int
        aDM rows (random real atoms) per structure in the training loss (0 = all).
    prior_weight : float
        Weight of the reconstruction from the prior mean (the inference path); keeps
        the PDF condition informative instead of letting the posterior carry everything.
    match : bool
        Permutation-robust loss: compare atoms after the optimal assignment
        (:func:`match_atoms`) instead of in canonical slot order.
    schedule : {"joint", "staged"}
        ``"joint"``: every network trained together, ``epochs`` epochs over the PDFs.
        ``"staged"`` (:mod:`diffpy_deepstruc.staged`): the decoder and per-shape latents
        first (``shape_steps``), then the prior for ``epochs`` epochs; the architecture
        gets :data:`~diffpy_deepstruc.staged.STAGED_MODEL` (decoder reads z alone).
    shape_steps, shape_batch : int
        Staged stage 1: steps and shapes per step.
    shape_beta : float
        Staged stage 1: weight of KL(q_u || N(0, I)) (CVAE) or |m_u|^2 (DAE).
    latent_lr : float
        Staged stage 1: learning rate of the per-shape latents.
    aux_weight : float
        Staged stage 1: weight of the structure-type and hcp-fraction heads on the latent.
    prior_batch : int
        Staged stage 2: PDFs per step.
    readout_ridge : float
        Staged stage 1b: ridge of the least-squares solve of the decoder's last layer
        (0: skip the solve).
    readout_samples : int
        Staged stage 1b: posterior draws per shape in that solve (CVAE).
    readout_mean_weight : float
        Staged stage 1b, CVAE: weight of each shape mean's row in that solve (the
        posterior draws of a shape weigh 1 in all).
    stack_weight : float
        Staged stage 1: weight of the stacking-axis term
        (:func:`~diffpy_deepstruc.staged.stacking_loss`: a stacking-faulted shape's
        position on the fcc -> hcp line = its hcp-like layer fraction).
    shape_std_floor : float
        Staged stage 1, CVAE: smallest posterior std of a shape latent, as a fraction
        of the RMS radius of the shape means (0: no floor).
    gap_fraction : float
        Staged stage 1 and 1b, CVAE: draws of the prior N(0, I) added to each batch, as
        a fraction of ``shape_batch``, each decoded to the training shape with the
        nearest mean (:func:`~diffpy_deepstruc.staged.prior_samples`; 0: none).
    """

    kind: str = "cvae"
    latent: int = 2
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    lr_final: float = 0.05
    weight_decay: float = 1e-5
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_by: str = "structure"
    patience: int = 3
    beta: float = 1e-3
    anneal_epochs: int = 2
    weights: dict = field(
        default_factory=lambda: {
            "sat": 1.0,
            "adm": 1.0,
            "sort": 0.5,
            "mask": 1.0,
            "scale": 1.0,
        }
    )
    threads: int = 1
    device: str = "cpu"
    time_limit: float = 0.0
    max_val_pdfs: int = 2048
    adm_rows: int = 32
    prior_weight: float = 1.0
    match: bool = True
    schedule: str = "joint"
    shape_steps: int = 10000
    shape_batch: int = 64
    shape_beta: float = 1e-4
    latent_lr: float = 1e-2
    aux_weight: float = 0.1
    prior_batch: int = 128
    readout_ridge: float = 1e-6
    readout_samples: int = 8
    readout_mean_weight: float = 30.0
    stack_weight: float = 5.0
    shape_std_floor: float = 0.0
    gap_fraction: float = 0.25
    model: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("cvae", "dae"):
            raise ParameterError(f"--model must be cvae or dae, not {self.kind!r}")
        for name in ("latent", "epochs", "batch_size", "threads"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ParameterError(f"{name} must be a positive integer, not {v!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ParameterError(f"lr must be positive, not {self.lr}")
        fr = tuple(float(x) for x in self.split_fractions)
        if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1) > 1e-6 or fr[0] <= 0:
            raise ParameterError(
                f"split fractions must be 3 non-negative numbers summing "
                f"to 1, not {self.split_fractions}"
            )
        object.__setattr__(self, "split_fractions", fr)
        if self.split_by not in ("structure", "shape"):
            raise ParameterError(
                f"split_by must be 'structure' or 'shape', not {self.split_by!r}"
            )
        if self.schedule not in ("joint", "staged"):
            raise ParameterError(
                f"schedule must be 'joint' or 'staged', not {self.schedule!r}"
            )
        for name in ("shape_steps", "shape_batch", "prior_batch", "readout_samples"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ParameterError(f"{name} must be a positive integer, not {v!r}")
        for name in (
            "stack_weight",
            "shape_std_floor",
            "gap_fraction",
            "readout_mean_weight",
        ):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ParameterError(f"{name} must be a finite number >= 0, not {v!r}")
        if not self.readout_ridge >= 0:
            raise ParameterError(f"readout_ridge must be >= 0, not {self.readout_ridge}")
        if self.beta < 0 or self.anneal_epochs < 0 or self.patience < 1:
            raise ParameterError("beta, anneal_epochs must be >= 0 and patience >= 1")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["split_fractions"] = list(self.split_fractions)
        return d


# ------------------------------------------------------------------------------- data
@dataclass
class TrainingData:
    """Everything the loop needs, in memory.

    Attributes
    ----------
    pdf : float32 ``[P, L]`` preprocessed PDFs.
    pdf_structure : int ``[P]`` catalog structure row of each PDF.
    pdf_r1 : float ``[P]`` nearest-neighbour peak position of each PDF (A).
    shape_of : int ``[M]`` shape index of each structure.
    scale : float ``[M]`` Angstrom per unit of each structure.
    shape_coords : float32 ``[U, n_max, 3]`` canonical unit-sphere coordinates.
    shape_natoms : int ``[U]``.
    types, elements : str ``[M]``.
    shape_keys : list of str ``[U]`` (type + builder arguments).
    catalog_sha256 : str
    n_max, n_satellites : int
    """

    pdf: np.ndarray
    pdf_structure: np.ndarray
    pdf_r1: np.ndarray
    shape_of: np.ndarray
    scale: np.ndarray
    shape_coords: np.ndarray
    shape_natoms: np.ndarray
    types: np.ndarray
    elements: np.ndarray
    shape_keys: list
    catalog_sha256: str
    n_max: int
    n_satellites: int


def _str_array(ds) -> np.ndarray:
    vals = ds[()]
    return np.array(
        [v.decode() if isinstance(v, bytes) else str(v) for v in vals], dtype=object
    )


def read_catalog_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Root attributes of a catalog (format, version, n_max, seed, config)."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise CatalogError(f"{p}: catalog file not found")
    try:
        with h5py.File(p, "r") as h5:
            attrs = {
                k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()
            }
            for need in (
                "r",
                "structures/xyz",
                "structures/natoms",
                "structures/type",
                "pdfs/g",
                "pdfs/structure",
            ):
                if need not in h5:
                    raise CatalogError(f"{p}: not a catalog ('/{need}' missing)")
    except OSError as exc:
        raise CatalogError(f"{p}: cannot read as HDF5 ({exc})") from None
    return attrs


def _shape_key(stype: str, builder: str) -> str:
    try:
        args = json.loads(builder)
    except (TypeError, json.JSONDecodeError):
        return f"{stype}|{builder}"
    if isinstance(args, dict):
        args = {k: v for k, v in args.items() if k not in ("element", "nn", "symbol")}
    return f"{stype}|{json.dumps(args, sort_keys=True)}"


def prepare_data(
    catalog: str | os.PathLike,
    preprocess: PreprocessConfig | None = None,
    n_satellites: int = 11,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> TrainingData:
    """Read a catalog into a :class:`TrainingData` (cached as ``.npz`` in ``cache_dir``).

    Raises
    ------
    CatalogError
        Unreadable or malformed catalog.
    """
    import h5py

    from .representation import encode

    pre = preprocess or PreprocessConfig()
    meta = read_catalog_meta(catalog)
    sha = sha256_file(catalog)
    key = hashlib.sha256(
        json.dumps([sha, pre.to_dict(), n_satellites, 2], sort_keys=True).encode()
    ).hexdigest()[:20]
    cache = Path(cache_dir) / f"deepstruc-data-{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        try:
            z = np.load(cache, allow_pickle=False)
            return TrainingData(
                pdf=z["pdf"],
                pdf_structure=z["pdf_structure"],
                pdf_r1=z["pdf_r1"],
                shape_of=z["shape_of"],
                scale=z["scale"],
                shape_coords=z["shape_coords"],
                shape_natoms=z["shape_natoms"],
                types=z["types"].astype(object),
                elements=z["elements"].astype(object),
                shape_keys=list(z["shape_keys"]),
                catalog_sha256=sha,
                n_max=int(z["n_max"]),
                n_satellites=n_satellites,
            )
        except (OSError, KeyError, ValueError):
            pass  # rebuild a broken cache
    with h5py.File(catalog, "r") as h5:
        r = h5["r"][()]
        xyz_all = h5["structures/xyz"]
        natoms = h5["structures/natoms"][()].astype(np.int64)
        types = _str_array(h5["structures/type"])
        elements = (
            _str_array(h5["structures/element"])
            if "structures/element" in h5
            else np.array(["?"] * len(natoms), dtype=object)
        )
        builders = (
            _str_array(h5["structures/builder"])
            if "structures/builder" in h5
            else np.array([str(i) for i in range(len(natoms))], dtype=object)
        )
        n_max = int(meta.get("n_max", xyz_all.shape[1]))
        pdf_structure = h5["pdfs/structure"][()].astype(np.int64)
        M = len(natoms)
        if pdf_structure.size and (pdf_structure.min() < 0 or pdf_structure.max() >= M):
            raise CatalogError(f"{catalog}: /pdfs/structure points outside /structures")
        try:
            res = BatchResampler(r, pre)
        except Exception as exc:
            raise CatalogError(
                f"{catalog}: its r-grid cannot feed the model: {exc}"
            ) from None

        gds = h5["pdfs/g"]
        P = gds.shape[0]
        pdf = np.empty((P, pre.n_points), dtype=np.float32)
        pdf_r1 = np.empty(P, dtype=np.float64)
        for a in range(0, P, 4096):
            try:
                pdf[a : a + 4096], pdf_r1[a : a + 4096] = res(gds[a : a + 4096])
            except Exception as exc:
                raise CatalogError(
                    f"{catalog}: PDFs {a}..{a + 4095} cannot feed the model: {exc}"
                ) from None
        xyz = xyz_all[()].astype(np.float64)

    keys = [_shape_key(t, b) for t, b in zip(types, builders, strict=True)]
    shape_index: dict[str, int] = {}
    ref: list[tuple[int, np.ndarray]] = []  # (origin atom original index, unit coords)
    shape_coords: list[np.ndarray] = []
    shape_natoms: list[int] = []
    shape_keys: list[str] = []
    shape_of = np.empty(M, dtype=np.int64)
    scale = np.empty(M, dtype=np.float64)
    it = range(M)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="encoding shapes", file=sys.stderr, mininterval=2)
    for i in it:
        n = int(natoms[i])
        x = xyz[i, :n]
        u = shape_index.get(keys[i])
        if u is not None:
            o, order, rot, unit = ref[u]
            v = x - x[o]
            s = float(np.sqrt((v * v).sum(1).max()))
            if s > 0 and unit.shape[0] == n and np.allclose(v / s, unit, atol=1e-4):
                shape_of[i], scale[i] = u, s
                continue
            keys[i] = f"{keys[i]}#{i}"  # not the same geometry after all: its own shape
        rep = encode(x, n_max=n_max, n_satellites=n_satellites)
        u = len(shape_coords)
        shape_index[keys[i]] = u
        o = int(rep.order[0])
        v = x - x[o]
        ref.append((o, rep.order, rep.rotation, v / rep.scale))
        shape_coords.append(rep.coords.astype(np.float32))
        shape_natoms.append(n)
        shape_keys.append(keys[i])
        shape_of[i], scale[i] = u, rep.scale
    data = TrainingData(
        pdf=pdf,
        pdf_structure=pdf_structure,
        pdf_r1=pdf_r1,
        shape_of=shape_of,
        scale=scale,
        shape_coords=np.stack(shape_coords)
        if shape_coords
        else np.zeros((0, n_max, 3), np.float32),
        shape_natoms=np.asarray(shape_natoms, dtype=np.int64),
        types=types,
        elements=elements,
        shape_keys=shape_keys,
        catalog_sha256=sha,
        n_max=n_max,
        n_satellites=n_satellites,
    )
    # Structures of one shape share the canonical coordinates only if their atoms come in
    # the same builder order; the check above guarantees it (else a new shape is made).
    if cache is not None:
        buf = io.BytesIO()
        np.savez(
            buf,
            pdf=data.pdf,
            pdf_structure=data.pdf_structure,
            pdf_r1=data.pdf_r1,
            shape_of=data.shape_of,
            scale=data.scale,
            shape_coords=data.shape_coords,
            shape_natoms=data.shape_natoms,
            types=data.types.astype(str),
            elements=data.elements.astype(str),
            shape_keys=np.asarray(data.shape_keys, dtype=str),
            n_max=n_max,
        )
        atomic_write_bytes(cache, buf.getvalue(), overwrite=True)
    return data


def split_structures(
    types: np.ndarray,
    groups: np.ndarray,
    seed: int,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> dict[str, np.ndarray]:
    """Split structures into train/val/test, stratified by type, whole groups at a time.

    Parameters
    ----------
    types : ``[M]`` structure type per structure.
    groups : ``[M]`` group id per structure (the structure itself, or its shape); all
        structures of a group land in the same split.
    seed : int
    fractions : train, validation, test.

    Returns
    -------
    dict
        ``{"train", "val", "test"}`` -> sorted structure indices.  Each type with at
        least 3 groups has at least one group in validation and in test (if their
        fractions are > 0).
    """
    types = np.asarray(types).astype(str)
    groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for t in sorted(set(types)):
        idx = np.flatnonzero(types == t)
        ug = np.unique(groups[idx])
        ug = ug[rng.permutation(len(ug))]
        n = len(ug)
        n_test = int(round(fractions[2] * n))
        n_val = int(round(fractions[1] * n))
        if n >= 3:
            n_test = max(n_test, 1 if fractions[2] > 0 else 0)
            n_val = max(n_val, 1 if fractions[1] > 0 else 0)
        n_test = min(n_test, n)
        n_val = min(n_val, n - n_test)
        parts = {
            "test": ug[:n_test],
            "val": ug[n_test : n_test + n_val],
            "train": ug[n_test + n_val :],
        }
        for name, gs in parts.items():
            out[name].extend(idx[np.isin(groups[idx], gs)].tolist())
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in out.items()}


# ------------------------------------------------------------------------------- loss
def batch_targets(coords: torch.Tensor, natoms: torch.Tensor, satellites: torch.Tensor):
    """Targets from unit-sphere coordinates.

    Parameters
    ----------
    coords : ``[B, N, 3]``; natoms : ``[B]``; satellites : ``[S, 3]``.

    Returns
    -------
    sat_dist ``[B, N, S]``, adm ``[B, N, N]``, mask ``[B, N]`` (bool); padded rows 0.
    """
    n = coords.shape[1]
    mask = torch.arange(n, device=coords.device).unsqueeze(0) < natoms.unsqueeze(1)
    m = mask.to(coords.dtype)
    sat = torch.cdist(coords, satellites.unsqueeze(0).expand(coords.shape[0], -1, -1))
    sat = sat * m.unsqueeze(-1)
    adm = pairwise_distances(coords, eps=0.0) * m.unsqueeze(1) * m.unsqueeze(2)
    return sat, adm, mask


def _kl(mu_q, logvar_q, mu_p, logvar_p) -> torch.Tensor:
    """KL(N(mu_q, var_q) || N(mu_p, var_p)) summed over latent dims -> ``[B]``."""
    return 0.5 * (
        logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1.0
    ).sum(-1)


def match_atoms(
    pred_sat: torch.Tensor, sat: torch.Tensor, natoms: torch.Tensor
) -> torch.Tensor:
    """Optimal one-to-one assignment of predicted to true atoms (Hungarian).

    For each structure, the first ``n`` predicted slots are matched to the ``n`` true
    atoms by :func:`scipy.optimize.linear_sum_assignment` on the squared differences of
    their satellite distances (a proxy for squared positions).

    Returns
    -------
    perm : long ``[B, N]``
        ``perm[b, k]`` is the true atom assigned to slot ``k`` (identity past ``n``).
    """
    from scipy.optimize import linear_sum_assignment

    B, N, _ = sat.shape
    perm = torch.arange(N).repeat(B, 1)
    with torch.no_grad():
        cost_all = torch.cdist(pred_sat.detach().float().cpu(), sat.detach().float().cpu())
    for b in range(B):
        n = int(natoms[b])
        if n < 2:
            continue
        _, col = linear_sum_assignment(cost_all[b, :n, :n].numpy() ** 2)
        perm[b, :n] = torch.from_numpy(col)
    return perm.to(sat.device)


def _permute_targets(sat, adm, perm):
    sat_p = torch.gather(sat, 1, perm.unsqueeze(-1).expand_as(sat))
    adm_p = torch.gather(adm, 1, perm.unsqueeze(-1).expand_as(adm))
    adm_p = torch.gather(adm_p, 2, perm.unsqueeze(1).expand_as(adm))
    return sat_p, adm_p


def _recon_terms(
    model, out, sat, adm, mask, log_scale, adm_rows: int = 0, match: bool = False
):
    m = mask.to(sat.dtype)
    if match:
        perm = match_atoms(out["sat_dist"], sat, mask.sum(1))
        sat, adm = _permute_targets(sat, adm, perm)
    n_real = m.sum(1).clamp_min(1.0)
    S = sat.shape[-1]
    pred_sat = out["sat_dist"]
    err = ((pred_sat - sat) ** 2 * m.unsqueeze(-1)).sum((1, 2)) / (n_real * S)
    big = 1e3
    ps = torch.where(mask.unsqueeze(-1), pred_sat, torch.full_like(pred_sat, big))
    ts = torch.where(mask.unsqueeze(-1), sat, torch.full_like(sat, big))
    sort_err = ((ps.sort(dim=1).values - ts.sort(dim=1).values) ** 2).sum((1, 2)) / (
        n_real * S
    )
    emb = out["emb"]
    if adm_rows and adm_rows < emb.shape[1]:
        # a random subset of real atoms' rows of the aDM (all columns): same expectation,
        # a fraction of the cost
        B, N = m.shape
        gen = torch.rand(B, adm_rows, device=emb.device)
        rows = (gen * n_real.unsqueeze(1)).long().clamp_max(N - 1)  # [B, R]
        e_r = torch.gather(emb, 1, rows.unsqueeze(-1).expand(-1, -1, emb.shape[-1]))
        d2 = ((e_r.unsqueeze(2) - emb.unsqueeze(1)) ** 2).sum(-1)  # [B, R, N]
        pred_rows = torch.sqrt(d2 + 1e-8) - 1e-4
        tgt_rows = torch.gather(adm, 1, rows.unsqueeze(-1).expand(-1, -1, N))
        pm = m.unsqueeze(1).expand(-1, adm_rows, -1)
        pm = pm * (torch.arange(N, device=emb.device).view(1, 1, N) != rows.unsqueeze(-1))
        adm_err = ((pred_rows - tgt_rows) ** 2 * pm).sum((1, 2)) / pm.sum((1, 2)).clamp_min(
            1.0
        )
    else:
        pred_adm = pairwise_distances(emb)
        pm = m.unsqueeze(1) * m.unsqueeze(2)
        adm_err = ((pred_adm - adm) ** 2 * pm).sum((1, 2)) / pm.sum((1, 2)).clamp_min(1.0)
    mask_err = F.binary_cross_entropy_with_logits(
        out["mask_logit"], m, reduction="none"
    ).mean(1)
    target_ls = (log_scale - model.log_scale_mean) / model.log_scale_std
    scale_err = (out["log_scale"] - target_ls) ** 2
    return {
        "sat": err.mean(),
        "adm": adm_err.mean(),
        "sort": sort_err.mean(),
        "mask": mask_err.mean(),
        "scale": scale_err.mean(),
    }


def compute_losses(
    model: DeepStrucNet,
    out: dict[str, torch.Tensor],
    sat: torch.Tensor,
    adm: torch.Tensor,
    mask: torch.Tensor,
    log_scale: torch.Tensor,
    beta: float,
    weights: dict[str, float],
    adm_rows: int = 0,
    out_prior: dict[str, torch.Tensor] | None = None,
    prior_weight: float = 0.0,
    match: bool = False,
) -> dict[str, torch.Tensor]:
    """Loss terms (scalars) and their weighted total ``loss``.

    * ``sat``: MSE of the atom-satellite distances over real atoms, in canonical order,
      or (``match=True``, the default in training) after the optimal assignment of the
      predicted to the true atoms (:func:`match_atoms`) -- the permutation-robust loss;
    * ``adm``: MSE of the aDM over real atom pairs (``adm_rows > 0``: over the rows of
      that many randomly drawn real atoms, an unbiased estimate at a fraction of the cost);
    * ``sort``: permutation-invariant MSE -- each satellite's distances, sorted over the
      real atoms, against the sorted targets (insensitive to which slot holds which atom);
    * ``mask``: binary cross-entropy of the atom mask over all slots;
    * ``scale``: MSE of the standardised log scale;
    * ``latent``: KL(q || p) (CVAE) or |mu_q - mu_p|^2 (DAE), weighted by ``beta``;
    * ``prior``: the weighted reconstruction terms again for ``out_prior`` (the decoder
      run on the *prior mean*, as at inference), times ``prior_weight``.
    """
    terms = _recon_terms(model, out, sat, adm, mask, log_scale, adm_rows, match)
    if model.kind == "dae":
        lat = ((out["mu_q"] - out["mu_p"]) ** 2).sum(-1)
    else:
        lat = _kl(out["mu_q"], out["logvar_q"], out["mu_p"], out["logvar_p"])
    terms["latent"] = lat.mean()
    keys = ("sat", "adm", "sort", "mask", "scale")
    total = sum(weights.get(k, 0.0) * terms[k] for k in keys)
    if out_prior is not None and prior_weight > 0:
        tp = _recon_terms(model, out_prior, sat, adm, mask, log_scale, adm_rows, match)
        terms["prior"] = sum(weights.get(k, 0.0) * tp[k] for k in keys)
        total = total + prior_weight * terms["prior"]
    terms["loss"] = total + beta * terms["latent"]
    return terms


# ------------------------------------------------------------------------------- loop
class _Batcher:
    """Tensors of a set of PDFs, on the training device."""

    def __init__(
        self,
        data: TrainingData,
        pdf_index: np.ndarray,
        device: torch.device,
        satellites: torch.Tensor,
    ) -> None:
        self.idx = pdf_index
        self.data = data
        self.device = device
        self.sats = satellites
        self.pdf = torch.from_numpy(data.pdf)
        self.coords = torch.from_numpy(data.shape_coords)
        self.natoms = torch.from_numpy(data.shape_natoms)
        # targets of every distinct shape, computed once (float32)
        sat, adm, mask = [], [], []
        for a in range(0, len(self.coords), 64):
            t = batch_targets(
                self.coords[a : a + 64], self.natoms[a : a + 64], satellites.cpu()
            )
            sat.append(t[0])
            adm.append(t[1])
            mask.append(t[2])
        n, s_ = self.coords.shape[1], satellites.shape[0]
        self.sat = torch.cat(sat) if sat else torch.zeros(0, n, s_)
        self.adm = torch.cat(adm) if adm else torch.zeros(0, n, n)
        self.mask = torch.cat(mask) if mask else torch.zeros(0, n, dtype=torch.bool)
        self.shape = torch.from_numpy(data.shape_of[data.pdf_structure])
        self.log_scale = torch.from_numpy(scale_target(data).astype(np.float32))

    def get(self, rows: np.ndarray):
        rows_t = torch.from_numpy(rows)
        sh = self.shape[rows_t]
        pdf = self.pdf[rows_t].to(self.device)
        sat = self.sat[sh].to(self.device)
        adm = self.adm[sh].to(self.device)
        mask = self.mask[sh].to(self.device)
        return pdf, sat, adm, mask, self.log_scale[rows_t].to(self.device)


def scale_target(data: TrainingData) -> np.ndarray:
    """Per-PDF scale target: log(scale / r1) (metal-independent: the unit-sphere scale in
    units of the PDF's nearest-neighbour distance), or log(scale) where r1 is unknown."""
    s = np.log(data.scale[data.pdf_structure])
    r1 = data.pdf_r1
    return np.where(np.isfinite(r1) & (r1 > 0), s - np.log(np.where(r1 > 0, r1, 1.0)), s)


def _beta(cfg: TrainConfig, epoch: int) -> float:
    if cfg.anneal_epochs == 0:
        return cfg.beta
    return cfg.beta * min(1.0, epoch / cfg.anneal_epochs)


def _lr(cfg: TrainConfig, epoch: int) -> float:
    t = min(1.0, epoch / max(1, cfg.epochs - 1))
    return cfg.lr * (cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * t)))


def _evaluate(model, batcher: _Batcher, rows: np.ndarray, cfg: TrainConfig, bs: int = 256):
    """Validation terms: decoded from the *prior mean* (what inference uses), latent term
    from the posterior; plus the exact-atom-count rate."""
    model.eval()
    sums: dict[str, float] = {}
    exact = 0
    with torch.no_grad():
        for a in range(0, len(rows), bs):
            pdf, sat, adm, mask, ls = batcher.get(rows[a : a + bs])
            c = model.condition(pdf)
            mu_q, logvar_q = model.posterior(sat, mask, c)
            mu_p, logvar_p = model.prior(c)
            out = model.decode(mu_p, c)
            out.update(mu_q=mu_q, logvar_q=logvar_q, mu_p=mu_p, logvar_p=logvar_p)
            t = compute_losses(
                model, out, sat, adm, mask, ls, cfg.beta, cfg.weights, match=cfg.match
            )
            nb = pdf.shape[0]
            for k, v in t.items():
                sums[k] = sums.get(k, 0.0) + float(v) * nb
            exact += int(((out["mask_logit"] > 0).sum(1) == mask.sum(1)).sum())
    n = max(1, len(rows))
    res = {k: v / n for k, v in sums.items()}
    res["count_exact"] = exact / n
    return res


def _pdf_rows(data: TrainingData, structures: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isin(data.pdf_structure, structures))


def _state_tensors(model, opt) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {
        f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()
    }
    sd = opt.state_dict()
    for pid, st in sd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"opt/{pid}/{k}"] = t.detach().cpu().contiguous()
    tensors["rng/torch"] = torch.get_rng_state()
    return tensors, {"param_groups": sd["param_groups"]}


def _save_state(path: Path, model, opt, info: dict[str, Any]) -> None:
    from safetensors.torch import save as st_save

    tensors, extra = _state_tensors(model, opt)
    data = st_save(tensors)
    info = dict(info, **extra, sha256=hashlib.sha256(data).hexdigest())
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path / "state.safetensors", data, overwrite=True)
    atomic_write_text(
        path / "state.json", json.dumps(info, indent=1) + "\n", overwrite=True
    )


def _load_state(path: Path, model, opt) -> dict[str, Any]:
    from safetensors.torch import load as st_load

    try:
        info = json.loads((path / "state.json").read_text())
        data = (path / "state.safetensors").read_bytes()
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read the training state ({exc})") from None
    if hashlib.sha256(data).hexdigest() != info.get("sha256"):
        raise CheckpointError(f"{path}: training state digest mismatch (corrupted)")
    try:
        t = st_load(data)
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable training state ({exc})") from None
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model/")})
    st: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in t.items():
        if k.startswith("opt/"):
            _, pid, name = k.split("/", 2)
            st.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": st, "param_groups": info["param_groups"]})
    torch.set_rng_state(t["rng/torch"])
    return info


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(
        buf, fieldnames=LOG_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue(), overwrite=True)


@dataclass
class TrainResult:
    """Summary of a :func:`train` run."""

    directory: Path
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    seconds: float
    stopped: str
    log: list = field(default_factory=list)


def train(
    catalog: str | os.PathLike,
    directory: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    preprocess: PreprocessConfig | None = None,
    n_satellites: int = 11,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    data: TrainingData | None = None,
    log=print,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a CVAE or DAE on a catalog and write the best checkpoint to ``directory``.

    Files written in ``directory``: ``config.json`` + ``model.safetensors`` (best
    validation loss), ``loss_log.csv``, ``last/`` (resumable state).

    Parameters
    ----------
    catalog : path
    directory : path
    config : TrainConfig
    preprocess : PreprocessConfig
    n_satellites : int
    resume : bool
        Continue from ``directory/last`` (same catalog and configuration; ``epochs``,
        ``patience`` and ``time_limit`` may be raised to extend a finished run).
    force : bool
        Replace an existing model in ``directory``.
    progress : bool
        tqdm progress bar on stderr.
    cache_dir : path, optional
        Where to cache the prepared data (default ``directory/../cache``... none).
    data : TrainingData, optional
        Already prepared data (tests).
    stop_after : int, optional
        Run at most this many epochs in this call (simulates an interruption).
    log : callable
        Receives one summary line per epoch.

    Raises
    ------
    OutputExistsError, CatalogError, CheckpointError, ParameterError
    """
    from tqdm import tqdm

    from .representation import satellite_positions

    cfg = config or TrainConfig()
    pre = preprocess or PreprocessConfig()
    out_dir = Path(directory)
    last = out_dir / "last"
    if resume:
        if not (last / "state.json").is_file():
            raise CheckpointError(f"{out_dir}: nothing to resume (no last/state.json)")
    else:
        check_overwrite(out_dir, force)
        if not force and (last / "state.json").exists():
            raise CheckpointError(
                f"{out_dir}: holds a training state; use --resume or --force"
            )
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("--device cuda requested but no CUDA GPU is available")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t_start = time.time()
    if data is None:
        data = prepare_data(
            catalog, pre, n_satellites, cache_dir=cache_dir, progress=progress
        )
        cat_sha = data.catalog_sha256
    else:
        cat_sha = data.catalog_sha256
    if len(data.pdf) == 0:
        raise CatalogError(f"{catalog}: the catalog holds no PDFs")
    groups = np.arange(len(data.shape_of)) if cfg.split_by == "structure" else data.shape_of
    split = split_structures(data.types, groups, cfg.seed, cfg.split_fractions)
    train_rows = _pdf_rows(data, split["train"])
    val_rows = _pdf_rows(data, split["val"])
    if len(val_rows) == 0:
        val_rows = train_rows  # tiny catalogs: validate on train (recorded)
    if cfg.max_val_pdfs and len(val_rows) > cfg.max_val_pdfs:
        val_rows = np.sort(
            np.random.default_rng(cfg.seed + 1).choice(
                val_rows, cfg.max_val_pdfs, replace=False
            )
        )

    staged_arch = {}
    if cfg.schedule == "staged":
        from .staged import STAGED_MODEL

        staged_arch = dict(STAGED_MODEL)
        # one mixture component per distinct training shape (staged.train_staged)
        staged_arch["n_components"] = int(len(np.unique(data.shape_of[split["train"]])))
    mcfg = ModelConfig.from_dict(
        {
            **staged_arch,
            **cfg.model,
            "kind": cfg.kind,
            "latent": cfg.latent,
            "n_points": pre.n_points,
            "n_max": data.n_max,
            "n_satellites": n_satellites,
        }
    )
    model = build_model(mcfg).to(device)
    ls_train = scale_target(data)[train_rows]
    model.log_scale_mean.fill_(float(ls_train.mean()))
    model.log_scale_std.fill_(float(max(ls_train.std(), 1e-3)))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sats_np = satellite_positions(n_satellites)
    sats = torch.tensor(sats_np, dtype=torch.float32, device=device)
    batcher = _Batcher(data, train_rows, device, sats)

    shapes_train = set(data.shape_of[split["train"]].tolist())
    split_info = {
        "seed": cfg.seed,
        "by": cfg.split_by,
        "fractions": list(cfg.split_fractions),
        "stratified_by": "type",
        "counts": {k: int(len(v)) for k, v in split.items()},
        "pdf_counts": {
            "train": int(len(train_rows)),
            "val": int(len(_pdf_rows(data, split["val"]))),
            "test": int(len(_pdf_rows(data, split["test"]))),
        },
        "val": split["val"].tolist(),
        "test": split["test"].tolist(),
        "test_shapes_seen_in_train": float(
            np.mean([s in shapes_train for s in data.shape_of[split["test"]]])
        )
        if len(split["test"])
        else 0.0,
    }
    elements = sorted(set(map(str, data.elements)))
    base_config = {
        "preprocess": pre.to_dict(),
        "representation": {
            "n_max": data.n_max,
            "n_satellites": n_satellites,
            "satellites": sats_np.tolist(),
        },
        "elements": elements,
        "catalog": {
            "file": Path(catalog).name if catalog else None,
            "sha256": cat_sha,
            "n_structures": int(len(data.shape_of)),
            "n_pdfs": int(len(data.pdf)),
            "n_shapes": int(len(data.shape_natoms)),
        },
        "split": split_info,
        "training": {
            **cfg.to_dict(),
            "torch_version": torch.__version__,
            "num_threads": torch.get_num_threads(),
            "package_version": __version__,
        },
        "kind": cfg.kind,
    }

    history: list[dict[str, Any]] = []
    start_epoch, best, best_epoch, bad = 0, float("inf"), -1, 0
    elapsed0 = 0.0
    if resume and cfg.schedule == "joint":
        info = _load_state(last, model, opt)
        if info.get("catalog_sha256") != cat_sha or _resume_key(
            info.get("train_config")
        ) != _resume_key(cfg.to_dict()):
            raise CheckpointError(
                f"{last}: the saved state was made with another catalog "
                "or configuration; resume with the same options"
            )
        start_epoch = int(info["epoch"]) + 1
        best, best_epoch, bad = (
            float(info["best"]),
            int(info["best_epoch"]),
            int(info["bad"]),
        )
        history = list(info["history"])
        elapsed0 = float(info.get("elapsed", 0.0))
        log(f"resuming at epoch {start_epoch} (best val {best:.5g} at epoch {best_epoch})")
    log(
        f"{cfg.kind}: {sum(p.numel() for p in model.parameters())} parameters; "
        f"{len(train_rows)} train / {len(val_rows)} val PDFs; "
        f"{split_info['counts']} structures; threads {torch.get_num_threads()}"
    )

    if cfg.schedule == "staged":
        from .staged import train_staged

        return train_staged(
            {
                "cfg": cfg,
                "model": model,
                "data": data,
                "batcher": batcher,
                "train_rows": train_rows,
                "val_rows": val_rows,
                "out_dir": out_dir,
                "log": log,
                "progress": progress,
                "t_start": t_start,
                "resume": resume,
                "catalog_sha256": cat_sha,
                "base_config": base_config,
                "stop_after": stop_after,
            }
        )
    stopped = "epochs"
    bar = tqdm(
        range(start_epoch, cfg.epochs),
        desc=f"train {cfg.kind}",
        file=sys.stderr,
        disable=not progress,
        initial=start_epoch,
        total=cfg.epochs,
    )
    t_loop = time.time()
    for epoch in bar:
        t0 = time.time()
        beta = _beta(cfg, epoch)
        lr = _lr(cfg, epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        rng = np.random.default_rng([cfg.seed, epoch])
        perm = train_rows[rng.permutation(len(train_rows))]
        sums: dict[str, float] = {}
        nb_total = 0
        for a in range(0, len(perm), cfg.batch_size):
            rows = perm[a : a + cfg.batch_size]
            pdf, sat, adm, mask, ls = batcher.get(rows)
            out = model(pdf, sat, mask, sample=True)
            out_p = model.decode(out["mu_p"], out["c"]) if cfg.prior_weight > 0 else None
            t = compute_losses(
                model,
                out,
                sat,
                adm,
                mask,
                ls,
                beta,
                cfg.weights,
                adm_rows=cfg.adm_rows,
                out_prior=out_p,
                prior_weight=cfg.prior_weight,
                match=cfg.match,
            )
            opt.zero_grad(set_to_none=True)
            t["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            nb = len(rows)
            nb_total += nb
            for k, v in t.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * nb
            if cfg.time_limit and (elapsed0 + time.time() - t_loop) > 60 * cfg.time_limit:
                break
        tr = {k: v / max(1, nb_total) for k, v in sums.items()}
        va = _evaluate(model, batcher, val_rows, cfg)
        row = {"epoch": epoch, "lr": lr, "beta": beta, "seconds": time.time() - t0}
        row.update({f"train_{k}": v for k, v in tr.items()})
        row.update({f"val_{k}": v for k, v in va.items()})
        history.append(row)
        improved = va["loss"] < best
        if improved:
            best, best_epoch, bad = va["loss"], epoch, 0
            _finalize_and_save(
                model, base_config, out_dir, batcher, train_rows, epoch, best, cfg
            )
        elif epoch >= cfg.anneal_epochs:
            bad += 1
        _write_log(out_dir / "loss_log.csv", history)
        elapsed = elapsed0 + time.time() - t_loop
        _save_state(
            last,
            model,
            opt,
            {
                "epoch": epoch,
                "best": best,
                "best_epoch": best_epoch,
                "bad": bad,
                "history": history,
                "catalog_sha256": cat_sha,
                "train_config": cfg.to_dict(),
                "elapsed": elapsed,
            },
        )
        msg = (
            f"epoch {epoch:3d} train {tr['loss']:.5f} val {va['loss']:.5f} "
            f"(sat {va['sat']:.2e} adm {va['adm']:.2e} mask {va['mask']:.3f} scale "
            f"{va['scale']:.2e} lat {va['latent']:.3g} exact {va['count_exact']:.3f}) "
            f"beta {beta:.2g} lr {lr:.2g} {row['seconds']:.0f}s"
            + (" *" if improved else "")
        )
        log(msg)
        bar.set_postfix(train=f"{tr['loss']:.4f}", val=f"{va['loss']:.4f}")
        if bad >= cfg.patience:
            stopped = "early-stopping"
            break
        if cfg.time_limit and elapsed > 60 * cfg.time_limit:
            stopped = "time-limit"
            break
        if stop_after is not None and epoch + 1 - start_epoch >= stop_after:
            stopped = "stop_after"
            break
    bar.close()
    if best_epoch < 0:
        raise CheckpointError("training produced no checkpoint (no epoch finished)")
    return TrainResult(
        out_dir, len(history), best_epoch, best, time.time() - t_start, stopped, history
    )


def _resume_key(d: dict[str, Any] | None) -> dict[str, Any] | None:
    if d is None:
        return None
    # the epoch budget may grow on resume (extending a finished run); the rest must match
    return {
        k: v
        for k, v in d.items()
        if k not in ("time_limit", "device", "threads", "epochs", "patience")
    }


def _finalize_and_save(model, base_config, out_dir, batcher, train_rows, epoch, best, cfg):
    """Save the current model as the best checkpoint (DAE: set its sampling spread)."""
    if model.kind == "dae" and getattr(model, "mixture", False):
        model.latent_noise.fill_(0.0)  # samples are the mixture's component means
    elif model.kind == "dae":
        model.eval()
        rows = train_rows[:: max(1, len(train_rows) // 2048)]
        diffs = []
        with torch.no_grad():
            for a in range(0, len(rows), 256):
                pdf, sat, adm, mask, ls = batcher.get(rows[a : a + 256])
                c = model.condition(pdf)
                diffs.append((model.posterior(sat, mask, c)[0] - model.prior(c)[0]).cpu())
        d = torch.cat(diffs)
        model.latent_noise.fill_(float(d.pow(2).mean().sqrt()))
    conf = dict(base_config)
    conf["training"] = dict(conf["training"], best_epoch=epoch, best_val_loss=best)
    save_checkpoint(model, conf, out_dir, overwrite=True)


def load_for_eval(directory: str | os.PathLike) -> DeepStrucNet:
    """Alias of :func:`~diffpy_deepstruc.checkpoint.load_checkpoint` (eval mode)."""
    return load_checkpoint(directory)


_ = (CONFIG_NAME, WEIGHTS_NAME)
