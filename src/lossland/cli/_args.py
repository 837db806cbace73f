"""Arguments from dataclasses: one flag per field, with the field's type, choices and default.

A command is a few dataclasses: the library's option dataclasses (whose defaults live with
their owner, e.g. :class:`lossland.SurfaceOptions`) and the command's own CLI dataclass
(files, checkpoints). Field metadata: ``doc`` (the help); for CLI fields also ``short``
(e.g. "-o"), ``positional``, ``metavar``, ``repeat`` (a list, one value per use) and
``bounds`` (the numbers a field accepts, checked with the library options' own mechanism).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING
from typing import Any, get_args

from lossland.core import Bounds, check_fields, choices

Handler = Callable[..., int | None]


def flag(
    default: Any = MISSING,
    *,
    doc: str,
    short: str | None = None,
    positional: bool = False,
    metavar: str | None = None,
    repeat: bool = False,
    bounds: Bounds | None = None,
) -> Any:
    """A CLI dataclass field."""
    meta: dict[str, Any] = {"doc": doc, "short": short, "positional": positional}
    meta.update(metavar=metavar, repeat=repeat, bounds=bounds)
    if repeat:
        return dataclasses.field(default_factory=lambda: list(default or []), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: its dataclasses (parsed in order, given to the handler) and the handler."""

    name: str
    parts: tuple[type, ...]
    handler: Handler

    @property
    def doc(self) -> str:
        return (self.parts[0].__doc__ or "").strip().splitlines()[0]

    def fields(self) -> dict[str, tuple[type, dataclasses.Field[Any]]]:
        """Field name → (its dataclass, the field); the first dataclass naming a field owns it."""
        out: dict[str, tuple[type, dataclasses.Field[Any]]] = {}
        for part in self.parts:
            for f in dataclasses.fields(part):
                out.setdefault(f.name, (part, f))
        return out

    def flag_for(self, name: str) -> str:
        """How this command spells the API argument ``name`` (for error messages)."""
        found = self.fields().get(name)
        if found is None:
            return ALIASES.get(name, name)
        meta = found[1].metadata
        if meta.get("positional"):
            return name.upper()
        return str(meta.get("short") or "--" + name.replace("_", "-"))

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        for part, f in self.fields().values():
            _add(parser, f, typing.get_type_hints(part)[f.name])

    def build(self, args: argparse.Namespace) -> list[Any]:
        """One instance per dataclass, each from the arguments it declares, with its choices
        and bounds checked (the library's option dataclasses check themselves as well)."""
        owned = self.fields()
        built = [
            part(**{n: getattr(args, n) for n, (p, _) in owned.items() if p is part})
            for part in self.parts
        ]
        for instance in built:
            check_fields(instance)
        return built


# API argument names whose flag is not their own name.
ALIASES = {
    "runs": "--trajectory",
    "final": "CHECKPOINT",
    "out_dir": "-o",
    "starts": "--start",
    "optimizers": "--optimizer",
    "lrs": "--lr",
    "save_every": "--save-every",
}


def _unwrap_optional(tp: Any) -> Any:
    args = [a for a in get_args(tp) if a is not type(None)]
    return args[0] if type(None) in get_args(tp) and len(args) == 1 else tp


def _add(parser: argparse.ArgumentParser, f: dataclasses.Field[Any], hint: Any) -> None:
    meta = f.metadata
    tp = _unwrap_optional(hint)
    kwargs: dict[str, Any] = {"help": meta.get("doc", "")}
    if meta.get("metavar"):
        kwargs["metavar"] = meta["metavar"]
    allowed = choices(tp)
    if meta.get("repeat"):
        item = (get_args(tp) or (str,))[0]  # list[str], or a union whose first is the item
        kwargs.update(action="append", type=item, default=[])
    elif tp is bool:
        kwargs.update(action=argparse.BooleanOptionalAction, default=f.default)
    elif allowed is not None:
        kwargs.update(choices=allowed, type=type(allowed[0]))
    else:
        kwargs["type"] = tp
    if meta.get("positional"):
        if meta.get("repeat"):  # a positional list: one or more values
            kwargs.update(action="store", nargs="+")
            kwargs.pop("default")
        parser.add_argument(f.name, **kwargs)
        return
    if f.default is not MISSING and not meta.get("repeat") and tp is not bool:
        kwargs["default"] = f.default
        if f.default is not None:
            kwargs["help"] += f" (default: {f.default})"
    flags = [f"--{f.name.replace('_', '-')}"]
    if meta.get("short"):
        flags.insert(0, meta["short"])
    parser.add_argument(*flags, dest=f.name, **kwargs)


def join_negative_values(argv: Sequence[str]) -> list[str]:
    """``--x -1:1:51`` → ``--x=-1:1:51``: argparse would read ``-1:1:51`` as an option."""
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and re.match(r"^-\.?\d", token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def default_of(function: Callable[..., Any], name: str) -> Any:
    """The default of ``function``'s keyword ``name``: a flag mirroring a library keyword takes
    its default from there, so the two cannot drift."""
    import inspect

    return inspect.signature(function).parameters[name].default
