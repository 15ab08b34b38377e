"""Staged training of the CVAE / DAE objective (the default schedule of ``deepstruc train``).

The joint schedule (:func:`diffpy_deepstruc.training.train` with ``schedule="joint"``)
optimises encoder, prior and decoder together.  On a CPU budget it left the decoder
imprecise and, with a decoder that also read the PDF, a 2-D latent that carried little
(``docs/latent.md``).  The staged schedule optimises the same objective block-wise:

1. **Shapes** (``shape_steps`` steps over the training split's distinct shapes): the
   decoder p(distances | z) -- it reads ``z`` alone -- learns every training shape from a
   per-shape posterior ``q_u = N(m_u, s_u^2)`` whose mean and spread are free parameters
   (a non-amortised posterior, as in auto-decoders).  Loss: reconstruction of a sample of
   ``q_u`` + ``shape_beta`` * KL(q_u || N(0, I)) (CVAE) or ``shape_beta * |m_u|^2`` with
   ``s_u = 0`` (DAE), + ``aux_weight`` * (cross-entropy of a linear structure-type head on
   ``m_u`` + squared error of a linear hcp-layer-fraction head on ``m_u`` for fcc, hcp
   and stacking-faulted shapes) + ``stack_weight`` * :func:`stacking_loss` (each
   stacking-faulted shape's position on the line from the fcc to the hcp shapes = its
   hcp-like layer fraction, so that one direction of the map reads the stacking
   sequence).  The means start from the first two principal components of each
   shape's mean training PDF, so PDFs that look alike start close.  CVAE only, with
   ``gap_fraction`` > 0: each batch also holds draws of the prior N(0, I), each decoded
   to the training shape with the nearest mean (:func:`prior_samples`), so that the
   decoder is trained wherever the prior puts mass, not only at the shapes' posteriors
   (the DAE, which has no prior over z, is not).
2. **Prior** (``epochs`` epochs over the training PDFs, decoder frozen): the PDF encoder
   and the prior p(z | PDF) minimise KL(q_u || p(z | PDF)) (CVAE) or
   ``|mu_p - m_u|^2`` (DAE) -- the latent term of the objective with q fixed -- and the
   scale head its squared error; the amortised posterior q(z | structure) (the set
   encoder) is fitted to ``(m_u, s_u)`` at the same time, so that any structure can be
   placed on the map.

Checkpoint, log and resume follow :func:`~diffpy_deepstruc.training.train`; ``last/``
holds the state after each finished stage and after each prior epoch.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .errors import CheckpointError

__all__ = [
    "shape_labels",
    "initial_latents",
    "readout_targets",
    "fit_readout",
    "train_staged",
    "STAGED_MODEL",
    "stacking_targets",
    "stacking_loss",
    "prior_samples",
]

#: Architecture options the staged schedule uses (decoder from z alone).
STAGED_MODEL: dict[str, Any] = {
    "decoder_pdf": False,
    "posterior_pdf": False,
    "fourier": 128,
    "fourier_sigma": 8.0,
    "dense_hidden": 768,
    "dense_layers": 3,
    "prior": "mixture",
}


def shape_labels(shape_keys: list[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """Structure type index and hcp-layer fraction of every distinct shape.

    Parameters
    ----------
    shape_keys : sequence of str
        ``"type|{builder json}"`` keys (:class:`~diffpy_deepstruc.training.TrainingData`).

    Returns
    -------
    type_index : int ``[U]``
    hcp : float ``[U]``
        0 for fcc, 1 for hcp, the hcp-like layer fraction for stacking-faulted shapes,
        NaN for the other types.
    type_names : list of str
    """
    from .clusters import hcp_fraction

    types = [str(k).split("|", 1)[0] for k in shape_keys]
    names = sorted(set(types))
    hcp = np.full(len(types), np.nan)
    for i, key in enumerate(shape_keys):
        t, _, builder = str(key).partition("|")
        if t == "fcc":
            hcp[i] = 0.0
        elif t == "hcp":
            hcp[i] = 1.0
        elif t == "stacking":
            try:
                hcp[i] = float(hcp_fraction(json.loads(builder)["sequence"]))
            except (KeyError, TypeError, ValueError):
                pass
    return np.array([names.index(t) for t in types]), hcp, names


def initial_latents(pdf: np.ndarray, shape_of_pdf: np.ndarray, n_shapes: int, dim: int):
    """Start positions of the shape latents: principal components of mean PDFs.

    Parameters
    ----------
    pdf : ``[P, L]`` training PDFs; shape_of_pdf : ``[P]`` their shape index.
    n_shapes : int
    dim : int
        Latent dimensions.

    Returns
    -------
    float32 ``[n_shapes, dim]``, each column of unit spread over the shapes present
    (shapes without training PDFs sit at 0).
    """
    z = np.zeros((n_shapes, dim), np.float32)
    present = np.unique(shape_of_pdf)
    if len(present) < 2:
        return z
    sums = np.zeros((n_shapes, pdf.shape[1]))
    np.add.at(sums, shape_of_pdf, pdf)
    mean = sums[present] / np.bincount(shape_of_pdf, minlength=n_shapes)[present, None]
    mean = mean - mean.mean(0)
    u, s, _ = np.linalg.svd(mean, full_matrices=False)
    k = min(dim, u.shape[1])
    pcs = u[:, :k] * s[:k]
    pcs = pcs / np.maximum(pcs.std(0), 1e-12)
    # a deterministic sign: the largest-|value| entry of each column is positive
    sign = np.sign(pcs[np.abs(pcs).argmax(0), np.arange(k)])
    z[present, :k] = pcs * sign
    return z


def _cosine(step: int, total: int, final: float = 0.03) -> float:
    t = min(1.0, step / max(1, total))
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))


def stacking_targets(
    tidx: np.ndarray, hcp: np.ndarray, names: list, shapes: np.ndarray, counts: np.ndarray
) -> dict[str, torch.Tensor] | None:
    """Index sets and weights of the stacking-axis term (see :func:`stacking_loss`).

    Parameters
    ----------
    tidx, hcp, names
        :func:`shape_labels` of every shape.
    shapes : int ``[S]``
        Training shapes.
    counts : ``[U]``
        Training structures per shape (the weights of the fcc / hcp centroids and of
        each stacking-faulted shape, as in the structure map).

    Returns
    -------
    dict of tensors (``fcc``, ``fcc_w``, ``hcp``, ``hcp_w``, ``st``, ``st_w``, ``st_h``)
    or None when the training shapes lack fcc, hcp or stacking-faulted shapes.
    """
    out = {}
    for key, name in (("fcc", "fcc"), ("hcp", "hcp"), ("st", "stacking")):
        if name not in names:
            return None
        i = shapes[tidx[shapes] == names.index(name)]
        if name == "stacking":
            i = i[np.isfinite(hcp[i])]
        if len(i) == 0:
            return None
        w = counts[i].astype(np.float32)
        out[key], out[f"{key}_w"] = (
            torch.from_numpy(i),
            torch.from_numpy(w / max(w.sum(), 1e-12)),
        )
    out["st_h"] = torch.from_numpy(hcp[out["st"].numpy()].astype(np.float32))
    return out


def stacking_loss(mean: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
    """Squared error between each stacking-faulted shape's position on the fcc -> hcp
    line and its hcp-like layer fraction.

    The position is the projection of the shape's latent mean onto the line from the
    (structure-weighted) centroid of the fcc shapes (0) to that of the hcp shapes (1),
    the quantity :func:`diffpy_deepstruc.latent.stacking_spearman` ranks.

    Parameters
    ----------
    mean : ``[U, D]`` shape latent means.
    t : dict
        :func:`stacking_targets`.

    Returns
    -------
    Scalar tensor: the weighted mean of ``(position - hcp_fraction)^2``.
    """
    c0 = t["fcc_w"] @ mean[t["fcc"]]
    c1 = t["hcp_w"] @ mean[t["hcp"]]
    u = c1 - c0
    pos = (mean[t["st"]] - c0) @ u / (u @ u).clamp_min(1e-12)
    return (t["st_w"] * (pos - t["st_h"]) ** 2).sum()


def prior_samples(
    means: torch.Tensor, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws of the stage-1 prior N(0, I) and the training shape each decodes to.

    The CVAE's decoder must decode wherever the prior puts mass, not only near the
    shapes' posteriors.  A draw's target is the shape whose mean is nearest (its
    Voronoi cell): the most probable shape under equal, narrow posteriors.

    Parameters
    ----------
    means : ``[S, D]`` shape latent means (training shapes).
    n : int
        Number of draws.
    generator : torch.Generator

    Returns
    -------
    z : ``[n, D]`` (on the CPU); index : int ``[n]`` row of ``means`` assigned to each.
    """
    z = torch.randn(n, means.shape[1], generator=generator)
    d = torch.cdist(z.to(means.device), means)
    return z, d.argmin(1)


class _ShapeLatents(nn.Module):
    """Per-shape posterior means / log std and the auxiliary map heads (training only)."""

    def __init__(
        self,
        z0: np.ndarray,
        n_types: int,
        stochastic: bool,
        present: np.ndarray | None = None,
        std_floor: float = 0.0,
    ) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.from_numpy(z0.copy()))
        self.log_std = nn.Parameter(torch.full_like(self.mean, -4.0))
        self.log_std.requires_grad_(stochastic)
        self.stochastic = stochastic
        self.std_floor = float(std_floor)
        keep = np.ones(len(z0), bool) if present is None else np.asarray(present, bool)
        self.register_buffer("present", torch.from_numpy(keep), persistent=False)
        self.type_head = nn.Linear(z0.shape[1], n_types)
        self.hcp_head = nn.Linear(z0.shape[1], 1)

    def floor(self) -> torch.Tensor:
        """Smallest posterior std: ``std_floor`` x the RMS radius of the training
        shapes' means (constant under a rescaling of the whole map; no gradient)."""
        m = self.mean.detach()[self.present]
        return self.std_floor * (m**2).sum(-1).mean().sqrt()

    def std(self, idx: torch.Tensor) -> torch.Tensor:
        s = self.log_std[idx].clamp(-9.0, 1.0).exp()
        if not self.stochastic:
            return torch.zeros_like(s)
        return torch.maximum(s, self.floor()) if self.std_floor > 0 else s


def _recon(model, out, sat, adm, mask, weights, adm_rows):
    from .training import _recon_terms

    out = dict(out, log_scale=torch.zeros(sat.shape[0], device=sat.device))
    ls = model.log_scale_mean.expand(sat.shape[0])
    t = _recon_terms(model, out, sat, adm, mask, ls, adm_rows, match=False)
    keys = ("sat", "adm", "sort", "mask")
    return t, sum(weights.get(k, 0.0) * t[k] for k in keys)


def _stage_shapes(model, lat, batcher, shapes, hcp, tidx, stack, cfg, start, log, progress):
    """Stage 1: decoder + shape latents."""
    from tqdm import tqdm

    dev = batcher.device
    dec_params = list(model.decoder.parameters())
    aux_params = list(lat.type_head.parameters()) + list(lat.hcp_head.parameters())
    opt = torch.optim.Adam(
        [
            {"params": [lat.mean, lat.log_std], "lr": cfg.latent_lr},
            {"params": dec_params + aux_params, "lr": cfg.lr * 0.5},
        ]
    )
    base = [g["lr"] for g in opt.param_groups]
    gen = torch.Generator().manual_seed(cfg.seed)
    shapes_t = torch.from_numpy(shapes)
    hcp_t = torch.from_numpy(hcp.astype(np.float32)).to(dev)
    tidx_t = torch.from_numpy(tidx).to(dev)
    n_gap = round(cfg.gap_fraction * cfg.shape_batch) if lat.stochastic else 0
    shapes_d = shapes_t.to(dev)
    c0 = torch.zeros(cfg.shape_batch + n_gap, model.config.cond_dim, device=dev)
    rows, sums, n = [], {}, 0
    if stack is not None:
        stack = {k: v.to(dev) for k, v in stack.items()}
    every = max(1, min(500, cfg.shape_steps // 5))
    bar = tqdm(range(cfg.shape_steps), desc="stage 1: shapes", disable=not progress)
    model.decoder.train()
    for step in bar:
        f = _cosine(step, cfg.shape_steps)
        for g, b in zip(opt.param_groups, base, strict=True):
            g["lr"] = b * f
        idx = shapes_t[torch.randint(len(shapes_t), (cfg.shape_batch,), generator=gen)]
        idx_d = idx.to(dev)
        mu, std = lat.mean[idx_d], lat.std(idx_d)
        eps = torch.randn(mu.shape, generator=gen).to(dev)
        z = mu + std * eps
        if n_gap:
            zg, ig = prior_samples(lat.mean.detach()[shapes_d], n_gap, gen)
            z, idx = torch.cat([z, zg.to(dev)]), torch.cat([idx, shapes_t[ig.cpu()]])
        out = model.decoder(z, c0[: len(idx)])
        t, rec = _recon(
            model,
            out,
            batcher.sat[idx].to(dev),
            batcher.adm[idx].to(dev),
            batcher.mask[idx].to(dev),
            cfg.weights,
            cfg.adm_rows,
        )
        if lat.stochastic:
            ls = std.clamp_min(1e-12).log()
            reg = 0.5 * (mu**2 + std**2 - 1.0 - 2 * ls).sum(-1).mean()
        else:
            reg = (mu**2).sum(-1).mean()
        ce = F.cross_entropy(lat.type_head(mu), tidx_t[idx_d])
        h = hcp_t[idx_d]
        ok = torch.isfinite(h)
        hp = lat.hcp_head(mu).squeeze(-1)
        he = ((hp - torch.nan_to_num(h)) ** 2 * ok).sum() / ok.sum().clamp_min(1)
        loss = rec + cfg.shape_beta * reg + cfg.aux_weight * (ce + he)
        if stack is not None and cfg.stack_weight > 0:
            sl = stacking_loss(lat.mean, stack)
            loss = loss + cfg.stack_weight * sl
            t = dict(t, stack=sl)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dec_params, 5.0)
        opt.step()
        for k, v in dict(t, latent=reg, aux=ce + he, loss=loss).items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        n += 1
        if (step + 1) % every == 0 or step + 1 == cfg.shape_steps:
            row = {"epoch": f"s{step + 1}", "lr": base[1] * f, "beta": cfg.shape_beta}
            row.update({f"train_{k}": v / n for k, v in sums.items()})
            row["seconds"] = time.time() - start
            rows.append(row)
            log(
                f"stage 1 step {step + 1}: loss {row['train_loss']:.5f} sat "
                f"{row['train_sat']:.2e} adm {row['train_adm']:.2e} mask "
                f"{row['train_mask']:.4f} aux {row['train_aux']:.3f}"
                + (f" stack {row['train_stack']:.2e}" if "train_stack" in row else "")
                + (f" std floor {float(lat.floor()):.4f}" if lat.std_floor > 0 else "")
            )
            bar.set_postfix(loss=f"{row['train_loss']:.4f}")
            sums, n = {}, 0
    bar.close()
    return rows


def readout_targets(coords, natoms, sat, n_emb: int, logit: float = 8.0) -> torch.Tensor:
    """Pre-activation targets of the dense decoder's last layer for exact shapes.

    Parameters
    ----------
    coords : ``[U, N, 3]`` canonical unit-sphere coordinates; natoms : ``[U]``;
    sat : ``[U, N, S]`` their atom-satellite distances.
    n_emb : int
        Size K of the per-atom aDM embedding (>= 3): the coordinates themselves, padded
        with zeros, are an embedding whose distances are the exact aDM.
    logit : float
        Mask logit of a real (+) or empty (-) slot.

    Returns
    -------
    ``[U, N * (1 + S + K)]`` in the layout of :class:`~diffpy_deepstruc.models.DenseDecoder`
    (mask logit; ``x`` with ``softplus(x + 1)`` = distance; embedding).
    """
    U, N, _ = coords.shape
    real = torch.arange(N).unsqueeze(0) < natoms.unsqueeze(1)
    mask = torch.where(real, logit, -logit).unsqueeze(-1)
    t = torch.where(real.unsqueeze(-1), sat, torch.ones_like(sat)).clamp_min(1e-4)
    x = torch.log(torch.expm1(t)) - 1.0
    emb = torch.zeros(U, N, n_emb)
    emb[..., :3] = coords * real.unsqueeze(-1)
    return torch.cat([mask, x, emb], dim=-1).reshape(U, -1)


@torch.no_grad()
def fit_readout(model, lat, batcher, shapes, cfg) -> dict[str, float]:
    """Stage 1b: solve the decoder's last linear layer by weighted ridge least squares.

    The stage-1 reconstruction error is (nearly) quadratic in that layer on the fixed
    hidden features, so its minimiser is one linear solve: rows are the shape means
    (weight ``readout_mean_weight`` for the CVAE, 1 for the DAE) and, for the CVAE,
    ``readout_samples`` draws of each shape's posterior (total weight 1 per shape) and
    the prior draws of ``gap_fraction`` (:func:`prior_samples`); targets
    :func:`readout_targets`, ridge ``readout_ridge`` on the weights.  The heavy weight
    on the means keeps the decoded training shapes exact (the generator's prior-mode
    sample) while the draws shape the decoder around and between them.

    Returns
    -------
    dict
        RMS error of the atom-satellite distances (real atoms, unit-sphere units) at the
        shape means before and after, and the exact-count rate after.
    """
    dec = model.decoder
    dev = batcher.device
    idx = torch.from_numpy(shapes)
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    m, sd = lat.mean[idx.to(dev)].detach(), lat.std(idx.to(dev)).detach()
    R = cfg.readout_samples if lat.stochastic else 0
    zs = [m] + [m + sd * torch.randn(m.shape, generator=gen).to(dev) for _ in range(R)]
    wm = cfg.readout_mean_weight if lat.stochastic else 1.0
    w = [torch.full((len(m),), wm)] + [torch.full((len(m),), 1.0 / max(R, 1))] * R
    rows = [torch.arange(len(m))] * (R + 1)
    n_gap = len(m) * R if cfg.gap_fraction > 0 and lat.stochastic else 0
    if n_gap:  # prior draws, weighted as in stage 1 (gap_fraction of the shape draws)
        zg, ig = prior_samples(m, n_gap, gen)
        zs, rows = zs + [zg.to(dev)], rows + [ig.cpu()]
        w.append(torch.full((n_gap,), cfg.gap_fraction * len(m) / n_gap))
    # the decoder reads z alone: one all-zero PDF condition, sliced to each block
    c0 = torch.zeros(max(len(z) for z in zs), model.config.cond_dim, device=dev)
    H = torch.cat([dec.mlp(dec.features(z, c0[: len(z)])).double().cpu() for z in zs])
    H = torch.cat([H, torch.ones(len(H), 1, dtype=H.dtype)], 1)
    wt = torch.cat(w).double()
    Y1 = readout_targets(
        batcher.coords[idx], batcher.natoms[idx], batcher.sat[idx], model.config.adm_dim
    ).double()
    Y = Y1[torch.cat(rows)]
    Hw = H * wt.unsqueeze(1)
    A = H.T @ Hw
    reg = cfg.readout_ridge * torch.eye(A.shape[0], dtype=A.dtype)
    reg[-1, -1] = 0.0  # no penalty on the bias
    W = torch.linalg.solve(A + reg, Hw.T @ Y)

    def rms() -> tuple[float, float]:
        o = dec(m, c0[: len(m)])
        real = batcher.mask[idx].to(dev)
        err = ((o["sat_dist"] - batcher.sat[idx].to(dev)) ** 2).mean(-1)
        r = float(err[real].mean().sqrt())
        exact = float(((o["mask_logit"] > 0).sum(1) == real.sum(1)).float().mean())
        return r, exact

    before, _ = rms()
    dec.out.weight.copy_(W[:-1].T.float())
    dec.out.bias.copy_(W[-1].float())
    after, exact = rms()
    return {"rms_before": before, "rms_after": after, "exact_after": exact}


def _latent_loss(kind, mu_p, lv_p, m, s):
    if kind == "dae":
        return ((mu_p - m) ** 2).sum(-1)
    lv_q = 2 * s.clamp_min(1e-12).log()
    return 0.5 * (lv_p - lv_q + (lv_q.exp() + (m - mu_p) ** 2) / lv_p.exp() - 1.0).sum(-1)


def _stage_prior(model, lat, batcher, train_rows, comp_of_shape, cfg, epoch, opt, base_lr):
    """One epoch of stage 2 (prior, scale head, amortised posterior).

    Gaussian prior: KL(q_u || p(z | PDF)) (CVAE) or ``|mu_p - m_u|^2`` (DAE).  Mixture
    prior (components = the training shapes' posteriors): the cross-entropy of the
    PDF's own shape component -- the latent term when the components are well separated
    -- plus, for the DAE, the L2 distance between the prior's expected latent and
    ``m_u``.
    """
    dev = batcher.device
    f = _cosine(epoch, max(1, cfg.epochs - 1), cfg.lr_final)
    for g in opt.param_groups:
        g["lr"] = base_lr * f
    rng = np.random.default_rng([cfg.seed, 1000 + epoch])
    perm = train_rows[rng.permutation(len(train_rows))]
    bs = cfg.prior_batch
    sums, n = {}, 0
    model.train()
    for a in range(0, len(perm), bs):
        rows = perm[a : a + bs]
        pdf, sat, _, mask, ls = batcher.get(rows)
        sh = batcher.shape[torch.from_numpy(rows)].to(dev)
        with torch.no_grad():
            m, s = lat.mean[sh], lat.std(sh)
        c = model.condition(pdf)
        if model.mixture:
            logits = model.prior_logits(c)
            lat_l = F.cross_entropy(logits, comp_of_shape[sh])
            if model.kind == "dae":
                ez = torch.softmax(logits, -1) @ model.comp_mean
                lat_l = lat_l + ((ez - m) ** 2).sum(-1).mean()
        else:
            mu_p, lv_p = model.prior(c)
            lat_l = _latent_loss(model.kind, mu_p, lv_p, m, s).mean()
        target = (ls - model.log_scale_mean) / model.log_scale_std
        sc = ((model.scale_head(c).squeeze(-1) - target) ** 2).mean()
        mu_q, lv_q = model.posterior(sat, mask, c)
        post = ((mu_q - m) ** 2).sum(-1).mean()
        if model.kind == "cvae":
            post = post + 0.01 * ((lv_q - 2 * s.clamp_min(1e-6).log()) ** 2).mean()
        loss = lat_l + sc + post
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        for k, v in {"latent": lat_l, "scale": sc, "posterior": post, "loss": loss}.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(rows)
        n += len(rows)
    return {k: v / max(1, n) for k, v in sums.items()}, base_lr * f


def _holder(model, lat) -> nn.Module:
    holder = nn.Module()
    holder.model, holder.lat = model, lat
    return holder


def _save(path: Path, model, lat, opt, info: dict[str, Any]) -> None:
    """Resumable state: networks, shape latents, the stage-2 optimizer, RNG."""
    from .training import _save_state

    _save_state(path, _holder(model, lat), opt, info)


def _load(path: Path, model, lat, opt) -> dict[str, Any]:
    from .training import _load_state

    return _load_state(path, _holder(model, lat), opt)


def train_staged(ctx: dict[str, Any]):
    """Run the staged schedule; ``ctx`` is prepared by :func:`training.train`.

    Returns
    -------
    TrainResult
    """
    from .training import (
        TrainResult,
        _evaluate,
        _finalize_and_save,
        _resume_key,
        _write_log,
    )

    cfg, model, data, batcher = ctx["cfg"], ctx["model"], ctx["data"], ctx["batcher"]
    train_rows, val_rows, out_dir = ctx["train_rows"], ctx["val_rows"], ctx["out_dir"]
    log, progress, last = ctx["log"], ctx["progress"], ctx["out_dir"] / "last"
    t_start = ctx["t_start"]
    tidx, hcp, names = shape_labels(data.shape_keys)
    shape_of_pdf = data.shape_of[data.pdf_structure]
    shapes = np.unique(shape_of_pdf[train_rows])
    z0 = initial_latents(
        data.pdf[train_rows], shape_of_pdf[train_rows], len(data.shape_keys), cfg.latent
    )
    present = np.zeros(len(data.shape_keys), bool)
    present[shapes] = True
    lat = _ShapeLatents(
        z0,
        len(names),
        stochastic=cfg.kind == "cvae",
        present=present,
        std_floor=cfg.shape_std_floor,
    ).to(batcher.device)
    structs = np.unique(data.pdf_structure[train_rows])
    counts = np.bincount(data.shape_of[structs], minlength=len(data.shape_keys))
    stack = stacking_targets(tidx, hcp, names, shapes, counts)
    opt = torch.optim.AdamW(
        [p for n_, p in model.named_parameters() if not n_.startswith("decoder.")],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )
    history: list[dict[str, Any]] = []
    stage, start_epoch, best, best_epoch = 0, 0, float("inf"), -1
    if ctx["resume"]:
        info = _load(last, model, lat, opt)
        if info.get("catalog_sha256") != ctx["catalog_sha256"] or _resume_key(
            info.get("train_config")
        ) != _resume_key(cfg.to_dict()):
            raise CheckpointError(
                f"{last}: the saved state was made with another catalog "
                "or configuration; resume with the same options"
            )
        stage, start_epoch = int(info["stage"]), int(info.get("epoch", -1)) + 1
        best, best_epoch = float(info["best"]), int(info["best_epoch"])
        history = list(info["history"])
        log(f"resuming staged training after stage {stage}, prior epoch {start_epoch}")

    def state(**kw):
        return {
            "catalog_sha256": ctx["catalog_sha256"],
            "train_config": cfg.to_dict(),
            "history": history,
            "best": best,
            "best_epoch": best_epoch,
            **kw,
        }

    if stage < 1:
        log(f"stage 1: decoder on {len(shapes)} training shapes, {cfg.shape_steps} steps")
        history += _stage_shapes(
            model, lat, batcher, shapes, hcp, tidx, stack, cfg, time.time(), log, progress
        )
        if cfg.readout_ridge > 0:
            r = fit_readout(model, lat, batcher, shapes, cfg)
            log(
                f"stage 1b: last layer solved (ridge {cfg.readout_ridge:g}); satellite "
                f"RMS at the shape means {r['rms_before']:.4g} -> {r['rms_after']:.4g}, "
                f"exact counts {r['exact_after']:.3f}"
            )
            history.append({"epoch": "readout", **{f"train_{k}": v for k, v in r.items()}})
        _write_log(out_dir / "loss_log.csv", history)
        _save(last, model, lat, opt, state(stage=1, epoch=-1))
        start_epoch = 0
    for p in model.decoder.parameters():
        p.requires_grad_(False)
    comp_of_shape = torch.full((len(data.shape_keys),), -100, dtype=torch.long)
    comp_of_shape[torch.from_numpy(shapes)] = torch.arange(len(shapes))
    comp_of_shape = comp_of_shape.to(batcher.device)
    if model.mixture:
        if model.config.n_components != len(shapes):
            raise CheckpointError(
                f"the mixture prior has {model.config.n_components} components for "
                f"{len(shapes)} training shapes"
            )
        with torch.no_grad():
            idx = torch.from_numpy(shapes).to(batcher.device)
            model.comp_mean.copy_(lat.mean[idx])
            sd = lat.std(idx)
            model.comp_logvar.copy_(
                2 * sd.clamp_min(1e-12).log()
                if lat.stochastic
                else torch.full_like(sd, -30.0)
            )
    stopped = "epochs"
    t_loop = time.time()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        tr, lr = _stage_prior(
            model, lat, batcher, train_rows, comp_of_shape, cfg, epoch, opt, cfg.lr
        )
        va = _evaluate(model, batcher, val_rows, cfg)
        row = {"epoch": epoch, "lr": lr, "beta": cfg.beta, "seconds": time.time() - t0}
        row.update({f"train_{k}": v for k, v in tr.items()})
        row.update({f"val_{k}": v for k, v in va.items()})
        history.append(row)
        improved = va["loss"] < best
        if improved:
            best, best_epoch = va["loss"], epoch
            _finalize_and_save(
                model, ctx["base_config"], out_dir, batcher, train_rows, epoch, best, cfg
            )
        _write_log(out_dir / "loss_log.csv", history)
        _save(last, model, lat, opt, state(stage=2, epoch=epoch))
        log(
            f"stage 2 epoch {epoch:3d} latent {tr['latent']:.4g} scale {tr['scale']:.3g} "
            f"post {tr['posterior']:.3g} | val {va['loss']:.5f} (sat {va['sat']:.2e} "
            f"mask {va['mask']:.3f} exact {va['count_exact']:.3f}) lr {lr:.2g} "
            f"{row['seconds']:.0f}s" + (" *" if improved else "")
        )
        if cfg.time_limit and time.time() - t_loop > 60 * cfg.time_limit:
            stopped = "time-limit"
            break
        if ctx["stop_after"] is not None and epoch + 1 - start_epoch >= ctx["stop_after"]:
            stopped = "stop_after"
            break
    if best_epoch < 0:
        raise CheckpointError("training produced no checkpoint (no prior epoch finished)")
    prior_epochs = sum(isinstance(r.get("epoch"), int) for r in history)
    return TrainResult(
        out_dir, prior_epochs, best_epoch, best, time.time() - t_start, stopped, history
    )
