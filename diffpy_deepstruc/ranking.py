"""Former home of the solver; kept so that existing scripts keep working.

The solver is now the :mod:`diffpy_deepstruc.solve` package, one module per stage.
Everything that was importable from here still is.
"""

from .solve import (  # noqa: F401
    RANKING_COLUMNS,
    FitSettings,
    RefinedCandidate,
    SolveResult,
    group_near_duplicates,
    library_candidates,
    merge_near_duplicates,
    model_library,
    nearest_neighbour_distance,
    prepare_outdir,
    refine_candidate,
    resolve_element,
    resolve_settings,
    solve,
    write_solution,
)

__all__ = [
    "FitSettings",
    "RefinedCandidate",
    "SolveResult",
    "merge_near_duplicates",
    "prepare_outdir",
    "refine_candidate",
    "resolve_element",
    "resolve_settings",
    "solve",
    "write_solution",
]
