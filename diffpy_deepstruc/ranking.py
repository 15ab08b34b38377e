"""Solve a PDF: sample candidates, refine each with srfit, merge duplicates, rank by Rw.

This is the plugin's pipeline (``deepstruc solve``)::

    PDFData --generator--> N candidate Structures --refine (srfit, in parallel)-->
    Rw + refined Structure --merge near-duplicates--> ranking --> files

Finished candidates are written to ``OUTDIR/partial/`` as they complete (one JSON file
each, atomically), so an interrupted run keeps every finished refinement and
``resume=True`` continues from there.  The final outputs are written atomically and an
existing result is never replaced unless ``force=True``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .elements import is_metal, normalize_element
from .errors import ElementError, OutputExistsError, ParameterError
from .fileio import atomic_write_text
from .pdfdata import PDFData, load_pdf

__all__ = [
    "FitSettings",
    "RefinedCandidate",
    "resolve_element",
    "resolve_settings",
    "refine_candidate",
    "merge_near_duplicates",
    "solve",
    "write_solution",
    "SolveResult",
]

#: Default fit range (A).  Below 1.5 A a metal PDF holds only termination ripples.
DEFAULT_RMIN: float = 1.5
DEFAULT_RMAX: float = 30.0
#: Function evaluations allowed per candidate refinement in :func:`solve`.  A good
#: starting model converges in fewer than 10; a badly distorted sample can take hundreds
#: (minutes) to reach a poor Rw, so the budget bounds the solve time.
MAX_NFEV: int = 20

#: Default spacing of the fit grid (A): finer data are resampled onto it by srfit.  Peaks
#: of metal PDFs are >= 0.1 A wide (FWHM), Nyquist for Qmax 30 is pi/30 = 0.105 A, so
#: 0.05 A loses nothing while a 0.01 A grid costs five times the refinement time.
DEFAULT_FIT_RSTEP: float = 0.05


@dataclass(frozen=True)
class FitSettings:
    """Instrument and fit-range settings of one refinement, with where each came from.

    Attributes
    ----------
    qmin, qmax : float
        Q-range of the Fourier transform (A^-1).
    qdamp, qbroad : float
        Instrument resolution parameters (A^-1), fixed in the fit.
    rmin, rmax : float
        Fit range (A); Rw is computed on it.
    rstep : float or None
        Spacing of the fit grid (A); None: the data's own points.
    sources : dict
        ``name -> "argument" | "header" | "default"`` for each value above.
    """

    qmin: float
    qmax: float
    qdamp: float
    qbroad: float
    rmin: float
    rmax: float
    rstep: float | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (for JSON)."""
        return asdict(self)


def _pick(name: str, arg: float | None, header: float | None, default: float | None):
    """Choose argument, then header, then default; return (value, source)."""
    if arg is not None:
        return float(arg), "argument"
    if header is not None:
        return float(header), "header"
    if default is None:
        raise ParameterError(
            f"{name} is not in the data file's header; give it explicitly (--{name})"
        )
    return float(default), "default"


def resolve_settings(
    pdf: PDFData,
    *,
    qmin: float | None = None,
    qmax: float | None = None,
    qdamp: float | None = None,
    qbroad: float | None = None,
    rmin: float | None = None,
    rmax: float | None = None,
    rstep: float | None = None,
) -> FitSettings:
    """Fit settings from explicit arguments, else the file header, else defaults.

    Qmax has no default: it shapes every peak, so it must come from the argument or
    the header.  Qmin defaults to 0, Qdamp and Qbroad to 0 (an ideal instrument); the
    ``sources`` record says which values were assumed so that reports show it.

    Parameters
    ----------
    pdf : PDFData
        The measured data (its header supplies values not given).
    qmin, qmax, qdamp, qbroad, rmin, rmax : float, optional
        Explicit values.

    Returns
    -------
    FitSettings

    Raises
    ------
    ParameterError
        On a missing Qmax, Qmax <= Qmin, negative Qdamp/Qbroad or a fit range outside
        the data.
    """
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    for name, arg, header, default in (
        ("qmin", qmin, pdf.qmin, 0.0),
        ("qmax", qmax, pdf.qmax, None),
        ("qdamp", qdamp, pdf.qdamp, 0.0),
        ("qbroad", qbroad, pdf.qbroad, 0.0),
    ):
        values[name], sources[name] = _pick(name, arg, header, default)
    for name, value in values.items():
        if not math.isfinite(value):
            raise ParameterError(f"{name} must be a finite number, got {value}")
    if values["qmax"] <= values["qmin"]:
        raise ParameterError(f"qmax ({values['qmax']}) must exceed qmin ({values['qmin']})")
    for name in ("qmin", "qdamp", "qbroad"):
        if values[name] < 0:
            raise ParameterError(f"{name} must not be negative, got {values[name]}")
    lo, hi = float(pdf.r[0]), float(pdf.r[-1])
    values["rmin"], sources["rmin"] = _pick("rmin", rmin, None, max(DEFAULT_RMIN, lo))
    values["rmax"], sources["rmax"] = _pick("rmax", rmax, None, min(DEFAULT_RMAX, hi))
    if not values["rmin"] < values["rmax"]:
        raise ParameterError(
            f"rmin ({values['rmin']}) must be below rmax ({values['rmax']})"
        )
    step = float(np.median(np.diff(pdf.r)))
    if hi < values["rmax"] <= hi + 1.01 * step:
        values["rmax"] = hi  # "30" on data that end one step short of 30
    if lo - 1.01 * step <= values["rmin"] < lo:
        values["rmin"] = lo
    if values["rmin"] < lo - 1e-9 or values["rmax"] > hi + 1e-9:
        raise ParameterError(
            f"fit range {values['rmin']}-{values['rmax']} A lies outside the data "
            f"({lo:g}-{hi:g} A)"
        )
    if values["rmax"] - values["rmin"] < 5.0:
        raise ParameterError(
            f"fit range {values['rmin']}-{values['rmax']} A is too short; at least 5 A "
            "is needed to tell structures apart"
        )
    data_step = float(np.median(np.diff(pdf.r)))
    if rstep is None:
        if data_step < 0.9 * DEFAULT_FIT_RSTEP:
            values["rstep"], sources["rstep"] = DEFAULT_FIT_RSTEP, "default"
        else:
            values["rstep"], sources["rstep"] = None, "data"
    else:
        if not (math.isfinite(rstep) and rstep > 0):
            raise ParameterError(f"rstep must be a positive number, got {rstep}")
        if rstep < 0.5 * data_step:
            raise ParameterError(
                f"rstep {rstep} A is finer than the data's spacing {data_step:.4g} A"
            )
        values["rstep"], sources["rstep"] = float(rstep), "argument"
    return FitSettings(sources=sources, **values)


def resolve_element(pdf: PDFData, element: str | None = None) -> str:
    """The metal to build candidates of: ``element``, else the header's composition.

    Parameters
    ----------
    pdf : PDFData
        The data; its ``composition`` header is read when ``element`` is None.
    element : str, optional
        Explicit element symbol.

    Returns
    -------
    str
        A metal's element symbol.

    Raises
    ------
    ElementError
        When the element is unknown or not a metal, or when neither the argument nor
        the header gives exactly one metal.
    """
    if element is not None:
        sym = normalize_element(element)
        if not is_metal(sym):
            raise ElementError(
                f"{sym} is not a metal; DeepStruc models metal nanoparticles"
            )
        return sym
    where = pdf.source or "the data"
    if pdf.composition is None:
        raise ElementError(
            f"{where}: no element given and no composition in the header; pass --element"
        )
    metals = [e for e in pdf.elements or [] if is_metal(e)]
    if len(set(metals)) != 1:
        raise ElementError(
            f"{where}: composition {pdf.composition!r} does not name exactly one metal "
            f"(found {sorted(set(metals)) or 'none'}); pass --element"
        )
    return metals[0]


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
        shape-library candidate (see :mod:`diffpy_deepstruc.library`).
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

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict (structure as element + xyz lists)."""
        from .structures import structure_arrays

        xyz, elements, uiso = structure_arrays(self.structure)
        return {
            "index": self.index,
            "rw": self.rw,
            "parameters": self.parameters,
            "n_atoms": self.n_atoms,
            "latent": list(map(float, self.latent)),
            "residual": self.residual,
            "merged": self.merged,
            "source": self.source,
            "elements": list(elements),
            "xyz": np.asarray(xyz).tolist(),
            "uiso": np.asarray(uiso).tolist(),
            "r": np.asarray(self.r).tolist(),
            "g_calc": np.asarray(self.g_calc).tolist(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RefinedCandidate:
        """Inverse of :meth:`to_json`."""
        from .structures import arrays_to_structure

        s = arrays_to_structure(np.asarray(d["xyz"]), d["elements"], np.asarray(d["uiso"]))
        return cls(
            index=int(d["index"]),
            structure=s,
            rw=float(d["rw"]),
            parameters={k: float(v) for k, v in d["parameters"].items()},
            n_atoms=int(d["n_atoms"]),
            latent=[float(v) for v in d["latent"]],
            residual=float(d["residual"]),
            r=np.asarray(d["r"], dtype=float),
            g_calc=np.asarray(d["g_calc"], dtype=float),
            merged=[int(i) for i in d.get("merged", [])],
            source=str(d.get("source", "model")),
        )


def _refine_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Worker entry point: refine one candidate (picklable in, JSON-safe out)."""
    import torch

    from .structures import arrays_to_structure

    # one thread per refinement: parallelism comes from the worker processes, and
    # torch's thread pool on a loaded machine slows the small Debye sums 3-50x
    torch.set_num_threads(1)

    s = arrays_to_structure(
        np.asarray(payload["xyz"]), payload["elements"], np.asarray(payload["uiso"])
    )
    settings = FitSettings(**payload["settings"])
    cand = refine_candidate(
        s,
        np.asarray(payload["r"]),
        np.asarray(payload["g"]),
        settings,
        dg=None if payload["dg"] is None else np.asarray(payload["dg"]),
        index=payload["index"],
        latent=payload["latent"],
        residual=payload["residual"],
    )
    cand.source = payload.get("source", "model")
    return cand.to_json()


def refine_candidate(
    structure: Any,
    r: np.ndarray,
    g: np.ndarray,
    settings: FitSettings,
    *,
    dg: np.ndarray | None = None,
    index: int = 0,
    latent: Sequence[float] = (),
    residual: float = float("nan"),
) -> RefinedCandidate:
    """Refine one candidate structure against the data with an srfit recipe.

    Parameters
    ----------
    structure : diffpy.structure.Structure
        The starting model (Cartesian, unit lattice).
    r, g : ndarray
        The measured PDF.
    settings : FitSettings
        Instrument settings (fixed) and fit range.
    dg : ndarray, optional
        Uncertainties of G.
    index, latent, residual
        Book-keeping copied into the result.

    Returns
    -------
    RefinedCandidate
    """
    from .refine import fit_structure

    fit = fit_structure(
        structure,
        r,
        g,
        dg=dg,
        qmin=settings.qmin,
        qmax=settings.qmax,
        qdamp=settings.qdamp,
        qbroad=settings.qbroad,
        rmin=settings.rmin,
        rmax=settings.rmax,
        rstep=settings.rstep,
        max_nfev=MAX_NFEV,
    )
    return RefinedCandidate(
        index=index,
        structure=fit.structure,
        rw=float(fit.rw),
        parameters=dict(fit.parameters),
        n_atoms=len(fit.structure),
        latent=[float(v) for v in latent],
        residual=float(residual),
        r=np.asarray(fit.r),
        g_calc=np.asarray(fit.g_calc),
    )


def model_library(model: Any) -> Any:
    """The shape library that comes with ``model`` (its training catalog's shapes).

    Looked for as ``shapes.safetensors`` in the model's folders
    (:func:`diffpy_deepstruc.latent.model_folders`: its checkpoint folder, or the
    shipped one whose weights digest is the model's) or the folder above each (the
    shipped CVAE and DAE share ``pretrained/shapes.safetensors``).  None when there is
    none.
    """
    from .latent import model_folders
    from .library import load_shape_library

    for folder in model_folders(model):
        for f in (folder / "shapes.safetensors", folder.parent / "shapes.safetensors"):
            if f.is_file():
                return load_shape_library(f)
    return None


def library_candidates(
    library: Any,
    candidates: Sequence[Any],
    pdf: PDFData,
    settings: FitSettings,
    element: str,
    *,
    k: int = 5,
    size_tolerance: float = 0.15,
) -> list[tuple[Any, str]]:
    """Library shapes of the sampled sizes that best match the data.

    The shapes whose atom count lies within ``size_tolerance`` of any sampled
    candidate's are scaled so that their first-neighbour shell sits at the data's first
    peak (else at the samples' median nearest-neighbour distance), their Debye PDFs are
    computed at the data's instrument settings, and the ``k`` with the highest Pearson correlation with the
    data over the fit range are returned.

    Parameters
    ----------
    library : ShapeLibrary
        The shapes (:mod:`diffpy_deepstruc.library`).
    candidates : sequence of generator.Candidate
        The network's samples (their atom counts set the size window).
    pdf : PDFData
        The data.
    settings : FitSettings
        Instrument settings and fit range.
    element : str
        The metal.
    k : int
        Number of shapes.
    size_tolerance : float
        Relative atom-count window around the sampled sizes.

    Returns
    -------
    list of (Structure, label)
    """
    from .debye import PDFParameters
    from .generator import nn_peak_position
    from .structures import arrays_to_structure

    idx = library.within_sizes([c.n_atoms for c in candidates], size_tolerance)
    if idx.size == 0:
        return []
    peak = nn_peak_position(pdf.r, pdf.g)
    if peak is None:
        peak = float(
            np.median([nearest_neighbour_distance(c.structure) for c in candidates])
        )
    sel = (pdf.r >= settings.rmin) & (pdf.r <= settings.rmax)
    params = PDFParameters(
        rmin=settings.rmin,
        rmax=settings.rmax + 0.05,
        rstep=0.05,
        qmin=settings.qmin,
        qmax=settings.qmax,
        qdamp=settings.qdamp,
        qbroad=settings.qbroad,
        delta2=2.0,
    )
    best = library.screen(idx, pdf.r[sel], pdf.g[sel], params, peak, k=k)
    return [
        (
            arrays_to_structure(
                library.shape(i, nn), element, 0.005, title=library.label(i)
            ),
            library.label(i),
        )
        for i, _, nn in best
    ]


def group_near_duplicates(
    structures: Sequence[Any], tol: float = 0.05
) -> dict[int, list[int]]:
    """Group structures that are the same within ``tol`` (see :func:`merge_near_duplicates`).

    Parameters
    ----------
    structures : sequence of Structure
        In priority order (the first of a group represents it).
    tol : float
        Mean absolute difference of sorted pair distances (A) below which two
        structures with the same atom count are one.

    Returns
    -------
    dict
        Representative index -> indices it stands for (without itself).
    """
    groups: dict[int, list[int]] = {}
    profiles: list[tuple[int, np.ndarray]] = []
    for i, s in enumerate(structures):
        d = _sorted_distances(s)
        for j, dj in profiles:
            if dj.shape == d.shape and (
                d.size == 0 or float(np.mean(np.abs(d - dj))) < tol
            ):
                groups[j].append(i)
                break
        else:
            profiles.append((i, d))
            groups[i] = []
    return groups


def _sorted_distances(structure: Any) -> np.ndarray:
    from .structures import structure_arrays

    xyz = structure_arrays(structure)[0]
    i, j = np.triu_indices(len(xyz), 1)
    return np.sort(np.linalg.norm(xyz[i] - xyz[j], axis=1))


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
        d = _sorted_distances(cand.structure)
        for keeper, dk in kept:
            if keeper.n_atoms == cand.n_atoms and (
                d.size == 0 or float(np.mean(np.abs(d - dk))) < tol
            ):
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
        Seconds spent in ``sampling`` (network + trilateration), ``refinement`` and
        ``total``.
    model : str
        Description of the model used.
    seed : int
        Sampling seed.
    n_library : int
        Number of shape-library candidates refined beside the samples.
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

    @property
    def best(self) -> RefinedCandidate:
        """The top-ranked candidate."""
        return self.candidates[0]


def _partial_dir(outdir: str | os.PathLike | None) -> Path | None:
    return None if outdir is None else Path(outdir) / "partial"


def _load_partial(pdir: Path | None, run_key: str) -> dict[int, dict[str, Any]]:
    """Finished candidates of an interrupted run with the same inputs."""
    if pdir is None or not pdir.is_dir():
        return {}
    done: dict[int, dict[str, Any]] = {}
    for f in sorted(pdir.glob("candidate_*.json")):
        try:
            d = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a damaged partial file is simply redone
        if d.get("run_key") == run_key:
            done[int(d["index"])] = d
    return done


def _run_key(
    pdf: PDFData, element: str, settings: FitSettings, n: int, seed: int, model_id: str
) -> str:
    import hashlib

    h = hashlib.sha256()
    h.update(np.asarray(pdf.r, float).tobytes())
    h.update(np.asarray(pdf.g, float).tobytes())
    h.update(
        json.dumps(
            [element, settings.to_dict(), n, seed, model_id], sort_keys=True
        ).encode()
    )
    return h.hexdigest()[:16]


def solve(
    pdf: PDFData | str | os.PathLike,
    *,
    n: int = 20,
    element: str | None = None,
    model: Any = None,
    seed: int = 0,
    qmin: float | None = None,
    qmax: float | None = None,
    qdamp: float | None = None,
    qbroad: float | None = None,
    rmin: float | None = None,
    rmax: float | None = None,
    rstep: float | None = None,
    workers: int = 1,
    outdir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = False,
    merge_tol: float = 0.05,
    library: Any = "shipped",
    library_k: int = 5,
) -> SolveResult:
    """Sample ``n`` candidates for a PDF, refine each with srfit and rank them by Rw.

    Parameters
    ----------
    pdf : PDFData or path
        The measured PDF.
    n : int
        Number of candidates to sample.
    element : str, optional
        The metal; default: the single metal of the header's composition.
    model : DeepStruc, optional
        The generator; default :meth:`DeepStruc.pretrained`.
    seed : int
        Sampling seed.
    qmin, qmax, qdamp, qbroad, rmin, rmax, rstep : float, optional
        Fit settings; see :func:`resolve_settings`.
    workers : int
        Refinements run in this many processes (1: in this process).
    outdir : path, optional
        Where finished candidates are kept (``outdir/partial``) as they complete.
    resume : bool
        Reuse finished candidates of an interrupted run with the same inputs.
    progress : bool
        Show a progress bar.
    merge_tol : float
        Near-duplicate tolerance, see :func:`merge_near_duplicates`.
    library : ShapeLibrary, "shipped" or None
        Shape library whose best ``library_k`` shapes of the sampled sizes (screened by
        PDF correlation, see :func:`library_candidates`) are refined beside the samples;
        ``"shipped"``: the one that comes with the model (:func:`model_library`), if
        any; None: samples only.
    library_k : int
        Number of library candidates.

    Returns
    -------
    SolveResult
    """
    import time

    from tqdm.auto import tqdm

    from .generator import DeepStruc
    from .structures import structure_arrays

    if not isinstance(n, int | np.integer) or n < 1:
        raise ParameterError(f"n must be a positive integer, got {n!r}")
    if not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
        raise ParameterError(f"seed must be an integer in 0..2**63-1, got {seed!r}")
    if not isinstance(workers, int | np.integer) or workers < 1:
        raise ParameterError(f"workers must be a positive integer, got {workers!r}")
    t0 = time.perf_counter()
    if not isinstance(pdf, PDFData):
        pdf = load_pdf(pdf)
    sym = resolve_element(pdf, element)
    settings = resolve_settings(
        pdf,
        qmin=qmin,
        qmax=qmax,
        qdamp=qdamp,
        qbroad=qbroad,
        rmin=rmin,
        rmax=rmax,
        rstep=rstep,
    )
    ds = model if model is not None else DeepStruc.pretrained()
    model_id = str((ds.meta.get("weights") or {}).get("sha256", ds.kind))
    # the library by what it was built from (its repr starts the same for every one)
    lib_id = (
        "none"
        if library is None or library_k <= 0
        else f"{getattr(library, 'source', '')}/{len(library)}/{library_k}"
    )
    run_key = _run_key(pdf, sym, settings, int(n), int(seed), f"{model_id}/{lib_id}")
    pdir = _partial_dir(outdir)
    done = _load_partial(pdir, run_key) if resume else {}

    cands = ds.generate(pdf, n=int(n), element=sym, seed=int(seed))
    t_sample = time.perf_counter() - t0
    t1 = time.perf_counter()
    if isinstance(library, str) and library == "shipped":
        library = model_library(ds)
    extra = []
    if library is not None and library_k > 0:
        extra = library_candidates(library, cands, pdf, settings, sym, k=int(library_k))
    t_library = time.perf_counter() - t1

    # near-identical samples would refine to the same structure: refine one of each
    absorbed = group_near_duplicates([c.structure for c in cands], tol=merge_tol)

    def job(
        structure: Any, index: int, latent: Sequence[float], residual: float, source: str
    ) -> dict[str, Any]:
        xyz, elements, uiso = structure_arrays(structure)
        return {
            "xyz": xyz.tolist(),
            "elements": list(elements),
            "uiso": uiso.tolist(),
            "settings": settings.to_dict(),
            "r": pdf.r.tolist(),
            "g": pdf.g.tolist(),
            "dg": None if pdf.dg is None else pdf.dg.tolist(),
            "index": index,
            "latent": [float(v) for v in latent],
            "residual": float(residual),
            "source": source,
        }

    jobs = [
        job(c.structure, c.index, c.latent, c.residual, "model")
        for c in cands
        if c.index not in done and c.index in absorbed
    ]
    no_latent = [float("nan")] * len(cands[0].latent)
    jobs += [
        job(structure, int(n) + j, no_latent, float("nan"), f"library: {label}")
        for j, (structure, label) in enumerate(extra)
        if int(n) + j not in done
    ]

    results: list[dict[str, Any]] = list(done.values())

    def _keep(d: dict[str, Any]) -> None:
        results.append(d)
        if pdir is not None:
            atomic_write_text(
                pdir / f"candidate_{d['index']:03d}.json",
                json.dumps({**d, "run_key": run_key}),
                overwrite=True,
            )

    t1 = time.perf_counter()
    bar = tqdm(
        total=len(jobs) + len(done),
        initial=len(done),
        desc="refining",
        unit="cand",
        disable=not progress,
    )
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            _keep(_refine_job(job))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=min(int(workers), len(jobs))) as pool:
            futures = [pool.submit(_refine_job, job) for job in jobs]
            for fut in as_completed(futures):
                _keep(fut.result())
                bar.update()
    bar.close()
    t_refine = time.perf_counter() - t1

    refined = [RefinedCandidate.from_json(d) for d in results]
    for c in refined:
        c.merged.extend(absorbed.get(c.index, []))
    ranked = merge_near_duplicates(refined, tol=merge_tol)
    timings = {
        "sampling": t_sample,
        "library": t_library,
        "refinement": t_refine,
        "total": time.perf_counter() - t0,
    }
    return SolveResult(
        candidates=ranked,
        settings=settings,
        element=sym,
        pdf=pdf,
        n_sampled=len(cands),
        timings=timings,
        model=f"{ds.kind} {model_id[:12]}",
        seed=int(seed),
        n_library=len(extra),
    )


RANKING_COLUMNS: tuple[str, ...] = (
    "rank",
    "rw",
    "n_atoms",
    "scale",
    "zoomscale",
    "uiso",
    "delta2",
    "nn_distance",
    "z1",
    "z2",
    "sample",
    "source",
    "merged",
    "xyz",
    "stru",
    "fit_plot",
)


def nearest_neighbour_distance(structure: Any) -> float:
    """Median nearest-neighbour distance of a structure (A); nan below two atoms."""
    from .structures import structure_arrays

    xyz = structure_arrays(structure)[0]
    if len(xyz) < 2:
        return float("nan")
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return float(np.median(d.min(axis=1)))


def _check_outdir(outdir: Path, force: bool, resume: bool) -> None:
    """Refuse to write into a folder that holds earlier results."""
    if not outdir.exists():
        return
    if not outdir.is_dir():
        raise OutputExistsError(f"{outdir} exists and is not a folder")
    clutter = [p.name for p in outdir.iterdir() if p.name != "partial"]
    if clutter and not force:
        raise OutputExistsError(
            f"{outdir} already holds results ({', '.join(sorted(clutter)[:4])}...); "
            "pass --force to replace them or choose another -o"
        )
    if not resume and (outdir / "partial").is_dir() and not force:
        raise OutputExistsError(
            f"{outdir} holds an interrupted run (partial/); pass --resume to continue it "
            "or --force to start over"
        )


def prepare_outdir(
    outdir: str | os.PathLike, *, force: bool = False, resume: bool = False
) -> Path:
    """Check and create the output folder of :func:`solve` before any work is done.

    Parameters
    ----------
    outdir : path
        Output folder.
    force : bool
        Replace earlier results (they are removed first).
    resume : bool
        Continue an interrupted run whose finished candidates are in ``outdir/partial``.

    Returns
    -------
    Path
        The folder, created.
    """
    out = Path(outdir)
    _check_outdir(out, force, resume)
    if force and out.is_dir():
        for p in out.iterdir():
            if p.name == "partial" and resume:
                continue
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_solution(
    result: SolveResult,
    outdir: str | os.PathLike,
    *,
    latent_map: tuple[np.ndarray, Sequence[str]] | None = None,
    sample_latents: np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the files of a solved PDF into ``outdir``.

    Files: ``ranking.csv`` (one row per ranked candidate), ``candidate_XX.xyz`` and
    ``candidate_XX.stru`` (refined structures, XX = rank), ``fit_XX.png`` (data, fit,
    difference), ``latent.png`` (the samples on the model's latent map) and
    ``summary.json`` (settings, where each came from, timings, the table).  Every file
    is written atomically; ``partial/`` is removed once all are written.

    Parameters
    ----------
    result : SolveResult
        From :func:`solve`.
    outdir : path
        Output folder (see :func:`prepare_outdir`).
    latent_map : (points [M, 2], types), optional
        The model's structure map, drawn under the samples.
    sample_latents : ndarray, optional
        Latent points of all samples (before merging).
    overwrite : bool
        Replace files of the same name.

    Returns
    -------
    Path
        ``outdir``.
    """
    from .plots import plot_fit, plot_latent_map
    from .structures import write_structure

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for rank, c in enumerate(result.candidates, start=1):
        stem = f"candidate_{rank:02d}"
        write_structure(c.structure, out / f"{stem}.xyz", overwrite=overwrite)
        write_structure(c.structure, out / f"{stem}.stru", overwrite=overwrite)
        g_obs = np.interp(c.r, result.pdf.r, result.pdf.g)
        plot_fit(
            c.r,
            g_obs,
            c.g_calc,
            out / f"fit_{rank:02d}.png",
            title=f"#{rank}: {result.element}{c.n_atoms}",
            rw=c.rw,
            overwrite=overwrite,
        )
        z = list(c.latent) + [float("nan")] * 2
        p = c.parameters
        rows.append(
            {
                "rank": rank,
                "rw": round(c.rw, 6),
                "n_atoms": c.n_atoms,
                "scale": p.get("scale"),
                "zoomscale": p.get("zoomscale"),
                "uiso": p.get("Uiso"),
                "delta2": p.get("delta2"),
                "nn_distance": round(nearest_neighbour_distance(c.structure), 4),
                "z1": z[0],
                "z2": z[1],
                "sample": c.index,
                "source": c.source,
                "merged": " ".join(str(i) for i in sorted(c.merged)),
                "xyz": f"{stem}.xyz",
                "stru": f"{stem}.stru",
                "fit_plot": f"fit_{rank:02d}.png",
            }
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(RANKING_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "ranking.csv", buf.getvalue(), overwrite=overwrite)

    samples = sample_latents
    if samples is None:
        samples = np.array([c.latent for c in result.candidates], dtype=float)
    pts, types = latent_map if latent_map is not None else (np.zeros((0, 2)), [])
    data_z = {Path(result.pdf.source or "data").stem: samples[0]} if len(samples) else {}
    plot_latent_map(
        pts,
        types,
        out / "latent.png",
        samples=samples,
        data=data_z,
        title=f"{result.element}: {result.n_sampled} samples",
        overwrite=overwrite,
    )

    summary = {
        "package": f"diffpy-deepstruc {__version__}",
        "data": result.pdf.source,
        "element": result.element,
        "model": result.model,
        "seed": result.seed,
        "n_sampled": result.n_sampled,
        "n_library": result.n_library,
        "n_ranked": len(result.candidates),
        "settings": result.settings.to_dict(),
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
        "ranking": rows,
    }
    atomic_write_text(
        out / "summary.json",
        json.dumps(summary, indent=1, default=float),
        overwrite=overwrite,
    )
    pdir = out / "partial"
    if pdir.is_dir():
        shutil.rmtree(pdir)
    return out
