"""The settings of a surface run, with their defaults: the one place they are defined.

:func:`lossland.surface` takes each as a keyword (``None``: this default) or all of them as a
``SurfaceOptions``; the command line makes one flag per field. Adding a setting is a field
here and a keyword of :func:`lossland.surface`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from lossland.core import (
    AT_LEAST_1,
    SEEDS,
    Bounds,
    DType,
    Params,
    Scheme,
    check_fields,
    option,
)
from lossland.directions import Ignore, Norm
from lossland.engine import (
    CACHE_FRACTION,
    BNMode,
    DataMode,
    Precision,
    one_point_only,
    shard_refusal,
)
from lossland.errors import LosslandError, arg

MemoryFormat = Literal["auto", "channels_last", "contiguous"]
MemoryMode = Literal["normal", "lean"]


@dataclass(frozen=True, kw_only=True)
class SurfaceOptions:
    """How a surface is computed (``None`` where lossland chooses for you)."""

    norm: Norm = option("filter", "direction normalization (random directions)")
    ignore: Ignore = option(
        "biasbn",
        "biasbn: biases and BatchNorm γ/β get zero directions; none: the weights themselves",
    )
    orthogonalize: bool = option(False, "Gram-Schmidt the y direction against x")
    params: Params | None = option(
        None,
        "the tensors that move (default: all): a glob over parameter names, repeatable (a "
        "leading ! excludes), 'trainable' (those that require grad, e.g. a LoRA adapter), or in "
        "the API a function (name, tensor) -> bool",
        repeat=True,
    )
    params_per_layer: str | Sequence[str] | None = option(
        None,
        "one surface per block of the model, each moving that block alone (random directions, "
        "the same grid and data), stacked along a layers axis in one file: 'auto' (the children "
        "of its nn.Sequential / nn.ModuleList of blocks, e.g. a transformer's layers) or a module "
        "name or glob per block, repeatable; params narrows every block",
        repeat=True,
    )
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
    offload: bool = option(
        False,
        "keep θ* on the host and re-anchor each row from it, for models that barely fit: the "
        "device holds the working copy and the two directions (3× the parameters) plus "
        "activations; the same surface",
    )
    shard: bool = option(
        False,
        "under torchrun, split the model across the processes (FSDP2): each holds its rows of "
        "every parameter, of θ* and of the directions, and all evaluate every point together",
    )
    shard_ranks: int | None = option(
        None,
        "with shard: how many processes share one copy of the model (a divisor of the job's; "
        "default: all of them); the groups take grid rows as single processes do",
        bounds=AT_LEAST_1,
    )
    memory: MemoryMode = option(
        "normal",
        "lean: random directions are not stored but redrawn from their recipe a block at a time "
        "at every point, so the device holds the model, one working copy and a block (scheme "
        "li, one point per forward; slower per point); normal: stored",
    )
    memory_format: MemoryFormat = option(
        "auto", "memory format for convolutions (auto: channels_last on CPU/CUDA for conv nets)"
    )
    samples: int | None = option(
        None, "evaluate a seeded subset of this many samples (None: all)", bounds=AT_LEAST_1
    )
    data_mode: DataMode = option(
        "auto", "keep the data on the device (cached), move it per point (streamed), or choose"
    )
    cache_fraction: float = option(
        CACHE_FRACTION,
        "the most of the free memory (the device's; the host's on the CPU) that data_mode auto "
        "caches, as a fraction; larger data is streamed",
        bounds=Bounds(0, 1, above=True),
    )
    sem_target: float | None = option(
        None,
        "stop each point once its standard error is below this fraction of its loss (e.g. 0.02),"
        " the data in a fixed seeded order; samples is then the most a point uses",
        bounds=Bounds(0, 1, above=True, below=True),
    )
    min_batches: int = option(
        2, "with sem_target: the fewest batches a point uses", bounds=AT_LEAST_1
    )
    refine: float | None = option(
        None,
        "adaptive refinement: evaluate a coarse grid, then only the points where a local "
        "estimate says interpolated ln(loss) could be off by more than this (e.g. 0.05); the "
        "rest are interpolated, and a sample of them evaluated to measure the error",
        bounds=Bounds(0, 10, above=True, below=True),
    )
    checkpoint_every: float = option(
        5.0,
        "seconds between atomic progress checkpoints (at least: a file that takes t > 0.5 "
        "seconds to save is saved at most every 10·t)",
        bounds=Bounds(0),
    )
    progress: bool = option(True, "show a progress bar")
    allow_large: bool = option(
        False,
        "run even when the estimated work is above lossland's limits (1e9 sample evaluations, "
        "1e7 grid points, 100 seeds); what cannot fit the memory or disk is refused either way",
    )

    def __post_init__(self) -> None:
        check_fields(self)  # choices and the bounds declared above
        if self.offload and self.scheme != "li":
            raise LosslandError(
                f"{arg('offload')} re-anchors from θ* once per row, {arg('scheme')} "
                f"{self.scheme} needs θ* on the device at every point: use {arg('scheme')} li "
                f"or drop {arg('offload')}"
            )
        refused = self.shard and shard_refusal(
            scheme=self.scheme,
            offload=self.offload,
            compile=self.compile,
            bn=self.bn,
            points_per_batch=self.points_per_batch,
        )
        if refused:
            raise LosslandError(f"{arg('shard')}: {refused}")
        if self.shard_ranks is not None and not self.shard:
            raise LosslandError(
                f"{arg('shard_ranks')} sizes the groups of {arg('shard')}: add {arg('shard')} "
                f"or drop {arg('shard_ranks')}"
            )
        if self.shard and self.memory_format == "channels_last":
            raise LosslandError(
                f"{arg('shard')} keeps FSDP's contiguous shards: set {arg('memory_format')} "
                "to auto or contiguous"
            )
        if self.memory == "lean":
            check_lean(self)
        if self.memory == "lean" and self.shard:
            raise LosslandError(
                f"{arg('memory')} lean redraws whole directions at every point, which "
                f"{arg('shard')} cuts into rows: use {arg('memory')} normal with {arg('shard')}"
            )
        reason = one_point_only(self.bn, self.sem_target)
        if reason is not None and (self.points_per_batch or 1) > 1:
            raise LosslandError(f"{reason}: set {arg('points_per_batch')} to 1")


def check_lean(options: SurfaceOptions) -> None:
    """What ``memory="lean"`` supports (random directions redrawn at every point, scheme li,
    one point per forward): anything else is refused in one line naming the fix."""
    lean = f"{arg('memory')} lean"
    if options.orthogonalize:
        raise LosslandError(
            f"{lean} redraws y as drawn, and orthogonalizing needs all of x: drop "
            f"{arg('orthogonalize')} or use {arg('memory')} normal"
        )
    if options.scheme != "li":
        raise LosslandError(
            f"{lean} evaluates scheme li (θ* + α·δ + β·η): use {arg('scheme')} li or "
            f"{arg('memory')} normal"
        )
    if (options.points_per_batch or 1) > 1:
        raise LosslandError(
            f"{lean} evaluates one point per forward: set {arg('points_per_batch')} to 1"
        )
    if options.offload:
        raise LosslandError(
            f"{lean} reads θ* where it is and stores no directions: drop {arg('offload')}"
        )
