"""The code search of solve (diffpy_deepstruc.solve.codesearch) and its neighbour codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffpy_deepstruc import debye
from diffpy_deepstruc.pdfdata import PDFData
from diffpy_deepstruc.shapegen.codes import build, decode, family_slots, neighbour_codes
from diffpy_deepstruc.solve.candidates import Proposal
from diffpy_deepstruc.solve.codesearch import SEARCHED_INDEX, search_codes
from diffpy_deepstruc.solve.screen import screen_candidates
from diffpy_deepstruc.solve.settings import FitSettings
from diffpy_deepstruc.structures import arrays_to_structure

PARAMS = debye.PDFParameters(
    rmin=0.0, rmax=25.0, rstep=0.01, qmin=0.7, qmax=25.0, qdamp=0.04, delta2=2.0
)
SETTINGS = FitSettings(qmin=0.7, qmax=25.0, qdamp=0.04, qbroad=0.0, rmin=1.5, rmax=25.0)


@pytest.mark.parametrize(
    ("family", "theta", "count"),
    [
        ("fcc", [2, 3, 2], 6),  # three layer counts, +-1 each
        ("fcc", [1, 1, 1], 3),  # none below one layer
        ("icosahedron", [1], 1),
        ("sphere/bcc", [1.5, 0.0, 0.0, 0.0], 8),  # radius and three offsets, +-
        ("vacancies/decahedron", [2, 1, 1, 4], 7),  # q >= 1
    ],
)
def test_neighbour_codes_are_one_step_away(family, theta, count):
    start = decode(family, theta)
    out = neighbour_codes(family, theta)
    assert len(out) == count
    keys = {json.dumps(decode(family, t), sort_keys=True) for t in out}
    assert len(keys) == count and json.dumps(start, sort_keys=True) not in keys
    slots = family_slots(family)
    for t in out:
        changed = np.flatnonzero(~np.isclose(t, np.asarray(theta, float)))
        assert len(changed) == 1  # one number changed ...
        j = changed[0]
        step = abs(t[j] - theta[j])
        assert step == 1.0 if slots[j].kind == "int" else 0 < step <= 0.25
        assert slots[j].low <= t[j] <= slots[j].high  # ... within its range


def _proposal(index: int, family: str, theta: list[float]) -> Proposal:
    xyz = build(family, theta, "Au").positions
    s = arrays_to_structure(xyz - xyz.mean(0), "Au", 0.005)
    return Proposal(index, s, "shape-code model: test", [0.0, 0.0],
                    code={"family": family, "theta": theta})  # fmt: skip


def test_search_walks_a_code_to_the_particle_in_the_data():
    """An fcc cut with a layer too few is walked to the truth's code; a sample that
    already is the truth does not move; a neighbour with the atoms of another
    candidate is not proposed again."""
    truth = build("fcc", [3, 4, 3], "Au").positions
    r, g = debye.pdf_from_arrays(truth, "Au", 0.005, PARAMS, backend="torch")
    pdf = PDFData(r=r, g=g)
    props = [_proposal(0, "fcc", [3, 3, 3]), _proposal(1, "icosahedron", [3])]
    screen = screen_candidates([p.xyz for p in props], r, g, SETTINGS)
    found, found_screen, walks = search_codes(props, screen, pdf, SETTINGS, "Au", k=1)
    assert len(walks) == 1 and walks[0].start.index == 0  # the best-screened one
    assert len(found) == 1 and found[0].index == SEARCHED_INDEX
    assert decode("fcc", found[0].code["theta"])[1] == {"layers": [3, 4, 3]}
    assert len(found[0].structure) == len(truth)
    assert found[0].source.startswith("code search (from sample 0): fcc 87")
    assert found_screen.rw[0] < 1e-2 < screen.rw[0]
    rws = [s["screen_rw"] for s in walks[0].steps]
    assert rws == sorted(rws, reverse=True)  # every step lowered the Rw
    props = [_proposal(0, "fcc", [3, 4, 3]), _proposal(1, "fcc", [3, 3, 3])]
    screen = screen_candidates([p.xyz for p in props], r, g, SETTINGS)
    found, _, walks = search_codes(props, screen, pdf, SETTINGS, "Au", k=2)
    assert walks[0].start.index == 0 and walks[0].structure is None  # at the truth
    assert all(len(f.structure) != len(truth) for f in found)  # not found twice


def test_search_without_codes_or_k_does_nothing():
    truth = build("icosahedron", [3], "Au").positions
    r, g = debye.pdf_from_arrays(truth, "Au", 0.005, PARAMS, backend="torch")
    props = [_proposal(0, "icosahedron", [2])]
    props.append(Proposal(1, props[0].structure, "library: test", [0.0, 0.0]))
    screen = screen_candidates([p.xyz for p in props], r, g, SETTINGS)
    found, found_screen, walks = search_codes(props, screen, PDFData(r=r, g=g), SETTINGS,
                                              "Au", k=0)  # fmt: skip
    assert found == [] and walks == [] and len(found_screen.rw) == 0
    found, _, walks = search_codes(props[1:], screen.take([1]), PDFData(r=r, g=g),
                                   SETTINGS, "Au")  # fmt: skip
    assert found == [] and walks == []


def test_a_relaxed_sample_walks_among_ideal_codes():
    """A relaxed 147-atom icosahedron sample is walked to the ideal 55-atom one in the
    data (its neighbours are not relaxed again)."""
    from diffpy_deepstruc.shapegen.generator import walk_family

    assert walk_family("relaxed/icosahedron") == "icosahedron"
    assert walk_family("vacancies/fcc") == "vacancies/fcc"
    truth = build("icosahedron", [3], "Au").positions
    r, g = debye.pdf_from_arrays(truth, "Au", 0.005, PARAMS, backend="torch")
    props = [_proposal(0, "relaxed/icosahedron", [4])]
    screen = screen_candidates([p.xyz for p in props], r, g, SETTINGS)
    found, found_screen, walks = search_codes(
        props, screen, PDFData(r=r, g=g), SETTINGS, "Au"
    )
    assert walks[0].family == "icosahedron"
    assert len(found) == 1 and len(found[0].structure) == 55
    assert found[0].source.startswith("code search (from sample 0): icosahedron 55")
    assert found_screen.rw[0] < 1e-2
