"""The solve pipeline's pure parts: settings, element, duplicate merging, outputs."""

from __future__ import annotations

import numpy as np
import pytest
from ase.cluster import Icosahedron, Octahedron

from diffpy_deepstruc.errors import ElementError, OutputExistsError, ParameterError
from diffpy_deepstruc.pdfdata import PDFData
from diffpy_deepstruc.ranking import (
    RefinedCandidate,
    merge_near_duplicates,
    nearest_neighbour_distance,
    prepare_outdir,
    resolve_element,
    resolve_settings,
)
from diffpy_deepstruc.structures import atoms_to_structure


def _pdf(meta=None, rmax=30.0):
    r = np.arange(0.0, rmax + 1e-9, 0.01)
    return PDFData(r=r, g=np.sin(r), metadata=meta or {}, source="x.gr")


def test_settings_from_header_then_arguments():
    pdf = _pdf({"qmin": 0.8, "qmax": 26.0, "qdamp": 0.03})
    s = resolve_settings(pdf)
    assert (s.qmin, s.qmax, s.qdamp, s.qbroad) == (0.8, 26.0, 0.03, 0.0)
    assert s.sources == {
        "qmin": "header",
        "qmax": "header",
        "qdamp": "header",
        "qbroad": "default",
        "rmin": "default",
        "rmax": "default",
        "rstep": "default",
    }
    assert (s.rmin, s.rmax, s.rstep) == (1.5, 30.0, None)  # the data's own points
    s = resolve_settings(pdf, qmax=20.0, rmax=25.0)
    assert s.qmax == 20.0 and s.sources["qmax"] == "argument" and s.rmax == 25.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "qmax is not in the data file's header"),
        ({"qmax": 20, "qmin": 25}, "must exceed qmin"),
        ({"qmax": 20, "qdamp": -0.1}, "qdamp must not be negative"),
        ({"qmax": 20, "rmax": 40}, "outside the data"),
        ({"qmax": 20, "rmin": 2, "rmax": 4}, "too short"),
        ({"qmax": float("nan")}, "finite"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        resolve_settings(_pdf(), **kwargs)


def test_element_from_argument_or_composition():
    assert resolve_element(_pdf(), "pt") == "Pt"
    assert resolve_element(_pdf({"composition": "Au144 S60 C480 H400"})) == "Au"
    with pytest.raises(ElementError, match="pass --element"):
        resolve_element(_pdf())
    with pytest.raises(ElementError, match="exactly one metal"):
        resolve_element(_pdf({"composition": "Au50 Ag50"}))
    with pytest.raises(ElementError, match="not a metal"):
        resolve_element(_pdf(), "S")
    with pytest.raises(ElementError):
        resolve_element(_pdf(), "Xx")


def _cand(atoms, index, rw):
    s = atoms_to_structure(atoms)
    return RefinedCandidate(
        index=index,
        structure=s,
        rw=rw,
        parameters={},
        n_atoms=len(s),
        latent=[0.0, 0.0],
        residual=0.0,
        r=np.zeros(1),
        g_calc=np.zeros(1),
    )


def test_merge_keeps_best_of_identical_structures_in_any_orientation():
    ico = Icosahedron("Au", 3, latticeconstant=4.08)
    turned = ico.copy()
    turned.rotate(37, "x", center="COP")
    turned.translate([1.0, -2.0, 0.5])
    octa = Octahedron("Au", 3, latticeconstant=4.08)
    merged = merge_near_duplicates(
        [_cand(ico, 0, 0.30), _cand(octa, 1, 0.25), _cand(turned, 2, 0.20)]
    )
    assert [c.index for c in merged] == [2, 1]
    assert merged[0].merged == [0]


def test_nearest_neighbour_distance_of_a_known_cluster():
    ico = Icosahedron("Au", 2, latticeconstant=4.08)  # 13 atoms
    nn = nearest_neighbour_distance(atoms_to_structure(ico))
    # ASE puts the first shell at the fcc nearest-neighbour distance a/sqrt2 from the
    # centre; vertex-vertex edges are 5 % longer, so every atom's nearest is a/sqrt2
    assert nn == pytest.approx(4.08 / np.sqrt(2), rel=1e-9)


def test_outdir_is_never_silently_replaced(tmp_path):
    out = tmp_path / "res"
    prepare_outdir(out)
    (out / "ranking.csv").write_text("x")
    with pytest.raises(OutputExistsError, match="--force"):
        prepare_outdir(out)
    (out / "partial").mkdir()
    prepare_outdir(out, force=True)
    assert not (out / "ranking.csv").exists() and not (out / "partial").exists()
    (out / "partial").mkdir()
    with pytest.raises(OutputExistsError, match="--resume"):
        prepare_outdir(out)
    prepare_outdir(out, resume=True)
    assert (out / "partial").is_dir()


def test_refinement_stays_physical_when_the_data_want_a_negative_uiso(srreal_dir):
    """Data sharper than the fixed instrument allows: Uiso is held at its bound 0."""
    from diffpy_deepstruc.debye import PDFParameters, pdf_from_arrays
    from diffpy_deepstruc.refine import fit_structure
    from diffpy_deepstruc.structures import read_structure, structure_arrays

    s = read_structure(srreal_dir / "Au55_icosahedron.xyz")
    xyz, el, _ = structure_arrays(s)
    p = PDFParameters(rmax=20.0, qdamp=0.01, delta2=0.0)
    r, g = pdf_from_arrays(xyz, el, 0.0005, p, backend="torch")
    fit = fit_structure(
        s, r, g, qmin=p.qmin, qmax=p.qmax, qdamp=0.09, qbroad=0.0, rmin=1.5, rmax=20.0
    )
    assert fit.parameters["Uiso"] >= 0.0
    assert all(a.Uisoequiv >= 0 for a in fit.structure)


def test_fit_grid_step():
    pdf = _pdf({"qmax": 25.0})
    assert resolve_settings(pdf, rstep=0.1).rstep == 0.1
    with pytest.raises(ParameterError, match="finer than the data"):
        resolve_settings(pdf, rstep=0.001)
    coarse = PDFData(
        r=np.arange(0.0, 30.0, 0.1),
        g=np.sin(np.arange(0.0, 30.0, 0.1)),
        metadata={"qmax": 25.0},
    )
    s = resolve_settings(coarse)
    assert s.rstep is None and s.sources["rstep"] == "default"


def test_fit_range_end_one_step_past_the_data_is_clipped():
    pdf = _pdf({"qmax": 25.0}, rmax=29.99)
    assert resolve_settings(pdf, rmax=30.0).rmax == pytest.approx(29.99)
    with pytest.raises(ParameterError, match="outside the data"):
        resolve_settings(pdf, rmax=30.5)
