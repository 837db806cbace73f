"""Curve files: a mode-connecting curve (``lossland curve``) as a safetensors checkpoint.

The tensors are the bends (``bend0.<name>``, ``bend1.<name>``, …) and, while training, the
optimizer's state (``optimizer.<index>.<key>``); the metadata (``lossland`` JSON, as every
checkpoint's) holds the record under ``"curve"``: the recipe that made it, the step reached,
the per-epoch training losses and the optimizer's scalar state. Written by
:func:`save_checkpoint` (atomic, behind :func:`check_output`) and read by
:func:`load_checkpoint` (safetensors only: a file never runs code), then checked by type here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from lossland.errors import CheckpointError
from lossland.io._checkpoint import load_checkpoint, save_checkpoint
from lossland.io._metadata import Check, check_schema, is_number

CURVE_KEY = "curve"
CURVE_FORMAT = 1
KINDS = ("bezier", "polychain")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(is_number(v) for v in value)


def _plain(value: Any) -> bool:
    """JSON data: numbers, text, booleans, null, and lists or objects of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return isinstance(value, dict) and all(
        isinstance(k, str) and _plain(v) for k, v in value.items()
    )


_SCHEMA: dict[str, tuple[Check, str]] = {
    "format": (lambda v: v == CURVE_FORMAT, f"{CURVE_FORMAT} (this version's curve format)"),
    "kind": (lambda v: v in KINDS, "bezier or polychain"),
    "bends": (lambda v: _count(v) and v >= 1, "a whole number of bends ≥ 1"),
    "step": (_count, "a whole number of steps"),
    "steps": (_count, "a whole number of steps"),
    "finished": (lambda v: isinstance(v, bool), "true or false"),
    "recipe": (lambda v: isinstance(v, dict) and _plain(v), "an object of JSON values"),
    "epoch_losses": (_numbers, "a list of numbers"),
    "running": (lambda v: _numbers(v) and len(v) == 2, "[loss sum, batches]"),
    "optimizer_scalars": (lambda v: isinstance(v, dict) and _plain(v), "an object"),
}


def save_curve(
    path: str | os.PathLike[str], tensors: Mapping[str, Tensor], record: Mapping[str, Any]
) -> Path:
    """Write the curve file (atomically; the caller has decided that ``path`` may be written,
    with :func:`check_output`, before its run started)."""
    return save_checkpoint(tensors, path, overwrite=True, curve=dict(record))


def load_curve(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, record) of a curve file, the record checked by type; a checkpoint that is not
    a curve file, or one whose record is malformed, is a one-line error."""
    checkpoint = load_checkpoint(path)
    record = checkpoint.metadata.get(CURVE_KEY)

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"curve file {path} {problem}: recreate it with lossland curve")

    if not isinstance(record, dict):
        raise CheckpointError(
            f"{path} is not a curve file (no curve record; lossland curve writes one): pass the "
            "file lossland curve wrote"
        )
    missing = [key for key in _SCHEMA if key not in record]
    if missing:
        raise fail(f"has no {missing[0]}")
    check_schema(record, _SCHEMA, fail)
    bends = [f"bend{k}." for k in range(record["bends"])]
    for prefix in bends:
        if not any(key.startswith(prefix) for key in checkpoint.state_dict):
            raise fail(f"holds no tensors for {prefix[:-1]}")
    return checkpoint.state_dict, record
