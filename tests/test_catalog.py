"""Training catalog: simulation, HDF5 storage, resume, Dask, reader, CLI.

Every catalog here is tiny (a few small icosahedra/decahedra of one or two metals) so the
whole module runs in seconds on a shared 2-core machine.
"""

from __future__ import annotations

import json
import math
import shutil

import h5py
import numpy as np
import pytest
from _helpers import assert_same_contents as assert_same
from _helpers import catalog_contents as contents

from diffpy_deepstruc import catalog as C
from diffpy_deepstruc.cli import main
from diffpy_deepstruc.debye import pdf_batch
from diffpy_deepstruc.errors import CatalogError, OutputExistsError, ParameterError

TINY = dict(
    elements=("Au", "Pt"), types=("icosahedron", "decahedron"), n_max=20, variants=2
)


def tiny(**kw) -> C.CatalogConfig:
    return C.CatalogConfig(**{**TINY, **kw})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted serial build of the tiny catalog."""
    path = tmp_path_factory.mktemp("ref") / "cat.h5"
    report = C.build_catalog(path, tiny(), workers=1, block_size=3)
    return path, report


# ---------------------------------------------------------------- configuration


def test_default_ranges_cover_real_instruments():
    r = C.SimulationRanges()
    assert r.qmin == (0.5, 1.5) and r.qmax == (16.0, 30.0)
    assert r.qdamp == (0.01, 0.06) and r.qbroad == (0.0, 0.03)
    assert r.uiso == (0.002, 0.02) and r.delta2 == (0.0, 5.0)
    assert r.noise[1] == 0.03
    assert tuple(r.to_dict()) == C.PARAM_COLUMNS
    assert C.SimulationRanges.from_dict(r.to_dict()) == r
    draw = r.sample(np.random.default_rng(0))
    assert draw.dtype == np.float32 and draw.shape == (len(C.PARAM_COLUMNS),)
    for (lo, hi), x in zip(r.to_dict().values(), draw, strict=True):
        assert lo <= x <= hi


@pytest.mark.parametrize(
    "kw",
    [
        {"qmin": (1.0, 0.5)},
        {"qmax": (1.0, 2.0)},  # qmax below qmin
        {"uiso": (-0.01, 0.01)},
        {"scale": (0.0, 1.0)},
        {"noise": (0.0, float("inf"))},
        {"qdamp": 0.04},
    ],
)
def test_bad_ranges(kw):
    with pytest.raises(ParameterError):
        C.SimulationRanges(**kw)


def test_config_defaults_roundtrip_and_checks():
    from diffpy_deepstruc.clusters import STRUCTURE_TYPES
    from diffpy_deepstruc.elements import D_BLOCK_METALS

    cfg = C.CatalogConfig()
    assert cfg.elements == D_BLOCK_METALS and cfg.types == STRUCTURE_TYPES
    assert (cfg.n_min, cfg.n_max, cfg.variants, cfg.rmin, cfg.rmax, cfg.rstep) == (
        5,
        200,
        4,
        0.0,
        30.0,
        0.05,
    )
    assert len(cfg.r_grid()) == 600 and cfg.r_grid()[-1] == pytest.approx(29.95)
    assert C.CatalogConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert tiny(types=["decahedron", "icosahedron"]).types == ("icosahedron", "decahedron")
    for bad in (
        {"variants": 0},
        {"n_min": 30, "n_max": 20},
        {"rstep": -1.0},
        {"types": ["x"]},
    ):
        with pytest.raises(ParameterError):
            tiny(**bad)


def test_noise_model():
    r = np.arange(600) * 0.05
    g = np.stack(
        [C._noise(np.random.default_rng(i), r, 0.05, 1.0, 25.0, 0.01) for i in range(50)]
    )
    assert g[:, 0] == pytest.approx(0.0)  # G(0) = 0, like the signal
    assert g[:, 100:].std() == pytest.approx(0.01, rel=0.1)
    # band-limited to qmin..qmax (Hann window against leakage)
    spec = np.abs(np.fft.rfft(g[:, 100:] * np.hanning(500), axis=1)).mean(axis=0)
    q = 2 * math.pi * np.fft.rfftfreq(500, 0.05)
    inside = spec[(q > 2) & (q < 24)].mean()
    assert spec[q > 27].max() < 0.01 * inside and spec[q < 0.5].max() < 0.01 * inside


# ---------------------------------------------------------------- the file


def test_schema_and_reader(reference):
    path, report = reference
    assert report.complete and report.path == path and not C.partial_path(path).exists()
    with h5py.File(path, "r") as h5:
        a = h5.attrs
        assert a["format"] == C.FORMAT and a["version"] == C.VERSION
        assert a["seed"] == 0 and a["n_max"] == 20 and a["variants"] == 2
        assert json.loads(a["config"]) == tiny().to_dict()
        M = h5["structures/natoms"].shape[0]
        assert a["completed"] == a["n_planned"] == M == report.n_structures
        assert h5["structures/xyz"].shape == (M, 20, 3)
        assert h5["structures/xyz"].dtype == np.float32
        assert h5["pdfs/g"].shape == (2 * M, 600) and h5["pdfs/g"].dtype == np.float32
        assert h5["r"].dtype == np.float64
        assert list(h5["pdfs/structure"][()]) == [i for i in range(M) for _ in range(2)]
        assert json.loads(h5["pdfs/params"].attrs["columns"]) == list(C.PARAM_COLUMNS)
        types = set(h5["structures/type"].asstr()[()])
        assert types == {"icosahedron", "decahedron"}
        assert np.isnan(h5["structures/hcp_fraction"][()]).all()  # no stacking here
        stats = json.loads(a["stats"])
    assert stats == report.stats
    assert stats["n_structures"] == M and stats["n_pdfs"] == 2 * M
    assert stats["per_element"] == {"Au": M // 2, "Pt": M // 2}
    assert sum(stats["per_type"].values()) == M == sum(stats["size_histogram"]["counts"])

    with C.open_catalog(path) as cat:
        assert cat.n_structures == M and cat.n_pdfs == 2 * M and cat.variants == 2
        assert cat.config == tiny()
        assert cat.stats == stats
        st = cat.structure(0)
        assert st["type"] == "icosahedron" and st["natoms"] == 13 and st["element"] == "Au"
        assert st["args"] == {"shells": 2}
        assert st["xyz"].shape == (13, 3)
        from diffpy_deepstruc.elements import nearest_neighbour_distance

        assert st["nn"] == pytest.approx(nearest_neighbour_distance("Au"), rel=1e-6)
        atoms = cat.atoms(M - 1)
        assert atoms.get_chemical_symbols()[0] == "Pt"
        pdf = cat.pdf(3)
        assert pdf["structure"] == 1 and set(pdf["params"]) == set(C.PARAM_COLUMNS)
        with pytest.raises(ParameterError):
            cat.structure(M)


def test_stored_pdfs_equal_the_engine(tmp_path):
    cfg = tiny(ranges=C.SimulationRanges(noise=(0.0, 0.0)), elements=("Pd",))
    path = tmp_path / "quiet.h5"
    C.build_catalog(path, cfg, workers=1)
    with C.open_catalog(path) as cat:
        for j in range(cat.n_pdfs):
            pdf = cat.pdf(j)
            st = cat.structure(pdf["structure"])
            params, uiso = cat.pdf_parameters(j)
            assert pdf["params"]["noise"] == 0
            n = st["natoms"]
            r, G = pdf_batch([(st["xyz"], ["Pd"] * n, np.full(n, uiso))], params)
            assert np.array_equal(r, cat.r)
            assert np.array_equal(G[0].astype(np.float32), pdf["g"].astype(np.float32))
        # the variants really differ, within the ranges
        p = cat.file["pdfs/params"][()]
        for c, (lo, hi) in zip(C.PARAM_COLUMNS, cfg.ranges.to_dict().values(), strict=True):
            col = p[:, C.PARAM_COLUMNS.index(c)]
            assert (col >= np.float32(lo)).all() and (col <= np.float32(hi)).all()
            if hi > lo:
                assert len(np.unique(col)) == len(col)


def test_noise_is_added_at_the_drawn_level(reference):
    path, _ = reference
    with C.open_catalog(path) as cat:
        for j in range(0, cat.n_pdfs, 5):
            pdf = cat.pdf(j)
            st = cat.structure(pdf["structure"])
            params, uiso = cat.pdf_parameters(j)
            n = st["natoms"]
            _, G = pdf_batch([(st["xyz"], [st["element"]] * n, np.full(n, uiso))], params)
            resid = pdf["g"] - G[0]
            level = pdf["params"]["noise"] * np.abs(G[0]).max()
            assert resid[100:].std() == pytest.approx(level, rel=0.5, abs=1e-6)


def test_same_seed_same_file_other_seed_other_pdfs(reference, tmp_path):
    path, _ = reference
    again = tmp_path / "again.h5"
    C.build_catalog(again, tiny(), workers=1, block_size=5)  # other block size too
    assert_same(contents(path), contents(again))
    other = tmp_path / "other.h5"
    C.build_catalog(other, tiny(seed=1), workers=1)
    a, b = contents(path), contents(other)
    assert np.array_equal(a["structures/xyz"], b["structures/xyz"])
    assert not np.array_equal(a["pdfs/g"], b["pdfs/g"])


def test_process_pool_equals_serial(reference, tmp_path):
    path, _ = reference
    pooled = tmp_path / "pool.h5"
    report = C.build_catalog(pooled, tiny(), workers=2, block_size=4)
    assert report.workers == 2
    assert_same(contents(path), contents(pooled))


def test_dask_local_cluster_equals_local(reference, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    path, _ = reference
    out = tmp_path / "dask.h5"
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        report = C.build_catalog(
            out, tiny(), scheduler=cluster.scheduler_address, block_size=4
        )
    assert report.complete and str(report.workers).startswith("dask")
    assert_same(contents(path), contents(out))


# ---------------------------------------------------------------- interruption


def test_killed_run_resumes_to_the_same_file(reference, tmp_path):
    path, full = reference
    out = tmp_path / "resume.h5"
    part = C.partial_path(out)
    first = C.build_catalog(out, tiny(), workers=1, block_size=3, max_blocks=2)
    assert not first.complete and first.path == part and first.completed == 6
    assert part.exists() and not out.exists()
    with h5py.File(part, "r") as h5:  # consistent state: exactly the finished blocks
        assert h5.attrs["completed"] == 6 and h5["pdfs/g"].shape[0] == 12
        assert "stats" not in h5.attrs
    with pytest.raises(CatalogError, match="unfinished"):
        C.open_catalog(out)
    with pytest.raises(CatalogError, match="unfinished"):
        C.open_catalog(part)
    second = C.build_catalog(out, tiny(), workers=1, block_size=3)
    assert second.complete and second.resumed_from == 6 and not part.exists()
    assert_same(contents(path), contents(out))


def test_crash_mid_block_loses_nothing(reference, tmp_path, monkeypatch):
    path, _ = reference
    out = tmp_path / "crash.h5"
    real = C._append_block
    calls = {"n": 0}

    def flaky(h5, specs, res, K):
        calls["n"] += 1
        if calls["n"] == 3:  # die half-way through writing the third block
            h5["structures/natoms"].resize(h5["structures/natoms"].shape[0] + 1, axis=0)
            raise KeyboardInterrupt
        return real(h5, specs, res, K)

    monkeypatch.setattr(C, "_append_block", flaky)
    with pytest.raises(KeyboardInterrupt):
        C.build_catalog(out, tiny(), workers=1, block_size=3)
    monkeypatch.setattr(C, "_append_block", real)
    with h5py.File(C.partial_path(out), "r") as h5:
        assert h5.attrs["completed"] == 6
    C.build_catalog(out, tiny(), workers=1, block_size=4)  # resume with other blocks
    assert_same(contents(path), contents(out))


def test_resume_refuses_other_arguments_and_force_restarts(tmp_path):
    out = tmp_path / "c.h5"
    C.build_catalog(out, tiny(), workers=1, block_size=3, max_blocks=1)
    with pytest.raises(CatalogError, match="other arguments.*seed"):
        C.build_catalog(out, tiny(seed=5), workers=1)
    with pytest.raises(CatalogError, match="variants"):
        C.build_catalog(out, tiny(variants=3), workers=1)
    report = C.build_catalog(out, tiny(seed=5), workers=1, overwrite=True)
    assert report.complete and report.resumed_from == 0
    with pytest.raises(OutputExistsError):
        C.build_catalog(out, tiny(seed=5), workers=1)
    with h5py.File(out, "r") as h5:
        assert h5.attrs["seed"] == 5


# ---------------------------------------------------------------- reader errors


def test_open_catalog_rejects_bad_files(reference, tmp_path):
    path, _ = reference
    with pytest.raises(CatalogError, match="not found"):
        C.open_catalog(tmp_path / "missing.h5")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5\n")
    with pytest.raises(CatalogError, match="HDF5"):
        C.open_catalog(text)

    def altered(name, change):
        p = tmp_path / name
        shutil.copy(path, p)
        with h5py.File(p, "r+") as h5:
            change(h5)
        return p

    with pytest.raises(CatalogError, match="not a diffpy-deepstruc catalog"):
        C.open_catalog(
            altered("fmt.h5", lambda h5: h5.attrs.__setitem__("format", "other"))
        )
    with pytest.raises(CatalogError, match="version 7"):
        C.open_catalog(altered("ver.h5", lambda h5: h5.attrs.__setitem__("version", 7)))
    with pytest.raises(CatalogError, match="missing /pdfs/params"):
        C.open_catalog(altered("miss.h5", lambda h5: h5["pdfs"].__delitem__("params")))
    with pytest.raises(CatalogError, match="outside"):

        def bad_rows(h5):
            h5["pdfs/structure"][0] = 10_000

        C.open_catalog(altered("rows.h5", bad_rows))


# ---------------------------------------------------------------- CLI


def test_cli_builds_prints_and_stores_stats(tmp_path, capsys):
    out = tmp_path / "cli.h5"
    argv = [
        "catalog",
        "-o",
        str(out),
        "--types",
        "icosahedron,decahedron",
        "--elements",
        "Au",
    ]
    argv += ["--nmax", "20", "--variants", "1", "--workers", "1", "--quiet", "--seed", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "per type:" in printed and "icosahedron" in printed and "size histogram" in printed
    )
    with C.open_catalog(out) as cat:
        assert cat.config.seed == 3 and cat.variants == 1
        assert cat.stats["per_type"]["icosahedron"] == 1
        assert f"structures: {cat.n_structures}" in printed
    assert main(argv) == 2  # exists
    assert "file exists" in capsys.readouterr().err
    assert main([*argv, "--force", "--no-noise"]) == 0
    with C.open_catalog(out) as cat:
        assert cat.config.ranges.noise == (0.0, 0.0)
