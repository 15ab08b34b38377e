"""Property tests: ``load_pdf`` returns valid data or raises a documented error.

Random bytes, random text, random number tables and mutated real-looking files are
written to disk; :func:`load_pdf` must either return a :class:`PDFData` that satisfies
its invariants or raise a :class:`~diffpy_deepstruc.errors.DeepStrucError` subclass --
never a bare ``ValueError``, ``IndexError``, ``UnicodeDecodeError``...
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffpy_deepstruc.errors import DeepStrucError
from diffpy_deepstruc.pdfdata import MIN_POINTS, PDFData, load_pdf

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_counter = itertools.count()

HEADER_LINES = [
    "# xPDFsuite Configuration #",
    "[PDF]",
    "wavelength = 0.1",
    "qmax = 25",
    "qmin = nan",
    "composition = Au144 S60 C180",
    "composition = ???",
    "qdamp = 0.04 = 0.05",
    "#### start data",
    "##### start data",
    "#S 1",
    "#L r G(r) dr dG(r)",
    "#L r G dG",
    '# {"qmax": 22.0, "uiso": [1, 2]}',
    "# {broken json",
    "#Comment: neutron, Qmin=0.9, Qmax=35",
    "",
    "   ",
    "text line",
]

NUMBER_TOKENS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr),
    st.integers(-1000, 1000).map(str),
    st.sampled_from(
        ["nan", "-inf", "1e999", "1_0", "0x10", "1,5", "1.2.3", "--1", ".", "e5"]
    ),
)


def _check(path: Path) -> None:
    """Load ``path``; assert valid data or a documented error."""
    try:
        pdf = load_pdf(path)
    except DeepStrucError as exc:
        assert str(path) in str(exc)
        return
    assert isinstance(pdf, PDFData)
    assert pdf.r.ndim == 1 and pdf.r.shape == pdf.g.shape and pdf.r.size >= MIN_POINTS
    assert np.all(np.isfinite(pdf.r)) and np.all(np.isfinite(pdf.g))
    assert np.all(np.diff(pdf.r) > 0) and pdf.r[0] >= 0
    assert np.any(pdf.g != 0)
    if pdf.dg is not None:
        assert pdf.dg.shape == pdf.r.shape and np.all(pdf.dg > 0)
    for value in (pdf.qmin, pdf.qmax, pdf.qdamp, pdf.qbroad, pdf.wavelength):
        assert value is None or math.isfinite(value)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _write(folder: Path, content: bytes) -> Path:
    path = folder / f"case{next(_counter)}.gr"
    path.write_bytes(content)
    return path


@SETTINGS
@given(content=st.binary(max_size=2000))
def test_random_bytes(fuzz_dir: Path, content: bytes) -> None:
    _check(_write(fuzz_dir, content))


@SETTINGS
@given(content=st.text(max_size=2000))
def test_random_text(fuzz_dir: Path, content: str) -> None:
    _check(_write(fuzz_dir, content.encode("utf-8", "surrogatepass")))


@SETTINGS
@given(
    header=st.lists(st.sampled_from(HEADER_LINES), max_size=8),
    rows=st.lists(st.lists(NUMBER_TOKENS, min_size=1, max_size=5), max_size=40),
    sep=st.sampled_from([" ", "\t", "  ", " , "]),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_random_number_tables(
    fuzz_dir: Path, header: list[str], rows: list[list[str]], sep: str, newline: str
) -> None:
    lines = header + [sep.join(row) for row in rows]
    _check(_write(fuzz_dir, newline.join(lines).encode()))


@SETTINGS
@given(
    n=st.integers(0, 60),
    ncols=st.integers(1, 5),
    step=st.floats(-0.5, 1.0),
    r0=st.floats(-5.0, 5.0),
    scale=st.floats(0.0, 1e6),
    header=st.lists(st.sampled_from(HEADER_LINES), max_size=6),
    data=st.data(),
)
def test_numeric_tables(
    fuzz_dir: Path,
    n: int,
    ncols: int,
    step: float,
    r0: float,
    scale: float,
    header: list[str],
    data: st.DataObject,
) -> None:
    r = r0 + step * np.arange(n)
    cols = [r] + [
        scale * np.asarray(data.draw(st.lists(st.floats(-1, 1), min_size=n, max_size=n)))
        for _ in range(ncols - 1)
    ]
    lines = header + [" ".join(repr(float(c[i])) for c in cols) for i in range(n)]
    _check(_write(fuzz_dir, "\n".join(lines).encode()))


GOOD_LINES = ["qmax = 25", "composition = Pt", "#### start data", "#L r G"] + [
    f"{0.1 * i:.1f} {math.sin(2.2 * 0.1 * i) * math.exp(-0.01 * i):.6f}" for i in range(60)
]


@SETTINGS
@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(["delete", "insert", "replace", "duplicate"]),
            st.integers(0, len(GOOD_LINES) - 1),
            st.one_of(
                st.sampled_from(HEADER_LINES),
                st.text(max_size=30),
                st.lists(NUMBER_TOKENS, max_size=4).map(" ".join),
            ),
        ),
        max_size=6,
    )
)
def test_mutated_good_file(fuzz_dir: Path, edits: list[tuple[str, int, str]]) -> None:
    lines = list(GOOD_LINES)
    for kind, i, text in edits:
        i = min(i, len(lines) - 1) if lines else 0
        if kind == "delete" and lines:
            del lines[i]
        elif kind == "insert":
            lines.insert(i, text)
        elif kind == "replace" and lines:
            lines[i] = text
        elif kind == "duplicate" and lines:
            lines.insert(i, lines[i])
    _check(_write(fuzz_dir, "\n".join(lines).encode("utf-8", "surrogatepass")))


def test_good_file_loads(fuzz_dir: Path) -> None:
    """The unmutated base of the mutation test is valid."""
    pdf = load_pdf(_write(fuzz_dir, "\n".join(GOOD_LINES).encode()))
    assert pdf.r.size == 60 and pdf.qmax == 25.0
