"""Classes of hidden units (union-find) and the tags graph values carry while a model's graph
is read (see :mod:`lossland.compare._derive`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from lossland.compare._permutation import Axis, Group, Site
from lossland.errors import LosslandError

FIXED = 0  # the class of units that must stay in place (the model's inputs and outputs)
SUPPORTED = (
    "lossland sees through linear, conv, normalisation, embedding and activation layers, "
    "GPT-2 attention, residual additions, pooling and flatten"
)


@dataclass(frozen=True)
class Tag:
    """A tensor's channel dimension ``dim`` (1 for NCHW, -1 for features last), the class of
    units along it, the tensor's rank when known and the entries per unit (None: a conv's
    channels flattened with positions not yet counted)."""

    cls: int
    dim: int
    rank: int | None = None
    block: int | None = 1

    def pos(self) -> int | None:
        return self.dim if self.dim >= 0 else None if self.rank is None else self.rank + self.dim

    def neg(self) -> int | None:
        return self.dim if self.dim < 0 else None if self.rank is None else self.dim - self.rank


@dataclass(frozen=True)
class Multi:
    """A tuple a layer returns (an attention layer's output and its weights)."""

    items: tuple[Any, ...]


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class Refused(LosslandError):
    """A part of the model whose units lossland cannot permute without changing its function."""


def refuse(where: str, problem: str) -> Refused:
    place = f"module {where!r}" if where else "the model"
    return Refused(f"cannot derive the permutation groups: {place} {problem}; {SUPPORTED}")


class Classes:
    """Union-find over classes of units; ``FIXED`` is the class that never moves."""

    def __init__(self) -> None:
        self.parent = [FIXED]
        self.units: dict[int, int | None] = {FIXED: None}
        self.axes: dict[int, list[tuple[Axis, str]]] = {FIXED: []}
        self.sites: dict[int, list[tuple[Site, str]]] = {FIXED: []}
        self.origin: dict[int, str] = {FIXED: "the model's inputs or outputs"}

    def new(self, units: int | None, origin: str) -> int:
        c = len(self.parent)
        self.parent.append(c)
        self.units[c], self.axes[c], self.sites[c], self.origin[c] = units, [], [], origin
        return c

    def find(self, c: int) -> int:
        while self.parent[c] != c:
            self.parent[c] = self.parent[self.parent[c]]
            c = self.parent[c]
        return c

    def fixed(self, c: int) -> bool:
        return self.find(c) == FIXED

    def roots(self) -> list[int]:
        return sorted({self.find(c) for c in range(len(self.parent))} - {FIXED})

    def union(self, a: int, b: int, where: str) -> int:
        """One class of ``a`` and ``b`` (the fixed one, when either is fixed); refuses to tie
        classes of different sizes."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if rb == FIXED or (ra != FIXED and rb < ra):
            ra, rb = rb, ra
        ua, ub = self.units[ra], self.units[rb]
        if ra != FIXED and ua is not None and ub is not None and ua != ub:
            raise refuse(
                where, f"ties {ua} units of {self.origin[ra]!r} to {ub} of {self.origin[rb]!r}"
            )
        self.parent[rb] = ra
        self.units[ra] = ua if ua is not None else ub
        self.axes[ra] += self.axes.pop(rb)
        self.sites[ra] += self.sites.pop(rb)
        return ra


class Context:
    """The classes of one model's units as its graph is read, and the tensors they move: what
    the rules for layers and functions build on (:mod:`lossland.compare._derive` walks)."""

    def __init__(self, model: nn.Module) -> None:
        self.state = model.state_dict(keep_vars=True)
        self.order = {k: i for i, k in enumerate(self.state)}
        self.aliases = _aliases(self.state)
        self.classes = Classes()
        self.axis_class: dict[tuple[str, int], int] = {}
        self.heads: list[Group] = []
        self.untraced: list[tuple[str, str]] = []

    # --- building classes ------------------------------------------------------------------

    def attach(self, c: int, module: str, attr: str, dim: int, role: str, block: int = 1) -> int:
        """Tie axis ``dim`` of tensor ``module.attr`` (``block`` entries per unit) to class
        ``c`` and return the class; an absent tensor (no bias) is skipped."""
        key = join(module, attr)
        if key not in self.state:
            return c
        key = self.aliases.get(key, key)
        length = self.state[key].shape[dim]
        if length % block:
            raise refuse(module, f"has {length} entries, not a whole number of {block}-entry units")
        found = self.axis_class.get((key, dim))
        if found is None:
            found = self.classes.new(length // block, module)
            self.axis_class[(key, dim)] = found
            self.classes.axes[found].append((Axis(key, dim, 0, block), role))
        return self.classes.union(c, found, module)

    def site(self, c: int, site: Site, role: str) -> None:
        self.classes.sites[self.classes.find(c)].append((site, role))

    def units(self, c: int) -> int | None:
        return self.classes.units[self.classes.find(c)]

    def permutable(self, tag: Any) -> bool:
        if isinstance(tag, Multi):
            return any(self.permutable(t) for t in tag.items)
        return isinstance(tag, Tag) and not self.classes.fixed(tag.cls)

    def require_fixed(self, tags: list[Any], where: str, problem: str) -> None:
        """Refuse when any of ``tags`` carries units that may move."""
        for tag in tags:
            if isinstance(tag, Multi):
                self.require_fixed(list(tag.items), where, problem)
            elif self.permutable(tag):
                origin = self.classes.origin[self.classes.find(tag.cls)]
                raise refuse(where, f"{problem} (it reads the units of {origin!r})")

    def fix(self, tags: list[Any], where: str) -> None:
        for tag in tags:
            if isinstance(tag, Multi):
                self.fix(list(tag.items), where)
            elif isinstance(tag, Tag):
                self.classes.union(FIXED, tag.cls, where)


def _aliases(state: dict[str, Tensor]) -> dict[str, str]:
    """Keys whose tensor is an earlier key's tensor (tied weights) → that earlier key."""
    seen: dict[tuple[int, ...], str] = {}
    aliases = {}
    for key, value in state.items():
        if value.numel() == 0 or value.is_meta:
            continue
        ident = (
            value.untyped_storage().data_ptr(),
            int(value.storage_offset()),
            *value.shape,
            *value.stride(),
        )
        if ident in seen:
            aliases[key] = seen[ident]
        else:
            seen[ident] = key
    return aliases
