"""Stage 2, candidates: the model's samples and the shape library's best matches.

The generative model proposes ``n`` structures for the PDF (prior -> latent samples ->
decoder -> trilateration); the shape library adds its ``k`` shapes of the sampled sizes
that best match the data.  Near-identical proposals are grouped so that each distinct
structure is screened once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..pdfdata import PDFData
from .settings import FitSettings

__all__ = [
    "Proposal",
    "group_near_duplicates",
    "library_candidates",
    "model_library",
    "nearest_neighbour_distance",
    "propose",
    "sorted_distances",
]


@dataclass
class Proposal:
    """One distinct starting structure before refinement.

    Attributes
    ----------
    index : int
        Sample number (model samples 0..n-1; library shapes n, n+1, ...).
    structure : diffpy.structure.Structure
        Cartesian coordinates on a unit lattice, element and Uiso set.
    source : str
        ``"model"`` or ``"library: <type> <n> <builder arguments>"``.
    latent : list of float
        Latent point of a model sample (nan for a library shape).
    residual : float
        Mean trilateration residual of a model sample (nan for a library shape).
    absorbed : list of int
        Sample numbers of near-identical samples folded into this one.
    """

    index: int
    structure: Any
    source: str
    latent: list[float]
    residual: float = float("nan")
    absorbed: list[int] = field(default_factory=list)

    @property
    def n_atoms(self) -> int:
        """Atom count."""
        return len(self.structure)

    @property
    def xyz(self) -> np.ndarray:
        """Cartesian coordinates [N, 3] (A)."""
        return np.asarray(self.structure.xyz_cartn, dtype=float)


def propose(
    pdf: PDFData,
    settings: FitSettings,
    element: str,
    model: Any,
    *,
    n: int,
    seed: int,
    library: Any,
    library_k: int,
    merge_tol: float = 0.05,
) -> tuple[list[Proposal], np.ndarray, dict[str, float]]:
    """The distinct candidates of a PDF: model samples first, then library shapes.

    Parameters
    ----------
    pdf : PDFData
    settings : FitSettings
    element : str
        The metal.
    model : DeepStruc
        The generator.
    n : int
        Samples to draw.
    seed : int
        Sampling seed.
    library : ShapeLibrary, "shipped" or None
        Shape library (``"shipped"``: the model's own, see :func:`model_library`).
    library_k : int
        Library shapes to add.
    merge_tol : float
        Near-duplicate tolerance (A) of :func:`group_near_duplicates`.

    Returns
    -------
    (proposals, sample_latents [n, D], timings)
    """
    t0 = time.perf_counter()
    samples = model.generate(pdf, n=int(n), element=element, seed=int(seed))
    t_sample = time.perf_counter() - t0
    t1 = time.perf_counter()
    if isinstance(library, str) and library == "shipped":
        library = model_library(model)
    extra = []
    if library is not None and library_k > 0:
        extra = library_candidates(library, samples, pdf, settings, element, k=library_k)
    t_library = time.perf_counter() - t1
    groups = group_near_duplicates([c.structure for c in samples], tol=merge_tol)
    proposals = [
        Proposal(
            index=c.index,
            structure=c.structure,
            source="model",
            latent=[float(v) for v in c.latent],
            residual=float(c.residual),
            absorbed=list(groups[c.index]),
        )
        for c in samples
        if c.index in groups
    ]
    no_latent = [float("nan")] * len(samples[0].latent)
    proposals += [
        Proposal(
            index=int(n) + j, structure=s, source=f"library: {label}", latent=no_latent
        )
        for j, (s, label) in enumerate(extra)
    ]
    latents = np.array([c.latent for c in samples], dtype=float)
    return proposals, latents, {"sampling": t_sample, "library": t_library}


def model_library(model: Any) -> Any:
    """The shape library that comes with ``model`` (its training catalog's shapes).

    Looked for as ``shapes.safetensors`` in the model's folders
    (:func:`diffpy_deepstruc.latent.model_folders`: its checkpoint folder, or the
    shipped one whose weights digest is the model's) or the folder above each (the
    shipped CVAE and DAE share ``pretrained/shapes.safetensors``).  None when there is
    none.
    """
    from ..latent import model_folders
    from ..library import load_shape_library

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
    from ..debye import PDFParameters
    from ..generator import nn_peak_position
    from ..structures import arrays_to_structure

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
        d = sorted_distances(s)
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
