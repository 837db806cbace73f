"""A plane to evaluate, and the registry of direction kinds that knows how to lay out its grid.

A :class:`Plane` is what every producer of directions hands to :func:`lossland.surface`: the
directions, the grid ranges (``None`` or ``auto[:NUM]`` meaning "choose for me"), attributes
the surface file records (axis labels, the runs a PCA came from) and projected trajectories.

Each kind of directions has one row in :data:`KINDS`: how it chooses a grid. Adding a kind is
one producer module plus one row here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lossland.core import auto_points, auto_range, grid_with_zero, is_auto
from lossland.directions._directions import Directions
from lossland.errors import LosslandError

HESSIAN_RISE = 1.0  # auto range of Hessian planes: where ½·λ₁·r² reaches this loss rise


@dataclass(frozen=True)
class Plane:
    """Directions plus how to lay out and describe the surface computed on them."""

    directions: Directions
    x: str | None = None
    y: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    trajectories: Mapping[str, np.ndarray] = field(default_factory=dict)


# (directions, the range asked for, trajectory points (N, 2), axis 0 or 1) → min:max:num
RangeRule = Callable[[Directions, "str | None", np.ndarray, int], str]


@dataclass(frozen=True)
class DirectionKind:
    """What a kind of directions decides about its grid."""

    name: str
    default_range: RangeRule
    y_by_default: bool  # a 2-D plane unless a 1-D line is asked for (PCA, Hessian planes)


def _fixed(low: float, high: float, num: int) -> RangeRule:
    def rule(directions: Directions, spec: str | None, points: np.ndarray, axis: int) -> str:
        points_asked = (
            num if spec is None or ":" not in spec else auto_points(spec, name="xy"[axis])
        )
        return f"{low:g}:{high:g}:{points_asked}"

    return rule


def _around_points(directions: Directions, spec: str | None, points: np.ndarray, axis: int) -> str:
    return auto_range(points[:, axis] if len(points) else np.zeros(0), spec, name="xy"[axis])


def hessian_range(eigenvalue: float, spec: str | None, *, axis: int = 0) -> str:
    """±√(2·HESSIAN_RISE/λ) with ``auto:NUM`` points: where the quadratic model rises by 1."""
    num = auto_points(spec, name="xy"[axis])
    if not eigenvalue > 0 or not math.isfinite(eigenvalue):
        return f"-1:1:{num}"
    r = math.sqrt(2 * HESSIAN_RISE / eigenvalue)
    return grid_with_zero(-r, r, num)


def _from_curvature(directions: Directions, spec: str | None, points: np.ndarray, axis: int) -> str:
    # One range for both axes (from λ₁), so the picture shows how much flatter v2 is.
    values = directions.info.get("eigenvalues") or [math.nan]
    return hessian_range(float(values[0]), spec, axis=axis)


KINDS: dict[str, DirectionKind] = {
    kind.name: kind
    for kind in (
        DirectionKind("random", _fixed(-1, 1, 51), y_by_default=False),
        DirectionKind("models", _fixed(0, 1, 21), y_by_default=True),
        DirectionKind("pca", _around_points, y_by_default=True),
        DirectionKind("hessian", _from_curvature, y_by_default=True),
    )
}


def grid_specs(
    directions: Directions,
    x: str | None,
    y: str | None,
    trajectories: Mapping[str, np.ndarray] | None = None,
) -> tuple[str, str | None]:
    """The ``min:max:num`` specs of a plane: given ranges as they are, ``None``/``auto`` ones
    chosen by the directions' kind (a 1-D line when the kind or the directions want one)."""
    kind = KINDS.get(directions.kind)
    if kind is None:
        raise LosslandError(f"unknown kind of directions {directions.kind!r}")
    points = (
        np.concatenate(
            [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in trajectories.values()]
        )
        if trajectories
        else np.zeros((0, 2))
    )
    xs = kind.default_range(directions, x, points, 0) if is_auto(x) else str(x)
    two_d = directions.y is not None and (y is not None or kind.y_by_default)
    if not two_d:
        return xs, None if y is None else str(y)
    return xs, kind.default_range(directions, y, points, 1) if is_auto(y) else str(y)
