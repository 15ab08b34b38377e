"""Unit-sphere representation of a cluster: canonical frame, satellites, target arrays.

A structure of ``N`` atoms is placed in a canonical frame (one atom at the origin, the
atom farthest from it on the unit sphere, a fixed rotation), and described by the
distances the networks predict:

* ``adm``: the assigned distance matrix, atom-atom distances in canonical order;
* ``sat_dist``: the distances from each atom to ``S`` fixed *satellite* points on the
  unit sphere (:func:`satellite_positions`).

:mod:`diffpy_deepstruc.trilateration` turns (predicted) distances back into coordinates;
:func:`to_angstrom` multiplies by the kept ``scale``.  Numpy only.

Canonical frame (see ``docs/representation.md`` for the full discussion)
-----------------------------------------------------------------------
All "ties" below are decided with a tolerance ``tol = tie_tol * L``, ``L`` the largest
distance of an atom from the centroid, so that rounding noise never changes a choice.

1. **Origin**: the atom closest to the centroid.  Ties: the candidates whose sorted list
   of distances to all atoms is lexicographically smallest (the "most central" atom);
   remaining ties are settled in step 5.
2. **Scale**: the largest distance of an atom from the origin atom (Angstrom per unit).
3. **Atom order**: by distance from the origin, ties by the canonical-frame coordinates
   ``x``, then ``y``, then ``z``, each *descending* (so atom 1 is the ``x``-axis atom).
4. **Rotation**: ``x`` points to an atom ``a`` of the first shell (the atoms nearest to
   the origin); ``y`` lies in the plane of ``a`` and an atom ``b``, the nearest to the
   origin among the atoms not collinear with origin and ``a``, ties to the one nearest to
   ``a``; ``z = x cross y`` (a proper rotation; mirror images get different targets
   unless ``allow_reflection=True``, which also tries ``z -> -z``).
5. **Choice among equivalent frames**: every (origin, ``a``, ``b``) candidate allowed by
   the ties above is built, and the one whose ordered coordinates, read as one vector
   ``(x0, y0, z0, x1, y1, ...)``, are lexicographically largest (with tolerance) wins.

Because every choice is made on rotation- and translation-invariant quantities, or by
comparing *all* tied candidates, the target is the same for any input atom order,
translation and rotation.  For a symmetric cluster the candidates that survive step 5
are images of each other under a symmetry operation, so they give the same target; the
limit is tolerance: geometries that differ by about ``tol`` from a tie can flip a choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diffpy_deepstruc.errors import ParameterError, StructureError

__all__ = [
    "TIE_TOLERANCE",
    "Representation",
    "canonical_frame",
    "encode",
    "pairwise_distances",
    "satellite_distances",
    "satellite_positions",
    "to_angstrom",
]

#: Relative tolerance (times the cluster radius) below which two distances or
#: coordinates count as tied when choosing the canonical frame.
TIE_TOLERANCE = 1e-5

#: An atom ``b`` counts as collinear with the origin and atom ``a`` when the sine of the
#: angle between them (seen from the origin) is below this.
_COLLINEAR_SIN = 1e-2

_GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))


# --------------------------------------------------------------------------- helpers
def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ParameterError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def satellite_positions(n_satellites: int = 11) -> np.ndarray:
    """Fixed, well-spread satellite points on the unit sphere.

    A deterministic Fibonacci (golden-spiral) set: point ``k`` has
    ``z = 1 - (2k + 1) / S`` and azimuth ``k * pi * (3 - sqrt(5))``.  The points are
    never coplanar for ``S >= 4``; the origin is *not* a satellite (the origin atom's row
    of the distance matrix already gives each atom's distance from the origin).

    Parameters
    ----------
    n_satellites : int
        Number of satellites ``S`` (at least 4, needed to fix a point in 3-D).

    Returns
    -------
    ndarray, shape (S, 3)
        Unit vectors, float64.
    """
    s = _check_int("n_satellites", n_satellites, 4)
    k = np.arange(s, dtype=float)
    z = 1.0 - (2.0 * k + 1.0) / s
    rho = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    phi = k * _GOLDEN_ANGLE
    return np.column_stack([rho * np.cos(phi), rho * np.sin(phi), z])


def pairwise_distances(xyz: np.ndarray) -> np.ndarray:
    """Euclidean distance matrix ``D[i, j] = |x_i - x_j|`` of an ``[n, 3]`` array."""
    xyz = np.asarray(xyz, dtype=float)
    diff = xyz[:, None, :] - xyz[None, :, :]
    return np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))


def satellite_distances(xyz: np.ndarray, satellites: np.ndarray) -> np.ndarray:
    """Distances ``d[i, k] = |x_i - s_k|`` of atoms ``[n, 3]`` to satellites ``[S, 3]``."""
    xyz = np.asarray(xyz, dtype=float)
    satellites = np.asarray(satellites, dtype=float)
    diff = xyz[:, None, :] - satellites[None, :, :]
    return np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))


def _tie_ranks(values: np.ndarray, tol: float) -> np.ndarray:
    """Integer rank of each value along the last axis, equal for values chained by gaps
    <= ``tol`` (single linkage), so rounding noise never splits or merges a tie."""
    idx = np.argsort(values, axis=-1, kind="stable")
    gaps = np.diff(np.take_along_axis(values, idx, axis=-1), axis=-1) > tol
    sorted_ranks = np.concatenate(
        [np.zeros(gaps.shape[:-1] + (1,), dtype=np.int64), np.cumsum(gaps, axis=-1)],
        axis=-1,
    )
    ranks = np.empty(values.shape, dtype=np.int64)
    np.put_along_axis(ranks, idx, sorted_ranks, axis=-1)
    return ranks


def _lex_extreme(rows: np.ndarray, tol: float, largest: bool) -> int:
    """Index of the lexicographically largest (smallest) row, comparing with ``tol``.

    Column by column, keep the rows within ``tol`` of the best value; the result does not
    depend on the order of the rows except among rows equal within ``tol``.
    """
    keep = np.arange(rows.shape[0])
    for col in range(rows.shape[1]):
        if keep.size == 1:
            break
        v = rows[keep, col]
        if largest:
            keep = keep[v >= v.max() - tol]
        else:
            keep = keep[v <= v.min() + tol]
    return int(keep[0])


def _validate_xyz(xyz, n_max: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(xyz, dtype=float)
    except (TypeError, ValueError) as exc:
        raise StructureError(f"coordinates are not a numeric array: {exc}") from None
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise StructureError(f"coordinates must have shape (N, 3), got {arr.shape}")
    n = arr.shape[0]
    if n < 2:
        raise StructureError(f"a structure needs at least 2 atoms, got {n}")
    if n_max is not None and n > n_max:
        raise StructureError(
            f"structure has {n} atoms, more than n_max={n_max}; "
            f"encode with a larger n_max or use a smaller cluster"
        )
    if not np.all(np.isfinite(arr)):
        raise StructureError("coordinates contain NaN or infinite values")
    return arr


# ------------------------------------------------------------------ canonical frame
def canonical_frame(
    xyz,
    *,
    tie_tol: float = TIE_TOLERANCE,
    allow_reflection: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Canonical origin, rotation, atom order and scale of a structure.

    See the module docstring for the definition.

    Parameters
    ----------
    xyz : array_like, shape (N, 3)
        Cartesian coordinates (Angstrom), ``N >= 2``, finite, no coincident atoms.
    tie_tol : float
        Relative tolerance (times the cluster radius) for deciding ties.
    allow_reflection : bool
        Also consider improper frames (``z -> -z``), so a structure and its mirror image
        get the same target.

    Returns
    -------
    order : ndarray of int, shape (N,)
        Original atom indices in canonical order (``order[0]`` is the origin atom).
    origin : ndarray, shape (3,)
        Position of the origin atom in the input frame (Angstrom).
    rotation : ndarray, shape (3, 3)
        Rows are the canonical axes in the input frame, so the canonical coordinates are
        ``(xyz[order] - origin) @ rotation.T / scale``.
    scale : float
        Distance of the farthest atom from the origin atom (Angstrom per unit).
    """
    x = _validate_xyz(xyz)
    if not (np.isfinite(tie_tol) and 0.0 < tie_tol < 0.1):
        raise ParameterError(f"tie_tol must be in (0, 0.1), got {tie_tol!r}")
    n = x.shape[0]
    centroid = x.mean(axis=0)
    dc = np.linalg.norm(x - centroid, axis=1)
    size = dc.max()
    if size == 0.0:
        raise StructureError("all atoms are at the same position")
    tol = tie_tol * size
    dist = pairwise_distances(x)
    offdiag = dist[~np.eye(n, dtype=bool)]
    if offdiag.min() <= tol:
        i, j = np.argwhere((dist <= tol) & ~np.eye(n, dtype=bool))[0]
        raise StructureError(
            f"atoms {i} and {j} coincide (distance {dist[i, j]:.3g} A); "
            f"remove duplicate atoms"
        )

    # 1. origin candidates: closest to the centroid, then the smallest distance profile
    cand = np.flatnonzero(dc <= dc.min() + tol)
    if cand.size > 1:
        profiles = np.sort(dist[cand], axis=1)
        best = profiles[_lex_extreme(profiles, tol, largest=False)]
        cand = cand[np.all(np.abs(profiles - best) <= tol, axis=1)]

    signatures: list[np.ndarray] = []
    frames: list[tuple[np.ndarray, np.ndarray, int, float]] = []
    for o in cand:
        v = x - x[o]
        r = dist[o]
        scale = float(r.max())
        others = np.flatnonzero(np.arange(n) != o)
        r_min = r[others].min()
        shell = others[r[others] <= r_min + tol]
        # 4. candidate axes: x towards each first-shell atom a, y towards its atoms b
        e1s, e2s = [], []
        for a in shell:
            e1 = v[a] / r[a]
            perp = v - np.outer(v @ e1, e1)
            pn = np.linalg.norm(perp, axis=1)
            sin = pn / np.where(r > 0, r, 1.0)
            noncol = np.flatnonzero(sin > _COLLINEAR_SIN)
            if noncol.size == 0:
                # all atoms on one line: any perpendicular gives the same coordinates
                helper = np.eye(3)[int(np.argmin(np.abs(e1)))]
                e2 = helper - (helper @ e1) * e1
                e1s.append(e1)
                e2s.append(e2 / np.linalg.norm(e2))
                continue
            rb = r[noncol]
            bset = noncol[rb <= rb.min() + tol]
            dab = dist[a, bset]
            for b in bset[dab <= dab.min() + tol]:
                e1s.append(e1)
                e2s.append(perp[b] / pn[b])
        e1a, e2a = np.asarray(e1s), np.asarray(e2s)
        e3a = np.cross(e1a, e2a)
        rots = np.stack([e1a, e2a, e3a], axis=1)  # [K, 3, 3], rows = axes
        if allow_reflection:
            rots = np.concatenate([rots, rots * np.array([1.0, 1.0, -1.0])[:, None]])
        coords = np.einsum("nj,kij->kni", v, rots) / scale  # [K, N, 3]
        # 3. order: distance from the origin, then x, y, z descending (tie ranks)
        tol_u = tol / scale
        keys = [_tie_ranks(-coords[..., i], tol_u) for i in (2, 1, 0)]
        keys.append(np.broadcast_to(_tie_ranks(r, tol), keys[0].shape))
        order = np.lexsort(keys, axis=-1)  # [K, N]
        ordered = np.take_along_axis(coords, order[..., None], axis=1)
        signatures.append(ordered.reshape(len(rots), -1))
        frames += [(order[k], rots[k], int(o), scale) for k in range(len(rots))]

    # 5. the lexicographically largest ordered coordinates win
    best = _lex_extreme(np.concatenate(signatures), tie_tol, largest=True)
    order, rot, o, scale = frames[best]
    return order, x[o].copy(), rot, scale


# ------------------------------------------------------------------ representation
@dataclass(frozen=True, eq=False)
class Representation:
    """Target arrays of one structure in the canonical unit-sphere frame.

    Rows past ``n_atoms`` are zero and ``mask`` is False there.  All lengths are in
    units of ``scale`` (Angstrom per unit) except ``scale`` itself.

    Attributes
    ----------
    coords : ndarray, shape (n_max, 3)
        Canonical-frame coordinates; atom 0 at the origin, all ``|coords| <= 1``.
    sat_dist : ndarray, shape (n_max, S)
        Atom-satellite distances, satellites from :func:`satellite_positions`.
    adm : ndarray, shape (n_max, n_max)
        Assigned distance matrix (atom-atom distances, canonical order).
    mask : ndarray of bool, shape (n_max,)
        True for real atoms.
    scale : float
        Angstrom per unit (distance of the farthest atom from the origin atom).
    order : ndarray of int, shape (n_atoms,)
        Original atom indices in canonical order.
    n_atoms : int
        Number of atoms.
    origin : ndarray, shape (3,)
        Origin atom position in the input frame (Angstrom).
    rotation : ndarray, shape (3, 3)
        Canonical axes (rows) in the input frame:
        ``coords[:n] == (xyz[order] - origin) @ rotation.T / scale``.
    """

    coords: np.ndarray
    sat_dist: np.ndarray
    adm: np.ndarray
    mask: np.ndarray
    scale: float
    order: np.ndarray
    n_atoms: int
    origin: np.ndarray
    rotation: np.ndarray

    @property
    def n_max(self) -> int:
        """Padded length."""
        return int(self.coords.shape[0])

    @property
    def n_satellites(self) -> int:
        """Number of satellites ``S``."""
        return int(self.sat_dist.shape[1])

    @property
    def satellites(self) -> np.ndarray:
        """The satellite positions ``[S, 3]`` used for ``sat_dist``."""
        return satellite_positions(self.n_satellites)

    def xyz(self) -> np.ndarray:
        """Real atoms in the canonical frame, in Angstrom, shape ``(n_atoms, 3)``."""
        return to_angstrom(self.coords, self.scale, self.mask)

    def to_input_frame(self, coords=None) -> np.ndarray:
        """Map unit-sphere coordinates (default ``self.coords``) back to the input frame.

        Returns Angstrom coordinates in canonical order; ``xyz[order]`` for the exact
        coordinates.
        """
        c = self.coords[self.mask] if coords is None else np.asarray(coords, float)
        return c * self.scale @ self.rotation + self.origin


def encode(
    xyz,
    n_max: int = 200,
    n_satellites: int = 11,
    *,
    tie_tol: float = TIE_TOLERANCE,
    allow_reflection: bool = False,
) -> Representation:
    """Encode Cartesian coordinates as unit-sphere targets.

    Parameters
    ----------
    xyz : array_like, shape (N, 3)
        Cartesian coordinates in Angstrom, ``2 <= N <= n_max``.
    n_max : int
        Padded number of atoms.
    n_satellites : int
        Number of satellites ``S >= 4``.
    tie_tol, allow_reflection
        See :func:`canonical_frame`.

    Returns
    -------
    Representation

    Raises
    ------
    StructureError
        Bad coordinates: wrong shape, fewer than 2 or more than ``n_max`` atoms,
        NaN/inf, coincident atoms.
    ParameterError
        Bad ``n_max``, ``n_satellites`` or ``tie_tol``.
    """
    n_max = _check_int("n_max", n_max, 2)
    sats = satellite_positions(n_satellites)
    x = _validate_xyz(xyz, n_max)
    n = x.shape[0]
    order, origin, rot, scale = canonical_frame(
        x, tie_tol=tie_tol, allow_reflection=allow_reflection
    )
    c = (x[order] - origin) @ rot.T / scale
    c[0] = 0.0  # exactly, not up to rounding
    coords = np.zeros((n_max, 3))
    coords[:n] = c
    sat = np.zeros((n_max, sats.shape[0]))
    sat[:n] = satellite_distances(c, sats)
    adm = np.zeros((n_max, n_max))
    adm[:n, :n] = pairwise_distances(c)
    mask = np.zeros(n_max, dtype=bool)
    mask[:n] = True
    return Representation(
        coords=coords,
        sat_dist=sat,
        adm=adm,
        mask=mask,
        scale=float(scale),
        order=order.astype(np.int64),
        n_atoms=n,
        origin=origin,
        rotation=rot,
    )


def to_angstrom(coords, scale: float, mask=None) -> np.ndarray:
    """Unit-sphere coordinates to Angstrom.

    Parameters
    ----------
    coords : array_like, shape (n, 3)
        Unit-sphere coordinates (e.g. :class:`TrilaterationResult` ``.xyz`` or
        ``Representation.coords``).
    scale : float
        Angstrom per unit, > 0.
    mask : array_like of bool, shape (n,), optional
        Keep only these rows (drops padding).

    Returns
    -------
    ndarray, shape (m, 3)
        ``coords[mask] * scale``.
    """
    c = np.asarray(coords, dtype=float)
    if c.ndim != 2 or c.shape[1] != 3:
        raise StructureError(f"coords must have shape (n, 3), got {c.shape}")
    scale = float(scale)
    if not (np.isfinite(scale) and scale > 0):
        raise ParameterError(f"scale must be a positive number, got {scale!r}")
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != (c.shape[0],):
            raise ParameterError(f"mask must have shape ({c.shape[0]},), got {m.shape}")
        c = c[m]
    return c * scale
