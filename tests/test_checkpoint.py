"""Checkpoints: exact round trip; tampered, truncated and foreign files are refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from diffpy_deepstruc.checkpoint import load_checkpoint, read_config, save_checkpoint
from diffpy_deepstruc.errors import CheckpointError, OutputExistsError
from diffpy_deepstruc.models import ModelConfig, build_model
from diffpy_deepstruc.preprocess import PreprocessConfig
from diffpy_deepstruc.representation import satellite_positions

PRE = PreprocessConfig(rmin=0.75, rmax=7.0, rstep=0.06, min_rmax=5.0)
MCFG = dict(
    n_points=PRE.n_points,
    n_max=12,
    n_satellites=5,
    conv_channels=(4, 8),
    cond_dim=16,
    hidden=16,
    atom_dim=8,
    decoder_layers=1,
    adm_dim=3,
)


def _conf():
    return {
        "preprocess": PRE,
        "representation": {
            "n_max": 12,
            "n_satellites": 5,
            "satellites": satellite_positions(5).tolist(),
        },
        "elements": ["Au", "Pt"],
        "catalog": {"sha256": "0" * 64},
        "split": {"seed": 3},
    }


@pytest.fixture(params=["cvae", "dae"])
def saved(request, tmp_path):
    torch.manual_seed(0)
    m = build_model(ModelConfig(kind=request.param, **MCFG))
    m.log_scale_mean.fill_(2.3)
    m.latent_noise.fill_(0.2)
    d = save_checkpoint(m, _conf(), tmp_path / "model")
    return m.eval(), d


def test_roundtrip_identical_outputs(saved):
    m, d = saved
    m2 = load_checkpoint(d)
    assert m2.kind == m.kind
    pdf = torch.randn(2, PRE.n_points)
    with torch.no_grad():
        c1, c2 = m.condition(pdf), m2.condition(pdf)
        z = m.prior(c1)[0]
        o1, o2 = m.decode(z, c1), m2.decode(z, c2)
    for k in o1:
        assert torch.equal(o1[k], o2[k]), k
    assert m2.meta["elements"] == ["Au", "Pt"]
    assert m2.meta["split"]["seed"] == 3
    assert m2.preprocess == PRE
    assert float(m2.latent_noise) == pytest.approx(0.2)
    assert len(m2.meta["weights"]["sha256"]) == 64


def test_no_overwrite(saved):
    m, d = saved
    with pytest.raises(OutputExistsError):
        save_checkpoint(m, _conf(), d)
    save_checkpoint(m, _conf(), d, overwrite=True)


def test_truncated_weights_refused(saved):
    _, d = saved
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(d)


def test_tampered_weights_refused(saved):
    _, d = saved
    w = d / "model.safetensors"
    b = bytearray(w.read_bytes())
    b[-5] ^= 0xFF
    w.write_bytes(bytes(b))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(d)


def test_tampered_config_refused(saved, tmp_path):
    _, d = saved
    cfg = json.loads((d / "config.json").read_text())
    # an architecture change that no longer fits the weights
    bad = json.loads(json.dumps(cfg))
    bad["model"]["atom_dim"] = 9
    (d / "config.json").write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match="tensor"):
        load_checkpoint(d)
    # a satellite count that disagrees with the model
    bad = json.loads(json.dumps(cfg))
    bad["representation"]["n_satellites"] = 6
    (d / "config.json").write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match="representation"):
        load_checkpoint(d)
    # a digest edited to match other weights
    bad = json.loads(json.dumps(cfg))
    bad["weights"]["sha256"] = "f" * 64
    (d / "config.json").write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(d)
    (d / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_checkpoint(d)
    (d / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a diffpy-deepstruc"):
        read_config(d)


def test_foreign_or_missing_files(tmp_path, saved):
    _, d = saved
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "nowhere")
    e = tmp_path / "copy"
    shutil.copytree(d, e)
    (e / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(e)
    # a pickle where safetensors should be: rejected (digest first, never unpickled)
    f = tmp_path / "pickle"
    shutil.copytree(d, f)
    torch.save({"x": torch.zeros(2)}, f / "model.safetensors")
    with pytest.raises(CheckpointError):
        load_checkpoint(f)


def test_other_weights_with_matching_digest_refused(tmp_path):
    """Weights of another architecture with a config rewritten to match its digest."""
    from safetensors.torch import save as st_save

    m = build_model(ModelConfig(**MCFG))
    d = save_checkpoint(m, _conf(), tmp_path / "m")
    state = {k: v.clone() for k, v in m.state_dict().items()}
    state["decoder.slots"] = torch.zeros(13, 8)
    data = st_save(state)
    (d / "model.safetensors").write_bytes(data)
    cfg = json.loads((d / "config.json").read_text())
    import hashlib

    cfg["weights"]["sha256"] = hashlib.sha256(data).hexdigest()
    cfg["weights"]["bytes"] = len(data)
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError):
        load_checkpoint(d)
    assert np.isfinite(1.0)


def test_half_storage(tmp_path):
    torch.manual_seed(0)
    m = build_model(ModelConfig(**MCFG)).eval()
    full = save_checkpoint(m, _conf(), tmp_path / "full")
    half = save_checkpoint(m, _conf(), tmp_path / "half", half=True)
    assert (half / "model.safetensors").stat().st_size < 0.7 * (
        full / "model.safetensors"
    ).stat().st_size
    m2 = load_checkpoint(half)
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values(), strict=True):
        assert b.dtype == a.dtype and torch.allclose(a, b, rtol=1e-2, atol=1e-3), k
    # the float16 table cannot be passed off as float32 weights
    cfg = json.loads((half / "config.json").read_text())
    cfg["weights"]["storage"] = "float32"
    (half / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError):
        load_checkpoint(half)
