"""Optimizer paths on a stored loss surface: drop a ball at ``start`` and let an optimizer roll it.

The surface is a grid of losses; :class:`~lossland.analysis.Interpolant` turns it into a
differentiable function of (x, y) (cubic or bilinear, see :mod:`lossland.analysis._interpolant`)
so that PyTorch's own optimizers (``torch.optim.SGD``, ``Adam``, ``NAdam``, ``RMSprop``) can step
a 2-element float64 tensor on it.

Rules, mirrored exactly by the viewer's ``optimizers.js`` (a test compares both to 1e-5):

* ±inf losses are replaced by the largest finite loss (as :meth:`Surface.values`); points
  not evaluated (``done`` false) and evaluated NaN losses are holes. The interpolant is undefined
  wherever the grid values it reads include a hole; a path that steps there stops and says so.
* A step that leaves the grid ends the path at the point where the step crosses the grid's
  edge, with ``stopped`` saying so; a step to a non-finite position ends it as diverged.
* ``log=True`` descends on the interpolant of ln(loss), not on the loss. The logarithm of a loss
  <= 0 is undefined, and shifting the surface to make it positive would change the gradient the
  optimizer sees, so a surface with a finite loss <= 0 is refused with a clear error.
* 1-D surfaces are refused: a path needs two coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from lossland.analysis._interpolant import Grid, Interpolant, Interpolation, surface_grid
from lossland.core import check_needs, descent_needs, progress_bar
from lossland.errors import LosslandError, arg
from lossland.io import MAX_STEPS, OptimizerPath, Surface

if TYPE_CHECKING:
    import torch

OptimizerName = Literal["sgd", "momentum", "nesterov", "adam", "nadam", "rmsprop"]
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)
DEFAULT_LR = 0.1

# The hyper-parameters each optimizer accepts and their defaults: PyTorch's, except the write-up's
# NAdam betas (0.99, 0.999), and momentum 0.9 for "momentum"/"nesterov" (PyTorch's 0 would make
# them plain SGD). Flags are stored as 0/1 so every value is a float. The viewer embeds this table,
# so the page and Python cannot disagree on a default.
HYPER_DEFAULTS: Mapping[str, Mapping[str, float]] = {
    "sgd": {"weight_decay": 0.0},
    "momentum": {"momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0},
    "nesterov": {"momentum": 0.9, "weight_decay": 0.0},
    "adam": {
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "amsgrad": 0.0,
        "decoupled_weight_decay": 0.0,
    },
    "nadam": {
        "beta1": 0.99,
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum_decay": 4e-3,
        "decoupled_weight_decay": 0.0,
    },
    "rmsprop": {
        "alpha": 0.99,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum": 0.0,
        "centered": 0.0,
    },
}
FLAGS = frozenset({"amsgrad", "centered", "decoupled_weight_decay"})
# Allowed ranges, (low, high, high inclusive): PyTorch would accept some of these values and
# silently misbehave (momentum 1 never forgets), so they are checked here with a clear message.
HYPER_RANGES: Mapping[str, tuple[float, float, bool]] = {
    "momentum": (0.0, 1.0, False),
    "dampening": (0.0, 1.0, True),
    "beta1": (0.0, 1.0, False),
    "beta2": (0.0, 1.0, False),
    "alpha": (0.0, 1.0, False),
    "eps": (0.0, math.inf, False),
    "weight_decay": (0.0, math.inf, False),
    "momentum_decay": (0.0, math.inf, False),
}


def resolve_hyper(optimizer: str, hyper: Mapping[str, float]) -> dict[str, float]:
    """The optimizer's full hyper-parameters: its defaults updated with ``hyper``, validated."""
    if optimizer not in HYPER_DEFAULTS:
        raise LosslandError(f"unknown optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    defaults = HYPER_DEFAULTS[optimizer]
    unknown = sorted(set(hyper) - set(defaults))
    if unknown:
        raise LosslandError(
            f"{optimizer} has no hyper-parameter {', '.join(unknown)}: "
            f"it takes {', '.join(defaults) or 'none'}"
        )
    out = dict(defaults)
    for name, raw in hyper.items():
        value = float(raw)
        if name in FLAGS:
            if value not in (0.0, 1.0):
                raise LosslandError(f"{name} is a flag: give true/false (1/0), not {raw!r}")
        else:
            low, high, closed = HYPER_RANGES[name]
            ok = (
                math.isfinite(value)
                and low <= value
                and (value <= high if closed else value < high)
            )
            if not ok:
                bracket = "]" if closed else ")"
                raise LosslandError(
                    f"{name} must lie in [{low:g}, {high:g}{bracket}, got {value:g}: "
                    "choose another value"
                )
        out[name] = value
    if optimizer == "nesterov" and out["momentum"] <= 0:
        raise LosslandError(f"nesterov needs a momentum > 0: give {arg('momentum')} 0.9 or use sgd")
    return out


def _make_optimizer(
    name: str, params: list[torch.Tensor], lr: float, h: Mapping[str, float]
) -> torch.optim.Optimizer:
    import torch

    # foreach=False: the single-tensor code path, whose update order optimizers.js mirrors.
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=h["weight_decay"], foreach=False)
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=h["momentum"],
            dampening=h.get("dampening", 0.0),
            weight_decay=h["weight_decay"],
            nesterov=name == "nesterov",
            foreach=False,
        )
    if name == "adam":
        # AdamW is Adam with decoupled weight decay in every supported torch version.
        cls = torch.optim.AdamW if h["decoupled_weight_decay"] else torch.optim.Adam
        return cls(
            params,
            lr=lr,
            betas=(h["beta1"], h["beta2"]),
            eps=h["eps"],
            weight_decay=h["weight_decay"],
            amsgrad=bool(h["amsgrad"]),
            foreach=False,
        )
    if name == "nadam":
        return torch.optim.NAdam(
            params,
            lr=lr,
            betas=(h["beta1"], h["beta2"]),
            eps=h["eps"],
            weight_decay=h["weight_decay"],
            momentum_decay=h["momentum_decay"],
            decoupled_weight_decay=bool(h["decoupled_weight_decay"]),
            foreach=False,
        )
    return torch.optim.RMSprop(
        params,
        lr=lr,
        alpha=h["alpha"],
        eps=h["eps"],
        weight_decay=h["weight_decay"],
        momentum=h["momentum"],
        centered=bool(h["centered"]),
        foreach=False,
    )


def default_label(optimizer: str, lr: float, hyper: Mapping[str, float]) -> str:
    """``"nadam lr=0.1"`` plus any hyper-parameter that differs from its default."""
    parts = [f"{optimizer} lr={lr:g}"]
    defaults = HYPER_DEFAULTS.get(optimizer, {})
    for name, value in hyper.items():
        if defaults.get(name) != value:
            parts.append(name if name in FLAGS and value else f"{name}={value:g}")
    return " ".join(parts)


def edge_point(
    p: tuple[float, float], q: tuple[float, float], bounds: tuple[float, float, float, float]
) -> tuple[float, float]:
    """Where the segment from ``p`` (inside the grid) to ``q`` (outside) crosses the grid's edge."""
    lows, highs = (bounds[0], bounds[2]), (bounds[1], bounds[3])
    s = 1.0
    for a in range(2):
        if q[a] < lows[a]:
            s = min(s, (lows[a] - p[a]) / (q[a] - p[a]))
        elif q[a] > highs[a]:
            s = min(s, (highs[a] - p[a]) / (q[a] - p[a]))
    # Clamp: rounding must not put the edge point a hair outside the grid.
    e = [min(max(p[a] + s * (q[a] - p[a]), lows[a]), highs[a]) for a in range(2)]
    return e[0], e[1]


def descend(
    surface: Surface,
    *,
    start: tuple[float, float],
    optimizer: OptimizerName = "nadam",
    lr: float = DEFAULT_LR,
    steps: int = 30,
    log: bool = False,
    interpolation: Interpolation = "cubic",
    label: str | None = None,
    **hyper: float,
) -> OptimizerPath:
    """Run ``steps`` steps of a PyTorch optimizer on the interpolated surface from ``start``.

    The path stops early, saying why in ``stopped``, when a step leaves the grid (the last
    point is then on the edge), reaches a hole (not evaluated, or NaN), or diverges.

    Args:
        surface: a complete 2-D surface.
        start: the (x, y) to start from.
        optimizer: one of :data:`OPTIMIZERS` ("sgd", "adam", "nadam", ...).
        lr, steps: the learning rate and the number of steps.
        log: descend on ln(loss); the returned losses are in loss units either way.
        interpolation: how the surface is interpolated between grid points.
        label: the path's name in figures and files (default: the optimizer and its settings).
        **hyper: the optimizer's hyper-parameters (see :data:`HYPER_DEFAULTS`: momentum,
            dampening, beta1, beta2, eps, weight_decay, alpha, momentum_decay, and the flags
            amsgrad, centered, decoupled_weight_decay).

    Returns:
        The :class:`lossland.io.OptimizerPath`: points, losses, settings and why it stopped.

    Raises:
        LosslandError: a surface that cannot be descended (1-D, no finite loss, log of a
            non-positive loss), a start off the grid, or a hyper-parameter the optimizer does
            not take or out of its range.

    Example:
        >>> path = lossland.descend(s, start=(0.8, -0.5), optimizer="adam", lr=0.05)
        >>> lossland.write_paths([path], "paths.json")
    """
    return descend_grid(
        surface_grid(surface),
        start=start,
        optimizer=optimizer,
        lr=lr,
        steps=steps,
        log=log,
        interpolation=interpolation,
        label=label,
        **hyper,
    )


def descend_grid(
    grid: Grid,
    *,
    start: tuple[float, float],
    optimizer: str = "nadam",
    lr: float = DEFAULT_LR,
    steps: int = 30,
    log: bool = False,
    interpolation: Interpolation = "cubic",
    label: str | None = None,
    **hyper: float,
) -> OptimizerPath:
    """:func:`descend` on a prepared :class:`Grid` (to run many paths on one surface)."""
    import torch

    h = resolve_hyper(optimizer, hyper)
    f = Interpolant(grid, interpolation=interpolation, log=log)
    sx, sy = float(start[0]), float(start[1])
    _check_descent(f, sx, sy, lr, steps)
    param = torch.tensor([sx, sy], dtype=torch.float64, requires_grad=True)
    opt = _make_optimizer(optimizer, [param], lr, h)
    value = f(param)
    if not torch.isfinite(value):
        raise LosslandError(
            f"start ({sx:g}, {sy:g}) lies on a hole of the surface (points not evaluated, or NaN): "
            "choose another start or finish computing the surface"
        )
    points = [(sx, sy)]
    values = [float(value.detach())]
    stopped: str | None = None
    for step in range(1, steps + 1):
        (param.grad,) = torch.autograd.grad(value, param)
        opt.step()
        qx, qy = param.detach().tolist()
        if not (math.isfinite(qx) and math.isfinite(qy)):
            stopped = f"diverged at step {step}"
            break
        if not f.contains(qx, qy):
            stopped = f"left the grid at step {step}"
            ex, ey = edge_point(points[-1], (qx, qy), f.bounds)
            edge_value = f.value(ex, ey)
            if math.isfinite(edge_value):
                points.append((ex, ey))
                values.append(edge_value)
            break
        value = f(param)
        if not torch.isfinite(value):
            stopped = f"reached a hole (not evaluated, or NaN) at step {step}"
            break
        points.append((qx, qy))
        values.append(float(value.detach()))
    settings: dict[str, Any] = {
        "start": [sx, sy],
        "optimizer": optimizer,
        "lr": lr,
        "steps": steps,
        "log": log,
        "interpolation": interpolation,
        **{k: bool(v) if k in FLAGS else v for k, v in h.items()},
    }
    return OptimizerPath(
        points=np.array(points, dtype=np.float64).reshape(-1, 2),
        losses=np.array([f.raw(v) for v in values], dtype=np.float64),
        optimizer=optimizer,
        label=label if label is not None else default_label(optimizer, lr, h),
        stopped=stopped,
        settings=settings,
    )


def _check_descent(f: Interpolant, sx: float, sy: float, lr: float, steps: int) -> None:
    if not (math.isfinite(lr) and lr > 0):
        raise LosslandError(
            f"the learning rate must be positive, got {lr:g}: choose another {arg('lr')}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= MAX_STEPS:
        raise LosslandError(
            f"steps must be a whole number in 0..{MAX_STEPS}, got {steps!r}: choose another "
            f"{arg('steps')}"
        )
    x0, x1, y0, y1 = f.bounds
    if not f.contains(sx, sy):
        raise LosslandError(
            f"start ({sx:g}, {sy:g}) lies outside the grid x {x0:g}..{x1:g}, y {y0:g}..{y1:g}: "
            "choose a start inside it"
        )


def parse_start(text: str) -> tuple[float, float]:
    """``"0.5,-0.25"`` → (0.5, -0.25), with a one-line error naming the fix otherwise."""
    parts = text.replace(" ", "").split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise LosslandError(
            f"malformed start {text!r}: give x,y such as {arg('start')} 0.5,-0.25"
        ) from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise LosslandError(
            f"{arg('start')} {text!r} is not finite: give x,y such as {arg('start')} 0.5,-0.25"
        )
    return x, y


def descend_all(
    grid: Grid,
    *,
    starts: Sequence[tuple[float, float]],
    optimizers: Sequence[str] = ("nadam",),
    lrs: Sequence[float] = (DEFAULT_LR,),
    steps: int = 30,
    log: bool = False,
    interpolation: Interpolation = "cubic",
    hyper: Mapping[str, float] | None = None,
    allow_large: bool = False,
    progress: bool = True,
) -> list[OptimizerPath]:
    """Every combination of start, optimizer and learning rate; ``hyper`` goes to the
    optimizers that take each hyper-parameter (one that none of them takes is an error).
    More than lossland's limit of optimizer steps in all (1e6) needs ``allow_large``;
    ``progress`` shows a bar over the paths' steps."""
    for name in optimizers:
        if name not in OPTIMIZERS:
            raise LosslandError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
    if not starts:
        raise LosslandError(f"give a start point: {arg('start')} x,y (e.g. 0.5,0.5)")
    given = dict(hyper or {})
    for name in given:
        if not any(name in HYPER_DEFAULTS[o] for o in optimizers):
            takers = [o for o in OPTIMIZERS if name in HYPER_DEFAULTS[o]]
            raise LosslandError(
                f"{arg(name)} does not apply to {', '.join(optimizers)}: it is for "
                f"{', '.join(takers)}"
            )
    count = len(starts) * len(optimizers) * len(lrs)
    check_needs(descent_needs(paths=count, steps=steps), allow_large=allow_large)
    bar = progress_bar(count * steps, desc="paths", unit="step", enabled=progress)
    paths = []
    for start in starts:
        for optimizer in optimizers:
            for lr in lrs:
                own = {k: v for k, v in given.items() if k in HYPER_DEFAULTS[optimizer]}
                label = default_label(optimizer, lr, resolve_hyper(optimizer, own))
                if len(starts) > 1:
                    label += f" from ({start[0]:g}, {start[1]:g})"
                paths.append(
                    descend_grid(
                        grid,
                        start=start,
                        optimizer=optimizer,
                        lr=lr,
                        steps=steps,
                        log=log,
                        interpolation=interpolation,
                        label=label,
                        **own,
                    )
                )
                if bar is not None:
                    bar.update(steps)
    if bar is not None:
        bar.close()
    return paths
