"""Worker processes of a solve: forked where that is safe, else none."""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor

__all__ = ["forked_pool"]


def forked_pool(
    workers: int, n_jobs: int, *, on_cpu: bool = True
) -> ProcessPoolExecutor | None:
    """A pool of ``min(workers, n_jobs)`` forked processes, or None to work in this one.

    Forked workers start at once with everything this process has imported.  Where
    forking a process that has run torch is unsafe (macOS) or impossible (Windows), for
    work on a GPU, and for one job or one worker, the caller runs the jobs itself
    (None); results must not depend on which.

    Parameters
    ----------
    workers : int
        Processes asked for.
    n_jobs : int
        Jobs to run.
    on_cpu : bool
        Whether the jobs compute on the CPU.

    Returns
    -------
    ProcessPoolExecutor or None
    """
    if workers <= 1 or n_jobs <= 1 or not on_cpu or not sys.platform.startswith("linux"):
        return None
    import multiprocessing as mp

    return ProcessPoolExecutor(min(int(workers), n_jobs), mp_context=mp.get_context("fork"))
