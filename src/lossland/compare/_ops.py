"""How hidden units pass through the functions and methods of a traced graph: elementwise
operations keep them (an addition ties its operands' classes), pooling keeps NCHW channels,
reductions over other dimensions keep them and over the units remove them, flatten makes blocks
of them; anything else that reads units that may move is refused."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from torch import fx

from lossland.compare._classes import FIXED, Context, Multi, Tag, refuse

# Elementwise on two or more tensors: the operands' units are one class (residual additions).
BINARY = frozenset(
    [
        "add",
        "add_",
        "iadd",
        "sub",
        "sub_",
        "isub",
        "rsub",
        "mul",
        "mul_",
        "imul",
        "truediv",
        "div",
        "div_",
        "itruediv",
        "maximum",
        "minimum",
    ]
)
# Elementwise on the first argument (the others are options, scalars or a dtype's source).
UNARY = frozenset(
    [
        "relu",
        "relu_",
        "relu6",
        "gelu",
        "silu",
        "mish",
        "elu",
        "selu",
        "celu",
        "leaky_relu",
        "hardtanh",
        "hardswish",
        "hardsigmoid",
        "softplus",
        "softsign",
        "sigmoid",
        "tanh",
        "logsigmoid",
        "tanhshrink",
        "dropout",
        "dropout1d",
        "dropout2d",
        "dropout3d",
        "alpha_dropout",
        "softmax",
        "log_softmax",
        "neg",
        "abs",
        "exp",
        "log",
        "sqrt",
        "rsqrt",
        "square",
        "erf",
        "sin",
        "cos",
        "pow",
        "clamp",
        "clip",
        "contiguous",
        "clone",
        "detach",
        "float",
        "double",
        "half",
        "bfloat16",
        "to",
        "type_as",
    ]
)
_DTYPE_ONLY = frozenset({"to", "type_as"})  # their other tensor gives only a dtype or device
# Over the positions of NCHW tensors: the channels pass unchanged.
SPATIAL = frozenset(
    f"{kind}_pool{n}d" for kind in ("max", "avg", "adaptive_avg", "adaptive_max") for n in (1, 2, 3)
) | {"interpolate", "upsample"}
REDUCTIONS = frozenset(
    ["mean", "sum", "amax", "amin", "logsumexp", "std", "var", "nansum", "nanmean"]
)
META = frozenset(["size", "dim", "numel", "getattr", "len"])  # sizes and attributes, not data


def target_name(node: fx.Node) -> str:
    if node.op == "call_method":
        return str(node.target)
    if node.target is operator.getitem:
        return "getitem"
    return str(getattr(node.target, "__name__", node.target))


def function_rule(d: Context, node: fx.Node, args: list[Any], where: str) -> Any:
    """The tag of a function's or method's result (see the module docstring)."""
    name = target_name(node)
    if name in META:
        return None
    if name == "getitem":
        return _getitem(d, node, args, where)
    if name in BINARY:
        return _elementwise(d, args, where)
    first = _tag_of(node.args[0], node, args) if node.args else None
    others = [t for n, t in zip(node.all_input_nodes, args, strict=True) if n is not node.args[0]]
    if name in UNARY:
        if name not in _DTYPE_ONLY:
            d.require_fixed(others, where, f"mixes hidden units into {name!r}'s options")
        return first
    if name in SPATIAL:
        if isinstance(first, Tag) and d.permutable(first) and (first.pos(), first.block) != (1, 1):
            raise refuse(where, f"applies {name!r} to hidden units not on dimension 1 (NCHW)")
        return first
    if name in REDUCTIONS:
        return _reduce(d, node, first, where, name)
    if name == "flatten":
        start, end = _options(node, ("start_dim", "end_dim"), (0, -1))
        return flatten(d, first, start, end, where)
    if name in ("view", "reshape"):
        return _view(d, node, first, where, name)
    d.require_fixed(
        args, where, f"applies {name!r} to hidden units, which lossland cannot see through"
    )
    return Tag(FIXED, -1) if any(isinstance(t, (Tag, Multi)) for t in args) else None


def _tag_of(value: Any, node: fx.Node, args: list[Any]) -> Any:
    if isinstance(value, fx.Node):
        return args[node.all_input_nodes.index(value)]
    return None


def _options(node: fx.Node, names: Sequence[str], defaults: Sequence[Any]) -> list[Any]:
    """The values of a call's options after the tensor: positional, keyword or default."""
    found = []
    for i, (name, default) in enumerate(zip(names, defaults, strict=True)):
        if len(node.args) > i + 1:
            found.append(node.args[i + 1])
        else:
            found.append(node.kwargs.get(name, default))
    return found


def _getitem(d: Context, node: fx.Node, args: list[Any], where: str) -> Any:
    source = args[0] if args else None
    index = node.args[1] if len(node.args) > 1 else None
    if isinstance(source, Multi) and isinstance(index, int) and -len(source.items) <= index:
        return source.items[index] if index < len(source.items) else None
    if source is None:
        return None  # an element of a size
    d.require_fixed(args, where, "indexes or slices hidden units")
    return Tag(FIXED, -1)


def _elementwise(d: Context, args: list[Any], where: str) -> Any:
    """One class for every operand; the operands' unit axes must line up."""
    tags = [t for t in args if isinstance(t, Tag)]
    d.require_fixed([t for t in args if isinstance(t, Multi)], where, "adds a tuple")
    if not tags:
        return None  # arithmetic on sizes or scalars
    moving = [t for t in tags if d.permutable(t)]
    for t in moving[1:]:
        same = (t.pos() is not None and t.pos() == moving[0].pos()) or (
            t.neg() is not None and t.neg() == moving[0].neg()
        )
        if not same or t.block != moving[0].block:
            raise refuse(where, "combines tensors whose hidden units lossland cannot line up")
    c = tags[0].cls
    for t in tags[1:]:
        c = d.classes.union(c, t.cls, where)
    base = (moving or tags)[0]
    ranks = [t.rank for t in tags if t.rank is not None]
    rank = max(ranks) if ranks and base.dim < 0 else base.rank
    return Tag(c, base.dim, rank, base.block)


def _reduce(d: Context, node: fx.Node, x: Any, where: str, name: str) -> Any:
    """A reduction over the units leaves none (an invariant); over other dimensions it keeps
    them, at their new position."""
    dims, keep = _options(node, ("dim", "keepdim"), (None, False))
    if not d.permutable(x):
        return Tag(FIXED, -1) if isinstance(x, Tag) else x
    if dims is None:
        return None
    dims = [dims] if isinstance(dims, int) else list(dims)
    pos, neg = x.pos(), x.neg()
    if any(not isinstance(k, int) or (pos if k >= 0 else neg) is None for k in dims):
        raise refuse(where, f"applies {name!r} over dimensions it cannot place beside the units")
    if any(k == (pos if k >= 0 else neg) for k in dims):
        return None
    if keep:
        return x
    rank = None if x.rank is None else x.rank - len(dims)
    if x.dim >= 0:
        return Tag(x.cls, x.dim - sum(1 for k in dims if 0 <= k < x.dim), rank, x.block)
    return Tag(x.cls, x.dim + sum(1 for k in dims if x.dim < k < 0), rank, x.block)


def flatten(d: Context, x: Any, start: int, end: int, where: str) -> Any:
    """``flatten(start, end)``: units before or after the range keep their place; units that
    open it become blocks (of the sizes after them, counted by the Linear that reads them)."""
    if not d.permutable(x):
        return Tag(FIXED, -1) if isinstance(x, Tag) else x
    if x.rank is None or x.pos() is None:
        raise refuse(where, "flattens hidden units in a tensor of unknown rank")
    start, end = start % x.rank, end % x.rank
    pos, rank = x.pos(), x.rank - (end - start)
    assert pos is not None
    if end <= start:
        return x
    if pos < start:
        return Tag(x.cls, pos, rank, x.block)
    if pos > end:
        return Tag(x.cls, pos - (end - start), rank, x.block)
    if pos == start and x.block == 1:
        return Tag(x.cls, pos, rank, None)
    raise refuse(where, "flattens hidden units together with the dimensions before them")


def _view(d: Context, node: fx.Node, x: Any, where: str, name: str) -> Any:
    """``x.view(batch, -1)`` is ``flatten(1)``; other shapes of moving units are refused."""
    shape = list(node.args[1:])
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = list(shape[0])
    if len(shape) == 2 and shape[1] == -1:
        return flatten(d, x, 1, -1, where)
    d.require_fixed([x], where, f"{name}s hidden units into another shape")
    return Tag(FIXED, -1) if isinstance(x, Tag) else x
