"""srfit integration: a Debye PDF generator over our engine and a cluster fit recipe.

:class:`DebyeProfileGenerator` is a ``diffpy.srfit`` ``ProfileGenerator`` with the API
and parameter names of srfit's ``diffpy.srfit.pdf.DebyePDFGenerator`` (``scale``,
``delta1``, ``delta2``, ``qbroad``, ``qdamp``, ``setStructure(stru, name, periodic)``,
``setQmin``/``setQmax``, ``meta``...), but computes the PDF with
:mod:`diffpy_deepstruc.debye` instead of diffpy.srreal (which has no pip wheel).  The
structure is parametrised by srfit's own ``DiffpyStructureParSet``, so recipe code
such as ``phase.getScatterers()[0].Uiso`` or ``phase.getLattice().a`` is the same with
either generator.  :func:`make_generator` returns srfit's generator when diffpy.srreal
is importable and ours otherwise.

:func:`make_recipe` builds the usual nanoparticle recipe (free: ``scale``,
``zoomscale`` - an isotropic expansion of all coordinates about the origin - one
``Uiso`` for all atoms, and ``delta2``; fixed: ``qdamp``, ``qbroad``, ``delta1``),
:func:`refine_recipe` runs scipy's ``least_squares`` on it the way srfit's examples do
and :func:`fit_structure` does both and returns the refined structure.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from diffpy.srfit.exceptions import SrFitError
from diffpy.srfit.fitbase import (
    FitContribution,
    FitRecipe,
    FitResults,
    Profile,
    ProfileGenerator,
)
from diffpy.srfit.fitbase.parameter import ParameterAdapter
from diffpy.srfit.structure import struToParameterSet

from . import debye
from .errors import ParameterError, PDFDataError, StructureError

__all__ = [
    "DebyeProfileGenerator",
    "FitOutcome",
    "RefinementResult",
    "fit_structure",
    "make_generator",
    "make_recipe",
    "refine_recipe",
    "refined_structure",
    "srfit_rw",
    "VARIABLE_BOUNDS",
    "DEFAULT_QDAMP",
    "DEFAULT_QBROAD",
    "DEFAULT_RMIN",
    "DEFAULT_RMAX",
]

#: Defaults of :func:`make_recipe` and of ``deepstruc solve`` (one per setting): a setting
#: neither given nor in the data's header takes these values, and the output says so.
#: Qdamp 0 and Qbroad 0 describe an ideal instrument; pass the values calibrated on a
#: standard (e.g. Ni) for real data.
DEFAULT_QDAMP: float = 0.0
DEFAULT_QBROAD: float = 0.0
#: Fit range (A): below 1.5 A a metal PDF holds only termination ripples; the end is
#: min(30 A, end of the data).
DEFAULT_RMIN: float = 1.5
DEFAULT_RMAX: float = 30.0

#: Variables of :func:`make_recipe` and the ones refined by default.
RECIPE_VARIABLES = ("scale", "zoomscale", "Uiso", "delta2", "delta1", "qdamp", "qbroad")
DEFAULT_REFINED = ("scale", "zoomscale", "Uiso", "delta2")
#: Physical bounds of the recipe variables, used by :func:`refine_recipe` (a negative
#: Uiso or a collapsed cluster is never a solution): scale >= 0, zoomscale within
#: +-30 %, 0 <= Uiso <= 0.1 A^2, 0 <= delta2 <= 10 A^2, delta1 >= 0, qdamp/qbroad >= 0.
VARIABLE_BOUNDS: dict[str, tuple[float, float]] = {
    "scale": (0.0, np.inf),
    "zoomscale": (0.7, 1.3),
    "Uiso": (0.0, 0.1),
    "delta2": (0.0, 10.0),
    "delta1": (0.0, np.inf),
    "qdamp": (0.0, np.inf),
    "qbroad": (0.0, np.inf),
}

# The path of the torch engine is chosen once per structure (see _pick_method): the
# exact path for clusters with few unique distances, the grid path otherwise.
_EXACT_MAX_UNIQUE = 3000
# libdiffpy DebyePDFCalculator: the extended rmax only shrinks by >= 50 r-steps
_MIN_REDUCTION_STEPS = 50


class _DebyeCalculator:
    """The attributes of srreal's ``DebyePDFCalculator`` that srfit uses, over our engine.

    Defaults are srreal's (rstep 0.01, rmax 10, qmin 0, qmax 25, no envelopes, no
    sharpening), so a bare generator behaves like srfit's.
    """

    def __init__(self, device=None, method: str | None = None):
        self.rmin = 0.0
        self.rmax = 10.0
        self.rstep = 0.01
        self.qmin = 0.0
        self.qmax = 25.0
        self.qdamp = 0.0
        self.qbroad = 0.0
        self.delta1 = 0.0
        self.delta2 = 0.0
        self.scale = 1.0
        self.device = device
        self.method = method
        self._picked: str | None = None
        self._hi_steps: int | None = None

    def setScatteringFactorTableByType(self, stype: str) -> None:  # noqa: N802 (srreal API)
        if str(stype).strip().lower() not in ("x", "xray", "x-ray"):
            raise ValueError(
                f"scattering type {stype!r} is not supported: the Debye engine is X-ray "
                "only (Waasmaier-Kirfel form factors)"
            )

    def getRadiationType(self) -> str:  # noqa: N802 (srreal API)
        return "X"

    def params(self) -> debye.PDFParameters:
        return debye.PDFParameters(
            rmin=self.rmin,
            rmax=self.rmax,
            rstep=self.rstep,
            qmin=self.qmin,
            qmax=self.qmax,
            qdamp=self.qdamp,
            qbroad=self.qbroad,
            delta1=self.delta1,
            delta2=self.delta2,
            scale=self.scale,
        )

    def __call__(self, stru) -> tuple[np.ndarray, np.ndarray]:
        xyz, els, uiso = debye._structure_arrays(stru)
        method = self.method or self._pick_method(xyz)
        dev = debye._resolve_device(self.device)
        r, G = debye._pdf_calc(
            [(xyz, els, uiso)], self.params(), dev, method, range_steps=self._range_steps
        )
        return r, G[0]

    def _range_steps(self, p: debye.PDFParameters, umax: float) -> tuple[int, int]:
        """The extended range like one srreal calculator object reused over a fit.

        srreal keeps its previous upper bound (in r-steps) unless the new one is larger
        or at least 50 steps smaller (libdiffpy ``cacheRlimitsData``); the Q grid of a
        fit therefore stays the one set by the widest peaks met so far.
        """
        lo, hi = debye._range_steps(p, umax)
        old = self._hi_steps
        if old is None or hi > old or hi <= old - _MIN_REDUCTION_STEPS:
            self._hi_steps = hi
        return lo, self._hi_steps

    def _pick_method(self, xyz: np.ndarray) -> str:
        """Exact path for few unique distances, grid path for many; fixed thereafter.

        Fixing the path keeps G(r) smooth in the refined parameters (the two paths
        differ by ~1e-8), which srfit's finite-difference derivatives need.
        """
        if self._picked is None:
            i, j = np.triu_indices(len(xyz), 1)
            d = np.linalg.norm(xyz[i] - xyz[j], axis=1)
            nuniq = len(np.unique(np.round(d, 9)))
            self._picked = "exact" if nuniq <= _EXACT_MAX_UNIQUE else "grid"
        return self._picked


class DebyeProfileGenerator(ProfileGenerator):
    """PDF of an isolated cluster from the Debye equation, for srfit recipes.

    A drop-in for ``diffpy.srfit.pdf.DebyePDFGenerator`` that needs no diffpy.srreal.

    Parameters
    ----------
    name : str
        Name of the generator in the fit equation (default ``"pdf"``).
    device : torch device, optional
        Where the engine runs (default CPU).
    method : {"auto", "exact", "grid"}, optional
        Evaluation path of :mod:`diffpy_deepstruc.debye`; by default it is chosen once
        per structure from its number of unique distances.

    Managed Parameters
    ------------------
    scale, delta1, delta2, qbroad, qdamp
        As in srfit's generator (srreal's defaults: 1, 0, 0, 0, 0).

    Managed ParameterSets
    ---------------------
    The structure ParameterSet (srfit's ``DiffpyStructureParSet``), named by the user
    in :meth:`setStructure`.

    Usable Metadata
    ---------------
    stype ("X" only), qmax, qmin, scale, delta1, delta2, qbroad, qdamp.
    """

    _parnames = ["delta1", "delta2", "qbroad", "scale", "qdamp"]

    def __init__(self, name: str = "pdf", device=None, method: str | None = None):
        ProfileGenerator.__init__(self, name)
        if method is not None and method not in ("auto", "exact", "grid"):
            raise ParameterError(
                f"method must be 'auto', 'exact' or 'grid', got {method!r}"
            )
        self._phase = None
        self.stru = None
        self.meta = {}
        self._lastr = np.empty(0)
        self._calc = _DebyeCalculator(device=device, method=method)
        for pname in self._parnames:
            self.addParameter(ParameterAdapter(pname, self._calc, attr=pname))
        self.processMetaData()

    # srfit's BasePDFGenerator API ------------------------------------------------------

    def parallel(self, ncpu: int, mapfunc=None) -> None:
        """Accepted for API compatibility; the torch engine uses threads itself."""
        return None

    def processMetaData(self) -> None:  # noqa: N802 (srfit API)
        """Configure the generator from ``meta`` (stype, qmin, qmax, parameters)."""
        ProfileGenerator.processMetaData(self)
        stype = self.meta.get("stype")
        if stype is not None:
            self.setScatteringType(stype)
        qmax = self.meta.get("qmax")
        if qmax is not None:
            self.setQmax(qmax)
        qmin = self.meta.get("qmin")
        if qmin is not None:
            self.setQmin(qmin)
        for name in self._parnames:
            val = self.meta.get(name)
            if val is not None:
                self.get(name).setValue(val)

    def setScatteringType(self, stype: str = "X") -> None:  # noqa: N802
        """Set the scattering type; only ``"X"`` (X-ray) is supported."""
        self._calc.setScatteringFactorTableByType(stype)
        self.meta["stype"] = self.getScatteringType()

    def getScatteringType(self) -> str:  # noqa: N802
        return self._calc.getRadiationType()

    def setQmax(self, qmax: float) -> None:  # noqa: N802
        self._calc.qmax = float(qmax)
        self.meta["qmax"] = self.getQmax()

    def getQmax(self) -> float:  # noqa: N802
        return self._calc.qmax

    def setQmin(self, qmin: float) -> None:  # noqa: N802
        self._calc.qmin = float(qmin)
        self.meta["qmin"] = self.getQmin()

    def getQmin(self) -> float:  # noqa: N802
        return self._calc.qmin

    def setStructure(self, stru, name: str = "phase", periodic: bool = False) -> None:  # noqa: N802
        """Set the diffpy ``Structure`` to calculate, adapted as ParameterSet ``name``."""
        from diffpy.structure import Structure

        if not isinstance(stru, Structure):
            raise StructureError(
                "DebyeProfileGenerator needs a diffpy.structure.Structure, got "
                f"{type(stru).__name__}"
            )
        parset = struToParameterSet(name, stru)
        self.setPhase(parset, periodic)

    def setPhase(self, parset, periodic: bool = False) -> None:  # noqa: N802
        """Set the phase from a srfit structure ParameterSet (``DiffpyStructureParSet``)."""
        if periodic:
            raise ParameterError(
                "the Debye engine calculates isolated clusters only; use periodic=False "
                "(srfit's PDFGenerator with diffpy.srreal computes periodic crystals)"
            )
        stru = getattr(parset, "stru", None)
        if stru is None or not hasattr(stru, "xyz_cartn"):
            raise StructureError(
                "DebyeProfileGenerator needs a diffpy.structure.Structure phase, got "
                f"{type(stru).__name__}"
            )
        self._phase = parset
        self.stru = stru
        self.addParameterSet(parset)
        self._phase.useSymmetry(False)
        self._calc._picked = None

    def _prepare(self, r: np.ndarray) -> None:
        """Configure the calculation grid for new r values (as srfit does)."""
        self._lastr = r.copy()
        lo, hi = r.min(), r.max()
        ndiv = max(len(r) - 1, 1)
        self._calc.rstep = (hi - lo) / ndiv if hi > lo else 0.01
        self._calc.rmin = lo
        self._calc.rmax = hi + 0.5 * self._calc.rstep

    def _validate(self) -> None:
        if self._phase is None:
            raise SrFitError("_phase is None")
        ProfileGenerator._validate(self)

    def __call__(self, r):
        """G(r) of the current structure and parameters at the points r."""
        r = np.asarray(r, dtype=float)
        if not np.array_equal(r, self._lastr):
            self._prepare(r)
        rcalc, y = self._calc(self._phase.stru)
        if np.isnan(y).any():
            return np.zeros_like(r)
        return np.interp(r, rcalc, y)


def make_generator(name: str = "pdf", backend: str = "auto", **kwargs):
    """A Debye PDF generator for srfit: srfit's own when diffpy.srreal imports.

    Parameters
    ----------
    name : str
        Generator name.
    backend : {"auto", "srreal", "torch"}
        ``"auto"``: srfit's ``DebyePDFGenerator`` if diffpy.srreal is importable, else
        :class:`DebyeProfileGenerator`; ``"srreal"`` requires srreal; ``"torch"``
        forces ours.
    **kwargs
        Passed to :class:`DebyeProfileGenerator` (``device``, ``method``).
    """
    if backend not in ("auto", "srreal", "torch"):
        raise ParameterError(
            f"backend must be 'auto', 'srreal' or 'torch', got {backend!r}"
        )
    if backend != "torch" and debye.srreal_available():
        from diffpy.srfit.pdf import DebyePDFGenerator

        return DebyePDFGenerator(name)
    if backend == "srreal":
        raise ParameterError(
            "backend='srreal' needs diffpy.srreal (conda install -c conda-forge "
            "diffpy.srreal); use backend='torch' or 'auto'"
        )
    return DebyeProfileGenerator(name, **kwargs)


# recipe -----------------------------------------------------------------------------


def _as_structure(structure):
    """A deep copy of a diffpy Structure (ASE Atoms are converted)."""
    try:
        from diffpy.structure import Structure
    except ImportError as exc:  # pragma: no cover - diffpy.structure is a dependency
        raise StructureError("diffpy.structure is required") from exc
    if isinstance(structure, Structure):
        stru = copy.deepcopy(structure)
    elif type(structure).__name__ == "Atoms" and hasattr(structure, "get_positions"):
        from .structures import atoms_to_structure

        stru = atoms_to_structure(structure)
    else:
        raise StructureError(
            f"expected a diffpy.structure.Structure or ase.Atoms, got {type(structure).__name__}"
        )
    if len(stru) < 2:
        raise StructureError("a cluster to refine needs at least two atoms")
    return stru


def _pdf_arrays(r, g, dg):
    """r, g, dg and header values from arrays or a PDFData-like object."""
    meta: dict[str, float] = {}
    if g is None:
        pdf = r
        if not (hasattr(pdf, "r") and hasattr(pdf, "g")):
            raise PDFDataError("give r and g arrays, or a PDFData with .r and .g")
        r, g = pdf.r, pdf.g
        if dg is None:
            dg = getattr(pdf, "dg", None)
        for key in ("qmin", "qmax", "qdamp", "qbroad"):
            val = getattr(pdf, key, None)
            if val is not None:
                meta[key] = float(val)
    try:
        r = np.asarray(r, dtype=float)
        g = np.asarray(g, dtype=float)
        dg = None if dg is None else np.asarray(dg, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PDFDataError(f"r, g and dg must be numeric arrays: {exc}") from exc
    if r.ndim != 1 or g.shape != r.shape or (dg is not None and dg.shape != r.shape):
        raise PDFDataError(
            f"r, g (and dg) must be 1-D arrays of one length, got {r.shape}, {g.shape}"
            + ("" if dg is None else f", {dg.shape}")
        )
    if len(r) < 2:
        raise PDFDataError("the PDF needs at least two points")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(g))):
        raise PDFDataError("r and g must be finite (no NaN or inf)")
    if np.any(np.diff(r) <= 0):
        raise PDFDataError("r must be strictly increasing")
    if dg is not None and not (np.all(np.isfinite(dg)) and np.all(dg > 0)):
        raise PDFDataError("dg must be finite and positive")
    return r, g, dg, meta


def _positive(name: str, value, allow_zero: bool = True) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ParameterError(
            f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}"
        )
    return v


def make_recipe(
    structure,
    r,
    g=None,
    *,
    qmin: float | None = None,
    qmax: float | None = None,
    qdamp: float | None = None,
    qbroad: float | None = None,
    rmin: float = DEFAULT_RMIN,
    rmax: float | None = None,
    rstep: float | None = None,
    dg=None,
    scale: float = 1.0,
    zoomscale: float = 1.0,
    uiso: float | None = None,
    delta2: float = 2.0,
    delta1: float = 0.0,
    refine: Sequence[str] = DEFAULT_REFINED,
    backend: str = "auto",
    name: str = "cluster",
    verbose: int = 0,
) -> FitRecipe:
    """An srfit recipe that fits a cluster's Debye PDF to measured data.

    Parameters
    ----------
    structure : diffpy.structure.Structure or ase.Atoms
        The starting cluster (copied; the original is never modified).
    r, g : ndarray
        The measured PDF; or pass a ``PDFData``-like object as ``r`` (with ``.r``,
        ``.g``, optional ``.dg`` and header ``.qmin/.qmax/.qdamp/.qbroad``) and no g.
    qmin, qmax : float
        Q-range of the data (1/A); taken from the PDFData header when not given.
    qdamp, qbroad : float
        Instrument resolution (1/A), fixed unless listed in ``refine``; default the
        header values, else :data:`DEFAULT_QDAMP` and :data:`DEFAULT_QBROAD` (0: an
        ideal instrument), as ``deepstruc solve``.
    rmin, rmax : float
        Fit range (A); rmax defaults to min(:data:`DEFAULT_RMAX`, end of the data), as
        ``deepstruc solve``.
    rstep : float, optional
        Spacing of the fit grid (A).  None keeps the data's own points; a coarser step
        has srfit resample the data (``Profile.setCalculationRange(dx=...)``), which
        makes the refinement proportionally cheaper.
    dg : ndarray, optional
        Uncertainties of g (srfit uses 1 when absent).
    scale, zoomscale, uiso, delta2, delta1 : float
        Starting values; ``uiso`` defaults to the structure's mean Uiso (0.005 if 0).
    refine : sequence of str
        Variables left free, among ``RECIPE_VARIABLES``; the others are fixed (and can
        be freed later with ``recipe.free(name)``).
    backend : {"auto", "srreal", "torch"}
        Generator, see :func:`make_generator`.
    name : str
        Name of the FitContribution.
    verbose : int
        srfit's fit-hook verbosity (0: silent).

    Returns
    -------
    FitRecipe
        Variables ``scale``, ``zoomscale``, ``Uiso``, ``delta2``, ``delta1``, ``qdamp``,
        ``qbroad``.  The generator is ``recipe.<name>.G``; the structure ParameterSet
        ``recipe.<name>.G.phase``.
    """
    stru = _as_structure(structure)
    r, g, dg, meta = _pdf_arrays(r, g, dg)
    qmin = meta.get("qmin") if qmin is None else qmin
    qmax = meta.get("qmax") if qmax is None else qmax
    if qmax is None:
        raise ParameterError("qmax is required (the data's Qmax, 1/A)")
    qmin = 0.0 if qmin is None else qmin
    if qdamp is None:
        qdamp = meta.get("qdamp")
        qdamp = DEFAULT_QDAMP if qdamp is None else qdamp
    if qbroad is None:
        qbroad = meta.get("qbroad")
        qbroad = DEFAULT_QBROAD if qbroad is None else qbroad
    qmin, qmax = _positive("qmin", qmin), _positive("qmax", qmax, allow_zero=False)
    if qmax <= qmin:
        raise ParameterError(f"qmax ({qmax}) must be larger than qmin ({qmin})")
    qdamp, qbroad = _positive("qdamp", qdamp), _positive("qbroad", qbroad)
    rmin = _positive("rmin", rmin)
    rmax = min(DEFAULT_RMAX, float(r[-1])) if rmax is None else _positive("rmax", rmax)
    if not (rmin < rmax and np.count_nonzero((r >= rmin) & (r <= rmax)) >= 2):
        raise ParameterError(
            f"fit range {rmin}-{rmax} A holds fewer than two data points "
            f"(data span {r[0]:g}-{r[-1]:g} A)"
        )
    unknown = sorted(set(refine) - set(RECIPE_VARIABLES))
    if unknown:
        raise ParameterError(
            f"unknown variables to refine {unknown}; choose among "
            f"{', '.join(RECIPE_VARIABLES)}"
        )
    if uiso is None:
        u = np.array([a.Uisoequiv for a in stru])
        uiso = float(u.mean()) if u.mean() > 0 else 0.005
    for label, v in (
        ("scale", scale),
        ("zoomscale", zoomscale),
        ("uiso", uiso),
        ("delta2", delta2),
        ("delta1", delta1),
    ):
        if not math.isfinite(float(v)):
            raise ParameterError(f"starting {label} must be finite, got {v!r}")
    if float(zoomscale) <= 0:
        raise ParameterError(f"zoomscale must be > 0, got {zoomscale}")

    profile = Profile()
    profile.setObservedProfile(r, g, dg)
    if rstep is not None:
        rstep = _positive("rstep", rstep, allow_zero=False)
        if rstep > rmax - rmin:
            raise ParameterError(f"rstep ({rstep} A) exceeds the fit range {rmin}-{rmax} A")
    profile.setCalculationRange(xmin=rmin, xmax=rmax, dx=rstep)

    gen = make_generator("G", backend=backend)
    gen.setStructure(stru, name="phase", periodic=False)
    gen.setQmin(qmin)
    gen.setQmax(qmax)
    gen.qdamp.setValue(qdamp)
    gen.qbroad.setValue(qbroad)

    contribution = FitContribution(name)
    contribution.addProfileGenerator(gen)
    contribution.setProfile(profile, xname="r")
    contribution.setEquation("G")

    recipe = FitRecipe()
    recipe.addContribution(contribution)
    recipe.fithooks[0].verbose = verbose
    phase = gen.phase
    recipe.addVar(gen.scale, float(scale), name="scale")
    # isotropic expansion about the origin: scale the lattice vectors (Cartesian
    # positions follow, angles and fractional coordinates stay)
    recipe.newVar("zoomscale", float(zoomscale))
    lattice = phase.getLattice()
    for par in (lattice.a, lattice.b, lattice.c):
        recipe.constrain(par, f"{float(par.getValue())!r} * zoomscale")
    recipe.newVar("Uiso", float(uiso))
    for atom in phase.getScatterers():
        recipe.constrain(atom.Uiso, "Uiso")
    recipe.addVar(gen.delta2, float(delta2), name="delta2")
    recipe.addVar(gen.delta1, float(delta1), name="delta1")
    recipe.addVar(gen.qdamp, qdamp, name="qdamp")
    recipe.addVar(gen.qbroad, qbroad, name="qbroad")
    for vname, (lb, ub) in VARIABLE_BOUNDS.items():
        getattr(recipe, vname).boundRange(lb, ub)
    recipe.fix("all")
    if refine:
        recipe.free(*refine)
    return recipe


@dataclass
class RefinementResult:
    """Outcome of :func:`refine_recipe`.

    Attributes
    ----------
    rw : float
        srfit's Rw, ``FitResults(recipe).rw``.
    values : dict
        Value of every recipe variable (free and fixed) after the fit.
    uncertainties : dict
        srfit's estimated standard uncertainties of the free variables.
    fit_results : FitResults
        srfit's full results object (``printResults()``, ``saveResults()``...).
    success : bool
        scipy's convergence flag.
    message : str
        scipy's message.
    nfev : int
        Residual evaluations.
    seconds : float
        Wall time of the fit.
    """

    rw: float
    values: dict[str, float]
    uncertainties: dict[str, float]
    fit_results: Any = field(repr=False)
    success: bool = True
    message: str = ""
    nfev: int = 0
    seconds: float = 0.0


def refine_recipe(
    recipe: FitRecipe,
    *,
    max_nfev: int | None = None,
    ftol: float = 1e-8,
    xtol: float = 1e-8,
    gtol: float = 1e-8,
    method: str = "trf",
    uncertainties: bool = True,
) -> RefinementResult:
    """Refine the free variables of ``recipe`` with ``scipy.optimize.least_squares``.

    As in srfit's examples: ``least_squares(recipe.residual, recipe.values,
    x_scale="jac")``.  When that solution lies outside a variable's bounds
    (:data:`VARIABLE_BOUNDS` for the recipe's own variables, ``boundRange`` for any a
    script adds), the fit is repeated within the bounds from the clipped start.  The
    recipe is left at the solution.
    """
    from scipy.optimize import least_squares

    t0 = time.perf_counter()
    names = list(recipe.getNames())
    if not names:
        raise ParameterError("the recipe has no free variables to refine")
    lb, ub = recipe.getBounds2()
    x0 = np.asarray(recipe.values, dtype=float)
    opts = dict(
        x_scale="jac", method=method, max_nfev=max_nfev, ftol=ftol, xtol=xtol, gtol=gtol
    )
    # unbounded first, as srfit's examples fit; only when that optimum leaves the
    # physical bounds (negative Uiso...) is the fit redone within them
    sol = least_squares(recipe.residual, x0, **opts)
    if np.any(sol.x < lb) or np.any(sol.x > ub):
        start = np.clip(x0, lb, ub)
        sol = least_squares(recipe.residual, start, bounds=(lb, ub), **opts)
    recipe.residual(sol.x)  # leave the recipe at the solution
    if not uncertainties:
        values = {n: float(v) for n, v in zip(names, sol.x, strict=True)}
        for par in recipe._tagmanager.union(recipe._fixedtag):
            if not par.constrained:
                values[par.name] = float(par.value)
        return RefinementResult(
            rw=srfit_rw(recipe),
            values=values,
            uncertainties={},
            fit_results=None,
            success=bool(sol.success),
            message=str(sol.message),
            nfev=int(sol.nfev),
            seconds=time.perf_counter() - t0,
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        # a variable pinned at a bound makes srfit's covariance singular: its
        # uncertainty is then reported as inf/nan instead of warning
        res = FitResults(recipe)
    unc = {n: float(u) for n, u in zip(res.varnames, res.varunc, strict=False)}
    values = {n: float(v) for n, v in zip(res.varnames, res.varvals, strict=False)}
    for n, v in zip(res.fixednames or [], res.fixedvals or [], strict=False):
        values[n] = float(v)
    return RefinementResult(
        rw=float(res.rw),
        values=values,
        uncertainties=unc,
        fit_results=res,
        success=bool(sol.success),
        message=str(sol.message),
        nfev=int(sol.nfev),
        seconds=time.perf_counter() - t0,
    )


def srfit_rw(recipe: FitRecipe) -> float:
    """Rw of a recipe's current state, computed as srfit's ``FitResults`` does.

    ``sqrt(sum_c w_c chi2_c / sum_c w_c sum (y/dy)^2)`` over the contributions ``c``
    with weights ``w_c``, ``chi2_c = sum ((y - ycalc)/dy)^2`` on each fit range.
    """
    recipe._prepare()
    recipe.residual()  # refresh every contribution's ycalc
    chi2 = 0.0
    yw2 = 0.0
    for con, weight in zip(recipe._contributions.values(), recipe._weights, strict=True):
        prof = con.profile
        y, ycalc, dy = (np.asarray(a, dtype=float) for a in (prof.y, prof.ycalc, prof.dy))
        c = float(np.sum((np.abs(y - ycalc) / dy) ** 2))
        yw = np.abs(y) / dy
        t = float(np.dot(yw, yw)) or 1.0
        chi2 += weight * c
        yw2 += weight * t
    return math.sqrt(chi2 / yw2) if yw2 > 0 else 0.0


@dataclass
class FitOutcome:
    """What :func:`fit_structure` returns.

    Attributes
    ----------
    structure : diffpy.structure.Structure
        The refined cluster: expansion applied to the Cartesian coordinates on a unit
        lattice, refined Uiso on every atom.
    rw : float
        srfit's Rw over the fit range.
    parameters : dict
        Refined (and fixed) variable values.
    r, g_calc : ndarray
        The fit range and the refined model's G(r) on it.
    result : RefinementResult
        The full refinement result.
    """

    structure: Any
    rw: float
    parameters: dict[str, float]
    r: np.ndarray
    g_calc: np.ndarray
    result: RefinementResult = field(repr=False)


def refined_structure(recipe: FitRecipe, name: str = "cluster"):
    """The recipe's current cluster as a new unit-lattice Structure.

    The expansion (zoomscale, applied through the lattice) is carried into the
    Cartesian coordinates and every atom keeps its current Uiso, so the result is a
    plain cluster that any diffpy program reads.

    Parameters
    ----------
    recipe : FitRecipe
        A recipe from :func:`make_recipe` (possibly extended and refined further).
    name : str
        Name of its FitContribution.

    Returns
    -------
    diffpy.structure.Structure
    """
    from diffpy.structure import Atom, Lattice, Structure

    phase = getattr(recipe, name).G.phase
    refined = Structure(
        lattice=Lattice(1, 1, 1, 90, 90, 90), title=getattr(phase.stru, "title", "") or ""
    )
    for a, x in zip(phase.stru, phase.stru.xyz_cartn, strict=True):
        atom = Atom(a.element, xyz=[float(v) for v in x])
        atom.Uisoequiv = float(a.Uisoequiv)
        refined.append(atom, copy=False)
    return refined


def fit_structure(structure, r, g=None, **kwargs) -> FitOutcome:
    """Build the recipe (:func:`make_recipe`), refine it, return the refined cluster.

    ``kwargs`` go to :func:`make_recipe`, except ``max_nfev`` and ``uncertainties``
    which go to :func:`refine_recipe`.
    """
    max_nfev = kwargs.pop("max_nfev", None)
    uncertainties = kwargs.pop("uncertainties", True)
    name = kwargs.setdefault("name", "cluster")
    recipe = make_recipe(structure, r, g, **kwargs)
    result = refine_recipe(recipe, max_nfev=max_nfev, uncertainties=uncertainties)
    contribution = getattr(recipe, name)
    refined = refined_structure(recipe, name)
    prof = contribution.profile
    return FitOutcome(
        structure=refined,
        rw=result.rw,
        parameters=dict(result.values),
        r=np.array(prof.x),
        g_calc=np.array(prof.ycalc),
        result=result,
    )
