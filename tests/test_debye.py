"""Tests of the Debye PDF engine (``diffpy_deepstruc.debye``).

The srreal reference PDFs in ``../shared/reference/srreal`` are the ground truth; a
small independent numpy implementation of the same conventions covers the corners the
references do not reach (cut-off, kinks of the Jeong factor, pairs outside the extended
range, negative Uiso).
"""

from __future__ import annotations

import json
import math
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import read_xyz

from diffpy_deepstruc import debye
from diffpy_deepstruc.debye import PDFParameters
from diffpy_deepstruc.errors import ElementError, ParameterError, StructureError

_SHARED = Path(
    os.environ.get("DEEPSTRUC_SHARED", Path(__file__).resolve().parents[2] / "shared")
)
_INDEX = _SHARED / "reference" / "srreal" / "index.json"


def _case_names() -> list[str]:
    try:
        return [c["gr"][:-3] for c in json.loads(_INDEX.read_text())["cases"]]
    except (OSError, ValueError, KeyError):
        return ["reference-data-missing"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Two cores shared by many jobs: one torch thread avoids OpenMP contention."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def params_of(pset: dict) -> tuple[PDFParameters, float]:
    d = dict(pset)
    uiso = d.pop("uiso")
    return PDFParameters.from_dict(d), uiso


# srreal references ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_results(srreal_dir, srreal_index):
    """All 18 cases computed at once: exact and grid paths batched, F(Q) per case."""
    cases = srreal_index["cases"]
    out = {}
    for pname, pset in srreal_index["parameter_sets"].items():
        p, uiso = params_of(pset)
        sel = [c for c in cases if c["params"] == pname]
        clusters = [(*read_xyz(srreal_dir / c["structure"]), uiso) for c in sel]
        r_ex, G_ex = debye.pdf_batch(clusters, p, method="exact")
        r_gr, G_gr = debye.pdf_batch(clusters, p, method="grid")
        for c, cl, ge, gg in zip(sel, clusters, G_ex, G_gr, strict=True):
            q, F = debye.fq_from_arrays(*cl, p, backend="torch")
            out[c["gr"][:-3]] = dict(r=r_ex, G_exact=ge, G_grid=gg, q=q, F=F, case=c)
    return out


@pytest.mark.parametrize("name", _case_names())
def test_reproduces_srreal_reference(name, reference_results, srreal_dir):
    res = reference_results[name]
    gr = np.loadtxt(srreal_dir / res["case"]["gr"])
    fq = np.loadtxt(srreal_dir / res["case"]["fq"])
    np.testing.assert_allclose(res["r"], gr[:, 0], rtol=0, atol=1e-9)
    gmax = np.abs(gr[:, 1]).max()
    # the files hold 10 significant digits; the engine agrees to that precision
    assert np.abs(res["G_exact"] - gr[:, 1]).max() <= 1e-8 * gmax
    assert np.abs(res["G_grid"] - gr[:, 1]).max() <= 1e-6 * gmax
    assert res["q"].shape == fq[:, 0].shape, "Q grid (rcalchi/qstep) differs from srreal"
    np.testing.assert_allclose(res["q"], fq[:, 0], rtol=0, atol=1e-8)
    fmax = np.abs(fq[:, 1]).max()
    assert np.abs(res["F"] - fq[:, 1]).max() <= 1e-6 * fmax


def test_reference_with_auto_backend_and_structure(srreal_dir, srreal_index):
    """pdf_from_arrays (auto) and pdf_from_structure agree with the AuAg reference."""
    from diffpy.structure import Atom, Lattice, Structure

    case = next(c for c in srreal_index["cases"] if c["structure"].startswith("AuAg"))
    p, uiso = params_of(srreal_index["parameter_sets"][case["params"]])
    xyz, els = read_xyz(srreal_dir / case["structure"])
    gr = np.loadtxt(srreal_dir / case["gr"])
    r, g = debye.pdf_from_arrays(xyz, els, uiso, p)
    assert np.abs(g - gr[:, 1]).max() <= 1e-6 * np.abs(gr[:, 1]).max()
    # a 2x2x2 A lattice with fractional coordinates: Cartesian positions are used
    stru = Structure(lattice=Lattice(2, 2, 2, 90, 90, 90))
    for x, e in zip(xyz, els, strict=True):
        a = Atom(e, xyz=x / 2.0)
        a.Uisoequiv = uiso
        stru.append(a, copy=False)
    r2, g2 = debye.pdf_from_structure(stru, p)
    np.testing.assert_allclose(r2, r)
    assert np.abs(g2 - gr[:, 1]).max() <= 1e-6 * np.abs(gr[:, 1]).max()


# an independent, naive implementation of the conventions -------------------------------


def naive_pdf(xyz, els, uiso, p: PDFParameters):
    """Straight numpy transcription of srreal's DebyePDFCalculator (slow, clear)."""
    import xraydb

    ln2 = math.log(2)
    u = np.broadcast_to(np.asarray(uiso, dtype=float), (len(els),))

    def sharp(r):
        return (
            0.0 if r < 2.2e-16 else 1 - p.delta1 / r - p.delta2 / r**2 + (p.qbroad * r) ** 2
        )

    umax = u.max()
    width = 2 * math.sqrt(2 * ln2) * math.sqrt(2 * umax) if umax > 0 else 0.0
    width *= math.sqrt(max(1.0, sharp(p.rmin), sharp(p.rmax)))
    ext = min(
        10.0, 12 * math.pi / p.qmax + math.sqrt(-math.log(3.33e-6) / (4 * ln2)) * width
    )

    def lo_steps(x, dx):
        k = math.ceil(x / dx)
        return k - 1 if abs(x - (k - 1) * dx) < 1.4901161193847656e-08 else k

    rlo = max(0, lo_steps(p.rmin - ext, p.rstep)) * p.rstep
    rhi = math.ceil((p.rmax + ext) / p.rstep) * p.rstep
    dq = math.pi / rhi
    q = np.arange(math.ceil(p.qmax / dq)) * dq
    f = np.array([xraydb.f0(e, q / (4 * math.pi)) for e in els])
    value = np.zeros_like(q)
    for i in range(len(els)):
        for j in range(i + 1, len(els)):
            d = float(np.linalg.norm(xyz[i] - xyz[j]))
            if d < rlo or d > rhi or d < 1.5e-8:
                continue
            s2 = max(0.0, u[i] + u[j]) * max(0.0, sharp(d))
            for k in range(len(q)):
                sc = 2 * math.exp(-0.5 * s2 * q[k] ** 2) * f[i, k] * f[j, k] / d
                if sc < 1e-6:
                    break
                value[k] += sc * math.sin(q[k] * d)
    F = value / (len(els) * f.mean(axis=0) ** 2)
    Fz = F.copy()
    Fz[: min(len(q), lo_steps(p.qmin, dq))] = 0.0
    npad = 1 << math.ceil(math.log2(max(len(q), math.ceil(math.pi / p.rstep / dq))))
    drpad = math.pi / (npad * dq)
    r = p.r_grid()
    x = r / drpad
    ilo = np.floor(x).astype(int)
    w = x - ilo
    gp = lambda j: 2 / math.pi * dq * (np.sin(np.outer(j * drpad, q)) @ Fz)  # noqa: E731
    G = ((1 - w) * gp(ilo) + w * gp(ilo + 1)) * np.exp(-0.5 * (p.qdamp * r) ** 2) * p.scale
    return q, F, r, G


def _cluster(n=30, seed=0, spacing=2.7):
    rng = np.random.default_rng(seed)
    g = np.array([[i, j, k] for i in range(4) for j in range(4) for k in range(4)], float)
    xyz = (g[rng.permutation(len(g))[:n]] - 1.5) * spacing
    return xyz + rng.normal(0, 0.04, xyz.shape)


NAIVE_CASES = {
    "defaults": (dict(), 0.005),
    "delta1-qbroad-rmin": (
        dict(
            rmin=4.0,
            rmax=9.0,
            rstep=0.02,
            qmin=1.2,
            qmax=18,
            qdamp=0.02,
            qbroad=0.03,
            delta1=0.8,
            delta2=0.0,
            scale=0.7,
        ),
        0.008,
    ),
    "kink-inside-shell": (dict(rmax=12, delta2=8.0, qmax=20), 0.006),  # clip at 2.83 A
    "cutoff-acts": (dict(rmax=12, qmax=30, delta2=0.0), 0.08),  # huge Uiso
    "cluster-beyond-rmax": (dict(rmax=5.0, rstep=0.05), 0.005),  # pairs > rcalchi drop
    "negative-uiso": (dict(rmax=12), -0.001),
}


@pytest.mark.parametrize("name", list(NAIVE_CASES))
def test_matches_naive_implementation(name):
    kw, uiso = NAIVE_CASES[name]
    p = PDFParameters(**kw)
    xyz = _cluster()
    els = ["Pt" if k % 4 else "Ni" for k in range(len(xyz))]
    q0, F0, r0, G0 = naive_pdf(xyz, els, uiso, p)
    q, F = debye.fq_from_arrays(xyz, els, uiso, p, backend="torch", method="exact")
    np.testing.assert_allclose(q, q0, rtol=0, atol=1e-12)
    assert np.abs(F - F0).max() <= 1e-10 * np.abs(F0).max()
    gmax = np.abs(G0).max()
    for method in ("exact", "grid", "auto"):
        r, G = debye.pdf_from_arrays(xyz, els, uiso, p, backend="torch", method=method)
        np.testing.assert_array_equal(r, r0)
        tol = 1e-10 if method == "exact" else 1e-6
        assert np.abs(G - G0).max() <= tol * gmax, method


# batching ------------------------------------------------------------------------------


def _mixed_clusters():
    rng = np.random.default_rng(7)
    a = _cluster(40, seed=1)
    b = _cluster(25, seed=2)
    c = _cluster(64, seed=3, spacing=2.9)
    return [
        (a, "Au", 0.005),
        (b, "Pt", 0.011),  # other Uiso -> other extended range and Q grid
        (a, ["Au" if k % 3 else "Ag" for k in range(40)], rng.uniform(0.003, 0.009, 40)),
        (c, "Cu", 0.005),
        (np.zeros((1, 3)), "Au", 0.005),  # one atom: no pairs, G = 0
        (b[:7], ["Pd"] * 7, 0.005),
        (np.round(c / 2.9) * 2.9, "Cu", 0.005),  # symmetric: few unique distances
    ]


def test_batch_equals_single_calls():
    clusters = _mixed_clusters()
    p = PDFParameters(rmax=20, rstep=0.02)
    r, G = debye.pdf_batch(clusters, p, method="exact")
    ra, Ga = debye.pdf_batch(clusters, p)  # auto: per-cluster choice of path
    assert G.shape == (len(clusters), len(p.r_grid()))
    np.testing.assert_array_equal(r, p.r_grid())
    for k, cl in enumerate(clusters):
        r1, g1 = debye.pdf_from_arrays(*cl, p, backend="torch", method="exact")
        scale = max(np.abs(g1).max(), 1e-300)
        assert np.abs(G[k] - g1).max() <= 1e-12 * scale, k
        assert np.abs(Ga[k] - g1).max() <= 1e-6 * scale, k
    assert not np.any(G[4])


def test_large_cluster_blocks(monkeypatch):
    """Clusters too large for one pair block are cut by anchor atoms: same result."""
    clusters = _mixed_clusters()[:4]
    p = PDFParameters(rmax=15)
    _, G0 = debye.pdf_batch(clusters, p, method="exact")
    monkeypatch.setattr(debye, "_MAX_BLOCK_PAIRS", 300)
    for method in ("exact", "grid"):
        _, G1 = debye.pdf_batch(clusters, p, method=method)
        tol = 1e-12 if method == "exact" else 1e-6
        assert np.abs(G1 - G0).max() <= tol * np.abs(G0).max()


def test_batch_of_nothing_and_bare_cluster():
    r, G = debye.pdf_batch([], PDFParameters(rmax=5))
    assert G.shape == (0, len(r))
    with pytest.raises(StructureError, match="sequence of"):
        debye.pdf_batch((np.zeros((3, 3)), "Au", 0.005))


def test_invariance_and_linearity():
    xyz = _cluster(30, seed=4)
    p = PDFParameters(rmax=15)
    _, g = debye.pdf_from_arrays(xyz, "Au", 0.005, p, backend="torch")
    rot = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    _, g2 = debye.pdf_from_arrays(xyz @ rot.T + 5.0, "Au", 0.005, p, backend="torch")
    assert np.abs(g2 - g).max() <= 1e-9 * np.abs(g).max()
    _, g3 = debye.pdf_from_arrays(xyz, "au", 0.005, p.replace(scale=2.5), backend="torch")
    np.testing.assert_allclose(g3, 2.5 * g, rtol=1e-12, atol=1e-14)


def test_grid_path_is_smooth_in_coordinates():
    """srfit differentiates numerically: the grid path must give the same slope."""
    xyz = _cluster(60, seed=5)
    p = PDFParameters(rmax=20)
    slopes = {}
    for method in ("exact", "grid"):
        g = [
            debye.pdf_from_arrays(xyz * s, "Pt", 0.006, p, backend="torch", method=method)[
                1
            ]
            for s in (1.0, 1.0 + 1e-7)
        ]
        slopes[method] = (g[1] - g[0]) / 1e-7
    ref = slopes["exact"]
    assert np.abs(slopes["grid"] - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    clusters = _mixed_clusters()
    p = PDFParameters(rmax=20)
    _, G0 = debye.pdf_batch(clusters, p)
    _, G1 = debye.pdf_batch(clusters, p, device="cuda")
    assert np.abs(G1 - G0).max() <= 1e-10 * np.abs(G0).max()


# parameters ----------------------------------------------------------------------------


def test_parameter_defaults_and_roundtrip():
    p = PDFParameters()
    assert p.to_dict() == dict(
        rmin=0.0,
        rmax=30.0,
        rstep=0.01,
        qmin=0.7,
        qmax=25.0,
        qdamp=0.04,
        qbroad=0.0,
        delta1=0.0,
        delta2=2.0,
        scale=1.0,
    )
    assert PDFParameters.from_dict(p.to_dict()) == p
    assert p.validate() is p
    r = p.r_grid()
    assert len(r) == 3000 and r[0] == 0.0 and r[-1] == pytest.approx(29.99)
    rb = PDFParameters(rmin=1.5, rmax=20, rstep=0.05).r_grid()
    assert len(rb) == 370 and rb[0] == pytest.approx(1.5)
    with pytest.raises(ParameterError, match="unknown PDF parameter"):
        PDFParameters.from_dict({"rmax": 20, "uiso": 0.005})
    assert PDFParameters.from_dict({"rmax": 20, "uiso": 0.005}, strict=False).rmax == 20
    with pytest.raises(AttributeError):
        p.rmax = 10  # frozen


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(rstep=0), "rstep"),
        (dict(rstep=-0.01), "rstep"),
        (dict(rmin=5, rmax=5), "rmax"),
        (dict(rmin=-1), "rmin"),
        (dict(qmin=25, qmax=20), "qmax"),
        (dict(qmin=-0.1), "qmin"),
        (dict(qdamp=-0.01), "qdamp"),
        (dict(qbroad=-1e-3), "qbroad"),
        (dict(delta2=float("nan")), "finite"),
        (dict(scale=float("inf")), "finite"),
        (dict(rmax="30"), "real number"),
        (dict(rmin=0.0, rmax=0.004, rstep=0.01), None),  # a single point is fine
        (dict(rmin=0.001, rmax=0.004, rstep=0.01), "no point"),
        (dict(rmax=1e6, rstep=1e-4), "points"),
    ],
)
def test_parameter_validation(kw, message):
    if message is None:
        assert len(PDFParameters(**kw).r_grid()) == 1
        return
    with pytest.raises(ParameterError, match=message):
        PDFParameters(**kw)


def test_argument_errors():
    xyz = _cluster(5)
    with pytest.raises(StructureError, match="shape"):
        debye.pdf_from_arrays(xyz[:, :2], "Au", 0.005)
    with pytest.raises(StructureError, match="no atoms"):
        debye.pdf_from_arrays(np.zeros((0, 3)), [], 0.005)
    bad = xyz.copy()
    bad[2, 1] = np.nan
    with pytest.raises(StructureError, match="NaN"):
        debye.pdf_from_arrays(bad, "Au", 0.005)
    with pytest.raises(StructureError, match="element symbols"):
        debye.pdf_from_arrays(xyz, ["Au"] * 4, 0.005)
    with pytest.raises(StructureError, match="uiso"):
        debye.pdf_from_arrays(xyz, "Au", [0.005] * 4)
    with pytest.raises(StructureError, match="uiso"):
        debye.pdf_from_arrays(xyz, "Au", [0.005, np.nan, 0, 0, 0])
    with pytest.raises(ElementError, match="Xx"):
        debye.pdf_from_arrays(xyz, ["Au", "Xx", "Au", "Au", "Au"], 0.005)
    with pytest.raises(ElementError):
        debye.fq_from_arrays(xyz, ["Au", 3, "Au", "Au", "Au"], 0.005)
    with pytest.raises(StructureError, match="cluster 1"):
        debye.pdf_batch([(xyz, "Au", 0.005), (bad, "Au", 0.005)])
    with pytest.raises(ParameterError, match="backend"):
        debye.pdf_from_arrays(xyz, "Au", 0.005, backend="fortran")
    with pytest.raises(ParameterError, match="method"):
        debye.pdf_from_arrays(xyz, "Au", 0.005, method="fast")
    with pytest.raises(ParameterError, match="params"):
        debye.pdf_from_arrays(xyz, "Au", 0.005, params=[1, 2])
    with pytest.raises(ParameterError, match="device"):
        debye.pdf_batch([(xyz, "Au", 0.005)], device="no-such-device")
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="CUDA"):
            debye.pdf_batch([(xyz, "Au", 0.005)], device="cuda")


def test_structure_input_errors():
    from diffpy.structure import Atom, Lattice, Structure

    with pytest.raises(StructureError, match="Structure"):
        debye.pdf_from_structure("not a structure", backend="torch")
    s = Structure(lattice=Lattice(1, 1, 1, 90, 90, 90))
    s.append(Atom("Au", xyz=[0, 0, 0], occupancy=0.5), copy=False)
    s.append(Atom("Au", xyz=[2.8, 0, 0]), copy=False)
    with pytest.raises(StructureError, match="occupancy"):
        debye.pdf_from_structure(s, backend="torch")


# srreal backend switch -----------------------------------------------------------------


def test_srreal_backend_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(debye, "srreal_available", lambda: False)
    with pytest.raises(ParameterError, match="diffpy.srreal"):
        debye.pdf_from_arrays(_cluster(5), "Au", 0.005, backend="srreal")
    # auto falls back to the torch engine
    r, g = debye.pdf_from_arrays(_cluster(5), "Au", 0.005, PDFParameters(rmax=8))
    assert g.shape == r.shape


@pytest.fixture
def fake_srreal(monkeypatch):
    """A stand-in diffpy.srreal whose DebyePDFCalculator runs the torch engine."""
    calls = []

    class DebyePDFCalculator:
        def __call__(self, stru):
            xyz = np.array(stru.xyz_cartn)
            els = [a.element for a in stru]
            uiso = [a.Uisoequiv for a in stru]
            kw = {k: getattr(self, k) for k in debye.PDFParameters().to_dict()}
            calls.append(dict(kw, lattice=stru.lattice.abcABG(), n=len(els)))
            p = PDFParameters(**kw)
            self.qgrid, self.fq = debye.fq_from_arrays(xyz, els, uiso, p, backend="torch")
            return debye.pdf_from_arrays(xyz, els, uiso, p, backend="torch")

    pkg = types.ModuleType("diffpy.srreal")
    mod = types.ModuleType("diffpy.srreal.pdfcalculator")
    mod.DebyePDFCalculator = DebyePDFCalculator
    pkg.pdfcalculator = mod
    monkeypatch.setitem(sys.modules, "diffpy.srreal", pkg)
    monkeypatch.setitem(sys.modules, "diffpy.srreal.pdfcalculator", mod)
    debye.srreal_available.cache_clear()
    yield calls
    debye.srreal_available.cache_clear()


def test_auto_backend_uses_srreal_when_importable(fake_srreal):
    assert debye.srreal_available()
    xyz = _cluster(12)
    p = PDFParameters(rmax=10, qdamp=0.03, delta2=1.5, scale=0.9)
    r, g = debye.pdf_from_arrays(xyz, "Pd", 0.007, p)
    assert len(fake_srreal) == 1
    call = fake_srreal[0]
    assert call["n"] == 12 and call["lattice"] == (1, 1, 1, 90, 90, 90)
    assert call["qdamp"] == 0.03 and call["delta2"] == 1.5 and call["scale"] == 0.9
    r0, g0 = debye.pdf_from_arrays(xyz, "Pd", 0.007, p, backend="torch")
    assert len(fake_srreal) == 1  # torch forced: srreal not called
    np.testing.assert_allclose(g, g0, rtol=0, atol=1e-12)
    q, f = debye.fq_from_arrays(xyz, "Pd", 0.007, p, backend="srreal")
    q0, f0 = debye.fq_from_arrays(xyz, "Pd", 0.007, p, backend="torch")
    np.testing.assert_allclose(f, f0, rtol=0, atol=1e-12)
