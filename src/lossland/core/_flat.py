"""Named tensors as views of one flat vector: the memory layout shared by directions and engine.

Four-dimensional (convolution) tensors can be stored as (O, H, W, I), so their views are
channels_last-strided: the layout oneDNN and cuDNN run fastest. Dimension 0 (the output filter)
is outermost either way, so a filter is a contiguous run of the vector. Directions drawn by
lossland live in this layout already, so the engine adopts them without a copy.

A complex tensor occupies two reals per element (real and imaginary parts interleaved, at an
even offset) and its view is complex (``torch.view_as_complex``): one axpy on the real vector
moves it along its complex direction, and filter norms over the reals are the complex norms.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def row_blocks(shape: Sequence[int], elements: int) -> list[tuple[int, int]]:
    """Blocks of whole dim-0 rows ``[start, stop)`` of a tensor shaped ``shape``, each of at most
    ``elements`` elements (a single row larger than that is a block of its own); a 0-D tensor is
    one block ``(0, 1)``. Row blocks of a layout view are contiguous runs of the flat vector."""
    if len(shape) == 0 or shape[0] == 0:
        return [(0, 1)] if len(shape) == 0 else []
    row = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    step = max(1, elements // max(1, row))
    return [(a, min(a + step, shape[0])) for a in range(0, shape[0], step)]


def rows(t: Tensor, block: tuple[int, int]) -> Tensor:
    """Rows ``block`` of ``t`` (a 0-D tensor is its only block)."""
    return t if t.dim() == 0 else t[block[0] : block[1]]


@dataclass(frozen=True)
class LayoutEntry:
    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int
    channels_last: bool  # a 4-D tensor stored as (O, H, W, I)
    complex: bool = False  # numel counts reals: two per complex element

    def strides(self) -> tuple[int, ...]:
        """The strides of this entry's view (in elements)."""
        if self.channels_last:
            _, i, h, w = self.shape
            return (h * w * i, 1, w * i, i)
        strides, step = [], 1
        for size in reversed(self.shape):
            strides.append(step)
            step *= size
        return tuple(reversed(strides))


@dataclass(frozen=True)
class FlatLayout:
    """Where each named tensor lives inside a flat vector."""

    entries: tuple[LayoutEntry, ...]
    size: int

    @classmethod
    def of(
        cls,
        shapes: Mapping[str, Sequence[int]],
        *,
        channels_last: bool = False,
        complex: Collection[str] = (),
    ) -> FlatLayout:
        """Entries in ``shapes``' order; the ``complex`` names take two reals per element."""
        entries, offset = [], 0
        for name, shape in shapes.items():
            numel = int(np.prod(shape)) if len(shape) else 1
            pair = name in complex
            offset += offset % 2 if pair else 0  # view_as_complex needs an even offset
            cl = channels_last and len(shape) == 4 and not pair
            size = 2 * numel if pair else numel
            entries.append(LayoutEntry(name, tuple(int(s) for s in shape), offset, size, cl, pair))
            offset += size
        # Rows of a (K, size) matrix of points stay even for the complex views too.
        return cls(tuple(entries), offset + offset % 2 if complex else offset)

    def _view(self, e: LayoutEntry, seg: Tensor) -> Tensor:
        """Entry ``e``'s tensor from its segment (..., e.numel): any leading dims kept."""
        lead = tuple(seg.shape[:-1])
        if e.complex:
            return torch.view_as_complex(seg.view((*lead, *e.shape, 2)))
        if e.channels_last:
            o, i, h, w = e.shape
            return seg.view((*lead, o, h, w, i)).movedim(-1, -3)
        return seg.view((*lead, *e.shape))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries)

    def views(self, flat: Tensor) -> dict[str, Tensor]:
        """Tensors shaped like the model's, aliasing ``flat`` (P,); for a (K, P) matrix of K
        points, each tensor gains a leading K."""
        return {
            e.name: self._view(e, flat[..., e.offset : e.offset + e.numel]) for e in self.entries
        }

    def block_size(self, elements: int) -> int:
        """The most elements a block of whole rows (:func:`row_blocks`) of at most ``elements``
        can hold in this layout: a single row may be larger."""
        largest = max(
            (
                max(b - a for a, b in row_blocks(e.shape, elements))
                * (e.numel // max(1, e.shape[0]) if e.shape else 1)
                for e in self.entries
                if not e.shape or e.shape[0]
            ),
            default=0,
        )
        return max(1, largest)

    def segments(self, flat: Tensor) -> tuple[Tensor, ...]:
        """(filters, elements) views, for filter and layer norms."""
        return tuple(
            flat[e.offset : e.offset + e.numel].view(e.shape[0] if len(e.shape) > 1 else 1, -1)
            for e in self.entries
        )

    def flatten(
        self, tensors: Mapping[str, Tensor], *, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        """A new flat vector holding ``tensors`` (a copy)."""
        padded = any(e.complex for e in self.entries)  # unused slots: zeros, never garbage
        flat = (torch.zeros if padded else torch.empty)(self.size, device=device, dtype=dtype)
        for name, view in self.views(flat).items():
            view.copy_(tensors[name])
        return flat

    def adopt(
        self, tensors: Mapping[str, Tensor], *, device: torch.device, dtype: torch.dtype
    ) -> Tensor | None:
        """The flat vector ``tensors`` already are views of, in exactly this layout; else None.

        Lets the engine use directions drawn by lossland without copying them.
        """
        if not self.entries or list(tensors) != list(self.names):
            return None
        if any(e.complex for e in self.entries):
            return None  # complex directions are copied in (two reals per element)
        first = tensors[self.entries[0].name]
        if first.device != device or first.dtype != dtype:
            return None
        storage = first.untyped_storage().data_ptr()
        base = first.storage_offset() - self.entries[0].offset
        for e in self.entries:
            t = tensors[e.name]
            if (
                t.untyped_storage().data_ptr() != storage
                or t.dtype != dtype
                or t.storage_offset() != base + e.offset
                or tuple(t.shape) != e.shape
                or (e.numel > 1 and tuple(t.stride()) != e.strides())
            ):
                return None
        return torch.as_strided(first, (self.size,), (1,), base)

    def allocate(
        self, *, dtype: torch.dtype = torch.float32, device: str = "cpu"
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """A zeroed flat vector and its named views."""
        flat = torch.zeros(self.size, dtype=dtype, device=device)
        return flat, self.views(flat)
