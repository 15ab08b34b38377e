"""Solve a series of PDFs: many files, in parallel locally or on a Dask cluster.

Each PDF is solved by :func:`diffpy_deepstruc.ranking.solve` into its own folder
``OUTDIR/<file stem>/``.  Results are never lost:

- every PDF's result folder is complete on its own (``summary.json`` is written last,
  atomically), and a PDF interrupted half-way keeps its finished candidates in
  ``OUTDIR/<stem>/partial/``;
- the series table ``OUTDIR/series.csv`` is rewritten (atomically) after every finished
  PDF, unfinished ones marked ``pending``;
- running the same series again (``deepstruc solve ... --resume``) skips every PDF whose
  folder holds a finished ``summary.json`` made with the same options, and resumes the
  interrupted ones from their ``partial/`` candidates.

The table has one row per PDF: best Rw, atom count, nearest-neighbour distance, latent
point, status.  The plot ``OUTDIR/series.png`` is drawn at the end.  A PDF that fails (bad
file, unknown element, even an unexpected exception in a worker) gets
``status = error: ...`` in the table and does not stop the others.

Scaling out uses an *existing* engine: ``scheduler="tcp://host:8786"`` (or a
``dask.distributed.Client``) submits one task per PDF to that Dask cluster; without it
a local process pool of ``workers`` processes is used.  Paths are made absolute before
they are sent, so workers need the same file system view (a shared folder), not the
same working directory.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from .errors import DeepStrucError, OutputExistsError, ParameterError, PDFDataError
from .fileio import atomic_write_text

__all__ = [
    "SERIES_COLUMNS",
    "check_series_outdir",
    "find_pdf_files",
    "read_series",
    "solve_file",
    "solve_series",
]

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

#: Seconds to wait for a Dask scheduler to answer.
CONNECT_TIMEOUT: float = 10.0

#: Status of a PDF not finished yet (in the table written while the series runs).
PENDING = "pending"


def find_pdf_files(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into a de-duplicated list of ``.gr`` files.

    Files keep the order given; a folder contributes its ``*.gr`` files sorted by name.

    Parameters
    ----------
    inputs : sequence of path
        Files, or folders whose ``*.gr`` files are taken (not recursively).

    Returns
    -------
    list of Path
        Absolute paths.

    Raises
    ------
    PDFDataError
        When an input does not exist, or a folder holds no ``.gr`` file.
    ParameterError
        When no input is given, or two inputs share a file name (their result folders
        would collide).
    """
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    if not inputs:
        raise ParameterError("no PDF files given")
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                f for f in p.iterdir() if f.suffix.lower() in PDF_SUFFIXES and f.is_file()
            )
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


def check_series_outdir(
    outdir: str | os.PathLike, *, force: bool = False, resume: bool = False
) -> Path:
    """Refuse an output folder that holds something other than a series to continue.

    Nothing is created or removed.

    Raises
    ------
    OutputExistsError
        ``outdir`` is a file; or it holds a series (``series.csv``) and neither
        ``resume`` nor ``force`` is given; or it holds other files and ``force`` is not
        given.
    """
    out = Path(outdir)
    if not out.exists():
        return out
    if not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder; choose another -o")
    if force:
        return out
    if (out / "series.csv").exists():
        if not resume:
            raise OutputExistsError(
                f"{out} already holds a series result; --resume continues it, "
                "--force redoes it"
            )
        return out
    content = sorted(p.name for p in out.iterdir())
    if content and not resume:
        raise OutputExistsError(
            f"{out} is not empty ({', '.join(content[:4])}{'...' if len(content) > 4 else ''}"
            "); choose another -o, or pass --force to solve into it anyway"
        )
    return out


# the models of a worker process, loaded once for all the PDFs it solves
_MODELS: dict[tuple, list[Any]] = {}


def _models(paths: Sequence[str] | None) -> list[Any]:
    """The generators of checkpoint folders (None: the shipped ones), cached per
    process by path and weights file time."""
    from .solve import load_models

    key = []
    for p in paths or ():
        try:
            key.append((p, Path(p, "model.safetensors").stat().st_mtime))
        except OSError:
            key.append((p, -1.0))  # load_models says what is wrong
    if tuple(key) not in _MODELS:
        _MODELS.clear()
        _MODELS[tuple(key)] = load_models(paths)
    return _MODELS[tuple(key)]


def _same_run(summary: dict[str, Any], opts: dict[str, Any]) -> str | None:
    """Why an earlier ``summary.json`` does not answer these options (None: it does)."""
    why = []
    if int(summary.get("seed", -1)) != int(opts.get("seed", 0)):
        why.append(f"seed {summary.get('seed')} != {opts.get('seed', 0)}")
    done = summary.get("options") or {}
    n_done = done.get("n", summary.get("n_sampled", -1))
    if int(n_done) != int(opts.get("n", 20)):
        why.append(f"n {n_done} != {opts.get('n', 20)}")
    el = opts.get("element")
    if el is not None:
        from .elements import normalize_element

        if summary.get("element") != normalize_element(el):
            why.append(f"element {summary.get('element')} != {el}")
    for k in ("library_k", "refine_k", "complete_k", "search_k"):
        if k in opts and k in done and int(opts[k]) != int(done[k]):
            why.append(f"{k} {done[k]} != {opts[k]}")
    guided = (int(done.get("proposals") or 0), int(opts.get("proposals") or 0))
    if guided[0] != guided[1]:  # results from before the option were plain samples
        why.append(f"proposals {guided[0]} != {guided[1]}")
    st = summary.get("settings") or {}
    for k in ("qmin", "qmax", "qdamp", "qbroad", "rmin", "rmax", "rstep"):
        v = opts.get(k)
        if v is not None and st.get(k) is not None and abs(float(st[k]) - float(v)) > 1e-12:
            why.append(f"{k} {st[k]} != {v}")
    return "; ".join(why) or None


def _finite_or_blank(value: Any) -> Any:
    """The value if it is a finite number, else "" (a table cell)."""
    try:
        return value if value is not None and math.isfinite(float(value)) else ""
    except (TypeError, ValueError):
        return ""


def solve_file(path: str, outdir: str, options: dict[str, Any]) -> dict[str, Any]:
    """Solve one PDF into ``outdir`` and return its series-table row.

    Runs in a worker (process or Dask); every error becomes a row with
    ``status = "error: ..."`` instead of an exception (documented errors with their
    message, anything else prefixed with its type), so one bad PDF never stops a series.

    Parameters
    ----------
    path : str
        The ``.gr`` file.
    outdir : str
        Its result folder.
    options : dict
        Keyword arguments of :func:`~diffpy_deepstruc.solve.solve` (``n``,
        ``element``, ``seed``, ``qmax``...) plus ``model`` (a list of checkpoint
        folders, or None for the shipped models), ``force`` and ``threads`` (torch
        threads in this worker).

    Returns
    -------
    dict
        The row (keys :data:`SERIES_COLUMNS`).
    """
    from .latent import model_map_or_none
    from .pdfdata import load_pdf
    from .solve import nearest_neighbour_distance, prepare_outdir, solve, write_solution

    t0 = time.perf_counter()
    row: dict[str, Any] = dict.fromkeys(SERIES_COLUMNS, "")
    row.update(file=str(path), outdir=str(outdir))
    opts = dict(options)
    model_paths = opts.pop("model", None)
    force = bool(opts.pop("force", False))
    threads = opts.pop("threads", None)
    summary = Path(outdir) / "summary.json"
    try:
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        if summary.is_file() and not force:
            try:
                earlier = json.loads(summary.read_text())
            except (OSError, ValueError):
                earlier = None  # damaged: solved again below
            if isinstance(earlier, dict):
                why = _same_run(earlier, opts)
                if why is not None:
                    raise OutputExistsError(
                        f"{outdir} holds a result made with other options ({why}); "
                        "pass --force to redo it"
                    )
                return _row_from_summary(row, earlier)
        pdf = load_pdf(path)  # a bad file fails before its folder is made
        models = _models(model_paths)
        prepare_outdir(outdir, force=True, resume=True)  # keeps partial/ (same-run only)
        res = solve(pdf, model=models, outdir=outdir, resume=True, workers=1, **opts)
        maps = [model_map_or_none(m) for m in models]
        write_solution(res, outdir, latent_maps=maps, overwrite=True)
        best = res.best
        row.update(
            status="ok",
            element=res.element,
            best_rw=round(best.rw, 6),
            n_atoms=best.n_atoms,
            nn_distance=round(nearest_neighbour_distance(best.structure), 4),
            # a shape-library candidate has no latent point: empty cells, not nan
            z1=_finite_or_blank(best.latent[0] if best.latent else None),
            z2=_finite_or_blank(best.latent[1] if len(best.latent) > 1 else None),
            n_ranked=len(res.candidates),
        )
    except DeepStrucError as exc:
        row["status"] = f"error: {exc}"
    except Exception as exc:  # noqa: BLE001 - one PDF must not stop the series
        row["status"] = f"error: {type(exc).__name__}: {exc}"
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


def _row_from_summary(row: dict[str, Any], d: dict[str, Any]) -> dict[str, Any]:
    """The row of an already finished PDF (resume)."""
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
    scheduler: Any = None,
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
        Local processes (ignored with ``scheduler``); at most one per PDF is started.
    scheduler : str or dask.distributed.Client, optional
        Address of an existing Dask distributed scheduler, or a client of one.
    progress : bool
        Show a progress bar.
    on_row : callable, optional
        Called with each finished row (e.g. to print it).
    **options
        Passed to :func:`solve_file` (``model``, one checkpoint folder or a list,
        becomes a list of absolute paths).

    Returns
    -------
    list of dict
        The rows, in input order (also in ``outdir/series.csv``).

    Raises
    ------
    ParameterError
        Bad ``workers`` or an unreachable scheduler.
    PDFDataError
        A missing input (see :func:`find_pdf_files`).
    """
    from tqdm.auto import tqdm

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"workers must be a positive integer, got {workers!r}")
    files = find_pdf_files(inputs)
    out = Path(outdir).resolve()
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder")
    if options.get("model"):
        paths = options["model"]
        paths = [paths] if isinstance(paths, str | os.PathLike) else paths
        options["model"] = [str(Path(m).resolve()) for m in paths]
    out.mkdir(parents=True, exist_ok=True)
    tasks = [(str(f), str(out / f.stem)) for f in files]
    rows: dict[str, dict[str, Any]] = {
        p: {**dict.fromkeys(SERIES_COLUMNS, ""), "file": p, "status": PENDING, "outdir": s}
        for p, s in tasks
    }
    bar = tqdm(total=len(tasks), desc="PDFs", unit="pdf", disable=not progress)

    def _done(row: dict[str, Any]) -> None:
        rows[row["file"]] = row
        _write_table([rows[p] for p, _ in tasks], out)
        bar.update()
        if on_row is not None:
            on_row(row)

    def _failed(path: str, sub: str, exc: BaseException) -> dict[str, Any]:
        row = {**dict.fromkeys(SERIES_COLUMNS, ""), "file": path, "outdir": sub}
        row["status"] = f"error: worker failed: {type(exc).__name__}: {exc}"
        return row

    _write_table([rows[p] for p, _ in tasks], out)
    try:
        if scheduler is not None:
            _run_dask(tasks, options, scheduler, _done, _failed)
        elif workers == 1 or len(tasks) == 1:
            for path, sub in tasks:
                _done(solve_file(path, sub, options))
        else:
            opts = {**options, "threads": 1}
            n_proc = min(workers, len(tasks))
            with ProcessPoolExecutor(max_workers=n_proc) as pool:
                futs = {pool.submit(solve_file, p, s, opts): (p, s) for p, s in tasks}
                for fut in as_completed(futs):
                    try:
                        row = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a crashed worker process
                        row = _failed(*futs[fut], exc)
                    _done(row)
    finally:
        bar.close()
    ordered = [rows[path] for path, _ in tasks]
    _write_series(ordered, out)
    return ordered


def _run_dask(tasks, options, scheduler: Any, done: Callable, failed: Callable) -> None:
    """Submit one task per PDF to an existing Dask cluster."""
    try:
        from dask.distributed import Client
        from dask.distributed import as_completed as dask_completed
    except ImportError as exc:  # pragma: no cover - extra not installed
        raise ParameterError(
            "--scheduler needs dask.distributed: pip install 'diffpy.deepstruc[dask]'"
        ) from exc
    own = not isinstance(scheduler, Client)
    if own:
        if not isinstance(scheduler, str) or not scheduler.strip():
            raise ParameterError(f"expected a Dask scheduler address, got {scheduler!r}")
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            raise ParameterError(
                f"cannot reach the Dask scheduler at {scheduler}: {exc}"
            ) from None
    else:
        client = scheduler
    opts = {**options, "threads": 1}
    futs = {}
    try:
        for p, s in tasks:
            futs[client.submit(solve_file, p, s, opts, pure=False)] = (p, s)
        for fut in dask_completed(list(futs)):
            try:
                row = fut.result()
            except Exception as exc:  # noqa: BLE001 - a lost or crashed worker
                row = failed(*futs[fut], exc)
            done(row)
    finally:
        pending = [f for f in futs if not f.done()]
        if pending:
            client.cancel(pending)
        if own:
            client.close()


def _write_table(rows: list[dict[str, Any]], out: Path) -> None:
    """``series.csv``: all rows (unfinished ones ``pending``), written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(SERIES_COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "series.csv", buf.getvalue(), overwrite=True)


def read_series(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read a ``series.csv`` back (a folder means its ``series.csv``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "series.csv"
    with open(p, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _write_series(rows: list[dict[str, Any]], out: Path) -> None:
    """``series.csv`` (all rows) and ``series.png`` (finished rows)."""
    from .plots import plot_series

    _write_table(rows, out)
    ok = []
    for r in rows:
        if not str(r["status"]).startswith("ok"):
            continue
        try:
            ok.append((Path(r["file"]).stem, float(r["best_rw"]), int(r["n_atoms"])))
        except (TypeError, ValueError):
            continue
    if ok:
        names, rw, natoms = zip(*ok, strict=True)
        plot_series(list(names), list(rw), list(natoms), out / "series.png", overwrite=True)
    elif (out / "series.png").exists():
        (out / "series.png").unlink()
