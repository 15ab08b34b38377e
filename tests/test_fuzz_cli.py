"""Fuzzing the command line (hypothesis): random argument lists, random option values
and random input files for ``simulate``, ``solve`` and ``catalog``.

The contract: ``main()`` returns an int (0, 1, 2 or 130) or argparse exits with status
2 for a usage error; no other exception ever escapes.  Expensive work is kept out: the
srfit refinement is replaced by a stand-in that returns the unrefined candidate (the
pipeline around it -- loading, settings, sampling, trilateration, writing -- is real),
the catalog build stops right after its configuration was accepted, and the structures
simulated have two atoms.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_solve_cli import tiny_model_dir, write_au_pdf

from diffpy_deepstruc.cli import catalog as cli_catalog
from diffpy_deepstruc.cli import main
from diffpy_deepstruc.solve import RefinedCandidate
from diffpy_deepstruc.solve import refine as solve_refine

FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)

#: Values an option may get: numbers of every kind, and garbage.
VALUES = [
    "0",
    "1",
    "2",
    "-1",
    "-0.5",
    "0.01",
    "0.05",
    "0.5",
    "3",
    "7",
    "20",
    "25",
    "30",
    "100",
    "1e9",
    "-1e9",
    "1e-9",
    "1e308",
    "1e999",
    "nan",
    "-inf",
    "inf",
    "0x10",
    "1_0",
    "",
    " ",
    "abc",
    "Au",
    "Si",
    "Xx",
    "Pt",
    "fcc",
    "\x00",
    "é",
    "--",
    "-",
    "2**70",
    "99999999999999999999999",
]
value = st.one_of(
    st.sampled_from(VALUES),
    st.text(max_size=8).filter(lambda s: not s.startswith("-")),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)

SIMULATE_OPTS = [
    "--rmin",
    "--rmax",
    "--rstep",
    "--qmin",
    "--qmax",
    "--qdamp",
    "--qbroad",
    "--delta1",
    "--delta2",
    "--scale",
    "--uiso",
    "--backend",
]
SOLVE_OPTS = [
    "-n",
    "--element",
    "--rmin",
    "--rmax",
    "--qmin",
    "--qmax",
    "--qdamp",
    "--qbroad",
    "--seed",
    "--workers",
    "--scheduler",
]
CATALOG_OPTS = [
    "--nmax",
    "--nmin",
    "--types",
    "--elements",
    "--variants",
    "--seed",
    "--rmax",
    "--rstep",
    "--workers",
    "--block-size",
]
FLAGS = ["--force", "--resume", "--no-progress", "--quiet", "--no-noise"]


class _Stop(Exception):
    """Raised by the stand-in catalog build: the arguments were accepted."""


def _fake_refine(
    structure, r, g, settings, *, dg=None, index=0, latent=(), residual=0.0, start=None
):
    sel = (r >= settings.rmin) & (r <= settings.rmax)
    return RefinedCandidate(
        index=index,
        structure=structure,
        rw=0.5 + 0.01 * index,
        parameters={"scale": 1.0},
        n_atoms=len(structure),
        latent=[float(v) for v in latent],
        residual=float(residual),
        r=r[sel],
        g_calc=g[sel],
    )


def _fake_build(path, config, **kw):
    raise _Stop


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    write_au_pdf(d / "au.gr")
    (d / "dimer.xyz").write_text("2\nAu2\nAu 0 0 0\nAu 0 0 2.88\n")
    return d, tiny_model_dir()


@pytest.fixture(autouse=True)
def _cheap(monkeypatch):
    monkeypatch.setattr(solve_refine, "refine_candidate", _fake_refine)
    monkeypatch.setattr(cli_catalog, "build_catalog", _fake_build)
    import diffpy_deepstruc.plots as plots

    for name in ("plot_fit", "plot_latent_map", "plot_series"):
        monkeypatch.setattr(plots, name, lambda *a, **k: Path(a[-1] if a else "x"))


def run_main(argv: list[str]) -> int:
    """``main(argv)`` in a scratch folder; the exit status (SystemExit's code too)."""
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)
        try:
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                rc = main(argv)
        except SystemExit as exc:
            assert exc.code == 2, f"SystemExit({exc.code!r}) for {argv!r}"
            return 2
        except _Stop:
            return 0  # catalog arguments accepted (the build itself is not run here)
        finally:
            os.chdir(here)
    assert isinstance(rc, int) and rc in (0, 1, 2, 130), (rc, argv)
    return rc


def _options(names):
    return st.lists(st.tuples(st.sampled_from(names), value), max_size=4).map(
        lambda pairs: [x for p in pairs for x in p]
    )


@FUZZ
@given(opts=_options(SIMULATE_OPTS), flags=st.lists(st.sampled_from(FLAGS), max_size=2))
def test_simulate_option_values(inputs, opts, flags):
    d, _ = inputs
    run_main(["simulate", str(d / "dimer.xyz"), "-o", "x.gr", *opts, *flags])


@FUZZ
@given(opts=_options(SOLVE_OPTS), flags=st.lists(st.sampled_from(FLAGS), max_size=2))
def test_solve_option_values(inputs, opts, flags):
    d, model = inputs
    if "-n" not in opts:
        opts = [*opts, "-n", "2"]
    run_main(
        [
            "solve",
            str(d / "au.gr"),
            "-o",
            "out",
            "--model",
            str(model),
            "--workers",
            "1",
            *opts,
            *flags,
        ]
    )


@FUZZ
@given(opts=_options(CATALOG_OPTS), flags=st.lists(st.sampled_from(FLAGS), max_size=2))
def test_catalog_option_values(inputs, opts, flags):
    run_main(["catalog", "-o", "c.h5", *opts, *flags])


TOKENS = st.sampled_from(
    [
        "simulate",
        "solve",
        "catalog",
        "-o",
        "out",
        "x.gr",
        "-n",
        "--model",
        "--element",
        "--qmax",
        "--force",
        "--resume",
        "--rmax",
        "--nmax",
        "--types",
        *VALUES[:20],
    ]
)


@FUZZ
@given(
    cmd=st.sampled_from(["simulate", "solve", "catalog"]),
    args=st.lists(st.one_of(TOKENS, value), max_size=8),
)
def test_random_argument_lists(inputs, cmd, args):
    run_main([cmd, *args])


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        st.lists(
            st.lists(
                st.sampled_from(["0", "1.5", "-2", "nan", "3e1", "x", "#", "="]),
                min_size=1,
                max_size=3,
            ).map(" ".join),
            max_size=30,
        ).map(lambda ls: "\n".join(ls).encode()),
    )
)
def test_random_pdf_files(inputs, data):
    d, model = inputs
    with tempfile.TemporaryDirectory() as t:
        f = Path(t) / "x.gr"
        f.write_bytes(data)
        run_main(
            [
                "solve",
                str(f),
                "-o",
                "out",
                "--model",
                str(model),
                "-n",
                "1",
                "--workers",
                "1",
                "--no-progress",
            ]
        )


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda n, rows: f"{n}\ncomment\n" + "\n".join(rows),
            st.sampled_from(["0", "1", "2", "3", "-1", "x", ""]),
            st.lists(
                st.sampled_from(
                    [
                        "Au 0 0 0",
                        "Au 0 0 2.9",
                        "Xx 1 1 1",
                        "Au nan 0 0",
                        "Au 1e300 0 0",
                        "Au 0 0",
                        "H 0 0 0.7",
                        "",
                    ]
                ),
                max_size=4,
            ),
        ).map(str.encode),
    ),
    ext=st.sampled_from([".xyz", ".stru", ".cif", ".pdb"]),
)
def test_random_structure_files(inputs, data, ext):
    with tempfile.TemporaryDirectory() as t:
        f = Path(t) / f"s{ext}"
        f.write_bytes(data)
        run_main(["simulate", str(f), "-o", "x.gr", "--rmax", "10", "--rstep", "0.1"])


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    target=st.sampled_from(["config.json", "model.safetensors"]),
    pos=st.floats(0, 1),
    data=st.binary(min_size=1, max_size=16),
    mode=st.sampled_from(["overwrite", "truncate", "replace"]),
)
def test_random_checkpoint_damage(inputs, target, pos, data, mode):
    import shutil

    d, model = inputs
    with tempfile.TemporaryDirectory() as t:
        m = Path(t) / "m"
        shutil.copytree(model, m)
        f = m / target
        b = bytearray(f.read_bytes())
        k = int(pos * (len(b) - 1))
        if mode == "overwrite":
            b[k : k + len(data)] = data
        elif mode == "truncate":
            b = b[:k]
        else:
            b = bytearray(data)
        f.write_bytes(bytes(b))
        rc = run_main(
            [
                "solve",
                str(d / "au.gr"),
                "-o",
                "out",
                "--model",
                str(m),
                "-n",
                "1",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        assert rc in (0, 2)


def test_values_list_is_sane():
    assert np.isnan(float("nan")) and "--help" not in VALUES and "-h" not in VALUES
