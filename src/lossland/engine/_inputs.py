"""How data becomes batches: the one place that decides what each kind of input is.

=====================================  ==========================================================
what the user passes                    what lossland evaluates
=====================================  ==========================================================
``(inputs, targets)`` tensors/arrays    batches of ``batch_size`` rows, kept on the device
a mapping of equal-length tensors       batches of ``batch_size`` rows of every column
one tensor or array                     batches of ``batch_size`` rows (``model(rows)``; the
                                        evaluator's loss needs no targets)
a ``DataLoader``                        its own batches, in a fixed order: ``shuffle=True`` is
                                        evaluated in the dataset's order, any other sampler or
                                        ``batch_sampler`` in the order of its first pass (a
                                        warning if a second pass differs); workers are kept
                                        alive for the run (``persistent_workers``)
anything indexable yielding samples     batches of ``batch_size`` samples, collated: a torch
(a map-style ``Dataset``, a Hugging     ``Dataset``, ``datasets.Dataset``, a list of per-sample
Face ``datasets.Dataset``, a list of    dicts or tuples; samples of different shapes are
per-sample dicts/tuples)                refused (pad them in a DataLoader's ``collate_fn``)
a list or tuple of batches              those batches, as they are
an ``IterableDataset``                  batches of ``batch_size`` of its samples
a generator or iterator                 read once and cached (it cannot be read at every point;
                                        ``data_mode="streamed"`` is refused); its items are
                                        batches, or samples batched as above
a string, a set, a mapping of           refused, in one line naming what to pass
non-tensors, a number, None
=====================================  ==========================================================

An item is a **sample** rather than a batch when its targets (a mapping's ``labels``/``label``,
a tuple's last element) are a number or a 0-d tensor, when it holds Python numbers or lists of
numbers, or when it is a mapping whose ``input_ids`` are 1-D (a batch of token ids is 2-D).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)
from torch.utils.data._utils.collate import default_collate

from lossland.engine._failures import DataReadError
from lossland.errors import LosslandError, LosslandWarning, arg

Batch = Any
FIX = (
    "pass an (inputs, targets) pair, a Dataset, a DataLoader, a list of batches or of samples "
    "(see 'What data lossland takes' in the README)"
)
_TARGET_KEYS = ("labels", "label", "targets", "target")


@dataclass(frozen=True)
class Source:
    """Batches in a fixed order; ``one_shot`` when they can be read only once; ``sized`` when
    their end is known before they are read (a stream's is not)."""

    batches: Iterable[Batch]
    one_shot: bool
    sized: bool = True


def input_kind(data: Any) -> str:
    """Which row of the module's table ``data`` is: ``columns`` (tensors to slice), ``loader``,
    ``samples`` (indexable samples), ``batches`` (a list of batches), ``stream`` (an
    IterableDataset or another re-iterable), ``iterator`` (one pass only); refuses the rest."""
    if isinstance(data, DataLoader):
        return "loader"
    if _columns(data) is not None:
        return "columns"
    if isinstance(data, IterableDataset):
        return "stream"
    if isinstance(data, Iterator):
        return "iterator"
    if isinstance(data, Mapping) and data and all(_sized(v) for v in data.values()):
        raise LosslandError(
            f"cannot evaluate on a mapping of data sets ({', '.join(map(str, data))}): pass one "
            f"of them, e.g. data[{next(iter(data))!r}]"
        )
    if isinstance(data, (str, bytes, Mapping, set, frozenset)) or data is None:
        raise LosslandError(f"cannot evaluate on {_kind(data)}: {FIX}")
    if isinstance(data, (list, tuple)):
        return _list_kind(data)
    if isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        return "samples"
    if isinstance(data, Iterable):
        return "stream"
    raise LosslandError(f"cannot evaluate on {_kind(data)}: {FIX}")


def _sized(value: Any) -> bool:
    """A data set, not a column: indexable and sized, not a tensor, array, string or list."""
    plain = (Tensor, np.ndarray, str, bytes, list, tuple, Mapping)
    return (
        hasattr(value, "__getitem__") and hasattr(value, "__len__") and not isinstance(value, plain)
    )


def _kind(data: Any) -> str:
    if isinstance(data, Mapping):
        return "a mapping that is not of equal-length tensors"
    return "None" if data is None else type(data).__name__


def _list_kind(items: Sequence[Any]) -> str:
    """``samples`` or ``batches``: every item must be the same."""
    if not items:
        raise LosslandError("the evaluation set is empty: pass at least one sample")
    kinds = {is_sample(item) for item in items}
    if len(kinds) > 1:
        raise LosslandError(
            f"the list mixes samples and batches: pass a list of batches or one of samples; {FIX}"
        )
    return "samples" if kinds.pop() else "batches"


def is_sample(item: Any) -> bool:
    """Whether ``item`` is one sample rather than a batch (see the module docstring)."""
    if isinstance(item, (numbers.Number, str)):
        return True
    if not isinstance(item, (Mapping, tuple, list)):
        return False  # a tensor or array: a batch of inputs
    targets = _targets(item)
    if targets is not None and _scalar(targets):
        return True
    if isinstance(item, Mapping):
        ids = item.get("input_ids")
        if isinstance(ids, (Tensor, np.ndarray)) and ids.ndim == 1:
            return True
    values = item.values() if isinstance(item, Mapping) else item
    return any(_plain(v) for v in values)


def _targets(item: Mapping[str, Any] | Sequence[Any]) -> Any:
    if isinstance(item, Mapping):
        return next((item[k] for k in _TARGET_KEYS if k in item), None)
    return item[-1] if len(item) >= 2 else None


def _scalar(value: Any) -> bool:
    if isinstance(value, (Tensor, np.ndarray)):
        return value.ndim == 0
    return isinstance(value, numbers.Number)


def _plain(value: Any) -> bool:
    """A Python number or a (nested) list of them: a sample's field, never a batch's."""
    if isinstance(value, numbers.Number):
        return True
    return isinstance(value, list) and bool(value) and _plain(value[0])


# --- tensor columns ---------------------------------------------------------------------------


def _columns(data: Any) -> dict[str, Tensor] | Tensor | None:
    """A mapping of equal-length tensors or one tensor (arrays become tensors); None for any
    other data. (An ``(inputs, targets)`` pair is decided by the caller.)"""
    if isinstance(data, (Tensor, np.ndarray)):
        tensor = as_tensor(data)
        return tensor if tensor.dim() >= 1 else None
    if isinstance(data, Mapping) and data and all(_array(v) for v in data.values()):
        columns = {str(k): as_tensor(v) for k, v in data.items()}
        lengths = {len(v) for v in columns.values() if v.dim() >= 1}
        if len(lengths) == 1 and all(v.dim() >= 1 for v in columns.values()):
            return columns
        raise LosslandError(
            f"the mapping's tensors have lengths {sorted(lengths)} (or are scalars): pass "
            "columns of equal length, one row per sample"
        )
    return None


def _array(value: Any) -> bool:
    return isinstance(value, (Tensor, np.ndarray))


def as_tensor(value: Any) -> Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    assert isinstance(value, Tensor)
    return value


def column_batches(data: Any, batch_size: int) -> tuple[Batch, ...] | None:
    """Tensor columns sliced into batches of ``batch_size`` rows; None for other data."""
    columns = _columns(data)
    if columns is None:
        return None
    if isinstance(columns, Tensor):
        return tuple(columns[i : i + batch_size] for i in range(0, len(columns), batch_size))
    n = len(next(iter(columns.values())))
    return tuple(
        {k: v[i : i + batch_size] for k, v in columns.items()} for i in range(0, n, batch_size)
    )


def column_length(data: Any) -> int | None:
    columns = _columns(data)
    if columns is None:
        return None
    return len(columns) if isinstance(columns, Tensor) else len(next(iter(columns.values())))


# --- samples become batches -------------------------------------------------------------------


def collate(samples: list[Any]) -> Batch:
    """One batch of ``samples``: fields stacked (Python numbers and lists of numbers become
    tensors first, so a list field is not transposed); samples of different shapes refused."""
    try:
        return default_collate([_tensors_of(s) for s in samples])  # type: ignore[no-untyped-call]
    except RuntimeError as exc:
        if "equal size" not in str(exc) and "same size" not in str(exc):
            raise
        raise LosslandError(
            f"the samples have different shapes ({_shapes(samples)}): pad them to one length, "
            "e.g. pass a DataLoader with a collate_fn such as transformers' "
            "DataCollatorWithPadding"
        ) from None


def _tensors_of(sample: Any) -> Any:
    if isinstance(sample, Mapping):
        return {k: _tensors_of(v) for k, v in sample.items()}
    if isinstance(sample, tuple):
        return tuple(_tensors_of(v) for v in sample)
    if isinstance(sample, list) and _plain(sample):
        try:
            return torch.as_tensor(sample)
        except (ValueError, TypeError):  # ragged lists: refused by the stacking
            return [torch.as_tensor(v) for v in sample]
    if isinstance(sample, list):
        return [_tensors_of(v) for v in sample]
    return sample


def _shapes(samples: list[Any]) -> str:
    first = samples[0]
    fields = first.items() if isinstance(first, Mapping) else enumerate(first)
    for key, _ in fields:
        shapes = {tuple(torch.as_tensor(_tensors_of(s[key])).shape) for s in samples}
        if len(shapes) > 1:
            return f"{key}: " + " and ".join(str(s) for s in sorted(shapes)[:2])
    return "shapes differ"


class Batched:
    """Samples of a one-pass or re-iterable source, grouped into batches of ``batch_size``."""

    def __init__(self, samples: Iterable[Any], batch_size: int) -> None:
        self.samples, self.batch_size = samples, batch_size

    def __iter__(self) -> Iterator[Batch]:
        group: list[Any] = []
        for sample in self.samples:
            group.append(sample)
            if len(group) == self.batch_size:
                yield collate(group)
                group = []
        if group:
            yield collate(group)


class _Peeked:
    """An iterator with its first item read already (to tell samples from batches)."""

    def __init__(self, first: Any, rest: Iterator[Any]) -> None:
        self.first, self.rest = first, rest

    def __iter__(self) -> Iterator[Any]:
        yield self.first
        yield from self.rest


def source(data: Any, batch_size: int) -> Source:
    """The batches of ``data`` (anything but tensor columns) in a fixed order, per the table."""
    kind = input_kind(data)
    if kind == "loader":
        loader = fixed_order(data)
        return Source(loader, False, not isinstance(loader.dataset, IterableDataset))
    if kind == "samples":
        return Source(DataLoader(data, batch_size=batch_size, collate_fn=collate), False)
    if kind == "batches":
        return Source(data, False)
    if isinstance(data, IterableDataset):
        loader = DataLoader(data, batch_size=batch_size, collate_fn=collate)
        return Source(loader, False, False)
    sized = hasattr(data, "__len__") or bool(getattr(data, "bounded", False))
    one_shot = kind == "iterator" or bool(getattr(data, "one_shot", False))
    try:  # the user's iterable runs here first: what it raises is the data's error
        items = iter(data)
        first = next(items, _END)
    except LosslandError:
        raise
    except Exception as exc:
        raise DataReadError(exc, 0, "while first reading the data") from exc
    if first is _END:
        raise LosslandError("the evaluation set is empty: pass at least one sample")
    if one_shot:  # read once: the item already read is put back in front
        data = _Peeked(first, items)
    batches = Batched(data, batch_size) if is_sample(first) else data
    return Source(iter(batches) if one_shot else batches, one_shot, sized)


_END = object()


# --- DataLoaders in a fixed order ------------------------------------------------------------


def fixed_order(loader: DataLoader[Any]) -> DataLoader[Any]:
    """``loader`` evaluated in the same order at every point, its workers kept for the run:
    ``shuffle=True`` in the dataset's order, any other sampler or batch sampler frozen to its
    first pass (with a warning if a second pass differs)."""
    if isinstance(loader.dataset, IterableDataset):
        return _persistent(loader)
    sampler, batches = loader.sampler, loader.batch_sampler
    plain = isinstance(batches, BatchSampler) and type(batches) is BatchSampler
    if plain and isinstance(sampler, RandomSampler):
        warnings.warn(
            "the DataLoader shuffles (shuffle=True); lossland evaluates its dataset in order "
            "instead, so that every grid point sees the same samples",
            LosslandWarning,
            stacklevel=5,
        )
        return rebuilt(
            loader,
            batch_sampler=BatchSampler(
                SequentialSampler(range(len(loader.dataset))),  # type: ignore[arg-type]
                loader.batch_size or 1,
                loader.drop_last,
            ),
        )
    if (plain and isinstance(sampler, SequentialSampler)) or (
        batches is None and isinstance(sampler, SequentialSampler)
    ):
        return _persistent(loader)
    order = batches if batches is not None else sampler
    first = [list(b) if batches is not None else b for b in order]
    if first != [list(b) if batches is not None else b for b in order]:
        what = arg("batch_sampler") if batches is not None else arg("sampler")
        warnings.warn(
            f"the DataLoader's {what} gives another order at every pass (shuffled or "
            "length-bucketed batches); lossland evaluates the order of its first pass at every "
            "point, so that every grid point sees the same batches",
            LosslandWarning,
            stacklevel=5,
        )
    if batches is None:
        return rebuilt(loader, sampler=first, batch_sampler=None)
    return rebuilt(loader, batch_sampler=first)


def _persistent(loader: DataLoader[Any]) -> DataLoader[Any]:
    """``loader`` with its workers kept alive between passes (rebuilt only when it has workers
    that would otherwise be started again at every grid point)."""
    if loader.num_workers == 0 or loader.persistent_workers:
        return loader
    if isinstance(loader.dataset, IterableDataset):
        return rebuilt(loader, batch_size=loader.batch_size, drop_last=loader.drop_last)
    return rebuilt(loader, batch_sampler=loader.batch_sampler, sampler=loader.sampler)


def rebuilt(loader: DataLoader[Any], dataset: Any = None, **order: Any) -> DataLoader[Any]:
    """A DataLoader like ``loader`` (over ``dataset`` when given) with the given order
    arguments (``batch_sampler=None``: ``loader``'s batch size), its workers persistent."""
    if order.get("batch_sampler") is not None:
        order.pop("sampler", None)
    elif "batch_sampler" in order:
        order.pop("batch_sampler")
        order.update(batch_size=loader.batch_size, drop_last=loader.drop_last)
    workers = loader.num_workers
    extra: dict[str, Any] = {}
    if workers > 0:
        extra.update(
            prefetch_factor=loader.prefetch_factor,
            persistent_workers=True,
            multiprocessing_context=loader.multiprocessing_context,
            worker_init_fn=loader.worker_init_fn,
            timeout=loader.timeout,
        )
    return DataLoader(
        loader.dataset if dataset is None else dataset,
        collate_fn=loader.collate_fn,
        num_workers=workers,
        pin_memory=loader.pin_memory,
        generator=loader.generator,
        **order,
        **extra,
    )
