"""The shape library: the distinct cluster shapes of the training catalog.

Every monometallic cluster of the catalog is one of a few hundred *shapes* (type and
builder arguments; the metal only sets the size).  The library holds each shape once,
with coordinates in units of the nearest-neighbour distance of its metal.

It serves the solver (:mod:`diffpy_deepstruc.ranking`): the network's samples are only
approximate (distances off by a few %, see ``docs/model.md``), so the library shapes
whose size lies within 15 % of a sampled candidate's are screened against the data
(Pearson correlation of their Debye PDFs, a few ms each) and the best few are refined
alongside the samples, as extra candidates whose origin is recorded ("cluster mining"
narrowed by the generative model).  Ranking by Rw decides.  With the
default split every shape of the library is a training shape of the model (under other
metals), so the library adds no structure the model has not seen.

Storage: safetensors (coordinates, atom counts) + JSON (types, builder arguments); no
pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import CatalogError, CheckpointError

__all__ = [
    "ShapeLibrary",
    "build_shape_library",
    "load_shape_library",
    "pretrained_library",
    "save_shape_library",
]


@dataclass(frozen=True)
class ShapeLibrary:
    """Distinct cluster shapes.

    Attributes
    ----------
    coords : ndarray, shape (M, n_max, 3)
        Coordinates in units of each shape's nearest-neighbour distance, zero-padded.
    n_atoms : ndarray, shape (M,)
        Atom counts.
    types : list of str
        Structure type of each shape.
    builders : list of str
        Builder arguments (JSON) of each shape.
    source : str
        What the library was built from (catalog digest).
    """

    coords: np.ndarray
    n_atoms: np.ndarray
    types: list[str]
    builders: list[str]
    source: str = ""

    def __len__(self) -> int:
        return len(self.n_atoms)

    def shape(self, i: int, nn: float = 1.0) -> np.ndarray:
        """Coordinates ``[n, 3]`` of shape ``i`` with nearest-neighbour distance ``nn``."""
        return self.coords[i, : self.n_atoms[i]].astype(float) * float(nn)

    def label(self, i: int) -> str:
        """``"<type> <n atoms> <builder arguments>"``."""
        return f"{self.types[i]} {int(self.n_atoms[i])} {self.builders[i]}"

    def within_sizes(self, sizes, tolerance: float = 0.15) -> np.ndarray:
        """Indices of shapes whose atom count is within ``tolerance`` of any of ``sizes``."""
        sizes = np.asarray(sorted(set(int(n) for n in sizes)), dtype=float)
        if sizes.size == 0:
            return np.zeros(0, dtype=int)
        diff = np.abs(self.n_atoms[:, None] - sizes[None, :])
        return np.flatnonzero((diff <= np.maximum(1.0, tolerance * sizes[None, :])).any(1))

    def screen(
        self,
        indices,
        r: np.ndarray,
        g: np.ndarray,
        params,
        peak: float,
        k: int = 5,
        uiso: float = 0.005,
    ) -> list[tuple[int, float, float]]:
        """Rank shapes by how well their PDF correlates with measured data.

        Parameters
        ----------
        indices : sequence of int
            Shapes to try (e.g. from :meth:`within_sizes`).
        r, g : ndarray
            The data on the fit range.
        params : debye.PDFParameters
            Instrument settings of the data (Qmin, Qmax, Qdamp, Qbroad, delta2).
        peak : float
            Position of the data's first peak (A): each shape is scaled so that the
            centre of its own first-neighbour shell falls there (for an icosahedron,
            whose shell spans 1.00-1.05 NN distances, that is not its shortest bond).
        k : int
            Number of shapes returned.
        uiso : float
            Displacement parameter of the screening PDFs (A^2).

        Returns
        -------
        list of (index, pearson, nn)
            The ``k`` best shapes, best first, with the nearest-neighbour distance (A)
            they were scaled to.
        """
        from .debye import pdf_batch
        from .generator import unit_nn_distance

        indices = [int(i) for i in indices]
        if not indices:
            return []
        nn = {i: peak / unit_nn_distance(self.shape(i)) for i in indices}
        clusters = [
            (self.shape(i, nn[i]), ["Au"] * int(self.n_atoms[i]), uiso) for i in indices
        ]
        rc, gc = pdf_batch(clusters, params)
        gi = np.array([np.interp(r, rc, row) for row in gc])
        gi -= gi.mean(axis=1, keepdims=True)
        go = g - g.mean()
        denom = np.linalg.norm(gi, axis=1) * np.linalg.norm(go)
        pearson = gi @ go / np.where(denom > 0, denom, 1.0)
        order = np.argsort(-pearson, kind="stable")[:k]
        return [(indices[j], float(pearson[j]), nn[indices[j]]) for j in order]


def build_shape_library(catalog_path: str | os.PathLike) -> ShapeLibrary:
    """Collect the distinct shapes of a catalog (type + builder arguments).

    Parameters
    ----------
    catalog_path : path
        An HDF5 catalog (:mod:`diffpy_deepstruc.catalog`).

    Returns
    -------
    ShapeLibrary
    """
    import h5py

    p = Path(catalog_path)
    try:
        with h5py.File(p, "r") as h5:
            types = [
                t.decode() if isinstance(t, bytes) else str(t)
                for t in h5["structures/type"][()]
            ]
            builders = [
                b.decode() if isinstance(b, bytes) else str(b)
                for b in h5["structures/builder"][()]
            ]
            natoms = h5["structures/natoms"][()]
            nn = h5["structures/nn"][()]
            seen: dict[str, int] = {}
            for i, key in enumerate(zip(types, builders, strict=True)):
                seen.setdefault(f"{key[0]} {key[1]}", i)
            rows = sorted(seen.values())
            xyz = h5["structures/xyz"][rows]
    except (OSError, KeyError) as exc:
        raise CatalogError(f"{p}: not a readable catalog ({exc})") from exc
    digest = hashlib.sha256(p.read_bytes()[: 1 << 20]).hexdigest()[:16]
    coords = np.zeros_like(xyz, dtype=np.float32)
    for j, i in enumerate(rows):
        n = int(natoms[i])
        coords[j, :n] = (xyz[j, :n] - xyz[j, :n].mean(axis=0)) / float(nn[i])
    return ShapeLibrary(
        coords=coords,
        n_atoms=natoms[rows].astype(np.int32),
        types=[types[i] for i in rows],
        builders=[builders[i] for i in rows],
        source=f"{p.name} (first MiB sha256 {digest})",
    )


def save_shape_library(
    lib: ShapeLibrary, path: str | os.PathLike, overwrite: bool = False
) -> Path:
    """Write ``path`` (safetensors) and ``path`` with suffix ``.json`` (metadata)."""
    from safetensors.numpy import save

    from .fileio import atomic_write_bytes, atomic_write_text

    p = Path(path)
    data = save(
        {"coords": lib.coords.astype(np.float32), "n_atoms": lib.n_atoms.astype(np.int32)}
    )
    meta = {
        "format": "diffpy-deepstruc-shapes",
        "version": 1,
        "source": lib.source,
        "types": lib.types,
        "builders": lib.builders,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    atomic_write_bytes(p, data, overwrite=overwrite)
    atomic_write_text(p.with_suffix(".json"), json.dumps(meta), overwrite=overwrite)
    return p


def load_shape_library(path: str | os.PathLike) -> ShapeLibrary:
    """Read a library written by :func:`save_shape_library`, checking its digest."""
    from safetensors.numpy import load

    p = Path(path)
    try:
        data = p.read_bytes()
        meta = json.loads(p.with_suffix(".json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{p}: cannot read the shape library ({exc})") from exc
    if meta.get("format") != "diffpy-deepstruc-shapes":
        raise CheckpointError(f"{p}: not a diffpy-deepstruc shape library")
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"{p}: digest mismatch: the file is damaged or was altered")
    try:
        arrays = load(data)
        lib = ShapeLibrary(
            coords=arrays["coords"],
            n_atoms=arrays["n_atoms"],
            types=list(meta["types"]),
            builders=list(meta["builders"]),
            source=str(meta.get("source", "")),
        )
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{p}: malformed shape library ({exc})") from exc
    if not (len(lib.types) == len(lib.builders) == len(lib.n_atoms) == len(lib.coords)):
        raise CheckpointError(f"{p}: shape library arrays disagree in length")
    return lib


def pretrained_library() -> ShapeLibrary | None:
    """The library shipped beside the pretrained model, or None."""
    res = resources.files("diffpy_deepstruc") / "pretrained" / "shapes.safetensors"
    with resources.as_file(res) as p:
        return load_shape_library(p) if Path(p).is_file() else None
