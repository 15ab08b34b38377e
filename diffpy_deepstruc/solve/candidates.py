"""Stage 2, candidates: the model's samples and the shape library's best matches.

The generative model proposes ``n`` structures for the PDF (prior -> latent samples ->
decoder -> trilateration); the shape library adds its ``k`` shapes of the sampled sizes
that best match the data.  Near-identical proposals are grouped so that each distinct
structure is screened once.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..pdfdata import PDFData
from .settings import FitSettings

#: The ``source`` prefix of a shape-code model's samples.
SHAPE_CODE_SOURCE = "shape-code model"

__all__ = [
    "SHAPE_CODE_SOURCE",
    "Proposal",
    "default_models",
    "group_near_duplicates",
    "is_sample",
    "library_candidates",
    "load_models",
    "model_library",
    "nearest_neighbour_distance",
    "propose",
    "sample_source",
    "same_structure",
    "sorted_distances",
]


@dataclass
class Proposal:
    """One distinct starting structure before refinement.

    Attributes
    ----------
    index : int
        Sample number (model ``m``'s samples ``m n`` .. ``m n + n - 1``; library
        shapes from ``M n`` on, for ``M`` models).
    structure : diffpy.structure.Structure
        Cartesian coordinates on a unit lattice, element and Uiso set.
    source : str
        ``"model"``, ``"shape-code model: <type> <n> <builder arguments>"`` (see
        :func:`sample_source`) or ``"library: <type> <n> <builder arguments>"``.
    latent : list of float
        Latent point of a model sample (nan for a library shape).
    residual : float
        Mean trilateration residual of a model sample (nan for a library shape).
    absorbed : list of int
        Sample numbers of near-identical samples folded into this one.
    code : dict or None
        A shape-code sample's ``family`` and ``theta`` (None otherwise).
    """

    index: int
    structure: Any
    source: str
    latent: list[float]
    residual: float = float("nan")
    absorbed: list[int] = field(default_factory=list)
    code: dict | None = None

    @property
    def n_atoms(self) -> int:
        """Atom count."""
        return len(self.structure)

    @property
    def xyz(self) -> np.ndarray:
        """Cartesian coordinates [N, 3] (A)."""
        return np.asarray(self.structure.xyz_cartn, dtype=float)


def default_models() -> list[Any]:
    """The generators ``solve`` samples from by default: the shipped distance CVAE
    (:meth:`DeepStruc.pretrained`) and the shipped shape-code CVAE
    (:meth:`ShapeGenerator.pretrained`)."""
    from ..generator import DeepStruc
    from ..shapegen.generator import ShapeGenerator

    return [DeepStruc.pretrained(), ShapeGenerator.pretrained()]


def load_models(paths: Sequence[str | os.PathLike] | None) -> list[Any]:
    """The generators of checkpoint folders, each by its format (a distance or a
    shape-code model, :func:`~diffpy_deepstruc.shapegen.generator.load_generator`);
    no folders: :func:`default_models`."""
    from ..shapegen.generator import load_generator

    return [load_generator(p) for p in paths] if paths else default_models()


def sample_source(code: dict | None = None) -> str:
    """The ``source`` of a model's sample: ``"model"`` for a distance model's, and
    ``"shape-code model: <type> <n> <builder arguments>"`` for a shape-code model's."""
    if code is None:
        return "model"
    entry = json.dumps(code["entry"], sort_keys=True)
    return f"{SHAPE_CODE_SOURCE}: {code['type']} {code['n_atoms']} {entry}"


def is_sample(source: str) -> bool:
    """Whether a candidate's ``source`` is a model's sample (of either kind)."""
    return source == "model" or source.startswith(SHAPE_CODE_SOURCE)


def propose(
    pdf: PDFData,
    settings: FitSettings,
    element: str,
    models: Sequence[Any],
    *,
    n: int,
    seed: int,
    library: Any,
    library_k: int,
    merge_tol: float = 0.05,
    proposals: int = 0,
    device: str | None = None,
) -> tuple[list[Proposal], np.ndarray, dict[str, float]]:
    """The distinct candidates of a PDF: each model's samples, then library shapes.

    Parameters
    ----------
    pdf : PDFData
    settings : FitSettings
    element : str
        The metal.
    models : sequence of generators
        :class:`~diffpy_deepstruc.generator.DeepStruc` or
        :class:`~diffpy_deepstruc.shapegen.ShapeGenerator`, each drawing ``n`` samples.
        Model ``m``'s samples are numbered ``m n`` onwards.
    n : int
        Samples to draw from each model.
    seed : int
        Sampling seed (the same for every model).
    library : ShapeLibrary, "shipped" or None
        Shape library (``"shipped"``: the first model's own that has one, see
        :func:`model_library`).
    library_k : int
        Library shapes to add; they are numbered from ``len(models) n``.
    merge_tol : float
        Near-duplicate tolerance (A) of :func:`group_near_duplicates`.
    proposals : int
        Guided sampling for the shape-code models (those with ``codes``): ``n`` best
        of this many proposals by their screening Rw (0: plain samples).
    device : str, optional
        Torch device of the guide's screening.

    Returns
    -------
    (proposals, latents, timings)
        ``latents``: one array ``[n, D_m]`` per model, the latent points of its samples
        (before near-duplicates are merged).
    """
    t0 = time.perf_counter()
    samples, starts = [], []
    guided = {}
    if proposals:
        from .screen import screening_guide

        guide = screening_guide(pdf.r, pdf.g, settings, dg=pdf.dg, device=device)
        guided = {"guide": guide, "proposals": int(proposals)}
    for m, model in enumerate(models):
        kw = guided if hasattr(model, "codes") else {}
        drawn = model.generate(pdf, n=int(n), element=element, seed=int(seed), **kw)
        starts.append(m * int(n))
        samples.append(drawn)
    t_sample = time.perf_counter() - t0
    t1 = time.perf_counter()
    if isinstance(library, str) and library == "shipped":
        library = next(filter(None, map(model_library, models)), None)
    pooled = [c for drawn in samples for c in drawn]
    extra = []
    if library is not None and library_k > 0:
        extra = library_candidates(library, pooled, pdf, settings, element, k=library_k)
    t_library = time.perf_counter() - t1
    numbers = [s + c.index for s, drawn in zip(starts, samples, strict=True) for c in drawn]
    groups = group_near_duplicates([c.structure for c in pooled], tol=merge_tol)
    proposals = [
        Proposal(
            index=numbers[i],
            structure=c.structure,
            source=sample_source(_code(c)),
            latent=[float(v) for v in c.latent],
            residual=float(c.residual),
            absorbed=[numbers[j] for j in groups[i]],
            code=c.code,
        )
        for i, c in enumerate(pooled)
        if i in groups
    ]
    first = len(models) * int(n)
    proposals += [
        Proposal(index=first + j, structure=s, source=label, latent=[float("nan")] * 2)
        for j, (s, label) in enumerate(extra)
    ]
    latents = [np.array([c.latent for c in drawn], dtype=float) for drawn in samples]
    return proposals, latents, {"sampling": t_sample, "library": t_library}


def _code(candidate: Any) -> dict | None:
    """A shape-code sample's code with its atom count (None for a distance sample)."""
    if candidate.code is None:
        return None
    return {**candidate.code, "n_atoms": candidate.n_atoms}


def model_library(model: Any) -> Any:
    """The shape library that comes with ``model``.

    Looked for in the model's folders (:func:`diffpy_deepstruc.latent.model_folders`:
    its checkpoint folder, or the shipped one whose weights digest is the model's) and
    the folder above each (the shipped CVAE and DAE share ``pretrained/``):
    ``shapes_large.safetensors`` (the training shapes followed by particles of
    201-4000 atoms and imperfect variants, see :mod:`diffpy_deepstruc.library`) when
    present, else ``shapes.safetensors`` (the training shapes alone).  Each file is
    read once per process.  None when there is none.
    """
    from ..latent import model_folders

    for folder in model_folders(model):
        for name in ("shapes_large.safetensors", "shapes.safetensors"):
            for f in (folder / name, folder.parent / name):
                if f.is_file():
                    return _load_library(str(f.resolve()), f.stat().st_mtime_ns)
    return None


@functools.lru_cache(maxsize=4)
def _load_library(path: str, mtime_ns: int) -> Any:
    """One library object per file and version (its screening matrix is reused)."""
    from ..library import load_shape_library

    return load_shape_library(path)


def library_candidates(
    library: Any,
    candidates: Sequence[Any],
    pdf: PDFData,
    settings: FitSettings,
    element: str,
    *,
    k: int = 5,
) -> list[tuple[Any, str]]:
    """The library shapes, of any size, whose PDFs best match the data.

    Every shape of the library is screened at once
    (:meth:`~diffpy_deepstruc.library.ShapeLibrary.screen_all`: its pair-distance
    histogram times the PDF of one pair at each distance, Pearson correlation with the
    data over the fit range, the shapes scaled so that their first shell sits at the
    data's first peak -- else at the samples' median nearest-neighbour distance).

    Parameters
    ----------
    library : ShapeLibrary
        The shapes (:mod:`diffpy_deepstruc.library`).
    candidates : sequence of generator.Candidate
        The network's samples (their distances stand in when the data show no clear
        first peak).
    pdf : PDFData
        The data.
    settings : FitSettings
        Instrument settings and fit range.
    element : str
        The metal.
    k : int
        Number of shapes.

    Returns
    -------
    list of (Structure, source label)
        The label is ``"library (training shape): <type> <n> <builder>"`` for a shape of
        the model's training catalog, else ``"library: <type> <n> <builder>"``.
    """
    from ..generator import nn_peak_position
    from ..structures import arrays_to_structure

    peak = nn_peak_position(pdf.r, pdf.g)
    if peak is None:
        peak = float(
            np.median([nearest_neighbour_distance(c.structure) for c in candidates])
        )
    sel = (pdf.r >= settings.rmin) & (pdf.r <= settings.rmax)
    best = library.screen_all(
        pdf.r[sel], pdf.g[sel], qmin=settings.qmin, qmax=settings.qmax, nn=peak,
        qdamp=settings.qdamp, qbroad=settings.qbroad, k=k,
    )  # fmt: skip
    out = []
    for i, _, nn in best:
        kind = "library (training shape)" if library.is_training(i) else "library"
        label = f"{kind}: {library.label(i)}"
        xyz = library.structure(i, element, nn)
        out.append((arrays_to_structure(xyz, element, 0.005, title=label), label))
    return out


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
        d = sorted_distances(s)
        for j, dj in profiles:
            if same_structure(d, dj, tol):
                groups[j].append(i)
                break
        else:
            profiles.append((i, d))
            groups[i] = []
    return groups


def same_structure(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    """Whether two sorted pair-distance lists (:func:`sorted_distances`) are one structure.

    Same atom count and a mean absolute difference below ``tol`` (A): invariant to
    rotation, translation and atom order.
    """
    return a.shape == b.shape and (a.size == 0 or float(np.mean(np.abs(a - b))) < tol)


def sorted_distances(structure: Any) -> np.ndarray:
    """Sorted pair distances of a structure (A): a rotation/permutation-free fingerprint."""
    from ..structures import structure_arrays

    xyz = structure_arrays(structure)[0]
    i, j = np.triu_indices(len(xyz), 1)
    return np.sort(np.linalg.norm(xyz[i] - xyz[j], axis=1))


def nearest_neighbour_distance(structure: Any) -> float:
    """Median nearest-neighbour distance of a structure (A); nan below two atoms."""
    from ..structures import structure_arrays

    xyz = structure_arrays(structure)[0]
    if len(xyz) < 2:
        return float("nan")
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return float(np.median(d.min(axis=1)))
