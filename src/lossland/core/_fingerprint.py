"""Fingerprints: a sha256 over names, dtypes, shapes and bytes, to recognise weights and data.

Resuming a surface compares fingerprints of the model, the directions and the evaluation data,
so they must see every element and never depend on memory layout or device.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor


class Digest:
    """A running sha256 of named tensors (for data seen one batch at a time)."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def add(self, name: str, tensor: Tensor) -> None:
        # channels_last views are hashed in their logical NCHW order: layout does not count.
        t = tensor.detach().to("cpu").contiguous()
        self._sha.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        self._sha.update(t.reshape(-1).view(torch.uint8).numpy().data)  # no copy

    def add_blocks(
        self, name: str, dtype: torch.dtype, shape: tuple[int, ...], blocks: Iterable[Tensor]
    ) -> None:
        """As :meth:`add` for a tensor given as consecutive blocks of whole dim-0 rows (their
        bytes in logical order are the tensor's): a tensor fingerprinted without being held."""
        self._sha.update(f"{name}:{dtype}:{shape}".encode())
        for block in blocks:
            t = block.detach().to("cpu").contiguous()
            self._sha.update(t.reshape(-1).view(torch.uint8).numpy().data)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def fingerprint(items: Iterable[tuple[str, Tensor]]) -> str:
    """Hex sha256 of ``(name, tensor)`` pairs in the order given."""
    digest = Digest()
    for name, tensor in items:
        digest.add(name, tensor)
    return digest.hexdigest()


def tensor_fingerprint(tensors: Mapping[str, Tensor]) -> str:
    """A short fingerprint of named tensors, in name order (weights, evaluation data)."""
    return fingerprint((name, tensors[name]) for name in sorted(tensors))[:16]


def value_digest(value: Any) -> int:
    """A signed 64-bit digest of a JSON-able value (settings compared across processes)."""
    text = json.dumps(value, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little", signed=True)
