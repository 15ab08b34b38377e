"""Solve a PDF: candidates -> batched screening -> srfit finalists -> ranking -> report.

One module per stage (see :mod:`diffpy_deepstruc.solve.pipeline`)::

    settings    fit settings and the metal, with where each came from
    candidates  the models' samples + the shape library's best matches
    screen      every candidate refined at once (batched torch, fast model)
    refine      the finalists in the standard srfit recipe (the Rw a user reads)
    rank        near-duplicates merged, order by Rw, the set consistent with the data
    report      ranking.csv, structures, fits, latent map, summary.json, report.html

``from diffpy_deepstruc.solve import solve`` is the entry point.
"""

from .candidates import (
    Proposal,
    default_models,
    group_near_duplicates,
    is_sample,
    library_candidates,
    load_models,
    model_library,
    nearest_neighbour_distance,
)
from .output import discard_outdir, prepare_outdir
from .pipeline import DEFAULT_REFINE_K, solve
from .rank import RefinedCandidate, SolveResult, mark_consistent, merge_near_duplicates
from .refine import refine_candidate
from .report import RANKING_COLUMNS, write_solution
from .screen import ScreenResult, screen_candidates
from .settings import FitSettings, resolve_element, resolve_settings

__all__ = [
    "DEFAULT_REFINE_K",
    "FitSettings",
    "Proposal",
    "RANKING_COLUMNS",
    "RefinedCandidate",
    "ScreenResult",
    "SolveResult",
    "default_models",
    "discard_outdir",
    "group_near_duplicates",
    "is_sample",
    "library_candidates",
    "load_models",
    "mark_consistent",
    "merge_near_duplicates",
    "model_library",
    "nearest_neighbour_distance",
    "prepare_outdir",
    "refine_candidate",
    "resolve_element",
    "resolve_settings",
    "screen_candidates",
    "solve",
    "write_solution",
]
