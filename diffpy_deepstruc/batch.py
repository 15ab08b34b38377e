"""Solve a series of PDFs: many files, in parallel locally or on a Dask cluster.

Each PDF is solved by :func:`diffpy_deepstruc.ranking.solve` into its own folder
``OUTDIR/<file stem>/``; a file whose folder already holds a finished ``summary.json``
is not solved again, so an interrupted series resumes where it stopped.  The series
table ``OUTDIR/series.csv`` (one row per PDF: best Rw, atom count, nearest-neighbour
distance, latent point, status) and the plot ``OUTDIR/series.png`` are written at the
end.  A PDF that fails (bad file, unknown element...) gets ``status = error: ...`` in
the table and does not stop the others.

Scaling out uses an *existing* engine: ``scheduler="tcp://host:8786"`` submits one task
per PDF to that Dask distributed scheduler; without it a local process pool is used.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from .errors import DeepStrucError, ParameterError, PDFDataError
from .fileio import atomic_write_text

__all__ = ["SERIES_COLUMNS", "find_pdf_files", "solve_file", "solve_series"]

SERIES_COLUMNS: tuple[str, ...] = (
    "file",
    "status",
    "element",
    "best_rw",
    "n_atoms",
    "nn_distance",
    "z1",
    "z2",
    "n_ranked",
    "seconds",
    "outdir",
)

#: File suffixes taken from a folder.
PDF_SUFFIXES: tuple[str, ...] = (".gr",)


def find_pdf_files(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into a sorted, de-duplicated list of ``.gr`` files.

    Parameters
    ----------
    inputs : sequence of path
        Files, or folders whose ``*.gr`` files are taken (not recursively).

    Returns
    -------
    list of Path

    Raises
    ------
    PDFDataError
        When an input does not exist or a folder holds no ``.gr`` file.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in PDF_SUFFIXES)
            if not found:
                raise PDFDataError(f"{p}: folder holds no .gr file")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise PDFDataError(f"{p}: no such file or folder")
    unique = list(dict.fromkeys(f.resolve() for f in files))
    stems = [f.stem for f in unique]
    dup = {s for s in stems if stems.count(s) > 1}
    if dup:
        raise ParameterError(
            f"several inputs share the name {sorted(dup)[0]!r}; their result folders "
            "would collide -- rename or solve them separately"
        )
    return unique


def solve_file(path: str, outdir: str, options: dict[str, Any]) -> dict[str, Any]:
    """Solve one PDF into ``outdir`` and return its series-table row.

    Runs in a worker (process or Dask); every documented error becomes a row with
    ``status = "error: ..."`` instead of an exception.

    Parameters
    ----------
    path : str
        The ``.gr`` file.
    outdir : str
        Its result folder.
    options : dict
        Keyword arguments of :func:`~diffpy_deepstruc.ranking.solve` (``n``,
        ``element``, ``seed``, ``qmax``...) plus ``model`` (a checkpoint folder or None
        for the shipped model) and ``force``.

    Returns
    -------
    dict
        The row (keys :data:`SERIES_COLUMNS`).
    """
    from .generator import DeepStruc
    from .latent import shipped_map_or_none
    from .ranking import nearest_neighbour_distance, prepare_outdir, solve, write_solution

    t0 = time.perf_counter()
    row: dict[str, Any] = dict.fromkeys(SERIES_COLUMNS, "")
    row.update(file=str(path), outdir=str(outdir))
    opts = dict(options)
    model_path = opts.pop("model", None)
    force = bool(opts.pop("force", False))
    summary = Path(outdir) / "summary.json"
    try:
        if summary.is_file() and not force:
            return _row_from_summary(row, summary)
        prepare_outdir(outdir, force=force, resume=True)
        model = DeepStruc.load(model_path) if model_path else DeepStruc.pretrained()
        res = solve(path, model=model, outdir=outdir, resume=True, workers=1, **opts)
        write_solution(res, outdir, latent_map=shipped_map_or_none(model), overwrite=True)
        best = res.best
        row.update(
            status="ok",
            element=res.element,
            best_rw=round(best.rw, 6),
            n_atoms=best.n_atoms,
            nn_distance=round(nearest_neighbour_distance(best.structure), 4),
            z1=best.latent[0],
            z2=best.latent[1] if len(best.latent) > 1 else "",
            n_ranked=len(res.candidates),
        )
    except DeepStrucError as exc:
        row["status"] = f"error: {exc}"
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


def _row_from_summary(row: dict[str, Any], summary: Path) -> dict[str, Any]:
    """The row of an already finished PDF (resume)."""
    d = json.loads(summary.read_text())
    best = d["ranking"][0] if d.get("ranking") else {}
    row.update(
        status="ok (earlier run)",
        element=d.get("element", ""),
        best_rw=best.get("rw", ""),
        n_atoms=best.get("n_atoms", ""),
        nn_distance=best.get("nn_distance", ""),
        z1=best.get("z1", ""),
        z2=best.get("z2", ""),
        n_ranked=d.get("n_ranked", ""),
        seconds=d.get("timings_s", {}).get("total", ""),
    )
    return row


def solve_series(
    inputs: Sequence[str | os.PathLike],
    outdir: str | os.PathLike,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = False,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Solve every PDF of a series and write the series table and plot.

    Parameters
    ----------
    inputs : sequence of path
        ``.gr`` files and/or folders of them.
    outdir : path
        Output folder; each PDF gets ``outdir/<stem>/``.
    workers : int
        Local processes (ignored with ``scheduler``).
    scheduler : str, optional
        Address of an existing Dask distributed scheduler.
    progress : bool
        Show a progress bar.
    on_row : callable, optional
        Called with each finished row (e.g. to print it).
    **options
        Passed to :func:`solve_file`.

    Returns
    -------
    list of dict
        The rows, in input order.
    """
    from tqdm.auto import tqdm

    files = find_pdf_files(inputs)
    if workers < 1:
        raise ParameterError(f"workers must be a positive integer, got {workers}")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [(str(f), str(out / f.stem)) for f in files]
    rows: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=len(tasks), desc="PDFs", unit="pdf", disable=not progress)

    def _done(row: dict[str, Any]) -> None:
        rows[row["file"]] = row
        bar.update()
        if on_row is not None:
            on_row(row)

    if scheduler is not None:
        _run_dask(tasks, options, scheduler, _done)
    elif workers == 1 or len(tasks) == 1:
        for path, sub in tasks:
            _done(solve_file(path, sub, options))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = [pool.submit(solve_file, path, sub, options) for path, sub in tasks]
            for fut in as_completed(futs):
                _done(fut.result())
    bar.close()
    ordered = [rows[path] for path, _ in tasks]
    _write_series(ordered, out)
    return ordered


def _run_dask(tasks, options, scheduler: str, done: Callable) -> None:
    """Submit one task per PDF to an existing Dask scheduler."""
    try:
        from dask.distributed import Client
        from dask.distributed import as_completed as dask_completed
    except ImportError as exc:  # pragma: no cover - extra not installed
        raise ParameterError(
            "--scheduler needs dask.distributed: pip install 'diffpy.deepstruc[dask]'"
        ) from exc
    try:
        client = Client(scheduler, timeout=10)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ParameterError(
            f"cannot reach the Dask scheduler at {scheduler}: {exc}"
        ) from exc
    try:
        futs = [client.submit(solve_file, p, s, options, pure=False) for p, s in tasks]
        for fut in dask_completed(futs):
            done(fut.result())
    finally:
        client.close()


def _write_series(rows: list[dict[str, Any]], out: Path) -> None:
    """``series.csv`` (all rows) and ``series.png`` (finished rows)."""
    from .plots import plot_series

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(SERIES_COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "series.csv", buf.getvalue(), overwrite=True)
    ok = [r for r in rows if str(r["status"]).startswith("ok")]
    if ok:
        plot_series(
            [Path(r["file"]).stem for r in ok],
            [float(r["best_rw"]) for r in ok],
            [int(r["n_atoms"]) for r in ok],
            out / "series.png",
            overwrite=True,
        )
