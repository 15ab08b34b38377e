"""Model checkpoints: safetensors weights + a JSON config, validated on load.

A checkpoint is a folder holding two files:

``model.safetensors``
    The ``state_dict`` of a :class:`~diffpy_deepstruc.models.CVAE` / ``DAE`` (float32
    tensors, safetensors format: no pickle, no code).
``config.json``
    Everything needed to rebuild and use the model: the architecture
    (:class:`~diffpy_deepstruc.models.ModelConfig`), the PDF preprocessing
    (:class:`~diffpy_deepstruc.preprocess.PreprocessConfig`), the representation
    (``n_max``, satellites count and positions), the supported elements, the training
    catalog's SHA-256, the split seed, the package version and the weights' SHA-256 with
    the name, shape and dtype of every tensor.

:func:`load_checkpoint` refuses, with :class:`~diffpy_deepstruc.errors.CheckpointError`
and a message saying what is wrong, anything that does not match: a missing or
truncated file, a digest mismatch (tampered weights or config), a foreign file, missing
or extra tensors, wrong shapes.  ``torch.load`` is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .errors import CheckpointError, DeepStrucError, OutputExistsError
from .fileio import atomic_write_bytes, atomic_write_text
from .models import DeepStrucNet, ModelConfig, build_model
from .preprocess import PreprocessConfig

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "save_checkpoint",
    "load_checkpoint",
    "read_config",
    "sha256_file",
    "export_checkpoint",
]

FORMAT = "diffpy-deepstruc-model"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_MAX_CONFIG_BYTES = 4 * 1024 * 1024
_REQUIRED = ("format", "format_version", "model", "preprocess", "representation", "weights")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _tensor_table(state: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    return {
        k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
        for k, v in sorted(state.items())
    }


#: Matrices kept in float32 by the float16 export: the decoder's Fourier frequencies
#: (``2 pi B z`` with ``|B|`` up to ~30 would lose a tenth of a radian in float16).
FULL_PRECISION = ("fourier_b", "comp_mean", "comp_logvar")


def _halved(name: str, v: torch.Tensor) -> bool:
    """Is tensor ``name`` stored as float16 in ``float16-matrices`` storage?"""
    return v.is_floating_point() and v.dim() >= 2 and not name.endswith(FULL_PRECISION)


def save_checkpoint(
    model: DeepStrucNet,
    config: dict[str, Any],
    directory: str | os.PathLike,
    overwrite: bool = False,
    half: bool = False,
) -> Path:
    """Write ``model`` and its config into ``directory``.

    Parameters
    ----------
    model : CVAE or DAE
    config : dict
        Extra JSON-able entries; must hold ``preprocess`` (dict or
        :class:`PreprocessConfig`) and ``representation`` (``n_max``, ``n_satellites``,
        ``satellites`` [S][3]); may hold ``elements``, ``catalog``, ``split``,
        ``training``, ... .  ``model``, ``weights``, ``format`` and ``package_version``
        are filled in here.
    directory : path
        Created if needed.
    overwrite : bool
        Replace an existing checkpoint.
    half : bool
        Store weight matrices (tensors of 2 or more dimensions) as float16, half the
        size (the shipped model); they are cast back to float32 on loading.

    Returns
    -------
    Path
        The checkpoint folder.

    Raises
    ------
    OutputExistsError
        ``directory`` already holds a checkpoint and ``overwrite`` is False.
    """
    from safetensors.torch import save as st_save

    d = Path(directory)
    wpath, cpath = d / WEIGHTS_NAME, d / CONFIG_NAME
    check_overwrite(d, overwrite)
    cfg = dict(config)
    pre = cfg.get("preprocess")
    if isinstance(pre, PreprocessConfig):
        cfg["preprocess"] = pre.to_dict()
    if "preprocess" not in cfg or "representation" not in cfg:
        raise CheckpointError("checkpoint config needs 'preprocess' and 'representation'")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: (v.half() if _halved(k, v) else v) for k, v in state.items()}
    data = st_save(state, metadata={"format": FORMAT})
    cfg.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        package_version=__version__,
        model=model.config.to_dict(),
        weights={
            "file": WEIGHTS_NAME,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "storage": "float16-matrices" if half else "float32",
            "tensors": _tensor_table(state),
        },
    )
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(wpath, data, overwrite=True)
    atomic_write_text(
        cpath, json.dumps(cfg, indent=1, sort_keys=True) + "\n", overwrite=True
    )
    return d


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and check the structure of ``config.json`` (no weights are read).

    Raises
    ------
    CheckpointError
        Missing, oversized, non-JSON or foreign config.
    """
    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(
            f"{d}: not a checkpoint folder (expected {CONFIG_NAME} and "
            f"{WEIGHTS_NAME} inside)"
        )
    cpath = d / CONFIG_NAME
    if not cpath.is_file():
        raise CheckpointError(f"{d}: {CONFIG_NAME} is missing")
    if cpath.stat().st_size > _MAX_CONFIG_BYTES:
        raise CheckpointError(f"{cpath}: too large to be a model config")
    try:
        cfg = json.loads(cpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"{cpath}: not valid JSON ({exc}); the file is corrupted"
        ) from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise CheckpointError(
            f"{cpath}: not a diffpy-deepstruc model config "
            f"(format {cfg.get('format') if isinstance(cfg, dict) else None!r})"
        )
    if cfg.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{cpath}: format version {cfg.get('format_version')!r} is not "
            f"supported (this package reads {FORMAT_VERSION})"
        )
    missing = [k for k in _REQUIRED if k not in cfg]
    if missing:
        raise CheckpointError(f"{cpath}: missing entries {missing}")
    return cfg


def load_checkpoint(
    directory: str | os.PathLike, device: str | torch.device = "cpu"
) -> DeepStrucNet:
    """Rebuild a model from a checkpoint folder, validating everything.

    The returned model is in eval mode and carries the full config as ``model.meta``
    (dict), and ``model.preprocess`` (:class:`PreprocessConfig`).

    Raises
    ------
    CheckpointError
        Missing/truncated/tampered/foreign files, or a config that does not match the
        weights (keys, shapes, dtypes, digest).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    d = Path(directory)
    cfg = read_config(d)
    w = cfg["weights"]
    wname = w.get("file", WEIGHTS_NAME) if isinstance(w, dict) else None
    if wname != WEIGHTS_NAME:
        raise CheckpointError(f"{d}: unexpected weights file entry {wname!r}")
    wpath = d / WEIGHTS_NAME
    if not wpath.is_file():
        raise CheckpointError(f"{d}: {WEIGHTS_NAME} is missing")
    data = wpath.read_bytes()
    if "bytes" in w and len(data) != w["bytes"]:
        raise CheckpointError(
            f"{wpath}: {len(data)} bytes, the config records {w['bytes']}; the weights file "
            "is truncated or was replaced"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != w.get("sha256"):
        raise CheckpointError(
            f"{wpath}: SHA-256 {digest[:16]}... does not match the config's "
            f"{str(w.get('sha256'))[:16]}...; the weights or the config were modified"
        )
    try:
        state = st_load(data)
    except (SafetensorError, Exception) as exc:  # noqa: B014 - any parse failure
        raise CheckpointError(f"{wpath}: not a readable safetensors file ({exc})") from None
    try:
        mcfg = ModelConfig.from_dict(cfg["model"])
        pre = PreprocessConfig.from_dict(cfg["preprocess"])
    except (DeepStrucError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{d}: invalid model/preprocess config: {exc}") from None
    if mcfg.n_points != pre.n_points:
        raise CheckpointError(
            f"{d}: model expects {mcfg.n_points} PDF points but the "
            f"preprocessing grid has {pre.n_points}"
        )
    rep = cfg["representation"]
    try:
        n_max, n_sat = int(rep["n_max"]), int(rep["n_satellites"])
        sats = np.asarray(rep["satellites"], dtype=float)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{d}: invalid representation entry ({exc})") from None
    if (n_max, n_sat) != (mcfg.n_max, mcfg.n_satellites) or sats.shape != (n_sat, 3):
        raise CheckpointError(
            f"{d}: representation (n_max={n_max}, {n_sat} satellites, positions "
            f"{sats.shape}) does not match the model ({mcfg.n_max}, {mcfg.n_satellites})"
        )
    model = build_model(mcfg)
    storage = w.get("storage", "float32")
    if storage not in ("float32", "float16-matrices"):
        raise CheckpointError(f"{d}: unknown weight storage {storage!r}")
    ref = model.state_dict()
    if storage == "float16-matrices":
        ref = {k: (v.half() if _halved(k, v) else v) for k, v in ref.items()}
    expected = _tensor_table(ref)
    got = _tensor_table(state)
    if w.get("tensors") != got:
        raise CheckpointError(
            f"{d}: the tensor table in {CONFIG_NAME} does not match {WEIGHTS_NAME}"
        )
    if set(expected) != set(got):
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        raise CheckpointError(
            f"{d}: weights do not fit the architecture: missing "
            f"{missing[:5]}, unexpected {extra[:5]}"
        )
    bad = [k for k in expected if expected[k] != got[k]]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"{d}: tensor {k!r} is {got[k]}, the architecture needs "
            f"{expected[k]} ({len(bad)} mismatching tensors)"
        )
    for k, v in state.items():
        if not torch.isfinite(v).all():
            raise CheckpointError(f"{d}: tensor {k!r} contains NaN or infinite values")
    model.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in state.items()},
        strict=True,
    )
    model.to(device).eval()
    model.meta = cfg
    model.preprocess = pre
    return model


def check_overwrite(directory: str | os.PathLike, force: bool) -> None:
    """Raise OutputExistsError if ``directory`` holds a checkpoint (either file) and
    not ``force``: the one check of every checkpoint writer."""
    d = Path(directory)
    if not force and ((d / CONFIG_NAME).exists() or (d / WEIGHTS_NAME).exists()):
        raise OutputExistsError(
            f"{d}: a checkpoint exists there; pass overwrite=True (--force) to replace it"
        )


def export_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    half: bool = True,
    overwrite: bool = False,
) -> Path:
    """Copy a validated checkpoint to ``dst`` (by default with float16 weight matrices,
    as the model shipped in ``diffpy_deepstruc/pretrained``); the config is kept and the
    weights digest recomputed."""
    model = load_checkpoint(src)
    conf = {
        k: v
        for k, v in model.meta.items()
        if k not in ("format", "format_version", "package_version", "model", "weights")
    }
    conf["exported_from"] = {"weights_sha256": model.meta["weights"]["sha256"]}
    return save_checkpoint(model, conf, dst, overwrite=overwrite, half=half)
