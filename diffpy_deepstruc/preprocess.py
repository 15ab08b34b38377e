"""PDF preprocessing shared by training and inference.

A PDF enters the networks as a fixed-length vector: G(r) sampled on one r-grid
(:class:`PreprocessConfig`, default 2.0..30.0 A every 0.1 A, 281 points) and divided by
its largest absolute value on that grid.  Training (simulated catalog PDFs) and inference
(measured ``.gr`` files) go through the same two functions, and the configuration is
stored in every checkpoint, so a model always sees its inputs as it was trained on them.

Mapping rules for measured data (see ``docs/model.md``):

* the data are linearly interpolated onto the grid (finer or coarser data alike), but the
  data's spacing must not exceed ``max_data_step`` (coarser data do not resolve peaks);
* the data must start at or below ``rmin`` (within half a grid step);
* the data may end before ``rmax``: the grid beyond the data's last point is zero-filled
  (G decays to ~0 there for nanoparticles), but only when the data reach at least
  ``min_rmax``; otherwise :class:`~diffpy_deepstruc.errors.PDFDataError` says which
  r-range is needed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import PDFDataError

__all__ = ["PreprocessConfig", "preprocess_pdf", "preprocess_batch", "BatchResampler"]


@dataclass(frozen=True)
class PreprocessConfig:
    """How a PDF becomes a network input.

    Attributes
    ----------
    rmin, rmax, rstep : float
        The model r-grid in Angstrom (both ends included).
    min_rmax : float
        Data ending before ``rmax`` are zero-filled beyond their last point only if they
        reach at least this r (A).
    max_data_step : float
        Largest accepted spacing of the input data (A).
    normalize : {"maxabs"}
        Divide by max |G| over the grid.
    """

    rmin: float = 2.0
    rmax: float = 30.0
    rstep: float = 0.1
    min_rmax: float = 20.0
    max_data_step: float = 0.25
    normalize: str = "maxabs"

    def __post_init__(self) -> None:
        if not (0 <= self.rmin < self.rmax) or self.rstep <= 0:
            raise PDFDataError(
                f"invalid preprocessing grid rmin={self.rmin} rmax={self.rmax} rstep={self.rstep}"
            )
        if not (self.rmin < self.min_rmax <= self.rmax):
            raise PDFDataError(f"min_rmax={self.min_rmax} must lie in ({self.rmin}, {self.rmax}]")
        if self.normalize != "maxabs":
            raise PDFDataError(f"unknown normalisation {self.normalize!r} (only 'maxabs')")

    @property
    def n_points(self) -> int:
        """Number of grid points."""
        return int(round((self.rmax - self.rmin) / self.rstep)) + 1

    def r_grid(self) -> np.ndarray:
        """The model r-grid, float64 ``[n_points]``."""
        return self.rmin + self.rstep * np.arange(self.n_points, dtype=float)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary (stored in checkpoint configs)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - names
        if extra:
            raise PDFDataError(f"unknown preprocessing keys {sorted(extra)}")
        return cls(**d)


def _check_r(r: np.ndarray, cfg: PreprocessConfig) -> None:
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
    if r[0] > cfg.rmin + 0.5 * cfg.rstep:
        raise PDFDataError(
            f"data start at r={r[0]:.3g} A; the model needs G(r) from r <= {cfg.rmin} A "
            f"up to at least {cfg.min_rmax} A (ideally {cfg.rmax} A)"
        )
    if r[-1] < cfg.min_rmax - 1e-9:
        raise PDFDataError(
            f"data end at r={r[-1]:.3g} A; the model needs G(r) over {cfg.rmin}..{cfg.rmax} A "
            f"and zero-fills beyond the data only down to rmax >= {cfg.min_rmax} A"
        )


def preprocess_pdf(pdf: Any, config: PreprocessConfig | None = None, g: Any = None) -> np.ndarray:
    """Map one PDF onto the model grid and normalise it.

    Parameters
    ----------
    pdf : PDFData or array
        A :class:`~diffpy_deepstruc.pdfdata.PDFData` (its ``r`` and ``g`` are used), or
        the r array when ``g`` is given.
    config : PreprocessConfig, optional
        Grid and rules (default :class:`PreprocessConfig()`).
    g : array, optional
        G(r) values when ``pdf`` is the r array.

    Returns
    -------
    ndarray
        float32 ``[config.n_points]``, max |value| = 1.

    Raises
    ------
    PDFDataError
        Bad arrays, or an r-range / spacing the model cannot use (the message says what
        is needed).
    """
    cfg = config or PreprocessConfig()
    if g is None:
        r, g = getattr(pdf, "r", None), getattr(pdf, "g", None)
        if r is None or g is None:
            raise PDFDataError("expected a PDFData (with .r and .g) or arrays r and g")
    else:
        r = pdf
    r = np.asarray(r, dtype=float)
    g = np.asarray(g, dtype=float)
    if g.shape != r.shape:
        raise PDFDataError(f"r and G differ in shape: {r.shape} vs {g.shape}")
    if not np.all(np.isfinite(g)):
        raise PDFDataError("G(r) contains NaN or infinite values")
    _check_r(r, cfg)
    x = cfg.r_grid()
    out = np.interp(x, r, g, left=g[0], right=0.0)
    return _normalize(out[None, :])[0]


def _normalize(x: np.ndarray) -> np.ndarray:
    m = np.max(np.abs(x), axis=1, keepdims=True)
    if np.any(m <= 0) or not np.all(np.isfinite(m)):
        raise PDFDataError("G(r) is zero everywhere on the model r-grid; nothing to normalise")
    return (x / m).astype(np.float32)


class BatchResampler:
    """Fast preprocessing of many PDFs that share one r array (a catalog).

    Parameters
    ----------
    r : array
        The common r array of the PDFs.
    config : PreprocessConfig, optional
        Target grid and rules; ``r`` is checked once with the same rules as
        :func:`preprocess_pdf`.
    """

    def __init__(self, r: Any, config: PreprocessConfig | None = None) -> None:
        self.config = cfg = config or PreprocessConfig()
        r = np.asarray(r, dtype=float)
        _check_r(r, cfg)
        x = cfg.r_grid()
        idx = np.clip(np.searchsorted(r, x, side="right") - 1, 0, r.size - 2)
        w = (x - r[idx]) / (r[idx + 1] - r[idx])
        w = np.clip(w, 0.0, 1.0)
        self._idx = idx
        self._w = w
        self._beyond = x > r[-1] + 1e-12

    def __call__(self, g: Any) -> np.ndarray:
        """Preprocess ``g`` ``[B, n_r]`` -> float32 ``[B, n_points]``."""
        g = np.asarray(g, dtype=float)
        if g.ndim == 1:
            g = g[None, :]
        if not np.all(np.isfinite(g)):
            raise PDFDataError("G(r) contains NaN or infinite values")
        out = g[:, self._idx] * (1 - self._w) + g[:, self._idx + 1] * self._w
        out[:, self._beyond] = 0.0
        return _normalize(out)


def preprocess_batch(r: Any, g: Any, config: PreprocessConfig | None = None) -> np.ndarray:
    """Preprocess PDFs ``g [B, n_r]`` sharing the r array ``r``; see :class:`BatchResampler`."""
    return BatchResampler(r, config)(g)
