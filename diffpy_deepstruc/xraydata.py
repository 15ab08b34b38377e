"""The xraydb numbers the package uses, from a table shipped with it.

Two of xraydb's tables are copied once into ``tables/xraydata.json``, so that computing
a PDF needs neither xraydb's SQLite database nor its import (about 0.2 s in every
process, and in every worker of a solve):

* the Waasmaier-Kirfel form-factor coefficients (Waasmaier & Kirfel, Acta Cryst. A51,
  416, 1995); :func:`f0` evaluates them exactly as ``xraydb.f0`` does, to the last bit;
* each element's density and atomic mass (:func:`atomic_density_mass`), as
  ``xraydb.atomic_density`` and ``xraydb.atomic_mass`` give them.

``tests/test_xraydata.py`` checks both against the installed xraydb.  Rebuild the
table with::

    python -m diffpy_deepstruc.xraydata diffpy_deepstruc/tables/xraydata.json
"""

from __future__ import annotations

import functools
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TABLE_NAME", "atomic_density_mass", "f0", "has_f0", "ions", "table_from_xraydb"]

#: File of the coefficient table inside the package's ``tables`` folder.
TABLE_NAME = "xraydata.json"


@functools.cache
def _raw() -> dict[str, Any]:
    text = (resources.files("diffpy_deepstruc") / "tables" / TABLE_NAME).read_text(
        encoding="utf-8"
    )
    return json.loads(text)


@functools.cache
def _table() -> dict[str, tuple[float, tuple[float, ...], tuple[float, ...]]]:
    """Ion -> (offset, scales, exponents)."""
    rows = _raw()["waasmaier"]
    return {
        ion: (
            float(r["offset"]),
            tuple(map(float, r["scale"])),
            tuple(map(float, r["exponents"])),
        )
        for ion, r in rows.items()
    }


def ions() -> list[str]:
    """Every ion (and neutral element) the table covers, e.g. ``"Au"``, ``"Fe2+"``."""
    return list(_table())


def has_f0(ion: str) -> bool:
    """Whether the table has ``ion`` (xraydb's spelling: ``ion.title()``)."""
    return ion.title() in _table()


def atomic_density_mass(symbol: str) -> tuple[float, float] | None:
    """Density (g/cm^3) and atomic mass (u) of element ``symbol``, or None if unknown."""
    row = _raw()["elements"].get(symbol)
    return None if row is None else (float(row["density"]), float(row["mass"]))


def f0(ion: str, q: Any) -> np.ndarray:
    """Elastic X-ray form factor of ``ion`` at ``q = sin(theta) / lambda`` (1/A).

    Parameters
    ----------
    ion : str
        Element or ion symbol (``"Au"``, ``"Fe2+"``), matched as ``xraydb.f0`` matches
        it (``ion.title()``).
    q : float or array_like
        sin(theta)/lambda = Q / (4 pi).

    Returns
    -------
    ndarray
        ``offset + sum_i scale_i exp(-exponent_i q^2)``, the same numbers as
        ``xraydb.f0(ion, q)``.

    Raises
    ------
    ValueError
        When the table has no such ion (as xraydb).
    """
    row = _table().get(ion.title())
    if row is None:
        raise ValueError(f"No ion {ion} from Waasmaier table")
    offset, scales, exponents = row
    q = np.asarray(q, dtype=float)
    if q.ndim == 0:
        q = q.reshape(1)
    out = offset
    for s, e in zip(scales, exponents, strict=True):
        out += s * np.exp(-e * q * q)
    return out


def table_from_xraydb() -> dict[str, Any]:
    """The shipped table, read from the installed xraydb (for the rebuild)."""
    import xraydb

    db = xraydb.get_xraydb()
    rows = db.get_cache("Waasmaier")
    out: dict[str, Any] = {}
    for r in rows:
        if r.ion in out:  # xraydb.f0 takes the first row of an ion
            continue
        out[r.ion] = {
            "atomic_number": int(r.atomic_number),
            "offset": float(r.offset),
            "scale": [float(v) for v in json.loads(r.scale)],
            "exponents": [float(v) for v in json.loads(r.exponents)],
        }
    elements = {
        e.element: {"atomic_number": int(e.atomic_number), "density": float(e.density),
                   "mass": float(e.molar_mass)}
        for e in db.get_cache("elements")
    }  # fmt: skip
    return {
        "source": "xraydb: Waasmaier table (Waasmaier & Kirfel, Acta Cryst. A51, 416, "
        "1995) and elements table",
        "xraydb_version": str(getattr(xraydb, "__version__", "")),
        "formula": "f0(q) = offset + sum_i scale_i exp(-exponents_i q^2), q = sin(theta)/lambda",
        "waasmaier": out,
        "elements": elements,
    }


def main(argv: list[str] | None = None) -> int:
    """Write the table from the installed xraydb: ``python -m diffpy_deepstruc.xraydata FILE``."""
    from .fileio import atomic_write_text

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m diffpy_deepstruc.xraydata OUTPUT.json", file=sys.stderr)
        return 2
    text = json.dumps(table_from_xraydb(), indent=1) + "\n"
    atomic_write_text(Path(args[0]), text, overwrite=True)
    print(f"wrote {args[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
