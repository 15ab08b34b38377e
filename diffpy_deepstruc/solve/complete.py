"""Stage 4, complete: the best candidates edited atom by atom towards the data.

The screening's best distinct candidates are handed to
:func:`diffpy_deepstruc.completion.complete` (remove or add surface atoms, shift the cut,
restrained relaxation; incremental histogram updates; a change in atom count only when
the data justify it).  A candidate that changed becomes a new candidate, refined in
srfit beside its start (:mod:`diffpy_deepstruc.solve.refine`), so ``ranking.csv`` lists
both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, as_completed
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..completion import CountRange
from ..pdfdata import PDFData
from .candidates import Proposal
from .settings import FitSettings
from .workers import forked_pool

__all__ = [
    "DEFAULT_COMPLETE_K",
    "Completed",
    "Unchanged",
    "complete_candidates",
    "complete_one",
    "move_budget",
]

#: Candidates completed by default (the best distinct ones of the screening).
DEFAULT_COMPLETE_K: int = 3
#: Index offset of completed candidates (their start's index + this).
COMPLETED_INDEX: int = 10_000
#: Wall-time safety net of one completion (s).  The search is bounded by a number of
#: moves (:func:`move_budget`), not by time, so that a solve is reproducible on any
#: machine; this limit only stops a pathological case (and ``stopped`` says so).
SAFETY_SECONDS: float = 900.0


@dataclass
class Completed:
    """A completed candidate, ready for srfit.

    Attributes
    ----------
    proposal : Proposal
        The completed structure, ``index = start.index + COMPLETED_INDEX`` and
        ``source = "completed: <start's source>"``.
    origin : int
        Index of the start.
    start : dict
        Starting values for srfit (the completion's refined parameters).
    changes : dict
        ``added`` / ``removed`` atom positions (A, lists), ``moves`` (accepted moves),
        fast-model ``rw_start`` / ``rw``, the stopping rule.
    count_range : CountRange or None
        The atom counts the data do not tell apart from the completed structure's
        (:attr:`~diffpy_deepstruc.completion.CompletionResult.count_range`).
    """

    proposal: Proposal
    origin: int
    start: dict[str, float]
    changes: dict[str, Any]
    count_range: CountRange | None = None


def move_budget(n_atoms: int) -> tuple[int, int]:
    """Work allowed in one completion: (atom-count-changing moves, relaxation iterations).

    12 + N/25 moves up to 700 atoms (at most 40), then fewer as each move gets dearer
    (8 from 3900 atoms); 25 L-BFGS iterations of the relaxation up to 1000 atoms, 8
    above.  A work budget instead of a time budget keeps the result independent of the
    machine's speed and load (same data, same seed, same structure).
    """
    moves = (
        min(40, 12 + n_atoms // 25)
        if n_atoms <= 700
        else max(8, 40 - (n_atoms - 700) // 100)
    )
    return int(moves), 25 if n_atoms <= 1000 else 8


@dataclass
class Unchanged:
    """A proposal the completion left as it was.

    Attributes
    ----------
    origin : int
        Its index.
    count_range : CountRange or None
        The atom counts the data do not tell apart from its own
        (:attr:`~diffpy_deepstruc.completion.CompletionResult.count_range`).
    """

    origin: int
    count_range: CountRange | None


def complete_one(
    prop: Proposal,
    start: dict[str, float],
    pdf: PDFData,
    settings: FitSettings,
    seed: int = 0,
    device: Any = None,
) -> Completed | Unchanged | str:
    """Complete one proposal: the :class:`Completed` candidate, :class:`Unchanged` when
    nothing changed, or a note (str) when the completion cannot handle it."""
    from ..completion import complete
    from ..errors import DeepStrucError

    max_moves, relax_iterations = move_budget(prop.n_atoms)
    try:
        res = complete(
            prop.structure, pdf, qmin=settings.qmin, qmax=settings.qmax,
            qdamp=settings.qdamp, qbroad=settings.qbroad, rmin=settings.rmin,
            rmax=settings.rmax, max_seconds=SAFETY_SECONDS, seed=seed,
            max_moves=max_moves, relax_iterations=relax_iterations,
            zoomscale=start["zoomscale"],
            uiso=start["uiso"], delta2=start["delta2"], device=device,
        )  # fmt: skip
    except DeepStrucError as exc:
        return f"completion of {prop.source.split('{')[0].strip()} skipped: {exc}"
    if not res.changed:
        return Unchanged(origin=prop.index, count_range=res.count_range)
    p = res.parameters
    changes = {
        "added": np.round(res.added, 4).tolist(),
        "removed": np.round(res.removed, 4).tolist(),
        "rw_start": res.rw_start,
        "rw": res.rw,
        "criterion": res.criterion,
        "stopped": res.stopped,
        "moves": [m.to_dict() for m in res.moves],
        "relaxed_first": res.relaxed_first,
    }
    return Completed(
        proposal=Proposal(
            index=prop.index + COMPLETED_INDEX,
            structure=res.structure,
            source=f"completed: {prop.source}",
            latent=list(prop.latent),
            residual=prop.residual,
        ),
        origin=prop.index,
        start={k: float(p[k]) for k in ("scale", "zoomscale", "uiso", "delta2")},
        changes=changes,
        count_range=res.count_range,
    )


def _complete_job(args: tuple) -> Completed | Unchanged | str:
    """:func:`complete_one` in a worker process (one torch thread)."""
    import torch

    torch.set_num_threads(1)
    return complete_one(*args)


def complete_candidates(
    proposals: Sequence[Proposal],
    starts: Sequence[dict[str, float]],
    pdf: PDFData,
    settings: FitSettings,
    *,
    seed: int = 0,
    device: Any = None,
    progress: bool = False,
    workers: int = 1,
    pool: Executor | None = None,
    after_submit: Callable[[], Any] | None = None,
    on_result: Callable[[Completed | Unchanged | str], Any] | None = None,
) -> tuple[list[Completed], list[str], float, dict[int, CountRange]]:
    """Complete each proposal against the data; keep the ones that changed.

    Parameters
    ----------
    proposals : sequence of Proposal
        The candidates to complete (e.g. the screening's best distinct ones).
    starts : sequence of dict
        Their screening parameters (``zoomscale``, ``uiso``, ``delta2``).
    pdf : PDFData
    settings : FitSettings
    seed : int
        Seed of the completion's tie-breaking.
    device : torch device, optional
    progress : bool
        A progress bar over the candidates.
    workers : int
        Processes (1: in this one; forked, on Linux and the CPU only).  The result does
        not depend on it: each completion is deterministic and the output keeps the
        input order.
    pool : Executor, optional
        Worker processes of the caller to run the completions in (instead of
        ``workers`` new ones), e.g. shared with the srfit refinements.
    after_submit : callable, optional
        Called once every completion is queued in ``pool``, before waiting for them:
        work the caller queues there runs beside and after the completions.
    on_result : callable, optional
        Called with each completion's outcome as it finishes (in this process), e.g. to
        queue the refinement of a completed candidate at once.

    Returns
    -------
    (list of Completed, list of str, seconds, dict)
        The completed candidates, a note for each candidate the completion could not
        handle (the solve goes on without it), the time, and the atom counts the data
        do not tell apart (:class:`~diffpy_deepstruc.completion.CountRange`) by
        candidate index: of each completed candidate and of each start the completion
        left unchanged.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    jobs = [
        (prop, start, pdf, settings, seed, device)
        for prop, start in zip(proposals, starts, strict=True)
    ]
    bar = tqdm(total=len(jobs), desc="completion", unit="cand", disable=not progress)
    on_cpu = device is None or str(device) == "cpu"
    own = None if pool is not None else forked_pool(workers, len(jobs), on_cpu=on_cpu)
    results = []
    report = on_result or (lambda _: None)
    if pool is None and own is None:
        for j in jobs:
            results.append(complete_one(*j))
            report(results[-1])
            bar.update()
    else:
        with own or nullcontext():
            runner = pool or own
            # the largest first: the longest completions do not start last
            biggest = sorted(range(len(jobs)), key=lambda k: -jobs[k][0].n_atoms)
            futures = {runner.submit(_complete_job, jobs[k]): k for k in biggest}
            if after_submit is not None:
                after_submit()
            done: dict[int, Any] = {}
            for f in as_completed(futures):
                done[futures[f]] = f.result()
                report(done[futures[f]])
                bar.update()
            results = [done[k] for k in range(len(jobs))]
    bar.close()
    out = [r for r in results if isinstance(r, Completed)]
    notes = [r for r in results if isinstance(r, str)]
    ranges = {r.origin: r.count_range for r in results if isinstance(r, Unchanged)}
    ranges.update({c.proposal.index: c.count_range for c in out})
    ranges = {k: v for k, v in ranges.items() if v is not None}
    return out, notes, time.perf_counter() - t0, ranges
