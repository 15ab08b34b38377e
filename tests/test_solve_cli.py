"""``deepstruc solve`` end to end with a tiny model: outputs, refusal to overwrite,
atomic files, an interrupted run that keeps its finished candidates and resumes.

Also holds the helpers the other robustness tests import (:func:`tiny_model_dir`,
:func:`write_au_pdf`, :func:`cli`): a model trained in ~2 s on a synthetic catalog, and
simulated Au PDFs.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from diffpy_deepstruc.cli import main
from diffpy_deepstruc.solve import group_near_duplicates
from diffpy_deepstruc.solve import refine as solve_refine

_REAL_REFINE = solve_refine.refine_candidate

EXAMPLE_XYZ = (
    Path(__file__).resolve().parents[1] / "examples" / "data" / "Au55_icosahedron.xyz"
)


@functools.cache
def tiny_model_dir() -> Path:
    """A CVAE trained for 3 epochs on a tiny synthetic catalog (Ag, Au, Cu, Pt)."""
    from test_training import train_tiny_model

    return train_tiny_model(Path(tempfile.mkdtemp(prefix="deepstruc-tiny-")))[0]


@functools.cache
def _au_pdf(rmax: float, qdamp: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    from diffpy_deepstruc.debye import PDFParameters, pdf_from_structure
    from diffpy_deepstruc.structures import read_structure

    s = read_structure(EXAMPLE_XYZ)
    for a in s:
        a.Uisoequiv = 0.005
    p = PDFParameters(rmax=rmax, rstep=0.05, qdamp=qdamp, scale=scale)
    return pdf_from_structure(s, p)


def write_au_pdf(
    path: Path,
    *,
    rmax: float = 20.0,
    qdamp: float = 0.04,
    scale: float = 1.0,
    metadata: dict | None = None,
) -> Path:
    """Write the simulated Au55 PDF (header: composition Au55, Qmin/Qmax/Qdamp)."""
    from diffpy_deepstruc.pdfdata import write_pdf

    r, g = _au_pdf(rmax, qdamp, scale)
    meta = {"composition": "Au55", "qmin": 0.7, "qmax": 25.0, "qdamp": qdamp}
    if metadata is not None:
        meta = metadata
    return write_pdf(path, r, g, meta, overwrite=True)


def cli(*argv: object) -> tuple[int, str, str]:
    """Run ``deepstruc ARGV`` in-process: (exit status, stdout, stderr).

    argparse's usage errors (SystemExit) give their exit code.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 2
    return rc, out.getvalue(), err.getvalue()


def _ranking(outdir: Path) -> list[dict[str, str]]:
    with open(outdir / "ranking.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def model() -> Path:
    return tiny_model_dir()


@pytest.fixture
def au(tmp_path) -> Path:
    return write_au_pdf(tmp_path / "au.gr")


def _solve(au: Path, out: Path, model: Path, *extra: object) -> tuple[int, str, str]:
    return cli(
        "solve",
        au,
        "-o",
        out,
        "--model",
        model,
        "-n",
        4,
        "--workers",
        1,
        "--no-progress",
        *extra,
    )


def test_solve_writes_results(au, tmp_path, model):
    out = tmp_path / "res"
    rc, stdout, err = _solve(au, out, model)
    assert rc == 0, err
    assert "Au, fit 1.5-19.95 A (data points), Qmin 0.7, Qmax 25, Qdamp 0.04" in stdout
    names = {p.name for p in out.iterdir()}
    assert {
        "ranking.csv",
        "summary.json",
        "latent.png",
        "candidate_01.xyz",
        "candidate_01.stru",
        "fit_01.png",
    } <= names
    assert not any(n.endswith(".tmp") or n.startswith(".") for n in names)  # atomic writes
    assert "partial" not in names
    rows = _ranking(out)
    rws = [float(r["rw"]) for r in rows]
    assert rws == sorted(rws) and all(0 <= x < 10 for x in rws)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_sampled"] == 4 and summary["element"] == "Au"
    assert set(summary["timings_s"]) >= {"sampling", "refinement", "total"}


def test_existing_result_refused_then_forced(au, tmp_path, model):
    out = tmp_path / "res"
    assert _solve(au, out, model)[0] == 0
    before = (out / "ranking.csv").read_bytes()
    rc, _, err = _solve(au, out, model)
    assert rc == 2
    assert f"deepstruc: error: {out} already holds results (" in err
    assert "pass --force to replace them or choose another -o" in err
    assert (out / "ranking.csv").read_bytes() == before  # untouched
    rc, _, err = _solve(au, out, model, "--resume")
    assert rc == 2 and "holds a finished result (summary.json); nothing to resume" in err
    rc, _, err = _solve(au, out, model, "--force", "--resume")
    assert rc == 2 and "--force and --resume exclude each other" in err
    (out / "stale.txt").write_text("old")
    rc, _, err = _solve(au, out, model, "--force")
    assert rc == 0, err
    assert not (out / "stale.txt").exists()
    assert (out / "ranking.csv").read_bytes() == before  # same inputs, same result


class _Interrupt:
    """A ``refine_candidate`` that refines ``k`` candidates, then 'Ctrl-C'."""

    def __init__(self, k: int | None) -> None:
        self.k, self.calls = k, 0

    def __call__(self, *a, **kw):
        if self.k is not None and self.calls >= self.k:
            raise KeyboardInterrupt
        self.calls += 1
        return _REAL_REFINE(*a, **kw)


def test_interrupted_solve_keeps_candidates_and_resumes(au, tmp_path, model, monkeypatch):
    ref = tmp_path / "ref"
    assert _solve(au, ref, model, "--no-complete")[0] == 0

    out = tmp_path / "res"
    stop = _Interrupt(k=2)
    monkeypatch.setattr(solve_refine, "refine_candidate", stop)
    rc, _, err = _solve(au, out, model, "--no-complete")
    assert rc == 130
    assert "2 finished candidate(s) kept in" in err and "--resume" in err
    kept = sorted(p.name for p in (out / "partial").iterdir())
    assert len(kept) == 2 and all(k.startswith("candidate_") for k in kept)
    assert not (out / "ranking.csv").exists()

    # without --resume the interrupted run is not thrown away
    rc, _, err = _solve(au, out, model, "--no-complete")
    assert rc == 2 and "holds an interrupted run (partial/); pass --resume" in err
    assert len(list((out / "partial").iterdir())) == 2

    resumed = _Interrupt(k=None)
    monkeypatch.setattr(solve_refine, "refine_candidate", resumed)
    rc, _, err = _solve(au, out, model, "--no-complete", "--resume")
    assert rc == 0, err
    assert resumed.calls == 2  # only the two unfinished candidates were refined
    assert not (out / "partial").exists()
    assert _ranking(out) == _ranking(ref)  # same ranking as an uninterrupted run


def test_resume_redoes_a_damaged_partial_file(au, tmp_path, model, monkeypatch):
    out = tmp_path / "res"
    monkeypatch.setattr(solve_refine, "refine_candidate", _Interrupt(k=3))
    assert _solve(au, out, model, "--no-complete")[0] == 130
    f = sorted((out / "partial").iterdir())[1]
    f.write_bytes(f.read_bytes()[:50])  # truncated
    counter = _Interrupt(k=None)
    monkeypatch.setattr(solve_refine, "refine_candidate", counter)
    assert _solve(au, out, model, "--no-complete", "--resume")[0] == 0
    assert counter.calls == 2  # the damaged one and the never-started one


def test_resume_ignores_candidates_of_other_inputs(au, tmp_path, model, monkeypatch):
    out = tmp_path / "res"
    monkeypatch.setattr(solve_refine, "refine_candidate", _Interrupt(k=2))
    assert _solve(au, out, model, "--no-complete")[0] == 130
    counter = _Interrupt(k=None)
    monkeypatch.setattr(solve_refine, "refine_candidate", counter)
    assert _solve(au, out, model, "--no-complete", "--resume", "--seed", 7)[0] == 0
    # another seed: nothing reused, every distinct sample refined afresh
    from diffpy_deepstruc.generator import DeepStruc
    from diffpy_deepstruc.pdfdata import load_pdf

    cands = DeepStruc.load(model).generate(load_pdf(au), n=4, element="Au", seed=7)
    distinct = group_near_duplicates([c.structure for c in cands])
    assert counter.calls == len(distinct) >= 2


def test_failed_write_leaves_no_partial_file(tmp_path):
    from diffpy_deepstruc.fileio import atomic_write

    dest = tmp_path / "x.txt"
    with pytest.raises(RuntimeError), atomic_write(dest) as fh:
        fh.write("half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
