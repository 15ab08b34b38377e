"""Training on a tiny synthetic catalog: data preparation, split, loss falls, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from diffpy_deepstruc.errors import CatalogError, CheckpointError, OutputExistsError
from diffpy_deepstruc.preprocess import PreprocessConfig
from diffpy_deepstruc.training import TrainConfig, prepare_data, split_structures, train

#: A small model and a coarse grid so a test epoch takes well under a second.
SMALL_PRE = PreprocessConfig(rmin=0.75, rmax=7.0, rstep=0.06, min_rmax=5.0)
SMALL_MODEL = {
    "conv_channels": [8, 8],
    "cond_dim": 32,
    "hidden": 32,
    "atom_dim": 16,
    "decoder_layers": 1,
    "adm_dim": 4,
}
N_MAX = 24


def _toy_pdf(xyz: np.ndarray, r: np.ndarray, sigma: float = 0.1) -> np.ndarray:
    """Gaussian-broadened pair-distance histogram / r (a stand-in for the Debye engine)."""
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    d = d[np.triu_indices(len(xyz), 1)]
    g = np.exp(-0.5 * ((r[:, None] - d[None]) / sigma) ** 2).sum(1) / np.maximum(r, 0.5)
    return g - g.mean()


def make_catalog(path, n_pdfs: int = 2, seed: int = 0, elements=("Pt", "Au", "Cu", "Ag")):
    """Write a synthetic catalog following the documented HDF5 schema (tiny shapes)."""
    rng = np.random.default_rng(seed)
    shapes = {
        "sc": [(x, y, z) for x in range(2) for y in range(2) for z in range(2)],
        "fcc": [
            (0, 0, 0),
            (0.5, 0.5, 0),
            (0.5, 0, 0.5),
            (0, 0.5, 0.5),
            (1, 0, 0),
            (0, 1, 0),
            (0, 0, 1),
            (1, 0.5, 0.5),
            (0.5, 1, 0.5),
            (0.5, 0.5, 1),
        ],
        "bcc": [
            (0, 0, 0),
            (1, 0, 0),
            (0, 1, 0),
            (0, 0, 1),
            (0.5, 0.5, 0.5),
            (1, 1, 0),
            (1, 0, 1),
            (0, 1, 1),
            (1, 1, 1),
        ],
        "icosahedron": None,
    }
    phi = (1 + 5**0.5) / 2
    ico = [(0, 0, 0)] + [
        p for a in (-1, 1) for b in (-phi, phi) for p in ((0, a, b), (a, b, 0), (b, 0, a))
    ]
    shapes["icosahedron"] = ico
    nn = {"Pt": 2.77, "Au": 2.88, "Cu": 2.55, "Ag": 2.89}
    r = np.arange(0.0, 25.0 + 1e-9, 0.05)
    xyz_rows, natoms, el, types, builders, nns = [], [], [], [], [], []
    for e in elements:
        for t, pts in shapes.items():
            p = np.asarray(pts, dtype=float)
            d = np.linalg.norm(p[:, None] - p[None], axis=-1)
            unit = d[d > 0].min()
            xyz = p / unit * nn[e]
            x = np.zeros((N_MAX, 3), np.float32)
            x[: len(p)] = xyz
            xyz_rows.append(x)
            natoms.append(len(p))
            el.append(e)
            types.append(t)
            builders.append(json.dumps({"variant": t}))
            nns.append(nn[e])
    g, ps, params = [], [], []
    for i, x in enumerate(xyz_rows):
        for _ in range(n_pdfs):
            sig = rng.uniform(0.08, 0.15)
            gg = _toy_pdf(x[: natoms[i]], r, sig) * rng.uniform(0.5, 2)
            gg += rng.normal(0, 0.01 * np.abs(gg).max(), gg.shape)
            g.append(gg.astype(np.float32))
            ps.append(i)
            params.append([0.7, 25, 0.04, 0, 2, 0.005, 1, 0.01])
    with h5py.File(path, "w") as h5:
        h5.attrs.update(
            format="diffpy-deepstruc-catalog", version=1, seed=seed, n_max=N_MAX
        )
        h5["r"] = r
        h5["structures/xyz"] = np.stack(xyz_rows)
        h5["structures/natoms"] = np.asarray(natoms, np.int32)
        str_dt = h5py.string_dtype()
        h5.create_dataset(
            "structures/element", data=np.array(el, dtype=object), dtype=str_dt
        )
        h5.create_dataset(
            "structures/type", data=np.array(types, dtype=object), dtype=str_dt
        )
        h5.create_dataset(
            "structures/builder", data=np.array(builders, dtype=object), dtype=str_dt
        )
        h5["structures/nn"] = np.asarray(nns, np.float32)
        h5["pdfs/g"] = np.stack(g)
        h5["pdfs/structure"] = np.asarray(ps, np.int32)
        ds = h5.create_dataset("pdfs/params", data=np.asarray(params, np.float32))
        ds.attrs["columns"] = "qmin,qmax,qdamp,qbroad,delta2,uiso,scale,noise"
    return path


def quiet_train(catalog, out, cfg, **kw):
    """:func:`train` on the tiny-test preprocessing, without progress bar or log."""
    return train(
        catalog, out, cfg, preprocess=SMALL_PRE, progress=False, log=lambda *_: None, **kw
    )


def train_tiny_model(directory: Path) -> tuple[Path, Path]:
    """A CVAE trained for 3 epochs on a tiny synthetic catalog (Ag, Au, Cu, Pt) in
    ``directory``: (model folder, catalog path).  Shared by the generator, latent and
    solve tests."""
    cat = make_catalog(directory / "tiny.h5")
    cfg = TrainConfig(
        epochs=3,
        batch_size=8,
        seed=0,
        threads=1,
        model=SMALL_MODEL,
        split_fractions=(0.5, 0.25, 0.25),
    )
    quiet_train(cat, directory / "model", cfg)
    return directory / "model", cat


@pytest.fixture(scope="module")
def tiny_catalog(tmp_path_factory):
    return make_catalog(tmp_path_factory.mktemp("cat") / "tiny.h5")


def _cfg(**kw):
    base = dict(
        epochs=6,
        batch_size=8,
        lr=3e-3,
        seed=1,
        anneal_epochs=2,
        patience=50,
        threads=1,
        model=SMALL_MODEL,
        split_fractions=(0.5, 0.25, 0.25),
    )
    base.update(kw)
    return TrainConfig(**base)


def test_prepare_data_shares_shapes_across_metals(tiny_catalog, tmp_path):
    data = prepare_data(tiny_catalog, SMALL_PRE, cache_dir=tmp_path)
    assert len(data.shape_natoms) == 4  # four shapes, four metals each
    assert data.pdf.shape == (32, SMALL_PRE.n_points)
    assert np.allclose(np.abs(data.pdf).max(1), 1.0)
    # scale (A per unit) follows the metal's nearest-neighbour distance
    sc = data.scale[data.types.astype(str) == "sc"]
    assert np.allclose(sc / sc[0], np.array([2.77, 2.88, 2.55, 2.89]) / 2.77, rtol=1e-5)
    again = prepare_data(tiny_catalog, SMALL_PRE, cache_dir=tmp_path)  # from the cache
    assert np.array_equal(again.pdf, data.pdf) and again.shape_keys == data.shape_keys


def test_split_keeps_structures_and_groups_together():
    types = np.array(["a"] * 20 + ["b"] * 10)
    groups = np.arange(30) // 2
    s = split_structures(types, groups, seed=3)
    allidx = np.concatenate([s["train"], s["val"], s["test"]])
    assert sorted(allidx.tolist()) == list(range(30))
    for name in ("val", "test"):
        assert set(types[s[name]]) == {"a", "b"}
        for other in ("train", "val", "test"):
            if other != name:
                assert not set(groups[s[name]]) & set(groups[s[other]])
    assert all(np.array_equal(s[k], split_structures(types, groups, seed=3)[k]) for k in s)


@pytest.mark.parametrize("kind", ["cvae", "dae"])
def test_loss_falls_and_checkpoint_written(tiny_catalog, tmp_path, kind):
    out = tmp_path / kind
    res = quiet_train(tiny_catalog, out, _cfg(kind=kind))
    rows = list(csv.DictReader(open(out / "loss_log.csv")))
    assert len(rows) == 6 and res.epochs_run == 6
    first, last = float(rows[0]["train_sat"]), float(rows[-1]["train_sat"])
    assert last < 0.7 * first
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    conf = json.loads((out / "config.json").read_text())
    assert conf["split"]["seed"] == 1 and conf["kind"] == kind
    assert conf["elements"] == ["Ag", "Au", "Cu", "Pt"]
    with pytest.raises(OutputExistsError):
        quiet_train(tiny_catalog, out, _cfg(kind=kind))


def test_deterministic_and_resume(tiny_catalog, tmp_path):
    a = quiet_train(tiny_catalog, tmp_path / "a", _cfg(epochs=4))
    b = quiet_train(tiny_catalog, tmp_path / "b", _cfg(epochs=4), stop_after=2)
    c = quiet_train(tiny_catalog, tmp_path / "b", _cfg(epochs=4), resume=True)
    assert b.epochs_run == 2 and c.epochs_run == 4
    la = [r["train_loss"] for r in a.log]
    lc = [r["train_loss"] for r in c.log]
    assert np.allclose(la, lc, rtol=1e-5)
    with pytest.raises(CheckpointError):
        quiet_train(tiny_catalog, tmp_path / "b", _cfg(epochs=5, lr=1e-3), resume=True)


def test_bad_catalog(tmp_path):
    p = tmp_path / "x.h5"
    p.write_bytes(b"not hdf5")
    with pytest.raises(CatalogError):
        train(p, tmp_path / "m", _cfg(), preprocess=SMALL_PRE, progress=False)
