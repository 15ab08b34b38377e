"""Atomic, non-clobbering writes."""

from __future__ import annotations

import os
import stat

import pytest

from diffpy_deepstruc.errors import OutputExistsError
from diffpy_deepstruc.fileio import atomic_write, atomic_write_text


def test_written_file_has_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    p = atomic_write_text(tmp_path / "a.txt", "first")
    with pytest.raises(OutputExistsError, match="--force"):
        atomic_write_text(p, "second")
    assert p.read_text() == "first"
    atomic_write_text(p, "second", overwrite=True)
    assert p.read_text() == "second"


def test_failed_write_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "b.txt") as fh:
        fh.write("partial")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_folder_is_not_a_file(tmp_path):
    with pytest.raises(OutputExistsError, match="folder"):
        atomic_write_text(tmp_path, "x", overwrite=True)
