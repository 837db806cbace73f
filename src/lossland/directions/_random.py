"""Random directions: seeded Gaussians rescaled to θ*'s filter or layer norms (Li et al.).

Li et al.'s filter normalization rescales every output filter (conv) or output row (linear) of a
Gaussian direction to the norm of the same filter of θ*; one-dimensional tensors (biases,
BatchNorm γ/β) get a zero direction under ``ignore="biasbn"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

import torch
from torch import Tensor, nn

from lossland.core import rescale_
from lossland.directions._directions import (
    IGNORES,
    NORMS,
    Direction,
    Directions,
    Ignore,
    Norm,
    chunks,
    dot,
    empty_direction,
)
from lossland.errors import LosslandError, arg


def normalize_(
    direction: Direction, reference: Mapping[str, Tensor], *, norm: Norm, ignore: Ignore
) -> Direction:
    """Rescale ``direction`` in place, tensor by tensor, to ``reference``'s filter/layer norms.

    Filters are slices along dim 0 (output channels of a conv, output rows of a linear layer).
    """
    for name, d in direction.items():
        ref = reference[name].detach().to(d.dtype)
        if d.dim() <= 1:
            if ignore == "biasbn":
                d.zero_()
            elif norm != "none":
                rescale_(d, ref, "layer")
        elif norm != "none":
            rescale_(d, ref, norm)
    return direction


def _gaussian_like(reference: Mapping[str, Tensor], generator: torch.Generator) -> Direction:
    # Drawn on the CPU in float32, tensor by tensor in a fixed order, so a seed gives the same
    # directions on every device and in every memory layout.
    direction = empty_direction(reference)
    for d in direction.values():
        if d.is_contiguous() and d.dtype == torch.float32:
            torch.randn(d.shape, generator=generator, out=d)  # no temporary for big matrices
        else:
            d.copy_(torch.randn(d.shape, generator=generator, dtype=torch.float32))
    return direction


def random_directions(
    model: nn.Module,
    *,
    seed: int = 0,
    norm: Norm = "filter",
    ignore: Ignore = "biasbn",
    ndim: Literal[1, 2] = 2,
    orthogonalize: bool = False,
) -> Directions:
    """Gaussian directions shaped like ``model``'s parameters, normalized as Li et al.

    The x direction depends only on the seed, so a 1-D line is the x axis of the 2-D plane.
    """
    if norm not in NORMS:
        raise LosslandError(f"unknown {arg('norm')} {norm!r}: choose one of {', '.join(NORMS)}")
    if ignore not in IGNORES:
        raise LosslandError(
            f"unknown {arg('ignore')} policy {ignore!r}: choose one of {', '.join(IGNORES)}"
        )
    reference = {name: p.detach().to("cpu") for name, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(seed)
    dx = normalize_(_gaussian_like(reference, generator), reference, norm=norm, ignore=ignore)
    dy = None
    if ndim == 2:
        dy = normalize_(_gaussian_like(reference, generator), reference, norm=norm, ignore=ignore)
    directions = Directions(x=dx, y=dy, kind="random", norm=norm, ignore=ignore, seed=seed)
    return orthogonalized(directions, reference) if orthogonalize and dy is not None else directions


def orthogonalized(directions: Directions, reference: Mapping[str, Tensor]) -> Directions:
    """Gram–Schmidt y against x over all tensors, then normalize y again as before."""
    if directions.y is None:
        return directions
    x, y = directions.x, directions.y
    xx = dot(x, x)
    coef = dot(x, y) / xx if xx > 0 else 0.0
    y_new = empty_direction(y)
    for k, t in y_new.items():
        for out, ys, xs in zip(chunks(t), chunks(y[k]), chunks(x[k]), strict=True):
            out.copy_(ys.double() - coef * xs.double())
    if directions.norm != "none":
        normalize_(y_new, reference, norm=directions.norm, ignore=directions.ignore)
    info = dict(directions.info)
    info["cosine_before_orthogonalization"] = directions.cosine
    return replace(directions, y=y_new, orthogonalized=True, info=info)
