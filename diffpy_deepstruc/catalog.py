"""The training catalog: cluster enumeration, PDF simulation, HDF5 storage.

:func:`build_catalog` enumerates every distinct cluster
(:func:`diffpy_deepstruc.clusters.enumerate_clusters`), simulates ``variants`` PDFs of
each with :func:`diffpy_deepstruc.debye.pdf_batch` under randomly drawn instrument and
sample parameters (:class:`SimulationRanges`), and stores structures and PDFs in one
HDF5 file (schema in ``docs/architecture.md``, ranges and choices in
``docs/catalog.md``).  :func:`open_catalog` reads and validates a catalog.

Imperfect particles (:class:`ImperfectOptions`, ``CatalogConfig(imperfect=...)``):
off-centre cuts, ellipsoids, rods, surface vacancies, partial outer shells, twins and
relaxed surfaces, built by the shape library's builders
(:data:`diffpy_deepstruc.library.SHAPE_BUILDERS`, :mod:`diffpy_deepstruc.imperfect`)
from a variant grid of the same ``(type, builder name, args)`` form as the library's
variant sets (:func:`catalog_imperfect_variants`, or any set of
:data:`diffpy_deepstruc.library.VARIANT_SOURCES`), follow the ideal rows
(:func:`plan_catalog`); without them the file is exactly what it was before they
existed.  ``elements`` also takes presets (:data:`ELEMENT_PRESETS`).

Reproducibility: the parameters and the noise of structure row ``i`` come from a numpy
Generator seeded with ``SeedSequence(seed, spawn_key=(i,))``, so the file content
depends only on the configuration, never on the number of workers or the order in which
they finish.  The drawn parameters are rounded to float32 (the stored precision) and the
PDF is computed from the stored float32 coordinates, so every stored PDF is reproduced
exactly by ``pdf_batch`` from what the file holds.

Robustness: the work is done in blocks of structures, written in row order to
``<output>.partial``; after each block the ``completed`` attribute is raised and the
file flushed, so an interrupted run keeps every finished block.  Running the same build
again resumes after the last finished block (it refuses when the arguments differ);
the partial file is renamed to the output only when complete.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import __version__
from .clusters import (
    STRUCTURE_TYPES,
    ClusterSpec,
    DistinctGeometries,
    build_cluster,
    check_elements,
    check_types,
    enumerate_clusters,
    enumerate_geometries,
    hcp_fraction,
    type_geometries,
    unit_cluster,
)
from .elements import (
    D_BLOCK_METALS,
    DEEPSTRUC_METALS,
    METALS,
    nearest_neighbour_distance,
    normalize_element,
)
from .errors import (
    CatalogError,
    DeepStrucError,
    ElementError,
    OutputExistsError,
    ParameterError,
)
from .fileio import check_writable

__all__ = [
    "FORMAT",
    "VERSION",
    "PARAM_COLUMNS",
    "SimulationRanges",
    "CatalogConfig",
    "ELEMENT_PRESETS",
    "IMPERFECT_KINDS",
    "DEFAULT_IMPERFECT_COUNT",
    "ImperfectOptions",
    "VariantSpec",
    "expand_elements",
    "catalog_imperfect_variants",
    "imperfect_kind",
    "plan_imperfect",
    "relaxed_cluster",
    "rebuild_structure",
    "BuildReport",
    "Catalog",
    "build_catalog",
    "open_catalog",
    "simulate_structure",
    "catalog_stats",
    "plan_catalog",
    "format_stats",
    "partial_path",
    "unit_physical",
    "one_torch_thread",
]

#: ``format`` attribute of a catalog file.
FORMAT = "diffpy-deepstruc-catalog"
#: ``version`` attribute this module writes and reads.
VERSION = 1
#: Columns of ``/pdfs/params``.
PARAM_COLUMNS: tuple[str, ...] = (
    "qmin",
    "qmax",
    "qdamp",
    "qbroad",
    "delta2",
    "uiso",
    "scale",
    "noise",
)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SimulationRanges:
    """Ranges ``(low, high)`` of the per-PDF parameters, each drawn uniformly.

    The defaults cover real synchrotron total-scattering data of nanoparticles (see
    ``docs/catalog.md`` for the reasoning):

    Parameters
    ----------
    qmin : (float, float)
        Lowest Q of the transform (1/A): 0.5-1.5 (beam stop, small-angle cut-off).
    qmax : (float, float)
        Highest Q (1/A): 16-30, from lab-like and PDF-optimised 60-70 keV setups to
        high-energy beamlines.
    qdamp : (float, float)
        Instrument resolution damping (1/A): 0.01-0.06 (area detectors at short
        distance give 0.03-0.06, high-resolution setups ~0.01).
    qbroad : (float, float)
        Resolution peak broadening (1/A): 0-0.03.
    delta2 : (float, float)
        Correlated-motion sharpening (A^2): 0-5.
    uiso : (float, float)
        Isotropic displacement parameter of every atom (A^2): 0.002-0.02, from cold
        bulk-like metals to small, disordered, room-temperature particles.
    scale : (float, float)
        Overall scale factor: 0.5-1.5 (the model normalises its input, so this mainly
        keeps it scale-blind).
    noise : (float, float)
        Noise level: rms of the added noise / max|G| of the noiseless PDF: 0-0.03.
        The noise is white in F(Q) times Q (counting statistics on S(Q)), band-limited
        to qmin..qmax and transformed to r, so it is correlated over ~pi/qmax like the
        noise of real G(r).
    """

    qmin: tuple[float, float] = (0.5, 1.5)
    qmax: tuple[float, float] = (16.0, 30.0)
    qdamp: tuple[float, float] = (0.01, 0.06)
    qbroad: tuple[float, float] = (0.0, 0.03)
    delta2: tuple[float, float] = (0.0, 5.0)
    uiso: tuple[float, float] = (0.002, 0.02)
    scale: tuple[float, float] = (0.5, 1.5)
    noise: tuple[float, float] = (0.0, 0.03)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ParameterError(
                    f"range {f.name} must be a pair (low, high), got {value!r}"
                ) from None
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise ParameterError(
                    f"range {f.name} must have finite low <= high, got {value!r}"
                )
            object.__setattr__(self, f.name, (lo, hi))
        for name in ("qmin", "qdamp", "qbroad", "delta2", "uiso", "noise"):
            if getattr(self, name)[0] < 0:
                raise ParameterError(
                    f"range {name} must not go below 0, got {getattr(self, name)}"
                )
        if self.scale[0] <= 0:
            raise ParameterError(f"range scale must be positive, got {self.scale}")
        if self.qmax[0] <= self.qmin[1]:
            raise ParameterError(
                f"every qmax must exceed every qmin: qmax {self.qmax} vs qmin {self.qmin}"
            )

    def to_dict(self) -> dict[str, list[float]]:
        """``{name: [low, high]}`` in :data:`PARAM_COLUMNS` order."""
        return {name: list(getattr(self, name)) for name in PARAM_COLUMNS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimulationRanges:
        """Ranges from a mapping; missing names keep their defaults."""
        unknown = sorted(set(data) - set(PARAM_COLUMNS))
        if unknown:
            raise ParameterError(
                f"unknown simulation range(s) {unknown}; allowed: {PARAM_COLUMNS}"
            )
        return cls(**{k: tuple(v) for k, v in data.items()})

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One draw of every parameter, in :data:`PARAM_COLUMNS` order, as float32."""
        lo = np.array([getattr(self, n)[0] for n in PARAM_COLUMNS])
        hi = np.array([getattr(self, n)[1] for n in PARAM_COLUMNS])
        return rng.uniform(lo, hi).astype(np.float32)


# --------------------------------------------------------------------------- elements


def _element_block(sym: str) -> str:
    """Periodic-table block (``"s"``, ``"p"``, ``"d"``, ``"f"``) of an element.

    A definition: the f block is La..Lu and Ac..Lr (as
    :data:`diffpy_deepstruc.elements.D_BLOCK_METALS`, which leaves La and Lu out of the
    d block), the d block groups 3-12 of periods 4-7, the s block groups 1-2 and He.
    """
    from ase.data import atomic_numbers

    z = atomic_numbers[sym]
    if 57 <= z <= 71 or 89 <= z <= 103:
        return "f"
    if 21 <= z <= 30 or 39 <= z <= 48 or 72 <= z <= 80 or 104 <= z <= 112:
        return "d"
    if z in (1, 2, 3, 4, 11, 12, 19, 20, 37, 38, 55, 56, 87, 88):
        return "s"
    return "p"


def _simulable(sym: str) -> bool:
    """Whether the Debye engine has an X-ray form factor for ``sym`` (up to Cf)."""
    from .xraydata import has_f0

    return has_f0(sym)


def _metals_of(blocks: str) -> tuple[str, ...]:
    return tuple(s for s in METALS if _element_block(s) in blocks and _simulable(s))


#: Names ``--elements`` accepts besides element symbols: name -> function giving the
#: metals (order of Z).  ``d-block`` is the default set; ``all-metals``, ``sp-metals``
#: and ``f-metals`` keep only the metals the Debye engine has form factors for (Z <= 98).
ELEMENT_PRESETS: dict[str, Callable[[], tuple[str, ...]]] = {
    "d-block": lambda: tuple(D_BLOCK_METALS),
    "deepstruc": lambda: tuple(DEEPSTRUC_METALS),
    "sp-metals": lambda: _metals_of("sp"),
    "f-metals": lambda: _metals_of("f"),
    "all-metals": lambda: _metals_of("spdf"),
}


def expand_elements(words: Iterable[str] | str | None) -> tuple[str, ...] | None:
    """Element symbols and :data:`ELEMENT_PRESETS` names -> metal symbols.

    Presets expand in place; symbols are normalised; duplicates are dropped (first kept).
    ``None`` stays ``None`` (the default, ``d-block``).

    Raises
    ------
    ElementError
        Unknown symbol, a non-metal, or a metal without X-ray form factor (Z > 98: no
        PDF can be simulated).
    """
    if words is None:
        return None
    if isinstance(words, str):
        words = [words]
    out: list[str] = []
    for w in words:
        key = str(w).strip().lower()
        syms = ELEMENT_PRESETS[key]() if key in ELEMENT_PRESETS else (str(w),)
        for sym in syms:
            el = normalize_element(sym)
            if el not in out:
                out.append(el)
    checked = check_elements(out)
    bad = [el for el in checked if not _simulable(el)]
    if bad:
        raise ElementError(
            f"no X-ray form factor for {', '.join(bad)}: their PDFs cannot be simulated"
        )
    return checked


# --------------------------------------------------------------------------- imperfect

#: Kinds of imperfect structures the catalog can add, in row order (docs/catalog.md).
IMPERFECT_KINDS: tuple[str, ...] = (
    "offcentre",
    "ellipsoid",
    "rod",
    "vacancies",
    "partial",
    "twin",
    "relaxed",
)
#: Structures per kind and metal when no count is given.
DEFAULT_IMPERFECT_COUNT: int = 40
#: Name of the catalog's own size-aware variant grid (:func:`catalog_imperfect_variants`);
#: any other name is looked up in :data:`diffpy_deepstruc.library.VARIANT_SOURCES`.
CATALOG_SOURCE: str = "catalog"


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ParameterError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ImperfectOptions:
    """Which imperfect structures a catalog adds to the ideal ones.

    Parameters
    ----------
    kinds : sequence of str, optional
        Of :data:`IMPERFECT_KINDS` (default all), stored in that order.
    counts : int or mapping, optional
        Structures per kind and metal: one number for every kind, or ``{kind: n}``
        (kinds not named get :data:`DEFAULT_IMPERFECT_COUNT`).  A kind with fewer
        distinct shapes in ``n_min..n_max`` gives all it has.
    source : str
        Variant grid of the geometric kinds: ``"catalog"`` (default,
        :func:`catalog_imperfect_variants`, sized to ``n_min..n_max``) or a set registered
        in :data:`diffpy_deepstruc.library.VARIANT_SOURCES` (``"imperfect"``: the shape
        library's set, 250 atoms and up).
    """

    kinds: tuple[str, ...] | None = None
    counts: Any = None
    source: str = CATALOG_SOURCE

    def __post_init__(self) -> None:
        kinds = IMPERFECT_KINDS if self.kinds is None else self.kinds
        if isinstance(kinds, str):
            kinds = [kinds]
        wanted = [str(k).strip().lower() for k in kinds]
        unknown = sorted(set(wanted) - set(IMPERFECT_KINDS))
        if unknown:
            raise ParameterError(
                f"unknown imperfect kind(s) {unknown}; choose from {', '.join(IMPERFECT_KINDS)}"
            )
        if not wanted:
            raise ParameterError("no imperfect kinds given")
        kinds = tuple(k for k in IMPERFECT_KINDS if k in wanted)
        object.__setattr__(self, "kinds", kinds)
        raw = self.counts
        if raw is None or isinstance(raw, (int, np.integer)) and not isinstance(raw, bool):
            n = DEFAULT_IMPERFECT_COUNT if raw is None else _check_count("count", raw)
            counts = {k: n for k in kinds}
        elif isinstance(raw, Mapping):
            extra = sorted(set(raw) - set(kinds))
            if extra:
                raise ParameterError(
                    f"counts given for kind(s) {extra} that are not selected ({', '.join(kinds)})"
                )
            counts = {
                k: _check_count(f"count of {k}", raw.get(k, DEFAULT_IMPERFECT_COUNT))
                for k in kinds
            }
        else:
            raise ParameterError(f"counts must be an integer or a mapping, got {raw!r}")
        object.__setattr__(self, "counts", counts)
        if not isinstance(self.source, str) or not self.source.strip():
            raise ParameterError(f"source must be a variant-set name, got {self.source!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the ``imperfect`` entry of the catalog's ``config``)."""
        return {
            "kinds": list(self.kinds or ()),
            "counts": dict(self.counts),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImperfectOptions:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping):
            raise ParameterError(f"imperfect options must be a mapping, got {data!r}")
        unknown = sorted(set(data) - {"kinds", "counts", "source"})
        if unknown:
            raise ParameterError(f"unknown imperfect option(s) {unknown}")
        kinds = data.get("kinds")
        return cls(
            kinds=tuple(kinds) if kinds is not None else None,
            counts=data.get("counts"),
            source=data.get("source", CATALOG_SOURCE),
        )


class VariantSpec(NamedTuple):
    """One imperfect catalog structure: how to build it.

    ``rebuild_structure(type, element, {"builder": maker, "args": args}, nn)`` rebuilds
    it; ``maker`` names a builder of :data:`diffpy_deepstruc.library.SHAPE_BUILDERS` (or
    ``"relaxed"``, :func:`relaxed_cluster`), ``variant`` is its kind
    (:data:`IMPERFECT_KINDS`).
    """

    type: str
    element: str
    args: dict[str, Any]
    natoms: int
    maker: str
    variant: str


#: Atoms per nn^3 of the lattices (nn = 1), for sizing the variant grid.
_DENSITY: dict[str, float] = {
    "fcc": math.sqrt(2.0),
    "hcp": math.sqrt(2.0),
    "bcc": 3.0 * math.sqrt(3.0) / 4.0,
    "sc": 1.0,
}
#: Centre offsets (nn) of the off-centre spheres (the first two are the library's).
_OFFSETS: tuple[tuple[float, float, float], ...] = (
    (0.25, 0.15, 0.1),
    (0.5, 0.3, 0.2),
    (0.1, 0.4, 0.3),
)
#: Vacancy counts tried on each ideal cluster (at most 15 % of its atoms).
_VACANCIES: tuple[int, ...] = (1, 2, 4, 7, 11, 16)
#: Kept fractions of the outer shell of the partial-shell particles.
_SHELL_FRACTIONS: tuple[float, ...] = (0.25, 0.5, 0.75)


def _steps(lo: float, hi: float, step: float) -> list[float]:
    return [round(lo + k * step, 3) for k in range(int(math.floor((hi - lo) / step)) + 1)]


def _sphere_radius(n: float, density: float) -> float:
    return (3.0 * n / (4.0 * math.pi * density)) ** (1.0 / 3.0)


def catalog_imperfect_variants(n_min: int, n_max: int) -> Iterator[tuple[str, str, dict]]:
    """The catalog's grid of imperfect shapes, sized to ``n_min..n_max`` atoms.

    Same form as the shape library's variant sets
    (:func:`diffpy_deepstruc.library.imperfect_variants`): ``(type, builder name,
    args)`` with builders of :mod:`diffpy_deepstruc.imperfect` (and the library's
    ``"vacancies"``), in a fixed order:

    - off-centre spheres of fcc, bcc, sc and hcp, radius 1.5 nn and up in 0.25 nn steps,
      three centre offsets;
    - ellipsoids (fcc, bcc, hcp; semi-axes a : a : 1.5a and a : a : 2a along [001],
      [111] and [110]; a from 1.25 nn in 0.25 nn steps);
    - rods (fcc along [001], [110], [111]; bcc [001], [111]; hcp [001], [100]; radius
      from 1 nn in 0.25 nn steps, length 3, 4 and 6 radii);
    - 1, 2, 4, 7, 11, 16 surface vacancies (seed 0, at most 15 % of the atoms) of every
      distinct icosahedron, decahedron, octahedron, fcc, bcc and hcp cluster;
    - icosahedra, decahedra and octahedra whose outer shell keeps 25, 50 or 75 %;
    - fcc particles of 4-14 close-packed layers with one central, one off-centre or two
      twin planes, cut as spheres (half-height + 0.25 or 0.75 nn) and hexagonal prisms
      (apothem 2 or 3 nn): radii the ideal stacking family does not use.

    Radii and lengths stop where the shapes outgrow ``n_max``; the caller builds each
    and drops those outside ``n_min..n_max`` or equal to another structure.
    """
    n_hi = 1.3 * n_max  # cuts lose atoms to the pruning of dangling sites
    for lattice in ("fcc", "bcc", "sc", "hcp"):
        r_hi = _sphere_radius(n_hi, _DENSITY[lattice]) + 0.5
        for radius in _steps(1.5, r_hi, 0.25):
            for off in _OFFSETS:
                yield (
                    lattice,
                    "imperfect.lattice_sphere",
                    {"lattice": lattice, "radius": radius, "offset": list(off)},
                )
    for lattice in ("fcc", "bcc", "hcp"):
        for aspect in (1.5, 2.0):
            a_hi = _sphere_radius(n_hi / aspect, _DENSITY[lattice]) + 0.5
            for axis in ([0, 0, 1], [1, 1, 1], [1, 1, 0]):
                for a in _steps(1.25, a_hi, 0.25):
                    yield (
                        lattice,
                        "imperfect.lattice_ellipsoid",
                        {
                            "lattice": lattice,
                            "semi_axes": [a, a, round(aspect * a, 3)],
                            "axis": list(axis),
                        },
                    )
    rod_axes = {
        "fcc": ([0, 0, 1], [1, 1, 0], [1, 1, 1]),
        "bcc": ([0, 0, 1], [1, 1, 1]),
        "hcp": ([0, 0, 1], [1, 0, 0]),
    }
    for lattice, axes in rod_axes.items():
        for ratio in (3, 4, 6):
            # volume pi r^2 (ratio r) * density <= n_hi
            r_hi = (n_hi / (math.pi * ratio * _DENSITY[lattice])) ** (1.0 / 3.0) + 0.5
            for axis in axes:
                for radius in _steps(1.0, r_hi, 0.25):
                    yield (
                        lattice,
                        "imperfect.lattice_rod",
                        {
                            "lattice": lattice,
                            "radius": radius,
                            "length": round(ratio * radius, 3),
                            "axis": list(axis),
                        },
                    )
    k_max = max(_VACANCIES)
    for shape in ("icosahedron", "decahedron", "octahedron", "fcc", "bcc", "hcp"):
        for args, n in type_geometries(shape, max(n_min, 2), n_max + k_max):
            for k in _VACANCIES:
                if k <= 0.15 * n and n_min <= n - k <= n_max:
                    yield (
                        shape,
                        "vacancies",
                        {"shape": shape, "args": args, "k": k, "seed": 0},
                    )
    for shape in ("icosahedron", "decahedron", "octahedron"):
        for args, _n in type_geometries(shape, 13, 2 * n_max):
            for fraction in _SHELL_FRACTIONS:
                yield (
                    shape,
                    "imperfect.incomplete_shell",
                    {"shape": shape, "args": args, "fraction": fraction, "seed": 0},
                )
    spacing = math.sqrt(2.0 / 3.0)
    for n_layers in range(4, 15):
        twins: list[list[int]] = []
        for tw in ([n_layers // 2], [n_layers // 3], [n_layers // 3, (2 * n_layers) // 3]):
            if (
                all(1 <= t <= n_layers - 2 for t in tw)
                and sorted(set(tw)) == tw
                and tw not in twins
            ):
                twins.append(tw)
        half = (n_layers - 1) / 2.0 * spacing
        cuts = [("sphere", round(half + e, 3)) for e in (0.25, 0.75)] + [
            ("prism", a) for a in (2.0, 3.0)
        ]
        for tw in twins:
            for shape, radius in cuts:
                yield (
                    "stacking",
                    "imperfect.twinned_particle",
                    {"n_layers": n_layers, "twins": tw, "radius": radius, "shape": shape},
                )


def imperfect_kind(maker: str, args: Mapping[str, Any]) -> str | None:
    """The :data:`IMPERFECT_KINDS` entry of a variant ``(builder name, args)``, or None
    for a builder the catalog does not classify (left out of catalogs)."""
    if maker == "imperfect.lattice_sphere":
        off = args.get("offset", (0, 0, 0))
        return "offcentre" if any(float(x) != 0 for x in off) else None
    return {
        "imperfect.lattice_ellipsoid": "ellipsoid",
        "imperfect.lattice_rod": "rod",
        "vacancies": "vacancies",
        "imperfect.incomplete_shell": "partial",
        "imperfect.twinned_particle": "twin",
        "relaxed": "relaxed",
    }.get(maker)


def _variant_source(name: str) -> Callable[[int, int], Iterable[tuple[str, str, dict]]]:
    if name == CATALOG_SOURCE:
        return catalog_imperfect_variants
    from .library import VARIANT_SOURCES

    if name not in VARIANT_SOURCES:
        raise ParameterError(
            f"unknown variant set {name!r}; choose {CATALOG_SOURCE!r} or one of "
            f"{', '.join(sorted(VARIANT_SOURCES)) or 'none'} (library.register_variants)"
        )
    return VARIANT_SOURCES[name]


def _evenly(items: Sequence[tuple[int, int]], count: int) -> list[int]:
    """``count`` of ``items`` = (natoms, index), spread evenly over the sizes; returns
    the chosen indices in their original order."""
    if count >= len(items):
        return sorted(i for _, i in items)
    if count == 0:
        return []
    by_size = sorted(items)
    pos = np.unique(np.round(np.linspace(0, len(by_size) - 1, count)).astype(int))
    return sorted(by_size[p][1] for p in pos)


def plan_imperfect(
    options: ImperfectOptions,
    types: Sequence[str],
    n_min: int,
    n_max: int,
    ideal: Sequence[tuple[str, dict[str, Any], int]],
) -> list[tuple[str, str, dict[str, Any], int, str]]:
    """The imperfect geometries of a catalog (the same for every metal).

    Every shape of the variant source of a selected kind and type is built at nn = 1;
    shapes outside ``n_min..n_max``, builds that fail (a cut left empty, vacancies that
    would leave a dangling atom), unphysical ones (a pair closer than 0.8 nn, an atom
    with no neighbour within 1.2 nn) and geometries equal to an ideal cluster or to an
    earlier variant (:class:`~diffpy_deepstruc.clusters.DistinctGeometries`) are
    dropped.  Of the rest, ``options.counts[kind]`` per kind are kept, spread evenly
    over the atom counts.  ``"relaxed"`` picks its count the same way among the
    ``ideal`` geometries (relaxation happens per metal when the structure is built).

    Parameters
    ----------
    options : ImperfectOptions
    types : sequence of str
        Structure types kept (a variant's type is that of its parent shape).
    n_min, n_max : int
        Atom-count bounds.
    ideal : list of (type, args, natoms)
        The ideal geometries (:func:`~diffpy_deepstruc.clusters.enumerate_geometries`).

    Returns
    -------
    list of (type, builder name, args, natoms, kind)
        Kinds in the order of :data:`IMPERFECT_KINDS`, each in source order.
    """
    seen = DistinctGeometries()
    for t, args, _ in ideal:
        seen.add(unit_cluster(t, args).positions)
    kinds = set(options.kinds or ())
    found: dict[str, list[tuple[str, str, dict[str, Any], int]]] = {
        k: [] for k in IMPERFECT_KINDS
    }
    geometric = kinds - {"relaxed"}
    parents: dict[str, Any] = {}
    if geometric:
        for t, maker, args in _variant_source(options.source)(n_min, n_max):
            kind = imperfect_kind(maker, args)
            if kind not in geometric or t not in types:
                continue
            try:
                xyz = _unit_variant(maker, args, parents)
            except DeepStrucError:
                continue
            n = len(xyz)
            if n_min <= n <= n_max and unit_physical(xyz) and seen.add(xyz):
                found[kind].append((t, maker, args, n))
    if "relaxed" in kinds:
        found["relaxed"] = [
            (t, "relaxed", {"maker": t, "args": args, "method": "auto"}, n)
            for t, args, n in ideal
        ]
    out: list[tuple[str, str, dict[str, Any], int, str]] = []
    for kind in IMPERFECT_KINDS:
        if kind not in kinds:
            continue
        rows = found[kind]
        chosen = _evenly([(r[3], i) for i, r in enumerate(rows)], options.counts[kind])
        out += [(*rows[i], kind) for i in chosen]
    return out


#: Closest pair (nn) a variant may have, and the distance within which every atom must
#: have a neighbour (nn; above bcc's second shell at 1.155, below sc's at 1.414).
MIN_PAIR_NN: float = 0.8
ISOLATED_NN: float = 1.2


def unit_physical(xyz: np.ndarray) -> bool:
    """No pair closer than :data:`MIN_PAIR_NN` and no atom without a neighbour within
    :data:`ISOLATED_NN` (coordinates in nn units)."""
    from scipy.spatial import cKDTree

    if len(xyz) < 2:
        return False
    d, _ = cKDTree(xyz).query(xyz, k=2)
    return bool(d[:, 1].min() >= MIN_PAIR_NN and d[:, 1].max() <= ISOLATED_NN)


def _unit_variant(maker: str, args: dict[str, Any], parents: dict[str, Any]) -> np.ndarray:
    """Coordinates (nn = 1) of a variant, as :func:`diffpy_deepstruc.library.
    unit_coordinates`; the ideal parents of ``"vacancies"`` are built once (``parents``
    caches them), which is what :func:`diffpy_deepstruc.library.vacancy_shape` does."""
    if maker == "vacancies" and set(args) == {"shape", "args", "k", "seed"}:
        from .imperfect import surface_vacancies

        key = json.dumps([args["shape"], args["args"]], sort_keys=True)
        if key not in parents:
            parents[key] = unit_cluster(args["shape"], dict(args["args"]))
        atoms = surface_vacancies(parents[key], args["k"], seed=args["seed"], nn=1.0)
        xyz = atoms.positions
        return xyz - xyz.mean(axis=0)
    from .library import unit_coordinates

    return unit_coordinates(maker, args)


def _resolve_builder(maker: str) -> Callable[..., Any]:
    if maker == "relaxed":
        return relaxed_cluster
    from .library import _builder

    return _builder(maker)


def relaxed_cluster(
    element: str,
    maker: str,
    args: dict[str, Any],
    method: str = "auto",
    nn: float | None = None,
) -> Any:
    """A catalog shape with its surface relaxed for ``element``.

    Builds ``maker(element, **args, nn=nn)`` (a structure type of
    :mod:`diffpy_deepstruc.clusters` or a builder of
    :data:`diffpy_deepstruc.library.SHAPE_BUILDERS`) and relaxes it with
    :func:`diffpy_deepstruc.imperfect.relax_surface`: ASE's EMT for Al, Cu, Ag, Au, Ni,
    Pd, Pt (up to 400 atoms), the contraction model otherwise.  Unlike the other
    builders the result depends on the element, not only on ``nn``.

    Returns
    -------
    ase.Atoms
        ``info["relaxation"]`` says which model was used.
    """
    from .imperfect import BULK_COORDINATION, relax_surface

    if maker == "relaxed":
        raise ParameterError("a relaxed shape cannot be relaxed again")
    d = nearest_neighbour_distance(element) if nn is None else float(nn)
    atoms = _resolve_builder(maker)(element, **args, nn=d)
    if maker in BULK_COORDINATION and "lattice" not in atoms.info:
        atoms.info["lattice"] = maker  # bulk coordination of the contraction model
    return relax_surface(atoms, method=method, nn=d)


def _parse_builder(structure_type: str, builder: str | Mapping) -> tuple[str, dict]:
    """``(builder name, args)`` of a ``/structures/builder`` entry: an object with
    exactly the keys ``builder`` and ``args`` names a builder; any other object holds the
    arguments of the ``structure_type`` builder (ideal rows, and every row of catalogs
    written before imperfect variants existed)."""
    data = json.loads(builder) if isinstance(builder, str) else dict(builder)
    if not isinstance(data, dict):
        raise CatalogError(f"builder entry {builder!r} is not a JSON object")
    if set(data) == {"builder", "args"}:
        return str(data["builder"]), dict(data["args"])
    return structure_type, data


def rebuild_structure(
    structure_type: str, element: str, builder: str | Mapping, nn: float | None = None
) -> Any:
    """Rebuild a catalog structure from its ``type``, ``element`` and ``builder`` entry.

    Parameters
    ----------
    structure_type : str
        ``/structures/type``.
    element : str
        ``/structures/element``.
    builder : str or mapping
        ``/structures/builder`` (JSON text or the parsed object).
    nn : float, optional
        ``/structures/nn`` (default the element's).

    Returns
    -------
    ase.Atoms
        The structure as built (the catalog stores these coordinates as float32).
    """
    maker, args = _parse_builder(structure_type, builder)
    if maker == structure_type:
        return build_cluster(structure_type, element, args, nn)
    return _resolve_builder(maker)(element, **args, nn=nn)


def _stacking_sequence(maker: str, args: Mapping[str, Any]) -> str | None:
    if maker == "stacking":
        return str(args["sequence"])
    if maker == "imperfect.twinned_particle":
        from .imperfect import twin_sequence

        return twin_sequence(int(args["n_layers"]), list(args["twins"]))
    if maker == "relaxed":
        return _stacking_sequence(str(args["maker"]), args["args"])
    if maker in ("vacancies", "imperfect.incomplete_shell"):
        return _stacking_sequence(str(args["shape"]), args["args"])
    return None


@dataclass(frozen=True)
class CatalogConfig:
    """Everything that determines a catalog's content.

    Parameters
    ----------
    elements : sequence of str, optional
        Metals and :data:`ELEMENT_PRESETS` names (default
        :data:`diffpy_deepstruc.elements.D_BLOCK_METALS`, the ``d-block`` preset).
    types : sequence of str, optional
        Structure types (default all of :data:`diffpy_deepstruc.clusters.STRUCTURE_TYPES`).
    n_min, n_max : int
        Atom-count bounds of the clusters (default 5..200); ``n_max`` is also the padded
        size of ``/structures/xyz``.
    variants : int
        PDFs simulated per structure, each with its own parameter draw (default 4).
    seed : int
        Seed of the parameter and noise draws (default 0).
    rmin, rmax, rstep : float
        Stored r-grid ``rmin <= r < rmax`` (A), default 0-30 A in steps of 0.05 A (600
        points), as :meth:`diffpy_deepstruc.debye.PDFParameters.r_grid`.
    ranges : SimulationRanges
        Parameter ranges (default :class:`SimulationRanges`).
    imperfect : ImperfectOptions, optional
        Imperfect structures added after the ideal ones (default none: the catalog is
        the ideal enumeration alone, byte for byte as before this option existed).
    """

    elements: tuple[str, ...] | None = None
    types: tuple[str, ...] | None = None
    n_min: int = 5
    n_max: int = 200
    variants: int = 4
    seed: int = 0
    rmin: float = 0.0
    rmax: float = 30.0
    rstep: float = 0.05
    ranges: SimulationRanges = field(default_factory=SimulationRanges)
    imperfect: ImperfectOptions | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "elements", check_elements(expand_elements(self.elements)))
        if isinstance(self.imperfect, Mapping):
            object.__setattr__(
                self, "imperfect", ImperfectOptions.from_dict(self.imperfect)
            )
        if self.imperfect is not None and not isinstance(self.imperfect, ImperfectOptions):
            raise ParameterError("imperfect must be an ImperfectOptions or None")
        object.__setattr__(self, "types", check_types(self.types))
        for name, minimum in (("n_min", 1), ("n_max", 1), ("variants", 1), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
                raise ParameterError(f"{name} must be an integer >= {minimum}, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.n_min > self.n_max:
            raise ParameterError(
                f"n_min ({self.n_min}) must not exceed n_max ({self.n_max})"
            )
        if isinstance(self.ranges, Mapping):
            object.__setattr__(self, "ranges", SimulationRanges.from_dict(self.ranges))
        if not isinstance(self.ranges, SimulationRanges):
            raise ParameterError("ranges must be a SimulationRanges")
        for name in ("rmin", "rmax", "rstep"):
            object.__setattr__(self, name, float(getattr(self, name)))
        self.pdf_parameters()  # validates the r-grid

    def pdf_parameters(self, **values: float):
        """A :class:`~diffpy_deepstruc.debye.PDFParameters` on this r-grid."""
        from .debye import PDFParameters

        return PDFParameters(rmin=self.rmin, rmax=self.rmax, rstep=self.rstep, **values)

    def r_grid(self) -> np.ndarray:
        """The stored r-grid (A)."""
        return self.pdf_parameters().r_grid()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored as the ``config`` attribute); the ``imperfect`` key is
        present only when imperfect structures are asked for."""
        out = {
            "elements": list(self.elements or ()),
            "types": list(self.types or ()),
            "n_min": self.n_min,
            "n_max": self.n_max,
            "variants": self.variants,
            "seed": self.seed,
            "rmin": self.rmin,
            "rmax": self.rmax,
            "rstep": self.rstep,
            "ranges": self.ranges.to_dict(),
            "distribution": "uniform",
            "noise_model": "white in F(Q)*Q on [qmin, qmax), sine-transformed; "
            "noise = rms / max|G|",
        }
        if self.imperfect is not None:
            out["imperfect"] = self.imperfect.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CatalogConfig:
        """Inverse of :meth:`to_dict` (informational keys are ignored)."""
        keys = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in keys}
        if "ranges" in kw:
            kw["ranges"] = SimulationRanges.from_dict(kw["ranges"])
        if kw.get("imperfect") is not None:
            kw["imperfect"] = ImperfectOptions.from_dict(kw["imperfect"])
        for k in ("elements", "types"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)


# --------------------------------------------------------------------------- simulation


def _noise(
    rng: np.random.Generator,
    r: np.ndarray,
    rstep: float,
    qmin: float,
    qmax: float,
    rms: float,
) -> np.ndarray:
    """Band-limited noise of G(r) with the given rms (away from r = 0).

    White Gaussian noise on S(Q), i.e. ``Q * eps`` on F(Q), for Q in ``[qmin, qmax)``
    on the grid ``Q_k = k dq``, ``dq = pi / (N rstep)`` with ``N`` the power of two
    >= ``(r[-1] + 10) / rstep``, sine-transformed like G(r): ``(2/pi) dq sum_k Q_k eps_k
    sin(Q_k r)``, evaluated on the grid ``r = j rstep`` by one FFT.
    """
    n = 1 << max(1, math.ceil(math.log2((float(r[-1]) + 10.0) / rstep)))
    dq = math.pi / (n * rstep)
    k = np.arange(math.ceil(qmin / dq), math.ceil(qmax / dq))
    k = k[(k * dq >= qmin) & (k * dq < qmax) & (k < n)]
    if rms == 0 or len(k) == 0:
        return np.zeros_like(r)
    q = k * dq
    a = np.zeros(2 * n)
    a[k] = q * rng.standard_normal(len(k))
    # sum_k a_k sin(pi k j / n) = -Im(FFT(a))_j for a of length 2n
    j = np.rint(r / rstep).astype(int)
    g = -np.fft.fft(a).imag[j] * (2.0 / math.pi) * dq
    # rms of that sum away from r = 0: (2/pi) dq sqrt(sum q^2 / 2)
    expected = (2.0 / math.pi) * dq * math.sqrt(float((q * q).sum()) / 2.0)
    return g * (rms / expected)


def simulate_structure(
    xyz: np.ndarray, element: str, config: CatalogConfig, row: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``config.variants`` PDFs of catalog structure ``row``.

    Parameters
    ----------
    xyz : ndarray [N, 3]
        Cartesian coordinates (A), as stored (float32 values).
    element : str
        Element of every atom.
    config : CatalogConfig
        Ranges, seed, r-grid.
    row : int
        Structure row in the catalog: seeds the draws (``SeedSequence(seed,
        spawn_key=(row,))``).

    Returns
    -------
    g : ndarray float32 [variants, n_r]
        ``pdf_batch`` output with the drawn parameters (scale applied), plus noise.
    params : ndarray float32 [variants, len(PARAM_COLUMNS)]
        The drawn parameters; the PDFs were computed from exactly these values.
    """
    from .debye import pdf_batch

    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(int(row),)))
    xyz = np.asarray(xyz, dtype=np.float32).astype(np.float64)
    n = len(xyz)
    r = config.r_grid()
    g = np.empty((config.variants, len(r)), dtype=np.float32)
    params = np.empty((config.variants, len(PARAM_COLUMNS)), dtype=np.float32)
    for k in range(config.variants):
        p = config.ranges.sample(rng)
        v = dict(zip(PARAM_COLUMNS, (float(x) for x in p), strict=True))
        pp = config.pdf_parameters(
            qmin=v["qmin"],
            qmax=v["qmax"],
            qdamp=v["qdamp"],
            qbroad=v["qbroad"],
            delta2=v["delta2"],
            scale=v["scale"],
        )
        _, G = pdf_batch([(xyz, [element] * n, np.full(n, v["uiso"]))], pp)
        G = G[0]
        if v["noise"] > 0:
            rms = v["noise"] * float(np.abs(G).max())
            G = G + _noise(rng, r, config.rstep, v["qmin"], v["qmax"], rms)
        g[k] = G
        params[k] = p
    return g, params


def _simulate_block(
    block: int,
    start: int,
    specs: Sequence[ClusterSpec | VariantSpec],
    config_dict: dict[str, Any],
) -> tuple[int, dict[str, np.ndarray]]:
    """Build and simulate one block of structures (runs in a worker)."""
    config = CatalogConfig.from_dict(config_dict)
    B, K, n_max = len(specs), config.variants, config.n_max
    n_r = len(config.r_grid())
    out = {
        "xyz": np.zeros((B, n_max, 3), dtype=np.float32),
        "natoms": np.zeros(B, dtype=np.int32),
        "nn": np.zeros(B, dtype=np.float32),
        "hcp_fraction": np.full(B, np.nan, dtype=np.float32),
        "g": np.zeros((B * K, n_r), dtype=np.float32),
        "params": np.zeros((B * K, len(PARAM_COLUMNS)), dtype=np.float32),
    }
    with one_torch_thread():
        for i, spec in enumerate(specs):
            _simulate_one(i, start + i, spec, config, out)
    return block, out


def _simulate_one(
    i: int,
    row: int,
    spec: ClusterSpec | VariantSpec,
    config: CatalogConfig,
    out: dict[str, np.ndarray],
) -> None:
    """Build structure ``spec`` (catalog row ``row``) into slot ``i`` of a block."""
    K = config.variants
    nn = nearest_neighbour_distance(spec.element)
    maker = spec.maker if isinstance(spec, VariantSpec) else spec.type
    if isinstance(spec, VariantSpec):
        atoms = _resolve_builder(maker)(spec.element, **spec.args, nn=nn)
    else:
        atoms = build_cluster(spec.type, spec.element, spec.args, nn=nn)
    if len(atoms) != spec.natoms:  # pragma: no cover - enumeration/builder mismatch
        raise CatalogError(
            f"{maker} {spec.args}: built {len(atoms)} atoms, enumerated {spec.natoms}"
        )
    xyz = atoms.positions.astype(np.float32)
    out["xyz"][i, : len(xyz)] = xyz
    out["natoms"][i] = len(xyz)
    out["nn"][i] = nn
    if spec.type == "stacking":
        seq = _stacking_sequence(maker, spec.args)
        if seq is not None:
            out["hcp_fraction"][i] = hcp_fraction(seq)
    g, params = simulate_structure(xyz, spec.element, config, row)
    out["g"][i * K : (i + 1) * K] = g
    out["params"][i * K : (i + 1) * K] = params


@contextlib.contextmanager
def one_torch_thread():
    """Run torch single-threaded: the workers provide the parallelism, and torch's own
    threads fighting over busy cores slow a small Debye sum down 10-20 times."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- storage


def partial_path(path: str | os.PathLike) -> Path:
    """Where an unfinished build of ``path`` is kept: ``<path>.partial``."""
    p = Path(path)
    return p.with_name(p.name + ".partial")


_STRUCTURE_SETS = ("xyz", "natoms", "element", "type", "builder", "nn", "hcp_fraction")
#: Datasets only catalogs with imperfect structures have (absent: every row is ideal).
_OPTIONAL_SETS = ("variant",)
_PDF_SETS = ("g", "structure", "params")


def _create_file(path: Path, config: CatalogConfig, n_planned: int, block_size: int):
    import h5py

    K, n_max = config.variants, config.n_max
    r = config.r_grid()
    h5 = h5py.File(path, "w")
    try:
        h5.attrs["format"] = FORMAT
        h5.attrs["version"] = VERSION
        h5.attrs["seed"] = config.seed
        h5.attrs["n_max"] = n_max
        h5.attrs["variants"] = K
        h5.attrs["created_with"] = __version__
        h5.attrs["config"] = json.dumps(config.to_dict(), sort_keys=True)
        h5.attrs["n_planned"] = n_planned
        h5.attrs["completed"] = 0
        h5.create_dataset("r", data=r.astype(np.float64))
        s = h5.create_group("structures")
        cb = max(1, min(block_size, 256))
        strd = h5py.string_dtype("utf-8")
        s.create_dataset(
            "xyz",
            shape=(0, n_max, 3),
            maxshape=(None, n_max, 3),
            dtype=np.float32,
            chunks=(cb, n_max, 3),
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
        for name, dt in (
            ("natoms", np.int32),
            ("element", strd),
            ("type", strd),
            ("builder", strd),
            ("nn", np.float32),
            ("hcp_fraction", np.float32),
        ):
            s.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dt, chunks=(1024,))
        if config.imperfect is not None:
            s.create_dataset(
                "variant", shape=(0,), maxshape=(None,), dtype=strd, chunks=(1024,)
            )
        p = h5.create_group("pdfs")
        p.create_dataset(
            "g", shape=(0, len(r)), maxshape=(None, len(r)), dtype=np.float32,
            chunks=(max(1, min(cb * K, 512)), len(r)),
        )  # fmt: skip
        p.create_dataset(
            "structure", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(4096,)
        )
        pr = p.create_dataset(
            "params",
            shape=(0, len(PARAM_COLUMNS)),
            maxshape=(None, len(PARAM_COLUMNS)),
            dtype=np.float32,
            chunks=(4096, len(PARAM_COLUMNS)),
        )
        pr.attrs["columns"] = json.dumps(list(PARAM_COLUMNS))
        h5.flush()
    except BaseException:
        h5.close()
        raise
    return h5


def _open_partial(path: Path, config: CatalogConfig, n_planned: int):
    """Open an unfinished build for resuming, after checking it matches ``config``."""
    import h5py

    try:
        h5 = h5py.File(path, "r+")
    except OSError as exc:
        raise CatalogError(
            f"{path}: unfinished catalog is unreadable ({exc}); pass --force "
            "(overwrite=True) to start over"
        ) from None
    try:
        attrs = h5.attrs
        if attrs.get("format") != FORMAT or int(attrs.get("version", -1)) != VERSION:
            raise CatalogError(
                f"{path}: not a version-{VERSION} catalog build; pass --force"
            )
        old = json.loads(attrs["config"])
        new = json.loads(json.dumps(config.to_dict(), sort_keys=True))
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise CatalogError(
                f"{path}: this unfinished build was started with other arguments "
                f"(different: {', '.join(diff)}); rerun with the same arguments to resume, "
                "or pass --force (overwrite=True) to start over"
            )
        if attrs.get("created_with") != __version__:
            raise CatalogError(
                f"{path}: started with diffpy-deepstruc {attrs.get('created_with')}, this is "
                f"{__version__}; pass --force (overwrite=True) to start over"
            )
        if int(attrs["n_planned"]) != n_planned:
            raise CatalogError(
                f"{path}: planned {int(attrs['n_planned'])} structures, the enumeration now "
                f"gives {n_planned}; pass --force (overwrite=True) to start over"
            )
        done = int(attrs["completed"])
        # Drop anything written after the last consistent state (a kill mid-block).
        for name in _STRUCTURE_SETS + _OPTIONAL_SETS:
            if name in h5["structures"]:
                h5["structures"][name].resize(done, axis=0)
        for name in _PDF_SETS:
            h5["pdfs"][name].resize(done * config.variants, axis=0)
        h5.flush()
    except BaseException:
        h5.close()
        raise
    return h5


def _builder_entry(spec: ClusterSpec | VariantSpec) -> str:
    """``/structures/builder`` of a row: the builder arguments (ideal rows, as before),
    or ``{"builder": name, "args": arguments}`` (imperfect rows)."""
    if isinstance(spec, VariantSpec):
        return json.dumps({"builder": spec.maker, "args": spec.args}, sort_keys=True)
    return json.dumps(spec.args, sort_keys=True)


def _append_block(
    h5, specs: Sequence[ClusterSpec | VariantSpec], res: dict[str, np.ndarray], K: int
) -> int:
    """Append one simulated block; raise ``completed`` and flush only afterwards."""
    m0 = int(h5.attrs["completed"])
    B = len(specs)
    m1 = m0 + B
    s, p = h5["structures"], h5["pdfs"]
    columns = {
        "xyz": res["xyz"],
        "natoms": res["natoms"],
        "element": [x.element for x in specs],
        "type": [x.type for x in specs],
        "builder": [_builder_entry(x) for x in specs],
        "nn": res["nn"],
        "hcp_fraction": res["hcp_fraction"],
    }
    if "variant" in s:
        columns["variant"] = [
            x.variant if isinstance(x, VariantSpec) else "ideal" for x in specs
        ]
    for name, values in columns.items():
        s[name].resize(m1, axis=0)
        s[name][m0:m1] = values
    rows = np.repeat(np.arange(m0, m1, dtype=np.int32), K)
    for name, values in (("g", res["g"]), ("structure", rows), ("params", res["params"])):
        p[name].resize(m1 * K, axis=0)
        p[name][m0 * K : m1 * K] = values
    h5.flush()
    h5.attrs["completed"] = m1
    h5.flush()
    return m1


# --------------------------------------------------------------------------- statistics


def catalog_stats(
    types: Sequence[str],
    elements: Sequence[str],
    natoms: Sequence[int],
    hcp: Sequence[float] | None = None,
    n_pdfs: int | None = None,
    n_min: int = 5,
    n_max: int = 200,
    variants: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Counts per type and metal and a size histogram of a list of structures.

    ``variants`` (the ``/structures/variant`` column) adds ``per_variant`` counts
    (``ideal`` first, then :data:`IMPERFECT_KINDS`).

    Returns
    -------
    dict
        ``n_structures``, ``n_pdfs``, ``per_type``, ``per_element``, ``natoms`` (min,
        max, mean), ``size_histogram`` (``edges``: bin ``i`` is
        ``edges[i] <= natoms < edges[i + 1]``; ``counts``) and, when there are stacking
        structures, ``hcp_fraction_histogram`` (edges 0, 0.2, ..., 1 inclusive).
    """
    natoms = np.asarray(natoms, dtype=int)
    per_type = Counter(str(t) for t in types)
    per_el = Counter(str(e) for e in elements)
    width = max(1, math.ceil((n_max - n_min + 1) / 10))
    edges = list(range(n_min, n_max + 1, width)) + [n_max + 1]
    if edges[-2] == edges[-1]:  # pragma: no cover
        edges.pop()
    counts, _ = np.histogram(natoms, bins=edges)
    stats: dict[str, Any] = {
        "n_structures": int(len(natoms)),
        "n_pdfs": int(n_pdfs) if n_pdfs is not None else None,
        "per_type": {t: per_type[t] for t in STRUCTURE_TYPES if per_type[t]},
        "per_element": dict(per_el),
        "natoms": {
            "min": int(natoms.min()) if len(natoms) else None,
            "max": int(natoms.max()) if len(natoms) else None,
            "mean": round(float(natoms.mean()), 2) if len(natoms) else None,
        },
        "size_histogram": {"edges": edges, "counts": [int(c) for c in counts]},
    }
    if variants is not None:
        per_var = Counter(str(v) for v in variants)
        order = ["ideal", *IMPERFECT_KINDS]
        order += sorted(set(per_var) - set(order))
        stats["per_variant"] = {v: per_var[v] for v in order if per_var[v]}
    if hcp is not None:
        h = np.asarray(hcp, dtype=float)
        h = h[np.isfinite(h)]
        if len(h):
            hc, he = np.histogram(h, bins=np.linspace(0, 1, 6))
            stats["hcp_fraction_histogram"] = {
                "edges": [round(float(x), 2) for x in he],
                "counts": [int(c) for c in hc],
            }
    return stats


def format_stats(stats: Mapping[str, Any]) -> str:
    """Human-readable table of :func:`catalog_stats` output."""
    lines = [
        f"structures: {stats['n_structures']}"
        + (f"   PDFs: {stats['n_pdfs']}" if stats.get("n_pdfs") is not None else "")
    ]
    na = stats.get("natoms") or {}
    if na.get("min") is not None:
        lines.append(f"atoms per structure: {na['min']}-{na['max']} (mean {na['mean']})")
    lines.append("per type:")
    for t, c in stats["per_type"].items():
        lines.append(f"  {t:<12s} {c:7d}")
    if "per_variant" in stats:
        lines.append("per variant:")
        for v, c in stats["per_variant"].items():
            lines.append(f"  {v:<12s} {c:7d}")
    per_el = stats["per_element"]
    lines.append(f"per metal ({len(per_el)}):")
    items = list(per_el.items())
    for i in range(0, len(items), 6):
        lines.append("  " + "  ".join(f"{e:<2s} {c:5d}" for e, c in items[i : i + 6]))
    h = stats["size_histogram"]
    lines.append("size histogram (atoms):")
    top = max(h["counts"]) if h["counts"] else 0
    for a, b, c in zip(h["edges"][:-1], h["edges"][1:], h["counts"], strict=True):
        bar = "#" * (round(40 * c / top) if top else 0)
        lines.append(f"  {a:4d}-{b - 1:<4d} {c:7d} {bar}")
    if "hcp_fraction_histogram" in stats:
        hh = stats["hcp_fraction_histogram"]
        lines.append("stacking hcp fraction:")
        for a, b, c in zip(hh["edges"][:-1], hh["edges"][1:], hh["counts"], strict=True):
            lines.append(f"  {a:.1f}-{b:.1f}  {c:7d}")
    return "\n".join(lines)


def _stats_from_file(h5, config: CatalogConfig) -> dict[str, Any]:
    s = h5["structures"]
    return catalog_stats(
        s["type"].asstr()[()],
        s["element"].asstr()[()],
        s["natoms"][()],
        s["hcp_fraction"][()],
        n_pdfs=h5["pdfs"]["g"].shape[0],
        n_min=config.n_min,
        n_max=config.n_max,
        variants=s["variant"].asstr()[()] if "variant" in s else None,
    )


# --------------------------------------------------------------------------- build


@dataclass
class BuildReport:
    """What :func:`build_catalog` did.

    ``path`` is the catalog (``complete``) or the unfinished ``.partial`` file;
    ``resumed_from`` the structures already there at the start; ``stats`` the catalog
    statistics (complete builds only).
    """

    path: Path
    complete: bool
    n_structures: int
    completed: int
    n_pdfs: int
    resumed_from: int
    elapsed_s: float
    enumerate_s: float
    workers: int | str
    stats: dict[str, Any] | None = None


def _blocks(n: int, start: int, size: int) -> list[tuple[int, int]]:
    """(start, stop) of the blocks from structure ``start`` on."""
    return [(a, min(a + size, n)) for a in range(start, n, size)]


def _run_serial(jobs, submit_args):
    for job in jobs:
        yield _simulate_block(*submit_args(job))


def _run_pool(jobs, submit_args, workers: int):
    import concurrent.futures as cf
    import multiprocessing as mp

    ex = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
    try:
        futures = [ex.submit(_simulate_block, *submit_args(job)) for job in jobs]
        for fut in cf.as_completed(futures):
            yield fut.result()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _run_dask(jobs, submit_args, scheduler):
    from dask.distributed import Client, as_completed

    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler, set_as_default=False, timeout=10) if own else scheduler
    except (OSError, TimeoutError, ValueError) as exc:
        raise CatalogError(
            f"cannot reach the Dask scheduler at {scheduler}: {exc}"
        ) from exc
    futures = []
    try:
        futures = [
            client.submit(_simulate_block, *submit_args(job), pure=False) for job in jobs
        ]
        for fut in as_completed(futures, loop=client.loop):
            yield fut.result()
    finally:
        for fut in futures:
            fut.cancel()
        if own:
            client.close()


def plan_catalog(config: CatalogConfig) -> list[ClusterSpec | VariantSpec]:
    """The structures of a catalog, in row order.

    The ideal clusters (:func:`~diffpy_deepstruc.clusters.enumerate_clusters`: metals,
    then types, then builder grids) come first, exactly as without imperfect options, so
    their rows, seeds and PDFs do not change; then, metal by metal, the imperfect
    structures of :func:`plan_imperfect` (the same geometries for every metal).
    """
    geoms = enumerate_geometries(config.types, config.n_min, config.n_max)
    specs: list[ClusterSpec | VariantSpec] = list(
        enumerate_clusters(
            config.elements, config.types, config.n_min, config.n_max, geometries=geoms
        )
    )
    if config.imperfect is None:
        return specs
    extra = plan_imperfect(
        config.imperfect, config.types or STRUCTURE_TYPES, config.n_min, config.n_max, geoms
    )
    for el in config.elements or ():
        for t, maker, args, n, kind in extra:
            specs.append(VariantSpec(t, el, json.loads(json.dumps(args)), n, maker, kind))
    return specs


def build_catalog(
    path: str | os.PathLike,
    config: CatalogConfig | None = None,
    *,
    workers: int | None = None,
    scheduler: Any = None,
    block_size: int = 32,
    overwrite: bool = False,
    progress: bool = False,
    max_blocks: int | None = None,
    log: Callable[[str], None] | None = None,
) -> BuildReport:
    """Build (or resume building) a catalog file.

    Parameters
    ----------
    path : path
        Output ``.h5`` file.  Work in progress lives in :func:`partial_path` and is
        renamed to ``path`` when complete.
    config : CatalogConfig, optional
        What to build (default :class:`CatalogConfig()`).
    workers : int, optional
        Local worker processes (default: all cores); 1 computes in this process.
    scheduler : str or dask.distributed.Client, optional
        Run the blocks on this Dask cluster (scheduler address or client) instead of
        local processes.  The result is the same file.
    block_size : int
        Structures per block (unit of work, of writing and of resuming).
    overwrite : bool
        Replace an existing catalog and discard an unfinished build; otherwise an
        existing catalog raises :class:`~diffpy_deepstruc.errors.OutputExistsError`
        and an unfinished build with the same configuration is resumed.
    progress : bool
        Show a tqdm progress bar on stderr.
    max_blocks : int, optional
        Stop after writing this many blocks, leaving an unfinished build (for tests and
        for splitting a long build into sessions).
    log : callable, optional
        Called with one-line progress messages.

    Returns
    -------
    BuildReport

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.
    CatalogError
        An unfinished build with other arguments (or unreadable) is in the way.
    """
    t0 = time.perf_counter()
    config = config or CatalogConfig()
    say = log or (lambda msg: None)
    out = Path(path)
    check_writable(out, overwrite)
    part = partial_path(out)
    if (
        isinstance(block_size, bool)
        or not isinstance(block_size, (int, np.integer))
        or block_size < 1
    ):
        raise ParameterError(f"block_size must be a positive integer, got {block_size!r}")
    if max_blocks is not None and (
        not isinstance(max_blocks, (int, np.integer)) or max_blocks < 0
    ):
        raise ParameterError(
            f"max_blocks must be a non-negative integer, got {max_blocks!r}"
        )
    if scheduler is None:
        if workers is None:
            workers = os.cpu_count() or 1
        if (
            isinstance(workers, bool)
            or not isinstance(workers, (int, np.integer))
            or workers < 1
        ):
            raise ParameterError(f"workers must be a positive integer, got {workers!r}")

    specs = plan_catalog(config)
    t_enum = time.perf_counter() - t0
    M = len(specs)
    if M == 0:
        raise ParameterError(
            f"no cluster of {config.n_min}..{config.n_max} atoms among types "
            f"{', '.join(config.types or ())}"
        )
    n_var = sum(isinstance(x, VariantSpec) for x in specs)
    say(
        f"enumerated {M} structures"
        + (f" ({n_var} imperfect)" if config.imperfect is not None else "")
        + f" in {t_enum:.1f} s"
    )

    if overwrite and part.exists():
        part.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    h5 = (
        _open_partial(part, config, M)
        if part.exists()
        else _create_file(part, config, M, block_size)
    )
    K = config.variants
    cfg_dict = config.to_dict()
    try:
        done0 = int(h5.attrs["completed"])
        if done0:
            say(f"resuming {part}: {done0} of {M} structures already done")
        jobs = list(enumerate(_blocks(M, done0, block_size)))
        if max_blocks is not None:
            jobs = jobs[:max_blocks]

        def submit_args(job):
            b, (a, z) = job
            return b, a, specs[a:z], cfg_dict

        if scheduler is not None:
            runner = _run_dask(jobs, submit_args, scheduler)
            used: int | str = (
                f"dask {scheduler if isinstance(scheduler, str) else 'client'}"
            )
        elif workers == 1 or len(jobs) <= 1:
            runner = _run_serial(jobs, submit_args)
            used = 1
        else:
            runner = _run_pool(jobs, submit_args, min(int(workers), len(jobs)))
            used = min(int(workers), len(jobs))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=M, initial=done0, unit="struct", desc="catalog", file=sys.stderr
            )
        waiting: dict[int, dict[str, np.ndarray]] = {}
        nxt = 0
        try:
            for b, res in runner:
                waiting[b] = res
                while nxt in waiting:  # write in row order
                    a, z = jobs[nxt][1]
                    _append_block(h5, specs[a:z], waiting.pop(nxt), K)
                    if bar is not None:
                        bar.update(z - a)
                    nxt += 1
        finally:
            runner.close()
            if bar is not None:
                bar.close()
        completed = int(h5.attrs["completed"])
        complete = completed == M
        stats = None
        if complete:
            stats = _stats_from_file(h5, config)
            h5.attrs["stats"] = json.dumps(stats, sort_keys=True)
            h5.flush()
    finally:
        h5.close()
    if complete:
        if out.exists() and not overwrite:
            raise OutputExistsError(f"{out}: file appeared while building; kept {part}")
        os.replace(part, out)
        say(f"wrote {out}")
    return BuildReport(
        path=out if complete else part,
        complete=complete,
        n_structures=M,
        completed=completed,
        n_pdfs=completed * K,
        resumed_from=done0,
        elapsed_s=time.perf_counter() - t0,
        enumerate_s=t_enum,
        workers=used,
        stats=stats,
    )


# --------------------------------------------------------------------------- reading


class Catalog:
    """A catalog file open for reading (use :func:`open_catalog`).

    Attributes
    ----------
    path : Path
    file : h5py.File
        The open file (datasets as in the schema).
    config : CatalogConfig
    stats : dict
    r : ndarray
        r-grid of the PDFs (A).
    n_structures, n_pdfs, variants : int
    param_columns : tuple of str
    """

    def __init__(self, path: Path, h5) -> None:
        self.path = path
        self.file = h5
        a = h5.attrs
        self.config = CatalogConfig.from_dict(json.loads(a["config"]))
        self.stats = json.loads(a["stats"]) if "stats" in a else {}
        self.r = h5["r"][()]
        self.n_structures = int(h5["structures/natoms"].shape[0])
        self.n_pdfs = int(h5["pdfs/g"].shape[0])
        self.variants = int(a.get("variants", self.config.variants))
        self.param_columns = tuple(json.loads(h5["pdfs/params"].attrs["columns"]))

    # context manager -----------------------------------------------------------------
    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self.file.close()

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r}, structures={self.n_structures}, pdfs={self.n_pdfs})"

    # access ---------------------------------------------------------------------------
    def structure(self, i: int) -> dict[str, Any]:
        """Row ``i`` of ``/structures``: type, element, builder (name), args, variant
        (``"ideal"`` or an :data:`IMPERFECT_KINDS` entry), natoms, xyz, nn,
        hcp_fraction."""
        i = self._index(i, self.n_structures, "structure")
        s = self.file["structures"]
        n = int(s["natoms"][i])
        stype = s["type"].asstr()[i]
        maker, args = _parse_builder(stype, s["builder"].asstr()[i])
        return {
            "type": stype,
            "element": s["element"].asstr()[i],
            "builder": maker,
            "args": args,
            "variant": s["variant"].asstr()[i] if "variant" in s else "ideal",
            "natoms": n,
            "xyz": s["xyz"][i, :n].astype(np.float64),
            "nn": float(s["nn"][i]),
            "hcp_fraction": float(s["hcp_fraction"][i]),
        }

    def rebuild(self, i: int):
        """Structure row ``i`` rebuilt by its builder (:func:`rebuild_structure`), as an
        :class:`ase.Atoms`: the stored coordinates are these, rounded to float32."""
        i = self._index(i, self.n_structures, "structure")
        s = self.file["structures"]
        element = s["element"].asstr()[i]
        nn = nearest_neighbour_distance(element)  # as built (the file holds float32)
        if np.float32(nn) != s["nn"][i]:
            nn = float(s["nn"][i])
        return rebuild_structure(s["type"].asstr()[i], element, s["builder"].asstr()[i], nn)

    def atoms(self, i: int):
        """Structure row ``i`` as an :class:`ase.Atoms`."""
        from ase import Atoms

        st = self.structure(i)
        return Atoms([st["element"]] * st["natoms"], positions=st["xyz"])

    def pdf(self, j: int) -> dict[str, Any]:
        """Row ``j`` of ``/pdfs``: ``g`` (float64), ``structure`` row, ``params`` dict."""
        j = self._index(j, self.n_pdfs, "PDF")
        p = self.file["pdfs"]
        vals = p["params"][j]
        return {
            "g": p["g"][j].astype(np.float64),
            "structure": int(p["structure"][j]),
            "params": {c: float(v) for c, v in zip(self.param_columns, vals, strict=True)},
        }

    def pdf_parameters(self, j: int):
        """The :class:`~diffpy_deepstruc.debye.PDFParameters` and Uiso of PDF row ``j``."""
        pr = self.pdf(j)["params"]
        pp = self.config.pdf_parameters(
            qmin=pr["qmin"],
            qmax=pr["qmax"],
            qdamp=pr["qdamp"],
            qbroad=pr["qbroad"],
            delta2=pr["delta2"],
            scale=pr["scale"],
        )
        return pp, pr["uiso"]

    @staticmethod
    def _index(i: int, n: int, what: str) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise ParameterError(f"{what} index must be an integer, got {i!r}")
        if not -n <= i < n:
            raise ParameterError(f"{what} index {i} out of range (0..{n - 1})")
        return int(i) % n


def open_catalog(path: str | os.PathLike) -> Catalog:
    """Open a catalog file for reading, validating its format.

    Raises
    ------
    CatalogError
        Missing or unreadable file, another format or version, missing or inconsistent
        datasets, or an unfinished build.
    """
    import h5py

    p = Path(path)
    if not p.is_file():
        hint = ""
        if partial_path(p).is_file():
            hint = f" (an unfinished build is at {partial_path(p)}: run the same command again)"
        raise CatalogError(f"{p}: catalog file not found{hint}")
    try:
        h5 = h5py.File(p, "r")
    except OSError as exc:
        raise CatalogError(f"{p}: cannot read as HDF5 ({exc})") from None
    try:
        _validate(p, h5)
        return Catalog(p, h5)
    except BaseException:
        h5.close()
        raise


def _validate(p: Path, h5) -> None:
    a = h5.attrs
    fmt = a.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != FORMAT:
        raise CatalogError(
            f"{p}: not a diffpy-deepstruc catalog (format attribute {fmt!r})"
        )
    try:
        version = int(a.get("version"))
    except (TypeError, ValueError):
        raise CatalogError(f"{p}: catalog version missing or malformed") from None
    if version != VERSION:
        raise CatalogError(
            f"{p}: catalog format version {version}; this diffpy-deepstruc "
            f"({__version__}) reads version {VERSION}: rebuild it with `deepstruc catalog`"
        )
    need = ["r", "pdfs/g", "pdfs/structure", "pdfs/params"] + [
        f"structures/{n}" for n in _STRUCTURE_SETS
    ]
    missing = [n for n in need if n not in h5]
    if missing:
        raise CatalogError(f"{p}: damaged catalog, missing /{', /'.join(missing)}")
    for key in ("config", "n_max", "completed", "n_planned"):
        if key not in a:
            raise CatalogError(f"{p}: damaged catalog, attribute {key!r} missing")
    try:
        CatalogConfig.from_dict(json.loads(a["config"]))
    except (ValueError, TypeError, ParameterError) as exc:
        raise CatalogError(f"{p}: damaged catalog, bad config attribute ({exc})") from None
    M = h5["structures/natoms"].shape[0]
    done, planned = int(a["completed"]), int(a["n_planned"])
    if done != planned or M != done:
        raise CatalogError(
            f"{p}: unfinished catalog ({done} of {planned} structures); finish it by "
            "running the same `deepstruc catalog` command again"
        )
    n_max = int(a["n_max"])
    n_r = h5["r"].shape[0]
    if h5["structures/xyz"].shape != (M, n_max, 3):
        raise CatalogError(
            f"{p}: /structures/xyz has shape {h5['structures/xyz'].shape}, "
            f"expected {(M, n_max, 3)}"
        )
    for name in _STRUCTURE_SETS[1:] + _OPTIONAL_SETS:
        if name in h5["structures"] and h5["structures"][name].shape != (M,):
            raise CatalogError(f"{p}: /structures/{name} does not have {M} rows")
    P = h5["pdfs/g"].shape[0]
    if h5["pdfs/g"].shape[1:] != (n_r,):
        raise CatalogError(
            f"{p}: /pdfs/g has {h5['pdfs/g'].shape[1:]} columns, r has {n_r}"
        )
    if h5["pdfs/structure"].shape != (P,) or h5["pdfs/params"].shape[0] != P:
        raise CatalogError(f"{p}: /pdfs datasets disagree in length")
    cols = h5["pdfs/params"].attrs.get("columns")
    if cols is None or h5["pdfs/params"].shape[1] != len(json.loads(cols)):
        raise CatalogError(f"{p}: /pdfs/params columns attribute missing or wrong")
    if P:
        rows = h5["pdfs/structure"][()]
        if rows.min() < 0 or rows.max() >= M:
            raise CatalogError(f"{p}: /pdfs/structure points outside /structures")
