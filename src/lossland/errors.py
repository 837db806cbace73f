"""The one exception type users see: a one-line message naming the problem and the fix.

Library code names the *API argument* a problem is about with :func:`arg`; ``str(error)`` shows
the argument's Python name (``points_per_batch``), and the command line renders the same error
with its flag (``--points-per-batch``) through :meth:`LosslandError.render`. So one message
serves both, and the library never knows a flag.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_ARG = re.compile("\ue000([A-Za-z_][A-Za-z0-9_]*)\ue001")


def arg(name: str) -> str:
    """``name`` marked as an API argument inside an error message (see the module docstring)."""
    return f"\ue000{name}\ue001"


def render(text: str, name: Callable[[str], str] = str) -> str:
    """``text`` with every :func:`arg` mark replaced by ``name(argument)``."""
    return _ARG.sub(lambda m: name(m.group(1)), text)


class LosslandError(Exception):
    """A user-facing error. The CLI prints ``lossland: error: <message>`` and exits with 2."""

    def __str__(self) -> str:
        return render(super().__str__())

    def render(self, name: Callable[[str], str] = str) -> str:
        """The message with each marked argument shown as ``name(argument)``."""
        return render(super().__str__(), name)


class DataError(LosslandError):
    """Missing, corrupt or invalid data files."""


class CheckpointError(LosslandError):
    """A checkpoint that cannot be read or does not fit the model."""


class SurfaceFileError(LosslandError):
    """A surface file that cannot be read, or that does not match the requested run."""


class LosslandWarning(UserWarning):
    """Something the user should know that does not stop the run (the CLI prints a note)."""


def first_line(exc: BaseException) -> str:
    """The gist of a library's exception for a one-line message: its first non-empty line."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
