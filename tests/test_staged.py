"""The staged training schedule (diffpy_deepstruc.staged): tiny runs on a tiny catalog."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from test_training import SMALL_MODEL, SMALL_PRE, _cfg, make_catalog, quiet_train

from diffpy_deepstruc.checkpoint import load_checkpoint
from diffpy_deepstruc.errors import CheckpointError
from diffpy_deepstruc.staged import (
    _ShapeLatents,
    initial_latents,
    prior_samples,
    shape_labels,
    stacking_loss,
    stacking_targets,
)

STAGED_SMALL = {"dense_hidden": 48, "dense_layers": 2, "fourier": 8}


@pytest.fixture(scope="module")
def tiny_catalog(tmp_path_factory):
    return make_catalog(tmp_path_factory.mktemp("cat") / "tiny.h5")


def _staged(**kw):
    base = dict(
        schedule="staged",
        shape_steps=150,
        shape_batch=4,
        prior_batch=8,
        epochs=4,
        model={**SMALL_MODEL, **STAGED_SMALL},
    )
    base.update(kw)
    return _cfg(**base)


def test_shape_labels_from_keys():
    keys = [
        'fcc|{"layers": [1, 2, 1]}',
        'hcp|{"a": 1}',
        'stacking|{"sequence": "ABAB"}',
        'stacking|{"sequence": "ABC"}',
        'bcc|{"n": 2}',
    ]
    tidx, hcp, names = shape_labels(keys)
    assert names == ["bcc", "fcc", "hcp", "stacking"]
    assert tidx.tolist() == [1, 2, 3, 3, 0]
    assert hcp[0] == 0 and hcp[1] == 1 and np.isnan(hcp[4])
    assert hcp[2] == 1.0  # ABAB: every layer has equal neighbours on both sides
    assert hcp[3] == 0.0  # ABC: the fcc stack


def test_initial_latents_order_by_pdf():
    # three shapes whose PDFs differ along one direction: the first component orders them
    base = np.linspace(0, 1, 50)
    pdf = np.stack([base * k for k in (0, 0, 1, 1, 2, 2)])
    z = initial_latents(pdf, np.array([0, 0, 1, 1, 2, 2]), 4, 2)
    assert z.shape == (4, 2) and z.dtype == np.float32
    assert np.all(z[3] == 0)  # no PDFs: origin
    assert abs(z[:3, 0].std() - 1) < 1e-6
    order = np.argsort(z[:3, 0])
    assert order.tolist() in ([0, 1, 2], [2, 1, 0])


@pytest.mark.parametrize("kind", ["cvae", "dae"])
def test_staged_loss_falls_checkpoint_reloads(tiny_catalog, tmp_path, kind):
    out = tmp_path / kind
    res = quiet_train(tiny_catalog, out, _staged(kind=kind))
    rows = list(csv.DictReader(open(out / "loss_log.csv")))
    stage1 = [r for r in rows if r["epoch"].startswith("s")]
    stage2 = [r for r in rows if r["epoch"].isdigit()]
    readout = [r for r in res.log if r["epoch"] == "readout"]
    assert len(stage1) == 5 and len(stage2) == 4 and res.best_epoch >= 0
    # the least-squares readout reproduces the training shapes at their latent means
    assert (
        float(readout[0]["train_rms_after"]) < 0.01 < float(readout[0]["train_rms_before"])
    )
    assert float(stage1[-1]["train_sat"]) < 0.5 * float(stage1[0]["train_sat"])
    assert float(stage2[-1]["train_latent"]) < float(stage2[0]["train_latent"])
    conf = json.loads((out / "config.json").read_text())
    assert conf["model"]["decoder_pdf"] is False
    assert conf["model"]["prior"] == "mixture" and conf["model"]["n_components"] == 4
    assert conf["training"]["schedule"] == "staged"
    model = load_checkpoint(out)
    again = load_checkpoint(out)
    pdf = torch.randn(3, SMALL_PRE.n_points)
    with torch.no_grad():
        c = model.condition(pdf)
        mu, _ = model.prior(c)
        a, b = model.decode(mu, c), again.decode(mu, again.condition(pdf))
        # the decoder reads z alone: another PDF condition does not change the output
        other = model.decode(mu, torch.randn_like(c))
    for k in ("mask_logit", "sat_dist", "emb", "scale"):
        assert torch.equal(a[k], b[k])
    for k in ("mask_logit", "sat_dist", "emb"):
        assert torch.equal(a[k], other[k])


def test_staged_resume_repeats_uninterrupted(tiny_catalog, tmp_path):
    a = quiet_train(tiny_catalog, tmp_path / "a", _staged(epochs=3))
    b = quiet_train(tiny_catalog, tmp_path / "b", _staged(epochs=3), stop_after=1)
    c = quiet_train(tiny_catalog, tmp_path / "b", _staged(epochs=3), resume=True)
    assert b.stopped == "stop_after" and c.stopped == "epochs"
    la = [r["train_loss"] for r in a.log if "train_loss" in r]
    lc = [r["train_loss"] for r in c.log if "train_loss" in r]
    assert len(la) == len(lc) > 3
    assert np.allclose(la, lc, rtol=1e-5)
    with pytest.raises(CheckpointError):
        quiet_train(
            tiny_catalog, tmp_path / "b", _staged(epochs=3, aux_weight=0.5), resume=True
        )


def test_mixture_prior_samples_distinct_components():
    from diffpy_deepstruc.models import ModelConfig, build_model

    cfg = ModelConfig(
        n_points=40,
        n_max=6,
        cond_dim=8,
        hidden=8,
        conv_channels=(4,),
        prior="mixture",
        n_components=5,
        decoder_pdf=False,
        fourier=4,
    )
    for kind in ("cvae", "dae"):
        model = build_model({**cfg.to_dict(), "kind": kind})
        with torch.no_grad():
            model.comp_mean.copy_(torch.arange(10.0).view(5, 2))
            model.comp_logvar.fill_(-30.0)
        c = torch.randn(3, 8)
        mode, _ = model.prior(c)
        top = model.prior_logits(c).argmax(-1)
        assert torch.equal(mode, model.comp_mean[top])
        z = model.sample_prior(c, 5, generator=torch.Generator().manual_seed(0))
        assert z.shape == (3, 5, 2)
        assert torch.allclose(z[:, 0], mode)
        for b in range(3):  # five draws without replacement: every component once
            got = sorted(z[b, :, 0].round().tolist())
            assert got == [0.0, 2.0, 4.0, 6.0, 8.0]
        # ancestral sampling: components drawn in proportion to their weights (the
        # component means and variances are buffers: zeroing the parameters leaves
        # them and makes the weights uniform)
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
        logits = model.prior_logits(c)
        assert torch.allclose(logits, logits[:, :1].expand_as(logits))  # uniform
        z = model.sample_prior(
            c, 4000, generator=torch.Generator().manual_seed(0), distinct=False
        )
        assert torch.allclose(z[:, 0], model.prior(c)[0])
        freq = torch.stack(
            [(z[:, 1:, 0].round() == 2.0 * k).double().mean(1) for k in range(5)]
        )
        assert torch.allclose(freq, torch.full_like(freq, 0.2), atol=0.03)
        z2 = model.sample_prior(
            c, 4000, generator=torch.Generator().manual_seed(0), distinct=False
        )
        assert torch.equal(z, z2)
    with pytest.raises(Exception, match="n_components"):
        ModelConfig(prior="mixture", n_components=0)


def _stack_setup():
    # shapes: 0, 1 fcc; 2 hcp; 3, 4, 5 stacking (hcp fractions 0.25, 0.5, 1.0); 6 bcc
    keys = [
        'fcc|{"a": 1}',
        'fcc|{"a": 2}',
        'hcp|{"a": 1}',
        'stacking|{"sequence": "ABCACB"}',
        'stacking|{"sequence": "ABCB"}',
        'stacking|{"sequence": "ABAB"}',
        'bcc|{"n": 2}',
    ]
    tidx, hcp, names = shape_labels(keys)
    counts = np.array([1, 3, 2, 1, 1, 1, 5])
    return stacking_targets(tidx, hcp, names, np.arange(7), counts), hcp


def test_stacking_loss_zero_on_the_line_and_rotation_invariant():
    t, hcp = _stack_setup()
    assert t is not None
    assert torch.allclose(t["fcc_w"], torch.tensor([0.25, 0.75]))
    # fcc centroid (weights 1:3) at (0, 0), hcp at (2, 0); stacking shapes at x = 2 h
    # with arbitrary offsets across the line: the loss is 0
    m = torch.zeros(7, 2)
    m[0], m[1] = torch.tensor([0.6, 1.0]), torch.tensor([-0.2, -1 / 3])
    m[2] = torch.tensor([2.0, 0.0])
    for i in (3, 4, 5):
        m[i] = torch.tensor([2 * float(hcp[i]), 0.7 * i])
    m[6] = torch.tensor([5.0, 5.0])  # bcc: not part of the term
    assert float(stacking_loss(m, t)) == pytest.approx(0.0, abs=1e-10)
    # moving one stacking shape by 0.5 along the line (= 0.25 fcc->hcp units) costs
    # its weight (1/3) x 0.25^2, whatever the map's rotation or scale
    m[4, 0] += 0.5
    rot = torch.tensor([[0.6, -0.8], [0.8, 0.6]])
    for mm in (m, 3.0 * m @ rot.T):
        assert float(stacking_loss(mm, t)) == pytest.approx(0.25**2 / 3, rel=1e-5)


def test_stacking_targets_need_fcc_hcp_and_stacking():
    tidx, hcp, names = shape_labels(['fcc|{"a": 1}', 'stacking|{"sequence": "ABCB"}'])
    assert stacking_targets(tidx, hcp, names, np.arange(2), np.ones(2)) is None


def test_std_floor_scales_with_the_map():
    z0 = np.array([[3.0, 4.0], [0.0, 0.0], [-3.0, -4.0]], np.float32)
    lat = _ShapeLatents(z0, 1, stochastic=True, std_floor=0.1)
    idx = torch.arange(3)
    # RMS radius sqrt((25 + 0 + 25) / 3); log_std starts at -4 (0.018) < floor
    floor = 0.1 * np.sqrt(50 / 3)
    assert torch.allclose(lat.std(idx), torch.full((3, 2), floor), rtol=1e-6)
    with torch.no_grad():
        lat.mean.mul_(10.0)
    assert torch.allclose(lat.std(idx), torch.full((3, 2), 10 * floor), rtol=1e-6)
    dae = _ShapeLatents(z0, 1, stochastic=False, std_floor=0.1)
    assert float(dae.std(idx).abs().max()) == 0.0


def test_prior_samples_go_to_the_nearest_shape():
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    z, idx = prior_samples(means, 500, torch.Generator().manual_seed(0))
    assert z.shape == (500, 2) and idx.shape == (500,)
    d = ((z[:, None] - means[None]) ** 2).sum(-1)
    assert torch.equal(idx, d.argmin(1))
    assert float(z.mean()) == pytest.approx(0.0, abs=0.15)  # draws of N(0, I)
    # same generator seed, same draws
    z2, _ = prior_samples(means, 500, torch.Generator().manual_seed(0))
    assert torch.equal(z, z2)
