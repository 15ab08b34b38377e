"""Fast, differentiable PDFs of monatomic clusters from pair-distance histograms.

The exact engine (:mod:`diffpy_deepstruc.debye`, equal to srreal's
``DebyePDFCalculator``) sums over every pair.  Screening many candidates, or editing one
atom at a time, needs something cheaper and differentiable in the refined parameters:

* a cluster is reduced to the histogram of its pair distances on a grid ``k * step``
  (each pair split linearly between the two grid points around it), which is
  *additive*: adding or removing an atom adds or subtracts the histogram of its own
  pairs (:func:`atom_histogram`), an O(N) update;
* :class:`HistogramPDF` turns histograms into G(r) with srreal's conventions (Debye
  F(Q) with Jeong peak widths on srreal's Q grid, F zeroed below Qmin, sine transform,
  Qdamp envelope), batched over clusters, in torch float64 and differentiable in
  zoomscale, Uiso and delta2 (and the counts).

For one element the scattering factors cancel, so no element enters.  The binning moves
each distance by at most ``step / 2``; with the default step the result is within a few
1e-4 of max|G| of the exact engine (``tests/test_histpdf.py``).  The numbers a user reads
always come from srfit over the exact engine; this module ranks and searches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .errors import ParameterError, StructureError

__all__ = [
    "HIST_STEP",
    "atom_histogram",
    "pair_histogram",
    "sparse_histogram",
    "pack_sparse",
    "HistogramPDF",
    "project_scale",
    "levenberg_marquardt",
]

#: Default histogram spacing (A).
HIST_STEP: float = 0.01

#: Nominal Uiso (A^2) that sets the extended calculation range, hence the Q grid.  srreal
#: takes the structure's largest Uiso; a fixed value keeps the grid independent of the
#: refined Uiso so that the model is smooth in it.
_NOMINAL_UISO: float = 0.01


def _check_xyz(xyz: np.ndarray, name: str = "xyz") -> np.ndarray:
    a = np.asarray(xyz, dtype=float)
    if a.ndim != 2 or a.shape[1] != 3:
        raise StructureError(f"{name} must have shape (N, 3), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise StructureError(f"{name} holds non-finite coordinates")
    return a


def _bins_for(d: np.ndarray, step: float, n_bins: int | None) -> int:
    need = int(math.floor(float(d.max()) / step)) + 2 if d.size else 2
    if n_bins is None:
        return need
    if n_bins < need:
        raise ParameterError(
            f"n_bins={n_bins} is too small for a distance of {d.max():.3f} A at step "
            f"{step} A (need {need})"
        )
    return int(n_bins)


def _deposit(d: np.ndarray, step: float, n_bins: int, sign: float = 1.0) -> np.ndarray:
    """Linear split of weight ``sign`` per distance between the grid points around it."""
    x = d / step
    k = np.floor(x).astype(np.int64)
    w = x - k
    h = np.bincount(k, weights=sign * (1.0 - w), minlength=n_bins)
    h += np.bincount(k + 1, weights=sign * w, minlength=n_bins)
    return h[:n_bins]


def pair_histogram(
    xyz: np.ndarray, step: float = HIST_STEP, n_bins: int | None = None
) -> np.ndarray:
    """Histogram of the pair distances of a cluster.

    Parameters
    ----------
    xyz : ndarray, shape (N, 3)
        Cartesian coordinates (A).
    step : float
        Grid spacing (A); grid point ``k`` sits at ``k * step``.
    n_bins : int, optional
        Length of the histogram (default: just long enough).

    Returns
    -------
    ndarray, shape (n_bins,)
        Each unordered pair ``i < j`` adds weight 1, split linearly between the grid
        points that bracket its distance (so the histogram's first moment is exact).
    """
    a = _check_xyz(xyz)
    if not step > 0:
        raise ParameterError(f"step must be > 0, got {step}")
    i, j = np.triu_indices(len(a), 1)
    d = np.linalg.norm(a[i] - a[j], axis=1)
    return _deposit(d, step, _bins_for(d, step, n_bins))


def atom_histogram(
    others: np.ndarray,
    x: np.ndarray,
    step: float = HIST_STEP,
    n_bins: int | None = None,
    sign: float = 1.0,
) -> np.ndarray:
    """Histogram of the pairs between one atom and a set of others (O(M)).

    ``pair_histogram(others) + atom_histogram(others, x)`` equals
    ``pair_histogram(others + [x])`` to rounding; ``sign=-1`` gives the update that
    removes ``x``.

    Parameters
    ----------
    others : ndarray, shape (M, 3)
        The other atoms (A).
    x : ndarray, shape (3,)
        The atom (A).
    step, n_bins
        As in :func:`pair_histogram` (give the same ``n_bins`` to add the two).
    sign : float
        Weight per pair (+1 add, -1 remove).

    Returns
    -------
    ndarray, shape (n_bins,)
    """
    a = _check_xyz(others, "others")
    p = np.asarray(x, dtype=float).reshape(3)
    d = np.linalg.norm(a - p, axis=1)
    return _deposit(d, step, _bins_for(d, step, n_bins), sign)


def sparse_histogram(counts: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero entries of a histogram as (distances, weights).

    Parameters
    ----------
    counts : ndarray, shape (n_bins,)
    step : float
        Its grid spacing (A).

    Returns
    -------
    (ndarray, ndarray)
        Grid-point distances ``k * step`` (k >= 1) and their weights.
    """
    c = np.asarray(counts, dtype=float)
    k = np.flatnonzero(np.abs(c) > 0)
    k = k[k > 0]  # weight at d = 0 (coincident atoms) carries no signal, as in srreal
    return k * float(step), c[k]


class HistogramPDF:
    """G(r) of monatomic clusters from pair-distance histograms (batched, differentiable).

    Parameters
    ----------
    r : ndarray
        Where G is wanted (A).
    qmin, qmax : float
        Q-range of the transform (1/A).
    qdamp, qbroad : float
        Instrument resolution (1/A): Qdamp envelope, Qbroad peak broadening.
    delta1 : float
        Linear correlated-motion term (A), fixed.
    n_bins : int, optional
        Histogram length, for :meth:`__call__`.
    step : float
        Histogram spacing (A), for :meth:`__call__`.
    device : str or torch.device, optional

    Notes
    -----
    Conventions of :mod:`diffpy_deepstruc.debye` (docs/debye.md): Q grid ``k * qstep``
    with ``qstep = pi / rcalchi`` (the extended range is taken at a nominal Uiso of
    0.01 A^2), ``F(Q) = (2/N) sum_pairs exp(-U j(d) Q^2) sin(Q d)/d`` with the Jeong
    factor ``j(d) = max(0, 1 - delta1/d - delta2/d^2 + (qbroad d)^2)``, F zeroed below
    Qmin, ``G(r) = (2/pi) qstep sum_k F(Q_k) sin(Q_k r)``, times ``exp(-(qdamp r)^2/2)``.
    Zoomscale multiplies every distance.
    """

    def __init__(
        self,
        r: np.ndarray,
        *,
        qmin: float,
        qmax: float,
        qdamp: float = 0.0,
        qbroad: float = 0.0,
        delta1: float = 0.0,
        n_bins: int | None = None,
        step: float = HIST_STEP,
        device: str | torch.device | None = None,
    ) -> None:
        from .debye import PDFParameters, _range_steps, _rmin_steps

        r = np.asarray(r, dtype=float)
        if r.ndim != 1 or r.size < 2 or not np.all(np.isfinite(r)):
            raise ParameterError("r must be a finite 1-D grid of at least two points")
        if not (math.isfinite(qmax) and qmax > max(0.0, qmin)):
            raise ParameterError(f"qmax ({qmax}) must exceed qmin ({qmin}) and 0")
        if qdamp < 0 or qbroad < 0:
            raise ParameterError("qdamp and qbroad must not be negative")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        rstep = float(np.median(np.diff(r))) if r.size > 1 else 0.01
        p = PDFParameters(
            rmin=max(0.0, float(r[0])),
            rmax=float(r[-1]) + rstep,
            rstep=rstep,
            qmin=float(qmin),
            qmax=float(qmax),
            qdamp=float(qdamp),
            qbroad=float(qbroad),
            delta1=float(delta1),
            delta2=0.0,
        )
        _, hi = _range_steps(p, _NOMINAL_UISO)
        rcalchi = hi * rstep
        qstep = math.pi / rcalchi if qmax * rcalchi / math.pi > 4 else qmax / 4
        nq = int(math.ceil(qmax / qstep))
        nqmin = min(nq, max(0, _rmin_steps(qmin, qstep)))
        q = np.arange(nqmin, nq) * qstep
        self.qmin, self.qmax, self.qdamp, self.qbroad = qmin, qmax, qdamp, qbroad
        self.delta1 = float(delta1)
        self.qstep = qstep
        self.step = float(step)
        self.n_bins = n_bins
        dev = self.device
        self.r = torch.as_tensor(r, dtype=torch.float64, device=dev)
        self.q = torch.as_tensor(q, dtype=torch.float64, device=dev)
        self.q2 = self.q * self.q
        # sine transform [nQ, nr] with the quadrature weight and the Qdamp envelope
        env = np.exp(-0.5 * (qdamp * r) ** 2) if qdamp > 0 else np.ones_like(r)
        sine = (2.0 / math.pi) * qstep * np.sin(np.outer(q, r)) * env[None, :]
        self.sine = torch.as_tensor(sine, dtype=torch.float64, device=dev)

    # -- the model -------------------------------------------------------------------

    def fq(
        self,
        d: torch.Tensor,
        w: torch.Tensor,
        n_atoms: torch.Tensor,
        zoomscale: torch.Tensor,
        uiso: torch.Tensor,
        delta2: torch.Tensor,
    ) -> torch.Tensor:
        """F(Q) on the Q-range for sparse histograms.

        Parameters
        ----------
        d : Tensor [B, K]
            Unscaled grid distances (A); padding entries must have weight 0 and d > 0.
        w : Tensor [B, K]
            Weights (pair counts).
        n_atoms, zoomscale, uiso, delta2 : Tensor [B]

        Returns
        -------
        Tensor [B, nQ]
        """
        ds = d * zoomscale[:, None]
        jeong = 1.0 - self.delta1 / ds - delta2[:, None] / (ds * ds)
        if self.qbroad:
            jeong = jeong + (self.qbroad * ds) ** 2
        jeong = jeong.clamp(min=0.0)
        amp = 2.0 * w / ds / n_atoms[:, None]  # [B, K]
        expo = -(uiso[:, None] * jeong)  # [B, K]
        # kernel [B, K, nQ]: exp(expo Q^2) sin(Q d)
        arg = ds[:, :, None] * self.q[None, None, :]
        kern = torch.exp(expo[:, :, None] * self.q2[None, None, :]) * torch.sin(arg)
        return torch.einsum("bk,bkq->bq", amp, kern)

    def g_sparse(
        self,
        d: torch.Tensor,
        w: torch.Tensor,
        n_atoms: torch.Tensor,
        zoomscale: torch.Tensor,
        uiso: torch.Tensor,
        delta2: torch.Tensor,
    ) -> torch.Tensor:
        """G(r) [B, nr] at scale 1 for sparse histograms (see :meth:`fq`)."""
        return self.fq(d, w, n_atoms, zoomscale, uiso, delta2) @ self.sine

    def g_and_jacobian(
        self,
        d: torch.Tensor,
        w: torch.Tensor,
        n_atoms: torch.Tensor,
        zoomscale: torch.Tensor,
        uiso: torch.Tensor,
        delta2: torch.Tensor,
        *,
        single: bool = False,
        d_w: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """G(r) at scale 1 and its analytic derivatives, for sparse histograms.

        Parameters
        ----------
        d, w : Tensor [B, K]
            Unscaled grid distances (A) and weights, as :meth:`fq`.
        n_atoms, zoomscale, uiso, delta2 : Tensor [B]
        single : bool
            Compute the ``[B, K, nQ]`` kernels in float32 (about twice as fast; ample
            for ranking); the sums and the results stay float64.
        d_w : Tensor [B, K, p], optional
            Derivatives of the weights by ``p`` further variables (e.g. coordinates
            that move pairs between grid distances); their rows follow the three.

        Returns
        -------
        G : Tensor [B, nr]
        J : Tensor [B, 3 (+ p), nr]
            dG / d(zoomscale, uiso, delta2 (, the further variables)).
        """
        s, u, d2 = zoomscale, uiso, delta2
        q, q2 = self.q, self.q2
        ds = d * s[:, None]
        inv2 = 1.0 / (ds * ds)
        jraw = 1.0 - self.delta1 / ds - d2[:, None] * inv2
        if self.qbroad:
            jraw = jraw + (self.qbroad * ds) ** 2
        active = (jraw > 0).to(ds.dtype)
        jeong = jraw.clamp(min=0.0)
        amp = 2.0 * w / ds / n_atoms[:, None]  # [B, K]
        # d/ds of the Jeong factor (where it is positive)
        dj_ds = (self.delta1 / ds + 2.0 * d2[:, None] * inv2) / s[:, None]
        if self.qbroad:
            dj_ds = dj_ds + 2.0 * (self.qbroad * ds) ** 2 / s[:, None]
        dj_ds = dj_ds * active
        kt = torch.float32 if single else torch.float64
        qk, q2k = q.to(kt), q2.to(kt)
        damp = torch.exp((-(u[:, None] * jeong)).to(kt)[:, :, None] * q2k)
        arg = ds.to(kt)[:, :, None] * qk
        ksin = damp * torch.sin(arg)
        kcos = damp * torch.cos(arg)
        amp_k = amp.to(kt)
        uk = u.to(kt)[:, None]
        F = torch.einsum("bk,bkq->bq", amp_k, ksin)
        # d/du: -j Q^2;  d/dd2: +u Q^2 / ds^2 (where j > 0)
        F_u = -q2k * torch.einsum("bk,bkq->bq", amp_k * jeong.to(kt), ksin)
        F_d2 = q2k * uk * torch.einsum("bk,bkq->bq", (amp * inv2 * active).to(kt), ksin)
        # d/ds: amplitude -1/s, Jeong factor, and the sine's phase
        F_s = (
            -F / s.to(kt)[:, None]
            - q2k * uk * torch.einsum("bk,bkq->bq", (amp * dj_ds).to(kt), ksin)
            + qk * torch.einsum("bk,bkq->bq", (amp * d).to(kt), kcos)
        )
        F, F_u, F_d2, F_s = (t.to(torch.float64) for t in (F, F_u, F_d2, F_s))
        S = self.sine
        J = torch.stack([F_s @ S, F_u @ S, F_d2 @ S], dim=1)
        if d_w is not None:
            amp_w = 2.0 * d_w / ds[:, :, None] / n_atoms[:, None, None]  # [B, K, p]
            F_w = torch.einsum("bkp,bkq->bpq", amp_w.to(kt), ksin).to(torch.float64)
            J = torch.cat([J, F_w @ S], dim=1)
        return F @ S, J

    def __call__(
        self,
        counts: torch.Tensor,
        n_atoms: torch.Tensor,
        zoomscale: torch.Tensor,
        uiso: torch.Tensor,
        delta2: torch.Tensor,
    ) -> torch.Tensor:
        """G(r) [B, nr] at scale 1 from dense histograms ``counts [B, n_bins]``."""
        counts = torch.as_tensor(counts, dtype=torch.float64, device=self.device)
        if counts.ndim == 1:
            counts = counts[None]
        nb = counts.shape[1]
        d = torch.arange(nb, dtype=torch.float64, device=self.device) * self.step
        d[0] = self.step  # weight at d = 0 is dropped below; avoid 0/0
        w = counts.clone()
        w[:, 0] = 0.0
        B = counts.shape[0]

        def _vec(x) -> torch.Tensor:
            t = torch.as_tensor(x, dtype=torch.float64, device=self.device)
            return t.expand(B) if t.ndim == 0 else t

        return self.g_sparse(
            d.expand(B, nb),
            w,
            _vec(n_atoms),
            _vec(zoomscale),
            _vec(uiso),
            _vec(delta2),
        )


def pack_sparse(
    histograms: Sequence[tuple[np.ndarray, np.ndarray]], device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad sparse histograms ``[(d, w), ...]`` into ``(d [B, K], w [B, K])`` tensors.

    Padding entries get ``d = 1`` and ``w = 0``.
    """
    kmax = max(1, max(len(d) for d, _ in histograms))
    B = len(histograms)
    D = np.ones((B, kmax))
    W = np.zeros((B, kmax))
    for b, (d, w) in enumerate(histograms):
        D[b, : len(d)] = d
        W[b, : len(w)] = w
    return (
        torch.as_tensor(D, dtype=torch.float64, device=device),
        torch.as_tensor(W, dtype=torch.float64, device=device),
    )


def project_scale(
    g: torch.Tensor, y: torch.Tensor, wt: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best non-negative scale of ``g`` against ``y`` and the weighted residual.

    Parameters
    ----------
    g : Tensor [B, nr]
        Model curves at scale 1.
    y, wt : Tensor [nr]
        Data and the square roots of the weights (``1 / dG``, or ones).

    Returns
    -------
    scale : Tensor [B]
    residual : Tensor [B, nr]
        ``wt * (scale * g - y)``.
    """
    wg = g * wt
    wy = y * wt
    scale = (wg * wy).sum(-1) / (wg * wg).sum(-1).clamp(min=1e-300)
    scale = scale.clamp(min=0.0)
    return scale, scale[..., None] * wg - wy


def levenberg_marquardt(
    model: HistogramPDF,
    d: torch.Tensor,
    w: torch.Tensor,
    n_atoms: torch.Tensor,
    y: torch.Tensor,
    wt: torch.Tensor,
    x0: torch.Tensor,
    lower: Sequence[float],
    upper: Sequence[float],
    *,
    iterations: int,
    damping: float = 1e-2,
    single: bool = False,
    retries: int = 1,
    rtol: float = 0.0,
    relief: float = 0.3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched Levenberg-Marquardt over (zoomscale, uiso, delta2), scale projected out.

    Each histogram has its own damping; a step is kept only where it lowers the cost,
    and parameters are clipped to their bounds.  Analytic Jacobians
    (:meth:`HistogramPDF.g_and_jacobian`): no autograd.

    Parameters
    ----------
    model : HistogramPDF
    d, w : Tensor [B, K]
        Sparse histograms (:func:`pack_sparse`).
    n_atoms : Tensor [B]
    y, wt : Tensor [nr]
        Data and the square roots of the weights.
    x0 : Tensor [B, 3] or [3]
        Starting (zoomscale, uiso, delta2).
    lower, upper : sequence of 3 floats
        Bounds.
    iterations : int
        Most iterations.
    damping : float
        Starting damping (relative to the diagonal of J^T J).
    single : bool
        float32 kernels (see :meth:`HistogramPDF.g_and_jacobian`).
    retries : int
        Damping increases (x10) tried within one iteration where a step fails; with
        more than one, the fit stops once no histogram improves.
    rtol : float
        Stop early once no histogram lowers its cost by more than this fraction.
    relief : float
        Factor on the damping after a successful step (it grows x10 after a failed one).

    Returns
    -------
    x : Tensor [B, 3]
    scale : Tensor [B]
    cost : Tensor [B]
        Weighted residual sum of squares at ``x``.
    """
    B = d.shape[0]
    dt, dev = d.dtype, d.device
    lo = torch.as_tensor(list(lower), dtype=dt, device=dev)
    hi = torch.as_tensor(list(upper), dtype=dt, device=dev)
    x = torch.as_tensor(x0, dtype=dt, device=dev)
    x = torch.minimum(torch.maximum(x.expand(B, 3).clone(), lo), hi)
    lam = torch.full((B,), float(damping), dtype=dt, device=dev)

    def evaluate(p: torch.Tensor):
        g, j = model.g_and_jacobian(d, w, n_atoms, p[:, 0], p[:, 1], p[:, 2], single=single)
        sc, res = project_scale(g, y, wt)
        return j, sc, res, (res * res).sum(1)

    J, scale, res, cost = evaluate(x)
    for _ in range(int(iterations)):
        pending = torch.ones(B, dtype=torch.bool, device=dev)
        gain = torch.zeros(B, dtype=dt, device=dev)
        for _ in range(max(1, int(retries))):
            Jw = J * wt * scale[:, None, None]  # [B, 3, nr]
            A = Jw @ Jw.transpose(1, 2)  # [B, 3, 3]
            grad = (Jw * res[:, None, :]).sum(2)  # [B, 3]
            diag = torch.diagonal(A, dim1=1, dim2=2).clamp(min=1e-30)
            a = A + torch.diag_embed(lam[:, None] * diag)
            step = -torch.linalg.solve(a, grad[..., None])[..., 0]
            xn = torch.minimum(torch.maximum(x + step, lo), hi)
            Jn, sn, rn, cn = evaluate(xn)
            better = pending & (cn < cost)
            gain = torch.where(better, (cost - cn) / cost.clamp(min=1e-300), gain)
            b = better[:, None]
            x = torch.where(b, xn, x)
            J = torch.where(b[:, :, None], Jn, J)
            scale = torch.where(better, sn, scale)
            res = torch.where(b, rn, res)
            cost = torch.where(better, cn, cost)
            lam = torch.where(better, lam * relief, torch.where(pending, lam * 10.0, lam))
            lam = lam.clamp(1e-7, 1e7)
            pending = pending & ~better
            if not bool(pending.any()):
                break
        if retries > 1 and bool(pending.all()):
            break  # no histogram found a better point even with more damping
        if rtol > 0 and float(gain.max()) <= rtol:
            break
    return x, scale, cost
