"""Barriers that compare: the loss profiles of several paths between two models over t (the
straight line, the line to the aligned model, a trained curve), each with its barrier and the
barrier's standard error, as the surface attribute ``comparison`` holds them.

``attrs["comparison"] = {"t": [...], "paths": [{"name", "loss", "loss_sem", "acc"}, ...]}``:
every value is data read from a file, checked here by type before it is used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lossland.core import printable
from lossland.io import Surface, is_number


@dataclass(frozen=True)
class Profile:
    """One path's loss over t and its barrier: max L − max(L(0), L(1)), with the standard
    error √(SE(max)² + SE(end)²) of the two evaluated means (NaN where a mean has none)."""

    name: str
    t: np.ndarray
    loss: np.ndarray
    loss_sem: np.ndarray
    acc: np.ndarray

    @property
    def barrier(self) -> float:
        return float(np.max(self.loss) - max(self.loss[0], self.loss[-1]))

    @property
    def barrier_sem(self) -> float:
        k = int(np.argmax(self.loss))
        end = 0 if self.loss[0] >= self.loss[-1] else -1
        if k in (0, len(self.loss) - 1):
            return 0.0  # the largest loss is an end: the barrier is zero by definition
        return float(math.hypot(self.loss_sem[k], self.loss_sem[end]))

    @property
    def at(self) -> float:
        return float(self.t[int(np.argmax(self.loss))])

    def as_dict(self) -> dict[str, Any]:
        def plain(values: np.ndarray) -> list[float | None]:
            return [float(v) if math.isfinite(v) else None for v in values]

        return {
            "name": self.name,
            "loss": plain(self.loss),
            "loss_sem": plain(self.loss_sem),
            "acc": plain(self.acc),
        }


def profile_of(name: str, line: Surface) -> Profile:
    """The profile of a 1-D surface over t ∈ [0, 1] (its x)."""
    return Profile(name, line.x, line.loss, line.loss_sem, line.acc)


def comparison_attrs(profiles: Sequence[Profile]) -> dict[str, Any]:
    """The ``comparison`` attribute of these profiles (one t for all)."""
    return {"t": [float(v) for v in profiles[0].t], "paths": [p.as_dict() for p in profiles]}


def _numbers(value: Any, n: int) -> np.ndarray | None:
    if not isinstance(value, list) or len(value) != n:
        return None
    if not all(v is None or is_number(v) for v in value):
        return None
    return np.array([math.nan if v is None else float(v) for v in value])


def comparison(attrs: Mapping[str, Any]) -> list[Profile]:
    """The profiles a surface's ``comparison`` attribute holds; those that are not well formed
    (a file's values are data) are left out, and a missing attribute gives none."""
    raw = attrs.get("comparison")
    if not isinstance(raw, dict):
        return []
    t = _numbers(raw.get("t"), len(raw.get("t") or []))
    paths = raw.get("paths")
    if t is None or len(t) < 2 or not isinstance(paths, list):
        return []
    out = []
    for path in paths:
        if not isinstance(path, dict) or not isinstance(path.get("name"), str):
            continue
        arrays = [_numbers(path.get(k), len(t)) for k in ("loss", "loss_sem", "acc")]
        if any(a is None for a in arrays) or not np.all(np.isfinite(arrays[0])):  # type: ignore[arg-type]
            continue
        loss, sem, acc = arrays
        assert loss is not None and sem is not None and acc is not None
        out.append(Profile(path["name"], t, loss, sem, acc))
    return out


def comparison_lines(attrs: Mapping[str, Any]) -> list[str]:
    """One line per compared path: its barrier ± SE, where it peaks, and its largest loss."""
    return [
        f"barrier of the {printable(p.name)}: {p.barrier:+.4g} ± {p.barrier_sem:.2g} (max loss "
        f"{float(np.max(p.loss)):.4g} at t={p.at:.3g}; ends {p.loss[0]:.4g}, {p.loss[-1]:.4g})"
        for p in comparison(attrs)
    ]
