"""Stage 3b, code search: shape-code samples walked to neighbouring codes that fit better.

A shape-code model's sample is a code: a builder family and its numbers (layer counts,
radius, centre offset, vacancy count, ...; :mod:`diffpy_deepstruc.shapegen.codes`).
The model often gets a number one step wrong (a layer count, a radius step).  Starting
from the best-screened samples, every neighbouring code
(:func:`~diffpy_deepstruc.shapegen.codes.neighbour_codes`) is built, scaled like its
start and screened in one batch (:func:`~diffpy_deepstruc.solve.screen.screen_candidates`);
a start moves to its best neighbour while that lowers the screening Rw.  Each walk that
moved adds its end point to the candidates.  A relaxed sample walks among the ideal
codes of its base shape (:func:`~diffpy_deepstruc.shapegen.generator.walk_family`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..clusters import DistinctGeometries
from ..pdfdata import PDFData
from .candidates import Proposal, nearest_neighbour_distance
from .screen import ScreenResult, screen_candidates
from .settings import FitSettings

__all__ = [
    "CODE_SEARCH_SOURCE",
    "DEFAULT_SEARCH_K",
    "DEFAULT_SEARCH_ROUNDS",
    "SEARCHED_INDEX",
    "CodeWalk",
    "search_codes",
]

#: Shape-code samples whose codes are searched (the best-screened distinct ones).
DEFAULT_SEARCH_K: int = 3
#: Most steps of one walk.
DEFAULT_SEARCH_ROUNDS: int = 4
#: Number of the first searched candidate (``SEARCHED_INDEX + j``).
SEARCHED_INDEX: int = 5_000
#: The ``source`` prefix of a searched candidate.
CODE_SEARCH_SOURCE = "code search"


@dataclass
class CodeWalk:
    """One walk from a shape-code sample.

    Attributes
    ----------
    start : Proposal
        The sample it started from.
    family : str
    theta : ndarray
        The code where the walk stands.
    rw : float
        Its screening Rw.
    structure : Structure or None
        Its structure (None while it has not moved).
    screen : ScreenResult or None
        Its screening (one candidate; None while it has not moved).
    steps : list of dict
        Each accepted step: the builder entry and the screening Rw.
    """

    start: Proposal
    family: str
    theta: np.ndarray
    rw: float
    structure: Any = None
    screen: ScreenResult | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)


def _neighbours(walk: CodeWalk, element: str, nn: float, seen: set[str], shapes: Any):
    """``(theta, structure)`` of the walk's neighbours whose code and atoms are new
    (:func:`~diffpy_deepstruc.shapegen.generator.new_neighbours`), scaled as its
    start."""
    from ..shapegen.generator import new_neighbours
    from ..structures import arrays_to_structure

    scale = nearest_neighbour_distance(walk.start.structure)
    uiso = float(walk.start.structure[0].Uisoequiv)
    return [
        (theta, arrays_to_structure(unit * scale, element, uiso))
        for theta, unit in new_neighbours(
            walk.family, walk.theta, element, nn, seen, shapes
        )
    ]


def search_codes(
    proposals: Sequence[Proposal],
    screen: ScreenResult,
    pdf: PDFData,
    settings: FitSettings,
    element: str,
    *,
    k: int = DEFAULT_SEARCH_K,
    rounds: int = DEFAULT_SEARCH_ROUNDS,
    device: str | None = None,
) -> tuple[list[Proposal], ScreenResult, list[CodeWalk]]:
    """Walk the ``k`` best-screened shape-code samples to better-fitting codes.

    Parameters
    ----------
    proposals : sequence of Proposal
        The screened candidates; those with a ``code`` can be searched.
    screen : ScreenResult
        Their screening, in the same order.
    pdf, settings, element
        The data, fit settings and metal.
    k : int
        Walks (0: none).
    rounds : int
        Most steps of a walk; each round screens the neighbours of every walk at once.
    device : str, optional
        Torch device of the screening.

    Returns
    -------
    (new proposals, their screening, the walks)
        One proposal for each walk that moved (``SEARCHED_INDEX + j``, source
        ``"code search (from sample i): <type> <n> <builder arguments>"``).
    """
    from ..elements import nearest_neighbour_distance as element_nn
    from ..shapegen.codes import decode
    from ..shapegen.generator import entry_key, walk_family

    order = np.argsort(screen.rw, kind="stable")
    walks = [
        CodeWalk(
            proposals[i],
            walk_family(p.code["family"]),
            np.asarray(p.code["theta"], float),
            float(screen.rw[i]),
        )
        for i in order
        if (p := proposals[i]).code is not None
    ][: max(int(k), 0)]
    if not walks:
        return [], screen.take([]), []
    nn = element_nn(element)
    seen = {entry_key(w.family, w.theta) for w in walks}
    shapes = DistinctGeometries()
    for w in walks:
        xyz = w.start.xyz
        shapes.add((xyz - xyz.mean(0)) / nearest_neighbour_distance(w.start.structure))
    moving = list(walks)
    for _ in range(max(int(rounds), 0)):
        batch = [
            (w, t, s) for w in moving for t, s in _neighbours(w, element, nn, seen, shapes)
        ]
        if not batch:
            break
        res = screen_candidates(
            [np.asarray(s.xyz_cartn, float) for _, _, s in batch],
            pdf.r, pdf.g, settings, dg=pdf.dg, device=device,
        )  # fmt: skip
        still = []
        for w in moving:
            mine = [j for j, (v, _, _) in enumerate(batch) if v is w]
            if not mine:
                continue
            j = min(mine, key=lambda m: res.rw[m])
            if res.rw[j] < w.rw:
                _, theta, s = batch[j]
                w.theta, w.rw, w.structure = theta, float(res.rw[j]), s
                w.screen = res.take([j])
                w.steps.append({"entry": decode(w.family, theta)[1], "screen_rw": w.rw})
                still.append(w)
        moving = still
        if not moving:
            break
    out, screens = [], []
    for w in walks:
        if w.structure is None:
            continue
        stype, entry = decode(w.family, w.theta)
        label = (
            f"{CODE_SEARCH_SOURCE} (from sample {w.start.index}): {stype} "
            f"{len(w.structure)} {json.dumps(entry, sort_keys=True)}"
        )
        out.append(
            Proposal(
                index=SEARCHED_INDEX + len(out),
                structure=w.structure,
                source=label,
                latent=list(w.start.latent),
                code={"family": w.family, "theta": [float(x) for x in w.theta]},
            )
        )
        screens.append(w.screen)
    return out, ScreenResult.concatenate(screens) if screens else screen.take([]), walks
