"""Solve the srreal set-A reference PDFs with the shipped model and report the result.

    python benchmarks/bench_reference_solve.py [--shared ../shared] [-n 20] [--workers 2]

For every set-A case in ``shared/reference/srreal/index.json`` (mono-metallic ones): the
top-ranked refined candidate's Rw, atom count against the truth, coordinate MAE
(DeepStruc's metric: optimal assignment, rotation and isotropic scale) against the
reference ``.xyz``, nearest-neighbour distance, and the wall time. Prints a markdown
table; ``--json`` also writes the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from _helpers import read_xyz  # noqa: E402


def solve_case(case: dict, ref: Path, n: int, workers: int, model) -> dict:
    """Solve one reference PDF; return its table row."""
    from diffpy_deepstruc.errors import DeepStrucError
    from diffpy_deepstruc.metrics import coordinate_mae
    from diffpy_deepstruc.solve import nearest_neighbour_distance, solve
    from diffpy_deepstruc.structures import structure_arrays

    xyz_true, elements = read_xyz(ref / case["structure"])
    row = {"case": case["gr"], "true_atoms": len(xyz_true)}
    t0 = time.perf_counter()
    try:
        res = solve(
            ref / case["gr"],
            n=n,
            element=elements[0],
            model=model,
            seed=0,
            qmin=0.7,
            qmax=25.0,
            qdamp=0.04,
            qbroad=0.0,
            rmin=1.5,
            workers=workers,
        )
    except DeepStrucError as exc:
        row.update(error=str(exc), seconds=time.perf_counter() - t0)
        return row
    best = res.best
    xyz = structure_arrays(best.structure)[0]
    row.update(
        rw=best.rw,
        atoms=best.n_atoms,
        mae=coordinate_mae(xyz, xyz_true)["mae"],
        nn=nearest_neighbour_distance(best.structure),
        source=best.source.split("{")[0].strip(),
        seconds=time.perf_counter() - t0,
        timings=res.timings,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default=None, help="checkpoint folder (default shipped)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from diffpy_deepstruc.generator import DeepStruc

    model = DeepStruc.load(args.model) if args.model else DeepStruc.pretrained()
    ref = args.shared / "reference" / "srreal"
    index = json.loads((ref / "index.json").read_text())
    rows = []
    for case in index["cases"]:
        if case["params"] != "A" or case["structure"].startswith("AuAg"):
            continue
        rows.append(solve_case(case, ref, args.n, args.workers, model))
        r = rows[-1]
        print(
            r["case"],
            {k: v for k, v in r.items() if k not in ("case", "timings")},
            flush=True,
        )
    print(
        "\n| case | true atoms | top Rw | atoms | coord. MAE (A) | NN (A) | s | top from |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(
                f"| {r['case']} | {r['true_atoms']} | error: {r['error']} | | | | "
                f"{r['seconds']:.1f} | |"
            )
        else:
            print(
                f"| {r['case']} | {r['true_atoms']} | {r['rw']:.3f} | {r['atoms']} | "
                f"{r['mae']:.3f} | {r['nn']:.3f} | {r['seconds']:.1f} | {r['source']} |"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
