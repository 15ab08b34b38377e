"""Stage 3, screen: refine every candidate at once against the data (batched torch).

Each candidate is reduced once to its pair-distance histogram
(:mod:`diffpy_deepstruc.histpdf`); then all candidates are refined together on the fit
range: the scale in closed form at every step (variable projection), zoomscale, Uiso and
delta2 by Levenberg-Marquardt with analytic Jacobians, each candidate with its own
damping.  Qdamp/Qbroad stay fixed, as in the srfit recipe.  The result ranks the
candidates and gives the finalists their starting values for srfit
(:mod:`diffpy_deepstruc.solve.refine`), whose Rw is the one a user reads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..histpdf import HistogramPDF, pack_sparse, pair_histogram, sparse_histogram
from ..refine import VARIABLE_BOUNDS
from .settings import FitSettings

__all__ = ["SCREEN_STEP", "ScreenResult", "screen_candidates"]

#: Histogram spacing of the screening (A): within ~2e-3 of max|G| of the exact engine.
SCREEN_STEP: float = 0.02
#: Spacing of the screening r-grid (A); the data are interpolated onto it.
SCREEN_RSTEP: float = 0.02
#: Levenberg-Marquardt iterations.
SCREEN_ITERATIONS: int = 12
#: Starting values of the refined parameters.
START = {"zoomscale": 1.0, "uiso": 0.005, "delta2": 2.0}
#: Candidates per torch batch (bounds the [B, K, nQ] kernel's memory).
BATCH: int = 16


@dataclass
class ScreenResult:
    """Screened candidates, in input order.

    Attributes
    ----------
    rw : ndarray [B]
        Rw on the screening grid (srfit's definition, the fast model's G).
    scale, zoomscale, uiso, delta2 : ndarray [B]
        Refined values.
    seconds : float
        Wall time.
    """

    rw: np.ndarray
    scale: np.ndarray
    zoomscale: np.ndarray
    uiso: np.ndarray
    delta2: np.ndarray
    seconds: float

    def parameters(self, i: int) -> dict[str, float]:
        """Starting values of candidate ``i`` for an srfit recipe."""
        return {
            "scale": float(self.scale[i]),
            "zoomscale": float(self.zoomscale[i]),
            "uiso": float(self.uiso[i]),
            "delta2": float(self.delta2[i]),
        }


def screening_grid(
    r: np.ndarray, g: np.ndarray, dg: np.ndarray | None, settings: FitSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The data on the screening grid over the fit range: (r, g, weights 1/dg or 1)."""
    sel = (r >= settings.rmin - 1e-9) & (r <= settings.rmax + 1e-9)
    rs = r[sel]
    step = float(np.median(np.diff(rs))) if rs.size > 1 else SCREEN_RSTEP
    if step < 0.9 * SCREEN_RSTEP:
        grid = np.arange(rs[0], rs[-1] + 1e-9, SCREEN_RSTEP)
        gs = np.interp(grid, r, g)
        w = (
            np.ones_like(grid)
            if dg is None
            else 1.0 / np.maximum(np.interp(grid, r, dg), 1e-12)
        )
        return grid, gs, w
    w = np.ones_like(rs) if dg is None else 1.0 / np.maximum(dg[sel], 1e-12)
    return rs, g[sel], w


def _model_and_jacobian(model: HistogramPDF, d, w, n, s, u, d2):
    """G [B, nr] and dG/d(s, u, d2) [B, 3, nr] of the histogram model."""
    q, q2 = model.q, model.q2
    ds = d * s[:, None]
    inv2 = 1.0 / (ds * ds)
    jraw = 1.0 - model.delta1 / ds - d2[:, None] * inv2
    if model.qbroad:
        jraw = jraw + (model.qbroad * ds) ** 2
    active = (jraw > 0).to(ds.dtype)
    jeong = jraw.clamp(min=0.0)
    amp = 2.0 * w / ds / n[:, None]  # [B, K]
    # the [B, K, Q] kernels in single precision (twice as fast; ample for screening)
    f32 = torch.float32
    expo = (-(u[:, None] * jeong)).to(f32)[:, :, None] * q2.to(f32)
    arg = ds.to(f32)[:, :, None] * q.to(f32)
    damp = torch.exp(expo)
    ksin = damp * torch.sin(arg)
    kcos = damp * torch.cos(arg)
    amp, jeong, inv2, d = (t.to(f32) for t in (amp, jeong, inv2, d))
    active = active.to(f32)
    F = torch.einsum("bk,bkq->bq", amp, ksin)
    # d/du: -j Q^2;  d/dd2: +u Q^2 / ds^2 (where j > 0)
    F_u = -q2 * torch.einsum("bk,bkq->bq", amp * jeong, ksin)
    F_d2 = q2 * u[:, None] * torch.einsum("bk,bkq->bq", amp * inv2 * active, ksin)
    # d/ds: amplitude -1/s, Jeong factor, and the sine's phase
    dj_ds = (model.delta1 / ds + 2.0 * d2[:, None] * inv2) / s[:, None]
    if model.qbroad:
        dj_ds = dj_ds + 2.0 * (model.qbroad * ds) ** 2 / s[:, None]
    dj_ds = dj_ds * active
    F_s = (
        -F / s[:, None]
        - q2 * u[:, None] * torch.einsum("bk,bkq->bq", amp * dj_ds.to(f32), ksin)
        + q * torch.einsum("bk,bkq->bq", amp * d, kcos)
    )
    F, F_u, F_d2, F_s = (t.to(torch.float64) for t in (F, F_u, F_d2, F_s))
    S = model.sine
    G = F @ S
    J = torch.stack([F_s @ S, F_u @ S, F_d2 @ S], dim=1)
    return G, J


def _project(G: torch.Tensor, y: torch.Tensor, wt: torch.Tensor):
    """Closed-form scale and weighted residual of ``scale * G - y``."""
    wg = G * wt
    wy = y * wt
    scale = (wg * wy).sum(1) / (wg * wg).sum(1).clamp(min=1e-300)
    scale = scale.clamp(min=0.0)
    res = scale[:, None] * wg - wy
    return scale, res


def _lm(model, d, w, n, y, wt, iterations: int):
    """Batched Levenberg-Marquardt over (zoomscale, uiso, delta2) with projected scale."""
    B = d.shape[0]
    dt = d.dtype
    lo = torch.tensor(
        [
            VARIABLE_BOUNDS["zoomscale"][0],
            VARIABLE_BOUNDS["Uiso"][0] + 1e-5,
            VARIABLE_BOUNDS["delta2"][0],
        ],
        dtype=dt,
    )
    hi = torch.tensor(
        [
            VARIABLE_BOUNDS["zoomscale"][1],
            VARIABLE_BOUNDS["Uiso"][1],
            VARIABLE_BOUNDS["delta2"][1],
        ],
        dtype=dt,
    )
    x = torch.tensor([START["zoomscale"], START["uiso"], START["delta2"]], dtype=dt)
    x = x.repeat(B, 1)
    lam = torch.full((B,), 1e-2, dtype=dt)
    G, J = _model_and_jacobian(model, d, w, n, x[:, 0], x[:, 1], x[:, 2])
    scale, res = _project(G, y[None], wt[None])
    cost = (res * res).sum(1)
    for _ in range(iterations):
        Jw = J * wt[None, None] * scale[:, None, None]  # [B, 3, nr]
        A = Jw @ Jw.transpose(1, 2)  # [B, 3, 3]
        grad = (Jw * res[:, None, :]).sum(2)  # [B, 3]
        diag = torch.diagonal(A, dim1=1, dim2=2).clamp(min=1e-30)
        Ad = A + torch.diag_embed(lam[:, None] * diag)
        step = -torch.linalg.solve(Ad, grad[:, :, None])[:, :, 0]
        xn = torch.minimum(torch.maximum(x + step, lo), hi)
        Gn, Jn = _model_and_jacobian(model, d, w, n, xn[:, 0], xn[:, 1], xn[:, 2])
        sn, rn = _project(Gn, y[None], wt[None])
        cn = (rn * rn).sum(1)
        better = cn < cost
        b = better[:, None]
        x = torch.where(b, xn, x)
        G = torch.where(b, Gn, G)
        J = torch.where(b[:, :, None], Jn, J)
        scale = torch.where(better, sn, scale)
        res = torch.where(b, rn, res)
        cost = torch.where(better, cn, cost)
        lam = torch.where(better, lam * 0.3, lam * 10.0).clamp(1e-7, 1e7)
    return x, scale, cost


def screen_candidates(
    xyzs: Sequence[np.ndarray],
    r: np.ndarray,
    g: np.ndarray,
    settings: FitSettings,
    *,
    dg: np.ndarray | None = None,
    iterations: int = SCREEN_ITERATIONS,
    device: str | torch.device | None = None,
) -> ScreenResult:
    """Refine all candidates against the data at once and give their Rw.

    Parameters
    ----------
    xyzs : sequence of ndarray [N_i, 3]
        Candidate coordinates (A), any sizes.
    r, g : ndarray
        The data.
    settings : FitSettings
        Q-range, Qdamp/Qbroad (fixed) and fit range.
    dg : ndarray, optional
        Uncertainties of g (weights 1/dg, as srfit).
    iterations : int
        Levenberg-Marquardt iterations.
    device : str or torch.device, optional
        Where the batch is computed (CPU by default; "cuda" on a GPU).

    Returns
    -------
    ScreenResult
    """
    t0 = time.perf_counter()
    rs, ys, ws = screening_grid(np.asarray(r), np.asarray(g), dg, settings)
    model = HistogramPDF(
        rs,
        qmin=settings.qmin,
        qmax=settings.qmax,
        qdamp=settings.qdamp,
        qbroad=settings.qbroad,
        step=SCREEN_STEP,
        device=device,
    )
    dev = model.device
    y = torch.as_tensor(ys, dtype=torch.float64, device=dev)
    wt = torch.as_tensor(ws, dtype=torch.float64, device=dev)
    sparse = [sparse_histogram(pair_histogram(x, SCREEN_STEP), SCREEN_STEP) for x in xyzs]
    out = np.zeros((len(xyzs), 5))
    # batches of similar histogram length waste little padding
    order = np.argsort([len(s[0]) for s in sparse], kind="stable")
    for lo in range(0, len(order), BATCH):
        idx = order[lo : lo + BATCH]
        d, w = pack_sparse([sparse[i] for i in idx], device=dev)
        n = torch.as_tensor(
            [float(len(xyzs[i])) for i in idx], dtype=torch.float64, device=dev
        )
        with torch.no_grad():
            x, scale, cost = _lm(model, d, w, n, y, wt, iterations)
        norm = float((y * wt).pow(2).sum())
        rw = torch.sqrt(cost / norm).cpu().numpy()
        out[idx, 0] = rw
        out[idx, 1] = scale.cpu().numpy()
        out[idx, 2:5] = x.cpu().numpy()
    return ScreenResult(
        rw=out[:, 0],
        scale=out[:, 1],
        zoomscale=out[:, 2],
        uiso=out[:, 3],
        delta2=out[:, 4],
        seconds=time.perf_counter() - t0,
    )
