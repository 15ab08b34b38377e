"""``solve``: a measured PDF to ranked, srfit-refined candidate structures.

The pipeline, one module per stage::

    settings   -> fit settings and the metal, each with where it came from
    candidates -> model samples + shape-library matches, near-duplicates grouped
    screen     -> all candidates refined at once (batched torch, fast model)
    complete   -> the best few edited atom by atom towards the data (when it pays)
    refine     -> the finalists in the standard srfit recipe (the Rw a user reads)
    rank       -> near-duplicates merged, ordered by srfit's Rw, consistent set marked
    report     -> files (ranking.csv, structures, fits, latent map, report.html)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..pdfdata import PDFData, load_pdf
from .candidates import Proposal, default_models, is_sample, propose
from .codesearch import DEFAULT_SEARCH_K, search_codes
from .complete import DEFAULT_COMPLETE_K, Completed, complete_candidates
from .rank import RefinedCandidate, SolveResult, mark_consistent, merge_near_duplicates
from .refine import job_payload, refine_finalists, run_key, start_refinements
from .screen import ScreenResult, screen_candidates
from .settings import FitSettings, resolve_element, resolve_settings
from .workers import forked_pool

__all__ = ["DEFAULT_REFINE_K", "solve"]

#: Finalists refined with srfit (the screening's best distinct candidates).
DEFAULT_REFINE_K: int = 5


def _check_count(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int | np.integer) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ParameterError(f"{name} must be {kind}, got {value!r}")
    return int(value)


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
    refine_k: int = DEFAULT_REFINE_K,
    complete_k: int = DEFAULT_COMPLETE_K,
    search_k: int = DEFAULT_SEARCH_K,
    proposals: int = 0,
    device: str | None = None,
    while_waiting: Callable[[], Any] | None = None,
) -> SolveResult:
    """Propose candidate structures for a PDF, refine them and rank them by Rw.

    Parameters
    ----------
    pdf : PDFData or path
        The measured PDF.
    n : int
        Samples drawn from each model.
    element : str, optional
        The metal; default: the single metal of the header's composition.
    model : generator or sequence of generators, optional
        :class:`~diffpy_deepstruc.generator.DeepStruc` (distance model) or
        :class:`~diffpy_deepstruc.shapegen.ShapeGenerator` (shape-code model), or
        several; each draws ``n`` samples.  Default :func:`default_models`: the shipped
        distance CVAE and the shipped shape-code CVAE.
    seed : int
        Sampling seed.
    qmin, qmax, qdamp, qbroad, rmin, rmax, rstep : float, optional
        Fit settings (argument > header > default, see
        :func:`~diffpy_deepstruc.solve.settings.resolve_settings`); the same defaults
        as :func:`diffpy_deepstruc.refine.make_recipe`.
    workers : int
        Processes for the completions and the srfit refinements of the finalists (1:
        this one); the result does not depend on it.
    outdir : path, optional
        Where finished refinements are kept (``outdir/partial``) as they complete.
    resume : bool
        Reuse finished refinements of an interrupted run with the same inputs.
    progress : bool
        Progress bars.
    merge_tol : float
        Near-duplicate tolerance (A), see :func:`merge_near_duplicates`.
    library : ShapeLibrary, "shipped" or None
        Shape library whose best ``library_k`` shapes join the samples.
    library_k : int
        Number of library shapes (0: the model's samples alone).
    refine_k : int
        Distinct candidates, best by the screening, refined with srfit.
    complete_k : int
        The best ``complete_k`` of those are completed atom by atom
        (:mod:`diffpy_deepstruc.solve.complete`); each one that changed is refined
        with srfit too and ranked beside its start.  0 skips the stage.
    search_k : int
        The best-screened ``search_k`` shape-code samples are walked to neighbouring
        codes while that lowers the screening Rw
        (:mod:`diffpy_deepstruc.solve.codesearch`); each walk that moved adds a
        candidate.  0 skips the stage.
    proposals : int
        Guided sampling for the shape-code models: each draws this many distinct
        proposals, screened against the data, and its ``n`` best-fitting samples (and
        neighbouring codes of its best proposals) become its candidates
        (:meth:`~diffpy_deepstruc.shapegen.ShapeGenerator.generate` with
        :func:`~diffpy_deepstruc.solve.screen.screening_guide`).  0 (default): ``n``
        plain samples.
    device : str, optional
        Torch device of the screening ("cpu", "cuda"); default CPU.
    while_waiting : callable, optional
        Called once, without arguments, in this process: while the worker processes run
        the completions and refinements (``workers`` > 1), else after them.  The
        command line loads what its report needs there (the latent maps).

    Returns
    -------
    SolveResult
        ``candidates``: the finalists, srfit-refined, best first; ``screened``: every
        distinct candidate with its screening Rw.
    """
    n = _check_count("n", n, 1)
    if not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
        raise ParameterError(f"seed must be an integer in 0..2**63-1, got {seed!r}")
    workers = _check_count("workers", workers, 1)
    library_k = _check_count("library_k", library_k, 0)
    refine_k = _check_count("refine_k", refine_k, 1)
    complete_k = _check_count("complete_k", complete_k, 0)
    search_k = _check_count("search_k", search_k, 0)
    guided = _check_count("proposals", proposals, 0)
    if 0 < guided < n:
        raise ParameterError(f"proposals ({guided}) must be 0 or at least n ({n})")
    t0 = time.perf_counter()
    if not isinstance(pdf, PDFData):
        pdf = load_pdf(pdf)
    sym = resolve_element(pdf, element)
    settings = resolve_settings(
        pdf, qmin=qmin, qmax=qmax, qdamp=qdamp, qbroad=qbroad, rmin=rmin, rmax=rmax,
        rstep=rstep,
    )  # fmt: skip
    models = _as_models(model)
    model_id = "+".join(_model_id(m) for m in models)

    proposals, latents, timings = propose(
        pdf, settings, sym, models, n=n, seed=seed, library=library, library_k=library_k,
        merge_tol=merge_tol, proposals=guided, device=device,
    )  # fmt: skip

    t1 = time.perf_counter()
    screen = screen_candidates(
        [p.xyz for p in proposals], pdf.r, pdf.g, settings, dg=pdf.dg, device=device
    )
    timings["screening"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    found, found_screen, _ = search_codes(
        proposals, screen, pdf, settings, sym, k=search_k, device=device
    )
    proposals = [*proposals, *found]
    screen = ScreenResult.concatenate([screen, found_screen])
    order = np.argsort(screen.rw, kind="stable")
    timings["code search"] = time.perf_counter() - t1
    screened = [
        {
            "index": proposals[i].index,
            "source": proposals[i].source,
            "n_atoms": proposals[i].n_atoms,
            "screen_rw": float(screen.rw[i]),
            **screen.parameters(i),
        }
        for i in order
    ]

    finalists = _distinct_best(proposals, order, refine_k, merge_tol)
    lib_id = (
        "none"
        if library is None or library_k <= 0
        else f"{getattr(library, 'source', library)}/{library_k}"
    )
    key = run_key(
        pdf, sym, settings, n, int(seed),
        f"{model_id}/{lib_id}/{refine_k}/{complete_k}/{search_k}"
        + (f"/guided{guided}" if guided else ""),
    )  # fmt: skip
    refined, completion_notes, stage_times = _complete_and_refine(
        proposals, finalists, screen, pdf, settings, complete_k=complete_k,
        seed=int(seed), device=device, progress=progress, workers=workers,
        outdir=outdir, key=key, resume=resume, while_waiting=while_waiting,
    )  # fmt: skip
    timings.update(stage_times)

    by_index = {p.index: p for p in proposals}
    for c in refined:
        if c.index in by_index:
            c.merged.extend(by_index[c.index].absorbed)
    ranked = merge_near_duplicates(refined, tol=merge_tol)
    labels = [_model_label(m) for m in models]
    test = mark_consistent(ranked, pdf, settings)
    timings["total"] = time.perf_counter() - t0
    return SolveResult(
        candidates=ranked,
        settings=settings,
        element=sym,
        pdf=pdf,
        n_sampled=n * len(models),
        timings=timings,
        model=" + ".join(labels),
        model_labels=labels,
        n_refined=len(refined),
        seed=int(seed),
        n_library=sum(p.source.startswith("library") for p in proposals),
        screened=screened,
        notes=_notes(settings, sym, models[0]) + completion_notes,
        consistent_test=test,
        sample_latents=latents[0],
        model_latents=latents,
        options={
            "n": n,
            "library_k": library_k,
            "refine_k": refine_k,
            "complete_k": complete_k,
            "search_k": search_k,
            "proposals": guided,
        },
    )


def _complete_and_refine(
    proposals: list[Proposal],
    finalists: list[int],
    screen: ScreenResult,
    pdf: PDFData,
    settings: FitSettings,
    *,
    complete_k: int,
    seed: int,
    device: Any,
    progress: bool,
    workers: int,
    outdir: Any,
    key: str,
    resume: bool,
    while_waiting: Callable[[], Any] | None = None,
) -> tuple[list[RefinedCandidate], list[str], dict[str, float]]:
    """Stages 4 and 5: complete the best ``complete_k`` finalists, refine every
    finalist and every completed candidate with srfit.

    One pool of worker processes serves both stages: the completions are queued first
    (the largest first), the finalists' refinements behind them, and a completed
    candidate's refinement as soon as its completion ends; none waits for another it
    does not need.  Results do not depend on the workers.  ``while_waiting`` runs here
    once everything is queued (the workers exist by then: forking never meets it).

    Returns
    -------
    (refined, notes, timings)
        The refined candidates (count ranges attached), the completion's notes, and
        the seconds until the completions ended (``"completion"``) and after
        (``"refinement"``).
    """
    jobs = [
        job_payload(
            proposals[i].structure,
            pdf,
            settings,
            index=proposals[i].index,
            source=proposals[i].source,
            latent=proposals[i].latent,
            residual=proposals[i].residual,
            start=screen.parameters(i),
            screen_rw=float(screen.rw[i]),
        )  # fmt: skip
        for i in finalists
    ]
    on_cpu = device is None or str(device) == "cpu"
    # a resumed run keeps the stages apart: its finished refinements are read first
    n_jobs = max(min(complete_k, len(finalists)), len(jobs))
    pool = None if resume else forked_pool(workers, n_jobs, on_cpu=on_cpu)
    started: dict = {}
    completed_jobs: dict[int, dict] = {}

    waited: list[bool] = []

    def _wait_usefully() -> None:
        if while_waiting is not None and not waited:
            waited.append(True)
            while_waiting()

    def _start_finalists() -> None:
        started.update(start_refinements(jobs, pool))
        _wait_usefully()

    def _completed(outcome) -> None:
        """Queue a completed candidate's refinement as soon as its completion ends."""
        if not isinstance(outcome, Completed):
            return
        c = outcome
        job = job_payload(
            c.proposal.structure,
            pdf,
            settings,
            index=c.proposal.index,
            source=c.proposal.source,
            latent=c.proposal.latent,
            residual=c.proposal.residual,
            start=c.start,
            screen_rw=float(c.changes["rw"]),
            origin=c.origin,
            changes=c.changes,
        )  # fmt: skip
        completed_jobs[c.proposal.index] = job
        if pool is not None:
            started.update(start_refinements([job], pool))

    timings: dict[str, float] = {}
    t1 = time.perf_counter()
    with pool or nullcontext():
        completed, notes, _, count_ranges = complete_candidates(
            [proposals[i] for i in finalists[:complete_k]],
            [screen.parameters(i) for i in finalists[:complete_k]],
            pdf, settings, seed=seed, device=device, progress=progress,
            workers=workers, pool=pool,
            after_submit=None if pool is None else _start_finalists,
            on_result=_completed,
        )  # fmt: skip
        timings["completion"] = time.perf_counter() - t1
        jobs += [completed_jobs[c.proposal.index] for c in completed]
        t1 = time.perf_counter()
        refined = refine_finalists(
            jobs, workers=workers, outdir=outdir, key=key, resume=resume,
            progress=progress, pool=pool, started=started,
        )  # fmt: skip
    # the refinements that ran beside the completions are counted there
    timings["refinement"] = time.perf_counter() - t1
    _wait_usefully()  # not yet called when nothing ran in worker processes
    for c in refined:
        c.count_range = count_ranges.get(c.index)
    return refined, notes, timings


def _as_models(model: Any) -> list[Any]:
    """``solve``'s ``model`` argument as a non-empty list of generators."""
    if model is None:
        return default_models()
    models = list(model) if isinstance(model, list | tuple) else [model]
    if not models or not all(callable(getattr(m, "generate", None)) for m in models):
        raise ParameterError(
            "model must be a generator (DeepStruc or ShapeGenerator) or a non-empty "
            f"list of them, got {model!r}"
        )
    return models


def _model_id(model: Any) -> str:
    """A model's weights digest (its kind when it has none)."""
    return str((model.meta.get("weights") or {}).get("sha256", model.kind))


def _model_label(model: Any) -> str:
    """``cvae 0123456789ab`` or ``shape-code cvae 0123456789ab``."""
    from ..shapegen.generator import ShapeGenerator

    kind = f"shape-code {model.kind}" if isinstance(model, ShapeGenerator) else model.kind
    return f"{kind} {_model_id(model)[:12]}"


def _distinct_best(proposals, order, k: int, tol: float) -> list[int]:
    """Positions of the ``k`` best-screened proposals that are not the same structure.

    A model sample that is the same structure as a better-screened finalist is recorded
    in that finalist's ``absorbed`` list (ranking.csv's ``duplicates``).
    """
    from .candidates import same_structure, sorted_distances

    picked: list[int] = []
    prints: list[np.ndarray] = []
    for i in order:
        d = sorted_distances(proposals[i].structure)
        same = [j for j, p in zip(picked, prints, strict=True) if same_structure(d, p, tol)]
        if same:
            if is_sample(proposals[i].source):
                keeper = proposals[same[0]]
                keeper.absorbed.extend([proposals[i].index, *proposals[i].absorbed])
            continue
        if len(picked) < k:
            picked.append(int(i))
            prints.append(d)
    return picked


def _notes(settings, element: str, model) -> list[str]:
    """What the output must tell the user: assumed settings, an unfamiliar metal."""
    notes = []
    assumed = [
        f"{k} = {getattr(settings, k):g}"
        for k, v in settings.sources.items()
        if v == "default" and k in ("qmin", "qdamp", "qbroad")
    ]
    if assumed:
        notes.append(
            "assumed (not in the header, not given): "
            + ", ".join(assumed)
            + "; give the instrument's calibrated values (--qdamp, --qbroad) for real data"
        )
    from ..elements import nearest_neighbour_distance
    from ..generator import element_note

    note = element_note(model.elements, element, nearest_neighbour_distance(element))
    if note:
        notes.append(note)
    return notes
