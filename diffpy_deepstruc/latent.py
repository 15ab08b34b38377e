"""The 2-D latent space as a result: structure map, placing data, interpolation.

>>> from diffpy_deepstruc import latent
>>> from diffpy_deepstruc.generator import DeepStruc
>>> ds = DeepStruc.pretrained()                                      # doctest: +SKIP
>>> table = latent.compute_latent_map(ds, "runs/catalog.h5")         # doctest: +SKIP
>>> latent.knn_type_accuracy(table, k=5)["accuracy"]                 # doctest: +SKIP
>>> mean, std = latent.encode(ds, "JQ_S1.gr")                        # doctest: +SKIP
>>> steps = latent.interpolate(ds, "a.gr", "b.gr", steps=8, element="Pt")  # doctest: +SKIP

Choices (reasoning in ``docs/latent.md``):

* A catalog structure sits on the map at the **prior mean** p(z | PDF) of its
  least-noisy simulated PDF -- the same quantity a measured PDF is placed with
  (:func:`encode`) and the centre of the samples ``generate`` draws, so data and map
  are directly comparable.  (The posterior q(z | structure, PDF) needs the structure,
  which measured data do not have.)
* Interpolation moves the latent point *and* the decoder's PDF condition together:
  step ``t`` decodes ``z = (1 - t) z_A + t z_B`` conditioned on the preprocessed input
  ``(1 - t) x_A + t x_B`` (re-normalised to max |x| = 1, as every network input is), so
  both ends are the model's own decodings of A and B.  Each step is scaled so that its
  typical bond (first PDF-peak distance of the decoded shape) is the requested element's
  nearest-neighbour distance.
* :func:`validity`: no two atoms closer than 0.8 x the nearest-neighbour distance.

A map is a :class:`LatentMap` (columns ``label, index, type, element, n_atoms,
hcp_fraction, split, shape, pdf, z1, z2 [, z3 ...]``) stored as CSV with ``#`` metadata
lines on top (:func:`save_latent_map`, :func:`load_latent_map`).  The shipped model
carries its map in ``diffpy_deepstruc/pretrained/latent_map.csv``
(:func:`shipped_map_or_none`).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .errors import CatalogError, DeepStrucError, ParameterError
from .fileio import atomic_write_text

__all__ = [
    "LatentMap",
    "MAP_NAME",
    "as_deepstruc",
    "encode",
    "decode",
    "interpolate",
    "interpolation_element",
    "interpolation_table",
    "validity",
    "min_distance_ratio",
    "compute_latent_map",
    "save_latent_map",
    "load_latent_map",
    "read_latent_map_meta",
    "model_map_or_none",
    "shipped_map_or_none",
    "knn_type_accuracy",
    "stacking_spearman",
]

#: File name of a model's latent map, beside its ``config.json``.
MAP_NAME = "latent_map.csv"
MAP_FORMAT = "diffpy-deepstruc-latent-map"
#: Fixed columns of a map CSV (the latent coordinates ``z1 .. zD`` follow).
MAP_COLUMNS = (
    "label",
    "index",
    "type",
    "element",
    "n_atoms",
    "hcp_fraction",
    "split",
    "shape",
    "pdf",
)
#: Minimum allowed pair distance, in units of the nearest-neighbour distance.
VALID_RATIO = 0.8


# ------------------------------------------------------------------------------ model
def as_deepstruc(model: Any):
    """A generator (:class:`~diffpy_deepstruc.generator.DeepStruc` or
    :class:`~diffpy_deepstruc.shapegen.ShapeGenerator`) from what the caller has.

    ``model`` may be a generator, a network from
    :func:`~diffpy_deepstruc.checkpoint.load_checkpoint` (carries ``.meta``), a
    checkpoint folder of either kind, ``"pretrained"`` / ``"cvae"`` (the shipped CVAE),
    ``"pretrained-dae"`` / ``"dae"`` (the shipped DAE) or ``"shapecode"`` /
    ``"shapecode-dae"`` (the shipped shape-code models).  A model loaded from a folder
    here remembers it (``checkpoint_dir``), so :func:`shipped_map_or_none` finds a
    ``latent_map.csv`` beside it.
    """
    from .generator import DeepStruc
    from .models import DeepStrucNet
    from .shapegen.generator import ShapeGenerator, load_generator

    if isinstance(model, DeepStruc | ShapeGenerator):
        return model
    if isinstance(model, DeepStrucNet):
        return DeepStruc(model)
    if model is None or model in ("pretrained", "cvae", "pretrained-cvae"):
        return DeepStruc.pretrained("cvae")
    if model in ("pretrained-dae", "dae"):
        return DeepStruc.pretrained("dae")
    if isinstance(model, str | os.PathLike):  # a folder or a shipped shape-code name
        ds = load_generator(model)
        if isinstance(ds, DeepStruc):
            ds.model.checkpoint_dir = Path(model)
        return ds
    raise ParameterError(
        f"expected a DeepStruc, a model or a checkpoint folder, not {type(model).__name__}"
    )


def _net(model: Any):
    """The network (with ``.meta``) of a DeepStruc or a network."""
    return getattr(model, "model", model)


def _weights_sha(model: Any) -> str | None:
    meta = getattr(_net(model), "meta", None) or getattr(model, "meta", None) or {}
    w = meta.get("weights") if isinstance(meta, dict) else None
    return w.get("sha256") if isinstance(w, dict) else None


# ----------------------------------------------------------------- encode / decode
def encode(model: Any, pdf: Any) -> tuple[np.ndarray, np.ndarray]:
    """Prior p(z | PDF) of a PDF (PDFData, ``.gr`` path or (r, g)): mean, std ``[D]``."""
    return as_deepstruc(model).encode(pdf)


def decode(model: Any, z: Any, pdf: Any, element: str = "Pt"):
    """Decode one latent point ``z [D]`` conditioned on ``pdf`` into a Structure
    (:meth:`~diffpy_deepstruc.generator.DeepStruc.decode`)."""
    return as_deepstruc(model).decode(z, pdf, element)


def _input(ds, pdf: Any) -> np.ndarray:
    """The preprocessed network input ``[L]`` of a PDF."""
    x = ds.preprocess(pdf)
    if isinstance(x, tuple):  # (x, r1): the reduced-grid preprocessing
        x = x[0]
    return np.asarray(x, np.float32)


def _encode_inputs(ds, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prior means ``[B, D]`` and conditions ``[B, C]`` of preprocessed inputs ``x``."""
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    with torch.no_grad():
        c = ds.model.condition(xt)
        mu, logvar = ds.model.prior(c)
        std = ds.model.prior_std(logvar)  # the DAEs': their latent noise
    return mu.numpy().astype(float), std.numpy().astype(float)


def _decode_inputs(ds, z: np.ndarray, x: np.ndarray) -> list[dict[str, Any]]:
    """Decode latent points ``z [n, D]`` with conditions from inputs ``x [n, L]`` to
    unit-sphere shapes (the generator's mask -> distances -> trilateration path)."""
    from .models import pairwise_distances
    from .trilateration import trilaterate

    zt = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    with torch.no_grad():
        c = ds.model.condition(xt)
        out = ds.model.decode(zt, c)
        adm_all = pairwise_distances(out["emb"]).numpy().astype(float)
    res = []
    for k in range(len(z)):
        logit = out["mask_logit"][k].numpy()
        sel = np.flatnonzero(logit > 0)
        if sel.size < 2:
            sel = np.sort(np.argsort(-logit)[:2])
        sat = out["sat_dist"][k].numpy().astype(float)[sel]
        adm = adm_all[k][np.ix_(sel, sel)]
        n = len(sel)
        kw = {"maxiter": 300, "w_pair": 3.0 / n, **ds.trilateration}
        tri = trilaterate(sat, adm, ds.satellites, **kw)
        res.append(
            {
                "xyz": np.asarray(tri.xyz, float),
                "n_atoms": n,
                "residual": float(np.mean(tri.residual)),
            }
        )
    return res


def interpolate(
    model: Any, pdf_a: Any, pdf_b: Any, steps: int = 8, element: str = "Pt"
) -> list[tuple[np.ndarray, Any]]:
    """Structures decoded along the latent line from A's prior mean to B's.

    Parameters
    ----------
    model : DeepStruc, ShapeGenerator, network, folder or a shipped name
        (:func:`as_deepstruc`); a shape-code model builds each point's most probable
        code that its builder accepts
        (:meth:`~diffpy_deepstruc.shapegen.ShapeGenerator.build_points`).
    pdf_a, pdf_b : PDFData, ``.gr`` path or (r, g)
    steps : int
        Number of points, both ends included (>= 2).
    element : str
        Metal of the decoded structures; sets their size (typical bond = its
        nearest-neighbour distance).

    Returns
    -------
    list of (z ``[D]``, diffpy.structure.Structure)
        From A (``t = 0``) to B (``t = 1``); the condition is interpolated with ``z``
        (see the module docstring).
    """
    from .elements import nearest_neighbour_distance
    from .generator import DEFAULT_UISO, unit_nn_distance
    from .structures import arrays_to_structure

    if not isinstance(steps, int | np.integer) or isinstance(steps, bool) or steps < 2:
        raise ParameterError(f"steps must be an integer >= 2, not {steps!r}")
    from .shapegen.generator import ShapeGenerator

    ds = as_deepstruc(model)
    sym = ds._check_element(element)
    nn = nearest_neighbour_distance(sym)
    xa, xb = _input(ds, pdf_a), _input(ds, pdf_b)
    (za, zb), _ = _encode_inputs(ds, np.stack([xa, xb]))
    t = np.linspace(0.0, 1.0, int(steps))[:, None]
    z = (1 - t) * za + t * zb
    if isinstance(ds, ShapeGenerator):  # the decoder reads z alone: built shape codes
        return [(z[k].astype(float), s) for k, (s, _) in enumerate(ds.build_points(z, sym))]
    x = (1 - t) * xa + t * xb
    x = x / np.maximum(np.abs(x).max(1, keepdims=True), 1e-12)
    out = []
    for k, d in enumerate(_decode_inputs(ds, z, x)):
        u = unit_nn_distance(d["xyz"])
        scale = nn / u if np.isfinite(u) and u > 0 else 1.0
        s = arrays_to_structure(
            d["xyz"] * scale,
            sym,
            DEFAULT_UISO,
            title=f"deepstruc {ds.kind} interpolation t={t[k, 0]:.3f}",
        )
        out.append((z[k].astype(float), s))
    return out


def header_metal(pdf: Any) -> str | None:
    """The one metal a PDF's ``composition`` header names, or None.

    None when the data carry no composition (or are not a PDFData), or when it names
    no metal or several (e.g. ``"Au50 Ag50"``); ``"Au144 S60 C180"`` gives ``"Au"``.
    """
    from .elements import is_metal

    comp = getattr(pdf, "composition", None)
    if not comp:
        return None
    try:
        els = pdf.elements or []
    except DeepStrucError:
        return None
    metals = sorted({e for e in els if is_metal(e)})
    return metals[0] if len(metals) == 1 else None


def interpolation_element(
    pdf_a: Any,
    pdf_b: Any,
    element: str | None = None,
    names: tuple[str, str] = ("A", "B"),
) -> tuple[str, str]:
    """The metal to decode an interpolation with, and one sentence saying why.

    Parameters
    ----------
    pdf_a, pdf_b : PDFData
        The two ends (their ``composition`` headers are read).
    element : str, optional
        Explicit choice; it wins over the headers (the note says when a header
        disagrees).
    names : (str, str)
        How to call the two inputs in the note (e.g. their file names).

    Returns
    -------
    (str, str)
        Element symbol and the note, e.g. ``"Au (from the headers of A.gr and B.gr)"``.

    Raises
    ------
    ElementError
        Without ``element``, when an input's header names no single metal or the two
        headers name different metals.
    """
    from .elements import normalize_element
    from .errors import ElementError

    ha, hb = header_metal(pdf_a), header_metal(pdf_b)
    na, nb = names
    if element is not None:
        sym = normalize_element(element)
        note = f"{sym} (--element)"
        other = [f"{n} names {h}" for n, h in ((na, ha), (nb, hb)) if h and h != sym]
        if other:
            note += f"; note: {' and '.join(other)} in its header"
        elif ha is None and hb is None:
            note += "; the inputs' headers name no metal"
        return sym, note
    missing = [n for n, h in ((na, ha), (nb, hb)) if h is None]
    if missing:
        raise ElementError(
            f"{' and '.join(missing)}: no single metal in the composition header; "
            "pass --element (the metal sets the size of the decoded structures and the "
            "distances their validity is judged by)"
        )
    if ha != hb:
        raise ElementError(
            f"{na} names {ha} and {nb} names {hb}; pass --element to choose the metal of "
            "the decoded structures"
        )
    return ha, f"{ha} (from the headers of {na} and {nb})"


def _xyz(structure: Any) -> np.ndarray:
    if isinstance(structure, np.ndarray):
        return np.asarray(structure, float).reshape(-1, 3)
    if hasattr(structure, "get_positions"):
        return np.asarray(structure.get_positions(), float)
    from .structures import structure_arrays

    return np.asarray(structure_arrays(structure)[0], float)


def min_distance_ratio(structure: Any, nn: float) -> float:
    """Shortest pair distance of ``structure`` divided by ``nn`` (inf below 2 atoms)."""
    xyz = _xyz(structure)
    if len(xyz) < 2:
        return float("inf")
    if not np.all(np.isfinite(xyz)):
        return float("nan")
    d = np.sqrt(((xyz[:, None] - xyz[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return float(d.min() / nn)


def validity(structure: Any, nn: float | None = None) -> bool:
    """True when no two atoms are closer than 0.8 x the nearest-neighbour distance.

    Parameters
    ----------
    structure : diffpy Structure, ase.Atoms or ``[N, 3]`` array (Angstrom)
    nn : float, optional
        Nearest-neighbour distance (A); default: that of the structure's element.

    A structure with fewer than two atoms is not a particle (False); non-finite
    coordinates are invalid.
    """
    if nn is None:
        from .elements import nearest_neighbour_distance
        from .structures import structure_arrays

        if isinstance(structure, np.ndarray):
            raise ParameterError("pass nn for a bare coordinate array")
        els = (
            structure.get_chemical_symbols()
            if hasattr(structure, "get_chemical_symbols")
            else structure_arrays(structure)[1]
        )
        if not els:
            return False
        nn = nearest_neighbour_distance(els[0])
    if not (nn > 0 and np.isfinite(nn)):
        raise ParameterError(f"nn must be a positive distance, not {nn!r}")
    if len(_xyz(structure)) < 2:
        return False
    ratio = min_distance_ratio(structure, nn)
    return bool(np.isfinite(ratio) and ratio >= VALID_RATIO)


def interpolation_table(
    path_steps: list[tuple[np.ndarray, Any]], nn: float, element: str | None = None
) -> list[dict[str, Any]]:
    """One row per interpolation step: ``step, t, z1.., n_atoms, min_dist_over_nn,
    valid`` (and ``element``, the metal the step was decoded and judged with, when
    given)."""
    rows = []
    n = len(path_steps)
    for k, (z, s) in enumerate(path_steps):
        row: dict[str, Any] = {"step": k, "t": round(k / max(n - 1, 1), 6)}
        row.update({f"z{i + 1}": float(v) for i, v in enumerate(np.ravel(z))})
        row["n_atoms"] = len(_xyz(s))
        row["min_dist_over_nn"] = round(min_distance_ratio(s, nn), 4)
        row["valid"] = validity(s, nn)
        if element is not None:
            row["element"] = element
        rows.append(row)
    return rows


# -------------------------------------------------------------------------- the map
@dataclass
class LatentMap:
    """Latent points of catalog structures (and placed data), one row each.

    Attributes
    ----------
    z : float ``[M, D]``
        Prior means.
    label, type, element, split, shape : str ``[M]``
        ``type`` is a :data:`~diffpy_deepstruc.clusters.STRUCTURE_TYPES` entry (``data``
        for placed measurements); ``split`` is ``train`` / ``val`` / ``test`` as recorded
        in the model's config (empty when the catalog is not the model's, ``data`` for
        data); ``shape`` identifies the geometry independent of the metal.
    index : int ``[M]``
        Catalog structure row (-1 for data).
    n_atoms : int ``[M]`` (0 for data).
    hcp_fraction : float ``[M]`` (NaN unless stacking-faulted).
    pdf : int ``[M]``
        Catalog PDF row encoded (-1 for data).
    meta : dict
        Provenance: model kind and weights SHA-256, catalog SHA-256, how the points were
        made.
    zq : float ``[M, D]`` or None
        Posterior means q(z | structure, PDF) of the same rows (NaN for data), when
        computed (``compute_latent_map(..., posterior=True)``; CSV columns ``q1 ..``).
    """

    z: np.ndarray
    label: np.ndarray
    index: np.ndarray
    type: np.ndarray
    element: np.ndarray
    n_atoms: np.ndarray
    hcp_fraction: np.ndarray
    split: np.ndarray
    shape: np.ndarray
    pdf: np.ndarray
    meta: dict = field(default_factory=dict)
    zq: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.z = np.asarray(self.z, float).reshape(len(self.index), -1)
        if self.zq is not None:
            self.zq = np.asarray(self.zq, float).reshape(self.z.shape)
        for name in ("label", "type", "element", "split", "shape"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=object))
        self.index = np.asarray(self.index, np.int64)
        self.n_atoms = np.asarray(self.n_atoms, np.int64)
        self.pdf = np.asarray(self.pdf, np.int64)
        self.hcp_fraction = np.asarray(self.hcp_fraction, float)
        m = len(self.index)
        for name in (
            "label",
            "type",
            "element",
            "split",
            "shape",
            "n_atoms",
            "pdf",
            "hcp_fraction",
        ):
            if len(getattr(self, name)) != m:
                raise ParameterError(
                    f"latent map column {name} has {len(getattr(self, name))}"
                    f" rows, expected {m}"
                )

    def __len__(self) -> int:
        return len(self.index)

    def latent(self, which: str = "prior") -> np.ndarray:
        """``z`` (``"prior"``) or ``zq`` (``"posterior"``) ``[M, D]``."""
        if which == "prior":
            return self.z
        if which == "posterior":
            if self.zq is None:
                raise ParameterError(
                    "this map holds no posterior means (compute it with posterior=True)"
                )
            return self.zq
        raise ParameterError(f"latent must be 'prior' or 'posterior', not {which!r}")

    @property
    def points(self) -> np.ndarray:
        """What the map shows ``[M, 2]``: the latent coordinates of a 2-D latent, else
        the 2-D principal view (:meth:`project`)."""
        return self.project(self.z)

    def view(self) -> dict[str, list] | None:
        """The 2-D principal view of a latent of more than two dimensions: ``mean``
        ``[D]`` and ``axes`` ``[2, D]`` of the training rows (all catalog rows when none
        is marked ``train``), each axis signed so that its largest component is
        positive.  Kept in ``meta["view"]`` (and in the CSV), so that every selection
        of the map and every point placed later share it.  None for a 2-D latent."""
        if self.z.shape[1] <= 2:
            return None
        if "view" not in self.meta:
            rows = (self.split == "train") & (self.type != "data")
            if not rows.any():
                rows = self.type != "data"
            z = self.z[rows]
            if len(z) < 3:
                raise ParameterError("a principal view needs at least 3 catalog rows")
            mean = z.mean(0)
            axes = np.linalg.svd(z - mean, full_matrices=False)[2][:2]
            axes *= np.sign(axes[np.arange(2), np.abs(axes).argmax(1)])[:, None]
            self.meta["view"] = {"mean": mean.tolist(), "axes": axes.tolist()}
        return self.meta["view"]

    @property
    def axis_labels(self) -> tuple[str, str]:
        """The map's axis labels: ``z₁``, ``z₂`` or, for a principal view, ``PC 1``,
        ``PC 2``."""
        return ("z₁", "z₂") if self.view() is None else ("PC 1", "PC 2")

    def project(self, z: Any) -> np.ndarray:
        """Latent points ``[n, D]`` (or one ``[D]``) on the map's 2-D view."""
        z = np.asarray(z, float)
        one = z.ndim == 1
        z = z.reshape(-1, self.z.shape[1])
        v = self.view()
        out = (
            z[:, :2] if v is None else (z - np.asarray(v["mean"])) @ np.asarray(v["axes"]).T
        )
        return out[0] if one else out

    def select(self, mask: Any) -> LatentMap:
        """The rows where ``mask`` (bool array or indices) holds."""
        m = np.asarray(mask)
        return LatentMap(
            z=self.z[m],
            label=self.label[m],
            index=self.index[m],
            type=self.type[m],
            element=self.element[m],
            n_atoms=self.n_atoms[m],
            hcp_fraction=self.hcp_fraction[m],
            split=self.split[m],
            shape=self.shape[m],
            pdf=self.pdf[m],
            meta=dict(self.meta),
            zq=None if self.zq is None else self.zq[m],
        )

    def catalog_rows(self) -> LatentMap:
        """Without the placed data."""
        return self.select(self.type != "data")

    def with_data(
        self, labels: list[str], z: np.ndarray, elements: list[str] | None = None
    ) -> LatentMap:
        """A copy with measured PDFs appended as ``type == "data"`` rows."""
        z = np.asarray(z, float).reshape(len(labels), -1)
        n = len(labels)
        if len(self) and z.shape[1] != self.z.shape[1]:
            raise ParameterError("data latent points do not match the map's dimension")
        return LatentMap(
            z=np.concatenate([self.z, z]) if len(self) else z,
            label=np.concatenate([self.label, np.asarray(labels, object)]),
            index=np.concatenate([self.index, -np.ones(n, np.int64)]),
            type=np.concatenate([self.type, np.array(["data"] * n, object)]),
            element=np.concatenate(
                [self.element, np.asarray(elements or [""] * n, object)]
            ),
            n_atoms=np.concatenate([self.n_atoms, np.zeros(n, np.int64)]),
            hcp_fraction=np.concatenate([self.hcp_fraction, np.full(n, np.nan)]),
            split=np.concatenate([self.split, np.array(["data"] * n, object)]),
            shape=np.concatenate([self.shape, np.array([""] * n, object)]),
            pdf=np.concatenate([self.pdf, -np.ones(n, np.int64)]),
            meta=dict(self.meta),
            zq=None
            if self.zq is None
            else np.concatenate([self.zq, np.full(z.shape, np.nan)]),
        )


def _str_column(ds) -> np.ndarray:
    return np.array(
        [v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]], dtype=object
    )


def _shape_id(stype: str, builder: str) -> str:
    """Short id of a geometry: type + builder arguments without the metal/size keys."""
    try:
        args = json.loads(builder)
    except (TypeError, json.JSONDecodeError):
        args = builder
    if isinstance(args, dict):
        args = {k: v for k, v in args.items() if k not in ("element", "nn", "symbol")}
    key = f"{stype}|{json.dumps(args, sort_keys=True)}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _hcp_from_builder(stype: str, builder: str) -> float:
    if stype != "stacking":
        return float("nan")
    from .clusters import hcp_fraction

    try:
        seq = json.loads(builder).get("sequence")
        return float(hcp_fraction(seq))
    except (AttributeError, TypeError, ValueError, json.JSONDecodeError, DeepStrucError):
        return float("nan")


def _model_split(meta: dict, types: np.ndarray, same_catalog: bool) -> np.ndarray:
    """Split label per structure from the model's config (empty when unknown)."""
    m = len(types)
    out = np.array([""] * m, dtype=object)
    if not same_catalog:
        return out
    sp = meta.get("split") or {}
    if "test" in sp and "val" in sp:
        val = np.asarray(sp["val"], np.int64)
        test = np.asarray(sp["test"], np.int64)
        out[:] = "train"
        if (val.size and val.max() >= m) or (test.size and test.max() >= m):
            raise CatalogError("the model's recorded split points outside the catalog")
        out[val] = "val"
        out[test] = "test"
        return out
    tr = meta.get("training") or {}
    if "seed" in tr and (tr.get("split_by", "structure") == "structure"):
        from .training import split_structures

        parts = split_structures(
            types,
            np.arange(m),
            int(tr["seed"]),
            tuple(tr.get("split_fractions", (0.8, 0.1, 0.1))),
        )
        for name, rows in parts.items():
            out[rows] = name
    return out


def _read_rows(gds, rows: np.ndarray, block: int = 4096) -> np.ndarray:
    """Rows ``rows`` (unique) of an HDF5 dataset: a block scan when many are wanted
    (chunked / compressed catalogs read each chunk once), else a sorted point read."""
    out = np.empty((len(rows), gds.shape[1]), np.float32)
    srt = np.argsort(rows)
    if len(rows) * 8 < gds.shape[0] or len(rows) < 256:
        for a in range(0, len(rows), 2048):
            sl = srt[a : a + 2048]
            out[sl] = gds[rows[sl].tolist()]  # increasing rows, as h5py needs
        return out
    pos = np.searchsorted(rows[srt], np.arange(0, gds.shape[0] + block, block))
    for b, a in enumerate(range(0, gds.shape[0], block)):
        sl = srt[pos[b] : pos[b + 1]]
        if len(sl):
            out[sl] = gds[a : a + block][rows[sl] - a]
    return out


def compute_latent_map(
    model: Any,
    catalog_path: str | os.PathLike,
    *,
    batch_size: int = 512,
    progress: bool = False,
    posterior: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> LatentMap:
    """Place every catalog structure on the latent map.

    Each structure is encoded through its *least-noisy* simulated PDF (``noise`` column
    of ``/pdfs/params``; the first PDF when there is none) at the prior mean
    p(z | PDF).  When ``catalog_path`` is the catalog the model was trained on (same
    SHA-256), each row carries the model's train/val/test split.  With ``posterior``
    the posterior means q(z | structure, PDF) of the same PDFs are added (``zq``; the
    structures are encoded by :func:`~diffpy_deepstruc.training.prepare_data`, cached
    in ``cache_dir``).

    Raises
    ------
    CatalogError
        Unreadable or malformed catalog.
    """
    import h5py

    from .checkpoint import sha256_file
    from .training import read_catalog_meta

    ds = as_deepstruc(model)
    read_catalog_meta(catalog_path)
    sha = sha256_file(catalog_path)
    meta = ds.meta
    same = meta.get("catalog", {}).get("sha256") == sha
    with h5py.File(catalog_path, "r") as h5:
        r = h5["r"][()]
        natoms = h5["structures/natoms"][()].astype(np.int64)
        m = len(natoms)
        types = _str_column(h5["structures/type"])
        elements = (
            _str_column(h5["structures/element"])
            if "structures/element" in h5
            else np.array([""] * m, object)
        )
        builders = (
            _str_column(h5["structures/builder"])
            if "structures/builder" in h5
            else np.array([str(i) for i in range(m)], object)
        )
        if "structures/hcp_fraction" in h5:
            hcp = h5["structures/hcp_fraction"][()].astype(float)
        else:
            hcp = np.array(
                [_hcp_from_builder(t, b) for t, b in zip(types, builders, strict=True)]
            )
        pdf_struct = h5["pdfs/structure"][()].astype(np.int64)
        noise = np.zeros(len(pdf_struct))
        if "pdfs/params" in h5:
            cols = h5["pdfs/params"].attrs.get("columns", "")
            cols = cols.decode() if isinstance(cols, bytes) else str(cols)
            names = [c.strip() for c in cols.split(",")]
            if "noise" in names:
                noise = h5["pdfs/params"][:, names.index("noise")].astype(float)
        if pdf_struct.size and (pdf_struct.min() < 0 or pdf_struct.max() >= m):
            raise CatalogError(
                f"{catalog_path}: /pdfs/structure points outside /structures"
            )
        # candidate PDFs of each structure, least noise first, then catalog order
        order = np.lexsort((np.arange(len(pdf_struct)), noise, pdf_struct))
        first = np.searchsorted(pdf_struct[order], np.arange(m + 1))
        gds = h5["pdfs/g"]
        chosen = np.full(m, -1, np.int64)
        x = np.zeros((m, ds.model.config.n_points), np.float32)
        rank = np.zeros(m, np.int64)
        todo = np.flatnonzero(first[1:] > first[:-1])
        skipped = 0
        it = todo
        if progress:
            from tqdm import tqdm

            it = tqdm(todo, desc="preprocessing", file=sys.stderr, mininterval=2)
        pending = list(it)
        while pending:
            rows = np.array([order[first[i] + rank[i]] for i in pending], np.int64)
            g = _read_rows(gds, rows)
            retry = []
            for j, i in enumerate(pending):
                try:
                    x[i] = _input(ds, (r, g[j]))
                    chosen[i] = rows[j]
                except DeepStrucError:
                    rank[i] += 1
                    if first[i] + rank[i] < first[i + 1]:
                        retry.append(i)
                    else:
                        skipped += 1
            pending = retry
    keep = np.flatnonzero(chosen >= 0)
    z = np.zeros((len(keep), ds.model.config.latent))
    for a in range(0, len(keep), batch_size):
        z[a : a + batch_size] = _encode_inputs(ds, x[keep[a : a + batch_size]])[0]
    zq = None
    if posterior:
        zq = _posterior_means(
            ds, catalog_path, keep, x[keep], batch_size, cache_dir, progress
        )
    split = _model_split(meta, types, same)[keep]
    shapes = np.array(
        [_shape_id(t, b) for t, b in zip(types[keep], builders[keep], strict=True)],
        dtype=object,
    )
    info = {
        "format": MAP_FORMAT,
        "package_version": __version__,
        "model_kind": ds.kind,
        "model_sha256": _weights_sha(ds),
        "catalog_file": Path(catalog_path).name,
        "catalog_sha256": sha,
        "same_catalog_as_model": bool(same),
        "latent": "prior mean p(z|PDF) of each structure's least-noise PDF",
        "posterior": "q columns: posterior mean q(z|structure,PDF), same PDF"
        if posterior
        else "not computed",
        "n_structures": int(m),
        "skipped_structures": int(m - len(keep)),
    }
    if skipped:
        info["skipped_reason"] = "no PDF of the structure could be preprocessed"
    table = LatentMap(
        z=z,
        label=np.array([str(i) for i in keep], object),
        index=keep,
        type=types[keep],
        element=elements[keep],
        n_atoms=natoms[keep],
        hcp_fraction=hcp[keep],
        split=split,
        shape=shapes,
        pdf=chosen[keep],
        meta=info,
        zq=zq,
    )
    table.view()  # a latent of more than 2 dimensions: its principal view, in the meta
    return table


def _posterior_means(ds, catalog_path, rows, x, batch_size, cache_dir, progress):
    """q(z | structure, PDF) means ``[len(rows), D]`` of catalog structures ``rows``
    with preprocessed inputs ``x``."""
    from .training import batch_targets, prepare_data

    rep = ds.meta["representation"]
    data = prepare_data(
        catalog_path,
        ds.preprocess_config,
        int(rep["n_satellites"]),
        cache_dir=cache_dir,
        progress=progress,
    )
    if data.n_max != ds.model.config.n_max:
        raise CatalogError(
            f"{catalog_path}: n_max {data.n_max} differs from the model's "
            f"{ds.model.config.n_max}"
        )
    sats = torch.tensor(ds.satellites, dtype=torch.float32)
    out = np.zeros((len(rows), ds.model.config.latent))
    for a in range(0, len(rows), batch_size):
        sh = data.shape_of[rows[a : a + batch_size]]
        coords = torch.from_numpy(np.ascontiguousarray(data.shape_coords[sh], np.float32))
        natoms = torch.from_numpy(data.shape_natoms[sh])
        sat, _, mask = batch_targets(coords, natoms, sats)
        with torch.no_grad():
            c = ds.model.condition(torch.from_numpy(x[a : a + batch_size]))
            out[a : a + batch_size] = ds.model.posterior(sat, mask, c)[0].numpy()
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return "" if not np.isfinite(v) else f"{float(v):.6g}"
    return str(v)


def save_latent_map(
    table: LatentMap, path: str | os.PathLike, overwrite: bool = False
) -> Path:
    """Write a map as CSV (``#`` metadata lines, then a header row), atomically."""
    buf = io.StringIO()
    for k, v in sorted(table.meta.items()):
        buf.write(f"# {k}: {json.dumps(v)}\n")
    d = table.z.shape[1]
    w = csv.writer(buf, lineterminator="\n")
    qcols = [] if table.zq is None else [f"q{i + 1}" for i in range(d)]
    w.writerow([*MAP_COLUMNS, *(f"z{i + 1}" for i in range(d)), *qcols])
    for k in range(len(table)):
        q = [] if table.zq is None else [_fmt(v) for v in table.zq[k]]
        w.writerow(
            [
                table.label[k],
                table.index[k],
                table.type[k],
                table.element[k],
                table.n_atoms[k],
                _fmt(table.hcp_fraction[k]),
                table.split[k],
                table.shape[k],
                table.pdf[k],
                *(f"{v:.6g}" for v in table.z[k]),
                *q,
            ]
        )
    return atomic_write_text(path, buf.getvalue(), overwrite=overwrite)


def _split_map_text(text: str) -> tuple[dict[str, Any], list[str]]:
    """The ``# key: json`` header of a map file and its CSV lines."""
    meta: dict[str, Any] = {}
    body = []
    for line in text.splitlines():
        if line.startswith("#"):
            k, _, v = line[1:].partition(":")
            try:
                meta[k.strip()] = json.loads(v)
            except json.JSONDecodeError:
                meta[k.strip()] = v.strip()
        elif line.strip():
            body.append(line)
    return meta, body


def read_latent_map_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The header of a map written by :func:`save_latent_map`, without its rows.

    Raises
    ------
    ParameterError
        When the file cannot be read.
    """
    p = Path(path)
    lines = []
    try:
        with p.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.startswith("#"):
                    break
                lines.append(line)
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"{p}: cannot read the latent map ({exc})") from None
    return _split_map_text("".join(lines))[0]


def _floats(values: Sequence[str], what: str) -> np.ndarray:
    """Strings to floats, an empty field read as NaN."""
    a = np.asarray(values, dtype=object)
    a[a == ""] = "nan"
    try:
        return a.astype(float)
    except ValueError as exc:
        raise ValueError(f"column {what}: {exc}") from None


def load_latent_map(path: str | os.PathLike) -> LatentMap:
    """Read a map written by :func:`save_latent_map`.

    Raises
    ------
    ParameterError
        Missing file, missing columns, short rows or unreadable numbers.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"{p}: cannot read the latent map ({exc})") from None
    meta, body = _split_map_text(text)
    rows = list(csv.reader(body))
    header = rows[0] if rows else []
    rows = rows[1:]
    zcols = [c for c in header if c.startswith("z") and c[1:].isdigit()]
    qcols = [c for c in header if c.startswith("q") and c[1:].isdigit()]
    missing = [c for c in ("label", "type", "z1") if c not in header]
    if missing or not zcols:
        raise ParameterError(f"{p}: not a latent map (missing columns {missing or ['z1']})")
    short = next((k for k, r in enumerate(rows) if len(r) < len(header)), None)
    if short is not None:
        raise ParameterError(
            f"{p}: unreadable latent map (row {short + 1} has {len(rows[short])} of "
            f"{len(header)} fields)"
        )
    columns = {name: [r[i] for r in rows] for i, name in enumerate(header)}
    n = len(rows)

    def col(name, conv, default):
        if name not in columns:
            return [default] * n
        return [conv(v) if v != "" else default for v in columns[name]]

    try:
        z = np.stack([_floats(columns[c], c) for c in zcols], axis=1)
        zq = None
        if len(qcols) == len(zcols):
            zq = np.stack([_floats(columns[c], c) for c in qcols], axis=1)
        return LatentMap(
            z=z,
            label=col("label", str, ""),
            index=col("index", int, -1),
            type=col("type", str, ""),
            element=col("element", str, ""),
            n_atoms=col("n_atoms", int, 0),
            hcp_fraction=_floats(columns["hcp_fraction"], "hcp_fraction")
            if "hcp_fraction" in columns
            else [float("nan")] * n,
            split=col("split", str, ""),
            shape=col("shape", str, ""),
            pdf=col("pdf", int, -1),
            meta=meta,
            zq=zq,
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise ParameterError(f"{p}: unreadable latent map ({exc})") from None


def _shipped_dirs() -> list[Path]:
    root = resources.files("diffpy_deepstruc") / "pretrained"
    out = []
    code = root / "shapecode"
    for sub in (root, root / "dae", code, code / "dae"):
        try:
            with resources.as_file(sub) as p:
                out.append(Path(p))
        except (FileNotFoundError, OSError):
            continue
    return out


def model_folders(model: Any) -> list[Path]:
    """Folders that hold ``model``'s checkpoint, most specific first.

    The model's own folder when known (``checkpoint_dir`` / ``directory`` attribute,
    ``meta["directory"]``), then the shipped ``pretrained`` and ``pretrained/dae``
    folders whose weights digest is the model's.  Files that come with a model (its
    latent map, its shape library) are looked for there.
    """
    net = _net(model)
    sha = _weights_sha(model)
    meta = getattr(net, "meta", None) or {}
    cands: list[Path] = []
    for obj in (model, net):
        for attr in ("checkpoint_dir", "directory"):
            v = getattr(obj, attr, None)
            if isinstance(v, str | os.PathLike):
                cands.append(Path(v))
    for key in ("directory", "_directory", "path"):
        v = meta.get(key) if isinstance(meta, dict) else None
        if isinstance(v, str):
            cands.append(Path(v))
    if sha:
        for d in _shipped_dirs():
            try:
                cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(cfg, dict) and (cfg.get("weights") or {}).get("sha256") == sha:
                cands.append(d)
    return cands


def model_map_path(model: Any) -> Path | None:
    """The ``latent_map.csv`` that belongs to ``model``, or None.

    Looked for in :func:`model_folders`.  A map whose recorded ``model_sha256`` is
    another model's is ignored (stale).
    """
    sha = _weights_sha(model)
    cands = model_folders(model)
    for d in cands:
        f = d / MAP_NAME
        if not f.is_file():
            continue
        try:
            head = read_latent_map_meta(f).get("model_sha256")
        except ParameterError:
            continue
        if head in (None, sha) or sha is None:
            return f
    return None


def model_map_or_none(model: Any) -> LatentMap | None:
    """The map that comes with ``model`` (its catalog rows), or None.

    ``model`` is a generator or a network carrying ``.meta``.  See
    :func:`model_map_path` for where the map is looked for; a missing, stale or
    unreadable map gives None (the caller draws its samples without the map).
    """
    try:
        f = model_map_path(model)
        if f is None:
            return None
        st = f.stat()
        return _load_map_cached(str(f), st.st_mtime_ns, st.st_size).catalog_rows()
    except (DeepStrucError, OSError):
        return None


@functools.lru_cache(maxsize=8)
def _load_map_cached(path: str, mtime_ns: int, size: int) -> LatentMap:
    """:func:`load_latent_map` once per file version (callers get copies)."""
    return load_latent_map(path)


def shipped_map_or_none(model: Any) -> tuple[np.ndarray, list[str]] | None:
    """The map that comes with ``model`` as (points ``[M, 2]``, types), or None: the
    points of :func:`model_map_or_none` (a principal view for a latent of more than
    two dimensions, :meth:`LatentMap.project`)."""
    table = model_map_or_none(model)
    if table is None:
        return None
    return table.points.copy(), [str(t) for t in table.type]


# ----------------------------------------------------------------------- the numbers
def knn_type_accuracy(
    table: LatentMap,
    k: int = 5,
    *,
    train: str = "train",
    test: str = "test",
    exclude: tuple[str, ...] = ("stacking",),
    unseen_shapes: bool = False,
    latent: str = "prior",
) -> dict[str, Any]:
    """Structure type recovered by a k-nearest-neighbour vote on latent points.

    Parameters
    ----------
    table : LatentMap
    k : int
        Neighbours voting (ties: the type of the nearest tied point wins).
    train, test : str
        Split labels of the reference and the scored points.
    exclude : tuple of str
        Types left out of both sets.  By default the stacking-faulted particles: they
        are a continuum between fcc and hcp (a three-layer ``ABC`` stack *is* an fcc
        cluster), not a class; :func:`stacking_spearman` scores them instead.
    unseen_shapes : bool
        Drop, for each scored point, the reference points of the same geometry (the
        same shape in another metal): accuracy on shapes the reference never saw.
    latent : {"prior", "posterior"}
        Which latent means (the map's ``z``, or ``zq`` when computed).

    Returns
    -------
    dict
        ``accuracy``, ``n_train``, ``n_test``, ``k``, ``per_type`` (type -> accuracy,
        count), ``confusion`` (true type -> predicted type -> count).
    """
    if not isinstance(k, int) or k < 1:
        raise ParameterError(f"k must be a positive integer, not {k!r}")
    keep = ~np.isin(table.type.astype(str), list(exclude) + ["data"])
    tr = np.flatnonzero(keep & (table.split == train))
    te = np.flatnonzero(keep & (table.split == test))
    if len(tr) == 0 or len(te) == 0:
        raise ParameterError(
            f"the map has no {train!r} or no {test!r} points "
            f"({len(tr)} / {len(te)}); is the split recorded?"
        )
    zall = table.latent(latent)
    zt, ttr = zall[tr], table.type[tr].astype(str)
    pred = []
    for i in te:
        d = np.sqrt(((zt - zall[i]) ** 2).sum(1))
        if unseen_shapes:
            d = np.where(table.shape[tr] == table.shape[i], np.inf, d)
        nb = np.argsort(d, kind="stable")[:k]
        nb = nb[np.isfinite(d[nb])]
        votes: dict[str, int] = {}
        for j in nb:
            votes[ttr[j]] = votes.get(ttr[j], 0) + 1
        best = max(votes.values()) if votes else 0
        pred.append(next((ttr[j] for j in nb if votes[ttr[j]] == best), ""))
    pred = np.array(pred, dtype=object)
    truth = table.type[te].astype(str)
    ok = pred == truth
    per_type, confusion = {}, {}
    for t in sorted(set(truth)):
        s = truth == t
        per_type[t] = {"accuracy": float(ok[s].mean()), "count": int(s.sum())}
        confusion[t] = {p: int((pred[s] == p).sum()) for p in sorted(set(pred[s]))}
    return {
        "accuracy": float(ok.mean()),
        "n_train": int(len(tr)),
        "n_test": int(len(te)),
        "k": k,
        "excluded": list(exclude),
        "unseen_shapes": bool(unseen_shapes),
        "latent": latent,
        "per_type": per_type,
        "confusion": confusion,
    }


def stacking_spearman(
    table: LatentMap,
    *,
    split: str | None = None,
    centroid_split: str | None = None,
    latent: str = "prior",
    reference: str = "types",
) -> dict[str, Any]:
    """Do stacking-faulted particles sit along the fcc -> hcp direction by hcp fraction?

    The position of a stacking-faulted point is its projection onto the line from the
    centroid of the ``fcc`` points to the centroid of the ``hcp`` points (0 at fcc, 1 at
    hcp); the result is Spearman's rank correlation of that position with the particle's
    hcp fraction (:func:`scipy.stats.spearmanr`).

    Parameters
    ----------
    table : LatentMap
    split : str, optional
        Only stacking points of this split (default all).
    centroid_split : str, optional
        Only fcc/hcp points of this split for the centroids (default all).
    latent : {"prior", "posterior"}
        Which latent means.
    reference : {"types", "stacking"}
        Ends of the direction: the centroids of the ``fcc`` and ``hcp`` type points
        (default), or of the stacking-faulted points with hcp fraction 0 and 1 (the same
        builder family at both ends, so size and shape mix cancel); those end points
        are then not scored (only 0 < fraction < 1).

    Returns
    -------
    dict
        ``rho``, ``pvalue``, ``n``, ``position [n]``, ``hcp_fraction [n]``,
        ``fcc_centroid``, ``hcp_centroid``.
    """
    from scipy.stats import spearmanr

    types = table.type.astype(str)

    def pick(t, sp):
        s = types == t
        return s & (table.split == sp) if sp else s

    st = pick("stacking", split) & np.isfinite(table.hcp_fraction)
    if reference == "types":
        fcc, hcp = pick("fcc", centroid_split), pick("hcp", centroid_split)
    elif reference == "stacking":
        allst = pick("stacking", centroid_split)
        fcc, hcp = allst & (table.hcp_fraction == 0), allst & (table.hcp_fraction == 1)
        st &= (table.hcp_fraction > 0) & (table.hcp_fraction < 1)
    else:
        raise ParameterError(f"reference must be 'types' or 'stacking', not {reference!r}")
    if not fcc.any() or not hcp.any():
        raise ParameterError(
            "the map needs fcc and hcp points for the fcc -> hcp direction"
        )
    if st.sum() < 3:
        raise ParameterError(
            f"need at least 3 stacking-faulted points with an hcp fraction "
            f"(found {int(st.sum())})"
        )
    zall = table.latent(latent)
    c0, c1 = zall[fcc].mean(0), zall[hcp].mean(0)
    u = c1 - c0
    pos = (zall[st] - c0) @ u / max(float(u @ u), 1e-12)
    frac = table.hcp_fraction[st]
    if np.ptp(frac) == 0 or np.ptp(pos) == 0:
        rho, p = float("nan"), float("nan")
    else:
        res = spearmanr(pos, frac)
        rho, p = float(res.statistic), float(res.pvalue)
    return {
        "rho": rho,
        "pvalue": p,
        "n": int(st.sum()),
        "position": pos,
        "hcp_fraction": frac,
        "fcc_centroid": c0,
        "hcp_centroid": c1,
    }
