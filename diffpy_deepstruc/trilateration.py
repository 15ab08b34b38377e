"""Distances back to coordinates: multilateration, L-BFGS-B trilateration, alignment.

The networks predict, for the ``n`` atoms of a structure in the unit-sphere frame of
:mod:`diffpy_deepstruc.representation`, the distances ``d[i, k]`` to ``S`` fixed
satellites ``s_k`` and (optionally) the atom-atom distances ``D[i, j]``.  Predicted
distances are not exact, so the coordinates are the least-squares solution

.. math::

    f(X) = \\sum_{i,k} w^s_{ik} (|x_i - s_k| - d_{ik})^2
         + \\sum_{i<j} w^p_{ij} (|x_i - x_j| - D_{ij})^2

found with scipy's L-BFGS-B and an analytic gradient, started from the closed-form
:func:`multilaterate` solution.  NaN distances count as missing (weight 0).

:func:`aligned_rmsd` (Kabsch) and :func:`assign_and_align` (Hungarian assignment plus
Kabsch) compare structures for evaluation metrics.  Numpy and scipy only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment, minimize
from scipy.spatial.distance import cdist

from diffpy_deepstruc.errors import ParameterError, StructureError

__all__ = [
    "AlignmentResult",
    "TrilaterationResult",
    "aligned_rmsd",
    "assign_and_align",
    "kabsch",
    "multilaterate",
    "objective",
    "trilaterate",
]

_EPS = 1e-12

try:  # optional: keeps L-BFGS-B's many tiny BLAS calls single-threaded
    from threadpoolctl import threadpool_limits as _threadpool_limits
except ImportError:  # pragma: no cover - depends on the environment
    _threadpool_limits = None


def _single_thread_blas():
    """Context limiting BLAS to one thread where threadpoolctl is installed.

    scipy >= 1.15's L-BFGS-B makes many BLAS calls on tiny arrays; with a
    multi-threaded OpenBLAS on a busy machine each one can cost milliseconds
    (scipy/scipy#22438, #23191).  Without threadpoolctl, set ``OPENBLAS_NUM_THREADS=1``.
    """
    if _threadpool_limits is None:
        return contextlib.nullcontext()
    return _threadpool_limits(limits=1, user_api="blas")


# --------------------------------------------------------------------------- checks
def _as_satellites(satellites) -> np.ndarray:
    s = np.asarray(satellites, dtype=float)
    if s.ndim != 2 or s.shape[1] != 3 or s.shape[0] < 4:
        raise ParameterError(
            f"satellites must have shape (S, 3) with S >= 4, got {s.shape}"
        )
    if not np.all(np.isfinite(s)):
        raise ParameterError("satellites contain NaN or infinite values")
    sv = np.linalg.svd(s - s.mean(axis=0), compute_uv=False)
    if sv[-1] <= 1e-9 * max(sv[0], 1.0):
        raise ParameterError("satellites are coplanar; they cannot fix a point in 3-D")
    return s


def _as_sat_dist(sat_dist, n_sat: int) -> np.ndarray:
    d = np.asarray(sat_dist, dtype=float)
    if d.ndim == 1:
        d = d[None, :]
    if d.ndim != 2 or d.shape[1] != n_sat:
        raise ParameterError(
            f"sat_dist must have shape (n, {n_sat}) to match the satellites, got {d.shape}"
        )
    if d.shape[0] < 1:
        raise ParameterError("sat_dist has no atoms")
    if np.any(np.isinf(d)) or np.any(d < 0):
        raise ParameterError("sat_dist must be finite (NaN = missing) and non-negative")
    return d


def _weights(w, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(w, dtype=float)
    try:
        arr = np.broadcast_to(arr, shape).copy()
    except ValueError:
        raise ParameterError(f"{name} must be a scalar or broadcast to {shape}") from None
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ParameterError(f"{name} must be finite and non-negative")
    return arr


# ---------------------------------------------------------------- multilateration
def multilaterate(sat_dist, satellites) -> np.ndarray:
    """Closed-form least-squares positions from atom-satellite distances.

    ``|x - s_k|^2 = d_k^2`` is linearised by subtracting the mean over the satellites:
    ``-2 (s_k - s_mean) . x = (d_k^2 - mean d^2) - (|s_k|^2 - mean |s|^2)``, solved by
    linear least squares for all atoms at once.  NaN distances are left out for that
    atom (an atom needs at least 4 finite distances to be fixed; with fewer the
    minimum-norm solution is returned).

    Parameters
    ----------
    sat_dist : array_like, shape (n, S) or (S,)
        Atom-satellite distances.
    satellites : array_like, shape (S, 3)
        Satellite positions, not coplanar.

    Returns
    -------
    ndarray, shape (n, 3)
    """
    s = _as_satellites(satellites)
    d = _as_sat_dist(sat_dist, s.shape[0])
    s2 = np.einsum("kj,kj->k", s, s)
    xyz = np.empty((d.shape[0], 3))
    finite = np.isfinite(d)
    full = np.all(finite, axis=1)
    if np.any(full):
        a = -2.0 * (s - s.mean(axis=0))
        d2 = d[full] ** 2
        b = (d2 - d2.mean(axis=1, keepdims=True)) - (s2 - s2.mean())
        xyz[full] = np.linalg.lstsq(a, b.T, rcond=None)[0].T
    for i in np.flatnonzero(~full):
        ok = finite[i]
        if ok.sum() < 2:
            xyz[i] = 0.0
            continue
        sk, d2 = s[ok], d[i, ok] ** 2
        a = -2.0 * (sk - sk.mean(axis=0))
        b = (d2 - d2.mean()) - (s2[ok] - s2[ok].mean())
        xyz[i] = np.linalg.lstsq(a, b, rcond=None)[0]
    return xyz


# ---------------------------------------------------------------- objective
def objective(
    x: np.ndarray,
    sat_dist: np.ndarray,
    satellites: np.ndarray,
    w_sat: np.ndarray,
    adm: np.ndarray | None = None,
    w_pair: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """Objective ``f`` and its gradient ``[n, 3]`` (see the module docstring).

    Low-level and unchecked: ``w_sat`` is ``[n, S]`` and already 0 where ``sat_dist``
    is missing (which must then hold a finite placeholder), likewise ``w_pair``
    ``[n, n]`` (symmetric, zero diagonal) for ``adm``.
    """
    # cdist (plain C loops, no BLAS threads: much faster than a Gram matrix on a busy
    # machine, and exact for short distances)
    # atom-satellite term: d f / d x_i = 2 sum_k w (r - d)/r (x_i - s_k)
    r = cdist(x, satellites)
    e = r - sat_dist
    we = w_sat * e
    f = float(np.sum(we * e))
    c = 2.0 * we / np.maximum(r, _EPS)
    grad = c.sum(axis=1)[:, None] * x - c @ satellites
    if adm is not None:
        # pair term over i<j = half the sum over i != j (w_pair symmetric)
        p = cdist(x, x)
        ep = p - adm
        wp = w_pair * ep
        f += 0.5 * float(np.sum(wp * ep))
        cp = 2.0 * wp / np.maximum(p, _EPS)
        grad += cp.sum(axis=1)[:, None] * x - cp @ x
    return f, grad


@dataclass(frozen=True, eq=False)
class TrilaterationResult:
    """Result of :func:`trilaterate`.

    Attributes
    ----------
    xyz : ndarray, shape (n, 3)
        Positions in the satellites' frame (unit sphere).
    residual : ndarray, shape (n,)
        Per-atom weighted RMS distance error: ``sqrt(sum w e^2 / sum w)`` over the
        satellite and pair distances that involve the atom (``e`` = fitted minus target
        distance); 0 for an atom with no weighted distance.
    success : bool
        The optimiser reported convergence.
    n_iter : int
        L-BFGS-B iterations.
    cost : float
        Final objective ``f``.
    message : str
        The optimiser's message.
    """

    xyz: np.ndarray
    residual: np.ndarray
    success: bool
    n_iter: int
    cost: float
    message: str


def trilaterate(
    sat_dist,
    adm,
    satellites,
    *,
    w_sat=1.0,
    w_pair=1.0,
    x0=None,
    maxiter: int = 1000,
    ftol: float = 1e-13,
    gtol: float = 1e-10,
) -> TrilaterationResult:
    """Coordinates from (noisy) atom-satellite and atom-atom distances.

    Minimises ``f(X)`` of the module docstring with ``scipy.optimize.minimize``
    (``method="L-BFGS-B"``, analytic gradient) over all ``n`` positions.

    Parameters
    ----------
    sat_dist : array_like, shape (n, S)
        Atom-satellite distances (unit-sphere units); NaN = missing.
    adm : array_like, shape (n, n), or None
        Atom-atom distances (assigned distance matrix); NaN = missing.  Only the pairs
        ``i != j`` are used; a non-symmetric matrix is symmetrised (mean of ``D`` and
        ``D.T``; a pair missing on one side uses the other).  None: satellites only.
    satellites : array_like, shape (S, 3)
        Satellite positions (:func:`~diffpy_deepstruc.representation.satellite_positions`).
    w_sat : float or array_like broadcasting to (n, S)
        Weights of the satellite terms (>= 0; 0 masks a distance).
    w_pair : float or array_like broadcasting to (n, n)
        Weights of the pair terms (>= 0; symmetrised like ``adm``).
    x0 : array_like, shape (n, 3), optional
        Start; default :func:`multilaterate` of ``sat_dist``.
    maxiter : int
        Maximum L-BFGS-B iterations.
    ftol, gtol : float
        L-BFGS-B stopping tolerances (tight by default, so exact distances give
        coordinates to about 1e-8 units or better).

    Returns
    -------
    TrilaterationResult
    """
    s = _as_satellites(satellites)
    d = _as_sat_dist(sat_dist, s.shape[0])
    n = d.shape[0]
    ws = _weights(w_sat, d.shape, "w_sat")
    miss = np.isnan(d)
    ws[miss] = 0.0
    d = np.where(miss, 0.0, d)

    dd = wp = None
    if adm is not None:
        dd = np.asarray(adm, dtype=float)
        if dd.shape != (n, n):
            raise ParameterError(f"adm must have shape ({n}, {n}), got {dd.shape}")
        if np.any(np.isinf(dd)) or np.any(dd < 0):
            raise ParameterError("adm must be finite (NaN = missing) and non-negative")
        wp = _weights(w_pair, (n, n), "w_pair")
        wp = 0.5 * (wp + wp.T)
        ok = ~np.isnan(dd)
        both = ok & ok.T
        dd = np.where(both, 0.5 * (dd + dd.T), np.where(ok, dd, dd.T))
        wp[~(ok | ok.T)] = 0.0
        np.fill_diagonal(wp, 0.0)
        dd = np.where(np.isnan(dd), 0.0, dd)
    if (
        isinstance(maxiter, bool)
        or not isinstance(maxiter, int | np.integer)
        or maxiter < 0
    ):
        raise ParameterError(f"maxiter must be a non-negative integer, got {maxiter!r}")

    if x0 is None:
        start = multilaterate(np.where(miss, np.nan, d), s)
    else:
        start = np.asarray(x0, dtype=float)
        if start.shape != (n, 3):
            raise ParameterError(f"x0 must have shape ({n}, 3), got {start.shape}")
        if not np.all(np.isfinite(start)):
            raise ParameterError("x0 contains NaN or infinite values")

    def fun(flat):
        f, g = objective(flat.reshape(n, 3), d, s, ws, dd, wp)
        return f, g.ravel()

    if maxiter == 0:
        x = start.copy()
        success, nit, msg = True, 0, "maxiter=0: start returned"
    else:
        with _single_thread_blas():
            res = minimize(
                fun,
                start.ravel(),
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": int(maxiter), "ftol": ftol, "gtol": gtol, "maxcor": 20},
            )
        x = res.x.reshape(n, 3)
        success, nit, msg = bool(res.success), int(res.nit), str(res.message)

    f, _ = objective(x, d, s, ws, dd, wp)
    residual = _residuals(x, d, s, ws, dd, wp)
    return TrilaterationResult(
        xyz=x, residual=residual, success=success, n_iter=nit, cost=f, message=msg
    )


def _residuals(x, d, s, ws, dd, wp) -> np.ndarray:
    r = cdist(x, s)
    num = np.sum(ws * (r - d) ** 2, axis=1)
    den = ws.sum(axis=1)
    if dd is not None:
        p = cdist(x, x)
        num = num + np.sum(wp * (p - dd) ** 2, axis=1)
        den = den + wp.sum(axis=1)
    out = np.zeros(x.shape[0])
    ok = den > 0
    out[ok] = np.sqrt(num[ok] / den[ok])
    return out


# ---------------------------------------------------------------- alignment
def _as_points(a, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] < 1:
        raise StructureError(f"{name} must have shape (n, 3), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise StructureError(f"{name} contains NaN or infinite values")
    return arr


def kabsch(
    a, b, *, allow_scale: bool = False, allow_reflection: bool = False
) -> tuple[np.ndarray, float, np.ndarray]:
    """Best superposition of point set ``a`` onto ``b`` (same length, paired rows).

    Returns ``(rotation[3, 3], scale, translation[3])`` minimising
    ``sum |scale * a_i @ rotation.T + translation - b_i|^2``; ``rotation`` is proper
    unless ``allow_reflection``; ``scale`` is 1 unless ``allow_scale``.
    """
    a = _as_points(a, "a")
    b = _as_points(b, "b")
    if a.shape != b.shape:
        raise StructureError(f"a and b must have the same shape, got {a.shape}, {b.shape}")
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    a0, b0 = a - ca, b - cb
    u, sv, vt = np.linalg.svd(b0.T @ a0)
    if not allow_reflection and np.linalg.det(u @ vt) < 0:
        u[:, -1] *= -1.0
        sv = sv.copy()
        sv[-1] *= -1.0
    rot = u @ vt
    scale = 1.0
    if allow_scale:
        aa = float(np.sum(a0 * a0))
        scale = float(np.sum(sv) / aa) if aa > 0 else 1.0
    trans = cb - scale * ca @ rot.T
    return rot, scale, trans


def aligned_rmsd(
    a, b, allow_scale: bool = False, *, allow_reflection: bool = False
) -> float:
    """RMSD between paired point sets ``a`` and ``b`` after the best superposition.

    Row ``i`` of ``a`` is compared with row ``i`` of ``b`` (no reassignment: see
    :func:`assign_and_align`).  The superposition (:func:`kabsch`) is a rotation and
    translation of ``a``, with a uniform scale if ``allow_scale`` and a reflection if
    ``allow_reflection``.  Units are those of ``b``.
    """
    rot, scale, trans = kabsch(
        a, b, allow_scale=allow_scale, allow_reflection=allow_reflection
    )
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    diff = scale * a @ rot.T + trans - b
    return float(np.sqrt(np.mean(np.sum(diff * diff, axis=1))))


@dataclass(frozen=True, eq=False)
class AlignmentResult:
    """Result of :func:`assign_and_align`.

    Attributes
    ----------
    rmsd : float
        RMSD over the matched pairs after superposition.
    index_a, index_b : ndarray of int
        Matched rows: ``a[index_a[m]]`` is paired with ``b[index_b[m]]``
        (``min(len(a), len(b))`` pairs).
    aligned : ndarray, shape (len(a), 3)
        All of ``a`` after the superposition.
    rotation, scale, translation
        The superposition, as in :func:`kabsch`.
    n_unmatched : int
        ``abs(len(a) - len(b))``.
    """

    rmsd: float
    index_a: np.ndarray
    index_b: np.ndarray
    aligned: np.ndarray
    rotation: np.ndarray
    scale: float
    translation: np.ndarray
    n_unmatched: int


def _principal_frames(p: np.ndarray, allow_reflection: bool) -> list[np.ndarray]:
    """Rotations putting the principal axes of ``p`` along x, y, z (all sign choices)."""
    _, vec = np.linalg.eigh(np.cov((p - p.mean(axis=0)).T))
    out = []
    for sx in (1.0, -1.0):
        for sy in (1.0, -1.0):
            for sz in (1.0, -1.0):
                r = (vec * np.array([sx, sy, sz])).T
                if allow_reflection or np.linalg.det(r) > 0:
                    out.append(r)
    return out


def _canonical_rotations(a, b, allow_reflection: bool) -> list[np.ndarray]:
    """Rotation taking the canonical frame of ``a`` onto that of ``b`` (or none)."""
    # imported here: representation is a sibling module, not needed by the rest
    from diffpy_deepstruc.representation import canonical_frame

    if min(len(a), len(b)) < 2:
        return []
    try:
        ra = canonical_frame(a, allow_reflection=allow_reflection)[2]
        rb = canonical_frame(b, allow_reflection=allow_reflection)[2]
    except StructureError:
        return []
    return [rb.T @ ra]


def assign_and_align(
    a,
    b,
    *,
    allow_scale: bool = False,
    allow_reflection: bool = False,
    max_iter: int = 50,
    try_principal_axes: bool = True,
    try_canonical: bool = True,
    n_random_starts: int = 0,
    seed: int = 0,
) -> AlignmentResult:
    """Atom assignment (Hungarian) and superposition (Kabsch) of ``a`` onto ``b``.

    For unordered point sets, e.g. a generated structure against the true one.
    Alternates: assign by :func:`scipy.optimize.linear_sum_assignment` on squared
    distances, superpose the matched pairs with :func:`kabsch`, until the assignment no
    longer changes.  This finds a local optimum, so it is started from several
    superpositions and the best result is returned:

    * the given frames (right when both come from the canonical frame of
      :mod:`~diffpy_deepstruc.representation`, e.g. a reconstruction and its target);
    * if ``try_canonical``, the superposition of the two sets' canonical frames
      (:func:`~diffpy_deepstruc.representation.canonical_frame`), which finds the
      match of two copies of one cluster in any orientation and atom order, even for
      highly symmetric clusters (skipped for a set it cannot frame, e.g. with
      coincident atoms);
    * if ``try_principal_axes``, the principal-axes alignments (useless when the
      inertia tensor is degenerate: cubic and icosahedral clusters);
    * ``n_random_starts`` random rotations (generator ``seed``).

    ``a`` and ``b`` may have different lengths (``min`` of the two pairs are matched).
    """
    a = _as_points(a, "a")
    b = _as_points(b, "b")
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    rotations: list[np.ndarray] = []
    if try_principal_axes and min(len(a), len(b)) >= 3:
        fb = _principal_frames(b, False)[0]
        rotations += [fb.T @ fa for fa in _principal_frames(a, allow_reflection)]
    if try_canonical:
        rotations += _canonical_rotations(a, b, allow_reflection)
    rng = np.random.default_rng(seed)
    for _ in range(int(n_random_starts)):
        q, rr = np.linalg.qr(rng.normal(size=(3, 3)))
        q = q * np.sign(np.diag(rr))
        if np.linalg.det(q) < 0:
            q[:, 0] *= -1.0
        rotations.append(q)
    sc = 1.0
    if allow_scale:
        ra = np.sqrt(np.mean(np.sum((a - ca) ** 2, axis=1)))
        rb = np.sqrt(np.mean(np.sum((b - cb) ** 2, axis=1)))
        sc = rb / ra if ra > 0 else 1.0
    # the given frames first, then the rotations about the centroids
    starts = [(np.eye(3), 1.0, np.zeros(3))]
    starts += [(r, sc, cb - sc * ca @ r.T) for r in rotations]

    best: AlignmentResult | None = None
    for rot, scale, trans in starts:
        prev = None
        for _ in range(max(1, int(max_iter))):
            moved = scale * a @ rot.T + trans
            cost = np.sum((moved[:, None, :] - b[None, :, :]) ** 2, axis=2)
            ia, ib = linear_sum_assignment(cost)
            key = (tuple(ia), tuple(ib))
            if len(ia) >= 3:
                rot, scale, trans = kabsch(
                    a[ia], b[ib], allow_scale=allow_scale, allow_reflection=allow_reflection
                )
            else:  # too few pairs to fix a rotation: translate only
                rot, scale, trans = np.eye(3), 1.0, (b[ib] - a[ia]).mean(axis=0)
            if key == prev:
                break
            prev = key
        moved = scale * a @ rot.T + trans
        diff = moved[ia] - b[ib]
        rmsd = float(np.sqrt(np.mean(np.sum(diff * diff, axis=1))))
        if best is None or rmsd < best.rmsd - 1e-12:
            best = AlignmentResult(
                rmsd=rmsd,
                index_a=np.asarray(ia),
                index_b=np.asarray(ib),
                aligned=moved,
                rotation=rot,
                scale=float(scale),
                translation=np.asarray(trans, dtype=float),
                n_unmatched=abs(len(a) - len(b)),
            )
    assert best is not None
    return best
