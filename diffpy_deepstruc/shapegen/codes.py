"""Shape codes: a catalog structure as a family and a few numbers.

Every structure of the catalog is made by a deterministic builder from a handful of
arguments (:func:`diffpy_deepstruc.catalog.rebuild_structure`).  A *shape code* writes
those arguments as a **family** (the builder with its discrete choices: lattice, axis,
cut shape, the ideal shape under vacancies, ...) and a vector **theta** of numbers
(layer counts, radii, centre offsets, aspect ratios, vacancy counts, the Jagodzinski
symbols of a stacking sequence as 0/1, ...).  :func:`decode` rounds and clamps any
theta to valid arguments, so a generator that outputs *any* numbers for a family gets a
buildable structure, also one that no catalog holds.

Families (``<base>`` is one of the ideal families)::

    fcc bcc sc hcp              layers0 layers1 layers2        (ideal lattice clusters)
    icosahedron                 shells
    decahedron                  p q r
    octahedron                  length cutoff
    stacking/sphere             n_layers env1..env12 extra     (radius = half-height + extra)
    stacking/prism              n_layers env1..env12 apothem
    sphere/<lattice>            radius off0 off1 off2          (off-centre sphere cuts)
    ellipsoid/<lattice>/<axis>  a aspect                       (semi-axes a, a, aspect * a)
    rod/<lattice>/<axis>        radius ratio                   (length = ratio * radius)
    vacancies/<base>            <base slots> k                 (k surface vacancies, seed 0)
    partial/<base>              <base slots> fraction          (outer shell kept)
    relaxed/<base>              <base slots>                   (surface relaxed, "auto")

Twinned particles (``imperfect.twinned_particle``) are stacking sequences and are coded
as ``stacking/sphere`` or ``stacking/prism``; decoding gives the equivalent
``stacking`` builder entry.  All lengths are in nearest-neighbour units.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ParameterError

__all__ = [
    "LATTICES",
    "alternative_roundings",
    "neighbour_codes",
    "MAX_STACK_LAYERS",
    "Slot",
    "build",
    "canonical_code",
    "decode",
    "encode",
    "geometry_key",
    "family_slots",
    "family_type",
]

LATTICES: tuple[str, ...] = ("fcc", "bcc", "sc", "hcp")
#: Most close-packed layers a stacking code holds (the catalog's twins go to 14).
MAX_STACK_LAYERS = 14
_N_ENV = MAX_STACK_LAYERS - 2
_AXES = {"001": (0, 0, 1), "110": (1, 1, 0), "111": (1, 1, 1), "100": (1, 0, 0)}
_LAYER_SPACING = math.sqrt(2.0 / 3.0)
_MIN_LENGTH = 0.5  # smallest radius, extra, apothem or semi-axis decode gives (nn)


@dataclass(frozen=True)
class Slot:
    """One number of a shape code.

    Attributes
    ----------
    name : str
    kind : {"int", "bit", "real"}
        ``int`` rounds to an integer >= ``low``, ``bit`` to 0 or 1, ``real`` is kept
        (clamped to ``low..high``).
    low, high : float
        Valid range.
    """

    name: str
    kind: str
    low: float = -math.inf
    high: float = math.inf


def _layers() -> tuple[Slot, ...]:
    return tuple(Slot(f"layers{i}", "int", 1) for i in range(3))


def _stack(last: str, low: float) -> tuple[Slot, ...]:
    env = tuple(Slot(f"env{i + 1}", "bit", 0, 1) for i in range(_N_ENV))
    return (
        (Slot("n_layers", "int", 3, MAX_STACK_LAYERS),) + env + (Slot(last, "real", low),)
    )


_BASE_SLOTS: dict[str, tuple[Slot, ...]] = {
    **{lat: _layers() for lat in LATTICES},
    "icosahedron": (Slot("shells", "int", 1),),
    "decahedron": (Slot("p", "int", 1), Slot("q", "int", 1), Slot("r", "int", 0)),
    "octahedron": (Slot("length", "int", 2), Slot("cutoff", "int", 0)),
    "stacking/sphere": _stack("extra", 0.1),
    "stacking/prism": _stack("apothem", _MIN_LENGTH),
}


def _split(family: str) -> list[str]:
    if not isinstance(family, str) or not family:
        raise ParameterError(
            f"a shape-code family must be a non-empty string, not {family!r}"
        )
    return family.split("/")


def family_slots(family: str) -> tuple[Slot, ...]:
    """The numbers of a family's code, in order.

    Raises
    ------
    ParameterError
        Not a family of this module.
    """
    parts = _split(family)
    head = parts[0]
    if family in _BASE_SLOTS:
        return _BASE_SLOTS[family]
    if head == "sphere" and len(parts) == 2 and parts[1] in LATTICES:
        return (Slot("radius", "real", _MIN_LENGTH),) + tuple(
            Slot(f"off{i}", "real", -1.0, 1.0) for i in range(3)
        )
    if head in ("ellipsoid", "rod") and len(parts) == 3 and parts[1] in LATTICES:
        if parts[2] not in _AXES:
            raise ParameterError(f"shape-code family {family!r}: unknown axis {parts[2]!r}")
        first = "a" if head == "ellipsoid" else "radius"
        second = "aspect" if head == "ellipsoid" else "ratio"
        return (Slot(first, "real", _MIN_LENGTH), Slot(second, "real", 1.0))
    if head in ("vacancies", "partial", "relaxed") and len(parts) > 1:
        base = family_slots("/".join(parts[1:]))
        if "/".join(parts[1:]) not in _BASE_SLOTS:
            raise ParameterError(f"shape-code family {family!r}: not an ideal base shape")
        if head == "vacancies":
            return base + (Slot("k", "int", 1),)
        if head == "partial":
            return base + (Slot("fraction", "real", 0.05, 0.95),)
        return base
    raise ParameterError(f"unknown shape-code family {family!r}")


def family_type(family: str) -> str:
    """The catalog structure type of a family's structures."""
    parts = _split(family)
    if parts[0] in ("vacancies", "partial", "relaxed"):
        parts = parts[1:]
    if parts[0] in ("sphere", "ellipsoid", "rod"):
        return parts[1]
    return parts[0]


def _axis_name(axis: Any) -> str:
    key = "".join(str(int(round(float(x)))) for x in axis)
    if key not in _AXES or tuple(int(c) for c in key) != tuple(float(x) for x in axis):
        raise ParameterError(f"axis {list(axis)} has no shape-code family")
    return key


def _encode_base(structure_type: str, args: Mapping[str, Any]) -> tuple[str, list[float]]:

    if structure_type in LATTICES:
        return structure_type, [float(x) for x in args["layers"]]
    if structure_type == "icosahedron":
        return "icosahedron", [float(args["shells"])]
    if structure_type == "decahedron":
        return "decahedron", [float(args["p"]), float(args["q"]), float(args["r"])]
    if structure_type == "octahedron":
        return "octahedron", [float(args["length"]), float(args["cutoff"])]
    if structure_type == "stacking":
        return _encode_stack(
            str(args["sequence"]), float(args["radius"]), str(args["shape"])
        )
    raise ParameterError(f"structure type {structure_type!r} has no shape code")


def _encode_stack(sequence: str, radius: float, shape: str) -> tuple[str, list[float]]:
    from ..clusters import layer_environments

    n = len(sequence)
    if n > MAX_STACK_LAYERS:
        raise ParameterError(
            f"stacking sequence of {n} layers: shape codes hold at most {MAX_STACK_LAYERS}"
        )
    if not sequence.startswith("AB"):
        raise ParameterError(f"stacking sequence {sequence!r} does not start with 'AB'")
    env = [1.0 if e == "h" else 0.0 for e in layer_environments(sequence)]
    env += [0.0] * (_N_ENV - len(env))
    if shape == "sphere":
        return "stacking/sphere", [float(n)] + env + [
            radius - (n - 1) / 2.0 * _LAYER_SPACING
        ]
    if shape == "prism":
        return "stacking/prism", [float(n)] + env + [radius]
    raise ParameterError(f"stacking cut shape {shape!r} has no shape code")


def geometry_key(xyz: np.ndarray, nn: float = 1.0) -> str:
    """Digest of a geometry: atom count and sorted pair distances (in ``nn`` units,
    rounded to 1e-3), independent of atom order, rotation and translation.

    The fingerprint of :class:`diffpy_deepstruc.clusters.DistinctGeometries` as a
    hashable string, so that the sets of shapes to avoid can go to worker processes.
    """
    x = np.asarray(xyz, float) / float(nn)
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)[np.triu_indices(len(x), 1)]
    q = np.round(np.sort(d), 3).astype(np.float32)
    return hashlib.sha1(len(x).to_bytes(4, "little") + q.tobytes()).hexdigest()


@functools.lru_cache(maxsize=4096)
def _code_geometry(family: str, theta: tuple[float, ...]) -> str | None:
    """:func:`geometry_key` of a code's atoms (nn = 1); None when it does not build."""
    try:
        atoms = build(family, np.asarray(theta), "Au", 1.0)
    except ParameterError:
        return None
    return geometry_key(atoms.positions)


def _lattice_base(family: str) -> tuple[str, str] | None:
    """``(head, lattice)`` of a family whose first three numbers are ASE layer counts
    (``fcc``, ``vacancies/bcc``, ...; head "" for the ideal cluster), else None."""
    parts = _split(family)
    head = parts[0] if parts[0] in ("vacancies", "partial", "relaxed") else ""
    rest = parts[1:] if head else parts
    return (head, rest[0]) if len(rest) == 1 and rest[0] in LATTICES else None


def canonical_code(family: str, theta: Any) -> np.ndarray:
    """The code of the same atoms with the fewest layers (then the lexicographically
    smallest layer counts).

    ASE's layer counts of the lattice clusters are degenerate: fcc ``[2, 3, 3]``,
    ``[3, 3, 3]``, ``[3, 3, 4]`` and ``[4, 3, 4]`` cut the same 43 atoms (a truncation
    that does not bind can grow freely).  Every such code becomes one, so that a
    network learns one code per geometry.  Layer counts at or below the given ones are
    tried; a variant (vacancies, partial shell, relaxed) takes them only when the
    whole code builds the same atoms.  Other families are returned as they are.
    """
    base = _lattice_base(family)
    if base is None:
        return np.asarray(theta, dtype=float)
    t = np.asarray(_clean(family, theta), dtype=float)
    lat = base[1]
    layers = tuple(int(x) for x in t[:3])
    want = _code_geometry(lat, tuple(float(x) for x in layers))
    if want is None:
        return t
    tried = itertools.product(*(range(1, x + 1) for x in layers))
    for c in sorted(tried, key=lambda c: (sum(c), c)):
        if c == layers:
            return t
        if _code_geometry(lat, tuple(float(x) for x in c)) != want:
            continue
        alt = t.copy()
        alt[:3] = c
        if not base[0] or _code_geometry(family, tuple(alt)) == _code_geometry(
            family, tuple(t)
        ):
            return alt
    return t


def encode(structure_type: str, builder: str | Mapping[str, Any]) -> tuple[str, np.ndarray]:
    """The shape code of a catalog structure.

    Parameters
    ----------
    structure_type : str
        ``/structures/type``.
    builder : str or mapping
        ``/structures/builder`` (JSON text or parsed).

    Returns
    -------
    family : str
    theta : ndarray ``[len(family_slots(family))]``
        The :func:`canonical_code` (the same atoms, the fewest layer counts).

    Raises
    ------
    ParameterError
        A builder or argument this module does not code.
    """
    from ..catalog import _parse_builder
    from ..imperfect import twin_sequence

    maker, args = _parse_builder(structure_type, builder)
    try:
        if maker == structure_type:
            fam, theta = _encode_base(maker, args)
        elif maker == "imperfect.lattice_sphere":
            fam = f"sphere/{args['lattice']}"
            theta = [float(args["radius"])] + [
                float(x) for x in args.get("offset", (0, 0, 0))
            ]
        elif maker in ("imperfect.lattice_ellipsoid", "imperfect.lattice_rod"):
            if any(float(x) != 0 for x in args.get("offset", (0, 0, 0))):
                raise ParameterError(f"{maker} with an offset has no shape code")
            head = "ellipsoid" if maker.endswith("ellipsoid") else "rod"
            fam = f"{head}/{args['lattice']}/{_axis_name(args.get('axis', (0, 0, 1)))}"
            if head == "ellipsoid":
                a, b, c = (float(x) for x in args["semi_axes"])
                if a != b:
                    raise ParameterError(f"ellipsoid semi-axes {a}, {b}, {c}: a != b")
                theta = [a, c / a]
            else:
                theta = [
                    float(args["radius"]),
                    float(args["length"]) / float(args["radius"]),
                ]
        elif maker == "imperfect.twinned_particle":
            seq = twin_sequence(int(args["n_layers"]), list(args["twins"]))
            fam, theta = _encode_stack(
                seq, float(args["radius"]), str(args.get("shape", "sphere"))
            )
        elif maker in _ON_IDEAL:
            head, last = _ON_IDEAL[maker]
            if int(args.get("seed", 0)) != 0:
                raise ParameterError(f"{maker} with a seed other than 0 has no shape code")
            base, theta = _encode_base(str(args["shape"]), args["args"])
            fam, theta = f"{head}/{base}", theta + [float(args[last])]
        elif maker == "relaxed":
            if args.get("method", "auto") != "auto":
                raise ParameterError(
                    "relaxed shapes other than method='auto' have no shape code"
                )
            base, theta = _encode_base(str(args["maker"]), args["args"])
            fam = f"relaxed/{base}"
        else:
            raise ParameterError(f"builder {maker!r} has no shape code")
    except (KeyError, TypeError, ValueError) as exc:
        raise ParameterError(f"builder {maker!r} arguments {args!r}: {exc}") from None
    return fam, canonical_code(fam, theta)


#: Builders of an ideal shape plus one number: family prefix and that argument.
_ON_IDEAL = {
    "vacancies": ("vacancies", "k"),
    "imperfect.incomplete_shell": ("partial", "fraction"),
}


def _clean(family: str, theta: Any) -> list[float]:
    slots = family_slots(family)
    t = np.asarray(theta, dtype=float).reshape(-1)
    if t.size != len(slots):
        raise ParameterError(
            f"shape-code family {family!r} takes {len(slots)} numbers, got {t.size}"
        )
    if not np.all(np.isfinite(t)):
        raise ParameterError(f"shape code of {family!r} is not finite: {t.tolist()}")
    out = []
    for s, v in zip(slots, t, strict=True):
        if s.kind == "int":
            v = float(round(v))
        elif s.kind == "bit":
            v = 1.0 if v >= 0.5 else 0.0
        out.append(float(min(max(v, s.low), s.high)))
    return out


def _decode_base(family: str, t: list[float]) -> tuple[str, dict[str, Any]]:
    from ..clusters import _sequence_from_environments

    if family in LATTICES:
        return family, {"layers": [int(x) for x in t]}
    if family == "icosahedron":
        return family, {"shells": int(t[0])}
    if family == "decahedron":
        return family, {"p": int(t[0]), "q": int(t[1]), "r": int(t[2])}
    if family == "octahedron":
        length = int(t[0])
        return family, {"length": length, "cutoff": min(int(t[1]), (length - 1) // 2)}
    n = int(t[0])
    env = "".join("h" if b else "c" for b in t[1 : 1 + n - 2])
    seq = _sequence_from_environments(env)
    shape = family.split("/")[1]
    radius = t[-1] + (n - 1) / 2.0 * _LAYER_SPACING if shape == "sphere" else t[-1]
    return "stacking", {"sequence": seq, "radius": round(radius, 3), "shape": shape}


def decode(family: str, theta: Any) -> tuple[str, dict[str, Any]]:
    """Builder entry of a shape code (numbers rounded and clamped to valid arguments).

    Parameters
    ----------
    family : str
    theta : array-like ``[len(family_slots(family))]``

    Returns
    -------
    structure_type : str
    entry : dict
        A ``/structures/builder`` object: the ideal type's arguments, or
        ``{"builder": name, "args": {...}}``;
        ``catalog.rebuild_structure(structure_type, element, entry)`` builds it.
    """
    t = _clean(family, theta)
    parts = family.split("/")
    head = parts[0]
    if family in _BASE_SLOTS:
        return _decode_base(family, t)
    if head == "sphere":
        args = {
            "lattice": parts[1],
            "radius": round(t[0], 3),
            "offset": [round(x, 3) for x in t[1:]],
        }
        return parts[1], {"builder": "imperfect.lattice_sphere", "args": args}
    if head in ("ellipsoid", "rod"):
        axis = list(_AXES[parts[2]])
        if head == "ellipsoid":
            a = round(t[0], 3)
            args = {
                "lattice": parts[1],
                "semi_axes": [a, a, round(t[1] * a, 3)],
                "axis": axis,
            }
            return parts[1], {"builder": "imperfect.lattice_ellipsoid", "args": args}
        radius = round(t[0], 3)
        args = {
            "lattice": parts[1],
            "radius": radius,
            "length": round(t[1] * radius, 3),
            "axis": axis,
        }
        return parts[1], {"builder": "imperfect.lattice_rod", "args": args}
    base = "/".join(parts[1:])
    n_base = len(family_slots(base))
    stype, base_args = _decode_base(base, t[:n_base])
    if head == "vacancies":
        args = {"shape": stype, "args": base_args, "k": int(t[n_base]), "seed": 0}
        return stype, {"builder": "vacancies", "args": args}
    if head == "partial":
        args = {
            "shape": stype,
            "args": base_args,
            "fraction": round(t[n_base], 3),
            "seed": 0,
        }
        return stype, {"builder": "imperfect.incomplete_shell", "args": args}
    return stype, {
        "builder": "relaxed",
        "args": {"maker": stype, "args": base_args, "method": "auto"},
    }


def alternative_roundings(family: str, theta: Any, count: int) -> list[np.ndarray]:
    """The next most likely codes when the integers and bits of ``theta`` are rounded.

    Each integer slot can round the other way (``2.4`` -> 3 instead of 2) and each bit
    flip; a slot is the more ambiguous the closer it lies to its rounding boundary
    (margin ``0.5 - |t - round(t)|`` for integers, ``|t - 0.5|`` for bits).  Returns up
    to ``count`` codes: single changes by increasing margin, then pairs by increasing
    summed margin.  Reals are left as they are.
    """
    slots = family_slots(family)
    t = np.asarray(theta, dtype=float)
    changes = []  # (margin, slot, other value)
    for j, sl in enumerate(slots):
        if sl.kind == "int":
            r = float(round(t[j]))
            other = r + (1.0 if t[j] >= r else -1.0)
            if sl.low <= other <= sl.high:
                changes.append((0.5 - abs(t[j] - r), j, other))
        elif sl.kind == "bit":
            changes.append((abs(t[j] - 0.5), j, 0.0 if t[j] >= 0.5 else 1.0))
    changes.sort()
    combos = [(c[0], (c,)) for c in changes]
    combos += sorted(
        (a[0] + b[0], (a, b)) for i, a in enumerate(changes) for b in changes[i + 1 :]
    )
    out = []
    for _, parts in combos[: max(int(count), 0)]:
        alt = t.copy()
        for _, j, v in parts:
            alt[j] = v
        out.append(alt)
    return out


#: Steps of the real numbers in :func:`neighbour_codes`, by slot name (nn units or
#: fraction); other reals step by :data:`REAL_STEP`.
REAL_STEPS = {"fraction": 0.1, "aspect": 0.15, "ratio": 0.25}
REAL_STEP = 0.25


def neighbour_codes(family: str, theta: Any) -> list[np.ndarray]:
    """The codes one step from ``theta``: each integer +-1, each bit flipped, each real
    +- its step (:data:`REAL_STEPS`), within the slots' ranges.

    ``theta`` is rounded first (:func:`decode`'s integers and bits), so that a step
    always changes the decoded code; codes that decode to the same builder entry as
    ``theta`` or as an earlier neighbour are left out.
    """
    slots = family_slots(family)
    t = np.asarray(_clean(family, theta), dtype=float)
    seen = {json.dumps(decode(family, t), sort_keys=True)}
    out = []
    for j, sl in enumerate(slots):
        if sl.kind == "bit":
            values = [1.0 - t[j]]
        else:
            step = 1.0 if sl.kind == "int" else REAL_STEPS.get(sl.name, REAL_STEP)
            values = [t[j] - step, t[j] + step]
        for v in values:
            if not sl.low - 1e-9 <= v <= sl.high + 1e-9:
                continue
            alt = t.copy()
            alt[j] = v
            key = json.dumps(decode(family, alt), sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(alt)
    return out


def build(family: str, theta: Any, element: str, nn: float | None = None):
    """Build the structure of a shape code (:func:`decode`, then the builder).

    Returns
    -------
    ase.Atoms

    Raises
    ------
    ParameterError
        The builder refuses the arguments (e.g. a cut that leaves no atoms, vacancies
        in a particle without a surface).
    """
    from ..catalog import rebuild_structure

    stype, entry = decode(family, theta)
    try:
        return rebuild_structure(stype, element, entry, nn)
    except (ValueError, IndexError, KeyError) as exc:  # ParameterError, StructureError too
        raise ParameterError(f"shape code {family} {json.dumps(entry)}: {exc}") from None
