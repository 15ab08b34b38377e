"""The ``deepstruc`` command line.

Each sub-command lives in its own module of this package and exposes two functions:
``add_parser(subparsers)`` (declares the arguments) and ``run(args) -> int`` (calls the
library and prints).  The CLI holds no logic of its own: parsing, calling, printing.
Errors of the documented family (:class:`diffpy_deepstruc.errors.DeepStrucError`) are
printed as ``deepstruc: error: ...`` and exit with status 2; so are operating-system
errors on the files named (``OSError``: a folder that cannot be created, permission
denied, disk full), which are about the user's environment, not the input's content.
Usage errors (unknown option, a value of the wrong type) exit with status 2 through
argparse; Ctrl-C exits with status 130 (finished work is kept, see ``--resume``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import DeepStrucError

#: Sub-command modules, in the order ``deepstruc --help`` lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "simulate",
    "catalog",
    "train",
    "shapegen",
    "evaluate",
    "solve",
    "latent",
    "library",
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Return the top-level argument parser with every available sub-command.

    Parameters
    ----------
    only : str, optional
        Build just this sub-command (its module alone is imported: a ``deepstruc
        solve`` does not pay for importing the catalog builders).
    """
    parser = argparse.ArgumentParser(
        prog="deepstruc",
        description="Generative starting models for nanoparticle PDF refinement.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS if only is None else (only,):
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # sub-command not part of this build
            raise
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def _os_message(exc: OSError) -> str:
    """``path: reason`` for an OSError (``[Errno 13] Permission denied: 'x'`` -> ``x:
    Permission denied``)."""
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deepstruc`` console script."""
    words = list(sys.argv[1:] if argv is None else argv)
    first = words[0] if words else None
    parser = build_parser(first if first in SUBCOMMANDS else None)
    args = parser.parse_args(words)
    try:
        return int(args._run(args) or 0)
    except DeepStrucError as exc:
        print(f"deepstruc: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"deepstruc: error: {_os_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepstruc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
