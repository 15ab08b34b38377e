"""Non-periodic cluster structures: ASE <-> diffpy.structure, files.

A cluster is held as a :class:`diffpy.structure.Structure` with a **unit lattice**
(a = b = c = 1 A, 90 degree angles), so that its "fractional" coordinates are the
Cartesian coordinates in Angstrom, and with an **isotropic** displacement parameter
Uiso (A^2) on every atom.  This is the convention of diffpy.srreal's
``DebyePDFCalculator`` for non-periodic structures and of this package's ``debye``
engine.

Files are read with diffpy.structure's parsers and written atomically through
:mod:`diffpy_deepstruc.fileio`.  Errors on bad input are
:class:`~diffpy_deepstruc.errors.StructureError` (naming the file and the problem) or
:class:`~diffpy_deepstruc.errors.ElementError` (unknown element).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from diffpy.structure import (
    Atom,
    Lattice,
    Structure,
    StructureFormatError,
    getParser,
    loadStructure,
)

from .elements import normalize_element
from .errors import ElementError, StructureError
from .fileio import atomic_write_text, check_writable

__all__ = [
    "DEFAULT_UISO",
    "FORMATS",
    "atoms_to_structure",
    "structure_to_atoms",
    "structure_arrays",
    "arrays_to_structure",
    "read_structure",
    "write_structure",
    "has_unit_lattice",
    "CIF_VACUUM",
]

#: Default isotropic displacement parameter (A^2) of the architecture contract (DeepStruc
#: simulated its training set with Biso 0.3 A^2, i.e. Uiso 0.0038 A^2).
DEFAULT_UISO: float = 0.005

#: File extension -> diffpy.structure format name, for reading and writing.
FORMATS: dict[str, str] = {
    ".xyz": "xyz",
    ".stru": "pdffit",
    ".cif": "cif",
    ".pdb": "pdb",
    ".xcfg": "xcfg",
    ".cfg": "xcfg",
    ".discus": "discus",
}

_FORMAT_NAMES = {"xyz", "pdffit", "cif", "pdb", "xcfg", "discus"}
#: Formats :func:`write_structure` writes (AtomEye xcfg is read-only here).
_WRITE_FORMATS = {"xyz", "pdffit", "cif", "pdb", "discus"}
_ALIASES = {"stru": "pdffit", "cfg": "xcfg"}

#: Vacuum (A) between periodic images of a cluster written as CIF.
CIF_VACUUM: float = 10.0


def has_unit_lattice(s: Structure, tol: float = 1e-9) -> bool:
    """Tell whether ``s`` has the unit lattice (1 A, 90 degrees) of a cluster.

    Parameters
    ----------
    s : Structure
        The structure.
    tol : float
        Absolute tolerance on lengths (A) and angles (degrees).

    Returns
    -------
    bool
    """
    lat = s.lattice
    lengths = np.array([lat.a, lat.b, lat.c], dtype=float)
    angles = np.array([lat.alpha, lat.beta, lat.gamma], dtype=float)
    return bool(
        np.all(np.abs(lengths - 1.0) <= tol) and np.all(np.abs(angles - 90.0) <= tol)
    )


def _as_uiso(uiso: float | Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    """Broadcast ``uiso`` to ``n`` finite, non-negative values (A^2)."""
    try:
        u = np.asarray(uiso, dtype=float)
    except (TypeError, ValueError) as exc:
        raise StructureError(
            f"uiso must be a number or one number per atom: {exc}"
        ) from None
    if u.ndim == 0:
        u = np.full(n, float(u))
    if u.shape != (n,):
        raise StructureError(f"uiso has shape {u.shape}; expected a number or ({n},)")
    if not np.all(np.isfinite(u)):
        raise StructureError("uiso contains NaN or infinite values")
    if np.any(u < 0):
        raise StructureError(f"uiso must be >= 0 A^2, got min {u.min():g}")
    return u


def arrays_to_structure(
    xyz: np.ndarray | Sequence[Sequence[float]],
    elements: Sequence[str] | str,
    uiso: float | Sequence[float] | np.ndarray = DEFAULT_UISO,
    title: str = "",
) -> Structure:
    """Build a cluster :class:`Structure` from Cartesian coordinates.

    Parameters
    ----------
    xyz : array_like, shape (N, 3)
        Cartesian coordinates in Angstrom.
    elements : sequence of str, or str
        One element symbol per atom (normalised, e.g. ``"AU"`` -> ``"Au"``), or a
        single symbol for all atoms.
    uiso : float or array_like, shape (N,)
        Isotropic displacement parameter(s) in A^2.
    title : str
        Structure title.

    Returns
    -------
    Structure
        Unit lattice; each atom's ``xyz`` equals its Cartesian position; isotropic
        ``Uisoequiv``.

    Raises
    ------
    StructureError
        On a wrong shape, no atoms, non-finite coordinates or a negative Uiso.
    ElementError
        On an unknown element symbol.
    """
    try:
        pos = np.asarray(xyz, dtype=float)
    except (TypeError, ValueError) as exc:
        raise StructureError(f"coordinates are not numeric: {exc}") from None
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise StructureError(f"coordinates have shape {pos.shape}; expected (N, 3)")
    n = pos.shape[0]
    if n == 0:
        raise StructureError("structure has no atoms")
    bad = np.flatnonzero(~np.all(np.isfinite(pos), axis=1))
    if bad.size:
        raise StructureError(f"atom {bad[0] + 1} has non-finite coordinates {pos[bad[0]]}")
    if isinstance(elements, str):
        elements = [elements] * n
    elements = list(elements)
    if len(elements) != n:
        raise StructureError(f"{len(elements)} element symbols for {n} atoms")
    symbols = [normalize_element(e) for e in elements]
    u = _as_uiso(uiso, n)
    s = Structure(lattice=Lattice(), title=str(title))
    for sym, p, ui in zip(symbols, pos, u, strict=True):
        s.addNewAtom(sym, xyz=p, Uisoequiv=float(ui))
    return s


def structure_arrays(s: Structure) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Return the Cartesian coordinates, elements and Uiso of a structure.

    Works for any lattice: coordinates are converted with the structure's lattice, and
    anisotropic displacements are reduced to their isotropic equivalent.

    Parameters
    ----------
    s : Structure
        The structure.

    Returns
    -------
    xyz : ndarray, shape (N, 3)
        Cartesian coordinates in Angstrom.
    elements : list of str
        Normalised element symbols (``"Au"`` from ``"AU"`` or ``"Au1+"``).
    uiso : ndarray, shape (N,)
        Isotropic (equivalent) displacement parameters in A^2.

    Raises
    ------
    StructureError
        When the structure has no atoms, non-finite coordinates or Uiso.
    ElementError
        On an unknown element symbol.
    """
    if not isinstance(s, Structure):
        raise StructureError(
            f"expected a diffpy.structure.Structure, got {type(s).__name__}"
        )
    n = len(s)
    if n == 0:
        raise StructureError("structure has no atoms")
    raw = np.array(s.xyz, dtype=float).reshape(n, 3)
    bad = np.flatnonzero(~np.all(np.isfinite(raw), axis=1))
    if bad.size:
        raise StructureError(f"atom {bad[0] + 1} has non-finite coordinates {raw[bad[0]]}")
    xyz = np.array(s.xyz_cartn, dtype=float).reshape(n, 3)
    if not np.all(np.isfinite(xyz)):
        raise StructureError("structure has a non-finite lattice")
    elements = []
    for i, a in enumerate(s):
        try:
            elements.append(normalize_element(a.element))
        except ElementError as exc:
            raise ElementError(f"atom {i + 1}: {exc}") from None
    uiso = np.array(s.Uisoequiv, dtype=float).reshape(n)
    if not np.all(np.isfinite(uiso)):
        raise StructureError("structure has non-finite displacement parameters")
    return xyz, elements, uiso


def atoms_to_structure(
    atoms: Atoms, uiso: float | Sequence[float] | np.ndarray = DEFAULT_UISO
) -> Structure:
    """Convert an ASE cluster to a unit-lattice :class:`Structure`.

    The ASE cell and periodic boundary conditions are ignored: the atoms are taken as
    an isolated cluster at their Cartesian positions.

    Parameters
    ----------
    atoms : ase.Atoms
        The cluster.
    uiso : float or array_like, shape (N,)
        Isotropic displacement parameter(s) in A^2 for every atom.

    Returns
    -------
    Structure
        Title from ``atoms.info["title"]`` when present, else the chemical formula.

    Raises
    ------
    StructureError
        On no atoms, non-finite positions or a bad ``uiso``.
    """
    if not isinstance(atoms, Atoms):
        raise StructureError(f"expected ase.Atoms, got {type(atoms).__name__}")
    title = str(atoms.info.get("title", atoms.get_chemical_formula()))
    return arrays_to_structure(
        atoms.get_positions(), atoms.get_chemical_symbols(), uiso=uiso, title=title
    )


def structure_to_atoms(s: Structure) -> Atoms:
    """Convert a :class:`Structure` to a non-periodic ASE cluster.

    Parameters
    ----------
    s : Structure
        The structure (any lattice; positions become Cartesian).

    Returns
    -------
    ase.Atoms
        No cell, ``pbc=False``; ``info["title"]`` holds the structure title.  Uiso is
        not carried (ASE has no such property); use :func:`structure_arrays`.
    """
    xyz, elements, _ = structure_arrays(s)
    atoms = Atoms(symbols=elements, positions=xyz, pbc=False)
    if s.title:
        atoms.info["title"] = s.title
    return atoms


def _format_for(path: Path, fmt: str | None, purpose: str) -> str:
    """Resolve a diffpy.structure format name from ``fmt`` or the file extension."""
    if fmt is not None:
        name = _ALIASES.get(fmt.lower(), fmt.lower())
        if name not in _FORMAT_NAMES:
            raise StructureError(
                f"{path}: unknown structure format {fmt!r}; "
                f"use one of {sorted(_FORMAT_NAMES | set(_ALIASES))}"
            )
        return name
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise StructureError(
            f"{path}: cannot tell the structure format from the extension {ext or '(none)'!r}"
            f" to {purpose}; use one of {', '.join(sorted(FORMATS))} or pass fmt="
        )
    return FORMATS[ext]


def read_structure(path: str | os.PathLike, fmt: str | None = None) -> Structure:
    """Read a structure file as a unit-lattice cluster.

    Formats (from the extension unless ``fmt`` is given): ``.xyz`` (Cartesian A;
    carries no displacement parameters, so every Uiso is 0), ``.stru`` (PDFfit),
    ``.cif``, ``.pdb``, ``.xcfg``/``.cfg``, ``.discus``.

    A structure with a non-unit lattice (a periodic CIF, ``.stru`` or ``.xcfg`` file)
    is **converted**: the atoms of one unit cell (after the symmetry expansion done by
    diffpy.structure) are placed at their Cartesian coordinates in a unit lattice,
    and anisotropic displacements are replaced by their isotropic equivalent.  The
    result is that unit cell's contents as an isolated cluster, not a crystal; build
    larger clusters with :mod:`diffpy_deepstruc.clusters` instead.  A CIF in space
    group P1 keeps its atoms where the file puts them (no wrapping into the cell), so
    a cluster stored as P1 CIF -- as :func:`write_structure` writes it -- comes back
    whole, translated by the box offset.

    Parameters
    ----------
    path : str or path-like
        The file.
    fmt : str, optional
        A diffpy.structure format name (``xyz``, ``pdffit`` or ``stru``, ``cif``,
        ``pdb``, ``xcfg``, ``discus``) overriding the extension.

    Returns
    -------
    Structure
        Unit lattice, Cartesian coordinates in A, isotropic Uiso, normalised element
        symbols, the file's title.

    Raises
    ------
    StructureError
        Naming the file: missing file, unknown format, unparseable content, no atoms,
        non-finite coordinates, partial occupancies.
    ElementError
        Naming the file and atom: an unknown element symbol.
    """
    p = Path(path)
    if not p.exists():
        raise StructureError(f"{p}: file not found")
    if not p.is_file():
        raise StructureError(f"{p}: not a regular file")
    name = _format_for(p, fmt, "read it")
    try:
        if not p.read_bytes().strip():
            raise StructureError(f"{p}: file is empty")
    except OSError as exc:
        raise StructureError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        raw = _load_raw(p, name)
    except StructureFormatError as exc:
        raise StructureError(f"{p}: cannot read as {name} structure: {exc}") from None
    except UnicodeDecodeError:
        raise StructureError(f"{p}: not a text file; cannot read as {name}") from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        # the parsers let some malformed content through as plain Python errors
        raise StructureError(f"{p}: cannot read as {name} structure: {exc!r}") from None
    if not isinstance(raw, Structure):
        raise StructureError(f"{p}: cannot read as {name} structure: no structure found")
    if len(raw) == 0:
        raise StructureError(f"{p}: no atoms in the file")
    occ = np.asarray(raw.occupancy, dtype=float)
    partial = np.flatnonzero(np.abs(occ - 1.0) > 1e-6)
    if partial.size:
        i = partial[0]
        raise StructureError(
            f"{p}: atom {i + 1} ({raw[i].element}) has occupancy {occ[i]:g}; "
            "partial occupancies are not supported"
        )
    try:
        xyz, elements, uiso = structure_arrays(raw)
    except ElementError as exc:
        raise ElementError(f"{p}: {exc}") from None
    except StructureError as exc:
        raise StructureError(f"{p}: {exc}") from None
    if np.any(uiso < 0):
        raise StructureError(f"{p}: negative displacement parameter (min {uiso.min():g})")
    return arrays_to_structure(xyz, elements, uiso=uiso, title=raw.title or "")


def _load_raw(p: Path, name: str) -> Structure:
    """Load with diffpy.structure; a P1 CIF keeps its positions unwrapped."""
    if name != "cif":
        return loadStructure(str(p), fmt=name)
    parser = getParser("cif")
    # PyCifRW prints a syntax report to stdout besides raising; keep the CLI quiet
    with contextlib.redirect_stdout(io.StringIO()):
        raw = parser.parseFile(str(p))
    sg = parser.spacegroup
    if sg is not None and sg.number == 1 and parser.asymmetric_unit:
        # the symmetry expansion wraps fractional coordinates into [0, 1), which
        # would tear a cluster given in P1 apart; take the atoms as listed instead
        atoms = [Atom(a) for a in parser.asymmetric_unit]
        raw = Structure(atoms, lattice=raw.lattice, title=raw.title)
    return raw


def _cif_text(s: Structure) -> str:
    """P1 CIF of a cluster in an orthorhombic box, centred, images ``CIF_VACUUM`` apart."""
    xyz, elements, uiso = structure_arrays(s)
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    # lengths rounded up to 0.01 A so that the file states them exactly
    lengths = np.ceil(((hi - lo) + CIF_VACUUM) * 100.0) / 100.0
    frac = (xyz - (lo + hi) / 2.0) / lengths + 0.5
    box = Structure(lattice=Lattice(*lengths, 90, 90, 90), title=s.title)
    for el, f, u in zip(elements, frac, uiso, strict=True):
        box.addNewAtom(el, xyz=f, Uisoequiv=float(u))
    box.assignUniqueLabels()
    return box.writeStr("cif")


def _xyz_text(s: Structure) -> str:
    """XYZ text with 10 decimals (diffpy.structure's writer keeps only 6 digits)."""
    xyz, elements, _ = structure_arrays(s)
    title = " ".join(str(s.title).split())
    lines = [str(len(elements)), title]
    lines += [
        f"{el:<2s} {x:16.10f} {y:16.10f} {z:16.10f}"
        for el, (x, y, z) in zip(elements, xyz, strict=True)
    ]
    return "\n".join(lines) + "\n"


def write_structure(
    s: Structure, path: str | os.PathLike, fmt: str | None = None, overwrite: bool = False
) -> Path:
    """Write a structure file atomically.

    Parameters
    ----------
    s : Structure
        The structure (written as it is; use :func:`arrays_to_structure` or
        :func:`read_structure` for a unit-lattice cluster).
    path : str or path-like
        Destination; its folder is created if needed.
    fmt : str, optional
        Format name overriding the extension: ``xyz`` (10 decimals, no Uiso),
        ``pdffit``/``stru`` and ``discus`` (unit lattice, Cartesian, Uiso kept),
        ``cif`` (space group P1, the cluster centred in an orthorhombic box with
        :data:`CIF_VACUUM` A between images, so crystallographic viewers show it
        whole; Uiso kept) or ``pdb`` (3 decimals, Uiso as a 2-decimal B factor).
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
    StructureError
        On an unknown format or a structure without atoms.
    """
    p = check_writable(path, overwrite)
    name = _format_for(p, fmt, "write it")
    if name not in _WRITE_FORMATS:
        raise StructureError(
            f"{p}: writing {name} is not supported; use one of {sorted(_WRITE_FORMATS)}"
        )
    if not isinstance(s, Structure):
        raise StructureError(
            f"expected a diffpy.structure.Structure, got {type(s).__name__}"
        )
    if len(s) == 0:
        raise StructureError(f"{p}: refusing to write a structure with no atoms")
    if name == "xyz":
        text = _xyz_text(s)
    elif name == "cif":
        text = _cif_text(s)
    else:
        structure_arrays(s)  # validates elements and coordinates
        text = s.writeStr(name)
        if not text.endswith("\n"):
            text += "\n"
    return atomic_write_text(p, text, overwrite=overwrite)
