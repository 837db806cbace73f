"""Importing an optional library: a missing one is one line naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from lossland.errors import LosslandError


def optional(module: str, *, extra: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise LosslandError(
            f"{what} needs {module.split('.')[0]}: pip install 'lossland[{extra}]'"
        ) from None
