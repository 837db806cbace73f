"""The settings of a surface run, with their defaults: the one place they are defined.

:func:`lossland.surface` takes each as a keyword (``None``: this default) or all of them as a
``SurfaceOptions``; the command line makes one flag per field. Adding a setting is a field
here and a keyword of :func:`lossland.surface`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from lossland.core import AT_LEAST_1, SEEDS, Bounds, Scheme, check_fields, option
from lossland.directions import Ignore, Norm
from lossland.engine import BNMode, Precision

DType = Literal["float32", "float64"]
MemoryFormat = Literal["auto", "channels_last", "contiguous"]
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True, kw_only=True)
class SurfaceOptions:
    """How a surface is computed (``None`` where lossland chooses for you)."""

    norm: Norm = option("filter", "direction normalization (random directions)")
    ignore: Ignore = option("biasbn", "biasbn: biases and BatchNorm get zero directions")
    orthogonalize: bool = option(False, "Gram-Schmidt the y direction against x")
    seed: int = option(0, "seed for the random directions and the sample subset", bounds=SEEDS)
    scheme: Scheme = option("li", "interpolation scheme")
    bn: BNMode = option(
        "eval", "BatchNorm: running stats (eval), batch stats (train) or recomputed per point"
    )
    batch_size: int = option(1024, "evaluation batch size", bounds=AT_LEAST_1)
    device: str = option("auto", "cpu, cuda, cuda:1, mps or auto")
    dtype: DType = option("float32", "evaluation dtype")
    precision: Precision = option("fp32", "fp32, tf32 (CUDA) or bf16 autocast")
    points_per_batch: int | None = option(
        None,
        "grid points per batched forward (vmap); default: 1 on CPU, from free memory on GPU",
        bounds=Bounds(1, 4096),
    )
    compile: bool = option(False, "torch.compile the forward (CUDA graphs on GPU)")
    memory_format: MemoryFormat = option(
        "auto", "memory format for convolutions (auto: channels_last on CPU/CUDA for conv nets)"
    )
    checkpoint_every: float = option(
        5.0, "seconds between atomic progress checkpoints", bounds=Bounds(0)
    )
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        check_fields(self)  # choices and the bounds declared above
