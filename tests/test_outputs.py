"""What a user gets: strict-JSON outputs, no folder left by a failed solve, one Rw."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_solve_cli import _solve, tiny_model_dir, write_au_pdf

REPO = Path(__file__).resolve().parents[1]


def _strict(text: str):
    """json.loads that refuses NaN and Infinity (as every strict parser does)."""

    def bad(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=bad)


@pytest.fixture(scope="module")
def model() -> Path:
    return tiny_model_dir()


def test_every_json_output_is_strict_json(tmp_path, model):
    au = write_au_pdf(tmp_path / "au.gr")
    out = tmp_path / "res"
    rc, _, err = _solve(au, out, model)
    assert rc == 0, err
    files = sorted(out.rglob("*.json"))
    assert files, "no JSON written"
    for f in files:
        _strict(f.read_text())  # raises on NaN / Infinity
    summary = _strict((out / "summary.json").read_text())
    assert summary["consistent_with_data"]["test"] == "Hamilton R-ratio"
    # library rows have no latent point: empty, not nan
    for row in summary["ranking"]:
        assert row["z1"] == "" or math.isfinite(float(row["z1"]))


def test_ranking_marks_the_consistent_set_and_names_duplicates(tmp_path, model):
    au = write_au_pdf(tmp_path / "au.gr")
    out = tmp_path / "res"
    assert _solve(au, out, model)[0] == 0
    with open(out / "ranking.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["consistent"] == "yes"
    assert {r["consistent"] for r in rows} <= {"yes", "no"}
    for r in rows:  # a duplicates cell names samples, never a bare count
        assert not r["duplicates"].strip().isdigit()
    # the completion's count range: on every completed candidate, around its own count
    spans = [r for r in rows if r["atoms_range"]]
    assert spans and all(r["atoms_range"] for r in rows if r["completed_from"])
    for r in spans:  # "55", "52..57", "<=49..>=61"
        lo, _, hi = r["atoms_range"].replace("<=", "").replace(">=", "").partition("..")
        assert int(lo) <= int(r["n_atoms"]) <= int(hi or lo)
    html = (out / "report.html").read_text()
    assert "the data allow" in html or "the data resolve the atom count" in html
    assert "consistent with the data" in html and "fit_01.png" in html


def test_failed_solve_leaves_no_folder(tmp_path, model):
    au = write_au_pdf(tmp_path / "au.gr", metadata={"qmax": 25.0})  # no composition
    out = tmp_path / "never"
    rc, _, err = _solve(au, out, model)
    assert rc == 2 and "no element given" in err
    assert not out.exists()


def test_failed_solve_keeps_a_folder_the_user_had(tmp_path, model):
    au = write_au_pdf(tmp_path / "au.gr", metadata={"qmax": 25.0})
    out = tmp_path / "mine"
    out.mkdir()
    assert _solve(au, out, model)[0] == 2
    assert out.is_dir()


def _readme_python(k: int = 0) -> str:
    """The README's ``k``-th Python block."""
    text = (REPO / "README.md").read_text()
    start = -1
    for _ in range(k + 1):
        start = text.index("```python\n", start + 1)
    start += len("```python\n")
    return text[start : text.index("```", start)]


def test_readme_python_block_runs_and_rw_is_the_users(monkeypatch, capsys):
    """The README's Python example runs as written; solve's Rw = make_recipe's."""
    monkeypatch.chdir(REPO)
    scope: dict = {}
    exec(compile(_readme_python(), "README.md", "exec"), scope)
    out = capsys.readouterr().out
    assert "best:" in out
    best, res = scope["best"], scope["res"]
    assert res.rw == pytest.approx(best.rw, rel=0.01)
    assert np.isfinite(best.rw)


def test_readme_guided_sampling_block_runs(monkeypatch, capsys):
    """The README's guided-sampling example runs as written (after the first block's
    ``pdf``) and its best-fitting sample is the bundled example's 55-atom icosahedron."""
    from diffpy_deepstruc.pdfdata import load_pdf

    monkeypatch.chdir(REPO)
    scope: dict = {"pdf": load_pdf("examples/data/Au55_icosahedron.gr")}
    exec(compile(_readme_python(1), "README.md", "exec"), scope)
    guided = scope["guided"]
    assert len(guided) == 20 and guided[0].n_atoms == 55
    assert guided[0].code["type"] == "icosahedron"
    assert [c.misfit for c in guided] == sorted(c.misfit for c in guided)
    assert "55 icosahedron" in capsys.readouterr().out
