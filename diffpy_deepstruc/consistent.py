"""Which candidates the data allow: Hamilton's R-ratio test on refined Rw values.

A ranking by Rw says which candidate fits best, not whether the second fits
*significantly* worse.  This module answers that question the way crystallographers
compare refinements (Hamilton, *Acta Cryst.* 18, 502 (1965)):

* **Observations.**  A PDF measured to ``Qmax`` holds about
  ``n = (rmax - rmin) * Qmax / pi`` independent points over the fit range (the Nyquist
  count, :func:`independent_points`), however finely it is sampled: neighbouring grid
  points share their noise.  Using the grid size instead would make every small Rw
  difference look significant.
* **The test.**  With ``m`` refined parameters, the best candidate's weighted residual
  ``Rw_best`` estimates the noise (plus any misfit the best model leaves).  Candidate
  ``i`` is *consistent with the data* when ``R = Rw_i / Rw_best`` does not exceed
  Hamilton's significance point::

      R_{b, n-m, alpha} = sqrt(1 + b / (n - m) * F_{b, n-m}(1 - alpha))

  (:func:`r_ratio_threshold`; ``F`` is the F distribution's quantile).  ``b`` is the
  number of parameters the comparison tests: the candidates are not nested (each is
  a different structure with the same ``m`` refined parameters), so ``b = m`` -- a
  candidate is kept when its fit lies within the ``1 - alpha`` joint confidence
  region of the best fit's ``m`` parameters.  When candidates refine different numbers
  of parameters, ``b`` is the larger of the two counts.  The test is an F test on the
  ratio of residual sums, so it is the chi-square difference test
  ``chi2_i - chi2_best <= b F`` with the noise variance estimated from the best fit.
* **Why the best fit and not the noise as the yardstick.**  Measured PDFs are never
  fitted to their noise level by a few-parameter cluster model (Rw 0.1-0.3 against an
  expected 0.01-0.05): a test against the noise alone would reject every candidate
  but the best.  Hamilton's ratio lets the unexplained misfit of the best model count
  as noise, which is the honest width of the set when no candidate is exact.  The
  noise itself (:func:`estimate_noise`) gives the expected Rw (:func:`expected_rw`):
  when ``Rw_best`` is close to it the best fit reaches the noise, otherwise the set is
  wider than the noise alone would allow, and the summary says so.

Where the noise comes from (:func:`estimate_noise`, in this order):

1. the file's dG column, when present (root mean square over the fit range);
2. the high-r tail of the data beyond the particle (``tail_from``: where the caller
   knows G(r) must be zero, e.g. beyond the best candidate's diameter plus a few A;
   the rms after removing a line and the slow ripples of Q <= max(2 Qmin, 1.5 1/A)
   that Qmin truncation and backgrounds leave there; at least 20 points and
   2 pi / Qmax);
3. the difference curve of the best fit (its rms): an *upper bound*, since it
   includes whatever misfit the model leaves.

>>> import numpy as np
>>> from diffpy_deepstruc.consistent import consistent_set, independent_points
>>> n = independent_points(1.5, 30.0, 25.0)
>>> consistent_set([0.20, 0.203, 0.26], n_params=4, n_obs=n).tolist()
[True, True, False]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ParameterError, PDFDataError

__all__ = [
    "ALPHA",
    "ConsistencyResult",
    "NoiseEstimate",
    "assess",
    "band_limited_noise",
    "consistent_set",
    "estimate_noise",
    "expected_rw",
    "hamilton_point",
    "independent_points",
    "r_ratio_threshold",
    "summary_line",
]

#: Default significance level of the test.
ALPHA = 0.05
#: Minimum number of points (and minimum length, 2 pi / Qmax) of a usable high-r tail.
MIN_TAIL_POINTS = 20


def _finite(name: str, value: float, *, positive: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(v) or (positive and v <= 0):
        raise ParameterError(
            f"{name} must be a finite{' positive' if positive else ''} number, got {value!r}"
        )
    return v


def independent_points(rmin: float, rmax: float, qmax: float) -> float:
    """Number of independent points of a PDF over ``rmin..rmax``: ``(rmax - rmin) Qmax / pi``.

    Parameters
    ----------
    rmin, rmax : float
        Fit range (A).
    qmax : float
        Maximum Q of the Fourier transform (1/A).

    Returns
    -------
    float
        The Nyquist count (not rounded; the F distribution takes real degrees of
        freedom).
    """
    rmin = _finite("rmin", rmin)
    rmax = _finite("rmax", rmax)
    qmax = _finite("qmax", qmax, positive=True)
    if rmax <= rmin:
        raise ParameterError(f"rmin ({rmin}) must be below rmax ({rmax})")
    return (rmax - rmin) * qmax / math.pi


def r_ratio_threshold(
    n_params: int, n_obs: float, alpha: float = ALPHA, n_tested: int | None = None
) -> float:
    """Hamilton's significance point ``R_{b, n-m, alpha}``.

    Parameters
    ----------
    n_params : int
        ``m``, the refined parameters of the best fit.
    n_obs : float
        ``n``, independent observations (:func:`independent_points`).
    alpha : float
        Significance level (0 < alpha < 1).
    n_tested : int, optional
        ``b``, the parameters the comparison tests; default ``m``.

    Returns
    -------
    float
        ``sqrt(1 + b / (n - m) F_{b, n-m}(1 - alpha))`` (> 1).
    """
    m = int(n_params)
    b = m if n_tested is None else int(n_tested)
    n = _finite("n_obs", n_obs, positive=True)
    a = _finite("alpha", alpha)
    if not 0 < a < 1:
        raise ParameterError(f"alpha must lie between 0 and 1, got {alpha!r}")
    if m < 1 or b < 1:
        raise ParameterError(f"n_params must be >= 1, got {n_params!r}")
    if n <= m:
        raise ParameterError(
            f"{n:.1f} independent points do not determine {m} parameters; "
            "widen the fit range (independent points = (rmax - rmin) Qmax / pi)"
        )
    return hamilton_point(b, n - m, a)


def hamilton_point(b: int, dof: float, alpha: float) -> float:
    """``sqrt(1 + b / dof F_{b, dof}(1 - alpha))``, Hamilton's R-ratio significance point
    for ``b`` tested parameters and ``dof`` degrees of freedom (no checks; see
    :func:`r_ratio_threshold`).

    The F quantile is ``scipy.special.fdtri``, the function behind
    ``scipy.stats.f.ppf`` (the same numbers, without importing ``scipy.stats``).
    """
    from scipy.special import fdtri

    return math.sqrt(1.0 + b / dof * float(fdtri(b, dof, 1.0 - alpha)))


def _params_array(n_params: int | Sequence[int], size: int) -> np.ndarray:
    p = np.broadcast_to(np.asarray(n_params), (size,)).astype(float)
    if np.any(~np.isfinite(p)) or np.any(p < 1) or np.any(p != np.round(p)):
        raise ParameterError(f"n_params must be integers >= 1, got {n_params!r}")
    return p.astype(int)


def consistent_set(
    rws: Sequence[float] | np.ndarray,
    n_params: int | Sequence[int],
    n_obs: float,
    alpha: float = ALPHA,
) -> np.ndarray:
    """Mark the candidates whose fit is not significantly worse than the best.

    Parameters
    ----------
    rws : sequence of float
        Rw of each candidate over the same data, fit range and weights (any order;
        NaN or inf marks a failed fit, never consistent).
    n_params : int or sequence of int
        Refined parameters of every candidate, or one count per candidate.
    n_obs : float
        Independent observations of the fit range (:func:`independent_points`).
    alpha : float
        Significance level (default 0.05).

    Returns
    -------
    ndarray of bool
        True for the best candidate and for every ``i`` with
        ``Rw_i / Rw_best <= R_{b, n-m, alpha}`` (``m``: the best's parameter count,
        ``b = max(m, m_i)``; see the module documentation).
    """
    rw = np.asarray(rws, dtype=float).reshape(-1)
    if rw.size == 0:
        return np.zeros(0, dtype=bool)
    p = _params_array(n_params, rw.size)
    ok = np.isfinite(rw) & (rw >= 0)
    out = np.zeros(rw.size, dtype=bool)
    if not ok.any():
        return out
    best = int(np.flatnonzero(ok)[np.argmin(rw[ok])])
    rw_best, m = float(rw[best]), int(p[best])
    for i in np.flatnonzero(ok):
        if rw_best == 0.0:
            out[i] = rw[i] == 0.0
            continue
        thr = r_ratio_threshold(m, n_obs, alpha, n_tested=max(m, int(p[i])))
        out[i] = rw[i] / rw_best <= thr
    out[best] = True
    return out


@dataclass(frozen=True)
class NoiseEstimate:
    """The noise (standard deviation of G per point) and where it came from.

    Attributes
    ----------
    sigma : float
        Noise of G(r) (A^-2), one standard deviation.
    source : str
        ``"dG"``, ``"tail"`` or ``"difference"``.
    detail : str
        One phrase for the report, e.g. ``"rms of the high-r tail r > 25 A (300 points)"``.
    """

    sigma: float
    source: str
    detail: str

    def __float__(self) -> float:
        return float(self.sigma)


def _arrays(r, g, g_calc, dg):
    try:
        r = np.asarray(r, dtype=float).reshape(-1)
        g = np.asarray(g, dtype=float).reshape(-1)
        gc = None if g_calc is None else np.asarray(g_calc, dtype=float).reshape(-1)
        d = None if dg is None else np.asarray(dg, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise PDFDataError(f"r, g, g_calc and dg must be numeric arrays: {exc}") from exc
    for name, a in (("g", g), ("g_calc", gc), ("dg", d)):
        if a is not None and a.shape != r.shape:
            raise PDFDataError(f"{name} has {a.size} points, r has {r.size}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(g))):
        raise PDFDataError("r and g must be finite")
    return r, g, gc, d


def _tail_noise(
    r: np.ndarray, g: np.ndarray, qmax: float | None, qmin: float | None
) -> float | None:
    """Noise of a tail where G(r) should be zero, after removing slow ripples.

    Beyond the particle a measured G(r) still carries slow oscillations (Qmin
    truncation, small-angle scattering, background errors) that are not noise.  A line
    and sines and cosines of r with Q <= ``q_cut`` (2 Qmin, at least 1.5 1/A) are
    fitted and removed; the noise's share in that band, ``n_basis / n_independent``, is
    given back to the variance.  None when the tail is too short for this.
    """
    span = float(r[-1] - r[0])
    q_cut = max(2.0 * float(qmin or 0.0), 1.5)
    dq = math.pi / span
    qs = np.arange(dq, q_cut + 0.5 * dq, dq)
    cols = [np.ones_like(r), r - r.mean()]
    cols += [f(q * r) for q in qs for f in (np.sin, np.cos)]
    basis = np.stack(cols, axis=1)
    n_ind = span * float(qmax) / math.pi if qmax else float(r.size)
    n_ind = min(n_ind, float(r.size))
    if n_ind - basis.shape[1] < 10 or r.size <= basis.shape[1]:
        return None
    coef, *_ = np.linalg.lstsq(basis, g, rcond=None)
    res = g - basis @ coef
    return float(np.sqrt(np.mean(res**2) / (1.0 - basis.shape[1] / n_ind)))


def estimate_noise(
    r,
    g,
    g_calc=None,
    dg=None,
    *,
    tail_from: float | None = None,
    qmax: float | None = None,
    qmin: float | None = None,
    rmin: float | None = None,
    rmax: float | None = None,
) -> NoiseEstimate:
    """The noise of G(r): from dG, else the high-r tail, else the best fit's difference.

    Parameters
    ----------
    r, g : ndarray
        The measured PDF (the whole data set).
    g_calc : ndarray, optional
        The best fit on the same points as ``g`` (or NaN outside the fit range).
    dg : ndarray, optional
        The file's dG column; used when given with at least one positive value.
    tail_from : float, optional
        r (A) beyond which G(r) is known to be zero (beyond the particle); its rms,
        after removing a line and slow ripples (Q <= max(2 Qmin, 1.5 1/A)), is the noise
        when the tail has >= 20 points and spans at least ``2 pi / qmax``.
    qmax, qmin : float, optional
        Q-range (1/A): the tail's minimum length and independent points, and the band
        of slow ripples removed.
    rmin, rmax : float, optional
        Fit range for the dG and difference estimates (default: all points).

    Returns
    -------
    NoiseEstimate
        ``float(est)`` is the noise.

    Raises
    ------
    ParameterError
        When none of the three sources is available.
    """
    r, g, gc, d = _arrays(r, g, g_calc, dg)
    lo = -np.inf if rmin is None else float(rmin)
    hi = np.inf if rmax is None else float(rmax)
    sel = (r >= lo) & (r <= hi)
    if d is not None and np.any(d[sel] > 0):
        v = d[sel]
        v = v[np.isfinite(v) & (v > 0)]
        sigma = float(np.sqrt(np.mean(v**2)))
        return NoiseEstimate(sigma, "dG", f"rms of the file's dG over {v.size} points")
    if tail_from is not None:
        t = r > float(tail_from)
        span = float(r[t][-1] - r[t][0]) if t.sum() > 1 else 0.0
        need = 0.0 if qmax is None else 2 * math.pi / float(qmax)
        if t.sum() >= MIN_TAIL_POINTS and span >= need:
            sigma = _tail_noise(r[t], g[t], qmax, qmin)
            if sigma is not None:
                return NoiseEstimate(
                    sigma,
                    "tail",
                    f"rms of the data beyond the particle, r > {float(tail_from):.3g} A "
                    f"({int(t.sum())} points, slow ripples removed)",
                )
    if gc is not None:
        ok = sel & np.isfinite(gc)
        if ok.sum() >= 2:
            diff = g[ok] - gc[ok]
            sigma = float(np.sqrt(np.mean(diff**2)))
            return NoiseEstimate(
                sigma,
                "difference",
                f"rms of the best fit's difference curve ({int(ok.sum())} points; an "
                "upper bound, it includes any misfit)",
            )
    raise ParameterError(
        "cannot estimate the noise: the data have no dG column, no high-r tail beyond "
        "the particle was given (tail_from) and no fit (g_calc)"
    )


def expected_rw(
    g,
    sigma,
    n_obs: float,
    n_params: int,
) -> float:
    """The Rw a model that is exact would reach, given the noise (``Rexp``).

    ``Rexp = sqrt((n - m) / n / mean(g^2 / sigma^2))`` over the fit range, the usual
    expected R of Rietveld refinement with ``n`` independent points: a correct model
    leaves the noise, minus the share its ``m`` parameters absorb.

    Parameters
    ----------
    g : ndarray
        Measured G(r) over the fit range.
    sigma : float or ndarray
        Noise of each point (a scalar, or dG on the same points).
    n_obs : float
        Independent observations (:func:`independent_points`).
    n_params : int
        Refined parameters.
    """
    g = np.asarray(g, dtype=float).reshape(-1)
    s = np.broadcast_to(np.asarray(sigma, dtype=float), g.shape)
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ParameterError("the noise must be finite and positive")
    n = _finite("n_obs", n_obs, positive=True)
    if n <= n_params:
        raise ParameterError(f"{n:.1f} independent points for {n_params} parameters")
    w = np.mean(g**2 / s**2)
    if w <= 0:
        raise PDFDataError("G(r) is zero over the fit range")
    return float(math.sqrt((n - n_params) / n / w))


def summary_line(consistent, labels: Sequence[str] | None = None) -> str:
    """``"consistent with the data: 4 candidates: #1, #2, #3, #5"``.

    Parameters
    ----------
    consistent : sequence of bool
        Mask from :func:`consistent_set`, in ranking order.
    labels : sequence of str, optional
        Names of the candidates (default ``#1, #2, ...`` by position).
    """
    mask = np.asarray(consistent, dtype=bool).reshape(-1)
    names = [f"#{k + 1}" for k in range(mask.size)] if labels is None else list(labels)
    if len(names) != mask.size:
        raise ParameterError(f"{len(names)} labels for {mask.size} candidates")
    kept = [names[k] for k in np.flatnonzero(mask)]
    word = "candidate" if len(kept) == 1 else "candidates"
    return f"consistent with the data: {len(kept)} {word}: {', '.join(kept) or '-'}"


@dataclass(frozen=True)
class ConsistencyResult:
    """Everything :func:`assess` decided, for tables and reports.

    Attributes
    ----------
    consistent : ndarray of bool
        One flag per candidate, in the order given.
    ratio : ndarray
        ``Rw_i / Rw_best`` (NaN for failed fits).
    threshold : float
        ``R_{m, n-m, alpha}`` for the best's ``m`` parameters.
    n_obs : float
        Independent points of the fit range.
    n_params : int
        Refined parameters of the best candidate.
    alpha : float
        Significance level.
    rw_best : float
        The best Rw.
    noise : NoiseEstimate or None
        The noise, when it could be estimated.
    rw_expected : float
        Rw an exact model would reach given that noise (NaN without noise).
    text : str
        :func:`summary_line` plus one sentence on the test and the noise.
    """

    consistent: np.ndarray
    ratio: np.ndarray
    threshold: float
    n_obs: float
    n_params: int
    alpha: float
    rw_best: float
    noise: NoiseEstimate | None
    rw_expected: float
    text: str

    def as_dict(self) -> dict:
        """JSON-ready values (no NaN: missing numbers are None)."""

        def num(v):
            return float(v) if v is not None and math.isfinite(float(v)) else None

        return {
            "test": "Hamilton R-ratio",
            "alpha": self.alpha,
            "n_independent_points": num(self.n_obs),
            "n_params": self.n_params,
            "rw_best": num(self.rw_best),
            "ratio_threshold": num(self.threshold),
            "noise": None if self.noise is None else num(self.noise.sigma),
            "noise_source": None if self.noise is None else self.noise.source,
            "noise_detail": None if self.noise is None else self.noise.detail,
            "rw_expected": num(self.rw_expected),
            "consistent": [bool(v) for v in self.consistent],
            "rw_ratio": [num(v) for v in self.ratio],
            "text": self.text,
        }


def assess(
    rws: Sequence[float] | np.ndarray,
    n_params: int | Sequence[int],
    *,
    rmin: float,
    rmax: float,
    qmax: float,
    alpha: float = ALPHA,
    noise: NoiseEstimate | None = None,
    g: np.ndarray | None = None,
    labels: Sequence[str] | None = None,
) -> ConsistencyResult:
    """Run the test on a ranking and phrase its outcome.

    Parameters
    ----------
    rws : sequence of float
        Rw of each candidate (ranking order; NaN for failed fits).
    n_params : int or sequence of int
        Refined parameters (4 for the standard recipe: scale, zoomscale, Uiso, delta2).
    rmin, rmax, qmax : float
        Fit range (A) and Qmax (1/A) of the data.
    alpha : float
        Significance level.
    noise : NoiseEstimate, optional
        From :func:`estimate_noise`; with ``g`` it gives the expected Rw.
    g : ndarray, optional
        Measured G(r) over the fit range (for the expected Rw).
    labels : sequence of str, optional
        Candidate names for the summary (default ``#1, #2, ...``).

    Returns
    -------
    ConsistencyResult
    """
    rw = np.asarray(rws, dtype=float).reshape(-1)
    n = independent_points(rmin, rmax, qmax)
    mask = consistent_set(rw, n_params, n, alpha)
    p = _params_array(n_params, max(rw.size, 1))
    ok = np.isfinite(rw) & (rw >= 0)
    if ok.any():
        best = int(np.flatnonzero(ok)[np.argmin(rw[ok])])
        rw_best, m = float(rw[best]), int(p[best])
    else:
        rw_best, m = float("nan"), int(p[0])
    thr = r_ratio_threshold(m, n, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ok, rw / rw_best, np.nan)
    rexp = float("nan")
    if noise is not None and g is not None:
        rexp = expected_rw(g, noise.sigma, n, m)
    text = summary_line(mask, labels)
    text += (
        f" (Hamilton R-ratio test, alpha = {alpha:g}: Rw / Rw_best <= {thr:.3f} "
        f"with {n:.0f} independent points and {m} parameters)"
    )
    if noise is not None and noise.source == "difference":
        text += (
            "; no independent noise estimate (no dG, no tail beyond the particle), so "
            "whether the best fit reaches the noise is not known"
        )
    elif math.isfinite(rexp) and math.isfinite(rw_best):
        if rw_best < 0.67 * rexp:
            text += (
                f"; the best fit is below the Rw the noise allows (expected {rexp:.2g}, "
                f"noise from {noise.source}): the noise is overestimated"
            )
        elif rw_best <= 1.5 * rexp:
            text += f"; the best fit reaches the noise (expected Rw {rexp:.2g})"
        else:
            text += (
                f"; the best fit leaves misfit beyond the noise (expected Rw {rexp:.2g}, "
                f"noise from {noise.source}), so the set is wider than the noise alone "
                "would allow"
            )
    return ConsistencyResult(
        consistent=mask,
        ratio=ratio,
        threshold=thr,
        n_obs=n,
        n_params=m,
        alpha=float(alpha),
        rw_best=rw_best,
        noise=noise,
        rw_expected=rexp,
        text=text,
    )


def band_limited_noise(
    r: np.ndarray, sigma: float, qmax: float, rng: np.random.Generator, qmin: float = 0.0
) -> np.ndarray:
    """Gaussian noise with the correlations of a measured PDF, for simulations.

    White noise in Q on ``qmin..qmax`` Fourier-transformed to r (as the PDF's own
    noise is), scaled to standard deviation ``sigma``: neighbouring points closer than
    ``pi / qmax`` share their noise, which is why a PDF holds only
    :func:`independent_points` independent values.

    Parameters
    ----------
    r : ndarray
        The r-grid (A).
    sigma : float
        Standard deviation per point.
    qmax, qmin : float
        Q-range (1/A).
    rng : numpy.random.Generator
        Source of randomness (seed it for reproducible draws).
    """
    r = np.asarray(r, dtype=float).reshape(-1)
    qmax = _finite("qmax", qmax, positive=True)
    sigma = _finite("sigma", sigma)
    dq = math.pi / (4.0 * max(float(r[-1] - r[0]), 1.0))
    q = np.arange(float(qmin) + 0.5 * dq, qmax, dq)
    noise = np.sin(np.outer(r, q)) @ rng.normal(size=q.size)
    s = float(np.std(noise))
    return noise * (sigma / s) if s > 0 else noise
