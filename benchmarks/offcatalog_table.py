"""The README's off-catalog table from the two halves written by ``benchmarks/tables.sh``.

Usage::

    python benchmarks/offcatalog_table.py runs/tables
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_offcatalog import summarise  # noqa: E402

ORDER = ["offcentre", "vacancies", "partial_shell", "relaxed", "rods", "large", "sp_metals"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0] if args else "runs/tables")
    rows = []
    for part in ("A", "B"):
        rows += json.loads((folder / f"offcat_{part}.json").read_text())["rows"]
    summary = sorted(summarise(rows), key=lambda s: ORDER.index(s["kind"]))
    print(
        "| kind | particles | atoms | refused | exact count | median sites matched | "
        "exact & >= 90 % sites | median dRw | max dRw | dRw <= 0.01 | top from | "
        "median s | max s |"
    )
    print("|---" * 13 + "|")
    for s in summary:
        print(
            f"| {s['kind']} | {s['n']} | {s['atoms']} | {s['refused']} | {s['exact']} | "
            f"{s['sites_median']:.2f} | {s['exact_90']} | {s['d_rw_median']:.3f} | "
            f"{s['d_rw_max']:.3f} | {s['within_001']} | {s['top_from']} | "
            f"{s['seconds_median']:.1f} | {s['seconds_max']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
