"""End to end: a metal the model never saw (Pb, fcc, 3.50 A) is solved, not refused."""

from __future__ import annotations

import numpy as np
from ase.cluster import Octahedron

from diffpy_deepstruc.debye import PDFParameters, pdf_from_arrays
from diffpy_deepstruc.elements import nearest_neighbour_distance
from diffpy_deepstruc.pdfdata import PDFData
from diffpy_deepstruc.solve import solve


def test_lead_particle_is_solved_with_a_note():
    nn = nearest_neighbour_distance("Pb")
    atoms = Octahedron("Pb", 5, 1, latticeconstant=nn * np.sqrt(2))  # 55 atoms
    p = PDFParameters(rmin=0, rmax=30, rstep=0.02, qmin=0.8, qmax=24, qdamp=0.03, delta2=2)
    r, g = pdf_from_arrays(atoms.get_positions(), "Pb", 0.01, p)
    meta = {"composition": "Pb", "qmin": 0.8, "qmax": 24.0, "qdamp": 0.03, "qbroad": 0.0}
    res = solve(PDFData(r=r, g=g, metadata=meta, source="pb.gr"), n=6, complete_k=0)
    assert res.element == "Pb"
    assert any("Pb" in note and "training metals" in note for note in res.notes)
    best = res.best
    assert best.n_atoms == len(atoms)
    assert best.rw < 0.02
    d = np.linalg.norm(
        best.structure.xyz_cartn[:, None] - best.structure.xyz_cartn, axis=-1
    )
    np.fill_diagonal(d, np.inf)
    assert abs(np.median(d.min(1)) - nn) < 0.03 * nn
