"""Tests of the unit-sphere representation (canonical frame, satellites, targets)."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import cluster_xyz

from diffpy_deepstruc.errors import ParameterError, StructureError
from diffpy_deepstruc.representation import (
    Representation,
    canonical_frame,
    encode,
    pairwise_distances,
    satellite_distances,
    satellite_positions,
    to_angstrom,
)

CLUSTERS = cluster_xyz()


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def test_cluster_sizes():
    sizes = {k: len(v) for k, v in CLUSTERS.items()}
    assert all(120 <= s <= 200 for s in sizes.values()), sizes
    assert max(sizes.values()) == 200


# ------------------------------------------------------------------------ satellites
@pytest.mark.parametrize("s", [4, 5, 6, 11, 12, 20, 32, 64, 100])
def test_satellites_unit_sphere_and_not_coplanar(s):
    sat = satellite_positions(s)
    assert sat.shape == (s, 3)
    np.testing.assert_allclose(np.linalg.norm(sat, axis=1), 1.0, atol=1e-14)
    sv = np.linalg.svd(sat - sat.mean(axis=0), compute_uv=False)
    assert sv[-1] > 0.3 * sv[0]  # well spread in all three directions
    # well separated: no two satellites closer than 1/sqrt(S) or so
    d = pairwise_distances(sat) + 10 * np.eye(s)
    assert d.min() > 1.5 / np.sqrt(s)
    np.testing.assert_array_equal(sat, satellite_positions(s))  # deterministic


def test_default_satellites():
    assert satellite_positions().shape == (11, 3)


@pytest.mark.parametrize("bad", [3, 0, -1, 2.0, True, "11"])
def test_satellites_bad_count(bad):
    with pytest.raises(ParameterError):
        satellite_positions(bad)


# ---------------------------------------------------------------------------- encode
@pytest.mark.parametrize("name", sorted(CLUSTERS))
def test_encode_fields(name):
    xyz = CLUSTERS[name]
    n = len(xyz)
    rep = encode(xyz)
    assert isinstance(rep, Representation)
    assert rep.coords.shape == (200, 3) and rep.sat_dist.shape == (200, 11)
    assert rep.adm.shape == (200, 200) and rep.mask.shape == (200,)
    assert rep.mask.dtype == bool and rep.mask.sum() == n == rep.n_atoms
    assert rep.mask[:n].all()
    assert sorted(rep.order.tolist()) == list(range(n))
    c = rep.coords[:n]
    # padding is zero
    assert not rep.coords[n:].any() and not rep.sat_dist[n:].any()
    assert not rep.adm[n:].any() and not rep.adm[:, n:].any()
    # unit sphere: origin atom at 0, farthest atom on the surface
    np.testing.assert_array_equal(c[0], 0.0)
    radii = np.linalg.norm(c, axis=1)
    assert radii.max() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(radii) > -1e-9)  # ordered by distance from the origin
    # atom 1 on +x, atom 2 (if off the x axis) in the xy plane
    np.testing.assert_allclose(c[1, 1:], 0.0, atol=1e-12)
    assert c[1, 0] > 0
    # scale and frame reproduce the input
    dist = pairwise_distances(xyz)
    assert rep.scale == pytest.approx(dist[rep.order[0]].max(), rel=1e-12)
    np.testing.assert_allclose(rep.to_input_frame(), xyz[rep.order], atol=1e-10)
    np.testing.assert_allclose(rep.rotation @ rep.rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rep.rotation) == pytest.approx(1.0)
    # targets consistent with the coordinates, and distances preserved
    np.testing.assert_allclose(rep.adm[:n, :n], pairwise_distances(c), atol=1e-14)
    np.testing.assert_allclose(
        rep.sat_dist[:n], satellite_distances(c, satellite_positions(11)), atol=1e-14
    )
    np.testing.assert_allclose(
        rep.adm[:n, :n] * rep.scale, dist[np.ix_(rep.order, rep.order)], atol=1e-10
    )
    np.testing.assert_allclose(rep.xyz(), c * rep.scale)


@pytest.mark.parametrize("name", sorted(CLUSTERS))
def test_encode_is_canonical(name):
    """Permuted, rotated and translated copies give the same target."""
    xyz = CLUSTERS[name]
    ref = encode(xyz)
    rng = np.random.default_rng(sorted(CLUSTERS).index(name))
    for _ in range(3):
        perm = rng.permutation(len(xyz))
        y = xyz[perm] @ random_rotation(rng).T + rng.normal(scale=20.0, size=3)
        rep = encode(y)
        np.testing.assert_allclose(rep.coords, ref.coords, atol=1e-9)
        np.testing.assert_allclose(rep.sat_dist, ref.sat_dist, atol=1e-9)
        np.testing.assert_allclose(rep.adm, ref.adm, atol=1e-9)
        assert rep.scale == pytest.approx(ref.scale, rel=1e-12)
        # the input atoms in canonical order have the reference's geometry
        np.testing.assert_allclose(
            pairwise_distances(y[rep.order]), pairwise_distances(xyz[ref.order]), atol=1e-9
        )


@pytest.mark.parametrize("name", ["fcc", "icosahedron", "stacking"])
def test_encode_canonical_with_float32_rounding(name):
    """Rounding noise (float32 storage) changes no choice: the target moves by ~1e-7."""
    xyz = CLUSTERS[name]
    ref = encode(xyz)
    rng = np.random.default_rng(7)
    y = (xyz[rng.permutation(len(xyz))] @ random_rotation(rng).T + 3.0).astype(np.float32)
    rep = encode(y)
    np.testing.assert_allclose(rep.coords, ref.coords, atol=1e-5)
    np.testing.assert_allclose(rep.sat_dist, ref.sat_dist, atol=1e-5)


def test_encode_generic_cluster_is_canonical():
    """A cluster without symmetry (random positions) is canonical too."""
    rng = np.random.default_rng(3)
    xyz = rng.uniform(-8, 8, size=(120, 3))
    ref = encode(xyz)
    for _ in range(3):
        y = xyz[rng.permutation(120)] @ random_rotation(rng).T + rng.normal(size=3)
        np.testing.assert_allclose(encode(y).coords, ref.coords, atol=1e-9)


def test_mirror_image():
    rng = np.random.default_rng(4)
    xyz = rng.uniform(-5, 5, size=(30, 3))
    mirror = xyz * np.array([1.0, 1.0, -1.0])
    # proper frames: a chiral cluster and its mirror image differ
    assert np.abs(encode(xyz).coords - encode(mirror).coords).max() > 1e-3
    # allow_reflection: one target for both
    a = encode(xyz, allow_reflection=True)
    b = encode(mirror, allow_reflection=True)
    np.testing.assert_allclose(a.coords, b.coords, atol=1e-9)
    # achiral clusters: same target either way
    ico = CLUSTERS["icosahedron"]
    np.testing.assert_allclose(
        encode(ico * np.array([1, 1, -1])).coords, encode(ico).coords, atol=1e-9
    )


@pytest.mark.parametrize("n_max,s", [(147, 4), (150, 6), (300, 32)])
def test_encode_other_sizes(n_max, s):
    xyz = CLUSTERS["icosahedron"]
    rep = encode(xyz, n_max=n_max, n_satellites=s)
    assert rep.coords.shape == (n_max, 3) and rep.sat_dist.shape == (n_max, s)
    assert rep.n_satellites == s and rep.n_max == n_max
    np.testing.assert_array_equal(rep.satellites, satellite_positions(s))
    # the frame does not depend on n_max or S
    np.testing.assert_allclose(rep.coords[:147], encode(xyz).coords[:147])


def test_small_degenerate_structures():
    # dimer: both atoms tie as origin; the result is still unique
    d = encode(np.array([[0.0, 0, 0], [1.5, 2.0, 0]]), n_max=2)
    np.testing.assert_allclose(d.coords, [[0, 0, 0], [1, 0, 0]], atol=1e-15)
    assert d.scale == pytest.approx(2.5)
    # linear chain: all atoms on the x axis
    chain = np.outer(np.arange(5.0), [0.3, -0.4, 1.2])
    c = encode(chain, n_max=8)
    np.testing.assert_allclose(c.coords[:5, 1:], 0.0, atol=1e-14)
    np.testing.assert_allclose(
        encode(chain[::-1] + 5, n_max=8).coords, c.coords, atol=1e-12
    )
    # planar cluster: z == 0
    tri = np.array([[0.0, 0, 0], [1, 0, 0], [0.5, 0.8, 0], [-0.7, 0.3, 0]])
    np.testing.assert_allclose(encode(tri, n_max=4).coords[:, 2], 0.0, atol=1e-14)


def test_canonical_frame_returns_same_as_encode():
    xyz = CLUSTERS["decahedron"]
    order, origin, rot, scale = canonical_frame(xyz)
    rep = encode(xyz)
    np.testing.assert_array_equal(order, rep.order)
    np.testing.assert_allclose(origin, xyz[order[0]])
    assert scale == rep.scale


# ---------------------------------------------------------------------------- errors
def test_too_many_atoms_says_the_limit():
    with pytest.raises(StructureError, match="n_max=100"):
        encode(CLUSTERS["icosahedron"], n_max=100)


@pytest.mark.parametrize(
    "xyz",
    [
        np.zeros((1, 3)),
        np.zeros((0, 3)),
        np.array([[0.0, 0, 0], [np.nan, 1, 1]]),
        np.array([[0.0, 0, 0], [np.inf, 1, 1]]),
        np.zeros((4, 2)),
        np.zeros(3),
        [["a", "b", "c"], ["d", "e", "f"]],
        np.array([[0.0, 0, 0], [1, 1, 1], [1, 1, 1]]),  # coincident atoms
        np.ones((3, 3)),
    ],
)
def test_bad_structures(xyz):
    with pytest.raises(StructureError):
        encode(xyz)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_max": 1},
        {"n_max": 10.5},
        {"n_satellites": 3},
        {"tie_tol": 0.0},
        {"tie_tol": 1.0},
    ],
)
def test_bad_parameters(kwargs):
    with pytest.raises(ParameterError):
        encode(CLUSTERS["hcp"], **{"n_max": 200, **kwargs})


def test_to_angstrom():
    rep = encode(CLUSTERS["bcc"])
    xyz = to_angstrom(rep.coords, rep.scale, rep.mask)
    assert xyz.shape == (rep.n_atoms, 3)
    np.testing.assert_allclose(
        pairwise_distances(xyz), pairwise_distances(CLUSTERS["bcc"][rep.order]), atol=1e-10
    )
    assert to_angstrom(rep.coords, 2.0).shape == (200, 3)
    with pytest.raises(ParameterError):
        to_angstrom(rep.coords, -1.0)
    with pytest.raises(ParameterError):
        to_angstrom(rep.coords, np.nan)
    with pytest.raises(ParameterError):
        to_angstrom(rep.coords, 1.0, rep.mask[:10])
    with pytest.raises(StructureError):
        to_angstrom(np.zeros((3, 2)), 1.0)
