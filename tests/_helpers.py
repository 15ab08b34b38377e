"""Structures shared by tests and benchmarks, built independently of the package.

``cluster_xyz`` gives one ASE-built cluster of each structure type (125-200 atoms) plus a
stacking-faulted particle made here from first principles (not with
``diffpy_deepstruc.clusters``), so tests of the representation and trilateration do not
lean on the code of the catalog; ``read_xyz`` reads the reference ``.xyz`` files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.cluster import (
    BodyCenteredCubic,
    Decahedron,
    FaceCenteredCubic,
    HexagonalClosedPacked,
    Icosahedron,
    Octahedron,
    SimpleCubic,
)

_CUBIC = [(1, 0, 0), (1, 1, 0), (1, 1, 1)]
_HEX = [(2, -1, -1, 0), (0, 1, -1, 0), (0, 0, 0, 1)]


def read_xyz(path: Path) -> tuple[np.ndarray, list[str]]:
    """Coordinates ``[n, 3]`` and element symbols of a plain XYZ file."""
    lines = Path(path).read_text().splitlines()
    n = int(lines[0].split()[0])
    rows = [line.split() for line in lines[2 : 2 + n]]
    return np.array([[float(v) for v in f[1:4]] for f in rows]), [f[0] for f in rows]


def stacked_particle(sequence: str = "ABCABAB", nn: float = 2.77, n_atoms: int = 200):
    """Close-packed layers stacked in ``sequence`` (a stacking fault), cut by a sphere.

    The ``n_atoms`` sites nearest to the centre of the stack are kept.
    """
    shift = {"A": 0.0, "B": 1.0, "C": 2.0}
    h = nn * np.sqrt(2.0 / 3.0)
    i, j = np.meshgrid(np.arange(-8, 9), np.arange(-8, 9), indexing="ij")
    base = np.column_stack([(i + 0.5 * j).ravel(), (np.sqrt(3) / 2 * j).ravel()]) * nn
    layers = []
    for k, letter in enumerate(sequence):
        off = shift[letter] * np.array([nn / 2, nn / (2 * np.sqrt(3))])
        z = (k - (len(sequence) - 1) / 2) * h
        layers.append(np.column_stack([base + off, np.full(len(base), z)]))
    xyz = np.vstack(layers)
    xyz -= xyz.mean(axis=0)
    keep = np.argsort(np.linalg.norm(xyz, axis=1), kind="stable")[:n_atoms]
    return xyz[np.sort(keep)]


def cluster_xyz() -> dict[str, np.ndarray]:
    """The seven ASE shapes (125 to 192 atoms) plus a 200-atom stacking-faulted particle."""
    return {
        "fcc": FaceCenteredCubic("Cu", _CUBIC, [4, 5, 4], latticeconstant=3.61).positions,
        "bcc": BodyCenteredCubic(
            "Fe", [(1, 0, 0), (1, 1, 0)], [4, 4], latticeconstant=2.87
        ).positions,
        "sc": SimpleCubic("Po", [(1, 0, 0)], [2], latticeconstant=3.35).positions,
        "hcp": HexagonalClosedPacked(
            "Co", _HEX, [5, 5, 3], latticeconstant=(2.507, 4.07)
        ).positions,
        "icosahedron": Icosahedron("Cu", 4, latticeconstant=3.61).positions,
        "decahedron": Decahedron("Au", 3, 3, 1, latticeconstant=4.08).positions,
        "octahedron": Octahedron("Pt", 6, 0, latticeconstant=3.92).positions,
        "stacking": stacked_particle(),
    }


def catalog_contents(path) -> dict:
    """Every dataset and root attribute of a catalog file (and the params' columns), for
    comparing two builds."""
    import h5py

    out: dict = {}
    with h5py.File(path, "r") as h5:
        for k, v in h5.attrs.items():
            out[f"@{k}"] = v
        out["@columns"] = h5["pdfs/params"].attrs["columns"]

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj.asstr()[()] if obj.dtype.kind == "O" else obj[()]

        h5.visititems(visit)
    return out


def assert_same_contents(a: dict, b: dict) -> None:
    """Two :func:`catalog_contents` are equal: same keys, dtypes and values (NaN = NaN)."""
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype, k
            assert np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f"), k
        else:
            assert a[k] == b[k], k
