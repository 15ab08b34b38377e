"""Stage 5, refine: the finalists in the standard srfit recipe (the Rw a user reads).

Each finalist is refined with :func:`diffpy_deepstruc.refine.fit_structure` --
:func:`~diffpy_deepstruc.refine.make_recipe` + :func:`~diffpy_deepstruc.refine.refine_recipe`
on the data's own points with the solve's settings -- starting from the screening's
values and run to convergence, so a user who refines the written structure with
``make_recipe`` + ``refine_recipe`` gets the same Rw.  Finished refinements are kept in
``OUTDIR/partial/`` (atomically, one JSON each) so that an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write_text
from ..pdfdata import PDFData
from .rank import RefinedCandidate
from .settings import FitSettings

__all__ = ["refine_candidate", "refine_finalists", "run_key", "start_refinements"]


def _refine_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Worker entry point: refine one candidate (picklable in, JSON-safe out)."""
    import torch

    from ..structures import arrays_to_structure

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
        start=payload.get("start"),
    )
    cand.source = payload.get("source", "model")
    cand.screen_rw = float(payload.get("screen_rw", float("nan")))
    cand.origin = payload.get("origin")
    cand.changes = payload.get("changes") or {}
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
    start: dict[str, float] | None = None,
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
    start : dict, optional
        Starting values (``scale``, ``zoomscale``, ``uiso``, ``delta2``), e.g. from the
        screening; default those of :func:`diffpy_deepstruc.refine.make_recipe`.

    Returns
    -------
    RefinedCandidate
    """
    from ..refine import fit_structure

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
        uncertainties=False,  # Rw by srfit's formula; no covariance needed here
        **(start or {}),
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


def run_key(
    pdf: PDFData, element: str, settings: FitSettings, n: int, seed: int, model_id: str
) -> str:
    h = hashlib.sha256()
    h.update(np.asarray(pdf.r, float).tobytes())
    h.update(np.asarray(pdf.g, float).tobytes())
    h.update(
        json.dumps(
            [element, settings.to_dict(), n, seed, model_id], sort_keys=True
        ).encode()
    )
    return h.hexdigest()[:16]


def start_refinements(jobs: Sequence[dict[str, Any]], pool: Executor) -> dict[int, Future]:
    """Queue refinements in ``pool``, the largest candidate first; futures by index."""
    biggest = sorted(jobs, key=lambda j: -len(j["xyz"]))
    return {int(j["index"]): pool.submit(_refine_job, j) for j in biggest}


def refine_finalists(
    jobs: Sequence[dict[str, Any]],
    *,
    workers: int = 1,
    outdir: str | os.PathLike | None = None,
    key: str = "",
    resume: bool = False,
    progress: bool = False,
    pool: Executor | None = None,
    started: Mapping[int, Future] | None = None,
) -> list[RefinedCandidate]:
    """Refine the finalists (in ``workers`` processes), keeping each as it finishes.

    Parameters
    ----------
    jobs : sequence of dict
        Payloads of :func:`job_payload`.
    workers : int
        Processes (1: in this one).
    outdir : path, optional
        Finished refinements go to ``outdir/partial/candidate_XXX.json``.
    key : str
        Inputs' digest (:func:`run_key`); a resumed run reuses only matching files.
    resume : bool
        Reuse finished refinements of an interrupted run.
    progress : bool
        Progress bar.
    pool : Executor, optional
        Worker processes of the caller to refine in (instead of ``workers`` new ones).
    started : mapping of int to Future, optional
        Refinements of some of ``jobs`` already queued in ``pool``
        (:func:`start_refinements`), by candidate index.

    Returns
    -------
    list of RefinedCandidate
        In the order of ``jobs``.
    """
    from tqdm.auto import tqdm

    pdir = _partial_dir(outdir)
    done = _load_partial(pdir, key) if resume else {}
    started = dict(started or {})
    todo = [j for j in jobs if j["index"] not in done and j["index"] not in started]
    results = dict(done)

    def _keep(d: dict[str, Any]) -> None:
        results[int(d["index"])] = d
        if pdir is not None:
            atomic_write_text(
                pdir / f"candidate_{d['index']:03d}.json",
                json.dumps({**d, "run_key": key}),
                overwrite=True,
            )

    bar = tqdm(
        total=len(jobs),
        initial=len(done),
        desc="srfit",
        unit="cand",
        disable=not progress,
    )
    own = None
    if pool is None and workers > 1 and len(todo) > 1:
        own = ProcessPoolExecutor(max_workers=min(int(workers), len(todo)))
    runner = pool or own
    if runner is None:
        for j in todo:
            _keep(_refine_job(j))
            bar.update()
    with own or nullcontext():
        futures = [*started.values()]
        if runner is not None:
            futures += start_refinements(todo, runner).values()
        for fut in as_completed(futures):
            _keep(fut.result())
            bar.update()
    bar.close()
    return [RefinedCandidate.from_json(results[int(j["index"])]) for j in jobs]


def job_payload(
    structure: Any,
    pdf: PDFData,
    settings: FitSettings,
    *,
    index: int,
    source: str,
    latent: Sequence[float] = (),
    residual: float = float("nan"),
    start: dict[str, float] | None = None,
    screen_rw: float = float("nan"),
    origin: int | None = None,
    changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A picklable, JSON-safe refinement job."""
    from ..structures import structure_arrays

    xyz, elements, uiso = structure_arrays(structure)
    return {
        "xyz": np.asarray(xyz).tolist(),
        "elements": list(elements),
        "uiso": np.asarray(uiso).tolist(),
        "settings": settings.to_dict(),
        "r": pdf.r.tolist(),
        "g": pdf.g.tolist(),
        "dg": None if pdf.dg is None else pdf.dg.tolist(),
        "index": int(index),
        "latent": [float(v) for v in latent],
        "residual": float(residual),
        "source": source,
        "start": start,
        "screen_rw": float(screen_rw),
        "origin": origin,
        "changes": changes or {},
    }
