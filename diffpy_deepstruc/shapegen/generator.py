"""PDF -> candidate structures with a shape-code model.

Latent points are drawn from p(z | PDF) (the first is its mean); the decoder gives each
a family (the most probable one) and the family's numbers, which
:func:`~diffpy_deepstruc.shapegen.codes.build` turns into atoms.  A code whose builder
refuses it (or that gives fewer than :data:`MIN_ATOMS` atoms or an unphysical
structure) falls back to the next most probable family.  The shape is built at the
element's nearest-neighbour distance, expressed in units of it, and scaled to the PDF
as the distance models' samples are (the nearest-neighbour peak, then
:func:`~diffpy_deepstruc.generator.fit_scale`).

Guided sampling (``generate(..., guide=...)``) draws more distinct samples than asked
and keeps those whose structures fit the PDF best by the guide's misfit, for instance a
batched refinement's Rw (:func:`diffpy_deepstruc.solve.screen.screening_guide`): the
model proposes, the data choose.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..catalog import unit_physical
from ..checkpoint import CONFIG_NAME
from ..clusters import DistinctGeometries
from ..errors import CheckpointError, ParameterError
from ..generator import DEFAULT_UISO, Candidate, _as_pdf, check_metal, fit_scale
from ..preprocess import PreprocessConfig, prepare_input
from .codes import build, decode, family_slots, neighbour_codes
from .network import CodeNet
from .training import load_codegen

__all__ = [
    "GUIDED_EXPAND",
    "GUIDED_PROPOSALS",
    "SHIPPED_FOLDER",
    "SHIPPED_NAMES",
    "ShapeGenerator",
    "build_unit",
    "code_record",
    "entry_key",
    "guided_selection",
    "resampling_weights",
    "load_generator",
    "new_neighbours",
    "walk_family",
]

#: Folder of the shipped shape-code models in the package (``dae/`` below it).
SHIPPED_FOLDER = "pretrained/shapecode"

#: With ``distinct``, the spread of the latent draws doubles after every this many times
#: ``n`` draws (up to 8 times the temperature's).
WIDEN_EVERY = 2
#: Fewest atoms of a candidate (smaller builds are redrawn).
MIN_ATOMS = 4
#: Latent draws tried per requested sample before giving up (duplicates and codes no
#: builder accepts are redrawn).
MAX_DRAWS_PER_SAMPLE = 10
#: Guided sampling draws this many distinct proposals per returned sample by default
#: (chosen on the validation split of the shape-wise split: 10 gave better count rates
#: than 5, docs/shapegen.md).
GUIDED_PROPOSALS = 10
#: Guided sampling also judges the neighbouring codes of this many best proposals.
GUIDED_EXPAND = 5

#: A guide: the misfit to the PDF of each structure's coordinates (lower is better).
Guide = Callable[[list[np.ndarray]], Sequence[float] | np.ndarray]


def build_unit(family: str, theta: Any, element: str, nn: float) -> np.ndarray | None:
    """Centred coordinates (in units of ``nn``) of a code's particle built at the
    metal's distance ``nn``, or None when its builder refuses the code, or the particle
    has fewer than :data:`MIN_ATOMS` atoms or is unphysical
    (:func:`~diffpy_deepstruc.catalog.unit_physical`)."""
    try:
        atoms = build(family, theta, element, nn)
    except ParameterError:
        return None
    unit = (atoms.positions - atoms.positions.mean(0)) / nn
    return unit if len(unit) >= MIN_ATOMS and unit_physical(unit) else None


def code_record(family: str, theta: Any, probability: float) -> dict[str, Any]:
    """A sample's ``code``: family, numbers, the decoder's probability of the family,
    and the catalog type and builder entry they decode to."""
    stype, entry = decode(family, theta)
    return {
        "family": family,
        "theta": [float(x) for x in theta],
        "probability": probability,
        "type": stype,
        "entry": entry,
    }


def entry_key(family: str, theta: Any) -> str:
    """A code's builder entry as a string: codes with the same key build the same
    particle."""
    return _record_key(*decode(family, theta))


def _record_key(structure_type: str, entry: dict) -> str:
    """:func:`entry_key` of a decoded code (a :func:`code_record`'s type and entry)."""
    return json.dumps([structure_type, entry], sort_keys=True)


def walk_family(family: str) -> str:
    """The family a sample of ``family`` is searched in: a relaxed shape's ideal base
    (``relaxed/icosahedron`` -> ``icosahedron``; the same numbers), since building a
    relaxed neighbour runs a relaxation (seconds per walk) and the completion relaxes
    the finalists against the data; any other family itself."""
    return family.removeprefix("relaxed/")


def new_neighbours(
    family: str,
    theta: Any,
    element: str,
    nn: float,
    seen: set[str],
    shapes: DistinctGeometries,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(theta, unit)`` of the codes one step from ``theta``
    (:func:`~diffpy_deepstruc.shapegen.codes.neighbour_codes`) whose builder entry is
    not in ``seen`` (:func:`entry_key`) and whose atoms are not in ``shapes``; both are
    updated.  ``unit``: as :func:`build_unit` (codes it refuses are left out)."""
    out = []
    for alt in neighbour_codes(family, theta):
        key = entry_key(family, alt)
        if key in seen:
            continue
        seen.add(key)
        unit = build_unit(family, alt, element, nn)
        if unit is None or not shapes.add(unit):
            continue  # refused, too small, unphysical, or the atoms of a code met before
        out.append((alt, unit))
    return out


class ShapeGenerator:
    """Generate candidate structures from a PDF with a shape-code model.

    Parameters
    ----------
    model : CodeNet
    config : dict
        The checkpoint's ``config.json`` (families, code statistics, preprocessing).
    fit_scale : bool
        Refine each candidate's scale against G(r) (as :class:`~diffpy_deepstruc.
        generator.DeepStruc` does).
    temperature : float, optional
        Factor on the spread of the latent draws around the prior mean (1: p(z | PDF)
        as trained; smaller: samples closer to the most probable structure).  Default:
        the checkpoint's ``sampling.temperature`` (chosen on the validation split), else 1.
    roundings : int, optional
        Default of :meth:`generate`'s ``roundings``: the checkpoint's
        ``sampling.roundings``, else 0.
    """

    def __init__(
        self,
        model: CodeNet,
        config: dict[str, Any],
        fit_scale: bool = True,
        temperature: float | None = None,
        roundings: int | None = None,
    ) -> None:
        self.model = model.eval()
        self.meta = config
        self.kind = model.kind
        self.families = list(config["families"])
        self.theta_mean = np.asarray(config["theta_mean"], float)
        self.theta_std = np.asarray(config["theta_std"], float)
        self.preprocess_config = PreprocessConfig.from_dict(config["preprocess"])
        self.elements = list(config.get("elements") or [])
        self.fit_scale = bool(fit_scale)
        if temperature is None:
            temperature = float(config.get("sampling", {}).get("temperature", 1.0))
        if not (isinstance(temperature, int | float) and 0 <= temperature <= 10):
            raise ParameterError(
                f"temperature must be a number in 0..10, not {temperature!r}"
            )
        self.temperature = float(temperature)
        if roundings is None:
            roundings = int(config.get("sampling", {}).get("roundings", 0))
        if not isinstance(roundings, int) or roundings < 0:
            raise ParameterError(f"roundings must be an integer >= 0, not {roundings!r}")
        self.roundings = roundings

    @classmethod
    def load(cls, path: str | os.PathLike, **kw) -> ShapeGenerator:
        """Load a checkpoint folder written by ``train_codegen``."""
        model, config = load_codegen(path)
        gen = cls(model, config, **kw)
        gen.checkpoint_dir = Path(path)  # files that come with it (its latent map)
        return gen

    @classmethod
    def pretrained(cls, kind: str = "cvae", **kw) -> ShapeGenerator:
        """The shape-code model shipped in ``diffpy_deepstruc/pretrained/shapecode``
        (``kind="dae"``: the deterministic comparison model in its ``dae/``), trained on
        every shape of the imperfect catalog (docs/shapegen.md).  No network access."""
        if kind not in ("cvae", "dae"):
            raise ParameterError(f"kind must be 'cvae' or 'dae', not {kind!r}")
        res = resources.files("diffpy_deepstruc").joinpath(*SHIPPED_FOLDER.split("/"))
        if kind == "dae":
            res = res / "dae"
        with resources.as_file(res) as p:
            if not (Path(p) / CONFIG_NAME).is_file():
                raise CheckpointError(f"no pretrained shape-code {kind} model in {p}")
            return cls.load(p, **kw)

    def preprocess(self, pdf: Any) -> tuple[np.ndarray, float]:
        """The network input ``[L]`` for a PDF (PDFData, path or (r, g)) and the
        nearest-neighbour peak position r1 (A) that fixes its size."""
        r, g = _as_pdf(pdf)
        return prepare_input(r, g, self.preprocess_config)

    def _condition(self, pdf: Any) -> tuple[torch.Tensor, float]:
        x, r1 = self.preprocess(pdf)
        with torch.no_grad():
            return self.model.condition(torch.from_numpy(x).unsqueeze(0)), r1

    def encode(self, pdf: Any) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sampling spread ``[D]`` of p(z | PDF)."""
        c, _ = self._condition(pdf)
        with torch.no_grad():
            mu, logvar = self.model.prior(c)
            std = self.model.prior_std(logvar)
        return mu[0].numpy().astype(float), std[0].numpy().astype(float)

    def codes(
        self, z: np.ndarray, top: int = 2
    ) -> list[list[tuple[str, np.ndarray, float]]]:
        """The ``top`` most probable ``(family, theta, probability)`` of each latent
        point ``z [n, D]`` (theta in the builders' units)."""
        with torch.no_grad():
            logits, codes = self.model.decode(
                torch.as_tensor(np.asarray(z), dtype=torch.float32)
            )
            prob = torch.softmax(logits, dim=1).numpy()
            codes = codes.numpy()
        out = []
        for i in range(len(prob)):
            best = []
            for f in np.argsort(-prob[i])[:top]:
                fam = self.families[f]
                k = len(family_slots(fam))
                theta = codes[i, f, :k] * self.theta_std[f, :k] + self.theta_mean[f, :k]
                best.append((fam, theta, float(prob[i, f])))
            out.append(best)
        return out

    def build_points(self, z: np.ndarray, element: str = "Pt") -> list[tuple[Any, dict]]:
        """The structure of each latent point ``z [n, D]`` at the metal's distance:
        its most probable family whose builder accepts the code and gives a physical
        particle of at least :data:`MIN_ATOMS` atoms (the next family otherwise).

        Returns
        -------
        list of (diffpy.structure.Structure, code dict)
        """
        from ..elements import nearest_neighbour_distance
        from ..structures import arrays_to_structure

        sym = check_metal(element)
        nn = nearest_neighbour_distance(sym)
        out = []
        for options in self.codes(np.atleast_2d(z), top=len(self.families)):
            for fam, theta, p in options:
                unit = build_unit(fam, theta, sym, nn)
                if unit is not None:
                    s = arrays_to_structure(unit * nn, sym, DEFAULT_UISO)
                    out.append((s, code_record(fam, theta, p)))
                    break
            else:
                raise ParameterError("no builder accepts any family's code at this point")
        return out

    def _check_element(self, element: str) -> str:
        """:func:`~diffpy_deepstruc.generator.check_metal` (any metal)."""
        return check_metal(element)

    def _proposals(self, z: np.ndarray, roundings: int):
        """``(latent index, options)`` in the order :meth:`generate` tries them."""
        from .codes import alternative_roundings

        options = self.codes(z)
        yield 0, options[0]
        if roundings > 0:
            fam, theta, p = options[0][0]
            for alt in alternative_roundings(fam, theta, roundings):
                yield 0, [(fam, alt, p)]
        yield from enumerate(options[1:], start=1)

    def generate(
        self,
        pdf: Any,
        n: int = 20,
        element: str = "Pt",
        seed: int = 0,
        uiso: float = DEFAULT_UISO,
        include_mean: bool = True,
        distinct: bool = True,
        roundings: int | None = None,
        guide: Guide | None = None,
        proposals: int | None = None,
        expand: int = GUIDED_EXPAND,
    ) -> list[Candidate]:
        """Sample ``n`` candidate structures for a PDF.

        Parameters
        ----------
        pdf : PDFData, path or (r, g)
        n : int
        element : str
            Any metal.
        seed : int
            Seed of the latent draws (same seed, same candidates).
        uiso : float
            Isotropic displacement (A^2) of every atom.
        include_mean : bool
            The first candidate decodes the prior mean.
        distinct : bool
            Redraw a sample whose builder entry or atoms (the catalog's rule,
            :class:`~diffpy_deepstruc.clusters.DistinctGeometries`) repeat an earlier
            one's (default: diverse
            candidates for screening; the spread of the draws doubles after every
            ``2 n`` draws, up to 8 times, so that a confident model still yields ``n``
            distinct shapes); False keeps repeats, so the count of a structure among
            the samples says how probable the model finds it.
        roundings : int, optional
            After the prior-mean sample, this many of its code's
            :func:`~diffpy_deepstruc.shapegen.codes.alternative_roundings` (the integers
            and bits closest to their rounding boundary taken the other way), then the
            latent draws.  Default: :attr:`roundings`.  Needs ``include_mean``.
        guide : callable, optional
            Guided sampling: ``guide(xyzs) -> misfits``, the misfit to the PDF of each
            structure (coordinates in A; lower is better), for instance
            :func:`diffpy_deepstruc.solve.screen.screening_guide` (a batched fit's Rw).
            ``proposals`` distinct samples are drawn and the ``n`` with the lowest
            misfit are returned, best first, each with its ``misfit``: the samples
            of p(z | PDF) whose structures fit the data best.  With ``distinct=False``
            the ``n`` are instead drawn with repeats (seeded) from those proposals,
            each with probability proportional to ``exp(-N/2 ((m / m_best)^2 - 1))``
            for misfit ``m`` and ``N = guide.independent_points`` (an Rw ratio over
            ``N`` independent points, as the Hamilton test reads it), so that how
            often a structure recurs says how strongly the data favour it.
        proposals : int, optional
            Distinct samples drawn for the guide (default :data:`GUIDED_PROPOSALS`
            times ``n``; at least ``n`` unless ``distinct`` is False).
        expand : int
            With a guide: the codes one step from the ``expand`` best-fitting
            proposals (:func:`new_neighbours`; a layer count, shell or vacancy count
            +-1, a radius or offset step, a stacking bit) are built, scaled as their
            proposal and judged by the guide too (0: none).

        Returns
        -------
        list of Candidate
            At most ``n`` (fewer only when the draws run out: ``10 n`` draws, or
            ``10 proposals`` with a guide), each with its ``code``; in drawing order,
            or best first with a guide.
        """
        if not isinstance(n, int) or n < 1:
            raise ParameterError(f"n must be a positive integer, not {n!r}")
        if guide is None:
            if proposals is not None:
                raise ParameterError("proposals needs a guide")
            return self._draw(
                pdf, n, element, seed, uiso, include_mean, distinct, roundings
            )
        if proposals is None:
            proposals = GUIDED_PROPOSALS * n
        least = n if distinct else 1  # with repeats any number of proposals will do
        if not isinstance(proposals, int) or proposals < least:
            raise ParameterError(
                f"proposals must be an integer of at least {least} (n = {n}, distinct = "
                f"{distinct}), not {proposals!r}"
            )
        if not isinstance(expand, int) or expand < 0:
            raise ParameterError(f"expand must be an integer >= 0, not {expand!r}")
        drawn = self._draw(
            pdf, proposals, element, seed, uiso, include_mean, True, roundings
        )
        return guided_selection(
            drawn, guide, n, expand=expand, uiso=uiso, repeats=None if distinct else seed
        )

    def _draw(
        self,
        pdf: Any,
        n: int,
        element: str,
        seed: int,
        uiso: float,
        include_mean: bool,
        distinct: bool,
        roundings: int | None,
    ) -> list[Candidate]:
        """:meth:`generate` without a guide (the samples in drawing order)."""
        from ..elements import nearest_neighbour_distance
        from ..structures import arrays_to_structure

        sym = check_metal(element)
        r, g = _as_pdf(pdf)
        c, r1 = self._condition((r, g))
        with torch.no_grad():
            mu, logvar = self.model.prior(c)
            std = self.model.prior_std(logvar) * self.temperature
        gen = torch.Generator().manual_seed(int(seed))
        n_draws = MAX_DRAWS_PER_SAMPLE * n
        eps = torch.randn((n_draws, mu.shape[1]), generator=gen)
        if distinct:  # a narrow p(z | PDF) runs out of distinct shapes: widen the draws
            block = torch.div(torch.arange(n_draws), WIDEN_EVERY * n, rounding_mode="floor")
            eps = eps * (2.0 ** block.clamp(max=3)).unsqueeze(1)
        if include_mean:
            eps[0] = 0.0
        z = (mu + std * eps).numpy()
        if roundings is None:
            roundings = self.roundings
        nn = nearest_neighbour_distance(sym)
        out: list[Candidate] = []
        seen: set[str] = set()
        shapes = DistinctGeometries()
        for k, options in self._proposals(z, roundings if include_mean else 0):
            if len(out) == n:
                break
            for fam, theta, p in options:
                code = code_record(fam, theta, p)
                key = _record_key(code["type"], code["entry"])
                if distinct and key in seen:
                    break
                unit = build_unit(fam, theta, sym, nn)
                if unit is None:
                    continue
                seen.add(key)
                # other arguments may build the same atoms
                if distinct and not shapes.add(unit):
                    break
                scale = fit_scale(unit, r, g, r1) if self.fit_scale else float(r1)
                s = arrays_to_structure(
                    unit * scale,
                    sym,
                    uiso,
                    title=f"deepstruc shapegen {self.kind} sample {len(out)}",
                )
                out.append(
                    Candidate(
                        structure=s,
                        latent=z[k].astype(float),
                        n_atoms=len(unit),
                        residual=0.0,
                        scale=scale,
                        is_prior_mean=include_mean and k == 0 and not out,
                        index=len(out),
                        code=code,
                    )
                )
                break
        return out


def guided_selection(
    drawn: list[Candidate],
    guide: Guide,
    n: int,
    *,
    expand: int = 0,
    uiso: float = DEFAULT_UISO,
    repeats: int | None = None,
) -> list[Candidate]:
    """The ``n`` candidates with the lowest ``guide`` misfit, best first (ties in
    drawing order), each with its ``misfit`` and its rank as ``index``: of ``drawn``
    and, with ``expand``, of the new neighbouring codes of the ``expand`` best of them
    (:func:`new_neighbours`, scaled as the candidate they neighbour).  With ``repeats``
    (a seed), ``n`` draws with repeats by :func:`resampling_weights` instead, sorted
    best first, each with its own copy of the structure.

    Raises
    ------
    ParameterError
        When the guide does not give one number (not nan) per structure, or, with
        ``repeats``, has no ``independent_points``.
    """
    if not drawn:
        return []
    pool = list(drawn)
    misfit = _misfits(guide, pool)
    if expand:
        pool_new = _expanded(
            [drawn[int(i)] for i in np.argsort(misfit, kind="stable")[:expand]],
            drawn,
            uiso,
        )
        if pool_new:
            misfit = np.concatenate([misfit, _misfits(guide, pool_new)])
            pool += pool_new
    order = np.argsort(misfit, kind="stable")
    if repeats is None:
        chosen = order[:n]
    else:
        w = resampling_weights(misfit, getattr(guide, "independent_points", None))
        picked = np.random.default_rng(int(repeats)).choice(len(pool), size=n, p=w)
        rank_of = np.empty(len(pool), dtype=int)
        rank_of[order] = np.arange(len(pool))
        chosen = picked[np.argsort(rank_of[picked], kind="stable")]
    copy = repeats is not None  # each repeat gets its own Structure
    return [
        _ranked(pool[int(i)], rank, float(misfit[i]), copy) for rank, i in enumerate(chosen)
    ]


def _ranked(c: Candidate, rank: int, misfit: float, copy: bool = False) -> Candidate:
    """``c`` with its rank as ``index`` and its misfit (a copy of its structure with
    ``copy``)."""
    extra = {"structure": c.structure.copy()} if copy else {}
    return replace(c, index=rank, misfit=misfit, **extra)


def resampling_weights(misfit: np.ndarray, independent_points: float | None) -> np.ndarray:
    """Probabilities ``exp(-N/2 ((m / m_best)^2 - 1))``, normalised, of misfits ``m``
    (Rw values) over ``N`` independent points: the chi^2 difference to the best when its
    misfit is taken as the noise level (what the Hamilton R-ratio test assumes).

    Raises
    ------
    ParameterError
        When ``N`` is missing or not positive, or no misfit is finite.
    """
    if independent_points is None or not independent_points > 0:
        raise ParameterError(
            "resampling with repeats needs the guide's independent_points (a positive "
            f"number), not {independent_points!r}"
        )
    m = np.asarray(misfit, dtype=float)
    if not np.isfinite(m.min()):
        raise ParameterError("no proposal has a finite misfit; nothing to resample")
    best = max(float(m.min()), 1e-12)
    logw = -0.5 * float(independent_points) * ((m / best) ** 2 - 1.0)
    w = np.exp(logw - logw.max())
    return w / w.sum()


def _misfits(guide: Guide, candidates: list[Candidate]) -> np.ndarray:
    misfit = np.asarray(guide([c.xyz for c in candidates]), dtype=float).reshape(-1)
    if misfit.shape != (len(candidates),) or np.isnan(misfit).any():
        raise ParameterError(
            f"the guide must give one number per structure ({len(candidates)}), not "
            f"{misfit.shape[0]} (or nan)"
        )
    return misfit


def _expanded(
    best: list[Candidate], drawn: list[Candidate], uiso: float
) -> list[Candidate]:
    """Candidates of the new codes one step from each of ``best`` (shape-code samples),
    new with respect to every one of ``drawn`` and to each other."""
    from ..elements import nearest_neighbour_distance
    from ..structures import arrays_to_structure

    seen = {_record_key(c.code["type"], c.code["entry"]) for c in drawn}
    shapes = DistinctGeometries()
    for c in drawn:
        shapes.add((c.xyz - c.xyz.mean(0)) / c.scale)
    out = []
    for c in best:
        fam = walk_family(c.code["family"])
        element = c.structure[0].element
        nn = nearest_neighbour_distance(element)
        for theta, unit in new_neighbours(fam, c.code["theta"], element, nn, seen, shapes):
            out.append(
                Candidate(
                    structure=arrays_to_structure(unit * c.scale, element, uiso),
                    latent=c.latent,
                    n_atoms=len(unit),
                    residual=0.0,
                    scale=c.scale,
                    code=code_record(fam, theta, c.code["probability"]),
                )
            )
    return out


#: Names of the shipped models that :func:`load_generator` takes for a folder.
SHIPPED_NAMES = ("pretrained", "pretrained-dae", "shapecode", "shapecode-dae")


def load_generator(path: str | os.PathLike):
    """The generator of a checkpoint folder, by its format: a :class:`ShapeGenerator`
    or a distance model's :class:`~diffpy_deepstruc.generator.DeepStruc`.

    The names of :data:`SHIPPED_NAMES` stand for the shipped models: ``pretrained``
    (distance CVAE), ``pretrained-dae``, ``shapecode`` (shape-code CVAE) and
    ``shapecode-dae``.
    """
    from ..generator import DeepStruc
    from .training import FORMAT

    if isinstance(path, str) and path in SHIPPED_NAMES:
        kind = "dae" if path.endswith("-dae") else "cvae"
        cls = ShapeGenerator if path.startswith("shapecode") else DeepStruc
        return cls.pretrained(kind)
    try:
        with open(os.path.join(os.fspath(path), CONFIG_NAME)) as fh:
            fmt = json.load(fh).get("format")
    except (OSError, ValueError, AttributeError):  # not JSON, not text, not an object
        fmt = None  # DeepStruc.load says what is wrong
    if fmt == FORMAT:
        return ShapeGenerator.load(path)
    return DeepStruc.load(path)
