"""Tests of diffpy_deepstruc.completion: incremental histograms, geometry, stopping rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffpy_deepstruc import clusters, debye, imperfect
from diffpy_deepstruc.completion import (
    BOND_MAX,
    MIN_DISTANCE,
    MOVES,
    OPEN_BOND_MAX,
    CountRange,
    _add_histograms,
    _edit_dh,
    _edit_dh_many,
    _fit_modes,
    _mode_histogram,
    _mode_slots,
    _Model,
    _remove_histograms,
    _Search,
    complete,
    coordination,
    count_range_of,
    estimate_nn,
    estimate_noise,
    independent_points,
    is_physical,
    relaxation_modes,
    site_bond_max,
    surface_atoms,
    vacant_sites,
)
from diffpy_deepstruc.errors import ParameterError, PDFDataError, StructureError
from diffpy_deepstruc.histpdf import HIST_STEP, HistogramPDF, pair_histogram
from diffpy_deepstruc.refine import DEFAULT_QDAMP
from diffpy_deepstruc.structures import arrays_to_structure

PARAMS = debye.PDFParameters(
    rmin=0.0, rmax=25.0, rstep=0.01, qmin=0.7, qmax=25.0, qdamp=0.04, delta2=2.0
)
SETTINGS = {"qmin": 0.7, "qmax": 25.0, "qdamp": 0.04, "qbroad": 0.0}


def _pdf(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return debye.pdf_from_arrays(xyz, "Au", 0.005, PARAMS, backend="torch")


def _band_noise(r: np.ndarray, rms: float, seed: int) -> np.ndarray:
    """Noise band-limited to Qmax, as a measured G(r) holds (catalog's noise model)."""
    rng = np.random.default_rng(seed)
    q = np.arange(0.7, 25.0, math.pi / 40.0)
    g = (q * rng.standard_normal(len(q))) @ np.sin(np.outer(q, r))
    return g * rms / np.sqrt(np.mean(g**2))


@pytest.fixture(scope="module")
def ico55() -> np.ndarray:
    return clusters.icosahedron("Au", 3).positions


@pytest.fixture(scope="module")
def fcc() -> np.ndarray:
    return clusters.fcc_cluster("Au", [3, 3, 3]).positions


# -- incremental histograms ---------------------------------------------------------------


def test_incremental_histogram_equals_full_recalculation(fcc):
    rng = np.random.default_rng(0)
    x = fcc.copy()
    nn = estimate_nn(x)
    n_bins = int((np.ptp(x, axis=0).max() * 2 + 6 * nn) / HIST_STEP)
    h = pair_histogram(x, n_bins=n_bins)
    for _ in range(4):  # remove two surface atoms one by one, add two vacant sites
        i = int(rng.choice(surface_atoms(x, nn)))
        h = h + _remove_histograms(x, np.array([i]), HIST_STEP, n_bins)[0]
        x = np.delete(x, i, axis=0)
        sites, _ = vacant_sites(x, nn)
        s = sites[int(rng.integers(len(sites)))]
        h = h + _add_histograms(x, s[None], HIST_STEP, n_bins)[0]
        x = np.concatenate([x, s[None]])
    # a swap / recut edit: remove three atoms and add two sites at once
    surf = surface_atoms(x, nn)
    removed = np.sort(rng.choice(surf, 3, replace=False))
    sites, _ = vacant_sites(x, nn)
    added = sites[:2]
    h = h + _edit_dh(x, removed, added, HIST_STEP, n_bins)
    x = np.concatenate([np.delete(x, removed, axis=0), added])
    full = pair_histogram(x, n_bins=n_bins)
    assert np.abs(h[1:] - full[1:]).max() <= 1e-10 * np.abs(full).max()
    assert h[0] == pytest.approx(full[0], abs=1e-9)


def test_batched_edits_equal_full_recalculation(fcc):
    rng = np.random.default_rng(3)
    x = fcc.copy()
    nn = estimate_nn(x)
    n_bins = int((np.ptp(x, axis=0).max() * 2 + 6 * nn) / HIST_STEP)
    sites, _ = vacant_sites(x, nn)
    pts = np.concatenate([x, sites])
    surf = surface_atoms(x, nn)
    edits = [
        (np.sort(rng.choice(surf, k, replace=False)), np.arange(m) * 2)
        for k, m in ((0, 1), (1, 0), (3, 2), (2, 4))
    ]
    dh, ok = _edit_dh_many(pts, len(x), edits, HIST_STEP, n_bins)
    assert ok.all()
    full0 = pair_histogram(x, n_bins=n_bins)
    for (removed, added), row in zip(edits, dh, strict=True):
        new = np.concatenate([np.delete(x, removed, axis=0), sites[added]])
        full = pair_histogram(new, n_bins=n_bins)
        assert np.abs(full0 + row - full).max() <= 1e-10 * np.abs(full).max()


@pytest.mark.parametrize("shape", ["fcc", "ico55", "bcc"])
def test_batched_validity_equals_the_single_check(shape, fcc, ico55):
    """_valid_many (recuts and caps, one sparse product) gives _valid's answer."""
    x = {"fcc": fcc, "ico55": ico55}.get(shape)
    if x is None:
        x = clusters.bcc_cluster("Fe", [3, 3, 3]).positions
    rng = np.random.default_rng(5)
    search = _Search.__new__(_Search)
    search.x, search.nn = x.copy(), estimate_nn(x)
    search.bond_max = site_bond_max(x, search.nn)
    search.max_dist = 0.9 * np.ptp(x, axis=0).max() + 2.0 * search.nn  # some too far
    sites, _ = vacant_sites(x, search.nn, bond_max=search.bond_max)
    pts = np.concatenate([x, sites])
    edits = []
    for _ in range(150):
        removed = np.sort(rng.choice(len(x), int(rng.integers(0, 6)), replace=False))
        added = np.sort(rng.choice(len(sites), int(rng.integers(0, 6)), replace=False))
        edits.append((removed, added))
    got = search._valid_many(pts, edits)
    want = [search._valid(r, sites[a]) for r, a in edits]
    assert got.tolist() == want
    assert 0 < sum(want) < len(want)  # both answers occur


def test_linear_model_equals_histogram_pdf(ico55):
    r = np.arange(1.5, 20.0, 0.01)
    h = pair_histogram(ico55, n_bins=2000)
    model = _Model(r, np.ones_like(r), np.ones_like(r), SETTINGS, 2000, HIST_STEP, None)
    theta = torch.tensor([1.01, 0.006, 1.7], dtype=torch.float64)
    c = model.calc(torch.as_tensor(h)[None], model.kernel(theta), screen=False)[0] / 55
    hp = HistogramPDF(r, qmin=0.7, qmax=25.0, qdamp=0.04, n_bins=2000)
    ref = hp(torch.as_tensor(h)[None], 55.0, theta[0], theta[1], theta[2])[0]
    assert torch.abs(c - ref).max() <= 1e-10 * torch.abs(ref).max()


# -- geometry ----------------------------------------------------------------------------


def test_surface_atoms_of_an_icosahedron(ico55):
    nn = estimate_nn(ico55)
    surf = surface_atoms(ico55, nn)
    assert len(surf) == 42  # the outer shell; the 13-atom core is fully coordinated
    assert coordination(ico55, nn).max() == 12


def test_vacant_sites_are_physical_and_find_removed_atoms(fcc):
    nn = estimate_nn(fcc)
    surf = surface_atoms(fcc, nn)
    removed = surf[[0, 7, 19]]
    x = np.delete(fcc, removed, axis=0)
    sites, cnt = vacant_sites(x, nn)
    d = np.linalg.norm(sites[:, None] - x[None], axis=2)
    assert d.min() >= MIN_DISTANCE * nn
    assert np.all(cnt >= 3)
    assert np.all((d <= 1.12 * nn).sum(axis=1) == cnt)
    for p in fcc[removed]:  # every vacancy is among the candidate sites
        assert np.linalg.norm(sites - p, axis=1).min() < 0.05


def test_open_lattices_grow_on_their_facets(fcc):
    """An atom on an sc (100) facet has one nearest neighbour: sites of open lattices
    count their second shell (1.414 nn in sc), so the facet's on-top sites are found."""
    g = np.arange(4.0)
    sc = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3) * 2.8
    assert site_bond_max(sc, 2.8) == OPEN_BOND_MAX
    assert site_bond_max(fcc, estimate_nn(fcc)) == BOND_MAX
    sites, cnt = vacant_sites(sc, 2.8)
    on_top = np.array([1.0, 1.0, 4.0]) * 2.8  # above an inner atom of the z = 3 facet
    assert np.linalg.norm(sites - on_top, axis=1).min() < 0.05
    assert np.all(cnt >= 3)
    # counted within BOND_MAX only, that site has a single neighbour and is refused
    close, _ = vacant_sites(sc, 2.8, bond_max=BOND_MAX)
    assert len(close) == 0 or np.linalg.norm(close - on_top, axis=1).min() > 0.05


def test_is_physical():
    x = clusters.fcc_cluster("Au", [2, 2, 2]).positions
    nn = estimate_nn(x)
    assert is_physical(x, nn, min_neighbours=3)
    assert not is_physical(np.concatenate([x, x[:1] + 0.5]), nn)


# -- statistics -------------------------------------------------------------------------


def test_independent_points_and_tail_noise():
    assert independent_points(1.5, 30.0, 25.0) == pytest.approx(28.5 * 25 / math.pi)
    r = np.arange(0.0, 30.0, 0.01)
    g = _band_noise(r, 0.05, seed=3)
    sigma, src = estimate_noise(
        r, g, None, qmax=25.0, particle_size=12.0, rmin=1.5, rmax=30
    )
    assert src == "tail" and sigma == pytest.approx(0.05, rel=0.3)
    sigma, src = estimate_noise(
        r, g, None, qmax=25.0, particle_size=28.0, rmin=1.5, rmax=30
    )
    assert (sigma, src) == (None, "residual")
    dg = np.full_like(r, 0.02)
    assert estimate_noise(r, g, dg, qmax=25.0, particle_size=12.0, rmin=1.5, rmax=30) == (
        pytest.approx(0.02),
        "dg",
    )


# -- the search --------------------------------------------------------------------------


def test_vacancies_are_completed_to_the_exact_count(ico55):
    nn = estimate_nn(ico55)
    surf = surface_atoms(ico55, nn)
    removed = surf[[0, 13, 29]]
    truth = np.delete(ico55, removed, axis=0)
    r, g = _pdf(truth)
    res = complete(
        arrays_to_structure(ico55, "Au"), (r, g), qmin=0.7, qmax=25.0, qdamp=0.04
    )
    assert res.n_atoms_start == 55 and res.n_atoms == 52
    assert len(res.removed) == 3 and len(res.added) == 0
    assert res.rw < 0.5 * res.rw_start
    assert {m.kind for m in res.moves} <= {"remove", "swap", "recut", "relax"}
    for m in res.moves:  # every accepted move beat the penalty and lowered Rw
        assert m.rw_after < m.rw_before
        assert m.delta_chi2 > m.penalty
    x = np.array(res.structure.xyz_cartn)
    assert is_physical(x, nn, min_neighbours=3)
    # the removed atoms sit where the truth has vacancies (up to the symmetry of the
    # icosahedron: compare the sorted distance lists of the result and the truth)
    d_res = np.sort(np.linalg.norm(x[:, None] - x[None], axis=2).ravel())
    d_tru = np.sort(np.linalg.norm(truth[:, None] - truth[None], axis=2).ravel())
    assert np.abs(d_res - d_tru).max() < 0.1


def test_missing_atoms_are_added_and_stay_physical(fcc):
    nn = estimate_nn(fcc)
    surf = surface_atoms(fcc, nn)
    start = np.delete(fcc, surf[[2, 11]], axis=0)
    r, g = _pdf(fcc)
    res = complete(
        arrays_to_structure(start, "Au"), (r, g), qmin=0.7, qmax=25.0, qdamp=0.04
    )
    assert res.n_atoms == len(fcc)
    x = np.array(res.structure.xyz_cartn)
    assert is_physical(x, nn, min_neighbours=3)
    for p in res.added:  # each added atom has >= 3 neighbours at ~nn and no clash
        d = np.linalg.norm(x - p, axis=1)
        d = d[d > 1e-9]
        assert d.min() >= MIN_DISTANCE * nn and np.sum(d <= 1.12 * nn) >= 3


@pytest.mark.parametrize("criterion", ["bic", "hamilton"])
def test_ideal_structure_keeps_its_atom_count(ico55, criterion):
    r, g = _pdf(ico55)
    g = g + _band_noise(r, 0.005 * np.abs(g).max(), seed=1)
    res = complete(
        arrays_to_structure(ico55, "Au"),
        (r, g),
        qmin=0.7,
        qmax=25.0,
        qdamp=0.04,
        criterion=criterion,
        moves=("remove", "add", "swap", "recut"),
    )
    assert res.n_atoms == 55 and not res.moves
    assert res.rw == pytest.approx(res.rw_start)


def test_count_range_rule():
    chi2 = {50: 111.0, 51: 104.0, 52: 100.0, 53: 104.0, 54: 109.0, 55: 140.0}
    # within 5 per atom of chi2[52]: 51 (4 <= 5), 53 (4 <= 5), 54 (9 <= 10); not 50 (11)
    assert count_range_of(chi2, 52, 5.0) == (51, 54, False, False)
    assert str(count_range_of(chi2, 52, 5.0)) == "51..54"
    assert count_range_of(chi2, 52, 2.0).resolved
    assert str(count_range_of(chi2, 52, 2.0)) == "52"
    # nothing scanned: both bounds open, not resolved
    assert count_range_of({52: 1.0}, 52, 5.0) == (52, 52, True, True)
    # contiguous: a count beyond an out-of-range one is not reached; the scan's last
    # count, still within range, leaves that bound open
    cr = count_range_of({50: 100.0, 51: 120.0, 52: 100.0, 53: 101.0}, 52, 5.0)
    assert cr == (52, 53, False, True) and str(cr) == "52..>=53"
    assert cr.contains(53) and not cr.contains(51)
    assert str(CountRange(10, 20, True, True)) == "<=10..>=20"


def test_count_scan_resolves_a_clean_count_and_not_a_noisy_one(ico55):
    """Exact data: a missing or extra atom costs far more than the penalty, so the data
    single out the count; very noisy data leave neighbouring counts within it."""
    r, g = _pdf(ico55)
    kw = {"qmin": 0.7, "qmax": 25.0, "qdamp": 0.04, "moves": ()}
    clean = g + _band_noise(r, 1e-4 * np.abs(g).max(), seed=4)
    res = complete(arrays_to_structure(ico55, "Au"), (r, clean), **kw)
    assert res.count_range == (55, 55, False, False) and res.count_range.resolved
    assert res.count_chi2[55] == pytest.approx(res.chi2)
    assert min(res.count_chi2) >= 54 and max(res.count_chi2) <= 56  # stopped at once
    assert all(v - res.chi2 > res.settings["penalty_per_site"]
               for k, v in res.count_chi2.items() if k != 55)  # fmt: skip
    noisy = g + _band_noise(r, 0.05 * np.abs(g).max(), seed=4)
    res = complete(arrays_to_structure(ico55, "Au"), (r, noisy), count_steps=2, **kw)
    lo, hi, _, _ = res.count_range
    assert lo < 55 < hi and lo >= 53 and hi <= 57
    assert res.summary()["count_range"]["text"] == str(res.count_range)
    assert "count_scan" in res.timings
    res = complete(arrays_to_structure(ico55, "Au"), (r, noisy), count_steps=0, **kw)
    assert res.count_range is None and res.count_chi2 == {}


def test_pure_noise_adds_no_atoms(ico55):
    r = np.arange(0.0, 25.0, 0.01)
    g = _band_noise(r, 0.3, seed=2)
    res = complete(arrays_to_structure(ico55[:-10], "Au"), (r, g), qmax=25.0, qmin=0.7)
    assert len(res.added) == 0
    assert res.n_atoms <= 45
    assert res.rw <= res.rw_start + 1e-12
    assert res.noise_source == "tail"


def test_result_is_never_worse_and_reports(ico55):
    r, g = _pdf(ico55[:40])
    res = complete(
        arrays_to_structure(ico55, "Au"), (r, g), qmax=25.0, qmin=0.7, max_seconds=2.0
    )
    assert res.rw <= res.rw_start
    summary = res.summary()
    assert summary["n_atoms_start"] == 55 and summary["n_atoms"] == res.n_atoms
    assert set(res.parameters) == {"scale", "zoomscale", "uiso", "delta2"}
    assert res.settings["sources"]["qdamp"] == "default"
    assert res.settings["qdamp"] == DEFAULT_QDAMP == 0.0


def test_bad_input(ico55):
    r, g = _pdf(ico55)
    s = arrays_to_structure(ico55, "Au")
    mixed = arrays_to_structure(ico55, ["Au"] * 54 + ["Pt"])
    with pytest.raises(StructureError):
        complete(mixed, (r, g), qmax=25.0)
    with pytest.raises(ParameterError, match="qmax"):
        complete(s, (r, g))
    with pytest.raises(ParameterError, match="moves"):
        complete(s, (r, g), qmax=25.0, moves=("teleport",))
    with pytest.raises(ParameterError, match="criterion"):
        complete(s, (r, g), qmax=25.0, criterion="gut")
    with pytest.raises(PDFDataError):
        complete(s, (r, g[:-1]), qmax=25.0)
    with pytest.raises(ParameterError, match="model_error"):
        complete(s, (r, g), qmax=25.0, model_error=-1.0)
    with pytest.raises(ParameterError, match="penalise"):
        complete(s, (r, g), qmax=25.0, penalise="everything")


@pytest.mark.parametrize("penalise", ["sites", "atoms", "count"])
def test_a_misplaced_atom_is_moved_back_and_the_count_kept(fcc, penalise):
    """One surface atom moved to a vacant site: a swap puts it back (the count never
    changes), whichever the stopping rule pays for; the rule is recorded."""
    nn = estimate_nn(fcc)
    surf = surface_atoms(fcc, nn)
    sites, _ = vacant_sites(fcc, nn)
    far = sites[np.argmax(np.linalg.norm(sites - fcc[surf[0]], axis=1))]
    start = np.concatenate([np.delete(fcc, surf[0], axis=0), far[None]])
    r, g = _pdf(fcc)
    res = complete(
        arrays_to_structure(start, "Au"),
        (r, g),
        qmin=0.7,
        qmax=25.0,
        qdamp=0.04,
        penalise=penalise,
        moves=("remove", "add", "swap"),
    )
    assert res.n_atoms == len(fcc)
    assert res.settings["penalise"] == penalise
    x = np.array(res.structure.xyz_cartn)
    assert np.min(np.linalg.norm(x - fcc[surf[0]], axis=1)) < 0.05
    assert res.rw < 0.25 * res.rw_start


def test_solve_stage_gives_the_same_result_in_worker_processes(ico55):
    """`solve`'s completion stage: the same completed candidates, in the input order,
    whether the completions run here or in forked worker processes."""
    from diffpy_deepstruc.pdfdata import PDFData
    from diffpy_deepstruc.solve.candidates import Proposal
    from diffpy_deepstruc.solve.complete import complete_candidates
    from diffpy_deepstruc.solve.settings import FitSettings

    nn = estimate_nn(ico55)
    truth = np.delete(ico55, surface_atoms(ico55, nn)[[0, 13]], axis=0)
    r, g = _pdf(truth)
    pdf = PDFData(r=r, g=g)
    settings = FitSettings(qmin=0.7, qmax=25.0, qdamp=0.04, qbroad=0.0, rmin=1.5, rmax=25.0)
    props = [
        Proposal(k, arrays_to_structure(x, "Au"), f"library: test {k}", [])
        for k, x in enumerate((ico55, np.delete(ico55, [54], axis=0)))
    ]
    starts = [{"zoomscale": 1.0, "uiso": 0.005, "delta2": 2.0}] * 2
    one, _, _, r1 = complete_candidates(props, starts, pdf, settings, workers=1)
    two, _, _, r2 = complete_candidates(props, starts, pdf, settings, workers=2)
    assert r1 == r2 and r1  # the count ranges too
    assert [c.origin for c in one] == [c.origin for c in two] == [0, 1]
    for a, b in zip(one, two, strict=True):
        xa = np.array(a.proposal.structure.xyz_cartn)
        xb = np.array(b.proposal.structure.xyz_cartn)
        assert xa.shape == xb.shape and np.allclose(xa, xb)
        assert a.changes["rw"] == b.changes["rw"]


def test_a_missing_cap_of_the_outer_shell_is_cut_in_one_move(ico55):
    """An incomplete outer shell: the 12 surface atoms lowest along an axis are missing
    (a contiguous cap, as partial shells grow); the planar recut finds it."""
    nn = estimate_nn(ico55)
    surf = surface_atoms(ico55, nn)
    cap = surf[np.argsort(ico55[surf, 2], kind="stable")[:12]]
    truth = np.delete(ico55, cap, axis=0)
    r, g = _pdf(truth)
    res = complete(
        arrays_to_structure(ico55, "Au"), (r, g), qmin=0.7, qmax=25.0, qdamp=0.04
    )
    assert res.n_atoms == 43
    x = np.array(res.structure.xyz_cartn)
    d_res = np.sort(np.linalg.norm(x[:, None] - x[None], axis=2).ravel())
    d_tru = np.sort(np.linalg.norm(truth[:, None] - truth[None], axis=2).ravel())
    assert np.abs(d_res - d_tru).max() < 0.1
    assert res.moves[0].kind == "recut" and len(res.moves[0].removed) >= 8


# -- relaxation ------------------------------------------------------------------------


def test_relaxation_modes_of_an_icosahedron(ico55):
    nn = estimate_nn(ico55)
    modes, names = relaxation_modes(ico55, nn)
    assert modes.shape == (55, 3, len(names))
    # every atom moves by a unit vector in a mode or not at all
    norms = np.linalg.norm(modes, axis=1)
    assert np.all((np.abs(norms - 1.0) < 1e-12) | (norms == 0.0))
    # the 12 vertices (6 neighbours) and 30 edge atoms (8) of the outer shell contract
    # towards their neighbours, which lie inwards; the centre atom is in no mode
    cn = coordination(ico55, nn)
    assert [n for n in names if n.startswith("cn")] == ["cn6", "cn8"]
    out = ico55 - ico55.mean(axis=0)
    centre = int(np.argmin(np.linalg.norm(out, axis=1)))
    assert not np.any(modes[centre])
    for c in (6, 8):
        b = modes[:, :, names.index(f"cn{c}")]
        members = np.flatnonzero(np.any(b, axis=1))
        assert np.array_equal(members, np.flatnonzero(cn == c))
        radial = out[members] / np.linalg.norm(out[members], axis=1)[:, None]
        assert np.all(np.sum(b[members] * radial, axis=1) < -0.5)
    # the radial modes partition the atoms off the centre by distance
    shells = [n for n in names if n.startswith("shell")]
    assert len(shells) >= 3
    radial_sum = sum(
        np.any(modes[:, :, names.index(n)], axis=1).astype(int) for n in shells
    )
    assert radial_sum[centre] == 0 and np.all(np.delete(radial_sum, centre) == 1)


def test_a_relaxed_particle_keeps_its_atom_count():
    """An EMT-relaxed Au icosahedron completed from the ideal one: without relaxation the
    count moves absorb the relaxation (atoms removed); with it the data first call for
    the few-mode relaxation and the count stays."""
    ideal = clusters.icosahedron("Au", 3)
    relaxed = imperfect.relax_surface(ideal)
    assert relaxed.info["relaxation"] == "emt"
    r, g = _pdf(relaxed.positions)
    g = g + _band_noise(r, 0.005 * np.abs(g).max(), seed=3)
    kw = {"qmin": 0.7, "qmax": 25.0, "qdamp": 0.04}
    start = arrays_to_structure(ideal.positions, "Au")
    res = complete(start, (r, g), **kw)
    assert res.n_atoms == 55 and res.relaxed_first
    assert len(res.added) == 0 and len(res.removed) == 0
    first = res.moves[0]
    _, names = relaxation_modes(ideal.positions, estimate_nn(ideal.positions))
    assert first.kind == "relax"
    assert first.penalty == pytest.approx(len(names) * math.log(res.n_obs))
    assert first.delta_chi2 > first.penalty
    assert res.rw < 0.25 * res.rw_start
    assert res.summary()["relaxed_first"] is True
    fixed = complete(start, (r, g), moves=("remove", "add", "swap", "recut"), **kw)
    assert fixed.n_atoms < 55 and not fixed.relaxed_first
    # no count move at all when none is allowed, relaxation or not
    for moves in (("remove", "add", "swap", "recut"), MOVES):
        none = complete(start, (r, g), moves=moves, max_moves=0, **kw)
        assert none.n_atoms == 55 and len(none.added) == len(none.removed) == 0


def test_an_ideal_particle_is_not_relaxed_first(ico55):
    r, g = _pdf(ico55)
    g = g + _band_noise(r, 0.005 * np.abs(g).max(), seed=1)
    res = complete(
        arrays_to_structure(ico55, "Au"), (r, g), qmin=0.7, qmax=25.0, qdamp=0.04
    )
    assert res.n_atoms == 55 and not res.relaxed_first
    assert all(m.penalty == 0.0 for m in res.moves if m.kind == "relax")


def test_mode_fit_pretest_predicts_the_gain_of_a_relaxation():
    """The Gauss-Newton drop predicted at zero amplitude (what decides whether the mode
    fit is made) lies between 0 and the RSS, is within a factor 4 of the fitted drop on
    a relaxed particle, and a False answer skips the fit."""
    ideal = clusters.icosahedron("Au", 3).positions
    relaxed = imperfect.relax_surface(clusters.icosahedron("Au", 3)).positions
    r, g = _pdf(relaxed)
    nn = estimate_nn(ideal)
    modes, _ = relaxation_modes(ideal, nn)
    m = _Model(r[150:], g[150:], np.ones(len(r) - 150), SETTINGS, 2000, HIST_STEP, None)
    theta = torch.tensor([1.0, 0.005, 2.0], dtype=torch.float64)
    h0 = pair_histogram(ideal, step=m.step, n_bins=m.n_bins)
    theta, rss0, _ = m.refine(h0, theta, steps=8)
    seen = []
    fitted = _fit_modes(
        m, ideal, modes, theta, nn, 20, promising=lambda d: not seen.append(d)
    )
    assert fitted is not None
    assert _fit_modes(m, ideal, modes, theta, nn, 20, promising=lambda d: False) is None
    p = _fit_modes(m, ideal, modes, theta, nn, 20)
    k = modes.shape[-1]
    h1 = pair_histogram(ideal + modes @ p[:k], step=m.step, n_bins=m.n_bins)
    _, rss1, _ = m.refine(h1, torch.as_tensor(p[k:]), steps=2)
    assert 0 < seen[0] < rss0
    assert 0.25 < seen[0] / (rss0 - rss1) < 4.0


def test_mode_jacobian_equals_finite_differences(ico55):
    """The analytic Jacobian of the mode fit (histogram by mode amplitude, G by
    histogram and by zoomscale, Uiso, delta2) against central differences, with and
    without Qbroad; its G equals the model's own."""
    nn = estimate_nn(ico55)
    r, g = _pdf(ico55)
    modes, _ = relaxation_modes(ico55, nn)
    k = modes.shape[-1]
    mode, vec = _mode_slots(modes)
    assert mode.shape == (55, 2)  # a cn mode and a shell mode at most
    pairs = np.triu_indices(55, 1)
    p = np.concatenate(
        [0.05 * nn * np.random.default_rng(1).standard_normal(k), [1.01, 0.006, 1.5]]
    )
    for qbroad in (0.0, 0.02):
        m = _Model(r[150:], g[150:], np.ones(len(r) - 150), {**SETTINGS, "qbroad": qbroad},
                   2000, HIST_STEP, None)  # fmt: skip

        def curve(q, m=m):
            cnt, _ = _mode_histogram(m, ico55 + modes @ q[:k], pairs, (mode, vec), False)
            return m.g_and_jacobian(cnt, None, q[k:])[0]

        cnt, dcnt = _mode_histogram(m, ico55 + modes @ p[:k], pairs, (mode, vec), True)
        g0, jac = m.g_and_jacobian(cnt, dcnt, p[k:])
        own = m.calc(torch.as_tensor(cnt)[None], m.kernel(torch.as_tensor(p[k:])), False)
        assert np.allclose(g0, own[0].numpy(), rtol=0, atol=1e-12 * np.abs(g0).max())
        for col, h in enumerate([1e-5 * nn] * k + [1e-5, 1e-7, 1e-5]):
            up, down = p.copy(), p.copy()
            up[col] += h
            down[col] -= h
            fd = (curve(up) - curve(down)) / (2 * h)
            assert np.abs(jac[col] - fd).max() < 1e-4 * np.abs(fd).max()
