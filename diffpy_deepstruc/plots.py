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


def plot_fit(
    r: np.ndarray,
    g_obs: np.ndarray,
    g_calc: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str = "",
    rw: float | None = None,
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
    ax.set_xlabel(r"$r$ ($\mathrm{\AA}$)")
    ax.set_ylabel(r"$G(r)$ ($\mathrm{\AA}^{-2}$)")
    label = title + (f"  Rw = {rw:.4f}" if rw is not None else "")
    ax.set_title(label.strip())
    ax.set_xlim(r.min(), r.max())
    ax.legend(loc="upper right", frameon=False)
    return _save(fig, path, overwrite)


def plot_latent_map(
    points: np.ndarray,
    types: Sequence[str],
    path: str | os.PathLike,
    *,
    samples: np.ndarray | None = None,
    data: Mapping[str, np.ndarray] | None = None,
    title: str = "Latent space",
    overwrite: bool = False,
) -> Path:
    """Latent means of catalog structures coloured by type, plus samples and data.

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
        Figure title.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The file written.
    """
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    types = np.asarray(list(types))
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for key, (name, colour) in TYPE_STYLE.items():
        sel = types == key
        if sel.any():
            ax.scatter(*pts[sel].T, s=8, color=colour, alpha=0.6, label=name, lw=0)
    if samples is not None and len(samples):
        s = np.asarray(samples, dtype=float).reshape(-1, 2)
        ax.scatter(*s.T, s=22, color="black", marker=".", label="samples")
    for label, z in (data or {}).items():
        z = np.asarray(z, dtype=float).reshape(2)
        ax.scatter(*z, s=90, color="black", marker="x", lw=2)
        ax.annotate(label, z, xytext=(5, 5), textcoords="offset points", fontsize=8)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8, markerscale=2, frameon=False)
    return _save(fig, path, overwrite)


def plot_structure_row(
    structures: Sequence,
    labels: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str = "",
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
    for ax, atoms, label in zip(axes[0], structures, labels, strict=False):
        if len(atoms):
            a = atoms.copy()
            a.translate(-a.get_positions().mean(axis=0))
            plot_atoms(a, ax, radii=0.9, rotation="10x,20y,0z")
        ax.set_axis_off()
        ax.set_title(label, fontsize=8)
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
