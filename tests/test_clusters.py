"""Cluster builders, stacking sequences and the catalog enumeration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from scipy.spatial.distance import pdist

from diffpy_deepstruc import clusters as C
from diffpy_deepstruc.errors import ElementError, ParameterError

D = 2.5  # nearest-neighbour distance used in the geometric tests (A)


def _sorted_distances(atoms: Atoms) -> np.ndarray:
    return np.sort(pdist(atoms.positions))


def _shells(atoms: Atoms, index: int, nn: float) -> dict[str, int]:
    """Neighbour counts of atom ``index`` at the fcc/hcp shell distances (units of nn)."""
    r = np.linalg.norm(atoms.positions - atoms.positions[index], axis=1) / nn
    shells = {
        "1": 1.0,
        "sqrt2": math.sqrt(2),
        "sqrt8/3": math.sqrt(8 / 3),
        "sqrt3": math.sqrt(3),
    }
    return {k: int(np.sum(np.abs(r - v) < 0.02)) for k, v in shells.items()}


def _central_atom(atoms: Atoms) -> int:
    p = atoms.positions
    return int(np.argmin(np.linalg.norm(p - p.mean(axis=0), axis=1)))


# ---------------------------------------------------------------- builders


def test_structure_types():
    assert C.STRUCTURE_TYPES == (
        "fcc",
        "bcc",
        "sc",
        "hcp",
        "icosahedron",
        "decahedron",
        "octahedron",
        "stacking",
    )
    assert set(C.BUILDERS) == set(C.STRUCTURE_TYPES)


@pytest.mark.parametrize(
    "stype, args",
    [
        ("fcc", {"layers": [2, 2, 2]}),
        ("bcc", {"layers": [3, 3, 3]}),
        ("sc", {"layers": [2, 2, 2]}),
        ("hcp", {"layers": [2, 2, 2]}),
        ("icosahedron", {"shells": 3}),
        ("decahedron", {"p": 2, "q": 2, "r": 1}),
        ("octahedron", {"length": 4, "cutoff": 1}),
        ("stacking", {"sequence": "ABCAB", "radius": 2.0, "shape": "prism"}),
    ],
)
def test_builders_return_plain_atoms_at_the_given_nn(stype, args):
    atoms = C.build_cluster(stype, "Au", args, nn=D)
    assert type(atoms) is Atoms
    assert set(atoms.get_chemical_symbols()) == {"Au"}
    assert not atoms.pbc.any()
    assert np.allclose(atoms.positions.mean(axis=0), 0, atol=1e-9)
    assert pdist(atoms.positions).min() == pytest.approx(D, rel=1e-9)
    # the same arguments give the same shape for every metal, scaled by nn
    unit = C.build_cluster(stype, "Ag", args, nn=1.0)
    assert np.allclose(_sorted_distances(atoms), D * _sorted_distances(unit))


def test_default_nn_comes_from_elements():
    from diffpy_deepstruc.elements import nearest_neighbour_distance

    atoms = C.fcc_cluster("pt", [2, 2, 2])
    assert atoms.get_chemical_symbols()[0] == "Pt"
    assert pdist(atoms.positions).min() == pytest.approx(nearest_neighbour_distance("Pt"))


def test_lattice_constants():
    assert C.lattice_constant("fcc", 1.0) == pytest.approx(math.sqrt(2))
    assert C.lattice_constant("bcc", 1.0) == pytest.approx(2 / math.sqrt(3))
    assert C.lattice_constant("sc", 1.0) == 1.0
    a, c = C.lattice_constant("hcp", 1.0)
    assert (a, round(c / a, 3)) == (1.0, 1.633)
    assert C.lattice_constant("octahedron", 2.0) == pytest.approx(2 * math.sqrt(2))


@pytest.mark.parametrize(
    "call",
    [
        lambda: C.fcc_cluster("Au", [1, 2]),
        lambda: C.fcc_cluster("Au", [0, 1, 1]),
        lambda: C.bcc_cluster("Fe", [1.5, 1, 1]),
        lambda: C.hcp_cluster("Co", "123"),
        lambda: C.icosahedron("Au", 0),
        lambda: C.decahedron("Pd", 0, 1, 0),
        lambda: C.decahedron("Pd", 1, 1, -1),
        lambda: C.octahedron("Ag", 1),
        lambda: C.octahedron("Ag", 4, 2),
        lambda: C.fcc_cluster("Au", [1, 1, 1], nn=-1.0),
        lambda: C.fcc_cluster("Au", [1, 1, 1], nn=float("nan")),
        lambda: C.stacking_cluster("Au", "AAB", 2.0),
        lambda: C.stacking_cluster("Au", "ABD", 2.0),
        lambda: C.stacking_cluster("Au", "A", 2.0),
        lambda: C.stacking_cluster("Au", "ABC", 0.0),
        lambda: C.stacking_cluster("Au", "ABC", 2.0, shape="cube"),
        lambda: C.stacking_cluster(
            "Au", "ABCABCABCABC", 1.0, shape="sphere"
        ),  # empty layers
        lambda: C.build_cluster("cube", "Au", {}),
        lambda: C.hcp_fraction("AB"),
    ],
)
def test_bad_arguments_raise_parameter_error(call):
    with pytest.raises(ParameterError):
        call()


def test_unknown_element():
    with pytest.raises(ElementError):
        C.fcc_cluster("Xx", [1, 1, 1])


# ---------------------------------------------------------------- stacking


def test_hcp_fraction_and_jagodzinski_symbols():
    assert C.layer_environments("ABCABAB") == "ccchh"
    assert C.hcp_fraction("ABCABAB") == pytest.approx(2 / 5)
    assert C.hcp_fraction("ABCABCABC") == 0.0
    assert C.hcp_fraction("ABABAB") == 1.0
    assert C.hcp_fraction("abcb") == 0.5  # case-insensitive
    assert C._sequence_from_environments("ccchh") == "ABCABAB"


def test_abc_stacking_is_fcc_and_ab_stacking_is_hcp():
    # Interior atom of a 7-layer prism: every shell up to sqrt(3) d is complete.
    fcc = C.stacking_cluster("Cu", "ABCABCA", 3.0, shape="prism", nn=D)
    hcp = C.stacking_cluster("Co", "ABABABA", 3.0, shape="prism", nn=D)
    fcc_env = _shells(fcc, _central_atom(fcc), D)
    hcp_env = _shells(hcp, _central_atom(hcp), D)
    # fcc: 12 at d, 6 at sqrt2 d, none at sqrt(8/3) d, 24 at sqrt3 d;
    # hcp: 12 at d, 6 at sqrt2 d, 2 at sqrt(8/3) d (straight above/below), 18 at sqrt3 d.
    assert fcc_env == {"1": 12, "sqrt2": 6, "sqrt8/3": 0, "sqrt3": 24}
    assert hcp_env == {"1": 12, "sqrt2": 6, "sqrt8/3": 2, "sqrt3": 18}
    # the ASE lattice builders give the same local environments
    ase_fcc = C.fcc_cluster("Cu", [5, 5, 5], nn=D)
    ase_hcp = C.hcp_cluster("Co", [5, 5, 5], nn=D)
    assert _shells(ase_fcc, _central_atom(ase_fcc), D) == fcc_env
    assert _shells(ase_hcp, _central_atom(ase_hcp), D) == hcp_env


def test_faulted_stacking_places_every_layer_as_given():
    seq = "ABCABABCBA"
    atoms = C.stacking_cluster("Ni", seq, 3.0, shape="prism", nn=D)
    assert atoms.info["sequence"] == seq
    z = atoms.positions[:, 2]
    levels = np.unique(np.round(z, 6))
    assert len(levels) == len(seq)
    assert np.allclose(np.diff(levels), D * math.sqrt(2 / 3))
    env = C.layer_environments(seq)
    for k in range(2, len(seq) - 2):
        in_layer = np.flatnonzero(np.isclose(z, levels[k]))
        xy = atoms.positions[in_layer, :2]
        i = int(in_layer[np.argmin(np.linalg.norm(xy - xy.mean(axis=0), axis=1))])
        v = atoms.positions - atoms.positions[i]
        r = np.linalg.norm(v, axis=1) / D
        nn_vec = v[np.abs(r - 1) < 0.02]
        assert len(nn_vec) == 12
        # Jagodzinski symbol from the 12-neighbour polyhedron: a cuboctahedron ('c')
        # has 6 opposite neighbour pairs (v and -v), an anticuboctahedron ('h') 3.
        opposite = (
            sum(np.isclose(nn_vec, -u, atol=1e-6).all(axis=1).any() for u in nn_vec) // 2
        )
        assert opposite == (3 if env[k - 1] == "h" else 6), (k, env)
        # an atom sits straight above/below at 2 layer spacings iff that layer is the same
        expected = int(seq[k - 2] == seq[k]) + int(seq[k + 2] == seq[k])
        assert int(np.sum(np.abs(r - math.sqrt(8 / 3)) < 0.02)) == expected


def test_stacking_sphere_and_prism_shapes():
    sphere = C.stacking_cluster("Au", "ABCAB", 2.5, shape="sphere", nn=1.0)
    centre = sphere.positions.mean(axis=0)
    # centred on the middle of the stack, on the axis through the A sites
    assert np.linalg.norm(sphere.positions - centre, axis=1).max() <= 2.5 + 0.3
    prism = C.stacking_cluster("Au", "ABCAB", 1.5, shape="prism", nn=1.0)
    assert len(np.unique(np.round(prism.positions[:, 2], 6))) == 5
    assert len(prism) > len(C.stacking_cluster("Au", "ABCAB", 1.0, shape="prism", nn=1.0))


# ---------------------------------------------------------------- enumeration


def test_icosahedra_enumeration():
    ico = C.enumerate_geometries
    assert [n for _, _, n in ico(["icosahedron"], 5, 200)] == [13, 55, 147]
    assert [n for _, _, n in ico(["icosahedron"], 1, 200)] == [1, 13, 55, 147]
    assert [n for _, _, n in ico(["icosahedron"], 1, 1000)] == [
        1,
        13,
        55,
        147,
        309,
        561,
        923,
    ]


def test_octahedra_enumeration():
    got = [
        (a["length"], a["cutoff"], n)
        for _, a, n in C.enumerate_geometries(["octahedron"], 5, 85)
    ]
    # regular octahedra 6, 19, 44, 85; cuboctahedra 13, 55; truncated 38, 79
    assert (
        (2, 0, 6) in got and (3, 0, 19) in got and (4, 0, 44) in got and (5, 0, 85) in got
    )
    assert (
        (3, 1, 13) in got and (5, 2, 55) in got and (4, 1, 38) in got and (5, 1, 79) in got
    )


@pytest.mark.parametrize("stype", ["fcc", "bcc", "sc", "hcp"])
def test_fast_lattice_enumeration_matches_the_ase_builders(stype):
    n_max = 40
    cands = list(C._candidates(stype, n_max))
    assert cands
    for args, atoms in cands[:: max(1, len(cands) // 12)]:
        built = C.build_cluster(stype, "Cu", args, nn=1.0)
        assert len(built) == len(atoms), args
        assert np.allclose(_sorted_distances(built), _sorted_distances(atoms), atol=1e-9), (
            args
        )


def test_enumeration_sizes_order_and_determinism():
    geoms = C.enumerate_geometries(None, 5, 30)
    assert all(5 <= n <= 30 for _, _, n in geoms)
    types = [t for t, _, _ in geoms]
    assert types == sorted(types, key=C.STRUCTURE_TYPES.index)
    assert set(types) == set(C.STRUCTURE_TYPES) - {"icosahedron"} | {"icosahedron"}
    assert geoms == C.enumerate_geometries(None, 5, 30)
    # the type order of the request does not matter
    assert C.enumerate_geometries(["sc", "fcc"], 5, 30) == C.enumerate_geometries(
        ["fcc", "sc"], 5, 30
    )
    for t, args, n in geoms:
        assert len(C.build_cluster(t, "Cu", args, nn=1.0)) == n


def test_deduplication():
    geoms = C.enumerate_geometries(None, 5, 40)
    dists = [_sorted_distances(C.build_cluster(t, "Cu", a, nn=1.0)) for t, a, _ in geoms]
    for i in range(len(dists)):
        for j in range(i):
            if len(dists[i]) == len(dists[j]):
                assert not np.allclose(dists[i], dists[j], atol=1e-4), (geoms[i], geoms[j])
    # octahedra that the fcc cutter also makes are kept once, as fcc
    octa = C.enumerate_geometries(["octahedron"], 5, 40)
    both = C.enumerate_geometries(["fcc", "octahedron"], 5, 40)
    fcc_d = [
        _sorted_distances(C.build_cluster("fcc", "Cu", a, nn=1.0))
        for t, a, _ in both
        if t == "fcc"
    ]
    dropped = [
        a for _, a, _ in octa if a not in [b for t, b, _ in both if t == "octahedron"]
    ]
    assert dropped, "expected some octahedra to coincide with fcc cuts"
    for a in dropped:
        d = _sorted_distances(C.octahedron("Cu", nn=1.0, **a))
        assert any(len(d) == len(f) and np.allclose(d, f, atol=1e-4) for f in fcc_d)
    # rotated, translated and mirrored copies are the same cluster; a slightly
    # distorted one is not
    seen = C._Distinct()
    atoms = C.decahedron("Cu", 2, 2, 1, nn=1.0).positions
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    assert seen.add(atoms)
    assert not seen.add(atoms @ q.T + [1.0, -2.0, 3.0])
    assert not seen.add(atoms * [-1, 1, 1])
    assert not seen.add(atoms[::-1])
    distorted = atoms.copy()
    distorted[0] += [0.01, 0, 0]
    assert seen.add(distorted)


def test_enumerate_clusters_specs():
    specs = list(
        C.enumerate_clusters(["au", "Ag", "Au"], ["icosahedron", "decahedron"], 5, 30)
    )
    assert [s.element for s in specs[:1]] == ["Au"]
    assert {s.element for s in specs} == {"Au", "Ag"}
    half = len(specs) // 2
    assert [(s.type, s.args, s.natoms) for s in specs[:half]] == [
        (s.type, s.args, s.natoms) for s in specs[half:]
    ]  # same geometries for each metal: metals are never duplicates of each other
    s = specs[0]
    assert s.type == "icosahedron" and s.natoms == 13
    atoms = s.build()
    assert len(atoms) == 13 and atoms.get_chemical_symbols()[0] == "Au"
    with pytest.raises(ElementError):
        list(C.enumerate_clusters(["Qq"], ["fcc"]))
    with pytest.raises(ParameterError):
        list(C.enumerate_clusters(["Au"], ["cubes"]))
    with pytest.raises(ParameterError):
        list(C.enumerate_clusters(["Au"], ["fcc"], n_min=10, n_max=5))
