"""Named tensors as views of one flat vector: the memory layout shared by directions and engine.

Four-dimensional (convolution) tensors can be stored as (O, H, W, I), so their views are
channels_last-strided: the layout oneDNN and cuDNN run fastest. Dimension 0 (the output filter)
is outermost either way, so a filter is a contiguous run of the vector. Directions drawn by
lossland live in this layout already, so the engine adopts them without a copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class LayoutEntry:
    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int
    channels_last: bool  # a 4-D tensor stored as (O, H, W, I)

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
    def of(cls, shapes: Mapping[str, Sequence[int]], *, channels_last: bool = False) -> FlatLayout:
        entries, offset = [], 0
        for name, shape in shapes.items():
            numel = int(np.prod(shape)) if len(shape) else 1
            cl = channels_last and len(shape) == 4
            entries.append(LayoutEntry(name, tuple(int(s) for s in shape), offset, numel, cl))
            offset += numel
        return cls(tuple(entries), offset)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries)

    def views(self, flat: Tensor) -> dict[str, Tensor]:
        """Tensors shaped like the model's, aliasing ``flat``."""
        out = {}
        for e in self.entries:
            seg = flat[e.offset : e.offset + e.numel]
            if e.channels_last:
                o, i, h, w = e.shape
                out[e.name] = seg.view(o, h, w, i).permute(0, 3, 1, 2)
            else:
                out[e.name] = seg.view(e.shape)
        return out

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
        flat = torch.empty(self.size, device=device, dtype=dtype)
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
