"""Device choice (``auto`` picks CUDA, then MPS, then the CPU; a named device must exist) and
the evaluation dtypes an option may name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import torch

from lossland.errors import LosslandError, arg

DType = Literal["float32", "float64"]  # the evaluation dtypes options name
DTYPES: Mapping[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LosslandError(
            f"unknown {arg('device')} {name!r}: use cpu, cuda, cuda:N, mps or auto"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise LosslandError(
                f"{arg('device')} {name} asked for, but CUDA is not available: "
                f"set {arg('device')} to cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise LosslandError(
                f"{arg('device')} {name} asked for, but only {torch.cuda.device_count()} CUDA "
                "devices "
                "exist"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise LosslandError(
            f"{arg('device')} {name} asked for, but MPS is not available: "
            f"set {arg('device')} to cpu"
        )
    return device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def torch_dtype(dtype: DType | torch.dtype, *, name: str = "dtype") -> torch.dtype:
    """The torch dtype an option names (``"float32"``); a torch dtype as it is. An unknown name
    is a one-line error naming API argument ``name``."""
    if isinstance(dtype, torch.dtype):
        return dtype
    found = DTYPES.get(dtype) if isinstance(dtype, str) else None
    if found is None:
        raise LosslandError(
            f"unknown {arg(name)} {dtype!r}: choose one of {', '.join(get_args(DType))}"
        )
    return found
