"""The large shape library: regenerated shapes, screening histograms, one-product screening."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffpy_deepstruc.clusters import build_cluster
from diffpy_deepstruc.debye import PDFParameters, pdf_from_arrays
from diffpy_deepstruc.errors import CheckpointError, ParameterError
from diffpy_deepstruc.histpdf import pair_histogram
from diffpy_deepstruc.library import (
    HIST_STEP_NN,
    SHAPE_BUILDERS,
    ShapeLibrary,
    build_large_library,
    load_shape_library,
    merge_libraries,
    pretrained_library,
    register_builder,
    register_variants,
    save_shape_library,
    shape_histogram,
    unit_coordinates,
)

SMALL = dict(types=["icosahedron", "octahedron", "stacking"], n_min=150, n_max=320)


@pytest.fixture(scope="module")
def small():
    return build_large_library(**SMALL)


@pytest.fixture(scope="module")
def full():
    lib = pretrained_library(full=True)
    if lib is None:
        pytest.skip("no large shape library shipped in diffpy_deepstruc/pretrained")
    return lib


def test_build_is_deterministic_and_resumable(small, tmp_path):
    again = build_large_library(**SMALL, work_dir=tmp_path / "parts")
    assert again.builders == small.builders and again.types == small.types
    assert np.array_equal(again.hist, small.hist)
    resumed = build_large_library(**SMALL, work_dir=tmp_path / "parts")  # from the parts
    assert resumed.builders == small.builders and np.array_equal(resumed.hist, small.hist)
    assert set(small.types) == {"icosahedron", "octahedron", "stacking"}
    assert (150 <= small.n_atoms).all() and (small.n_atoms <= 320).all()


def test_build_with_workers_gives_the_same_library(small):
    par = build_large_library(**SMALL, workers=2)
    assert par.builders == small.builders and np.array_equal(par.hist, small.hist)


def _check_regenerates(lib: ShapeLibrary, rows) -> None:
    for i in rows:
        xyz = unit_coordinates(lib.maker(i), lib.args(i))
        assert len(xyz) == int(lib.n_atoms[i]), lib.label(i)
        ref = pair_histogram(xyz, step=HIST_STEP_NN) / len(xyz)
        h = lib.histogram(i).astype(float)
        assert len(h) <= len(ref)
        assert np.allclose(h, ref[: len(h)], rtol=2e-3, atol=2e-4), lib.label(i)
        assert np.allclose(h, shape_histogram(xyz), rtol=2e-3, atol=2e-4)
        atoms = SHAPE_BUILDERS[lib.maker(i)]("Pt", **lib.args(i), nn=2.8)
        assert np.allclose(
            lib.structure(i, "Pt", 2.8), atoms.positions - atoms.positions.mean(0)
        )


def test_shapes_regenerate_from_builder_arguments(small):
    _check_regenerates(small, range(len(small)))


def test_shipped_large_library(full):
    """Training shapes first (flagged), then >= 3000-atom shapes of every type; a few
    MB; a sample of each type regenerates exactly."""
    training = np.array([full.is_training(i) for i in range(len(full))])
    base = pretrained_library()
    assert training[: len(base)].all() and not training[len(base) :].any()
    assert full.types[: len(base)] == base.types
    large = np.flatnonzero(~training)
    assert len(large) > 1000
    for t in ("fcc", "bcc", "sc", "hcp", "icosahedron", "decahedron", "octahedron"):
        n = full.n_atoms[large][np.array(full.types)[large] == t]
        assert n.max() >= 2800, (t, n.max())
    assert "stacking" in {full.types[i] for i in large}
    rng = np.random.default_rng(0)
    pick = [
        int(
            rng.choice(
                large[(np.array(full.types)[large] == t) & (full.n_atoms[large] < 900)]
            )
        )
        for t in ("fcc", "bcc", "sc", "hcp", "decahedron", "octahedron", "stacking")
    ]
    _check_regenerates(full, pick)
    assert full.label(int(large[0])).startswith(
        f"{full.types[large[0]]} {full.n_atoms[large[0]]} {{"
    )


def test_screen_all_matches_the_exact_engine(small):
    """H @ K correlates with the exact Debye PDF of the regenerated shape (Pearson
    > 0.999) at the nn where its first shell is put."""
    params = PDFParameters(
        rmin=1.5, rmax=25.0, rstep=0.02, qmin=0.8, qdamp=0.03, qmax=22.0, delta2=1.0
    )
    for i in (0, len(small) // 2, len(small) - 1):
        nn = 2.77 / float(small.first_shells()[i])
        r, g = pdf_from_arrays(small.shape(i, nn), "Pt", 0.005, params, backend="torch")
        (j, score, nn_best), *_ = small.screen_all(
            r,
            g,
            qmin=0.8,
            qmax=22.0,
            qdamp=0.03,
            nn=2.77,
            indices=[i],
            scan=0.0,
            uiso=0.005,
            delta2=1.0,
        )
        assert j == i and score > 0.999 and nn_best == pytest.approx(nn, rel=1e-3)


def _lattice_family(lib: ShapeLibrary, i: int) -> str:
    """fcc for every fcc-lattice cut (fcc, octahedron, ABC-stacked), else the type."""
    from diffpy_deepstruc.clusters import hcp_fraction

    t = lib.types[i]
    if t == "octahedron" or (
        t == "stacking" and hcp_fraction(lib.args(i)["sequence"]) == 0
    ):
        return "fcc"
    return t


@pytest.mark.parametrize(
    "kind,args,element,scale,uiso",
    [
        ("icosahedron", {"shells": 6}, "Pt", 1.02, 0.007),
        ("fcc", {"layers": [7, 10, 6]}, "Au", 0.98, 0.007),
        ("decahedron", {"p": 6, "q": 7, "r": 2}, "Ag", 1.01, 0.007),
        ("hcp", {"layers": [6, 6, 6]}, "Co", 1.0, 0.004),
    ],
)
def test_screen_all_finds_type_and_size_among_thousands(
    full, kind, args, element, scale, uiso
):
    """Exact-engine PDFs of a 561-atom icosahedron, a 1007-atom fcc cut, a 2046-atom
    decahedron and a 421-atom hcp cut (other metals and Uiso than the screening's,
    Qbroad, 1 % noise, first peak found on the noisy data): over the whole library the
    top shape has the right type (the fcc lattice family for the fcc cut: truncated
    octahedra and ABC-stacked spheres of ~1000 atoms score within 2e-4 of it) and its
    size within 5 %, and the true shape is among the top 3."""
    from diffpy_deepstruc.elements import nearest_neighbour_distance
    from diffpy_deepstruc.generator import nn_peak_position

    atoms = build_cluster(
        kind, element, args, nn=nearest_neighbour_distance(element) * scale
    )
    n = len(atoms)
    params = PDFParameters(
        rmin=1.5, rmax=30.0, rstep=0.01, qmin=0.9, qmax=23.0, qdamp=0.035, qbroad=0.01
    )
    r, g = pdf_from_arrays(atoms.positions, element, uiso, params, backend="torch")
    g = g + np.random.default_rng(1).normal(0, 0.01 * np.abs(g).max(), g.size)
    peak = nn_peak_position(r, g)
    best = full.screen_all(
        r, g, qmin=0.9, qmax=23.0, qdamp=0.035, qbroad=0.01, nn=peak, k=3
    )
    labels = [full.label(j) for j, *_ in best]
    i = best[0][0]
    assert _lattice_family(full, i) == kind, labels
    assert abs(int(full.n_atoms[i]) - n) <= 0.05 * n, labels
    assert not full.is_training(i)
    assert any(full.types[j] == kind and full.args(j) == args for j, *_ in best), labels
    true_nn = nearest_neighbour_distance(element) * scale
    j = next(j for j, *_ in best if full.args(j) == args)
    nn_j = next(v for jj, _, v in best if jj == j)
    assert nn_j == pytest.approx(true_nn, rel=3e-3)


def test_screen_all_filters_and_validates(small):
    r = np.linspace(1.5, 20, 200)
    g = np.sin(r)
    sizes = [int(small.n_atoms[0])]
    got = small.screen_all(
        r, g, qmin=0.5, qmax=20, nn=2.8, sizes=sizes, tolerance=0.0, k=50
    )
    assert {j for j, *_ in got} == set(np.flatnonzero(small.n_atoms == sizes[0]))
    with pytest.raises(ParameterError):
        small.screen_all(r, g[:-1], qmin=0.5, qmax=20, nn=2.8)
    with pytest.raises(ParameterError):
        small.screen_all(r, g, qmin=0.5, qmax=20, nn=-1.0)


def test_save_load_merge_and_tamper(small, tmp_path):
    base = pretrained_library()
    merged = merge_libraries(base, small)
    assert len(merged) == len(base) + len(small)
    assert merged.is_training(0) and not merged.is_training(len(base))
    bp = save_shape_library(base, tmp_path / "shapes.safetensors")
    p = save_shape_library(merged, tmp_path / "large.safetensors", base=bp)
    back = load_shape_library(p)
    assert back.builders == merged.builders and back.makers == merged.makers
    assert np.array_equal(back.training, merged.training)
    assert np.array_equal(back.hist, merged.hist)
    assert np.allclose(back.shape(3), base.shape(3))
    i = len(base) + 1
    assert np.allclose(back.shape(i), small.shape(1))
    # the base must be the one it was built on
    save_shape_library(small, tmp_path / "other.safetensors")
    (tmp_path / "shapes.safetensors").write_bytes(
        (tmp_path / "other.safetensors").read_bytes()
    )
    with pytest.raises(CheckpointError, match="not the library it was built on"):
        load_shape_library(p)
    raw = bytearray(p.read_bytes())
    raw[-3] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="digest mismatch"):
        load_shape_library(p)


def test_builder_registry_and_variants_hook(tmp_path):
    """A library holds shapes of any registered builder (name + JSON arguments)."""

    def hollow(element, shells, nn=None):
        atoms = build_cluster("icosahedron", element, {"shells": shells}, nn)
        d = np.linalg.norm(atoms.positions - atoms.positions.mean(0), axis=1)
        return atoms[d > 0.5 * (nn or 1.0)]

    register_builder("test.hollow_icosahedron", hollow, overwrite=True)
    register_variants(
        "test-hollow",
        lambda n_min, n_max: [
            ("icosahedron", "test.hollow_icosahedron", {"shells": s}) for s in (5, 6)
        ],
        overwrite=True,
    )
    lib = build_large_library(
        types=["icosahedron"], n_min=250, n_max=600, variants=["test-hollow"]
    )
    assert lib.makers == [
        "icosahedron",
        "icosahedron",
        "test.hollow_icosahedron",
        "test.hollow_icosahedron",
    ]
    assert list(lib.n_atoms) == [309, 561, 308, 560]
    assert lib.label(2) == 'icosahedron 308 test.hollow_icosahedron {"shells": 5}'
    assert len(lib.shape(3)) == 560
    p = save_shape_library(lib, tmp_path / "v.safetensors")
    assert (
        json.loads(p.with_suffix(".json").read_text())["makers"][2]
        == "test.hollow_icosahedron"
    )
    with pytest.raises(ParameterError, match="unknown variant set"):
        build_large_library(types=["icosahedron"], n_max=400, variants=["nope"])
    with pytest.raises(ParameterError, match="already registered"):
        register_builder("fcc", hollow)
    assert SHAPE_BUILDERS["fcc"] is not hollow


def test_cli_builds_a_small_library(tmp_path, capsys):
    from diffpy_deepstruc.cli import main

    out = tmp_path / "lib.safetensors"
    argv = [
        "library",
        "-o",
        str(out),
        "--types",
        "icosahedron",
        "--nmin",
        "100",
        "--nmax",
        "400",
        "--quiet",
    ]
    assert main(argv) == 0
    lib = load_shape_library(out)
    assert list(lib.n_atoms) == [147, 309] and not lib.training.any()
    assert "2 large shapes" in capsys.readouterr().out


def test_imperfect_variants_regenerate():
    """The "imperfect" variant set: builders of diffpy_deepstruc.imperfect by name
    (one shape of each builder, through a variant set of its own)."""
    from diffpy_deepstruc.library import imperfect_variants

    specs = list(imperfect_variants(201, 4000))
    assert len(specs) > 80 and len({json.dumps(a) for *_, a in specs}) == len(specs)
    first = {}
    for t, maker, args in specs:
        first.setdefault(maker, (t, maker, args))
    assert set(first) == {
        "imperfect.lattice_sphere",
        "imperfect.lattice_ellipsoid",
        "imperfect.lattice_rod",
        "imperfect.incomplete_shell",
        "imperfect.twinned_particle",
        "vacancies",
    }
    register_variants("test-first", lambda a, b: list(first.values()), overwrite=True)
    lib = build_large_library(
        types=["icosahedron"], n_min=201, n_max=4000, variants=["test-first"]
    )
    assert sorted(lib.makers[7:]) == sorted(first)  # 7 icosahedra, then one of each
    _check_regenerates(lib, range(7, len(lib)))
    assert not any(lib.is_training(i) for i in range(len(lib)))


@pytest.mark.parametrize("case", ["vacancies", "twin"])
def test_screen_all_on_imperfect_particles(full, case):
    """Particles not in the library (other seed, other radius): a 561-atom icosahedron
    with 12 surface vacancies and a 17-layer singly twinned Pd sphere get the right
    type (icosahedron; a twinned stacking sequence) within 5 % of their size."""
    from diffpy_deepstruc import imperfect
    from diffpy_deepstruc.clusters import hcp_fraction
    from diffpy_deepstruc.generator import nn_peak_position

    if case == "vacancies":
        base = build_cluster("icosahedron", "Pt", {"shells": 6}, 2.77)
        atoms = imperfect.surface_vacancies(base, 12, seed=5, nn=2.77)
    else:
        atoms = imperfect.twinned_particle("Pd", 17, [8], 7.5, nn=2.75)
    params = PDFParameters(
        rmin=1.5, rmax=30.0, rstep=0.01, qmin=0.9, qmax=23.0, qdamp=0.035, qbroad=0.01
    )
    el = atoms.get_chemical_symbols()[0]
    r, g = pdf_from_arrays(atoms.positions, el, 0.006, params, backend="torch")
    g = g + np.random.default_rng(1).normal(0, 0.01 * np.abs(g).max(), g.size)
    best = full.screen_all(
        r, g, qmin=0.9, qmax=23.0, qdamp=0.035, qbroad=0.01, nn=nn_peak_position(r, g), k=3
    )
    i = best[0][0]
    label = full.label(i)
    assert abs(int(full.n_atoms[i]) - len(atoms)) <= 0.05 * len(atoms), label
    if case == "vacancies":
        assert full.types[i] == "icosahedron", label
    else:
        assert full.types[i] == "stacking", label
        if full.maker(i) == "stacking":  # else imperfect.twinned_particle
            assert 0 < hcp_fraction(full.args(i)["sequence"]) < 0.2, label
