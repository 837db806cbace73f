"""The one way the command line prints (``tests/test_layers.py`` checks that nothing else does).

Everything a command prints may carry text from outside: attribute values, names and model
specs read from files, file names, labels, messages that quote a file. :func:`say` passes all of
it through :func:`lossland.core.printable`, so no control sequence reaches the terminal (screen
clears, clipboard writes, ``\\r`` that overwrites a line, bidi overrides) while ordinary Unicode
stays readable; lossland's own line breaks are kept. :func:`shown` is the same rule for one
value inside a line (a path, a name): its newlines are escaped too, so a value cannot start a
line of its own. Error and note lines are shown whole (one line each, whatever they quote).
"""

from __future__ import annotations

import argparse
import sys
from typing import IO, Any

from lossland.core import printable

__all__ = ["Parser", "say", "shown"]


def shown(value: object) -> str:
    """A value from outside as it appears inside a line: escaped, newlines included."""
    return printable(value)


def say(text: object = "", *, err: bool = False, flush: bool = False) -> None:
    """Print lossland's ``text`` (several lines allowed) on stdout, or stderr with ``err``."""
    stream = sys.stderr if err else sys.stdout
    if stream is None:  # pythonw, or a closed stream: nowhere to print
        return
    _write(stream, printable(text, newlines=True) + "\n", flush=flush)


def _write(stream: IO[str], text: str, *, flush: bool) -> None:
    # A stream that cannot encode a character (a C locale's ASCII) shows it as an escape
    # rather than failing the command after its work is done.
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        text = text.encode("ascii", "backslashreplace").decode("ascii")
    stream.write(text)
    if flush:
        stream.flush()


class Parser(argparse.ArgumentParser):
    """argparse, printing its usage, help and errors through :func:`say` (an unknown argument
    is quoted back: a file name from a glob may hold control characters)."""

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            say(message.rstrip("\n"), err=file is not sys.stdout)
