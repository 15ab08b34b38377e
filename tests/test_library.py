"""The shape library: distinct catalog shapes, safe storage, screening against data."""

from __future__ import annotations

import numpy as np
import pytest
from test_training import make_catalog

from diffpy_deepstruc.debye import PDFParameters, pdf_from_arrays
from diffpy_deepstruc.errors import CheckpointError
from diffpy_deepstruc.library import (
    build_shape_library,
    load_shape_library,
    pretrained_library,
    save_shape_library,
)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    d = tmp_path_factory.mktemp("lib")
    return build_shape_library(make_catalog(d / "tiny.h5"))


def test_one_entry_per_shape_with_unit_bonds(library):
    keys = {(t, b) for t, b in zip(library.types, library.builders, strict=True)}
    assert len(keys) == len(library)
    for i in range(len(library)):
        xyz = library.shape(i)
        d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        # the catalog's clusters have their shortest bond at the metal's NN distance
        assert d.min() == pytest.approx(1.0, abs=0.02)


def test_round_trip_and_tamper_detection(library, tmp_path):
    p = save_shape_library(library, tmp_path / "shapes.safetensors")
    back = load_shape_library(p)
    assert back.types == library.types and np.array_equal(back.n_atoms, library.n_atoms)
    assert np.allclose(back.coords, library.coords)
    raw = bytearray(p.read_bytes())
    raw[-5] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="digest mismatch"):
        load_shape_library(p)


def test_screen_finds_the_shape_that_made_the_data(library):
    """A PDF simulated from a library shape (3 % larger, other settings) ranks it first."""
    from diffpy_deepstruc.generator import unit_nn_distance

    params = PDFParameters(
        rmin=1.5, rmax=25.0, rstep=0.05, qmin=0.9, qmax=22.0, qdamp=0.03, delta2=1.0
    )
    nn = 2.85 * 1.03
    for i in range(len(library)):
        r, g = pdf_from_arrays(
            library.shape(i, nn),
            ["Pt"] * int(library.n_atoms[i]),
            0.007,
            params,
            backend="torch",
        )
        peak = nn * unit_nn_distance(library.shape(i))  # centre of the first shell
        best = library.screen(range(len(library)), r, g, params, peak=peak, k=1)
        assert best[0][0] == i, (library.label(i), library.label(best[0][0]))
        assert best[0][2] == pytest.approx(nn, rel=1e-9)


def test_shipped_library_loads():
    lib = pretrained_library()
    if lib is None:
        pytest.skip("no shape library shipped in diffpy_deepstruc/pretrained")
    assert len(lib) > 100 and set(lib.types) >= {"fcc", "icosahedron", "decahedron"}


def test_shipped_model_finds_its_library():
    from diffpy_deepstruc.generator import DeepStruc
    from diffpy_deepstruc.ranking import model_library

    if pretrained_library() is None:
        pytest.skip("no shape library shipped in diffpy_deepstruc/pretrained")
    for kind in ("cvae", "dae"):
        assert model_library(DeepStruc.pretrained(kind)) is not None
