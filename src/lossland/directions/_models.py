"""Directions between models: the line θ₁ → θ₂, or the plane through θ₁, θ₂, θ₃."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from lossland.core import Params, dtype_kind, moves, select_params
from lossland.directions._directions import Directions
from lossland.directions._plane import Plane, PlaneRequest
from lossland.errors import LosslandError, arg
from lossland.io import load_checkpoint


def model_directions(
    start: Mapping[str, Tensor],
    *ends: Mapping[str, Tensor],
    include_buffers: bool = True,
    names: Sequence[str] | None = None,
    params: Params | None = None,
) -> Directions:
    """Directions from one model to others: x = θ₂ − θ₁ (and y = θ₃ − θ₁), origin θ₁.

    Args:
        start: θ₁, a state dict.
        *ends: θ₂ (a line), or θ₂ and θ₃ (a plane): state dicts of the same architecture.
        include_buffers: interpolate floating-point buffers (BatchNorm running statistics)
            with the weights; integer buffers (``num_batches_tracked``) are never moved.
        names: limits the directions to those tensors: pass the model's own
            (:func:`model_names`) where a checkpoint holds a tied weight under two names
            (GPT-2's ``lm_head.weight`` is ``transformer.wte.weight``), which the model moves
            once.
        params: keeps the chosen ones of those tensors (globs, ``"trainable"`` or a function:
            :func:`lossland.core.select_params`).

    Returns:
        The :class:`Directions` of kind "models", origin θ₁ (x = 1 is θ₂).

    Raises:
        LosslandError: not two or three checkpoints, or checkpoints of different models.

    Example:
        >>> d = lossland.model_directions(a.state_dict(), b.state_dict())
        >>> s = lossland.surface(a, data, directions=d, x="0:1:21")
    """
    if not 1 <= len(ends) <= 2:
        raise LosslandError("model-to-model directions need two or three checkpoints")
    wanted = None if names is None else set(names)
    names = [
        k
        for k, v in start.items()
        if (wanted is None or k in wanted)
        and moves(k, v.dtype, where="the first checkpoint")
        and (include_buffers or not _is_buffer_name(k))
    ]
    chosen = select_params(params, [(k, start[k]) for k in names])
    names = names if chosen is None else chosen
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
        params=None if chosen is None else tuple(chosen),
    )


def _is_buffer_name(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in ("running_mean", "running_var")


def model_names(model: nn.Module) -> list[str]:
    """The names under which ``model`` holds its tensors, each tensor once (a tied weight under
    its first name): the names a surface run moves."""
    return [n for n, _ in [*model.named_parameters(), *model.named_buffers()]]


def models_plane_for(request: PlaneRequest) -> tuple[Plane, None]:
    """The producer of kind "models": the line from the checkpoint to ``request.to``'s one
    checkpoint, or the plane through it and two; the directions come from those files."""
    if not 1 <= len(request.to) <= 2:
        raise LosslandError(f"{arg('to')} takes one checkpoint (a line) or two (a plane)")
    ends = [load_checkpoint(p).state_dict for p in request.to]
    model = request.model
    chosen = select_params(request.params, [*model.named_parameters(), *model.named_buffers()])
    names = model_names(model) if chosen is None else chosen
    directions = model_directions(request.state, *ends, names=names, params=chosen)
    return Plane(directions, request.x, request.y), None
