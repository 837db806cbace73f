"""The ``lossland`` command line: each command is a few dataclasses and one handler module.

Flags come from dataclasses (the library's option dataclasses and each command's own, see
:mod:`lossland.cli._args`); handlers translate them into API calls and print short summaries.
Errors a user can fix surface as one line ``lossland: error: ...`` (exit status 2), with each
API argument the library names shown as this command's flag; warnings as ``lossland: note:``.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from lossland._version import __version__
from lossland.cli._args import Command, join_negative_values
from lossland.cli._output import Parser, say, shown
from lossland.errors import LosslandError, LosslandWarning
from lossland.io import path_length_problem


def commands() -> dict[str, Command]:
    from lossland.cli import _align, _curve, _demo, _hessian, _interpolate, _show, _surface, _train

    found = [_train.COMMAND, _surface.COMMAND, *_show.COMMANDS, _demo.COMMAND]
    found += [_hessian.COMMAND, _interpolate.COMMAND, _align.COMMAND, _curve.COMMAND]
    return {command.name: command for command in found}


def build_parser(table: dict[str, Command]) -> argparse.ArgumentParser:
    parser = Parser(prog="lossland", description="Fast neural-network loss landscapes on PyTorch.")
    parser.add_argument("--version", action="version", version=f"lossland {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in table.items():
        command.add_arguments(sub.add_parser(name, help=command.doc, description=command.doc))
    return parser


@contextmanager
def _notes() -> Iterator[None]:
    """lossland's warnings as one ``lossland: note:`` line each; other libraries' warnings
    in Python's format, both through :func:`say` (a warning may quote a file)."""

    def show(
        message: Any,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, LosslandWarning):
            say(f"lossland: note: {shown(message)}", err=True)
        elif file is None:
            text = warnings.formatwarning(message, category, filename, lineno, line)
            say(text.rstrip("\n"), err=True)
        else:
            original(message, category, filename, lineno, file, line)

    original = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def _reports(exc: LosslandError) -> bool:
    """Whether this process prints ``exc``. Under torchrun every rank meets the same bad
    argument or file, so one process per node (local rank 0) prints user errors; an error of
    this rank alone (``rank_local``, e.g. no GPU for it) is printed by it, and one that another
    rank reported for the job (``quiet``) by none."""
    from lossland.run import launched

    if getattr(exc, "quiet", False):
        return False
    first = not launched() or os.environ.get("LOCAL_RANK", "0") == "0"
    return first or bool(getattr(exc, "rank_local", False))


def main(argv: Sequence[str] | None = None) -> int:
    # User code named by --model/--data/--forward/--loss is importable from the current
    # folder, as `python -m` would have it.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    table = commands()
    parser = build_parser(table)
    args = parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else argv))
    command = table[args.command]
    try:
        with _notes():
            return command.handler(*command.build(args)) or 0
    except LosslandError as exc:
        if _reports(exc):
            say(f"lossland: error: {shown(exc.render(command.flag_for))}", err=True)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM during a surface run
        if not getattr(exc, "quiet", False):
            say(f"lossland: {shown(exc) or 'interrupted'}", err=True)
        return 128 + int(getattr(exc, "signum", 2))
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG or not isinstance(exc.filename, str):
            raise
        # Outputs are refused before any work (io.check_output); this is an input's path.
        problem = path_length_problem(exc.filename, room=0) or f"{exc.filename} is too long"
        say(f"lossland: error: {shown(problem)}: give a shorter path", err=True)
        return 2
