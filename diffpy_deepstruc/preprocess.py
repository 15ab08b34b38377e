"""PDF preprocessing shared by training and inference.

A PDF enters the networks as a fixed-length vector.  Training (simulated catalog PDFs)
and inference (measured ``.gr`` files) go through the same functions, and the
configuration is stored in every checkpoint, so a model always sees its inputs as it was
trained on them.

Two grids (:class:`PreprocessConfig` ``mode``):

``"reduced"`` (default)
    G is sampled against the *reduced* distance ``x = r / r1``, with ``r1`` the position
    of the nearest-neighbour peak of the PDF itself (:func:`nn_peak_position`), on
    ``x = 0.75 .. 9.0`` every 0.03 (276 points; ``9.0 r1`` is 22-30 A for the d-block
    metals).  The clusters are monometallic and one shape gives the same unit-sphere
    target for every metal, only scaled; in reduced units its PDF is (nearly) the same
    for every metal too, so the network does not have to learn the stretch.  ``r1`` is
    returned beside the vector: it fixes the size in Angstrom.
``"absolute"``
    G against r in Angstrom (e.g. 2.0 .. 30.0 A every 0.1 A).

Then G is divided by its largest absolute value on the grid.

Mapping rules for measured data (see ``docs/model.md``):

* the data are linearly interpolated onto the grid (finer or coarser data alike), but the
  data's spacing must not exceed ``max_data_step`` A (coarser data do not resolve peaks);
* the data must start at or below the grid's first point (within half a step);
* the data may end before the grid's last point: the grid beyond the data's last point
  is zero-filled (G decays to ~0 there for nanoparticles), but only when the data reach
  at least ``min_rmax`` (same units as the grid); otherwise
  :class:`~diffpy_deepstruc.errors.PDFDataError` says which r-range is needed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import PDFDataError

__all__ = [
    "PreprocessConfig",
    "preprocess_pdf",
    "prepare_input",
    "preprocess_batch",
    "BatchResampler",
    "nn_peak_position",
]


@dataclass(frozen=True)
class PreprocessConfig:
    """How a PDF becomes a network input.

    Attributes
    ----------
    mode : {"reduced", "absolute"}
        Grid in units of the PDF's nearest-neighbour distance, or in Angstrom.
    rmin, rmax, rstep : float
        The grid (both ends included), in the units of ``mode``.
    min_rmax : float
        Data ending before ``rmax`` are zero-filled beyond their last point only if they
        reach at least this far (units of ``mode``).
    max_data_step : float
        Largest accepted spacing of the input data (A).
    nn_window : (float, float)
        Where the nearest-neighbour peak is searched (A).
    normalize : {"maxabs"}
        Divide by max |G| over the grid.
    """

    mode: str = "reduced"
    rmin: float = 0.75
    rmax: float = 9.0
    rstep: float = 0.03
    min_rmax: float = 6.0
    max_data_step: float = 0.25
    nn_window: tuple[float, float] = (1.6, 4.6)
    normalize: str = "maxabs"

    def __post_init__(self) -> None:
        if self.mode not in ("reduced", "absolute"):
            raise PDFDataError(
                f"preprocessing mode must be 'reduced' or 'absolute', not {self.mode!r}"
            )
        if not (0 <= self.rmin < self.rmax) or self.rstep <= 0:
            raise PDFDataError(
                f"invalid preprocessing grid rmin={self.rmin} rmax={self.rmax} rstep={self.rstep}"
            )
        if not (self.rmin < self.min_rmax <= self.rmax):
            raise PDFDataError(
                f"min_rmax={self.min_rmax} must lie in ({self.rmin}, {self.rmax}]"
            )
        if self.normalize != "maxabs":
            raise PDFDataError(f"unknown normalisation {self.normalize!r} (only 'maxabs')")
        object.__setattr__(self, "nn_window", tuple(float(v) for v in self.nn_window))

    @property
    def n_points(self) -> int:
        """Number of grid points."""
        return int(round((self.rmax - self.rmin) / self.rstep)) + 1

    def r_grid(self) -> np.ndarray:
        """The model grid ``[n_points]`` (units of ``mode``)."""
        return self.rmin + self.rstep * np.arange(self.n_points, dtype=float)

    @property
    def unit(self) -> str:
        return "r1" if self.mode == "reduced" else "A"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary (stored in checkpoint configs)."""
        d = dataclasses.asdict(self)
        d["nn_window"] = list(self.nn_window)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - names
        if extra:
            raise PDFDataError(f"unknown preprocessing keys {sorted(extra)}")
        return cls(**d)


def nn_peak_position(
    r: np.ndarray,
    g: np.ndarray,
    window: tuple[float, float] = (1.6, 4.6),
    threshold: float = 0.3,
) -> float | None:
    """Position (A) of the first strong peak of G(r): the nearest-neighbour distance.

    The first local maximum inside ``window`` that exceeds ``threshold * max(G)`` (max
    over r >= window[0]), refined by a parabola through the logarithm of the three
    highest points (exact for a Gaussian peak).  None when there is no such peak.
    """
    r = np.asarray(r, float)
    g = np.asarray(g, float)
    sel = r >= window[0]
    if sel.sum() < 5:
        return None
    gmax = g[sel].max()
    if gmax <= 0:
        return None
    idx = np.flatnonzero(sel & (r <= window[1]))
    for i in idx:
        if (
            0 < i < len(g) - 1
            and g[i] >= threshold * gmax
            and g[i] >= g[i - 1]
            and g[i] > g[i + 1]
        ):
            y = g[i - 1 : i + 2]
            if np.all(y > 0):
                y = np.log(y)
            den = y[0] - 2 * y[1] + y[2]
            off = 0.5 * (y[0] - y[2]) / den if den < 0 else 0.0
            step = 0.5 * (r[i + 1] - r[i - 1])
            return float(r[i] + np.clip(off, -1, 1) * step)
    return None


def _check_r(
    r: np.ndarray, cfg: PreprocessConfig, r1: float = 1.0, ranges: bool = True
) -> None:
    if r.ndim != 1 or r.size < 2:
        raise PDFDataError("r must be a 1-D array with at least two points")
    if not np.all(np.isfinite(r)):
        raise PDFDataError("r contains NaN or infinite values")
    d = np.diff(r)
    if np.any(d <= 0):
        raise PDFDataError("r must be strictly increasing")
    step = float(np.median(d))
    if step > cfg.max_data_step + 1e-9:
        raise PDFDataError(
            f"data r-spacing {step:.3g} A is coarser than the {cfg.max_data_step} A the model "
            f"accepts; provide G(r) sampled at <= {cfg.max_data_step} A"
        )
    if not ranges:
        return
    lo, hi, need = cfg.rmin * r1, cfg.rmax * r1, cfg.min_rmax * r1
    what = (
        f" (the grid is {cfg.rmin}..{cfg.rmax} x the nearest-neighbour distance {r1:.3f} A)"
        if cfg.mode == "reduced"
        else ""
    )
    if r[0] > lo + 0.5 * cfg.rstep * r1:
        raise PDFDataError(
            f"data start at r={r[0]:.3g} A; the model needs G(r) from r <= {lo:.3g} A "
            f"up to at least {need:.3g} A (ideally {hi:.3g} A){what}"
        )
    if r[-1] < need - 1e-9:
        raise PDFDataError(
            f"data end at r={r[-1]:.3g} A; the model needs G(r) over {lo:.3g}..{hi:.3g} A "
            f"and zero-fills beyond the data only down to rmax >= {need:.3g} A{what}"
        )


def _peak(r: np.ndarray, g: np.ndarray, cfg: PreprocessConfig) -> float:
    r1 = nn_peak_position(r, g, cfg.nn_window)
    if r1 is None:
        raise PDFDataError(
            f"no nearest-neighbour peak found in G(r) between {cfg.nn_window[0]} and "
            f"{cfg.nn_window[1]} A (first local maximum above 30 % of max G); the model "
            "needs a metal-cluster PDF with a clear first peak"
        )
    return r1


def prepare_input(
    r: Any, g: Any, config: PreprocessConfig | None = None
) -> tuple[np.ndarray, float]:
    """Map one PDF onto the model grid and normalise it.

    Parameters
    ----------
    r, g : array ``[n]``
        The PDF (A, any units of G).
    config : PreprocessConfig, optional

    Returns
    -------
    x : float32 ``[config.n_points]``, max |x| = 1
    r1 : float
        Nearest-neighbour peak position (A); NaN in ``"absolute"`` mode when no peak
        is found.

    Raises
    ------
    PDFDataError
        Bad arrays, no first peak (reduced mode), or an r-range / spacing the model
        cannot use (the message says what is needed).
    """
    cfg = config or PreprocessConfig()
    r = np.asarray(r, dtype=float)
    g = np.asarray(g, dtype=float)
    if g.shape != r.shape:
        raise PDFDataError(f"r and G differ in shape: {r.shape} vs {g.shape}")
    if r.ndim != 1 or r.size < 2:
        raise PDFDataError("r must be a 1-D array with at least two points")
    if not np.all(np.isfinite(g)) or not np.all(np.isfinite(r)):
        raise PDFDataError("the PDF contains NaN or infinite values")
    if cfg.mode == "reduced":
        _check_r(r, cfg, ranges=False)
        r1 = _peak(r, g, cfg)
        _check_r(r, cfg, r1)
        x = cfg.r_grid() * r1
    else:
        _check_r(r, cfg)
        found = nn_peak_position(r, g, cfg.nn_window)
        r1 = float("nan") if found is None else found
        x = cfg.r_grid()
    out = np.interp(x, r, g, left=g[0], right=0.0)
    return _normalize(out[None, :])[0], float(r1)


def preprocess_pdf(
    pdf: Any, config: PreprocessConfig | None = None, g: Any = None
) -> np.ndarray:
    """Network input of one PDF (see :func:`prepare_input`).

    Parameters
    ----------
    pdf : PDFData or array
        A :class:`~diffpy_deepstruc.pdfdata.PDFData` (its ``r`` and ``g`` are used), or
        the r array when ``g`` is given.
    config : PreprocessConfig, optional
    g : array, optional
        G(r) values when ``pdf`` is the r array.

    Returns
    -------
    ndarray
        float32 ``[config.n_points]``, max |value| = 1.
    """
    if g is None:
        r, g = getattr(pdf, "r", None), getattr(pdf, "g", None)
        if r is None or g is None:
            raise PDFDataError("expected a PDFData (with .r and .g) or arrays r and g")
    else:
        r = pdf
    return prepare_input(r, g, config)[0]


def _normalize(x: np.ndarray) -> np.ndarray:
    m = np.max(np.abs(x), axis=1, keepdims=True)
    if np.any(m <= 0) or not np.all(np.isfinite(m)):
        raise PDFDataError(
            "G(r) is zero everywhere on the model r-grid; nothing to normalise"
        )
    return (x / m).astype(np.float32)


class BatchResampler:
    """Preprocessing of many PDFs that share one r array (a catalog).

    Parameters
    ----------
    r : array
        The common r array of the PDFs.
    config : PreprocessConfig, optional

    Calling it on ``g [B, n_r]`` returns ``(x [B, n_points] float32, r1 [B])``.
    """

    def __init__(self, r: Any, config: PreprocessConfig | None = None) -> None:
        self.config = config or PreprocessConfig()
        self.r = np.asarray(r, dtype=float)
        if self.config.mode == "absolute":
            _check_r(self.r, self.config)

    def __call__(self, g: Any) -> tuple[np.ndarray, np.ndarray]:
        g = np.asarray(g, dtype=float)
        if g.ndim == 1:
            g = g[None, :]
        xs = np.empty((g.shape[0], self.config.n_points), np.float32)
        r1 = np.empty(g.shape[0])
        for i, row in enumerate(g):
            xs[i], r1[i] = prepare_input(self.r, row, self.config)
        return xs, r1


def preprocess_batch(r: Any, g: Any, config: PreprocessConfig | None = None) -> np.ndarray:
    """Preprocess PDFs ``g [B, n_r]`` sharing the r array ``r`` -> ``[B, n_points]``."""
    return BatchResampler(r, config)(g)[0]
