"""The shape library: cluster shapes for the solver, screened against data at once.

Every monometallic cluster is a *shape* (structure type, builder and builder arguments;
the metal only sets the size).  The library holds each shape once:

* the **training shapes**: the distinct shapes of the training catalog (at most 200
  atoms), stored with their coordinates in units of the nearest-neighbour distance
  (``pretrained/shapes.safetensors``).  The model's samples are only approximate, so
  the solver (:mod:`diffpy_deepstruc.ranking`) screens these too.  They are flagged
  (:meth:`ShapeLibrary.is_training`);
* the **large shapes** (``pretrained/shapes_large.safetensors``, see
  :func:`build_large_library`): every distinct fcc, bcc, sc, hcp, icosahedron,
  decahedron and octahedron cut of 201..4000 atoms (needles and plates left out), a
  grid of stacking-faulted particles and the ``"imperfect"`` variants (off-centre,
  ellipsoidal and rod cuts, surface vacancies, partial outer shells, twins), stored
  as builder name + JSON arguments only (bytes each): their coordinates are
  regenerated on demand (:meth:`ShapeLibrary.structure`), exactly.

For screening, each shape also carries its pair-distance histogram per atom on a grid
of ``HIST_STEP_NN`` = 0.02 nearest-neighbour distances (float16, stored up to the
shape's diameter).  The PDF of every shape at the data's instrument settings is then
one matrix product ``H[shapes, bins] @ K[bins, r]`` where row ``b`` of ``K`` is the G(r)
of one pair at distance ``b * 0.02 * nn`` (from :class:`diffpy_deepstruc.histpdf.
HistogramPDF`, srreal's conventions), and :meth:`ShapeLibrary.screen_all` ranks
thousands of shapes by Pearson correlation with the data in a fraction of a second.

Builders are found by name in a registry (:data:`SHAPE_BUILDERS`, seeded with
:data:`diffpy_deepstruc.clusters.BUILDERS`; :func:`register_builder` adds more, e.g. the
imperfect shapes), so a library can hold shapes from any deterministic builder
``f(element, **args, nn=...) -> ase.Atoms``.

Storage: safetensors (arrays) + JSON (types, builders, arguments, digests); no pickle.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .clusters import STRUCTURE_TYPES
from .errors import CatalogError, CheckpointError, ParameterError

__all__ = [
    "HIST_STEP_NN",
    "LARGE_TYPES",
    "SHAPE_BUILDERS",
    "VARIANT_SOURCES",
    "ShapeLibrary",
    "build_large_library",
    "build_shape_library",
    "imperfect_variants",
    "large_shape_specs",
    "load_shape_library",
    "merge_libraries",
    "pretrained_library",
    "register_builder",
    "register_variants",
    "save_shape_library",
    "shape_histogram",
    "unit_coordinates",
    "vacancy_shape",
]

#: Histogram spacing of the screening histograms, in nearest-neighbour distances.
HIST_STEP_NN: float = 0.02
#: Screening histograms stop at this distance (nn units; 40 nn is 110 A for Pt).
HIST_RMAX_NN: float = 40.0

#: Structure types of the large library, in enumeration order ("stacking": faulted):
#: those of the catalog, :data:`diffpy_deepstruc.clusters.STRUCTURE_TYPES`.
LARGE_TYPES: tuple[str, ...] = STRUCTURE_TYPES

#: Version of the file format written by :func:`save_shape_library`.
_FORMAT = "diffpy-deepstruc-shapes"


def _default_builders() -> dict[str, Callable[..., Any]]:
    from .clusters import BUILDERS

    return dict(BUILDERS)


#: Builder registry: name -> ``f(element, **args, nn=...) -> ase.Atoms`` (deterministic).
SHAPE_BUILDERS: dict[str, Callable[..., Any]] = _default_builders()


def register_builder(
    name: str, builder: Callable[..., Any], overwrite: bool = False
) -> None:
    """Make ``builder`` available to libraries under ``name``.

    Parameters
    ----------
    name : str
        Registry name stored with each shape (e.g. ``"imperfect.vacancies"``).
    builder : callable
        ``builder(element, **args, nn=nn) -> ase.Atoms``; it must be deterministic
        (any randomness seeded from ``args``) so that stored arguments regenerate the
        same coordinates.
    overwrite : bool
        Allow replacing a registered builder.
    """
    if not isinstance(name, str) or not name.strip():
        raise ParameterError("builder name must be a non-empty string")
    if not callable(builder):
        raise ParameterError(f"builder {name!r} is not callable")
    if name in SHAPE_BUILDERS and not overwrite and SHAPE_BUILDERS[name] is not builder:
        raise ParameterError(f"a builder named {name!r} is already registered")
    SHAPE_BUILDERS[name] = builder


#: Modules of this package whose functions may be named ``"<module>.<function>"`` as
#: builders without registering them first (imported on first use).
BUILDER_MODULES: tuple[str, ...] = ("imperfect",)


def _builder(name: str) -> Callable[..., Any]:
    if name not in SHAPE_BUILDERS:
        mod, _, fn = name.partition(".")
        if mod in BUILDER_MODULES and fn and not fn.startswith("_"):
            import importlib

            try:
                f = getattr(importlib.import_module(f"diffpy_deepstruc.{mod}"), fn, None)
            except ImportError:
                f = None
            if callable(f):
                SHAPE_BUILDERS[name] = f
    try:
        return SHAPE_BUILDERS[name]
    except KeyError:
        raise ParameterError(
            f"unknown shape builder {name!r}; registered: {', '.join(sorted(SHAPE_BUILDERS))}"
        ) from None


def unit_coordinates(maker: str, args: dict[str, Any]) -> np.ndarray:
    """Coordinates ``[n, 3]`` (nearest-neighbour distance 1, centred) of one shape.

    Parameters
    ----------
    maker : str
        Builder name in :data:`SHAPE_BUILDERS`.
    args : dict
        Its keyword arguments.
    """
    if not isinstance(args, dict):
        raise ParameterError(f"builder args must be a dict, got {type(args).__name__}")
    xyz = np.asarray(_builder(maker)("Cu", **args, nn=1.0).positions, dtype=float)
    return xyz - xyz.mean(axis=0)


# --------------------------------------------------------------------------- histograms


def _pdist(xyz: np.ndarray) -> np.ndarray:
    from scipy.spatial.distance import pdist

    return pdist(np.asarray(xyz, dtype=float))


def shape_histogram(
    xyz: np.ndarray, step: float = HIST_STEP_NN, d: np.ndarray | None = None
) -> np.ndarray:
    """Pair-distance histogram per atom of a shape (coordinates in nn units).

    Each unordered pair adds ``1 / n`` split linearly between the two grid points
    ``k * step`` around its distance (as :func:`diffpy_deepstruc.histpdf.pair_histogram`,
    divided by the atom count); the histogram ends at the last non-zero grid point.

    Parameters
    ----------
    xyz : ndarray, shape (n, 3)
        Coordinates in units of the nearest-neighbour distance.
    step : float
        Grid spacing (nn units).
    d : ndarray, optional
        The pair distances (``scipy.spatial.distance.pdist(xyz)``) if already known.

    Returns
    -------
    ndarray, float64
    """
    n = len(xyz)
    if d is None:
        d = _pdist(xyz)
    if d.size == 0:
        return np.zeros(1)
    x = d / step
    k = np.floor(x).astype(np.int64)
    w = x - k
    nb = int(k.max()) + 2
    h = np.bincount(k, weights=1.0 - w, minlength=nb)
    h += np.bincount(k + 1, weights=w, minlength=nb)
    h /= n
    h = h[: int(round(HIST_RMAX_NN / step)) + 1]
    last = np.flatnonzero(h)
    return h[: int(last[-1]) + 1] if last.size else h[:1]


def _first_shell(xyz: np.ndarray, d: np.ndarray) -> float:
    """Centre of the first-neighbour shell (as :func:`generator.unit_nn_distance`)."""
    from scipy.spatial import cKDTree

    if len(xyz) < 2:
        return float("nan")
    dist, _ = cKDTree(xyz).query(xyz, k=2)
    d1 = float(np.median(dist[:, 1]))
    close = d[d < 1.15 * d1]
    return float(close.mean()) if close.size else d1


def _describe(xyz: np.ndarray) -> tuple[np.ndarray, float]:
    d = _pdist(xyz)
    return shape_histogram(xyz, HIST_STEP_NN, d), _first_shell(xyz, d)


_KEY: float = 1e-3  # scale resolution of the screening kernels (0.1 %)
_SCALE_PROBE: int = 50  # shapes that find the data's scale in screen_all
_NEAR: int = 5  # screen_all's last pass tries scales within +-_NEAR keys of that scale
_FINE: float = 0.004  # A, spacing of the pair-PDF table the kernels interpolate


class _PairKernels:
    """G(r) of one pair at distance d, tabulated on a fine d-grid per Uiso
    (:class:`~diffpy_deepstruc.histpdf.HistogramPDF`), and the screening kernels
    ``K[bin, r]`` = that G at ``d = bin * HIST_STEP_NN * nn * exp(key * _KEY)``
    interpolated from it (cached)."""

    def __init__(self, r, qmin, qmax, qdamp, qbroad, delta2, nn) -> None:
        from .histpdf import HistogramPDF

        self.hp = HistogramPDF(r, qmin=qmin, qmax=qmax, qdamp=qdamp, qbroad=qbroad)
        self.delta2 = float(delta2)
        self.nn = float(nn)
        self.dmax = float(r[-1]) + 3.0  # A: pairs beyond the range still ripple into it
        self.nr = len(r)
        self.tables: dict[float, np.ndarray] = {}
        self.kernels: dict[tuple[float, int], np.ndarray] = {}

    def table(self, u: float) -> np.ndarray:
        if u not in self.tables:
            import torch

            n = int(math.ceil(self.dmax / _FINE)) + 2
            d = torch.arange(n, dtype=torch.float64) * _FINE
            d[0] = _FINE  # row 0 (d = 0) is zeroed below
            one = torch.ones(n, dtype=torch.float64)
            with torch.no_grad():
                t = self.hp.g_sparse(
                    d[:, None],
                    one[:, None],
                    one,
                    one,
                    torch.full_like(one, u),
                    torch.full_like(one, self.delta2),
                )
            tab = t.numpy().astype(np.float32)
            tab[0] = 0.0
            self.tables[u] = tab
        return self.tables[u]

    def kernel(self, u: float, key: int) -> np.ndarray:
        if (u, key) not in self.kernels:
            tab = self.table(u)
            step = HIST_STEP_NN * self.nn * math.exp(key * _KEY)
            n_bins = int(self.dmax / step)
            x = np.arange(n_bins) * (step / _FINE)
            i0 = np.minimum(np.floor(x).astype(np.int64), len(tab) - 2)
            w = (x - i0).astype(np.float32)[:, None]
            self.kernels[(u, key)] = tab[i0] * (1.0 - w) + tab[i0 + 1] * w
        return self.kernels[(u, key)]


# --------------------------------------------------------------------------- the library


@dataclass(frozen=True)
class ShapeLibrary:
    """Distinct cluster shapes.

    Attributes
    ----------
    coords : ndarray, shape (M0, n_max, 3)
        Stored coordinates (nn units, zero-padded) of the first ``M0 <= M`` shapes (the
        training shapes); the others are regenerated from their builder arguments.
    n_atoms : ndarray, shape (M,)
        Atom counts.
    types : list of str
        Structure type of each shape.
    builders : list of str
        Builder arguments (JSON) of each shape.
    source : str
        What the library was built from.
    makers : list of str, optional
        Builder name (:data:`SHAPE_BUILDERS`) of each shape; default its type.
    training : ndarray of bool, shape (M,), optional
        Whether each shape is a training shape of the model (default: the shapes with
        stored coordinates).
    hist : ndarray, optional
        Screening histograms (per atom, :data:`HIST_STEP_NN` spacing) of all shapes,
        concatenated (float16); shape ``i`` is ``hist[hist_offsets[i]:hist_offsets[i+1]]``.
        Computed from the coordinates when absent.
    hist_offsets : ndarray, shape (M + 1,), optional
    first_shell : ndarray, shape (M,), optional
        Centre of each shape's first-neighbour shell (nn units).
    """

    coords: np.ndarray
    n_atoms: np.ndarray
    types: list[str]
    builders: list[str]
    source: str = ""
    makers: list[str] | None = None
    training: np.ndarray | None = None
    hist: np.ndarray | None = None
    hist_offsets: np.ndarray | None = None
    first_shell: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.n_atoms)

    # -- identity --------------------------------------------------------------------

    def maker(self, i: int) -> str:
        """Builder name of shape ``i``."""
        return self.makers[i] if self.makers is not None else self.types[i]

    def is_training(self, i: int) -> bool:
        """Whether shape ``i`` is one of the model's training shapes."""
        if self.training is not None:
            return bool(self.training[i])
        return i < len(self.coords)

    def label(self, i: int) -> str:
        """``"<type> <n atoms> <builder arguments>"`` (builder name first when it is not
        the type's own)."""
        m = self.maker(i)
        what = self.builders[i] if m == self.types[i] else f"{m} {self.builders[i]}"
        return f"{self.types[i]} {int(self.n_atoms[i])} {what}"

    def args(self, i: int) -> dict[str, Any]:
        """Builder arguments of shape ``i``."""
        return json.loads(self.builders[i])

    # -- coordinates -----------------------------------------------------------------

    def _unit(self, i: int) -> np.ndarray:
        i = int(i)
        if i < len(self.coords):
            return self.coords[i, : self.n_atoms[i]].astype(float)
        cache = self._cache.setdefault("unit", {})
        if i not in cache:
            xyz = unit_coordinates(self.maker(i), self.args(i))
            if len(xyz) != int(self.n_atoms[i]):
                raise CheckpointError(
                    f"shape {i} ({self.label(i)}) regenerates {len(xyz)} atoms, not "
                    f"{int(self.n_atoms[i])}: the builder changed since the library was built"
                )
            if len(cache) >= 8:
                cache.pop(next(iter(cache)))
            cache[i] = xyz
        return cache[i]

    def shape(self, i: int, nn: float = 1.0) -> np.ndarray:
        """Coordinates ``[n, 3]`` of shape ``i`` with nearest-neighbour distance ``nn``."""
        return self._unit(i) * float(nn)

    def structure(self, i: int, element: str = "Cu", nn: float | None = None) -> np.ndarray:
        """Coordinates ``[n, 3]`` (A) of shape ``i`` regenerated by its builder.

        Parameters
        ----------
        i : int
            Shape index.
        element : str
            Metal (sets ``nn`` when it is not given).
        nn : float, optional
            Nearest-neighbour distance (A), e.g. the ``nn`` returned by
            :meth:`screen_all`; default the element's.
        """
        from .clusters import _element_and_nn

        _, d = _element_and_nn(element, nn)
        return self.shape(i, d)

    def atoms(self, i: int, element: str, nn: float | None = None):
        """Shape ``i`` as :class:`ase.Atoms` of ``element`` (see :meth:`structure`)."""
        from ase import Atoms

        xyz = self.structure(i, element, nn)
        return Atoms(symbols=[element] * len(xyz), positions=xyz)

    # -- selection -------------------------------------------------------------------

    def within_sizes(self, sizes, tolerance: float = 0.15) -> np.ndarray:
        """Indices of shapes whose atom count is within ``tolerance`` of any of ``sizes``."""
        sizes = np.asarray(sorted(set(int(n) for n in sizes)), dtype=float)
        if sizes.size == 0:
            return np.zeros(0, dtype=int)
        diff = np.abs(self.n_atoms[:, None] - sizes[None, :])
        return np.flatnonzero((diff <= np.maximum(1.0, tolerance * sizes[None, :])).any(1))

    # -- screening -------------------------------------------------------------------

    def _histograms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flat float16 histograms, offsets, first-shell centres), computed if absent."""
        if self.hist is not None and self.hist_offsets is not None:
            fs = self.first_shell
            if fs is None:  # pragma: no cover - files always carry it
                raise CheckpointError("library has histograms but no first-shell centres")
            return self.hist, self.hist_offsets, fs
        if "hist" not in self._cache:
            parts, fs = [], []
            for i in range(len(self)):
                h, c = _describe(self._unit(i))
                parts.append(h.astype(np.float16))
                fs.append(c)
            offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
            self._cache["hist"] = (
                np.concatenate(parts) if parts else np.zeros(0, np.float16),
                offsets.astype(np.int64),
                np.asarray(fs, dtype=np.float32),
            )
        return self._cache["hist"]

    def histogram(self, i: int) -> np.ndarray:
        """Screening histogram of shape ``i`` (per atom, float32, ``HIST_STEP_NN`` grid)."""
        flat, off, _ = self._histograms()
        return flat[off[i] : off[i + 1]].astype(np.float32)

    def first_shells(self) -> np.ndarray:
        """Centre of each shape's first-neighbour shell (nn units)."""
        return self._histograms()[2]

    def _dense(self, rows: np.ndarray, n_bins: int) -> np.ndarray:
        """Histograms of ``rows`` as a dense float32 matrix ``[len(rows), n_bins]``."""
        flat, off, _ = self._histograms()
        full = self._cache.get("dense")
        if full is None:
            width = int(np.diff(off).max()) if len(self) else 1
            full = np.zeros((len(self), width), dtype=np.float32)
            for i in range(len(self)):
                full[i, : off[i + 1] - off[i]] = flat[off[i] : off[i + 1]]
            self._cache["dense"] = full
        out = full[rows, :n_bins]
        if out.shape[1] < n_bins:
            out = np.pad(out, ((0, 0), (0, n_bins - out.shape[1])))
        return out

    def screen_all(
        self,
        r: np.ndarray,
        g: np.ndarray,
        *,
        qmin: float,
        qmax: float,
        nn: float,
        qdamp: float = 0.0,
        qbroad: float = 0.0,
        k: int = 5,
        sizes: Iterable[int] | None = None,
        tolerance: float = 0.15,
        indices: Iterable[int] | None = None,
        uiso: float | Sequence[float] = (0.003, 0.006, 0.012),
        delta2: float = 2.0,
        scan: float = 0.015,
        refine: int = 100,
        max_points: int = 400,
    ) -> list[tuple[int, float, float]]:
        """Rank shapes by the Pearson correlation of their PDF with the data, all at once.

        Every shape is scaled so that the centre of its first-neighbour shell falls at
        ``nn``; its G(r) at the data's settings is ``H[i] @ K`` (its histogram times
        the G(r) of one pair at each grid distance), for all shapes in one product
        (shapes whose scales agree within 0.1 % share ``K``).  Three passes: (1) all
        shapes at ``nn`` and the median Uiso; (2) the 50 best are tried at scales
        ``nn * s``, ``s`` within ``1 +- scan`` in steps of 0.1 %, the median best scale
        of the 10 best gives the data's scale, and all shapes are scored at it too;
        (3) the ``refine`` best are tried within +-0.5 % of that scale and at every
        Uiso of ``uiso``.  Each shape keeps its best correlation.

        Parameters
        ----------
        r, g : ndarray
            The data on the fit range (r in A).
        qmin, qmax, qdamp, qbroad : float
            Instrument settings of the data (1/A).
        nn : float
            Position of the data's first PDF peak (A), e.g.
            :func:`diffpy_deepstruc.generator.nn_peak_position`.
        k : int
            Number of shapes returned.
        sizes : iterable of int, optional
            Only shapes within ``tolerance`` of one of these atom counts
            (:meth:`within_sizes`).
        indices : iterable of int, optional
            Only these shapes (intersected with ``sizes`` when both are given).
        uiso : float or sequence of float
            Displacement parameters (A^2) of the screening PDFs; the first pass uses
            their median.
        delta2 : float
            Correlated-motion term (A^2) of the screening PDFs.
        scan : float
            Relative half-width of the scale search of the second pass (0: none).
        refine : int
            Number of shapes of the first pass scored again.
        max_points : int
            The data are thinned to at most this many points (every m-th).

        Returns
        -------
        list of (index, pearson, nn)
            The ``k`` best shapes, best first, with the nearest-neighbour distance (A)
            to build them with (``self.structure(index, element, nn)``).
        """
        r = np.asarray(r, dtype=float)
        g = np.asarray(g, dtype=float)
        if r.ndim != 1 or r.shape != g.shape or r.size < 3:
            raise ParameterError("r and g must be 1-D arrays of the same length (>= 3)")
        if not (np.all(np.isfinite(r)) and np.all(np.isfinite(g))):
            raise ParameterError("r and g must be finite")
        if not (math.isfinite(nn) and nn > 0):
            raise ParameterError(f"nn must be a positive distance, got {nn}")
        uisos = sorted({float(u) for u in np.atleast_1d(uiso)})
        if not uisos or min(uisos) < 0:
            raise ParameterError(f"uiso must be non-negative, got {uiso}")
        rows = np.arange(len(self))
        if sizes is not None:
            rows = self.within_sizes(sizes, tolerance)
        if indices is not None:
            rows = np.intersect1d(rows, np.asarray(list(indices), dtype=int))
        if rows.size == 0 or k <= 0:
            return []
        m = max(1, int(math.ceil(r.size / max_points)))
        r, g = r[::m], g[::m]
        go = (g - g.mean()).astype(np.float32)
        gnorm = float(np.linalg.norm(go))
        kern = _PairKernels(r, qmin, qmax, qdamp, qbroad, delta2, nn)
        # shape i sits at nn / first_shell[i]: key = its log-offset from nn in units of
        # _KEY (0.1 %); shapes of one key share a kernel
        key0 = np.round(-np.log(self.first_shells()[rows].astype(float)) / _KEY)
        key0 = key0.astype(np.int64)

        def pearson(sel: np.ndarray, keys: np.ndarray, u: float) -> np.ndarray:
            out = np.empty(sel.size)
            for kv in np.unique(keys):
                j = np.flatnonzero(keys == kv)
                kmat = kern.kernel(u, int(kv))
                gc = self._dense(rows[sel[j]], kmat.shape[0]) @ kmat
                gc -= gc.mean(axis=1, keepdims=True)
                den = np.linalg.norm(gc, axis=1) * gnorm
                out[j] = (gc @ go) / np.where(den > 0, den, 1.0)
            return out

        u_mid = uisos[len(uisos) // 2]
        best = pearson(np.arange(rows.size), key0, u_mid)
        best_key = key0.copy()

        def rescore(sel: np.ndarray, shifts, us) -> None:
            for u in us:
                for sh in shifts:
                    keys = key0[sel] + int(sh)
                    p = pearson(sel, keys, u)
                    better = p > best[sel]
                    best[sel[better]] = p[better]
                    best_key[sel[better]] = keys[better]

        steps = int(round(scan / _KEY))
        if steps > 0:
            # the data's scale, from the best few: one shift for every shape
            few = np.argsort(-best, kind="stable")[:_SCALE_PROBE]
            rescore(few, range(-steps, steps + 1), [u_mid])
            lead = few[np.argsort(-best[few], kind="stable")[: max(1, _SCALE_PROBE // 5)]]
            shift = int(np.median(best_key[lead] - key0[lead]))
            if shift != 0:
                rescore(np.arange(rows.size), [shift], [u_mid])
        else:
            shift = 0
        top = np.argsort(-best, kind="stable")[: max(int(refine), int(k))]
        near = range(max(-steps, shift - _NEAR), min(steps, shift + _NEAR) + 1)
        rescore(top, near if steps > 0 else [0], uisos)
        order = np.argsort(-best, kind="stable")[:k]
        return [
            (int(rows[j]), float(best[j]), float(nn * math.exp(best_key[j] * _KEY)))
            for j in order
        ]

    def screen(
        self,
        indices,
        r: np.ndarray,
        g: np.ndarray,
        params,
        peak: float,
        k: int = 5,
        uiso: float = 0.005,
    ) -> list[tuple[int, float, float]]:
        """Rank shapes by how well their exact Debye PDF correlates with measured data.

        Slower than :meth:`screen_all` (one exact PDF per shape); kept for small sets.

        Parameters
        ----------
        indices : sequence of int
            Shapes to try (e.g. from :meth:`within_sizes`).
        r, g : ndarray
            The data on the fit range.
        params : debye.PDFParameters
            Instrument settings of the data (Qmin, Qmax, Qdamp, Qbroad, delta2).
        peak : float
            Position of the data's first peak (A): each shape is scaled so that the
            centre of its own first-neighbour shell falls there (for an icosahedron,
            whose shell spans 1.00-1.05 NN distances, that is not its shortest bond).
        k : int
            Number of shapes returned.
        uiso : float
            Displacement parameter of the screening PDFs (A^2).

        Returns
        -------
        list of (index, pearson, nn)
            The ``k`` best shapes, best first, with the nearest-neighbour distance (A)
            they were scaled to.
        """
        from .debye import pdf_batch
        from .generator import unit_nn_distance

        indices = [int(i) for i in indices]
        if not indices:
            return []
        nn = {i: peak / unit_nn_distance(self.shape(i)) for i in indices}
        clusters = [
            (self.shape(i, nn[i]), ["Au"] * int(self.n_atoms[i]), uiso) for i in indices
        ]
        rc, gc = pdf_batch(clusters, params)
        gi = np.array([np.interp(r, rc, row) for row in gc])
        gi -= gi.mean(axis=1, keepdims=True)
        go = g - g.mean()
        denom = np.linalg.norm(gi, axis=1) * np.linalg.norm(go)
        pearson = gi @ go / np.where(denom > 0, denom, 1.0)
        order = np.argsort(-pearson, kind="stable")[:k]
        return [(indices[j], float(pearson[j]), nn[indices[j]]) for j in order]


# --------------------------------------------------------------------------- enumeration

#: Extra shape sources for :func:`build_large_library` (``variants``): name ->
#: ``f(n_min, n_max) -> iterable of (type, builder name, args)``; see
#: :func:`register_variants`.
VARIANT_SOURCES: dict[str, Callable[[int, int], Iterable[tuple[str, str, dict]]]] = {}


def register_variants(
    name: str,
    source: Callable[[int, int], Iterable[tuple[str, str, dict]]],
    overwrite: bool = False,
) -> None:
    """Register a named set of extra shapes (e.g. imperfect particles) for the library.

    Parameters
    ----------
    name : str
        Name given to ``deepstruc library --variants``.
    source : callable
        ``source(n_min, n_max)`` yields ``(type, builder name, args)`` in a fixed order;
        each builder name must be in :data:`SHAPE_BUILDERS` (:func:`register_builder`).
    overwrite : bool
        Allow replacing a registered source.
    """
    if name in VARIANT_SOURCES and not overwrite and VARIANT_SOURCES[name] is not source:
        raise ParameterError(f"a variant set named {name!r} is already registered")
    VARIANT_SOURCES[name] = source


def vacancy_shape(
    element: str,
    shape: str,
    args: dict[str, Any],
    k: int,
    seed: int = 0,
    nn: float | None = None,
) -> Any:
    """An ideal cluster (:func:`diffpy_deepstruc.clusters.build_cluster`) with ``k``
    surface vacancies (:func:`diffpy_deepstruc.imperfect.surface_vacancies`, seeded):
    the builder ``"vacancies"`` of :data:`SHAPE_BUILDERS`."""
    from .clusters import build_cluster
    from .imperfect import surface_vacancies

    atoms = build_cluster(shape, element, args, nn)
    return surface_vacancies(atoms, k, seed=seed, nn=nn)


SHAPE_BUILDERS["vacancies"] = vacancy_shape


def imperfect_variants(n_min: int, n_max: int) -> Iterator[tuple[str, str, dict]]:
    """The ``"imperfect"`` variant set (:mod:`diffpy_deepstruc.imperfect`), a modest grid:

    - off-centre spheres of the fcc, bcc, sc and hcp lattices (radius 4..8 nn, centre
      offset (0.25, 0.15, 0.1) or (0.5, 0.3, 0.2) lattice units off the lattice point);
    - fcc and hcp ellipsoids (semi-axes 1 : 1 : 1.5, along [001] and [111]) and fcc
      rods (radius 3.5 and 4.5 nn, length 4 radii, along [001] and [110]);
    - 10 and 30 surface vacancies (seed 0) of icosahedra, decahedra, octahedra and fcc
      cuts;
    - icosahedra, decahedra and octahedra whose outer shell is 30 % or 70 % complete;
    - singly and doubly twinned fcc spheres of 11..21 layers.
    Sizes outside ``n_min..n_max`` are dropped by the caller.
    """
    for lattice in ("fcc", "bcc", "sc", "hcp"):
        for radius in (4.0, 5.0, 6.0, 7.0, 8.0):
            for offset in ([0.25, 0.15, 0.1], [0.5, 0.3, 0.2]):
                yield (
                    lattice,
                    "imperfect.lattice_sphere",
                    {"lattice": lattice, "radius": radius, "offset": offset},
                )
    for lattice in ("fcc", "hcp"):
        for a in (4.0, 5.0, 6.0):
            for axis in ([0, 0, 1], [1, 1, 1]):
                yield (
                    lattice,
                    "imperfect.lattice_ellipsoid",
                    {"lattice": lattice, "semi_axes": [a, a, 1.5 * a], "axis": axis},
                )
    for radius in (3.5, 4.5):
        for axis in ([0, 0, 1], [1, 1, 0]):
            yield (
                "fcc",
                "imperfect.lattice_rod",
                {"lattice": "fcc", "radius": radius, "length": 4 * radius, "axis": axis},
            )
    bases = [("icosahedron", {"shells": s}) for s in (6, 7, 8, 9)] + [
        ("decahedron", {"p": 4, "q": 4, "r": 2}),
        ("decahedron", {"p": 6, "q": 6, "r": 2}),
        ("octahedron", {"length": 10, "cutoff": 3}),
        ("octahedron", {"length": 14, "cutoff": 4}),
        ("fcc", {"layers": [6, 8, 5]}),
        ("fcc", {"layers": [8, 11, 7]}),
    ]
    for shape, args in bases:
        for k in (10, 30):
            yield shape, "vacancies", {"shape": shape, "args": args, "k": k, "seed": 0}
    shells = [("icosahedron", {"shells": s}) for s in (6, 7, 8, 9, 10)] + [
        ("decahedron", {"p": 5, "q": 5, "r": 2}),
        ("decahedron", {"p": 6, "q": 6, "r": 2}),
        ("octahedron", {"length": 12, "cutoff": 4}),
        ("octahedron", {"length": 16, "cutoff": 5}),
    ]
    for shape, args in shells:
        for fraction in (0.3, 0.7):
            yield (
                shape,
                "imperfect.incomplete_shell",
                {"shape": shape, "args": args, "fraction": fraction, "seed": 0},
            )
    for n_layers in (11, 15, 19, 21):
        half = (n_layers - 1) / 2.0 * math.sqrt(2.0 / 3.0)
        for twins in ([n_layers // 2], [n_layers // 3, (2 * n_layers) // 3]):
            yield (
                "stacking",
                "imperfect.twinned_particle",
                {"n_layers": n_layers, "twins": twins, "radius": round(half + 1.0, 3)},
            )


VARIANT_SOURCES["imperfect"] = imperfect_variants

#: Default largest shape of the large library (atoms): a 5 nm particle.
LARGE_N_MAX: int = 4000
#: Default smallest shape of the large library (the training shapes stop at 200).
LARGE_N_MIN: int = 201
#: Stacking-faulted particles: layer counts and interior patterns (see _stacking_specs).
STACKING_LAYERS: tuple[int, ...] = (9, 11, 13, 15, 17, 19, 21, 23)
#: Largest diameter of a large shape, relative to a close-packed sphere of as many atoms.
ELONGATION_MAX: float = 1.5
#: Decahedra: q runs 1..2p + DECAHEDRON_Q_EXTRA, r 0..min(p, 6).
DECAHEDRON_Q_EXTRA: int = 6


def _max_layers(n_max: int) -> int:
    from .clusters import MAX_LAYERS

    return max(MAX_LAYERS, int(math.ceil(30.0 * (n_max / 4000.0) ** (1.0 / 3.0))))


def _lattice_specs(
    structure_type: str, n_max: int, l1: int
) -> Iterator[tuple[dict, np.ndarray]]:
    """Clusters ``layers = [l1, l2, l3]`` of a lattice type up to ``n_max`` atoms, with
    their coordinates (nn = 1), by the vector test of the catalog enumeration.

    A cluster equal to ``[l1 - 1, l2, l3]`` or ``[l1, l2 - 1, l3]`` (a subset with as
    many atoms) is skipped: that one comes first in the enumeration order.
    """
    big = _max_layers(n_max)
    xyz, need = _lattice_cache(structure_type, big)
    for l2 in range(1, big + 1):
        row = (need[:, 0] <= l1) & (need[:, 1] <= l2)
        full = int(row.sum())
        below = [
            (need[:, 0] <= l1 - 1) & (need[:, 1] <= l2),
            (need[:, 0] <= l1) & (need[:, 1] <= l2 - 1),
        ]
        any_l3 = False
        for l3 in range(1, big + 1):
            in3 = need[:, 2] <= l3
            mask = row & in3
            n = int(mask.sum())
            if n > n_max:
                break
            any_l3 = True
            if all(int((b & in3).sum()) != n for b in below):
                yield {"layers": [l1, l2, l3]}, xyz[mask]
            if n == full:
                break
        if not any_l3:
            break


_LATTICE_TABLES: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}


def _lattice_cache(structure_type: str, max_layers: int) -> tuple[np.ndarray, np.ndarray]:
    from .clusters import _lattice_layer_table

    key = (structure_type, max_layers)
    if key not in _LATTICE_TABLES:
        _LATTICE_TABLES[key] = _lattice_layer_table(structure_type, max_layers)
    return _LATTICE_TABLES[key]


def _lattice_l1_values(structure_type: str, n_max: int) -> list[int]:
    """The ``l1`` values whose smallest cluster ``[l1, 1, 1]`` has at most n_max atoms."""
    xyz, need = _lattice_cache(structure_type, _max_layers(n_max))
    out = []
    for l1 in range(1, _max_layers(n_max) + 1):
        if int(((need[:, 0] <= l1) & (need[:, 1] <= 1) & (need[:, 2] <= 1)).sum()) > n_max:
            break
        out.append(l1)
    return out


def _stacking_sequences(n_layers: int) -> list[str]:
    """Stacking sequences of ``n_layers`` layers: fcc, hcp, a central and an off-centre
    twin, two twins, an intrinsic (hh) and an extrinsic (hch) fault, and two seeded
    random sequences of hcp fraction about 1/3 and 2/3."""
    from .clusters import _sequence_from_environments

    m = n_layers - 2
    c = ["c"] * m

    def put(pos: Sequence[int], pat: str) -> str:
        env = list(c)
        for p0 in pos:
            for j, ch in enumerate(pat):
                if 0 <= p0 + j < m:
                    env[p0 + j] = ch
        return "".join(env)

    envs = [
        "c" * m,
        "h" * m,
        put([m // 2], "h"),
        put([m // 4], "h"),
        put([m // 3, (2 * m) // 3], "h"),
        put([m // 2 - 1], "hh"),
        put([m // 2 - 1], "hch"),
    ]
    rng = np.random.default_rng(1000 + n_layers)
    for frac in (1.0 / 3.0, 2.0 / 3.0):
        envs.append("".join("h" if u < frac else "c" for u in rng.random(m)))
    out: list[str] = []
    for e in envs:
        seq = _sequence_from_environments(e)
        if seq not in out:
            out.append(seq)
    return out


def _stacking_specs(n_max: int) -> Iterator[dict]:
    from .clusters import LAYER_SPACING

    for n in STACKING_LAYERS:
        half = (n - 1) / 2.0 * LAYER_SPACING
        for seq in _stacking_sequences(n):
            for extra in (0.5, 1.0):
                yield {"sequence": seq, "radius": round(half + extra, 3), "shape": "sphere"}
            for ratio in (0.8, 1.2):
                yield {"sequence": seq, "radius": round(half * ratio, 3), "shape": "prism"}


def _units(types: Sequence[str], n_max: int, variants: Sequence[str]) -> list[str]:
    """Work units of a large-library build, in their fixed order."""
    from .clusters import decahedron

    out: list[str] = []
    for t in types:
        if t in ("fcc", "bcc", "sc", "hcp"):
            out += [f"{t}:{l1}" for l1 in _lattice_l1_values(t, n_max)]
        elif t == "decahedron":
            for p in range(1, 100):
                if len(decahedron("Cu", p, 1, 0, nn=1.0)) > n_max:
                    break
                out.append(f"decahedron:{p}")
        else:
            out.append(t)
    out += [f"variants:{v}" for v in variants]
    return out


def _unit_specs(unit: str, n_min: int, n_max: int) -> Iterator[tuple[str, str, dict, Any]]:
    """``(type, builder, args, xyz or None)`` of one work unit, in a fixed order; the
    caller builds the shapes whose ``xyz`` is None and drops those outside the sizes."""
    from .clusters import MAX_DECAHEDRON, decahedron, icosahedron, octahedron

    t, _, rest = unit.partition(":")
    if t in ("fcc", "bcc", "sc", "hcp"):
        for args, xyz in _lattice_specs(t, n_max, int(rest)):
            yield t, t, args, xyz
    elif t == "icosahedron":
        for shells in range(1, 100):
            xyz = icosahedron("Cu", shells, nn=1.0).positions
            if len(xyz) > n_max:
                break
            yield t, t, {"shells": shells}, xyz
    elif t == "decahedron":
        p = int(rest)
        # rods are kept to an axial length of about twice the pentagon's width
        for q in range(1, 2 * p + DECAHEDRON_Q_EXTRA + 1):
            q_any = False
            for r in range(0, min(p, MAX_DECAHEDRON // 2 + 1) + 1):
                xyz = decahedron("Cu", p, q, r, nn=1.0).positions
                if len(xyz) > n_max:
                    break
                q_any = True
                yield t, t, {"p": p, "q": q, "r": r}, xyz
            if not q_any:
                break
    elif t == "octahedron":
        for length in range(2, 1000):
            any_ok = False
            for cutoff in range((length - 1) // 2, -1, -1):
                xyz = octahedron("Cu", length, cutoff, nn=1.0).positions
                if len(xyz) > n_max:
                    break
                any_ok = True
                yield t, t, {"length": length, "cutoff": cutoff}, xyz
            if not any_ok:
                break
    elif t == "stacking":
        for args in _stacking_specs(n_max):
            yield t, t, args, None
    elif t == "variants":
        if rest not in VARIANT_SOURCES:
            raise ParameterError(
                f"unknown variant set {rest!r}; registered: "
                f"{', '.join(sorted(VARIANT_SOURCES)) or 'none'}"
            )
        for st, maker, args in VARIANT_SOURCES[rest](n_min, n_max):
            yield st, maker, args, None
    else:
        raise ParameterError(f"unknown structure type {t!r}; choose from {LARGE_TYPES}")


def _compact(n: int, h: np.ndarray) -> bool:
    """Whether a shape's diameter is at most :data:`ELONGATION_MAX` times that of a
    close-packed sphere of ``n`` atoms (drops needles and plates)."""
    diameter = (len(h) - 1) * HIST_STEP_NN
    sphere = 2.0 * (3.0 * n / (4.0 * math.pi * math.sqrt(2.0))) ** (1.0 / 3.0)
    return diameter <= ELONGATION_MAX * sphere


def _hist_key(n: int, h: np.ndarray) -> str:
    return hashlib.sha1(
        np.round(h * n, 6).astype(np.float64).tobytes() + str(n).encode()
    ).hexdigest()


def build_unit(unit: str, n_min: int, n_max: int) -> dict[str, Any]:
    """Shapes of one work unit of :func:`build_large_library` (distinct within it).

    Returns
    -------
    dict
        ``types, makers, builders`` (lists), ``n_atoms`` (int32), ``first_shell``
        (float32), ``hist`` (flat float64) and ``hist_offsets`` (int64) arrays, ``keys``
        (de-duplication keys).
    """
    rows: dict[str, list] = {k: [] for k in ("types", "makers", "builders", "n", "fs", "h")}
    keys: list[str] = []
    seen: set[str] = set()
    for st, maker, args, xyz in _unit_specs(unit, n_min, n_max):
        if xyz is None:
            try:
                xyz = unit_coordinates(maker, args)
            except ParameterError:
                continue  # e.g. a stacking layer left empty by the cut
        n = len(xyz)
        if not n_min <= n <= n_max:
            continue
        xyz = np.asarray(xyz, dtype=float)
        h, fs = _describe(xyz - xyz.mean(axis=0))
        if maker == st and not _compact(n, h):  # variants are kept as designed
            continue
        key = _hist_key(n, h)
        if key in seen:
            continue
        seen.add(key)
        keys.append(key)
        rows["types"].append(st)
        rows["makers"].append(maker)
        rows["builders"].append(json.dumps(args))
        rows["n"].append(n)
        rows["fs"].append(fs)
        rows["h"].append(h)
    return {
        "types": rows["types"],
        "makers": rows["makers"],
        "builders": rows["builders"],
        "keys": keys,
        "n_atoms": np.asarray(rows["n"], dtype=np.int32),
        "first_shell": np.asarray(rows["fs"], dtype=np.float32),
        "hist": np.concatenate(rows["h"]) if rows["h"] else np.zeros(0),
        "hist_offsets": np.concatenate(
            [[0], np.cumsum([len(h) for h in rows["h"]])]
        ).astype(np.int64),
    }


def _save_unit(path: Path, res: dict[str, Any]) -> None:
    from safetensors.numpy import save

    from .fileio import atomic_write_bytes

    arrays = {
        k: np.ascontiguousarray(res[k]) for k in ("n_atoms", "first_shell", "hist_offsets")
    }
    arrays["hist"] = np.ascontiguousarray(res["hist"], dtype=np.float64)
    meta = {k: json.dumps(res[k]) for k in ("types", "makers", "builders", "keys")}
    atomic_write_bytes(path, save(arrays, metadata=meta), overwrite=True)


def _load_unit(path: Path) -> dict[str, Any] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata()
            res: dict[str, Any] = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        for k in ("types", "makers", "builders", "keys"):
            res[k] = json.loads(meta[k])
    except Exception:  # a damaged unit file is rebuilt
        return None
    return res


def _run_units(units, n_min, n_max, workers, scheduler, done) -> Iterator[tuple[str, dict]]:
    """Build the units not in ``done``; yields ``(unit, result)`` as they finish."""
    todo = [u for u in units if u not in done]
    if scheduler is not None:
        from dask.distributed import Client, as_completed

        own = not isinstance(scheduler, Client)
        try:
            client = (
                Client(scheduler, set_as_default=False, timeout=10) if own else scheduler
            )
        except (OSError, TimeoutError, ValueError) as exc:
            raise CatalogError(
                f"cannot reach the Dask scheduler at {scheduler}: {exc}"
            ) from exc
        futs = {}
        try:
            for u in todo:
                futs[client.submit(build_unit, u, n_min, n_max, pure=False)] = u
            for fut in as_completed(list(futs), loop=client.loop):
                yield futs[fut], fut.result()
        finally:
            for fut in futs:
                fut.cancel()
            if own:
                client.close()
    elif workers is not None and workers > 1 and len(todo) > 1:
        import concurrent.futures as cf
        import multiprocessing as mp

        ex = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
        try:
            futs = {ex.submit(build_unit, u, n_min, n_max): u for u in todo}
            for fut in cf.as_completed(futs):
                yield futs[fut], fut.result()
        finally:
            ex.shutdown(wait=True, cancel_futures=True)
    else:
        for u in todo:
            yield u, build_unit(u, n_min, n_max)


def large_shape_specs(
    types: Iterable[str] | None = None,
    n_min: int = LARGE_N_MIN,
    n_max: int = LARGE_N_MAX,
    variants: Sequence[str] = (),
) -> list[str]:
    """The work units of :func:`build_large_library` (e.g. ``"fcc:3"``: fcc with
    ``layers[0] = 3``; ``"decahedron:4"``: p = 4), in their fixed order."""
    types = _check_large_types(types)
    _check_n(n_min, n_max)
    return _units(types, n_max, list(variants))


def _check_large_types(types: Iterable[str] | None) -> tuple[str, ...]:
    if types is None:
        return LARGE_TYPES
    if isinstance(types, str):
        types = [types]
    want = [str(t).strip().lower() for t in types]
    bad = [t for t in want if t not in LARGE_TYPES]
    if bad:
        raise ParameterError(
            f"unknown structure type {bad[0]!r}; choose from {', '.join(LARGE_TYPES)}"
        )
    if not want:
        raise ParameterError("no structure types given")
    return tuple(t for t in LARGE_TYPES if t in want)


def _check_n(n_min: int, n_max: int) -> None:
    if int(n_min) < 2 or int(n_max) < int(n_min):
        raise ParameterError(f"need 2 <= n_min <= n_max, got {n_min}, {n_max}")


def build_large_library(
    types: Iterable[str] | None = None,
    n_min: int = LARGE_N_MIN,
    n_max: int = LARGE_N_MAX,
    variants: Sequence[str] = (),
    *,
    workers: int | None = None,
    scheduler: Any = None,
    work_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> ShapeLibrary:
    """Enumerate the distinct shapes of ``n_min..n_max`` atoms (builder arguments +
    screening histograms; no coordinates).

    Grids (each cut as in :mod:`diffpy_deepstruc.clusters`): fcc, bcc, sc and hcp
    ``layers`` 1..L per surface family (L = 30 at 4000 atoms, growing as n_max^(1/3));
    icosahedra of every shell count; decahedra ``p, q`` 1.., ``r`` 0..6; octahedra
    ``length`` 2.., every ``cutoff``; stacking-faulted particles of
    :data:`STACKING_LAYERS` layers (fcc, hcp, twins, intrinsic and extrinsic faults,
    seeded random sequences) cut as spheres and hexagonal prisms; and the registered
    ``variants`` (:func:`register_variants`).  Shapes with the same atom count and
    pair-distance histogram (the same PDF) are kept once, the first in this order;
    needles and plates (diameter above :data:`ELONGATION_MAX` times that of a
    close-packed sphere of as many atoms) are left out.

    Parameters
    ----------
    types : iterable of str, optional
        Of :data:`LARGE_TYPES` (default all).
    n_min, n_max : int
        Atom-count bounds, inclusive.
    variants : sequence of str
        Names of registered extra shape sets.
    workers : int, optional
        Local worker processes (default: serial).
    scheduler : str or dask.distributed.Client, optional
        Run the units on a Dask cluster instead.
    work_dir : path, optional
        Folder keeping each finished unit: an interrupted build resumes from it.
    log : callable, optional
        Progress messages.

    Returns
    -------
    ShapeLibrary
        Same content for any ``workers``/``scheduler`` (units are merged in order).
    """
    types = _check_large_types(types)
    _check_n(n_min, n_max)
    units = _units(types, int(n_max), list(variants))
    results: dict[str, dict] = {}
    wd = Path(work_dir) if work_dir is not None else None
    tag = f"{int(n_min)}-{int(n_max)}"
    if wd is not None:
        wd.mkdir(parents=True, exist_ok=True)
        for u in units:
            f = wd / f"{u.replace(':', '_')}.{tag}.safetensors"
            if f.is_file():
                res = _load_unit(f)
                if res is not None:
                    results[u] = res
        if log and results:
            log(f"resuming: {len(results)} of {len(units)} units already built in {wd}")
    for u, res in _run_units(units, int(n_min), int(n_max), workers, scheduler, results):
        results[u] = res
        if wd is not None:
            _save_unit(wd / f"{u.replace(':', '_')}.{tag}.safetensors", res)
        if log:
            log(f"{u}: {len(res['types'])} shapes ({len(results)}/{len(units)} units)")
    return _merge_units(
        [results[u] for u in units], f"large shapes {tag}: {len(units)} units"
    )


def _merge_units(parts: Sequence[dict[str, Any]], source: str) -> ShapeLibrary:
    seen: set[str] = set()
    types, makers, builders, n_atoms, fs, hs = [], [], [], [], [], []
    for res in parts:
        off = res["hist_offsets"]
        for j, key in enumerate(res["keys"]):
            if key in seen:
                continue
            seen.add(key)
            types.append(res["types"][j])
            makers.append(res["makers"][j])
            builders.append(res["builders"][j])
            n_atoms.append(int(res["n_atoms"][j]))
            fs.append(float(res["first_shell"][j]))
            hs.append(np.asarray(res["hist"][off[j] : off[j + 1]], dtype=np.float16))
    return ShapeLibrary(
        coords=np.zeros((0, 1, 3), dtype=np.float32),
        n_atoms=np.asarray(n_atoms, dtype=np.int32),
        types=types,
        builders=builders,
        source=source,
        makers=makers,
        training=np.zeros(len(types), dtype=bool),
        hist=np.concatenate(hs) if hs else np.zeros(0, np.float16),
        hist_offsets=np.concatenate([[0], np.cumsum([len(h) for h in hs])]).astype(
            np.int64
        ),
        first_shell=np.asarray(fs, dtype=np.float32),
    )


def merge_libraries(base: ShapeLibrary, extra: ShapeLibrary) -> ShapeLibrary:
    """``base``'s shapes (with their coordinates and training flags), then ``extra``'s.

    ``extra`` must hold no stored coordinates (a :func:`build_large_library` result).
    """
    if len(extra.coords):
        raise ParameterError("the second library must not carry stored coordinates")
    hb, ob, fb = base._histograms()
    he, oe, fe = extra._histograms()
    return ShapeLibrary(
        coords=base.coords,
        n_atoms=np.concatenate([base.n_atoms, extra.n_atoms]).astype(np.int32),
        types=list(base.types) + list(extra.types),
        builders=list(base.builders) + list(extra.builders),
        source=f"{base.source} + {extra.source}",
        makers=[base.maker(i) for i in range(len(base))]
        + [extra.maker(i) for i in range(len(extra))],
        training=np.array(
            [base.is_training(i) for i in range(len(base))]
            + [extra.is_training(i) for i in range(len(extra))],
            dtype=bool,
        ),
        hist=np.concatenate([hb, he]).astype(np.float16),
        hist_offsets=np.concatenate([ob, ob[-1] + oe[1:]]).astype(np.int64),
        first_shell=np.concatenate([fb, fe]).astype(np.float32),
    )


def build_shape_library(catalog_path: str | os.PathLike) -> ShapeLibrary:
    """Collect the distinct shapes of a catalog (type + builder arguments).

    Parameters
    ----------
    catalog_path : path
        An HDF5 catalog (:mod:`diffpy_deepstruc.catalog`).

    Returns
    -------
    ShapeLibrary
    """
    import h5py

    p = Path(catalog_path)
    try:
        with h5py.File(p, "r") as h5:
            types = [
                t.decode() if isinstance(t, bytes) else str(t)
                for t in h5["structures/type"][()]
            ]
            builders = [
                b.decode() if isinstance(b, bytes) else str(b)
                for b in h5["structures/builder"][()]
            ]
            natoms = h5["structures/natoms"][()]
            nn = h5["structures/nn"][()]
            seen: dict[str, int] = {}
            for i, key in enumerate(zip(types, builders, strict=True)):
                seen.setdefault(f"{key[0]} {key[1]}", i)
            rows = sorted(seen.values())
            xyz = h5["structures/xyz"][rows]
    except (OSError, KeyError) as exc:
        raise CatalogError(f"{p}: not a readable catalog ({exc})") from exc
    digest = hashlib.sha256(p.read_bytes()[: 1 << 20]).hexdigest()[:16]
    coords = np.zeros_like(xyz, dtype=np.float32)
    for j, i in enumerate(rows):
        n = int(natoms[i])
        coords[j, :n] = (xyz[j, :n] - xyz[j, :n].mean(axis=0)) / float(nn[i])
    return ShapeLibrary(
        coords=coords,
        n_atoms=natoms[rows].astype(np.int32),
        types=[types[i] for i in rows],
        builders=[builders[i] for i in rows],
        source=f"{p.name} (first MiB sha256 {digest})",
    )


def _is_v1(lib: ShapeLibrary) -> bool:
    return (
        lib.hist is None
        and lib.makers is None
        and lib.training is None
        and len(lib.coords) == len(lib)
    )


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_shape_library(
    lib: ShapeLibrary,
    path: str | os.PathLike,
    overwrite: bool = False,
    base: str | os.PathLike | None = None,
) -> Path:
    """Write ``path`` (safetensors) and ``path`` with suffix ``.json`` (metadata).

    A library of training shapes only (:func:`build_shape_library`) is written in
    format version 1 (coordinates).  Any other (large shapes, merged libraries) is
    written in version 2: atom counts, builder names and arguments, training flags,
    first-shell centres and the float16 screening histograms; the stored coordinates
    of its first shapes are written too, unless ``base`` names the version-1 library
    file that holds them (then only its file name and digest are recorded, and it
    must sit beside ``path`` when the library is loaded).
    """
    from safetensors.numpy import save

    from .fileio import atomic_write_bytes, atomic_write_text

    p = Path(path)
    if _is_v1(lib) and base is None:
        data = save(
            {
                "coords": lib.coords.astype(np.float32),
                "n_atoms": lib.n_atoms.astype(np.int32),
            }
        )
        meta = {
            "format": _FORMAT,
            "version": 1,
            "source": lib.source,
            "types": lib.types,
            "builders": lib.builders,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    else:
        flat, off, fs = lib._histograms()
        arrays = {
            "n_atoms": lib.n_atoms.astype(np.int32),
            "training": np.array([lib.is_training(i) for i in range(len(lib))], np.uint8),
            "first_shell": np.asarray(fs, dtype=np.float32),
            "hist": np.asarray(flat, dtype=np.float16),
            "hist_offsets": np.asarray(off, dtype=np.int64),
        }
        meta = {"format": _FORMAT, "version": 2, "source": lib.source}
        if base is not None:
            bp = Path(base)
            blib = load_shape_library(bp)
            nb = len(blib)
            if blib.types != lib.types[:nb] or blib.builders != lib.builders[:nb]:
                raise ParameterError(f"{bp} does not hold the first shapes of this library")
            meta["base"] = {"file": bp.name, "sha256": _file_digest(bp), "count": nb}
        elif len(lib.coords):
            arrays["coords"] = lib.coords.astype(np.float32)
        data = save(arrays)
        meta.update(
            {
                "hist_step_nn": HIST_STEP_NN,
                "types": lib.types,
                "makers": [lib.maker(i) for i in range(len(lib))],
                "builders": lib.builders,
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    atomic_write_bytes(p, data, overwrite=overwrite)
    atomic_write_text(p.with_suffix(".json"), json.dumps(meta), overwrite=overwrite)
    return p


def load_shape_library(path: str | os.PathLike) -> ShapeLibrary:
    """Read a library written by :func:`save_shape_library`, checking its digest."""
    from safetensors.numpy import load

    p = Path(path)
    try:
        data = p.read_bytes()
        meta = json.loads(p.with_suffix(".json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{p}: cannot read the shape library ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise CheckpointError(f"{p}: not a diffpy-deepstruc shape library")
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"{p}: digest mismatch: the file is damaged or was altered")
    version = meta.get("version")
    if version not in (1, 2):
        raise CheckpointError(f"{p}: shape library version {version!r} is not supported")
    try:
        arrays = load(data)
        if version == 1:
            lib = ShapeLibrary(
                coords=arrays["coords"],
                n_atoms=arrays["n_atoms"],
                types=list(meta["types"]),
                builders=list(meta["builders"]),
                source=str(meta.get("source", "")),
            )
        else:
            if float(meta.get("hist_step_nn", -1)) != HIST_STEP_NN:
                raise CheckpointError(f"{p}: histogram spacing differs from {HIST_STEP_NN}")
            coords = arrays.get("coords", np.zeros((0, 1, 3), np.float32))
            if "base" in meta:
                coords = _base_coords(p, meta)
            lib = ShapeLibrary(
                coords=coords,
                n_atoms=arrays["n_atoms"],
                types=list(meta["types"]),
                builders=list(meta["builders"]),
                source=str(meta.get("source", "")),
                makers=list(meta["makers"]),
                training=arrays["training"].astype(bool),
                hist=arrays["hist"],
                hist_offsets=arrays["hist_offsets"],
                first_shell=arrays["first_shell"],
            )
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{p}: malformed shape library ({exc})") from exc
    m = len(lib.n_atoms)
    if not (len(lib.types) == len(lib.builders) == m and len(lib.coords) <= m):
        raise CheckpointError(f"{p}: shape library arrays disagree in length")
    if version == 1 and len(lib.coords) != m:
        raise CheckpointError(f"{p}: shape library arrays disagree in length")
    if version == 2 and not (
        len(lib.makers or []) == m
        and len(lib.training) == m
        and len(lib.first_shell) == m
        and len(lib.hist_offsets) == m + 1
        and int(lib.hist_offsets[-1]) == len(lib.hist)
    ):
        raise CheckpointError(f"{p}: shape library arrays disagree in length")
    return lib


def _base_coords(p: Path, meta: dict) -> np.ndarray:
    """Coordinates of the version-1 library a version-2 file builds on."""
    base = meta["base"]
    bp = p.parent / str(base["file"])
    if not bp.is_file():
        raise CheckpointError(f"{p}: needs {bp.name} beside it (the training shapes)")
    if _file_digest(bp) != base.get("sha256"):
        raise CheckpointError(f"{p}: {bp.name} is not the library it was built on")
    blib = load_shape_library(bp)
    nb = len(blib)
    if nb != int(base.get("count", -1)) or blib.types != list(meta["types"])[:nb]:
        raise CheckpointError(f"{p}: {bp.name} does not match its first shapes")
    return blib.coords


def pretrained_library(full: bool = False) -> ShapeLibrary | None:
    """The library shipped beside the pretrained model, or None.

    Parameters
    ----------
    full : bool
        False: the training shapes (``pretrained/shapes.safetensors``, at most 200
        atoms).  True: the training shapes followed by the large shapes
        (``pretrained/shapes_large.safetensors``, 201..4000 atoms, builder arguments
        and screening histograms; :meth:`ShapeLibrary.is_training` tells them apart).

    Each file is read once per process; later calls return the same object (whose
    screening matrix is then built once).
    """
    return _pretrained("shapes_large.safetensors" if full else "shapes.safetensors")


@functools.lru_cache(maxsize=2)
def _pretrained(name: str) -> ShapeLibrary | None:
    # One object per process: its screening matrix is built once and reused.
    res = resources.files("diffpy_deepstruc") / "pretrained" / name
    with resources.as_file(res) as p:
        return load_shape_library(p) if Path(p).is_file() else None
