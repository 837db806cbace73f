"""A plane to evaluate, what a producer of directions is asked for, and the grid of a plane.

A :class:`Plane` is what every producer of directions hands to :func:`lossland.surface`: the
directions, the grid ranges (``None`` or ``auto[:NUM]`` meaning "choose for me"), attributes
the surface file records (axis labels, the runs a PCA came from) and projected trajectories.

Each kind of directions is one row of :data:`lossland.core.KINDS`; a kind that is made from
inputs (a Hessian, training runs, other checkpoints) names its producer there, a function
``(PlaneRequest) -> (Plane, new directions or None)`` that :func:`make_plane` calls. Random
directions have none: :func:`lossland.surface` draws them itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor, nn

from lossland.core import Params, import_object, is_auto, kind
from lossland.directions._directions import Directions
from lossland.directions._hessian import HessianOptions
from lossland.engine import Evaluator
from lossland.errors import LosslandError


@dataclass(frozen=True)
class Plane:
    """Directions plus how to lay out and describe the surface computed on them."""

    directions: Directions
    x: str | None = None
    y: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    trajectories: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PlaneRequest:
    """Everything a producer of directions may use: the model at the checkpoint, the data and
    its evaluator (a Hessian), other checkpoints (``to``: between models), training runs
    (``runs``, ``pca_runs``: a PCA plane), and the ranges asked for (None or ``auto[:NUM]``:
    the kind's choice). Each producer reads what its kind needs and ignores the rest."""

    model: nn.Module
    state: Mapping[str, Tensor]  # the checkpoint's tensors (θ*, or θ₁ between models)
    data: Any = None
    evaluator: Evaluator | None = None
    x: str | None = None
    y: str | None = None
    to: Sequence[str | os.PathLike[str]] = ()
    runs: Sequence[str | os.PathLike[str]] = ()
    pca_runs: str | Sequence[int] | None = None
    seed: int = 0
    allow_large: bool = False
    hessian: HessianOptions = field(default_factory=HessianOptions)  # a Hessian's options
    params: Params | None = None  # the tensors that move (lossland.core.select_params)


# What a producer returns: the plane and the new directions to save beside the surface (None
# where the directions come from files the user gave).
Producer = Callable[[PlaneRequest], "tuple[Plane, Directions | None]"]


def make_plane(name: str, request: PlaneRequest) -> tuple[Plane, Directions | None]:
    """The plane of kind ``name`` that its producer makes from ``request``."""
    row = kind(name)
    if row.producer is None:
        raise LosslandError(f"directions of kind {name!r} are drawn by the surface run itself")
    producer: Producer = import_object(row.producer, what=f"producer of {name} directions")
    return producer(request)


def grid_specs(
    directions: Directions,
    x: str | None,
    y: str | None,
    trajectories: Mapping[str, np.ndarray] | None = None,
) -> tuple[str, str | None]:
    """The ``min:max:num`` specs of a plane: given ranges as they are, ``None``/``auto`` ones
    chosen by the directions' kind (a 1-D line when the kind or the directions want one)."""
    row = kind(directions.kind)
    points = (
        np.concatenate(
            [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in trajectories.values()]
        )
        if trajectories
        else np.zeros((0, 2))
    )
    info = directions.info
    xs = row.default_range(info, x, points, 0) if is_auto(x) else str(x)
    two_d = directions.y is not None and (y is not None or row.y_by_default)
    if not two_d:
        return xs, None if y is None else str(y)
    return xs, row.default_range(info, y, points, 1) if is_auto(y) else str(y)
