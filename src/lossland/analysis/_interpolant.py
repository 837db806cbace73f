"""A stored loss surface as a differentiable function of (x, y), for optimizers to descend on.

The surface is a grid of losses; :class:`Interpolant` turns it into a differentiable function of
(x, y) so that PyTorch's own optimizers (``torch.optim.SGD``, ``Adam``, ``NAdam``, ``RMSprop``)
can step a 2-element float64 tensor on it. Two interpolations:

* ``cubic`` (default): a tensor-product cubic Hermite spline whose node slopes are centred
  differences ((z[k+1] - z[k-1]) / (x[k+1] - x[k-1]); one-sided at the edges), which is
  Catmull-Rom on a uniform grid. It passes through every grid value and has a continuous
  gradient, so paths are smooth. It reads the 4x4 grid values around the point.
* ``bilinear``: passes through every grid value, reads the 2x2 cell around the point; its gradient
  jumps at cell borders, so paths kink there.

The rules of holes, edges and ``log`` are :mod:`lossland.analysis._descent`'s; the viewer's
``optimizers.js`` mirrors this interpolant exactly (a test compares both to 1e-5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

from lossland.errors import LosslandError, arg
from lossland.io import Surface, log_loss

if TYPE_CHECKING:
    import torch

Interpolation = Literal["cubic", "bilinear"]
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)


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
