"""Permutation groups of a network's hidden units, and permutations of them.

A :class:`Group` is one set of hidden units (a layer's neurons, a conv's channels, the channels
of a ResNet stage's residual stream, a transformer block's MLP units, an attention layer's heads)
and every tensor axis that must be reordered with them so that the network computes the same
function. A :class:`Permutation` holds one reordering per group and applies it to a state dict.

Convention: a unit permutation ``p`` (a LongTensor of ``units`` indices) makes new unit ``i``
the old unit ``p[i]``. Aligning B to A, new unit ``i`` of B is the unit matched to A's unit ``i``.

Attention heads: a group with ``heads > 1`` splits its ``units`` into ``heads`` blocks of
``units // heads`` (the head size). Its parts (queries and keys; values and the output
projection) share one permutation of the heads, and each part may reorder the dimensions inside
each head on its own: ``p[h·D + d] = π[h]·D + σ[h][d]``. Query and key dimensions move together
(a dot product is invariant under a common reordering of both), as do value dimensions and the
rows of the output projection they feed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from lossland.errors import LosslandError, arg


@dataclass(frozen=True)
class Axis:
    """A group's units along dimension ``dim`` of state-dict tensor ``key``: entries ``start``
    to ``start + units·block`` (a slice: the queries, keys or values of a fused projection),
    ``block`` consecutive entries per unit (a conv channel flattened with its H·W positions)."""

    key: str
    dim: int
    start: int = 0
    block: int = 1


@dataclass(frozen=True)
class Site:
    """Where a group's units can be observed in a forward pass (for activation matching): the
    input or output of module ``module``, channel dimension ``channel`` (1 for NCHW tensors, -1
    for features last), from entry ``start``, ``block`` entries per unit."""

    module: str
    io: Literal["input", "output"]
    channel: int
    start: int = 0
    block: int = 1


@dataclass(frozen=True)
class Part:
    """Axes that share one unit permutation, and where their units can be observed."""

    axes: tuple[Axis, ...]
    sites: tuple[Site, ...] = ()


@dataclass(frozen=True)
class Group:
    """One set of hidden units (see the module docstring); ``heads > 1`` for attention heads."""

    name: str
    units: int
    parts: tuple[Part, ...]
    heads: int = 1

    @property
    def head_size(self) -> int:
        return self.units // self.heads

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(a.key for part in self.parts for a in part.axes)


@dataclass(frozen=True)
class Permutation:
    """One unit permutation per part of each group (see the module docstring)."""

    groups: tuple[Group, ...]
    perms: Mapping[str, tuple[Tensor, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for group in self.groups:
            found = self.perms.get(group.name)
            if found is None or len(found) != len(group.parts):
                raise LosslandError(
                    f"{arg('perms')} needs one unit permutation per part of group {group.name!r}"
                )
            for p in found:
                _check_perm(group, p)
            _check_heads(group, found)

    @classmethod
    def identity(cls, groups: tuple[Group, ...]) -> Permutation:
        return cls(groups, {g.name: tuple(torch.arange(g.units) for _ in g.parts) for g in groups})

    @classmethod
    def random(cls, groups: tuple[Group, ...], *, seed: int = 0) -> Permutation:
        """A seeded random permutation of every group (heads and the dimensions in each)."""
        generator = torch.Generator().manual_seed(seed)
        perms = {}
        for g in groups:
            heads = torch.randperm(g.heads, generator=generator)
            perms[g.name] = tuple(
                head_structured(
                    heads,
                    torch.stack(
                        [torch.randperm(g.head_size, generator=generator) for _ in range(g.heads)]
                    ),
                )
                for _ in g.parts
            )
        return cls(groups, perms)

    def inverse(self) -> Permutation:
        return Permutation(
            self.groups, {n: tuple(torch.argsort(p) for p in ps) for n, ps in self.perms.items()}
        )

    def is_identity(self) -> bool:
        return all(torch.equal(p, torch.arange(len(p))) for ps in self.perms.values() for p in ps)

    def apply(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``state`` with every group's axes reordered (a new dict; tensors outside the groups
        are the same objects)."""
        out = dict(state)
        missing = sorted({a.key for g in self.groups for p in g.parts for a in p.axes} - set(out))
        if missing:
            raise LosslandError(
                f"the state dict has no tensor {missing[0]!r} ({len(missing)} missing): apply a "
                "permutation to the state of the model its groups were derived from"
            )
        for group in self.groups:
            for part, p in zip(group.parts, self.perms[group.name], strict=True):
                for axis in part.axes:
                    out[axis.key] = permute_axis(out[axis.key], axis, p)
        return out


def head_structured(heads: Tensor, within: Tensor) -> Tensor:
    """The unit permutation ``p[h·D + d] = heads[h]·D + within[h, d]`` for ``within`` (H, D)."""
    size = within.shape[1]
    return (heads[:, None] * size + within).reshape(-1)


def axis_index(axis: Axis, p: Tensor) -> Tensor:
    """Indices into ``axis.dim`` for unit permutation ``p``: each unit's block moves whole."""
    offsets = torch.arange(axis.block, device=p.device)
    return axis.start + (p[:, None] * axis.block + offsets).reshape(-1)


def permute_axis(tensor: Tensor, axis: Axis, p: Tensor) -> Tensor:
    """``tensor`` with the slice of ``axis`` reordered by ``p`` (a new tensor)."""
    index = axis_index(axis, p.to(tensor.device))
    out = tensor.clone()
    out.narrow(axis.dim, axis.start, len(index)).copy_(tensor.index_select(axis.dim, index))
    return out


def unit_rows(tensor: Tensor, axis: Axis, units: int) -> Tensor:
    """(units, rest): the axis's slice with each unit's entries (its block and every other
    dimension) in one row."""
    moved = tensor.movedim(axis.dim, 0).narrow(0, axis.start, units * axis.block)
    return moved.reshape(units, -1)


def _check_perm(group: Group, p: Tensor) -> None:
    if (
        not isinstance(p, Tensor)
        or p.dtype != torch.long
        or p.shape != (group.units,)
        or not torch.equal(torch.sort(p).values, torch.arange(group.units, device=p.device))
    ):
        raise LosslandError(
            f"the permutation of group {group.name!r} is not a LongTensor holding each of "
            f"0..{group.units - 1} once"
        )


def _check_heads(group: Group, perms: tuple[Tensor, ...]) -> None:
    """Every part keeps each head's dimensions together, and all parts move the heads alike."""
    if group.heads == 1:
        return
    size = group.head_size
    blocks = [p.reshape(group.heads, size) // size for p in perms]
    if any((b != b[:, :1]).any() for b in blocks) or any(
        not torch.equal(b[:, 0], blocks[0][:, 0]) for b in blocks
    ):
        raise LosslandError(
            f"the permutation of group {group.name!r} splits its heads: every part must move "
            "whole heads, all parts the same way"
        )
