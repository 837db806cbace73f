"""What the user's code raised, and where: one line naming the code, the place and the fix.

The model's forward, the loss, a ``Dataset``'s ``__getitem__``, a ``collate_fn``, a
``DataLoader`` worker: an exception raised inside the user's code reaches the user as one
:class:`~lossland.errors.LosslandError` naming who raised what, where (the grid point, the
batch, "while caching the data"), the original message's first line and the fix. The original
exception stays its ``__cause__``, with its traceback, for API users.
"""

from __future__ import annotations

from lossland.errors import DataError, LosslandError, first_line

# The DataLoader re-raises a worker's exception with this message, the worker's traceback
# below it (torch.utils.data._utils.ExceptionWrapper).
_WORKER = "in DataLoader worker process "
_ORIGINAL = "Original Traceback (most recent call last):"
DATA_FIX = (
    "fix the Dataset's __getitem__, the collate_fn or the DataLoader (iterate it with "
    "num_workers=0 to see the full traceback)"
)


def gist(exc: BaseException) -> str:
    """The original message's first line (a worker's own, not the DataLoader's wrapper's),
    at most 200 characters."""
    text = str(exc)
    if _ORIGINAL in text:
        below = text.split(_ORIGINAL, 1)[1].splitlines()
        # The frames are indented; the exception's own line reads "Type: message" (the last
        # such line: a chained traceback shows the earlier exceptions first).
        name = type(exc).__name__
        own = [line for line in below if line == name or line.startswith(f"{name}: ")]
        if own:
            text = own[-1].partition(": ")[2] or name
    line = first_line(Exception(text)) if text.strip() else type(exc).__name__
    return line if len(line) <= 200 else line[:199] + "…"


def _worker(exc: BaseException) -> str:
    """ " in DataLoader worker N" when a worker raised ``exc``, else ""."""
    text = str(exc).split("\n", 1)[0]
    if _WORKER in text:
        number = text.split(_WORKER, 1)[1].rstrip(".").strip()
        return f" in DataLoader worker {number}"
    return ""


def user_failure(exc: BaseException, *, who: str, where: str, fix: str) -> LosslandError:
    """``who`` (e.g. "the model or loss") raised ``exc`` ``where``: one line, ``exc`` its
    cause."""
    error = LosslandError(f"{who} raised {type(exc).__name__} {where}: {gist(exc)}; {fix}")
    error.__cause__ = exc
    return error


class DataReadError(DataError):
    """The user's data raised while lossland read batch ``batch`` of it (``where``: "while
    caching the data", or a grid point added by the engine through :meth:`at`)."""

    def __init__(self, exc: BaseException, batch: int, where: str) -> None:
        self.original, self.batch, self.where = exc, batch, where
        super().__init__(
            f"the data raised {type(exc).__name__}{_worker(exc)} {where} (batch index "
            f"{batch}): {gist(exc)}; {DATA_FIX}"
        )
        self.__cause__ = exc

    def at(self, where: str) -> DataReadError:
        """The same failure, placed at ``where`` (a grid point)."""
        return DataReadError(self.original, self.batch, where)
