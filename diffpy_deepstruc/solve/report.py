"""Stage 7, report: the files of a solve.

``ranking.csv`` (the finalists, srfit's Rw, the consistent set marked),
``screening.csv`` (every distinct candidate with its screening Rw),
``candidate_XX.xyz`` / ``.stru``, ``fit_XX.png``, ``structure_XX.png``, ``latent.png``
(``latent_model<k>.png`` for each further model with a map),
``summary.json`` (strict JSON) and ``report.html``, a one-page report that links the
figures.  Every file is written atomically; ``partial/`` is removed at the end.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import shutil
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..fileio import atomic_write_text
from ..latent import LatentMap
from .candidates import SHAPE_CODE_SOURCE, is_sample, nearest_neighbour_distance
from .codesearch import SEARCHED_INDEX
from .complete import COMPLETED_INDEX
from .rank import RefinedCandidate, SolveResult
from .workers import forked_pool

__all__ = [
    "RANKING_COLUMNS",
    "SCREENING_COLUMNS",
    "guided_note",
    "json_safe",
    "write_solution",
]

RANKING_COLUMNS: tuple[str, ...] = (
    "rank",
    "rw",
    "consistent",
    "n_atoms",
    "scale",
    "zoomscale",
    "uiso",
    "delta2",
    "nn_distance",
    "screen_rw",
    "source",
    "sample",
    "completed_from",
    "atoms_added",
    "atoms_removed",
    "atoms_range",
    "duplicates",
    "z1",
    "z2",
    "xyz",
    "stru",
    "fit_plot",
)
SCREENING_COLUMNS: tuple[str, ...] = (
    "screen_rank",
    "screen_rw",
    "n_atoms",
    "scale",
    "zoomscale",
    "uiso",
    "delta2",
    "source",
    "sample",
)

#: Fit figures drawn (the top of the ranking; every candidate's G(r) is in summary.json).
N_FIGURES: int = 3


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def _num(v: Any, digits: int = 6) -> Any:
    """A CSV cell: rounded finite number, else empty."""
    if v is None:
        return ""
    v = float(v)
    return round(v, digits) if math.isfinite(v) else ""


def _short_source(source: str) -> str:
    """``library: icosahedron 55 {...}`` -> ``library: icosahedron 55``."""
    return source.split("{")[0].strip()


def describe_source(c: RefinedCandidate) -> str:
    """Where a candidate came from, in words (figure captions, report)."""
    if c.source == "model":
        return f"model sample {c.index}"
    what = _short_source(c.source).split(":", 1)[-1].strip()  # after "<origin>:"
    if c.source.startswith(SHAPE_CODE_SOURCE):
        return f"shape-code sample {c.index}: {what}"
    if c.source.startswith("library"):
        kind = "training shape" if "training" in c.source else "library shape"
        return f"{kind}: {what}"
    return _short_source(c.source)


def _sample(c: RefinedCandidate) -> str:
    return str(c.index) if is_sample(c.source) else ""


def guided_note(result: SolveResult) -> str:
    """`` (shape-code samples: the best-fitting of M proposals each)`` for a run with
    guided sampling (``solve(proposals=M)``), else ``""``."""
    m = int(result.options.get("proposals") or 0)
    return f" (shape-code samples: the best-fitting of {m} proposals each)" if m else ""


def _duplicates(c: RefinedCandidate, n_sampled: int) -> str:
    """The other proposals that were this structure: model samples, library shapes."""
    merged = sorted(set(c.merged))
    parts = []
    samples = [i for i in merged if i < n_sampled]
    if samples:
        parts.append("samples " + ", ".join(str(i) for i in samples))
    shapes = sum(1 for i in merged if n_sampled <= i < SEARCHED_INDEX)
    if shapes:
        parts.append(f"{shapes} library shape{'s' if shapes > 1 else ''}")
    found = sum(1 for i in merged if SEARCHED_INDEX <= i < COMPLETED_INDEX)
    if found:
        parts.append(f"{found} code-search result{'s' if found > 1 else ''}")
    return "; ".join(parts)


def _completion_cells(c: RefinedCandidate, ranks: dict[int, int]) -> dict[str, Any]:
    span = "" if c.count_range is None else str(c.count_range)
    if c.origin is None:
        return {
            "completed_from": "",
            "atoms_added": "",
            "atoms_removed": "",
            "atoms_range": span,
        }
    ch = c.changes or {}
    return {
        "completed_from": f"rank {ranks[c.origin]}" if c.origin in ranks else "",
        "atoms_added": len(ch.get("added") or []),
        "atoms_removed": len(ch.get("removed") or []),
        "atoms_range": span,
    }


def ranking_rows(result: SolveResult) -> list[dict[str, Any]]:
    """One row per ranked candidate (the columns of :data:`RANKING_COLUMNS`)."""
    rows = []
    ranks = {c.index: k for k, c in enumerate(result.candidates, start=1)}
    for rank, c in enumerate(result.candidates, start=1):
        p = c.parameters
        # the map's coordinates: a distance model's 2-D latent (not a shape code's)
        z = [float(v) for v in c.latent] if c.source == "model" else []
        z += [float("nan")] * 2
        rows.append(
            {
                "rank": rank,
                "rw": _num(c.rw),
                "consistent": "yes" if c.consistent else "no",
                "n_atoms": c.n_atoms,
                "scale": _num(p.get("scale")),
                "zoomscale": _num(p.get("zoomscale")),
                "uiso": _num(p.get("Uiso")),
                "delta2": _num(p.get("delta2")),
                "nn_distance": _num(nearest_neighbour_distance(c.structure), 4),
                "screen_rw": _num(c.screen_rw),
                "source": c.source,
                "sample": _sample(c),
                **_completion_cells(c, ranks),
                "duplicates": _duplicates(c, result.n_sampled),
                "z1": _num(z[0]),
                "z2": _num(z[1]),
                "xyz": f"candidate_{rank:02d}.xyz",
                "stru": f"candidate_{rank:02d}.stru",
                "fit_plot": f"fit_{rank:02d}.png" if rank <= N_FIGURES else "",
            }
        )
    return rows


def screening_rows(result: SolveResult) -> list[dict[str, Any]]:
    """One row per screened candidate (:data:`SCREENING_COLUMNS`)."""
    n = result.n_sampled
    return [
        {
            "screen_rank": k,
            "screen_rw": _num(s["screen_rw"]),
            "n_atoms": s["n_atoms"],
            "scale": _num(s["scale"]),
            "zoomscale": _num(s["zoomscale"]),
            "uiso": _num(s["uiso"]),
            "delta2": _num(s["delta2"]),
            "source": s["source"],
            "sample": s["index"] if s["index"] < n and is_sample(s["source"]) else "",
        }
        for k, s in enumerate(result.screened, start=1)
    ]


def _csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_solution(
    result: SolveResult,
    outdir: str | os.PathLike,
    *,
    latent_map: Any = None,
    sample_latents: np.ndarray | None = None,
    latent_maps: Sequence[Any] | None = None,
    overwrite: bool = False,
    workers: int = 1,
) -> Path:
    """Write the files of a solved PDF into ``outdir`` (see the module docstring).

    Parameters
    ----------
    result : SolveResult
        From :func:`~diffpy_deepstruc.solve.solve`.
    outdir : path
        Output folder (see :func:`~diffpy_deepstruc.solve.prepare_outdir`).
    latent_map : LatentMap or (points [M, 2], types), optional
        The first model's structure map, drawn under the samples
        (:func:`~diffpy_deepstruc.latent.model_map_or_none`); a map of a latent of more
        than two dimensions shows its principal view, and the samples are projected
        onto it.
    sample_latents : ndarray, optional
        Latent points of all samples (default: ``result.sample_latents``).
    latent_maps : sequence of LatentMap or None, optional
        One map per model (``[model_map_or_none(m) for m in models]``); each model
        after the first with a map gets its samples drawn on it in
        ``latent_model<k>.png`` (:func:`model_map_file`).  ``latent_map`` defaults to
        the first.
    overwrite : bool
        Replace files of the same name.
    workers : int
        Processes that draw the figures (1: this one; forked, on Linux only); the files
        do not depend on it.

    Returns
    -------
    Path
        ``outdir``.
    """
    from .. import plots  # imported once, before any worker is forked
    from ..structures import write_structure

    if latent_map is None and latent_maps:
        latent_map = list(latent_maps)[0]
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for rank, c in enumerate(result.candidates, start=1):
        stem = f"candidate_{rank:02d}"
        write_structure(c.structure, out / f"{stem}.xyz", overwrite=overwrite)
        write_structure(c.structure, out / f"{stem}.stru", overwrite=overwrite)
    samples = sample_latents if sample_latents is not None else result.sample_latents
    figures, map_files = _figure_jobs(result, out, samples, latent_map, latent_maps)
    pool = forked_pool(workers, len(figures))
    if pool is not None:
        plots.warm_up()  # each worker would otherwise load the fonts again
    with pool or nullcontext():
        drawing = [pool.submit(_draw, f, overwrite) for f in figures] if pool else []
        _write_tables(result, out, map_files, overwrite)  # while the workers draw
        if pool is None:
            for f in figures:
                _draw(f, overwrite)
        for d in drawing:
            d.result()
    pdir = out / "partial"
    if pdir.is_dir():
        shutil.rmtree(pdir)
    return out


def _write_tables(
    result: SolveResult, out: Path, map_files: Sequence[str], overwrite: bool
) -> None:
    """ranking.csv, screening.csv, summary.json and report.html of a solve."""
    rows = ranking_rows(result)
    screen_rows = screening_rows(result)
    atomic_write_text(out / "ranking.csv", _csv(rows, RANKING_COLUMNS), overwrite=overwrite)
    atomic_write_text(
        out / "screening.csv",
        _csv(screen_rows, SCREENING_COLUMNS),
        overwrite=overwrite,
    )
    summary = {
        "package": f"diffpy-deepstruc {__version__}",
        "data": result.pdf.source,
        "element": result.element,
        "model": result.model,
        "seed": result.seed,
        "n_sampled": result.n_sampled,
        "n_library": result.n_library,
        "n_screened": len(result.screened),
        "n_ranked": len(result.candidates),
        "settings": result.settings.to_dict(),
        "options": dict(result.options),
        "notes": list(result.notes),
        "consistent_with_data": result.consistent_test,
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
        "ranking": rows,
        "screening": screen_rows,
    }
    atomic_write_text(
        out / "summary.json",
        json.dumps(json_safe(summary), indent=1, allow_nan=False),
        overwrite=overwrite,
    )
    atomic_write_text(
        out / "report.html", report_html(result, rows, map_files), overwrite=overwrite
    )


@dataclass(frozen=True)
class Figure:
    """One figure of a solve's folder: ``plots.<plot>(*args, **kwargs)``, drawn here or
    in a worker process (:func:`_draw`)."""

    plot: str
    args: tuple
    kwargs: dict


def _draw(fig: Figure, overwrite: bool) -> Path:
    from .. import plots

    return getattr(plots, fig.plot)(*fig.args, **fig.kwargs, overwrite=overwrite)


def _figure_jobs(
    result: SolveResult,
    out: Path,
    samples: np.ndarray | None,
    latent_map: Any,
    latent_maps: Sequence[Any] | None,
) -> tuple[list[Figure], list[str]]:
    """Every figure of a solve's folder, the slowest first, and the maps' file names.

    The maps: the first model's samples on ``latent_map`` (``latent.png``) and each
    further model's on its own map in ``latent_maps``.
    """
    figures = [_model_map_job(result, 0, samples, latent_map, out / "latent.png")]
    map_files = [model_map_file(0)]
    extra_maps = list(latent_maps or [])[1:]
    pairs = zip(extra_maps, result.model_latents[1:], strict=False)  # maps may be fewer
    for m, (lmap, z) in enumerate(pairs, start=1):
        if isinstance(lmap, LatentMap) and len(z):
            figures.append(_model_map_job(result, m, z, lmap, out / model_map_file(m)))
            map_files.append(model_map_file(m))
    top = result.candidates[:N_FIGURES]
    figures.append(_structures_job(top, out / "structures.png"))
    for rank, c in enumerate(top, start=1):
        g_obs = np.interp(c.r, result.pdf.r, result.pdf.g)
        figures.append(
            Figure(
                "plot_fit",
                (c.r, g_obs, c.g_calc, out / f"fit_{rank:02d}.png"),
                dict(
                    title=f"#{rank}: {result.element}{c.n_atoms}",
                    rw=c.rw,
                    source=describe_source(c),
                ),
            )
        )
    return figures, map_files


def model_map_file(m: int) -> str:
    """File name of model ``m``'s latent map in a solve's folder (``m`` from 0)."""
    return "latent.png" if m == 0 else f"latent_model{m + 1}.png"


def _best_sample(result: SolveResult, m: int, dim: int) -> tuple[int, Any] | None:
    """(rank, candidate) of the best-ranked sample of model ``m`` (its samples are
    numbered in blocks of ``n``), or None."""
    n = int(result.options.get("n", 0) or 0)
    for k, c in enumerate(result.candidates, start=1):
        if not is_sample(c.source) or len(c.latent) != dim:
            continue
        if n <= 0 or m * n <= c.index < (m + 1) * n:
            return k, c
    return None


def _model_map_job(
    result: SolveResult,
    m: int,
    samples: np.ndarray | None,
    latent_map: Any,
    path: Path,
) -> Figure:
    """Model ``m``'s samples on its map (a LatentMap, (points, types) or None)."""
    samples = np.zeros((0, 2)) if samples is None else np.asarray(samples, float)
    samples_dim = samples.shape[1] if samples.ndim == 2 and len(samples) else 2
    project, axes = (lambda z: np.asarray(z, float)[..., :2]), ("z₁", "z₂")
    if isinstance(latent_map, LatentMap):
        pts, types = latent_map.points, [str(t) for t in latent_map.type]
        if samples.shape[1] == latent_map.z.shape[1]:
            project, axes = latent_map.project, latent_map.axis_labels
    else:
        pts, types = latent_map if latent_map is not None else (np.zeros((0, 2)), [])
    samples = project(samples) if len(samples) else np.zeros((0, 2))
    # the data sit at the prior mean of its PDF, the model's sample 0
    data_z = {Path(result.pdf.source or "data").stem: samples[0]} if len(samples) else {}
    best_z, best_label = None, "best candidate"
    found = _best_sample(result, m, samples_dim)
    if found is not None:
        k, c = found
        best_z = project(np.asarray(c.latent, float))
        best_label = f"best model sample (#{k})"
    labels = result.model_labels
    name = f" ({labels[m]})" if len(labels) > 1 and m < len(labels) else ""
    return Figure(
        "plot_latent_map",
        (np.asarray(pts, float), list(types), path),
        dict(
            samples=samples,
            data=data_z,
            best=best_z,
            best_label=best_label,
            title=f"{result.element}: {len(samples)} samples{name}",
            axes=axes,
        ),
    )


def _structures_job(candidates: Sequence[RefinedCandidate], path: Path) -> Figure:
    """The top candidates drawn side by side (ASE rendering), labelled by rank.

    For a completed candidate the atoms its completion added are green and the atoms it
    removed are drawn red where they were (they are not part of the structure).
    """
    atoms, labels, colors = [], [], []
    for rank, c in enumerate(candidates, start=1):
        a, col, n_add, n_rem = _marked_atoms(c)
        atoms.append(a)
        colors.append(col)
        label = f"#{rank}: {c.n_atoms} atoms"
        if n_add or n_rem:
            label += f"\n+{n_add} green / -{n_rem} red"
        labels.append(label)
    title = ""
    if any(c.origin is not None for c in candidates):
        title = "completion: green atoms added, red atoms removed"
    return Figure(
        "plot_structure_row", (atoms, labels, path), dict(title=title, colors=colors)
    )


def _marked_atoms(c: RefinedCandidate):
    """(Atoms with removed atoms appended, colours or None, n added, n removed)."""
    from ase import Atoms

    from ..structures import structure_to_atoms

    atoms = structure_to_atoms(c.structure)
    ch = c.changes or {}
    added = np.asarray(ch.get("added") or [], float).reshape(-1, 3)
    removed = np.asarray(ch.get("removed") or [], float).reshape(-1, 3)
    if c.origin is None or not (len(added) or len(removed)):
        return atoms, None, 0, 0
    # the completion's positions are in the start's frame; srfit then scaled the
    # cluster about the origin by zoomscale
    zoom = float(c.parameters.get("zoomscale", 1.0))
    xyz = atoms.get_positions()
    col = ["gold"] * len(xyz)
    if len(added):
        d = np.linalg.norm((added * zoom)[:, None] - xyz[None], axis=-1)
        for k in np.flatnonzero(d.min(axis=0) < 0.5):
            col[k] = "limegreen"
    ghosts = Atoms(
        atoms.get_chemical_symbols()[:1] * len(removed), positions=removed * zoom
    )
    return atoms + ghosts, col + ["red"] * len(removed), len(added), len(removed)


def _completion_text(row: dict[str, Any]) -> str:
    """``"of rank 4: +2 / -1 atoms; the data allow 52..55 atoms"`` for a completed
    candidate; the count range alone for one the completion left as it was."""
    span = str(row.get("atoms_range") or "")
    if not span:
        allow = ""
    elif ".." in span:
        allow = f"the data allow {span} atoms"
    else:
        allow = "the data resolve the atom count"
    if not row.get("completed_from"):
        return allow
    done = (
        f"of {row['completed_from']}: +{row['atoms_added']} / -{row['atoms_removed']} atoms"
    )
    return f"{done}; {allow}" if allow else done


def report_html(
    result: SolveResult,
    rows: Sequence[dict[str, Any]],
    map_files: Sequence[str] = ("latent.png",),
) -> str:
    """The one-page HTML report (figures linked from the same folder; ``map_files``:
    the models' latent maps)."""
    e = html.escape
    s = result.settings
    settings_rows = "".join(
        f"<tr><td>{e(k)}</td><td>{e('data points' if v is None else f'{v:g}')}</td>"
        f"<td>{e(s.sources.get(k, ''))}</td></tr>"
        for k, v in (
            ("qmin", s.qmin),
            ("qmax", s.qmax),
            ("qdamp", s.qdamp),
            ("qbroad", s.qbroad),
            ("rmin", s.rmin),
            ("rmax", s.rmax),
            ("rstep", s.rstep),
        )
    )
    head = (
        "<tr><th>rank</th><th>Rw (srfit)</th><th>consistent</th><th>atoms</th>"
        "<th>NN (A)</th><th>zoomscale</th><th>Uiso</th><th>delta2</th><th>source</th>"
        "<th>completion</th><th>files</th></tr>"
    )
    body = "".join(
        f"<tr class='{'ok' if r['consistent'] == 'yes' else ''}'><td>{r['rank']}</td>"
        f"<td>{r['rw']}</td><td>{r['consistent']}</td><td>{r['n_atoms']}</td>"
        f"<td>{r['nn_distance']}</td><td>{r['zoomscale']}</td><td>{r['uiso']}</td>"
        f"<td>{r['delta2']}</td><td>{e(_short_source(r['source']))}</td>"
        f"<td>{e(_completion_text(r))}</td>"
        f"<td><a href='{r['xyz']}'>xyz</a> <a href='{r['stru']}'>stru</a></td></tr>"
        for r in rows
    )
    figs = "".join(
        f"<figure><img src='fit_{k:02d}.png' alt='fit of candidate {k}'></figure>"
        for k in range(1, min(N_FIGURES, len(rows)) + 1)
    )
    figs += "<figure><img src='structures.png' alt='top structures' class='stru'></figure>"
    maps = "".join(
        f'<figure><img src="{e(f)}" alt="latent map" style="width:520px"></figure>'
        for f in map_files
    )
    test = result.consistent_test or {}
    notes = "".join(f"<li>{e(n)}</li>" for n in result.notes) or "<li>none</li>"
    t = result.timings
    timing = ", ".join(f"{k} {v:.2f} s" for k, v in t.items())
    title = f"deepstruc solve: {Path(result.pdf.source or 'data').name}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 1em auto; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; margin-bottom: 1em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
tr.ok td {{ background: #e6f4e6; }}
figure {{ display: inline-block; margin: 0.3em; text-align: center; }}
figure img {{ width: 480px; }} figure img.stru {{ width: 600px; }}
.note {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>{e(title)}</h1>
<p>{e(result.element)}; model {e(result.model)}, seed {result.seed};
{result.n_sampled} model samples{e(guided_note(result))} + {result.n_library} library shapes,
{len(result.screened)} distinct candidates screened, {len(result.candidates)} refined
with srfit. diffpy-deepstruc {e(__version__)}. Time: {e(timing)}.</p>
<h2>Settings</h2>
<table><tr><th>setting</th><th>value</th><th>from</th></tr>{settings_rows}</table>
<h2>Notes</h2><ul>{notes}</ul>
<h2>Ranking</h2>
<p><b>{e(str(test.get("text", "")))}</b></p>
<table>{head}{body}</table>
<p class="note">Rw is srfit's, from <code>make_recipe</code> + <code>refine_recipe</code>
with the settings above (scale, zoomscale, Uiso, delta2 refined); green rows are
consistent with the data. Every screened candidate: <a href="screening.csv">screening.csv</a>.</p>
<h2>Fits and structures</h2>
{figs}
<h2>Latent map{"s" if len(map_files) > 1 else ""}</h2>
{maps}
</body></html>
"""
