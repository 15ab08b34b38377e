"""Loading, validating, resampling and writing PDF files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffpy_deepstruc.errors import (
    DeepStrucError,
    ElementError,
    OutputExistsError,
    PDFDataError,
)
from diffpy_deepstruc.pdfdata import (
    PDFData,
    elements_from_composition,
    load_pdf,
    parse_composition,
    resample,
    write_pdf,
)

R = np.round(np.arange(0.0, 10.0001, 0.1), 10)
G = np.exp(-((R - 2.8) ** 2) / 0.02) + 0.5 * np.exp(-((R - 4.0) ** 2) / 0.02) - 0.05 * R

XPDFSUITE_HEADER = """# xPDFsuite Configuration #
[PDF]
wavelength = 0.1
mode = xray
composition = Pt
qmin = 1.0
qmax = 22.0
rmin = 0.0
rmax = 10.0
rstep = 0.1

#### start data
#S 1
#L r($\\AA$)  G($\\AA^{-2}$)
"""


def table(*columns: np.ndarray) -> str:
    """Whitespace-separated numeric table, one row per line."""
    return "".join(
        " ".join(f"{v:.6g}" for v in row) + "\n" for row in zip(*columns, strict=True)
    )


GOOD = XPDFSUITE_HEADER + table(R, G)


def _bad_cases() -> list[tuple[str, bytes | None, str]]:
    """(id, file content or None for a missing file, expected message fragment)."""
    lines = GOOD.splitlines(keepends=True)
    first = GOOD.count("\n", 0, GOOD.index("#L")) + 2  # line number of the first data row
    nan = list(lines)
    nan[first + 4] = "0.5 nan\n"
    inf = list(lines)
    inf[first + 4] = "0.5 -inf\n"
    text_in_data = list(lines)
    text_in_data[first + 5] = "oops this is text\n"
    three_cols = list(lines)
    three_cols[first + 6] = "0.6 0.1 0.2\n"
    dup = list(lines)
    dup[first + 3] = lines[first + 2]
    dec = list(lines)
    dec[first + 2], dec[first + 3] = lines[first + 3], lines[first + 2]
    neg_dg = table(R, G, np.zeros_like(R), np.r_[-0.1, np.full(R.size - 1, 0.01)])
    return [
        ("missing file", None, "file not found"),
        ("empty file", b"", "file is empty"),
        ("blank file", b"  \n\n \t\n", "file is empty"),
        (
            "binary file",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
            "NUL byte",
        ),
        (
            "non-UTF-8 text",
            GOOD.replace("xPDFsuite", "\xc5ngstr\xf6m").encode("latin-1"),
            "not a UTF-8 text file (byte 0xc5 on line 1)",
        ),
        (
            "control characters",
            GOOD.replace("mode", "mo\x07de").encode(),
            "control character",
        ),
        ("old Mac line endings", GOOD.replace("\n", "\r").encode(), "CR only"),
        (
            "header without data",
            XPDFSUITE_HEADER.encode(),
            "no data after the '#### start data'",
        ),
        ("header, no marker, no data", b"title\nqmax = 25\n", "header but no data"),
        (
            "text inside the data",
            "".join(text_in_data).encode(),
            f"line {first + 6}: expected numbers after the '#### start data' line",
        ),
        (
            "column count changes",
            "".join(three_cols).encode(),
            f"line {first + 7}: 3 columns, but the data start on line {first} with 2",
        ),
        ("single column", table(R).encode(), "only one column of numbers (line 1)"),
        ("NaN", "".join(nan).encode(), f"line {first + 5}: nan in column 2"),
        ("infinity", "".join(inf).encode(), f"line {first + 5}: -inf in column 2"),
        ("negative r", table(R - 1.0, G).encode(), "line 1: negative r = -1"),
        (
            "r decreasing",
            "".join(dec).encode(),
            f"line {first + 4}: r = 0.3 is not larger than r = 0.4",
        ),
        ("duplicate r", "".join(dup).encode(), f"line {first + 4}: duplicate r = 0.3"),
        ("too few points", table(R[:5], G[:5]).encode(), "only 5 data points (lines 1-5)"),
        ("r in nanometres", table(R / 10, G).encode(), "r seems to be in nanometres"),
        ("G all zero", table(R, 0 * G).encode(), "G(r) is zero everywhere"),
        ("negative dG", neg_dg.encode(), "line 1: negative dG = -0.1"),
        (
            "data block ambiguous",
            (
                "#### start data\n"
                + table(R[:5], G[:5])
                + "# comment\n"
                + table(R[5:], G[5:])
            ).encode(),
            "ambiguous data block: diffpy.utils load_data reads (96, 2) values, but lines "
            "2-103 hold 101 rows of 2 columns",
        ),
    ]


BAD_CASES = _bad_cases()


@pytest.mark.parametrize(
    ("content", "fragment"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_inputs(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    path = tmp_path / "bad.gr"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PDFDataError) as info:
        load_pdf(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert fragment in message, message
    assert isinstance(info.value, DeepStrucError) and isinstance(info.value, ValueError)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(PDFDataError, match="not a regular file"):
        load_pdf(tmp_path)


def test_good_xpdfsuite_style(tmp_path: Path) -> None:
    path = tmp_path / "good.gr"
    path.write_text(GOOD)
    pdf = load_pdf(path)
    np.testing.assert_allclose(pdf.r, R)
    np.testing.assert_allclose(pdf.g, G, rtol=1e-5, atol=1e-6)
    assert pdf.dg is None and pdf.source == str(path)
    assert pdf.qmin == 1.0 and pdf.qmax == 22.0 and pdf.wavelength == 0.1
    assert pdf.qdamp is None and pdf.qbroad is None
    assert pdf.composition == "Pt" and pdf.elements == ["Pt"]
    assert pdf.metadata["mode"] == "xray"


def test_plain_two_columns_without_header(tmp_path: Path) -> None:
    path = tmp_path / "plain.gr"
    path.write_text(table(R, G))
    pdf = load_pdf(path)
    assert pdf.r.size == R.size and pdf.metadata == {}
    assert pdf.qmax is None and pdf.composition is None and pdf.elements is None


def test_columns_and_dg(tmp_path: Path) -> None:
    dr, dg = np.zeros_like(R), np.full_like(R, 0.02)
    # 3 columns without labels: PDFgui / pdffit2 / srfit read r G dr -> no dG
    p3 = tmp_path / "three.gr"
    p3.write_text(table(R, G, np.full_like(R, 0.01)))
    assert load_pdf(p3).dg is None
    # 3 columns labelled r G dG
    p3l = tmp_path / "three_labelled.gr"
    p3l.write_text("#L r G(r) dG(r)\n" + table(R, G, dg))
    np.testing.assert_allclose(load_pdf(p3l).dg, dg)
    # 4 columns (PDFgui, PDFgetX2, Mantid): r G dr dG
    p4 = tmp_path / "four.gr"
    p4.write_text(table(R, G, dr, dg))
    np.testing.assert_allclose(load_pdf(p4).dg, dg)
    # a dG column of zeros means "unknown" (as diffpy.srfit reads it)
    p0 = tmp_path / "four_zero.gr"
    p0.write_text(table(R, G, dr, dr))
    assert load_pdf(p0).dg is None


def test_pdfgetx2_and_mantid_headers(tmp_path: Path) -> None:
    pdfgetx2 = (
        "History written: Mon Jan 1 2001\nproduced by someone\n##### start data\n"
        "#O0 rg_int sig_rg_int low_int sig_low_int rmax rhofit\n"
        "#S 1 - PDF from PDFgetX2\n#P0 -22.0 1.1 2556.2 0.03 1.50 0.5985\n"
        "#L r G(r) dr dG(r)\n"
    ) + table(R, G, np.zeros_like(R), np.full_like(R, 0.03))
    p = tmp_path / "x2.gr"
    p.write_text(pdfgetx2)
    pdf = load_pdf(p)
    assert pdf.r.size == R.size
    np.testing.assert_allclose(pdf.dg, 0.03)
    mantid = "#Comment: neutron, Qmin=0.910607, Qmax=34.9906\n##### start data\n" + (
        "#S 1 - PDF from Mantid 6.10\n#L r G(r) dr dG(r)\n"
        + table(R, G, 0 * R, 0 * R + 0.1)
    )
    p = tmp_path / "mantid.gr"
    p.write_text(mantid)
    pdf = load_pdf(p)
    assert pdf.qmin == pytest.approx(0.910607) and pdf.qmax == pytest.approx(34.9906)


def test_crlf_and_trailing_blank_lines(tmp_path: Path) -> None:
    p = tmp_path / "crlf.gr"
    p.write_bytes((GOOD + "\n\n").replace("\n", "\r\n").encode())
    pdf = load_pdf(p)
    assert pdf.r.size == R.size and pdf.qmax == 22.0


def test_experimental_pt(experimental_dir: Path) -> None:
    pdf = load_pdf(experimental_dir / "JQ_S1.gr")
    assert pdf.qmax == pytest.approx(22.0, abs=0.01)
    assert pdf.qmin == pytest.approx(1.0)
    assert pdf.composition == "Pt" and pdf.elements == ["Pt"]
    assert pdf.wavelength == pytest.approx(0.1)
    assert pdf.r[0] == 0.0 and pdf.r[-1] == pytest.approx(50.0) and pdf.r.size == 5001
    assert pdf.dg is None
    # the Pt nearest-neighbour peak: the strongest peak sits near 2.77 A
    assert 2.6 < pdf.r[np.argmax(pdf.g)] < 2.9


def test_experimental_au144(experimental_dir: Path) -> None:
    pdf = load_pdf(experimental_dir / "Au144PET_100K-00000.gr")
    assert pdf.qmax == pytest.approx(26.0)
    assert pdf.qmin == pytest.approx(0.8)
    assert pdf.elements == ["Au", "S", "C"]
    assert pdf.r[-1] == pytest.approx(30.0) and pdf.r.size == 3001


def test_srreal_reference_json_header(srreal_dir: Path) -> None:
    pdf = load_pdf(srreal_dir / "Au55_icosahedron_B.gr")
    assert pdf.qmin == 1.0 and pdf.qmax == 22.0
    assert pdf.qdamp == 0.03 and pdf.qbroad == 0.02
    assert pdf.metadata["uiso"] == 0.01 and pdf.metadata["delta2"] == 0.0


def test_write_load_round_trip(tmp_path: Path) -> None:
    meta = {
        "qmin": 0.7,
        "qmax": 25.0,
        "composition": "Au55",
        "natoms": 55,
        "structure": "/some where/Au55 icosahedron.xyz",
        "skipped": None,
        "flags": [1, 2],
        "ok": True,
    }
    out = write_pdf(tmp_path / "sim.gr", R, G, meta)
    text = out.read_text()
    assert "qmax = 25.0\n" in text and "#### start data\n#S 1\n#L r(A) G(A^-2)\n" in text
    assert "skipped" not in text
    pdf = load_pdf(out)
    np.testing.assert_array_equal(pdf.r, R)  # repr round-trips exactly
    np.testing.assert_array_equal(pdf.g, G)
    assert pdf.qmax == 25.0 and pdf.composition == "Au55" and pdf.metadata["natoms"] == 55
    assert pdf.metadata["structure"] == "/some where/Au55 icosahedron.xyz"
    dg = np.full_like(R, 0.01)
    out2 = write_pdf(tmp_path / "sim_dg.gr", R, G, meta, dg=dg)
    np.testing.assert_array_equal(load_pdf(out2).dg, dg)


def test_written_file_reads_in_srfit(tmp_path: Path) -> None:
    pdfparser = pytest.importorskip("diffpy.srfit.pdf.pdfparser")
    out = write_pdf(
        tmp_path / "sim.gr", R, G, {"qmax": 25.0, "qdamp": 0.04}, dg=np.full_like(R, 0.01)
    )
    parser = pdfparser.PDFParser()
    parser.parseFile(str(out))
    r, g, dr, dg = parser.getData(0)
    np.testing.assert_allclose(r, R)
    np.testing.assert_allclose(dg, 0.01)
    assert dr is None  # dr = 0 is read as "no dr"
    meta = parser.getMetaData()
    assert meta["qmax"] == 25.0 and meta["qdamp"] == 0.04


def test_write_refuses_overwrite_and_bad_input(tmp_path: Path) -> None:
    out = write_pdf(tmp_path / "a.gr", R, G, {})
    before = out.read_bytes()
    with pytest.raises(OutputExistsError, match="a.gr"):
        write_pdf(out, R, 2 * G, {})
    assert out.read_bytes() == before
    write_pdf(out, R, 2 * G, {}, overwrite=True)
    np.testing.assert_array_equal(load_pdf(out).g, 2 * G)
    with pytest.raises(PDFDataError, match="key"):
        write_pdf(tmp_path / "b.gr", R, G, {"bad key": 1})
    with pytest.raises(PDFDataError, match="single line"):
        write_pdf(tmp_path / "b.gr", R, G, {"k": "two\nlines"})
    with pytest.raises(PDFDataError, match="strictly"):
        write_pdf(tmp_path / "b.gr", R[::-1], G, {})
    with pytest.raises(PDFDataError, match="NaN"):
        write_pdf(tmp_path / "b.gr", R, G * np.nan, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gr"]


def test_pdfdata_validation() -> None:
    with pytest.raises(PDFDataError, match="points"):
        PDFData(r=[1, 2, 3], g=[1, 2])
    with pytest.raises(PDFDataError, match="strictly"):
        PDFData(r=[1, 1, 3], g=[1, 2, 3])
    with pytest.raises(PDFDataError, match="dG must be positive"):
        PDFData(r=[1, 2, 3], g=[1, 2, 3], dg=[0, 1, 1])
    pdf = PDFData(r=[1, 2, 3], g=[1, 2, 3], metadata={"QMAX": "25", "Qsig": 0.04})
    assert pdf.qmax == 25.0 and pdf.qdamp == 0.04 and pdf.qmin is None


def test_resample() -> None:
    pdf = PDFData(
        r=R, g=G, dg=np.full_like(R, 0.02), metadata={"qmax": 25.0}, source="x.gr"
    )
    grid = np.linspace(1.0, 9.0, 17)
    out = resample(pdf, grid)
    np.testing.assert_allclose(out.g, np.interp(grid, R, G))
    np.testing.assert_allclose(out.dg, 0.02)
    assert out.qmax == 25.0 and out.source == "x.gr"
    with pytest.raises(PDFDataError, match=r"x.gr: cannot resample to r = 5..12 A"):
        resample(pdf, np.linspace(5, 12, 8))
    filled = resample(pdf, np.linspace(5, 12, 8), fill_zero=True)
    assert np.all(filled.g[filled.r > 10] == 0)
    with pytest.raises(PDFDataError, match="strictly increasing"):
        resample(pdf, [3, 2, 1])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Pt", ["Pt"]),
        ("Au144 S60 C480", ["Au", "S", "C"]),
        ("Au144S60C180", ["Au", "S", "C"]),
        ("Pt0.5Pd0.5", ["Pt", "Pd"]),
        ("Ga Nb4 Se8", ["Ga", "Nb", "Se"]),
        (" Fe2, O3 ", ["Fe", "O"]),
        ("Au Au", ["Au"]),
    ],
)
def test_elements_from_composition(text: str, expected: list[str]) -> None:
    assert elements_from_composition(text) == expected


def test_parse_composition_counts() -> None:
    assert parse_composition("Au144 S60 C180") == {"Au": 144.0, "S": 60.0, "C": 180.0}
    assert parse_composition("Au Au2") == {"Au": 3.0}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("Xy2", "unknown element 'Xy'"),
        ("Au144(PET)60", "unexpected"),
        ("pt", "unexpected"),
        ("Au0", "positive"),
    ],
)
def test_composition_errors(text: str, match: str) -> None:
    with pytest.raises(ElementError, match=match):
        elements_from_composition(text)


def test_docs_io_lists_the_exact_messages(tmp_path: Path) -> None:
    """docs/io.md quotes every bad-input message verbatim (for a file named bad.gr)."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "io.md"
    if not doc.is_file():
        pytest.skip("docs/io.md not present (installed package)")
    text = doc.read_text(encoding="utf-8")
    path = tmp_path / "bad.gr"
    for name, content, _ in BAD_CASES:
        path.unlink(missing_ok=True)
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(PDFDataError) as info:
            load_pdf(path)
        message = f"PDFDataError: {info.value}".replace(str(path), "bad.gr")
        assert f"`{message}`" in text, (name, message)
