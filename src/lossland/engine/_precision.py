"""Numerical precision of the forward pass: true fp32, TF32 (CUDA), or bf16.

bf16 is not autocast: the engine runs a bf16 copy of the network whose weights are cast from
the exact θ(α, β) at each point (measured on the write-up's VGG, batch 32, a Xeon with AMX-BF16:
fp32 98–101 ms per forward, bf16 autocast 48–51 ms, the whole model in bf16 28–32 ms), and
computes the losses from float32 logits in float64 sums.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn

from lossland.engine._copy import BNMode
from lossland.errors import LosslandError, arg

Precision = Literal["fp32", "tf32", "bf16"]


def check_precision(device: torch.device, precision: Precision) -> None:
    """TF32 exists on CUDA only: a one-line error elsewhere (checked before a run starts)."""
    if precision == "tf32" and device.type != "cuda":
        raise LosslandError("precision tf32 needs a CUDA device: use fp32 or bf16 on this device")


@contextlib.contextmanager
def precision_mode(device: torch.device, precision: Precision) -> Iterator[None]:
    """fp32 is true fp32 (TF32 off on CUDA); tf32 allows TF32 matmuls and convolutions."""
    if device.type == "cuda":
        matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    else:
        check_precision(device, precision)
        yield


def use_channels_last(model: nn.Module, device: torch.device) -> bool:
    """channels_last pays off for conv nets on CPU (oneDNN) and CUDA (cuDNN), not on MPS."""
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return has_conv and device.type in ("cpu", "cuda")


# --- the rules that tie options together: each written once, here --------------------------


def network_dtype(precision: Precision, dtype: torch.dtype) -> torch.dtype:
    """The dtype the network runs in, and its input data: bf16 runs a bf16 copy of the network
    on bf16 data (the grid arithmetic stays in ``dtype``); otherwise ``dtype``."""
    return torch.bfloat16 if precision == "bf16" else dtype


def layout_channels_last(channels_last: bool, points_per_batch: int) -> bool:
    """Whether the network and its data are laid out channels_last: as asked for one point per
    forward; K > 1 points per forward (vmap over the points) run contiguous."""
    return channels_last and points_per_batch == 1


def one_point_only(bn: BNMode, sem_target: float | None) -> str | None:
    """Why these options evaluate one point per forward (K = 1), or None where K is free: a
    standard-error target that stops each point on its own, or BatchNorm statistics recomputed
    per point (the first that applies). The caller adds the fix: set ``points_per_batch`` to 1."""
    if sem_target is not None:
        return f"{arg('sem_target')} stops each point on its own"
    if bn == "recompute":
        return f"{arg('bn')} recompute evaluates one point at a time"
    return None
