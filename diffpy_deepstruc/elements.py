"""Element symbols and the element data the cluster builders need.

Everything here comes from maintained libraries, not from hand-typed tables:

* element symbols: :data:`ase.data.chemical_symbols` (Z = 1..118);
* bulk nearest-neighbour distances: the ground-state crystal structures and lattice
  constants of :data:`ase.data.reference_states` (the Ashcroft & Mermin / Kittel values
  that ``periodictable``'s ``crystal_structure`` also carries; structures with a basis,
  such as beta-Sn, Bi or Sm, are built with :func:`ase.build.bulk`), with a
  density-based fallback from ``xraydb``'s element table for the metals whose ground
  state ASE does not give as a full crystal structure (alpha-Mn, Ga, U, Np, Pu, Pa) or
  gives not at all (Pm, Fr, Ra, Am and the heavier actinides).

Every metal of the periodic table (s-, p-, d- and f-block, :data:`METALS`) gets a
distance this way; for Z >= 100 (Fm onwards, never made in weighable amounts) the
density ``xraydb`` tabulates is a prediction.  :func:`nn_source` says which route an
element took.

The only list typed here is a *definition*: which elements count as non-metals for
:func:`is_metal`.
"""

from __future__ import annotations

import math
import re
from functools import cache

from ase.data import atomic_numbers, chemical_symbols, reference_states

from .errors import ElementError

__all__ = [
    "D_BLOCK_METALS",
    "DEEPSTRUC_METALS",
    "METALS",
    "normalize_element",
    "nearest_neighbour_distance",
    "nn_source",
    "is_metal",
]

#: Every known element symbol, Z = 1..118 (ASE's ``X`` dummy at Z = 0 excluded).
_SYMBOLS: frozenset[str] = frozenset(chemical_symbols[1:])

#: d-block metals of groups 3-12 in periods 4-6: Sc..Zn, Y..Cd, Hf..Hg (29 elements).
#: La and Lu are left out: which of the two belongs to group 3 is disputed and both
#: behave as lanthanides.  DeepStruc's training set used 28 of these (it omits Mo,
#: see :data:`DEEPSTRUC_METALS`); we keep Mo, a regular bcc d-block metal.
D_BLOCK_METALS: tuple[str, ...] = tuple(
    chemical_symbols[z] for z in (*range(21, 31), *range(39, 49), *range(72, 81))
)

#: The 28 metals of the original DeepStruc data generator (``data/gen_data.py`` of
#: github.com/EmilSkaaning/DeepStruc): :data:`D_BLOCK_METALS` without Mo.
DEEPSTRUC_METALS: tuple[str, ...] = tuple(s for s in D_BLOCK_METALS if s != "Mo")

#: Elements that are *not* metals for :func:`is_metal`: the 17 IUPAC non-metals (with
#: the halogens and noble gases), the six common metalloids (B, Si, Ge, As, Sb, Te), and
#: At, Ts, Og whose metallic character is unestablished.  A definition, not data.
_NON_METALS: frozenset[str] = frozenset(
    "H He B C N O F Ne Si P S Cl Ar Ge As Se Br Kr Sb Te I Xe At Rn Ts Og".split()
)

#: Every metal of the periodic table in order of Z (all symbols that :func:`is_metal`
#: accepts, Li..Lv): s-, p-, d- and f-block.
METALS: tuple[str, ...] = tuple(s for s in chemical_symbols[1:] if s not in _NON_METALS)

#: ASE reference-state symmetries that :func:`ase.build.bulk` builds as the full crystal
#: even without an explicit basis (body-centred tetragonal, e.g. In).
_BULK_SYMMETRIES = frozenset({"bct"})

# symbol, optionally followed by a label number and/or a charge: Au, AU, Au1, Au1+, O2-
_SYMBOL_RE = re.compile(r"^\s*([A-Za-z]{1,2}?)\s*(?:\d+)?\s*(?:\d*[+-]+\d*)?\s*$")

# Avogadro's number in units that turn g/cm^3 and g/mol into atoms per A^3.
_AVOGADRO_PER_A3 = 6.02214076e23 * 1e-24


def normalize_element(sym: str) -> str:
    """Return the canonical element symbol for ``sym``.

    Accepts any capitalisation and strips a trailing site number or ionic charge, as
    structure files write them: ``"AU"``, ``"au"``, ``"Au1"``, ``"Au1+"`` and
    ``"Au3+"`` all give ``"Au"``; ``"O2-"`` gives ``"O"``.

    Parameters
    ----------
    sym : str
        Element symbol, possibly decorated.

    Returns
    -------
    str
        The symbol as the periodic table writes it (``"Au"``).

    Raises
    ------
    ElementError
        When ``sym`` is not a string or names no element; the message repeats what
        was given.
    """
    if not isinstance(sym, str):
        raise ElementError(f"element symbol must be a string, got {sym!r}")
    m = _SYMBOL_RE.match(sym)
    if m:
        letters = m.group(1)
        cand = letters[0].upper() + letters[1:].lower()
        if cand in _SYMBOLS:
            return cand
    raise ElementError(f"unknown element symbol {sym!r}")


def is_metal(sym: str) -> bool:
    """Tell whether ``sym`` is a metal.

    Every element except the non-metals, the metalloids B, Si, Ge, As, Sb, Te and the
    uncharacterised At, Ts and Og counts as a metal (Po and Al included).

    Parameters
    ----------
    sym : str
        Element symbol (normalised with :func:`normalize_element`).

    Returns
    -------
    bool

    Raises
    ------
    ElementError
        When ``sym`` names no element.
    """
    return normalize_element(sym) not in _NON_METALS


def nearest_neighbour_distance(sym: str) -> float:
    """Bulk nearest-neighbour distance of element ``sym`` in Angstrom.

    Computed from the element's ground-state crystal structure and lattice constants
    in :data:`ase.data.reference_states`:

    ============ ==========================================
    structure    nearest-neighbour distance
    ============ ==========================================
    fcc          a / sqrt(2)
    bcc          a sqrt(3) / 2
    sc           a
    hcp          min(a, sqrt(a^2/3 + c^2/4))
    diamond      a sqrt(3) / 4
    rhombohedral min(a, 2 a sin(alpha/2)), one-atom basis
    ============ ==========================================

    Other reference states that :func:`ase.build.bulk` builds as the full crystal (a
    basis is given, or body-centred tetragonal) give the shortest interatomic distance
    of that crystal: beta-Sn 3.02, In 3.25, Bi 3.11, Sm 3.58 A.  A diatomic reference
    state (H, N, O, F) gives its bond length.  Metals whose reference state is none of
    these (alpha-Mn's 58-atom cubic cell, Ga, U, Np, Pa and Pu, given by ASE without
    their atomic positions) or that have no ASE reference state at all (Pm, Fr, Ra,
    Am..Lr) fall back to the distance in an fcc packing of the same atomic volume, the
    volume taken from the density and atomic mass tabulated by ``xraydb``: the
    12-coordinate metallic diameter, which suits the close-packed shapes the builders
    make.  Open structures have shorter bonds than that (alpha-U 2.75 A against 3.08 A
    here, alpha-Ga 2.44 A against 3.03 A; Mn: 2.62 A here, alpha-Mn 2.24-2.91 A).
    For Z >= 100 that density is a prediction.  Non-metals with other ground states
    (B, P, S, He...) and elements without solid-state data (At, Rn, Og) raise
    ``ElementError``.

    Checks: Pt 2.77, Au 2.88, Cu 2.55, Fe 2.49, Co 2.50, Hg 2.99, Al 2.86, Pb 3.50 A.

    Parameters
    ----------
    sym : str
        Element symbol (normalised with :func:`normalize_element`).

    Returns
    -------
    float
        Distance in Angstrom.

    Raises
    ------
    ElementError
        When ``sym`` names no element or neither source has data for it.
    """
    return _nn_distance(normalize_element(sym))[0]


def nn_source(sym: str) -> str:
    """Where :func:`nearest_neighbour_distance` takes ``sym``'s distance from.

    Parameters
    ----------
    sym : str
        Element symbol.

    Returns
    -------
    str
        For example ``"ASE reference state fcc"``, ``"ASE reference state bct (built
        with ase.build.bulk)"`` or ``"xraydb density (close-packed equivalent)"``.

    Raises
    ------
    ElementError
        As :func:`nearest_neighbour_distance`.
    """
    return _nn_distance(normalize_element(sym))[1]


@cache
def _nn_distance(el: str) -> tuple[float, str]:
    """Distance and source of :func:`nearest_neighbour_distance` (normalised symbol)."""
    ref = reference_states[atomic_numbers[el]]
    kind = (ref or {}).get("symmetry", "").lower()
    src = f"ASE reference state {kind}"
    if kind == "fcc":
        return ref["a"] / math.sqrt(2.0), src
    if kind == "bcc":
        return ref["a"] * math.sqrt(3.0) / 2.0, src
    if kind == "sc":
        return float(ref["a"]), src
    if kind == "hcp":
        a = ref["a"]
        c = a * ref["c/a"]
        return min(a, math.sqrt(a * a / 3.0 + c * c / 4.0)), src
    if kind == "diamond":
        return ref["a"] * math.sqrt(3.0) / 4.0, src
    if kind == "rhombohedral" and len(ref.get("basis_x", [0.0])) == 1:
        a = ref["a"]
        return min(a, 2.0 * a * math.sin(math.radians(ref["alpha"]) / 2.0)), src
    if kind == "diatom":
        return float(ref["d"]), src
    if kind in _BULK_SYMMETRIES or _has_basis(ref):
        d = _nn_from_bulk(el)
        if d is not None:
            return d, f"{src} (built with ase.build.bulk)"
    if el in _NON_METALS:
        if ref is None or kind == "atom":
            raise ElementError(f"no bulk reference structure for element {el!r}")
        raise ElementError(
            f"no nearest-neighbour distance for {el!r}: its ground state ({kind}) is not a "
            "simple lattice and the close-packed estimate only suits metals"
        )
    src = "xraydb density (close-packed equivalent)"
    if atomic_numbers[el] >= 100:
        src = "xraydb predicted density (close-packed equivalent)"
    return _nn_from_density(el), src


def _has_basis(ref: dict | None) -> bool:
    """True when an ASE reference state lists the atomic positions of its cell."""
    if not ref:
        return False
    basis = ref.get("basis")
    basis_x = ref.get("basis_x")
    return (basis is not None and len(basis) > 0) or (
        basis_x is not None and len(basis_x) > 1
    )


def _nn_from_bulk(el: str) -> float | None:
    """Shortest interatomic distance of ASE's bulk crystal of ``el`` (None if ASE
    cannot build it)."""
    import numpy as np
    from ase.build import bulk
    from ase.neighborlist import neighbor_list

    try:
        crystal = bulk(el)
    except (ValueError, RuntimeError, KeyError, NotImplementedError):
        return None
    d = neighbor_list("d", crystal, 8.0)
    d = d[d > 0.1]
    return float(np.min(d)) if len(d) else None


def _nn_from_density(el: str) -> float:
    """fcc nearest-neighbour distance at the atomic volume tabulated by ``xraydb``
    (:func:`~diffpy_deepstruc.xraydata.atomic_density_mass`)."""
    from .xraydata import atomic_density_mass

    density, mass = atomic_density_mass(el) or (0.0, 0.0)
    if not (density > 0 and mass > 0):
        raise ElementError(
            f"no nearest-neighbour distance for element {el!r}: neither ASE's reference "
            "states nor xraydb's density table has data for it"
        )
    volume = mass / (density * _AVOGADRO_PER_A3)  # A^3 per atom
    a_fcc = (4.0 * volume) ** (1.0 / 3.0)
    return a_fcc / math.sqrt(2.0)
