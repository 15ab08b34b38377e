"""Tests of the srfit integration (``diffpy_deepstruc.refine``)."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _helpers import read_xyz
from diffpy.srfit.fitbase import FitRecipe, FitResults, ProfileGenerator
from diffpy.structure import Atom, Lattice, Structure

from diffpy_deepstruc import debye, refine
from diffpy_deepstruc.errors import ParameterError, PDFDataError, StructureError

_SHARED = Path(
    os.environ.get("DEEPSTRUC_SHARED", Path(__file__).resolve().parents[2] / "shared")
)
_INDEX = _SHARED / "reference" / "srreal" / "index.json"


def _fit_names() -> list[str]:
    try:
        return [f["model"] for f in json.loads(_INDEX.read_text())["srfit_fits"]]
    except (OSError, ValueError, KeyError):
        return ["reference-data-missing"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Two cores shared by many jobs: one torch thread avoids OpenMP contention."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def cluster_structure(xyz, els, uiso=0.005) -> Structure:
    s = Structure(lattice=Lattice(1, 1, 1, 90, 90, 90))
    for x, e in zip(xyz, els, strict=True):
        a = Atom(e, xyz=[float(v) for v in x])
        a.Uisoequiv = uiso
        s.append(a, copy=False)
    return s


def small_cluster(n=19, spacing=2.8, seed=0):
    rng = np.random.default_rng(seed)
    g = np.array([[i, j, k] for i in range(3) for j in range(3) for k in range(3)], float)
    return (g[:n] - 1.0) * spacing + rng.normal(0, 0.03, (n, 3))


# the reference srfit refinements ---------------------------------------------------------


@pytest.mark.parametrize("model", _fit_names())
def test_reproduces_srfit_reference_fit(model, srreal_dir, srreal_index):
    """Refine the cluster against its 2 %-expanded PDF, as the srreal references did."""
    fit = next(f for f in srreal_index["srfit_fits"] if f["model"] == model)
    pset = dict(srreal_index["parameter_sets"]["A"])
    uiso = pset.pop("uiso")
    p = debye.PDFParameters.from_dict(pset)
    xyz, els = read_xyz(srreal_dir / model)
    truth = fit["truth"]
    r, g = debye.pdf_from_arrays(
        xyz * truth["zoomscale"],
        els,
        truth["Uiso"],
        p.replace(delta2=truth["delta2"]),
        backend="torch",
    )
    assert uiso == truth["Uiso"]
    start = fit["start"]
    recipe = refine.make_recipe(
        cluster_structure(xyz, els),
        r,
        g,
        qmin=p.qmin,
        qmax=p.qmax,
        qdamp=p.qdamp,
        qbroad=p.qbroad,
        rmin=1.5,
        rmax=25.0,
        scale=start["scale"],
        zoomscale=start["zoomscale"],
        uiso=start["uiso"],
        delta2=start["delta2"],
        backend="torch",
    )
    res = refine.refine_recipe(recipe)
    assert res.success
    assert res.values["zoomscale"] == pytest.approx(1.02, abs=1e-4)
    ref = fit["refined"]
    # srreal's numbers, down to the calculation-range effect that sets the final Rw
    assert res.rw == pytest.approx(fit["rw"], rel=1e-4)
    for name in ("scale", "zoomscale", "Uiso"):
        assert res.values[name] == pytest.approx(ref[name], rel=1e-5), name
    assert res.values["delta2"] == pytest.approx(ref["delta2"], abs=1e-4)
    assert res.rw == pytest.approx(FitResults(recipe).rw, rel=1e-12)
    assert set(res.uncertainties) == set(refine.DEFAULT_REFINED)


# the generator -------------------------------------------------------------------------


def test_generator_matches_engine_and_srfit_api():
    xyz = small_cluster()
    gen = refine.DebyeProfileGenerator("G")
    assert isinstance(gen, ProfileGenerator)
    # srreal's DebyePDFCalculator defaults
    assert {n: gen.get(n).value for n in gen._parnames} == dict(
        delta1=0.0, delta2=0.0, qbroad=0.0, scale=1.0, qdamp=0.0
    )
    assert gen.getQmin() == 0.0 and gen.getQmax() == 25.0
    gen.setStructure(cluster_structure(xyz, ["Pd"] * len(xyz)), name="phase")
    gen.setQmin(0.8)
    gen.setQmax(22.0)
    gen.delta2.setValue(1.5)
    gen.qdamp.setValue(0.03)
    gen.scale.setValue(0.7)
    assert gen.meta["qmax"] == 22.0 and gen.meta["qmin"] == 0.8
    r = np.arange(1.0, 12.0, 0.02)
    y = gen(r)
    # srfit's grid: rmin = r[0], rstep = span / (n-1), rmax = r[-1] + rstep/2
    p = debye.PDFParameters(
        rmin=1.0,
        rmax=r[-1] + 0.01,
        rstep=(r[-1] - 1.0) / (len(r) - 1),
        qmin=0.8,
        qmax=22.0,
        qdamp=0.03,
        delta2=1.5,
        scale=0.7,
    )
    r0, g0 = debye.pdf_from_arrays(xyz, "Pd", 0.005, p, backend="torch")
    np.testing.assert_allclose(y, np.interp(r, r0, g0), rtol=0, atol=1e-12)
    # structure parameters are srfit's DiffpyStructureParSet: Uiso, x, lattice...
    gen.phase.Pd0.Uiso.setValue(0.02)
    assert not np.allclose(gen(r), y)
    assert gen.phase.getLattice().a.value == 1.0
    # metadata drives the configuration, as in srfit
    gen.meta.update(qmax=20.0, delta2=2.5)
    gen.processMetaData()
    assert gen.getQmax() == 20.0 and gen.delta2.value == 2.5
    with pytest.raises(ValueError, match="X-ray"):
        gen.setScatteringType("N")
    assert gen.getScatteringType() == "X"
    with pytest.raises(ParameterError, match="isolated clusters"):
        refine.DebyeProfileGenerator().setStructure(
            cluster_structure(xyz, ["Pd"] * 19), periodic=True
        )
    with pytest.raises(StructureError, match="Structure"):
        refine.DebyeProfileGenerator().setStructure("not a structure")


def test_generator_keeps_extended_range_like_srreal():
    """One calculator over a fit keeps its upper bound unless it shrinks by >= 50 steps."""
    calc = refine.DebyeProfileGenerator()._calc
    p = debye.PDFParameters(rmax=25.005, rstep=0.01, qmax=25.0)
    _, hi_wide = debye._range_steps(p, 0.008)
    _, hi_narrow = debye._range_steps(p, 0.005)
    assert 0 < hi_wide - hi_narrow < 50
    assert calc._range_steps(p, 0.008)[1] == hi_wide
    assert calc._range_steps(p, 0.005)[1] == hi_wide  # kept
    assert calc._range_steps(p, 0.05)[1] > hi_wide  # grows at once
    assert calc._range_steps(p, 0.0)[1] == debye._range_steps(p, 0.0)[1]  # big drop


def test_make_generator_backends(monkeypatch):
    monkeypatch.setattr(debye, "srreal_available", lambda: False)
    assert isinstance(refine.make_generator("G"), refine.DebyeProfileGenerator)
    assert isinstance(
        refine.make_generator("G", backend="torch"), refine.DebyeProfileGenerator
    )
    with pytest.raises(ParameterError, match="diffpy.srreal"):
        refine.make_generator("G", backend="srreal")
    with pytest.raises(ParameterError, match="backend"):
        refine.make_generator("G", backend="gpu")


def test_make_generator_prefers_srfit_generator_with_srreal(monkeypatch):
    class FakeCalculator:  # the attributes srfit's BasePDFGenerator touches
        def __init__(self):
            self.delta1 = self.delta2 = self.qbroad = self.qdamp = 0.0
            self.scale = 1.0

    pkg = types.ModuleType("diffpy.srreal")
    mod = types.ModuleType("diffpy.srreal.pdfcalculator")
    mod.DebyePDFCalculator = FakeCalculator
    pkg.pdfcalculator = mod
    monkeypatch.setitem(sys.modules, "diffpy.srreal", pkg)
    monkeypatch.setitem(sys.modules, "diffpy.srreal.pdfcalculator", mod)
    monkeypatch.setattr(debye, "srreal_available", lambda: True)
    from diffpy.srfit.pdf.debyepdfgenerator import DebyePDFGenerator

    gen = refine.make_generator("G")
    assert type(gen) is DebyePDFGenerator
    assert isinstance(gen._calc, FakeCalculator)
    assert isinstance(
        refine.make_generator("G", backend="torch"), refine.DebyeProfileGenerator
    )


# the recipe ----------------------------------------------------------------------------


def _data(xyz, zoom=1.0, **kw):
    p = debye.PDFParameters(rmax=15.0, rstep=0.02, qmin=0.8, qmax=22.0, qdamp=0.03, **kw)
    return debye.pdf_from_arrays(xyz * zoom, "Pt", 0.006, p, backend="torch")


def test_make_recipe_variables_and_input_left_alone():
    xyz = small_cluster()
    stru = cluster_structure(xyz, ["Pt"] * len(xyz), uiso=0.004)
    r, g = _data(xyz)
    recipe = refine.make_recipe(
        stru, r, g, qmin=0.8, qmax=22.0, qdamp=0.03, backend="torch"
    )
    assert isinstance(recipe, FitRecipe)
    assert list(recipe.getNames()) == list(refine.DEFAULT_REFINED)
    recipe.free("all")
    assert set(recipe.getNames()) == set(refine.RECIPE_VARIABLES)
    assert recipe.Uiso.value == pytest.approx(0.004)  # mean Uiso of the structure
    assert recipe.qdamp.value == 0.03 and recipe.qbroad.value == 0.0
    gen = recipe.cluster.G
    recipe.zoomscale.setValue(1.05)
    recipe.Uiso.setValue(0.011)
    recipe._prepare()
    assert gen.phase.getLattice().a.value == pytest.approx(1.05)
    assert all(a.Uiso.value == pytest.approx(0.011) for a in gen.phase.getScatterers())
    # the caller's structure is a copy, untouched
    assert stru.lattice.a == 1.0 and stru[0].Uisoequiv == pytest.approx(0.004)


def test_make_recipe_from_pdfdata_like_object():
    xyz = small_cluster()
    r, g = _data(xyz)
    pdf = SimpleNamespace(r=r, g=g, dg=None, qmin=0.8, qmax=22.0, qdamp=0.03, qbroad=None)
    recipe = refine.make_recipe(cluster_structure(xyz, ["Pt"] * 19), pdf, backend="torch")
    gen = recipe.cluster.G
    assert gen.getQmax() == 22.0 and gen.getQmin() == 0.8 and gen.qdamp.value == 0.03


def test_fit_structure_recovers_expansion():
    xyz = small_cluster()
    r, g = _data(xyz, zoom=1.015, delta2=1.0)
    out = refine.fit_structure(
        cluster_structure(xyz, ["Pt"] * 19),
        r,
        g,
        qmin=0.8,
        qmax=22.0,
        qdamp=0.03,
        rmin=1.5,
        uiso=0.008,
        delta2=1.5,
        backend="torch",
    )
    assert out.parameters["zoomscale"] == pytest.approx(1.015, abs=2e-4)
    assert out.rw < 0.02
    assert out.structure.lattice.abcABG() == (1, 1, 1, 90, 90, 90)
    np.testing.assert_allclose(
        out.structure.xyz_cartn, xyz * out.parameters["zoomscale"], atol=1e-10
    )
    assert out.structure[0].Uisoequiv == pytest.approx(out.parameters["Uiso"])
    assert out.r[0] >= 1.5 and len(out.g_calc) == len(out.r)


def test_make_recipe_errors():
    xyz = small_cluster()
    stru = cluster_structure(xyz, ["Pt"] * 19)
    r, g = _data(xyz)
    with pytest.raises(ParameterError, match="qmax"):
        refine.make_recipe(stru, r, g, backend="torch")
    with pytest.raises(ParameterError, match="fit range"):
        refine.make_recipe(stru, r, g, qmax=22, rmin=20, rmax=30, backend="torch")
    with pytest.raises(ParameterError, match="unknown variables"):
        refine.make_recipe(
            stru, r, g, qmax=22, refine=("scale", "spdiameter"), backend="torch"
        )
    with pytest.raises(ParameterError, match="qmax"):
        refine.make_recipe(stru, r, g, qmin=25, qmax=22, backend="torch")
    with pytest.raises(PDFDataError, match="increasing"):
        refine.make_recipe(stru, r[::-1], g, qmax=22, backend="torch")
    with pytest.raises(PDFDataError, match="finite"):
        refine.make_recipe(stru, r, np.full_like(g, np.nan), qmax=22, backend="torch")
    with pytest.raises(PDFDataError, match="one length"):
        refine.make_recipe(stru, r, g[:-1], qmax=22, backend="torch")
    with pytest.raises(StructureError, match="Structure"):
        refine.make_recipe(xyz, r, g, qmax=22, backend="torch")
    with pytest.raises(StructureError, match="two atoms"):
        refine.make_recipe(
            cluster_structure(xyz[:1], ["Pt"]), r, g, qmax=22, backend="torch"
        )


def test_rw_without_fitresults_is_srfits():
    """refine_recipe(uncertainties=False) reports the Rw srfit's FitResults gives."""
    from ase.cluster import Icosahedron
    from diffpy.srfit.fitbase import FitResults

    from diffpy_deepstruc.debye import PDFParameters, pdf_from_arrays
    from diffpy_deepstruc.refine import make_recipe, refine_recipe, srfit_rw
    from diffpy_deepstruc.structures import atoms_to_structure

    atoms = Icosahedron("Au", 3)
    p = PDFParameters(rmax=15, rstep=0.02, qmin=0.8, qmax=24, qdamp=0.03, delta2=2)
    r, g = pdf_from_arrays(atoms.get_positions() * 1.01, "Au", 0.007, p)
    g = g + np.random.default_rng(3).normal(0, 0.01 * np.abs(g).max(), g.shape)
    recipe = make_recipe(atoms_to_structure(atoms), r, g, qmin=0.8, qmax=24, qdamp=0.03)
    fast = refine_recipe(recipe, uncertainties=False)
    assert fast.fit_results is None and fast.uncertainties == {}
    assert fast.rw == pytest.approx(FitResults(recipe).rw, rel=1e-12)
    assert srfit_rw(recipe) == pytest.approx(fast.rw, rel=1e-12)
    assert set(fast.values) >= {"scale", "zoomscale", "Uiso", "delta2", "qdamp"}
    assert fast.values["zoomscale"] == pytest.approx(1.01, abs=2e-3)
