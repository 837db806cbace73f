"""Cost that follows what moves: when every moving tensor lies in a suffix of a sequential stack
(an ``nn.Sequential``'s or ``nn.ModuleList``'s children c₀ … cₙ₋₁, e.g. a transformer's
blocks), the input to the first moving child c_k is the same at every grid point. It is
recorded once per evaluation batch (the output of c_{k−1} at the first point) and replayed: at
every later point c₀ … c_{k−1} return that recording instead of running, so a point costs what
runs outside the stack plus the suffix.

The rule is structural and checked once: the stack's children before ``k`` hold no moving
tensor (under any of its names, tied ones included), and the first batch is evaluated both ways
at the first point; a difference (a ``ModuleList`` used in parallel, not in sequence) or an
error turns replaying off for the run. Only for data cached on the device (a streamed source is
read again at every point), one point per forward, without ``compile`` or recomputed
BatchNorm statistics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

RECORD_BYTES = 4 * 2**30  # the most the recordings hold; later batches then run in full


class Suffix:
    """The prefix c₀ … c_{k−1} of ``stack`` in ``net``, replayed per batch (see module doc)."""

    def __init__(self, stack: nn.Module, k: int, where: str) -> None:
        self.where, self.k = where, k
        self.recorded: list[Any] = []  # per batch index: the output of c_{k-1}
        self.bytes = 0
        self.index = 0
        self.on = True
        self.children = list(stack.children())[:k]
        for i, child in enumerate(self.children):
            # An instance attribute, set before the model state is snapshot (ModelState).
            child.forward = functools.partial(self._call, child.forward, i == k - 1)

    @classmethod
    def find(cls, net: nn.Module, moving: Sequence[str]) -> Suffix | None:
        """The stack whose moving children start latest (most skipped), if any."""
        holders = _holders(net, moving)
        best: tuple[int, str, nn.Module] | None = None
        for path, module in stacks(net):
            k = _first_moving(path, len(module), holders)
            if k is not None and k >= 1 and (best is None or k > best[0]):
                best = (k, path, module)
        return None if best is None else cls(best[2], best[0], best[1])

    def at(self, index: int) -> None:
        """The next forward evaluates batch ``index``."""
        self.index = index

    def _call(self, forward: Callable[..., Any], last: bool, *args: Any, **kwargs: Any) -> Any:
        if self.on and self.index < len(self.recorded):
            return self.recorded[self.index]  # c_{k-1}'s output: what c_k reads
        out = forward(*args, **kwargs)
        if self.on and last and self.index == len(self.recorded) and self.bytes < RECORD_BYTES:
            self.recorded.append(out)
            self.bytes += sum(t.nbytes for t in tree_flatten(out)[0] if isinstance(t, Tensor))
        return out

    def check(self, again: Callable[[], Tensor], first: Tensor) -> bool:
        """After the run's first batch (recorded): does replaying give the same statistics?
        If not, or if replaying fails, the stack runs in full from now on."""
        try:
            same = bool(torch.allclose(again(), first, rtol=1e-6, atol=0.0, equal_nan=True))
        except Exception:
            same = False
        if not same:
            self.off()
        return same

    def off(self) -> None:
        """Every child runs from now on (the bindings stay: the model state watches them)."""
        self.on = False
        self.recorded.clear()


def stacks(net: nn.Module) -> Iterator[tuple[str, nn.Sequential | nn.ModuleList]]:
    """The sequential stacks of ``net`` (``nn.Sequential``, ``nn.ModuleList``) of two or more
    children, outermost first, with their paths."""
    for path, module in net.named_modules():
        if isinstance(module, (nn.Sequential, nn.ModuleList)) and len(module) >= 2:
            yield path, module


def _holders(net: nn.Module, moving: Sequence[str]) -> list[str]:
    """Every name under which ``net`` holds a moving tensor (tied tensors: all of their names)."""
    named = [
        *net.named_parameters(remove_duplicate=False),
        *net.named_buffers(remove_duplicate=False),
    ]
    by_name = dict(named)
    ids = {id(by_name[n]) for n in moving if n in by_name}
    return [n for n, t in named if id(t) in ids]


def _first_moving(path: str, size: int, holders: Sequence[str]) -> int | None:
    """The first child of the stack at ``path`` holding a moving tensor, or None when a moving
    tensor lies outside the stack (then nothing before it is known to stay)."""
    prefix = f"{path}." if path else ""
    first = size
    for name in holders:
        if not name.startswith(prefix):
            return None
        child = name[len(prefix) :].split(".", 1)[0]
        if not child.isdigit():
            return None
        first = min(first, int(child))
    return first if first < size else None
