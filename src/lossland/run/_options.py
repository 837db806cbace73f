"""The settings of a surface run, with their defaults: the one place they are defined.

:func:`lossland.surface` takes each as a keyword (``None``: this default) or all of them as a
``SurfaceOptions``; the command line makes one flag per field. Adding a setting is a field
here and a keyword of :func:`lossland.surface`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from lossland.core import Scheme, check_choices, option
from lossland.directions import Ignore, Norm
from lossland.engine import BNMode, DataMode, Precision
from lossland.errors import LosslandError, arg

DType = Literal["float32", "float64"]
MemoryFormat = Literal["auto", "channels_last", "contiguous"]
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True, kw_only=True)
class SurfaceOptions:
    """How a surface is computed (``None`` where lossland chooses for you)."""

    norm: Norm = option("filter", "direction normalization (random directions)")
    ignore: Ignore = option(
        "biasbn",
        "biasbn: biases and BatchNorm γ/β get zero directions; none: the weights themselves",
    )
    orthogonalize: bool = option(False, "Gram-Schmidt the y direction against x")
    seed: int = option(0, "seed for the random directions and the sample subset")
    scheme: Scheme = option("li", "interpolation scheme")
    bn: BNMode = option(
        "eval", "BatchNorm: running stats (eval), batch stats (train) or recomputed per point"
    )
    batch_size: int = option(1024, "evaluation batch size")
    device: str = option("auto", "cpu, cuda, cuda:1, mps or auto")
    dtype: DType = option("float32", "evaluation dtype")
    precision: Precision = option("fp32", "fp32, tf32 (CUDA) or bf16 autocast")
    points_per_batch: int | None = option(
        None, "grid points per batched forward (vmap); default: 1 on CPU, from free memory on GPU"
    )
    compile: bool = option(False, "torch.compile the forward (CUDA graphs on GPU)")
    memory_format: MemoryFormat = option(
        "auto", "memory format for convolutions (auto: channels_last on CPU/CUDA for conv nets)"
    )
    samples: int | None = option(None, "evaluate a seeded subset of this many samples (None: all)")
    data_mode: DataMode = option(
        "auto", "keep the data on the device (cached), move it per point (streamed), or choose"
    )
    sem_target: float | None = option(
        None,
        "stop each point once its standard error is below this fraction of its loss (e.g. 0.02),"
        " the data in a fixed seeded order; samples is then the most a point uses",
    )
    min_batches: int = option(2, "with sem_target: the fewest batches a point uses")
    refine: float | None = option(
        None,
        "adaptive refinement: evaluate a coarse grid, then only the points where interpolated "
        "ln(loss) could be off by more than this (e.g. 0.05); the rest are interpolated",
    )
    checkpoint_every: float = option(5.0, "seconds between atomic progress checkpoints")
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        check_choices(self)
        if self.batch_size < 1:
            raise LosslandError(f"{arg('batch_size')} must be at least 1, got {self.batch_size}")
        if self.sem_target is not None and not 0 < self.sem_target < 1:
            raise LosslandError(
                f"{arg('sem_target')} is a fraction of the loss, e.g. 0.02; got {self.sem_target}"
            )
        if self.refine is not None and not 0 < self.refine < 10:
            raise LosslandError(
                f"{arg('refine')} is a tolerance in ln(loss), e.g. 0.05; got {self.refine}"
            )
        if self.min_batches < 1:
            raise LosslandError(f"{arg('min_batches')} must be at least 1, got {self.min_batches}")
        if self.sem_target is not None and (self.points_per_batch or 1) > 1:
            raise LosslandError(
                f"{arg('sem_target')} stops each point on its own: set {arg('points_per_batch')} "
                "to 1"
            )
        if self.points_per_batch is not None and self.points_per_batch < 1:
            raise LosslandError(
                f"{arg('points_per_batch')} must be at least 1, got {self.points_per_batch}"
            )
