"""Evaluation metrics of a trained model on a catalog split.

Per test PDF, ``n`` candidates are generated (the first from the prior mean) and each is
scored against the true structure and the input PDF:

* ``count_exact``: the candidate has the true number of atoms;
* ``mae`` (A): the DeepStruc coordinate metric -- optimal atom assignment (Hungarian),
  rotation and isotropic scale (:func:`~diffpy_deepstruc.trilateration.assign_and_align`
  with ``allow_scale=True``), then the mean absolute error of the x, y, z coordinates
  over the matched atoms; ``position_mae`` (A) is the mean Euclidean displacement (about
  1.6x larger for isotropic errors), reported too;
* ``pdf_mse`` and ``pdf_pearson``: the candidate's G(r), computed with the Debye engine
  and the *same* parameters as the input (Qmin, Qmax, Qdamp, Qbroad, delta2, Uiso from
  the catalog), against the input G (noise included), on the catalog r-grid from 1.5 A
  up, each divided by its max |G| (MSE) -- Pearson is scale-free.  ``true_pdf_pearson``
  (the true structure through the same calculation) is the ceiling the noise allows.

Aggregates: the prior-mean candidate; the best of ``n`` by MAE (oracle: uses the truth,
DeepStruc's best-of-N; ``count_exact`` is then "any of the n"); the best of ``n`` by
PDF Pearson (what a user can pick without knowing the answer).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from typing import Any

import numpy as np

from .errors import CatalogError, ParameterError

__all__ = [
    "coordinate_mae",
    "pdf_agreement",
    "evaluate",
    "first_pdf_rows",
    "sites_matched",
    "summarize",
    "COMPARE_RMIN",
]

#: PDFs are compared (MSE, Pearson) on the catalog r-grid from this r (A) up.
COMPARE_RMIN = 1.5


def coordinate_mae(
    pred: np.ndarray, true: np.ndarray, same_frame: bool = False
) -> dict[str, float]:
    """Coordinate errors after assignment, rotation and isotropic scale.

    Parameters
    ----------
    pred, true : ``[n, 3]``, ``[m, 3]`` Cartesian coordinates (A); ``n`` may differ from
        ``m`` (``min(n, m)`` atoms are matched).
    same_frame : bool
        Both are already (about) in the same frame -- e.g. the canonical frame of
        :mod:`~diffpy_deepstruc.representation`, as decoded structures are: start the
        assignment/superposition iterations there only (faster); otherwise principal-axes
        starts are tried too.

    Returns
    -------
    dict
        ``mae`` (per coordinate), ``position_mae`` (per atom), ``rmsd``, ``fit_scale``.
    """
    from .trilateration import assign_and_align

    pred = np.asarray(pred, float)
    true = np.asarray(true, float)
    if len(pred) < 1 or len(true) < 1:
        raise ParameterError("coordinate_mae needs at least one atom on each side")
    a = assign_and_align(
        pred,
        true,
        allow_scale=True,
        try_principal_axes=not same_frame,
        max_iter=20 if same_frame else 50,
        # symmetric clusters defeat the principal axes, and a copy with distances a
        # few mA off can defeat the canonical frames: a few fixed random starts more
        n_random_starts=0 if same_frame else 24,
    )
    diff = a.aligned[a.index_a] - true[a.index_b]
    return {
        "mae": float(np.abs(diff).mean()),
        "position_mae": float(np.linalg.norm(diff, axis=1).mean()),
        "rmsd": a.rmsd,
        "fit_scale": a.scale,
    }


def _cubic_operations() -> list[np.ndarray]:
    """The 48 signed axis permutations (the cubic point group with inversion)."""
    import itertools

    ops = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            m[np.arange(3), perm] = signs
            ops.append(m)
    return ops


def _match(a: np.ndarray, b: np.ndarray, exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i in a, j in b): Hungarian assignment, or mutual nearest neighbours."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial import cKDTree

    if exact:
        d = np.linalg.norm(a[:, None] - b[None], axis=-1)
        return linear_sum_assignment(d)
    _, jb = cKDTree(b).query(a)
    _, ia = cKDTree(a).query(b)
    i = np.flatnonzero(ia[jb] == np.arange(len(a)))
    return i, jb[i]


def _frame(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, mirror: bool = False):
    """Orthonormal frame (rows) of an atom and two of its neighbours; None if collinear.
    ``mirror`` flips the third axis (a left-handed frame)."""
    e1 = p1 - p0
    e1 = e1 / np.linalg.norm(e1)
    e2 = (p2 - p0) - np.dot(p2 - p0, e1) * e1
    n2 = np.linalg.norm(e2)
    if n2 < 1e-6:
        return None
    e2 = e2 / n2
    e3 = np.cross(e1, e2)
    return np.stack([e1, e2, -e3 if mirror else e3])


def _anchor_starts(
    a: np.ndarray, b: np.ndarray, nn: float, *, k_a: int = 3, k_b: int = 8, keep: int = 6
) -> list[np.ndarray]:
    """Starting placements of ``a`` on ``b`` from local lattice frames.

    An atom near ``a``'s centre with two of its neighbours defines a frame; every
    atom near ``b``'s centre with every ordered pair of its neighbours at the same angle
    defines a candidate image of it (proper and mirrored).  Each candidate maps ``a``
    rigidly onto ``b``; the ``keep`` placements that put the most atoms within
    ``0.3 nn`` of a true site are returned.  For particles cut from a lattice this
    finds the registration whatever the particle's symmetry (five-fold axes included),
    where starts from fixed orientations can miss it.
    """
    from scipy.spatial import cKDTree

    if len(a) < 3 or len(b) < 3:
        return []
    tree_a, tree_b = cKDTree(a), cKDTree(b)

    def anchors(x, tree, k):
        centre = np.argsort(np.linalg.norm(x - x.mean(0), axis=1), kind="stable")[:k]
        out = []
        for i in centre:
            nb = [j for j in tree.query_ball_point(x[i], 1.25 * nn) if j != i]
            out.append((int(i), sorted(nb)))
        return out

    hyps = []
    for i, nb in anchors(a, tree_a, k_a):
        if len(nb) < 2:
            continue
        # the neighbour pair closest to 60 degrees: a well-conditioned frame
        pairs = [(j, k) for j in nb for k in nb if j < k]
        cos = [
            np.dot(a[j] - a[i], a[k] - a[i])
            / (np.linalg.norm(a[j] - a[i]) * np.linalg.norm(a[k] - a[i]))
            for j, k in pairs
        ]
        best = int(np.argmin(np.abs(np.asarray(cos) - 0.5)))
        j, k = pairs[best]
        ang = np.arccos(np.clip(cos[best], -1, 1))
        for mirror in (False, True):
            fa = _frame(a[i], a[j], a[k], mirror)
            if fa is None:
                continue
            for ib, nbb in anchors(b, tree_b, k_b):
                for jb in nbb:
                    for kb in nbb:
                        if jb == kb:
                            continue
                        u, v = b[jb] - b[ib], b[kb] - b[ib]
                        c = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
                        if abs(np.arccos(np.clip(c, -1, 1)) - ang) > 0.26:  # 15 degrees
                            continue
                        fb = _frame(b[ib], b[jb], b[kb])
                        if fb is None:
                            continue
                        rot = fb.T @ fa  # maps a's frame onto b's
                        hyps.append((rot, b[ib] - rot @ a[i]))
    if not hyps:
        return []
    placed = np.stack([a @ rot.T + t for rot, t in hyps])  # [H, n, 3]
    d, _ = tree_b.query(placed.reshape(-1, 3), distance_upper_bound=0.3 * nn)
    score = np.isfinite(d).reshape(len(hyps), -1).sum(axis=1)
    best = np.argsort(-score, kind="stable")[:keep]
    return [placed[h] for h in best]


def sites_matched(
    result: np.ndarray,
    truth: np.ndarray,
    nn: float,
    *,
    tol: float = 0.3,
    n_random: int = 16,
    seed: int = 0,
) -> float:
    """Fraction of the true sites that a structure reproduces, after registration.

    The result is translated and rotated (reflections allowed) onto the truth by an
    iterative closest-point search (one-to-one matching, Kabsch superposition) from the
    48 cubic orientations, ``n_random`` random ones and the best placements of local
    lattice frames (an atom near the centre and two neighbours, mapped onto every
    equivalent frame near the truth's centre, :func:`_anchor_starts`); a true site
    counts as matched when a matched atom of the result lies within ``tol * nn`` of it.
    No scaling: a structure at the wrong distances does not match.  Above 400 atoms the
    matching is by mutual nearest neighbours (KD-tree) instead of the Hungarian
    assignment.

    Parameters
    ----------
    result, truth : ndarray, shape (n, 3), (m, 3)
        Cartesian coordinates (A); n and m may differ.
    nn : float
        Nearest-neighbour distance of the truth (A).
    tol : float
        Match radius in units of ``nn``.
    n_random : int
        Random starting orientations beside the cubic ones.
    seed : int
        Seed of the random orientations.

    Returns
    -------
    float
        Matched true sites / all true sites, in [0, 1].
    """
    from scipy.spatial.transform import Rotation

    a0 = np.asarray(result, float)
    b = np.asarray(truth, float)
    if len(a0) < 1 or len(b) < 1:
        raise ParameterError("sites_matched needs at least one atom on each side")
    a0 = a0 - a0.mean(0)
    b = b - b.mean(0)
    exact = max(len(a0), len(b)) <= 400
    starts = _cubic_operations()
    if n_random:
        starts += list(Rotation.random(n_random, random_state=seed).as_matrix())
    placements = [a0 @ r0.T for r0 in starts] + _anchor_starts(a0, b, nn)
    best = 0.0
    for a in placements:
        for _ in range(12):
            i, j = _match(a, b, exact)
            good = np.linalg.norm(a[i] - b[j], axis=1) < 0.6 * nn
            if good.sum() < 4:
                good[:] = True
            p, q = a[i[good]], b[j[good]]
            pc, qc = p.mean(0), q.mean(0)
            u, _, vt = np.linalg.svd((p - pc).T @ (q - qc))
            a = (a - pc) @ (u @ vt) + qc
        i, j = _match(a, b, exact)
        hit = np.linalg.norm(a[i] - b[j], axis=1) < tol * nn
        best = max(best, float(hit.sum()) / len(b))
        if best >= 1.0:
            break
    return best


def pdf_agreement(g_ref: np.ndarray, g_model: np.ndarray) -> tuple[float, float]:
    """MSE and Pearson correlation of two PDFs on the same grid (each scaled to max |G| 1)."""
    a = np.asarray(g_ref, float)
    b = np.asarray(g_model, float)
    a = a / max(np.abs(a).max(), 1e-12)
    b = b / max(np.abs(b).max(), 1e-12)
    mse = float(np.mean((a - b) ** 2))
    if a.std() == 0 or b.std() == 0:
        return mse, 0.0
    return mse, float(np.corrcoef(a, b)[0, 1])


def _params_row(cols: list[str], row: np.ndarray) -> dict[str, float]:
    d = dict(zip(cols, map(float, row), strict=False))
    return d


def evaluate(
    model_dir: str | os.PathLike | None,
    catalog: str | os.PathLike,
    split: str = "test",
    samples: int = 20,
    max_structures: int | None = 200,
    seed: int = 0,
    progress: bool = True,
    generator=None,
    sites: bool = False,
    guided: int = 0,
    repeats: bool = False,
) -> dict[str, Any]:
    """Evaluate a checkpoint on one split of the catalog it was trained on.

    One PDF per structure (the first of its simulated PDFs).  When the split has more
    than ``max_structures`` structures, a seeded subset stratified by type is used (the
    report says so).  Works for the distance models (:class:`~diffpy_deepstruc.
    generator.DeepStruc`) and the shape-code models (:class:`~diffpy_deepstruc.
    shapegen.ShapeGenerator`, whose samples also carry their structure type: then
    ``right`` counts the samples of the true type within 10 % of the true atom count).
    ``sites``: also the best fraction of true sites reproduced (:func:`sites_matched`)
    among at most :data:`SITES_CANDIDATES` exact-count samples (slow).
    ``guided``: shape-code models only; guided sampling (:meth:`~diffpy_deepstruc.
    shapegen.ShapeGenerator.generate`) with this many distinct proposals per PDF,
    screened against the PDF with the instrument it was simulated with (its Qmin, Qmax,
    Qdamp, Qbroad, as a file header gives them) over the solve's default fit range; the
    ``samples`` best-fitting are scored, and the first sample is the best-fitting one
    instead of the prior mean.  ``repeats`` (with ``guided``): the samples are drawn
    from the proposals with repeats, by how strongly the data favour each
    (``generate(..., distinct=False)``), best first.

    Returns
    -------
    dict
        ``{"model": ..., "split": ..., "n_pdfs": ..., "overall": {...},
        "by_type": {type: {...}}, "per_pdf": [...]}`` (see :func:`summarize`).

    Raises
    ------
    CatalogError
        The catalog is not the one the model was trained on, or lacks the split.
    """
    import h5py

    from .checkpoint import sha256_file
    from .debye import PDFParameters, pdf_batch
    from .representation import encode
    from .shapegen.generator import load_generator

    ds = generator or load_generator(model_dir)
    if guided and not hasattr(ds, "codes"):
        raise ParameterError("guided sampling is for shape-code models")
    if repeats and not guided:
        raise ParameterError("repeats is an option of guided sampling (guided = M)")
    if guided and (not isinstance(guided, int) or guided < samples):
        raise ParameterError(
            f"guided must be an integer of at least samples = {samples}, not {guided!r}"
        )
    meta = ds.meta
    # the distance models' canonical frame; shape-code samples use the defaults
    n_max = getattr(ds.model.config, "n_max", N_MAX_DEFAULT)
    n_sat = getattr(ds.model.config, "n_satellites", 11)
    sp = meta.get("split", {})
    if split not in ("test", "val", "train"):
        raise ParameterError(f"split must be test, val or train, not {split!r}")
    sha = sha256_file(catalog)
    if meta.get("catalog", {}).get("sha256") != sha:
        raise CatalogError(
            f"{catalog}: not the catalog this model was trained on (SHA-256 "
            f"differs); its split is not defined there"
        )
    with h5py.File(catalog, "r") as h5:
        M = h5["structures/natoms"].shape[0]
        if split == "train":
            taken = set(sp.get("val", [])) | set(sp.get("test", []))
            rows = np.array([i for i in range(M) if i not in taken])
        else:
            rows = np.asarray(sp.get(split, []), dtype=np.int64)
        if rows.size == 0:
            raise CatalogError(f"the model's config records no {split!r} structures")
        types = np.array(
            [
                t.decode() if isinstance(t, bytes) else str(t)
                for t in h5["structures/type"][()]
            ]
        )
        elements = np.array(
            [
                t.decode() if isinstance(t, bytes) else str(t)
                for t in h5["structures/element"][()]
            ]
        )
        subset = False
        if max_structures and rows.size > max_structures:
            rng = np.random.default_rng(seed)
            keep = []
            tt = types[rows]
            ut = sorted(set(tt))
            per = max(1, max_structures // len(ut))
            for t in ut:
                idx = rows[tt == t]
                keep.extend(rng.choice(idx, min(per, idx.size), replace=False).tolist())
            rows = np.array(sorted(keep))
            subset = True
        pstruct = h5["pdfs/structure"][()]
        pdf_rows = first_pdf_rows(pstruct, rows).tolist()
        r_cat = h5["r"][()]
        g_cat = np.stack([h5["pdfs/g"][j] for j in pdf_rows]) if pdf_rows else None
        pds = h5["pdfs/params"]
        cols = pds.attrs.get("columns", "qmin,qmax,qdamp,qbroad,delta2,uiso,scale,noise")
        cols = cols.decode() if isinstance(cols, bytes) else cols
        if isinstance(cols, str):
            try:
                cols = json.loads(cols)
            except json.JSONDecodeError:
                cols = cols.split(",")
        cols = [str(c).strip() for c in cols]
        params = np.stack([pds[j] for j in pdf_rows])
        xyz_all = h5["structures/xyz"]
        natoms = h5["structures/natoms"][()]
        truths = {
            int(s): xyz_all[int(s)][: int(natoms[int(s)])].astype(float) for s in rows
        }
    if g_cat is None:
        raise CatalogError(f"no PDFs for the {split} structures")
    # PDFs are compared in Angstrom on the catalog's own r-grid, from COMPARE_RMIN up
    step = float(np.median(np.diff(r_cat)))
    keep = r_cat >= COMPARE_RMIN

    per_pdf = []
    it = list(zip(pdf_rows, rows, strict=True))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"evaluate {split}", file=sys.stderr, mininterval=2)
    for k, (prow, srow) in enumerate(it):
        par = _params_row(cols, params[k])
        el = str(elements[srow])
        true_xyz = truths[int(srow)]
        rep = encode(true_xyz, n_max=max(n_max, len(true_xyz)), n_satellites=n_sat)
        true_c = rep.xyz()  # canonical frame, Angstrom
        pdf_in = (r_cat, g_cat[k])
        guide = _catalog_guide(r_cat, g_cat[k], par) if guided else None
        t0 = time.perf_counter()
        dec = _decoded(ds, pdf_in, samples, seed + k, el, guide, guided or None, repeats)
        t_sample = time.perf_counter() - t0
        pp = PDFParameters(
            rmin=float(r_cat[0]),
            rmax=float(r_cat[-1]) + 0.5 * step,
            rstep=step,
            qmin=par.get("qmin", 0.7),
            qmax=par.get("qmax", 25.0),
            qdamp=par.get("qdamp", 0.04),
            qbroad=par.get("qbroad", 0.0),
            delta2=par.get("delta2", 2.0),
        )
        uiso = par.get("uiso", 0.005)
        clusters = [
            (d["xyz"] * d["scale"], [el] * len(d["xyz"]), np.full(len(d["xyz"]), uiso))
            for d in dec
        ]
        clusters.append((true_xyz, [el] * len(true_xyz), np.full(len(true_xyz), uiso)))
        r_calc, G = pdf_batch(clusters, pp)
        if len(r_calc) != len(r_cat) or not np.allclose(r_calc, r_cat, atol=1e-6):
            G = np.stack([np.interp(r_cat, r_calc, gg) for gg in G])
        G = G[:, keep]
        ref = g_cat[k][keep]
        truth_key = _atoms_key(true_xyz)
        cand = []
        for d, gm in zip(dec, G[:-1], strict=True):
            m = coordinate_mae(d["xyz"] * d["scale"], true_c, same_frame=True)
            mse, pr = pdf_agreement(ref, gm)
            cand.append(
                {
                    "n_atoms": d["n_atoms"],
                    "count_exact": d["n_atoms"] == rep.n_atoms,
                    "mae": m["mae"],
                    "position_mae": m["position_mae"],
                    "pdf_mse": mse,
                    "pdf_pearson": pr,
                    "residual": d["residual"],
                    "scale_ratio": d["scale"] / rep.scale,
                    "type": d.get("type"),
                    "truth_atoms": d["n_atoms"] == rep.n_atoms
                    and _atoms_key(d["xyz"] * d["scale"]) == truth_key,
                    **({"misfit": d["misfit"]} if guide else {}),
                }
            )
        _, pr_true = pdf_agreement(ref, G[-1])
        entry = {
            "structure": int(srow),
            "pdf": int(prow),
            "type": str(types[srow]),
            "element": el,
            "n_atoms": int(rep.n_atoms),
            "candidates": cand,
            "true_pdf_pearson": pr_true,
            "sample_seconds": t_sample,
        }
        if guide:
            entry["true_misfit"] = float(guide([true_xyz])[0])
        if sites:
            entry["sites_best"] = _best_sites(dec, cand, true_xyz)
        per_pdf.append(entry)
    report = summarize(per_pdf)
    report.update(
        model=str(model_dir) if model_dir else None,
        kind=ds.kind,
        split=split,
        samples=samples,
        n_pdfs=len(per_pdf),
        subset=subset,
        max_structures=max_structures,
        catalog_sha256=sha,
        seed=seed,
        guided=int(guided),
        repeats=bool(repeats),
        per_pdf=per_pdf,
    )
    return report


def _catalog_guide(r: np.ndarray, g: np.ndarray, par: dict[str, float]):
    """The screening guide for a catalog PDF: its own instrument (as a file header
    would give it) and the solve's default fit range."""
    from .solve.screen import screening_guide
    from .solve.settings import DEFAULT_RMAX, DEFAULT_RMIN, FitSettings

    settings = FitSettings(
        qmin=par.get("qmin", 0.0),
        qmax=par.get("qmax", 25.0),
        qdamp=par.get("qdamp", 0.0),
        qbroad=par.get("qbroad", 0.0),
        rmin=max(DEFAULT_RMIN, float(r[0])),
        rmax=min(DEFAULT_RMAX, float(r[-1])),
    )
    return screening_guide(r, g, settings)


def first_pdf_rows(pdf_structure: np.ndarray, structures: np.ndarray) -> np.ndarray:
    """The first PDF row (``/pdfs/structure`` order) of each of ``structures``, in their
    order; structures without a PDF are skipped."""
    first: dict[int, int] = {}
    for j, s in enumerate(pdf_structure):
        first.setdefault(int(s), j)
    return np.array([first[int(s)] for s in structures if int(s) in first], dtype=np.int64)


#: Atom slots of the canonical frame when a structure has no more atoms.
N_MAX_DEFAULT = 200
#: Exact-count samples per PDF whose sites :func:`evaluate` matches (``sites=True``).
SITES_CANDIDATES = 5
#: A sample is *right* when of the true type and within this fraction of the true count.
RIGHT_COUNT_TOLERANCE = 0.1


def _decoded(
    ds,
    pdf_in,
    samples: int,
    seed: int,
    element: str,
    guide=None,
    proposals: int | None = None,
    repeats: bool = False,
) -> list[dict[str, Any]]:
    """Samples of a generator in the canonical frame: ``xyz`` (units of ``scale``),
    ``scale``, ``n_atoms``, ``residual``, ``misfit`` (nan unguided) and ``type`` (None
    for the distance models).
    With a ``guide``, the guided samples, best-fitting first (distinct, or with
    ``repeats`` drawn with repeats)."""
    from .representation import encode

    if hasattr(ds, "decode_unit"):
        z = ds.sample_latent(pdf_in, samples, seed=seed, include_mean=True)
        return ds.decode_unit(z, pdf_in)
    if guide:
        kw = {"guide": guide, "proposals": proposals, "distinct": not repeats}
    else:
        kw = {"distinct": False}
    out = []
    for c in ds.generate(pdf_in, samples, element=element, seed=seed, **kw):
        xyz = c.xyz
        rep = encode(xyz, n_max=max(N_MAX_DEFAULT, len(xyz)), n_satellites=11)
        out.append(
            {
                "xyz": rep.xyz() / rep.scale,
                "scale": rep.scale,
                "n_atoms": c.n_atoms,
                "residual": c.residual,
                "misfit": c.misfit,
                "type": c.code["type"] if c.code else None,
            }
        )
    return out


def _best_sites(dec: list[dict], cand: list[dict], true_xyz: np.ndarray) -> float:
    """Best :func:`sites_matched` among the first distinct exact-count samples."""
    from .generator import unit_nn_distance

    nn = unit_nn_distance(true_xyz)
    best, seen = 0.0, []
    for d, c in zip(dec, cand, strict=True):
        if not c["count_exact"] or len(seen) >= SITES_CANDIDATES:
            continue
        xyz = d["xyz"] * d["scale"]
        if any(np.allclose(xyz, s, atol=1e-6) for s in seen):
            continue
        seen.append(xyz)
        best = max(best, sites_matched(xyz, true_xyz, nn))
    return best


def _right(p: dict) -> int | None:
    """Samples of the true type within :data:`RIGHT_COUNT_TOLERANCE` of the true count
    (None when the samples carry no type).  A sample with the truth's very atoms
    (``truth_atoms``) is of the true type whatever its code's family says (an
    octahedron built as an fcc layer cut is an octahedron)."""
    if any(c.get("type") is None for c in p["candidates"]):
        return None
    tol = RIGHT_COUNT_TOLERANCE * p["n_atoms"]
    return sum(
        (c["type"] == p["type"] or c.get("truth_atoms", False))
        and abs(c["n_atoms"] - p["n_atoms"]) <= tol
        for c in p["candidates"]
    )


def _atoms_key(xyz: np.ndarray) -> str:
    """:func:`~diffpy_deepstruc.shapegen.codes.geometry_key` in units of the mean
    nearest-neighbour distance: equal for the same atoms at any size."""
    from .generator import unit_nn_distance
    from .shapegen.codes import geometry_key

    return geometry_key(xyz, unit_nn_distance(xyz))


def _wrong_but_better(p: dict) -> bool:
    """Guided samples: the best-fitting sample has the wrong atom count and fits the
    PDF at least as well as the true structure (no guide could have chosen the truth)."""
    first = p["candidates"][0] if p["candidates"] else None
    return bool(first and not first["count_exact"] and first["misfit"] <= p["true_misfit"])


def _agg(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, float)
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "median": float("nan")}
    return {"mean": float(v.mean()), "std": float(v.std()), "median": float(np.median(v))}


def _select(cands: list[dict], how: str) -> dict:
    if how == "prior_mean":
        return cands[0]
    if how == "best_mae":
        # prefer the right atom count, then the smallest MAE
        return min(cands, key=lambda c: (not c["count_exact"], c["mae"]))
    if how == "best_pdf":
        return max(cands, key=lambda c: c["pdf_pearson"])
    raise ValueError(how)


def summarize(per_pdf: list[dict]) -> dict[str, Any]:
    """Aggregate per-PDF candidate scores, overall and per structure type."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for p in per_pdf:
        groups[p["type"]].append(p)
    groups_all = {"overall": per_pdf, **dict(sorted(groups.items()))}
    out: dict[str, Any] = {"by_type": {}}
    for name, items in groups_all.items():
        block: dict[str, Any] = {"n": len(items)}
        for how in ("prior_mean", "best_mae", "best_pdf"):
            sel = [_select(p["candidates"], how) for p in items]
            block[how] = {
                "count_exact": float(np.mean([c["count_exact"] for c in sel]))
                if sel
                else 0.0,
                "mae": _agg([c["mae"] for c in sel]),
                "position_mae": _agg([c["position_mae"] for c in sel]),
                "pdf_mse": _agg([c["pdf_mse"] for c in sel]),
                "pdf_pearson": _agg([c["pdf_pearson"] for c in sel]),
            }
        block["count_exact_any"] = (
            float(np.mean([any(c["count_exact"] for c in p["candidates"]) for p in items]))
            if items
            else 0.0
        )
        block["true_pdf_pearson"] = _agg([p["true_pdf_pearson"] for p in items])
        if items and all("sample_seconds" in p for p in items):
            block["sample_seconds"] = _agg([p["sample_seconds"] for p in items])
        right = [_right(p) for p in items]
        if items and all(x is not None for x in right):
            n = len(items[0]["candidates"])
            block["right_mean"] = float(np.mean(right))
            block["right_3_of_4"] = float(np.mean([x >= 0.75 * n for x in right]))
        if items and all("true_misfit" in p for p in items):
            block["first_wrong_fits_better"] = float(
                np.mean([_wrong_but_better(p) for p in items])
            )
        if items and all("sites_best" in p for p in items):
            block["sites90_best"] = float(np.mean([p["sites_best"] >= 0.9 for p in items]))
        if name == "overall":
            out["overall"] = block
        else:
            out["by_type"][name] = block
    return out


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of a report (one row per type, then overall)."""
    head = (
        f"{'type':12s} {'n':>4s} {'count@1':>7s} {'count@N':>7s} {'MAE@1':>7s} "
        f"{'MAE@N':>7s} {'Pear@1':>7s} {'Pear@N':>7s} {'PearSel':>7s} {'PearTrue':>8s}"
    )
    rows = list(report["by_type"].items()) + [("overall", report["overall"])]
    keys = ("right_mean", "right_3_of_4", "sites90_best", "first_wrong_fits_better")
    extra = [k for k in keys if k in report["overall"]]
    names = {
        "right_mean": "right",
        "right_3_of_4": "right75",
        "sites90_best": "sites90",
        "first_wrong_fits_better": "wrongfit",
    }
    lines = [head + "".join(f" {names[k]:>7s}" for k in extra)]
    for name, b in rows:
        lines.append(
            f"{name:12s} {b['n']:4d} {b['prior_mean']['count_exact']:7.3f} "
            f"{b['count_exact_any']:7.3f} {b['prior_mean']['mae']['mean']:7.4f} "
            f"{b['best_mae']['mae']['mean']:7.4f} {b['prior_mean']['pdf_pearson']['mean']:7.4f} "
            f"{b['best_mae']['pdf_pearson']['mean']:7.4f} "
            f"{b['best_pdf']['pdf_pearson']['mean']:7.4f} {b['true_pdf_pearson']['mean']:8.4f}"
            + "".join(f" {b.get(k, float('nan')):7.3f}" for k in extra)
        )
    return "\n".join(lines)
