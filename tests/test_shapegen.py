"""Shape codes and the shape-code generator (diffpy_deepstruc.shapegen)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from diffpy_deepstruc.catalog import rebuild_structure
from diffpy_deepstruc.errors import CheckpointError, OutputExistsError, ParameterError
from diffpy_deepstruc.shapegen.augment import geometry_key
from diffpy_deepstruc.shapegen.codes import (
    alternative_roundings,
    build,
    canonical_code,
    decode,
    encode,
    family_slots,
    family_type,
)

# one builder entry of every kind the catalog holds
ENTRIES = [
    ("fcc", {"layers": [2, 3, 2]}),
    ("sc", {"layers": [2, 2, 2]}),
    ("hcp", {"layers": [1, 1, 1]}),
    ("icosahedron", {"shells": 2}),
    ("decahedron", {"p": 2, "q": 1, "r": 1}),
    ("octahedron", {"length": 3, "cutoff": 0}),
    ("stacking", {"sequence": "ABA", "radius": 1.316, "shape": "sphere"}),
    ("stacking", {"sequence": "ABCA", "radius": 1.5, "shape": "prism"}),
    (
        "fcc",
        {
            "builder": "imperfect.lattice_sphere",
            "args": {"lattice": "fcc", "radius": 1.5, "offset": [0.25, 0.15, 0.1]},
        },
    ),
    (
        "bcc",
        {
            "builder": "imperfect.lattice_ellipsoid",
            "args": {"lattice": "bcc", "semi_axes": [1.25, 1.25, 1.875], "axis": [0, 0, 1]},
        },
    ),
    (
        "hcp",
        {
            "builder": "imperfect.lattice_rod",
            "args": {"lattice": "hcp", "radius": 1.0, "length": 3.0, "axis": [1, 0, 0]},
        },
    ),
    (
        "icosahedron",
        {
            "builder": "vacancies",
            "args": {"shape": "icosahedron", "args": {"shells": 2}, "k": 1, "seed": 0},
        },
    ),
    (
        "decahedron",
        {
            "builder": "imperfect.incomplete_shell",
            "args": {
                "shape": "decahedron",
                "args": {"p": 2, "q": 2, "r": 0},
                "fraction": 0.5,
                "seed": 0,
            },
        },
    ),
    (
        "fcc",
        {
            "builder": "relaxed",
            "args": {"maker": "fcc", "args": {"layers": [2, 2, 2]}, "method": "auto"},
        },
    ),
]
TWIN = {
    "builder": "imperfect.twinned_particle",
    "args": {"n_layers": 5, "twins": [2], "radius": 1.883, "shape": "sphere"},
}


def _sorted_distances(xyz: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    return np.sort(d[np.triu_indices(len(xyz), 1)])


def _same_geometry(a, b) -> bool:
    return len(a) == len(b) and np.allclose(
        _sorted_distances(a.positions), _sorted_distances(b.positions), atol=1e-6
    )


@pytest.mark.parametrize("stype,entry", ENTRIES + [("stacking", TWIN)])
def test_code_round_trip_builds_the_same_structure(stype, entry):
    family, theta = encode(stype, json.dumps(entry))
    assert len(theta) == len(family_slots(family))
    assert family_type(family) == stype
    truth = rebuild_structure(stype, "Pt", entry)
    assert _same_geometry(build(family, theta, "Pt"), truth)
    # decoding the code again gives the same entry (a fixed point)
    assert decode(*encode(*decode(family, theta))) == decode(family, theta)


def test_twins_are_coded_as_stacking_sequences():
    family, theta = encode("stacking", TWIN)
    assert family == "stacking/sphere"
    stype, entry = decode(family, theta)
    assert stype == "stacking" and entry["sequence"] == "ABCBA"


def test_any_numbers_decode_to_valid_arguments():
    rng = np.random.default_rng(0)
    families = sorted({encode(t, e)[0] for t, e in ENTRIES})
    for family in families:
        slots = family_slots(family)
        for _ in range(5):
            theta = rng.normal(2.0, 3.0, len(slots))
            try:
                atoms = build(family, theta, "Au", nn=1.0)
            except ParameterError:
                continue  # a refusal is a clear error, never a crash
            assert len(atoms) >= 1
        # integers are rounded, bits are 0/1
        t = np.full(len(slots), 2.4)
        _, entry = decode(family, t)
        text = json.dumps(entry)
        assert "2.4" not in text or any(s.kind == "real" for s in slots)


def test_alternative_roundings_take_the_most_ambiguous_slot_first():
    alts = alternative_roundings("decahedron", [2.4, 3.9, 0.7], 4)
    # 2.4 is closest to its boundary (margin 0.1), then 0.7 (0.3), then 3.9 (0.4)
    assert [a.tolist() for a in alts[:3]] == [
        [3.0, 3.9, 0.7],
        [2.4, 3.9, 0.0],
        [2.4, 3.0, 0.7],
    ]
    assert alts[3].tolist() == [3.0, 3.9, 0.0]  # the cheapest pair
    # a slot never leaves its valid range (r >= 0 cannot round down from 0.2)
    assert all(a[2] >= 0 for a in alternative_roundings("decahedron", [2.0, 2.0, 0.2], 10))
    bits = alternative_roundings("stacking/prism", [5.0] + [0.45] + [0.0] * 11 + [2.0], 1)
    assert bits[0][1] == 1.0  # the bit nearest 0.5 flips
    assert alternative_roundings("sphere/fcc", [3.0, 0.1, 0.2, 0.3], 5) == []  # reals only


def test_bad_codes_are_refused():
    with pytest.raises(ParameterError, match="unknown shape-code family"):
        family_slots("dodecahedron")
    with pytest.raises(ParameterError, match="takes 1 numbers"):
        decode("icosahedron", [2.0, 3.0])
    with pytest.raises(ParameterError, match="not finite"):
        decode("icosahedron", [np.nan])
    with pytest.raises(ParameterError, match="no shape code"):
        encode("fcc", {"builder": "somebody.else", "args": {}})
    with pytest.raises(ParameterError, match="seed other than 0"):
        encode(
            "fcc",
            {
                "builder": "vacancies",
                "args": {"shape": "fcc", "args": {"layers": [2, 2, 2]}, "k": 1, "seed": 3},
            },
        )


# ------------------------------------------------------------------- model on a tiny catalog
TINY = [
    ("icosahedron", {"shells": 2}),
    ("sc", {"layers": [2, 2, 2]}),
    ("sc", {"layers": [2, 2, 1]}),
    ("hcp", {"layers": [1, 1, 1]}),
    ("octahedron", {"length": 3, "cutoff": 0}),
    ("stacking", {"sequence": "ABA", "radius": 1.316, "shape": "sphere"}),
    (
        "fcc",
        {"builder": "imperfect.lattice_sphere", "args": {"lattice": "fcc", "radius": 1.5}},
    ),
    (
        "fcc",
        {"builder": "imperfect.lattice_sphere", "args": {"lattice": "fcc", "radius": 1.75}},
    ),
]


def _tiny_catalog(path):
    from test_training import _toy_pdf

    rng = np.random.default_rng(0)
    r = np.arange(0.0, 25.0 + 1e-9, 0.05)
    rows = [(t, e, el) for el in ("Pt", "Au", "Cu") for t, e in TINY]
    atoms = [rebuild_structure(t, el, e) for t, e, el in rows]
    n_max = max(len(a) for a in atoms)
    xyz = np.zeros((len(rows), n_max, 3), np.float32)
    for i, a in enumerate(atoms):
        xyz[i, : len(a)] = a.positions
    g, ps = [], []
    for i, a in enumerate(atoms):
        for _ in range(3):
            gg = _toy_pdf(a.positions, r, rng.uniform(0.08, 0.15))
            g.append(
                (gg + rng.normal(0, 0.01 * np.abs(gg).max(), gg.shape)).astype(np.float32)
            )
            ps.append(i)
    with h5py.File(path, "w") as h5:
        h5.attrs.update(format="diffpy-deepstruc-catalog", version=1, seed=0, n_max=n_max)
        h5["r"] = r
        h5["structures/xyz"] = xyz
        h5["structures/natoms"] = np.array([len(a) for a in atoms], np.int32)
        sdt = h5py.string_dtype()
        for name, vals in (
            ("element", [el for _, _, el in rows]),
            ("type", [t for t, _, _ in rows]),
            ("builder", [json.dumps(e) for _, e, _ in rows]),
        ):
            h5.create_dataset(f"structures/{name}", data=np.array(vals, object), dtype=sdt)
        h5["structures/nn"] = np.array([2.8] * len(rows), np.float32)
        h5["pdfs/g"] = np.stack(g)
        h5["pdfs/structure"] = np.asarray(ps, np.int32)
        ds = h5.create_dataset(
            "pdfs/params",
            data=np.tile([0.7, 25, 0.04, 0, 2, 0.005, 1, 0.01], (len(g), 1)).astype(
                np.float32
            ),
        )
        ds.attrs["columns"] = "qmin,qmax,qdamp,qbroad,delta2,uiso,scale,noise"
    return path


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from test_training import SMALL_PRE

    from diffpy_deepstruc.shapegen.training import TrainCodeConfig, train_codegen

    d = tmp_path_factory.mktemp("shapegen")
    cat = _tiny_catalog(d / "tiny.h5")
    small = {"conv_channels": [8, 8], "cond_dim": 32, "hidden": 32, "decoder_hidden": 32}
    out = {}
    for kind in ("cvae", "dae"):
        cfg = TrainCodeConfig(
            kind=kind, epochs=3, batch_size=8, split_by="structure", model=small, latent=4
        )
        out[kind] = train_codegen(
            cat, d / kind, cfg, cache_dir=d / "cache", progress=False, preprocess=SMALL_PRE
        )
    return d, cat


@pytest.mark.parametrize("kind", ["cvae", "dae"])
def test_training_writes_a_checkpoint_that_generates(tiny_models, kind):
    from diffpy_deepstruc.shapegen import ShapeGenerator

    d, cat = tiny_models
    cfg = json.loads((d / kind / "config.json").read_text())
    assert cfg["format"] == "diffpy-deepstruc-shapegen" and cfg["kind"] == kind
    assert "sphere/fcc" in cfg["families"] and "icosahedron" in cfg["families"]
    gen = ShapeGenerator.load(d / kind)
    with h5py.File(cat) as h5:
        r, g = h5["r"][()], h5["pdfs/g"][0].astype(float)
    a = gen.generate((r, g), n=6, element="Au", seed=3)
    b = gen.generate((r, g), n=6, element="Au", seed=3)
    assert 1 <= len(a) <= 6
    assert [c.code for c in a] == [c.code for c in b]  # seeded
    keys = [json.dumps(c.code["entry"], sort_keys=True) for c in a]
    assert len(set(keys)) == len(keys)  # distinct by default: entries ...
    shapes = [geometry_key(c.xyz, c.scale) for c in a]
    assert len(set(shapes)) == len(shapes)  # ... and atoms
    for c in a:
        assert c.n_atoms == len(c.structure) >= 4
        assert c.code["family"] in cfg["families"]
        assert c.structure[0].element == "Au"
    assert a[0].is_prior_mean
    rep = gen.generate((r, g), n=6, element="Au", seed=3, distinct=False)
    assert len(rep) == 6


def test_augmenting_needs_the_catalog_config(tmp_path):
    from test_training import SMALL_PRE

    from diffpy_deepstruc.errors import CatalogError
    from diffpy_deepstruc.shapegen.training import TrainCodeConfig, train_codegen

    cat = _tiny_catalog(tmp_path / "tiny.h5")  # written without the 'config' attribute
    cfg = TrainCodeConfig(epochs=1, split_by="structure", augment=10)
    with pytest.raises(CatalogError, match="no 'config' attribute"):
        train_codegen(cat, tmp_path / "m", cfg, progress=False, preprocess=SMALL_PRE)


def test_checkpoint_is_checked(tiny_models, tmp_path):
    import shutil

    from diffpy_deepstruc.shapegen.training import load_codegen, save_codegen

    d, _ = tiny_models
    model, cfg = load_codegen(d / "cvae")
    with pytest.raises(OutputExistsError):
        save_codegen(model, cfg, d / "cvae")
    bad = tmp_path / "bad"
    shutil.copytree(d / "cvae", bad)
    w = bad / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-1] + b"\0")
    with pytest.raises(CheckpointError, match="digest"):
        load_codegen(bad)
    with pytest.raises(CheckpointError, match="not a shape-code model"):
        load_codegen(tmp_path)
    shutil.copytree(d / "cvae", tmp_path / "c1")
    (tmp_path / "c1" / "config.json").write_bytes(b"\x80{")
    with pytest.raises(CheckpointError, match="not JSON"):
        load_codegen(tmp_path / "c1")
    shutil.copytree(d / "cvae", tmp_path / "c2")
    c = json.loads((tmp_path / "c2" / "config.json").read_text())
    c["theta_std"] = c["theta_std"][:-1]
    (tmp_path / "c2" / "config.json").write_text(json.dumps(c))
    with pytest.raises(CheckpointError, match="theta_std"):
        load_codegen(tmp_path / "c2")
    del c["families"]
    (tmp_path / "c2" / "config.json").write_text(json.dumps(c))
    with pytest.raises(CheckpointError, match="missing families"):
        load_codegen(tmp_path / "c2")


def test_evaluate_reads_a_shapegen_model(tiny_models):
    from diffpy_deepstruc.metrics import evaluate

    d, cat = tiny_models
    rep = evaluate(d / "cvae", cat, split="test", samples=4, progress=False, sites=True)
    o = rep["overall"]
    assert 0.0 <= o["right_mean"] <= 4 and 0.0 <= o["sites90_best"] <= 1.0
    assert all(c["type"] is not None for p in rep["per_pdf"] for c in p["candidates"])


def test_temperature_narrows_the_draws(tiny_models):
    from diffpy_deepstruc.shapegen import ShapeGenerator

    d, cat = tiny_models
    with h5py.File(cat) as h5:
        r, g = h5["r"][()], h5["pdfs/g"][0].astype(float)
    cold = ShapeGenerator.load(d / "cvae", temperature=0.0, roundings=0)
    assert cold.temperature == 0.0
    a = cold.generate((r, g), n=4, element="Pt", seed=1, distinct=False)
    assert len({json.dumps(c.code["entry"], sort_keys=True) for c in a}) == 1
    assert np.allclose([c.latent for c in a], a[0].latent)
    default = ShapeGenerator.load(d / "cvae")  # the checkpoint's sampling defaults
    assert (default.temperature, default.roundings) == (0.5, 8)
    with pytest.raises(ParameterError, match="temperature"):
        ShapeGenerator.load(d / "cvae", temperature=-1)


def test_cli_trains_a_shapegen_model(tmp_path, capsys):
    from diffpy_deepstruc.cli import main

    cat = _tiny_catalog(tmp_path / "tiny.h5")
    out = tmp_path / "m"
    args = ["shapegen", "--catalog", str(cat), "-o", str(out), "--epochs", "1"]
    args += ["--augment", "0", "--split-by", "structure", "--no-progress"]
    assert main(args) == 0
    assert (out / "model.safetensors").is_file()
    assert "0 random shapes" in capsys.readouterr().out
    assert main(args) != 0  # the model exists: refused without --force
    err = capsys.readouterr().err
    assert "a checkpoint exists there; pass overwrite=True (--force) to replace it" in err


def test_evaluate_cli_sampling_options(tiny_models, capsys, tmp_path):
    from test_training import train_tiny_model

    from diffpy_deepstruc.cli import main

    d, cat = tiny_models
    base = ["evaluate", "--catalog", str(cat), "--samples", "3", "--no-progress"]
    assert (
        main(base + ["--model", str(d / "dae"), "--temperature", "0", "--roundings", "1"])
        == 0
    )
    assert "right75" in capsys.readouterr().out
    distance_model, _ = train_tiny_model(tmp_path)
    code = main(base + ["--model", str(distance_model), "--temperature", "0"])
    assert code != 0
    assert "are for shape-code models" in capsys.readouterr().err


def test_geometry_key_ignores_order_rotation_translation_and_scale():
    atoms = rebuild_structure("icosahedron", "Au", {"shells": 2})
    x = atoms.positions
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    moved = (x @ q.T + [1.0, -2.0, 3.0])[rng.permutation(len(x))]
    nn = 2.88
    assert geometry_key(x, nn) == geometry_key(moved, nn)
    assert geometry_key(2 * x, 2 * nn) == geometry_key(x, nn)
    assert geometry_key(x[:-1], nn) != geometry_key(x, nn)


def test_evaluate_still_reads_a_distance_model(tmp_path):
    from test_training import train_tiny_model

    from diffpy_deepstruc.metrics import evaluate

    model, cat = train_tiny_model(tmp_path)
    rep = evaluate(model, cat, split="test", samples=3, progress=False)
    o = rep["overall"]
    assert rep["kind"] == "cvae" and rep["n_pdfs"] >= 1
    assert 0.0 <= o["count_exact_any"] <= 1.0
    assert "right_mean" not in o  # distance-model samples carry no type


def test_random_shapes_are_new_and_within_the_catalog_sizes():
    from diffpy_deepstruc.catalog import CatalogConfig
    from diffpy_deepstruc.shapegen.augment import random_shapes

    config = CatalogConfig(elements=["Au"], n_min=5, n_max=60).to_dict()
    held = build("sphere/fcc", [1.5, 0.0, 0.0, 0.0], "Au", 1.0)
    exclude = {geometry_key(held.positions)}
    codes = [np.array([1.5, 0.0, 0.0, 0.0]), np.array([2.0, 0.3, 0.2, 0.1])]
    s = random_shapes(["sphere/fcc"] * 2, codes, 40, config, exclude, seed=0, chunks=2)
    again = random_shapes(["sphere/fcc"] * 2, codes, 40, config, exclude, seed=0, chunks=2)
    assert s.entries == again.entries  # seeded
    assert len(s.families) >= 5 and set(s.families) == {"sphere/fcc"}
    assert np.all((s.natoms >= 5) & (s.natoms <= 60))
    keys = set()
    for fam, theta in zip(s.families, s.theta, strict=True):
        atoms = build(fam, theta, "Au", 1.0)
        keys.add(geometry_key(atoms.positions))
    assert len(keys) == len(s.families)  # no repeats
    assert not keys & exclude  # the held-out shape never comes back
    assert s.g.shape == (2 * len(s.families), 600) and np.all(np.isfinite(s.g))


def test_solve_samples_from_several_models(tiny_models, tmp_path):
    """``--model`` twice: each model draws ``-n`` samples, numbered in blocks, and the
    shape-code samples say their builder; a series takes the same list."""
    import csv

    from test_solve_cli import cli, tiny_model_dir, write_au_pdf

    from diffpy_deepstruc.batch import solve_series

    d, _ = tiny_models
    au = write_au_pdf(tmp_path / "au.gr")
    out = tmp_path / "res"
    rc, stdout, err = cli(
        "solve", au, "-o", out, "--model", tiny_model_dir(), "--model", d / "cvae",
        "-n", 3, "--workers", 1, "--no-progress", "--no-complete", "--library-k", 0,
    )  # fmt: skip
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_sampled"] == 6 and summary["options"]["n"] == 3
    assert summary["model"].count("+") == 1 and "shape-code cvae" in summary["model"]
    with open(out / "screening.csv", newline="") as fh:
        screened = list(csv.DictReader(fh))
    distance = [int(r["sample"]) for r in screened if r["source"] == "model"]
    coded = [r for r in screened if r["source"].startswith("shape-code model: ")]
    assert distance and coded and all(0 <= i < 3 for i in distance)
    assert all(3 <= int(r["sample"]) < 6 for r in coded)
    with open(out / "ranking.csv", newline="") as fh:
        ranked = list(csv.DictReader(fh))
    for r in ranked:  # the map's coordinates belong to the distance model's samples
        assert (r["z1"] != "") == (r["source"] == "model")
    rows = solve_series(
        [au], tmp_path / "series", model=[tiny_model_dir(), d / "cvae"], n=2,
        library_k=0, complete_k=0, progress=False,
    )  # fmt: skip
    assert [r["status"] for r in rows] == ["ok"]
    summary = json.loads((tmp_path / "series" / "au" / "summary.json").read_text())
    assert summary["n_sampled"] == 4


def test_report_draws_each_models_samples_on_its_own_map(tiny_models, tmp_path):
    """With two models, the second one's samples go on its own map (its principal
    view) in latent_model2.png, linked from the report; latent.png stays the first's."""
    from test_solve_cli import tiny_model_dir, write_au_pdf

    from diffpy_deepstruc.generator import DeepStruc
    from diffpy_deepstruc.latent import as_deepstruc, compute_latent_map
    from diffpy_deepstruc.pdfdata import load_pdf
    from diffpy_deepstruc.shapegen import ShapeGenerator
    from diffpy_deepstruc.solve import prepare_outdir, solve, write_solution

    d, cat = tiny_models
    models = [DeepStruc.load(tiny_model_dir()), ShapeGenerator.load(d / "cvae")]
    pdf = load_pdf(write_au_pdf(tmp_path / "au.gr"))
    res = solve(pdf, model=models, n=3, library_k=0, complete_k=0, search_k=0, workers=1)
    assert [z.shape for z in res.model_latents] == [
        (3, 2),
        (3, models[1].model.config.latent),
    ]
    assert np.array_equal(res.sample_latents, res.model_latents[0])
    assert len(res.model_labels) == 2 and res.model == " + ".join(res.model_labels)
    table = compute_latent_map(as_deepstruc(d / "cvae"), cat, progress=False)
    from diffpy_deepstruc.solve.report import _figure_jobs

    figs, _ = _figure_jobs(res, tmp_path, res.sample_latents, None, [None, table])
    assert figs[1].plot == "plot_latent_map"
    assert f"({res.model_labels[1]})" in figs[1].kwargs["title"]
    out = write_solution(res, prepare_outdir(tmp_path / "o"), latent_maps=[None, table])
    assert (out / "latent.png").is_file() and (out / "latent_model2.png").is_file()
    html_text = (out / "report.html").read_text()
    assert 'src="latent.png"' in html_text and 'src="latent_model2.png"' in html_text
    # no map for the second model: its figure is left out
    out = write_solution(res, prepare_outdir(tmp_path / "p"), latent_maps=[None, None])
    assert not (out / "latent_model2.png").exists()
    assert "latent_model2" not in (out / "report.html").read_text()


def test_shipped_models_are_both_kinds():
    from diffpy_deepstruc.generator import DeepStruc
    from diffpy_deepstruc.shapegen import ShapeGenerator
    from diffpy_deepstruc.solve import default_models

    distance, coded = default_models()
    assert isinstance(distance, DeepStruc) and isinstance(coded, ShapeGenerator)
    assert distance.kind == coded.kind == "cvae"
    dae = ShapeGenerator.pretrained("dae")
    assert dae.kind == "dae" and dae.families == coded.families
    # shipped: trained on every shape (a structure-wise split, as the distance model)
    assert coded.meta["split"]["by"] == "structure"
    with pytest.raises(ParameterError, match="kind must be"):
        ShapeGenerator.pretrained("vae")
    from diffpy_deepstruc.latent import model_map_or_none

    for gen in (coded, dae):  # each with its map: 8-D prior means, a principal view
        table = model_map_or_none(gen)
        assert table is not None and table.z.shape[1] == gen.model.config.latent
        assert table.view() is not None and table.points.shape == (len(table), 2)
        assert table.meta["model_sha256"] == gen.meta["weights"]["sha256"]


def test_latent_map_of_a_shape_code_model(tiny_models, tmp_path):
    """The map of a latent of more than two dimensions is its 2-D principal view; the
    view travels with the map (selections, placed data, the CSV)."""
    from diffpy_deepstruc.latent import (
        compute_latent_map,
        load_latent_map,
        save_latent_map,
    )
    from diffpy_deepstruc.shapegen import ShapeGenerator

    d, cat = tiny_models
    gen = ShapeGenerator.load(d / "cvae")
    table = compute_latent_map(gen, cat)
    assert table.z.shape[1] == 4 and table.points.shape == (len(table), 2)
    v = table.view()
    axes = np.asarray(v["axes"])
    assert np.allclose(axes @ axes.T, np.eye(2), atol=1e-9)  # orthonormal
    z = table.z[table.split == "train"]
    spread = np.var((z - z.mean(0)) @ axes.T, axis=0)
    assert spread[0] >= spread[1] and spread[0] >= np.var(z[:, 0]) - 1e-12  # principal
    assert np.allclose(table.project(table.z[3]), table.points[3])
    sub = table.select(np.arange(len(table)) % 2 == 0)
    assert np.allclose(sub.points, table.points[::2])  # same view for a selection
    placed = table.with_data(["x"], table.z[:1] + 0.1)
    assert np.allclose(placed.catalog_rows().points, table.points)
    save_latent_map(table, tmp_path / "m.csv")
    back = load_latent_map(tmp_path / "m.csv")
    assert np.allclose(back.points, table.points, atol=1e-5)


def test_latent_cli_reads_shape_code_models(tiny_models, tmp_path):
    from test_solve_cli import cli, write_au_pdf

    from diffpy_deepstruc.latent import interpolate
    from diffpy_deepstruc.shapegen import ShapeGenerator

    d, cat = tiny_models
    au = write_au_pdf(tmp_path / "au.gr")
    rc, out, err = cli(
        "latent", "map", "--model", d / "cvae", "--catalog", cat, "--data", au,
        "-o", tmp_path / "map.png", "--no-progress",
    )  # fmt: skip
    assert rc == 0, err
    assert "au: map (principal view) = (" in out and (tmp_path / "map.csv").is_file()
    gen = ShapeGenerator.load(d / "cvae")
    with h5py.File(cat) as h5:
        r, g = h5["r"][()], h5["pdfs/g"][()].astype(float)
    path = interpolate(gen, (r, g[0]), (r, g[-1]), steps=4, element="Au")
    assert len(path) == 4 and all(len(s) >= 4 for _, s in path)
    ends = gen.build_points(np.stack([path[0][0], path[-1][0]]), "Au")
    assert [len(s) for s, _ in ends] == [len(path[0][1]), len(path[-1][1])]
    rc, out, err = cli(
        "latent", "interpolate", au, au, "--model", d / "dae", "--steps", 3,
        "-o", tmp_path / "interp",
    )  # fmt: skip
    assert rc == 0, err
    assert (tmp_path / "interp" / "interpolation.png").is_file()


@pytest.mark.parametrize(
    ("family", "theta", "expected"),
    [
        ("fcc", [3, 3, 4], [2, 3, 2]),  # ASE's layer counts: one of many for 43 atoms
        ("fcc", [4, 3, 4], [2, 3, 2]),
        ("fcc", [2, 3, 2], [2, 3, 2]),
        ("vacancies/fcc", [3, 3, 4, 5], [2, 3, 2, 5]),
        ("hcp", [5, 2, 3], [5, 2, 2]),
        ("icosahedron", [3], [3]),  # no layer counts: as it is
        ("sphere/fcc", [1.37, 0.1, 0.0, 0.0], [1.37, 0.1, 0.0, 0.0]),
    ],
)
def test_canonical_codes_build_the_same_atoms(family, theta, expected):
    got = canonical_code(family, theta)
    assert got.tolist() == [float(x) for x in expected]
    a, b = build(family, theta, "Au", 1.0), build(family, got, "Au", 1.0)
    assert geometry_key(a.positions) == geometry_key(b.positions)
    assert canonical_code(family, got).tolist() == got.tolist()  # idempotent


def test_guided_sampling_keeps_the_best_fitting_proposals(tiny_models):
    from diffpy_deepstruc.shapegen import ShapeGenerator

    d, cat = tiny_models
    with h5py.File(cat) as h5:
        r, g = h5["r"][()], h5["pdfs/g"][0].astype(float)
    gen = ShapeGenerator.load(d / "cvae")
    drawn = gen.generate((r, g), n=8, element="Pt", seed=2)  # the same distinct draws

    def by_count(xyzs):  # a guide that prefers 10 atoms, then fewer
        return [abs(len(x) - 10) + 0.01 * len(x) for x in xyzs]

    kw = {"element": "Pt", "seed": 2, "guide": by_count, "proposals": 8}
    got = gen.generate((r, g), n=3, expand=0, **kw)
    want = sorted(drawn, key=lambda c: abs(c.n_atoms - 10) + 0.01 * c.n_atoms)[:3]
    assert [c.code for c in got] == [c.code for c in want]
    assert [c.index for c in got] == [0, 1, 2]
    assert [c.misfit for c in got] == sorted(c.misfit for c in got)
    assert got[0].misfit == pytest.approx(abs(got[0].n_atoms - 10) + 0.01 * got[0].n_atoms)
    assert np.isnan(drawn[0].misfit)  # plain samples carry none
    # expanding: the codes one step from the best proposals compete too
    wide = gen.generate((r, g), n=3, expand=2, **kw)
    assert all(a.misfit <= b.misfit for a, b in zip(wide, got, strict=True))
    new = [c for c in wide if c.code not in [d.code for d in drawn]]
    assert new  # here a neighbour fits better than the proposals
    for c in new:
        base = [d for d in drawn if d.code["family"] == c.code["family"]]
        steps = [np.abs(np.subtract(c.code["theta"], d.code["theta"])).max() for d in base]
        assert min(steps) <= 1.5 + 1e-9
    with pytest.raises(ParameterError, match="at least 3"):
        gen.generate((r, g), n=3, element="Pt", guide=by_count, proposals=2)
    with pytest.raises(ParameterError, match="expand"):
        gen.generate((r, g), n=3, element="Pt", guide=by_count, expand=-1)
    with pytest.raises(ParameterError, match="needs a guide"):
        gen.generate((r, g), n=3, element="Pt", proposals=8)
    with pytest.raises(ParameterError, match="one number per structure"):
        gen.generate((r, g), n=3, element="Pt", guide=lambda x: [0.0], proposals=8)


def test_guided_resampling_repeats_what_the_data_favour(tiny_models):
    from diffpy_deepstruc.shapegen import ShapeGenerator
    from diffpy_deepstruc.shapegen.generator import resampling_weights

    w = resampling_weights(np.array([0.10, 0.10, 0.11, 0.30]), 100.0)
    assert w.sum() == pytest.approx(1.0) and w[0] == w[1]
    assert w[2] / w[0] == pytest.approx(np.exp(-50.0 * (1.1**2 - 1.0)))
    assert w[3] < 1e-100
    with pytest.raises(ParameterError, match="independent_points"):
        resampling_weights(np.array([0.1, 0.2]), None)
    with pytest.raises(ParameterError, match="finite misfit"):
        resampling_weights(np.array([np.inf, np.inf]), 100.0)
    assert resampling_weights(np.array([0.1, np.inf]), 100.0).tolist() == [1.0, 0.0]

    d, cat = tiny_models
    with h5py.File(cat) as h5:
        r, g = h5["r"][()], h5["pdfs/g"][0].astype(float)
    gen = ShapeGenerator.load(d / "cvae")

    def by_count(xyzs):  # a misfit that prefers 10 atoms
        return [0.1 + 0.01 * abs(len(x) - 10) for x in xyzs]

    by_count.independent_points = 50.0
    kw = {"element": "Pt", "guide": by_count, "proposals": 8, "expand": 0}
    a = gen.generate((r, g), n=12, seed=4, distinct=False, **kw)
    b = gen.generate((r, g), n=12, seed=4, distinct=False, **kw)
    assert len(a) == 12 and [c.code for c in a] == [c.code for c in b]  # seeded
    assert [c.misfit for c in a] == sorted(c.misfit for c in a)  # best first
    keys = [json.dumps(c.code["entry"], sort_keys=True) for c in a]
    assert len(set(keys)) < len(keys)  # repeats
    assert len({id(c.structure) for c in a}) == len(a)  # each repeat its own Structure
    best = gen.generate((r, g), n=1, seed=4, **kw)[0]
    assert keys.count(json.dumps(best.code["entry"], sort_keys=True)) >= 4
    del by_count.independent_points
    with pytest.raises(ParameterError, match="independent_points"):
        gen.generate((r, g), n=3, seed=4, distinct=False, **kw)


def test_screening_guide_prefers_the_true_structure():
    from diffpy_deepstruc.debye import PDFParameters, pdf_batch
    from diffpy_deepstruc.shapegen.codes import build
    from diffpy_deepstruc.solve.screen import screening_guide
    from diffpy_deepstruc.solve.settings import FitSettings

    truth = build("icosahedron", [3], "Au", 2.88).positions  # 55 atoms
    near = build("icosahedron", [4], "Au", 2.88).positions  # 147 atoms
    deca = build("decahedron", [3, 2, 0], "Au", 2.88).positions
    pp = PDFParameters(rmin=0.0, rmax=25.0, rstep=0.05, qmin=0.7, qmax=25.0, qdamp=0.04)
    r, G = pdf_batch([(truth, ["Au"] * len(truth), np.full(len(truth), 0.006))], pp)
    st = FitSettings(qmin=0.7, qmax=25.0, qdamp=0.04, qbroad=0.0, rmin=1.5, rmax=24.9)
    guide = screening_guide(r, G[0], st)
    rw = guide([near, truth, deca])
    assert rw.shape == (3,) and np.argmin(rw) == 1 and rw[1] < 0.02
    assert guide.independent_points == pytest.approx((24.9 - 1.5) * 25.0 / np.pi)


def test_evaluate_guided_scores_the_best_fitting_samples(tiny_models, capsys):
    from diffpy_deepstruc.cli import main
    from diffpy_deepstruc.metrics import evaluate

    d, cat = tiny_models
    rep = evaluate(d / "dae", cat, split="test", samples=3, progress=False, guided=6)
    assert rep["guided"] == 6
    assert all(len(p["candidates"]) <= 3 for p in rep["per_pdf"])
    for p in rep["per_pdf"]:  # best first, and the truth judged by the same guide
        misfits = [c["misfit"] for c in p["candidates"]]
        assert misfits == sorted(misfits) and np.isfinite(p["true_misfit"])
    assert 0.0 <= rep["overall"]["first_wrong_fits_better"] <= 1.0
    with pytest.raises(ParameterError, match="at least samples"):
        evaluate(d / "dae", cat, samples=3, progress=False, guided=2)
    with pytest.raises(ParameterError, match="repeats is an option"):
        evaluate(d / "dae", cat, samples=3, progress=False, repeats=True)
    rep = evaluate(d / "cvae", cat, samples=3, progress=False, guided=6, repeats=True)
    assert rep["repeats"] and all(len(p["candidates"]) == 3 for p in rep["per_pdf"])
    base = ["evaluate", "--catalog", str(cat), "--samples", "3", "--no-progress"]
    assert main(base + ["--model", str(d / "cvae"), "--guided", "6"]) == 0
    out = capsys.readouterr().out
    assert "best-fitting of 6 distinct proposals" in out and "best-fitting sample" in out
    assert "wrongfit" in out and "sampling time per PDF: median" in out
    assert rep["overall"]["sample_seconds"]["median"] > 0


def test_solve_guided_proposals(tiny_models, tmp_path):
    """``--proposals M``: the shape-code model's samples are its best-screened of M
    proposals; the option is recorded, and a series does not reuse a plain result."""
    from test_solve_cli import cli, write_au_pdf

    from diffpy_deepstruc.batch import solve_series
    from diffpy_deepstruc.shapegen import ShapeGenerator
    from diffpy_deepstruc.solve import solve
    from diffpy_deepstruc.solve.screen import screening_guide

    d, _ = tiny_models
    au = write_au_pdf(tmp_path / "au.gr")
    gen = ShapeGenerator.load(d / "cvae")
    kw = {"n": 3, "library_k": 0, "complete_k": 0, "search_k": 0, "refine_k": 1}
    res = solve(au, model=gen, proposals=9, **kw)
    assert res.options["proposals"] == 9
    want = gen.generate(
        res.pdf, 3, element="Au", guide=screening_guide(res.pdf.r, res.pdf.g, res.settings),
        proposals=9,
    )  # fmt: skip
    got = {s["n_atoms"] for s in res.screened}
    assert got == {c.n_atoms for c in want}
    best = min(res.screened, key=lambda s: s["screen_rw"])
    assert best["screen_rw"] == pytest.approx(want[0].misfit, rel=1e-6)  # other batches
    with pytest.raises(ParameterError, match="proposals"):
        solve(au, model=gen, proposals=2, **kw)
    rc, out, err = cli(
        "solve", au, "-o", tmp_path / "res", "--model", d / "cvae", "-n", 2,
        "--proposals", 6, "--workers", 1, "--no-progress", "--no-complete",
        "--library-k", 0,
    )  # fmt: skip
    assert rc == 0, err
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert summary["options"]["proposals"] == 6
    note = "(shape-code samples: the best-fitting of 6 proposals each)"
    assert note in out and note in (tmp_path / "res" / "report.html").read_text()
    series = dict(model=[d / "cvae"], n=2, library_k=0, complete_k=0, progress=False)
    assert solve_series([au], tmp_path / "s", **series)[0]["status"] == "ok"
    again = solve_series([au], tmp_path / "s", proposals=6, **series)[0]
    assert again["status"].startswith("error") and "proposals 0 != 6" in again["status"]


def test_right_counts_the_truths_atoms_whatever_the_code_says():
    """An octahedron built as an fcc layer cut is the right type; a neighbour of
    another type within 10 % is not."""
    from ase.cluster import Octahedron

    from diffpy_deepstruc.metrics import _atoms_key, _right

    octa = Octahedron("Cu", 4, 1).positions  # 38 atoms
    rot = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    assert _atoms_key(octa) == _atoms_key(1.07 * octa @ rot.T + 3.0)
    assert _atoms_key(octa) != _atoms_key(octa[:-1])
    p = {
        "type": "octahedron",
        "n_atoms": 38,
        "candidates": [
            {"type": "fcc", "n_atoms": 38, "truth_atoms": True},
            {"type": "fcc", "n_atoms": 37, "truth_atoms": False},
            {"type": "octahedron", "n_atoms": 40, "truth_atoms": False},
        ],
    }
    assert _right(p) == 2
