"""Atomic, non-clobbering output files.

Every file the package writes goes through :func:`atomic_write`: the content is written
to a temporary file in the destination folder and renamed into place, so a reader never
sees half a file and an interrupted run never leaves one behind.  An existing file is
only replaced when ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import OutputExistsError


def _umask() -> int:
    """The process umask (read without changing it for longer than a call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Return ``path`` as a Path, refusing an existing file unless ``overwrite``.

    Parameters
    ----------
    path : str or path-like
        Destination file.
    overwrite : bool
        Allow replacing an existing file.

    Returns
    -------
    Path
        The destination.

    Raises
    ------
    OutputExistsError
        When the file exists and ``overwrite`` is False.
    """
    p = Path(path)
    if p.is_dir():
        raise OutputExistsError(f"{p}: is a folder; give a file name")
    if p.exists() and not overwrite:
        raise OutputExistsError(
            f"{p}: file exists; pass overwrite=True (--force) to replace it"
        )
    return p


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike,
    mode: str = "w",
    overwrite: bool = False,
    encoding: str | None = None,
) -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` atomically on success.

    Parameters
    ----------
    path : str or path-like
        Destination file; its folder is created if needed.
    mode : {"w", "wb"}
        Text or binary mode.
    overwrite : bool
        Allow replacing an existing file.
    encoding : str, optional
        Text encoding (default UTF-8 in text mode).

    Yields
    ------
    file object
        Write the content to it; on an exception the temporary file is removed and
        ``path`` is left untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError("mode must be 'w' or 'wb'")
    dest = check_writable(path, overwrite)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        # mkstemp creates 0600 files; give the result the permissions of a normal file
        os.chmod(tmp, 0o666 & ~_umask())
        if mode == "w":
            fh = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline="\n")
        else:
            fh = os.fdopen(fd, "wb")
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if not overwrite and dest.exists():
            raise OutputExistsError(f"{dest}: file appeared while writing; not replaced")
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes, overwrite: bool = False
) -> Path:
    """Write ``data`` to ``path`` atomically; see :func:`atomic_write`."""
    with atomic_write(path, "wb", overwrite=overwrite) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8); see :func:`atomic_write`."""
    with atomic_write(path, "w", overwrite=overwrite) as fh:
        fh.write(text)
    return Path(path)
