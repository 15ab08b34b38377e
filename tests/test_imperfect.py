"""Builders of imperfect particles (diffpy_deepstruc.imperfect) and the off-catalog
benchmark generator (benchmarks/offcatalog.py)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from scipy.spatial import cKDTree

from diffpy_deepstruc import clusters
from diffpy_deepstruc.errors import ParameterError, StructureError
from diffpy_deepstruc.imperfect import (
    BULK_COORDINATION,
    contract_surface,
    coordination_numbers,
    incomplete_shell,
    lattice_ellipsoid,
    lattice_points,
    lattice_rod,
    lattice_sphere,
    relax_surface,
    surface_vacancies,
    twin_sequence,
    twinned_particle,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from offcatalog import KINDS, make_offcatalog, simulate  # noqa: E402


def _nn_ok(atoms: Atoms, nn: float, tol: float = 0.02) -> None:
    """Shortest distance ~ nn, every atom has at least 3 neighbours within 1.1 nn."""
    d, _ = cKDTree(atoms.positions).query(atoms.positions, k=2)
    assert d[:, 1].min() == pytest.approx(nn, rel=tol)
    assert coordination_numbers(atoms.positions, nn).min() >= 3
    assert np.allclose(atoms.positions.mean(axis=0), 0, atol=1e-9)


@pytest.mark.parametrize("lattice", ["fcc", "bcc", "sc", "hcp"])
def test_lattice_points_coordination(lattice: str) -> None:
    pts = lattice_points(lattice, 4.0)
    cn = coordination_numbers(pts, 1.0)
    centre = np.argmin((pts**2).sum(axis=1))
    assert cn[centre] == BULK_COORDINATION[lattice]
    d, _ = cKDTree(pts).query(pts, k=2)
    assert d[:, 1].min() == pytest.approx(1.0)


def test_centred_sphere_matches_ideal_cut() -> None:
    # an fcc sphere of radius 1 nn about a lattice site: the 13-atom cuboctahedron
    at = lattice_sphere("Cu", "fcc", 1.0, min_neighbours=0)
    assert len(at) == 13
    assert len(lattice_sphere("Fe", "bcc", 1.0, min_neighbours=0)) == 9
    assert len(lattice_sphere("Po", "sc", 1.0, min_neighbours=0)) == 7
    assert len(lattice_sphere("Mg", "hcp", 1.0, min_neighbours=0)) == 13


@pytest.mark.parametrize("lattice", ["fcc", "bcc", "sc", "hcp"])
def test_offcentre_sphere(lattice: str) -> None:
    a = lattice_sphere("Au", lattice, 3.2, (0.3, 0.1, 0.2))
    b = lattice_sphere("Au", lattice, 3.2, (0.3, 0.1, 0.2))
    c = lattice_sphere("Au", lattice, 3.2)
    assert 80 < len(a) < 260 and np.array_equal(a.positions, b.positions)
    assert len(a) != len(c) or not np.allclose(a.positions, c.positions)
    _nn_ok(a, a.info["nn"])
    assert a.info["builder"]["offset"] == [0.3, 0.1, 0.2]
    assert set(a.get_chemical_symbols()) == {"Au"}


def test_ellipsoid_and_rod_shapes() -> None:
    e = lattice_ellipsoid("Pt", "fcc", (2.0, 2.0, 5.0), (1, 1, 1), (0.2, 0, 0))
    _nn_ok(e, e.info["nn"])
    u = np.array([1, 1, 1]) / np.sqrt(3)
    along = np.ptp(e.positions @ u)
    across = np.ptp(e.positions @ np.array([1, -1, 0]) / np.sqrt(2))
    assert along > 1.8 * across
    r = lattice_rod("Ag", "fcc", 1.8, 12.0, (1, 1, 0), (0.1, 0.2, 0))
    _nn_ok(r, r.info["nn"])
    v = np.array([1, 1, 0]) / np.sqrt(2)
    t = r.positions @ v
    perp = r.positions - np.outer(t, v)
    assert np.ptp(t) > 2.5 * np.sqrt((perp**2).sum(axis=1)).max()
    assert np.ptp(t) <= 12.0 * r.info["nn"] + 1e-6
    h = lattice_rod("Co", "hcp", 2.0, 8.0)
    _nn_ok(h, h.info["nn"])


def test_lattice_cut_errors() -> None:
    with pytest.raises(ParameterError, match="lattice"):
        lattice_sphere("Au", "diamond", 3.0)
    with pytest.raises(ParameterError, match="radius"):
        lattice_sphere("Au", "fcc", -1.0)
    with pytest.raises(ParameterError, match="offset"):
        lattice_sphere("Au", "fcc", 3.0, (0.1, 0.2))
    with pytest.raises(ParameterError, match="semi_axes"):
        lattice_ellipsoid("Au", "fcc", (1.0, 0.0, 2.0))
    with pytest.raises(ParameterError, match="axis"):
        lattice_rod("Au", "fcc", 2.0, 5.0, axis=(0, 0, 0))
    with pytest.raises(ParameterError, match="no atoms"):
        lattice_rod("Au", "fcc", 0.3, 0.5)


def test_large_particles() -> None:
    t0 = time.perf_counter()
    big = lattice_sphere("Au", "fcc", 8.0, (0.3, 0.1, 0.2))
    assert 2000 < len(big) < 3200
    assert coordination_numbers(big.positions, big.info["nn"]).min() >= 3
    vac = surface_vacancies(big, 40, seed=3)
    assert len(vac) == len(big) - 40
    rod = lattice_rod("Fe", "bcc", 5.0, 30.0, (1, 1, 1))
    assert len(rod) > 1500
    relaxed = relax_surface(big)  # above EMT_MAX_ATOMS: the contraction model
    assert relaxed.info["relaxation"] == "contraction"
    assert time.perf_counter() - t0 < 15


def test_surface_vacancies() -> None:
    ico = clusters.icosahedron("Pt", 4)  # 147 atoms, 92 at the surface
    a = surface_vacancies(ico, 12, seed=5)
    b = surface_vacancies(ico, 12, seed=np.random.default_rng(5))
    c = surface_vacancies(ico, 12, seed=6)
    assert len(a) == 135 and a.info["parent_atoms"] == 147
    assert np.array_equal(a.positions, b.positions)
    assert a.info["vacancies"] != c.info["vacancies"]
    cn = coordination_numbers(ico.positions, 2.772)
    assert (cn[a.info["vacancies"]] < 12).all()  # only surface atoms removed
    _nn_ok(a, 2.772)
    with pytest.raises(StructureError, match="surface atoms can be removed"):
        surface_vacancies(clusters.icosahedron("Pt", 2), 12, seed=0)
    with pytest.raises(ParameterError, match="k must"):
        surface_vacancies(ico, 0)
    with pytest.raises(ParameterError, match="seed"):
        surface_vacancies(ico, 1, seed="x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("shape", "args", "full"),
    [
        ("icosahedron", {"shells": 4}, 147),
        ("decahedron", {"p": 3, "q": 2, "r": 1}, None),
        ("octahedron", {"length": 6, "cutoff": 1}, None),
    ],
)
def test_incomplete_shell(shape: str, args: dict, full: int | None) -> None:
    complete = clusters.build_cluster(shape, "Pd", args)
    n_full = len(complete)
    if full is not None:
        assert n_full == full
    a = incomplete_shell("Pd", shape, args, 0.4, seed=2)
    b = incomplete_shell("Pd", shape, args, 0.4, seed=2)
    assert np.array_equal(a.positions, b.positions)
    n_shell, kept = a.info["shell_atoms"], a.info["shell_kept"]
    assert kept == round(0.4 * n_shell)
    assert len(a) == n_full - n_shell + kept
    _nn_ok(a, a.info["nn"])
    # the kept shell atoms form one contiguous patch: connected among themselves
    pos = a.positions
    cn_full = coordination_numbers(pos, a.info["nn"])
    assert cn_full.min() >= 3
    u = np.asarray(a.info["builder"]["direction"])
    proj = complete.positions @ u
    shell = coordination_numbers(complete.positions, a.info["nn"]) < 12
    kept_idx = np.argsort(-np.where(shell, proj, -np.inf))[:kept]
    sub = complete.positions[kept_idx]
    tree = cKDTree(sub)
    seen, todo = {0}, [0]
    while todo:
        for j in tree.query_ball_point(sub[todo.pop()], 1.1 * a.info["nn"]):
            if j not in seen:
                seen.add(j)
                todo.append(j)
    assert len(seen) == kept
    with pytest.raises(ParameterError, match="fraction"):
        incomplete_shell("Pd", shape, args, 1.0)
    with pytest.raises(ParameterError, match="arguments"):
        incomplete_shell("Pd", shape, {"nope": 3}, 0.5)


def test_twinned_particle() -> None:
    assert twin_sequence(7, [3]) == "ABCACBA"
    assert twin_sequence(9, [2, 5]) == "ABCBACABC"
    t = twinned_particle("Au", 9, [4], 3.5)
    assert t.info["sequence"] == twin_sequence(9, [4])
    assert clusters.hcp_fraction(t.info["sequence"]) == pytest.approx(1 / 7)
    _nn_ok(t, t.info["nn"], tol=1e-6)
    again = twinned_particle("Au", 9, [4], 3.5)
    assert np.array_equal(t.positions, again.positions)
    with pytest.raises(ParameterError, match="twins"):
        twin_sequence(7, [6])
    with pytest.raises(ParameterError, match="twins"):
        twin_sequence(7, [])
    with pytest.raises(ParameterError, match="twins"):
        twin_sequence(7, ["x"])


def test_relax_surface_emt() -> None:
    a = lattice_sphere("Pt", "fcc", 3.3, (0.2, 0.1, 0.3))
    assert 150 < len(a) < 220
    t0 = time.process_time()  # CPU time: the test VM's cores are shared
    r = relax_surface(a)
    assert time.process_time() - t0 < 2
    assert r.info["relaxation"] == "emt" and 0 < r.info["emt_steps"] <= 40
    assert len(r) == len(a)
    nn = a.info["nn"]
    shift = np.linalg.norm(r.positions - a.positions, axis=1)
    assert 0.005 * nn < shift.max() < 0.15 * nn
    d, _ = cKDTree(r.positions).query(r.positions, k=2)
    assert 0.88 * nn < d[:, 1].min() < nn
    again = relax_surface(a)
    assert np.allclose(r.positions, again.positions)
    with pytest.raises(ParameterError, match="EMT covers"):
        relax_surface(lattice_sphere("Fe", "bcc", 2.0), method="emt")


def test_contraction_model() -> None:
    a = lattice_sphere("Pb", "fcc", 3.0)
    r = relax_surface(a)  # Pb: no EMT, the contraction model
    assert r.info["relaxation"] == "contraction"
    nn = a.info["nn"]
    cn = coordination_numbers(a.positions, nn)
    shift = np.linalg.norm(r.positions - a.positions, axis=1)
    assert np.allclose(shift[cn == 12], 0, atol=1e-9)
    # displacement 0.05 nn (1 - c / 12), towards the neighbours
    i = int(np.argmin(cn))
    assert shift[i] == pytest.approx(0.05 * nn * (1 - cn[i] / 12), rel=1e-6)
    assert np.linalg.norm(r.positions[i]) < np.linalg.norm(a.positions[i])
    assert contract_surface(a, 0.0).positions == pytest.approx(a.positions)
    with pytest.raises(ParameterError, match="contraction"):
        contract_surface(a, 0.5)


# ----------------------------------------------------------------- benchmark generator


def test_offcatalog_all_kinds() -> None:
    for kind in KINDS:
        parts = make_offcatalog(kind, 3)
        assert [p.kind for p in parts] == [kind] * 3
        for p in parts:
            n = len(p.atoms)
            if kind == "large":
                assert 250 <= n <= 3000, p.name
            else:
                assert 2 <= n <= 200, p.name
            assert p.truth_type in clusters.STRUCTURE_TYPES
            assert set(p.atoms.get_chemical_symbols()) == {p.element}
            json.loads(p.builder)
            q = p.pdf_params
            assert 0.5 <= q["qmin"] <= 1.5 and 18 <= q["qmax"] <= 28
            assert 0.02 <= q["qdamp"] <= 0.05 and 0 <= q["qbroad"] <= 0.02
            assert 1 <= q["delta2"] <= 4 and 0.003 <= q["uiso"] <= 0.012
            assert 0.005 <= q["noise"] <= 0.02
    sp = {p.element for p in make_offcatalog("sp_metals", 8)}
    assert sp and not sp & set(clusters.D_BLOCK_METALS)


def test_offcatalog_deterministic_and_prefix_stable() -> None:
    a = make_offcatalog("vacancies", 3)
    b = make_offcatalog("vacancies", 2)
    assert [p.name for p in a[:2]] == [p.name for p in b]
    assert np.array_equal(a[1].atoms.positions, b[1].atoms.positions)
    assert a[0].pdf_params == b[0].pdf_params
    c = make_offcatalog("vacancies", 2, seed=1)
    assert [p.name for p in c] != [p.name for p in b]
    with pytest.raises(ParameterError):
        make_offcatalog("nope", 2)


def test_simulate() -> None:
    p = make_offcatalog("sp_metals", 1)[0]
    pdf = simulate(p)
    assert pdf.r[0] == 0 and pdf.r[-1] == pytest.approx(39.99) and len(pdf.r) == 4000
    assert pdf.qmax == pytest.approx(p.pdf_params["qmax"])
    assert pdf.composition == f"{p.element}{len(p.atoms)}"
    sigma = p.pdf_params["noise"] * np.abs(pdf.g).max()
    assert pdf.dg[0] == pytest.approx(sigma, rel=0.2)
    assert np.array_equal(simulate(p).g, pdf.g)
