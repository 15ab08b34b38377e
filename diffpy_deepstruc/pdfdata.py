"""Measured pair distribution functions: loading, validating, resampling, writing.

:func:`load_pdf` reads the ``.gr`` files written by xPDFsuite, PDFgetX2/PDFgetX3,
PDFgui and diffpy: an optional header of ``key = value`` lines, an optional
``#### start data`` marker, ``#S``/``#L`` comment lines, then a table of 2 or more
whitespace-separated numeric columns.  The numbers are read with
:func:`diffpy.utils.parsers.load_data` (and the header with its ``headers=True``
mode); before that, every line is checked so that a bad file gives a
:class:`~diffpy_deepstruc.errors.PDFDataError` naming the file and the line, never a
half-read array.

Columns
-------
``r`` (A) and ``G(r)`` (A^-2) are the first two columns.  The uncertainty ``dG`` is
found from the ``#L`` column-label line when it names the columns (``#L r G(r) dr
dG(r)``); without labels the PDFgui / pdffit2 / diffpy.srfit convention applies:
3 columns are ``r G dr`` (no dG), 4 or more are ``r G dr dG``.  As in diffpy.srfit,
a dG column that is not positive everywhere (PDFgui writes zeros when dG is unknown)
is dropped (``dg=None``); a negative dG is an error.

Checks (each a :class:`PDFDataError`; the table with the exact messages is in
``docs/io.md``): missing, empty, binary or non-UTF-8 file; header without data;
non-numeric line inside the data; varying column count; a single column; fewer than
:data:`MIN_POINTS` points; NaN or infinite values; negative r; r not strictly
increasing or repeated; G zero everywhere; r apparently in nanometres (the largest r
is below :data:`NM_RMAX` and the strongest peak of G lies below :data:`NM_PEAK_R` --
no interatomic distance is that short in Angstrom, while in nm it is the usual first
shell at 0.2-0.3 nm).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from diffpy.utils.parsers import load_data

from . import __version__
from .elements import normalize_element
from .errors import ElementError, PDFDataError
from .fileio import atomic_write_text

__all__ = [
    "MIN_POINTS",
    "NM_RMAX",
    "NM_PEAK_R",
    "PDFData",
    "load_pdf",
    "resample",
    "write_pdf",
    "parse_composition",
    "elements_from_composition",
]

#: Fewest data points :func:`load_pdf` accepts.
MIN_POINTS: int = 10
#: r in nanometres is suspected when the largest r is below this (A) ...
NM_RMAX: float = 5.0
#: ... and the strongest peak of G(r) lies below this r (A).
NM_PEAK_R: float = 0.5

# a number as PDF programs write it (Python's float() also takes "1_0", "١"...)
_NUMBER = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf(?:inity)?)", re.I | re.ASCII
)
_START_DATA = re.compile(r"^\s*#+\s*start\s+data\b", re.I)
_KEY_VALUE = re.compile(r"^[#\s]*([A-Za-z_][\w.\-]*)\s*=\s*(.*?)\s*$")
_FLOAT = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# known keys found anywhere in a header line, e.g. "#Comment: neutron, Qmin=0.9, Qmax=35"
_INLINE_KEYS = re.compile(
    rf"\b(qmin|qmax|qdamp|qsig|qbroad|qalp|wavelength)\s*=\s*({_FLOAT})", re.I
)
_DG_LABELS = {"dg", "dgr", "dgobs", "sig", "sigma", "sigg", "gerr", "esd"}
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x19\x1b-\x1f\x7f]")


def _where(source: str | os.PathLike | None) -> str:
    return f"{source}: " if source else ""


def _meta_lookup(metadata: Mapping[str, Any], *keys: str) -> Any:
    """Value of the first of ``keys`` in ``metadata`` (case-insensitive), else None."""
    lowered = {str(k).strip().lower(): v for k, v in metadata.items()}
    for key in keys:
        if key in lowered and lowered[key] is not None:
            return lowered[key]
    return None


def _meta_float(metadata: Mapping[str, Any], *keys: str) -> float | None:
    value = _meta_lookup(metadata, *keys)
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _check_arrays(
    r: Any, g: Any, dg: Any, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate and convert r, G, dG arrays (no data-quality heuristics)."""
    try:
        ra = np.array(r, dtype=float)
        ga = np.array(g, dtype=float)
        da = None if dg is None else np.array(dg, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PDFDataError(f"{where}r, G and dG must be numeric arrays: {exc}") from None
    if ra.ndim != 1 or ga.ndim != 1:
        raise PDFDataError(
            f"{where}r and G must be 1-D, got shapes {ra.shape} and {ga.shape}"
        )
    if ra.shape != ga.shape:
        raise PDFDataError(f"{where}r has {ra.size} points but G has {ga.size}")
    if da is not None and da.shape != ra.shape:
        raise PDFDataError(f"{where}dG has shape {da.shape}; expected {ra.shape}")
    if ra.size == 0:
        raise PDFDataError(f"{where}no data points")
    for name, arr in (("r", ra), ("G", ga), ("dG", da)):
        if arr is not None and not np.all(np.isfinite(arr)):
            i = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise PDFDataError(
                f"{where}{name}[{i}] is {arr[i]}; NaN and infinity are not allowed"
            )
    if ra.size > 1:
        steps = np.diff(ra)
        if np.any(steps <= 0):
            i = int(np.flatnonzero(steps <= 0)[0])
            raise PDFDataError(
                f"{where}r must increase strictly: r[{i + 1}] = {ra[i + 1]:g} "
                f"follows r[{i}] = {ra[i]:g}"
            )
    if da is not None and np.any(da <= 0):
        raise PDFDataError(f"{where}dG must be positive everywhere")
    return ra, ga, da


@dataclass
class PDFData:
    """A pair distribution function G(r) with its file header.

    Parameters
    ----------
    r : ndarray, shape (n,)
        Distances in Angstrom, finite, strictly increasing.
    g : ndarray, shape (n,)
        G(r) in A^-2.
    dg : ndarray, shape (n,), optional
        Positive uncertainties of G, or None.
    metadata : dict
        Header values (``key -> float or str``) as read from the file.
    source : str, optional
        The file the data came from.

    Raises
    ------
    PDFDataError
        On arrays of different lengths, NaN/inf values, r not strictly increasing or
        a non-positive dG.
    """

    r: np.ndarray
    g: np.ndarray
    dg: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        self.r, self.g, self.dg = _check_arrays(
            self.r, self.g, self.dg, _where(self.source)
        )
        self.metadata = dict(self.metadata or {})
        if self.source is not None:
            self.source = str(self.source)

    @property
    def qmin(self) -> float | None:
        """Qmin (A^-1) from the header, None when absent."""
        return _meta_float(self.metadata, "qmin")

    @property
    def qmax(self) -> float | None:
        """Qmax (A^-1) from the header, None when absent."""
        return _meta_float(self.metadata, "qmax")

    @property
    def qdamp(self) -> float | None:
        """Qdamp (A^-1) from the header (``qdamp`` or ``qsig``), None when absent."""
        return _meta_float(self.metadata, "qdamp", "qsig")

    @property
    def qbroad(self) -> float | None:
        """Qbroad (A^-1) from the header (``qbroad`` or ``qalp``), None when absent."""
        return _meta_float(self.metadata, "qbroad", "qalp")

    @property
    def wavelength(self) -> float | None:
        """X-ray wavelength (A) from the header, None when absent."""
        return _meta_float(self.metadata, "wavelength", "lambda")

    @property
    def composition(self) -> str | None:
        """The ``composition`` header value (e.g. ``"Au144 S60 C180"``), None when absent."""
        value = _meta_lookup(self.metadata, "composition")
        if value is None:
            return None
        text = str(value).strip()
        return text or None

    @property
    def elements(self) -> list[str] | None:
        """Elements of :attr:`composition`, None when absent (ElementError if unreadable)."""
        comp = self.composition
        return None if comp is None else elements_from_composition(comp)


# -- loading ------------------------------------------------------------------------


def _decode(p: Path, raw: bytes) -> str:
    """Decode the file as UTF-8 text or raise PDFDataError."""
    if not raw.strip():
        raise PDFDataError(f"{p}: file is empty")
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw[:nul].count(b"\n") + 1
        raise PDFDataError(
            f"{p}: binary file (NUL byte on line {line}); expected a text .gr file"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PDFDataError(
            f"{p}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x} on line {line}); "
            "expected a text .gr file"
        ) from None
    if "\r" in text and "\n" not in text:
        raise PDFDataError(
            f"{p}: old Mac line endings (CR only); convert the file to LF or CRLF"
        )
    m = _CONTROL.search(text)
    if m:
        line = text[: m.start()].count("\n") + 1
        raise PDFDataError(
            f"{p}: binary file (control character {m.group()!r} on line {line}); "
            "expected a text .gr file"
        )
    return text


def _is_numeric(tokens: list[str]) -> bool:
    return bool(tokens) and all(_NUMBER.fullmatch(t) for t in tokens)


def _short(line: str, n: int = 60) -> str:
    line = line.strip()
    return line if len(line) <= n else line[: n - 3] + "..."


@dataclass
class _Scan:
    """Where things are in a PDF text file (1-based line numbers)."""

    header: list[str]
    data_lines: list[int]
    ncols: int
    labels: list[str] | None


def _scan(p: Path, text: str) -> _Scan:
    """Locate header and data, check that the data are a clean numeric table."""
    lines = [ln.rstrip("\r") for ln in text.split("\n")]
    marker = next((i for i, ln in enumerate(lines) if _START_DATA.match(ln)), None)
    if marker is not None:
        start = marker + 1
    else:
        start = next(
            (i for i, ln in enumerate(lines) if _is_numeric(ln.split())), len(lines)
        )
    header = lines[:start]
    labels = None
    data_lines: list[int] = []
    ncols = 0
    first = 0
    for i in range(start, len(lines)):
        s = lines[i].strip()
        if not s:
            continue
        if s.startswith("#"):
            if s.startswith("#L") and not data_lines:
                labels = s[2:].split()
            continue
        tokens = s.split()
        if not _is_numeric(tokens):
            what = (
                "after the '#### start data' line" if marker is not None else "in the data"
            )
            raise PDFDataError(
                f"{p}: line {i + 1}: expected numbers {what}, found {_short(s)!r}"
            )
        if not data_lines:
            ncols, first = len(tokens), i + 1
        elif len(tokens) != ncols:
            raise PDFDataError(
                f"{p}: line {i + 1}: {len(tokens)} columns, but the data start on line "
                f"{first} with {ncols}"
            )
        data_lines.append(i + 1)
    if not data_lines:
        if marker is not None:
            raise PDFDataError(
                f"{p}: no data after the '#### start data' line {marker + 1}"
            )
        raise PDFDataError(f"{p}: header but no data (no line of numbers found)")
    if labels is None:
        labels = next(
            (
                ln.strip()[2:].split()
                for ln in reversed(header)
                if ln.strip().startswith("#L")
            ),
            None,
        )
    if ncols == 1:
        raise PDFDataError(
            f"{p}: only one column of numbers (line {first}); expected at least r and G"
        )
    if len(data_lines) < MIN_POINTS:
        raise PDFDataError(
            f"{p}: only {len(data_lines)} data points (lines {first}-{data_lines[-1]}); "
            f"need at least {MIN_POINTS}"
        )
    return _Scan(header=header, data_lines=data_lines, ncols=ncols, labels=labels)


def _header_metadata(p: Path, header: list[str]) -> dict[str, Any]:
    """``key = value`` pairs (via diffpy.utils ``load_data``) plus JSON and inline keys."""
    try:
        hdata = load_data(p, minrows=MIN_POINTS, headers=True)
    except Exception:  # noqa: BLE001 -- a header we cannot parse is just not metadata
        hdata = {}
    meta: dict[str, Any] = {}
    for key, value in hdata.items():
        k = str(key).lstrip("#").strip()
        if k:
            meta[k] = value
    lower = {k.lower() for k in meta}
    for line in header:
        s = line.strip()
        m = _KEY_VALUE.match(s)
        if m and m.group(1).lower() not in lower and m.group(2):
            value: Any = m.group(2)
            try:
                value = float(value)
            except ValueError:
                pass
            meta[m.group(1)] = value
            lower.add(m.group(1).lower())
        if s.startswith("#") and "{" in s and "}" in s:
            try:
                obj = json.loads(s[s.index("{") : s.rindex("}") + 1])
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                for k, v in obj.items():
                    if str(k).lower() not in lower and isinstance(v, str | int | float):
                        meta[str(k)] = float(v) if isinstance(v, int | float) else v
                        lower.add(str(k).lower())
        for m in _INLINE_KEYS.finditer(s):
            if m.group(1).lower() not in lower:
                meta[m.group(1).lower()] = float(m.group(2))
                lower.add(m.group(1).lower())
    return meta


def _label_key(label: str) -> str:
    return re.sub(r"\(.*?\)|\$|\\", "", label).strip().lower()


def _dg_column(scan: _Scan) -> int | None:
    """Index of the dG column, from ``#L`` labels or the PDFgui convention."""
    if scan.labels and len(scan.labels) == scan.ncols:
        keys = [_label_key(lab) for lab in scan.labels]
        return next((j for j, k in enumerate(keys) if k in _DG_LABELS), None)
    return 3 if scan.ncols >= 4 else None


def _read_table(p: Path, scan: _Scan) -> np.ndarray:
    """The numeric table via ``load_data``, cross-checked against the line scan."""
    try:
        data = np.asarray(load_data(p, minrows=MIN_POINTS), dtype=float)
    except Exception as exc:  # noqa: BLE001 -- any reader failure is a data error
        raise PDFDataError(
            f"{p}: diffpy.utils load_data could not read the data: {exc}"
        ) from None
    n = len(scan.data_lines)
    if data.ndim != 2 or data.shape != (n, scan.ncols):
        raise PDFDataError(
            f"{p}: ambiguous data block: diffpy.utils load_data reads {data.shape} values, "
            f"but lines {scan.data_lines[0]}-{scan.data_lines[-1]} hold {n} rows of "
            f"{scan.ncols} columns; remove blank or comment lines among the first "
            f"{MIN_POINTS} data rows and any numeric lines before the data"
        )
    return data


def _check_values(p: Path, data: np.ndarray, scan: _Scan, dgcol: int | None) -> None:
    """Per-line value checks, with line numbers."""
    line = scan.data_lines
    cols = [0, 1] + ([dgcol] if dgcol is not None else [])
    sub = data[:, cols]
    bad = np.flatnonzero(~np.all(np.isfinite(sub), axis=1))
    if bad.size:
        i = int(bad[0])
        j = cols[int(np.flatnonzero(~np.isfinite(sub[i]))[0])]
        raise PDFDataError(
            f"{p}: line {line[i]}: {data[i, j]} in column {j + 1}; NaN and infinity are not allowed"
        )
    r, g = data[:, 0], data[:, 1]
    if r[0] < 0:
        raise PDFDataError(f"{p}: line {line[0]}: negative r = {r[0]:g}")
    steps = np.diff(r)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        if steps[i] == 0:
            raise PDFDataError(
                f"{p}: line {line[i + 1]}: duplicate r = {r[i + 1]:g} (also on line {line[i]})"
            )
        raise PDFDataError(
            f"{p}: line {line[i + 1]}: r = {r[i + 1]:g} is not larger than r = {r[i]:g} "
            f"on line {line[i]}; r must increase strictly"
        )
    if not np.any(g != 0):
        raise PDFDataError(f"{p}: G(r) is zero everywhere (lines {line[0]}-{line[-1]})")
    rpeak = float(r[int(np.argmax(g))])
    if r[-1] < NM_RMAX and np.max(g) > 0 and rpeak < NM_PEAK_R:
        raise PDFDataError(
            f"{p}: r seems to be in nanometres: it ends at {r[-1]:g} and the strongest peak "
            f"is at r = {rpeak:g}, shorter than any interatomic distance in Angstrom; "
            "convert r to Angstrom (x10)"
        )
    if dgcol is not None:
        dg = data[:, dgcol]
        if np.any(dg < 0):
            i = int(np.flatnonzero(dg < 0)[0])
            raise PDFDataError(f"{p}: line {line[i]}: negative dG = {dg[i]:g}")


def load_pdf(path: str | os.PathLike) -> PDFData:
    """Load and validate a measured or simulated PDF file.

    Parameters
    ----------
    path : str or path-like
        A ``.gr`` file (xPDFsuite, PDFgetX2/PDFgetX3, PDFgui, diffpy, this package's
        :func:`write_pdf`).

    Returns
    -------
    PDFData
        ``r`` (A), ``g`` (A^-2), ``dg`` or None (see the module notes on columns),
        ``metadata`` from the header (``key = value`` lines, values converted to float
        where numeric; a JSON object on a comment line, as in the srreal reference
        files, and ``Qmin=``/``Qmax=`` inside comments are read too) and ``source``.

    Raises
    ------
    PDFDataError
        On any of the problems listed in the module notes; the message names the
        file and, where there is one, the line.
    """
    p = Path(path)
    if not p.exists():
        raise PDFDataError(f"{p}: file not found")
    if not p.is_file():
        raise PDFDataError(f"{p}: not a regular file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PDFDataError(f"{p}: cannot read: {exc.strerror or exc}") from None
    text = _decode(p, raw)
    scan = _scan(p, text)
    data = _read_table(p, scan)
    dgcol = _dg_column(scan)
    _check_values(p, data, scan, dgcol)
    dg = None
    if dgcol is not None and np.all(data[:, dgcol] > 0):
        dg = data[:, dgcol].copy()
    meta = _header_metadata(p, scan.header)
    return PDFData(
        r=data[:, 0].copy(), g=data[:, 1].copy(), dg=dg, metadata=meta, source=str(p)
    )


# -- resampling and writing ------------------------------------------------------------


def resample(
    pdf: PDFData, r: Sequence[float] | np.ndarray, fill_zero: bool = False
) -> PDFData:
    """Linearly interpolate a PDF onto a new r-grid.

    Parameters
    ----------
    pdf : PDFData
        The data.
    r : array_like, shape (m,)
        New grid in A, finite and strictly increasing.
    fill_zero : bool
        Points of ``r`` outside the data range get G = 0 (and, when the data have dG,
        the largest dG of the data) instead of an error.  Off by default: extrapolating
        silently would invent data.

    Returns
    -------
    PDFData
        Same metadata and source; ``dg`` interpolated linearly too.

    Raises
    ------
    PDFDataError
        When ``r`` is not a valid grid, or reaches outside the data without
        ``fill_zero``.
    """
    where = _where(pdf.source)
    rr = np.array(r, dtype=float)
    if rr.ndim != 1 or rr.size == 0:
        raise PDFDataError(f"{where}resample grid must be a non-empty 1-D array")
    if not np.all(np.isfinite(rr)) or (rr.size > 1 and np.any(np.diff(rr) <= 0)):
        raise PDFDataError(f"{where}resample grid must be finite and strictly increasing")
    lo, hi = float(pdf.r[0]), float(pdf.r[-1])
    tol = 1e-9 * max(1.0, abs(lo), abs(hi))
    outside = (rr < lo - tol) | (rr > hi + tol)
    if np.any(outside) and not fill_zero:
        raise PDFDataError(
            f"{where}cannot resample to r = {rr[0]:g}..{rr[-1]:g} A: the data cover "
            f"{lo:g}..{hi:g} A only; narrow the grid or pass fill_zero=True"
        )
    g = np.interp(rr, pdf.r, pdf.g)
    g[outside] = 0.0
    dg = None
    if pdf.dg is not None:
        dg = np.interp(rr, pdf.r, pdf.dg)
        dg[outside] = float(np.max(pdf.dg))
    return PDFData(r=rr, g=g, dg=dg, metadata=dict(pdf.metadata), source=pdf.source)


def _header_value(key: str, value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        text = str(value)
    elif isinstance(value, int | float | np.integer | np.floating):
        text = repr(float(value)) if isinstance(value, float | np.floating) else str(value)
    elif isinstance(value, str | os.PathLike):
        text = str(value)
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = str(value)
    if "\n" in text or "\r" in text:
        raise PDFDataError(f"{where}metadata {key!r}: value must be a single line")
    return text.strip()


def write_pdf(
    path: str | os.PathLike,
    r: Sequence[float] | np.ndarray,
    g: Sequence[float] | np.ndarray,
    metadata: Mapping[str, Any] | None = None,
    dg: Sequence[float] | np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a PDF as a diffpy-style ``.gr`` file, atomically.

    The file holds a comment line naming this package, one ``key = value`` line per
    metadata item (None values skipped, lists and dicts as JSON), ``#### start
    data``, ``#S 1``, ``#L r(A) G(A^-2)`` and the table.  With ``dg`` the table has
    the four PDFgui columns ``r G dr dG`` (dr = 0), which PDFgui, diffpy.srfit and
    :func:`load_pdf` read back.  Numbers are written with the shortest repr that
    round-trips exactly.

    Parameters
    ----------
    path : str or path-like
        Destination.
    r, g : array_like, shape (n,)
        Distances (A) and G(r) (A^-2).
    metadata : mapping, optional
        Header items; keys are identifiers (letters, digits, ``_ . -``).
    dg : array_like, shape (n,), optional
        Positive uncertainties of G.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    OutputExistsError
        When the file exists and ``overwrite`` is False.
    PDFDataError
        On invalid arrays or metadata keys/values that cannot be written as
        ``key = value`` lines.
    """
    p = Path(path)
    where = _where(p)
    ra, ga, da = _check_arrays(r, g, dg, where)
    lines = [f"# PDF written by diffpy-deepstruc {__version__}"]
    for key, value in (metadata or {}).items():
        k = str(key)
        if not re.fullmatch(r"[A-Za-z_][\w.\-]*", k):
            raise PDFDataError(
                f"{where}metadata key {k!r} cannot be written; use letters, digits, _ . -"
            )
        text = _header_value(k, value, where)
        if text is not None:
            lines.append(f"{k} = {text}")
    lines += ["", "#### start data", "#S 1"]
    if da is None:
        lines.append("#L r(A) G(A^-2)")
        lines += [f"{x!r} {y!r}" for x, y in zip(ra.tolist(), ga.tolist(), strict=True)]
    else:
        lines.append("#L r(A) G(A^-2) dr(A) dG(A^-2)")
        lines += [
            f"{x!r} {y!r} 0.0 {e!r}"
            for x, y, e in zip(ra.tolist(), ga.tolist(), da.tolist(), strict=True)
        ]
    return atomic_write_text(p, "\n".join(lines) + "\n", overwrite=overwrite)


# -- composition -------------------------------------------------------------------------

_COMP_TOKEN = re.compile(r"([A-Z][a-z]?)\s*((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)?")
_COMP_SEP = re.compile(r"[\s,;]+")


def parse_composition(text: str) -> dict[str, float]:
    """Parse a composition such as ``"Au144 S60 C180"``, ``"Pt"`` or ``"Pt0.5Pd0.5"``.

    Parameters
    ----------
    text : str
        Element symbols, each optionally followed by an amount; whitespace, commas or
        semicolons may separate them.  A symbol given twice adds up.

    Returns
    -------
    dict
        ``element -> amount`` in order of first appearance (amount 1 when omitted).

    Raises
    ------
    ElementError
        On an empty or unreadable text or an unknown element.
    """
    if not isinstance(text, str) or not text.strip():
        raise ElementError(f"empty composition {text!r}")
    out: dict[str, float] = {}
    pos = 0
    s = text.strip()
    while pos < len(s):
        sep = _COMP_SEP.match(s, pos)
        if sep:
            pos = sep.end()
            continue
        m = _COMP_TOKEN.match(s, pos)
        if not m:
            raise ElementError(
                f"cannot read composition {text!r}: unexpected {s[pos : pos + 10]!r} at "
                f"character {pos + 1}; write it like 'Au144 S60 C180'"
            )
        try:
            el = normalize_element(m.group(1))
        except ElementError:
            raise ElementError(
                f"composition {text!r}: unknown element {m.group(1)!r}"
            ) from None
        amount = float(m.group(2)) if m.group(2) else 1.0
        if not math.isfinite(amount) or amount <= 0:
            raise ElementError(f"composition {text!r}: amount of {el} must be positive")
        out[el] = out.get(el, 0.0) + amount
        pos = m.end()
    return out


def elements_from_composition(text: str) -> list[str]:
    """Elements named in a composition, in order of first appearance.

    ``"Pt"`` -> ``["Pt"]``; ``"Au144 S60 C480"`` -> ``["Au", "S", "C"]``.

    Parameters
    ----------
    text : str
        The composition (see :func:`parse_composition`).

    Returns
    -------
    list of str

    Raises
    ------
    ElementError
        On an empty or unreadable text or an unknown element.
    """
    return list(parse_composition(text))
