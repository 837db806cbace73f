"""The evaluation set: any data a PyTorch user has, as fixed batches identical at every point.

What each kind of data becomes is decided in one place, :mod:`lossland.engine._inputs` (its
table: pairs and columns of tensors, DataLoaders, indexable samples, lists of batches,
generators). Two modes: **cached** (every batch moved to the device once; the default when the
set fits a memory budget) and **streamed** (batches moved per point, pinned and one batch
ahead, for sets that do not fit). Every grid point sees the same batches in the same order.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, IterableDataset, Subset

from lossland.core import Digest, available_memory, bytes_text, tensor_fingerprint
from lossland.engine._failures import DataReadError
from lossland.engine._inputs import (
    Source,
    column_batches,
    column_length,
    fixed_order,
    input_kind,
    is_sample,
    rebuilt,
    source,
)
from lossland.errors import LosslandError, LosslandWarning, arg

Batch = Any  # a tensor, a tuple/list of batches' parts, or a mapping of them
DataMode = Literal["auto", "cached", "streamed"]
# Cached sets may use this fraction of the device's free memory (available host memory for the
# CPU); a source whose length is unknown (an IterableDataset, a generator) is read at most this
# far, so that a stream that never ends is refused instead of read forever. data_mode="cached"
# may keep up to CACHED_FRACTION.
CACHE_FRACTION = 0.25
CACHED_FRACTION = 0.5


@dataclass(frozen=True)
class EvalData:
    """Fixed batches on the device (``cached``), or a source streamed at every point."""

    cached: tuple[Batch, ...] | None
    source: Iterable[Batch] | None
    samples: int  # units the loss averages over: samples, or sequences for language models
    fingerprint: str  # identifies the data for resume checks
    device: torch.device
    dtype: torch.dtype
    channels_last: bool

    @property
    def mode(self) -> str:
        return "cached" if self.cached is not None else "streamed"

    def batches(self) -> Iterator[Batch]:
        """The batches, on the device, in the same order every time."""
        if self.cached is not None:
            yield from self.cached
            return
        assert self.source is not None
        # One batch ahead: its host-to-device copy overlaps the current batch's forward.
        ahead: Batch | None = None
        for raw in read(self.source, "while reading the data"):
            moved = self._move(raw)
            if ahead is not None:
                yield ahead
            ahead = moved
        if ahead is not None:
            yield ahead

    def first(self) -> Batch:
        return next(iter(self.batches()))

    def _move(self, batch: Batch) -> Batch:
        return to_device(batch, self.device, self.dtype, self.channels_last)


def eval_data(
    data: Any,
    *,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    samples: int | None = None,
    seed: int = 0,
    mode: DataMode = "auto",
    seeded_order: bool = False,
    cache_fraction: float = CACHE_FRACTION,
) -> EvalData:
    """The evaluation set of ``data`` (see the module docstring); ``samples`` takes a seeded
    subset (the first ``samples`` of a stream that cannot be indexed); ``seeded_order``
    evaluates indexable data in a seeded random order, the same at every point (so that a
    point stopped early by a standard-error target saw a fair sample, not the first classes
    of a sorted set); ``cache_fraction`` of the free memory is the most ``mode="auto"``
    caches."""
    if batch_size < 1:
        raise LosslandError(f"{arg('batch_size')} must be at least 1, got {batch_size}")
    if samples is not None:
        data = subset(data, samples, seed)
    if seeded_order:
        data = _in_seeded_order(data, seed)
    pair = _as_pair(data)
    if pair is not None:
        return _from_pair(*pair, batch_size, device, dtype, channels_last)
    columns = column_batches(data, batch_size)
    got = Source(columns, one_shot=False) if columns is not None else source(data, batch_size)
    return _cache_or_stream(got, device, dtype, channels_last, mode, cache_fraction)


def _in_seeded_order(data: Any, seed: int) -> Any:
    pair = _as_pair(data)
    generator = stream(seed, "evaluation order")
    if pair is not None:
        order = torch.randperm(len(pair[0]), generator=generator)
        return pair[0][order], pair[1][order]
    kind = input_kind(data)
    if kind == "columns":
        return _rows(data, torch.randperm(column_length(data) or 0, generator=generator))
    if kind == "samples":
        return Subset(data, torch.randperm(len(data), generator=generator).tolist())
    warnings.warn(
        "a standard-error target evaluates a DataLoader or a list of batches in its own order: "
        "make sure it is not sorted (by class, by length), or pass a Dataset",
        LosslandWarning,
        stacklevel=4,
    )
    return data


def subset(data: Any, samples: int, seed: int) -> Any:
    """The same kind of data holding a seeded subset of ``samples`` samples (the first
    ``samples`` of a stream that cannot be indexed)."""
    if samples < 1:
        raise LosslandError(f"{arg('samples')} must be at least 1, got {samples}")
    pair = _as_pair(data)
    if pair is not None:
        index = subset_index(len(pair[0]), samples, seed)
        return pair[0][index], pair[1][index]
    kind = input_kind(data)
    if kind == "loader":
        return _loader_subset(data, samples, seed)
    if kind == "columns":
        return _rows(data, subset_index(column_length(data) or 0, samples, seed))
    if kind == "samples":
        return Subset(data, subset_index(len(data), samples, seed).tolist())
    return _First(data, samples)


def _rows(data: Any, index: Tensor) -> Any:
    """The rows ``index`` of tensor columns (a tensor or a mapping of them)."""
    if isinstance(data, Mapping):
        return {k: _tensor(v)[index] for k, v in data.items()}
    return _tensor(data)[index]


def known_samples(data: Any, samples: int | None = None) -> int | None:
    """How many samples ``data`` holds (at most ``samples``) when that is known without reading
    it: a pair, a sized Dataset or a DataLoader over one, a list of batches; None for streams."""
    count: int | None = None
    try:
        pair = _as_pair(data)
        kind = "pair" if pair is not None else input_kind(data)
        if pair is not None:
            count = len(pair[0])
        elif kind == "columns":
            count = column_length(data)
        elif isinstance(data, DataLoader):
            dataset = data.dataset
            count = None if isinstance(dataset, IterableDataset) else len(dataset)  # type: ignore[arg-type]
        elif kind == "samples":
            count = len(data)
        elif kind == "batches":
            count = sum(batch_size_of(batch) for batch in data)
    except Exception:  # no len(), a len() that fails, batches that do not say: the first
        count = None  # pass learns the count (and reports a failing dataset where it fails)
    if count is None:
        return samples
    return count if samples is None else min(count, samples)


# --- tensor pairs ---------------------------------------------------------------------------


def _as_pair(data: Any) -> tuple[Tensor, Tensor] | None:
    """``(inputs, targets)`` of equal length, as tensors; None for any other kind of data."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        return None
    if not all(isinstance(d, (Tensor, np.ndarray)) for d in data):
        return None
    inputs, targets = (_tensor(d) for d in data)
    if inputs.dim() == 0 or targets.dim() == 0:
        return None
    if len(inputs) != len(targets):
        raise LosslandError(f"{len(inputs)} inputs but {len(targets)} targets: pass equal counts")
    if len(inputs) == 0:
        raise LosslandError("the evaluation set is empty: pass at least one sample")
    return inputs, targets


def _from_pair(
    inputs: Tensor,
    targets: Tensor,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    channels_last: bool,
) -> EvalData:
    x = to_device(inputs, device, dtype, channels_last)
    y = targets.to(device)
    batches = tuple(
        (x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)
    )
    digest = tensor_fingerprint({"inputs": inputs, "targets": targets})
    return EvalData(batches, None, len(x), digest, device, dtype, channels_last)


def subset_index(count: int, samples: int, seed: int) -> Tensor:
    """A fixed, seeded subset of ``samples`` indices out of ``count``, in increasing order."""
    if samples > count:
        raise LosslandError(
            f"{arg('samples')} {samples} is larger than the data ({count} samples): "
            "use a smaller number or all of it"
        )
    return torch.randperm(count, generator=stream(seed, "samples"))[:samples].sort().values


def stream(seed: int, purpose: str) -> torch.Generator:
    """A random stream of its own for ``purpose``. Training with seed s shuffles its batches
    with torch's stream for s: an evaluation subset or order drawn from that very stream would
    be the samples trained on first (for one epoch, the most forgotten: a biased loss)."""
    digest = hashlib.sha256(f"lossland {purpose} {seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


# --- datasets, loaders and iterables ---------------------------------------------------------


def _loader_subset(loader: DataLoader[Any], samples: int, seed: int) -> Iterable[Batch]:
    """A seeded subset of ``samples`` of a loader's dataset, batched as the loader batches
    (the first ``samples`` of a stream)."""
    dataset = loader.dataset
    if isinstance(dataset, IterableDataset):
        return _First(fixed_order(loader), samples)
    subset = Subset(dataset, subset_index(len(dataset), samples, seed).tolist())  # type: ignore[arg-type]
    size = loader.batch_size
    if size is None and loader.batch_sampler is not None:  # its batches' size, in order
        size = len(next(iter(loader.batch_sampler)))
    if size is None:
        return rebuilt(loader, subset, sampler=None, batch_sampler=None)
    batching = BatchSampler(range(samples), size, drop_last=False)
    return rebuilt(loader, subset, batch_sampler=batching)


class _First:
    """The first ``samples`` samples of a source of batches (the last one cut) or of samples;
    ``one_shot`` when the source can be read once only (a generator: the subset can then not
    be streamed either). Its end is known (``bounded``): at most ``samples``."""

    bounded = True

    def __init__(self, source: Iterable[Batch], samples: int) -> None:
        self.source, self.samples = source, samples
        self.one_shot = isinstance(source, Iterator) or bool(getattr(source, "one_shot", False))

    def __iter__(self) -> Iterator[Batch]:
        left = self.samples
        for batch in self.source:
            size = 1 if is_sample(batch) else batch_size_of(batch)
            yield batch if size <= left else _head(batch, left)
            left -= min(size, left)
            if left == 0:
                return


def _cache_or_stream(
    got: Source,
    device: torch.device,
    dtype: torch.dtype,
    channels_last: bool,
    mode: DataMode,
    fraction: float,
) -> EvalData:
    """One pass over the source: count and fingerprint the samples, and keep the batches on
    the device when they fit the budget (or streaming is impossible: one-shot data)."""
    source, one_shot = got.batches, got.one_shot
    if mode == "streamed" and one_shot:
        raise LosslandError(
            "the data is a one-shot iterator and cannot be streamed at every point: pass a "
            f"list, a Dataset or a DataLoader, or set {arg('data_mode')} to cached"
        )
    budget = _cache_budget(device, fraction)
    # A stream of unknown length is read at most the budget; data_mode="cached" keeps at most
    # CACHED_FRACTION of the memory (or the budget, if larger).
    bound = _read_bound(got.sized, budget, mode, fraction)
    kept: list[Batch] | None = [] if mode != "streamed" else None
    digest = Digest()
    count = used = 0
    first = "while caching the data" if kept is not None else "while first reading the data"
    for index, raw in enumerate(read(source, first)):
        moved = to_device(raw, device, dtype, channels_last)
        for name, tensor in _tensors(raw, f"{index}"):
            digest.add(name, tensor)
            used += tensor.numel() * tensor.element_size()
        count += batch_size_of(raw)
        if bound is not None and used > bound[0]:
            raise LosslandError(bound[1].format(count=count, size=bytes_text(used)))
        if kept is not None:
            kept.append(moved)
            if mode == "auto" and not one_shot and used > budget:
                kept = None  # too big to keep: stream it instead
    if count == 0:
        raise LosslandError("the evaluation set is empty: pass at least one sample")
    text = digest.hexdigest()[:16]
    if kept is not None:
        return EvalData(tuple(kept), None, count, text, device, dtype, channels_last)
    return EvalData(None, source, count, text, device, dtype, channels_last)


def read(source: Iterable[Batch], where: str) -> Iterator[Batch]:
    """The batches of ``source``; what the user's data code raises (a Dataset's __getitem__,
    a collate_fn, a DataLoader worker) becomes one :class:`DataReadError` naming the batch."""
    index, iterator = 0, None
    try:
        iterator = iter(source)
        for raw in iterator:
            yield raw
            index += 1
    except LosslandError:
        raise
    except Exception as exc:
        # Stop a loader's workers now: the traceback kept for the user refers to the iterator,
        # and a worker process forked later would inherit it alive.
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if callable(shutdown):
            shutdown()
        raise DataReadError(exc, index, where) from exc


def _cache_budget(device: torch.device, fraction: float) -> float:
    """``fraction`` of the memory the data would live in (the device's free memory, the
    host's available memory)."""
    free = available_memory(str(device) if device.type == "cuda" else "host")
    return fraction * (free if free is not None else 2.0**34)


def _read_bound(
    sized: bool, budget: float, mode: DataMode, fraction: float
) -> tuple[float, str] | None:
    """(bytes, the refusal) past which the first pass stops: a source of unknown length is
    read at most ``budget`` bytes; data_mode="cached" keeps at most CACHED_FRACTION."""
    if not sized:
        return budget, (
            "the evaluation data has no length and had not ended after {count:,} samples "
            f"({{size}}, the most lossland reads from a stream of unknown length: "
            f"{fraction:.0%} of the free memory, {arg('cache_fraction')}): pass "
            f"{arg('samples')} N to evaluate its first N samples"
        )
    if mode == "cached":
        kept = max(fraction, CACHED_FRACTION)
        return budget * kept / fraction, (
            f"the evaluation data outgrew {{size}} after {{count:,}} samples, more than "
            f"{arg('data_mode')} cached keeps ({kept:.0%} of the free memory): set "
            f"{arg('data_mode')} to streamed or pass a smaller {arg('samples')}"
        )
    return None


# --- batches ------------------------------------------------------------------------------


def _tensor(value: Any) -> Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    assert isinstance(value, Tensor)
    return value


def to_device(batch: Batch, device: torch.device, dtype: torch.dtype, channels_last: bool) -> Batch:
    """``batch`` with every tensor (or NumPy array) on ``device``; floating tensors in ``dtype``,
    4-D floating tensors channels_last when asked."""
    if isinstance(batch, (Tensor, np.ndarray)):
        t = _tensor(batch)
        if device.type == "cuda" and t.device.type == "cpu":
            t = t.pin_memory()  # so the non-blocking copy really overlaps the compute
        if t.is_floating_point():
            t = t.to(device=device, dtype=dtype, non_blocking=True)
            if channels_last and t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            return t
        return t.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, dtype, channels_last) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device, dtype, channels_last) for v in batch)
    return batch  # strings, None, …: passed to the model as they are


def _tensors(batch: Batch, prefix: str) -> Iterator[tuple[str, Tensor]]:
    """Every tensor of a batch with a name that says where it sits (for the fingerprint)."""
    if isinstance(batch, (Tensor, np.ndarray)):
        yield prefix, _tensor(batch)
    elif isinstance(batch, Mapping):
        for key in sorted(batch, key=str):
            yield from _tensors(batch[key], f"{prefix}.{key}")
    elif isinstance(batch, (tuple, list)):
        for i, value in enumerate(batch):
            yield from _tensors(value, f"{prefix}.{i}")


def targets_of(batch: Batch) -> Any:
    """The targets of a batch: the last element of a tuple, a mapping's ``labels`` (or
    ``label``/``targets``); None when the batch has none."""
    if isinstance(batch, Mapping):
        for key in ("labels", "label", "targets", "target"):
            if key in batch:
                return batch[key]
        return None
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[-1]
    return None


def batch_size_of(batch: Batch) -> int:
    """Samples in a batch: the targets' length, else the first tensor's."""
    targets = targets_of(batch)
    if isinstance(targets, (Tensor, np.ndarray)) and len(targets.shape):
        return int(targets.shape[0])
    for _, tensor in _tensors(batch, ""):
        if tensor.dim():
            return int(tensor.shape[0])
    raise LosslandError(
        f"cannot tell how many samples a batch of {type(batch).__name__} holds: "
        "give batches of tensors"
    )


def _head(batch: Batch, n: int) -> Batch:
    if isinstance(batch, (Tensor, np.ndarray)):
        return batch[:n]
    if isinstance(batch, Mapping):
        return {k: _head(v, n) for k, v in batch.items()}
    if isinstance(batch, Sequence) and not isinstance(batch, str):
        return type(batch)(_head(v, n) for v in batch)  # type: ignore[call-arg]
    return batch


def select_samples(
    inputs: Tensor, targets: Tensor, samples: str | int, seed: int, *, split: str = "split"
) -> tuple[Tensor, Tensor]:
    """A fixed, seeded subset (sorted indices) of a tensor pair, or everything for ``"all"``."""
    if str(samples) == "all":
        return inputs, targets
    try:
        n = int(samples)
    except ValueError:
        raise LosslandError(
            f"{arg('samples')} must be a number or 'all', got {samples!r}"
        ) from None
    if n < 1:
        raise LosslandError(f"{arg('samples')} must be at least 1, got {n}")
    if n > len(inputs):
        raise LosslandError(
            f"{arg('samples')} {n} is larger than the {split} split ({len(inputs)} samples): "
            "use a smaller number or 'all'"
        )
    index = subset_index(len(inputs), n, seed)
    return inputs[index], targets[index]
