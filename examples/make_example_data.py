"""Write the bundled example data in ``examples/data/``.

Usage::

    python examples/make_example_data.py            # structures only
    python examples/make_example_data.py --pdf      # also their simulated PDFs (.gr)
    python examples/make_example_data.py --force    # replace existing files

Structures:

``Au55_icosahedron.xyz``
    ASE's 55-atom Mackay icosahedron (``ase.cluster.Icosahedron('Au', 3)``) with the
    fcc lattice constant of bulk gold from ASE's reference states (4.08 A, nearest
    neighbours 2.885 A); the same cluster as ``shared/reference/srreal``'s.

With ``--pdf`` each structure's G(r) is simulated with the default
``debye.PDFParameters`` (DeepStruc's: r 0-30 A, Qmin 0.7, Qmax 25, Qdamp 0.04,
delta2 2) and Uiso 0.005 A^2, the same as ``deepstruc simulate STRUCTURE``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from ase.cluster import Icosahedron

from diffpy_deepstruc.elements import nearest_neighbour_distance
from diffpy_deepstruc.structures import atoms_to_structure, write_structure

DATA = Path(__file__).resolve().parent / "data"


def au55_icosahedron():
    """The Au55 Mackay icosahedron as a unit-lattice Structure (Uiso 0.005 A^2)."""
    a = nearest_neighbour_distance("Au") * math.sqrt(2.0)  # fcc lattice constant
    atoms = Icosahedron("Au", noshells=3, latticeconstant=a)
    atoms.info["title"] = f"Au55 Mackay icosahedron, ase.cluster.Icosahedron a={a:.4f} A"
    return atoms_to_structure(atoms, uiso=0.005)


STRUCTURES = {"Au55_icosahedron": au55_icosahedron}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdf", action="store_true", help="also write simulated PDFs")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    parser.add_argument("--out", type=Path, default=DATA, help="output folder")
    args = parser.parse_args(argv)
    for name, build in STRUCTURES.items():
        xyz = write_structure(build(), args.out / f"{name}.xyz", overwrite=args.force)
        print(f"wrote {xyz}")
        if args.pdf:
            from diffpy_deepstruc.cli import main as cli_main

            gr = args.out / f"{name}.gr"
            # relative paths: the header records the structure file as given
            os.chdir(args.out)
            argv_sim = ["simulate", xyz.name, "-o", gr.name, "--uiso", "0.005"]
            if args.force:
                argv_sim.append("--force")
            status = cli_main(argv_sim)
            if status:
                return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
