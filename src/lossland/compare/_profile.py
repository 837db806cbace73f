"""The loss along a path between two models (a curve, or a straight line) as a 1-D surface in
t: per point the evaluation contract's sums over the whole evaluation set (loss, its standard
error, accuracy), with BatchNorm statistics recomputed at each t where the model has any."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lossland.compare._align import recompute_batchnorm
from lossland.compare._curve import Curve
from lossland.core import reduce_sums, resolve_device
from lossland.engine import Evaluator, accumulate, batchnorms, eval_data, resolve_evaluator
from lossland.errors import LosslandError, arg
from lossland.io import Surface, load_state_into

PathAt = Callable[[float], Mapping[str, Tensor]]


def straight(start: Mapping[str, Tensor], end: Mapping[str, Tensor]) -> PathAt:
    """The line (1 − t)·θ_A + t·θ_B (integer buffers A's)."""

    def at(t: float) -> dict[str, Tensor]:
        return {
            k: torch.lerp(v, end[k].to(v), float(t)) if v.is_floating_point() else v
            for k, v in start.items()
        }

    return at


def profile(
    model: nn.Module,
    path: Curve | PathAt,
    data: Any,
    *,
    points: int = 21,
    evaluator: Evaluator | None = None,
    loss: Any = None,
    bn_data: Any = None,
    batch_size: int = 256,
    samples: int | None = None,
    split: str = "custom",
    device: str | torch.device = "auto",
    attrs: Mapping[str, Any] | None = None,
) -> Surface:
    """The loss along ``path`` (a :class:`Curve` or ``t -> state dict``) at ``points`` values
    of t evenly spaced on [0, 1], evaluated on ``data``; a model with BatchNorm gets its
    statistics recomputed on ``bn_data`` (default: ``data``) at every t. ``attrs`` are
    recorded; the surface's kind is "models" (a path between checkpoints: its barrier)."""
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise LosslandError(f"{arg('points')} must be a whole number ≥ 2, got {points!r}")
    at = path.state_at if isinstance(path, Curve) else path
    where = resolve_device(device)
    run = resolve_evaluator(evaluator, loss)
    net = copy.deepcopy(model).to(where)
    has_bn = bool(batchnorms(net))
    if has_bn and bn_data is None:
        bn_data = data
    batches = eval_data(data, batch_size=batch_size, device=where, samples=samples)
    ts = np.linspace(0.0, 1.0, points)
    sums = []
    for t in ts:
        load_state_into(net, at(float(t)), source=f"the path at t = {t:g}")
        if has_bn:
            recompute_batchnorm(net, bn_data, evaluator=run, batch_size=batch_size)
        sums.append(_sums(net, batches.batches(), run))
    values = reduce_sums(np.stack(sums))
    recorded = {
        "directions_kind": "models",
        "axis_labels": ["t along the path (0 is A, 1 is B)", ""],
        "bn": "recompute" if has_bn else "eval",
        "samples": batches.samples,
        **dict(attrs or {}),
    }
    return Surface.of(ts, None, values, np.ones(points, dtype=bool), split=split, attrs=recorded)


@torch.no_grad()
def _sums(net: nn.Module, batches: Any, run: Evaluator) -> np.ndarray:
    net.eval()
    total: Tensor | None = None
    for batch in batches:
        total = accumulate(total, run.stats(run.run(net, batch), batch))
    if total is None:
        raise LosslandError(f"{arg('data')} holds no batches to evaluate the path on")
    return total.double().cpu().numpy()
