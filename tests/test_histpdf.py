"""The histogram PDF model: additivity (incremental updates) and agreement with the engine."""

import numpy as np
import pytest
import torch
from ase.cluster import Icosahedron

from diffpy_deepstruc.debye import PDFParameters, pdf_from_arrays
from diffpy_deepstruc.errors import ParameterError
from diffpy_deepstruc.histpdf import (
    HistogramPDF,
    atom_histogram,
    levenberg_marquardt,
    pack_sparse,
    pair_histogram,
    sparse_histogram,
)


@pytest.fixture(scope="module")
def cluster():
    xyz = Icosahedron("Au", 3).get_positions()
    return xyz + np.random.default_rng(1).normal(0, 0.03, xyz.shape)


def test_histogram_counts_every_pair_once(cluster):
    h = pair_histogram(cluster, 0.01)
    n = len(cluster)
    assert h.sum() == pytest.approx(n * (n - 1) / 2, rel=1e-12)
    # the first moment is exact under linear splitting
    i, j = np.triu_indices(n, 1)
    d = np.linalg.norm(cluster[i] - cluster[j], axis=1)
    assert (np.arange(len(h)) * 0.01 * h).sum() == pytest.approx(d.sum(), rel=1e-12)


def test_atom_histogram_adds_and_removes_exactly(cluster):
    nb = 2000
    full = pair_histogram(cluster, 0.01, nb)
    rest = pair_histogram(cluster[1:], 0.01, nb)
    added = rest + atom_histogram(cluster[1:], cluster[0], 0.01, nb)
    removed = full + atom_histogram(cluster[1:], cluster[0], 0.01, nb, sign=-1.0)
    scale = np.abs(full).max()
    assert np.abs(added - full).max() <= 1e-10 * scale
    assert np.abs(removed - rest).max() <= 1e-10 * scale


def test_matches_exact_engine(cluster):
    p = PDFParameters(
        rmin=1.5, rmax=20, rstep=0.01, qmin=0.9, qmax=24, qdamp=0.03, qbroad=0.01, delta2=2
    )
    r, g_exact = pdf_from_arrays(cluster, "Au", 0.006, p, backend="torch")
    model = HistogramPDF(r, qmin=0.9, qmax=24, qdamp=0.03, qbroad=0.01)
    h = torch.as_tensor(pair_histogram(cluster))[None]
    g = model(h, float(len(cluster)), 1.0, 0.006, 2.0)[0].numpy()
    assert np.abs(g - g_exact).max() <= 2e-3 * np.abs(g_exact).max()


def test_zoomscale_equals_scaled_coordinates(cluster):
    r = np.arange(1.5, 20, 0.02)
    model = HistogramPDF(r, qmin=0.5, qmax=22, step=0.002)
    n = float(len(cluster))
    a = model(
        torch.as_tensor(pair_histogram(cluster * 1.02, 0.002))[None], n, 1.0, 0.005, 1.0
    )
    b = model(torch.as_tensor(pair_histogram(cluster, 0.002))[None], n, 1.02, 0.005, 1.0)
    assert torch.allclose(a, b, atol=2e-3 * float(a.abs().max()))


def test_differentiable_in_parameters(cluster):
    r = np.arange(1.5, 15, 0.05)
    model = HistogramPDF(r, qmin=0.5, qmax=22)
    h = torch.as_tensor(pair_histogram(cluster))[None]
    x = torch.tensor([1.0, 0.005, 1.5], dtype=torch.float64, requires_grad=True)
    g = model(h, float(len(cluster)), x[0:1], x[1:2], x[2:3])
    (g**2).sum().backward()
    assert torch.all(torch.isfinite(x.grad)) and torch.all(x.grad != 0)


def test_analytic_jacobian_equals_finite_differences(cluster):
    r = np.arange(1.5, 15, 0.05)
    model = HistogramPDF(r, qmin=0.5, qmax=22, qbroad=0.01, delta1=0.1)
    d, w = pack_sparse([sparse_histogram(pair_histogram(cluster), 0.01)])
    n = torch.tensor([float(len(cluster))], dtype=torch.float64)
    x = np.array([1.01, 0.006, 1.5])

    def g(p):
        t = [torch.tensor([v], dtype=torch.float64) for v in p]
        return model.g_and_jacobian(d, w, n, *t)

    g0, jac = g(x)
    assert torch.allclose(g0, model.g_sparse(d, w, n, *[torch.tensor([v]) for v in x]))
    for k, h in enumerate((1e-6, 1e-7, 1e-5)):
        up, dn = x.copy(), x.copy()
        up[k] += h
        dn[k] -= h
        fd = (g(up)[0] - g(dn)[0]) / (2 * h)
        assert torch.allclose(jac[:, k], fd, atol=1e-5 * float(fd.abs().max()))


def test_levenberg_marquardt_recovers_parameters(cluster):
    r = np.arange(1.5, 15, 0.02)
    model = HistogramPDF(r, qmin=0.5, qmax=22)
    d, w = pack_sparse([sparse_histogram(pair_histogram(cluster), 0.01)] * 2)
    n = torch.full((2,), float(len(cluster)), dtype=torch.float64)
    one = torch.ones(1, dtype=torch.float64)
    truth = [torch.tensor([v], dtype=torch.float64) for v in (0.98, 0.008, 2.5)]
    y = 3.0 * model.g_sparse(d[:1], w[:1], one * len(cluster), *truth)[0]
    x0 = torch.tensor([[1.0, 0.005, 1.0], [0.97, 0.01, 3.0]], dtype=torch.float64)
    x, scale, cost = levenberg_marquardt(
        model,
        d,
        w,
        n,
        y,
        torch.ones_like(y),
        x0,
        [0.9, 1e-4, 0.0],
        [1.1, 0.05, 10.0],
        iterations=40,
    )
    assert torch.allclose(
        x, torch.tensor([[0.98, 0.008, 2.5]] * 2, dtype=torch.float64), rtol=1e-4
    )
    assert torch.allclose(scale, torch.full((2,), 3.0, dtype=torch.float64), rtol=1e-4)
    assert float(cost.max()) <= 1e-12 * float((y * y).sum())


def test_bad_arguments():
    with pytest.raises(ParameterError):
        HistogramPDF(np.arange(1, 10, 0.1), qmin=5, qmax=2)
    with pytest.raises(ParameterError):
        pair_histogram(
            np.zeros((3, 3)) + [[0, 0, 0], [1, 0, 0], [5, 0, 0]], 0.01, n_bins=10
        )
