"""Interpolation schemes: θ(α, β) for li, linear2x and barycentric, on flat parameter vectors.

All schemes work on flat vectors laid out by :class:`lossland.core.FlatLayout`; ``segments``
are the per-tensor views of such a vector shaped (filters, elements per filter), so "filter"
and "layer" norms are row norms and whole-view norms. ``li`` (θ* + α·δ + β·η) is the engine's
own hot loop; the other two are per-tensor rescaled mixtures computed here point by point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from lossland.core._flat import row_blocks, rows
from lossland.errors import LosslandError

Scheme = Literal["li", "linear2x", "barycentric"]
SCHEMES: tuple[str, ...] = get_args(Scheme)


# --- norms on segment views (filters, elements) -----------------------------------------------


def _safe_ratio(num: Tensor, den: Tensor) -> Tensor:
    # A zero-norm filter stays zero rather than becoming NaN.
    return torch.where(
        den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.zeros_like(num)
    )


def filter_norms(tensor: Tensor) -> Tensor:
    """L2 norm of each filter (index along dim 0), shaped to broadcast against ``tensor``.

    Norms ignore memory order, so this works on channels_last views without a copy.
    """
    norms: Tensor = torch.linalg.vector_norm(
        tensor, dim=tuple(range(1, tensor.dim())), keepdim=True
    )
    return norms


def layer_norm(segment: Tensor) -> Tensor:
    norm: Tensor = torch.linalg.vector_norm(segment)
    return norm


def rescale_(segment: Tensor, reference: Tensor, mode: Literal["filter", "layer"]) -> Tensor:
    """Scale ``segment`` in place so each filter (dim 0) or the whole tensor has ``reference``'s
    norm; ``segment`` and ``reference`` have the same shape (any memory layout)."""
    if mode == "filter":
        segment.mul_(_safe_ratio(filter_norms(reference), filter_norms(segment)))
    else:
        segment.mul_(_safe_ratio(layer_norm(reference), layer_norm(segment)))
    return segment


# --- the schemes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaneVectors:
    """θ* and the two directions as flat vectors, plus their per-tensor segment views.

    ``active[k]`` is False for tensors whose directions are both zero (e.g. biases and BatchNorm
    under ``ignore="biasbn"``): every scheme leaves those at θ*.
    """

    base: Tensor  # (P,)
    dx: Tensor  # (P,)
    dy: Tensor | None  # (P,) or None for 1-D
    base_segments: tuple[Tensor, ...]
    dx_segments: tuple[Tensor, ...]
    dy_segments: tuple[Tensor, ...] | None
    active: tuple[bool, ...]


def li_point_(
    out: Sequence[Tensor],
    theta: Sequence[Tensor],
    dx: Sequence[Tensor],
    dy: Sequence[Tensor] | None,
    alpha: float,
    beta: float,
) -> None:
    """θ* + α·δ + β·η (Li et al.), tensor by tensor into ``out`` (views of a flat buffer).

    Reads θ* from the model's own tensors, so the engine keeps no flat copy of it. θ* and the
    directions may be in a narrower float (bf16) than ``out``: the sums are formed in ``out``'s
    dtype (an add whose inputs are both narrower would round in theirs).
    """
    dys: Sequence[Tensor | None] = dy if dy is not None else [None] * len(theta)
    for view, t, x, y in zip(out, theta, dx, dys, strict=True):
        if view.dtype in (t.dtype, x.dtype):
            torch.add(t, x, alpha=alpha, out=view)
        else:
            view.copy_(t).add_(x, alpha=alpha)
        if y is not None:
            view.add_(y, alpha=beta)


def li_rounded_(
    out: Sequence[Tensor],
    theta: Sequence[Tensor],
    dx: Sequence[Tensor],
    dy: Sequence[Tensor] | None,
    alpha: float,
    beta: float,
    scratch: Tensor,
) -> None:
    """θ* + α·δ + β·η into a narrower ``out`` (a bf16 network's weights): each block of rows is
    formed in ``scratch``'s dtype (float32; ``scratch`` holds a block and stays in cache) exactly
    as :func:`li_point_` forms it, then rounded once into ``out``. No grid-dtype copy of the
    whole network is kept."""
    dys: Sequence[Tensor | None] = dy if dy is not None else [None] * len(theta)
    for view, t, x, y in zip(out, theta, dx, dys, strict=True):
        for block in row_blocks(view.shape, scratch.numel()):
            o = rows(view, block)
            s = scratch_like(scratch, o)
            li_point_(
                [s],
                [rows(t, block)],
                [rows(x, block)],
                None if y is None else [rows(y, block)],
                alpha,
                beta,
            )
            o.copy_(s)


def scratch_like(scratch: Tensor, like: Tensor) -> Tensor:
    """The first ``like.numel()`` elements of ``scratch`` viewed with ``like``'s shape and strides
    (a block of rows of a layout view is dense in some dimension order)."""
    if like.dim() == 0:
        return scratch[0]
    return scratch.as_strided(like.shape, like.stride(), 0)


def linear2x_point_(
    out: Tensor, out_segments: Sequence[Tensor], plane: PlaneVectors, alpha: float, beta: float
) -> Tensor:
    """ψ = α·δ + (1−α)·θ*;  θ = β·η + (1−β)·layernorm(ψ, θ*)   (per tensor)."""
    if plane.dy_segments is None:
        raise LosslandError("scheme linear2x needs two directions: give a y range")
    torch.mul(plane.base, 1.0 - alpha, out=out).add_(plane.dx, alpha=alpha)  # ψ
    for seg, ref, dy, active in zip(
        out_segments, plane.base_segments, plane.dy_segments, plane.active, strict=True
    ):
        if not active:
            seg.copy_(ref)
            continue
        rescale_(seg, ref, "layer").mul_(1.0 - beta).add_(dy, alpha=beta)
    return out


def barycentric_point_(
    out: Tensor,
    out_segments: Sequence[Tensor],
    scratch: Tensor,
    scratch_segments: Sequence[Tensor],
    plane: PlaneVectors,
    alpha: float,
    beta: float,
) -> Tensor:
    """ϕ = α(δ−θ*)+θ*, ψ = β(η−θ*)+θ*;  θ = α·filternorm(ϕ, θ*) + (1−β)·filternorm(ψ, θ*)."""
    if plane.dy is None or plane.dy_segments is None:
        raise LosslandError("scheme barycentric needs two directions: give a y range")
    torch.mul(plane.base, 1.0 - alpha, out=out).add_(plane.dx, alpha=alpha)  # ϕ
    torch.mul(plane.base, 1.0 - beta, out=scratch).add_(plane.dy, alpha=beta)  # ψ
    for seg, tmp, ref, active in zip(
        out_segments, scratch_segments, plane.base_segments, plane.active, strict=True
    ):
        if not active:
            seg.copy_(ref)
            continue
        rescale_(seg, ref, "filter").mul_(alpha)
        seg.add_(rescale_(tmp, ref, "filter"), alpha=1.0 - beta)
    return out
