"""Every metal gets a nearest-neighbour distance; the generator notes unseen metals.

Handbook values (A) the distances are checked against, within 10 %:

* Kittel, *Introduction to Solid State Physics*, 8th ed., ch. 1, table "Crystal
  structures of the elements" (nearest-neighbour distances, room temperature or the
  stated low temperature): Li 3.02, Na 3.66, K 4.53, Rb 4.84, Cs 5.24, Mg 3.20,
  Ca 3.95, Sr 4.30, Ba 4.35, Al 2.86, In 3.25, Tl 3.41, Pb 3.50, Ce 3.65, Th 3.60,
  Yb 3.88, Eu 3.97.
* beta-Sn (white tin, I4_1/amd, a = 5.83, c = 3.18 A): shortest bond 3.02 A (4 neighbours).
* Bi (A7, R-3m): shortest bond 3.07 A (3 neighbours).
* alpha-Ga, alpha-U, Pu: open structures with short bonds (Ga 2.44, U 2.75 A); the
  library gives the 12-coordinate metallic diameter (close-packed equivalent at the
  atomic volume), which is checked against twice the CN-12 metallic radius of
  Greenwood & Earnshaw, *Chemistry of the Elements*, 2nd ed.: Ga 1.41 A (group 13
  table), U 1.56 A, Pu 1.59 A (actinide table).
"""

from __future__ import annotations

import pytest

from diffpy_deepstruc.elements import (
    METALS,
    is_metal,
    nearest_neighbour_distance,
    nn_source,
)
from diffpy_deepstruc.errors import ElementError
from diffpy_deepstruc.generator import element_note

HANDBOOK_NN = {
    "Li": 3.02,
    "Na": 3.66,
    "K": 4.53,
    "Rb": 4.84,
    "Cs": 5.24,
    "Mg": 3.20,
    "Ca": 3.95,
    "Sr": 4.30,
    "Ba": 4.35,
    "Al": 2.86,
    "In": 3.25,
    "Tl": 3.41,
    "Pb": 3.50,
    "Ce": 3.65,
    "Th": 3.60,
    "Yb": 3.88,
    "Eu": 3.97,
    "Sn": 3.02,
    "Bi": 3.07,
    # 12-coordinate metallic diameters (see the module docstring)
    "Ga": 2 * 1.41,
    "U": 2 * 1.56,
    "Pu": 2 * 1.59,
}


@pytest.mark.parametrize(("sym", "expected"), sorted(HANDBOOK_NN.items()))
def test_handbook_distance(sym: str, expected: float) -> None:
    assert nearest_neighbour_distance(sym) == pytest.approx(expected, rel=0.10)


def test_every_metal_has_a_distance() -> None:
    lanthanides = [f"{s}" for s in "La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu".split()]
    actinides = "Ac Th Pa U Np Pu Am Cm Bk Cf Es".split()
    assert set(lanthanides + actinides) <= set(METALS)
    assert {"Al", "Mg", "Sn", "Pb", "Ga", "In", "Bi", "Ca", "Li", "Cs"} <= set(METALS)
    assert not {"H", "C", "Si", "Ge", "As", "Sb", "Te", "At", "Og"} & set(METALS)
    for sym in METALS:
        assert is_metal(sym)
        d = nearest_neighbour_distance(sym)
        assert 2.0 < d < 6.5, (sym, d)
        assert nn_source(sym)
    for sym in lanthanides + actinides:
        assert 2.9 < nearest_neighbour_distance(sym) < 4.2, sym


def test_sources() -> None:
    assert nn_source("Al") == "ASE reference state fcc"
    assert "ase.build.bulk" in nn_source("Sn")
    assert nn_source("U").startswith("xraydb density")
    assert "predicted" in nn_source("Md")


def test_non_metals_keep_their_error() -> None:
    with pytest.raises(ElementError, match="'S'"):
        nearest_neighbour_distance("S")
    with pytest.raises(ElementError, match="He"):
        nearest_neighbour_distance("He")
    assert not is_metal("Si")


def test_element_note() -> None:
    trained = ["Ag", "Au", "Cu", "Pt"]
    note = element_note(trained, "Pb")
    assert note is not None and "\n" not in note
    assert note.startswith("Pb (nearest-neighbour 3.50 A) was not in the model's training")
    assert "Ag, Au, Cu, Pt; 2.55-2.89 A" in note and "scaled to Pb's distance" in note
    assert element_note(trained, "Au") is None
    assert element_note(trained, "au", 2.7) is None
    far = element_note(trained, "Au", 3.4)
    assert far is not None and "3.40 A lies outside" in far
    assert element_note([], "Pb") is None
    with pytest.raises(ElementError):
        element_note(trained, "Xx")
