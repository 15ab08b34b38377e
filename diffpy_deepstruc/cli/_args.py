"""Argument types shared by the sub-commands: each rejects bad values with a message
naming the value, through argparse's own usage error (exit status 2).

``deepstruc solve --seed x`` for instance exits with
``deepstruc solve: error: argument --seed: expected an integer, got 'x'``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

#: Largest seed accepted (torch and numpy both take any value below 2**63).
MAX_SEED: int = 2**63 - 1


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def int_range(low: int, high: int) -> Callable[[str], int]:
    """An argument type accepting integers in ``[low, high]``."""

    def parse(text: str) -> int:
        value = _parse_int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected an integer from {low} to {high}, got {value}"
            )
        return value

    parse.__name__ = f"integer {low}..{high}"
    return parse


def seed_int(text: str) -> int:
    """A random seed: an integer 0 <= seed < 2**63."""
    value = _parse_int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to 2**63-1, got {value}")
    return value


def finite_float(text: str) -> float:
    """A finite real number (no nan, no inf)."""
    try:
        value = float(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite real number >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite real number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def path_arg(text: str) -> str:
    """A file or folder name: not empty, no NUL byte."""
    if not text or not text.strip():
        raise argparse.ArgumentTypeError("expected a file or folder name, got ''")
    if "\x00" in text:
        raise argparse.ArgumentTypeError(f"file name contains a NUL byte: {text!r}")
    return text


def word(text: str) -> str:
    """A non-empty word (element symbol, address...): no NUL byte, not blank."""
    if not text.strip() or "\x00" in text:
        raise argparse.ArgumentTypeError(f"expected a non-empty word, got {text!r}")
    return text.strip()


def add_scheduler(parser: argparse.ArgumentParser) -> None:
    """Add ``--scheduler ADDRESS`` (a Dask distributed cluster; default None: local)."""
    parser.add_argument(
        "--scheduler",
        default=None,
        type=word,
        metavar="ADDRESS",
        help="run on an existing Dask distributed cluster (e.g. tcp://host:8786)",
    )
