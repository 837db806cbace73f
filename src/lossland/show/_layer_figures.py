"""The figure of a stack of per-layer surfaces (``surface(params_per_layer=...)``): one small
map per block on one colour scale (a plane), or one line per block on shared axes (a line), so
the blocks' sharpness compares at a glance."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from lossland.analysis import seed_surface
from lossland.errors import LosslandError, arg
from lossland.io import Surface
from lossland.show._scales import _Scale, check_drawable, loss_text
from lossland.show._text import draws_text, fitted

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLUMNS = 4  # panels per row
LABEL = 28  # characters of a block's name in a title or the legend


@draws_text
def layers_figure(surface: Surface, *, log: bool = False, zmax: float | None = None) -> Figure:
    """Every block's surface of a stack of layers: contour panels on one colour scale for a
    plane, lines on shared axes for a line (``log``: a logarithmic loss scale, used only
    where every block's drawn losses are positive); ``zmax`` clips the losses drawn."""
    stack = surface.stack
    if stack is None or stack.axis != "layers":
        raise LosslandError(
            f"the surface holds no stack of layers: compute it with {arg('params_per_layer')}"
        )
    blocks = [seed_surface(surface, k).values() for k in range(len(stack.layers))]
    drawable = [v for v in blocks if v.finite.any()]
    if not drawable:
        blocks[0].require("plot")
    log = log and all(v.positive for v in drawable)
    values = np.stack([v.loss for v in blocks])
    if zmax is not None:
        values = np.minimum(values, zmax)
    check_drawable(surface, values, log=log)
    names = [fitted(name, LABEL) for name in stack.layers]
    if surface.y is None:
        return _lines(surface.x, values, names, log=log)
    return _panels(surface, values, names, [bool(v.finite.any()) for v in blocks], log=log)


def _lines(x: np.ndarray, values: np.ndarray, names: list[str], *, log: bool) -> Figure:
    """(blocks, nx) losses as one line each; NaN (not evaluated) points left blank."""
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    for name, row in zip(names, values, strict=True):
        ax.plot(x, np.where(np.isfinite(row), row, np.nan), label=name, linewidth=1.2)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("x (each block's own direction)", fontsize=8)
    ax.set_ylabel("loss", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, ncols=max(1, math.ceil(len(names) / 12)), loc="best")
    return fig


def _panels(
    surface: Surface, values: np.ndarray, names: list[str], drawn: list[bool], *, log: bool
) -> Figure:
    """(blocks, ny, nx) losses as filled contours, COLUMNS a row, one colour bar."""
    from matplotlib.figure import Figure as MplFigure

    n = len(names)
    columns = min(n, COLUMNS)
    rows = math.ceil(n / columns)
    scale = _Scale.of(values[np.asarray(drawn)], log=log)
    levels = (
        scale.levels(2)
        if scale.constant
        else (np.geomspace if log else np.linspace)(scale.low, scale.high, 25)
    )
    fig = MplFigure(figsize=(2.4 * columns + 0.9, 2.3 * rows + 0.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    mesh = None
    for k, ax in enumerate(axes):
        if k >= n:
            ax.set_axis_off()
            continue
        if drawn[k]:
            mesh = ax.contourf(
                surface.x, surface.y, values[k], levels=levels, norm=scale.norm(), cmap="viridis"
            )
        ax.set_title(names[k] + ("" if drawn[k] else ": no finite loss"), fontsize=8)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=6)
        ax.set_xlabel("x", fontsize=7)
        if k % columns == 0:
            ax.set_ylabel("y", fontsize=7)
    assert mesh is not None
    bar = fig.colorbar(mesh, ax=list(axes[:n]), shrink=0.9, ticks=scale.ticks())
    bar.ax.set_yticklabels([loss_text(v) for v in bar.get_ticks()])
    bar.ax.set_title("loss", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return fig
