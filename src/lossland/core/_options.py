"""Typed option dataclasses: one place for each default, with its documentation, and run-time
checks of ``Literal`` choices (a typo is an error, never a value recorded in a file)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, get_args, get_origin

from lossland.errors import LosslandError, arg


def option(default: Any, doc: str) -> Any:
    """A dataclass field with its default and a one-line description (the CLI's help)."""
    return dataclasses.field(default=default, metadata={"doc": doc})


def choices(tp: Any) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal[...]`` type (or ``Literal[...] | None``), else None."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        found = choices(inner[0]) if len(inner) == 1 else None
        return None if found is None else (*found, None)
    return get_args(tp) if get_origin(tp) is Literal else None


def check_choices(instance: Any) -> None:
    """Raise a one-line error for any field whose value is not one of its Literal choices."""
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        allowed = choices(hints[f.name])
        value = getattr(instance, f.name)
        if allowed is not None and value not in allowed:
            shown = ", ".join(str(a) for a in allowed if a is not None)
            raise LosslandError(f"unknown {arg(f.name)} {value!r}: choose one of {shown}")


def updated(instance: Any, **changes: Any) -> Any:
    """``instance`` with the given fields replaced; ``None`` means "not given" (keep)."""
    given = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(instance, **given) if given else instance
