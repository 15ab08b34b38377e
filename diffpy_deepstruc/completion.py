"""Complete a starting structure atom by atom against a measured PDF.

A candidate from the solver (or any cluster a user has) is usually *almost* the
particle in the data: the complete ideal shape of a particle with surface vacancies,
the neighbouring cut of an off-centre cut, the closed shell below a partial shell.
:func:`complete` edits it atom by atom until the data stop justifying changes:

moves
    ``remove``: a surface atom (fewer neighbours than the best-coordinated atoms);
    ``add``: a vacant site of the structure's own lattice or shell (an atom plus one
    of the bond vectors of its neighbourhood, or the apex of a triangle of bonded
    surface atoms), unoccupied (>= 0.85 nn from every atom) with >= 3 occupied
    neighbours at ~nn; two sites removed or filled together (correlated vacancies) and
    batches of single moves that each pass the rule on their own; ``swap``: an atom
    moved to a vacant site; ``recut``: the particle's sites and vacant sites ranked by
    their distance from a shifted centre in the metric of the particle's own shape and
    the N-k..N+k nearest kept, k 10 % of N (shifts the cut centre), or a planar cap of
    the surface removed or filled; ``relax``: a restrained
    relaxation of all coordinates against the PDF (torch gradients), with a
    bond-length restraint that keeps every pair >= 0.85 nn apart and bonded pairs
    bonded.
fast
    The PDF is the histogram model of :mod:`diffpy_deepstruc.histpdf`: the pair
    histogram of the current structure is kept and each move adds or subtracts the
    histogram of the atoms it touches (O(N) per atom); G is linear in the histogram
    at fixed parameters, so a batch of candidate moves is screened by one product.
    Scale is solved in closed form; zoomscale, Uiso and delta2 are re-refined by a few
    Levenberg-Marquardt steps (analytic Jacobians) on the best candidates.
noise-aware
    A move is accepted only when chi^2 drops by more than ``penalty`` per site it
    adds or removes (BIC: ``ln n_obs``; AIC: 2; a re-centred cut pays for its net
    count change and its centre's 3 coordinates when that is less), chi^2 counted
    over the ``n_obs = (rmax - rmin) Qmax / pi`` independent points of the fit range
    with the noise variance of the data (:func:`estimate_noise`); the fast model's own error
    (its difference from the exact Debye engine on the start) is added to that
    variance so that the approximation is never "fitted".
    ``criterion="hamilton"`` uses Hamilton's R-ratio test instead.

The result is never worse than the start (fast-model Rw): moves are only accepted when
they lower chi^2.  All final numbers a user reads come from srfit (``make_recipe``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.spatial import ConvexHull, QhullError, cKDTree

from . import debye
from .consistent import hamilton_point, independent_points
from .errors import ParameterError, PDFDataError, StructureError
from .histpdf import HIST_STEP, HistogramPDF, levenberg_marquardt, pair_histogram
from .refine import DEFAULT_QBROAD, DEFAULT_QDAMP, _as_structure, _pdf_arrays

__all__ = [
    "MOVES",
    "CompletionResult",
    "Move",
    "CountRange",
    "complete",
    "count_range_of",
    "coordination",
    "estimate_nn",
    "estimate_noise",
    "independent_points",
    "is_physical",
    "site_bond_max",
    "surface_atoms",
    "vacant_sites",
]

#: Move kinds of :func:`complete`, in the order they are tried.
MOVES = ("remove", "add", "swap", "recut", "relax")

#: What a move pays the stopping rule's penalty for (``complete(penalise=...)``).
PENALISE = ("sites", "atoms", "count")
#: Shell of nearest neighbours, in units of the nearest-neighbour distance nn: a
#: neighbour lies at (MIN_DISTANCE, BOND_MAX] nn (bcc's second shell, 1.155 nn, is out;
#: a Mackay icosahedron's strained in-shell bonds, 1.05 nn, are in).
MIN_DISTANCE = 0.85
BOND_MAX = 1.12
#: Bond range (nn) of open lattices (bulk coordination <= 8 within BOND_MAX: sc, bcc)
#: when an added site's or a kept atom's neighbours are counted: their second shell
#: (bcc 1.155 nn, sc 1.414 nn) holds bonds, and an atom on an sc (100) facet has a
#: single nearest neighbour.
OPEN_BOND_MAX = 1.45
#: An added site needs at least this many occupied neighbours.
MIN_SITE_NEIGHBOURS = 3
#: Parameters of a recut besides its atom count (the shifted centre): a recut pays the
#: criterion's penalty for these plus its net change of the atom count, or for every
#: site it adds or removes when that is fewer.
RECUT_PARAMETERS = 3
#: Counts of the recuts: ``N - k .. N + k`` atoms with ``k`` this fraction of ``N``
#: (at least 2; 1 above 500 atoms).
RECUT_COUNT_FRACTION = 0.1
#: Recuts entered in a step's pool: the best of this many net count changes.
RECUT_POOL = 4
#: A step's shortlist (screened on the full fit grid) and how many of it are refined
#: (zoomscale, Uiso and delta2 by two Levenberg-Marquardt steps) before the best passing
#: move is applied.
SHORTLIST = 8
REFINED = 4
#: Sizes of the planar surface cuts tried among the recuts (atoms removed or added).
CAP_SIZES = (3, 5, 8, 12, 16, 24, 32, 48)
SETTING_KEYS = ("qmin", "qmax", "qdamp", "qbroad")
#: Greedy single-atom steps taken either side of the result to find the atom counts the
#: data do not tell apart from its own (:attr:`CompletionResult.count_range`).
COUNT_SCAN_STEPS = 6
#: Width (in nn) of the radial shells of :func:`relaxation_modes`.
MODE_SHELL = 0.25
#: Largest amplitude (in nn) of a relaxation mode.
MODE_MAX = 0.3
#: Typical steps of the variables of the mode fit, its units (amplitudes in nn): the
#: fit is well conditioned when each variable moves by about one unit.
MODE_STEPS = {"amplitude": 0.1, "zoomscale": 0.01, "uiso": 0.002, "delta2": 0.5}
#: Levenberg-Marquardt iterations of the mode fit.
MODE_ITERATIONS = 20
#: Relative drop of the RSS below which the mode fit stops (1e-4 of a chi^2 of a few
#: hundred is far below the penalty of one mode).
MODE_RTOL = 1e-4
#: The mode fit is skipped when the chi^2 drop predicted by its linearised model at zero
#: amplitude is below this fraction of the criterion's penalty for the modes (the
#: accepted fits of the development set dropped 0.42-4 times the prediction).
MODE_PRETEST = 0.25
#: Bounds of the refined parameters (as refine.VARIABLE_BOUNDS; Uiso > 0 for the model).
_BOUNDS = {"zoomscale": (0.7, 1.3), "uiso": (1e-4, 0.1), "delta2": (0.0, 10.0)}


# -- results ----------------------------------------------------------------------------


@dataclass
class Move:
    """One accepted move.

    Attributes
    ----------
    kind : str
        One of :data:`MOVES`.
    added : ndarray, shape (a, 3)
        Positions of the atoms added (A, the start's frame).
    removed : ndarray, shape (m, 3)
        Positions of the atoms removed.
    removed_index : list of int
        Their indices in the structure *before* the move.
    n_atoms : int
        Atom count after the move.
    rw_before, rw_after : float
        Fast-model Rw before and after (parameters re-refined).
    delta_chi2 : float
        Drop of chi^2 over the independent points.
    penalty : float
        The drop it had to exceed.
    """

    kind: str
    added: np.ndarray
    removed: np.ndarray
    removed_index: list[int]
    n_atoms: int
    rw_before: float
    rw_after: float
    delta_chi2: float
    penalty: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "kind": self.kind,
            "added": np.round(self.added, 6).tolist(),
            "removed": np.round(self.removed, 6).tolist(),
            "removed_index": list(self.removed_index),
            "n_atoms": self.n_atoms,
            "rw_before": self.rw_before,
            "rw_after": self.rw_after,
            "delta_chi2": self.delta_chi2,
            "penalty": self.penalty,
        }


@dataclass
class CompletionResult:
    """Outcome of :func:`complete`.

    Attributes
    ----------
    structure : diffpy.structure.Structure
        The completed cluster (Cartesian coordinates on a unit lattice, in the frame of
        the start: zoomscale is *not* applied; Uiso set to the refined value).
    start : diffpy.structure.Structure
        The starting cluster (a copy).
    added, removed : ndarray, shape (k, 3)
        Positions of the atoms in ``structure`` but not in ``start`` and vice versa
        (net, after all moves; relaxation displacements are not counted).
    moves : list of Move
        Every accepted move, in order.
    rw_start, rw : float
        Fast-model Rw of the start and of the result, each with its parameters refined.
    parameters_start, parameters : dict
        ``scale``, ``zoomscale``, ``uiso``, ``delta2`` of the start and of the result.
    n_obs : float
        Independent points of the fit range, ``(rmax - rmin) Qmax / pi``.
    noise : float
        The noise standard deviation of G used by the stopping rule (1/A^2).
    noise_source : str
        ``"dg"``, ``"tail"`` (G beyond the particle), or ``"residual"`` (the start's
        misfit, when neither is available); see :func:`estimate_noise`.
    model_error : float
        RMS difference of the fast model and the exact Debye engine on the start.
    criterion : str
        The stopping rule, ``"bic"``, ``"aic"`` or ``"hamilton"``.
    chi2_start, chi2 : float
        chi^2 of the start and of the result over the ``n_obs`` independent points with
        the variance of the stopping rule (noise^2 + model_error^2).
    settings : dict
        qmin, qmax, qdamp, qbroad, rmin, rmax, nn and their sources.
    timings : dict
        Seconds spent per stage (``setup``, ``search``, ``relax``, ``count_scan``,
        ``total``).
    n_evaluated : int
        Candidate moves screened.
    stopped : str
        Why the search ended (``"converged"``, ``"max_seconds"``, ``"max_moves"``).
    count_chi2 : dict
        chi^2 of the result and of the structures found by greedy single-atom steps
        up to ``count_steps`` atoms either side of it, by atom count
        (:meth:`_Search.count_scan`).
    count_range : CountRange or None
        The atom counts the data do not tell apart from the result's: the contiguous
        counts around it whose chi^2 is within the penalty per site times the count
        difference of the result's (the penalty is BIC's ln n_obs under
        ``criterion="hamilton"``).  An open bound (the end of the scan) means "at least
        that far"; the greedy steps give an upper bound of each count's best chi^2, so
        the range can only be wider in truth.  None when the scan was not run.
    relaxed_first : bool
        Whether the search started from the start relaxed along its
        :func:`relaxation_modes`: the mode relaxation passed the rule and gained more
        than the best first count move (or no count move passed).
    """

    structure: Any
    start: Any
    added: np.ndarray
    removed: np.ndarray
    moves: list[Move]
    rw_start: float
    rw: float
    parameters_start: dict[str, float]
    parameters: dict[str, float]
    n_obs: float
    noise: float
    noise_source: str
    model_error: float
    criterion: str
    chi2_start: float = float("nan")
    chi2: float = float("nan")
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    n_evaluated: int = 0
    stopped: str = "converged"
    count_chi2: dict[int, float] = field(default_factory=dict)
    count_range: CountRange | None = None
    relaxed_first: bool = False

    @property
    def n_atoms_start(self) -> int:
        """Atoms in the start."""
        return len(self.start)

    @property
    def n_atoms(self) -> int:
        """Atoms in the completed structure."""
        return len(self.structure)

    @property
    def changed(self) -> bool:
        """Whether any move was accepted."""
        return bool(self.moves)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no structures)."""
        return {
            "n_atoms_start": self.n_atoms_start,
            "n_atoms": self.n_atoms,
            "n_added": len(self.added),
            "n_removed": len(self.removed),
            "rw_start": self.rw_start,
            "rw": self.rw,
            "parameters_start": dict(self.parameters_start),
            "parameters": dict(self.parameters),
            "n_obs": self.n_obs,
            "noise": self.noise,
            "noise_source": self.noise_source,
            "model_error": self.model_error,
            "criterion": self.criterion,
            "chi2_start": self.chi2_start,
            "chi2": self.chi2,
            "settings": dict(self.settings),
            "timings": dict(self.timings),
            "n_evaluated": self.n_evaluated,
            "stopped": self.stopped,
            "moves": [m.to_dict() for m in self.moves],
            "count_chi2": {str(k): v for k, v in self.count_chi2.items()},
            "count_range": None
            if self.count_range is None
            else {**self.count_range._asdict(), "text": str(self.count_range)},
            "relaxed_first": self.relaxed_first,
        }


# -- geometry ---------------------------------------------------------------------------


def _check_xyz(xyz) -> np.ndarray:
    x = np.asarray(xyz, dtype=float)
    if x.ndim != 2 or x.shape[1] != 3 or len(x) == 0:
        raise StructureError(f"expected coordinates of shape (N, 3), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise StructureError("coordinates must be finite")
    return x


def estimate_nn(xyz) -> float:
    """Nearest-neighbour distance of a cluster: the median distance to each atom's closest.

    Parameters
    ----------
    xyz : array_like, shape (N, 3), N >= 2
        Cartesian coordinates (A).

    Returns
    -------
    float
        The distance (A).
    """
    x = _check_xyz(xyz)
    if len(x) < 2:
        raise StructureError("a nearest-neighbour distance needs at least two atoms")
    d, _ = cKDTree(x).query(x, k=2)
    nn = float(np.median(d[:, 1]))
    if nn <= 0:
        raise StructureError("atoms on top of each other (nearest distance 0)")
    return nn


def _neighbour_lists(x: np.ndarray, nn: float) -> list[np.ndarray]:
    tree = cKDTree(x)
    lists = tree.query_ball_point(x, BOND_MAX * nn)
    return [np.array(sorted(set(li) - {i}), dtype=int) for i, li in enumerate(lists)]


def coordination(xyz, nn: float) -> np.ndarray:
    """Number of neighbours of each atom within ``BOND_MAX * nn``.

    Parameters
    ----------
    xyz : array_like, shape (N, 3)
        Coordinates (A).
    nn : float
        Nearest-neighbour distance (A).

    Returns
    -------
    ndarray of int, shape (N,)
    """
    x = _check_xyz(xyz)
    tree = cKDTree(x)
    return np.asarray(tree.query_ball_point(x, BOND_MAX * nn, return_length=True)) - 1


def site_bond_max(xyz, nn: float) -> float:
    """Range (in nn) within which a site's neighbours are counted: :data:`BOND_MAX` for
    close-packed and shell structures, :data:`OPEN_BOND_MAX` for open lattices (no
    atom with more than 8 neighbours within ``BOND_MAX * nn``: sc, bcc).

    Parameters
    ----------
    xyz : array_like, shape (N, 3)
        Coordinates (A).
    nn : float
        Nearest-neighbour distance (A).

    Returns
    -------
    float
    """
    return OPEN_BOND_MAX if coordination(xyz, nn).max() <= 8 else BOND_MAX


def surface_atoms(xyz, nn: float) -> np.ndarray:
    """Indices of the surface atoms: fewer neighbours than the best-coordinated atoms.

    Parameters
    ----------
    xyz : array_like, shape (N, 3)
        Coordinates (A).
    nn : float
        Nearest-neighbour distance (A).

    Returns
    -------
    ndarray of int
        Sorted indices; every atom when all have the same coordination.
    """
    cn = coordination(xyz, nn)
    bulk = cn.max()
    idx = np.flatnonzero(cn < bulk)
    return idx if len(idx) else np.arange(len(cn))


def relaxation_modes(
    xyz, nn: float, shell: float = MODE_SHELL
) -> tuple[np.ndarray, list[str]]:
    """Displacement modes of a surface relaxation, a few per particle.

    One mode per coordination below the particle's highest (every atom of that
    coordination moves towards the centroid of its neighbours, the contraction of an
    open surface) and one per radial shell ``shell * nn`` wide (every atom of the shell
    moves radially, the strain of shells of different radius, as in icosahedra).

    Parameters
    ----------
    xyz : array_like, shape (N, 3)
        Coordinates (A).
    nn : float
        Nearest-neighbour distance (A).
    shell : float
        Width of the radial shells, in nn.

    Returns
    -------
    modes : ndarray, shape (N, 3, k)
        Unit displacements of each atom in each mode (zero for atoms a mode leaves).
    names : list of str
        ``"cn<c>"`` and ``"shell<s>"`` for each mode.
    """
    x = _check_xyz(xyz)
    n = len(x)
    nbrs = _neighbour_lists(x, nn)
    cn = np.array([len(nb) for nb in nbrs])  # as coordination(x, nn)
    modes: list[np.ndarray] = []
    names: list[str] = []
    for c in np.unique(cn[cn < cn.max()]):
        b = np.zeros((n, 3))
        for i in np.flatnonzero(cn == c):
            if len(nbrs[i]):
                v = x[nbrs[i]].mean(axis=0) - x[i]
                norm = np.linalg.norm(v)
                if norm > 1e-9 * nn:
                    b[i] = v / norm
        if np.any(b):
            modes.append(b)
            names.append(f"cn{int(c)}")
    rad_v = x - x.mean(axis=0)
    rad = np.linalg.norm(rad_v, axis=1)
    ring = np.round(rad / (shell * nn)).astype(int)
    for s in np.unique(ring):
        idx = np.flatnonzero((ring == s) & (rad > 1e-9 * nn))
        if len(idx):
            b = np.zeros((n, 3))
            b[idx] = rad_v[idx] / rad[idx, None]
            modes.append(b)
            names.append(f"shell{int(s)}")
    out = np.stack(modes, axis=-1) if modes else np.zeros((n, 3, 0))
    return out, names


def _dedupe(sites: np.ndarray, score: np.ndarray, radius: float) -> np.ndarray:
    """Keep one site per cluster of sites closer than ``radius`` (highest score first)."""
    if len(sites) == 0:
        return sites
    order = np.lexsort((np.arange(len(sites)), -score))
    sites = sites[order]
    tree = cKDTree(sites)
    keep = np.ones(len(sites), dtype=bool)
    for i in range(len(sites)):
        if not keep[i]:
            continue
        for j in tree.query_ball_point(sites[i], radius):
            if j > i:
                keep[j] = False
    return sites[keep]


def _triangle_apices(x: np.ndarray, nbrs: list[np.ndarray], surf: np.ndarray, nn: float):
    """Both apices at ~nn above every triangle of mutually bonded surface atoms."""
    is_surf = np.zeros(len(x), dtype=bool)
    is_surf[surf] = True
    tri = []
    for i in surf:
        ni = nbrs[i][(nbrs[i] > i) & is_surf[nbrs[i]]]
        si = set(ni.tolist())
        for j in ni:
            for k in nbrs[j]:
                if k > j and k in si:
                    tri.append((i, j, k))
    if not tri:
        return np.zeros((0, 3))
    t = np.array(tri)
    a, b, c = x[t[:, 0]], x[t[:, 1]], x[t[:, 2]]
    cen = (a + b + c) / 3.0
    nrm = np.cross(b - a, c - a)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    r2 = (
        np.sum((a - cen) ** 2, axis=1)
        + np.sum((b - cen) ** 2, axis=1)
        + np.sum((c - cen) ** 2, axis=1)
    ) / 3.0
    h = np.sqrt(np.clip(nn * nn - r2, 0.0, None))[:, None]
    return np.concatenate([cen + h * nrm, cen - h * nrm])


def _lattice_sites(x: np.ndarray, nbrs: list[np.ndarray], surf: np.ndarray):
    """Surface atom + any bond vector of its own neighbourhood (and the reverse)."""
    out = []
    for a in surf:
        hood = np.concatenate([[a], nbrs[a]])
        vec = [x[nbrs[b]] - x[b] for b in hood if len(nbrs[b])]
        if not vec:
            continue
        v = np.concatenate(vec)
        v = np.concatenate([v, -v])
        out.append(x[a] + v)
    return np.concatenate(out) if out else np.zeros((0, 3))


def vacant_sites(
    xyz,
    nn: float,
    *,
    min_neighbours: int = MIN_SITE_NEIGHBOURS,
    bond_max: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Vacant surface sites of the cluster's own lattice or shell.

    Candidates are (a) a surface atom plus a bond vector of its neighbourhood (the
    vectors from its neighbours and itself to their neighbours, and their reverses),
    which are the sites of the cluster's own lattice, and (b) the two apices at nn
    above each triangle of mutually bonded surface atoms, which are the hollow sites
    of close-packed and icosahedral shells.  A site is kept when it lies at least
    ``MIN_DISTANCE * nn`` from every atom and has ``>= min_neighbours`` atoms within
    ``bond_max * nn``; sites closer than 0.4 nn are merged (the best-coordinated kept).

    Parameters
    ----------
    xyz : array_like, shape (N, 3)
        Coordinates (A).
    nn : float
        Nearest-neighbour distance (A).
    min_neighbours : int
        Occupied neighbours a site needs.
    bond_max : float, optional
        Range (nn) of those neighbours; default :func:`site_bond_max` of the cluster.

    Returns
    -------
    sites : ndarray, shape (M, 3)
    n_neighbours : ndarray of int, shape (M,)
    """
    x = _check_xyz(xyz)
    if len(x) < 2:
        return np.zeros((0, 3)), np.zeros(0, dtype=int)
    nbrs = _neighbour_lists(x, nn)
    surf = surface_atoms(x, nn)
    cand = np.concatenate(
        [_lattice_sites(x, nbrs, surf), _triangle_apices(x, nbrs, surf, nn)]
    )
    if len(cand) == 0:
        return np.zeros((0, 3)), np.zeros(0, dtype=int)
    reach = (site_bond_max(x, nn) if bond_max is None else float(bond_max)) * nn
    tree = cKDTree(x)
    dmin, _ = tree.query(cand, k=1)
    cand = cand[dmin >= MIN_DISTANCE * nn]
    if len(cand) == 0:
        return np.zeros((0, 3)), np.zeros(0, dtype=int)
    cnt = np.asarray(tree.query_ball_point(cand, reach, return_length=True))
    ok = cnt >= min_neighbours
    cand, cnt = cand[ok], cnt[ok]
    # a site on a lattice position is found many times: round to merge exact copies,
    # then keep the best-coordinated site of each close group
    cand = _dedupe(cand, cnt + 1e-3 * dmin[dmin >= MIN_DISTANCE * nn][ok], 0.4 * nn)
    if len(cand) == 0:
        return np.zeros((0, 3)), np.zeros(0, dtype=int)
    cnt = np.asarray(tree.query_ball_point(cand, reach, return_length=True))
    order = np.lexsort((cand[:, 2], cand[:, 1], cand[:, 0], -cnt))
    return cand[order], cnt[order]


def is_physical(xyz, nn: float, *, min_neighbours: int = 1) -> bool:
    """True when no two atoms are closer than ``MIN_DISTANCE * nn`` and every atom has
    at least ``min_neighbours`` neighbours within ``BOND_MAX * nn``."""
    x = _check_xyz(xyz)
    if len(x) < 2:
        return True
    d, _ = cKDTree(x).query(x, k=2)
    if d[:, 1].min() < MIN_DISTANCE * nn - 1e-9:
        return False
    return bool(coordination(x, nn).min() >= min_neighbours)


# -- statistics -------------------------------------------------------------------------


def estimate_noise(
    r: np.ndarray,
    g: np.ndarray,
    dg: np.ndarray | None,
    *,
    qmax: float,
    particle_size: float,
    rmin: float,
    rmax: float,
    model: np.ndarray | None = None,
    min_points: float = 20.0,
) -> tuple[float | None, str]:
    """Noise standard deviation of G(r) per point, and how it was found.

    1. ``dg`` given: the root mean square of dG over the fit range (``"dg"``).
    2. Otherwise, G beyond the particle: a cluster's G(r) past its diameter holds only
       the ripples of the finite Q-range (which the fitted model reproduces) and noise,
       so the root mean square of ``g - model`` at ``r > particle_size + 3 A`` is the
       estimate when that range spans at least ``min_points`` independent points
       (``"tail"``).  The estimate is high when the real particle is larger than
       ``particle_size`` (conservative: fewer moves accepted).
    3. Neither: None (``"residual"``); :func:`complete` then uses the start's misfit,
       ``RSS / N``, which makes the rule Hamilton-like and conservative.

    Parameters
    ----------
    r, g, dg : ndarray
        The data (dg may be None).
    qmax : float
        Qmax of the data (1/A).
    particle_size : float
        Largest interatomic distance of the model (A, zoomscale applied).
    rmin, rmax : float
        Fit range (A).
    model : ndarray, optional
        The fitted model's G on ``r`` (scale applied), subtracted from the tail.
    min_points : float
        Independent points the tail must span.

    Returns
    -------
    sigma : float or None
    source : str
    """
    if dg is not None:
        m = (r >= rmin) & (r <= rmax)
        return float(np.sqrt(np.mean(dg[m] ** 2))), "dg"
    start = particle_size + 3.0
    m = r > start
    if np.count_nonzero(m) >= 2 and (r[-1] - start) * qmax / math.pi >= min_points:
        tail = g[m] if model is None else g[m] - np.asarray(model, dtype=float)[m]
        return float(np.sqrt(np.mean(tail**2))), "tail"
    return None, "residual"


def _penalty(criterion: str, n_obs: float) -> float:
    if criterion == "bic":
        return math.log(n_obs)
    if criterion == "aic":
        return 2.0
    return 0.0


class CountRange(NamedTuple):
    """Atom counts the data do not tell apart from the chosen one (:func:`count_range_of`).

    ``open_lo`` / ``open_hi``: the bound is where the scan ended, not where the data
    resolved the count (the range may reach further).  ``str()`` gives ``"55"`` for a
    count the data resolve, else ``"52..57"`` with ``<=`` / ``>=`` on an open bound.
    """

    lo: int
    hi: int
    open_lo: bool = False
    open_hi: bool = False

    def __str__(self) -> str:
        if self.lo == self.hi and not (self.open_lo or self.open_hi):
            return str(self.lo)
        lo = f"{'<=' if self.open_lo else ''}{self.lo}"
        return f"{lo}..{'>=' if self.open_hi else ''}{self.hi}"

    @property
    def resolved(self) -> bool:
        """Whether the data single out one count."""
        return self.lo == self.hi and not (self.open_lo or self.open_hi)

    def contains(self, n: int) -> bool:
        """Whether count ``n`` lies in the range (an open bound counts as reached)."""
        return self.lo <= int(n) <= self.hi


def count_range_of(chi2: dict[int, float], n: int, penalty: float) -> CountRange:
    """The contiguous atom counts around ``n`` that the data do not tell apart from it.

    Parameters
    ----------
    chi2 : dict
        chi^2 by atom count (``n`` included), e.g. :attr:`CompletionResult.count_chi2`.
    n : int
        The chosen count.
    penalty : float
        chi^2 a count difference of one site must cost to be resolved (BIC: ln n_obs).

    Returns
    -------
    CountRange
        The lowest and highest count ``k`` reached from ``n`` through counts that each
        satisfy ``chi2[k] <= chi2[n] + penalty * |k - n|``; a bound is open when it is
        the last count in ``chi2`` on its side (nothing beyond it was tried).
    """
    lo = hi = int(n)
    while lo - 1 in chi2 and chi2[lo - 1] <= chi2[n] + penalty * (n - lo + 1):
        lo -= 1
    while hi + 1 in chi2 and chi2[hi + 1] <= chi2[n] + penalty * (hi + 1 - n):
        hi += 1
    return CountRange(lo, hi, lo == min(chi2), hi == max(chi2))


def _hamilton_ratio(n_obs: float, n_sites: int, n_par: int, alpha: float) -> float:
    """Hamilton's R-ratio threshold R0/R1 for ``n_sites`` extra parameters."""
    return hamilton_point(n_sites, max(n_obs - n_par - n_sites, 1.0), alpha)


# -- the fast model ---------------------------------------------------------------------


class _Model:
    """The histogram PDF on the fit grid, as a linear map of the histogram.

    At fixed (zoomscale, Uiso, delta2), ``G = counts @ K @ S / N`` with ``K [n_bins, nQ]``
    the F(Q) of one pair at each grid distance (``HistogramPDF.fq``) and ``S [nQ, nr]``
    the sine transform; the scale is fitted, so 1/N drops out of every Rw.  Candidate
    moves are screened on every ``stride``-th point of the fit grid (spacing about
    pi / (2 Qmax), the sampling of a signal band-limited to Qmax).
    """

    def __init__(self, r, g, w, settings: dict[str, Any], n_bins: int, step: float, device):
        self.hp = HistogramPDF(
            r,
            qmin=settings["qmin"],
            qmax=settings["qmax"],
            qdamp=settings["qdamp"],
            qbroad=settings["qbroad"],
            n_bins=n_bins,
            step=step,
            device=device,
        )
        dev = self.hp.device
        self.device, self.n_bins, self.step = dev, int(n_bins), float(step)
        dr = float(np.median(np.diff(r)))
        self.stride = max(1, int(math.pi / (2.0 * settings["qmax"]) / dr))
        t = torch.float64
        self.g = torch.as_tensor(g, dtype=t, device=dev)
        self.w = torch.as_tensor(w, dtype=t, device=dev)
        self.sw = float((self.w * self.g**2).sum())
        sl = slice(None, None, self.stride)
        self.sine_s = self.hp.sine[:, sl].contiguous()
        self.sine_s32 = self.sine_s.to(torch.float32)
        self.g_s, self.w_s = self.g[sl].contiguous(), self.w[sl].contiguous()
        self.sw_s = float((self.w_s * self.g_s**2).sum())
        self.n_fit, self.n_scr = len(r), int(self.g_s.numel())
        d = torch.arange(self.n_bins, dtype=t, device=dev) * self.step
        d[0] = self.step
        self._d = d[:, None]
        self._one = torch.ones(self.n_bins, 1, dtype=t, device=dev)
        self._one[0] = 0.0  # weight at d = 0 carries no signal (as HistogramPDF)

    def kernel(self, theta: torch.Tensor) -> torch.Tensor:
        """F(Q) of one pair at each grid distance, ``[n_bins, nQ]`` (differentiable)."""
        nb = self.n_bins
        ones = torch.ones(nb, dtype=torch.float64, device=self.device)
        return self.hp.fq(
            self._d,
            self._one,
            ones,
            theta[0].expand(nb),
            theta[1].expand(nb),
            theta[2].expand(nb),
        )

    def calc(self, counts: torch.Tensor, kern: torch.Tensor, screen: bool) -> torch.Tensor:
        """Unnormalised G (times N) of histograms ``[B, n_bins]`` -> ``[B, nr]``."""
        sine = self.sine_s if screen else self.hp.sine
        return (counts @ kern) @ sine

    def rss(self, c: torch.Tensor, screen: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted RSS at the best non-negative scale, and that scale (batched)."""
        g, w, sw = (self.g_s, self.w_s, self.sw_s) if screen else (self.g, self.w, self.sw)
        gc = (w * g * c).sum(-1)
        cc = (w * c * c).sum(-1).clamp_min(1e-300)
        s = (gc / cc).clamp_min(0.0)
        return (sw - 2 * s * gc + s * s * cc).clamp_min(0.0), s

    def g_and_jacobian(
        self, counts: np.ndarray, d_counts: np.ndarray | None, theta: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """G on the full fit grid (scale 1) of a histogram at (zoomscale, Uiso, delta2),
        and its Jacobian with respect to ``p`` variables that move the histogram by
        ``d_counts`` per unit and to the three parameters, analytically
        (:meth:`HistogramPDF.g_and_jacobian`; the d = 0 bin carries no signal).

        Parameters
        ----------
        counts : ndarray, shape (n_bins,)
        d_counts : ndarray, shape (n_bins, p), or None
            d counts / d variable; None: G alone (``jacobian`` is None).
        theta : array_like, shape (3,)

        Returns
        -------
        g : ndarray, shape (nr,)
        jacobian : ndarray, shape (p + 3, nr), or None
            The ``p`` variables' rows, then zoomscale, Uiso, delta2.
        """
        t, dev = torch.float64, self.device
        d = self._d[1:, 0][None]
        w = torch.as_tensor(counts[1:], dtype=t, device=dev)[None]
        one = torch.ones(1, dtype=t, device=dev)
        z, u, d2 = (torch.tensor([float(v)], dtype=t, device=dev) for v in theta)
        with torch.no_grad():
            if d_counts is None:
                return self.hp.g_sparse(d, w, one, z, u, d2)[0].cpu().numpy(), None
            d_w = torch.as_tensor(d_counts[1:], dtype=t, device=dev)[None]
            g, jac = self.hp.g_and_jacobian(d, w, one, z, u, d2, d_w=d_w)
        jac = torch.cat([jac[0, 3:], jac[0, :3]])
        return g[0].cpu().numpy(), jac.cpu().numpy()

    def refine(
        self, counts: np.ndarray, theta: torch.Tensor, steps: int
    ) -> tuple[torch.Tensor, float, float]:
        """Levenberg-Marquardt steps on (zoomscale, Uiso, delta2) with the scale
        projected out, on the full fit grid.  Returns theta, RSS and the scale."""
        counts = np.asarray(counts, dtype=float)
        nz = np.flatnonzero(counts[1:]) + 1  # the d = 0 bin carries no signal
        t = torch.float64
        d = torch.as_tensor(nz * self.step, dtype=t, device=self.device)[None]
        wt = torch.as_tensor(counts[nz], dtype=t, device=self.device)[None]
        one = torch.ones(1, dtype=t, device=self.device)
        names = ("zoomscale", "uiso", "delta2")
        with torch.no_grad():
            x, s, cost = levenberg_marquardt(
                self.hp,
                d,
                wt,
                one,
                self.g,
                torch.sqrt(self.w),
                theta.detach().reshape(1, 3),
                [_BOUNDS[k][0] for k in names],
                [_BOUNDS[k][1] for k in names],
                iterations=steps,
                damping=1e-3,
                retries=8,
                rtol=1e-7,
                relief=0.1,
            )
        return x[0], float(cost[0]), float(s[0])


def _split_rows(
    row: np.ndarray, x: np.ndarray, w: np.ndarray, n_rows: int, n_bins: int
) -> np.ndarray:
    """Histogram rows ``[n_rows, n_bins]``: weight ``w`` of each entry split linearly
    between grid points ``floor(x)`` and ``floor(x) + 1`` (``x`` in grid units, below
    ``n_bins - 1``) of its row ``row``."""
    k = np.floor(x).astype(np.int64)
    f = x - k
    size = n_rows * n_bins
    h = np.bincount(row * n_bins + k, weights=w * (1.0 - f), minlength=size)
    hk1 = np.bincount(row * n_bins + k + 1, weights=w * f, minlength=size + 1)
    return (h[:size] + hk1[:size]).reshape(n_rows, n_bins)


def _deposit_rows(d: np.ndarray, step: float, n_bins: int, sign: np.ndarray) -> np.ndarray:
    """Rows of linearly split histograms, ``d [B, M]`` -> ``[B, n_bins]`` (as histpdf)."""
    b, m = d.shape
    x = d / step
    if x.size and np.floor(x).max() + 1 >= n_bins:
        raise ParameterError(f"a distance of {d.max():.3f} A exceeds the histogram range")
    row = np.broadcast_to(np.arange(b, dtype=np.int64)[:, None], (b, m))
    sg = np.broadcast_to(np.asarray(sign, dtype=float).reshape(-1, 1), (b, m))
    return _split_rows(row.ravel(), x.ravel(), sg.ravel(), b, n_bins)


def _add_histograms(
    x: np.ndarray, sites: np.ndarray, step: float, n_bins: int
) -> np.ndarray:
    """Histogram updates that add each site to cluster ``x``: ``[M, n_bins]``."""
    if len(sites) == 0:
        return np.zeros((0, n_bins))
    d = np.linalg.norm(sites[:, None, :] - x[None, :, :], axis=2)
    return _deposit_rows(d, step, n_bins, np.ones(len(sites)))


def _remove_histograms(
    x: np.ndarray, idx: np.ndarray, step: float, n_bins: int
) -> np.ndarray:
    """Histogram updates that remove each atom ``idx`` from cluster ``x``."""
    if len(idx) == 0:
        return np.zeros((0, n_bins))
    d = np.linalg.norm(x[idx][:, None, :] - x[None, :, :], axis=2)
    h = _deposit_rows(d, step, n_bins, -np.ones(len(idx)))
    h[:, 0] += 1.0  # the atom's zero distance to itself
    return h


def _edit_dh(
    x: np.ndarray, removed: np.ndarray, added: np.ndarray, step: float, n_bins: int
) -> np.ndarray:
    """Exact histogram change of removing atoms ``removed`` (indices into ``x``) and then
    adding the sites ``added``: O((removed + added) * N)."""
    mask = np.ones(len(x), dtype=bool)
    mask[np.asarray(removed, dtype=int)] = False
    rest = x[mask]
    dh = np.zeros(n_bins)
    if len(removed):
        gone = x[np.asarray(removed, dtype=int)]
        # pairs removed atom - remaining atom, and pairs among the removed atoms
        dh -= _deposit_rows(
            np.linalg.norm(gone[:, None] - rest[None], axis=2),
            step,
            n_bins,
            np.ones(len(gone)),
        ).sum(axis=0)
        if len(gone) > 1:
            i, j = np.triu_indices(len(gone), 1)
            dh -= _deposit_rows(
                np.linalg.norm(gone[i] - gone[j], axis=1)[None], step, n_bins, np.ones(1)
            )[0]
    if len(added):
        new = np.asarray(added, dtype=float).reshape(-1, 3)
        dh += _deposit_rows(
            np.linalg.norm(new[:, None] - rest[None], axis=2),
            step,
            n_bins,
            np.ones(len(new)),
        ).sum(axis=0)
        if len(new) > 1:
            i, j = np.triu_indices(len(new), 1)
            dh += _deposit_rows(
                np.linalg.norm(new[i] - new[j], axis=1)[None], step, n_bins, np.ones(1)
            )[0]
    return dh


def _cut_edit(kept: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The edit that leaves the points ``kept`` (indices into atoms + sites, atoms
    first): (atoms removed, sites added counted from the first site), both sorted."""
    kept = np.asarray(kept, dtype=int)
    mask = np.ones(n, dtype=bool)
    mask[kept[kept < n]] = False
    return np.flatnonzero(mask), np.sort(kept[kept >= n] - n)


def _edit_dh_many(
    pts: np.ndarray,
    n: int,
    edits: Sequence[tuple[np.ndarray, np.ndarray]],
    step: float,
    n_bins: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact histogram changes of many edits at once, ``[len(edits), n_bins]``.

    ``pts`` holds the cluster's ``n`` atoms followed by candidate sites; each edit is
    ``(removed, added)``: indices of atoms (``< n``) and of sites (counted from ``n``).
    Equals :func:`_edit_dh` for each edit (removed atoms lose their pairs with the kept
    atoms and with each other, added sites gain theirs).  Also returns which edits stay within the
    histogram's range (the others are clipped and must not be used).
    """
    from scipy.spatial.distance import cdist

    changed = np.unique(
        np.concatenate(
            [np.zeros(0, int)]
            + [
                np.concatenate([np.asarray(r, int), n + np.asarray(a, int)])
                for r, a in edits
            ]
        )
    )
    where = np.full(len(pts), -1)
    where[changed] = np.arange(len(changed))
    D = cdist(pts[changed], pts)  # [changed points, all points]
    rows, dist, wts = [], [], []
    for k, (removed, added) in enumerate(edits):
        rem = np.asarray(removed, int)
        add = n + np.asarray(added, int)
        if not len(rem) and not len(add):
            continue
        kept = np.ones(n, dtype=bool)
        kept[rem] = False
        # removed atoms lose their pairs with kept atoms (-1) and with each other (-1,
        # half from each end); added sites gain pairs with kept atoms and each other
        for idx, sign in ((rem, -1.0), (add, 1.0)):
            if not len(idx):
                continue
            cols = np.concatenate([np.flatnonzero(kept), idx])
            w = np.full((len(idx), len(cols)), sign)
            w[:, kept.sum() :] *= 0.5
            w[np.arange(len(idx)), kept.sum() + np.arange(len(idx))] = 0.0
            d = D[where[idx]][:, cols]
            rows.append(np.full(w.size, k))
            dist.append(d.ravel())
            wts.append(w.ravel())
    ok = np.ones(len(edits), dtype=bool)
    if not rows:
        return np.zeros((len(edits), n_bins)), ok
    row, d, w = np.concatenate(rows), np.concatenate(dist), np.concatenate(wts)
    x = d / step
    far = x >= n_bins - 2
    ok[np.unique(row[far])] = False  # a pair beyond the histogram's range
    x = np.minimum(x, n_bins - 2)
    return _split_rows(row, x, w, len(edits), n_bins), ok


# -- the search -------------------------------------------------------------------------


@dataclass
class _Candidate:
    kind: str
    dh: np.ndarray
    added: np.ndarray  # positions [a, 3]
    removed: np.ndarray  # indices into the current structure


def _diameter(x: np.ndarray) -> float:
    """Largest pair distance of a point set (via its convex hull; no N^2 matrix)."""
    if len(x) < 5:
        return float(max((np.linalg.norm(a - b) for a in x for b in x), default=0.0))
    try:
        v = x[ConvexHull(x).vertices]
    except QhullError:
        v = x
    return float(np.linalg.norm(v[:, None] - v[None], axis=2).max())


def _bond_directions(x: np.ndarray, nn: float, max_dirs: int = 26) -> np.ndarray:
    """Up to ``max_dirs`` distinct bond directions of the cluster (farthest-point pick)."""
    tree = cKDTree(x)
    pairs = tree.query_pairs(BOND_MAX * nn, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, 3))
    v = x[pairs[:, 1]] - x[pairs[:, 0]]
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    v = np.concatenate([v, -v])
    v = np.unique(np.round(v, 3), axis=0)
    chosen = [0]
    dist = 1.0 - v @ v[0]
    for _ in range(min(max_dirs, len(v)) - 1):
        j = int(np.argmax(dist))
        if dist[j] < 0.03:  # within ~14 degrees of a chosen direction
            break
        chosen.append(j)
        dist = np.minimum(dist, 1.0 - v @ v[j])
    return v[chosen]


class _Search:
    """State and moves of one completion run."""

    def __init__(
        self,
        x,
        model: _Model,
        theta,
        nn,
        chi,
        decide,
        max_dist,
        moves,
        rng,
        penalise="sites",
    ):
        self.x = np.array(x, dtype=float)
        self.penalise = penalise
        self.ids = np.arange(len(self.x))
        self.next_id = len(self.x)
        self.model, self.nn, self.moves = model, nn, tuple(moves)
        self.bond_max = site_bond_max(self.x, nn)  # fixed for the run (the start's)
        self.h = pair_histogram(self.x, step=model.step, n_bins=model.n_bins)
        self.theta = theta
        self.theta, self.rss, self.scale = model.refine(self.h, theta, steps=8)
        self.chi = chi  # (factor fit, factor screen)
        self.decide = decide
        self.max_dist = max_dist
        self.rng = rng
        self.accepted: list[Move] = []
        self.n_evaluated = 0
        self.n_top = 48
        self.linear = True
        self.stuck = False

    # scores ------------------------------------------------------------------------
    def k_sites(self, n_added: int, n_removed: int) -> int:
        """Sites a move is penalised for: every site added or removed (``"sites"``),
        every atom added, removed or moved (``"atoms"``: a swap pays for one) or the net
        change of the atom count (``"count"``: swaps and same-count recuts pay nothing
        and need only lower chi^2)."""
        if self.penalise == "count":
            return abs(int(n_added) - int(n_removed))
        if self.penalise == "atoms":
            return max(int(n_added), int(n_removed))
        return int(n_added) + int(n_removed)

    def k_move(self, c: _Candidate) -> int:
        """:meth:`k_sites` of a candidate move; a recut pays at most its net change of
        the atom count plus :data:`RECUT_PARAMETERS` (a cut is its centre and count,
        not a choice of each site)."""
        k = self.k_sites(len(c.added), len(c.removed))
        if c.kind == "recut":
            k = min(k, abs(len(c.added) - len(c.removed)) + RECUT_PARAMETERS)
        return k

    def score(self, rss_old: float, rss_new: float, n_sites: int, screen: bool) -> float:
        return self.decide(
            rss_old, rss_new, n_sites, self.chi[1] if screen else self.chi[0]
        )

    def score_many(self, rss_old: float, rss_new: np.ndarray, n_sites: int, screen: bool):
        """:meth:`score` of many candidates (vectorised for BIC/AIC)."""
        factor = self.chi[1] if screen else self.chi[0]
        if self.linear:
            return self.decide(rss_old, np.asarray(rss_new), n_sites, factor)
        return np.array([self.decide(rss_old, v, n_sites, factor) for v in rss_new])

    def rw(self, rss: float) -> float:
        return math.sqrt(rss / self.model.sw) if self.model.sw > 0 else 0.0

    # candidates --------------------------------------------------------------------
    def _sites(self) -> np.ndarray:
        sites, _ = vacant_sites(self.x, self.nn, bond_max=self.bond_max)
        if len(sites):
            far = np.linalg.norm(sites[:, None] - self.x[None], axis=2).max(axis=1)
            sites = sites[far < self.max_dist]
        return sites

    def _removable(self) -> np.ndarray:
        if len(self.x) <= 4:
            return np.zeros(0, dtype=int)
        surf = surface_atoms(self.x, self.nn)
        nbrs = _neighbour_lists(self.x, self.nn)
        cn = np.array([len(n) for n in nbrs])
        ok = []
        for i in surf:
            nb = nbrs[i]
            # no neighbour with >= 3 bonds may drop below 3
            if np.any((cn[nb] >= MIN_SITE_NEIGHBOURS) & (cn[nb] - 1 < MIN_SITE_NEIGHBOURS)):
                continue
            ok.append(i)
        return np.array(ok, dtype=int)

    def _recuts(self, sites: np.ndarray) -> list[_Candidate]:
        """The particle cut again around a shifted centre: its own sites and the vacant
        sites ranked by their distance from the centre in the metric of the particle's
        shape (its inverse covariance, so an ellipsoid or a faceted cut keeps its
        proportions), the ``N - k .. N + k`` nearest kept (:data:`RECUT_COUNT_FRACTION`);
        and the planar cuts of :meth:`_caps`.

        The cuts of one centre are nested, so their histograms are one edit (the
        smallest cut) plus the cumulative pairs of each further point with those
        before it."""
        n = len(self.x)
        if n < 8 or len(sites) == 0:
            return []
        step, nb = self.model.step, self.model.n_bins
        pts = np.concatenate([self.x, sites])
        c0 = self.x.mean(axis=0)
        cov = np.cov(self.x.T) + 1e-9 * np.eye(3)
        metric = np.linalg.inv(cov) * np.trace(cov) / 3.0
        big = n > 500
        fracs = (0.3, 0.6) if big else (0.25, 0.5, 0.75)
        k = 1 if big else max(2, math.ceil(RECUT_COUNT_FRACTION * n))
        lo, hi = max(4, n - k), min(len(pts), n + k)
        cube = (
            np.array([v for v in np.ndindex(3, 3, 3) if v != (1, 1, 1)], dtype=float) - 1.0
        )
        cube /= np.linalg.norm(cube, axis=1, keepdims=True)
        dirs = np.concatenate([_bond_directions(self.x, self.nn, max_dirs=26), cube])
        dirs = _dedupe(dirs, -np.arange(len(dirs), dtype=float), 0.15)
        if big:
            dirs = dirs[:13]
        centres = [c0 + f * self.nn * u for u in dirs for f in fracs]
        orders = []
        for c in centres:
            v = pts - c
            orders.append(np.argsort(np.einsum("ij,jk,ik->i", v, metric, v), kind="stable"))
        base, base_ok = _edit_dh_many(
            pts, n, [_cut_edit(o[:lo], n) for o in orders], step, nb
        )
        out, dhs, oks, seen = [], [], [], set()
        limit = max(24, n // 2)
        w = (np.arange(hi)[None, :] < np.arange(lo, hi)[:, None]).astype(float)
        for o, dh0, ok0 in zip(orders, base, base_ok, strict=True):
            d = np.linalg.norm(pts[o[lo:hi]][:, None] - pts[o[:hi]][None], axis=2) / step
            far = np.cumsum(np.any((d >= nb - 2) & (w > 0), axis=1)) > 0
            rows = np.broadcast_to(np.arange(hi - lo)[:, None], d.shape)
            cum = np.cumsum(
                _split_rows(
                    rows.ravel(), np.minimum(d, nb - 2).ravel(), w.ravel(), hi - lo, nb
                ),
                axis=0,
            )
            for c in range(lo, hi + 1):
                removed, added = _cut_edit(o[:c], n)
                if not len(removed) and not len(added):
                    continue
                if len(added) + len(removed) > limit:
                    continue
                key = (tuple(removed.tolist()), tuple(added.tolist()))
                if key in seen:
                    continue
                seen.add(key)
                out.append((removed, added))
                dhs.append(dh0 + cum[c - lo - 1] if c > lo else dh0)
                oks.append(bool(ok0) and not (c > lo and far[c - lo - 1]))
        if not big:
            caps = self._caps(sites, dirs, seen)
            if caps:
                dh_c, ok_c = _edit_dh_many(pts, n, caps, step, nb)
                out += caps
                dhs += list(dh_c)
                oks += ok_c.tolist()
        if not out:
            return []
        valid = self._valid_many(pts, out) & np.array(oks)
        return [
            _Candidate("recut", dhs[e], sites[a], r)
            for e, (r, a) in enumerate(out)
            if valid[e]
        ]

    def _caps(self, sites: np.ndarray, dirs: np.ndarray, seen: set) -> list[tuple]:
        """Planar cuts of the surface, as (removed atoms, added site indices; not yet
        checked by :meth:`_valid_many`): the k
        surface atoms furthest along -u removed, or the k vacant sites furthest along u
        filled (no two closer than MIN_DISTANCE nn), for k in :data:`CAP_SIZES`.  An
        incomplete outer shell grows and dissolves as a cap, which single-atom moves
        reach only through many steps that each fit no better."""
        n = len(self.x)
        surf = surface_atoms(self.x, self.nn)
        ks = [k for k in CAP_SIZES if k <= max(24, n // 2)]
        out: list[tuple] = []
        if not ks:
            return out
        # sites closer than MIN_DISTANCE nn to each other (a site never clashes with
        # itself: it is picked before it could block itself)
        clash = (
            np.linalg.norm(sites[:, None] - sites[None], axis=2) < MIN_DISTANCE * self.nn
        )
        for u in dirs:
            by_s = surf[np.argsort(self.x[surf] @ u, kind="stable")]
            picked: list[int] = []
            blocked = np.zeros(len(sites), dtype=bool)
            for j in np.argsort(-(sites @ u), kind="stable"):
                if len(picked) == ks[-1]:
                    break
                if not blocked[j]:
                    picked.append(int(j))
                    blocked |= clash[j]
            for k in ks:
                edits = []
                if k < len(by_s):
                    edits.append((np.sort(by_s[:k]), np.zeros(0, dtype=int)))
                if k <= len(picked):
                    edits.append((np.zeros(0, dtype=int), np.sort(picked[:k])))
                for removed, added in edits:
                    key = (tuple(removed.tolist()), tuple(added.tolist()))
                    if key in seen:
                        continue
                    seen.add(key)
                    out.append((removed, added))
        return out

    def _edit_dh(self, removed: np.ndarray, added: np.ndarray) -> np.ndarray:
        return _edit_dh(self.x, removed, added, self.model.step, self.model.n_bins)

    def _valid(self, removed: np.ndarray, added: np.ndarray) -> bool:
        """The edited cluster is physical: added atoms >= MIN_DISTANCE nn from all atoms
        and with >= 3 neighbours; no atom that had >= 3 neighbours falls below 3
        (neighbours within ``bond_max`` nn, see :func:`site_bond_max`).

        Neighbour counts come from KD-trees (O(k log N) for k changed atoms), so large
        particles are checked as fast as small ones.
        """
        nn = self.nn
        bond = self.bond_max * nn
        keep = np.ones(len(self.x), dtype=bool)
        keep[np.asarray(removed, dtype=int)] = False
        added = np.asarray(added, dtype=float).reshape(-1, 3)
        new = np.concatenate([self.x[keep], added])
        n_old = int(keep.sum())
        if len(new) < 4:
            return False
        tree = cKDTree(new)
        if len(added):
            far = np.linalg.norm(added[:, None] - new[None], axis=2).max()
            if far >= self.max_dist:  # beyond the histogram's range
                return False
            d2, _ = tree.query(added, k=2)  # itself first, then the closest other atom
            if d2[:, 1].min() < MIN_DISTANCE * nn:
                return False
            n_bonds = tree.query_ball_point(added, bond, return_length=True) - 1
            if np.any(n_bonds < MIN_SITE_NEIGHBOURS):
                return False
        # atoms near a change keep their bonds
        changed = np.concatenate([self.x[~keep], added])
        near = np.unique(
            np.concatenate(
                [np.asarray(v, dtype=int) for v in tree.query_ball_point(changed, 1.5 * nn)]
                or [np.zeros(0, dtype=int)]
            )
        )
        cn_new = tree.query_ball_point(new[near], bond, return_length=True) - 1
        old_idx = np.flatnonzero(keep)
        cn_old = np.full(len(near), MIN_SITE_NEIGHBOURS)
        is_old = near < n_old
        if np.any(is_old):
            xo = self.x[old_idx[near[is_old]]]
            cn_old[is_old] = self._tree.query_ball_point(xo, bond, return_length=True) - 1
        return bool(np.all(cn_new >= np.minimum(cn_old, MIN_SITE_NEIGHBOURS)))

    def _valid_many(
        self, pts: np.ndarray, edits: Sequence[tuple[np.ndarray, np.ndarray]]
    ) -> np.ndarray:
        """:meth:`_valid` of many edits at once (the same answer for each).

        ``pts`` holds the current atoms followed by vacant sites (each at least
        ``MIN_DISTANCE`` nn from every atom, as :meth:`_sites` gives them); an edit is
        ``(removed atom indices, added site indices counted from the first site)``.  The
        new coordination of every point under every edit is one sparse product
        (selection x bond graph); an atom's count only changes near an edit, so checking
        every kept atom equals :meth:`_valid`'s check of the atoms near the change.
        """
        from scipy.sparse import coo_matrix

        n, P, E = len(self.x), len(pts), len(edits)
        if E == 0:
            return np.zeros(0, dtype=bool)
        nn = self.nn
        tree = cKDTree(pts)
        pairs = tree.query_pairs(self.bond_max * nn, output_type="ndarray")
        ones = np.ones(2 * len(pairs), dtype=np.float32)
        ij = np.concatenate([pairs, pairs[:, ::-1]]).T if len(pairs) else np.zeros((2, 0))
        bonds = coo_matrix((ones, (ij[0], ij[1])), shape=(P, P)).tocsr()
        need = np.full(P, float(MIN_SITE_NEIGHBOURS))
        cn_old = np.asarray(bonds[:n][:, :n].sum(axis=1)).ravel()
        need[:n] = np.minimum(cn_old, MIN_SITE_NEIGHBOURS)
        sel = np.zeros((E, P), dtype=bool)
        sel[:, :n] = True
        for e, (removed, added) in enumerate(edits):
            sel[e, np.asarray(removed, dtype=int)] = False
            sel[e, n + np.asarray(added, dtype=int)] = True
        cn_new = np.asarray((bonds @ sel.T.astype(np.float32)).T)
        ok = ~np.any(sel & (cn_new < need - 0.5), axis=1)
        ok &= sel.sum(axis=1) >= 4
        clash = tree.query_pairs(MIN_DISTANCE * nn, output_type="ndarray")
        clash = clash[(clash >= n).any(axis=1)] if len(clash) else clash
        for a, b in clash:
            ok &= ~(sel[:, a] & sel[:, b])
        # added sites beyond the histogram's range from any atom of the edited cluster
        todo = [e for e, (_, added) in enumerate(edits) if ok[e] and len(added)]
        if todo:
            rows = np.unique(np.concatenate([np.asarray(edits[e][1], int) for e in todo]))
            where = np.full(P - n, -1)
            where[rows] = np.arange(len(rows))
            d_rows = np.linalg.norm(pts[n + rows][:, None] - pts[None], axis=2)
            for e in todo:
                d = d_rows[where[np.asarray(edits[e][1], dtype=int)]][:, sel[e]]
                if d.max() >= self.max_dist:
                    ok[e] = False
        return ok

    @property
    def _tree(self) -> cKDTree:
        """KD-tree of the current atoms (rebuilt when they change)."""
        key = hash(self.x.tobytes())
        if getattr(self, "_tree_key", None) != key:
            self._tree_cache = cKDTree(self.x)
            self._tree_key = key
        return self._tree_cache

    def _pair_curves(self, d: np.ndarray, kc: torch.Tensor) -> torch.Tensor:
        """G change ``[B, nr]`` of one pair at each distance ``d`` (linear split), in
        float64 (gathered from ``kc`` in its own precision)."""
        # (a pair beyond the histogram's range is clipped here and refused by _valid)
        x = np.minimum(d / self.model.step, self.model.n_bins - 2)
        k = np.floor(x).astype(np.int64)
        f = torch.as_tensor(x - k, dtype=kc.dtype, device=kc.device)[:, None]
        kt = torch.as_tensor(k, device=kc.device)
        return ((1.0 - f) * kc[kt] + f * kc[kt + 1]).to(torch.float64)

    def _batch(self, order, single, c, pos, kc, base, rss0, max_size: int = 6):
        """Greedy batch of single moves (indices into ``c``) whose marginal screening
        score, with the pairs among them, stays positive; (total score, indices) or
        None when fewer than two qualify."""
        chosen: list[int] = []
        cur = torch.zeros_like(base)
        rss_cur = rss0
        for k in order[: 4 * max_size]:
            if single[k] <= 0 or len(chosen) >= max_size:
                break
            if chosen and np.min(np.linalg.norm(pos[chosen] - pos[k], axis=1)) < (
                MIN_DISTANCE * self.nn
            ):
                continue
            trial = cur + c[k]
            if chosen:
                d = np.linalg.norm(pos[chosen] - pos[k], axis=1)
                trial = trial + self._pair_curves(d, kc).sum(dim=0)
            with torch.no_grad():
                rss_t = float(self.model.rss((base + trial)[None], True)[0][0])
            if self.score(rss_cur, rss_t, 1, True) > 0:
                chosen.append(int(k))
                cur, rss_cur = trial, rss_t
        if len(chosen) < 2:
            return None
        return self.score(rss0, rss_cur, len(chosen), True), np.array(chosen)

    def _batch_candidate(self, kind, ks, dh_rows, pos, rem) -> _Candidate:
        """The candidate of a batch: summed histogram rows plus the pairs among them."""
        step, nb = self.model.step, self.model.n_bins
        i, j = np.triu_indices(len(ks), 1)
        d = np.linalg.norm(pos[ks[i]] - pos[ks[j]], axis=1)
        dh = dh_rows[ks].sum(axis=0) + _deposit_rows(d[None], step, nb, np.ones(1))[0]
        if kind == "remove":
            return _Candidate("remove", dh, np.zeros((0, 3)), rem[ks])
        return _Candidate("add", dh, pos[ks], np.zeros(0, dtype=int))

    def _combos(self, kind, ia, ib, pa, pb, ca, cb, sign, kc, base, rss0, n_keep):
        """Best ``n_keep`` of the combined moves (a[ia] with b[ib]) by screening score:
        G change ``ca[ia] + cb[ib] + sign * pair(a, b)``; returns (score, ia, ib)."""
        out = []
        for lo in range(0, len(ia), 4096):
            sl = slice(lo, lo + 4096)
            d = np.linalg.norm(pa[ia[sl]] - pb[ib[sl]], axis=1)
            with torch.no_grad():
                cur = ca[ia[sl]] + cb[ib[sl]] + sign * self._pair_curves(d, kc)
                rss, _ = self.model.rss(base + cur, True)
            k = self.k_sites(1, 1) if kind == "swap" else 2
            sc = self.score_many(rss0, rss.cpu().numpy(), k, True)
            top = np.argsort(-sc)[: 4 * n_keep]
            out += [(sc[t], ia[lo + t], ib[lo + t]) for t in top]
        self.n_evaluated += len(ia)
        out.sort(key=lambda t: -t[0])
        return out

    def step(self) -> bool:
        """Screen every move, refine the best few, apply the best that passes."""
        m, nn = self.model, self.nn
        kern = m.kernel(self.theta).detach()
        with torch.no_grad():
            # G change [n_bins, nr] of one pair at each grid point; the two big products
            # of the screening in float32 (twice as fast; each move is then decided on
            # the full grid in float64)
            kc32 = kern.to(torch.float32) @ m.sine_s32
            kc = kc32.to(torch.float64)
            h_t = torch.as_tensor(self.h, dtype=torch.float64, device=m.device)
            base = h_t @ kc
            rss0 = float(m.rss(base[None], True)[0][0])
        step, nb = m.step, m.n_bins
        want_add = any(k in self.moves for k in ("add", "swap", "recut"))
        sites = self._sites() if want_add else np.zeros((0, 3))
        want_rem = "remove" in self.moves or "swap" in self.moves
        rem = self._removable() if want_rem else np.zeros(0, dtype=int)
        dh_a = _add_histograms(self.x, sites, step, nb)
        dh_r = _remove_histograms(self.x, rem, step, nb)

        def curves(dh):
            with torch.no_grad():
                d32 = torch.as_tensor(dh, dtype=torch.float32, device=m.device)
                return (d32 @ kc32).to(torch.float64)

        c_a, c_r = curves(dh_a), curves(dh_r)

        def single_scores(c):
            if len(c) == 0:
                return np.zeros(0)
            with torch.no_grad():
                rss, _ = m.rss(base + c, True)
            self.n_evaluated += len(c)
            return self.score_many(rss0, rss.cpu().numpy(), 1, True)

        s_a, s_r = single_scores(c_a), single_scores(c_r)
        pool: list[tuple[float, _Candidate]] = []
        if "add" in self.moves:
            for k in np.argsort(-s_a)[:3]:
                pool.append(
                    (s_a[k], _Candidate("add", dh_a[k], sites[k][None], np.zeros(0, int)))
                )
        if "remove" in self.moves:
            for k in np.argsort(-s_r)[:3]:
                pool.append(
                    (s_r[k], _Candidate("remove", dh_r[k], np.zeros((0, 3)), rem[[k]]))
                )
        # batches: several single moves of one kind that each pass on their own margin
        # (screened with their mutual pairs), so that many vacancies cost few steps
        if "remove" in self.moves:
            b = self._batch(np.argsort(-s_r), s_r, c_r, self.x[rem], kc32, base, rss0)
            if b is not None:
                sc, ks = b
                bc = self._batch_candidate("remove", ks, dh_r, self.x[rem], rem)
                if self._valid(bc.removed, bc.added):
                    pool.append((sc, bc))
        if "add" in self.moves:
            b = self._batch(np.argsort(-s_a), s_a, c_a, sites, kc32, base, rss0)
            if b is not None:
                sc, ks = b
                bc = self._batch_candidate("add", ks, dh_a, sites, None)
                if self._valid(bc.removed, bc.added):
                    pool.append((sc, bc))
        # two-site moves among the best single sites: correlated vacancies, adatom pairs,
        # and swaps (an atom moved to a vacant site)
        top_a = np.argsort(-s_a)[: self.n_top]
        top_r = np.argsort(-s_r)[: self.n_top]

        def pair_rows(pa, pb, sign):
            d = np.linalg.norm(pa - pb)
            return _deposit_rows(np.array([[d]]), step, nb, np.array([sign]))[0]

        combos = []
        if "remove" in self.moves and len(top_r) > 1:
            i, j = np.triu_indices(len(top_r), 1)
            for sc, a, b in self._combos(
                "remove",
                top_r[i],
                top_r[j],
                self.x[rem],
                self.x[rem],
                c_r,
                c_r,
                1.0,
                kc32,
                base,
                rss0,
                3,
            ):
                combos.append(
                    (
                        "remove",
                        sc,
                        rem[[a, b]],
                        np.zeros((0, 3)),
                        dh_r[a] + dh_r[b] + pair_rows(self.x[rem[a]], self.x[rem[b]], 1.0),
                    )
                )
        if "add" in self.moves and len(top_a) > 1:
            i, j = np.triu_indices(len(top_a), 1)
            dd = np.linalg.norm(sites[top_a[i]] - sites[top_a[j]], axis=1)
            ok = dd >= MIN_DISTANCE * nn
            for sc, a, b in self._combos(
                "add",
                top_a[i][ok],
                top_a[j][ok],
                sites,
                sites,
                c_a,
                c_a,
                1.0,
                kc32,
                base,
                rss0,
                3,
            ):
                combos.append(
                    (
                        "add",
                        sc,
                        np.zeros(0, int),
                        sites[[a, b]],
                        dh_a[a] + dh_a[b] + pair_rows(sites[a], sites[b], 1.0),
                    )
                )
        if "swap" in self.moves and len(top_a) and len(top_r):
            i, j = np.meshgrid(top_r, top_a, indexing="ij")
            for sc, a, b in self._combos(
                "swap",
                i.ravel(),
                j.ravel(),
                self.x[rem],
                sites,
                c_r,
                c_a,
                -1.0,
                kc32,
                base,
                rss0,
                3,
            ):
                combos.append(
                    (
                        "swap",
                        sc,
                        rem[[a]],
                        sites[[b]],
                        dh_r[a] + dh_a[b] + pair_rows(self.x[rem[a]], sites[b], -1.0),
                    )
                )
        per_kind: dict[str, int] = {}
        for kind, sc, removed, added, dh in sorted(combos, key=lambda t: -t[1]):
            if per_kind.get(kind, 0) >= 2 or not self._valid(removed, added):
                continue
            per_kind[kind] = per_kind.get(kind, 0) + 1
            pool.append((sc, _Candidate(kind, dh, added, removed)))
        recuts = []
        if "recut" in self.moves and (self.stuck or len(self.accepted) == 0):
            recuts = self._recuts(sites)
        if recuts:
            c = curves(np.stack([rc.dh for rc in recuts]))
            with torch.no_grad():
                rss, _ = m.rss(base + c, True)
            self.n_evaluated += len(recuts)
            ranked = sorted(
                (
                    (self.score(rss0, v, self.k_move(rc), True), rc)
                    for rc, v in zip(recuts, rss.tolist(), strict=True)
                ),
                key=lambda t: -t[0],
            )
            # the best recut of each count change (a cut's count is decided after its
            # parameters are refined, below)
            by_n: dict[int, tuple] = {}
            for sc_, rc in ranked:
                by_n.setdefault(len(rc.added) - len(rc.removed), (sc_, rc))
                if len(by_n) == RECUT_POOL:
                    break
            pool += list(by_n.values())
        pool = [(sc, c) for sc, c in pool if np.isfinite(sc)]
        if not pool:
            if "recut" in self.moves and not self.stuck:
                self.stuck = True
                return self.step()
            return False
        pool.sort(key=lambda t: -t[0])
        # the shortlist on the full fit grid at the current parameters; the best few
        # with zoomscale, Uiso and delta2 re-refined (two LM steps each), and the best of
        # those applied if it passes
        short = [c for _, c in pool[:SHORTLIST]]
        dh = torch.as_tensor(np.stack([c.dh for c in short]), dtype=torch.float64)
        with torch.no_grad():
            full = m.calc(h_t[None] + dh.to(m.device), kern, False)
            rss_full = m.rss(full, False)[0].cpu().numpy()
        full_sc = [
            self.score(self.rss, float(v), self.k_move(c), False)
            for c, v in zip(short, rss_full, strict=True)
        ]
        best = None
        for k in np.argsort(full_sc)[::-1][:REFINED]:
            c = short[int(k)]
            h_new = self.h + c.dh
            th, rss, s_ = m.refine(h_new, self.theta, steps=2)
            sc = self.score(self.rss, rss, self.k_move(c), False)
            if sc > 0 and (best is None or sc > best[0]):
                best = (sc, c, (th, rss, s_, h_new))
        if best is not None:
            self._apply(best[1], best[2], best[0])
            self.stuck = False
            return True
        if "recut" in self.moves and not self.stuck:
            self.stuck = True  # no single or two-site move passes: try the recuts
            return self.step()
        return False

    def _apply(self, c: _Candidate, fit, score: float) -> None:
        th, rss, s, h_new = fit
        n_sites = self.k_move(c)
        keep = np.ones(len(self.x), dtype=bool)
        keep[c.removed] = False
        removed_pos = self.x[c.removed].copy()
        self.x = np.concatenate([self.x[keep], c.added])
        self.ids = np.concatenate(
            [self.ids[keep], np.arange(self.next_id, self.next_id + len(c.added))]
        )
        self.next_id += len(c.added)
        chi = self.chi[0]
        self.accepted.append(
            Move(
                kind=c.kind,
                added=np.array(c.added, dtype=float).reshape(-1, 3),
                removed=removed_pos.reshape(-1, 3),
                removed_index=[int(i) for i in c.removed],
                n_atoms=len(self.x),
                rw_before=self.rw(self.rss),
                rw_after=self.rw(rss),
                delta_chi2=(self.rss - rss) * chi,
                penalty=(self.rss - rss) * chi - score if n_sites else 0.0,
            )
        )
        self.h, self.theta, self.rss = h_new, th, rss
        if s is not None:
            self.scale = s
        else:
            with torch.no_grad():
                c = self.model.calc(
                    torch.as_tensor(h_new, dtype=torch.float64, device=self.model.device)[
                        None
                    ],
                    self.model.kernel(th),
                    False,
                )
                self.scale = float(self.model.rss(c, False)[1][0])

    def count_scan(self, steps: int, penalty: float) -> dict[int, float]:
        """chi^2 of the structures up to ``steps`` atoms either side of the current one.

        Each structure is one greedy step from the last: the surface atom whose removal
        (or the vacant site whose filling) fits best on the screening grid at the
        current parameters (the products in float32, as :meth:`step`'s screening), then
        zoomscale, Uiso and delta2 re-refined (two Levenberg-Marquardt steps) and chi^2
        taken on the full fit grid.  A direction stops at the first count whose chi^2
        exceeds the current one by more than ``penalty`` per atom (the data resolve
        it).  The search itself is left as it is.

        Returns
        -------
        dict
            ``{atom count: chi^2}``, the current count included.
        """
        m = self.model
        out = {len(self.x): self.rss * self.chi[0]}
        with torch.no_grad():  # the step to take is chosen at the result's parameters
            kern = m.kernel(self.theta).detach()
            kc32 = kern.to(torch.float32) @ m.sine_s32
            kc = kc32.to(torch.float64)
        for sign in (-1, 1):
            probe = copy.copy(self)  # shares nothing it changes: x, h, theta rebound
            for _ in range(int(steps)):
                if sign < 0:
                    idx = probe._removable()
                    dh = _remove_histograms(probe.x, idx, m.step, m.n_bins)
                else:
                    sites = probe._sites()
                    dh = _add_histograms(probe.x, sites, m.step, m.n_bins)
                if not len(dh):
                    break
                with torch.no_grad():
                    h_t = torch.as_tensor(probe.h, dtype=torch.float64, device=m.device)
                    d32 = torch.as_tensor(dh, dtype=torch.float32, device=m.device)
                    rss, _ = m.rss(h_t @ kc + (d32 @ kc32).to(torch.float64), True)
                self.n_evaluated += len(dh)
                k = int(torch.argmin(rss))
                h_new = probe.h + dh[k]
                probe.theta, rss_k, _ = m.refine(h_new, probe.theta, steps=2)
                probe.h = h_new
                if sign < 0:
                    probe.x = np.delete(probe.x, idx[k], axis=0)
                else:
                    probe.x = np.concatenate([probe.x, sites[k][None]])
                n_k = len(probe.x)
                out[n_k] = rss_k * self.chi[0]
                if out[n_k] > out[len(self.x)] + penalty * abs(n_k - len(self.x)):
                    break
        return dict(sorted(out.items()))

    def _physical(self, x_new: np.ndarray, cn0: np.ndarray) -> bool:
        """Whether relaxed coordinates keep the particle physical: no pair closer than
        ``MIN_DISTANCE * nn``, no atom losing neighbours below ``min(cn0, 3)``, within
        the histogram's range."""
        if not np.all(np.isfinite(x_new)):
            return False
        nn = self.nn
        cn1 = coordination(x_new, nn)
        d_min = cKDTree(x_new).query(x_new, k=2)[0][:, 1].min()
        if d_min < MIN_DISTANCE * nn or np.any(cn1 < np.minimum(cn0, MIN_SITE_NEIGHBOURS)):
            return False
        return _diameter(x_new) < self.max_dist

    def _take_relaxation(
        self, x_new: np.ndarray, penalty_sites: int, theta: np.ndarray | None = None
    ) -> bool:
        """Apply relaxed coordinates when they lower chi^2 by more than the criterion's
        penalty for ``penalty_sites`` parameters (0: any drop); record the move.  The
        parameters are re-refined from ``theta`` (default: the current ones)."""
        m = self.model
        h_new = pair_histogram(x_new, step=m.step, n_bins=m.n_bins)
        th0 = self.theta if theta is None else torch.as_tensor(theta, dtype=torch.float64)
        th, rss, s = m.refine(h_new, th0.to(m.device), steps=2)
        if not rss < self.rss:
            return False
        gain = (self.rss - rss) * self.chi[0]
        penalty = 0.0
        if penalty_sites:
            score = self.score(self.rss, rss, penalty_sites, screen=False)
            if not score > 0:
                return False
            penalty = gain - score
        self.accepted.append(
            Move(
                kind="relax",
                added=np.zeros((0, 3)),
                removed=np.zeros((0, 3)),
                removed_index=[],
                n_atoms=len(self.x),
                rw_before=self.rw(self.rss),
                rw_after=self.rw(rss),
                delta_chi2=gain,
                penalty=penalty,
            )
        )
        self.x, self.h, self.theta, self.rss, self.scale = x_new, h_new, th, rss, s
        return True

    def relax(
        self, max_iter: int = 25, weight: float = 10.0, deadline: float = math.inf
    ) -> bool:
        """Restrained relaxation of all coordinates; applied when it lowers chi^2 and the
        particle stays physical.  The L-BFGS iterations are cut to what fits before
        ``deadline`` (a ``time.perf_counter()`` value), judged from the first one."""
        m, nn = self.model, self.nn
        n = len(self.x)
        if n < 3:
            return False
        i, j = np.triu_indices(n, 1)
        ti = torch.as_tensor(i, device=m.device)
        tj = torch.as_tensor(j, device=m.device)
        x0 = torch.as_tensor(self.x, dtype=torch.float64, device=m.device)
        d0 = torch.linalg.norm(x0[ti] - x0[tj], dim=1)
        bonded = d0 <= BOND_MAX * nn
        kern = m.kernel(self.theta).detach()
        cn0 = coordination(self.x, nn)

        def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
            xv = torch.as_tensor(flat.reshape(n, 3), dtype=torch.float64, device=m.device)
            xv.requires_grad_(True)
            d = torch.linalg.norm(xv[ti] - xv[tj], dim=1)
            xs = (d / m.step).clamp(max=float(m.n_bins - 2))
            k = torch.floor(xs).detach()
            f = xs - k
            k = k.long()
            cnt = torch.zeros(m.n_bins, dtype=torch.float64, device=m.device)
            cnt = cnt.index_add(0, k, 1.0 - f).index_add(0, k + 1, f)
            rss, _ = m.rss(m.calc(cnt[None], kern, True), True)
            close = torch.relu((MIN_DISTANCE + 0.03) * nn - d)
            stretch = torch.relu(d[bonded] - (BOND_MAX - 0.02) * nn)
            move = torch.relu(torch.linalg.norm(xv - x0, dim=1) - 0.25 * nn)
            restr = (close**2).sum() + (stretch**2).sum() + (move**2).sum()
            loss = rss[0] / m.sw_s + weight * restr / nn**2
            loss.backward()
            return float(loss.detach()), xv.grad.cpu().numpy().ravel()

        t_eval = time.perf_counter()
        fun(self.x.ravel())
        t_eval = time.perf_counter() - t_eval
        # an L-BFGS iteration costs about 1.5 evaluations
        fits = (deadline - time.perf_counter()) / (1.5 * t_eval + 1e-9)
        max_iter = int(min(max_iter, fits))
        if max_iter < 2:
            return False
        res = minimize(
            fun, self.x.ravel(), jac=True, method="L-BFGS-B", options={"maxiter": max_iter}
        )
        x_new = np.asarray(res.x, dtype=float).reshape(n, 3)
        if not self._physical(x_new, cn0):
            return False
        return self._take_relaxation(x_new, 0)

    def relax_modes(
        self, max_iter: int = MODE_ITERATIONS, deadline: float = math.inf
    ) -> bool:
        """Relaxation along the few :func:`relaxation_modes` of the particle.

        The mode amplitudes (each within ``MODE_MAX * nn``) are fitted together with
        zoomscale, Uiso and delta2 (sharper peaks follow a relaxation) by
        Levenberg-Marquardt on the full fit grid, the scale projected out, with
        analytic Jacobians (:meth:`_Model.g_and_jacobian`; each variable in units of
        its typical step, :data:`MODE_STEPS`).  The result is applied when the
        particle stays physical and chi^2 drops by more than the criterion's penalty
        for that many modes: the data must call for a relaxation before one is made.
        The fit is not made when the drop the linearised model predicts at zero
        amplitude is below :data:`MODE_PRETEST` of that penalty.
        """
        nn = self.nn
        n = len(self.x)
        modes, _ = relaxation_modes(self.x, nn)
        k = modes.shape[-1]
        if n < 3 or k == 0 or time.perf_counter() >= deadline:
            return False

        def promising(drop: float) -> bool:
            return self.score(self.rss, self.rss - drop / MODE_PRETEST, k, False) > 0

        p = _fit_modes(
            self.model, self.x, modes, self.theta, nn, max_iter, deadline, promising
        )
        if p is None:
            return False
        x_new = self.x + modes @ p[:k]
        if not self._physical(x_new, coordination(self.x, nn)):
            return False
        return self._take_relaxation(x_new, k, theta=p[k:])


def _mode_histogram(
    model: _Model, x: np.ndarray, pairs: tuple[np.ndarray, np.ndarray], slots, jac: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pair histogram (linear binning) of ``x`` and, with ``jac``, its derivative with
    respect to the mode amplitudes: ``slots = (mode, vector)``, each atom's modes
    ``[n, s]`` (k: none) and unit displacements ``[n, s, 3]``."""
    i, j = pairs
    nb, step = model.n_bins, model.step
    v = x[i] - x[j]
    d = np.sqrt(np.einsum("pc,pc->p", v, v))
    xs = d / step
    inside = xs < nb - 2
    xs = np.minimum(xs, nb - 2)
    kb = np.floor(xs).astype(np.intp)
    f = xs - kb
    cnt = np.bincount(kb, 1.0 - f, nb) + np.bincount(kb + 1, f, nb)
    if not jac:
        return cnt, None
    mode, vec = slots
    k1 = int(mode.max()) + 1  # the modes and a column for "none"
    e = v * (inside / (step * np.maximum(d, 1e-12)))[:, None]
    flat = np.zeros(nb * k1)
    for s in range(mode.shape[1]):
        for atoms, sign in ((i, 1.0), (j, -1.0)):
            w = sign * np.einsum("pc,pc->p", e, vec[atoms, s])
            col = mode[atoms, s]
            flat += np.bincount((kb + 1) * k1 + col, w, nb * k1)
            flat -= np.bincount(kb * k1 + col, w, nb * k1)
    return cnt, flat.reshape(nb, k1)[:, : k1 - 1]


def _mode_slots(modes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The few modes each atom moves in (:func:`relaxation_modes` gives it at most two):
    ``mode [n, s]`` (k: none) and unit displacements ``vector [n, s, 3]``, the ``slots``
    of :func:`_mode_histogram`."""
    n, _, k = modes.shape
    member = np.any(modes != 0.0, axis=1)  # [n, k]
    n_slots = max(1, int(member.sum(axis=1).max()))
    mode = np.full((n, n_slots), k)
    vec = np.zeros((n, n_slots, 3))
    for a in range(n):
        ms = np.flatnonzero(member[a])
        mode[a, : len(ms)] = ms
        vec[a, : len(ms)] = modes[a, :, ms]
    return mode, vec


def _fit_modes(
    model: _Model,
    x: np.ndarray,
    modes: np.ndarray,
    theta: torch.Tensor,
    nn: float,
    max_iter: int,
    deadline: float = math.inf,
    promising: Callable[[float], bool] | None = None,
) -> np.ndarray | None:
    """Levenberg-Marquardt fit of the mode amplitudes (A) and (zoomscale, Uiso, delta2)
    to the data on the full grid, the scale projected out; returns the variables, or
    None when ``promising`` is given and returns False for the weighted RSS drop that
    the Gauss-Newton step predicts from the start (no fit made)."""
    n, _, k = modes.shape
    mode, vec = _mode_slots(modes)
    pairs = np.triu_indices(n, 1)
    names = ("zoomscale", "uiso", "delta2")
    unit = np.array([MODE_STEPS["amplitude"] * nn] * k + [MODE_STEPS[v] for v in names])
    lo = np.array([-MODE_MAX * nn] * k + [_BOUNDS[v][0] for v in names])
    hi = np.array([MODE_MAX * nn] * k + [_BOUNDS[v][1] for v in names])
    y = model.g.cpu().numpy()
    w = model.w.cpu().numpy()

    def residual(p: np.ndarray, jac: bool):
        cnt, dcnt = _mode_histogram(model, x + modes @ p[:k], pairs, (mode, vec), jac)
        g, jg = model.g_and_jacobian(cnt, dcnt, p[k:])
        cc = max(float(np.sum(w * g * g)), 1e-300)
        s = max(float(np.sum(w * y * g)) / cc, 0.0)
        r = y - s * g
        rss = float(np.sum(w * r * r))
        if jg is None:
            return rss, r, None
        # d r / d p with the optimal scale's own change (variable projection)
        d_s = (jg @ (w * y) - 2.0 * s * (jg @ (w * g))) / cc if s > 0 else 0.0 * jg[:, 0]
        return rss, r, -s * jg - np.outer(d_s, g)

    def normal(jr: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """J^T W J, J^T W r and a relative floor for its diagonal, with J in units of
        each variable's typical step."""
        ju = jr * unit[:, None]
        a = (ju * w) @ ju.T
        return a, (ju * w) @ r, 1e-12 * max(float(np.trace(a)), 1e-300)

    p = np.concatenate([np.zeros(k), theta.detach().cpu().numpy()])
    rss, r, jr = residual(p, True)
    a, b, floor = normal(jr, r)
    if promising is not None:
        if not promising(float(b @ np.linalg.solve(a + floor * np.eye(len(a)), b))):
            return None
    damping = 1e-3
    for _ in range(int(max_iter)):
        if time.perf_counter() >= deadline:
            break
        diag = np.diag(a).copy() + floor
        for _retry in range(8):
            step = np.linalg.solve(a + damping * np.diag(diag), -b)
            p_new = np.clip(p + step * unit, lo, hi)
            rss_new = residual(p_new, False)[0]
            if rss_new < rss:
                break
            damping *= 4.0
        else:
            break
        gain = (rss - rss_new) / rss
        p, damping = p_new, max(damping / 3.0, 1e-9)
        if gain < MODE_RTOL:
            break
        rss, r, jr = residual(p, True)
        a, b, floor = normal(jr, r)
    return p


# -- the public function ----------------------------------------------------------------


def _structure_input(structure) -> tuple[Any, np.ndarray, str, float]:
    """(copy of the Structure, xyz, element, mean Uiso) of a monatomic cluster."""
    from .structures import structure_arrays

    stru = _as_structure(structure)
    xyz, elements, uiso = structure_arrays(stru)
    if len(set(elements)) != 1:
        raise StructureError(
            f"completion handles one element, the structure holds {sorted(set(elements))}"
        )
    if len(xyz) < 4:
        raise StructureError(
            f"a cluster to complete needs at least 4 atoms, got {len(xyz)}"
        )
    u = float(np.mean(uiso))
    return stru, xyz, elements[0], (u if u > 0 else 0.005)


def _pdf_input(pdf) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, float]]:
    """r, g, dg and header settings of a PDFData or an (r, g[, dg]) tuple."""
    if hasattr(pdf, "r") and hasattr(pdf, "g"):
        return _pdf_arrays(pdf, None, None)
    if isinstance(pdf, (tuple, list)) and len(pdf) in (2, 3):
        return _pdf_arrays(pdf[0], pdf[1], pdf[2] if len(pdf) == 3 else None)
    raise PDFDataError("pdf must be a PDFData or a tuple (r, g) or (r, g, dg)")


def _setting(name: str, given, meta: dict[str, float], default, sources: dict[str, str]):
    if given is not None:
        sources[name] = "argument"
        value = given
    elif name in meta:
        sources[name] = "header"
        value = meta[name]
    else:
        sources[name] = "default"
        value = default
    if value is None:
        raise ParameterError(f"{name} is not in the data's header; give it explicitly")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ParameterError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def _decider(criterion: str, n_obs: float, alpha: float):
    if criterion in ("bic", "aic"):
        pen = _penalty(criterion, n_obs)

        def decide(old: float, new: float, k: int, factor: float) -> float:
            return (old - new) * factor - pen * k

        return decide, pen
    if criterion == "hamilton":

        def decide(old: float, new: float, k: int, factor: float) -> float:
            if new <= 0:
                return np.inf if old > 0 else -np.inf
            gain = 0.5 * math.log(old / new) if old > 0 else -np.inf
            return gain - (math.log(_hamilton_ratio(n_obs, k, 4, alpha)) if k else 0.0)

        return decide, float("nan")
    raise ParameterError(f"criterion must be 'bic', 'aic' or 'hamilton', got {criterion!r}")


def _model_error(xyz, element, theta, scale_n, settings, r_fit, g_fast) -> float:
    """RMS of scale * (exact Debye G - histogram G) over the fit range, at theta."""
    dr = float(np.median(np.diff(r_fit)))
    zoom, uiso, delta2 = (float(v) for v in theta)
    p = debye.PDFParameters(
        rmin=0.0,
        rmax=float(r_fit[-1]) + 2 * dr,
        rstep=dr,
        qmin=settings["qmin"],
        qmax=settings["qmax"],
        qdamp=settings["qdamp"],
        qbroad=settings["qbroad"],
        delta2=delta2,
    )
    r_ex, g_ex = debye.pdf_from_arrays(xyz * zoom, element, uiso, p, backend="torch")
    return float(np.sqrt(np.mean((scale_n * (np.interp(r_fit, r_ex, g_ex) - g_fast)) ** 2)))


def _restore_ids(ids: np.ndarray, x: np.ndarray, x0: np.ndarray, tol: float) -> np.ndarray:
    """Give an added atom that sits on a removed start atom (within ``tol``) that atom's
    id, so that a site removed and later refilled counts as neither."""
    ids = ids.copy()
    n0 = len(x0)
    gone = np.setdiff1d(np.arange(n0), ids)
    for k in np.flatnonzero(ids >= n0):
        if len(gone) == 0:
            break
        d = np.linalg.norm(x0[gone] - x[k], axis=1)
        j = int(np.argmin(d))
        if d[j] <= tol:
            ids[k] = gone[j]
            gone = np.delete(gone, j)
    return ids


def _run_search(
    search: _Search, limit: int, relax_rounds: int, relax_iterations: int, deadline: float
) -> tuple[str, float]:
    """Count moves until none passes the rule, then restrained relaxations, each
    followed by a new search, up to ``relax_rounds``.  Returns why it stopped
    (``"converged"``, ``"max_moves"`` or ``"max_seconds"``) and the seconds spent
    relaxing."""
    stopped = "converged"
    t_relax = 0.0
    rounds = 0
    counting = any(k in search.moves for k in ("add", "remove", "swap", "recut"))
    while True:
        while True:
            if time.perf_counter() > deadline:
                stopped = "max_seconds"
                break
            if sum(mv.kind != "relax" for mv in search.accepted) >= limit:
                stopped = "max_moves"
                break
            if not search.step():
                break
        if stopped != "converged" or "relax" not in search.moves or rounds >= relax_rounds:
            return stopped, t_relax
        rounds += 1
        tr = time.perf_counter()
        relaxed = search.relax(max_iter=relax_iterations, deadline=deadline)
        t_relax += time.perf_counter() - tr
        if not relaxed or not counting:
            return stopped, t_relax


def _move_gain(move: Move) -> float:
    """Drop of chi^2 a move made less the penalty it paid (its criterion gain)."""
    return float(move.delta_chi2 - move.penalty)


def complete(
    structure,
    pdf,
    *,
    qmin: float | None = None,
    qmax: float | None = None,
    qdamp: float | None = None,
    qbroad: float | None = None,
    rmin: float = 1.5,
    rmax: float | None = None,
    max_seconds: float = 60.0,
    seed: int = 0,
    moves: Sequence[str] = MOVES,
    criterion: str = "bic",
    alpha: float = 0.05,
    nn: float | None = None,
    zoomscale: float = 1.0,
    uiso: float | None = None,
    delta2: float = 2.0,
    max_moves: int | None = None,
    relax_rounds: int = 1,
    relax_iterations: int = 25,
    model_error: float | None = None,
    penalise: str = "sites",
    count_steps: int = COUNT_SCAN_STEPS,
    device=None,
) -> CompletionResult:
    """Complete a monatomic cluster against a PDF, atom by atom (see the module docs).

    Parameters
    ----------
    structure : diffpy.structure.Structure or ase.Atoms
        The starting cluster (one element; copied, never modified).
    pdf : PDFData or tuple
        The data: a :class:`~diffpy_deepstruc.pdfdata.PDFData` (``load_pdf``) or
        ``(r, g)`` / ``(r, g, dg)`` arrays.
    qmin, qmax, qdamp, qbroad : float, optional
        As in :func:`~diffpy_deepstruc.refine.make_recipe`: the argument, else the
        PDFData header, else qmin 0 and :data:`~diffpy_deepstruc.refine.DEFAULT_QDAMP`,
        :data:`~diffpy_deepstruc.refine.DEFAULT_QBROAD` (0, as ``make_recipe``; qmax is
        required).
    rmin, rmax : float
        Fit range (A); rmax defaults to the end of the data.
    max_seconds : float
        Wall-time budget of the search (the best structure so far is returned).
    seed : int
        Recorded in ``settings``; the search itself is deterministic (ties are broken
        by index), the seed is reserved for randomised moves.
    moves : sequence of str
        Move kinds to use, among :data:`MOVES`.
    criterion : {"bic", "aic", "hamilton"}
        Stopping rule: chi^2 must drop by more than ``ln n_obs`` (BIC) or 2 (AIC) per
        site added or removed; or Hamilton's R-ratio test at level ``alpha``.
    alpha : float
        Significance level of the Hamilton test.
    nn : float, optional
        Nearest-neighbour distance (A); default :func:`estimate_nn` of the start.
    zoomscale, uiso, delta2 : float
        Starting parameters (uiso defaults to the structure's mean Uiso, 0.005 if 0).
    max_moves : int, optional
        Most count-changing moves (default: half the atoms + 10).
    relax_rounds : int
        Restrained relaxations tried (each followed by a new search when accepted).
    relax_iterations : int
        L-BFGS iterations of each restrained relaxation.
    model_error : float, optional
        RMS error of the fast model added to the noise variance; None estimates it as
        the difference of the histogram and exact Debye PDFs of the start (0 trusts the
        fast model fully).
    penalise : {"sites", "atoms", "count"}
        What a move pays the criterion's penalty for: every site it adds or removes
        (default; a swap pays for two sites), every atom it adds, removes or moves (a
        swap pays for one), or only the net change of the atom count (swaps and
        same-count recuts need only lower chi^2).
    count_steps : int
        Greedy single-atom steps taken either side of the result to find the counts
        the data do not tell apart from its own (``count_range``; 0: not done).
    device : torch device, optional

    Returns
    -------
    CompletionResult

    Raises
    ------
    StructureError, PDFDataError, ParameterError
        On a structure of several elements or fewer than 4 atoms, bad data or settings.
    """
    t0 = time.perf_counter()
    stru, xyz, element, u0 = _structure_input(structure)
    r, g, dg, meta = _pdf_input(pdf)
    if penalise not in PENALISE:
        raise ParameterError(
            f"penalise must be one of {', '.join(PENALISE)}, got {penalise!r}"
        )
    unknown = sorted(set(moves) - set(MOVES))
    if unknown:
        raise ParameterError(f"unknown moves {unknown}; choose among {', '.join(MOVES)}")
    sources: dict[str, str] = {}
    qmax_v = _setting("qmax", qmax, meta, None, sources)
    qmin_v = _setting("qmin", qmin, meta, 0.0, sources)
    settings = {
        "qmin": qmin_v,
        "qmax": qmax_v,
        "qdamp": _setting("qdamp", qdamp, meta, DEFAULT_QDAMP, sources),
        "qbroad": _setting("qbroad", qbroad, meta, DEFAULT_QBROAD, sources),
    }
    if qmax_v <= qmin_v:
        raise ParameterError(f"qmax ({qmax_v}) must exceed qmin ({qmin_v})")
    rmax_v = float(r[-1]) if rmax is None else float(rmax)
    if not (0 <= rmin < rmax_v):
        raise ParameterError(f"rmin ({rmin}) must be >= 0 and below rmax ({rmax_v})")
    m = (r >= rmin) & (r <= rmax_v)
    if np.count_nonzero(m) < 10:
        raise ParameterError(f"fit range {rmin}-{rmax_v} A holds fewer than 10 data points")
    if not max_seconds > 0:
        raise ParameterError(f"max_seconds must be > 0, got {max_seconds}")
    nn_v = estimate_nn(xyz) if nn is None else float(nn)
    if not nn_v > 0:
        raise ParameterError(f"nn must be > 0, got {nn}")
    settings.update(rmin=float(rmin), rmax=rmax_v, nn=nn_v, sources=sources)
    n_obs = independent_points(rmin, rmax_v, qmax_v)
    decide, pen = _decider(criterion, n_obs, alpha)

    step = HIST_STEP
    size0 = _diameter(xyz)
    max_dist = size0 + 3.0 * nn_v
    n_bins = int(math.floor(max_dist / step)) + 3
    w = np.ones(np.count_nonzero(m)) if dg is None else 1.0 / dg[m] ** 2
    model = _Model(r[m], g[m], w, settings, n_bins, step, device)
    theta0 = torch.tensor(
        [zoomscale, u0 if uiso is None else float(uiso), delta2],
        dtype=torch.float64,
        device=model.device,
    )
    rng = np.random.default_rng(seed)

    # the start, its parameters and the noise
    search = _Search(
        xyz, model, theta0, nn_v, (1.0, 1.0), decide, max_dist, moves, rng, penalise
    )
    search.linear = criterion != "hamilton"
    n0 = len(xyz)
    with torch.no_grad():
        g_fast = (
            model.calc(
                torch.as_tensor(search.h, dtype=torch.float64, device=model.device)[None],
                model.kernel(search.theta),
                False,
            )[0]
            .cpu()
            .numpy()
        )
    if model_error is None:
        err = _model_error(
            xyz,
            element,
            search.theta.tolist(),
            search.scale * n0,
            settings,
            r[m],
            g_fast / n0,
        )
    else:
        err = float(model_error)
        if not (math.isfinite(err) and err >= 0):
            raise ParameterError(
                f"model_error must be a finite number >= 0, got {model_error}"
            )
    size = size0 * float(search.theta[0])
    model_all = None
    if dg is None and np.count_nonzero(r > size + 3.0) >= 2:
        tail = r > size + 3.0
        hp = HistogramPDF(r[tail], n_bins=n_bins, **{k: settings[k] for k in SETTING_KEYS})
        th = search.theta
        with torch.no_grad():
            c = hp(torch.as_tensor(search.h)[None], 1.0, th[0], th[1], th[2])[0]
        model_all = np.zeros_like(r)
        model_all[tail] = search.scale * c.cpu().numpy()
    sigma, source = estimate_noise(
        r, g, dg, qmax=qmax_v, particle_size=size, rmin=rmin, rmax=rmax_v, model=model_all
    )
    wbar = float(np.mean(w))
    if sigma is None:
        var_w = search.rss / model.n_fit
        sigma = math.sqrt(var_w / wbar)
    else:
        var_w = wbar * (sigma**2 + err**2)
    var_w = max(var_w, 1e-300)
    search.chi = (n_obs / (model.n_fit * var_w), n_obs / (model.n_scr * var_w))
    rss_start, theta_start, scale_start = search.rss, search.theta.clone(), search.scale
    t_setup = time.perf_counter() - t0

    # the search: from the start, or from the start relaxed along its modes when the
    # data call for that relaxation first
    limit = (n0 // 2 + 10) if max_moves is None else int(max_moves)
    deadline = t0 + max_seconds
    search_plan = (limit, relax_rounds, relax_iterations, deadline)
    other = copy.copy(search)  # shares nothing a search changes but its move list
    other.accepted = []
    n_eval0 = search.n_evaluated
    # the mode relaxation competes with the search's first count move, as a first step
    # of the greedy search: when it gains more (or no count move passes) the search
    # starts from the start relaxed along its modes
    t_relax, relaxed_first = 0.0, False
    if "relax" in moves:
        tr = time.perf_counter()
        relaxed_first = other.relax_modes(max_iter=MODE_ITERATIONS, deadline=deadline)
        t_relax += time.perf_counter() - tr
    if relaxed_first and limit > 0 and time.perf_counter() < deadline:
        search.step()
        first = search.accepted[0] if search.accepted else None
        relaxed_first = first is None or _move_gain(other.accepted[0]) > _move_gain(first)
    if relaxed_first:
        tr = time.perf_counter()
        other.relax(max_iter=relax_iterations, deadline=deadline)
        t_relax += time.perf_counter() - tr
        other.n_evaluated += search.n_evaluated - n_eval0
        search = other
    stopped, t_search_relax = _run_search(search, *search_plan)
    t_relax += t_search_relax

    # never worse than the start
    if not search.rss <= rss_start:  # pragma: no cover - moves only ever lower the RSS
        search = _Search(
            xyz,
            model,
            theta_start,
            nn_v,
            search.chi,
            decide,
            max_dist,
            moves,
            rng,
            penalise,
        )
    count_chi2: dict[int, float] = {}
    count_range = None
    t_scan = time.perf_counter()
    if count_steps > 0:
        tol = pen if pen > 0 else math.log(n_obs)
        count_chi2 = search.count_scan(count_steps, tol)
        count_range = count_range_of(count_chi2, len(search.x), tol)
    t_scan = time.perf_counter() - t_scan
    from .structures import arrays_to_structure

    th = search.theta.tolist()
    out = arrays_to_structure(
        search.x, element, uiso=th[1], title=f"{stru.title} completed".strip()
    )
    ids = _restore_ids(search.ids, search.x, xyz, 0.25 * nn_v)
    new = ids >= n0
    removed_ids = np.setdiff1d(np.arange(n0), ids)
    total = time.perf_counter() - t0
    return CompletionResult(
        structure=out,
        start=stru,
        added=search.x[new].copy(),
        removed=xyz[removed_ids].copy(),
        moves=list(search.accepted),
        rw_start=math.sqrt(rss_start / model.sw) if model.sw > 0 else 0.0,
        rw=search.rw(search.rss),
        parameters_start={
            "scale": scale_start * n0,
            "zoomscale": float(theta_start[0]),
            "uiso": float(theta_start[1]),
            "delta2": float(theta_start[2]),
        },
        parameters={
            "scale": search.scale * len(search.x),
            "zoomscale": th[0],
            "uiso": th[1],
            "delta2": th[2],
        },
        n_obs=n_obs,
        noise=float(sigma),
        noise_source=source,
        model_error=err,
        criterion=criterion,
        chi2_start=rss_start * search.chi[0],
        chi2=search.rss * search.chi[0],
        settings={
            **settings,
            "penalty_per_site": pen,
            "penalise": penalise,
            "seed": int(seed),
            "alpha": alpha,
            "moves": list(moves),
        },
        timings={
            "setup": t_setup,
            "search": total - t_setup - t_relax - t_scan,
            "relax": t_relax,
            "count_scan": t_scan,
            "total": total,
        },
        n_evaluated=search.n_evaluated,
        stopped=stopped,
        count_chi2=count_chi2,
        count_range=count_range,
        relaxed_first=relaxed_first,
    )
