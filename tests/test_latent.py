"""Latent-space tools: map, placing data, interpolation, validity, the map's numbers.

Fast tests use a tiny model trained for a few epochs on the synthetic catalog of
``test_training``.  The tests of the *shipped* map read
``diffpy_deepstruc/pretrained/latent_map.csv`` and skip, saying why, while no shipped
model or map exists.
"""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_training import train_tiny_model

from diffpy_deepstruc import latent
from diffpy_deepstruc.cli import main
from diffpy_deepstruc.errors import OutputExistsError, ParameterError
from diffpy_deepstruc.generator import DeepStruc
from diffpy_deepstruc.latent import LatentMap
from diffpy_deepstruc.pdfdata import write_pdf
from diffpy_deepstruc.structures import arrays_to_structure


# ------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model folder, catalog path, two PDFs (r, g) of different types)."""
    d = tmp_path_factory.mktemp("latent")
    model_dir, cat = train_tiny_model(d)
    with h5py.File(cat) as h5:
        r = h5["r"][()]
        types = [
            t.decode() if isinstance(t, bytes) else t for t in h5["structures/type"][()]
        ]
        ps = h5["pdfs/structure"][()]
        ia = int(np.flatnonzero(ps == types.index("fcc"))[0])
        ib = int(np.flatnonzero(ps == types.index("icosahedron"))[0])
        ga, gb = h5["pdfs/g"][ia], h5["pdfs/g"][ib]
    return model_dir, cat, (r, ga.astype(float)), (r, gb.astype(float))


@pytest.fixture(scope="module")
def tiny_map(tiny):
    model, cat, _, _ = tiny
    return latent.compute_latent_map(DeepStruc.load(model), cat, posterior=True)


def _gr(path, pdf):
    r, g = pdf
    return write_pdf(path, r, g, {"composition": "Au"})


# ----------------------------------------------------------------- encode / decode
def test_encode_decode_match_generator(tiny):
    model, _, a, _ = tiny
    ds = DeepStruc.load(model)
    mu, std = latent.encode(ds, a)
    mu2, std2 = ds.encode(a)
    assert np.allclose(mu, mu2) and np.allclose(std, std2) and mu.shape == (2,)
    s = latent.decode(model, mu, a, "Au")  # a folder works too
    assert len(s) == len(ds.decode(mu, a, "Au"))
    assert {x.element for x in s} == {"Au"}


def test_interpolate_ends_and_steps(tiny):
    model, _, a, b = tiny
    ds = DeepStruc.load(model)
    path = latent.interpolate(ds, a, b, steps=5, element="Au")
    assert len(path) == 5
    za, zb = ds.encode(a)[0], ds.encode(b)[0]
    zs = np.array([z for z, _ in path])
    assert np.allclose(zs[0], za, atol=1e-5) and np.allclose(zs[-1], zb, atol=1e-5)
    assert np.allclose(zs[2], 0.5 * (za + zb), atol=1e-5)  # on the straight line
    from diffpy_deepstruc.elements import nearest_neighbour_distance
    from diffpy_deepstruc.generator import unit_nn_distance

    nn = nearest_neighbour_distance("Au")
    for _, s in path:
        xyz = np.array([x.xyz_cartn for x in s])
        assert len(xyz) >= 2 and np.all(np.isfinite(xyz))
        assert unit_nn_distance(xyz) == pytest.approx(nn, rel=1e-6)  # sized to Au
    # the end points decode A and B themselves: the same atom count as the generator
    assert len(path[0][1]) == len(ds.decode(za, a, "Au"))
    assert len(path[-1][1]) == len(ds.decode(zb, b, "Au"))
    again = latent.interpolate(ds, a, b, steps=5, element="Au")
    assert all(
        np.allclose(
            np.array([x.xyz_cartn for x in s1]), np.array([x.xyz_cartn for x in s2])
        )
        for (_, s1), (_, s2) in zip(path, again, strict=True)
    )
    with pytest.raises(ParameterError):
        latent.interpolate(ds, a, b, steps=1)


def test_validity():
    nn = 2.77
    cube = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float) * nn
    assert latent.validity(cube, nn)
    squeezed = cube.copy()
    squeezed[1] = [0, 0, 0.79 * nn]
    assert not latent.validity(squeezed, nn)
    squeezed[1] = [0, 0, 0.81 * nn]
    assert latent.validity(squeezed, nn)
    assert not latent.validity(cube[:1], nn)  # one atom is no particle
    bad = cube.copy()
    bad[3] = np.nan
    assert not latent.validity(bad, nn)
    s = arrays_to_structure(cube, "Pt")
    assert latent.validity(s)  # nn of the element (Pt 2.77 A)
    assert not latent.validity(arrays_to_structure(cube * 0.7, "Pt"))
    assert latent.min_distance_ratio(cube, nn) == pytest.approx(1.0)
    with pytest.raises(ParameterError):
        latent.validity(cube, -1.0)


# --------------------------------------------------------------------------- the map
def test_compute_map_rows_and_split(tiny, tiny_map):
    model, cat, _, _ = tiny
    t = tiny_map
    meta = DeepStruc.load(model).meta
    with h5py.File(cat) as h5:
        m = h5["structures/natoms"].shape[0]
        ps = h5["pdfs/structure"][()]
        noise = h5["pdfs/params"][:, -1]
    assert len(t) == m and t.z.shape == (m, 2) and np.all(np.isfinite(t.z))
    assert list(t.index) == list(range(m))
    assert all(ps[t.pdf[i]] == t.index[i] for i in range(m))  # a PDF of that structure
    assert (
        t.meta["same_catalog_as_model"]
        and t.meta["model_sha256"] == meta["weights"]["sha256"]
    )
    assert set(np.flatnonzero(t.split == "test")) == set(meta["split"]["test"])
    assert set(np.flatnonzero(t.split == "val")) == set(meta["split"]["val"])
    assert set(t.split) == {"train", "val", "test"}
    assert np.all(np.isnan(t.hcp_fraction))  # no stacking particles in the tiny catalog
    # one shape id per geometry, shared by its four metals
    assert len(set(t.shape)) == 4
    # the map point is the prior mean of that PDF
    with h5py.File(cat) as h5:
        r, g = h5["r"][()], h5["pdfs/g"][int(t.pdf[5])]
    assert np.allclose(latent.encode(model, (r, g))[0], t.z[5], atol=1e-5)
    del noise
    # posterior means: q(z | structure, PDF), finite, not the prior means
    assert t.zq.shape == t.z.shape and np.all(np.isfinite(t.zq))
    assert not np.allclose(t.zq, t.z)
    assert latent.knn_type_accuracy(t, k=1, latent="posterior")["latent"] == "posterior"
    with pytest.raises(ParameterError, match="no posterior"):
        latent.knn_type_accuracy(latent.compute_latent_map(model, cat), latent="posterior")


def test_least_noise_pdf_is_used(tmp_path, tiny):
    model, cat, _, _ = tiny
    c2 = tmp_path / "noisy.h5"
    c2.write_bytes(Path(cat).read_bytes())
    with h5py.File(c2, "r+") as h5:
        ps = h5["pdfs/structure"][()]
        par = h5["pdfs/params"][()]
        par[:, -1] = 0.02
        second = [
            int(np.flatnonzero(ps == i)[1]) for i in range(h5["structures/natoms"].shape[0])
        ]
        par[second, -1] = 0.0
        h5["pdfs/params"][...] = par
    t = latent.compute_latent_map(model, c2)
    assert list(t.pdf) == second
    assert not t.meta["same_catalog_as_model"] and set(t.split) == {""}


def test_save_load_round_trip(tmp_path, tiny_map):
    t = tiny_map.with_data(["JQ_S1"], np.array([[0.1, -0.2]]), ["Pt"])
    t.hcp_fraction[3] = 0.4
    f = latent.save_latent_map(t, tmp_path / "m.csv")
    with pytest.raises(OutputExistsError):
        latent.save_latent_map(t, f)
    u = latent.load_latent_map(f)
    assert len(u) == len(t) and np.allclose(u.z, t.z, atol=1e-5)
    for name in ("label", "index", "type", "element", "n_atoms", "split", "shape", "pdf"):
        assert list(getattr(u, name)) == list(getattr(t, name)), name
    assert u.hcp_fraction[3] == pytest.approx(0.4) and np.isnan(u.hcp_fraction[0])
    assert np.allclose(u.zq[:-1], t.zq[:-1], atol=1e-5) and np.all(np.isnan(u.zq[-1]))
    assert u.meta["model_sha256"] == t.meta["model_sha256"]
    assert u.type[-1] == "data" and u.split[-1] == "data" and u.index[-1] == -1
    assert len(u.catalog_rows()) == len(t) - 1
    with open(f) as fh:
        header = next(r for r in csv.reader(fh) if not r[0].startswith("#"))
    assert header[-4:] == ["z1", "z2", "q1", "q2"]
    assert "hcp_fraction" in header and "split" in header
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ParameterError, match="not a latent map"):
        latent.load_latent_map(tmp_path / "bad.csv")


def test_shipped_map_or_none(tmp_path, tiny, tiny_map):
    model, _, _, _ = tiny
    ds = DeepStruc.load(model)
    assert latent.shipped_map_or_none(ds) is None  # not shipped, folder unknown
    ds2 = latent.as_deepstruc(str(model))  # loaded here: the folder is remembered
    assert latent.shipped_map_or_none(ds2) is None  # no map there yet
    folder = tmp_path / "withmap"
    folder.mkdir()
    for f in ("config.json", "model.safetensors"):
        (folder / f).write_bytes((Path(model) / f).read_bytes())
    latent.save_latent_map(tiny_map, folder / latent.MAP_NAME)
    got = latent.shipped_map_or_none(latent.as_deepstruc(folder))
    assert got is not None
    pts, types = got
    assert pts.shape == (len(tiny_map), 2) and types == list(tiny_map.type)
    assert latent.shipped_map_or_none(latent.as_deepstruc(folder).model) is not None
    # a stale map (made with other weights) is ignored
    stale = LatentMap(
        **{**tiny_map.__dict__, "meta": dict(tiny_map.meta, model_sha256="0" * 64)}
    )
    latent.save_latent_map(stale, folder / latent.MAP_NAME, overwrite=True)
    assert latent.shipped_map_or_none(latent.as_deepstruc(folder)) is None


# ----------------------------------------------------------------------- the numbers
def _synthetic_map(seed=0, spread=0.15):
    """Blobs for the seven types plus stacking points along fcc -> hcp by hcp fraction."""
    rng = np.random.default_rng(seed)
    centres = {
        "fcc": (0, 0),
        "bcc": (3, 0),
        "sc": (3, 3),
        "hcp": (0, 3),
        "octahedron": (-3, 0),
        "icosahedron": (-3, 3),
        "decahedron": (0, -3),
    }
    rows = []
    for t, c in centres.items():
        for _ in range(40):
            rows.append((t, np.add(c, rng.normal(0, spread, 2)), np.nan))
    for f in np.linspace(0.05, 0.95, 30):
        rows.append(("stacking", np.array([0.0, 3 * f]) + rng.normal(0, 0.05, 2), f))
    n = len(rows)
    split = rng.choice(["train", "val", "test"], n, p=[0.7, 0.1, 0.2])
    return LatentMap(
        z=np.array([r[1] for r in rows]),
        label=[str(i) for i in range(n)],
        index=np.arange(n),
        type=[r[0] for r in rows],
        element=["Pt"] * n,
        n_atoms=np.full(n, 13),
        hcp_fraction=[r[2] for r in rows],
        split=split,
        shape=[str(i) for i in range(n)],
        pdf=np.arange(n),
    )


def test_knn_type_accuracy():
    t = _synthetic_map()
    res = latent.knn_type_accuracy(t, k=5)
    assert res["accuracy"] == 1.0 and res["n_test"] == int(
        ((t.split == "test") & (t.type != "stacking")).sum()
    )
    assert set(res["per_type"]) == {
        "fcc",
        "bcc",
        "sc",
        "hcp",
        "octahedron",
        "icosahedron",
        "decahedron",
    }
    assert latent.knn_type_accuracy(t, k=5, unseen_shapes=True)["accuracy"] == 1.0
    # shuffled types: chance level, the classifier is not fooled
    rng = np.random.default_rng(1)
    shuffled = LatentMap(**{**t.__dict__, "type": rng.permutation(t.type)})
    assert latent.knn_type_accuracy(shuffled, k=5)["accuracy"] < 0.5
    with pytest.raises(ParameterError, match="no 'train'"):
        latent.knn_type_accuracy(t.select(t.split != "train"))
    with pytest.raises(ParameterError):
        latent.knn_type_accuracy(t, k=0)


def test_knn_unseen_shapes_drops_twins():
    # every test point has a same-shape twin in train on top of it, and the rest of its
    # type far away on the wrong side: the unseen-shape score must not use the twin
    z = [[0, 0], [0, 0], [5, 5], [5.1, 5], [4.9, 5], [0.2, 0], [0.3, 0], [0.1, 0.1]]
    types = ["fcc", "fcc", "fcc", "fcc", "fcc", "bcc", "bcc", "bcc"]
    split = ["test", "train", "train", "train", "train", "train", "train", "train"]
    shape = ["a", "a", "b", "c", "d", "e", "f", "g"]
    t = LatentMap(
        z=z,
        label=list("abcdefgh"),
        index=np.arange(8),
        type=types,
        element=["Pt"] * 8,
        n_atoms=np.ones(8),
        hcp_fraction=np.full(8, np.nan),
        split=split,
        shape=shape,
        pdf=np.arange(8),
    )
    assert latent.knn_type_accuracy(t, k=1)["accuracy"] == 1.0
    assert latent.knn_type_accuracy(t, k=1, unseen_shapes=True)["accuracy"] == 0.0


def test_stacking_spearman():
    t = _synthetic_map()
    res = latent.stacking_spearman(t)
    assert res["rho"] > 0.95 and res["n"] == 30
    assert np.all(np.diff(res["position"][np.argsort(res["hcp_fraction"])]) > -0.2)
    rev = LatentMap(
        **{
            **t.__dict__,
            "hcp_fraction": np.where(
                np.isfinite(t.hcp_fraction), 1 - t.hcp_fraction, np.nan
            ),
        }
    )
    assert latent.stacking_spearman(rev)["rho"] < -0.95
    with pytest.raises(ParameterError, match="fcc and hcp"):
        latent.stacking_spearman(t.select(t.type != "hcp"))
    # ends from the stacking family itself (fractions 0 and 1), scored on the rest
    frac = t.hcp_fraction.copy()
    ends = np.flatnonzero(np.isfinite(frac))[[0, -1]]
    frac[ends] = [0.0, 1.0]
    u = LatentMap(**{**t.__dict__, "hcp_fraction": frac})
    res = latent.stacking_spearman(u, reference="stacking")
    assert res["n"] == 28 and res["rho"] > 0.95
    with pytest.raises(ParameterError, match="reference"):
        latent.stacking_spearman(u, reference="x")


# ------------------------------------------------------------------------------ CLI
def test_cli_map_with_catalog_and_data(tmp_path, tiny, capsys):
    model, cat, a, _ = tiny
    gr = _gr(tmp_path / "sample_A.gr", a)
    png = tmp_path / "map.png"
    rc = main(
        [
            "latent",
            "map",
            "--model",
            str(model),
            "--catalog",
            str(cat),
            "--data",
            str(gr),
            "-o",
            str(png),
            "--no-progress",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "sample_A" in out and png.stat().st_size > 1000
    t = latent.load_latent_map(tmp_path / "map.csv")
    assert t.type[-1] == "data" and t.label[-1] == "sample_A"
    assert np.allclose(t.z[-1], latent.encode(model, a)[0], atol=1e-5)
    assert len(t.catalog_rows()) == len(latent.compute_latent_map(model, cat))
    # no overwrite without --force, and the CSV is checked too
    assert (
        main(
            ["latent", "map", "--model", str(model), "--catalog", str(cat), "-o", str(png)]
        )
        == 2
    )
    assert "exists" in capsys.readouterr().err
    png.unlink()
    assert (
        main(
            ["latent", "map", "--model", str(model), "--catalog", str(cat), "-o", str(png)]
        )
        == 2
    )
    assert (
        main(
            [
                "latent",
                "map",
                "--model",
                str(model),
                "--catalog",
                str(cat),
                "-o",
                str(png),
                "--force",
                "--no-progress",
            ]
        )
        == 0
    )


def test_cli_map_without_catalog_uses_model_map(tmp_path, tiny, tiny_map, capsys):
    model, _, _, _ = tiny
    assert (
        main(["latent", "map", "--model", str(model), "-o", str(tmp_path / "x.png")]) == 2
    )
    assert "--catalog" in capsys.readouterr().err
    folder = tmp_path / "m"
    folder.mkdir()
    for f in ("config.json", "model.safetensors"):
        (folder / f).write_bytes((Path(model) / f).read_bytes())
    latent.save_latent_map(tiny_map, folder / latent.MAP_NAME)
    assert (
        main(["latent", "map", "--model", str(folder), "-o", str(tmp_path / "x.png")]) == 0
    )
    assert len(latent.load_latent_map(tmp_path / "x.csv")) == len(tiny_map)


def test_cli_interpolate(tmp_path, tiny, capsys):
    model, _, a, b = tiny
    fa, fb = _gr(tmp_path / "A.gr", a), _gr(tmp_path / "B.gr", b)
    out = tmp_path / "interp"
    args = [
        "latent",
        "interpolate",
        str(fa),
        str(fb),
        "--steps",
        "4",
        "--element",
        "Au",
        "--model",
        str(model),
        "-o",
        str(out),
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "4 steps" in text
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "interpolation.csv",
        "interpolation.png",
        "step_00.xyz",
        "step_01.xyz",
        "step_02.xyz",
        "step_03.xyz",
    ]
    with open(out / "interpolation.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["t"]) for r in rows] == pytest.approx([0, 1 / 3, 2 / 3, 1], abs=1e-5)
    n0 = int(rows[0]["n_atoms"])
    assert (out / "step_00.xyz").read_text().split()[0] == str(n0)
    assert main(args) == 2 and "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    with pytest.raises(SystemExit):
        main(["latent", "interpolate", str(fa), str(fb), "--steps", "1", "-o", str(out)])


def test_interpolation_element_from_headers_or_option(tmp_path, tiny):
    from diffpy_deepstruc.errors import ElementError
    from diffpy_deepstruc.pdfdata import load_pdf

    _, _, a, b = tiny
    au = load_pdf(_gr(tmp_path / "au.gr", a))
    bare = load_pdf(write_pdf(tmp_path / "bare.gr", *b))
    pt = load_pdf(write_pdf(tmp_path / "pt.gr", *b, {"composition": "Pt55"}))
    mixed = load_pdf(write_pdf(tmp_path / "m.gr", *b, {"composition": "Au144 S60 C180"}))
    assert latent.header_metal(mixed) == "Au" and latent.header_metal(bare) is None
    sym, note = latent.interpolation_element(au, mixed, names=("au.gr", "m.gr"))
    assert sym == "Au" and note == "Au (from the headers of au.gr and m.gr)"
    with pytest.raises(ElementError, match="bare.gr: no single metal.*--element"):
        latent.interpolation_element(au, bare, names=("au.gr", "bare.gr"))
    with pytest.raises(ElementError, match="au.gr names Au and pt.gr names Pt"):
        latent.interpolation_element(au, pt, names=("au.gr", "pt.gr"))
    sym, note = latent.interpolation_element(au, bare, "pt", names=("au.gr", "bare.gr"))
    assert sym == "Pt" and "au.gr names Au" in note
    sym, note = latent.interpolation_element(bare, bare, "Ag")
    assert note == "Ag (--element); the inputs' headers name no metal"


def test_cli_interpolate_says_which_element(tmp_path, tiny, capsys):
    model, _, a, b = tiny
    fa = _gr(tmp_path / "A.gr", a)
    fb = write_pdf(tmp_path / "B.gr", *b)  # no composition
    out = tmp_path / "interp"
    base = ["latent", "interpolate", str(fa), str(fb), "--steps", "2"]
    base += ["--model", str(model), "-o", str(out)]
    assert main(base) == 2
    assert "B.gr: no single metal" in capsys.readouterr().err
    assert not out.exists()
    assert main(base + ["--element", "Au"]) == 0
    text = capsys.readouterr().out
    assert "element: Au (--element)" in text
    with open(out / "interpolation.csv") as fh:
        assert {r["element"] for r in csv.DictReader(fh)} == {"Au"}


def test_map_plot_marks_best_and_keeps_labels_in_frame(tmp_path):
    import matplotlib.pyplot as plt

    from diffpy_deepstruc import plots

    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(0, 1, (300, 2)), np.zeros((50, 2))])
    types = ["stacking"] * 300 + ["icosahedron"] * 50
    data = {"a_long_label_at_the_corner": pts[:, :].max(0), "b": pts.min(0)}
    out = plots.plot_latent_map(
        pts, types, tmp_path / "m.png", data=data, samples=pts[:5], best=pts[0]
    )
    assert out.stat().st_size > 0
    fig, ax = plt.subplots()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    placed = []
    for xy in ([0.99, 0.99], [0.98, 0.985], [0.01, 0.01]):
        plots._label_inside(ax, np.array(xy), "a rather long label", placed)
    frame = ax.get_window_extent(fig.canvas.get_renderer())
    for box in placed[-3:]:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1
        assert frame.y0 <= box.y0 and box.y1 <= frame.y1
    assert not placed[0].overlaps(placed[1])
    plt.close(fig)
    fit = plots.plot_fit(
        np.arange(1, 10, 0.1),
        np.ones(90),
        np.ones(90),
        tmp_path / "f.png",
        rw=0.1,
        source="model sample 3",
    )
    assert fit.stat().st_size > 0


# ---------------------------------------------------------------- the shipped model
def _shipped_map(kind: str = "cvae") -> LatentMap:
    root = resources.files("diffpy_deepstruc") / "pretrained"
    if kind == "dae":
        root = root / "dae"
    if not (root / "config.json").is_file():
        pytest.skip(
            f"no shipped {kind} model yet (diffpy_deepstruc/pretrained"
            f"{'/dae' if kind == 'dae' else ''}/config.json): the latent-map "
            "numbers cannot be checked"
        )
    if not (root / latent.MAP_NAME).is_file():
        pytest.skip(
            f"the shipped {kind} model has no {latent.MAP_NAME}; make it with "
            "`python benchmarks/bench_latent.py --make-map`"
        )
    cfg = json.loads((root / "config.json").read_text())
    t = latent.load_latent_map(root / latent.MAP_NAME)
    assert t.meta.get("model_sha256") == cfg["weights"]["sha256"], (
        "the shipped latent_map.csv was made with other weights: recompute it"
    )
    return t


# Issue 7's acceptance thresholds on the shipped map.  v1/v2 (decoder reading the PDF
# beside z) missed both (kNN 0.536, Spearman 0.151); v3 met the kNN one but not the
# Spearman one (0.52); v5 (stacking-axis term in stage 1) meets both
# (benchmarks/bench_latent.py, docs/latent.md).


def test_shipped_map_knn_recovers_types():
    t = _shipped_map()
    assert t.meta.get("same_catalog_as_model"), "the map's catalog is not the model's"
    res = latent.knn_type_accuracy(t, k=5)
    assert res["n_test"] >= 50
    assert res["accuracy"] >= 0.90, res["per_type"]


def test_shipped_map_stacking_along_fcc_hcp():
    t = _shipped_map()
    res = latent.stacking_spearman(t)
    assert res["n"] >= 10
    assert res["rho"] >= 0.8, res["rho"]


def test_shipped_map_found_for_shipped_model():
    _shipped_map()
    got = latent.shipped_map_or_none(DeepStruc.pretrained())
    assert got is not None and got[0].shape[1] == 2 and len(got[0]) == len(got[1])
