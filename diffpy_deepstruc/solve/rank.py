"""Stage 6, rank: the refined candidates, near-duplicates folded, ordered by srfit's Rw.

Also marks the candidates whose fit is statistically indistinguishable from the best
(:mod:`diffpy_deepstruc.consistent`), and defines the solve's result objects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..completion import CountRange
from ..pdfdata import PDFData
from .candidates import same_structure, sorted_distances
from .settings import FitSettings

__all__ = ["RefinedCandidate", "SolveResult", "merge_near_duplicates"]


@dataclass
class RefinedCandidate:
    """One sampled candidate after its srfit refinement.

    Attributes
    ----------
    index : int
        Sample number (0-based, in generation order; sample 0 is the prior mean).
    structure : diffpy.structure.Structure
        The refined structure (Cartesian, unit lattice, Angstrom, refined Uiso).
    rw : float
        srfit's Rw on the fit range.
    parameters : dict
        Refined values (scale, zoomscale, uiso, delta2) and fixed ones.
    n_atoms : int
        Atom count.
    latent : list of float
        The candidate's latent point.
    residual : float
        Mean trilateration residual of the unrefined candidate (unit-sphere units).
    r, g_calc : ndarray
        Fit range and the refined model's G(r) on it.
    merged : list of int
        Indices of near-duplicate candidates folded into this one.
    source : str
        ``"model"`` for a network sample, ``"library: <type> <n> <builder>"`` for a
        shape-library candidate (see :mod:`diffpy_deepstruc.library`),
        ``"completed: <source of the start>"`` for a completed one.
    screen_rw : float
        Rw of the batched screening refinement (fast model), nan when not screened.
    consistent : bool
        Not significantly worse than the best fit (see :mod:`diffpy_deepstruc.consistent`).
    origin : int or None
        For a completed structure: the sample number it was completed from.
    changes : dict
        For a completed structure: atoms ``added`` / ``removed`` (lists of xyz) and the
        accepted ``moves``.
    count_range : CountRange or None
        For a candidate the completion handled (completed or left unchanged): the atom
        counts the data do not tell apart from its own
        (:attr:`diffpy_deepstruc.completion.CompletionResult.count_range`).
    """

    index: int
    structure: Any
    rw: float
    parameters: dict[str, float]
    n_atoms: int
    latent: list[float]
    residual: float
    r: np.ndarray
    g_calc: np.ndarray
    merged: list[int] = field(default_factory=list)
    source: str = "model"
    screen_rw: float = float("nan")
    consistent: bool = False
    origin: int | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    count_range: CountRange | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict (structure as element + xyz lists)."""
        from ..structures import structure_arrays

        xyz, elements, uiso = structure_arrays(self.structure)
        return {
            "index": self.index,
            "rw": self.rw,
            "parameters": self.parameters,
            "n_atoms": self.n_atoms,
            "latent": [v if math.isfinite(v) else None for v in map(float, self.latent)],
            "residual": self.residual,
            "merged": self.merged,
            "source": self.source,
            "screen_rw": None if not math.isfinite(self.screen_rw) else self.screen_rw,
            "consistent": self.consistent,
            "origin": self.origin,
            "changes": self.changes,
            "count_range": None if self.count_range is None else list(self.count_range),
            "elements": list(elements),
            "xyz": np.asarray(xyz).tolist(),
            "uiso": np.asarray(uiso).tolist(),
            "r": np.asarray(self.r).tolist(),
            "g_calc": np.asarray(self.g_calc).tolist(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RefinedCandidate:
        """Inverse of :meth:`to_json`."""
        from ..structures import arrays_to_structure

        s = arrays_to_structure(np.asarray(d["xyz"]), d["elements"], np.asarray(d["uiso"]))
        return cls(
            index=int(d["index"]),
            structure=s,
            rw=float(d["rw"]),
            parameters={k: float(v) for k, v in d["parameters"].items()},
            n_atoms=int(d["n_atoms"]),
            latent=[float("nan") if v is None else float(v) for v in d["latent"]],
            residual=float(d["residual"]),
            r=np.asarray(d["r"], dtype=float),
            g_calc=np.asarray(d["g_calc"], dtype=float),
            merged=[int(i) for i in d.get("merged", [])],
            source=str(d.get("source", "model")),
            screen_rw=float("nan") if d.get("screen_rw") is None else float(d["screen_rw"]),
            consistent=bool(d.get("consistent", False)),
            origin=None if d.get("origin") is None else int(d["origin"]),
            changes=dict(d.get("changes") or {}),
            count_range=count_range_from_json(d.get("count_range")),
        )


def count_range_from_json(value: Any) -> CountRange | None:
    """A :class:`~diffpy_deepstruc.completion.CountRange` from its JSON list
    (``[lo, hi, open_lo, open_hi]``; ``[lo, hi]`` reads as closed), or None."""
    if value is None:
        return None
    lo, hi, *flags = value
    return CountRange(int(lo), int(hi), *(bool(f) for f in flags[:2]))


def merge_near_duplicates(
    candidates: Sequence[RefinedCandidate], tol: float = 0.05
) -> list[RefinedCandidate]:
    """Fold candidates that are the same structure into the best-Rw one.

    Two refined candidates are near-duplicates when they have the same atom count and
    their sorted pair-distance lists differ by less than ``tol`` (A) on average: a
    rotation-, translation- and permutation-invariant comparison.

    Parameters
    ----------
    candidates : sequence of RefinedCandidate
        Refined candidates (any order).
    tol : float
        Mean absolute difference of sorted pair distances below which two structures
        count as one (A).

    Returns
    -------
    list of RefinedCandidate
        Sorted by Rw (best first); each keeps the indices it absorbed in ``merged``.
    """
    ordered = sorted(candidates, key=lambda c: (not math.isfinite(c.rw), c.rw, c.index))
    kept: list[tuple[RefinedCandidate, np.ndarray]] = []
    for cand in ordered:
        d = sorted_distances(cand.structure)
        for keeper, dk in kept:
            related = cand.origin == keeper.index or keeper.origin == cand.index
            # a completed structure stays beside its start
            if not related and same_structure(d, dk, tol):
                keeper.merged.append(cand.index)
                keeper.merged.extend(cand.merged)
                break
        else:
            kept.append((cand, d))
    return [c for c, _ in kept]


@dataclass
class SolveResult:
    """The outcome of :func:`solve`.

    Attributes
    ----------
    candidates : list of RefinedCandidate
        Refined, merged and sorted by Rw (best first).
    settings : FitSettings
        The fit settings used.
    element : str
        The metal.
    pdf : PDFData
        The data.
    n_sampled : int
        Number of candidates sampled by the model.
    timings : dict
        Seconds per stage (``sampling``, ``library``, ``screening``, ``completion``,
        ``refinement``) and ``total``.
    model : str
        Description of the model used (each model's label, joined by ``" + "``).
    seed : int
        Sampling seed.
    n_library : int
        Number of shape-library candidates screened beside the samples.
    screened : list of dict
        Every distinct candidate of the screening stage (``index``, ``source``,
        ``n_atoms``, ``screen_rw``, refined parameters), best first.
    notes : list of str
        What the user should know about this solve (assumed settings, an element
        outside the model's training metals...).
    consistent_test : dict
        The statistical test that marks the candidates consistent with the data
        (noise, independent points, parameters, threshold).
    sample_latents : ndarray, optional
        Latent points of all the first model's samples (before merging).
    model_latents : list of ndarray
        The same for every model, in the order of ``model`` (a list of one array for
        one model).
    options : dict
        The options of the run (``n`` per model, ``library_k``, ``refine_k``,
        ``complete_k``).
    model_labels : list of str
        Each model's label, in order (``model`` joins them).
    n_refined : int
        srfit refinements run (finalists and completed candidates; ``candidates`` holds
        the distinct ones).
    """

    candidates: list[RefinedCandidate]
    settings: FitSettings
    element: str
    pdf: PDFData
    n_sampled: int
    timings: dict[str, float]
    model: str
    seed: int
    n_library: int = 0
    screened: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    consistent_test: dict[str, Any] = field(default_factory=dict)
    sample_latents: np.ndarray | None = None
    options: dict[str, Any] = field(default_factory=dict)
    model_latents: list[np.ndarray] = field(default_factory=list)
    model_labels: list[str] = field(default_factory=list)
    n_refined: int = 0

    @property
    def best(self) -> RefinedCandidate:
        """The top-ranked candidate."""
        return self.candidates[0]


#: Parameters the standard recipe refines (scale, zoomscale, Uiso, delta2).
N_RECIPE_PARAMS: int = 4


def mark_consistent(
    ranked: Sequence[RefinedCandidate], pdf: PDFData, settings: FitSettings
) -> dict[str, Any]:
    """Mark the candidates whose fit is not significantly worse than the best.

    Hamilton's R-ratio test over the data's independent points
    (:func:`diffpy_deepstruc.consistent.assess`); the noise comes from dG when the file
    has it, else from the high-r tail beyond the best candidate's diameter, else from
    the best fit's difference curve (an upper bound).

    Parameters
    ----------
    ranked : sequence of RefinedCandidate
        Best first; each gets ``consistent`` set.
    pdf : PDFData
    settings : FitSettings

    Returns
    -------
    dict
        The test's record (JSON-ready, see ``ConsistencyResult.as_dict``).
    """
    from ..consistent import assess, estimate_noise
    from ..errors import ParameterError

    if not ranked:
        return {}
    best = ranked[0]
    xyz = np.asarray(best.structure.xyz_cartn, dtype=float)
    diameter = (
        float(np.ptp(np.linalg.norm(xyz - xyz.mean(0), axis=1)) * 2) if len(xyz) else 0
    )
    g_calc = np.interp(pdf.r, best.r, best.g_calc)  # used over the fit range only
    try:
        noise = estimate_noise(
            pdf.r, pdf.g, g_calc, pdf.dg, tail_from=diameter + 5.0, qmax=settings.qmax,
            rmin=settings.rmin, rmax=settings.rmax,
        )  # fmt: skip
    except ParameterError:  # no source of noise: the test runs on the ratio alone
        noise = None
    sel = (pdf.r >= settings.rmin) & (pdf.r <= settings.rmax)
    result = assess(
        [c.rw for c in ranked], N_RECIPE_PARAMS, rmin=settings.rmin, rmax=settings.rmax,
        qmax=settings.qmax, noise=noise, g=pdf.g[sel],
        labels=[f"#{k}" for k in range(1, len(ranked) + 1)],
    )  # fmt: skip
    for c, flag in zip(ranked, result.consistent, strict=True):
        c.consistent = bool(flag)
    return result.as_dict()
