"""Series solving (``deepstruc solve FILES|FOLDER -o OUT``): local loop, local process
pool and an existing Dask cluster give the same table; interrupted series resume; one
bad PDF or a crashing worker does not stop the others."""

from __future__ import annotations

import pytest
from test_solve_cli import cli, tiny_model_dir, write_au_pdf

from diffpy_deepstruc import batch
from diffpy_deepstruc import solve as solve_pkg
from diffpy_deepstruc.batch import SERIES_COLUMNS, find_pdf_files, read_series, solve_series
from diffpy_deepstruc.errors import OutputExistsError, ParameterError, PDFDataError
from diffpy_deepstruc.solve import refine as solve_refine

#: Columns that depend on timing or on where the series was written.
VOLATILE = ("seconds", "outdir")


@pytest.fixture(scope="module")
def model():
    return tiny_model_dir()


@pytest.fixture
def series(tmp_path):
    """A folder of three PDFs: two good (different Qdamp and scale), one empty."""
    d = tmp_path / "series"
    d.mkdir()
    write_au_pdf(d / "a.gr")
    write_au_pdf(d / "b.gr", qdamp=0.06, scale=0.7)
    (d / "c.gr").write_text("")
    (d / "notes.txt").write_text("not a PDF")  # ignored: not .gr
    return d


def _stable(rows):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def _solve(series, out, model, *extra):
    return cli(
        "solve", series, "-o", out, "--model", model, "-n", 2, "--no-progress", *extra
    )


def test_local_pool_and_dask_give_the_same_table(series, tmp_path, model):
    from dask.distributed import Client, LocalCluster

    rc, stdout, err = _solve(series, tmp_path / "loop", model, "--workers", 1)
    assert rc == 1, err  # one PDF of three failed
    assert "2/3 solved" in stdout
    loop = read_series(tmp_path / "loop")
    assert list(loop[0]) == list(SERIES_COLUMNS)
    assert [r["status"] for r in loop] == [
        "ok",
        "ok",
        f"error: {series / 'c.gr'}: file is empty",
    ]
    assert all(r["element"] == "Au" and int(r["n_atoms"]) > 0 for r in loop[:2])
    assert (tmp_path / "loop" / "series.png").is_file()
    assert not (
        tmp_path / "loop" / "c"
    ).exists()  # no folder for a file that failed to load

    rc, _, err = _solve(series, tmp_path / "pool", model, "--workers", 2)
    assert rc == 1, err
    assert _stable(read_series(tmp_path / "pool")) == _stable(loop)

    with (
        LocalCluster(
            n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None
        ) as lc,
        Client(lc),
    ):
        rc, _, err = _solve(
            series, tmp_path / "dask", model, "--scheduler", lc.scheduler_address
        )
    assert rc == 1, err
    assert _stable(read_series(tmp_path / "dask")) == _stable(loop)


def test_python_api_with_a_client(series, tmp_path, model):
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None
        ) as lc,
        Client(lc) as client,
    ):
        rows = solve_series(
            [series / "a.gr"], tmp_path / "o", scheduler=client, model=str(model), n=2
        )
    assert [r["status"] for r in rows] == ["ok"]


def test_interrupted_series_resumes(series, tmp_path, model, monkeypatch):
    out = tmp_path / "out"
    real = batch.solve_file
    calls = []

    def stop_after_one(path, sub, options):
        if calls:
            raise KeyboardInterrupt
        calls.append(path)
        return real(path, sub, options)

    monkeypatch.setattr(batch, "solve_file", stop_after_one)
    rc, _, err = _solve(series, out, model, "--workers", 1, "--no-complete")
    assert rc == 130 and "run the same command with --resume" in err
    rows = read_series(out)  # the table is kept up to date while the series runs
    assert [r["status"] for r in rows] == ["ok", "pending", "pending"]

    monkeypatch.setattr(batch, "solve_file", real)
    rc, _, err = _solve(series, out, model, "--workers", 1, "--no-complete")
    assert rc == 2 and "already holds a series result; --resume continues it" in err

    refined = []
    monkeypatch.setattr(
        solve_refine,
        "refine_candidate",
        lambda *a, _r=solve_refine.refine_candidate, **k: refined.append(1) or _r(*a, **k),
    )
    rc, _, err = _solve(series, out, model, "--workers", 1, "--no-complete", "--resume")
    assert rc == 1, err
    rows = read_series(out)
    assert [r["status"] for r in rows][:2] == ["ok (earlier run)", "ok"]
    assert rows[2]["status"].startswith("error: ")
    assert len(refined) == 2  # only b.gr was solved again

    # other options on --resume: the finished PDF is not silently reused
    rc, _, _ = _solve(
        series, out, model, "--workers", 1, "--no-complete", "--resume", "--seed", 3
    )
    assert (
        "holds a result made with other options (seed 0 != 3)"
        in read_series(out)[0]["status"]
    )


def test_a_crashing_pdf_does_not_stop_the_series(series, tmp_path, model, monkeypatch):
    real = solve_pkg.solve

    def flaky(pdf, **kw):
        if str(pdf.source).endswith("a.gr"):
            raise RuntimeError("boom")
        return real(pdf, **kw)

    monkeypatch.setattr(solve_pkg, "solve", flaky)
    rows = solve_series(
        [series / "a.gr", series / "b.gr"], tmp_path / "o", model=str(model), n=2
    )
    assert [r["status"] for r in rows] == ["error: RuntimeError: boom", "ok"]


def test_series_refusals(series, tmp_path, model, monkeypatch):
    rc, _, err = cli("solve", series, "--model", model)
    assert rc == 2 and "a series needs an output folder: -o OUTDIR" in err

    f = tmp_path / "file"
    f.write_text("x")
    rc, _, err = _solve(series, f, model)
    assert rc == 2 and f"deepstruc: error: {f} exists and is not a folder" in err

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("x")
    rc, _, err = _solve(series, busy, model)
    assert rc == 2 and f"{busy} is not empty (thesis.tex); choose another -o" in err

    empty = tmp_path / "nogr"
    empty.mkdir()
    rc, _, err = _solve(empty, tmp_path / "o", model)
    assert rc == 2 and f"deepstruc: error: {empty}: folder holds no .gr file" in err

    other = tmp_path / "other"
    other.mkdir()
    write_au_pdf(other / "a.gr")
    rc, _, err = cli("solve", series / "a.gr", other / "a.gr", "-o", tmp_path / "o")
    assert rc == 2 and "several inputs share the name 'a'" in err

    rc, _, err = _solve(series, tmp_path / "o", tmp_path / "missing")
    assert rc == 2 and "missing: not a checkpoint folder" in err

    rc, _, err = cli(
        "solve", series / "a.gr", "-o", tmp_path / "o", "--scheduler", "tcp://x:1"
    )
    assert rc == 2 and "--scheduler is for a series" in err

    monkeypatch.setattr(batch, "CONNECT_TIMEOUT", 0.5)
    rc, _, err = _solve(series, tmp_path / "o2", model, "--scheduler", "tcp://127.0.0.1:9")
    assert rc == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err


def test_api_errors(tmp_path):
    with pytest.raises(PDFDataError, match="no such file or folder"):
        find_pdf_files([tmp_path / "nope.gr"])
    with pytest.raises(ParameterError, match="no PDF files given"):
        find_pdf_files([])
    write_au_pdf(tmp_path / "a.gr")
    with pytest.raises(ParameterError, match="workers must be a positive integer"):
        solve_series([tmp_path / "a.gr"], tmp_path / "o", workers=0)
    with pytest.raises(OutputExistsError, match="exists and is not a folder"):
        solve_series([tmp_path / "a.gr"], tmp_path / "a.gr")
    with pytest.raises(ParameterError, match="expected a Dask scheduler address"):
        solve_series([tmp_path / "a.gr"], tmp_path / "o", scheduler=42)
