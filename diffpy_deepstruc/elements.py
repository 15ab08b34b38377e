"""Element symbols and the element data the cluster builders need.

Everything here comes from maintained libraries, not from hand-typed tables:

* element symbols: :data:`ase.data.chemical_symbols` (Z = 1..118);
* bulk nearest-neighbour distances: the ground-state crystal structures and lattice
  constants of :data:`ase.data.reference_states` (the Ashcroft & Mermin / Kittel values
  that ``periodictable``'s ``crystal_structure`` also carries), with a density-based
  fallback from ``xraydb``'s element table for the few elements whose ground state is
  not a simple lattice (e.g. alpha-Mn).

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
    "normalize_element",
    "nearest_neighbour_distance",
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

    A diatomic reference state (H, N, O, F) gives its bond length.  Metals whose
    reference state is none of these (alpha-Mn's 58-atom cubic cell, Ga, In, Sn, U...)
    fall back to the distance in an fcc packing of the same atomic volume, the volume
    taken from the density and atomic mass tabulated by ``xraydb`` -- a rough estimate
    for open structures.  For Mn this gives 2.62 A (alpha-Mn: 2.24-2.91 A; metallic
    diameter 2.54 A).  Non-metals with other ground states (B, P, S, He...) and
    elements without an ASE reference state (Pm, At, Rn, Fr, Ra, Z >= 95) raise
    ``ElementError``.

    Checks: Pt 2.77, Au 2.88, Cu 2.55, Fe 2.49, Co 2.50, Hg 2.99 A.

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
    return _nn_distance(normalize_element(sym))


@cache
def _nn_distance(el: str) -> float:
    """:func:`nearest_neighbour_distance` of a normalised symbol (cached)."""
    ref = reference_states[atomic_numbers[el]]
    kind = (ref or {}).get("symmetry", "").lower()
    if kind == "fcc":
        return ref["a"] / math.sqrt(2.0)
    if kind == "bcc":
        return ref["a"] * math.sqrt(3.0) / 2.0
    if kind == "sc":
        return float(ref["a"])
    if kind == "hcp":
        a = ref["a"]
        c = a * ref["c/a"]
        return min(a, math.sqrt(a * a / 3.0 + c * c / 4.0))
    if kind == "diamond":
        return ref["a"] * math.sqrt(3.0) / 4.0
    if kind == "rhombohedral" and len(ref.get("basis_x", [0.0])) == 1:
        a = ref["a"]
        return min(a, 2.0 * a * math.sin(math.radians(ref["alpha"]) / 2.0))
    if kind == "diatom":
        return float(ref["d"])
    if ref is None or kind == "atom":
        raise ElementError(f"no bulk reference structure for element {el!r}")
    if el in _NON_METALS:
        raise ElementError(
            f"no nearest-neighbour distance for {el!r}: its ground state ({kind}) is not a "
            "simple lattice and the close-packed estimate only suits metals"
        )
    return _nn_from_density(el)


def _nn_from_density(el: str) -> float:
    """fcc nearest-neighbour distance at the atomic volume tabulated by ``xraydb``."""
    import xraydb

    try:
        density, mass = float(xraydb.atomic_density(el)), float(xraydb.atomic_mass(el))
    except (ValueError, TypeError, KeyError):
        density = mass = 0.0
    if not (density > 0 and mass > 0):
        raise ElementError(f"no bulk structure or density data for element {el!r}")
    volume = mass / (density * _AVOGADRO_PER_A3)  # A^3 per atom
    a_fcc = (4.0 * volume) ** (1.0 / 3.0)
    return a_fcc / math.sqrt(2.0)
