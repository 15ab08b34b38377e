"""Stage 1, settings: the fit settings and the metal, each with where it came from.

One default per setting, shared with :func:`diffpy_deepstruc.refine.make_recipe` (the
constants live in :mod:`diffpy_deepstruc.refine`), so that the Rw ``solve`` reports is
the one a user's ``make_recipe`` + ``refine_recipe`` give for the same structure and
data.  Precedence: explicit argument > the data file's header > documented default.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..elements import is_metal, normalize_element
from ..errors import ElementError, ParameterError
from ..pdfdata import PDFData
from ..refine import DEFAULT_QBROAD, DEFAULT_QDAMP, DEFAULT_RMAX, DEFAULT_RMIN

__all__ = [
    "DEFAULT_QBROAD",
    "DEFAULT_QDAMP",
    "DEFAULT_RMAX",
    "DEFAULT_RMIN",
    "FitSettings",
    "resolve_element",
    "resolve_settings",
]


@dataclass(frozen=True)
class FitSettings:
    """Instrument and fit-range settings of one refinement, with where each came from.

    Attributes
    ----------
    qmin, qmax : float
        Q-range of the Fourier transform (A^-1).
    qdamp, qbroad : float
        Instrument resolution parameters (A^-1), fixed in the fit.
    rmin, rmax : float
        Fit range (A); Rw is computed on it.
    rstep : float or None
        Spacing of the fit grid (A); None: the data's own points.
    sources : dict
        ``name -> "argument" | "header" | "default"`` for each value above.
    """

    qmin: float
    qmax: float
    qdamp: float
    qbroad: float
    rmin: float
    rmax: float
    rstep: float | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (for JSON)."""
        return asdict(self)


def _pick(name: str, arg: float | None, header: float | None, default: float | None):
    """Choose argument, then header, then default; return (value, source)."""
    if arg is not None:
        return float(arg), "argument"
    if header is not None:
        return float(header), "header"
    if default is None:
        raise ParameterError(
            f"{name} is not in the data file's header; give it explicitly (--{name})"
        )
    return float(default), "default"


def resolve_settings(
    pdf: PDFData,
    *,
    qmin: float | None = None,
    qmax: float | None = None,
    qdamp: float | None = None,
    qbroad: float | None = None,
    rmin: float | None = None,
    rmax: float | None = None,
    rstep: float | None = None,
) -> FitSettings:
    """Fit settings from explicit arguments, else the file header, else defaults.

    Qmax has no default: it shapes every peak, so it must come from the argument or
    the header.  The defaults are those of :func:`diffpy_deepstruc.refine.make_recipe`
    (one default per setting, API and CLI alike): Qmin 0, Qdamp and Qbroad 0 (an ideal
    instrument), fit range 1.5 A to min(30 A, end of data), the data's own points (no
    resampling); the ``sources`` record says which values were assumed so that the
    output shows it.

    Parameters
    ----------
    pdf : PDFData
        The measured data (its header supplies values not given).
    qmin, qmax, qdamp, qbroad, rmin, rmax : float, optional
        Explicit values.

    Returns
    -------
    FitSettings

    Raises
    ------
    ParameterError
        On a missing Qmax, Qmax <= Qmin, negative Qdamp/Qbroad or a fit range outside
        the data.
    """
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    for name, arg, header, default in (
        ("qmin", qmin, pdf.qmin, 0.0),
        ("qmax", qmax, pdf.qmax, None),
        ("qdamp", qdamp, pdf.qdamp, DEFAULT_QDAMP),
        ("qbroad", qbroad, pdf.qbroad, DEFAULT_QBROAD),
    ):
        values[name], sources[name] = _pick(name, arg, header, default)
    for name, value in values.items():
        if not math.isfinite(value):
            raise ParameterError(f"{name} must be a finite number, got {value}")
    if values["qmax"] <= values["qmin"]:
        raise ParameterError(f"qmax ({values['qmax']}) must exceed qmin ({values['qmin']})")
    for name in ("qmin", "qdamp", "qbroad"):
        if values[name] < 0:
            raise ParameterError(f"{name} must not be negative, got {values[name]}")
    lo, hi = float(pdf.r[0]), float(pdf.r[-1])
    values["rmin"], sources["rmin"] = _pick("rmin", rmin, None, max(DEFAULT_RMIN, lo))
    values["rmax"], sources["rmax"] = _pick("rmax", rmax, None, min(DEFAULT_RMAX, hi))
    if not values["rmin"] < values["rmax"]:
        raise ParameterError(
            f"rmin ({values['rmin']}) must be below rmax ({values['rmax']})"
        )
    step = float(np.median(np.diff(pdf.r)))
    if hi < values["rmax"] <= hi + 1.01 * step:
        values["rmax"] = hi  # "30" on data that end one step short of 30
    if lo - 1.01 * step <= values["rmin"] < lo:
        values["rmin"] = lo
    if values["rmin"] < lo - 1e-9 or values["rmax"] > hi + 1e-9:
        raise ParameterError(
            f"fit range {values['rmin']}-{values['rmax']} A lies outside the data "
            f"({lo:g}-{hi:g} A)"
        )
    if values["rmax"] - values["rmin"] < 5.0:
        raise ParameterError(
            f"fit range {values['rmin']}-{values['rmax']} A is too short; at least 5 A "
            "is needed to tell structures apart"
        )
    data_step = float(np.median(np.diff(pdf.r)))
    if rstep is None:
        values["rstep"], sources["rstep"] = None, "default"
    else:
        if not (math.isfinite(rstep) and rstep > 0):
            raise ParameterError(f"rstep must be a positive number, got {rstep}")
        if rstep < 0.5 * data_step:
            raise ParameterError(
                f"rstep {rstep} A is finer than the data's spacing {data_step:.4g} A"
            )
        values["rstep"], sources["rstep"] = float(rstep), "argument"
    return FitSettings(sources=sources, **values)


def resolve_element(pdf: PDFData, element: str | None = None) -> str:
    """The metal to build candidates of: ``element``, else the header's composition.

    Parameters
    ----------
    pdf : PDFData
        The data; its ``composition`` header is read when ``element`` is None.
    element : str, optional
        Explicit element symbol.

    Returns
    -------
    str
        A metal's element symbol.

    Raises
    ------
    ElementError
        When the element is unknown or not a metal, or when neither the argument nor
        the header gives exactly one metal.
    """
    if element is not None:
        sym = normalize_element(element)
        if not is_metal(sym):
            raise ElementError(
                f"{sym} is not a metal; DeepStruc models metal nanoparticles"
            )
        return sym
    where = pdf.source or "the data"
    if pdf.composition is None:
        raise ElementError(
            f"{where}: no element given and no composition in the header; pass --element"
        )
    metals = [e for e in pdf.elements or [] if is_metal(e)]
    if len(set(metals)) != 1:
        raise ElementError(
            f"{where}: composition {pdf.composition!r} does not name exactly one metal "
            f"(found {sorted(set(metals)) or 'none'}); pass --element"
        )
    return metals[0]
