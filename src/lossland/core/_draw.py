"""Random directions drawn a block of rows at a time: the one rule that stores them and that
``memory="lean"`` regenerates them by, so regenerated == stored holds by construction.

Tensor k of a direction is drawn in blocks of whole dim-0 rows of at most ``limit`` elements
(:func:`lossland.core.row_blocks`; a single row larger than that is a block of its own), each by
its own ``torch.randn`` call on the CPU generator in float32, then cast to the direction's dtype
and multiplied by Li et al.'s factor (:class:`Factor`: per filter, per layer, none, or the
1-D rules). A tensor of at most ``limit`` elements is one block: exactly the whole-tensor draw
lossland always made. (``torch.randn`` of a whole tensor differs from randn of its row blocks:
the CPU kernel fills blocks of 16 and redraws the tail; so larger tensors follow the recorded
rule, ``draw="rows-<limit>"``; no rule recorded means whole tensors.)

Draws never depend on the engine's device: they are made on the CPU and copied to the device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from lossland.core._flat import row_blocks, rows
from lossland.core._schemes import _safe_ratio as safe_ratio
from lossland.core._schemes import filter_norms, layer_norm

DRAW_BLOCK = 1 << 22  # elements a randn call draws at most (16 MiB in float32)
DRAW_PREFIX = "rows-"


def draw_rule(shapes: Sequence[Sequence[int]], limit: int | None) -> str | None:
    """The draw rule to record for tensors of ``shapes``: None where every tensor is one block
    (the whole-tensor rule of old files), else ``rows-<limit>``."""
    if limit is None or all(_numel(s) <= limit for s in shapes):
        return None
    return f"{DRAW_PREFIX}{limit}"


def rule_limit(rule: str | None) -> int | None:
    """The block limit a recorded rule names (None: whole tensors); ValueError if malformed."""
    if rule is None:
        return None
    if not rule.startswith(DRAW_PREFIX) or not rule[len(DRAW_PREFIX) :].isdigit():
        raise ValueError(rule)
    return int(rule[len(DRAW_PREFIX) :]) or None


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def draw_blocks(shape: Sequence[int], limit: int | None) -> list[tuple[int, int]]:
    """The blocks of rows tensor ``shape`` is drawn in (one block: the whole tensor)."""
    if _numel(shape) == 0:
        return []
    return row_blocks(shape, limit if limit is not None else max(1, _numel(shape)))


def gaussian(
    shape: Sequence[int],
    block: tuple[int, int],
    dtype: torch.dtype,
    generator: torch.Generator,
    workspace: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Rows ``block`` of the draw of a tensor shaped ``shape``: float32 Gaussians from
    ``generator`` (the next block's draw), cast to ``dtype``; contiguous, on the CPU. With a
    ``workspace`` (a float32 and a ``dtype`` vector of a block each) the result is a view of
    it, valid until the next draw: nothing is allocated."""
    size = tuple(shape) if len(shape) == 0 else (block[1] - block[0], *shape[1:])
    if workspace is None:
        return torch.randn(size, generator=generator, dtype=torch.float32).to(dtype)
    wide, narrow = workspace
    n = _numel(size)
    drawn = torch.randn(size, generator=generator, out=wide[:n].view(size))
    return drawn if dtype == torch.float32 else narrow[:n].view(size).copy_(drawn)


FactorKind = Literal["zero", "theta", "raw", "filter", "layer"]


@dataclass(frozen=True)
class Factor:
    """How a tensor's draw becomes its direction (Li et al.): ``zero`` (1-D under
    ``ignore="biasbn"``), ``theta`` (1-D under ``"none"``: θ*'s own values), ``raw``
    (``norm="none"``), or multiplied by ``scale`` (``filter``: (rows, 1, ...); ``layer``: 0-D)."""

    kind: FactorKind
    scale: Tensor | None = None

    def apply_(self, drawn: Tensor, block: tuple[int, int], reference: Tensor) -> Tensor:
        """Rows ``block`` of the direction from those rows of the draw (in place)."""
        if self.kind == "zero":
            return drawn.zero_()
        if self.kind == "theta":
            return drawn.copy_(rows(reference, block))
        if self.kind == "filter":
            assert self.scale is not None
            return drawn.mul_(rows(self.scale, block))
        if self.kind == "layer":
            assert self.scale is not None
            return drawn.mul_(self.scale)
        return drawn


class FactorBuilder:
    """Li et al.'s factor of one tensor, from its draw's blocks seen one at a time (the norms
    of each block as it lies in the direction's memory layout)."""

    def __init__(self, reference: Tensor, *, norm: str, ignore: str, dtype: torch.dtype) -> None:
        self.reference = reference.detach().to(dtype)
        self.norm, self.ignore = norm, ignore
        self.kind: FactorKind = (
            ("zero" if ignore == "biasbn" else "theta")
            if reference.dim() <= 1
            else ("raw" if norm == "none" else "filter" if norm == "filter" else "layer")
        )
        self.norms: list[Tensor] = []

    @property
    def needs_blocks(self) -> bool:
        return self.kind in ("filter", "layer")

    def add(self, block: Tensor) -> None:
        """One block of the draw, cast to the direction's dtype, in the direction's layout."""
        self.norms.append(filter_norms(block) if self.kind == "filter" else layer_norm(block))

    def factor(self) -> Factor:
        if self.kind == "filter":
            own = self.norms[0] if len(self.norms) == 1 else torch.cat(self.norms)
            return Factor("filter", safe_ratio(filter_norms(self.reference), own))
        if self.kind == "layer":
            own = self.norms[0] if len(self.norms) == 1 else layer_norm(torch.stack(self.norms))
            return Factor("layer", safe_ratio(layer_norm(self.reference), own))
        return Factor(self.kind)


@dataclass(frozen=True)
class Regenerator:
    """What redraws one direction tensor by tensor without storing it: for tensor k, the
    generator's state when its draw began, its Li factor and its dtype (the engine's lean
    mode). ``tensor(k, reference)`` yields (block, rows of the direction) exactly as stored."""

    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[torch.dtype, ...]
    states: tuple[Tensor, ...]
    factors: tuple[Factor, ...]
    limit: int | None
    # the block buffers every redraw reuses (per dtype), made at the first
    _workspace: dict[torch.dtype, tuple[Tensor, Tensor]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def tensor(
        self, k: int, reference: Tensor, device: torch.device | None = None
    ) -> Iterator[tuple[tuple[int, int], Tensor]]:
        """Tensor k's direction, a block of rows at a time (on ``device``: copied after the
        draw on the CPU). ``reference`` is θ*'s tensor k (the 1-D ``theta`` rule reads it).
        On the CPU a block is a view of this regenerator's buffers: use it before the next."""
        factor, shape, dtype = self.factors[k], self.shapes[k], self.dtypes[k]
        generator = torch.Generator()
        generator.set_state(self.states[k])
        if dtype not in self._workspace:
            size = max(
                (
                    _numel((b - a, *s[1:])) if s else 1
                    for s in self.shapes
                    for a, b in draw_blocks(s, self.limit)
                ),
                default=1,
            )
            self._workspace[dtype] = (torch.empty(size), torch.empty(size, dtype=dtype))
        for block in draw_blocks(shape, self.limit):
            if factor.kind in ("zero", "theta"):  # not drawn: its values are known
                out = torch.empty(
                    shape if not shape else (block[1] - block[0], *shape[1:]),
                    dtype=dtype,
                    device=reference.device,
                )
                yield block, factor.apply_(out, block, reference)
                continue
            drawn = gaussian(shape, block, dtype, generator, self._workspace[dtype])
            drawn = factor.apply_(drawn, block, reference)
            yield block, drawn if device is None else drawn.to(device, non_blocking=True)
