"""Every evaluation starts from the model's own state: what a forward changed is put back.

A forward may change the module it runs: a step counter buffer, a running statistic it
updates, a cache tensor, a parameter edited in place, a Python attribute. Carried from one
grid point to the next, that state makes every point after the first wrong, and a row's
values would depend on which rank computed it. :class:`ModelState` watches the engine's
private copy and, after every point (or every pass of a Hessian product), puts back what the
forward changed:

* floating-point buffers that do not move (running statistics, caches) are views of one
  "frozen" vector per dtype, copied back from a pristine copy after every evaluation: one
  copy, whatever changed them (the batch-norm kernel updates running statistics without
  bumping their version counters; up to ``FROZEN_BYTES`` in all, larger ones are watched as
  below);
* other tensors (parameters, integer buffers, tensor attributes) written in place (their
  version counter) or given new storage (``.data = ...``): rebound and copied back from the
  user's model, which is never run; the tensors that move with the grid are views of the
  engine's flat buffer, which the engine re-anchors exactly from θ* instead (also when a
  BatchNorm counted a batch and its statistics move);
* parameters, buffers, submodules and attributes of any module rebound, added or removed: the
  bindings are restored (exact for numbers, strings, tuples and tensors); lists, dicts and sets
  a module holds get their items back (shallowly);
* not seen: changes inside other Python objects a module keeps (documented in the README).

The check is a few C-level passes over the modules' dicts, a version counter and data pointer
per tensor, and one copy per frozen vector: microseconds per point (benchmarks/surface_speed.py).
"""

from __future__ import annotations

import copy
import functools
import operator
import warnings
from collections.abc import Callable, Collection, Iterator
from itertools import chain
from typing import Any

import torch
from torch import Tensor, nn

from lossland.core import FlatLayout
from lossland.engine._copy import bind_flat
from lossland.errors import LosslandError, LosslandWarning, arg

_version = operator.attrgetter("_version")
_CONTAINERS = (list, dict, set)
FROZEN_BYTES = 64 * 2**20  # floating buffers copied back after every evaluation, at most
_ABSENT = object()
Slot = tuple[str, Tensor, Tensor, "Tensor | None"]  # label, tensor, storage alias, its source


class ModelState:
    """The watched state of ``net`` (a private copy of ``source``, same structure).

    ``moving`` is the buffer the grid writes: its views are the moving tensors, which the engine
    restores itself (``settle`` says when). Tensors whose ids are in ``skip`` are the engine's
    own to change (BatchNorm statistics recomputed at every point)."""

    def __init__(
        self,
        net: nn.Module,
        source: nn.Module,
        *,
        moving: Tensor | None = None,
        skip: Collection[int] = (),
    ) -> None:
        self.moving = moving
        self._noted = False
        named = list(net.named_modules())
        # (vector, its pristine copy, its layout) per dtype of the floating buffers that stay
        self._frozen = _freeze(net, moving, skip)
        frozen = {id(net.get_buffer(n)) for _, _, layout in self._frozen for n in layout.names}
        self._owners = [name for name, _ in named for _ in range(4)]  # whose each dict is
        self._dicts: list[dict[str, Any]] = [
            d for _, m in named for d in (m.__dict__, m._parameters, m._buffers, m._modules)
        ]
        # Module attributes torch itself keeps (hook tables, …) are not watched one by one;
        # ``training``, the tensor tables and the module's own attributes are.
        internal = _internal_attributes()
        own = [[k for k in m.__dict__ if k not in internal] for _, m in named]
        self._attribute_dicts = [m.__dict__ for _, m in named]
        # ``training`` twice: the getter always returns a tuple
        self._getters = [operator.itemgetter("training", *keys) for keys in own]
        self._tables = [d for _, m in named for d in (m._parameters, m._buffers, m._modules)]
        self._containers = [
            (f"{name}.{key}".lstrip("."), m.__dict__[key])
            for (name, m), keys in zip(named, own, strict=True)
            for key in keys
            if type(m.__dict__[key]) in _CONTAINERS
        ]
        slots = list(_tensor_slots(named, source, moving, {*skip, *frozen}))
        self._all = [t for _, t, _, _ in slots]
        self._fixed = [s for s in slots if s[3] is not None]  # moving ones: the engine's
        self._fixed_tensors = [t for _, t, _, _ in self._fixed]
        # Parameters shared with the user's model (working_copy): nothing to restore them from.
        self._shared = {id(t) for _, t, _, source in self._fixed if _same_storage(t, source)}
        self._aliases = {id(t): (label, alias) for label, t, alias, _ in slots}
        self._counted = dict(_counted_statistics(named, source, moving, frozen))
        self._derived = set(_derived(named))
        self.snapshot()

    def snapshot(self) -> None:
        """Take the current state as the one every evaluation starts from."""
        self._saved = [dict(d) for d in self._dicts]
        self._sizes = list(map(len, self._dicts))
        self._values = list(self._watched_values())
        self._items = [(c, copy.copy(c)) for _, c in self._containers]
        for flat, pristine, _ in self._frozen:
            pristine.copy_(flat)
        self._mark()

    def _mark(self) -> None:
        self._versions = list(map(_version, self._fixed_tensors))
        self._pointers = list(map(Tensor.data_ptr, self._all))
        self._frozen_versions = [flat._version for flat, _, _ in self._frozen]
        self.mark_moving()

    def mark_moving(self) -> None:
        """The engine wrote the moving buffer: its version now is where the point starts."""
        self._moving_version = None if self.moving is None else self.moving._version

    def settle(self) -> bool:
        """After an evaluation: put back what it changed, with a note the first time. True
        when it wrote the moving buffer (the engine then re-anchors)."""
        changed = self.changed()
        # names for the note, before the copy below erases them (once: it compares values)
        written = self._frozen_written() if changed and not self._noted else []
        for flat, pristine, _ in self._frozen:
            flat.copy_(pristine)  # whatever changed them, visibly or not
        if not changed:
            self._frozen_versions = [flat._version for flat, _, _ in self._frozen]
            return False
        restored, moved = self.restore()
        if moved:
            restored.append("a moving parameter, written in place")
        restored = [label for label in (*written, *restored) if label not in self._derived]
        if restored and not self._noted:
            self._noted = True
            more = f" and {len(restored) - 4} more" if len(restored) > 4 else ""
            warnings.warn(
                f"the model's forward changes its own state ({', '.join(restored[:4])}{more}): "
                "lossland puts it back after every evaluation, so that each starts from the "
                "model's own state",
                LosslandWarning,
                stacklevel=3,
            )
        return moved

    def _watched_values(self) -> Iterator[Any]:
        """The watched attributes' values, then the tensor tables' values (a KeyError: a
        watched attribute was deleted)."""
        attributes = chain.from_iterable(map(_get, self._getters, self._attribute_dicts))
        return chain(attributes, chain.from_iterable(map(dict.values, self._tables)))

    def changed(self) -> bool:
        """Did the last evaluation change anything watched? (C-level passes, no copies; a
        key added or removed changes a size, a value rebound its identity.)"""
        if list(map(len, self._dicts)) != self._sizes:
            return True
        try:
            if not all(map(operator.is_, self._watched_values(), self._values)):
                return True
        except KeyError:
            return True
        return (
            list(map(_version, self._fixed_tensors)) != self._versions
            or list(map(Tensor.data_ptr, self._all)) != self._pointers
            or [flat._version for flat, _, _ in self._frozen] != self._frozen_versions
            or any(_differs(c, items) for c, items in self._items)
            or (self.moving is not None and self.moving._version != self._moving_version)
        )

    def restore(self) -> tuple[list[str], bool]:
        """Put back what the last evaluation changed (the frozen buffers aside). Returns what
        was restored (names for the user) and whether the moving buffer was written."""
        restored: list[str] = []
        for d, saved, owner in zip(self._dicts, self._saved, self._owners, strict=True):
            if _differs(d, saved):
                keys = [k for k in {**d, **saved} if d.get(k, _ABSENT) is not saved.get(k, _ABSENT)]
                restored += [f"{owner}.{k}".lstrip(".") for k in keys]
                d.clear()
                d.update(saved)
        for (label, container), (_, items) in zip(self._containers, self._items, strict=True):
            if _differs(container, items):
                restored.append(label)
                _refill(container, items)
        with torch.no_grad():
            tensors, counted = self._restore_tensors()
        moved = self.moving is not None and self.moving._version != self._moving_version
        self._mark()
        return list(dict.fromkeys(restored + tensors)), moved or counted

    def _restore_tensors(self) -> tuple[list[str], bool]:
        """Storage rebound (``.data = ...``) and values written in place, put back; a
        BatchNorm that counted a batch has its statistics put back too (the kernel updates
        them unseen). Also: whether moving statistics were among them."""
        restored, moved = [], False
        for t, pointer in zip(self._all, self._pointers, strict=True):
            if t.data_ptr() != pointer:
                label, alias = self._aliases[id(t)]
                t.data = alias
                restored.append(label)
        for (label, t, _, source), version in zip(self._fixed, self._versions, strict=True):
            if t._version == version:
                continue
            assert source is not None
            if id(t) in self._shared:
                raise LosslandError(
                    f"the model's forward wrote its parameter {label} in place, which does not "
                    "move and which lossland shares with your model instead of copying it, so "
                    f"your model's {label} changed too: let it move ({arg('params')}) or keep "
                    "the forward from writing its parameters"
                )
            t.copy_(source)
            restored.append(label)
            for statistic, original in self._counted.get(id(t), []):
                if original is None:
                    moved = True
                else:
                    statistic.copy_(original)
        return restored, moved

    def _frozen_written(self) -> list[str]:
        """The frozen buffers the evaluation wrote in place (compared with their copies)."""
        out = []
        for (flat, pristine, layout), version in zip(
            self._frozen, self._frozen_versions, strict=True
        ):
            if flat._version != version:
                now, before = layout.views(flat), layout.views(pristine)
                out += [n for n in layout.names if not torch.equal(now[n], before[n])]
        return out


@functools.cache
def _internal_attributes() -> frozenset[str]:
    """The attributes every ``nn.Module`` has (hook tables, the tensor tables, …) but
    ``training``."""
    return frozenset(vars(nn.Module())) - {"training"}


def _freeze(
    net: nn.Module, moving: Tensor | None, skip: Collection[int]
) -> list[tuple[Tensor, Tensor, FlatLayout]]:
    """Bind the floating buffers of ``net`` that do not move as views of one vector per dtype
    (smallest first, up to ``FROZEN_BYTES`` in all), each with a pristine copy."""
    base = None if moving is None else moving.untyped_storage().data_ptr()
    chosen: dict[torch.dtype, dict[str, Tensor]] = {}
    seen, total = set(skip), 0
    buffers = sorted(net.named_buffers(), key=lambda item: item[1].numel())
    for name, t in buffers:
        if id(t) in seen or not (t.is_floating_point() or t.is_complex()) or not _trackable(t):
            continue
        seen.add(id(t))
        if base is not None and t.untyped_storage().data_ptr() == base:
            continue  # it moves: the flat buffer's
        total += t.numel() * t.element_size()
        if total > FROZEN_BYTES:
            break
        chosen.setdefault(t.dtype, {})[name] = t
    out = []
    for dtype, tensors in chosen.items():
        layout = FlatLayout.of({n: t.shape for n, t in tensors.items()})
        flat = layout.flatten(tensors, device=next(iter(tensors.values())).device, dtype=dtype)
        bind_flat(net, layout, flat)
        out.append((flat, flat.clone(), layout))
    return out


def _tensor_slots(
    named: list[tuple[str, nn.Module]],
    source: nn.Module,
    moving: Tensor | None,
    skip: Collection[int],
) -> Iterator[Slot]:
    """(label, tensor, an alias of its storage, the user's tensor with its values) for every
    distinct tensor of the copy: parameters, buffers and tensor attributes; the user's tensor
    is None for the moving ones (views of ``moving``)."""
    base = None if moving is None else moving.untyped_storage().data_ptr()
    seen: set[int] = set(skip)
    for name, module in named:
        original = source.get_submodule(name)
        for slot in ("_parameters", "_buffers", "__dict__"):
            mine, theirs = getattr(module, slot), getattr(original, slot)
            for key, held in mine.items():
                value = _local(held)
                if not _trackable(value) or id(value) in seen:
                    continue
                seen.add(id(value))
                moves = base is not None and value.untyped_storage().data_ptr() == base
                # a sharded parameter that does not move: its rows have no source here
                kept = theirs.get(key) if value is held else None
                if moves or isinstance(kept, Tensor):
                    label = f"{name}.{key}".lstrip(".")
                    yield label, value, value.detach(), None if moves else kept


def _counted_statistics(
    named: list[tuple[str, nn.Module]],
    source: nn.Module,
    moving: Tensor | None,
    frozen: Collection[int],
) -> Iterator[tuple[int, list[tuple[Tensor, Tensor | None]]]]:
    """For each BatchNorm's batch counter: its running statistics, with where their values
    come from (None: they move with the grid; the frozen ones are copied back anyway). The
    batch-norm kernel updates them without a version bump; the counter is bumped with them."""
    base = None if moving is None else moving.untyped_storage().data_ptr()
    for name, module in named:
        if not isinstance(module, nn.modules.batchnorm._NormBase):
            continue
        counter = module.num_batches_tracked
        if counter is None or not _trackable(counter):
            continue
        original = source.get_submodule(name)
        statistics = []
        for key in ("running_mean", "running_var"):
            t = module._buffers.get(key)
            if t is None or id(t) in frozen or not _trackable(t):
                continue
            moves = base is not None and t.untyped_storage().data_ptr() == base
            statistics.append((t, None if moves else original._buffers[key]))
        yield id(counter), statistics


def _derived(named: list[tuple[str, nn.Module]]) -> Iterator[str]:
    """Attributes that torch's spectral_norm and (old) weight_norm hooks recompute from the
    parameters before every forward: put back like the rest, but not a state worth a note."""
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    for name, module in named:
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, (SpectralNorm, WeightNorm)):
                yield f"{name}.{hook.name}".lstrip(".")


def _trackable(value: Any) -> bool:
    """A dense tensor with a version counter (inference tensors have none)."""
    return (
        isinstance(value, Tensor)
        and value.layout == torch.strided
        and not value.is_meta
        and not value.is_inference()
    )


def _local(value: Any) -> Any:
    """A sharded parameter's local rows (a DTensor's local tensor: engine._shard); else the
    value itself."""
    local = getattr(value, "_local_tensor", None)
    return value if local is None else local


def _same_storage(a: Tensor, b: Tensor | None) -> bool:
    return b is not None and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _get(getter: Callable[[dict[str, Any]], tuple[Any, ...]], d: dict[str, Any]) -> Any:
    return getter(d)


def _differs(container: Any, saved: Any) -> bool:
    """Is ``container`` (a dict, list or set) not what ``saved`` holds (by identity)?"""
    if len(container) != len(saved):
        return True
    if type(container) is dict:
        return not (
            all(map(operator.is_, container, saved))
            and all(map(operator.is_, container.values(), saved.values()))
        )
    if type(container) is set:
        return not all(map(container.__contains__, saved))
    return not all(map(operator.is_, container, saved))


def _refill(container: Any, items: Any) -> None:
    if type(container) is list:
        container[:] = items
    else:
        container.clear()
        container.update(items)
