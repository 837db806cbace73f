"""BatchNorm statistics of the evaluation set, whatever its batching (``bn="recompute"``).

A train-mode pass with ``momentum=None`` averages the batches' statistics with equal weights
(a short last batch counts as much as a full one) and misses the spread between the batches'
means, so its statistics depend on the batch size. Here each BatchNorm layer, in the order the
forward reaches them, gets the mean and the unbiased variance of its input over the whole set
(float64, batches combined by their element counts: Chan et al.'s pairwise update), with the
layers before it already holding theirs: the statistics the evaluated (eval-mode) network
really sees. A pass stops at the layer it measures, so the cost is about L/2 forward passes
per point for L BatchNorm layers. A layer the forward calls more than once (shared) is measured
at its first call; one the first batch never reaches keeps the reset statistics (mean 0,
variance 1).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from torch import Tensor, nn

Batch = Any
Norm = nn.modules.batchnorm._BatchNorm


class _Reached(Exception):
    """Raised by the measuring hook: the rest of the forward is not needed."""


class _Moments:
    """Per-channel count, mean and sum of squared deviations, in float64."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def add(self, x: Tensor) -> None:
        # x (B, C, ...) → (C, B·...): a channel's values across the batch and positions.
        values = x.detach().transpose(0, 1).reshape(x.shape[1], -1).double()
        n = values.shape[1]
        mean = values.mean(dim=1)
        m2 = ((values - mean[:, None]) ** 2).sum(dim=1)
        if self.mean is None or self.m2 is None:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.n * n / total)
        self.n = total

    def store(self, norm: Norm) -> None:
        assert self.mean is not None and self.m2 is not None and self.n > 1
        assert norm.running_mean is not None and norm.running_var is not None
        norm.running_mean.copy_(self.mean)
        norm.running_var.copy_(self.m2 / (self.n - 1))  # unbiased, as BatchNorm keeps it
        if norm.num_batches_tracked is not None:
            norm.num_batches_tracked.fill_(1)


def call_order(net: nn.Module, run: Callable[[Batch], Any], batch: Batch) -> list[Norm]:
    """The BatchNorm layers with running statistics, in the order one forward reaches them
    (a layer called twice is listed once)."""
    reached: list[Norm] = []

    def hook(module: nn.Module, _: Any) -> None:
        if module not in reached:
            reached.append(module)  # type: ignore[arg-type]

    norms = [m for m in net.modules() if isinstance(m, Norm) and m.running_mean is not None]
    handles = [m.register_forward_pre_hook(hook) for m in norms]
    try:
        run(batch)
    finally:
        for h in handles:
            h.remove()
    return reached + [m for m in norms if m not in reached]


def dataset_statistics(
    net: nn.Module,
    batches: Callable[[], Iterable[Batch]],
    run: Callable[[Batch], Any],
    order: list[Norm],
) -> None:
    """Set every BatchNorm in ``order`` to the statistics of its input over ``batches()``
    (see the module docstring); the network is left in eval mode."""
    net.eval()
    for norm in order:
        norm.reset_running_stats()
    for norm in order:
        moments = _Moments()

        def measure(module: nn.Module, inputs: tuple[Tensor, ...], m: _Moments = moments) -> None:
            m.add(inputs[0])
            raise _Reached

        handle = norm.register_forward_pre_hook(measure)
        try:
            for batch in batches():
                with contextlib.suppress(_Reached):
                    run(batch)
        finally:
            handle.remove()
        if moments.n > 1:  # a layer never reached (or one value per channel) keeps its reset
            moments.store(norm)
