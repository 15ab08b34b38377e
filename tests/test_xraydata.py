"""The shipped xraydb table gives xraydb's form factors (bit for bit), densities, masses."""

import numpy as np
import pytest

from diffpy_deepstruc import xraydata


def test_table_is_xraydbs():
    """The shipped table is what the rebuild command writes from the installed xraydb."""
    fresh = xraydata.table_from_xraydb()
    assert fresh["waasmaier"].keys() == set(xraydata.ions())
    assert len(xraydata.ions()) == 211
    assert fresh == xraydata._raw()


@pytest.mark.parametrize("el", ["H", "Mn", "Au", "Pu", "Lr", "Og"])
def test_density_and_mass_are_xraydbs(el):
    import xraydb

    assert xraydata.atomic_density_mass(el) == (
        xraydb.atomic_density(el),
        xraydb.atomic_mass(el),
    )
    assert xraydata.atomic_density_mass("Xx") is None


@pytest.mark.parametrize("ion", ["H", "Al", "Fe2+", "Au", "Pt", "Pb", "Cf", "O2-", "Cval"])
def test_f0_equals_xraydb_exactly(ion):
    import xraydb

    q = np.linspace(0.0, 3.0, 301)
    np.testing.assert_array_equal(xraydata.f0(ion, q), xraydb.f0(ion, q))
    assert xraydata.f0(ion.lower(), 0.25)[0] == xraydb.f0(ion, 0.25)[0]


def test_every_ion_equals_xraydb():
    import xraydb

    q = np.array([0.0, 0.1, 0.7, 2.2])
    for ion in xraydata.ions():
        np.testing.assert_array_equal(xraydata.f0(ion, q), xraydb.f0(ion, q), err_msg=ion)


def test_unknown_ion():
    assert not xraydata.has_f0("Xx")
    assert xraydata.has_f0("au")
    with pytest.raises(ValueError, match="No ion Es"):
        xraydata.f0("Es", 0.0)
