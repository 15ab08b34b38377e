"""The README's off-catalog table from the two halves written by ``benchmarks/tables.sh``.

Usage::

    python benchmarks/offcatalog_table.py runs/tables
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_offcatalog import print_table, summarise  # noqa: E402

ORDER = ["offcentre", "vacancies", "partial_shell", "relaxed", "rods", "large", "sp_metals"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0] if args else "runs/tables")
    rows = []
    for part in ("A", "B"):
        rows += json.loads((folder / f"offcat_{part}.json").read_text())["rows"]
    print_table(sorted(summarise(rows), key=lambda s: ORDER.index(s["kind"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
