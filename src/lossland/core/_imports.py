"""User code named by import path (``package.module:name``), with one-line errors.

This is the only place lossland imports code by name. Callers pass only names the user gave
(a flag, an API argument), never names read from a file: see :func:`lossland.io` loaders.
"""

from __future__ import annotations

import importlib
from typing import Any

from lossland.errors import LosslandError


def is_import_path(name: str) -> bool:
    return ":" in name


def import_object(path: str, *, what: str = "object") -> Any:
    """Import ``package.module:attr`` with a one-line error for every way it can go wrong."""
    module_name, sep, attr = path.partition(":")
    if (
        not sep
        or not module_name
        or not attr
        or not all(part.isidentifier() for part in [*module_name.split("."), *attr.split(".")])
    ):
        raise LosslandError(
            f"malformed import path {path!r} for the {what}: write it as package.module:name"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise LosslandError(
            f"cannot import module {module_name!r} for the {what} ({exc}): "
            "install it or add its folder to PYTHONPATH"
        ) from None
    except Exception as exc:  # the module itself is broken: SyntaxError, or its code raised
        raise LosslandError(
            f"importing module {module_name!r} for the {what} failed with "
            f"{type(exc).__name__}: {exc}: fix the module"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LosslandError(f"module {module_name!r} has no {attr!r} for the {what}")
        obj = getattr(obj, part)
    return obj
