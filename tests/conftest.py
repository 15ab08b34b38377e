"""Shared pytest fixtures.

Reference data live in ``../shared`` beside the repository (CI has them there).  Tests
that need them use the fixtures below, which *skip with a message* when the folder is
absent (e.g. when the tests run against an installed package), never pass silently.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DEEPSTRUC_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``shared/`` folder; skips the test when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"reference data not found at {SHARED} (set DEEPSTRUC_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def srreal_dir(shared_dir: Path) -> Path:
    """``shared/reference/srreal``: srreal reference PDFs, F(Q) and structures."""
    d = shared_dir / "reference" / "srreal"
    if not (d / "index.json").is_file():
        pytest.skip(f"srreal reference index not found in {d}")
    return d


@pytest.fixture(scope="session")
def srreal_index(srreal_dir: Path) -> dict:
    """The parsed ``index.json`` of the srreal references."""
    return json.loads((srreal_dir / "index.json").read_text())


@pytest.fixture(scope="session")
def experimental_dir(shared_dir: Path) -> Path:
    """``shared/data/experimental``: two measured PDFs (Pt, Au144)."""
    d = shared_dir / "data" / "experimental"
    if not d.is_dir():
        pytest.skip(f"experimental data not found in {d}")
    return d
