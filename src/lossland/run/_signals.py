"""Stopping cleanly: Ctrl-C and SIGTERM (SLURM preemption, torchrun teardown) save, then exit.

A long run treats SIGTERM like Ctrl-C: the handler raises :class:`Interrupted`, the run writes
a checkpoint and the CLI exits with 128 + the signal number. While that last checkpoint is
being written, further signals are held back so that the write completes.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; ``str()`` says what was saved and how to resume.

    ``quiet`` marks an interruption another process already reported (torchrun ranks > 0).
    """

    def __init__(self, message: str = "", *, signum: int = signal.SIGINT, quiet: bool = False):
        super().__init__(message)
        self.signum = int(signum)
        self.quiet = quiet


def signal_number(exc: BaseException) -> int:
    """The signal behind a KeyboardInterrupt: SIGINT unless it is an :class:`Interrupted`."""
    return exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _no_check() -> None:
    return None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Callable[[], None]]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (main thread only).

    The handler also remembers the signal, and the yielded ``check()`` raises again at a safe
    place: Python runs handlers between any two bytecodes, and an exception raised while it runs
    a weakref callback or ``__del__`` is printed and dropped, so the first raise can be lost.
    Call ``check()`` between grid points. Python only lets the main thread install handlers;
    elsewhere this does nothing.
    """
    if not _in_main_thread():
        yield _no_check
        return
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        raise Interrupted(signum=signum)

    def check() -> None:
        if received:
            raise Interrupted(signum=received[0])

    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    try:
        yield check
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def held_signals() -> Iterator[list[int]]:
    """Within the block, SIGINT and SIGTERM are recorded (in the yielded list), not raised.

    Used around the final checkpoint of a stopping run: a second Ctrl-C, or torchrun's
    SIGTERM to every worker, must not abort the write that saves the work.
    """
    received: list[int] = []
    if not _in_main_thread():
        yield received
        return

    def record(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous: dict[signal.Signals, Any] = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, record)
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
