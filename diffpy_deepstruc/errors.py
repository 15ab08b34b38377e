"""The project's documented error types.

Every error raised on bad user input is a subclass of :class:`DeepStrucError`, so a
caller can catch the whole family at once.  Each also derives from the builtin class a
Python user would expect (``ValueError``, ``FileExistsError``...).
"""

from __future__ import annotations


class DeepStrucError(Exception):
    """Base class of every error diffpy-deepstruc raises on bad input."""


class ParameterError(DeepStrucError, ValueError):
    """A calculation, model or command-line parameter is invalid."""


class PDFDataError(DeepStrucError, ValueError):
    """A PDF file or PDF array is malformed or unusable."""


class StructureError(DeepStrucError, ValueError):
    """A structure (file or object) is malformed or unusable."""


class ElementError(DeepStrucError, ValueError):
    """An element symbol is unknown or not supported for this job."""


class CheckpointError(DeepStrucError):
    """A model checkpoint is missing, corrupted, tampered with or incompatible."""


class CatalogError(DeepStrucError):
    """A training catalog file is malformed or incompatible."""


class OutputExistsError(DeepStrucError, FileExistsError):
    """An output already exists and overwriting was not requested."""
