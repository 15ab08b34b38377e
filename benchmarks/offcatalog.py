"""Off-catalog benchmark particles: imperfect, large and s/p-block metal nanoparticles.

A generator of test particles that are *not* the catalog's ideal cuts, with PDFs
simulated like measured data, for the benchmarks of issues 13, 14 and 16:

>>> import sys; sys.path.insert(0, "benchmarks")           # doctest: +SKIP
>>> from offcatalog import make_offcatalog, simulate         # doctest: +SKIP
>>> parts = make_offcatalog("vacancies", 8)                  # doctest: +SKIP
>>> pdf = simulate(parts[0])                                 # a PDFData, r 0-40 A

Kinds (:data:`KINDS`), every one at most 200 atoms except ``"large"``:

=================  ==================================================================
kind               particles
=================  ==================================================================
``offcentre``      spheres and ellipsoids cut from fcc, bcc, hcp and sc lattices with
                   the centre off the lattice site (30-200 atoms)
``vacancies``      ideal clusters (lattice spheres, icosahedra, decahedra, octahedra)
                   with 6-15 surface atoms removed
``partial_shell``  icosahedra, decahedra and octahedra whose outer shell holds a
                   contiguous patch of 20-80 % of its atoms
``relaxed``        ideal clusters relaxed with ASE's EMT (Al, Cu, Ag, Au, Ni, Pd, Pt) or,
                   for one particle in four, other metals with the contraction model
``rods``           rods along low-index directions of fcc, bcc and hcp lattices
``large``          250-3000 atoms: icosahedra, decahedra, octahedra, off-centre lattice
                   spheres and twinned fcc particles
``sp_metals``      s- and p-block metals, particle i of Al, Pb, Mg, Sn, Ca, Li, In, K, Sr,
                   Na, Ba, Tl, Ga, Bi (i mod 14), as ideal and off-centre cuts of their
                   own lattice
=================  ==================================================================

Determinism and independence: particle ``i`` of kind ``k`` is drawn from
``numpy.random.default_rng(SeedSequence(seed, spawn_key=(crc32(k), i)))`` with
``seed = 20261129`` by default, so the first 8 particles of a kind are the same
whatever ``count`` is, and no stream coincides with the training catalog's
(``SeedSequence(catalog_seed, spawn_key=(row,))``).  The numbers in this file were
fixed before any model was evaluated on them and are not to be tuned on results.

Instrument parameters are drawn per particle like real data: qmin 0.5-1.5, qmax 18-28,
qdamp 0.02-0.05, qbroad 0-0.02 (1/A), delta2 1-4 A^2, uiso 0.003-0.012 A^2 and noise
0.5-2 % of max|G| (band-limited, as a measurement's noise: white on S(Q) over
[qmin, qmax)).

``python benchmarks/offcatalog.py --out DIR --count 8`` writes ``DIR/<name>.gr`` (header:
qmin, qmax, qdamp, qbroad, composition; columns r G dr dG), ``DIR/<name>.xyz`` (the
truth) and ``DIR/index.json`` (every particle's kind, element, truth type, atom count,
builder arguments and PDF parameters).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffpy_deepstruc import clusters, imperfect  # noqa: E402
from diffpy_deepstruc.catalog import _noise as band_noise  # noqa: E402
from diffpy_deepstruc.elements import nearest_neighbour_distance  # noqa: E402
from diffpy_deepstruc.errors import DeepStrucError, ParameterError  # noqa: E402

__all__ = [
    "DEFAULT_SEED",
    "KINDS",
    "PDF_RANGES",
    "OffCatalogParticle",
    "make_offcatalog",
    "make_particle",
    "simulate",
    "write_offcatalog",
]

DEFAULT_SEED = 20261129

KINDS: tuple[str, ...] = (
    "offcentre",
    "vacancies",
    "partial_shell",
    "relaxed",
    "rods",
    "large",
    "sp_metals",
)

#: Instrument / sample parameter ranges, drawn uniformly per particle.
PDF_RANGES: dict[str, tuple[float, float]] = {
    "qmin": (0.5, 1.5),
    "qmax": (18.0, 28.0),
    "qdamp": (0.02, 0.05),
    "qbroad": (0.0, 0.02),
    "delta2": (1.0, 4.0),
    "uiso": (0.003, 0.012),
    "noise": (0.005, 0.02),
}

#: r-grid of the simulated PDFs (A): rmin <= r < rmax.
R_GRID = {"rmin": 0.0, "rmax": 40.0, "rstep": 0.01}

#: Metals per lattice for the d-block kinds (their ground-state lattice; sc has no
#: metal of its own at ambient conditions but Po, so d-block metals stand in).
LATTICE_METALS: dict[str, tuple[str, ...]] = {
    "fcc": ("Au", "Pt", "Pd", "Ag", "Cu", "Ni", "Ir", "Rh"),
    "bcc": ("Fe", "W", "Mo", "Nb", "Ta", "V", "Cr"),
    "hcp": ("Co", "Ru", "Ti", "Zr", "Os", "Re"),
    "sc": ("Pt", "Au", "Fe", "Cu"),
}

#: s- and p-block metals with the lattice their particles are cut from (In, Tl, Ga,
#: Bi, Sn: close-packed stand-ins for their open or tetragonal structures).
SP_METALS: dict[str, str] = {
    "Al": "fcc",
    "Pb": "fcc",
    "Ca": "fcc",
    "Sr": "fcc",
    "Mg": "hcp",
    "Li": "bcc",
    "Na": "bcc",
    "K": "bcc",
    "Ba": "bcc",
    "Sn": "fcc",
    "In": "fcc",
    "Tl": "hcp",
    "Ga": "fcc",
    "Bi": "fcc",
}

#: Order in which the ``sp_metals`` kind visits the metals (particle i: i mod 14).
SP_ORDER: tuple[str, ...] = (
    "Al",
    "Pb",
    "Mg",
    "Sn",
    "Ca",
    "Li",
    "In",
    "K",
    "Sr",
    "Na",
    "Ba",
    "Tl",
    "Ga",
    "Bi",
)

MAX_SMALL = 200


@dataclass
class OffCatalogParticle:
    """One benchmark particle.

    Attributes
    ----------
    name : str
        Unique file stem, e.g. ``"vacancies_03_Pt_icosahedron_138"``.
    kind : str
        One of :data:`KINDS`.
    element : str
        The metal.
    atoms : ase.Atoms
        The true structure (Cartesian A, centred).
    truth_type : str
        Its structure family, one of :data:`diffpy_deepstruc.clusters.STRUCTURE_TYPES`.
    builder : str
        JSON of the builder calls that made it (sorted keys).
    pdf_params : dict
        qmin, qmax, qdamp, qbroad, delta2, uiso, noise, noise_seed and the r-grid.
    """

    name: str
    kind: str
    element: str
    atoms: Atoms
    truth_type: str
    builder: str
    pdf_params: dict[str, float] = field(default_factory=dict)

    @property
    def n_atoms(self) -> int:
        """Atom count of the truth."""
        return len(self.atoms)


# --------------------------------------------------------------------------- draws


def _stream(seed: int, kind: str, i: int) -> np.random.Generator:
    key = (zlib.crc32(kind.encode()), int(i))
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))


def _pdf_params(rng: np.random.Generator) -> dict[str, float]:
    out = {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in PDF_RANGES.items()}
    out["noise_seed"] = int(rng.integers(0, 2**31 - 1))
    out.update(R_GRID)
    return out


def _pick(rng: np.random.Generator, items) -> Any:
    items = list(items)
    return items[int(rng.integers(len(items)))]


def _offset(rng: np.random.Generator) -> list[float]:
    return [float(x) for x in rng.uniform(-0.5, 0.5, 3)]


def _retry(
    rng: np.random.Generator, draw: Callable[[np.random.Generator], tuple], lo: int, hi: int
) -> tuple:
    """Call ``draw(rng)`` until its atoms hold lo..hi atoms (deterministic)."""
    for _ in range(200):
        out = draw(rng)
        if lo <= len(out[0]) <= hi:
            return out
    raise RuntimeError(f"no draw with {lo}..{hi} atoms in 200 tries")  # pragma: no cover


# Ideal shapes (used as bases for vacancies and relaxation, and for "large").
def _ideal(rng: np.random.Generator, el: str, lo: int, hi: int) -> tuple[Atoms, str, dict]:
    def draw(g: np.random.Generator):
        t = _pick(g, ("sphere", "icosahedron", "decahedron", "octahedron"))
        if t == "icosahedron":
            args = {"shells": int(g.integers(2, 10))}
            return clusters.icosahedron(el, **args), t, {"icosahedron": args}
        if t == "decahedron":
            args = {
                "p": int(g.integers(2, 9)),
                "q": int(g.integers(1, 7)),
                "r": int(g.integers(0, 3)),
            }
            return clusters.decahedron(el, **args), t, {"decahedron": args}
        if t == "octahedron":
            length = int(g.integers(3, 16))
            args = {"length": length, "cutoff": int(g.integers(0, (length - 1) // 2 + 1))}
            return clusters.octahedron(el, **args), t, {"octahedron": args}
        lat = "fcc"
        radius = float(g.uniform(1.5, 10.0))
        at = imperfect.lattice_sphere(el, lat, radius, (0, 0, 0))
        return at, lat, {"lattice_sphere": at.info["builder"]}

    return _retry(rng, draw, lo, hi)


def _lattice_cut(rng: np.random.Generator, el: str, lat: str, lo: int, hi: int):
    def draw(g: np.random.Generator):
        if g.random() < 0.5:
            at = imperfect.lattice_sphere(el, lat, float(g.uniform(1.5, 4.5)), _offset(g))
        else:
            axes = g.uniform(1.5, 5.0, 3)
            axis = g.standard_normal(3)
            at = imperfect.lattice_ellipsoid(el, lat, axes, axis, _offset(g))
        return at, lat, {at.info["builder"]["builder"]: at.info["builder"]}

    return _retry(rng, draw, lo, hi)


def _offcentre(rng):
    lat = _pick(rng, imperfect.LATTICES)
    el = _pick(rng, LATTICE_METALS[lat])
    return (el, *_lattice_cut(rng, el, lat, 30, MAX_SMALL))


def _vacancies(rng):
    el = _pick(rng, LATTICE_METALS["fcc"])
    k = int(rng.integers(6, 16))
    atoms, t, b = _ideal(rng, el, max(60, 5 * k), MAX_SMALL + k)
    bulk = imperfect.BULK_COORDINATION.get(t, 12)
    out = imperfect.surface_vacancies(atoms, k, rng, bulk_coordination=bulk)
    b["surface_vacancies"] = {"k": k, "removed": out.info["vacancies"]}
    return el, out, t, b


def _partial_shell(rng):
    el = _pick(rng, LATTICE_METALS["fcc"])

    def draw(g: np.random.Generator):
        shape = _pick(g, ("icosahedron", "decahedron", "octahedron"))
        if shape == "icosahedron":
            args = {"shells": int(g.integers(3, 6))}
        elif shape == "decahedron":
            args = {
                "p": int(g.integers(2, 6)),
                "q": int(g.integers(1, 5)),
                "r": int(g.integers(0, 2)),
            }
        else:
            length = int(g.integers(4, 10))
            args = {"length": length, "cutoff": int(g.integers(0, (length - 1) // 2 + 1))}
        frac = float(g.uniform(0.2, 0.8))
        try:
            at = imperfect.incomplete_shell(el, shape, args, frac, g)
        except ParameterError:
            return Atoms(), shape, {}
        return at, shape, {"incomplete_shell": at.info["builder"]}

    return (el, *_retry(rng, draw, 30, MAX_SMALL))


def _relaxed(rng):
    emt = rng.random() < 0.75
    el = _pick(rng, imperfect.EMT_ELEMENTS if emt else ("Pb", "Ir", "Rh", "Ca", "Sr"))
    atoms, t, b = _ideal(rng, el, 30, MAX_SMALL)
    out = imperfect.relax_surface(atoms)
    b["relax_surface"] = {
        "method": out.info["relaxation"],
        "steps": out.info.get("emt_steps"),
        "contraction": out.info.get("contraction"),
    }
    return el, out, t, b


def _rods(rng):
    lat = _pick(rng, ("fcc", "bcc", "hcp"))
    el = _pick(rng, LATTICE_METALS[lat])
    axes = {
        "fcc": ((0, 0, 1), (1, 1, 0), (1, 1, 1)),
        "bcc": ((0, 0, 1), (1, 1, 1), (1, 1, 0)),
        "hcp": ((0, 0, 1), (1, 0, 0)),
    }[lat]

    def draw(g: np.random.Generator):
        axis = _pick(g, axes)
        at = imperfect.lattice_rod(
            el,
            lat,
            float(g.uniform(1.2, 2.6)),
            float(g.uniform(6.0, 16.0)),
            axis,
            _offset(g),
        )
        return at, lat, {"lattice_rod": at.info["builder"]}

    return (el, *_retry(rng, draw, 40, MAX_SMALL))


def _large(rng):
    target = int(round(math.exp(rng.uniform(math.log(250), math.log(3000)))))
    lo, hi = max(250, int(target * 0.7)), min(3000, int(target * 1.3))
    family = _pick(rng, ("icosahedron", "decahedron", "octahedron", "sphere", "twinned"))
    if family == "sphere":
        lat = _pick(rng, imperfect.LATTICES[:2] + ("hcp",))
        el = _pick(rng, LATTICE_METALS[lat])

        def draw(g: np.random.Generator):
            at = imperfect.lattice_sphere(el, lat, float(g.uniform(4.0, 9.5)), _offset(g))
            return at, lat, {"lattice_sphere": at.info["builder"]}

        return (el, *_retry(rng, draw, lo, hi))
    el = _pick(rng, LATTICE_METALS["fcc"])
    if family == "twinned":

        def draw_t(g: np.random.Generator):
            n_layers = int(g.integers(8, 20))
            n_tw = int(g.integers(1, 3))
            twins = sorted(
                int(t) for t in g.choice(np.arange(2, n_layers - 2), n_tw, replace=False)
            )
            radius = float(g.uniform(max(4.0, n_layers * 0.42), 9.5))
            at = imperfect.twinned_particle(el, n_layers, twins, radius)
            return at, "stacking", {"twinned_particle": at.info["builder"]}

        def safe(g):
            try:
                return draw_t(g)
            except ParameterError:
                return Atoms(), "stacking", {}

        return (el, *_retry(rng, safe, lo, hi))

    def draw_i(g: np.random.Generator):
        if family == "icosahedron":
            args = {"shells": int(g.integers(5, 11))}
            return clusters.icosahedron(el, **args), family, {family: args}
        if family == "decahedron":
            args = {
                "p": int(g.integers(4, 12)),
                "q": int(g.integers(1, 10)),
                "r": int(g.integers(0, 4)),
            }
            return clusters.decahedron(el, **args), family, {family: args}
        length = int(g.integers(7, 22))
        args = {"length": length, "cutoff": int(g.integers(0, (length - 1) // 2 + 1))}
        return clusters.octahedron(el, **args), family, {family: args}

    return (el, *_retry(rng, draw_i, lo, hi))


def _sp_metals(rng, i: int = 0):
    # the metals in a fixed order, so any 8 consecutive particles cover 8 of them
    el = SP_ORDER[i % len(SP_ORDER)]
    lat = SP_METALS[el]
    if lat == "fcc" and rng.random() < 0.5:
        atoms, t, b = _ideal(rng, el, 30, MAX_SMALL)
        return el, atoms, t, b
    return (el, *_lattice_cut(rng, el, lat, 30, MAX_SMALL))


_MAKERS: dict[str, Callable[..., tuple]] = {
    "offcentre": _offcentre,
    "vacancies": _vacancies,
    "partial_shell": _partial_shell,
    "relaxed": _relaxed,
    "rods": _rods,
    "large": _large,
    "sp_metals": _sp_metals,
}


def _json_default(x: Any) -> Any:
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def make_particle(kind: str, i: int, seed: int = DEFAULT_SEED) -> OffCatalogParticle:
    """Particle number ``i`` of ``kind`` (its own random stream, see the module doc).

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    i : int
        Index (>= 0).
    seed : int
        Benchmark seed (default 20261129).

    Returns
    -------
    OffCatalogParticle
    """
    if kind not in _MAKERS:
        raise ParameterError(f"kind must be one of {KINDS}, got {kind!r}")
    rng = _stream(seed, kind, i)
    maker = _MAKERS[kind]
    el, atoms, truth_type, builder = maker(rng, i) if kind == "sp_metals" else maker(rng)
    params = _pdf_params(rng)
    atoms = Atoms(symbols=atoms.get_chemical_symbols(), positions=atoms.positions)
    name = f"{kind}_{i:02d}_{el}_{truth_type}_{len(atoms)}"
    builder = {"nn": nearest_neighbour_distance(el), **builder}
    return OffCatalogParticle(
        name=name,
        kind=kind,
        element=el,
        atoms=atoms,
        truth_type=truth_type,
        builder=json.dumps(builder, sort_keys=True, default=_json_default),
        pdf_params=params,
    )


def make_offcatalog(
    kind: str, count: int, seed: int = DEFAULT_SEED
) -> list[OffCatalogParticle]:
    """``count`` benchmark particles of one kind.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    count : int
        Number of particles (>= 1).
    seed : int
        Benchmark seed; keep the default for reported numbers.

    Returns
    -------
    list of OffCatalogParticle
        Particle ``i`` is :func:`make_particle` ``(kind, i, seed)``.
    """
    if kind not in _MAKERS:
        raise ParameterError(f"kind must be one of {KINDS}, got {kind!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ParameterError(f"count must be a positive integer, got {count!r}")
    return [make_particle(kind, i, seed) for i in range(count)]


def with_noise_scale(particle: OffCatalogParticle, scale: float) -> OffCatalogParticle:
    """The particle with its PDF noise times ``scale`` (the rest unchanged)."""
    noise = particle.pdf_params["noise"] * scale
    return replace(particle, pdf_params={**particle.pdf_params, "noise": noise})


def simulate(particle: OffCatalogParticle, backend: str = "auto"):
    """The particle's PDF as measured data: noise added, dG = noise sigma.

    Parameters
    ----------
    particle : OffCatalogParticle
    backend : {"auto", "torch", "srreal"}
        PDF engine of :func:`diffpy_deepstruc.debye.pdf_from_arrays`.

    Returns
    -------
    diffpy_deepstruc.pdfdata.PDFData
        r 0-40 A step 0.01; header qmin, qmax, qdamp, qbroad, composition;
        ``source`` = ``name.gr``.
    """
    from diffpy_deepstruc.debye import PDFParameters, pdf_from_arrays
    from diffpy_deepstruc.pdfdata import PDFData

    p = particle.pdf_params
    params = PDFParameters(
        rmin=p["rmin"],
        rmax=p["rmax"],
        rstep=p["rstep"],
        qmin=p["qmin"],
        qmax=p["qmax"],
        qdamp=p["qdamp"],
        qbroad=p["qbroad"],
        delta2=p["delta2"],
    )
    n = len(particle.atoms)
    r, g = pdf_from_arrays(
        particle.atoms.positions, particle.element, np.full(n, p["uiso"]), params, backend
    )
    sigma = p["noise"] * float(np.abs(g).max())
    rng = np.random.default_rng(int(p["noise_seed"]))
    g = g + band_noise(rng, r, p["rstep"], p["qmin"], p["qmax"], sigma)
    meta = {
        "qmin": p["qmin"],
        "qmax": p["qmax"],
        "qdamp": p["qdamp"],
        "qbroad": p["qbroad"],
        "composition": f"{particle.element}{n}",
    }
    return PDFData(
        r=r, g=g, dg=np.full(len(r), sigma), metadata=meta, source=f"{particle.name}.gr"
    )


def _xyz_text(particle: OffCatalogParticle) -> str:
    lines = [str(len(particle.atoms)), f"{particle.name} {particle.truth_type}"]
    for s, (x, y, z) in zip(
        particle.atoms.get_chemical_symbols(), particle.atoms.positions, strict=True
    ):
        lines.append(f"{s} {x:.6f} {y:.6f} {z:.6f}")
    return "\n".join(lines) + "\n"


def write_offcatalog(
    out: str | Path,
    kinds: tuple[str, ...] = KINDS,
    count: int = 8,
    seed: int = DEFAULT_SEED,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write ``count`` particles of every kind: ``.gr``, ``.xyz`` and ``index.json``.

    Returns
    -------
    Path
        The ``index.json`` written.
    """
    from diffpy_deepstruc.fileio import atomic_write_text, check_writable
    from diffpy_deepstruc.pdfdata import write_pdf

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    index_path = check_writable(folder / "index.json", overwrite)
    index = []
    for kind in kinds:
        for part in make_offcatalog(kind, count, seed):
            t0 = time.perf_counter()
            pdf = simulate(part)
            write_pdf(
                folder / f"{part.name}.gr", pdf.r, pdf.g, pdf.metadata, pdf.dg, overwrite
            )
            atomic_write_text(folder / f"{part.name}.xyz", _xyz_text(part), overwrite)
            index.append(
                {
                    "name": part.name,
                    "kind": part.kind,
                    "element": part.element,
                    "truth_type": part.truth_type,
                    "n_atoms": part.n_atoms,
                    "builder": json.loads(part.builder),
                    "pdf_params": part.pdf_params,
                }
            )
            if log:
                log(f"{part.name}: {time.perf_counter() - t0:.1f} s")
    atomic_write_text(index_path, json.dumps(index, indent=1) + "\n", overwrite)
    return index_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--count", type=int, default=8, help="particles per kind (8)")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--force", action="store_true", help="replace existing files")
    args = ap.parse_args(argv)
    try:
        path = write_offcatalog(
            args.out, tuple(args.kinds), args.count, args.seed, args.force, log=print
        )
    except (DeepStrucError, OSError) as exc:
        print(f"offcatalog: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
