"""The output folder of a solve: checked and created before any work, never clobbered."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import OutputExistsError

__all__ = ["check_outdir", "discard_outdir", "prepare_outdir"]


def check_outdir(outdir: Path, force: bool, resume: bool) -> None:
    """Refuse to write into a folder that holds earlier results."""
    if not outdir.exists():
        return
    if not outdir.is_dir():
        raise OutputExistsError(f"{outdir} exists and is not a folder; choose another -o")
    clutter = [p.name for p in outdir.iterdir() if p.name != "partial"]
    if clutter and not force:
        raise OutputExistsError(
            f"{outdir} already holds results ({', '.join(sorted(clutter)[:4])}...); "
            "pass --force to replace them or choose another -o"
        )
    if not resume and (outdir / "partial").is_dir() and not force:
        raise OutputExistsError(
            f"{outdir} holds an interrupted run (partial/); pass --resume to continue it "
            "or --force to start over"
        )


def prepare_outdir(
    outdir: str | os.PathLike, *, force: bool = False, resume: bool = False
) -> Path:
    """Check and create the output folder of :func:`solve` before any work is done.

    Parameters
    ----------
    outdir : path
        Output folder.
    force : bool
        Replace earlier results (they are removed first).
    resume : bool
        Continue an interrupted run whose finished candidates are in ``outdir/partial``.

    Returns
    -------
    Path
        The folder, created.
    """
    out = Path(outdir)
    check_outdir(out, force, resume)
    created = not out.exists()
    if force and out.is_dir():
        for p in out.iterdir():
            if p.name == "partial" and resume:
                continue
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    if created:
        _CREATED.add(out.resolve())
    return out


#: Folders that :func:`prepare_outdir` created in this process (a failed solve removes
#: them again if they hold nothing).
_CREATED: set[Path] = set()


def discard_outdir(outdir: str | os.PathLike) -> bool:
    """Remove an output folder that this process created and that holds no result.

    Called when a solve stops on bad input: a folder the run created is removed when
    nothing but an empty ``partial/`` is in it; a folder the user had, or one with
    finished refinements (kept for ``--resume``), stays.

    Returns
    -------
    bool
        Whether the folder was removed.
    """
    out = Path(outdir)
    if out.resolve() not in _CREATED or not out.is_dir():
        return False
    entries = list(out.iterdir())
    if any(p.name != "partial" for p in entries):
        return False
    pdir = out / "partial"
    if pdir.is_dir() and any(pdir.iterdir()):
        return False
    shutil.rmtree(out)
    _CREATED.discard(out.resolve())
    return True
