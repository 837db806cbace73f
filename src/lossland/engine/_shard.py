"""Sharded models (``shard=True`` under torchrun): the working copy split across K ranks by FSDP2.

The working copy is wrapped with ``torch.distributed.fsdp.fully_shard`` block by block (the
children of the model's largest sequential stack, e.g. a transformer's decoder layers; found
by :func:`lossland.engine._suffix.stacks`), then as a whole. Each parameter is then a DTensor
whose local tensor holds rows [r·c, r·c + length) of dimension 0 (c = ⌈rows / K⌉, padded to c
rows in FSDP's own buffer). θ*, δ and η are cut the same way, so everything the engine does
to a point stays on this rank's rows:

* the engine's flat buffer is laid out over the local rows, each parameter followed by its
  padding (``name + PAD``, zeros that never move), and FSDP's padded buffer of each parameter
  *is* that run of the flat buffer: the engine's one axpy per point moves the local shards in
  place and the next forward's all-gather reads them (no second copy);
* θ* is read as views of the model's own rows (no copy where the model is on the device,
  else only the rows are moved there); δ and η are drawn in full on every rank from the same
  seed (identical draws, normalized filter by filter over whole rows, the same as one
  process) and this rank keeps its rows (a run that drew them then lets the whole ones go);
* the working copy is built where the model is, sharing its parameters; FSDP moves each
  block's rows to the device as it wraps it (one block whole there at a time);
* buffers and 0-d parameters that move are not sharded by FSDP: they stay whole on every
  rank; parameters that do not move (``params``) are left to no one: shared with the model
  as in one process.

So θ(α, β) on the local rows is elementwise what one process computes, every rank of the
group evaluates every point together (FSDP gathers each block's parameters for its forward
and frees them after), and the surface equals the one-process surface by construction.

The ranks of a group share a point's evaluation batches (:class:`Share`): batch i is rank
i mod K's, every rank forwards once per turn of K batches (a rank without a batch that turn
forwards one it has read and drops the result: the gathers need every rank), and the sums are
added across the group (the largest taken where a sum combines by the largest). The sums
differ from one process's only in their float64 order of addition.

FSDP's padded buffer is reached through its parameter records (``FSDPParam``): a private
attribute of torch's FSDP2, checked here, refused in one line where a torch version lacks it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lossland.core import SUMS, FlatLayout
from lossland.engine._copy import bind_flat
from lossland.engine._suffix import stacks
from lossland.errors import LosslandError, arg

PAD = "\x00pad"  # a layout entry's suffix for the zero rows FSDP pads a local shard with
_MESHES: dict[tuple[int, int, str], Any] = {}  # (world, K, device type) -> DeviceMesh


def shard_refusal(
    *, scheme: str, offload: bool, compile: bool, bn: str, points_per_batch: int | None
) -> str | None:
    """Why ``shard`` cannot run with these options (with the fix), or None."""
    if scheme != "li":
        return f"{arg('scheme')} {scheme} needs θ* whole at every point: use {arg('scheme')} li"
    if offload:
        return f"{arg('offload')} keeps θ* whole on the host: drop {arg('offload')}"
    if compile:
        return f"{arg('compile')} is not supported with {arg('shard')}: drop {arg('compile')}"
    if bn == "recompute":
        return f"{arg('bn')} recompute is not supported with {arg('shard')}: use eval or train"
    if (points_per_batch or 1) > 1:
        return f"one point per forward: set {arg('points_per_batch')} to 1"
    return None


def shard_mesh(k: int, device: torch.device) -> Any:
    """The 1-D device mesh of this rank's group of ``k`` consecutive ranks, on a process group
    of its own (the run's exchange thread keeps the default one), made once per job."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import DeviceMesh

    key = (dist.get_world_size(), k, device.type)
    if key not in _MESHES:
        group, _ = dist.new_subgroups(group_size=k)  # type: ignore[no-untyped-call]
        _MESHES[key] = DeviceMesh.from_group(group, device.type)
    return _MESHES[key]


@dataclass
class Sharded:
    """The engine's tensors on this rank: the wrapped network, the local layout (parameters'
    rows and padding, moving buffers whole), θ* per layout entry, and the flat buffers."""

    net: nn.Module
    layout: FlatLayout
    theta: list[Tensor]
    dx: Tensor
    dy: Tensor | None
    flat: Tensor
    weights: Tensor


def shard_network(
    net: nn.Module,
    names: Sequence[str],
    *,
    theta: Sequence[Tensor],
    layout: FlatLayout,
    directions: Sequence[Tensor],
    mesh: Any,
    device: torch.device,
    dtype: torch.dtype,
    net_dtype: torch.dtype,
) -> Sharded:
    """Wrap ``net`` (a working copy on ``device`` whose ``names`` move, in the network's dtype)
    with FSDP2 over ``mesh`` and cut θ* (per name) and the flat ``directions`` (in ``layout``),
    wherever they are, to this rank's rows on ``device`` (see the module doc). The network
    reads ``weights``: the flat buffer itself, or its copy in ``net_dtype`` where that is
    narrower (bf16)."""
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    # Left to FSDP: the moving parameters. Those that do not move stay shared with the model
    # (working_copy), and FSDP shards no 0-d parameter: those stay whole, like buffers.
    moving = {id(p) for n, p in net.named_parameters() if n in set(names)}
    kept = {p for p in net.parameters() if id(p) not in moving or p.dim() == 0}
    for block in _blocks(net):
        fully_shard(block, mesh=mesh, reshard_after_forward=True, ignored_params=kept)
    # reshard_after_forward given: the root frees its gathered parameters too, so every
    # forward gathers the shards as the engine left them
    fully_shard(net, mesh=mesh, reshard_after_forward=True, ignored_params=kept)
    for t in [*net.parameters(), *net.buffers()]:  # what FSDP left where the model is
        if not isinstance(t, DTensor) and t.device != device:
            t.data = t.to(device)
    records = _records(net, names)
    rows = {n: _rows(records[n]) for n in names if n in records}
    shapes: dict[str, tuple[int, ...]] = {}
    for n, t in zip(names, theta, strict=True):
        if n in rows:
            _, length, pad = rows[n]
            shapes[n], shapes[n + PAD] = (length, *t.shape[1:]), (pad, *t.shape[1:])
        else:
            shapes[n] = tuple(t.shape)  # a moving buffer or 0-d parameter: whole on every rank
    local = FlatLayout.of(shapes)
    flat = torch.zeros(local.size, device=device, dtype=dtype)  # (P_local,) θ(α, β)
    weights = flat if net_dtype == dtype else torch.zeros_like(flat, dtype=net_dtype)
    _bind(net, local, weights, records, rows)
    full = [layout.views(d) for d in directions]
    local_dirs = [torch.zeros(local.size, device=device, dtype=d.dtype) for d in directions]
    local_theta: list[Tensor] = []
    for n, t in zip(names, theta, strict=True):
        part = t if n not in rows else t.narrow(0, rows[n][0], rows[n][1])
        local_theta.append(part.to(device))  # the model's own rows where they are on device
        for views, whole in zip((local.views(d) for d in local_dirs), full, strict=True):
            views[n].copy_(whole[n] if n not in rows else whole[n].narrow(0, *rows[n][:2]))
        if n in rows:  # the padding: θ* zero, and zero in the directions, never moves
            local_theta.append(t.new_zeros(shapes[n + PAD], device=device))
    return Sharded(
        net,
        local,
        local_theta,
        local_dirs[0],
        local_dirs[1] if len(local_dirs) > 1 else None,
        flat,
        weights,
    )


def model_device(model: nn.Module, default: torch.device) -> torch.device:
    """Where ``model``'s parameters are (a sharded working copy is built there)."""
    return next((p.device for p in model.parameters()), default)


def _blocks(net: nn.Module) -> list[nn.Module]:
    """The children holding parameters of the stack with the most of them (the outermost of
    equals): each becomes one FSDP unit, gathered for its own forward only."""
    best: list[nn.Module] = []
    for _, stack in stacks(net):
        held = [c for c in stack.children() if any(True for _ in c.parameters())]
        if len(held) > len(best):
            best = held
    return [b for b in best if b is not net]


def _records(net: nn.Module, names: Sequence[str]) -> dict[str, Any]:
    """name -> FSDP's record of that parameter (FSDPParam), for every sharded parameter;
    every moving parameter of one dimension or more must have one."""
    from torch.distributed.fsdp import FSDPModule

    by_id: dict[int, Any] = {}
    for module in net.modules():
        if isinstance(module, FSDPModule):
            state = module._get_fsdp_state()
            for group in getattr(state, "_fsdp_param_groups", []):
                for record in getattr(group, "fsdp_params", []):
                    by_id[id(getattr(record, "sharded_param", None))] = record
    needed = ("_sharded_param_data", "padded_sharded_param_size", "sharded_size", "mesh_info")
    params = {n: p for n, p in net.named_parameters() if n in set(names)}
    found = {n: by_id.get(id(p)) for n, p in params.items()}
    missing = [n for n, r in found.items() if r is None and params[n].dim() > 0]
    unusable = [
        n for n, r in found.items() if r is not None and not all(hasattr(r, a) for a in needed)
    ]
    if missing or unusable:
        raise LosslandError(
            f"this PyTorch ({torch.__version__}) keeps FSDP2's shards where lossland cannot "
            f"bind them (tested with 2.13): drop {arg('shard')} or use that PyTorch"
        )
    return {n: record for n, record in found.items() if record is not None}


def _rows(record: Any) -> tuple[int, int, int]:
    """(first row, rows, padding rows) of this rank's shard of one parameter."""
    padded = int(record.padded_sharded_param_size[0])
    length = int(record.sharded_size[0])
    return int(record.mesh_info.shard_mesh_rank) * padded, length, padded - length


def _bind(
    net: nn.Module,
    layout: FlatLayout,
    weights: Tensor,
    records: Mapping[str, Any],
    rows: Mapping[str, tuple[int, int, int]],
) -> None:
    """FSDP's padded buffer of each moving parameter becomes its run of ``weights`` (rows then
    padding, contiguous); the tensors FSDP does not shard become views of it as in one
    process."""
    views = layout.views(weights)
    entries = {e.name: e for e in layout.entries}
    for n in rows:
        record, e = records[n], entries[n]
        padded = e.numel + entries[n + PAD].numel
        record._sharded_param_data = weights[e.offset : e.offset + padded]
        record.sharded_param._local_tensor = views[n]
    whole = [e for e in layout.entries if e.name not in rows and not e.name.endswith(PAD)]
    bind_flat(net, FlatLayout(tuple(whole), layout.size), weights)


class Share:
    """This rank's share of a point's evaluation batches within its group (module doc)."""

    def __init__(self, mesh: Any) -> None:
        self.group = mesh.get_group()
        self.rank, self.k = int(mesh.get_local_rank()), int(mesh.size())
        self.largest = [s.combine == "max" for s in SUMS]

    def turns(self, batches: Iterable[Any]) -> Iterator[tuple[Any, bool]]:
        """(batch, whether it is this rank's) once per turn of K batches: every rank reads
        every batch, so all know each turn's batches without asking each other."""
        read = iter(batches)
        while turn := list(itertools.islice(read, self.k)):
            if self.rank < len(turn):
                yield turn[self.rank], True
            else:  # the last turn is short: forward a batch with the others, drop the result
                yield turn[-1], False
            if len(turn) < self.k:
                return

    def reduce(self, total: Tensor | None, device: torch.device) -> Tensor:
        """The group's sums (len(SUMS),) from this rank's ``total`` (None: no batch here)."""
        import torch.distributed as dist

        if total is None:  # what adds nothing: 0, and −∞ where the largest is taken
            neutral = [-math.inf if big else 0.0 for big in self.largest]
            total = torch.tensor(neutral, dtype=torch.float64, device=device)
        largest = torch.tensor(self.largest, device=total.device)
        summed = torch.where(largest, torch.zeros_like(total), total)
        dist.all_reduce(summed, group=self.group)
        if not any(self.largest):
            return summed
        high = torch.where(largest, total, torch.full_like(total, -math.inf))
        dist.all_reduce(high, op=dist.ReduceOp.MAX, group=self.group)
        return torch.where(largest, high, summed)
