"""Training catalog with imperfect particles and element presets.

The default catalog must stay exactly what it was (the shipped model's training
catalog); the imperfect rows must be deterministic, resumable, rebuildable from the file
and physical.  Every build here is tiny (n_max 30, two metals, 2 shapes per kind).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import numpy as np
import pytest
from _helpers import assert_same_contents as assert_same
from _helpers import catalog_contents as contents
from scipy.spatial import cKDTree

from diffpy_deepstruc import catalog as C
from diffpy_deepstruc.cli import main
from diffpy_deepstruc.clusters import build_cluster
from diffpy_deepstruc.elements import D_BLOCK_METALS
from diffpy_deepstruc.errors import CatalogError, ElementError, ParameterError

# Metals: Cu is relaxed with EMT, Fe (bcc) with the contraction model.
TINY = dict(elements=("Cu", "Fe"), n_max=30, variants=1)
IMP = C.ImperfectOptions(counts=2)


def tiny(**kw) -> C.CatalogConfig:
    return C.CatalogConfig(**{**TINY, "imperfect": IMP, **kw})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Serial build of the tiny catalog with every imperfect kind."""
    path = tmp_path_factory.mktemp("ref") / "cat.h5"
    report = C.build_catalog(path, tiny(), workers=1, block_size=16)
    return path, report


# ---------------------------------------------------------------- default unchanged


def _row_digest(rows) -> str:
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def test_default_plan_unchanged_and_first_in_the_shipped_catalog():
    """No new option: the 14181 ideal rows and 489 shapes as before the imperfect options;
    the shipped model's catalog (``deepstruc catalog --imperfect``, 22301 rows) starts with
    them, so its library lists those 489 shapes first."""
    cfg = C.CatalogConfig()
    assert "imperfect" not in cfg.to_dict()
    assert C.CatalogConfig(elements=["d-block"]).to_dict() == cfg.to_dict()
    specs = C.plan_catalog(cfg)
    assert len(specs) == 14181
    assert all(not isinstance(s, C.VariantSpec) for s in specs)
    meta = json.loads(
        (resources.files("diffpy_deepstruc") / "pretrained" / "config.json").read_text()
    )["catalog"]
    assert meta["n_structures"] == 22301
    shapes = json.loads(
        (resources.files("diffpy_deepstruc") / "pretrained" / "shapes.json").read_text()
    )
    first = [(s.type, json.dumps(s.args, sort_keys=True)) for s in specs]
    first = list(dict.fromkeys(first))
    assert len(first) == 489
    got = list(zip(shapes["types"], shapes["builders"], strict=True))
    assert got[:489] == first


def test_small_default_build_rows_unchanged(tmp_path):
    """Rows of `deepstruc catalog --nmax 30 --elements Au Fe` as built before the imperfect
    options existed (digest of type|element|builder|natoms of that file)."""
    specs = C.plan_catalog(C.CatalogConfig(elements=("Au", "Fe"), n_max=30))
    rows = [
        f"{s.type}|{s.element}|{json.dumps(s.args, sort_keys=True)}|{s.natoms}"
        for s in specs
    ]
    assert len(rows) == 74
    assert (
        _row_digest(rows)
        == "7ce095340673b61ccb373494d41393a9834af4bef84fdb2231ecdf2cf5d174ce"
    )


def test_ideal_rows_do_not_change_when_variants_are_added(reference, tmp_path):
    path, _ = reference
    plain = tmp_path / "plain.h5"
    C.build_catalog(plain, C.CatalogConfig(**TINY), workers=1)
    a, b = contents(plain), contents(path)
    m = a["structures/natoms"].shape[0]
    assert "structures/variant" not in a and "imperfect" not in json.loads(a["@config"])
    for name in ("xyz", "natoms", "element", "type", "builder", "nn"):
        assert np.array_equal(a[f"structures/{name}"], b[f"structures/{name}"][:m])
    assert np.array_equal(a["pdfs/g"], b["pdfs/g"][:m])
    assert np.array_equal(a["pdfs/params"], b["pdfs/params"][:m])
    assert set(b["structures/variant"][:m]) == {"ideal"}


# ---------------------------------------------------------------- content


def test_counts_schema_and_rebuild(reference):
    path, report = reference
    with C.open_catalog(path) as cat:
        v = cat.file["structures/variant"].asstr()[()]
        n_ideal = int((v == "ideal").sum())
        assert n_ideal == 74
        for el in ("Cu", "Fe"):
            el_rows = cat.file["structures/element"].asstr()[()] == el
            for kind in C.IMPERFECT_KINDS:
                assert int(((v == kind) & el_rows).sum()) == 2, (el, kind)
        assert report.n_structures == cat.n_structures == 74 + 2 * 2 * 7
        assert cat.stats["per_variant"]["relaxed"] == 4
        types = set(cat.file["structures/type"].asstr()[()])
        assert types <= set(C.STRUCTURE_TYPES)
        for i in range(n_ideal, cat.n_structures):
            st = cat.structure(i)
            assert st["variant"] in C.IMPERFECT_KINDS
            assert st["builder"] != st["type"]
            raw = json.loads(cat.file["structures/builder"].asstr()[i])
            assert raw == {"builder": st["builder"], "args": st["args"]}
            again = cat.rebuild(i).positions.astype(np.float32)
            assert np.array_equal(again, st["xyz"].astype(np.float32)), i
            if st["type"] == "stacking":
                assert 0.0 <= st["hcp_fraction"] <= 1.0
            if st["variant"] == "relaxed":
                assert cat.rebuild(i).info["relaxation"] == (
                    "emt" if st["element"] == "Cu" else "contraction"
                )
        first = cat.structure(0)
        assert first["variant"] == "ideal" and first["builder"] == first["type"]


def test_every_variant_is_physical(reference):
    """Shortest distance >= 0.8 nn, every atom has a neighbour within 1.2 nn."""
    path, _ = reference
    with C.open_catalog(path) as cat:
        v = cat.file["structures/variant"].asstr()[()]
        for i in np.flatnonzero(v != "ideal"):
            st = cat.structure(int(i))
            x, nn = st["xyz"], st["nn"]
            d, _ = cKDTree(x).query(x, k=2)
            assert d[:, 1].min() >= 0.8 * nn, (v[i], st["args"])
            assert d[:, 1].max() <= 1.2 * nn, (v[i], st["args"])


def test_relaxed_structures_move_the_surface(reference):
    path, _ = reference
    with C.open_catalog(path) as cat:
        v = cat.file["structures/variant"].asstr()[()]
        for i in np.flatnonzero(v == "relaxed"):
            st = cat.structure(int(i))
            a = st["args"]
            ideal = build_cluster(a["maker"], st["element"], a["args"], st["nn"])
            shift = np.abs(st["xyz"] - (ideal.positions - ideal.positions.mean(0)))
            assert shift.max() > 1e-3  # moved ...
            d, _ = cKDTree(st["xyz"]).query(st["xyz"], k=2)
            assert 0.8 * st["nn"] <= d[:, 1].min() <= st["nn"]  # ... and contracted


# ---------------------------------------------------------------- determinism, resume


def test_same_file_for_workers_and_dask(reference, tmp_path):
    path, _ = reference
    ref = contents(path)
    pooled = tmp_path / "pool.h5"
    assert C.build_catalog(pooled, tiny(), workers=2, block_size=7).workers == 2
    assert_same(ref, contents(pooled))
    distributed = pytest.importorskip("dask.distributed")
    out = tmp_path / "dask.h5"
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        C.build_catalog(out, tiny(), scheduler=cluster.scheduler_address, block_size=9)
    assert_same(ref, contents(out))


def test_resume_and_refusal(reference, tmp_path):
    path, _ = reference
    out = tmp_path / "r.h5"
    first = C.build_catalog(out, tiny(), workers=1, block_size=20, max_blocks=4)
    assert not first.complete and first.completed == 80  # into the imperfect rows
    with pytest.raises(CatalogError, match="imperfect"):
        C.build_catalog(
            out, tiny(imperfect=C.ImperfectOptions(counts=3)), workers=1, block_size=20
        )
    with pytest.raises(CatalogError, match="imperfect"):
        C.build_catalog(out, C.CatalogConfig(**TINY), workers=1)
    second = C.build_catalog(out, tiny(), workers=1, block_size=6)
    assert second.complete and second.resumed_from == 80
    assert_same(contents(path), contents(out))


# ---------------------------------------------------------------- options


def test_imperfect_options():
    o = C.ImperfectOptions(kinds=["twin", "Rod"], counts={"rod": 5})
    assert o.kinds == ("rod", "twin")
    assert o.counts == {"rod": 5, "twin": C.DEFAULT_IMPERFECT_COUNT}
    assert C.ImperfectOptions.from_dict(o.to_dict()) == o
    cfg = tiny(imperfect=o)
    assert C.CatalogConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ParameterError, match="unknown imperfect kind"):
        C.ImperfectOptions(kinds=["dents"])
    with pytest.raises(ParameterError, match="not selected"):
        C.ImperfectOptions(kinds=["rod"], counts={"twin": 3})
    with pytest.raises(ParameterError, match="integer"):
        C.ImperfectOptions(counts=-1)
    with pytest.raises(ParameterError, match="unknown variant set"):
        C.plan_catalog(tiny(imperfect=C.ImperfectOptions(kinds=["rod"], source="nope")))
    assert C.imperfect_kind("imperfect.lattice_sphere", {"offset": [0, 0, 0]}) is None


def test_library_variant_set_as_source():
    """`source="imperfect"` takes the shape library's own set (sizes 250 and up)."""
    cfg = C.CatalogConfig(
        elements=("Au",),
        types=("icosahedron",),
        n_min=300,
        n_max=1000,
        imperfect=C.ImperfectOptions(kinds=["partial"], counts=2, source="imperfect"),
    )
    specs = [s for s in C.plan_catalog(cfg) if isinstance(s, C.VariantSpec)]
    assert len(specs) == 2
    assert all(s.maker == "imperfect.incomplete_shell" for s in specs)
    assert all(300 <= s.natoms <= 1000 for s in specs)


def test_element_presets():
    sp = C.expand_elements(["sp-metals"])
    assert {"Al", "Mg", "Sn", "Pb", "Na", "Bi"} <= set(sp) and "Fe" not in sp
    every = C.expand_elements("all-metals")
    assert set(D_BLOCK_METALS) <= set(every) and "Es" not in every and "Cf" in every
    assert "Si" not in every
    assert C.expand_elements(["d-block"]) == tuple(D_BLOCK_METALS)
    assert C.expand_elements(["Pb", "sp-metals", "pb"])[0] == "Pb"
    assert C.CatalogConfig(elements=["d-block"]).elements == C.CatalogConfig().elements
    with pytest.raises(ElementError, match="not a metal"):
        C.expand_elements(["Si"])
    with pytest.raises(ElementError, match="form factor"):
        C.expand_elements(["Es"])


def test_cli_imperfect_options(tmp_path, capsys):
    out = tmp_path / "c.h5"
    rc = main(
        [
            "catalog", "-o", str(out), "--nmax", "40", "--elements", "Al",
            "--types", "fcc", "icosahedron", "--variants", "1", "--workers", "1",
            "--imperfect", "offcentre", "vacancies", "--imperfect-count", "vacancies=1",
            "offcentre=2", "--quiet",
        ]
    )  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "per variant:" in text and "offcentre" in text
    with C.open_catalog(out) as cat:
        assert cat.config.imperfect.counts == {"offcentre": 2, "vacancies": 1}
        v = list(cat.file["structures/variant"].asstr()[()])
        assert v.count("offcentre") == 2 and v.count("vacancies") == 1
    assert main(["catalog", "-o", str(tmp_path / "x.h5"), "--imperfect-count", "3"]) == 2
    assert "need --imperfect" in capsys.readouterr().err
