"""Builders of imperfect metal nanoparticles: the shapes real particles have.

One function per kind of imperfection, in the style of :mod:`ase.cluster` and
:mod:`diffpy_deepstruc.clusters`: each checks its arguments first, returns a plain
:class:`ase.Atoms` (no cell, centred on its centroid, ``atoms.info["builder"]`` holding
the arguments that rebuild it) and is deterministic given its ``seed`` (an int or a
:class:`numpy.random.Generator`).  Distances are in units of the nearest-neighbour
distance ``nn`` where the builder says so, so one set of arguments gives the same shape
for every metal; ``nn=None`` takes the element's bulk value from
:func:`diffpy_deepstruc.elements.nearest_neighbour_distance`.

=========================  ==========================================================
builder                    particle
=========================  ==========================================================
:func:`lattice_sphere`     sphere cut from an fcc, bcc, sc or hcp lattice, its centre
                           offset from the lattice point
:func:`lattice_ellipsoid`  ellipsoid cut (semi-axes, orientation, offset)
:func:`lattice_rod`        rod: cylinder along a direction, flat ends (radius, length,
                           offset)
:func:`surface_vacancies`  ``k`` atoms removed at random from the surface of a particle
:func:`incomplete_shell`   icosahedron, decahedron or octahedron whose outer shell
                           holds only a contiguous patch (a fraction of its atoms)
:func:`twinned_particle`   fcc particle twinned on (111) planes (one or more twins)
:func:`relax_surface`      surface relaxation: ASE's EMT (Al, Cu, Ag, Au, Ni, Pd, Pt, up
                           to :data:`EMT_MAX_ATOMS` atoms) or the contraction model
:func:`contract_surface`   the contraction model alone
=========================  ==========================================================

Surface and coordination: two atoms are neighbours when they are closer than
:data:`NEIGHBOUR_CUTOFF` = 1.1 nn (between the first shell and bcc's second shell at
1.155 nn; icosahedral intra-shell distances, 1.05 nn, count).  An atom is at the
surface when its coordination is below the bulk value of its lattice (12 for fcc, hcp
and the fcc-derived shapes, 8 for bcc, 6 for sc).  The lattice cuts drop atoms with
fewer than ``min_neighbours`` neighbours (default 3, repeatedly), so no cut leaves
isolated or dangling atoms.

Contraction model (:func:`contract_surface`): every surface atom of coordination
``c`` (bulk ``C``) moves towards the centroid of its neighbours by
``contraction * nn * (1 - c / C)``; with the default ``contraction = 0.05`` a
{111}-facet atom of an fcc particle (c = 9) moves 1.25 % of nn, an edge atom (c = 7)
2.1 %, a vertex (c = 6) 2.5 %: the size of the first-layer relaxations of close-packed
metal surfaces (1-5 %).

Sizes: every builder works to several thousand atoms (tests go to 3000); EMT relaxation
is capped at :data:`EMT_MAX_ATOMS` atoms (225 atoms: 0.15 s of CPU with
:class:`~diffpy_deepstruc.emt.ClusterEMT`, ASE's EMT vectorised), larger
particles, and elements EMT does not cover, get the contraction model, and
``atoms.info["relaxation"]`` says which was used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from scipy.spatial import cKDTree

from .clusters import build_cluster, stacking_cluster
from .elements import nearest_neighbour_distance, normalize_element
from .errors import ParameterError, StructureError

__all__ = [
    "LATTICES",
    "BULK_COORDINATION",
    "EMT_ELEMENTS",
    "EMT_MAX_ATOMS",
    "NEIGHBOUR_CUTOFF",
    "coordination_numbers",
    "lattice_points",
    "lattice_sphere",
    "lattice_ellipsoid",
    "lattice_rod",
    "surface_vacancies",
    "incomplete_shell",
    "twin_sequence",
    "twinned_particle",
    "contract_surface",
    "relax_surface",
]

#: Lattices the cutters take.
LATTICES: tuple[str, ...] = ("fcc", "bcc", "sc", "hcp")

#: Bulk coordination (neighbours within :data:`NEIGHBOUR_CUTOFF` nn) of each lattice
#: and of the fcc-derived shapes.
BULK_COORDINATION: dict[str, int] = {
    "fcc": 12,
    "bcc": 8,
    "sc": 6,
    "hcp": 12,
    "icosahedron": 12,
    "decahedron": 12,
    "octahedron": 12,
    "stacking": 12,
}

#: Neighbour cutoff in units of nn.
NEIGHBOUR_CUTOFF = 1.1

#: Elements ASE's EMT potential covers (metals only).
EMT_ELEMENTS: tuple[str, ...] = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")

#: Largest particle relaxed with EMT; larger ones get :func:`contract_surface`.
EMT_MAX_ATOMS = 400

_SHELL_SHAPES = ("icosahedron", "decahedron", "octahedron")


# --------------------------------------------------------------------------- checks


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A numpy Generator from an int seed or a Generator (used as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ParameterError(f"seed must be an integer or a numpy Generator, got {seed!r}")
    if seed < 0:
        raise ParameterError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng(int(seed))


def _positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ParameterError(f"{name} must be a positive number, got {value!r}")
    return v


def _vector(name: str, value: Any, nonzero: bool = False) -> np.ndarray:
    try:
        v = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be 3 numbers, got {value!r}") from None
    if v.shape != (3,) or not np.isfinite(v).all():
        raise ParameterError(f"{name} must be 3 finite numbers, got {value!r}")
    if nonzero and np.linalg.norm(v) < 1e-12:
        raise ParameterError(f"{name} must not be the zero vector")
    return v


def _lattice(lattice: str) -> str:
    if lattice not in LATTICES:
        raise ParameterError(f"lattice must be one of {LATTICES}, got {lattice!r}")
    return lattice


def _element_nn(element: str, nn: float | None) -> tuple[str, float]:
    sym = normalize_element(element)
    return sym, (nearest_neighbour_distance(sym) if nn is None else _positive("nn", nn))


def _min_neighbours(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ParameterError(f"min_neighbours must be an integer >= 0, got {value!r}")
    return int(value)


def _finish(sym: str, pos_unit: np.ndarray, nn: float, builder: dict[str, Any]) -> Atoms:
    """Atoms of ``sym`` at ``pos_unit * nn``, centred on the centroid, with info."""
    pos = np.asarray(pos_unit, dtype=float).reshape(-1, 3) * nn
    if len(pos) == 0:
        raise ParameterError(f"the cut {builder} holds no atoms; enlarge it")
    pos = pos - pos.mean(axis=0)
    atoms = Atoms(symbols=[sym] * len(pos), positions=pos)
    atoms.info["builder"] = builder
    atoms.info["nn"] = float(nn)
    if "lattice" in builder:
        atoms.info["lattice"] = builder["lattice"]
    return atoms


# --------------------------------------------------------------------------- geometry


def coordination_numbers(
    positions: np.ndarray, nn: float, cutoff: float = NEIGHBOUR_CUTOFF
) -> np.ndarray:
    """Number of neighbours of every atom (closer than ``cutoff * nn``).

    Parameters
    ----------
    positions : ndarray, shape (N, 3)
        Cartesian coordinates (A).
    nn : float
        Nearest-neighbour distance (A).
    cutoff : float
        Neighbour cutoff in units of ``nn`` (default 1.1).

    Returns
    -------
    ndarray of int, shape (N,)
    """
    pos = np.asarray(positions, dtype=float).reshape(-1, 3)
    nn = _positive("nn", nn)
    cutoff = _positive("cutoff", cutoff)
    if len(pos) == 0:
        return np.zeros(0, dtype=int)
    tree = cKDTree(pos)
    pairs = tree.query_pairs(cutoff * nn, output_type="ndarray")
    return np.bincount(pairs.ravel(), minlength=len(pos)).astype(int)


def _neighbour_lists(pos: np.ndarray, radius: float) -> list[list[int]]:
    return cKDTree(pos).query_ball_point(pos, radius)


def _prune(
    pos: np.ndarray, min_neighbours: int, cutoff: float = NEIGHBOUR_CUTOFF
) -> np.ndarray:
    """Drop atoms with fewer than ``min_neighbours`` neighbours until none is left."""
    keep = np.ones(len(pos), dtype=bool)
    while min_neighbours > 0 and keep.any():
        idx = np.flatnonzero(keep)
        cn = coordination_numbers(pos[idx], 1.0, cutoff)
        bad = cn < min_neighbours
        if not bad.any():
            break
        keep[idx[bad]] = False
    return pos[keep]


def _cell(lattice: str) -> tuple[np.ndarray, np.ndarray]:
    """Cell vectors (rows) and fractional basis of ``lattice`` with nn = 1."""
    if lattice == "fcc":
        a = math.sqrt(2.0)
        return a * np.eye(3), np.array(
            [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]], dtype=float
        )
    if lattice == "bcc":
        a = 2.0 / math.sqrt(3.0)
        return a * np.eye(3), np.array([[0, 0, 0], [0.5, 0.5, 0.5]], dtype=float)
    if lattice == "sc":
        return np.eye(3), np.zeros((1, 3))
    c = math.sqrt(8.0 / 3.0)
    cell = np.array([[1.0, 0, 0], [-0.5, math.sqrt(3.0) / 2.0, 0], [0, 0, c]])
    return cell, np.array([[0, 0, 0], [1 / 3, 2 / 3, 0.5]], dtype=float)


def lattice_points(lattice: str, extent: float) -> np.ndarray:
    """Points of ``lattice`` (nn = 1) within ``extent`` of the origin (a lattice site).

    Parameters
    ----------
    lattice : {"fcc", "bcc", "sc", "hcp"}
        Lattice (hcp ideal, c/a = sqrt(8/3)).
    extent : float
        Radius (in nn) of the ball whose points are returned.

    Returns
    -------
    ndarray, shape (M, 3)
        Cartesian coordinates in units of nn.
    """
    lattice = _lattice(lattice)
    extent = _positive("extent", extent)
    cell, basis = _cell(lattice)
    heights = np.abs(np.linalg.det(cell)) / np.linalg.norm(
        np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1
    )
    m = np.ceil(extent / heights).astype(int) + 1
    grids = np.meshgrid(*(np.arange(-k, k + 1) for k in m), indexing="ij")
    ijk = np.stack([g.ravel() for g in grids], axis=1).astype(float)
    frac = (ijk[:, None, :] + basis[None]).reshape(-1, 3)
    xyz = frac @ cell
    return xyz[(xyz**2).sum(axis=1) <= extent**2 + 1e-9]


def _frame(axis: np.ndarray) -> np.ndarray:
    """Rotation matrix whose third row is the unit vector of ``axis`` (rows: x', y', z')."""
    z = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0, 0]) if abs(z[0]) < 0.9 else np.array([0, 1.0, 0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.vstack([x, y, z])


def _cut(
    element: str,
    lattice: str,
    nn: float | None,
    offset: Any,
    min_neighbours: int,
    reach: float,
    inside,
    builder: dict[str, Any],
) -> Atoms:
    sym, d = _element_nn(element, nn)
    off = _vector("offset", offset)
    pts = lattice_points(lattice, reach + float(np.linalg.norm(off)) + 2.0)
    local = pts - off
    sel = pts[inside(local)]
    sel = _prune(sel, min_neighbours)
    return _finish(sym, sel, d, builder)


# --------------------------------------------------------------------------- lattice cuts


def lattice_sphere(
    element: str,
    lattice: str,
    radius: float,
    offset: Sequence[float] = (0.0, 0.0, 0.0),
    nn: float | None = None,
    min_neighbours: int = 3,
) -> Atoms:
    """Sphere cut from a lattice, centred at ``offset`` from a lattice site.

    Parameters
    ----------
    element : str
        Element symbol.
    lattice : {"fcc", "bcc", "sc", "hcp"}
        Lattice.
    radius : float
        Sphere radius in units of nn.
    offset : 3 floats
        Centre of the sphere relative to a lattice site, in units of nn (off-centre
        cuts: any non-zero offset; the lattice's symmetry makes offsets beyond one cell
        equivalent to smaller ones).
    nn : float, optional
        Nearest-neighbour distance (A).
    min_neighbours : int
        Atoms with fewer neighbours are removed, repeatedly (0: keep all).

    Returns
    -------
    ase.Atoms
        Centred on its centroid; ``info["builder"]`` holds the arguments.
    """
    lattice = _lattice(lattice)
    radius = _positive("radius", radius)
    off = _vector("offset", offset)
    mn = _min_neighbours(min_neighbours)
    builder = {
        "builder": "lattice_sphere",
        "lattice": lattice,
        "radius": radius,
        "offset": [float(x) for x in off],
        "min_neighbours": mn,
    }
    return _cut(
        element,
        lattice,
        nn,
        off,
        mn,
        radius,
        lambda p: (p**2).sum(axis=1) <= radius**2 + 1e-9,
        builder,
    )


def lattice_ellipsoid(
    element: str,
    lattice: str,
    semi_axes: Sequence[float],
    axis: Sequence[float] = (0.0, 0.0, 1.0),
    offset: Sequence[float] = (0.0, 0.0, 0.0),
    nn: float | None = None,
    min_neighbours: int = 3,
) -> Atoms:
    """Ellipsoid cut from a lattice.

    Parameters
    ----------
    element : str
        Element symbol.
    lattice : {"fcc", "bcc", "sc", "hcp"}
        Lattice.
    semi_axes : 3 floats
        Semi-axes (in nn) along x', y', z' of a frame whose z' points along ``axis``.
    axis : 3 floats
        Direction (lattice Cartesian frame) of the third semi-axis, e.g. ``(1, 1, 1)``.
    offset : 3 floats
        Centre relative to a lattice site (nn).
    nn : float, optional
        Nearest-neighbour distance (A).
    min_neighbours : int
        Atoms with fewer neighbours are removed, repeatedly.

    Returns
    -------
    ase.Atoms
    """
    lattice = _lattice(lattice)
    ax = _vector("semi_axes", semi_axes)
    if (ax <= 0).any():
        raise ParameterError(f"semi_axes must be positive, got {list(semi_axes)}")
    direction = _vector("axis", axis, nonzero=True)
    off = _vector("offset", offset)
    mn = _min_neighbours(min_neighbours)
    rot = _frame(direction)
    builder = {
        "builder": "lattice_ellipsoid",
        "lattice": lattice,
        "semi_axes": [float(x) for x in ax],
        "axis": [float(x) for x in direction],
        "offset": [float(x) for x in off],
        "min_neighbours": mn,
    }
    return _cut(
        element,
        lattice,
        nn,
        off,
        mn,
        float(ax.max()),
        lambda p: (((p @ rot.T) / ax) ** 2).sum(axis=1) <= 1.0 + 1e-9,
        builder,
    )


def lattice_rod(
    element: str,
    lattice: str,
    radius: float,
    length: float,
    axis: Sequence[float] = (0.0, 0.0, 1.0),
    offset: Sequence[float] = (0.0, 0.0, 0.0),
    nn: float | None = None,
    min_neighbours: int = 3,
) -> Atoms:
    """Rod: a cylinder cut from a lattice, with flat ends.

    Parameters
    ----------
    element : str
        Element symbol.
    lattice : {"fcc", "bcc", "sc", "hcp"}
        Lattice.
    radius : float
        Cylinder radius (nn).
    length : float
        Cylinder length (nn), along ``axis``.
    axis : 3 floats
        Rod direction in the lattice's Cartesian frame (``(0, 0, 1)``: fcc [001],
        hcp c axis; ``(1, 1, 0)``: fcc [110]).
    offset : 3 floats
        Centre relative to a lattice site (nn).
    nn : float, optional
        Nearest-neighbour distance (A).
    min_neighbours : int
        Atoms with fewer neighbours are removed, repeatedly.

    Returns
    -------
    ase.Atoms
    """
    lattice = _lattice(lattice)
    radius = _positive("radius", radius)
    length = _positive("length", length)
    direction = _vector("axis", axis, nonzero=True)
    off = _vector("offset", offset)
    mn = _min_neighbours(min_neighbours)
    u = direction / np.linalg.norm(direction)
    builder = {
        "builder": "lattice_rod",
        "lattice": lattice,
        "radius": radius,
        "length": length,
        "axis": [float(x) for x in direction],
        "offset": [float(x) for x in off],
        "min_neighbours": mn,
    }

    def inside(p: np.ndarray) -> np.ndarray:
        t = p @ u
        perp = p - np.outer(t, u)
        return (np.abs(t) <= length / 2 + 1e-9) & (
            (perp**2).sum(axis=1) <= radius**2 + 1e-9
        )

    return _cut(
        element, lattice, nn, off, mn, math.hypot(radius, length / 2), inside, builder
    )


# --------------------------------------------------------------------------- defects


def _bulk_cn(atoms: Atoms, nn: float, bulk_coordination: int | None) -> int:
    if bulk_coordination is not None:
        if (
            isinstance(bulk_coordination, bool)
            or not isinstance(bulk_coordination, (int, np.integer))
            or bulk_coordination < 1
        ):
            raise ParameterError(
                f"bulk_coordination must be a positive integer, got {bulk_coordination!r}"
            )
        return int(bulk_coordination)
    kind = atoms.info.get("lattice") or (atoms.info.get("builder") or {}).get("lattice")
    if kind in BULK_COORDINATION:
        return BULK_COORDINATION[kind]
    cn = coordination_numbers(atoms.positions, nn)
    return int(cn.max()) if len(cn) else 0


def _atoms_nn(atoms: Atoms, nn: float | None) -> float:
    if not isinstance(atoms, Atoms):
        raise ParameterError(f"atoms must be an ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) < 2:
        raise StructureError(f"a particle of {len(atoms)} atom(s) has no surface to change")
    if nn is not None:
        return _positive("nn", nn)
    if "nn" in atoms.info:
        return _positive("nn", atoms.info["nn"])
    d, _ = cKDTree(atoms.positions).query(atoms.positions, k=2)
    return float(np.median(d[:, 1]))


def surface_vacancies(
    atoms: Atoms,
    k: int,
    seed: int | np.random.Generator = 0,
    nn: float | None = None,
    bulk_coordination: int | None = None,
    min_neighbours: int = 3,
) -> Atoms:
    """Remove ``k`` surface atoms chosen at random.

    Surface atoms are those with coordination below the bulk value.  They are tried in
    a random order and one is removed only when every remaining atom keeps at least
    ``min_neighbours`` neighbours, so no vacancy leaves an isolated or dangling atom.

    Parameters
    ----------
    atoms : ase.Atoms
        The particle (not changed).
    k : int
        Number of vacancies (>= 1).
    seed : int or numpy.random.Generator
        Random choice of the sites.
    nn : float, optional
        Nearest-neighbour distance (A); default ``atoms.info["nn"]``, else the median
        nearest-neighbour distance of the particle.
    bulk_coordination : int, optional
        Bulk coordination; default from the builder's lattice
        (:data:`BULK_COORDINATION`), else the largest coordination in the particle.
    min_neighbours : int
        Neighbours every remaining atom keeps.

    Returns
    -------
    ase.Atoms
        A new particle of ``len(atoms) - k`` atoms, centred on its centroid;
        ``info["vacancies"]`` lists the removed indices of ``atoms``.

    Raises
    ------
    StructureError
        When fewer than ``k`` surface atoms can be removed that way.
    """
    d = _atoms_nn(atoms, nn)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ParameterError(f"k must be an integer >= 1, got {k!r}")
    mn = _min_neighbours(min_neighbours)
    rng = _rng(seed)
    bulk = _bulk_cn(atoms, d, bulk_coordination)
    pos = atoms.positions
    cn = coordination_numbers(pos, d)
    neigh = _neighbour_lists(pos, NEIGHBOUR_CUTOFF * d)
    surface = np.flatnonzero(cn < bulk)
    alive = np.ones(len(pos), dtype=bool)
    removed: list[int] = []
    for i in rng.permutation(surface):
        if len(removed) == k:
            break
        others = [j for j in neigh[i] if j != i and alive[j]]
        if any(cn[j] - 1 < mn for j in others):
            continue
        alive[i] = False
        for j in others:
            cn[j] -= 1
        removed.append(int(i))
    if len(removed) < k:
        raise StructureError(
            f"only {len(removed)} of {k} surface atoms can be removed without leaving an "
            f"atom with fewer than {mn} neighbours ({len(surface)} surface atoms)"
        )
    out = _finish(
        atoms.get_chemical_symbols()[0],
        pos[alive] / d,
        d,
        dict(atoms.info.get("builder", {})),
    )
    out.set_chemical_symbols(np.asarray(atoms.get_chemical_symbols())[alive])
    out.info["vacancies"] = sorted(removed)
    out.info["parent_atoms"] = len(atoms)
    return out


def incomplete_shell(
    element: str,
    shape: str,
    args: dict[str, Any],
    fraction: float,
    seed: int | np.random.Generator = 0,
    nn: float | None = None,
) -> Atoms:
    """Icosahedron, decahedron or octahedron with a partly filled outer shell.

    The outer shell (the atoms of coordination below 12) of the complete cluster keeps
    ``round(fraction * n_shell)`` atoms: those furthest along a random direction, a
    contiguous cap; the rest of the shell is removed.

    Parameters
    ----------
    element : str
        Element symbol.
    shape : {"icosahedron", "decahedron", "octahedron"}
        Cluster type of :mod:`diffpy_deepstruc.clusters`.
    args : dict
        Its builder arguments (``{"shells": 4}``, ``{"p": 3, "q": 2, "r": 1}``,
        ``{"length": 6, "cutoff": 1}``).
    fraction : float
        Fraction of the outer shell kept, 0 < fraction < 1.
    seed : int or numpy.random.Generator
        Random direction of the patch.
    nn : float, optional
        Nearest-neighbour distance (A).

    Returns
    -------
    ase.Atoms
        ``info["shell_atoms"]`` (complete outer shell) and ``info["shell_kept"]``.
    """
    if shape not in _SHELL_SHAPES:
        raise ParameterError(f"shape must be one of {_SHELL_SHAPES}, got {shape!r}")
    fraction = _positive("fraction", fraction)
    if fraction >= 1:
        raise ParameterError(f"fraction must be below 1, got {fraction}")
    rng = _rng(seed)
    sym, d = _element_nn(element, nn)
    if not isinstance(args, dict):
        raise ParameterError(f"args must be a dict of builder arguments, got {args!r}")
    try:
        full = build_cluster(shape, sym, dict(args), nn=1.0)
    except TypeError as exc:
        raise ParameterError(f"bad {shape} arguments {args}: {exc}") from None
    pos = full.positions
    cn = coordination_numbers(pos, 1.0)
    shell = np.flatnonzero(cn < 12)
    core = np.flatnonzero(cn >= 12)
    if len(core) == 0:
        raise ParameterError(
            f"{shape} {args} has no complete inner core; use a larger cluster"
        )
    u = rng.standard_normal(3)
    u /= np.linalg.norm(u)
    n_keep = int(round(fraction * len(shell)))
    order = np.argsort(-(pos[shell] @ u), kind="stable")
    kept = shell[order[:n_keep]]
    keep = np.sort(np.concatenate([core, kept]))
    builder = {
        "builder": "incomplete_shell",
        "shape": shape,
        "args": dict(args),
        "fraction": fraction,
        "direction": [float(x) for x in u],
    }
    out = _finish(sym, pos[keep], d, builder)
    out.info["shell_atoms"] = int(len(shell))
    out.info["shell_kept"] = n_keep
    out.info["lattice"] = shape
    return out


def twin_sequence(n_layers: int, twins: Sequence[int]) -> str:
    """fcc stacking sequence of ``n_layers`` close-packed layers with twin planes.

    The sequence runs ``A B C A ...`` and reverses its sense (``... C B A``) at each twin
    plane: layer ``t`` of ``twins`` is the mirror plane, e.g. ``twin_sequence(7, [3])``
    gives ``ABCACBA``.

    Parameters
    ----------
    n_layers : int
        Number of layers (>= 3).
    twins : sequence of int
        Indices of the twin-plane layers, 1 <= t <= n_layers - 2, strictly increasing.

    Returns
    -------
    str
    """
    if (
        isinstance(n_layers, bool)
        or not isinstance(n_layers, (int, np.integer))
        or n_layers < 3
    ):
        raise ParameterError(f"n_layers must be an integer >= 3, got {n_layers!r}")
    try:
        tw = [int(t) for t in twins]
    except (TypeError, ValueError):
        raise ParameterError(
            f"twins must be a sequence of integers, got {twins!r}"
        ) from None
    if not tw:
        raise ParameterError("twins must name at least one twin-plane layer")
    if any(t < 1 or t > n_layers - 2 for t in tw) or sorted(set(tw)) != tw:
        raise ParameterError(
            f"twins must be increasing layer indices in 1..{n_layers - 2}, got {list(twins)}"
        )
    letters = "ABC"
    seq, pos, step = ["A"], 0, 1
    for i in range(1, n_layers):
        if i - 1 in tw:
            step = -step
        pos = (pos + step) % 3
        seq.append(letters[pos])
    return "".join(seq)


def twinned_particle(
    element: str,
    n_layers: int,
    twins: Sequence[int],
    radius: float,
    shape: str = "sphere",
    nn: float | None = None,
) -> Atoms:
    """fcc particle twinned on (111) planes.

    Built by :func:`diffpy_deepstruc.clusters.stacking_cluster` with the sequence of
    :func:`twin_sequence`: one twin plane gives a singly twinned particle (mirror), two
    or more lamellar twins.

    Parameters
    ----------
    element : str
        Element symbol.
    n_layers : int
        Close-packed layers along [111].
    twins : sequence of int
        Twin-plane layer indices (see :func:`twin_sequence`).
    radius : float
        Cut radius (nn): sphere radius or hexagonal-prism apothem.
    shape : {"sphere", "prism"}
        Cut shape.
    nn : float, optional
        Nearest-neighbour distance (A).

    Returns
    -------
    ase.Atoms
        ``info["sequence"]`` holds the stacking sequence.
    """
    seq = twin_sequence(n_layers, twins)
    sym, d = _element_nn(element, nn)
    at = stacking_cluster(sym, seq, radius, shape=shape, nn=d)
    at.info["builder"] = {
        "builder": "twinned_particle",
        "n_layers": int(n_layers),
        "twins": [int(t) for t in twins],  # validated by twin_sequence
        "radius": float(radius),
        "shape": shape,
    }
    at.info["nn"] = d
    at.info["lattice"] = "stacking"
    return at


# --------------------------------------------------------------------------- relaxation


def contract_surface(
    atoms: Atoms,
    contraction: float = 0.05,
    nn: float | None = None,
    bulk_coordination: int | None = None,
) -> Atoms:
    """Move surface atoms inward: the documented contraction model.

    Each atom of coordination ``c`` below the bulk value ``C`` moves towards the
    centroid of its neighbours by ``contraction * nn * (1 - c / C)``.

    Parameters
    ----------
    atoms : ase.Atoms
        The particle (not changed).
    contraction : float
        Displacement scale in units of nn, 0 <= contraction <= 0.2 (default 0.05).
    nn : float, optional
        Nearest-neighbour distance (A).
    bulk_coordination : int, optional
        Bulk coordination (default from the builder's lattice, else the largest in the
        particle).

    Returns
    -------
    ase.Atoms
        ``info["relaxation"]`` = ``"contraction"``.
    """
    d = _atoms_nn(atoms, nn)
    try:
        contraction = float(contraction)
    except (TypeError, ValueError):
        raise ParameterError(f"contraction must be a number, got {contraction!r}") from None
    if not (0.0 <= contraction <= 0.2):
        raise ParameterError(f"contraction must lie in 0..0.2, got {contraction}")
    bulk = _bulk_cn(atoms, d, bulk_coordination)
    pos = atoms.positions.copy()
    neigh = _neighbour_lists(pos, NEIGHBOUR_CUTOFF * d)
    new = pos.copy()
    for i, js in enumerate(neigh):
        js = [j for j in js if j != i]
        c = len(js)
        if c == 0 or c >= bulk:
            continue
        v = pos[js].mean(axis=0) - pos[i]
        norm = np.linalg.norm(v)
        if norm < 1e-9:
            continue
        new[i] = pos[i] + v / norm * contraction * d * (1.0 - c / bulk)
    out = atoms.copy()
    out.positions = new - new.mean(axis=0)
    out.info = dict(atoms.info)
    out.info["relaxation"] = "contraction"
    out.info["contraction"] = contraction
    return out


def relax_surface(
    atoms: Atoms,
    method: str = "auto",
    fmax: float = 0.05,
    steps: int = 40,
    max_atoms: int = EMT_MAX_ATOMS,
    contraction: float = 0.05,
    nn: float | None = None,
) -> Atoms:
    """Surface relaxation: ASE's EMT with FIRE where it applies, else contraction.

    Parameters
    ----------
    atoms : ase.Atoms
        A monometallic particle (not changed).
    method : {"auto", "emt", "contraction"}
        ``"auto"``: EMT for :data:`EMT_ELEMENTS` up to ``max_atoms`` atoms, else the
        contraction model; ``"emt"`` raises where EMT does not apply.
    fmax : float
        FIRE force criterion (eV/A).
    steps : int
        At most this many FIRE steps (default 40: about 0.15 s for 200 atoms).
    max_atoms : int
        Largest particle relaxed with EMT.
    contraction : float
        Displacement scale of :func:`contract_surface`.
    nn : float, optional
        Nearest-neighbour distance (A), for the contraction model.

    Returns
    -------
    ase.Atoms
        ``info["relaxation"]`` is ``"emt"`` (with ``info["emt_steps"]``) or
        ``"contraction"``.
    """
    if method not in ("auto", "emt", "contraction"):
        raise ParameterError(
            f"method must be 'auto', 'emt' or 'contraction', got {method!r}"
        )
    d = _atoms_nn(atoms, nn)
    fmax = _positive("fmax", fmax)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ParameterError(f"steps must be an integer >= 1, got {steps!r}")
    if isinstance(max_atoms, bool) or not isinstance(max_atoms, (int, np.integer)):
        raise ParameterError(f"max_atoms must be an integer, got {max_atoms!r}")
    symbols = set(atoms.get_chemical_symbols())
    emt_ok = symbols <= set(EMT_ELEMENTS) and len(atoms) <= max_atoms
    if method == "emt" and not emt_ok:
        raise ParameterError(
            f"EMT covers {', '.join(EMT_ELEMENTS)} up to {max_atoms} atoms; got "
            f"{'/'.join(sorted(symbols))} with {len(atoms)} atoms"
        )
    if method == "contraction" or not emt_ok:
        return contract_surface(atoms, contraction, nn=d)
    from ase.optimize import FIRE

    from .emt import ClusterEMT

    work = Atoms(symbols=atoms.get_chemical_symbols(), positions=atoms.positions.copy())
    work.calc = ClusterEMT()
    opt = FIRE(work, logfile=None)
    opt.run(fmax=fmax, steps=int(steps))
    out = Atoms(symbols=work.get_chemical_symbols(), positions=work.positions.copy())
    out.positions -= out.positions.mean(axis=0)
    out.info = dict(atoms.info)
    out.info["relaxation"] = "emt"
    out.info["emt_steps"] = int(opt.nsteps)
    return out
