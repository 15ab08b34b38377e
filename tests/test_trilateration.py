"""Tests of trilateration (distances -> coordinates) and structure alignment."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import cluster_xyz

from diffpy_deepstruc.errors import ParameterError, StructureError
from diffpy_deepstruc.representation import encode, satellite_positions, to_angstrom
from diffpy_deepstruc.trilateration import (
    TrilaterationResult,
    aligned_rmsd,
    assign_and_align,
    kabsch,
    multilaterate,
    objective,
    trilaterate,
)

CLUSTERS = cluster_xyz()
ENCODED = {name: encode(xyz) for name, xyz in CLUSTERS.items()}


def parts(rep):
    n = rep.n_atoms
    return rep.sat_dist[:n], rep.adm[:n, :n], rep.satellites, rep.coords[:n]


def noisy(rep, sigma, rng):
    """Gaussian noise ``sigma`` (unit radii) on every satellite and pair distance."""
    sat, adm, _, _ = parts(rep)
    n = rep.n_atoms
    e = np.triu(rng.normal(scale=sigma, size=(n, n)), 1)
    sat = np.clip(sat + rng.normal(scale=sigma, size=sat.shape), 0, None)
    return sat, np.clip(adm + e + e.T, 0, None)


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


# ------------------------------------------------------------------------ round trip
@pytest.mark.parametrize("name", sorted(CLUSTERS))
def test_round_trip_exact_distances(name):
    """Exact targets give back the input structure to <= 1e-6 A RMSD after alignment."""
    rep = ENCODED[name]
    sat, adm, sats, true = parts(rep)
    xyz_in = CLUSTERS[name][rep.order]
    # default start (multilateration) and a start 0.05 units off, so L-BFGS-B works
    rng = np.random.default_rng(0)
    for x0 in (None, true + rng.normal(scale=0.05, size=true.shape)):
        res = trilaterate(sat, adm, sats, x0=x0)
        assert isinstance(res, TrilaterationResult)
        assert res.xyz.shape == true.shape and res.residual.shape == (rep.n_atoms,)
        xyz = to_angstrom(res.xyz, rep.scale)
        assert aligned_rmsd(xyz, xyz_in) <= 1e-6
        assert res.residual.max() < 1e-7
        assert res.success
    # satellites only
    res = trilaterate(sat, None, sats, x0=true + rng.normal(scale=0.05, size=true.shape))
    assert aligned_rmsd(to_angstrom(res.xyz, rep.scale), xyz_in) <= 1e-6
    # the satellites fix the frame: no alignment needed
    np.testing.assert_allclose(res.xyz, true, atol=1e-7)


@pytest.mark.parametrize("n_max,s", [(192, 4), (250, 7), (400, 24)])
def test_round_trip_other_n_max_and_s(n_max, s):
    xyz = CLUSTERS["decahedron"]
    rep = encode(xyz, n_max=n_max, n_satellites=s)
    sat, adm, sats, true = parts(rep)
    res = trilaterate(sat, adm, sats, x0=true + 0.03)
    assert aligned_rmsd(to_angstrom(res.xyz, rep.scale), xyz[rep.order]) <= 1e-6


def test_multilaterate_exact():
    rep = ENCODED["hcp"]
    sat, _, sats, true = parts(rep)
    np.testing.assert_allclose(multilaterate(sat, sats), true, atol=1e-12)
    np.testing.assert_allclose(multilaterate(sat[5], sats), true[5:6], atol=1e-12)
    # missing distances: an atom with >= 4 finite distances is still fixed
    sat = sat.copy()
    sat[3, [0, 4, 7]] = np.nan
    sat[8, :] = np.nan
    x = multilaterate(sat, sats)
    np.testing.assert_allclose(np.delete(x, 8, 0), np.delete(true, 8, 0), atol=1e-12)
    assert np.all(np.isfinite(x))


def test_missing_distances_are_masked():
    rep = ENCODED["icosahedron"]
    sat, adm, sats, true = parts(rep)
    rng = np.random.default_rng(2)
    sat = sat.copy()
    adm = adm.copy()
    sat[rng.random(sat.shape) < 0.2] = np.nan
    hole = np.triu(rng.random(adm.shape) < 0.3, 1)
    adm[hole] = np.nan  # one side only: the other is used
    adm[(hole & (rng.random(adm.shape) < 0.5)).T] = np.nan  # both sides: missing
    # garbage where the weight is zero is ignored
    w = np.ones_like(sat)
    w[:, 2] = 0.0
    sat[:, 2] = 9.0
    res = trilaterate(sat, adm, sats, w_sat=w, x0=true + 0.02)
    np.testing.assert_allclose(res.xyz, true, atol=1e-7)


def test_residual_flags_a_bad_atom():
    rep = ENCODED["fcc"]
    sat, adm, sats, true = parts(rep)
    rng = np.random.default_rng(3)
    sat, adm = noisy(rep, 0.005, rng)
    sat[40] += 0.2  # one atom with badly wrong satellite distances
    res = trilaterate(sat, adm, sats)
    assert int(np.argmax(res.residual)) == 40
    assert res.residual[40] > 5 * np.median(res.residual)


# ---------------------------------------------------------------------- gradient check
@pytest.mark.parametrize("with_adm", [True, False])
def test_gradient_matches_finite_differences(with_adm):
    rng = np.random.default_rng(5)
    n, s = 12, 7
    sats = satellite_positions(s)
    x = rng.uniform(-0.8, 0.8, size=(n, 3))
    sat = rng.uniform(0.2, 1.8, size=(n, s))
    ws = rng.uniform(0.0, 2.0, size=(n, s))
    adm = wp = None
    if with_adm:
        adm = rng.uniform(0.1, 1.5, size=(n, n))
        adm = 0.5 * (adm + adm.T)
        np.fill_diagonal(adm, 0.0)
        wp = rng.uniform(0.0, 2.0, size=(n, n))
        wp = 0.5 * (wp + wp.T)
        np.fill_diagonal(wp, 0.0)
    f0, g = objective(x, sat, sats, ws, adm, wp)
    # the objective is the documented sum
    r = np.linalg.norm(x[:, None] - sats[None], axis=2)
    expect = np.sum(ws * (r - sat) ** 2)
    if with_adm:
        p = np.linalg.norm(x[:, None] - x[None], axis=2)
        iu = np.triu_indices(n, 1)
        expect += np.sum((wp * (p - adm) ** 2)[iu])
    assert f0 == pytest.approx(expect, rel=1e-12)
    h = 1e-6
    num = np.zeros_like(x)
    for i in range(n):
        for k in range(3):
            xp, xm = x.copy(), x.copy()
            xp[i, k] += h
            xm[i, k] -= h
            num[i, k] = (
                objective(xp, sat, sats, ws, adm, wp)[0]
                - objective(xm, sat, sats, ws, adm, wp)[0]
            ) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------ noise
SIGMAS = (0.005, 0.01, 0.02, 0.05)


NOISE_CASES = [(name, True) for name in sorted(CLUSTERS)] + [
    ("icosahedron", False),
    ("stacking", False),
]


@pytest.mark.parametrize("name,use_adm", NOISE_CASES)
def test_noise_rmsd_grows_linearly(name, use_adm):
    """Gaussian noise sigma (fraction of the unit radius) on all distances.

    Criterion: with q(sigma) = RMSD(sigma) / sigma (RMSD after alignment, unit-sphere
    units, one fixed noise seed per sigma), q is non-increasing within 15%:
    ``q(sigma) <= 1.15 * q(0.5%)`` for sigma = 1, 2, 5 %, i.e. RMSD grows no faster than
    linearly; and the redundant distances average noise out: ``q <= 0.5`` with the aDM,
    ``q <= 1.2`` with satellites only.  RMSD must also increase with sigma.
    """
    rep = ENCODED[name]
    _, _, sats, true = parts(rep)
    q_max = 0.5 if use_adm else 1.2
    rmsd = []
    for k, sigma in enumerate(SIGMAS):
        sat, adm = noisy(rep, sigma, np.random.default_rng(100 + k))
        res = trilaterate(sat, adm if use_adm else None, sats)
        rmsd.append(aligned_rmsd(res.xyz, true))
    rmsd = np.array(rmsd)
    q = rmsd / np.array(SIGMAS)
    assert np.all(q <= 1.15 * q[0]), q
    assert np.all(q <= q_max), q
    assert np.all(np.diff(rmsd) > 0), rmsd


# -------------------------------------------------------------------------- alignment
def test_aligned_rmsd_and_kabsch():
    rng = np.random.default_rng(6)
    a = CLUSTERS["decahedron"]
    rot = random_rotation(rng)
    b = a @ rot.T + np.array([1.0, -2.0, 3.0])
    assert aligned_rmsd(a, b) < 1e-12
    r, s, t = kabsch(a, b)
    np.testing.assert_allclose(r, rot, atol=1e-12)
    assert s == 1.0
    np.testing.assert_allclose(s * a @ r.T + t, b, atol=1e-10)
    # scale
    assert aligned_rmsd(0.5 * a, b) > 1.0
    assert aligned_rmsd(0.5 * a, b, allow_scale=True) < 1e-12
    # reflections only when asked (the decahedron is achiral, so use a random set)
    c = rng.normal(size=(30, 3))
    m = c * np.array([1.0, 1.0, -1.0])
    assert aligned_rmsd(c, m) > 0.1
    assert aligned_rmsd(c, m, allow_reflection=True) < 1e-12
    # known value: a shift of one atom
    d = a.copy()
    d[0] += [0.0, 0.0, 0.3]
    assert 0 < aligned_rmsd(d, a) <= 0.3 / np.sqrt(len(a))
    with pytest.raises(StructureError):
        aligned_rmsd(a, a[:-1])
    with pytest.raises(StructureError):
        aligned_rmsd(np.zeros((4, 2)), np.zeros((4, 2)))


def test_assign_and_align():
    rng = np.random.default_rng(7)
    true = ENCODED["icosahedron"].xyz()
    n = len(true)
    perm = rng.permutation(n)
    # a reconstruction in the canonical frame, atoms shuffled and slightly noisy
    pred = true[perm] + rng.normal(scale=0.02, size=true.shape) + 0.1
    res = assign_and_align(pred, true)
    np.testing.assert_array_equal(res.index_b, perm[res.index_a])
    assert res.rmsd < 0.05 and res.n_unmatched == 0
    # arbitrary orientation of a symmetric cluster: the canonical-frame start finds it
    rot = random_rotation(rng)
    moved = true[perm] @ rot.T + 2.0
    assert assign_and_align(moved, true, try_canonical=False).rmsd > 0.1  # local optimum
    assert assign_and_align(moved, true).rmsd < 1e-10
    # random starts work for a cluster without symmetry (larger basin)
    cloud = rng.uniform(-4, 4, size=(25, 3))
    res = assign_and_align(
        cloud[::-1] @ rot.T, cloud, try_canonical=False, n_random_starts=30
    )
    assert res.rmsd < 1e-10
    # different numbers of atoms
    res = assign_and_align(pred[:100], true)
    assert len(res.index_a) == 100 and res.n_unmatched == n - 100
    assert res.rmsd < 0.1
    # scale
    res = assign_and_align(1.1 * true[perm], true, allow_scale=True)
    assert res.rmsd < 1e-10 and res.scale == pytest.approx(1 / 1.1)


# ----------------------------------------------------------------------------- errors
def test_bad_inputs():
    rep = ENCODED["sc"]
    sat, adm, sats, _ = parts(rep)
    with pytest.raises(ParameterError, match="coplanar"):
        trilaterate(sat, None, sats * np.array([1.0, 1.0, 0.0]))
    with pytest.raises(ParameterError):
        trilaterate(sat[:, :5], None, sats)
    with pytest.raises(ParameterError):
        trilaterate(sat, adm[:-1, :-1], sats)
    with pytest.raises(ParameterError):
        trilaterate(-sat, None, sats)
    with pytest.raises(ParameterError):
        trilaterate(sat, None, sats, w_sat=-1.0)
    with pytest.raises(ParameterError):
        trilaterate(sat, adm, sats, w_pair=np.ones(3))
    with pytest.raises(ParameterError):
        trilaterate(sat, None, sats, x0=np.zeros((2, 3)))
    with pytest.raises(ParameterError):
        trilaterate(sat, None, sats, maxiter=-1)
    with pytest.raises(ParameterError):
        multilaterate(sat, sats[:3])
    res = trilaterate(sat, adm, sats, maxiter=0)
    assert res.n_iter == 0


@pytest.mark.parametrize("sequence", ["ABCABAB", "ABCBCAB"])
def test_round_trip_clusters_stacking_cluster(sequence):
    """The project's own stacking builder (``clusters.stacking_cluster``), 198 atoms."""
    from diffpy_deepstruc.clusters import stacking_cluster

    xyz = stacking_cluster("Pt", sequence, 3.2).positions
    assert len(xyz) <= 200
    rep = encode(xyz)
    sat, adm, sats, true = parts(rep)
    res = trilaterate(sat, adm, sats, x0=true + 0.02)
    assert aligned_rmsd(to_angstrom(res.xyz, rep.scale), xyz[rep.order]) <= 1e-6
    rng = np.random.default_rng(1)
    y = xyz[rng.permutation(len(xyz))] @ random_rotation(rng).T - 4.0
    np.testing.assert_allclose(encode(y).coords, rep.coords, atol=1e-9)
