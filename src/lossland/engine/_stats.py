"""The evaluation set and per-point statistics: Σ loss, Σ loss², Σ correct → mean, SE, accuracy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lossland.errors import LosslandError, arg

LossFn = Callable[[Tensor, Tensor], Tensor]
STATS = 3  # per point: Σ loss, Σ loss², Σ correct


@dataclass(frozen=True)
class EvalData:
    """The evaluation set, on the device once, in fixed batches."""

    batches: tuple[tuple[Tensor, Tensor], ...]
    count: int

    @classmethod
    def of(
        cls,
        inputs: Tensor,
        targets: Tensor,
        *,
        batch_size: int,
        device: torch.device,
        dtype: torch.dtype,
        channels_last: bool,
    ) -> EvalData:
        if len(inputs) != len(targets):
            raise LosslandError(
                f"{len(inputs)} inputs but {len(targets)} targets: pass equal counts"
            )
        if len(inputs) == 0:
            raise LosslandError("the evaluation set is empty: pass at least one sample")
        if batch_size < 1:
            raise LosslandError(f"batch size must be at least 1, got {batch_size}")
        x = inputs.to(device=device, dtype=dtype if inputs.is_floating_point() else None)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y = targets.to(device)
        batches = tuple(
            (x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)
        )
        return cls(batches, len(x))


def per_sample_losses(loss_fn: LossFn | None, logits: Tensor, targets: Tensor) -> Tensor:
    """(..., B) per-sample losses; a user loss returning a scalar counts as the batch mean."""
    if loss_fn is None:
        if logits.dtype not in (torch.float32, torch.float64):
            logits = logits.float()  # bf16 autocast output: the loss itself in fp32
        return F.cross_entropy(logits.flatten(0, -2), targets.reshape(-1), reduction="none").view(
            logits.shape[:-1]
        )
    losses = loss_fn(logits, targets)
    if not isinstance(losses, Tensor):
        raise TypeError(f"the loss returned {type(losses).__name__}, not a tensor")
    return losses


def point_stats(logits: Tensor, targets: Tensor, loss_fn: LossFn | None) -> Tensor:
    """(3,) float64 [Σ loss, Σ loss², Σ correct] for one batch; NaN where undefined."""
    losses = per_sample_losses(loss_fn, logits, targets).double()
    batch = targets.shape[0]
    if losses.dim() == 0:  # a batch mean: no per-sample spread, so no standard error
        total, squares = losses * batch, torch.full_like(losses, float("nan"))
    else:
        total, squares = losses.sum(), losses.square().sum()
    if logits.dim() == 2 and not targets.is_floating_point() and targets.dim() == 1:
        correct = (logits.argmax(dim=1) == targets).sum().double()
    else:
        correct = torch.full_like(total, float("nan"))
    return torch.stack((total, squares, correct))


def finish_stats(stats: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums → mean loss, standard error of the mean loss, accuracy."""
    mean = stats[..., 0] / count
    if count > 1:
        var = np.maximum(stats[..., 1] / count - mean**2, 0.0) * count / (count - 1)
        sem = np.sqrt(var / count)
    else:
        sem = np.full_like(mean, np.nan)
    return mean, sem, stats[..., 2] / count


def select_samples(
    inputs: Tensor, targets: Tensor, samples: str | int, seed: int, *, split: str = "split"
) -> tuple[Tensor, Tensor]:
    """A fixed, seeded subset (sorted indices), or everything for ``"all"``."""
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
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(inputs), generator=generator)[:n].sort().values
    return inputs[index], targets[index]
