"""ClusterEMT is ASE's EMT: the same energies and forces, the same relaxations."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.cluster import Decahedron, Icosahedron, Octahedron

from diffpy_deepstruc.emt import ClusterEMT
from diffpy_deepstruc.errors import ParameterError


def _both(atoms):
    a, b = atoms.copy(), atoms.copy()
    a.calc, b.calc = EMT(), ClusterEMT()
    return a, b


@pytest.mark.parametrize(
    "make",
    [
        lambda: Icosahedron("Au", 4),
        lambda: Octahedron("Pt", 5),
        lambda: Decahedron("Ni", 3, 2, 0),
        lambda: Icosahedron("Al", 3),
    ],
)
def test_energy_and_forces_equal_ase(make):
    rng = np.random.default_rng(7)
    atoms = make()
    atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
    ref, fast = _both(atoms)
    assert abs(fast.get_potential_energy() - ref.get_potential_energy()) < 1e-10
    np.testing.assert_allclose(fast.get_forces(), ref.get_forces(), rtol=0, atol=1e-11)
    np.testing.assert_allclose(
        fast.get_potential_energies(), ref.get_potential_energies(), rtol=0, atol=1e-11
    )


def test_mixed_metals_and_an_isolated_atom():
    atoms = Icosahedron("Cu", 3)
    symbols = atoms.get_chemical_symbols()
    symbols[::3] = ["Ag"] * len(symbols[::3])
    atoms.set_chemical_symbols(symbols)
    atoms += Atoms("Pd", positions=[[40.0, 0.0, 0.0]])  # beyond every cutoff
    ref, fast = _both(atoms)
    assert abs(fast.get_potential_energy() - ref.get_potential_energy()) < 1e-10
    np.testing.assert_allclose(fast.get_forces(), ref.get_forces(), rtol=0, atol=1e-11)
    assert np.all(fast.get_forces()[-1] == 0.0)


def test_relaxation_follows_ase():
    """FIRE with either calculator ends at the same particle."""
    from ase.optimize import FIRE

    rng = np.random.default_rng(3)
    start = Octahedron("Au", 4)
    start.positions += rng.normal(0.0, 0.05, start.positions.shape)
    ref, fast = _both(start)
    for a in (ref, fast):
        FIRE(a, logfile=None).run(fmax=0.05, steps=40)
    np.testing.assert_allclose(fast.positions, ref.positions, rtol=0, atol=1e-8)


def test_periodic_atoms_are_refused():
    atoms = Icosahedron("Au", 2)
    atoms.set_cell([20, 20, 20])
    atoms.pbc = True
    atoms.calc = ClusterEMT()
    with pytest.raises(ParameterError, match="periodic"):
        atoms.get_forces()
