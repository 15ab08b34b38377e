"""Every class of bad input, at every edge: through the command line (``main([...])``
returns 2 and prints ``deepstruc: error: <message>``, or argparse exits with status 2
for a malformed option value) and through the Python API (the documented
``DeepStrucError`` subclasses).

Each case runs in a fresh folder with relative file names, so the messages are exact.
``python tests/test_validation.py`` prints the markdown table of every case and the
message it gives (docs/robustness.md is made from it).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_solve_cli import EXAMPLE_XYZ, _au_pdf, cli, tiny_model_dir  # noqa: E402

from diffpy_deepstruc.errors import (  # noqa: E402
    CheckpointError,
    DeepStrucError,
    ElementError,
    OutputExistsError,
    ParameterError,
    PDFDataError,
    StructureError,
)

HEADER = {"composition": "Au55", "qmin": 0.7, "qmax": 25.0, "qdamp": 0.04}


# ---------------------------------------------------------------- file makers (cwd)
def _table(r, g) -> str:
    return "".join(f"{float(a)!r} {float(b)!r}\n" for a, b in zip(r, g, strict=True))


def gr(name="bad.gr", *, meta=None, r=None, g=None, rmax=20.0) -> str:
    """A valid Au55 PDF (optionally other arrays/header) written as ``name``."""
    from diffpy_deepstruc.pdfdata import write_pdf

    r0, g0 = _au_pdf(rmax, 0.04, 1.0)
    write_pdf(
        name,
        r0 if r is None else r,
        g0 if g is None else g,
        HEADER if meta is None else meta,
        overwrite=True,
    )
    return name


def raw(name: str, content: str | bytes) -> str:
    Path(name).write_bytes(content.encode() if isinstance(content, str) else content)
    return name


def good_table(edit: Callable[[list[str]], None]) -> str:
    """bad.gr: header, marker, then the Au table with ``edit`` applied to its lines."""
    r, g = _au_pdf(20.0, 0.04, 1.0)
    lines = _table(r, g).splitlines()
    edit(lines)
    head = "composition = Au55\nqmax = 25.0\n#### start data\n"
    return raw("bad.gr", head + "\n".join(lines) + "\n")


def model(name="model") -> str:
    shutil.copytree(tiny_model_dir(), name, dirs_exist_ok=True)
    return name


def tamper(edit: Callable[[Path], None]) -> str:
    m = Path(model("broken"))
    edit(m)
    return str(m)


def _flip_byte(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-100])


def _foreign(cfg: Path) -> None:
    d = json.loads(cfg.read_text())
    d["format"] = "some-other-model"
    cfg.write_text(json.dumps(d))


def solve_args(data="bad.gr", *extra, mdl=None) -> list:
    return [
        "solve",
        data,
        "-o",
        "out",
        "--model",
        mdl or model(),
        "-n",
        1,
        "--workers",
        1,
        "--no-progress",
        *extra,
    ]


def xyz(name: str, text: str) -> str:
    return raw(name, text)


def _set_lines(lines, i, text):
    lines[i] = text


# ------------------------------------------------------------------------ CLI cases
#: (group, input class, argv builder (runs in the case folder), expected message part,
#:  kind: "error" = main returns 2 with ``deepstruc: error:``; "usage" = argparse exit 2)
CLI_CASES: list[tuple[str, str, Callable[[], list], str, str]] = [
    # --- PDF files
    (
        "PDF file",
        "missing file",
        lambda: solve_args("nothere.gr"),
        "nothere.gr: file not found",
        "error",
    ),
    (
        "PDF file",
        "empty file",
        lambda: solve_args(raw("bad.gr", "")),
        "bad.gr: file is empty",
        "error",
    ),
    (
        "PDF file",
        "binary file",
        lambda: solve_args(raw("bad.gr", b"\x89PNG\r\n\x1a\n\x00\x00")),
        "bad.gr: binary file (NUL byte on line 3); expected a text .gr file",
        "error",
    ),
    (
        "PDF file",
        "header without data",
        lambda: solve_args(raw("bad.gr", "# PDF\nqmax = 25\ncomposition = Au\n")),
        "bad.gr: header but no data (no line of numbers found)",
        "error",
    ),
    (
        "PDF file",
        "header and marker without data",
        lambda: solve_args(raw("bad.gr", "qmax = 25\n#### start data\n#L r G\n")),
        "bad.gr: no data after the '#### start data' line 2",
        "error",
    ),
    (
        "PDF file",
        "a single column",
        lambda: solve_args(raw("bad.gr", "".join(f"{0.1 * i:.1f}\n" for i in range(50)))),
        "bad.gr: only one column of numbers (line 1); expected at least r and G",
        "error",
    ),
    (
        "PDF file",
        "NaN in G",
        lambda: solve_args(good_table(lambda ls: _set_lines(ls, 40, "2.0 nan"))),
        "bad.gr: line 44: nan in column 2; NaN and infinity are not allowed",
        "error",
    ),
    (
        "PDF file",
        "infinity in G",
        lambda: solve_args(good_table(lambda ls: _set_lines(ls, 40, "2.0 -inf"))),
        "bad.gr: line 44: -inf in column 2; NaN and infinity are not allowed",
        "error",
    ),
    (
        "PDF file",
        "duplicate r",
        lambda: solve_args(good_table(lambda ls: _set_lines(ls, 41, ls[40]))),
        "bad.gr: line 45: duplicate r = 2 (also on line 44)",
        "error",
    ),
    (
        "PDF file",
        "decreasing r",
        lambda: solve_args(good_table(lambda ls: _set_lines(ls, 41, "1.9 0.1"))),
        "bad.gr: line 45: r = 1.9 is not larger than r = 2 on line 44; r must increase "
        "strictly",
        "error",
    ),
    (
        "PDF file",
        "r in nanometres",
        lambda: solve_args(gr(r=_au_pdf(20.0, 0.04, 1.0)[0] / 10)),
        "bad.gr: r seems to be in nanometres: it ends at 1.995 and the strongest peak is at "
        "r = 0.3",
        "error",
    ),
    (
        "PDF file",
        "r-range too short for the model",
        lambda: solve_args(gr(rmax=10.0)),
        "data end at r=9.95 A; the model needs G(r) over",
        "error",
    ),
    (
        "PDF file",
        "data start too late for the model",
        lambda: solve_args(
            gr(r=_au_pdf(20.0, 0.04, 1.0)[0][50:], g=_au_pdf(20.0, 0.04, 1.0)[1][50:])
        ),
        "data start at r=2.5 A; the model needs G(r) from r <= ",
        "error",
    ),
    (
        "PDF file",
        "fit range too short",
        lambda: solve_args(gr(rmax=4.0)),
        "fit range 1.5-3.95 A is too short; at least 5 A is needed to tell structures apart",
        "error",
    ),
    (
        "PDF file",
        "G zero everywhere",
        lambda: solve_args(gr(g=np.zeros(400))),
        "bad.gr: G(r) is zero everywhere (lines 10-409)",
        "error",
    ),
    # --- instrument and fit settings
    (
        "settings",
        "Qmax neither in the header nor given",
        lambda: solve_args(gr(meta={"composition": "Au55"})),
        "qmax is not in the data file's header; give it explicitly (--qmax)",
        "error",
    ),
    (
        "settings",
        "Qmax <= Qmin (options)",
        lambda: solve_args(gr(), "--qmin", 30),
        "qmax (25.0) must exceed qmin (30.0)",
        "error",
    ),
    (
        "settings",
        "Qmax <= Qmin (header)",
        lambda: solve_args(gr(meta={**HEADER, "qmin": 26.0})),
        "qmax (25.0) must exceed qmin (26.0)",
        "error",
    ),
    (
        "settings",
        "negative Qdamp (option)",
        lambda: solve_args(gr(), "--qdamp", "-0.1"),
        "argument --qdamp: expected a number >= 0, got '-0.1'",
        "usage",
    ),
    (
        "settings",
        "negative Qdamp (header)",
        lambda: solve_args(gr(meta={**HEADER, "qdamp": -0.1})),
        "qdamp must not be negative, got -0.1",
        "error",
    ),
    (
        "settings",
        "Qmax not a finite number",
        lambda: solve_args(gr(), "--qmax", "nan"),
        "argument --qmax: expected a finite number, got 'nan'",
        "usage",
    ),
    (
        "settings",
        "Qmax too large for the r-grid",
        lambda: solve_args(gr(), "--qmax", "1e6"),
        "qmax=1e+06 with rmax=20 needs more than 1000000 Q points; reduce qmax or rmax",
        "error",
    ),
    (
        "settings",
        "fit range outside the data",
        lambda: solve_args(gr(), "--rmax", 40),
        "fit range 1.5-40.0 A lies outside the data (0-19.95 A)",
        "error",
    ),
    (
        "settings",
        "rmin >= rmax",
        lambda: solve_args(gr(), "--rmin", 12, "--rmax", 10),
        "rmin (12.0) must be below rmax (10.0)",
        "error",
    ),
    # --- elements
    (
        "element",
        "unknown element (option)",
        lambda: solve_args(gr(), "--element", "Xx"),
        "unknown element symbol 'Xx'",
        "error",
    ),
    (
        "element",
        "non-metal element (option)",
        lambda: solve_args(gr(), "--element", "Si"),
        "Si is not a metal; DeepStruc models metal nanoparticles",
        "error",
    ),
    (
        "element",
        "no element and no composition",
        lambda: solve_args(gr(meta={"qmax": 25.0})),
        "bad.gr: no element given and no composition in the header; pass --element",
        "error",
    ),
    (
        "element",
        "composition without a metal",
        lambda: solve_args(gr(meta={"qmax": 25.0, "composition": "SiO2"})),
        "bad.gr: composition 'SiO2' does not name exactly one metal (found none); pass "
        "--element",
        "error",
    ),
    (
        "element",
        "composition with two metals",
        lambda: solve_args(gr(meta={"qmax": 25.0, "composition": "Au50 Ag50"})),
        "bad.gr: composition 'Au50 Ag50' does not name exactly one metal (found ['Ag', "
        "'Au']); pass --element",
        "error",
    ),
    # --- checkpoints
    (
        "checkpoint",
        "missing model folder",
        lambda: solve_args(gr(), mdl="nomodel"),
        "nomodel: not a checkpoint folder (expected config.json and model.safetensors "
        "inside)",
        "error",
    ),
    (
        "checkpoint",
        "config.json missing",
        lambda: solve_args(gr(), mdl=tamper(lambda m: (m / "config.json").unlink())),
        "broken: config.json is missing",
        "error",
    ),
    (
        "checkpoint",
        "corrupted config.json",
        lambda: solve_args(
            gr(), mdl=tamper(lambda m: raw(str(m / "config.json"), "{oops"))
        ),
        "broken/config.json: not valid JSON (",
        "error",
    ),
    (
        "checkpoint",
        "tampered weights (one byte changed)",
        lambda: solve_args(gr(), mdl=tamper(lambda m: _flip_byte(m / "model.safetensors"))),
        "does not match the config's",
        "error",
    ),
    (
        "checkpoint",
        "truncated weights",
        lambda: solve_args(gr(), mdl=tamper(lambda m: _truncate(m / "model.safetensors"))),
        "the weights file is truncated or was replaced",
        "error",
    ),
    (
        "checkpoint",
        "weights missing",
        lambda: solve_args(gr(), mdl=tamper(lambda m: (m / "model.safetensors").unlink())),
        "broken: model.safetensors is missing",
        "error",
    ),
    (
        "checkpoint",
        "foreign checkpoint (other format)",
        lambda: solve_args(gr(), mdl=tamper(lambda m: _foreign(m / "config.json"))),
        "broken/config.json: not a diffpy-deepstruc model config (format 'some-other-model')",
        "error",
    ),
    # --- outputs
    (
        "output",
        "result folder holds results",
        lambda: (os.makedirs("out"), raw("out/ranking.csv", "x"), solve_args(gr()))[-1],
        "out already holds results (ranking.csv...); pass --force to replace them or choose "
        "another -o",
        "error",
    ),
    (
        "output",
        "result folder holds an interrupted run",
        lambda: (os.makedirs("out/partial"), solve_args(gr()))[-1],
        "out holds an interrupted run (partial/); pass --resume to continue it or --force to "
        "start over",
        "error",
    ),
    (
        "output",
        "result folder is a file",
        lambda: (raw("out", "x"), solve_args(gr()))[-1],
        "out exists and is not a folder; choose another -o",
        "error",
    ),
    (
        "output",
        "simulate: output exists",
        lambda: ["simulate", str(EXAMPLE_XYZ), "-o", raw("x.gr", "x")],
        "x.gr: file exists; pass overwrite=True (--force) to replace it",
        "error",
    ),
    (
        "output",
        "catalog: output exists",
        lambda: ["catalog", "-o", raw("c.h5", "x"), "--nmax", 13],
        "c.h5: file exists; pass overwrite=True (--force) to replace it",
        "error",
    ),
    (
        "output",
        "output folder cannot be created",
        lambda: (raw("plain", "x"), ["simulate", str(EXAMPLE_XYZ), "-o", "plain/sub/x.gr"])[
            -1
        ],
        "plain/sub: Not a directory",
        "error",
    ),
    # --- structure files (simulate)
    (
        "structure",
        "structure with no atoms",
        lambda: ["simulate", xyz("zero.xyz", "0\nnothing\n"), "-o", "z.gr"],
        "zero.xyz: no atoms in the file",
        "error",
    ),
    (
        "structure",
        "empty structure file",
        lambda: ["simulate", xyz("empty.xyz", ""), "-o", "z.gr"],
        "empty.xyz: file is empty",
        "error",
    ),
    (
        "structure",
        "unknown element in a structure",
        lambda: ["simulate", xyz("qq.xyz", "1\nx\nQq 0 0 0\n"), "-o", "z.gr"],
        "qq.xyz: atom 1: unknown element symbol 'Qq'",
        "error",
    ),
    (
        "structure",
        "NaN coordinate",
        lambda: ["simulate", xyz("nan.xyz", "2\nx\nAu 0 0 0\nAu nan 0 0\n"), "-o", "z.gr"],
        "nan.xyz: atom 2 has non-finite coordinates",
        "error",
    ),
    (
        "structure",
        "unknown structure format",
        lambda: ["simulate", xyz("s.foo", "x"), "-o", "z.gr"],
        "s.foo: cannot tell the structure format from the extension '.foo'",
        "error",
    ),
    # --- simulate parameters
    (
        "simulate",
        "Qmax <= Qmin",
        lambda: ["simulate", str(EXAMPLE_XYZ), "-o", "z.gr", "--qmin", 30],
        "qmax (25.0 1/A) must be larger than qmin (30.0 1/A)",
        "error",
    ),
    (
        "simulate",
        "negative Qdamp",
        lambda: ["simulate", str(EXAMPLE_XYZ), "-o", "z.gr", "--qdamp", -1],
        "qdamp must be >= 0 1/A, got -1.0",
        "error",
    ),
    (
        "simulate",
        "zero r step",
        lambda: ["simulate", str(EXAMPLE_XYZ), "-o", "z.gr", "--rstep", 0],
        "rstep must be > 0 A, got 0.0",
        "error",
    ),
    (
        "simulate",
        "huge r-grid",
        lambda: ["simulate", str(EXAMPLE_XYZ), "-o", "z.gr", "--rmax", "1e9"],
        "the r-grid would hold 100000000000 points (limit 10000000); increase rstep or reduce "
        "rmax",
        "error",
    ),
    (
        "simulate",
        "negative Uiso",
        lambda: ["simulate", str(EXAMPLE_XYZ), "-o", "z.gr", "--uiso", -1],
        "--uiso must be a finite number >= 0 A^2, got -1.0",
        "error",
    ),
    # --- catalog options
    (
        "catalog",
        "unknown element",
        lambda: ["catalog", "-o", "c.h5", "--elements", "Xx"],
        "unknown element symbol 'Xx'",
        "error",
    ),
    (
        "catalog",
        "non-metal element",
        lambda: ["catalog", "-o", "c.h5", "--elements", "Au,Si"],
        "--elements: Si is not a metal; the catalog holds metal nanoparticles",
        "error",
    ),
    (
        "catalog",
        "unknown structure type",
        lambda: ["catalog", "-o", "c.h5", "--types", "foo"],
        "unknown structure type 'foo'; choose from fcc, bcc, sc, hcp, icosahedron, "
        "decahedron, octahedron, stacking",
        "error",
    ),
    (
        "catalog",
        "zero atoms per cluster",
        lambda: ["catalog", "-o", "c.h5", "--nmax", 0],
        "n_max must be an integer >= 1, got 0",
        "error",
    ),
    # --- option values
    (
        "options",
        "zero candidates",
        lambda: ["solve", "x.gr", "-n", "0"],
        "argument -n: expected an integer from 1 to 10000, got 0",
        "usage",
    ),
    (
        "options",
        "candidates not a number",
        lambda: ["solve", "x.gr", "-n", "many"],
        "argument -n: expected an integer, got 'many'",
        "usage",
    ),
    (
        "options",
        "negative seed",
        lambda: ["solve", "x.gr", "--seed", "-1"],
        "argument --seed: expected a seed from 0 to 2**63-1, got -1",
        "usage",
    ),
    (
        "options",
        "zero workers",
        lambda: ["solve", "x.gr", "--workers", "0"],
        "argument --workers: expected an integer from 1 to 512, got 0",
        "usage",
    ),
    (
        "options",
        "empty file name",
        lambda: ["solve", "", "-o", "out"],
        "argument data: expected a file or folder name, got ''",
        "usage",
    ),
    (
        "options",
        "--force with --resume",
        lambda: solve_args(gr(), "--force", "--resume"),
        "--force and --resume exclude each other",
        "error",
    ),
]


def run_cli_case(build: Callable[[], list]) -> tuple[int, str, str]:
    """Build the case's files in the current folder, run it: (status, message line,
    sub-command)."""
    argv = build()
    rc, _, err = cli(*argv)
    lines = [ln for ln in err.splitlines() if " error: " in ln]
    return rc, (lines[-1] if lines else err.strip()), str(argv[0])


@pytest.mark.parametrize(
    "group, what, build, expect, kind",
    CLI_CASES,
    ids=[f"{c[0]}: {c[1]}" for c in CLI_CASES],
)
def test_cli_bad_input(group, what, build, expect, kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, line, command = run_cli_case(build)
    assert rc == 2, line
    prefix = "deepstruc: error: " if kind == "error" else f"deepstruc {command}: error: "
    assert line.startswith(prefix), line
    assert expect in line, line
    assert not Path("out", "summary.json").exists()


# ------------------------------------------------------------------------ API cases
def _api_cases() -> list[tuple[str, Callable[[], object], type, str]]:
    from diffpy_deepstruc.checkpoint import load_checkpoint
    from diffpy_deepstruc.debye import PDFParameters
    from diffpy_deepstruc.elements import normalize_element
    from diffpy_deepstruc.generator import DeepStruc
    from diffpy_deepstruc.pdfdata import PDFData, load_pdf, write_pdf
    from diffpy_deepstruc.ranking import (
        prepare_outdir,
        resolve_element,
        resolve_settings,
        solve,
    )
    from diffpy_deepstruc.structures import read_structure

    r, g = _au_pdf(20.0, 0.04, 1.0)
    pdf = PDFData(r=r, g=g, metadata=dict(HEADER), source="x.gr")

    def short_solve():
        m = DeepStruc.load(model())
        return solve(
            PDFData(r=r[r < 10], g=g[r < 10], metadata=dict(HEADER), source="s.gr"),
            model=m,
            n=1,
        )

    return [
        (
            "load_pdf: empty file",
            lambda: load_pdf(raw("e.gr", "")),
            PDFDataError,
            "e.gr: file is empty",
        ),
        (
            "load_pdf: NaN",
            lambda: load_pdf(good_table(lambda ls: _set_lines(ls, 40, "2 nan"))),
            PDFDataError,
            "nan in column 2",
        ),
        (
            "resolve_settings: Qmax <= Qmin",
            lambda: resolve_settings(pdf, qmin=30),
            ParameterError,
            "qmax (25.0) must exceed qmin (30.0)",
        ),
        (
            "resolve_settings: negative Qdamp",
            lambda: resolve_settings(pdf, qdamp=-1),
            ParameterError,
            "qdamp must not be negative, got -1.0",
        ),
        (
            "resolve_element: non-metal",
            lambda: resolve_element(pdf, "Si"),
            ElementError,
            "Si is not a metal",
        ),
        (
            "normalize_element: unknown",
            lambda: normalize_element("Xx"),
            ElementError,
            "unknown element symbol 'Xx'",
        ),
        (
            "solve: r-range too short for the model",
            short_solve,
            PDFDataError,
            "data end at r=9.95 A; the model needs G(r) over",
        ),
        (
            "solve: n = 0",
            lambda: solve(pdf, n=0),
            ParameterError,
            "n must be a positive integer, got 0",
        ),
        (
            "load_checkpoint: tampered",
            lambda: load_checkpoint(tamper(lambda m: _flip_byte(m / "model.safetensors"))),
            CheckpointError,
            "does not match the config's",
        ),
        (
            "DeepStruc.load: foreign",
            lambda: DeepStruc.load(tamper(lambda m: _foreign(m / "config.json"))),
            CheckpointError,
            "not a diffpy-deepstruc model config",
        ),
        (
            "read_structure: no atoms",
            lambda: read_structure(xyz("z.xyz", "0\nx\n")),
            StructureError,
            "z.xyz: no atoms in the file",
        ),
        (
            "write_pdf: output exists",
            lambda: write_pdf(raw("o.gr", "x"), r, g, {}),
            OutputExistsError,
            "o.gr: file exists",
        ),
        (
            "prepare_outdir: results exist",
            lambda: (
                os.makedirs("res"),
                raw("res/summary.json", "{}"),
                prepare_outdir("res"),
            )[-1],
            OutputExistsError,
            "res already holds results (summary.json...)",
        ),
        (
            "PDFParameters: Qmax <= Qmin",
            lambda: PDFParameters(qmin=30).validate(),
            ParameterError,
            "must be larger than qmin",
        ),
    ]


API_NAMES = [c[0] for c in _api_cases()]


@pytest.mark.parametrize("name", API_NAMES)
def test_api_bad_input(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, call, exc_type, expect = next(c for c in _api_cases() if c[0] == name)
    with pytest.raises(exc_type) as info:
        call()
    assert isinstance(info.value, DeepStrucError)
    assert expect in str(info.value)


def test_every_documented_type_is_a_deepstruc_error():
    import diffpy_deepstruc.errors as errors

    for name in errors.__dict__:
        obj = getattr(errors, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, Exception)
            and obj is not DeepStrucError
        ):
            assert issubclass(obj, DeepStrucError), name


def markdown_table() -> str:
    """Run every case in a scratch folder; the markdown table of exact messages."""
    import tempfile

    rows = ["| group | input | exit | message (stderr) |", "|---|---|---|---|"]
    here = os.getcwd()
    try:
        for group, what, build, _, _ in CLI_CASES:
            with tempfile.TemporaryDirectory() as d:
                os.chdir(d)
                rc, line, _ = run_cli_case(build)
                os.chdir(here)
            rows.append(f"| {group} | {what} | {rc} | `{line.replace('|', '&#124;')}` |")
        rows += ["", "| Python call | raises | message |", "|---|---|---|"]
        for name, call, exc_type, _ in _api_cases():
            with tempfile.TemporaryDirectory() as d:
                os.chdir(d)
                try:
                    call()
                    msg = "(no error)"
                except DeepStrucError as exc:
                    msg = f"{type(exc).__name__}: {exc}"
                os.chdir(here)
            rows.append(
                f"| `{name}` | `{exc_type.__name__}` | `{msg.replace('|', '&#124;')}` |"
            )
    finally:
        os.chdir(here)
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
