"""Networks: shapes, symmetry of the aDM, prior sampling, preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffpy_deepstruc.errors import ParameterError, PDFDataError
from diffpy_deepstruc.models import (
    CVAE,
    DAE,
    ModelConfig,
    build_model,
    count_parameters,
    pairwise_distances,
)
from diffpy_deepstruc.preprocess import (
    PreprocessConfig,
    prepare_input,
    preprocess_batch,
    preprocess_pdf,
)

SMALL = dict(
    n_points=91,
    n_max=12,
    n_satellites=5,
    conv_channels=(4, 8),
    cond_dim=16,
    hidden=16,
    atom_dim=8,
    decoder_layers=1,
    adm_dim=3,
)


@pytest.mark.parametrize("kind", ["cvae", "dae"])
def test_forward_shapes(kind):
    torch.manual_seed(0)
    m = build_model(ModelConfig(kind=kind, **SMALL))
    assert isinstance(m, CVAE if kind == "cvae" else DAE)
    pdf = torch.randn(3, 91)
    sat = torch.rand(3, 12, 5)
    mask = torch.arange(12)[None] < torch.tensor([[4], [12], [7]])
    out = m(pdf, sat, mask)
    assert out["mask_logit"].shape == (3, 12)
    assert out["sat_dist"].shape == (3, 12, 5) and (out["sat_dist"] >= 0).all()
    assert out["emb"].shape == (3, 12, 3)
    assert out["scale"].shape == (3,) and (out["scale"] > 0).all()
    for k in ("z", "mu_q", "logvar_q", "mu_p", "logvar_p"):
        assert out[k].shape == (3, 2)
    if kind == "dae":
        assert torch.equal(out["z"], out["mu_q"])


def test_posterior_is_permutation_invariant():
    torch.manual_seed(0)
    m = build_model(ModelConfig(**SMALL)).eval()
    c = m.condition(torch.randn(1, 91))
    sat = torch.rand(1, 12, 5)
    mask = torch.arange(12)[None] < 6
    perm = torch.cat([torch.randperm(6), torch.arange(6, 12)])
    a = m.posterior(sat, mask, c)[0]
    b = m.posterior(sat[:, perm], mask[:, perm], c)[0]
    assert torch.allclose(a, b, atol=1e-6)


def test_pairwise_distances():
    e = torch.randn(2, 7, 4, dtype=torch.float64)
    d = pairwise_distances(e, eps=0.0)
    assert torch.allclose(d, torch.cdist(e, e), atol=1e-7)
    assert torch.equal(torch.diagonal(d, dim1=1, dim2=2), torch.zeros(2, 7, dtype=d.dtype))


def test_prior_sampling_first_is_mean():
    m = build_model(ModelConfig(**SMALL)).eval()
    c = m.condition(torch.randn(2, 91))
    z = m.sample_prior(c, 5, generator=torch.Generator().manual_seed(1))
    assert z.shape == (2, 5, 2)
    assert torch.allclose(z[:, 0], m.prior(c)[0])
    z2 = m.sample_prior(c, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(z, z2)


def test_default_model_is_compact():
    assert count_parameters(build_model(ModelConfig())) < 5_000_000


def test_config_roundtrip_and_validation():
    cfg = ModelConfig(kind="dae", latent=3)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ParameterError):
        ModelConfig(kind="gan")
    with pytest.raises(ParameterError):
        ModelConfig.from_dict({"bogus": 1})


def _toy(r, r1=2.77):
    return np.exp(-0.5 * ((r - r1) / 0.08) ** 2) * 3 + 0.5 * np.sin(
        2 * np.pi * r / r1
    ) * np.exp(-r / 8)


def test_preprocess_grid_and_normalisation():
    cfg = PreprocessConfig()
    r = np.arange(0, 40, 0.01)
    g = _toy(r)
    x, r1 = prepare_input(r, g, cfg)
    assert x.shape == (cfg.n_points,) and x.dtype == np.float32
    assert np.isclose(np.abs(x).max(), 1.0)
    assert r1 == pytest.approx(2.77, abs=0.01)
    assert np.allclose(x, preprocess_batch(r, g[None], cfg)[0], atol=1e-6)
    # reduced grid: the same shape at another scale gives (nearly) the same input
    x2 = preprocess_pdf(r * 1.1, cfg, g=g)
    assert np.abs(x - x2).max() < 0.05
    ab = PreprocessConfig(mode="absolute", rmin=2.0, rmax=30.0, rstep=0.1, min_rmax=20.0)
    assert preprocess_pdf(r, ab, g=g).shape == (281,)


def test_preprocess_short_and_coarse_data():
    cfg = PreprocessConfig(mode="absolute", rmin=2.0, rmax=30.0, rstep=0.1, min_rmax=20.0)
    r = np.arange(0, 25.0, 0.02)  # ends before rmax=30 but beyond min_rmax=20
    x = preprocess_pdf(r, cfg, g=_toy(r))
    assert np.all(x[cfg.r_grid() > r[-1]] == 0)
    with pytest.raises(PDFDataError, match="r <= 2 A up to at least 20 A"):
        preprocess_pdf(np.arange(3, 30, 0.01), cfg, g=np.ones(2700))
    with pytest.raises(PDFDataError, match="needs G\\(r\\) over"):
        r = np.arange(0, 15, 0.01)
        preprocess_pdf(r, cfg, g=_toy(r))
    with pytest.raises(PDFDataError, match="coarser"):
        r = np.arange(0, 30, 0.5)
        preprocess_pdf(r, cfg, g=_toy(r))
    with pytest.raises(PDFDataError):
        r = np.arange(0, 30, 0.01)
        preprocess_pdf(r, cfg, g=np.zeros_like(r))
    red = PreprocessConfig()
    with pytest.raises(PDFDataError, match="nearest-neighbour peak"):
        r = np.arange(0, 30, 0.01)
        preprocess_pdf(r, red, g=np.exp(-r))
    with pytest.raises(PDFDataError, match="x the nearest-neighbour distance"):
        r = np.arange(0, 12, 0.01)
        preprocess_pdf(r, red, g=_toy(r))
