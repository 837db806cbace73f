"""The engine's private copy of the network: its moving tensors become views of one buffer.

The user's model is never modified: the engine evaluates a deep copy whose tensors that move
with the grid point are replaced by views of a flat buffer (``bind_flat``), so one in-place
axpy moves every parameter at once, tied weights included.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lossland.core import FlatLayout, moving_dtype
from lossland.errors import LosslandError, first_line

BNMode = Literal["eval", "train", "recompute"]


def working_copy(
    model: nn.Module,
    moving: Sequence[str],
    *,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Deep-copy ``model`` without duplicating the tensors that will become flat-buffer views,
    nor, given the ``device`` and ``dtype`` the copy will be cast to, the parameters that do not
    move and already are there in the dtype the rule gives (:func:`shared_parameters`): those
    are shared with ``model`` (read-only: :class:`ModelState` refuses a forward that writes
    one), so a subset's run costs about the subset, not the model."""
    by_name: dict[str, Tensor] = dict(model.named_parameters(remove_duplicate=False))
    by_name.update(dict(model.named_buffers(remove_duplicate=False)))
    memo: dict[int, Any] = {}
    if device is not None and dtype is not None:
        for tensor in shared_parameters(model, moving, device, dtype):
            # A parameter of its own (requires_grad and rebinding stay the copy's), the same
            # storage and version counter as the user's.
            memo[id(tensor)] = nn.Parameter(tensor.detach(), requires_grad=False)
    for name in moving:
        tensor = by_name[name]
        placeholder = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
        memo[id(tensor)] = (
            nn.Parameter(placeholder, False) if isinstance(tensor, nn.Parameter) else placeholder
        )
    try:
        return copy.deepcopy(model, memo)
    except Exception as exc:
        raise LosslandError(
            f"cannot copy the model ({type(exc).__name__}: {first_line(exc)}): lossland "
            "evaluates a private copy so your model is never modified; make the model "
            "deep-copyable"
        ) from None


def shared_parameters(
    model: nn.Module, moving: Sequence[str], device: torch.device, dtype: torch.dtype
) -> list[Tensor]:
    """The parameters of ``model`` a working copy on ``device`` in ``dtype`` shares instead of
    copying: those that do not move, already on ``device`` in the dtype the one rule gives
    (:func:`lossland.core.moving_dtype`; integers and bools as they are). Buffers are copied:
    forwards write them (caches, counters), and ModelState restores them from the model."""
    check_dtypes(model, dtype)
    moves = {id(t) for n, t in model.named_parameters(remove_duplicate=False) if n in moving}
    moves |= {id(t) for n, t in model.named_buffers(remove_duplicate=False) if n in moving}
    return [
        t
        for name, t in model.named_parameters()
        if id(t) not in moves
        and _same_device(t.device, device)
        and t.dtype == (moving_dtype(name, t.dtype, dtype) or t.dtype)
    ]


def _same_device(have: torch.device, want: torch.device) -> bool:
    """``want`` without an index means the current device of its type."""
    index: int | None = want.index
    if want.type == "cuda" and index is None:
        want = torch.device("cuda", torch.cuda.current_device())
    return have == want if want.type == "cuda" or index is not None else have.type == want.type


def check_dtypes(model: nn.Module, dtype: torch.dtype) -> None:
    """Refuse, by name, a tensor of ``model`` that a network in ``dtype`` cannot hold as it is
    or move (:func:`lossland.core.moving_dtype`): float8, quantized, complex in bfloat16."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        moving_dtype(name, tensor.dtype, dtype)


def cast_copy(net: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """``net`` on ``device``, each tensor in the dtype the one rule gives
    (:func:`lossland.core.moving_dtype`): real floats in ``dtype``, complex ones in its complex
    counterpart, integers and bools as they are. (``Module.to(dtype)`` would make complex
    tensors real.) Refuses, by name, the tensors lossland cannot move."""
    check_dtypes(net, dtype)

    def convert(t: Tensor) -> Tensor:
        return t.to(device=device, dtype=moving_dtype("", t.dtype, dtype) or t.dtype)

    converted: nn.Module = net._apply(convert)  # type: ignore[no-untyped-call]
    return converted


def bind_flat(net: nn.Module, layout: FlatLayout, flat: Tensor) -> None:
    """Make the named tensors of ``net`` views of ``flat`` (tied weights stay tied)."""
    views = layout.views(flat)
    # Tied tensors appear under several names; bind every owner, keyed by the tensor's identity.
    owners: dict[int, list[tuple[nn.Module, str, bool]]] = {}
    for name, tensor in [
        *net.named_parameters(remove_duplicate=False),
        *net.named_buffers(remove_duplicate=False),
    ]:
        module_name, _, attr = name.rpartition(".")
        module = net.get_submodule(module_name)
        owners.setdefault(id(tensor), []).append((module, attr, isinstance(tensor, nn.Parameter)))
    all_named: dict[str, Tensor] = dict(net.named_parameters(remove_duplicate=False))
    all_named.update(dict(net.named_buffers(remove_duplicate=False)))
    for name, view in views.items():
        owned = owners[id(all_named[name])]
        bound = nn.Parameter(view, requires_grad=False) if owned[0][2] else view
        for module, attr, is_param in owned:
            if is_param:
                module._parameters[attr] = bound  # type: ignore[assignment]
            else:
                module._buffers[attr] = bound
    for module in net.modules():
        if isinstance(module, nn.RNNBase):
            # Its list of flat weights would be rebuilt (a change of state) at the first forward.
            module._init_flat_weights()


def batchnorms(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def is_bn_statistic(net: nn.Module, name: str) -> bool:
    module_name, _, attr = name.rpartition(".")
    module = net.get_submodule(module_name)
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and attr in (
        "running_mean",
        "running_var",
        "num_batches_tracked",
    )


def batchnorm_statistics(net: nn.Module) -> list[int]:
    """Ids of the BatchNorm statistics of ``net`` (``recompute`` rewrites them at every point)."""
    return [
        id(t)
        for m in batchnorms(net)
        for t in (m.running_mean, m.running_var, m.num_batches_tracked)
        if t is not None
    ]


def set_bn_mode(net: nn.Module, bn: BNMode) -> None:
    """Eval everywhere (dropout off); with ``bn="train"`` BatchNorm uses batch statistics and
    leaves the running ones untouched (track_running_stats off means they are not passed).
    ``recompute`` evaluates in eval mode with the statistics the engine sets per point (those
    of the evaluation set: :func:`lossland.engine._batchnorm.dataset_statistics`)."""
    net.eval()
    for module in batchnorms(net):
        if bn == "train":
            module.train()
            module.track_running_stats = False
