"""Typed option dataclasses: one place for each default, with its documentation, its allowed
values (``Literal`` choices, or numeric bounds declared next to the field) and run-time checks
(a typo or an absurd number is an error, never a value recorded in a file)."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args, get_origin

from lossland.errors import LosslandError, arg

Options = TypeVar("Options")


@dataclass(frozen=True)
class Bounds:
    """The numbers a field accepts: finite, in ``low``..``high`` (either may be open-ended);
    ``above=True`` excludes ``low`` itself ("positive"), ``below=True`` excludes ``high``."""

    low: float | None = None
    high: float | None = None
    above: bool = False
    below: bool = False

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return self.high is None or (value < self.high if self.below else value <= self.high)

    def describe(self) -> str:
        if self.above and self.low == 0 and self.high is None:
            return "positive"
        parts = []
        if self.low is not None:
            parts.append(f"{'above' if self.above else 'at least'} {_shown(self.low)}")
        if self.high is not None:
            parts.append(f"{'below' if self.below else 'at most'} {_shown(self.high)}")
        return " and ".join(parts)


def _shown(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


FINITE = Bounds()
POSITIVE = Bounds(0, above=True)
AT_LEAST_1 = Bounds(1)
SEEDS = Bounds(0, 2**63 - 1)  # what every RNG lossland seeds (torch, numpy) accepts


def option(default: Any, doc: str, *, bounds: Bounds | None = None, repeat: bool = False) -> Any:
    """A dataclass field with its default, a one-line description (the CLI's help) and, for
    numbers, the values it accepts; ``repeat``: the CLI flag is given once per value (a list)."""
    return dataclasses.field(
        default=default, metadata={"doc": doc, "bounds": bounds, "repeat": repeat}
    )


def choices(tp: Any) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal[...]`` type (or ``Literal[...] | None``), else None."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        found = choices(inner[0]) if len(inner) == 1 else None
        return None if found is None else (*found, None)
    return get_args(tp) if get_origin(tp) is Literal else None


def check_fields(instance: Any) -> None:
    """Raise a one-line error for the first field whose value is not a bool where it should be
    one, not one of its ``Literal`` choices, or not a finite number of its type within its
    declared :class:`Bounds`."""
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        if hints[f.name] is bool and not isinstance(value, bool):
            raise LosslandError(f"{arg(f.name)} is true or false, got {value!r}")
        allowed = choices(hints[f.name])
        if allowed is not None and value not in allowed:
            shown = ", ".join(str(a) for a in allowed if a is not None)
            raise LosslandError(f"unknown {arg(f.name)} {value!r}: choose one of {shown}")
        bounds = f.metadata.get("bounds")
        if bounds is not None and value is not None:
            check_number(f.name, value, bounds, whole=_is_int(hints[f.name]))


def _is_int(tp: Any) -> bool:
    return tp is int or (get_origin(tp) in (typing.Union, types.UnionType) and int in get_args(tp))


def check_number(name: str, value: Any, bounds: Bounds, *, whole: bool = False) -> None:
    """Raise a one-line error naming API argument ``name`` unless ``value`` is a finite number
    (a whole one with ``whole``) within ``bounds``."""
    limits = bounds.describe()
    wanted = f"{'a whole' if whole else 'a finite'} number" + (f" ({limits})" if limits else "")
    number = isinstance(value, int) if whole else isinstance(value, (int, float))
    if isinstance(value, bool) or not number or not (whole or math.isfinite(value)):
        raise LosslandError(f"{arg(name)} must be {wanted}, got {value!r}")
    if not bounds.contains(value):
        raise LosslandError(f"{arg(name)} must be {bounds.describe()}, got {value!r}")


def updated(instance: Any, **changes: Any) -> Any:
    """``instance`` with the given fields replaced; ``None`` means "not given" (keep)."""
    given = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(instance, **given) if given else instance


def options_from(base: Options, given: Mapping[str, Any]) -> Options:
    """``base`` (an option dataclass) with every field that ``given`` holds as not ``None``
    replaced: a verb that takes each field as a keyword passes ``locals()``. ``given`` must
    hold every field's name (a keyword the verb forgot is a TypeError at its first call, never
    an option silently ignored); other names in it are not options and are left alone."""
    names = [f.name for f in dataclasses.fields(base)]  # type: ignore[arg-type]
    missing = [name for name in names if name not in given]
    if missing:
        raise TypeError(
            f"no keyword for the {type(base).__name__} field(s) {', '.join(missing)}: "
            "add each field as a keyword of the verb"
        )
    changed: Options = updated(base, **{name: given[name] for name in names})
    return changed
