"""`solve` gives the same answer whether its stages run here or in worker processes."""

import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data" / "Au55_icosahedron.gr"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers fork on Linux")
def test_the_shared_pool_changes_nothing():
    """One pool serves the completions and the srfit refinements (the finalists' queued
    behind the completions, a completed candidate's as soon as it is done): the ranking,
    Rw, parameters, structures and count ranges equal those of the sequential run."""
    from diffpy_deepstruc.solve import solve

    kw = dict(element="Au", n=6, refine_k=3, complete_k=2, search_k=1, seed=5)
    calls: list[int] = []
    one = solve(str(EXAMPLE), workers=1, while_waiting=lambda: calls.append(1), **kw)
    two = solve(str(EXAMPLE), workers=2, while_waiting=lambda: calls.append(2), **kw)
    assert calls == [1, 2]  # once per solve, with or without worker processes
    assert [c.index for c in one.candidates] == [c.index for c in two.candidates]
    assert any(c.origin is not None for c in two.candidates)  # a completed one ran
    # every finalist and completed candidate went through srfit; the distinct are kept
    assert one.n_refined == two.n_refined >= len(two.candidates)
    for a, b in zip(one.candidates, two.candidates, strict=True):
        assert a.rw == b.rw and a.parameters == b.parameters
        assert a.count_range == b.count_range
        np.testing.assert_array_equal(
            np.array(a.structure.xyz_cartn), np.array(b.structure.xyz_cartn)
        )
