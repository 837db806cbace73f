"""How hidden units pass through layers (the leaves of a traced graph): where a layer starts a
new class of units, which of its tensor axes belong to the class of its input, and where its
units can be observed for activation matching."""

from __future__ import annotations

from typing import Any

from torch import Tensor, fx, nn

from lossland.compare._classes import FIXED, Context, Multi, Tag, refuse
from lossland.compare._ops import flatten
from lossland.compare._permutation import Axis, Group, Part, Site

# Layers that act on each unit alone (or on all of them symmetrically): units pass unchanged.
_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.LogSigmoid, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout, nn.Identity, nn.Softmax, nn.LogSoftmax,
)  # fmt: skip
# Layers over the positions of NCHW tensors: the channels pass unchanged.
_SPATIAL = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample,
)  # fmt: skip
_CHANNEL_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
_LAST_NORMS = (nn.LayerNorm, nn.RMSNorm)


def is_conv1d(module: Any) -> bool:
    """Hugging Face's ``Conv1D``: a linear layer whose weight is stored (in, out)."""
    weight = getattr(module, "weight", None)
    return (
        isinstance(module, nn.Module)
        and type(module).__name__ == "Conv1D"
        and hasattr(module, "nf")
        and isinstance(weight, Tensor)
        and weight.dim() == 2
    )


def gpt2_attention(module: nn.Module) -> tuple[int, int] | None:
    """(heads, head size) of a GPT-2 style self-attention layer: a fused ``c_attn`` Conv1D
    (width → 3·width: queries, keys, values, each ``heads`` blocks of ``head_dim``), a
    ``c_proj`` Conv1D (width → width); else None. This is GPT-2's layout (and that of its
    copies in transformers), whose positions are learned embeddings added to the residual
    stream: nothing rotates queries and keys, so their dimensions may be reordered together."""
    c_attn, c_proj = getattr(module, "c_attn", None), getattr(module, "c_proj", None)
    heads, size = getattr(module, "num_heads", None), getattr(module, "head_dim", None)
    if not (is_conv1d(c_attn) and is_conv1d(c_proj)) or getattr(
        module, "is_cross_attention", False
    ):
        return None
    if not isinstance(heads, int) or not isinstance(size, int) or heads < 1 or size < 1:
        return None
    width = heads * size
    if tuple(c_attn.weight.shape) != (width, 3 * width):  # type: ignore[union-attr]
        return None
    return (heads, size) if tuple(c_proj.weight.shape) == (width, width) else None  # type: ignore[union-attr]


def module_rule(d: Context, module: nn.Module, path: str, node: fx.Node, args: list[Any]) -> Any:
    """The tag of a layer's output, from the tag ``args[0]`` of its input."""
    x, others = (args[0] if args else None), args[1:]
    if gpt2_attention(module) is not None:
        d.require_fixed(others, path, "passes hidden units to an attention layer's mask")
        return attention_group(d, module, path, x)
    d.require_fixed(others, path, f"({type(module).__name__}) takes hidden units as a 2nd input")
    if isinstance(module, nn.Linear) or is_conv1d(module):
        return _linear(d, module, path, x)
    if isinstance(module, nn.modules.conv._ConvNd):
        return _conv(d, module, path, x)
    if isinstance(module, (*_CHANNEL_NORMS, nn.GroupNorm, *_LAST_NORMS, nn.PReLU)):
        return _norm(d, module, path, x)
    if isinstance(module, nn.Embedding):
        d.require_fixed([x], path, "looks up hidden units as indices")
        c = d.attach(d.classes.new(module.embedding_dim, path), path, "weight", 1, "out")
        d.site(c, Site(path, "output", -1), "out")
        return Tag(c, -1)
    if isinstance(module, nn.Flatten):
        return flatten(d, x, module.start_dim, module.end_dim, path)
    if isinstance(module, _ACTIVATIONS):
        return x
    if isinstance(module, _SPATIAL):
        return _channels_first(d, x, path, type(module).__name__)
    d.require_fixed(args, path, f"({type(module).__name__}) is a layer lossland cannot see through")
    return Tag(FIXED, -1)


def _channels_first(d: Context, x: Any, path: str, what: str) -> Any:
    if d.permutable(x) and (x.pos() != 1 or x.block != 1):
        raise refuse(path, f"({what}) reads hidden units that are not on dimension 1 (NCHW)")
    return x


def _features_last(d: Context, x: Any, path: str, what: str) -> None:
    if d.permutable(x) and x.neg() != -1:
        raise refuse(path, f"({what}) reads hidden units that are not its last dimension")


def _linear(d: Context, module: nn.Module, path: str, x: Any) -> Tag:
    """Linear (weight (out, in)) or Conv1D (weight (in, out)): the input units are the weight's
    input axis, in blocks when they are flattened conv channels; a new class at the output."""
    in_dim, out_dim = (0, 1) if is_conv1d(module) else (1, 0)
    weight = module.weight
    assert isinstance(weight, nn.Parameter)
    cin, block = (x.cls if isinstance(x, Tag) else FIXED), 1
    if d.permutable(x):
        _features_last(d, x, path, type(module).__name__)
        block = x.block or _block(d, x.cls, weight.shape[in_dim], path)
    c = d.attach(cin, path, "weight", in_dim, "in", block)
    d.site(c, Site(path, "input", -1, 0, block), "in")
    out = d.attach(d.classes.new(weight.shape[out_dim], path), path, "weight", out_dim, "out")
    out = d.attach(out, path, "bias", 0, "out")
    d.site(out, Site(path, "output", -1), "out")
    return Tag(out, -1, x.rank if isinstance(x, Tag) else None)


def _block(d: Context, c: int, fan_in: int, path: str) -> int:
    """Entries per unit of flattened channels: the Linear's inputs over the channels."""
    units = d.units(c)
    if units is None or fan_in % units:
        raise refuse(path, f"reads {fan_in} flattened features, not a multiple of {units} channels")
    return fan_in // units


def _conv(d: Context, m: nn.modules.conv._ConvNd, path: str, x: Any) -> Tag:
    """Input channels are the weight's axis 1 (0 when transposed); a new class at the output.
    A depthwise conv keeps its input's class; other grouped convs keep their units in place."""
    x = _channels_first(d, x, path, type(m).__name__)
    cin = x.cls if isinstance(x, Tag) else FIXED
    rank = len(m.kernel_size) + 2
    in_dim, out_dim = (0, 1) if m.transposed else (1, 0)
    if m.groups == 1:
        c = d.attach(cin, path, "weight", in_dim, "in")
        d.site(c, Site(path, "input", 1), "in")
        out = d.attach(d.classes.new(m.out_channels, path), path, "weight", out_dim, "out")
    elif m.groups == m.in_channels == m.out_channels and not m.transposed:
        out = d.attach(cin, path, "weight", 0, "norm")  # depthwise: one filter per channel
    else:
        d.require_fixed([x], path, f"is a grouped convolution (groups={m.groups})")
        out = FIXED
    out = d.attach(out, path, "bias", 0, "out")
    d.site(out, Site(path, "output", 1), "out")
    return Tag(out, 1, rank)


def _norm(d: Context, m: nn.Module, path: str, x: Any) -> Any:
    """Per-channel tensors (weight, bias, running statistics) join the class of the input."""
    what = type(m).__name__
    if isinstance(m, _LAST_NORMS) and len(m.normalized_shape) == 1:
        _features_last(d, x, path, what)
        channel = -1
    elif isinstance(m, nn.GroupNorm) and m.num_groups in (1, m.num_channels):
        x, channel = _channels_first(d, x, path, what), 1
    elif isinstance(m, nn.PReLU) and m.num_parameters == 1:
        return x
    elif isinstance(m, (*_CHANNEL_NORMS, nn.PReLU)):
        rank_two = isinstance(x, Tag) and x.dim == -1 and x.rank in (None, 2)
        if isinstance(m, nn.BatchNorm1d) and rank_two:
            channel = -1  # a Linear's (N, C) output: its channels are dimension 1 and the last
        else:
            x, channel = _channels_first(d, x, path, what), 1
    else:
        d.require_fixed([x], path, f"({what}) normalises hidden units together in groups")
        return Tag(FIXED, -1)
    c = x.cls if isinstance(x, Tag) else FIXED
    for attr in ("weight", "bias", "running_mean", "running_var"):
        c = d.attach(c, path, attr, 0, "norm")
    d.site(c, Site(path, "output", channel), "norm")
    return x


def attention_group(d: Context, module: nn.Module, path: str, x: Any) -> Multi:
    """GPT-2 attention: its input is ``c_attn``'s input axis, its output ``c_proj``'s output
    axis, and its heads a group of two parts: queries with keys, values with ``c_proj``'s rows
    (see :mod:`lossland.compare._permutation`)."""
    found = gpt2_attention(module)
    assert found is not None
    heads, size = found
    width, qkv, proj = heads * size, f"{path}.c_attn", f"{path}.c_proj"
    if isinstance(x, Tag):
        _features_last(d, x, path, type(module).__name__)
    c = d.attach(x.cls if isinstance(x, Tag) else FIXED, qkv, "weight", 0, "in")
    d.site(c, Site(qkv, "input", -1), "in")
    out = d.attach(d.classes.new(width, proj), proj, "weight", 1, "out")
    out = d.attach(out, proj, "bias", 0, "out")
    d.site(out, Site(proj, "output", -1), "out")

    def axes(*found: Axis) -> tuple[Axis, ...]:
        return tuple(a for a in found if a.key in d.state)

    w, b = f"{qkv}.weight", f"{qkv}.bias"
    qk = Part(
        axes(Axis(w, 1, 0), Axis(w, 1, width), Axis(b, 0, 0), Axis(b, 0, width)),
        (Site(qkv, "output", -1, 0), Site(qkv, "output", -1, width)),
    )
    vo = Part(
        axes(Axis(w, 1, 2 * width), Axis(b, 0, 2 * width), Axis(f"{proj}.weight", 0)),
        (Site(qkv, "output", -1, 2 * width), Site(proj, "input", -1)),
    )
    d.heads.append(Group(name=path, units=width, parts=(qk, vo), heads=heads))
    return Multi((Tag(out, -1, x.rank if isinstance(x, Tag) else None), None))
