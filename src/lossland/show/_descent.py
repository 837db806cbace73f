"""Optimizer paths on a stored loss surface: drop a ball at ``start`` and let an optimizer roll it.

The surface is a grid of losses; :class:`Interpolant` turns it into a differentiable function of
(x, y) so that PyTorch's own optimizers (``torch.optim.SGD``, ``Adam``, ``NAdam``, ``RMSprop``)
can step a 2-element float64 tensor on it. Two interpolations:

* ``cubic`` (default): a tensor-product cubic Hermite spline whose node slopes are centred
  differences ((z[k+1] - z[k-1]) / (x[k+1] - x[k-1]); one-sided at the edges), which is
  Catmull-Rom on a uniform grid. It passes through every grid value and has a continuous
  gradient, so paths are smooth. It reads the 4x4 grid values around the point.
* ``bilinear``: passes through every grid value, reads the 2x2 cell around the point; its gradient
  jumps at cell borders, so paths kink there.

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

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from lossland.core import check_needs, descent_needs, json_default, printable, progress_bar
from lossland.errors import LosslandError, arg
from lossland.io import (
    Surface,
    atomic_write_bytes,
    check_output,
    log_loss,
    not_a_file,
    parse_json,
    parse_json_object,
)

if TYPE_CHECKING:
    import torch

OptimizerName = Literal["sgd", "momentum", "nesterov", "adam", "nadam", "rmsprop"]
Interpolation = Literal["cubic", "bilinear"]
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)
DEFAULT_LR = 0.1
# Steps of one path at most: 1e5 steps take seconds and write a few MB; more is a typo (10^8
# steps would take a day and write gigabytes).
MAX_STEPS = 100_000

# The hyper-parameters each optimizer accepts and their defaults: PyTorch's, except the seed's
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

PATHS_FORMAT = "lossland-paths"
CSV_COLUMNS = ("path", "label", "optimizer", "step", "x", "y", "loss", "stopped", "settings")


@dataclass(frozen=True)
class OptimizerPath:
    """One descent: the points visited (start included) and the loss at each."""

    points: np.ndarray  # (T+1, 2) x, y positions including the start
    losses: np.ndarray  # (T+1,) interpolated (raw, not log) loss at each point
    optimizer: str
    label: str  # e.g. "nadam lr=0.1"
    stopped: str | None  # None, or why it stopped early (e.g. "left the grid at step 12")
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Steps actually taken (fewer than asked for when the path stopped early)."""
        return len(self.points) - 1

    def summary(self) -> str:
        x, y = self.points[-1]
        steps = f"{self.steps} step" + ("" if self.steps == 1 else "s")
        end = f"{printable(self.label)}: {steps} to ({x:.4g}, {y:.4g}), loss {self.losses[-1]:.6g}"
        return end if self.stopped is None else f"{end} ({self.stopped})"


# --- the grid ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """What a path descends on: increasing coordinates and losses with holes as NaN."""

    x: np.ndarray  # (nx,) strictly increasing
    y: np.ndarray  # (ny,) strictly increasing
    loss: np.ndarray  # (ny, nx) losses as drawn: ±inf replaced, holes (not evaluated, NaN) NaN


def surface_grid(surface: Surface) -> Grid:
    """The surface as a :class:`Grid` (coordinates flipped to increasing where needed); one
    with no finite loss is refused: there is nothing to descend on."""
    if surface.y is None:
        raise LosslandError(
            f"optimizer paths need a 2-D surface and this one is 1-D: compute one with {arg('y')}"
        )
    x = np.asarray(surface.x, dtype=np.float64)
    y = np.asarray(surface.y, dtype=np.float64)
    values = surface.values()
    if len(x) < 2 or len(y) < 2:
        raise LosslandError(
            f"optimizer paths need at least 2 grid points per axis, the surface has "
            f"{len(x)}x{len(y)}: compute a larger grid"
        )
    values.require("descend on")
    loss = values.loss
    # Reference files may store decreasing coordinates; the interpolant wants increasing ones.
    if x[0] > x[-1]:
        x, loss = x[::-1], loss[:, ::-1]
    if y[0] > y[-1]:
        y, loss = y[::-1], loss[::-1, :]
    if not (np.all(np.diff(x) > 0) and np.all(np.diff(y) > 0)):
        raise LosslandError(
            "the surface's coordinates are not strictly monotonic: "
            "recompute it with lossland surface"
        )
    return Grid(np.ascontiguousarray(x), np.ascontiguousarray(y), np.ascontiguousarray(loss))


def _cell(nodes: np.ndarray, value: float) -> int:
    """Index k of the cell [nodes[k], nodes[k+1]] holding value (the last cell for the end)."""
    k = int(np.searchsorted(nodes, value, side="right")) - 1
    return min(max(k, 0), len(nodes) - 2)


class Interpolant:
    """A differentiable function of (x, y) through the grid values (see the module docstring)."""

    def __init__(self, grid: Grid, *, interpolation: Interpolation = "cubic", log: bool = False):
        if interpolation not in INTERPOLATIONS:
            raise LosslandError(
                f"unknown interpolation {interpolation!r}: use one of {', '.join(INTERPOLATIONS)}"
            )
        self.grid = grid
        self.interpolation = interpolation
        self.log = log
        self.values = log_loss(grid.loss) if log else grid.loss

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, xmax, ymin, ymax)."""
        x, y = self.grid.x, self.grid.y
        return float(x[0]), float(x[-1]), float(y[0]), float(y[-1])

    def contains(self, x: float, y: float) -> bool:
        x0, x1, y0, y1 = self.bounds
        return x0 <= x <= x1 and y0 <= y <= y1

    def _axis(self, nodes: np.ndarray, v: torch.Tensor) -> tuple[list[int], torch.Tensor]:
        """Grid indices read along one axis and their weights as differentiable functions of v."""
        import torch

        n = len(nodes)
        k = _cell(nodes, float(v.detach()))
        x0, x1 = float(nodes[k]), float(nodes[k + 1])
        h = x1 - x0
        t = (v - x0) / h
        if self.interpolation == "bilinear":
            return [k, k + 1], torch.stack([1 - t, t])
        lo, hi = max(k - 1, 0), min(k + 2, n - 1)
        dl = x1 - float(nodes[lo])  # the slope at x0 is (z[k+1] - z[lo]) / dl
        dr = float(nodes[hi]) - x0  # the slope at x1 is (z[hi] - z[k]) / dr
        t2 = t * t
        t3 = t2 * t
        h00 = 2 * t3 - 3 * t2 + 1
        h10 = t3 - 2 * t2 + t
        h01 = -2 * t3 + 3 * t2
        h11 = t3 - t2
        weights = [-h * h10 / dl, h00 - h * h11 / dr, h01 + h * h10 / dl, h * h11 / dr]
        return [lo, k, k + 1, hi], torch.stack(weights)

    def __call__(self, xy: torch.Tensor) -> torch.Tensor:
        """The interpolated value at ``xy`` (a float64 tensor of 2); NaN where undefined.

        ``xy`` must lie inside the grid (see :meth:`contains`).
        """
        import torch

        ix, wx = self._axis(self.grid.x, xy[0])
        iy, wy = self._axis(self.grid.y, xy[1])
        block = self.values[np.ix_(iy, ix)]
        if not np.isfinite(block).all():
            return torch.tensor(math.nan, dtype=torch.float64)
        return wy @ torch.from_numpy(block) @ wx

    def value(self, x: float, y: float) -> float:
        """The interpolated value at (x, y) as a float (NaN outside the grid or in a hole)."""
        import torch

        if not self.contains(x, y):
            return math.nan
        return float(self(torch.tensor([x, y], dtype=torch.float64)).detach())

    def raw(self, value: float) -> float:
        """An interpolated value back in loss units (undoes the log)."""
        return math.exp(value) if self.log else value


# --- descent -----------------------------------------------------------------------------------


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

    ``hyper`` takes the optimizer's hyper-parameters (see :data:`HYPER_DEFAULTS`: momentum,
    dampening, beta1, beta2, eps, weight_decay, alpha, momentum_decay, and the flags amsgrad,
    centered, decoupled_weight_decay). ``log`` descends on ln(loss); the returned losses are in
    loss units either way. The path stops early, saying why in ``stopped``, when a step leaves the
    grid (the last point is then on the edge), reaches a hole (not evaluated, or NaN), or diverges.
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


# --- files -------------------------------------------------------------------------------------


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def write_paths(
    paths: Sequence[OptimizerPath], file: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write paths as CSV or JSON (by the suffix), atomically; an existing ``file`` is replaced
    only with ``overwrite``.

    CSV: one row per point with columns path, label, optimizer, step, x, y, loss, stopped,
    settings; ``stopped`` and ``settings`` (JSON) are filled on each path's first row only.
    JSON: ``{"format": "lossland-paths", "version": 1, "paths": [{label, optimizer, stopped,
    settings, points, losses}]}``. Floats are written in full precision.
    """
    file = Path(file)
    kind = path_file_kind(file)
    if not paths:
        raise LosslandError(f"there are no paths to write: give at least one {arg('start')}")
    check_output(file, overwrite=overwrite)
    if kind == "json":
        doc = {
            "format": PATHS_FORMAT,
            "version": 1,
            "paths": [
                {
                    "label": p.label,
                    "optimizer": p.optimizer,
                    "stopped": p.stopped,
                    "settings": dict(p.settings),
                    "points": [[float(a), float(b)] for a, b in p.points],
                    "losses": [_finite_or_none(float(v)) for v in p.losses],
                }
                for p in paths
            ],
        }
        text = json.dumps(doc, indent=1, allow_nan=False, default=json_default) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for index, p in enumerate(paths):
            settings = json.dumps(dict(p.settings), sort_keys=True, default=json_default)
            for step, ((x, y), loss) in enumerate(zip(p.points, p.losses, strict=True)):
                first = step == 0
                writer.writerow(
                    [
                        index,
                        p.label,
                        p.optimizer,
                        step,
                        repr(float(x)),
                        repr(float(y)),
                        repr(float(loss)),
                        (p.stopped or "") if first else "",
                        settings if first else "",
                    ]
                )
        text = buffer.getvalue()
    atomic_write_bytes(file, text.encode())
    return file


def path_file_kind(file: Path) -> Literal["csv", "json"]:
    suffix = file.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise LosslandError(f"path file {file} must end in .csv or .json: rename it")
    return "csv" if suffix == ".csv" else "json"


# What one path file may hold, checked before the figures and pages that draw it: the longest
# path `lossland path` writes (MAX_STEPS + 1 points) twenty times over, at most MAX_PATHS paths
# (a legend of more is unreadable; 20,000 took 14 minutes to draw), and ~200 bytes per point of
# text (a CSV row is about 110, a JSON point about 85).
MAX_PATHS = 1_000
MAX_PATH_POINTS = 20 * (MAX_STEPS + 1)
MAX_PATH_FILE_BYTES = 200 * MAX_PATH_POINTS


def read_paths(file: str | os.PathLike[str]) -> list[OptimizerPath]:
    """Read a CSV or JSON path file (as :func:`write_paths` writes them).

    A hand-made CSV needs only x and y columns (one path); ``path`` splits rows into several
    paths and ``loss`` gives the losses (NaN where absent). A UTF-8 byte-order mark is allowed.
    A file may hold at most :data:`MAX_PATHS` paths, :data:`MAX_PATH_POINTS` points and
    :data:`MAX_PATH_FILE_BYTES` bytes, checked before anything is drawn.
    """
    file = Path(file)
    kind = path_file_kind(file)
    if not file.is_file():
        raise LosslandError(
            f"path file {file} {not_a_file(file)}: check the path or write it with lossland path"
        )

    def fail(problem: str) -> LosslandError:
        return LosslandError(f"path file {file} {problem}: write it again with lossland path")

    try:
        size = file.stat().st_size
        if size > MAX_PATH_FILE_BYTES:
            raise fail(f"has {size:,} bytes, more than the {MAX_PATH_FILE_BYTES:,} it may hold")
        text = file.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is not text
    except (OSError, UnicodeDecodeError) as exc:
        raise LosslandError(f"cannot read path file {file} ({exc}): check the file") from None
    paths = _read_json(text, fail) if kind == "json" else _read_csv(text, fail, file.stem)
    if not paths:
        raise fail("holds no paths")
    return paths


def _number(value: Any, fail: Any, what: str) -> float:
    if value is None or value == "":
        return math.nan
    if isinstance(value, bool):
        raise fail(f"has a non-numeric {what} {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise fail(f"has a non-numeric {what} {_shown(value)}") from None
    except OverflowError:  # an integer of hundreds of digits
        raise fail(f"has {what} {_shown(value)} beyond the range of a float") from None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_counts(paths: int, points: int, fail: Any) -> None:
    if paths > MAX_PATHS:
        raise fail(f"holds more than {MAX_PATHS:,} paths")
    if points > MAX_PATH_POINTS:
        raise fail(f"holds more than {MAX_PATH_POINTS:,} points")


def _read_json(text: str, fail: Any) -> list[OptimizerPath]:
    doc = parse_json(text, fail, what="text")
    if not isinstance(doc, dict) or not isinstance(doc.get("paths"), list):
        raise fail('has no "paths" list')
    items = doc["paths"]
    counted = [len(i["points"]) for i in items if isinstance(i, dict) and _is_list(i.get("points"))]
    _check_counts(len(items), sum(counted), fail)
    return [_json_path(i, item, fail) for i, item in enumerate(items)]


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _json_path(i: int, item: Any, fail: Any) -> OptimizerPath:
    if not isinstance(item, dict):
        raise fail(f"has path {i} that is not an object")
    raw_points = item.get("points")
    if not isinstance(raw_points, list) or not raw_points:
        raise fail(f'has path {i} without "points"')
    if not all(isinstance(p, list) and len(p) == 2 for p in raw_points):
        raise fail(f"has path {i} with points that are not [x, y] pairs")
    points = np.array(
        [[_number(a, fail, "x"), _number(b, fail, "y")] for a, b in raw_points],
        dtype=np.float64,
    )
    if not np.isfinite(points).all():
        raise fail(f"has a missing or non-finite x or y in path {i}")
    raw_losses = item.get("losses", [None] * len(raw_points))
    if not isinstance(raw_losses, list) or len(raw_losses) != len(raw_points):
        raise fail(f"has path {i} whose losses do not match its points")
    losses = np.array([_number(v, fail, "loss") for v in raw_losses], dtype=np.float64)
    settings = item.get("settings", {})
    if not isinstance(settings, dict):
        raise fail(f"has path {i} whose settings are not an object")
    stopped = item.get("stopped")
    optimizer = str(item.get("optimizer", ""))
    return OptimizerPath(
        points=points,
        losses=losses,
        optimizer=optimizer,
        label=str(item.get("label", optimizer or f"path {i}")),
        stopped=None if stopped in (None, "") else str(stopped),
        settings=settings,
    )


def _read_csv(text: str, fail: Any, stem: str) -> list[OptimizerPath]:
    """Rows grouped by their ``path`` column, counted as they are read (a file of too many
    points or paths stops at the first row past the limit)."""
    reader = csv.DictReader(io.StringIO(text))
    groups: dict[str, tuple[dict[str, str], list[tuple[float, float, float]]]] = {}
    try:
        # Names as a person types them: "x, y" has a column "y".
        if not reader.fieldnames:
            raise fail("has no rows")
        reader.fieldnames = [name.strip() for name in reader.fieldnames]
        for needed in ("x", "y"):
            if needed not in reader.fieldnames:
                raise fail(f"has no {needed} column")
        for count, row in enumerate(reader, 1):
            key = row.get("path") or "0"
            values = groups.setdefault(key, (row, []))[1]
            values.append(
                (
                    _number(row["x"], fail, "x"),
                    _number(row["y"], fail, "y"),
                    _number(row.get("loss"), fail, "loss"),
                )
            )
            _check_counts(len(groups), count, fail)
    except csv.Error as exc:
        raise fail(f"is not valid CSV ({exc})") from None
    if not groups:
        raise fail("has no rows")
    names = {key: stem if len(groups) == 1 else f"{stem} {key}" for key in groups}
    return [_csv_path(key, *group, names[key], fail) for key, group in groups.items()]


def _csv_path(
    key: str,
    first: Mapping[str, str | None],
    values: list[tuple[float, float, float]],
    default: str,
    fail: Any,
) -> OptimizerPath:
    table = np.array(values, dtype=np.float64).reshape(-1, 3)
    points = table[:, :2]
    if not np.isfinite(points).all():
        raise fail(f"has a missing or non-finite x or y in path {key}")
    settings = parse_json_object(
        first.get("settings") or "{}", fail, what=f"settings in path {key}"
    )
    optimizer = first.get("optimizer") or ""
    return OptimizerPath(
        points=np.ascontiguousarray(points),
        losses=np.ascontiguousarray(table[:, 2]),
        optimizer=optimizer,
        label=first.get("label") or default,
        stopped=first.get("stopped") or None,
        settings=settings,
    )
