"""More training shapes: random shape codes between (and beyond) the catalog's grid.

The catalog holds each family on a coarse grid of arguments (radii in 0.25 nn steps,
three centre offsets, a few vacancy counts, ...).  Because a shape code decodes any
numbers to a buildable structure, training can draw codes at random within each
family's range, build them, and simulate their PDFs with the catalog's own instrument
ranges and noise (:func:`diffpy_deepstruc.catalog.simulate_structure`).

Held-out shapes stay held out: a drawn structure whose geometry (atom count and sorted
pair distances in nn units, :func:`geometry_key`) equals a validation or test shape's is
dropped, so does one equal to a training shape or another draw.  Relaxed families are
not drawn (their builders are slow and element-specific).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ParameterError
from .codes import build, decode, encode, family_slots, geometry_key

__all__ = ["AugmentedShapes", "draw_codes", "geometry_key", "random_shapes"]

#: Reals are drawn this fraction of their training span beyond each end.
SPAN_MARGIN = 0.1


def _ranges(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return theta.min(0), theta.max(0)


def draw_codes(
    family: str, low: np.ndarray, high: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` random codes ``[count, T]`` of ``family`` within ``low..high`` per slot
    (integers uniform, bits fair coins, reals uniform over the span widened by
    :data:`SPAN_MARGIN` on each side)."""
    slots = family_slots(family)
    out = np.empty((count, len(slots)))
    for j, s in enumerate(slots):
        lo, hi = float(low[j]), float(high[j])
        if s.kind == "int":
            out[:, j] = rng.integers(int(round(lo)), int(round(hi)) + 1, count)
        elif s.kind == "bit":
            out[:, j] = rng.integers(0, 2, count)
        else:
            m = SPAN_MARGIN * (hi - lo)
            out[:, j] = rng.uniform(max(lo - m, s.low), min(hi + m, s.high), count)
    return out


@dataclass
class AugmentedShapes:
    """Random shapes and their simulated PDFs.

    Attributes
    ----------
    families : list of str ``[S]`` each shape's family.
    theta : list of ndarray ``[S]`` each shape's code (as :func:`encode` gives it).
    entries : list of str ``[S]`` JSON ``[type, builder entry]``.
    natoms : int ``[S]``
    g : float32 ``[S * variants, n_r]`` simulated PDFs on the catalog's r-grid.
    shape_of : int ``[S * variants]``
    """

    families: list
    theta: list
    entries: list
    natoms: np.ndarray
    g: np.ndarray
    shape_of: np.ndarray


def _chunk(job: tuple) -> dict[str, Any]:
    """Draw, build and simulate one chunk (runs in a worker)."""
    from ..catalog import CatalogConfig, one_torch_thread, simulate_structure, unit_physical
    from ..elements import nearest_neighbour_distance

    fams, lows, highs, per_family, seed, config_dict, exclude, n_min, n_max = job
    config = CatalogConfig.from_dict(config_dict)
    rng = np.random.default_rng(seed)
    elements = list(config.elements or ("Au",))
    out: dict[str, list] = {
        "fam": [],
        "theta": [],
        "entry": [],
        "key": [],
        "n": [],
        "g": [],
    }
    with one_torch_thread():
        for fam, lo, hi, k in zip(fams, lows, highs, per_family, strict=True):
            for theta in draw_codes(fam, np.asarray(lo), np.asarray(hi), k, rng):
                el = elements[int(rng.integers(len(elements)))]
                nn = nearest_neighbour_distance(el)
                try:
                    atoms = build(fam, theta, el, nn)
                except ParameterError:
                    continue
                n = len(atoms)
                unit = (atoms.positions - atoms.positions.mean(0)) / nn
                if not n_min <= n <= n_max or not unit_physical(unit):
                    continue
                key = geometry_key(unit)
                if key in exclude:
                    continue
                exclude = exclude | {key}
                stype, entry = decode(fam, theta)
                f2, t2 = encode(stype, entry)
                g, _ = simulate_structure(
                    atoms.positions, el, config, int(rng.integers(2**31))
                )
                out["fam"].append(f2)
                out["theta"].append(t2)
                out["entry"].append(json.dumps([stype, entry], sort_keys=True))
                out["key"].append(key)
                out["n"].append(n)
                out["g"].append(g)
    return out


def random_shapes(
    families: Sequence[str],
    theta: Sequence[np.ndarray],
    count: int,
    catalog_config: dict[str, Any],
    exclude: set[str],
    seed: int = 0,
    variants: int = 2,
    workers: int = 1,
    chunks: int = 16,
) -> AugmentedShapes:
    """Draw about ``count`` random shapes of the catalog's families.

    Parameters
    ----------
    families : sequence of str
        Family of each training shape (repeats: one per shape).
    theta : sequence of ndarray
        Code of each training shape; a family's draws span its shapes' ranges.
    count : int
        Codes drawn (fewer shapes come back: refused, out-of-size, unphysical and
        duplicate builds are dropped), spread over the families in proportion to the
        square root of their training-shape counts.
    catalog_config : dict
        The catalog's ``config`` attribute (instrument ranges, noise, r-grid, size).
    exclude : set of str
        :func:`geometry_key` of every shape the draws must not repeat (validation and
        test shapes, and the training shapes).
    seed, variants, workers, chunks :
        Seed of the draws; PDFs per shape; worker processes; jobs.

    Returns
    -------
    AugmentedShapes
    """
    from ..catalog import CatalogConfig

    config = dataclasses.replace(CatalogConfig.from_dict(catalog_config), variants=variants)
    by_fam: dict[str, list[np.ndarray]] = {}
    for f, t in zip(families, theta, strict=True):
        if not f.startswith("relaxed/"):
            by_fam.setdefault(f, []).append(np.asarray(t, float))
    names = sorted(by_fam)
    weight = np.sqrt([len(by_fam[f]) for f in names])
    per = np.maximum(1, np.round(count * weight / weight.sum() / chunks)).astype(int)
    ranges = [_ranges(np.stack(by_fam[f])) for f in names]
    seeds = np.random.SeedSequence(seed).spawn(chunks)
    jobs = [
        (
            names,
            [r[0].tolist() for r in ranges],
            [r[1].tolist() for r in ranges],
            per.tolist(),
            s,
            config.to_dict(),
            frozenset(exclude),
            config.n_min,
            config.n_max,
        )
        for s in seeds
    ]
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_chunk, jobs))
    else:
        parts = [_chunk(j) for j in jobs]
    fams, thetas, entries, ns, gs, shape_of, seen = [], [], [], [], [], [], set(exclude)
    for p in parts:  # chunks drew independently: drop repeats across chunks
        for f, t, e, k, n, g in zip(
            p["fam"], p["theta"], p["entry"], p["key"], p["n"], p["g"], strict=True
        ):
            if k in seen:
                continue
            seen.add(k)
            shape_of.extend([len(fams)] * len(g))
            fams.append(f)
            thetas.append(t)
            entries.append(e)
            ns.append(n)
            gs.append(g)
    n_r = len(config.r_grid())
    return AugmentedShapes(
        families=fams,
        theta=thetas,
        entries=entries,
        natoms=np.asarray(ns, dtype=np.int64),
        g=np.concatenate(gs).astype(np.float32) if gs else np.zeros((0, n_r), np.float32),
        shape_of=np.asarray(shape_of, dtype=np.int64),
    )
