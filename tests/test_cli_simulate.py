"""``deepstruc simulate``: structure file in, .gr file out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase.cluster import Icosahedron

from diffpy_deepstruc import __version__
from diffpy_deepstruc.cli import main
from diffpy_deepstruc.pdfdata import load_pdf
from diffpy_deepstruc.structures import atoms_to_structure, write_structure

pytest.importorskip("diffpy_deepstruc.debye")


@pytest.fixture
def au55_xyz(tmp_path: Path) -> Path:
    """The Au55 icosahedron of the srreal references, as an xyz file (no Uiso)."""
    atoms = Icosahedron("Au", 3, latticeconstant=4.08)
    return write_structure(atoms_to_structure(atoms), tmp_path / "Au55.xyz")


def _reference(srreal_dir: Path, name: str) -> tuple[dict, np.ndarray]:
    path = srreal_dir / name
    first = path.read_text().splitlines()[0]
    params = json.loads(first[first.index("{") :])
    return params, np.loadtxt(path)


def test_simulate_defaults_match_srreal(
    tmp_path: Path, au55_xyz: Path, srreal_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "au55.gr"
    assert main(["simulate", str(au55_xyz), "-o", str(out), "--backend", "torch"]) == 0
    assert "wrote" in capsys.readouterr().out
    pdf = load_pdf(out)
    meta = pdf.metadata
    # the header records every parameter, the structure and the version
    for key in (
        "rmin",
        "rmax",
        "rstep",
        "qmin",
        "qmax",
        "qdamp",
        "qbroad",
        "delta1",
        "delta2",
        "scale",
        "uiso",
        "uiso_source",
        "backend",
        "structure",
        "natoms",
        "composition",
        "generator",
    ):
        assert key in meta, key
    assert meta["structure"] == str(au55_xyz.resolve())
    assert __version__ in meta["generator"]
    assert meta["uiso"] == 0.005 and meta["uiso_source"] == "default"  # xyz has no Uiso
    assert meta["natoms"] == 55 and pdf.composition == "Au55" and pdf.elements == ["Au"]
    # set A of the srreal references is DeepStruc's default parameter set
    params, ref = _reference(srreal_dir, "Au55_icosahedron_A.gr")
    assert pdf.qmax == params["qmax"] and pdf.qdamp == params["qdamp"]
    np.testing.assert_allclose(pdf.r, ref[:, 0], atol=1e-9)
    np.testing.assert_allclose(pdf.g, ref[:, 1], atol=1e-6 * np.abs(ref[:, 1]).max())


def test_simulate_parameters_match_srreal(
    tmp_path: Path, au55_xyz: Path, srreal_dir: Path
) -> None:
    params, ref = _reference(srreal_dir, "Au55_icosahedron_B.gr")
    out = tmp_path / "b.gr"
    argv = ["simulate", str(au55_xyz), "-o", str(out), "--backend", "torch"]
    for key in (
        "rmin",
        "rmax",
        "rstep",
        "qmin",
        "qmax",
        "qdamp",
        "qbroad",
        "delta2",
        "uiso",
    ):
        argv += [f"--{key}", str(params[key])]
    assert main(argv) == 0
    pdf = load_pdf(out)
    assert (
        pdf.metadata["uiso_source"] == "option" and pdf.metadata["uiso"] == params["uiso"]
    )
    assert pdf.qbroad == params["qbroad"] and pdf.metadata["rstep"] == params["rstep"]
    np.testing.assert_allclose(pdf.r, ref[:, 0], atol=1e-9)
    np.testing.assert_allclose(pdf.g, ref[:, 1], atol=1e-6 * np.abs(ref[:, 1]).max())


def test_simulate_uses_file_uiso_and_scale(tmp_path: Path) -> None:
    atoms = Icosahedron("Pt", 2, latticeconstant=3.92)
    stru = write_structure(atoms_to_structure(atoms, uiso=0.008), tmp_path / "pt13.stru")
    out1, out2 = tmp_path / "one.gr", tmp_path / "two.gr"
    common = ["--rmax", "10", "--backend", "torch"]
    assert main(["simulate", str(stru), "-o", str(out1), *common]) == 0
    assert main(["simulate", str(stru), "-o", str(out2), "--scale", "2", *common]) == 0
    one, two = load_pdf(out1), load_pdf(out2)
    assert one.metadata["uiso"] == 0.008 and one.metadata["uiso_source"] == "file"
    assert one.r[-1] < 10.0 and two.metadata["scale"] == 2.0
    np.testing.assert_allclose(two.g, 2 * one.g, atol=1e-12)


def test_simulate_refuses_overwrite(
    tmp_path: Path, au55_xyz: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "x.gr"
    out.write_text("precious\n")
    assert main(["simulate", str(au55_xyz), "-o", str(out), "--rmax", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deepstruc: error:") and "x.gr" in err and "--force" in err
    assert out.read_text() == "precious\n"
    assert main(["simulate", str(au55_xyz), "-o", str(out), "--rmax", "5", "--force"]) == 0
    assert load_pdf(out).r[-1] < 5.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--rstep", "-1"], "rstep"),
        (["--qmax", "0.5"], "qmax"),
        (["--uiso", "-0.01"], "--uiso"),
        (["--backend", "srreal"], "srreal"),  # unless diffpy.srreal is installed
    ],
)
def test_simulate_bad_parameters(
    tmp_path: Path,
    au55_xyz: Path,
    capsys: pytest.CaptureFixture,
    extra: list[str],
    message: str,
) -> None:
    if extra[0] == "--backend":
        from diffpy_deepstruc import debye

        if debye.srreal_available():
            pytest.skip("diffpy.srreal is installed")
    out = tmp_path / "bad.gr"
    assert main(["simulate", str(au55_xyz), "-o", str(out), "--rmax", "5", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_simulate_bad_structure(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "nope.xyz"
    assert main(["simulate", str(missing), "-o", str(tmp_path / "o.gr")]) == 2
    assert "nope.xyz: file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.xyz"
    bad.write_text("2\ntitle\nAu 0 0 0\n")
    assert main(["simulate", str(bad), "-o", str(tmp_path / "o.gr")]) == 2
    assert "bad.xyz" in capsys.readouterr().err
    assert not (tmp_path / "o.gr").exists()


def test_simulate_help(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--rmin", "--qdamp", "--delta2", "--uiso", "--backend", "--force", "-o"):
        assert option in text
