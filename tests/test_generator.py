"""Generator: candidates from a PDF with a tiny trained model; the shipped model loads."""

from __future__ import annotations

from importlib import resources

import h5py
import numpy as np
import pytest
from test_training import train_tiny_model

from diffpy_deepstruc.errors import ElementError, PDFDataError
from diffpy_deepstruc.generator import (
    Candidate,
    DeepStruc,
    nn_peak_position,
    unit_nn_distance,
)
from diffpy_deepstruc.metrics import coordinate_mae, pdf_agreement, summarize


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    model_dir, cat = train_tiny_model(d)
    with h5py.File(cat) as h5:
        r, g = h5["r"][()], h5["pdfs/g"][0]
    return model_dir, (r, g)


def test_generate_candidates(tiny_model):
    path, pdf = tiny_model
    ds = DeepStruc.load(path)
    c = ds.generate(pdf, n=4, element="Au", seed=3)
    assert len(c) == 4 and all(isinstance(x, Candidate) for x in c)
    assert c[0].is_prior_mean and not c[1].is_prior_mean
    mu, std = ds.encode(pdf)
    assert np.allclose(c[0].latent, mu, atol=1e-6) and std.shape == mu.shape
    for x in c:
        assert len(x.structure) == x.n_atoms == len(x.xyz)
        assert {a.element for a in x.structure} == {"Au"}
        assert np.allclose([a.Uisoequiv for a in x.structure], 0.005)
        assert np.isfinite(x.residual) and x.scale > 0
    again = ds.generate(pdf, n=4, element="Au", seed=3)
    assert all(np.allclose(a.xyz, b.xyz) for a, b in zip(c, again, strict=True))
    s = ds.decode(mu, pdf, element="Pt")
    assert len(s) == c[0].n_atoms


def test_generator_errors(tiny_model):
    path, (r, g) = tiny_model
    ds = DeepStruc.load(path)
    # any metal is accepted, also one outside the training metals; non-metals are not
    assert len(ds.generate((r, g), n=1, element="Os")) == 1
    with pytest.raises(ElementError, match="Si is not a metal"):
        ds.generate((r, g), n=1, element="Si")
    with pytest.raises(PDFDataError):
        ds.generate((r[r < 10], g[r < 10]), n=1, element="Au")


def test_peak_and_nn_helpers():
    r = np.arange(0, 10, 0.01)
    g = np.exp(-0.5 * ((r - 2.773) / 0.05) ** 2) + 0.5 * np.exp(
        -0.5 * ((r - 3.9) / 0.05) ** 2
    )
    assert nn_peak_position(r, g) == pytest.approx(2.773, abs=2e-3)
    x = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], float) * 2.5
    assert unit_nn_distance(x) == pytest.approx(2.5)


def test_metrics_basics():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(20, 3)) * 4
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    if np.linalg.det(rot) < 0:
        rot[:, 0] *= -1
    pred = (true[rng.permutation(20)] @ rot.T) * 1.1 + 3.0
    m = coordinate_mae(pred, true)
    assert m["mae"] < 1e-6
    mse, pr = pdf_agreement(np.sin(np.arange(50.0)), 3 * np.sin(np.arange(50.0)))
    assert mse < 1e-12 and pr == pytest.approx(1.0)
    cand = {
        "count_exact": True,
        "mae": 0.1,
        "position_mae": 0.2,
        "pdf_mse": 0.01,
        "pdf_pearson": 0.9,
    }
    rep = summarize(
        [
            {
                "type": "fcc",
                "candidates": [cand, dict(cand, mae=0.05)],
                "true_pdf_pearson": 0.99,
            }
        ]
    )
    assert rep["overall"]["best_mae"]["mae"]["mean"] == pytest.approx(0.05)
    assert rep["overall"]["prior_mean"]["mae"]["mean"] == pytest.approx(0.1)


def test_shipped_model_loads():
    root = resources.files("diffpy_deepstruc") / "pretrained"
    if not (root / "config.json").is_file():
        pytest.skip("no pretrained model shipped yet")
    ds = DeepStruc.pretrained()
    assert ds.kind == "cvae"
    r = np.arange(0, 30.01, 0.01)
    g = np.sin(2 * np.pi * r / 2.77) * np.exp(-r / 8)
    c = ds.generate((r, g), n=2, element="Pt", seed=0)
    assert len(c) == 2 and c[0].n_atoms >= 2
