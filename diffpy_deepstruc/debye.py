"""Debye PDF engine: G(r) and F(Q) of finite clusters, the way srreal computes them.

This module reproduces diffpy.srreal's ``DebyePDFCalculator`` (libdiffpy 1.4) in
float64 torch, on the CPU or a GPU, and batches many clusters of different sizes into
one call.  The conventions (all taken from libdiffpy, see ``docs/debye.md``):

1. The r-range is extended by ``ext = min(10, 6*2*pi/qmax + tail)``, where ``tail`` is
   where a Gaussian of the largest peak width (Uiso_max, Jeong sharpening at rmin/rmax)
   drops below 3.33e-6 of its maximum; ``rcalchi = ceil((rmax + ext)/rstep) * rstep``
   and ``rcalclo`` likewise (floored at 0).  Only pairs with rcalclo <= d <= rcalchi
   count.
2. ``qstep = pi / rcalchi``; ``Q_k = k*qstep`` for ``k < ceil(qmax/qstep)``.
3. ``F(Q) = sum_{i != j} f_i f_j exp(-s_ij^2 Q^2/2) sin(Q d_ij)/d_ij / (N <f>^2)`` with
   the Jeong width ``s_ij^2 = (Ui+Uj)(1 - delta1/d - delta2/d^2 + (qbroad d)^2)``
   (clipped at 0), Waasmaier-Kirfel X-ray form factors (``xraydb``), and the srreal
   cut-off that drops a pair term once ``2 f_i f_j exp(.)/d`` falls below 1e-6.
4. F is zeroed below qmin and sine-transformed onto the zero-padded grid of srreal's FFT
   (``npad = 2**ceil(log2(max(nQ, ceil(pi/rstep/qstep))))`` points spaced
   ``pi/(npad*qstep)``); G on the user grid is linearly interpolated from it.
5. ``G *= exp(-(qdamp r)^2/2) * scale``.

Two exact-to-1e-12 evaluation paths share these conventions: pairs are grouped by
(cluster, element pair, Ui+Uj) and identical distances are merged (``"exact"``: the
Debye sum over unique distances), and large low-symmetry clusters are spread onto a
fine distance grid with 8-point Lagrange weights and summed with one matrix product
(``"grid"``: error below about 1e-8 of max|G|).  ``method="auto"`` picks per cluster
whichever is cheaper.

Public API: :class:`PDFParameters`, :func:`pdf_from_arrays`, :func:`fq_from_arrays`,
:func:`pdf_batch`, :func:`pdf_from_structure`, :func:`srreal_available`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import ElementError, ParameterError, StructureError

__all__ = [
    "PDFParameters",
    "fq_from_arrays",
    "pdf_batch",
    "pdf_from_arrays",
    "pdf_from_structure",
    "srreal_available",
]

# libdiffpy constants -------------------------------------------------------------------

_SQRT_DOUBLE_EPS = math.sqrt(np.finfo(float).eps)  # mathutils eps_eq tolerance
_DOUBLE_EPS = float(np.finfo(float).eps)
_PEAK_PRECISION = 3.33e-6  # DEFAULT_PEAKPRECISION (peak tail extension)
_DEBYE_PRECISION = 1e-6  # BaseDebyeSum debyeprecision (per-pair sine cut-off)
_MAX_EXTENSION = 10.0  # DebyePDFCalculator maxextension
_NRIPPLES = 6  # termination ripples in the r-range extension
_GAUSS_SIGMA_TO_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))

# engine tuning -------------------------------------------------------------------------

_DIST_MERGE_TOL = 1e-10  # sorted distances closer than this (A) are one entry
_GRID_ORDER = 8  # Lagrange points per distance on the grid path
_GRID_QH = 0.4  # grid spacing h = min(0.02 A, 0.4 / qmax)
_GRID_HMAX = 0.02
_MAX_BLOCK_PAIRS = 1 << 22  # atom pairs made at once (bounds memory)
_MAX_SUB_CLUSTERS = 512  # clusters per size bucket block
_BUCKET_SPREAD = 0.15  # a bucket holds sizes n0 .. n0 + max(4, 0.15 n0), padded
_MAX_PASS_CLUSTERS = 2048  # clusters whose grid rows are summed together
_MAX_CHUNK_ELEMENTS = 1 << 22  # elements of one [entries, nQ] temporary
_MAX_DENSE_IDS = 1 << 24  # compact group ids by a dense table up to this size
# rough costs (ns) of the two paths, for method="auto"
_COST_EXACT = 12.0  # per entry and Q point (exp, sin, products)
_COST_SPREAD = 150.0  # per entry spread on the grid
_COST_MATMUL = 0.05  # per grid node, group and Q point
_COST_KERNEL = 6.0  # per grid node and Q point of a kernel (one per Ui+Uj value)
_MAX_R_POINTS = 10_000_000
_MAX_Q_POINTS = 1_000_000
_METHODS = ("auto", "exact", "grid")
_BACKENDS = ("auto", "torch", "srreal")

_FIELDS = (
    "rmin",
    "rmax",
    "rstep",
    "qmin",
    "qmax",
    "qdamp",
    "qbroad",
    "delta1",
    "delta2",
    "scale",
)


def _rmin_steps(x: float, step: float) -> int:
    """libdiffpy ``pdfutils_rminSteps``: first grid index >= x (round-off aware)."""
    rv = math.ceil(x / step)
    if abs(x - (rv - 1) * step) < _SQRT_DOUBLE_EPS:
        rv -= 1
    return int(rv)


def _rmax_steps(x: float, step: float) -> int:
    """libdiffpy ``pdfutils_rmaxSteps``: one past the last grid index below x."""
    return int(math.ceil(x / step))


# Parameters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PDFParameters:
    """Calculation parameters of a simulated PDF (srreal names and units).

    Parameters
    ----------
    rmin, rmax, rstep : float
        The r-grid, in Angstrom: multiples of ``rstep`` with ``rmin <= r < rmax``.
    qmin, qmax : float
        Q-range of the Fourier transform, in 1/Angstrom.
    qdamp : float
        Gaussian envelope ``exp(-(qdamp r)^2 / 2)`` of the instrument resolution (1/A).
    qbroad : float
        Peak broadening from the Q resolution (1/A), Jeong model.
    delta1, delta2 : float
        Correlated-motion peak sharpening, ``1/r`` (A) and ``1/r^2`` (A^2) terms.
    scale : float
        Overall scale factor of G(r).

    Instances are immutable and validated on construction; an invalid value raises
    :class:`~diffpy_deepstruc.errors.ParameterError`.
    """

    rmin: float = 0.0
    rmax: float = 30.0
    rstep: float = 0.01
    qmin: float = 0.7
    qmax: float = 25.0
    qdamp: float = 0.04
    qbroad: float = 0.0
    delta1: float = 0.0
    delta2: float = 2.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        for name in _FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise ParameterError(
                    f"PDFParameters.{name} must be a real number, got {value!r}"
                )
            object.__setattr__(self, name, float(value))
        self.validate()

    def validate(self) -> PDFParameters:
        """Check every value; return ``self`` or raise ``ParameterError``."""
        for name in _FIELDS:
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ParameterError(f"{name} must be a finite number, got {value!r}")
        if self.rmin < 0:
            raise ParameterError(f"rmin must be >= 0 A, got {self.rmin}")
        if self.rstep <= 0:
            raise ParameterError(f"rstep must be > 0 A, got {self.rstep}")
        if self.rmax <= self.rmin:
            raise ParameterError(
                f"rmax ({self.rmax} A) must be larger than rmin ({self.rmin} A)"
            )
        npts = _rmax_steps(self.rmax, self.rstep) - _rmin_steps(self.rmin, self.rstep)
        if npts < 1:
            raise ParameterError(
                f"the r-grid rmin={self.rmin}, rmax={self.rmax}, rstep={self.rstep} "
                "holds no point; lower rstep or widen the range"
            )
        if npts > _MAX_R_POINTS:
            raise ParameterError(
                f"the r-grid would hold {npts} points (limit {_MAX_R_POINTS}); "
                "increase rstep or reduce rmax"
            )
        if self.qmin < 0:
            raise ParameterError(f"qmin must be >= 0 1/A, got {self.qmin}")
        if self.qmax <= self.qmin:
            raise ParameterError(
                f"qmax ({self.qmax} 1/A) must be larger than qmin ({self.qmin} 1/A)"
            )
        if self.qmax * (self.rmax + _MAX_EXTENSION) / math.pi > _MAX_Q_POINTS:
            raise ParameterError(
                f"qmax={self.qmax:g} with rmax={self.rmax:.6g} needs more than "
                f"{_MAX_Q_POINTS} Q points; reduce qmax or rmax"
            )
        if self.qdamp < 0:
            raise ParameterError(f"qdamp must be >= 0 1/A, got {self.qdamp}")
        if self.qbroad < 0:
            raise ParameterError(f"qbroad must be >= 0 1/A, got {self.qbroad}")
        return self

    def r_grid(self) -> np.ndarray:
        """The r values (A) of the calculated G(r): ``k*rstep`` for rmin <= r < rmax."""
        lo = _rmin_steps(self.rmin, self.rstep)
        hi = _rmax_steps(self.rmax, self.rstep)
        return np.arange(lo, hi, dtype=float) * self.rstep

    def to_dict(self) -> dict[str, float]:
        """Return the parameters as a plain ``{name: float}`` dictionary."""
        return {name: float(getattr(self, name)) for name in _FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], strict: bool = True) -> PDFParameters:
        """Build parameters from a mapping; missing keys take the defaults.

        Parameters
        ----------
        data : mapping
            Keys among the field names.
        strict : bool
            Raise ``ParameterError`` on unknown keys (default); ``False`` ignores them
            (e.g. a ``uiso`` entry of a parameter table).
        """
        if not isinstance(data, Mapping):
            raise ParameterError(
                f"PDF parameters must be a mapping, got {type(data).__name__}"
            )
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown and strict:
            raise ParameterError(
                f"unknown PDF parameter(s) {unknown}; allowed: {', '.join(_FIELDS)}"
            )
        return cls(**{k: data[k] for k in _FIELDS if k in data})

    def replace(self, **changes: Any) -> PDFParameters:
        """Return a copy with some fields changed (validated)."""
        unknown = sorted(set(changes) - set(_FIELDS))
        if unknown:
            raise ParameterError(f"unknown PDF parameter(s) {unknown}")
        return dataclasses.replace(self, **changes)


def _as_params(params: PDFParameters | Mapping[str, Any] | None) -> PDFParameters:
    if params is None:
        return PDFParameters()
    if isinstance(params, PDFParameters):
        return params
    if isinstance(params, Mapping):
        return PDFParameters.from_dict(params)
    raise ParameterError(
        f"params must be a PDFParameters or a mapping, got {type(params).__name__}"
    )


# Elements and form factors -------------------------------------------------------------

_ELEMENT_RE = re.compile(r"^([A-Za-z]{1,2})(\d*[+-]?|[+-]\d*)$")


@functools.lru_cache(maxsize=512)
def _normalize_element(symbol: str) -> str:
    """Canonical symbol (``'au'`` -> ``'Au'``, ``'fe2+'`` -> ``'Fe2+'``) with a form factor."""
    from .xraydata import has_f0

    m = _ELEMENT_RE.match(symbol.strip())
    if m is None:
        raise ElementError(f"unknown element symbol {symbol!r}")
    base, charge = m.groups()
    name = base[0].upper() + base[1:].lower() + charge
    if not has_f0(name):
        raise ElementError(
            f"unknown element {symbol!r}: no Waasmaier-Kirfel X-ray form factor"
        )
    return name


@functools.lru_cache(maxsize=1024)
def _form_factor(element: str, qstep: float, nq: int) -> np.ndarray:
    """Waasmaier-Kirfel f0 at Q_k = k*qstep (tabulated against sin(theta)/lambda = Q/4pi)."""
    from .xraydata import f0

    q = np.arange(nq, dtype=float) * qstep
    f = np.asarray(f0(element, q / (4.0 * math.pi)), dtype=float).reshape(-1)
    f.setflags(write=False)
    return f


# Input checking ------------------------------------------------------------------------


def _check_cluster(
    xyz: Any, elements: Any, uiso: Any, where: str = ""
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Validate one cluster; return float64 xyz [N,3], element list, uiso [N]."""
    try:
        x = np.array(xyz, dtype=float)
    except (TypeError, ValueError) as exc:
        raise StructureError(f"{where}xyz is not a numeric array: {exc}") from exc
    if x.ndim != 2 or x.shape[1] != 3:
        raise StructureError(f"{where}xyz must have shape (N, 3), got {x.shape}")
    n = x.shape[0]
    if n == 0:
        raise StructureError(f"{where}the structure has no atoms")
    if not np.all(np.isfinite(x)):
        raise StructureError(f"{where}xyz holds NaN or infinite coordinates")
    if isinstance(elements, str):
        elements = [elements] * n
    try:
        els = list(elements)
    except TypeError as exc:
        raise StructureError(f"{where}elements must be a sequence of symbols") from exc
    if len(els) != n:
        raise StructureError(f"{where}{len(els)} element symbols for {n} atoms")
    names = []
    for e in els:
        if isinstance(e, bytes):
            e = e.decode()
        if not isinstance(e, str):
            raise ElementError(f"{where}element symbols must be strings, got {e!r}")
        names.append(_normalize_element(e))
    try:
        u = np.array(uiso, dtype=float)
    except (TypeError, ValueError) as exc:
        raise StructureError(f"{where}uiso is not numeric: {exc}") from exc
    if u.ndim == 0:
        u = np.full(n, float(u))
    if u.shape != (n,):
        raise StructureError(
            f"{where}uiso must be a scalar or have shape ({n},), got {u.shape}"
        )
    if not np.all(np.isfinite(u)):
        raise StructureError(f"{where}uiso holds NaN or infinite values")
    return x, names, u


def _resolve_device(device: Any) -> torch.device:
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (TypeError, RuntimeError) as exc:
        raise ParameterError(f"invalid torch device {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device {device!r} requested but CUDA is not available")
    return dev


def _check_method(method: str) -> str:
    if method not in _METHODS:
        raise ParameterError(f"method must be one of {_METHODS}, got {method!r}")
    return method


# Calculation plan (grids shared by all clusters with the same extended range) ---------


def _sharpening(p: PDFParameters, r: float) -> float:
    """Jeong msd sharpening ratio at distance r (0 at r = 0, like libdiffpy)."""
    if r < _DOUBLE_EPS:
        return 0.0
    return 1.0 - p.delta1 / r - p.delta2 / r**2 + (p.qbroad * r) ** 2


def _extension(p: PDFParameters, umax: float) -> float:
    """Total r-range extension: termination ripples plus the widest peak tail."""
    ripples = _NRIPPLES * 2 * math.pi / p.qmax if p.qmax > 0 else 0.0
    maxmsd = 2.0 * umax
    width0 = _GAUSS_SIGMA_TO_FWHM * math.sqrt(maxmsd) if maxmsd > 0 else 0.0
    sharp = max(1.0, _sharpening(p, p.rmin), _sharpening(p, p.rmax))
    maxfwhm = width0 * math.sqrt(sharp)
    eps = max(_PEAK_PRECISION, _DOUBLE_EPS)
    halfbound = math.sqrt(-math.log(eps) / (4 * math.log(2.0))) if eps < 1 else 0.0
    tail = halfbound * maxfwhm if maxfwhm > 0 else 0.0
    return min(_MAX_EXTENSION, ripples + tail)


def _range_steps(p: PDFParameters, umax: float) -> tuple[int, int]:
    ext = _extension(p, umax)
    lo = max(0, _rmin_steps(p.rmin - ext, p.rstep))
    hi = _rmax_steps(p.rmax + ext, p.rstep)
    return lo, hi


class _Plan:
    """Q grid, transform matrix and form factors for one (params, extended range)."""

    def __init__(self, p: PDFParameters, lo: int, hi: int, device: torch.device):
        self.params = p
        self.device = device
        self.rcalclo = lo * p.rstep
        self.rcalchi = hi * p.rstep
        if p.qmax * self.rcalchi / math.pi > 4:
            self.qstep = math.pi / self.rcalchi
        else:
            self.qstep = p.qmax / 4
        self.nq = int(math.ceil(p.qmax / self.qstep))
        self.nqmin = min(self.nq, max(0, _rmin_steps(p.qmin, self.qstep)))
        self.q = torch.arange(self.nq, dtype=torch.float64, device=device) * self.qstep
        self.r = p.r_grid()
        self.h = min(_GRID_HMAX, _GRID_QH / p.qmax)
        self.ngrid = int(math.ceil(self.rcalchi / self.h)) + _GRID_ORDER + 2
        # srreal's zero-padded FFT grid and the interpolation onto the user's r-grid
        nfromdr = int(math.ceil(math.pi / p.rstep / self.qstep))
        self.npad = 1 << int(math.ceil(math.log2(max(self.nq, nfromdr, 2))))
        drpad = math.pi / (self.npad * self.qstep)
        x = self.r / drpad
        ilo = np.minimum(np.floor(x), self.npad - 2)
        self.ilo = torch.as_tensor(ilo.astype(np.int64), device=device)
        self.wpad = torch.as_tensor(x - ilo, dtype=torch.float64, device=device)
        env = np.full(len(self.r), p.scale)
        if p.qdamp > 0:
            env *= np.exp(-0.5 * (p.qdamp * self.r) ** 2)
        self.env = torch.as_tensor(env, dtype=torch.float64, device=device)
        self._ff: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()

    def to_G(self, F: torch.Tensor) -> torch.Tensor:
        """G on the user grid from F rows [B, nQ]: zero below qmin, sine FFT, envelope."""
        Fz = F.clone()
        Fz[:, : self.nqmin] = 0.0
        # sum_k F_k sin(pi j k / npad) = -Im(DFT of F zero-padded to 2 npad)[j]
        X = torch.fft.rfft(Fz, n=2 * self.npad, dim=1)
        gpad = X.imag[:, : self.npad] * (-2.0 / math.pi * self.qstep)
        G = (1.0 - self.wpad) * gpad[:, self.ilo] + self.wpad * gpad[:, self.ilo + 1]
        return G * self.env

    def kernel_base(self, ncol: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid-path kernel factors on nodes k*h, k < ncol: sin(Qd)/d and -c(d) Q^2/2."""
        key = (self.params, self.rcalchi, str(self.device))
        with _KERNEL_LOCK:
            hit = _KERNELS.get(key)
            if hit is not None and hit[0].shape[0] >= ncol:
                _KERNELS.move_to_end(key)
                return hit[0][:ncol], hit[1][:ncol]
        n = self.ngrid
        q = self.q
        dn = torch.arange(n, dtype=torch.float64, device=self.device) * self.h
        dn[0] = 1.0  # node 0 is never used (d >= 5h); avoid 0/0
        S = torch.sin(dn[:, None] * q[None, :]) / dn[:, None]
        S[0] = 0.0
        C = (-0.5 * _jeong(self.params, dn))[:, None] * (q * q)[None, :]
        with _KERNEL_LOCK:
            _KERNELS[key] = (S, C)
            while len(_KERNELS) > _MAX_KERNELS:
                _KERNELS.popitem(last=False)
        return S[:ncol], C[:ncol]

    def form_factors(self, elements: Sequence[str]) -> torch.Tensor:
        """[len(elements), nQ] X-ray form factors on this plan's Q grid."""
        rows = []
        with self._lock:
            for e in elements:
                t = self._ff.get(e)
                if t is None:
                    t = torch.tensor(
                        _form_factor(e, self.qstep, self.nq),
                        dtype=torch.float64,
                        device=self.device,
                    )
                    self._ff[e] = t
                rows.append(t)
        return torch.stack(rows)


_PLANS: OrderedDict[tuple, _Plan] = OrderedDict()
_PLANS_LOCK = threading.Lock()
_MAX_PLANS = 256
_KERNELS: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
_KERNEL_LOCK = threading.Lock()
_MAX_KERNELS = 4


def _get_plan(p: PDFParameters, lo: int, hi: int, device: torch.device) -> _Plan:
    key = (p, lo, hi, str(device))
    with _PLANS_LOCK:
        plan = _PLANS.get(key)
        if plan is not None:
            _PLANS.move_to_end(key)
            return plan
    plan = _Plan(p, lo, hi, device)
    with _PLANS_LOCK:
        _PLANS[key] = plan
        while len(_PLANS) > _MAX_PLANS:
            _PLANS.popitem(last=False)
    return plan


# Debye summation -----------------------------------------------------------------------


def _jeong_raw(p: PDFParameters, d: torch.Tensor) -> torch.Tensor:
    """Jeong msd sharpening factor 1 - delta1/d - delta2/d^2 + (qbroad d)^2."""
    return 1.0 - p.delta1 / d - p.delta2 / (d * d) + (p.qbroad * d) ** 2


def _jeong(p: PDFParameters, d: torch.Tensor) -> torch.Tensor:
    """The Jeong factor clipped at 0 (libdiffpy gives such pairs zero width)."""
    return _jeong_raw(p, d).clamp(min=0.0)


_TRIU_CACHE: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}


def _triu(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    key = (n, str(device))
    t = _TRIU_CACHE.get(key)
    if t is None:
        iu, ju = torch.triu_indices(n, n, 1, device=device)
        t = (iu, ju)
        if n <= 1024:
            _TRIU_CACHE[key] = t
    return t


def _sort_rows(x: torch.Tensor, want_indices: bool):
    """Row-wise ascending sort.  numpy does it on the CPU (several times faster there)."""
    if x.device.type == "cpu":
        a = x.numpy()
        if want_indices:
            idx = np.argsort(a, axis=1)
            return (
                torch.from_numpy(np.take_along_axis(a, idx, axis=1)),
                torch.from_numpy(idx),
            )
        return torch.from_numpy(np.sort(a, axis=1)), None
    v, i = torch.sort(x, dim=1)
    return v, (i if want_indices else None)


def _lagrange_weights(f: torch.Tensor, order: int, scale: torch.Tensor) -> torch.Tensor:
    """[order, n] Lagrange weights on nodes 0..order-1 at x = order/2 - 1 + f, times scale."""
    diff = (f + (order // 2 - 1))[None, :] - torch.arange(
        order, dtype=f.dtype, device=f.device
    )[:, None]  # [order, n], rows contiguous
    w = torch.empty_like(diff)
    # prefix products (starting from scale), then suffix products folded in backwards
    w[0] = scale
    for m in range(1, order):
        torch.mul(w[m - 1], diff[m - 1], out=w[m])
    suf = diff[order - 1].clone()
    for m in range(order - 2, -1, -1):
        w[m].mul_(suf)
        if m:
            suf.mul_(diff[m])
    inv_denom = torch.tensor(
        [
            (-1) ** (order - 1 - m) / (math.factorial(m) * math.factorial(order - 1 - m))
            for m in range(order)
        ],
        dtype=f.dtype,
        device=f.device,
    )
    w *= inv_denom[:, None]
    return w


def _species(types: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Atom species (element type, Uiso): per-atom index, species types, species Uiso."""
    uv, uinv = np.unique(u, return_inverse=True)
    key = types * len(uv) + uinv.reshape(-1)
    kv, sp = np.unique(key, return_inverse=True)
    return sp.reshape(-1).astype(np.int64), kv // len(uv), uv[kv % len(uv)]


class _Batch:
    """Validated clusters with global element types and per-cluster atom species."""

    def __init__(self, clusters, device: torch.device):
        self.device = device
        types: dict[str, int] = {}
        self.xyz, self.types, self.uiso, self.sizes = [], [], [], []
        self.species, self.spec_type, self.spec_u = [], [], []
        for k, cl in enumerate(clusters):
            try:
                xyz, els, u = cl
            except (TypeError, ValueError) as exc:
                raise StructureError(
                    f"cluster {k}: expected a (xyz, elements, uiso) tuple"
                ) from exc
            where = f"cluster {k}: " if len(clusters) > 1 else ""
            x, names, uu = _check_cluster(xyz, els, u, where)
            t = np.array([types.setdefault(e, len(types)) for e in names], dtype=np.int64)
            sp, st, su = _species(t, uu)
            self.xyz.append(x)
            self.types.append(t)
            self.uiso.append(uu)
            self.sizes.append(len(names))
            self.species.append(sp)
            self.spec_type.append(st)
            self.spec_u.append(su)
        self.elements = list(types)  # type id -> symbol

    def n_usums(self, c: int) -> int:
        """Number of distinct Ui+Uj values among the species pairs of cluster c."""
        su = self.spec_u[c]
        s = np.add.outer(su, su)[np.triu_indices(len(su))]
        return len(np.unique(np.maximum(s, 0.0)))


def _debye_F(
    batch: _Batch, p: PDFParameters, method: str, range_steps=None
) -> list[tuple[_Plan, list[int], torch.Tensor]]:
    """Normalised F(Q) of every cluster, grouped by calculation plan.

    ``range_steps(p, umax) -> (lo, hi)`` gives the extended range in r-steps (default
    :func:`_range_steps`, a fresh srreal calculator).
    """
    dev = batch.device
    range_steps = range_steps or _range_steps
    groups: dict[tuple[int, int], list[int]] = {}
    for c, u in enumerate(batch.uiso):
        groups.setdefault(range_steps(p, float(u.max())), []).append(c)
    out = []
    ntypes = len(batch.elements)
    for (lo, hi), members in groups.items():
        plan = _get_plan(p, lo, hi, dev)
        ftab = plan.form_factors(batch.elements)  # [T, nQ]
        F = torch.zeros(len(members), plan.nq, dtype=torch.float64, device=dev)
        for start in range(0, len(members), _MAX_PASS_CLUSTERS):
            rows = list(range(start, min(len(members), start + _MAX_PASS_CLUSTERS)))
            _Pass(plan, p, batch, members, rows, F, ftab, method).run()
        # normalisation by N <f>^2 (all atoms count, also those without partners)
        counts = np.zeros((len(members), ntypes))
        for m, c in enumerate(members):
            counts[m] = np.bincount(batch.types[c], minlength=ntypes)
        counts_t = torch.as_tensor(counts, dtype=torch.float64, device=dev)
        natoms = counts_t.sum(dim=1, keepdim=True)
        favg = counts_t @ ftab / natoms
        denom = natoms * favg * favg
        F = torch.where(denom != 0, F / torch.where(denom != 0, denom, 1.0), 0.0)
        out.append((plan, members, F))
    return out


class _Pass:
    """Debye sums of up to _MAX_PASS_CLUSTERS clusters sharing one plan.

    Atom pairs are made per size bucket (``cdist`` on [b, N, N]), sorted per cluster
    and merged into unique (species pair, distance) entries with multiplicities.  Each
    cluster then takes the cheaper of two paths: the exact Debye sum over its entries,
    or the grid path (entries spread on a distance grid, summed by one matrix product
    per Ui+Uj value at the end of the pass).
    """

    def __init__(
        self,
        plan: _Plan,
        p: PDFParameters,
        batch: _Batch,
        members: list[int],
        rows: list[int],
        F: torch.Tensor,
        ftab: torch.Tensor,
        method: str,
    ):
        self.plan, self.p, self.batch = plan, p, batch
        self.members, self.rows, self.F, self.ftab = members, rows, F, ftab
        self.method = method
        self.dev = F.device
        self.h = plan.h
        self.half = _GRID_ORDER // 2
        self.ngrid = plan.ngrid
        qlast = float(plan.q[-1])
        self.qlast2 = qlast * qlast
        self.ffmin = (ftab[:, None, :] * ftab[None, :, :]).amin(dim=-1)  # [T, T]
        self.grid_parts: list[tuple] = []
        # grid stencils must not straddle a point where the Jeong factor is clipped to
        # 0 (a kink of the summand): such distances, and d < (half+1) h, stay exact
        nodes = torch.arange(1, self.ngrid, dtype=torch.float64, device=self.dev) * self.h
        pos = (_jeong_raw(p, nodes) > 0).to(torch.int8)
        flips = torch.nonzero(pos[1:] != pos[:-1], as_tuple=True)[0]
        last_flip = int(flips.max()) + 2 if len(flips) else 0  # node index past the flip
        self.dmin_grid = (max(self.half + 1, last_flip + self.half + 1)) * self.h
        if len(flips) and self.dmin_grid > plan.rcalchi / 2:
            self.dmin_grid = math.inf  # kinks far out: keep everything exact
        # how many clusters of the pass can share one grid kernel (same Ui+Uj)
        ushare: dict[float, int] = {}
        for r in rows:
            c = members[r]
            if len(batch.spec_u[c]) == 1:
                key = max(0.0, 2 * float(batch.spec_u[c][0]))
                ushare[key] = ushare.get(key, 0) + 1
        self.share = {}
        self.nusum = {}
        for r in rows:
            c = members[r]
            if len(batch.spec_u[c]) == 1:
                self.share[r] = ushare[max(0.0, 2 * float(batch.spec_u[c][0]))]
                self.nusum[r] = 1
            else:
                self.share[r] = 1
                self.nusum[r] = batch.n_usums(c)

    # pairs -------------------------------------------------------------------------------

    def run(self) -> None:
        batch, members = self.batch, self.members
        order = sorted((batch.sizes[members[r]], r) for r in self.rows)
        k = 0
        while k < len(order):
            n0, r0 = order[k]
            if n0 < 2:
                k += 1
                continue
            if n0 * n0 > _MAX_BLOCK_PAIRS:
                self._large(r0, n0)
                k += 1
                continue
            # clusters of similar sizes, padded to the largest (pairs of padding masked)
            nlim = n0 + max(4, int(_BUCKET_SPREAD * n0))
            end = k
            while (
                end < len(order)
                and order[end][0] <= nlim
                and (end - k + 1) * order[end][0] ** 2 <= _MAX_BLOCK_PAIRS
                and end - k < _MAX_SUB_CLUSTERS
            ):
                end += 1
            self._bucket([r for _, r in order[k:end]], order[end - 1][0])
            k = end
        self._grid_finish()

    def _tables(self, rs: list[int]):
        """Padded species tables of the clusters rs: types [b,S], Uiso [b,S], S."""
        batch, members = self.batch, self.members
        smax = max(len(batch.spec_type[members[r]]) for r in rs)
        st = np.zeros((len(rs), smax), dtype=np.int64)
        su = np.zeros((len(rs), smax))
        for k, r in enumerate(rs):
            c = members[r]
            st[k, : len(batch.spec_type[c])] = batch.spec_type[c]
            su[k, : len(batch.spec_u[c])] = batch.spec_u[c]
        return (
            torch.as_tensor(st, device=self.dev),
            torch.as_tensor(su, dtype=torch.float64, device=self.dev),
            smax,
        )

    def _bucket(self, rs: list[int], n: int) -> None:
        """Clusters of up to n atoms: all their pairs as one [b, n(n-1)/2] matrix."""
        batch, members, dev = self.batch, self.members, self.dev
        sizes = [batch.sizes[members[r]] for r in rs]
        X = np.zeros((len(rs), n, 3))
        for k, r in enumerate(rs):
            X[k, : sizes[k]] = batch.xyz[members[r]]
        X = torch.as_tensor(X, dtype=torch.float64, device=dev)
        D = torch.cdist(X, X, compute_mode="donot_use_mm_for_euclid_dist")
        iu, ju = _triu(n, dev)
        d = D[:, iu, ju]
        del D
        real = None
        if min(sizes) < n:  # pairs with a padding atom (ju >= size) do not exist
            nat = torch.as_tensor(sizes, device=dev)
            real = ju[None, :] < nat[:, None]
        st, su, smax = self._tables(rs)
        if smax == 1:
            g = None
        else:
            sp = np.zeros((len(rs), n), dtype=np.int64)
            for k, r in enumerate(rs):
                sp[k, : sizes[k]] = batch.species[members[r]]
            sp = torch.as_tensor(sp, device=dev)
            sa, sb = sp[:, iu], sp[:, ju]
            g = torch.minimum(sa, sb) * smax + torch.maximum(sa, sb)
        self._entries(rs, d, g, st, su, smax, real)

    def _large(self, r: int, n: int) -> None:
        """One large cluster, by blocks of anchor atoms."""
        batch, dev = self.batch, self.dev
        c = self.members[r]
        X = torch.as_tensor(batch.xyz[c], dtype=torch.float64, device=dev)
        st, su, smax = self._tables([r])
        sp = torch.as_tensor(batch.species[c], device=dev) if smax > 1 else None
        rows = max(1, _MAX_BLOCK_PAIRS // n)
        for a in range(0, n - 1, rows):
            b = min(n - 1, a + rows)
            D = torch.cdist(X[a:b], X, compute_mode="donot_use_mm_for_euclid_dist")
            ia = torch.arange(a, b, device=dev)
            mask = torch.arange(n, device=dev)[None, :] > ia[:, None]
            d = D[mask].reshape(1, -1)
            g = None
            if sp is not None:
                i2, j2 = torch.nonzero(mask, as_tuple=True)
                sa, sb = sp[i2 + a], sp[j2]
                g = (torch.minimum(sa, sb) * smax + torch.maximum(sa, sb)).reshape(1, -1)
            self._entries([r], d, g, st, su, smax)

    # unique distances ----------------------------------------------------------------------

    def _entries(self, rs, d, g, st, su, smax, real=None) -> None:
        """Merge equal distances of each (cluster, species pair); dispatch to the paths."""
        plan, dev = self.plan, self.dev
        b, npair = d.shape
        valid = (d >= plan.rcalclo) & (d <= plan.rcalchi) & (d >= _SQRT_DOUBLE_EPS)
        if real is not None:
            valid &= real
        inf = torch.tensor(math.inf, dtype=torch.float64, device=dev)
        if g is None:
            ds, _ = _sort_rows(torch.where(valid, d, inf), want_indices=False)
            gs = None
        else:
            big = float(2 ** math.ceil(math.log2(plan.rcalchi + 2.0)))
            key = torch.where(valid, g.to(torch.float64) * big + d, inf)
            _, order = _sort_rows(key, want_indices=True)
            order = order.to(dev)
            ds = torch.gather(torch.where(valid, d, inf), 1, order)
            gs = torch.gather(g, 1, order)
        ds = ds.to(dev)
        valid_s = torch.isfinite(ds)  # invalid pairs sort last in every row
        nvalid = valid_s.sum(dim=1)
        if int(nvalid.sum()) == 0:
            return
        new = valid_s.clone()
        step = (ds[:, 1:] - ds[:, :-1]) > _DIST_MERGE_TOL
        if gs is not None:
            step |= gs[:, 1:] != gs[:, :-1]
        new[:, 1:] &= step
        starts = torch.nonzero(new.reshape(-1), as_tuple=True)[0]
        row = torch.div(starts, npair, rounding_mode="floor")
        nxt = torch.empty_like(starts)
        nxt[:-1] = starts[1:]
        nxt[-1] = b * npair
        rowend = row * npair + nvalid[row]
        ends = torch.minimum(nxt, rowend)
        count = (ends - starts).to(torch.float64)
        mid = starts + torch.div(ends - starts, 2, rounding_mode="floor")
        e_d = ds.reshape(-1)[mid]
        if gs is None:  # one species per cluster: the group is the cluster
            gid = row
        else:  # dense (cluster, species pair) id of this block
            gid = row * (smax * smax) + gs.reshape(-1)[starts]
        blk = _Block(rs, torch.as_tensor(rs, dtype=torch.long, device=dev), st, su, smax)
        self._dispatch(blk, gid, row, e_d, count)

    def _dispatch(self, blk: _Block, gid, row, e_d, count) -> None:
        """Split entries between the exact and the grid path and evaluate them."""
        cut = self._cutoff(blk, gid, e_d)
        if self.method == "exact":
            grid = None
        else:
            grid = e_d >= self.dmin_grid
            if cut is not None:
                grid &= ~cut
            if self.method == "auto":
                grid &= self._grid_clusters(blk, row, e_d, gid)[row]
        if grid is not None and bool(grid.all()):
            self._spread(blk, gid, e_d, count)
        elif grid is None or not bool(grid.any()):
            self._exact(blk, gid, e_d, count, cut)
        else:
            idx = torch.nonzero(~grid, as_tuple=True)[0]
            self._exact(
                blk, gid[idx], e_d[idx], count[idx], None if cut is None else cut[idx]
            )
            idx = torch.nonzero(grid, as_tuple=True)[0]
            self._spread(blk, gid[idx], e_d[idx], count[idx])

    def _cutoff(self, blk: _Block, gid, d) -> torch.Tensor | None:
        """Entries where srreal's cut-off (2 f_i f_j e^{-s2 Q^2/2}/d < 1e-6) may act.

        None when a cheap bound shows it acts nowhere (the usual case).
        """
        p = self.p
        dmin, dmax = float(d.min()), float(d.max())
        jmax = (
            1.0
            + max(0.0, -p.delta1) / dmin
            + max(0.0, -p.delta2) / dmin**2
            + (p.qbroad * dmax) ** 2
        )
        s2max = 2.0 * max(0.0, float(blk.su.max())) * jmax
        low = 2.0 * math.exp(-0.5 * s2max * self.qlast2) * float(self.ffmin.min()) / dmax
        if low >= _DEBYE_PRECISION:
            return None
        _, ta, tb, u = blk.groups(gid)
        s2 = u * _jeong(p, d)
        cut = (
            2.0 * torch.exp(-0.5 * s2 * self.qlast2) * self.ffmin[ta, tb] / d
            < _DEBYE_PRECISION
        )
        return cut if bool(cut.any()) else None

    def _grid_clusters(self, blk: _Block, row, e_d, gid) -> torch.Tensor:
        """Per cluster of the block: is the grid path cheaper (rough cost model, ns)?"""
        b, dev, nq = len(blk.rs), self.dev, self.plan.nq
        n_e = torch.bincount(row, minlength=b).to(torch.float64)
        dmax = torch.zeros(b, dtype=torch.float64, device=dev).scatter_reduce_(
            0, row, e_d, reduce="amax"
        )
        ngrid = dmax / self.h + _GRID_ORDER
        if blk.smax == 1:
            ngroups = torch.ones(b, dtype=torch.float64, device=dev)
        else:
            present = torch.zeros(blk.ngid, dtype=torch.float64, device=dev)
            present[gid] = 1.0
            ngroups = present.view(b, -1).sum(dim=1)
        share = torch.tensor(
            [self.share[r] for r in blk.rs], dtype=torch.float64, device=dev
        )
        nus = torch.tensor([self.nusum[r] for r in blk.rs], dtype=torch.float64, device=dev)
        cost_exact = n_e * nq * _COST_EXACT
        cost_grid = (
            n_e * _COST_SPREAD
            + ngroups * ngrid * nq * _COST_MATMUL
            + nus * ngrid * nq * _COST_KERNEL / share
        )
        return cost_grid < cost_exact

    # exact path ------------------------------------------------------------------------

    def _exact(self, blk: _Block, gid, d, m, cut) -> None:
        """Exact Debye sum over unique distances, R[group] += m e^{-s2 Q^2/2} sin(Qd)/d."""
        plan, dev = self.plan, self.dev
        cgid, inv = _compact(gid, blk.ngid)
        g_row, g_ta, g_tb, g_u = blk.groups(cgid)
        s2 = g_u[inv] * _jeong(self.p, d)
        R = torch.zeros(len(cgid), plan.nq, dtype=torch.float64, device=dev)
        q = plan.q
        q2 = -0.5 * q * q
        chunk = max(1, _MAX_CHUNK_ELEMENTS // max(1, plan.nq))
        for a in range(0, len(d), chunk):
            sl = slice(a, a + chunk)
            dd = d[sl]
            t = torch.exp(s2[sl, None] * q2[None, :])
            if cut is not None and bool(cut[sl].any()):
                # srreal stops a pair's Q loop at the first term below the precision
                gi = inv[sl]
                ff = self.ftab[g_ta[gi]] * self.ftab[g_tb[gi]]
                scale = 2.0 * t * ff / dd[:, None]
                keep = torch.cummin((scale >= _DEBYE_PRECISION).to(t.dtype), dim=1).values
                t *= keep
            t *= torch.sin(dd[:, None] * q[None, :])
            t *= (m[sl] / dd)[:, None]
            R.index_add_(0, inv[sl], t)
        self.F.index_add_(0, g_row, 2.0 * self.ftab[g_ta] * self.ftab[g_tb] * R)

    # grid path -------------------------------------------------------------------------

    def _spread(self, blk: _Block, gid, d, m) -> None:
        """Spread entries on the distance grid with 8-point Lagrange weights."""
        dev, h, order = self.dev, self.h, _GRID_ORDER
        cgid, inv = _compact(gid, blk.ngid)
        ng = len(cgid)
        t = d / h
        i0 = torch.floor(t)
        w = _lagrange_weights(t - i0, order, m)
        first = i0.to(torch.long) - (self.half - 1)
        base = inv * self.ngrid + first
        idx = base[None, :] + torch.arange(order, device=dev)[:, None]
        W = torch.zeros(ng * self.ngrid, dtype=torch.float64, device=dev)
        W.index_add_(0, idx.reshape(-1), w.reshape(-1))
        last = (
            torch.zeros(ng, dtype=torch.long, device=dev).scatter_reduce_(
                0, inv, first, reduce="amax"
            )
            + order
        )
        self.grid_parts.append((W.view(ng, self.ngrid), *blk.groups(cgid), last))

    def _grid_finish(self) -> None:
        """One matrix product per Ui+Uj value: R = W @ (sin(Qd)/d e^{-U c(d) Q^2/2})."""
        if not self.grid_parts:
            return
        plan = self.plan
        W = torch.cat([gp[0] for gp in self.grid_parts])
        g_row, g_ta, g_tb, g_u, last = (
            torch.cat([gp[k] for gp in self.grid_parts]) for k in range(1, 6)
        )
        self.grid_parts = []
        ncol = int(last.max())
        S, C = plan.kernel_base(ncol)
        uvals, uinv = torch.unique(g_u, return_inverse=True)
        for k in range(len(uvals)):
            sel = torch.nonzero(uinv == k, as_tuple=True)[0]
            n = int(last[sel].max())
            u = float(uvals[k])
            K = S[:n] if u == 0.0 else torch.exp(C[:n] * u).mul_(S[:n])
            R = W[sel, :n] @ K
            self.F.index_add_(
                0, g_row[sel], 2.0 * self.ftab[g_ta[sel]] * self.ftab[g_tb[sel]] * R
            )


class _Block:
    """The clusters of one pair block: F rows and species tables (padded to smax)."""

    def __init__(self, rs, rows_t, st, su, smax):
        self.rs, self.rows_t, self.st, self.su, self.smax = rs, rows_t, st, su, smax
        self.ngid = len(rs) * smax * smax

    def groups(self, gid):
        """F row, element types and Ui+Uj (>= 0) of dense group ids."""
        s2 = self.smax * self.smax
        bl = torch.div(gid, s2, rounding_mode="floor")
        g = gid - bl * s2
        sa = torch.div(g, self.smax, rounding_mode="floor")
        sb = g - sa * self.smax
        u = (self.su[bl, sa] + self.su[bl, sb]).clamp(min=0.0)
        return self.rows_t[bl], self.st[bl, sa], self.st[bl, sb], u


def _compact(ids: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique values of ``ids`` (all < n) and the inverse map, without sorting ``ids``."""
    if n <= _MAX_DENSE_IDS:
        present = torch.zeros(n, dtype=torch.bool, device=ids.device)
        present[ids] = True
        vals = torch.nonzero(present, as_tuple=True)[0]
        remap = torch.full((n,), -1, dtype=torch.long, device=ids.device)
        remap[vals] = torch.arange(len(vals), device=ids.device)
        return vals, remap[ids]
    vals, inv = torch.unique(ids, return_inverse=True)
    return vals, inv


# srreal backend ------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def srreal_available() -> bool:
    """True when diffpy.srreal (its ``DebyePDFCalculator``) can be imported."""
    try:
        from diffpy.srreal.pdfcalculator import DebyePDFCalculator  # noqa: F401
    except Exception:
        return False
    return True


def _use_srreal(backend: str) -> bool:
    if backend not in _BACKENDS:
        raise ParameterError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "srreal":
        if not srreal_available():
            raise ParameterError(
                "backend='srreal' needs diffpy.srreal, which is not importable here "
                "(install it with conda: conda install -c conda-forge diffpy.srreal); "
                "use backend='torch' or 'auto'"
            )
        return True
    return backend == "auto" and srreal_available()


def _srreal_calculator(xyz, elements, uiso, p: PDFParameters):
    """Run srreal's DebyePDFCalculator on an isolated cluster (unit lattice, Cartesian)."""
    from diffpy.srreal.pdfcalculator import DebyePDFCalculator
    from diffpy.structure import Atom, Lattice, Structure

    stru = Structure(lattice=Lattice(1, 1, 1, 90, 90, 90))
    for x, e, u in zip(xyz, elements, uiso, strict=True):
        a = Atom(e, xyz=[float(v) for v in x])
        a.Uisoequiv = float(u)
        stru.append(a, copy=False)
    calc = DebyePDFCalculator()
    for name in _FIELDS:
        setattr(calc, name, getattr(p, name))
    r, g = calc(stru)
    return calc, np.asarray(r, dtype=float), np.asarray(g, dtype=float)


# Public functions ----------------------------------------------------------------------


def pdf_from_arrays(
    xyz,
    elements,
    uiso,
    params: PDFParameters | Mapping | None = None,
    backend: str = "auto",
    device=None,
    *,
    method: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """X-ray G(r) of one isolated cluster.

    Parameters
    ----------
    xyz : array_like, shape (N, 3)
        Cartesian coordinates in Angstrom.
    elements : sequence of str or str
        Element (or ion) symbols, one per atom, or one symbol for all.
    uiso : float or array_like, shape (N,)
        Isotropic displacement parameters in A^2.
    params : PDFParameters or mapping, optional
        Calculation parameters (default ``PDFParameters()``).
    backend : {"auto", "torch", "srreal"}
        ``"auto"`` uses diffpy.srreal when importable, else this module's engine;
        ``"srreal"`` requires srreal; ``"torch"`` forces this engine.
    device : torch device, optional
        Where the torch engine runs (default CPU).
    method : {"auto", "exact", "grid"}
        Evaluation path of the torch engine (see the module documentation).

    Returns
    -------
    r, G : ndarray
        The r-grid ``params.r_grid()`` and G(r) in 1/A^2.
    """
    p = _as_params(params)
    _check_method(method)
    if _use_srreal(backend):
        x, els, u = _check_cluster(xyz, elements, uiso)
        _, r, g = _srreal_calculator(x, els, u, p)
        return r, g
    r, G = pdf_batch([(xyz, elements, uiso)], p, device=device, method=method)
    return r, G[0]


def fq_from_arrays(
    xyz,
    elements,
    uiso,
    params: PDFParameters | Mapping | None = None,
    backend: str = "auto",
    device=None,
    *,
    method: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Total scattering structure function F(Q) of one cluster (srreal's ``fq``).

    Same arguments as :func:`pdf_from_arrays`.  The Q grid is srreal's: ``k*qstep``
    below qmax with ``qstep = pi/rcalchi``; F is given on all of it (also below qmin)
    and carries neither the qdamp envelope nor the scale.

    Returns
    -------
    q, F : ndarray
        Q in 1/A and F(Q) in 1/A.
    """
    p = _as_params(params)
    _check_method(method)
    if _use_srreal(backend):
        x, els, u = _check_cluster(xyz, elements, uiso)
        calc, _, _ = _srreal_calculator(x, els, u, p)
        return np.asarray(calc.qgrid, dtype=float), np.asarray(calc.fq, dtype=float)
    dev = _resolve_device(device)
    batch = _Batch([(xyz, elements, uiso)], dev)
    [(plan, _, F)] = _debye_F(batch, p, method)
    return plan.q.cpu().numpy(), F[0].cpu().numpy()


def pdf_batch(
    clusters: Sequence[tuple],
    params: PDFParameters | Mapping | None = None,
    device=None,
    *,
    method: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """G(r) of many clusters of any sizes in one batched torch calculation.

    Parameters
    ----------
    clusters : sequence of (xyz, elements, uiso)
        One tuple per cluster, as for :func:`pdf_from_arrays`.
    params : PDFParameters or mapping, optional
        Calculation parameters shared by all clusters.
    device : torch device, optional
        Where to calculate (default CPU).
    method : {"auto", "exact", "grid"}
        Evaluation path (see the module documentation).

    Returns
    -------
    r : ndarray, shape (nr,)
    G : ndarray, shape (B, nr)
        Each row equals :func:`pdf_from_arrays` with ``backend="torch"`` on that cluster.
    """
    p = _as_params(params)
    _check_method(method)
    dev = _resolve_device(device)
    if _looks_like_one_cluster(clusters):
        raise StructureError(
            "pdf_batch expects a sequence of (xyz, elements, uiso) tuples; "
            "wrap a single cluster in a list"
        )
    return _pdf_calc(list(clusters), p, dev, method)


def _pdf_calc(
    clusters: list, p: PDFParameters, dev: torch.device, method: str, range_steps=None
) -> tuple[np.ndarray, np.ndarray]:
    """pdf_batch without argument checks; ``range_steps`` as in :func:`_debye_F`."""
    r = p.r_grid()
    if not clusters:
        return r, np.zeros((0, len(r)))
    batch = _Batch(clusters, dev)
    G = torch.empty(len(clusters), len(r), dtype=torch.float64, device=dev)
    for plan, members, F in _debye_F(batch, p, method, range_steps):
        idx = torch.as_tensor(members, dtype=torch.long, device=dev)
        G[idx] = plan.to_G(F)
    return r, G.cpu().numpy()


def _looks_like_one_cluster(clusters) -> bool:
    """True for a bare ``(xyz, elements, uiso)`` passed where a sequence is expected."""
    if not (isinstance(clusters, (tuple, list)) and len(clusters) == 3):
        return False
    try:
        return np.asarray(clusters[0], dtype=float).ndim == 2
    except (TypeError, ValueError):
        return False


def _structure_arrays(stru) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Cartesian xyz, element symbols and Uiso of a diffpy Structure."""
    try:
        atoms = list(stru)
        xyz = np.asarray(stru.xyz_cartn, dtype=float).reshape(-1, 3)
    except Exception as exc:
        raise StructureError(
            f"expected a diffpy.structure.Structure, got {type(stru).__name__}"
        ) from exc
    els, uiso = [], []
    for k, a in enumerate(atoms):
        occ = float(getattr(a, "occupancy", 1.0))
        if abs(occ - 1.0) > 1e-12:
            raise StructureError(
                f"atom {k} ({a.element}) has occupancy {occ}; the Debye engine needs "
                "fully occupied sites"
            )
        els.append(a.element)
        uiso.append(float(a.Uisoequiv))
    return xyz, els, np.asarray(uiso, dtype=float)


def pdf_from_structure(
    stru,
    params: PDFParameters | Mapping | None = None,
    backend: str = "auto",
    device=None,
    *,
    method: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """G(r) of a diffpy ``Structure`` treated as an isolated cluster.

    Uses the Cartesian coordinates ``xyz_cartn``, the atoms' element symbols and
    ``Uisoequiv`` (anisotropic displacements are reduced to their isotropic
    equivalent; the lattice is never repeated).  Arguments as :func:`pdf_from_arrays`.
    """
    xyz, els, uiso = _structure_arrays(stru)
    return pdf_from_arrays(
        xyz, els, uiso, params, backend=backend, device=device, method=method
    )
