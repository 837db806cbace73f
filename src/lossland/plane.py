"""Where a grid point lies in weight space: grid specs and the interpolation schemes.

All schemes work on flat parameter vectors laid out by :class:`lossland.engine.FlatLayout`;
``segments`` are the per-tensor views of such a vector shaped (filters, elements per filter),
so "filter" and "layer" norms are row norms and whole-view norms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor

from lossland.errors import LosslandError

Scheme = Literal["li", "linear2x", "barycentric"]
SCHEMES: tuple[str, ...] = get_args(Scheme)


@dataclass(frozen=True)
class Axis:
    """An inclusive grid axis ``min:max:num`` (``num`` evenly spaced values, like np.linspace)."""

    start: float
    stop: float
    num: int

    @classmethod
    def parse(cls, text: str | Axis, *, name: str = "axis") -> Axis:
        if isinstance(text, Axis):
            return text
        parts = str(text).strip().split(":")
        hint = f"write {name} as min:max:num, e.g. -1:1:51"
        if len(parts) != 3:
            raise LosslandError(f"malformed {name} range {text!r}: {hint}")
        try:
            start, stop = float(parts[0]), float(parts[1])
            num = int(parts[2])
        except ValueError:
            raise LosslandError(f"malformed {name} range {text!r}: {hint}") from None
        if not (math.isfinite(start) and math.isfinite(stop)):
            raise LosslandError(f"{name} range {text!r} must have finite ends: {hint}")
        if num < 1:
            raise LosslandError(f"{name} range {text!r} needs at least 1 point: {hint}")
        if start > stop:
            raise LosslandError(
                f"{name} range {text!r} has min > max: write {stop:g}:{start:g}:{num}"
            )
        if num == 1 and start != stop:
            raise LosslandError(
                f"{name} range {text!r} has one point: write it as {start:g}:{start:g}:1"
            )
        if num > 1 and start == stop:
            raise LosslandError(f"{name} range {text!r} repeats one value {num} times: widen it")
        return cls(start, stop, num)

    def values(self) -> np.ndarray:
        return np.linspace(self.start, self.stop, self.num, dtype=np.float64)

    def __str__(self) -> str:
        return f"{self.start:g}:{self.stop:g}:{self.num}"


def coordinates(spec: str | Axis | Sequence[float] | np.ndarray, *, name: str) -> np.ndarray:
    """Grid coordinates from a ``min:max:num`` spec or an increasing sequence of values."""
    if isinstance(spec, (str, Axis)):
        return Axis.parse(spec, name=name).values()
    values = np.asarray(spec, dtype=np.float64).reshape(-1)
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(np.diff(values) <= 0):
        raise LosslandError(f"{name} coordinates must be finite and strictly increasing")
    return values


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


def li_point_(out: Tensor, plane: PlaneVectors, alpha: float, beta: float) -> Tensor:
    """θ* + α·δ + β·η (Li et al.), written into ``out``."""
    torch.add(plane.base, plane.dx, alpha=alpha, out=out)
    if plane.dy is not None and beta != 0.0:
        out.add_(plane.dy, alpha=beta)
    return out


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
