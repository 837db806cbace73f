"""The one exception type users see: a one-line message naming the problem and the fix."""

from __future__ import annotations


class LosslandError(Exception):
    """A user-facing error. The CLI prints ``lossland: error: <message>`` and exits with 2."""


class DataError(LosslandError):
    """Missing, corrupt or invalid data files."""


class CheckpointError(LosslandError):
    """A checkpoint that cannot be read or does not fit the model."""


class SurfaceFileError(LosslandError):
    """A surface file that cannot be read, or that does not match the requested run."""
