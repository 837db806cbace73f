"""Planes that compare models: the plane through A, a curve's midpoint and B with the straight
path and the curve drawn (Garipov et al. 2018, Figure 1), and several models projected onto
the plane through three checkpoints, each drawn with its label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from lossland.directions import Directions, model_directions
from lossland.errors import LosslandError, arg
from lossland.io import Surface
from lossland.run._surface import surface

MARGIN = 0.25  # of the drawn points' extent, around them


class CurveLike(Protocol):
    """What a plane reads of a curve (:class:`lossland.compare.Curve`; run sits beside compare,
    not above it)."""

    @property
    def kind(self) -> str: ...
    @property
    def start(self) -> Mapping[str, Tensor]: ...
    @property
    def end(self) -> Mapping[str, Tensor]: ...
    @property
    def bends(self) -> tuple[Mapping[str, Tensor], ...]: ...
    def state_at(self, t: float) -> Mapping[str, Tensor]: ...


def projected(
    directions: Directions, states: Mapping[str, Mapping[str, Tensor]]
) -> dict[str, np.ndarray]:
    """Each state's (x, y) on the plane θ_A + x·(θ_B − θ_A) + y·(θ_C − θ_A): the least-squares
    coordinates of θ − θ_A (exact for a point of the plane), (1, 2) per name."""
    assert directions.y is not None and directions.origin is not None
    names = list(directions.x)
    u = torch.cat([directions.x[n].double().flatten() for n in names])
    v = torch.cat([directions.y[n].double().flatten() for n in names])
    gram = torch.stack([torch.stack([u @ u, u @ v]), torch.stack([v @ u, v @ v])])
    out = {}
    for label, state in states.items():
        missing = [n for n in names if n not in state or state[n].shape != directions.x[n].shape]
        if missing:
            raise LosslandError(
                f"{label} is not a model of this architecture (tensor {missing[0]} differs): "
                "project checkpoints of one model"
            )
        w = torch.cat(
            [(state[n].double() - directions.origin[n].double()).flatten() for n in names]
        )
        out[label] = torch.linalg.solve(gram, torch.stack([u @ w, v @ w])).numpy()[None, :]
    return out


def _orthogonal(directions: Directions) -> Directions:
    """y made orthogonal to x (Gram–Schmidt), keeping its length along the normal: the same
    plane, drawn without the skew of two nearly parallel directions; the third model keeps
    y = 1, so a curve that bends little still fills the picture."""
    assert directions.y is not None
    x, y = directions.x, directions.y
    dot = sum(float((x[n].double() * y[n].double()).sum()) for n in x)
    xx = sum(float((x[n].double() ** 2).sum()) for n in x)
    return replace(directions, y={n: y[n] - (dot / xx) * x[n] for n in x})


def _range(values: np.ndarray, points: int) -> str:
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = MARGIN * (hi - lo)
    return f"{lo - pad:.6g}:{hi + pad:.6g}:{points}"


def curve_plane(
    model: nn.Module,
    curve: CurveLike,
    data: Any,
    *,
    points: int = 21,
    path_points: int = 41,
    out: str | Path | None = None,
    **keywords: Any,
) -> Surface:
    """The loss on the plane through A (0, 0), B (1, 0) and the curve's midpoint φ(½) (0, 1),
    with the straight path and the curve drawn (``surface.trajectories``). ``model`` holds A's
    weights; a one-bend curve lies in this plane (any kind), a longer one is drawn as its
    projection. ``keywords`` go to :func:`lossland.surface` (``bn="recompute"`` for a model
    with BatchNorm, ``evaluator``, ``overwrite``, …)."""
    directions = _orthogonal(model_directions(curve.start, curve.end, curve.state_at(0.5)))
    ts = np.linspace(0.0, 1.0, path_points)
    states = {f"{t:.6f}": curve.state_at(float(t)) for t in ts}
    along = np.concatenate(list(projected(directions, states).values()))
    line = np.stack([ts, np.zeros_like(ts)], axis=1)
    drawn = np.concatenate([along, line])
    return surface(
        model,
        data,
        x=_range(drawn[:, 0], points),
        y=_range(drawn[:, 1], points),
        directions=directions,
        trajectories={"straight line": line, f"{curve.kind} curve": along},
        attrs={
            "curve": {"kind": curve.kind, "bends": len(curve.bends)},
            "axis_labels": ["x (θ_B − θ_A)", "y (orthogonal to x; 1 at the curve's midpoint)"],
        },
        out=out,
        **keywords,
    )


def models_plane(
    model: nn.Module,
    anchors: Sequence[Mapping[str, Tensor]],
    others: Mapping[str, Mapping[str, Tensor]],
    data: Any,
    *,
    points: int = 21,
    out: str | Path | None = None,
    **keywords: Any,
) -> Surface:
    """The plane through three models (``anchors``: θ_A at (0, 0), θ_B (1, 0), θ_C (0, 1)) with
    every model of ``others`` (label → state dict) projected onto it and drawn with its label,
    the anchors too. ``model`` holds θ_A's weights; ``keywords`` go to :func:`lossland.surface`."""
    if len(anchors) != 3:
        raise LosslandError(f"{arg('anchors')} are three models (A, B, C), got {len(anchors)}")
    directions = model_directions(anchors[0], anchors[1], anchors[2])
    marks = projected(directions, others)
    drawn = np.concatenate([np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), *marks.values()])
    return surface(
        model,
        data,
        x=_range(drawn[:, 0], points),
        y=_range(drawn[:, 1], points),
        directions=directions,
        trajectories=marks,
        attrs={"projected": sorted(marks)},
        out=out,
        **keywords,
    )
