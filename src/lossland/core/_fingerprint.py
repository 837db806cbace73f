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


def fingerprint(items: Iterable[tuple[str, Tensor]]) -> str:
    """Hex sha256 of ``(name, tensor)`` pairs in the order given (channels_last views are
    hashed in their logical NCHW order, so the layout does not change the result)."""
    digest = hashlib.sha256()
    for name, tensor in items:
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().data)  # no copy
    return digest.hexdigest()


def tensor_fingerprint(tensors: Mapping[str, Tensor]) -> str:
    """A short fingerprint of named tensors, in name order (weights, evaluation data)."""
    return fingerprint((name, tensors[name]) for name in sorted(tensors))[:16]


def value_digest(value: Any) -> int:
    """A signed 64-bit digest of a JSON-able value (settings compared across processes)."""
    text = json.dumps(value, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little", signed=True)
