"""ASE's effective-medium potential (EMT), vectorised over atom pairs, for clusters.

:func:`~diffpy_deepstruc.imperfect.relax_surface` relaxes particles with EMT and FIRE;
ASE's calculator loops over atoms in Python (about 10 ms per force call for 150 atoms),
which made the relaxation the slowest step of turning a sampled shape code into a
structure.  :class:`ClusterEMT` takes ASE's parameters, cutoff and formulas unchanged
and evaluates them over all neighbour pairs at once.
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT, beta
from scipy.spatial import cKDTree

from .errors import ParameterError

__all__ = ["ClusterEMT"]


class ClusterEMT(EMT):
    """ASE's :class:`~ase.calculators.emt.EMT` (same parameters, cutoff and energy),
    with the per-atom loops replaced by array operations over all neighbour pairs.

    For clusters (no periodic boundaries; no stress).  Energies and forces equal
    EMT's to rounding, 1e-13 eV and eV/A (``tests/test_emt.py``); a force call is about
    ten times faster for 50-150 atoms.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Energy, per-atom energies and forces of ``atoms`` (ASE calculator protocol)."""
        Calculator.calculate(self, atoms, properties, system_changes)
        if "numbers" in system_changes:
            self.initialize(self.atoms)
        a = self.atoms
        if a.pbc.any():
            raise ParameterError(
                "ClusterEMT is for clusters: the atoms have periodic boundaries"
            )
        pos = a.positions
        n = len(a)
        iz = self.ia2iz
        par = self.par
        pairs = cKDTree(pos).query_pairs(self.rc_list, output_type="ndarray")
        i = np.concatenate([pairs[:, 0], pairs[:, 1]])
        j = np.concatenate([pairs[:, 1], pairs[:, 0]])
        d = pos[j] - pos[i]
        r = np.sqrt(np.add.reduce(d**2, axis=1))
        keep = r < self.rc_list
        i, j, d, r = i[keep], j[keep], d[keep], r[keep]
        zi, zj = iz[i], iz[j]
        w = 1.0 / (1.0 + np.exp(self.acut * (r - self.rc)))
        dwdroverw = self.acut * (w - 1.0)
        chi = self.chi[zi, zj]
        s0i, s0j = par["s0"][zi], par["s0"][zj]
        eta2i, eta2j = par["eta2"][zi], par["eta2"][zj]
        kapi, kapj = par["kappa"][zi], par["kappa"][zj]
        ds1s = np.exp(-eta2j * (r - beta * s0j)) * chi * w
        ds1o = np.exp(-eta2i * (r - beta * s0i)) / chi * w
        ds2s = np.exp(-kapj * (r / beta - s0j)) * chi * w
        ds2o = np.exp(-kapi * (r / beta - s0i)) / chi * w

        energies = np.zeros(n)
        deds = np.zeros(n)
        has = np.bincount(i, minlength=n) > 0
        sigma1 = np.bincount(i, weights=ds1s, minlength=n)[has]
        za = iz[has]
        e0, v0 = par["E0"][za], par["V0"][za]
        eta2, lmd, kappa = par["eta2"][za], par["lambda"][za], par["kappa"][za]
        ds = -1.0 * np.log(sigma1 * par["inv12gamma1"][za]) / (beta * eta2)
        lmdsds = lmd * ds
        expneg = np.exp(-1.0 * lmdsds)
        six = 6.0 * v0 * np.exp(-1.0 * kappa * ds)
        energies[has] = e0 * (1.0 + lmdsds) * expneg + six
        deds[has] = (-1.0 * e0 * lmd * lmdsds * expneg - kappa * six) / (
            -1.0 * beta * eta2 * sigma1
        )

        nh = par["neghalfv0overgamma2"]
        es = nh[zi] * ds2s
        eo = nh[zj] * ds2o
        energies += 0.5 * np.bincount(i, weights=es + eo, minlength=n)
        dedr = deds[i] * ds1s * (dwdroverw - eta2j) + deds[j] * ds1o * (dwdroverw - eta2i)
        dedr += es * (dwdroverw - kapj / beta) + eo * (dwdroverw - kapi / beta)
        f = (dedr / r)[:, None] * d
        forces = np.zeros((n, 3))
        for k in range(3):
            forces[:, k] = np.bincount(i, weights=f[:, k], minlength=n)
        energies -= par["E0"][iz]
        self.energies = energies
        self.forces = forces
        energy = np.add.reduce(energies, axis=0)
        self.results["energy"] = self.results["free_energy"] = energy
        self.results["energies"] = energies
        self.results["forces"] = forces
