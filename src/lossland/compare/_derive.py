"""Which tensor axes share a hidden-unit permutation, derived from the model's graph.

The model is traced with ``torch.fx`` (layers with parameters are leaves). Every value in the
graph carries a tag (:class:`~lossland.compare._classes.Tag`): the class of units along its
channel dimension. A layer starts a new class at its output (a Linear's or a conv's output
units, an embedding's features) and ties its input axis to the class of its input; elementwise
operations, pooling and normalisation keep the class; a residual addition ties the classes of
its two operands (so a ResNet stage's blocks and shortcuts share one class); flatten turns a
conv's channels into blocks of H·W features of the Linear that reads them. The model's inputs
and outputs are fixed (never permuted), and so is every class tied to them. The classes left are
the groups. An operation the rules do not cover that reads a permutable class is refused with
the module it is in, since the aligned model would not compute B's function.

A module that cannot be traced as a whole (Python control flow on its inputs, ``**kwargs``, as
in Hugging Face transformers) is split into its children, each traced on its own with its
inputs and outputs fixed: in a GPT-2 the residual stream stays in place while each block's MLP
units and attention heads are permuted. GPT-2's attention layer is recognised by its structure
(:func:`lossland.compare._layers.gpt2_attention`).
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from torch import Tensor, fx, nn

from lossland.compare._classes import FIXED, Context, Tag, join
from lossland.compare._layers import attention_group, gpt2_attention, module_rule
from lossland.compare._ops import function_rule
from lossland.compare._permutation import Axis, Group, Part
from lossland.errors import LosslandError, first_line


class Tracer(fx.Tracer):
    """torch.nn layers, layers with their own parameters and recognised attention layers are
    leaves: their rules say how units pass through them."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (
            super().is_leaf_module(m, module_qualified_name)
            or bool(m._parameters)
            or gpt2_attention(m) is not None
        )


def derive(model: nn.Module) -> tuple[tuple[Group, ...], tuple[str, ...]]:
    """The permutation groups of ``model`` and the modules that could not be traced (whose
    inputs and outputs stay in place); a one-line error when there is nothing to permute or a
    part cannot be seen through."""
    d = Derivation(model)
    d.derive(model, "")
    groups = d.groups()
    if not groups:
        if d.untraced:
            path, reason = d.untraced[0]
            raise LosslandError(
                f"cannot derive the permutation groups: module {path or type(model).__name__!r} "
                f"cannot be traced ({reason}) and none of its parts has hidden units to permute"
            )
        raise LosslandError(
            "the model has no hidden units to permute (its layers all touch its inputs or "
            "outputs): there is nothing to align"
        )
    return groups, tuple(path for path, _ in d.untraced)


class Derivation(Context):
    """The classes of one model's units (see the module docstring)."""

    # --- walking the model ----------------------------------------------------------------

    def derive(self, module: nn.Module, path: str) -> None:
        """Trace ``module`` with its inputs and outputs fixed; split it into its children when
        it cannot be traced."""
        if gpt2_attention(module) is not None:
            self.fix([attention_group(self, module, path, Tag(FIXED, -1))], path)
            return
        if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            for name, child in module.named_children():
                self.derive(child, join(path, name))
            return
        if path and not any(next(c.parameters(), None) is not None for c in module.children()):
            return  # a layer alone (no parts with weights), inputs and outputs fixed: none move
        try:
            graph = _trace(module)
        except Exception as exc:  # any failure to trace: split the module into its parts
            self.untraced.append((path, first_line(exc)[:120]))
            for name, child in module.named_children():
                self.derive(child, join(path, name))
            return
        self.walk(graph, module, path)

    def walk(self, graph: fx.Graph, root: nn.Module, prefix: str) -> None:
        tags: dict[fx.Node, Any] = {}
        for node in graph.nodes:
            args = [tags[n] for n in node.all_input_nodes]
            if node.op == "placeholder":
                tags[node] = Tag(FIXED, -1)
            elif node.op == "get_attr":
                # A tensor of the module's own that no layer rule places stays as it is.
                value = _attribute(root, str(node.target))
                tags[node] = Tag(FIXED, -1) if _is_array(value) else None
            elif node.op == "call_module":
                module = root.get_submodule(str(node.target))
                tags[node] = module_rule(self, module, join(prefix, str(node.target)), node, args)
            elif node.op in ("call_function", "call_method"):
                tags[node] = function_rule(self, node, args, node_module(node, prefix))
            elif node.op == "output":
                self.fix(args, node_module(node, prefix))

    # --- the groups ----------------------------------------------------------------------

    def groups(self) -> tuple[Group, ...]:
        found = [self._group(root) for root in self.classes.roots() if self.classes.axes.get(root)]
        found += self.heads
        found.sort(key=lambda g: min(self.order[a.key] for p in g.parts for a in p.axes))
        return _unique_names(found)

    def _group(self, root: int) -> Group:
        axes = sorted(self.classes.axes[root], key=lambda a: self.order[a[0].key])
        producers = [a for a, role in axes if role == "out"]
        name = (producers or [axes[0][0]])[0].key.rpartition(".")[0] or "model"
        shared = [
            Axis(alias, a.dim, a.start, a.block)
            for a, _ in axes
            for alias, key in self.aliases.items()
            if key == a.key
        ]
        sites = self.classes.sites[root]
        roles = [r for r in ("in", "norm", "out") if any(role == r for _, role in sites)]
        chosen = tuple(s for s, role in sites if roles and role == roles[0])
        units = self.classes.units[root]
        assert units is not None
        part = Part(tuple(a for a, _ in axes) + tuple(shared), chosen)
        return Group(name=name, units=units, parts=(part,))


def _trace(module: nn.Module) -> fx.Graph:
    """The graph of ``module.forward`` with every defaulted argument at its default (the path a
    plain call takes)."""
    parameters = inspect.signature(module.forward).parameters.values()
    concrete = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the user's code, traced: its warnings are not ours
        return Tracer().trace(module, concrete_args=concrete or None)


def _is_array(value: Any) -> bool:
    return isinstance(value, Tensor) and value.numel() > 1


def _attribute(root: nn.Module, target: str) -> Any:
    value: Any = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _unique_names(groups: list[Group]) -> tuple[Group, ...]:
    seen: dict[str, int] = {}
    out = []
    for g in groups:
        seen[g.name] = seen.get(g.name, 0) + 1
        name = g.name if seen[g.name] == 1 else f"{g.name}#{seen[g.name]}"
        out.append(Group(name=name, units=g.units, parts=g.parts, heads=g.heads))
    return tuple(out)


def node_module(node: fx.Node, prefix: str) -> str:
    """The module a graph node belongs to (for messages)."""
    if node.op == "call_module":
        return join(prefix, str(node.target))
    stack = node.meta.get("nn_module_stack")
    if stack:
        return join(prefix, str(list(stack)[-1]))
    return prefix
