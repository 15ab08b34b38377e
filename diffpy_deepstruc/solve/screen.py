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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..histpdf import (
    HistogramPDF,
    levenberg_marquardt,
    pack_sparse,
    pair_histogram,
    sparse_histogram,
)
from ..refine import VARIABLE_BOUNDS
from .settings import FitSettings

__all__ = ["SCREEN_STEP", "ScreenResult", "screen_candidates", "screening_guide"]

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

    @classmethod
    def concatenate(cls, results: Sequence[ScreenResult]) -> ScreenResult:
        """One result of several screenings, in order (their seconds summed)."""
        names = ("rw", "scale", "zoomscale", "uiso", "delta2")
        arrays = {k: np.concatenate([getattr(r, k) for r in results]) for k in names}
        return cls(**arrays, seconds=float(sum(r.seconds for r in results)))

    def take(self, index: Sequence[int]) -> ScreenResult:
        """The results of the candidates ``index`` (seconds kept)."""
        i = np.asarray(index, dtype=int)
        names = ("rw", "scale", "zoomscale", "uiso", "delta2")
        return ScreenResult(**{k: getattr(self, k)[i] for k in names}, seconds=self.seconds)

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


def _bounds() -> tuple[list[float], list[float]]:
    """Bounds of (zoomscale, uiso, delta2): the srfit recipe's (Uiso kept above 0)."""
    names = ("zoomscale", "Uiso", "delta2")
    lower = [VARIABLE_BOUNDS[k][0] for k in names]
    lower[1] += 1e-5
    return lower, [VARIABLE_BOUNDS[k][1] for k in names]


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
    lower, upper = _bounds()
    x0 = torch.tensor(
        [START["zoomscale"], START["uiso"], START["delta2"]],
        dtype=torch.float64,
        device=dev,
    )
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
            x, scale, cost = levenberg_marquardt(
                model,
                d,
                w,
                n,
                y,
                wt,
                x0,
                lower,
                upper,
                iterations=iterations,
                single=True,
            )
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


def screening_guide(
    r: np.ndarray,
    g: np.ndarray,
    settings: FitSettings,
    *,
    dg: np.ndarray | None = None,
    device: str | torch.device | None = None,
) -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    """A guide for guided sampling (:meth:`~diffpy_deepstruc.shapegen.ShapeGenerator.
    generate`): structures' coordinates -> their screening Rw against the data
    (:func:`screen_candidates` with these settings).  Its ``independent_points`` (the
    fit range's Nyquist count) sets the weights of resampling with repeats.

    Examples
    --------
    >>> guide = screening_guide(pdf.r, pdf.g, resolve_settings(pdf))  # doctest: +SKIP
    >>> gen.generate(pdf, 20, element="Au", guide=guide)  # doctest: +SKIP
    """
    from ..consistent import independent_points

    r, g = np.asarray(r, float), np.asarray(g, float)

    def guide(xyzs: Sequence[np.ndarray]) -> np.ndarray:
        return screen_candidates(list(xyzs), r, g, settings, dg=dg, device=device).rw

    # for resampling with repeats (generate(..., distinct=False))
    guide.independent_points = independent_points(
        settings.rmin, settings.rmax, settings.qmax
    )
    return guide
