"""Values read from files are data: JSON parsed with one-line errors, then checked by type.

Every loader (checkpoint metadata, directions metadata, surface attributes, npz attributes) reads
its JSON through :func:`parse_json` and checks the values it later uses against a small schema
(:func:`check_schema`), so a hostile or damaged file is a one-line error naming the value, never
a traceback later on and never code: nothing read from a file is imported or called.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

Fail = Callable[[str], Exception]
Check = Callable[[Any], bool]


def parse_json(text: Any, fail: Fail, *, what: str) -> Any:
    """``json.loads(text)``; malformed, too deeply nested or non-text input is ``fail(...)``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise fail(f"has {what} that is not JSON text")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested arrays
        raise fail(f"has {what} that is not valid JSON ({str(exc)[:80]})") from None


def parse_json_object(text: Any, fail: Fail, *, what: str) -> dict[str, Any]:
    """:func:`parse_json` of a JSON object (a list, a number, ... is ``fail(...)``)."""
    value = parse_json(text, fail, what=what)
    if not isinstance(value, dict):
        raise fail(f"has {what} that is a JSON {type(value).__name__}, not an object")
    return value


# --- checks for schema entries -----------------------------------------------------------------


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool, not an int beyond float's range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int of hundreds of digits
        return False


def is_numbers(value: Any) -> bool:
    return isinstance(value, list) and all(is_number(v) for v in value)


def is_texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def is_pair_of_texts(value: Any) -> bool:
    return is_texts(value) and len(value) == 2


def is_object(value: Any) -> bool:
    return isinstance(value, dict)


def is_points(value: Any) -> bool:
    """A list of [x, y] pairs of numbers (a path on a plane)."""
    return isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and all(is_number(v) for v in p) for p in value
    )


def is_optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


def check_schema(
    values: Mapping[str, Any], schema: Mapping[str, tuple[Check, str]], fail: Fail
) -> None:
    """Raise ``fail(...)`` for the first key of ``schema`` present in ``values`` whose value fails
    its check; ``schema`` maps key → (check, what the value should be)."""
    for key, (check, expected) in schema.items():
        if key in values and not check(values[key]):
            shown = repr(values[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise fail(f"has {key} = {shown}, expected {expected}")
