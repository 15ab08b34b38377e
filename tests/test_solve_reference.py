"""The plugin's promise on the srreal set-A reference PDFs (d-block, <= 200 atoms).

With the shipped model, the top-ranked refined candidate must have Rw <= 0.10, the true
atom count within 10 % and a coordinate MAE <= 0.1 A against the reference structure
(DeepStruc's metric: assignment, rotation, isotropic scale).  Skips with a message when
no model is shipped or the reference data are absent.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _helpers import read_xyz  # noqa: E402
from bench_reference_solve import solve_case  # noqa: E402

CASES = [
    "Au55_icosahedron.xyz",
    "Pt_decahedron.xyz",
    "Ag_octahedron.xyz",
    "Cu_fcc_cluster.xyz",
    "Fe_bcc_cluster.xyz",
    "Co_hcp_cluster.xyz",
]


@pytest.fixture(scope="module")
def shipped_model():
    from diffpy_deepstruc.generator import DeepStruc

    res = resources.files("diffpy_deepstruc") / "pretrained" / "config.json"
    if not res.is_file():
        pytest.skip("no pretrained model shipped in diffpy_deepstruc/pretrained")
    return DeepStruc.pretrained()


@pytest.mark.parametrize("structure", CASES)
def test_top_candidate_on_reference_pdf(structure, srreal_dir, srreal_index, shipped_model):
    case = next(
        c
        for c in srreal_index["cases"]
        if c["structure"] == structure and c["params"] == "A"
    )
    row = solve_case(case, srreal_dir, n=20, workers=2, model=shipped_model)
    assert "error" not in row, row.get("error")
    n_true = len(read_xyz(srreal_dir / structure)[0])
    assert row["rw"] <= 0.10, row
    assert abs(row["atoms"] - n_true) <= 0.1 * n_true, row
    assert row["mae"] <= 0.1, row
