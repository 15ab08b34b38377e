"""The starting-model generator: a PDF in, candidate structures out.

>>> from diffpy_deepstruc.generator import DeepStruc
>>> from diffpy_deepstruc.pdfdata import load_pdf
>>> ds = DeepStruc.pretrained()                          # doctest: +SKIP
>>> cands = ds.generate(load_pdf("JQ_S1.gr"), n=20, element="Pt", seed=0)  # doctest: +SKIP
>>> cands[0].structure, cands[0].n_atoms, cands[0].residual              # doctest: +SKIP

Pipeline: preprocess the PDF (the checkpoint's :class:`PreprocessConfig`) -> prior
p(z | PDF) -> ``n`` latent points (the first is the prior mean) -> decoder -> atom mask,
atom-satellite distances and aDM -> :func:`~diffpy_deepstruc.trilateration.trilaterate`
-> unit-sphere coordinates -> times the scale (Angstrom per unit) -> a
:class:`diffpy.structure.Structure` of the requested element.

The scale comes from the PDF: the nearest-neighbour peak position of the input G(r)
divided by the nearest-neighbour distance of the decoded unit-sphere shape (the
network's own scale head, also read from the PDF, is the fallback when no clear first
peak is found or the two disagree by more than 10 %), then refined by lining up all the
shape's pair distances with the peaks of G(r) (:func:`fit_scale`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .errors import CheckpointError, ElementError, ParameterError, PDFDataError
from .models import DeepStrucNet, pairwise_distances
from .preprocess import PreprocessConfig, nn_peak_position, prepare_input

__all__ = [
    "Candidate",
    "DeepStruc",
    "check_metal",
    "element_note",
    "fit_scale",
    "nn_peak_position",
    "unit_nn_distance",
]
_ = nn_peak_position  # re-exported

DEFAULT_UISO = 0.005


@dataclass
class Candidate:
    """One generated structure.

    Attributes
    ----------
    structure : diffpy.structure.Structure
        Real element, Cartesian Angstrom coordinates (unit lattice), Uiso set.
    latent : ndarray ``[D]``
        The latent point it was decoded from.
    n_atoms : int
    residual : float
        Mean per-atom trilateration residual (unit-sphere units): how far the predicted
        distances are from any 3-D arrangement.
    scale : float
        Angstrom per unit-sphere unit used.
    is_prior_mean : bool
        Decoded from the prior mean.
    index : int
        Sample number (0 = first).
    code : dict or None
        For a shape-code generator's sample: ``family``, ``theta`` and the builder
        ``type`` and ``entry`` that made it (:mod:`diffpy_deepstruc.shapegen`).
    misfit : float
        The guide's misfit to the PDF (guided sampling; nan otherwise).
    """

    structure: Any
    latent: np.ndarray
    n_atoms: int
    residual: float
    scale: float
    is_prior_mean: bool = False
    index: int = 0
    code: dict | None = None
    misfit: float = float("nan")

    @property
    def xyz(self) -> np.ndarray:
        """Cartesian coordinates ``[n_atoms, 3]`` (Angstrom)."""
        return np.array([a.xyz_cartn for a in self.structure], dtype=float)


def unit_nn_distance(xyz: np.ndarray) -> float:
    """Mean nearest-neighbour pair distance of a structure (same units as ``xyz``).

    The average of the pair distances within 15 % of the median per-atom nearest
    distance (the first PDF peak's centre for that structure).
    """
    xyz = np.asarray(xyz, float)
    if len(xyz) < 2:
        return float("nan")
    d = np.sqrt(((xyz[:, None] - xyz[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    d1 = float(np.median(d.min(1)))
    iu = np.triu_indices(len(xyz), 1)
    pairs = d[iu]
    close = pairs[pairs < 1.15 * d1]
    return float(close.mean()) if close.size else d1


def fit_scale(
    unit_xyz: np.ndarray,
    r: np.ndarray,
    g: np.ndarray,
    s0: float,
    rel_range: float = 0.12,
    rmax: float = 30.0,
    sigma: float = 0.1,
) -> float:
    """Angstrom-per-unit scale that best lines up a shape's pair distances with G(r).

    A fast 1-D search: the pair distances of ``unit_xyz`` times ``s`` are histogrammed
    (0.02 A bins), broadened by a Gaussian of ``sigma`` A and divided by r (a Debye PDF
    without termination effects), and the Pearson correlation with the measured G over
    ``1.5 .. rmax`` A is maximised over ``s`` in ``s0 * (1 +- rel_range)`` (0.8 % steps,
    then 0.1 % steps around the best, then a parabola through the best three).  Peak positions dominate, so this reads the
    size from the PDF's peak positions, as the nearest-neighbour estimate does, but uses
    every peak.
    """
    xyz = np.asarray(unit_xyz, float)
    n = len(xyz)
    if n < 2 or not np.isfinite(s0) or s0 <= 0:
        return float(s0)
    iu = np.triu_indices(n, 1)
    d = np.sqrt(((xyz[:, None] - xyz[None]) ** 2).sum(-1))[iu]
    step = 0.02
    hi = min(float(r[-1]), rmax)
    grid = np.arange(1.5, hi, step)
    if grid.size < 20:
        return float(s0)
    gin = np.interp(grid, r, g)
    gin = (gin - gin.mean()) / (gin.std() + 1e-12)
    half = int(np.ceil(4 * sigma / step))
    kern = np.exp(-0.5 * (np.arange(-half, half + 1) * step / sigma) ** 2)
    edges = np.concatenate([grid - step / 2, [grid[-1] + step / 2]])

    d = np.sort(d)  # once: a histogram of d * s is d against the edges / s

    def score(f: float) -> float:
        idx = np.searchsorted(d, edges / (s0 * f))
        idx[-1] = np.searchsorted(d, edges[-1] / (s0 * f), side="right")  # closed end
        h = np.diff(idx)
        m = np.convolve(h.astype(float), kern, mode="same") / grid
        sd = m.std()
        return -np.inf if sd == 0 else float(np.dot(gin, (m - m.mean()) / sd)) / grid.size

    coarse = 1.0 + np.arange(-rel_range, rel_range + 1e-9, 0.008)
    best = coarse[int(np.argmax([score(f) for f in coarse]))]
    factors = best + np.arange(-0.008, 0.008 + 1e-9, 0.001)
    scores = np.array([score(f) for f in factors])
    k = int(np.argmax(scores))
    f = factors[k]
    if 0 < k < len(factors) - 1 and np.all(np.isfinite(scores[k - 1 : k + 2])):
        y0, y1, y2 = scores[k - 1 : k + 2]
        den = y0 - 2 * y1 + y2
        if den < 0:
            f += np.clip(0.5 * (y0 - y2) / den, -1, 1) * 0.001
    return float(s0 * f)


def _as_pdf(pdf: Any):
    """(r, g) arrays from a PDFData, a path, or an (r, g) pair."""
    if isinstance(pdf, str | os.PathLike):
        from .pdfdata import load_pdf

        pdf = load_pdf(pdf)
    if hasattr(pdf, "r") and hasattr(pdf, "g"):
        return np.asarray(pdf.r, float), np.asarray(pdf.g, float)
    if isinstance(pdf, tuple | list) and len(pdf) == 2:
        return np.asarray(pdf[0], float), np.asarray(pdf[1], float)
    raise PDFDataError("expected a PDFData, a .gr path or an (r, g) pair")


def check_metal(element: str) -> str:
    """Normalise ``element`` and check that it is a metal.

    The generators scale their shapes to the PDF's nearest-neighbour distance, so any
    metal is accepted; :func:`element_note` says when the element or its distance lie
    outside what a model saw.

    Raises
    ------
    ElementError
        When ``element`` names no element or a non-metal.
    """
    from .elements import is_metal, normalize_element

    sym = normalize_element(element)
    if not is_metal(sym):
        raise ElementError(f"{sym} is not a metal; DeepStruc models metal nanoparticles")
    return sym


class DeepStruc:
    """Generate candidate nanoparticle structures from a PDF.

    Parameters
    ----------
    model : CVAE or DAE
        A model from :func:`~diffpy_deepstruc.checkpoint.load_checkpoint` (carries its
        config as ``model.meta``).
    trilateration : dict, optional
        Keyword arguments for :func:`~diffpy_deepstruc.trilateration.trilaterate`
        (default ``maxiter=300``, ``w_pair=1``: satellite and aDM terms weighted alike,
        chosen on the validation split over 0, 3/n, 1 and 3).
    fit_scale : bool
        Refine each candidate's scale by lining up its pair distances with the input
        G(r) (:func:`fit_scale`); otherwise the nearest-neighbour-peak estimate is kept.
    """

    def __init__(
        self, model: DeepStrucNet, trilateration: dict | None = None, fit_scale: bool = True
    ) -> None:
        meta = getattr(model, "meta", None)
        if meta is None:
            raise CheckpointError(
                "the model carries no checkpoint config; use DeepStruc.load"
            )
        self.model = model.eval()
        self.meta = meta
        self.preprocess_config = PreprocessConfig.from_dict(meta["preprocess"])
        rep = meta["representation"]
        self.satellites = np.asarray(rep["satellites"], dtype=float)
        self.elements = list(meta.get("elements") or [])
        self.kind = model.kind
        self.trilateration = dict(trilateration or {})
        self.fit_scale = bool(fit_scale)

    # -- construction -----------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, **kw) -> DeepStruc:
        """Load a checkpoint folder (see :mod:`diffpy_deepstruc.checkpoint`)."""
        return cls(load_checkpoint(path), **kw)

    @classmethod
    def pretrained(cls, kind: str = "cvae", **kw) -> DeepStruc:
        """The model shipped in ``diffpy_deepstruc/pretrained`` (``kind="dae"``: the
        deterministic comparison model in ``pretrained/dae``).  No network access."""
        if kind not in ("cvae", "dae"):
            raise ParameterError(f"kind must be 'cvae' or 'dae', not {kind!r}")
        res = resources.files("diffpy_deepstruc") / "pretrained"
        if kind == "dae":
            res = res / "dae"
        with resources.as_file(res) as p:
            if not (Path(p) / "config.json").is_file():
                raise CheckpointError(f"no pretrained {kind} model shipped in {p}")
            return cls.load(p, **kw)

    # -- pieces -----------------------------------------------------------------
    def preprocess(self, pdf: Any) -> tuple[np.ndarray, float]:
        """The network input ``[L]`` for a PDF (PDFData, path or (r, g)) and the
        nearest-neighbour peak position r1 (A) that fixes its size."""
        r, g = _as_pdf(pdf)
        return prepare_input(r, g, self.preprocess_config)

    def _condition(self, pdf: Any) -> torch.Tensor:
        x = torch.from_numpy(self.preprocess(pdf)[0]).unsqueeze(0)
        with torch.no_grad():
            return self.model.condition(x)

    def encode(self, pdf: Any) -> tuple[np.ndarray, np.ndarray]:
        """Prior p(z | PDF): mean and standard deviation, each ``[D]``.

        For the DAE the standard deviation is its sampling spread (``latent_noise``).
        """
        c = self._condition(pdf)
        with torch.no_grad():
            mu, logvar = self.model.prior(c)
            std = self.model.prior_std(logvar)
        return mu[0].numpy().astype(float), std[0].numpy().astype(float)

    def _check_element(self, element: str) -> str:
        """:func:`check_metal` (any metal, also one the model was not trained on: the
        network reads G(r) on r / r_nn and its shapes carry no element)."""
        return check_metal(element)

    def decode_unit(self, z: np.ndarray, pdf: Any) -> list[dict[str, Any]]:
        """Decode latent points ``z [n, D]`` to unit-sphere structures.

        Returns one dict per point: ``xyz`` (unit sphere, canonical frame, ``[m, 3]``),
        ``n_atoms``, ``residual`` (mean per atom), ``scale`` (A per unit, from the PDF's
        nearest-neighbour peak, else the network), ``scale_net``.
        """
        from .trilateration import trilaterate

        r, g = _as_pdf(pdf)
        z = np.atleast_2d(np.asarray(z, dtype=np.float32))
        x, r1 = self.preprocess((r, g))
        with torch.no_grad():
            c = self.model.condition(torch.from_numpy(x).unsqueeze(0))
            out = self.model.decode(torch.from_numpy(z), c.expand(len(z), -1))
            adm_all = pairwise_distances(out["emb"]).numpy().astype(float)
        reduced = self.preprocess_config.mode == "reduced"
        peak = r1 if np.isfinite(r1) else None
        res = []
        for k in range(len(z)):
            sel = np.flatnonzero(out["mask_logit"][k].numpy() > 0)
            if sel.size < 2:
                sel = np.argsort(-out["mask_logit"][k].numpy())[:2]
                sel.sort()
            sat = out["sat_dist"][k].numpy().astype(float)[sel]
            adm = adm_all[k][np.ix_(sel, sel)]
            n = len(sel)
            kw = {"maxiter": 300, "w_pair": 1.0, **self.trilateration}
            tri = trilaterate(sat, adm, self.satellites, **kw)
            xyz = tri.xyz
            scale_net = float(out["scale"][k]) * (r1 if reduced else 1.0)
            scale = scale_net
            if peak is not None and n >= 2:
                u = unit_nn_distance(xyz)
                if np.isfinite(u) and u > 0:
                    s = peak / u
                    if abs(s / scale_net - 1) < 0.1:
                        scale = s
            scale_peak = scale
            if self.fit_scale:
                scale = fit_scale(xyz, r, g, scale)
            res.append(
                {
                    "xyz": xyz,
                    "n_atoms": n,
                    "residual": float(np.mean(tri.residual)),
                    "scale": scale,
                    "scale_net": scale_net,
                    "scale_peak": scale_peak,
                }
            )
        return res

    def decode(self, z: Any, pdf: Any, element: str = "Pt", uiso: float = DEFAULT_UISO):
        """Decode one latent point ``z [D]`` into a :class:`diffpy.structure.Structure`."""
        from .structures import arrays_to_structure

        sym = self._check_element(element)
        z = np.asarray(z, dtype=np.float32).reshape(1, -1)
        if z.shape[1] != self.model.config.latent:
            raise ParameterError(
                f"z must have {self.model.config.latent} values, not {z.shape[1]}"
            )
        d = self.decode_unit(z, pdf)[0]
        return arrays_to_structure(d["xyz"] * d["scale"], sym, uiso, title="deepstruc")

    def sample_latent(
        self,
        pdf: Any,
        n: int = 20,
        seed: int = 0,
        include_mean: bool = True,
        distinct: bool = True,
    ) -> np.ndarray:
        """``n`` latent points ``[n, D]`` from p(z | PDF) (first = mean if asked).

        ``distinct``: a mixture prior's points come from ``n`` distinct components (the
        default: diverse candidates); False draws the components in proportion to their
        weights (ancestral sampling, repeats allowed).  Ignored by a Gaussian prior.
        """
        if not isinstance(n, int) or n < 1:
            raise ParameterError(f"n must be a positive integer, not {n!r}")
        c = self._condition(pdf)
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            z = self.model.sample_prior(
                c, n, generator=gen, include_mean=include_mean, distinct=distinct
            )
        return z[0].numpy()

    def generate(
        self,
        pdf: Any,
        n: int = 20,
        element: str = "Pt",
        seed: int = 0,
        uiso: float = DEFAULT_UISO,
        include_mean: bool = True,
        distinct: bool = True,
    ) -> list[Candidate]:
        """Sample ``n`` candidate structures for a PDF.

        Parameters
        ----------
        pdf : PDFData, path or (r, g)
            The measured PDF; must cover the model's r-range (see
            :mod:`diffpy_deepstruc.preprocess`).
        n : int
            Number of candidates.
        element : str
            The metal (monometallic clusters).
        seed : int
            Seed of the latent samples (same seed, same candidates).
        uiso : float
            Isotropic displacement (A^2) set on every atom.
        include_mean : bool
            Make the first candidate the prior mean.
        distinct : bool
            Draw a mixture prior's samples from ``n`` distinct components (default:
            diverse candidates for screening); False samples p(z | PDF) as it is, so a
            probable component gives several samples.

        Returns
        -------
        list of Candidate
            In sampling order.
        """
        from .structures import arrays_to_structure

        sym = self._check_element(element)
        r, g = _as_pdf(pdf)
        z = self.sample_latent((r, g), n, seed, include_mean, distinct)
        out = []
        for k, d in enumerate(self.decode_unit(z, (r, g))):
            s = arrays_to_structure(
                d["xyz"] * d["scale"], sym, uiso, title=f"deepstruc {self.kind} sample {k}"
            )
            out.append(
                Candidate(
                    structure=s,
                    latent=z[k].astype(float),
                    n_atoms=d["n_atoms"],
                    residual=d["residual"],
                    scale=d["scale"],
                    is_prior_mean=include_mean and k == 0,
                    index=k,
                )
            )
        return out


#: Relative margin around the model's nearest-neighbour range within which a distance
#: counts as seen (the catalog's shapes are scaled continuously between the metals).
NN_RANGE_MARGIN = 0.02


def element_note(
    model_elements: Sequence[str], sym: str, nn: float | None = None
) -> str | None:
    """A one-line note when ``sym`` or its distance lie outside the model's training.

    Parameters
    ----------
    model_elements : sequence of str
        The metals the model was trained on (:attr:`DeepStruc.elements`); empty when
        the checkpoint does not record them (then no note is given).
    sym : str
        The element of the solve.
    nn : float, optional
        Its nearest-neighbour distance (A), e.g. the position of the PDF's first peak;
        default the bulk value of :func:`~diffpy_deepstruc.elements.nearest_neighbour_distance`.

    Returns
    -------
    str or None
        For an element outside the training metals, e.g. ``"Pb (nearest-neighbour
        3.50 A) was not in the model's training metals (Ag, Au, ...; 2.35-3.00 A);
        candidates are the model's shapes scaled to Pb's distance"``; for a training
        metal whose ``nn`` lies more than :data:`NN_RANGE_MARGIN` outside the training
        range, a note saying so; otherwise None.

    Raises
    ------
    ElementError
        When ``sym`` names no element or no library has a distance for it (and
        ``nn`` is not given).
    ParameterError
        When ``nn`` is not a positive finite number.
    """
    from .elements import nearest_neighbour_distance, normalize_element

    el = normalize_element(sym)
    if nn is None:
        nn = nearest_neighbour_distance(el)
    try:
        nn = float(nn)
    except (TypeError, ValueError):
        raise ParameterError(f"nn must be a distance in A, got {nn!r}") from None
    if not (np.isfinite(nn) and nn > 0):
        raise ParameterError(f"nn must be a positive distance in A, got {nn}")
    trained = sorted({normalize_element(e) for e in model_elements})
    if not trained:
        return None
    known = []
    for e in trained:
        try:
            known.append(nearest_neighbour_distance(e))
        except ElementError:
            continue
    lo, hi = (min(known), max(known)) if known else (nn, nn)
    span = f"{lo:.2f}-{hi:.2f} A"
    names = ", ".join(trained)
    if el not in trained:
        return (
            f"{el} (nearest-neighbour {nn:.2f} A) was not in the model's training metals "
            f"({names}; {span}); candidates are the model's shapes scaled to {el}'s distance"
        )
    if nn < lo * (1 - NN_RANGE_MARGIN) or nn > hi * (1 + NN_RANGE_MARGIN):
        return (
            f"{el}'s nearest-neighbour distance {nn:.2f} A lies outside the distances of "
            f"the model's training metals ({span}); candidates are the model's shapes "
            f"scaled to {nn:.2f} A"
        )
    return None
