"""Cluster builders for the training catalog.

One function per shape, in the style of :mod:`ase.cluster`: each checks its arguments
first, returns a plain :class:`ase.Atoms` (no cell, no periodicity) and keeps no state.
The lattice cutters use a fresh ASE factory per call (ASE's module-level factory
instances keep state between calls), so the builders are safe to call from threads.
Every builder takes the nearest-neighbour distance ``nn`` (A) rather than a lattice
constant, so that one set of builder arguments gives the *same shape* for every metal,
only scaled; when ``nn`` is None it is taken from
:func:`diffpy_deepstruc.elements.nearest_neighbour_distance`.

Lattice constants derived from ``nn`` (d):

=====================================  ===========================
structure                              lattice
=====================================  ===========================
fcc, icosahedron, decahedron,          a = d * sqrt(2)
octahedron
bcc                                    a = 2 d / sqrt(3)
sc                                     a = d
hcp                                    a = d, c = sqrt(8/3) a (1.633 a, ideal)
stacking (close-packed layers)         in-plane d, layer spacing d * sqrt(2/3)
=====================================  ===========================

:func:`enumerate_clusters` lists every distinct cluster of ``n_min..n_max`` atoms the
builders make over a grid of arguments (the catalog's structure list).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
from ase import Atoms
from ase.cluster import Decahedron, Icosahedron
from ase.cluster.cubic import (
    BodyCenteredCubicFactory,
    FaceCenteredCubicFactory,
    SimpleCubicFactory,
)
from ase.cluster.factory import reduce_miller
from ase.cluster.hexagonal import HexagonalClosedPackedFactory
from ase.spacegroup import Spacegroup
from scipy.spatial.distance import pdist

from .elements import (
    D_BLOCK_METALS,
    is_metal,
    nearest_neighbour_distance,
    normalize_element,
)
from .errors import ElementError, ParameterError

__all__ = [
    "STRUCTURE_TYPES",
    "CUBIC_SURFACES",
    "HCP_SURFACES",
    "ClusterSpec",
    "fcc_cluster",
    "bcc_cluster",
    "sc_cluster",
    "hcp_cluster",
    "icosahedron",
    "decahedron",
    "octahedron",
    "stacking_cluster",
    "hcp_fraction",
    "layer_environments",
    "lattice_constant",
    "build_cluster",
    "enumerate_clusters",
    "enumerate_geometries",
    "type_geometries",
    "merge_geometries",
    "check_elements",
    "check_types",
    "DistinctGeometries",
    "unit_cluster",
]

#: The structure types of the catalog, in enumeration order.
STRUCTURE_TYPES: tuple[str, ...] = (
    "fcc",
    "bcc",
    "sc",
    "hcp",
    "icosahedron",
    "decahedron",
    "octahedron",
    "stacking",
)

#: Surface families cut by the cubic builders (fcc, bcc, sc), in the order of ``layers``.
CUBIC_SURFACES: tuple[tuple[int, int, int], ...] = ((1, 0, 0), (1, 1, 0), (1, 1, 1))

#: Surface families (Miller-Bravais) cut by the hcp builder, in the order of ``layers``.
HCP_SURFACES: tuple[tuple[int, int, int, int], ...] = (
    (0, 0, 0, 1),
    (1, 0, -1, 0),
    (1, 1, -2, 0),
)

SQRT2 = math.sqrt(2.0)
SQRT3 = math.sqrt(3.0)
#: Ideal hcp axial ratio c/a = sqrt(8/3) = 1.633.
HCP_C_OVER_A = math.sqrt(8.0 / 3.0)
#: Close-packed layer spacing in units of the nearest-neighbour distance.
LAYER_SPACING = math.sqrt(2.0 / 3.0)

_STACKING_SHAPES = ("sphere", "prism")


# --------------------------------------------------------------------------- helpers


def _element_and_nn(element: str, nn: float | None) -> tuple[str, float]:
    """Return the normalised element symbol and a validated nearest-neighbour distance."""
    sym = normalize_element(element)
    if nn is None:
        nn = nearest_neighbour_distance(sym)
    try:
        nn = float(nn)
    except (TypeError, ValueError):
        raise ParameterError(f"nn must be a number (A), got {nn!r}") from None
    if not math.isfinite(nn) or nn <= 0:
        raise ParameterError(f"nn must be a positive distance in A, got {nn}")
    return sym, nn


def _check_int(name: str, value: Any, minimum: int) -> int:
    """Return ``value`` as an int, raising ParameterError unless it is an int >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ParameterError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_layers(layers: Sequence[int], n: int = 3) -> list[int]:
    """Validate ``layers``: ``n`` integers >= 1."""
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence | np.ndarray):
        raise ParameterError(f"layers must be a sequence of {n} integers, got {layers!r}")
    if len(layers) != n:
        raise ParameterError(f"layers must have {n} entries, got {len(layers)}")
    return [_check_int(f"layers[{i}]", v, 1) for i, v in enumerate(layers)]


def _plain_atoms(sym: str, positions: np.ndarray) -> Atoms:
    """An ``Atoms`` of one element at ``positions``, centred on its centroid, no cell."""
    pos = np.asarray(positions, dtype=float).reshape(-1, 3)
    if len(pos):
        pos = pos - pos.mean(axis=0)
    return Atoms(symbols=[sym] * len(pos), positions=pos)


def lattice_constant(structure_type: str, nn: float) -> float | tuple[float, float]:
    """Lattice constant(s) of ``structure_type`` for a nearest-neighbour distance ``nn``.

    Parameters
    ----------
    structure_type : str
        One of :data:`STRUCTURE_TYPES`.
    nn : float
        Nearest-neighbour distance (A).

    Returns
    -------
    float or (float, float)
        ``a`` (A), or ``(a, c)`` for hcp; for ``stacking`` the in-plane spacing ``nn``.
    """
    if structure_type not in STRUCTURE_TYPES:
        raise ParameterError(
            f"unknown structure type {structure_type!r}; choose from {', '.join(STRUCTURE_TYPES)}"
        )
    if structure_type == "bcc":
        return 2.0 * nn / SQRT3
    if structure_type == "sc" or structure_type == "stacking":
        return float(nn)
    if structure_type == "hcp":
        return (float(nn), HCP_C_OVER_A * nn)
    return SQRT2 * nn  # fcc and the fcc-derived shapes


# --------------------------------------------------------------------------- builders


def fcc_cluster(element: str, layers: Sequence[int], nn: float | None = None) -> Atoms:
    """Face-centred cubic cluster cut by the {100}, {110} and {111} families.

    Parameters
    ----------
    element : str
        Element symbol.
    layers : sequence of 3 int
        Number of layers (>= 1) from the central atom to the {100}, {110} and {111}
        surfaces, as in :func:`ase.cluster.FaceCenteredCubic`.
    nn : float, optional
        Nearest-neighbour distance (A); lattice constant a = nn * sqrt(2).

    Returns
    -------
    ase.Atoms
        The cluster, centred on its centroid.
    """
    layers = _check_layers(layers)
    sym, nn = _element_and_nn(element, nn)
    c = FaceCenteredCubicFactory()(
        sym, [list(s) for s in CUBIC_SURFACES], layers, SQRT2 * nn
    )
    return _plain_atoms(sym, c.positions)


def bcc_cluster(element: str, layers: Sequence[int], nn: float | None = None) -> Atoms:
    """Body-centred cubic cluster cut by the {100}, {110} and {111} families.

    Parameters
    ----------
    element : str
        Element symbol.
    layers : sequence of 3 int
        Number of layers (>= 1) to the {100}, {110} and {111} surfaces, as in
        :func:`ase.cluster.BodyCenteredCubic`.
    nn : float, optional
        Nearest-neighbour distance (A); lattice constant a = 2 nn / sqrt(3).

    Returns
    -------
    ase.Atoms
        The cluster, centred on its centroid.
    """
    layers = _check_layers(layers)
    sym, nn = _element_and_nn(element, nn)
    c = BodyCenteredCubicFactory()(
        sym, [list(s) for s in CUBIC_SURFACES], layers, 2.0 * nn / SQRT3
    )
    return _plain_atoms(sym, c.positions)


def sc_cluster(element: str, layers: Sequence[int], nn: float | None = None) -> Atoms:
    """Simple cubic cluster cut by the {100}, {110} and {111} families.

    Parameters
    ----------
    element : str
        Element symbol.
    layers : sequence of 3 int
        Number of layers (>= 1) to the {100}, {110} and {111} surfaces, as in
        :func:`ase.cluster.SimpleCubic`.
    nn : float, optional
        Nearest-neighbour distance (A); lattice constant a = nn.

    Returns
    -------
    ase.Atoms
        The cluster, centred on its centroid.
    """
    layers = _check_layers(layers)
    sym, nn = _element_and_nn(element, nn)
    c = SimpleCubicFactory()(sym, [list(s) for s in CUBIC_SURFACES], layers, float(nn))
    return _plain_atoms(sym, c.positions)


def hcp_cluster(element: str, layers: Sequence[int], nn: float | None = None) -> Atoms:
    """Hexagonal close-packed cluster cut by the {0001}, {10-10} and {11-20} families.

    Parameters
    ----------
    element : str
        Element symbol.
    layers : sequence of 3 int
        Number of layers (>= 1) to the {0001}, {10-10} and {11-20} surfaces, as in
        :func:`ase.cluster.HexagonalClosedPacked`.
    nn : float, optional
        Nearest-neighbour distance (A); a = nn, c = sqrt(8/3) a (ideal 1.633).

    Returns
    -------
    ase.Atoms
        The cluster, centred on its centroid.
    """
    layers = _check_layers(layers)
    sym, nn = _element_and_nn(element, nn)
    c = HexagonalClosedPackedFactory()(
        sym, [list(s) for s in HCP_SURFACES], layers, (float(nn), HCP_C_OVER_A * nn)
    )
    return _plain_atoms(sym, c.positions)


def icosahedron(element: str, shells: int, nn: float | None = None) -> Atoms:
    """Mackay icosahedron of ``shells`` shells (1, 13, 55, 147, 309... atoms).

    Parameters
    ----------
    element : str
        Element symbol.
    shells : int
        Number of shells (>= 1), as ``noshells`` in :func:`ase.cluster.Icosahedron`.
    nn : float, optional
        Nearest-neighbour (centre to first shell) distance (A); fcc a = nn * sqrt(2).

    Returns
    -------
    ase.Atoms
        The cluster, centred on its centroid.
    """
    shells = _check_int("shells", shells, 1)
    sym, nn = _element_and_nn(element, nn)
    c = Icosahedron(sym, shells, latticeconstant=SQRT2 * nn)
    return _plain_atoms(sym, c.positions)


def decahedron(element: str, p: int, q: int, r: int, nn: float | None = None) -> Atoms:
    """Ino/Marks decahedron, as :func:`ase.cluster.Decahedron`.

    Parameters
    ----------
    element : str
        Element symbol.
    p : int
        Atoms (>= 1) on the (100) facets perpendicular to the five-fold axis.
    q : int
        Atoms (>= 1) on the (100) facets parallel to the five-fold axis (1: none).
    r : int
        Depth (>= 0) of the Marks re-entrance at the pentagon corners (0: none).
    nn : float, optional
        Nearest-neighbour distance (A); fcc a = nn * sqrt(2).

    Returns
    -------
    ase.Atoms
        The cluster, centred on its centroid.
    """
    p = _check_int("p", p, 1)
    q = _check_int("q", q, 1)
    r = _check_int("r", r, 0)
    sym, nn = _element_and_nn(element, nn)
    c = Decahedron(sym, p, q, r, latticeconstant=SQRT2 * nn)
    return _plain_atoms(sym, c.positions)


def octahedron(
    element: str, length: int, cutoff: int = 0, nn: float | None = None
) -> Atoms:
    """(Truncated) octahedron, as :func:`ase.cluster.Octahedron` (same recipe).

    Parameters
    ----------
    element : str
        Element symbol.
    length : int
        Atoms (>= 2) on the edges of the complete octahedron.
    cutoff : int
        Layers cut at each vertex, 0 <= cutoff <= (length - 1) / 2 (0: regular
        octahedron; length = 2 cutoff + 1: cuboctahedron).
    nn : float, optional
        Nearest-neighbour distance (A); fcc a = nn * sqrt(2).

    Returns
    -------
    ase.Atoms
        The cluster, centred on its centroid.
    """
    length = _check_int("length", length, 2)
    cutoff = _check_int("cutoff", cutoff, 0)
    if 2 * cutoff + 1 > length:
        raise ParameterError(
            f"cutoff must be <= (length - 1) / 2, got {cutoff} for length {length}"
        )
    sym, nn = _element_and_nn(element, nn)
    # ase.cluster.Octahedron's recipe, with a factory of our own: ASE's module-level
    # factory instances keep the state of their last call and are not thread-safe.
    if length % 2 == 0:
        center, layers = [0.5, 0.5, 0.5], [length / 2, length - 1 - cutoff]
    else:
        center, layers = [0.0, 0.0, 0.0], [(length - 1) / 2, length - 1 - cutoff]
    c = FaceCenteredCubicFactory()(sym, [[1, 1, 1], [1, 0, 0]], layers, SQRT2 * nn, center)
    return _plain_atoms(sym, c.positions)


def _check_sequence(sequence: str, min_layers: int) -> str:
    """Validate a close-packed stacking sequence and return it in upper case."""
    if not isinstance(sequence, str):
        raise ParameterError(f"sequence must be a string of A, B, C, got {sequence!r}")
    seq = sequence.strip().upper()
    if len(seq) < min_layers:
        raise ParameterError(
            f"stacking sequence {sequence!r} has {len(seq)} layers; at least {min_layers} needed"
        )
    bad = set(seq) - set("ABC")
    if bad:
        raise ParameterError(
            f"stacking sequence {sequence!r} may only contain A, B and C (got {''.join(sorted(bad))})"
        )
    for i in range(len(seq) - 1):
        if seq[i] == seq[i + 1]:
            raise ParameterError(
                f"stacking sequence {sequence!r}: consecutive layers {seq[i]}{seq[i + 1]} "
                f"at position {i} are not close-packed"
            )
    return seq


def layer_environments(sequence: str) -> str:
    """Jagodzinski symbols of the interior layers of ``sequence``.

    A layer whose two neighbours are equal (``ABA``) is hexagonal, ``h``; one whose
    neighbours differ (``ABC``) is cubic, ``c``.  The first and last layer have a single
    neighbour and get no symbol.

    Parameters
    ----------
    sequence : str
        Stacking sequence of at least 3 layers, letters A, B, C, no two equal neighbours.

    Returns
    -------
    str
        ``len(sequence) - 2`` characters, ``h`` or ``c``.
    """
    seq = _check_sequence(sequence, 3)
    return "".join("h" if seq[i - 1] == seq[i + 1] else "c" for i in range(1, len(seq) - 1))


def hcp_fraction(sequence: str) -> float:
    """Fraction of hcp-like (``h``) layers among the interior layers of ``sequence``.

    ``ABCABC...`` (fcc) gives 0, ``ABAB...`` (hcp) gives 1, ``ABCABAB`` gives 2/5.

    Parameters
    ----------
    sequence : str
        Stacking sequence of at least 3 layers, letters A, B, C, no two equal neighbours.

    Returns
    -------
    float
        Number of ``h`` layers / number of interior layers (``len(sequence) - 2``).
    """
    env = layer_environments(sequence)
    return env.count("h") / len(env)


def stacking_cluster(
    element: str,
    sequence: str,
    radius: float,
    shape: str = "sphere",
    nn: float | None = None,
) -> Atoms:
    """Close-packed particle with an arbitrary layer stacking sequence.

    The layers of ``sequence`` (``A``, ``B``, ``C`` positions of a triangular net of
    spacing ``nn``) are stacked along z with spacing ``nn * sqrt(2/3)``: ``ABC...`` is
    fcc, ``AB...`` is ideal hcp, and any other sequence places stacking faults or twin
    planes.  The stack, centred on its middle, is cut by ``shape`` around the axis
    through the ``A`` sites.  Every layer of the sequence must keep at least one atom.

    Parameters
    ----------
    element : str
        Element symbol.
    sequence : str
        Stacking sequence, at least 2 layers, letters A, B, C, no two equal neighbours
        (e.g. ``"ABCABAB"``).
    radius : float
        Cut radius in units of the nearest-neighbour distance (so the same arguments
        give the same shape for every metal): for ``"sphere"``, the radius of the sphere
        intersected with the stack; for ``"prism"``, the in-plane apothem of a
        hexagonal prism whose side facets run along close-packed rows, spanning all
        layers.
    shape : {"sphere", "prism"}
        Cut shape.
    nn : float, optional
        Nearest-neighbour distance (A).

    Returns
    -------
    ase.Atoms
        The particle, centred on its centroid; ``atoms.info`` holds ``sequence``.

    Raises
    ------
    ParameterError
        On a malformed sequence, a non-positive radius, an unknown shape, or when a
        layer of the sequence would be empty (radius too small for that many layers).
    """
    seq = _check_sequence(sequence, 2)
    try:
        radius = float(radius)
    except (TypeError, ValueError):
        raise ParameterError(f"radius must be a number, got {radius!r}") from None
    if not math.isfinite(radius) or radius <= 0:
        raise ParameterError(f"radius must be positive, got {radius}")
    if shape not in _STACKING_SHAPES:
        raise ParameterError(f"shape must be one of {_STACKING_SHAPES}, got {shape!r}")
    sym, nn = _element_and_nn(element, nn)

    # Geometry in units of nn, scaled at the end.
    a1 = np.array([1.0, 0.0])
    a2 = np.array([0.5, SQRT3 / 2.0])
    offsets = {"A": np.zeros(2), "B": (a1 + a2) / 3.0, "C": 2.0 * (a1 + a2) / 3.0}
    m = int(math.ceil(radius / (SQRT3 / 2.0))) + 2
    ij = np.array(list(itertools.product(range(-m, m + 1), repeat=2)), dtype=float)
    net = ij @ np.vstack([a1, a2])
    # Normals of the hexagon whose edges run along close-packed rows (0, 60, 120 deg).
    normals = np.array(
        [[math.cos(t), math.sin(t)] for t in np.radians([90.0, 30.0, -30.0])]
    )
    eps = 1e-6
    n = len(seq)
    zs = (np.arange(n) - (n - 1) / 2.0) * LAYER_SPACING
    positions = []
    for k, (letter, z) in enumerate(zip(seq, zs, strict=True)):
        xy = net + offsets[letter]
        if shape == "sphere":
            keep = (xy**2).sum(axis=1) + z**2 <= radius**2 + eps
        else:
            keep = (np.abs(xy @ normals.T) <= radius + eps).all(axis=1)
        if not keep.any():
            raise ParameterError(
                f"layer {k} ({letter}) of {seq!r} is empty for {shape} radius {radius}; "
                "increase the radius or use fewer layers"
            )
        layer = np.column_stack([xy[keep], np.full(int(keep.sum()), z)])
        positions.append(layer)
    atoms = _plain_atoms(sym, np.vstack(positions) * nn)
    atoms.info["sequence"] = seq
    return atoms


#: Builder function of each structure type.
BUILDERS: dict[str, Callable[..., Atoms]] = {
    "fcc": fcc_cluster,
    "bcc": bcc_cluster,
    "sc": sc_cluster,
    "hcp": hcp_cluster,
    "icosahedron": icosahedron,
    "decahedron": decahedron,
    "octahedron": octahedron,
    "stacking": stacking_cluster,
}


def build_cluster(
    structure_type: str, element: str, args: dict[str, Any], nn: float | None = None
) -> Atoms:
    """Build one cluster: ``BUILDERS[structure_type](element, **args, nn=nn)``.

    Parameters
    ----------
    structure_type : str
        One of :data:`STRUCTURE_TYPES`.
    element : str
        Element symbol.
    args : dict
        Keyword arguments of the builder (as stored in a catalog's ``builder`` column).
    nn : float, optional
        Nearest-neighbour distance (A).

    Returns
    -------
    ase.Atoms
    """
    if structure_type not in BUILDERS:
        raise ParameterError(
            f"unknown structure type {structure_type!r}; choose from {', '.join(STRUCTURE_TYPES)}"
        )
    if not isinstance(args, dict):
        raise ParameterError(f"builder args must be a dict, got {type(args).__name__}")
    return BUILDERS[structure_type](element, **args, nn=nn)


# --------------------------------------------------------------------------- enumeration


class ClusterSpec(NamedTuple):
    """One catalog structure: how to build it.

    ``build_cluster(spec.type, spec.element, spec.args, nn)`` rebuilds it; ``natoms`` is
    its atom count.
    """

    type: str
    element: str
    args: dict[str, Any]
    natoms: int

    def build(self, nn: float | None = None) -> Atoms:
        """Build the cluster (nearest-neighbour distance ``nn``, default the element's)."""
        return build_cluster(self.type, self.element, self.args, nn)


#: Argument grids of the enumeration (see :func:`enumerate_geometries`).
MAX_LAYERS = 10  # cubic and hcp layer counts 1..10 per surface family
MAX_SHELLS = 10
MAX_DECAHEDRON = 10  # p, q in 1..10, r in 0..MAX_DECAHEDRON // 2
MAX_OCTAHEDRON = 12
#: Stacking sequences of 3..STACKING_MAX_LAYERS layers (first two layers "AB").
STACKING_MAX_LAYERS = 8
#: Sphere radii (in nn) tried beyond the half-height of the stack.
STACKING_SPHERE_EXTRA = (0.5, 1.0)
#: Prism apothems (in nn).
STACKING_PRISM_RADII = (1.5, 2.5)


def _unit_atoms(structure_type: str, args: dict[str, Any]) -> Atoms:
    # The geometry does not depend on the element: build with nn = 1 and a dummy metal.
    return BUILDERS[structure_type]("Cu", **args, nn=1.0)


_LATTICE_FACTORIES = {
    "fcc": FaceCenteredCubicFactory,
    "bcc": BodyCenteredCubicFactory,
    "sc": SimpleCubicFactory,
    "hcp": HexagonalClosedPackedFactory,
}


def _lattice_layer_table(
    structure_type: str, max_layers: int = MAX_LAYERS
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (nn = 1) and required layer counts of a lattice type, for enumeration.

    Returns ``(xyz[N, 3], need[N, 3])``: the atoms of the cluster cut at ``max_layers``
    (default ``MAX_LAYERS``; the large-shape library uses more) in every surface family, as :mod:`ase.cluster` places them (relative to the central
    lattice point), and for each atom and family the smallest layer count 1.. whose cut
    keeps it.  The cluster with layers ``l`` is then exactly ``(need <= l).all(1)``:
    the same atoms as the builder, with a vector test instead of one ASE call per
    ``l`` (which is 100 times slower).  ``tests/test_clusters.py`` checks the two agree.
    """
    fac = _LATTICE_FACTORIES[structure_type]()
    if structure_type == "hcp":
        given = [[h, k, w] for h, k, _, w in HCP_SURFACES]
        latt: Any = lattice_constant("hcp", 1.0)
        surfaces: list[Any] = [list(x) for x in HCP_SURFACES]
    else:
        given = [list(x) for x in CUBIC_SURFACES]
        latt = lattice_constant(structure_type, 1.0)
        surfaces = [list(x) for x in CUBIC_SURFACES]
    big = fac("Cu", surfaces, [max_layers] * 3, latt)
    # The block of lattice points ASE cut the big cluster from, relative to its centre.
    size = np.asarray(fac.size, dtype=int)
    hkl = np.array(list(itertools.product(*(range(int(n)) for n in size))), dtype=float)
    basis = np.asarray(fac.atomic_basis, dtype=float) @ fac.lattice_basis
    xyz = ((hkl @ fac.lattice_basis)[:, None, :] + basis[None]).reshape(-1, 3) - fac.center
    sg = Spacegroup(fac.spacegroup)
    families = [
        sg.equivalent_reflections(np.asarray(reduce_miller(g)).reshape(-1, 3))
        for g in given
    ]
    need = np.ones((len(xyz), 3), dtype=int)
    for surf in np.asarray(fac.surfaces):
        fam = next(f for f, eq in enumerate(families) if (eq == surf).all(axis=1).any())
        proj = xyz @ fac.miller_to_direction(surf)
        rmax = np.array(
            [fac.get_layer_distance(surf, k + 0.1) for k in range(1, max_layers + 1)]
        )
        # ASE keeps an atom when proj < rmax(l): the smallest such l (max_layers + 1: none)
        req = np.searchsorted(rmax, proj, side="right") + 1
        need[:, fam] = np.maximum(need[:, fam], req)
    keep = (need <= max_layers).all(axis=1)
    xyz, need = xyz[keep], need[keep]
    if len(xyz) != len(big):  # pragma: no cover - would mean ASE changed its recipe
        raise RuntimeError(
            f"{structure_type}: enumeration table has {len(xyz)} atoms, ASE {len(big)}"
        )
    return xyz, need


def _candidates(structure_type: str, n_max: int) -> Iterator[tuple[dict[str, Any], Atoms]]:
    """Candidate builder arguments of one type with their cluster (nn = 1), in a fixed
    order.  Clusters above ``n_max`` atoms are mostly skipped; callers filter."""
    if structure_type in _LATTICE_FACTORIES:
        # Raising a layer count only loosens one cut, so cluster(l1, l2, l3) is a subset
        # of cluster(l1, l2, l3 + 1): a row stops at the first cluster above n_max, or
        # once it holds as many atoms as the row's last cluster (the rest are the same
        # cluster); the outer loops stop when a row's first cluster is too large.
        xyz, need = _lattice_layer_table(structure_type)
        for l1 in range(1, MAX_LAYERS + 1):
            l1_any = False
            for l2 in range(1, MAX_LAYERS + 1):
                row = (need[:, 0] <= l1) & (need[:, 1] <= l2)
                full = int(row.sum())
                l2_any = False
                for l3 in range(1, MAX_LAYERS + 1):
                    mask = row & (need[:, 2] <= l3)
                    n = int(mask.sum())
                    if n > n_max:
                        break
                    l2_any = True
                    yield {"layers": [l1, l2, l3]}, _plain_atoms("Cu", xyz[mask])
                    if n == full:
                        break
                if not l2_any:
                    break
                l1_any = True
            if not l1_any:
                break
        return
    for args in _grid(structure_type, n_max):
        try:
            yield args, _unit_atoms(structure_type, args)
        except ParameterError:
            continue  # e.g. a stacking layer left empty by the cut


def _grid(structure_type: str, n_max: int) -> Iterator[dict[str, Any]]:
    """Candidate builder arguments of the shape types, in a fixed order (natoms may
    exceed n_max for a few; callers filter)."""
    if structure_type == "icosahedron":
        for shells in range(1, MAX_SHELLS + 1):
            args = {"shells": shells}
            if len(_unit_atoms("icosahedron", args)) > n_max:
                break
            yield args
    elif structure_type == "decahedron":
        # The atom count grows with each of p, q and r.
        for p in range(1, MAX_DECAHEDRON + 1):
            p_any = False
            for q in range(1, MAX_DECAHEDRON + 1):
                q_any = False
                for r in range(0, MAX_DECAHEDRON // 2 + 1):
                    args = {"p": p, "q": q, "r": r}
                    if len(_unit_atoms("decahedron", args)) > n_max:
                        break
                    q_any = True
                    yield args
                if not q_any:
                    break
                p_any = True
            if not p_any:
                break
    elif structure_type == "octahedron":
        for length in range(2, MAX_OCTAHEDRON + 1):
            any_ok = False
            for cutoff in range((length - 1) // 2, -1, -1):  # fewest atoms first
                args = {"length": length, "cutoff": cutoff}
                if len(_unit_atoms("octahedron", args)) > n_max:
                    break
                any_ok = True
                yield args
            if not any_ok:
                break
    elif structure_type == "stacking":
        for n in range(3, STACKING_MAX_LAYERS + 1):
            for tail in itertools.product("hc", repeat=n - 2):
                seq = _sequence_from_environments("".join(tail))
                half = (n - 1) / 2.0 * LAYER_SPACING
                for extra in STACKING_SPHERE_EXTRA:
                    yield {
                        "sequence": seq,
                        "radius": round(half + extra, 3),
                        "shape": "sphere",
                    }
                for rad in STACKING_PRISM_RADII:
                    yield {"sequence": seq, "radius": rad, "shape": "prism"}
    else:  # pragma: no cover - guarded by callers
        raise ParameterError(f"unknown structure type {structure_type!r}")


def _sequence_from_environments(env: str) -> str:
    """The sequence starting ``AB`` whose interior layers have Jagodzinski symbols ``env``."""
    seq = ["A", "B"]
    for sym in env:
        if sym == "h":
            seq.append(seq[-2])
        else:
            seq.append(({"A", "B", "C"} - {seq[-1], seq[-2]}).pop())
    return "".join(seq)


def check_elements(elements: Iterable[str] | str | None) -> tuple[str, ...]:
    """Normalised element symbols, duplicates dropped, order kept.

    ``None`` gives :data:`diffpy_deepstruc.elements.D_BLOCK_METALS`; an unknown symbol
    or a non-metal (the builders make monometallic metal particles) raises
    :class:`~diffpy_deepstruc.errors.ElementError`.
    """
    if elements is None:
        return tuple(D_BLOCK_METALS)
    if isinstance(elements, str):
        elements = [elements]
    syms: list[str] = []
    for e in elements:
        s = normalize_element(e)
        if not is_metal(s):
            raise ElementError(f"{s} is not a metal; the catalog holds metal nanoparticles")
        if s not in syms:
            syms.append(s)
    if not syms:
        raise ParameterError("no elements given")
    return tuple(syms)


def check_types(types: Iterable[str] | str | None) -> tuple[str, ...]:
    """Validated structure types in the order of :data:`STRUCTURE_TYPES` (None: all)."""
    return _check_types(types)


def _check_types(types: Iterable[str] | None) -> tuple[str, ...]:
    if types is None:
        return STRUCTURE_TYPES
    if isinstance(types, str):
        types = [types]
    out: list[str] = []
    for t in types:
        t = str(t).strip().lower()
        if t not in STRUCTURE_TYPES:
            raise ParameterError(
                f"unknown structure type {t!r}; choose from {', '.join(STRUCTURE_TYPES)}"
            )
        if t not in out:
            out.append(t)
    if not out:
        raise ParameterError("no structure types given")
    # Fixed enumeration order, whatever order the caller gave.
    return tuple(t for t in STRUCTURE_TYPES if t in out)


def _check_sizes(n_min: int, n_max: int) -> tuple[int, int]:
    n_min = _check_int("n_min", n_min, 1)
    n_max = _check_int("n_max", n_max, 1)
    if n_min > n_max:
        raise ParameterError(f"n_min ({n_min}) must not exceed n_max ({n_max})")
    return n_min, n_max


#: Distances (in nn) closer than this are equal for de-duplication.
DEDUP_TOLERANCE = 1e-4


class _Distinct:
    """Remembers geometries seen so far; :meth:`add` tells whether one is new."""

    def __init__(self) -> None:
        self._buckets: dict[int, list[tuple[float, np.ndarray]]] = {}

    def add(self, positions: np.ndarray) -> bool:
        d = np.sort(pdist(positions))
        s = float(d.sum())
        bucket = self._buckets.setdefault(len(positions), [])
        tol = DEDUP_TOLERANCE * max(len(d), 1)
        for s2, d2 in bucket:
            if abs(s - s2) <= tol and np.allclose(d, d2, rtol=0, atol=DEDUP_TOLERANCE):
                return False
        bucket.append((s, d))
        return True


class DistinctGeometries(_Distinct):
    """Geometries seen so far, under the enumeration's de-duplication rule.

    :meth:`add` (coordinates in units of nn) returns True for a geometry not met before
    (other atom count, or sorted pair distances differing by more than
    :data:`DEDUP_TOLERANCE`) and remembers it; used by the catalog to keep imperfect
    variants that differ from every ideal cluster and from each other.
    """


def unit_cluster(structure_type: str, args: dict[str, Any]) -> Atoms:
    """Cluster ``BUILDERS[structure_type](**args)`` with nearest-neighbour distance 1.

    Geometries do not depend on the metal; this is the form the enumeration compares.
    """
    (structure_type,) = _check_types([structure_type])
    return _unit_atoms(structure_type, args)


def type_geometries(
    structure_type: str, n_min: int = 5, n_max: int = 200
) -> list[tuple[dict[str, Any], int]]:
    """Distinct geometries of one structure type, as ``(args, natoms)`` in grid order.

    Duplicates within the type are dropped (the first one met is kept); see
    :func:`enumerate_geometries`.
    """
    (structure_type,) = _check_types([structure_type])
    n_min, n_max = _check_sizes(n_min, n_max)
    seen = _Distinct()
    out: list[tuple[dict[str, Any], int]] = []
    for args, atoms in _candidates(structure_type, n_max):
        n = len(atoms)
        if n_min <= n <= n_max and seen.add(atoms.positions):
            out.append((args, n))
    return out


def merge_geometries(
    per_type: Iterable[tuple[str, Sequence[tuple[dict[str, Any], int]]]],
) -> list[tuple[str, dict[str, Any], int]]:
    """Merge :func:`type_geometries` lists, dropping duplicates across types.

    ``per_type`` holds ``(type, geometries)`` pairs; the result follows the order of
    :data:`STRUCTURE_TYPES`, and of a cluster found in several types the first is kept.
    """
    lists = dict(per_type)
    types = _check_types(list(lists))
    seen = _Distinct()
    out: list[tuple[str, dict[str, Any], int]] = []
    for t in types:
        for args, n in lists[t]:
            if seen.add(_unit_atoms(t, args).positions):
                out.append((t, args, n))
    return out


def enumerate_geometries(
    types: Iterable[str] | None = None, n_min: int = 5, n_max: int = 200
) -> list[tuple[str, dict[str, Any], int]]:
    """Distinct cluster geometries (nearest-neighbour distance 1) of ``n_min..n_max`` atoms.

    Geometries scale with ``nn`` for every metal, so the list is the same for all
    elements.  Two clusters are the same when they have as many atoms and their sorted
    pair distances agree within :data:`DEDUP_TOLERANCE` (in units of nn); the first one
    met (order of :data:`STRUCTURE_TYPES`, then of the argument grid) is kept, so for
    example an octahedron that the fcc builder also makes is listed as ``fcc``.

    Parameters
    ----------
    types : iterable of str, optional
        Structure types (default all of :data:`STRUCTURE_TYPES`).
    n_min, n_max : int
        Atom-count bounds, inclusive.

    Returns
    -------
    list of (type, args, natoms)
    """
    types = _check_types(types)
    n_min, n_max = _check_sizes(n_min, n_max)
    return merge_geometries((t, type_geometries(t, n_min, n_max)) for t in types)


def enumerate_clusters(
    elements: Iterable[str] | None = None,
    types: Iterable[str] | None = None,
    n_min: int = 5,
    n_max: int = 200,
    geometries: Sequence[tuple[str, dict[str, Any], int]] | None = None,
) -> Iterator[ClusterSpec]:
    """Yield every distinct catalog cluster, in a deterministic order.

    Order: elements as given (duplicates dropped), then structure types in the order of
    :data:`STRUCTURE_TYPES`, then the argument grid of each builder:

    - fcc, bcc, sc, hcp: ``layers`` 1..10 for each of the three surface families;
    - icosahedron: ``shells`` 1..;
    - decahedron: ``p, q`` 1..10, ``r`` 0..5;
    - octahedron: ``length`` 2.., ``cutoff`` 0..(length - 1) / 2;
    - stacking: every sequence of 3..8 layers starting ``AB`` (all ``h``/``c``
      patterns of the interior layers), as spheres of radius half-height + 0.5 and
      + 1.0 nn and hexagonal prisms of apothem 1.5 and 2.5 nn.

    Clusters outside ``n_min..n_max`` atoms are dropped, and so are duplicates (same
    element and same sorted pair distances within 1e-4 nn; see
    :func:`enumerate_geometries`).

    Parameters
    ----------
    elements : iterable of str, optional
        Metals (default :data:`diffpy_deepstruc.elements.D_BLOCK_METALS`).
    types : iterable of str, optional
        Structure types (default all).
    n_min, n_max : int
        Atom-count bounds, inclusive (default 5..200).
    geometries : list of (type, args, natoms), optional
        The result of :func:`enumerate_geometries` for ``types, n_min, n_max`` when the
        caller already has it (e.g. computed in parallel); not checked.

    Yields
    ------
    ClusterSpec
        ``(type, element, args, natoms)``.
    """
    syms = check_elements(elements)
    if geometries is None:
        geometries = enumerate_geometries(types, n_min, n_max)
    for sym in syms:
        for t, args, n in geometries:
            yield ClusterSpec(t, sym, _copy_args(args), n)


def _copy_args(args: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, list) else v) for k, v in args.items()}
