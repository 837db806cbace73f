"""Per-layer landscapes in one call: one surface per block of the model, each with random
directions on that block alone (``params`` = the block), the same grid, data and seed, stacked
along a ``layers`` axis the way seeds stack (:func:`lossland.run._seeds.stacked`: resumable
entry by entry, point by point).

The blocks are ``"auto"``: the children of the model's ``nn.Sequential`` / ``nn.ModuleList``
holding the most children with tensors that move (a transformer's decoder layers, a
Sequential's layers; the stack the suffix cache replays), or names given one per block: a
glob over parameter names (``"encoder.*.attn.*"``) or a module's name (``"lm_head"``: its
tensors). ``params`` narrows every block (``"trainable"``: the adapters in each block).

Each block is its own run, so the suffix cache (``engine/_suffix.py``) records the input of
block k once and then runs blocks k … n−1 per point: block k costs about (n − k)/n of a full
forward per point, whatever order the blocks run in (the recordings are per run).
"""

from __future__ import annotations

import fnmatch
import glob
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from lossland.core import select_params
from lossland.engine import stacks
from lossland.errors import LosslandError, arg

AUTO = "auto"
_GLOB = "*?["


def blocks(
    model: nn.Module, spec: str | Sequence[str], params: Any = None, *, ignore: str = "biasbn"
) -> list[tuple[str, list[str]]]:
    """(name, moving parameter names) of each block that ``spec`` asks for (see module doc),
    in the model's order for ``"auto"`` and in the given order otherwise; each block moves at
    least one parameter (random directions move parameters only). ``"auto"`` counts a child as
    a block when a direction can move it: under ``ignore="biasbn"`` (1-D tensors stay) a child
    holding only biases and norm scales (a BatchNorm, a LayerNorm) is not one. A spec that is
    not text, names no parameter or finds no stack is refused in one line naming what the
    model holds and the fix."""
    tensors = list(model.named_parameters())
    movable = select_params(params, tensors) or select_params(_every, tensors) or []
    entries = _entries(spec)
    if entries == [AUTO]:
        shapes = dict(tensors)
        moved = [n for n in movable if ignore != "biasbn" or shapes[n].dim() > 1]
        return _stack_blocks(model, movable, moved)
    found = []
    for entry in entries:
        names = [n for n in movable if _in_block(entry, n)]
        if not names:
            raise LosslandError(
                f"{arg('params_per_layer')} {entry!r} names none of the model's "
                f"{len(movable)} parameters that move ({_examples(movable)}): give module names or "
                f"glob patterns over these names, or {AUTO!r} for the model's stack of blocks"
            )
        found.append((entry, names))
    return found


def block_params(names: Sequence[str]) -> list[str]:
    """A ``params`` spec choosing exactly ``names`` (glob characters in a name escaped)."""
    return [glob.escape(n) for n in names]


def check_per_layer(spec: Any, seeds: int | None, directions: Any) -> None:
    """What cannot be combined with ``params_per_layer``, before any work."""
    if seeds is not None and seeds != 1:
        raise LosslandError(
            f"{arg('params_per_layer')} stacks one surface per block and {arg('seeds')} one per "
            f"seed, a file holds one stack: drop one of them"
        )
    if directions is not None:
        raise LosslandError(
            f"{arg('params_per_layer')} draws random directions on every block: drop "
            f"{arg('directions')}"
        )
    _entries(spec)


def stack_attrs(spec: str | Sequence[str]) -> dict[str, Any]:
    """What the stacked file records about how its blocks were chosen (``info`` shows it; each
    block's tensors are its entry's ``params``)."""
    return {"params_per_layer": _entries(spec)}


def _entries(spec: Any) -> list[str]:
    """The spec as a list of non-empty texts, distinct; ``"auto"`` alone or not at all."""
    entries = [spec] if isinstance(spec, str) else spec
    if (
        not isinstance(entries, (list, tuple))
        or not entries
        or not all(isinstance(e, str) and e.strip() for e in entries)
    ):
        raise LosslandError(
            f"{arg('params_per_layer')} takes {AUTO!r} or module names / glob patterns over "
            f"parameter names, one per block, got {spec!r}"
        )
    if len(set(entries)) != len(entries):
        twice = next(e for e in entries if entries.count(e) > 1)
        raise LosslandError(f"{arg('params_per_layer')} names block {twice!r} twice: name it once")
    if AUTO in entries and len(entries) > 1:
        raise LosslandError(
            f"{arg('params_per_layer')} {AUTO!r} finds the blocks itself: give it alone or name "
            f"every block"
        )
    return list(entries)


def _in_block(entry: str, name: str) -> bool:
    """A glob matches names; a module's name matches its tensors (and a tensor's own name)."""
    if any(c in entry for c in _GLOB):
        return fnmatch.fnmatchcase(name, entry)
    return name == entry or name.startswith(entry + ".")


def _stack_blocks(
    model: nn.Module, movable: Sequence[str], moved: Sequence[str]
) -> list[tuple[str, list[str]]]:
    """The children of the stack holding the most children with a ``moved`` tensor (ties: the
    outermost), those children only, in order, each with its ``movable`` names."""
    best: list[tuple[str, list[str]]] = []
    for path, module in stacks(model):
        prefix = f"{path}." if path else ""
        found = []
        for child, _ in module.named_children():
            label = prefix + child
            names = [n for n in movable if n.startswith(label + ".")]
            if any(n.startswith(label + ".") for n in moved):
                found.append((label, names))
        if len(found) >= 2 and len(found) > len(best):
            best = found
    if not best:
        raise LosslandError(
            f"{arg('params_per_layer')} {AUTO!r} found no nn.Sequential or nn.ModuleList with "
            f"two or more blocks holding tensors that move in {type(model).__name__} "
            f"({_examples(movable)}): name the blocks (module names or glob patterns)"
        )
    return best


def _examples(names: Sequence[str]) -> str:
    return ", ".join(names[:3]) + (", …" if len(names) > 3 else "")


def _every(name: str, tensor: Tensor) -> bool:
    return True
