"""Element symbols and bulk nearest-neighbour distances."""

from __future__ import annotations

import pytest

from diffpy_deepstruc.elements import (
    D_BLOCK_METALS,
    DEEPSTRUC_METALS,
    is_metal,
    nearest_neighbour_distance,
    normalize_element,
)
from diffpy_deepstruc.errors import DeepStrucError, ElementError


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Au", "Au"),
        ("AU", "Au"),
        ("au", "Au"),
        ("Au1", "Au"),
        ("Au1+", "Au"),
        ("Fe3+", "Fe"),
        ("O2-", "O"),
        (" Pt ", "Pt"),
        ("C", "C"),
        ("Co", "Co"),
    ],
)
def test_normalize_element(given: str, expected: str) -> None:
    assert normalize_element(given) == expected


@pytest.mark.parametrize("bad", ["Xx", "X", "", "Au-Pt", "123", "Q", None, 79])
def test_normalize_element_unknown(bad: object) -> None:
    with pytest.raises(ElementError) as info:
        normalize_element(bad)  # type: ignore[arg-type]
    assert repr(bad) in str(info.value)
    assert isinstance(info.value, DeepStrucError) and isinstance(info.value, ValueError)


def test_d_block_metals() -> None:
    assert len(D_BLOCK_METALS) == 29
    assert D_BLOCK_METALS[0] == "Sc" and D_BLOCK_METALS[-1] == "Hg"
    assert {"Pt", "Au", "Cu", "Fe", "Mo", "Tc"} <= set(D_BLOCK_METALS)
    assert not {"La", "Lu", "Al"} & set(D_BLOCK_METALS)
    # the 28 metals of the original DeepStruc generator: all but Mo
    assert len(DEEPSTRUC_METALS) == 28 and set(D_BLOCK_METALS) - set(DEEPSTRUC_METALS) == {
        "Mo"
    }


@pytest.mark.parametrize(
    ("sym", "nn"),
    # bulk nearest-neighbour distances (A): fcc Pt/Au/Cu, bcc Fe, hcp Co, rhombohedral Hg
    [
        ("Pt", 2.77),
        ("Au", 2.88),
        ("Cu", 2.56),
        ("Fe", 2.48),
        ("Co", 2.50),
        ("Hg", 3.00),
        ("Ag", 2.89),
        ("W", 2.74),
        ("Po", 3.35),
    ],
)
def test_nearest_neighbour_distance(sym: str, nn: float) -> None:
    assert nearest_neighbour_distance(sym) == pytest.approx(nn, abs=0.05)


def test_nearest_neighbour_distance_all_d_block() -> None:
    for sym in D_BLOCK_METALS:
        d = nearest_neighbour_distance(sym)
        assert 2.2 < d < 3.7, (sym, d)
    # alpha-Mn is no simple lattice: density fallback, near the metallic diameter 2.54 A
    assert nearest_neighbour_distance("Mn") == pytest.approx(2.6, abs=0.1)
    assert nearest_neighbour_distance("PT") == nearest_neighbour_distance("Pt")


def test_nearest_neighbour_distance_unknown() -> None:
    with pytest.raises(ElementError, match="Zz"):
        nearest_neighbour_distance("Zz")
    with pytest.raises(ElementError, match="Og"):
        nearest_neighbour_distance("Og")  # no bulk data at all
    with pytest.raises(ElementError, match="He"):
        nearest_neighbour_distance("He")  # no solid reference state
    with pytest.raises(ElementError, match="'S'"):
        nearest_neighbour_distance("S")  # molecular crystal: no close-packed estimate
    assert nearest_neighbour_distance("O") == pytest.approx(1.21, abs=0.01)  # O2 bond
    assert nearest_neighbour_distance("Si") == pytest.approx(2.35, abs=0.01)  # diamond


def test_is_metal() -> None:
    assert all(is_metal(s) for s in D_BLOCK_METALS)
    assert is_metal("Al") and is_metal("Na") and is_metal("Pb") and is_metal("Po")
    assert not any(is_metal(s) for s in ("H", "C", "O", "S", "Si", "Ar", "As"))
    with pytest.raises(ElementError):
        is_metal("Zz")
