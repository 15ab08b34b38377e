"""The consistent set: Hamilton's R-ratio test, the noise estimates, the summary line.

The statistical check (truth kept, wrong structures rejected over noise draws) runs a
reduced version here; ``benchmarks/bench_consistent.py`` runs the full 40 draws.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffpy_deepstruc import clusters, debye
from diffpy_deepstruc.consistent import (
    assess,
    band_limited_noise,
    consistent_set,
    estimate_noise,
    expected_rw,
    independent_points,
    r_ratio_threshold,
    summary_line,
)
from diffpy_deepstruc.errors import DeepStrucError, ParameterError
from diffpy_deepstruc.refine import fit_structure
from diffpy_deepstruc.structures import arrays_to_structure

QMAX, QMIN, QDAMP, RMIN, RMAX = 25.0, 0.7, 0.04, 1.5, 15.0


def test_independent_points():
    assert independent_points(1.5, 30.0, 25.0) == pytest.approx(28.5 * 25 / math.pi)
    with pytest.raises(ParameterError):
        independent_points(5.0, 5.0, 25.0)
    with pytest.raises(ParameterError):
        independent_points(1.0, 5.0, 0.0)


def test_hamilton_point_uses_scipy_stats_f_quantile_exactly():
    """fdtri is scipy.stats.f.ppf's own routine: the same numbers, bit for bit."""
    from scipy.stats import f

    from diffpy_deepstruc.completion import _hamilton_ratio
    from diffpy_deepstruc.consistent import hamilton_point

    for b, dof, alpha in [(1, 20, 0.05), (4, 223, 0.05), (30, 197.5, 0.01), (2, 1.0, 0.2)]:
        assert hamilton_point(b, dof, alpha) == math.sqrt(
            1.0 + b / dof * float(f.ppf(1.0 - alpha, b, dof))
        )
    # the completion's count test: the same point with dof = n_obs - n_par - n_sites
    assert _hamilton_ratio(227.0, 3, 4, 0.05) == hamilton_point(3, 220.0, 0.05)


def test_threshold_matches_hamilton_table():
    # sqrt(1 + b/(n-m) F) with F from the standard F table: F(1, 20; 0.95) = 4.351,
    # F(3, 100; 0.95) = 2.696
    from scipy.stats import f

    assert r_ratio_threshold(1, 21, 0.05) == pytest.approx(
        math.sqrt(1 + 1 / 20 * f.ppf(0.95, 1, 20))
    )
    assert r_ratio_threshold(1, 21, 0.05) == pytest.approx(
        math.sqrt(1 + 4.351 / 20), abs=1e-4
    )
    assert r_ratio_threshold(3, 103, 0.05) == pytest.approx(
        math.sqrt(1 + 3 / 100 * 2.696), abs=1e-4
    )
    # more data -> tighter; smaller alpha -> wider
    assert r_ratio_threshold(4, 500) < r_ratio_threshold(4, 100)
    assert r_ratio_threshold(4, 100, 0.01) > r_ratio_threshold(4, 100, 0.05)
    with pytest.raises(ParameterError, match="independent points"):
        r_ratio_threshold(4, 4.0)
    with pytest.raises(ParameterError):
        r_ratio_threshold(4, 100, alpha=1.5)


def test_consistent_set_marks_close_fits_and_handles_failures():
    n = independent_points(1.5, 30.0, 25.0)  # 227 points: threshold ~1.024
    thr = r_ratio_threshold(4, n)
    rws = [0.30, 0.30 * thr * 0.999, 0.30 * thr * 1.001, np.nan, 0.5]
    got = consistent_set(rws, 4, n)
    assert got.tolist() == [True, True, False, False, False]
    # order does not matter; the best is found wherever it is
    assert consistent_set(rws[::-1], 4, n).tolist() == got.tolist()[::-1]
    assert consistent_set([], 4, n).size == 0
    assert not consistent_set([np.nan, np.inf], 4, n).any()
    # per-candidate parameter counts: b = max(m, m_i) widens the threshold
    assert consistent_set([0.3, 0.3 * thr * 1.001], [4, 6], n).tolist() == [True, True]
    with pytest.raises(ParameterError):
        consistent_set([0.3, 0.4], [4, 0], n)


def test_summary_line():
    assert summary_line([True, True, True, False, True]) == (
        "consistent with the data: 4 candidates: #1, #2, #3, #5"
    )
    assert summary_line([True], ["best"]) == "consistent with the data: 1 candidate: best"
    with pytest.raises(ParameterError):
        summary_line([True, False], ["a"])


def test_estimate_noise_sources():
    rng = np.random.default_rng(1)
    r = np.arange(0.5, 40.0, 0.01)
    clean = np.where(r < 20, np.sin(3 * r) * np.exp(-r / 8), 0.0)
    noisy = clean + band_limited_noise(r, 0.02, QMAX, rng)
    dg = np.full_like(r, 0.02)
    est = estimate_noise(r, noisy, dg=dg)
    assert est.source == "dG" and float(est) == pytest.approx(0.02)
    est = estimate_noise(r, noisy, tail_from=22.0, qmax=QMAX)
    assert est.source == "tail" and float(est) == pytest.approx(0.02, rel=0.15)
    # slow ripples beyond the particle (Qmin truncation) are not noise
    rippled = noisy + 0.1 * np.sin(0.7 * r + 0.3)
    est = estimate_noise(r, rippled, tail_from=22.0, qmax=QMAX, qmin=QMIN)
    assert float(est) == pytest.approx(0.02, rel=0.15)
    # a tail too short falls back to the difference curve (an upper bound)
    est = estimate_noise(r, noisy, clean + 0.01, tail_from=39.9, qmax=QMAX)
    assert est.source == "difference" and est.sigma > 0.02
    assert "upper bound" in est.detail
    with pytest.raises(DeepStrucError, match="cannot estimate the noise"):
        estimate_noise(r, noisy)
    with pytest.raises(DeepStrucError):
        estimate_noise(r, noisy[:-1])


def test_expected_rw_matches_a_perfect_model():
    rng = np.random.default_rng(2)
    r = np.arange(1.5, 30.0, 0.01)
    g = np.sin(3 * r) * np.exp(-r / 10)
    sigma = 0.03
    noisy = g + band_limited_noise(r, sigma, QMAX, rng)
    rw_true = math.sqrt(np.sum((noisy - g) ** 2) / np.sum(noisy**2))
    n = independent_points(r[0], r[-1], QMAX)
    assert expected_rw(noisy, sigma, n, 0) == pytest.approx(rw_true, rel=0.02)


def test_assess_text_and_json_ready():
    res = assess([0.2, 0.201, 0.4], 4, rmin=1.5, rmax=30, qmax=25, labels=["a", "b", "c"])
    assert res.consistent.tolist() == [True, True, False]
    assert res.text.startswith("consistent with the data: 2 candidates: a, b (Hamilton")
    d = res.as_dict()
    import json

    json.dumps(d, allow_nan=False)  # strict JSON: no NaN anywhere
    assert d["rw_expected"] is None and d["noise"] is None


def _candidates():
    truth = clusters.icosahedron("Au", 3).positions  # Mackay icosahedron, 55 atoms
    rad = np.linalg.norm(truth, axis=1)
    return {
        "truth": truth,
        # same type, 12 vertices removed: 43 atoms, 22 % too few
        "ico43": truth[np.argsort(rad)[:43]],
        # wrong type, same count
        "cubo55": clusters.octahedron("Au", 5, 2).positions,
    }


def test_truth_kept_and_wrong_rejected_over_noise_draws():
    """Au55 icosahedron, band-limited noise of 2 % of max |G| (dG set): 20 draws.

    The full 40-draw version is ``benchmarks/bench_consistent.py``.
    """
    cands = _candidates()
    p = dict(rmin=0.0, rmax=RMAX, rstep=0.1, qmin=QMIN, qmax=QMAX, qdamp=QDAMP)
    r, g = debye.pdf_from_arrays(cands["truth"] * 1.01, "Au", 0.008, p)
    sigma = 0.02 * np.abs(g).max()
    dg = np.full_like(g, sigma)
    kept = {k: 0 for k in cands}
    draws = 20
    for seed in range(draws):
        gn = g + band_limited_noise(r, sigma, QMAX, np.random.default_rng(seed), QMIN)
        rws = [
            fit_structure(
                arrays_to_structure(xyz, "Au", 0.005),
                r,
                gn,
                dg=dg,
                qmin=QMIN,
                qmax=QMAX,
                qdamp=QDAMP,
                rmin=RMIN,
                rmax=RMAX,
            ).rw
            for xyz in cands.values()
        ]
        res = assess(rws, 4, rmin=RMIN, rmax=RMAX, qmax=QMAX)
        for k, ok in zip(cands, res.consistent, strict=True):
            kept[k] += bool(ok)
    assert kept["truth"] >= 0.95 * draws
    assert kept["ico43"] <= 0.05 * draws
    assert kept["cubo55"] <= 0.05 * draws
