"""Figures a scientist would rather look at than read, saved to files.

Every function draws one figure with the non-interactive Agg backend and writes it
atomically (:mod:`diffpy_deepstruc.fileio`); none of them shows a window.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .fileio import atomic_write_bytes  # noqa: E402

#: Legend names and colours of the structure types on latent maps.
TYPE_STYLE: dict[str, tuple[str, str]] = {
    "fcc": ("FCC", "tab:blue"),
    "bcc": ("BCC", "tab:orange"),
    "sc": ("SC", "tab:green"),
    "octahedron": ("Octahedron", "tab:red"),
    "icosahedron": ("Icosahedron", "tab:purple"),
    "decahedron": ("Decahedron", "tab:brown"),
    "hcp": ("HCP", "tab:pink"),
    "stacking": ("Stacking faulted", "tab:gray"),
}


def _save(fig: plt.Figure, path: str | os.PathLike, overwrite: bool) -> Path:
    """Render ``fig`` to PNG (or the suffix's format) and write it atomically."""
    p = Path(path)
    buf = io.BytesIO()
    fmt = p.suffix.lstrip(".").lower() or "png"
    fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(p, buf.getvalue(), overwrite=overwrite)


_WARM: list[bool] = []


def warm_up() -> None:
    """Load matplotlib's fonts and text caches by drawing a tiny figure (not saved).

    The first figure of a process costs about 0.3 s more than the next; worker
    processes forked after this call start warm.  Done once per process.
    """
    if _WARM:
        return
    _WARM.append(True)
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    ax.set_title("warm-up")
    fig.canvas.draw()
    plt.close(fig)


def plot_fit(
    r: np.ndarray,
    g_obs: np.ndarray,
    g_calc: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str = "",
    rw: float | None = None,
    source: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Data, fit and difference curve as PDFgui shows them.

    Parameters
    ----------
    r, g_obs, g_calc : ndarray
        The fit range (A), the observed and the calculated G(r) (A^-2).
    path : path-like
        Output image file.
    title : str
        Figure title.
    rw : float, optional
        Rw of the fit, printed in the title.
    source : str, optional
        Where the refined structure came from (e.g. ``"model sample 3"`` or
        ``"library shape: icosahedron 55"``), printed under the title.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The file written.
    """
    r, g_obs, g_calc = (np.asarray(a, dtype=float) for a in (r, g_obs, g_calc))
    diff = g_obs - g_calc
    span = max(np.ptp(g_obs), 1e-12)
    offset = g_obs.min() - 0.15 * span - diff.max()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(r, g_obs, "o", mfc="none", mec="tab:blue", ms=3, label="data")
    ax.plot(r, g_calc, "-", color="tab:red", lw=1.3, label="fit")
    ax.plot(r, diff + offset, "-", color="tab:green", lw=1.0, label="difference")
    ax.axhline(offset, color="0.6", lw=0.6, ls="--")
    ax.set_xlabel("r (Å)")  # plain text: mathtext costs ~0.5 s on first use
    ax.set_ylabel("G(r) (Å⁻²)")
    label = title + (f"  Rw = {rw:.4f}" if rw is not None else "")
    if source:
        ax.set_title(label.strip(), pad=18)
        ax.text(
            0.5,
            1.015,
            f"structure from: {source}",
            transform=ax.transAxes,
            ha="center",
            va="bottom",
            fontsize=8.5,
            color="0.25",
        )
    else:
        ax.set_title(label.strip())
    ax.set_xlim(r.min(), r.max())
    ax.legend(loc="upper right", frameon=False)
    return _save(fig, path, overwrite)


def _distinct(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``points`` and how many points share each."""
    if len(points) == 0:
        return points.reshape(0, 2), np.zeros(0, dtype=int)
    uniq, counts = np.unique(points, axis=0, return_counts=True)
    return uniq, counts


def _text_box(ann, renderer):
    """Display box of an annotation's text and its frame, without the leader line."""
    from matplotlib.text import Text

    ann.update_positions(renderer)
    box = Text.get_window_extent(ann, renderer)
    pad = 3 * ann.figure.dpi / 72  # the round frame around the text
    return box.expanded(1.0, 1.0).padded(pad)


def _label_inside(ax, xy: np.ndarray, text: str, placed: list, **kw) -> None:
    """Annotate ``xy`` with ``text`` inside the frame, clear of earlier labels.

    Tries offsets towards the middle of the axes first, then further out and to the
    other side, and keeps the first whose box lies inside the axes and overlaps none
    of the boxes in ``placed`` (display coordinates, appended to).  A label moved
    away from its point gets a thin leader line.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    sx = -1 if xy[0] > 0.5 * (x0 + x1) else 1
    sy = -1 if xy[1] > 0.5 * (y0 + y1) else 1
    tries = [(sx * d, sy * d) for d in (10, 24)]
    tries += [(sx * 10, sy * (10 + 15 * k)) for k in range(1, 6)]
    tries += [(sx * 10, -sy * (10 + 15 * k)) for k in range(0, 6)]
    tries += [(-sx * 10, sy * 10), (-sx * 10, -sy * 10)]
    ann = None
    for k, (dx, dy) in enumerate(tries):
        if ann is not None:
            ann.remove()
        ann = ax.annotate(
            text,
            xy,
            xytext=(dx, dy),
            textcoords="offset points",
            ha="left" if dx > 0 else "right",
            va="bottom" if dy > 0 else "top",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.5", "alpha": 0.9},
            arrowprops=(
                {"arrowstyle": "-", "color": "0.3", "lw": 0.6, "shrinkB": 6}
                if k > 0
                else None
            ),
            zorder=20,
            annotation_clip=False,
            **kw,
        )
        box = _text_box(ann, renderer)
        inside = (
            box.x0 >= frame.x0
            and box.x1 <= frame.x1
            and box.y0 >= frame.y0
            and box.y1 <= frame.y1
        )
        if inside and not any(box.overlaps(b) for b in placed):
            break
    placed.append(_text_box(ann, renderer))


def plot_latent_map(
    points: np.ndarray,
    types: Sequence[str],
    path: str | os.PathLike,
    *,
    samples: np.ndarray | None = None,
    data: Mapping[str, np.ndarray] | None = None,
    title: str = "Latent space",
    best: np.ndarray | None = None,
    best_label: str = "best candidate",
    axes: tuple[str, str] = ("z₁", "z₂"),
    overwrite: bool = False,
) -> Path:
    """Latent means of catalog structures coloured by type, plus samples and data.

    Every type stays visible: structures at the same latent point (the same shape in
    several metals, variants with one PDF) are drawn once, with a marker whose area
    grows with their number, and the types are layered by how many distinct points
    they have, the rarest on top with a dark edge.  Data points and the best sample
    are labelled inside the frame.

    Parameters
    ----------
    points : ndarray, shape (M, 2)
        Latent points of the map (e.g. catalog structures' posterior means).
    types : sequence of str
        Structure type of each point (keys of :data:`TYPE_STYLE`).
    path : path-like
        Output image file.
    samples : ndarray, shape (n, 2), optional
        Sampled latent points (e.g. the candidates of one ``solve``), drawn as dots.
    data : mapping of str to ndarray of shape (2,), optional
        Measured PDFs placed on the map, drawn as labelled crosses.
    title : str
        Figure title; a second line says how many structures and points are drawn.
    best : ndarray of shape (2,), optional
        Latent point of the best candidate, drawn as a labelled star.
    axes : (str, str)
        Axis labels (a principal view of a larger latent: ``("PC 1", "PC 2")``).
    best_label : str
        Its label.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The file written.
    """
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    types = np.asarray(list(types))
    fig, ax = plt.subplots(figsize=(7.2, 6.0))
    layers = []
    for key, (name, colour) in TYPE_STYLE.items():
        sel = types == key
        if sel.any():
            uniq, counts = _distinct(pts[sel])
            layers.append((len(uniq), key, name, colour, uniq, counts, int(sel.sum())))
    n_distinct = len(_distinct(pts)[0])
    layers.sort(key=lambda t: -t[0])  # most distinct points at the bottom
    for z, (ndist, _, name, colour, uniq, counts, n) in enumerate(layers):
        rare = ndist <= 40
        ax.scatter(
            *uniq.T,
            s=np.clip(12 * np.sqrt(counts), 12, 140) * (1.6 if rare else 1.0),
            color=colour,
            alpha=0.95 if rare else 0.55,
            edgecolors="black" if rare else "none",
            linewidths=0.6 if rare else 0,
            label=f"{name} ({n} at {ndist} point{'s' if ndist != 1 else ''})",
            zorder=2 + z,
        )
    extra = []
    if samples is not None and len(samples):
        s = np.asarray(samples, dtype=float).reshape(-1, 2)
        ax.scatter(
            *s.T,
            s=18,
            color="black",
            marker="o",
            edgecolors="white",
            linewidths=0.5,
            label=f"samples ({len(s)})",
            zorder=12,
        )
        extra.append(s)
    marks = []
    for label, z in (data or {}).items():
        z = np.asarray(z, dtype=float).reshape(-1)[:2]
        marks.append((label, z))
        extra.append(z[None])
    if best is not None:
        extra.append(np.asarray(best, dtype=float).reshape(-1)[:2][None])
    allp = np.concatenate([pts, *extra]) if extra else pts
    if len(allp):
        lo, hi = allp.min(0), allp.max(0)
        pad = 0.06 * np.maximum(hi - lo, 1e-6)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    # the marks themselves are obstacles for every label
    from matplotlib.transforms import Bbox

    placed: list = []
    for z in [m[1] for m in marks] + ([] if best is None else [np.ravel(best)[:2]]):
        px, py = ax.transData.transform(z)
        h = 6 * fig.dpi / 72  # half the X marker, in pixels
        placed.append(Bbox([[px - h, py - h], [px + h, py + h]]))
    for k, (label, z) in enumerate(marks):
        ax.scatter(
            *z,
            s=150,
            color="black",
            marker="X",
            edgecolors="white",
            linewidths=1.2,
            label="data" if k == 0 else None,
            zorder=14,
        )
        _label_inside(ax, z, label, placed)
    if best is not None:
        b = np.asarray(best, dtype=float).reshape(-1)[:2]
        ax.scatter(
            *b,
            s=260,
            color="gold",
            marker="*",
            edgecolors="black",
            linewidths=1.0,
            label=best_label,
            zorder=15,
        )
        _label_inside(ax, b, best_label, placed)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    sub = (
        f"all {len(pts)} structures drawn: {n_distinct} distinct points, "
        "area ~ structures per point"
        if len(pts)
        else "no structure map"
    )
    ax.set_title(f"{title}\n{sub}", fontsize=10)
    leg = ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        frameon=False,
        borderaxespad=0.0,
    )
    for h in getattr(leg, "legend_handles", getattr(leg, "legendHandles", [])):
        if hasattr(h, "set_sizes"):
            h.set_sizes([60])
    return _save(fig, path, overwrite)


def plot_structure_row(
    structures: Sequence,
    labels: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str = "",
    colors: Sequence[Sequence[str] | None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Draw structures side by side (ASE's matplotlib rendering).

    Parameters
    ----------
    structures : sequence of ase.Atoms
        The structures, left to right.
    labels : sequence of str
        A caption under each (e.g. the atom count).
    path : path-like
        Output image file.
    title : str
        Figure title.
    colors : sequence of (sequence of str or None), optional
        A colour per atom for each structure (None: ASE's element colours).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The file written.
    """
    from ase.visualize.plot import plot_atoms

    n = max(len(structures), 1)
    fig, axes = plt.subplots(1, n, figsize=(1.9 * n, 2.3), squeeze=False)
    colors = list(colors) if colors is not None else [None] * len(structures)
    for ax, atoms, label, col in zip(axes[0], structures, labels, colors, strict=False):
        if len(atoms):
            a = atoms.copy()
            a.translate(-a.get_positions().mean(axis=0))
            kw = {} if col is None else {"colors": list(col)}
            plot_atoms(a, ax, radii=0.9, rotation="10x,20y,0z", **kw)
        ax.set_axis_off()
        ax.set_title(label, fontsize=8)
    # one length scale for all panels, so that sizes compare at a glance
    half = max(
        max(abs(np.diff(ax.get_xlim())[0]), abs(np.diff(ax.get_ylim())[0])) / 2
        for ax in axes[0]
    )
    for ax in axes[0]:
        cx, cy = np.mean(ax.get_xlim()), np.mean(ax.get_ylim())
        ax.set_xlim(cx - half, cx + half)
        ax.set_ylim(cy - half, cy + half)
        ax.set_aspect("equal")
    if title:
        fig.suptitle(title)
    return _save(fig, path, overwrite)


def plot_series(
    names: Sequence[str],
    rw: Sequence[float],
    natoms: Sequence[int],
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
) -> Path:
    """Best Rw and atom count of the top candidate along a series of PDFs.

    Parameters
    ----------
    names : sequence of str
        One label per PDF, in series order.
    rw : sequence of float
        Rw of the top-ranked candidate for each PDF.
    natoms : sequence of int
        Atom count of that candidate.
    path : path-like
        Output image file.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The file written.
    """
    x = np.arange(len(names))
    fig, ax1 = plt.subplots(figsize=(max(5, 0.35 * len(names) + 2), 3.8))
    ax1.plot(x, rw, "o-", color="tab:red")
    ax1.set_ylabel("best Rw", color="tab:red")
    ax2 = ax1.twinx()
    ax2.plot(x, natoms, "s--", color="tab:blue")
    ax2.set_ylabel("atoms", color="tab:blue")
    ax1.set_xticks(x)
    ax1.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax1.set_xlabel("PDF")
    return _save(fig, path, overwrite)
