"""Directions of kind "hessian": the plane of the top two Hessian eigenvectors at θ*."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from lossland.core import DType, Params
from lossland.directions._directions import Directions
from lossland.directions._hessian import HessianOptions, Which, _directions, hessian_options
from lossland.directions._plane import Plane, PlaneRequest
from lossland.engine import Evaluator, LossFn
from lossland.errors import LosslandError


def hessian_plane(
    model: nn.Module,
    data: Any,
    *,
    evaluator: Evaluator | None = None,
    loss: LossFn | str | None = None,
    options: HessianOptions | None = None,
    which: Which | None = None,
    iterations: int | None = None,
    tol: float | None = None,
    seed: int | None = None,
    params: Params | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    dtype: DType | torch.dtype | None = None,
    allow_large: bool | None = None,
    progress: bool | None = None,
) -> Plane:
    """The plane of the top two Hessian eigenvectors at θ* (unit norm), labelled with λ1, λ2.

    Args:
        model, data, evaluator, loss: as for :func:`hessian_directions`.
        options: a :class:`HessianOptions`; the other keywords are its fields but ``k``
            (always 2) and ``probes``.

    Returns:
        A :class:`Plane` for :func:`lossland.surface` (``x``/``y`` chosen from the curvature).

    Raises:
        LosslandError: an option out of its bounds, a model or data the evaluation contract
            refuses, or a cost that cannot fit (memory) or is above lossland's limits without
            ``allow_large``; checked before any Hessian-vector product.

    Example:
        >>> plane = lossland.hessian_plane(model, (inputs, targets))
        >>> s = lossland.surface(model, data, directions=plane.directions)
    """
    o = hessian_options(options, locals(), not_taken=("k", "probes"))
    return _plane(model, data, o, evaluator=evaluator, loss=loss)


def _plane(
    model: nn.Module,
    data: Any,
    o: HessianOptions,
    *,
    evaluator: Evaluator | None,
    loss: LossFn | str | None,
) -> Plane:
    size = sum(p.numel() for p in model.parameters())
    if size < 2:
        raise LosslandError(f"the model has {size} parameter: too few for a Hessian plane")
    directions = _directions(model, data, replace(o, k=2), evaluator=evaluator, loss=loss)
    values = directions.info["eigenvalues"]
    labels = [f"v1 (λ1 = {values[0]:.4g})", f"v2 (λ2 = {values[1]:.4g})"]
    return Plane(directions=directions, attrs={"axis_labels": labels})


def hessian_plane_for(request: PlaneRequest) -> tuple[Plane, Directions]:
    """The producer of kind "hessian": the plane of the top two eigenvectors at the
    checkpoint, computed with ``request.hessian``; its directions are new (saved beside the
    surface)."""
    o = request.hessian
    plane = _plane(request.model, request.data, o, evaluator=request.evaluator, loss=None)
    plane = replace(plane, x=request.x, y=request.y)
    return plane, plane.directions
