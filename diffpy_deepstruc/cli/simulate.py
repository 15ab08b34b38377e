"""``deepstruc simulate``: the PDF of a structure file, written as a ``.gr`` file.

Reads the structure (xyz, stru, cif, pdb... see
:func:`diffpy_deepstruc.structures.read_structure`), sets the displacement parameters,
computes G(r) with :func:`diffpy_deepstruc.debye.pdf_from_structure` and writes it with
:func:`diffpy_deepstruc.pdfdata.write_pdf`, the header recording every parameter, the
structure file and the package version.

Uiso (A^2) of every atom: ``--uiso`` when given; otherwise the file's values when any
of them is nonzero (``.stru``, ``.cif``); otherwise (``.xyz`` files carry none)
:data:`diffpy_deepstruc.structures.DEFAULT_UISO` = 0.005.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import ParameterError
from ..fileio import check_writable
from ._args import path_arg

#: Options that map one-to-one onto ``debye.PDFParameters`` fields.
PARAMETER_OPTIONS: tuple[tuple[str, str], ...] = (
    ("rmin", "smallest r (A)"),
    ("rmax", "r-grid end (A), exclusive"),
    ("rstep", "r-grid step (A)"),
    ("qmin", "Qmin of the Fourier transform (1/A)"),
    ("qmax", "Qmax of the Fourier transform (1/A)"),
    ("qdamp", "Gaussian damping of the instrument resolution (1/A)"),
    ("qbroad", "peak broadening from the Q resolution (1/A)"),
    ("delta1", "1/r correlated-motion peak sharpening (A)"),
    ("delta2", "1/r^2 correlated-motion peak sharpening (A^2)"),
    ("scale", "overall scale factor"),
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Declare ``deepstruc simulate`` and its arguments."""
    p = subparsers.add_parser(
        "simulate",
        help="compute the PDF of a structure file",
        description=(
            "Compute the X-ray PDF G(r) of a cluster (xyz, stru, cif, pdb...) with the "
            "Debye equation, as diffpy.srreal's DebyePDFCalculator does, and write it "
            "as a .gr file whose header records every parameter. Unset parameters take "
            "the defaults of diffpy_deepstruc.debye.PDFParameters (DeepStruc's: r 0-30 "
            "A step 0.01, Qmin 0.7, Qmax 25, Qdamp 0.04, delta2 2)."
        ),
    )
    p.add_argument("structure", metavar="STRUCTURE", type=path_arg, help="structure file")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        type=path_arg,
        metavar="OUT.gr",
        help="PDF file to write",
    )
    for name, text in PARAMETER_OPTIONS:
        p.add_argument(f"--{name}", type=float, default=None, metavar="X", help=text)
    p.add_argument(
        "--uiso",
        type=float,
        default=None,
        metavar="U",
        help="isotropic displacement parameter of every atom (A^2); default: the file's "
        "values if any is nonzero, else 0.005",
    )
    p.add_argument(
        "--backend",
        choices=("auto", "torch", "srreal"),
        default="auto",
        help="Debye engine: torch (built in), srreal (diffpy.srreal if installed), auto",
    )
    p.add_argument("--force", action="store_true", help="overwrite OUT.gr if it exists")
    return p


def _composition(elements: list[str]) -> str:
    """``"Au55"`` or ``"Ag42 Au13"`` in order of first appearance."""
    return " ".join(f"{el}{n}" for el, n in Counter(elements).items())


def choose_uiso(file_uiso: np.ndarray, option: float | None) -> tuple[np.ndarray, str]:
    """Uiso per atom and where it came from (``option``, ``file`` or ``default``).

    Parameters
    ----------
    file_uiso : ndarray, shape (N,)
        The values read from the structure file (0 when it has none).
    option : float or None
        ``--uiso``.

    Returns
    -------
    uiso : ndarray, shape (N,)
    source : str
    """
    from ..structures import DEFAULT_UISO

    if option is not None:
        if not math.isfinite(option) or option < 0:
            raise ParameterError(f"--uiso must be a finite number >= 0 A^2, got {option}")
        return np.full(file_uiso.shape, float(option)), "option"
    if np.any(file_uiso > 0):
        return np.asarray(file_uiso, dtype=float), "file"
    return np.full(file_uiso.shape, DEFAULT_UISO), "default"


def run(args: argparse.Namespace) -> int:
    """Compute and write the PDF; return 0."""
    from .. import debye
    from ..pdfdata import write_pdf
    from ..structures import arrays_to_structure, read_structure, structure_arrays

    out = check_writable(args.output, args.force)
    given = {name: getattr(args, name) for name, _ in PARAMETER_OPTIONS}
    params = debye.PDFParameters(**{k: v for k, v in given.items() if v is not None})
    params.validate()

    path = Path(args.structure)
    structure = read_structure(path)
    xyz, elements, file_uiso = structure_arrays(structure)
    uiso, uiso_source = choose_uiso(file_uiso, args.uiso)
    cluster = arrays_to_structure(xyz, elements, uiso=uiso, title=structure.title)

    r, g = debye.pdf_from_structure(cluster, params, backend=args.backend)

    metadata: dict[str, object] = {
        "generator": f"diffpy-deepstruc {__version__} simulate (Debye equation)",
        "mode": "xray",
        "structure": str(path.resolve()),
        "title": " ".join(str(structure.title).split()) or None,
        "natoms": len(elements),
        "composition": _composition(elements),
        "backend": args.backend,
        **params.to_dict(),
        "uiso_source": uiso_source,
    }
    if np.all(uiso == uiso[0]):
        metadata["uiso"] = float(uiso[0])
    else:
        metadata.update(
            uiso="per-atom", uiso_min=float(uiso.min()), uiso_max=float(uiso.max())
        )
    written = write_pdf(out, r, g, metadata, overwrite=args.force)
    print(
        f"wrote {written}: G(r) of {path.name} ({len(elements)} atoms, "
        f"{metadata['composition']}), r = {r[0]:g}..{r[-1]:g} A, {r.size} points"
    )
    return 0
