"""Directions between models: the line θ₁ → θ₂, or the plane through θ₁, θ₂, θ₃."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from lossland.core import dtype_kind, moves
from lossland.directions._directions import Directions
from lossland.errors import LosslandError


def model_directions(
    start: Mapping[str, Tensor],
    *ends: Mapping[str, Tensor],
    include_buffers: bool = True,
) -> Directions:
    """Directions from one model to others: x = θ₂ − θ₁ (and y = θ₃ − θ₁), origin θ₁.

    Floating-point buffers (BatchNorm running statistics) are interpolated with the weights
    when ``include_buffers``; integer buffers (``num_batches_tracked``) are never moved.
    """
    if not 1 <= len(ends) <= 2:
        raise LosslandError("model-to-model directions need two or three checkpoints")
    names = [
        k
        for k, v in start.items()
        if moves(k, v.dtype, where="the first checkpoint")
        and (include_buffers or not _is_buffer_name(k))
    ]
    for end in ends:
        missing = [k for k in names if k not in end or end[k].shape != start[k].shape]
        if missing:
            raise LosslandError(
                f"checkpoints hold different models ({len(missing)} tensors differ, e.g. "
                f"{missing[0]}): compare checkpoints of one architecture"
            )
        kinds = [k for k in names if dtype_kind(end[k].dtype) != dtype_kind(start[k].dtype)]
        if kinds:
            raise LosslandError(
                f"checkpoints hold {kinds[0]} as {end[kinds[0]].dtype} and "
                f"{start[kinds[0]].dtype}: compare checkpoints of one model (lossland never "
                "casts complex to real or integers to floats)"
            )
    origin = {k: start[k].detach().clone() for k in names}
    deltas = [{k: (end[k].detach().to(start[k].dtype) - start[k]) for k in names} for end in ends]
    return Directions(
        x=deltas[0],
        y=deltas[1] if len(deltas) == 2 else None,
        kind="models",
        norm="none",
        ignore="none",
        origin=origin,
    )


def _is_buffer_name(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in ("running_mean", "running_var")
