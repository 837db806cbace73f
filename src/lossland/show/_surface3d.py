"""The surface in 3-D, with its contours projected on the floor."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from lossland.errors import LosslandError
from lossland.io import Surface
from lossland.show._scales import (
    _DRAWN,
    _caption,
    _check_map,
    _Drawn,
    _Scale,
    _title,
    _zlabel,
    axis_labels,
    loss_text,
    loss_values,
)
from lossland.show._style import Aspect, PlotStyle, _figure, _figure_of, _Options
from lossland.show._text import draws_text

if TYPE_CHECKING:
    from mpl_toolkits.mplot3d.axes3d import Axes3D


@draws_text
def surface3d(
    surface: Surface,
    ax: Axes3D | None = None,
    *,
    log: bool = False,
    levels: int = 30,
    cmap: str | None = None,
    zmax: float | None = None,
    colorbar: bool = False,
    labels: bool = True,
    caption: bool = False,
    title: str | None = None,
    aspect: Aspect = "equal",
    style: PlotStyle | None = None,
) -> Axes3D:
    """The surface in 3-D with its contours projected on the floor; ``ax`` must be a 3-D Axes
    (one is created when None). The height is ln(loss) with ``log``, its ticks in loss units;
    ``aspect="equal"`` keeps x and y in proportion; the colour bar is off by default (the z axis
    already reads the loss)."""
    o = _Options(log, levels, cmap, zmax, colorbar, labels, caption, title, aspect, style)
    style = style or PlotStyle.default()
    _check_map(surface, "3d", o)
    if ax is not None and ax.name != "3d":
        raise LosslandError("surface3d() needs a 3-D Axes: fig.add_subplot(projection='3d')")
    values = loss_values(surface, log=log, zmax=zmax)
    scale = _Scale.of(values, log=log)
    if ax is None:
        fig = _figure(style.width, 0.82 * style.width, style)
        ax = fig.add_subplot(projection="3d", computed_zorder=False)
    # Overlays set their own zorder above the surface; matplotlib's depth sort would hide them.
    ax.computed_zorder = False
    floor = _draw_3d(ax, surface, values, scale, o, style)
    _frame_3d(ax, surface, scale, o, style)
    _title(ax, surface, title, style)
    if caption:
        _caption(ax, surface, style)
    _DRAWN[ax] = _Drawn(surface, scale, zmax, style, floor=floor)
    return ax


def _draw_3d(
    ax: Axes3D, surface: Surface, values: np.ndarray, scale: _Scale, o: _Options, style: PlotStyle
) -> float:
    """The mesh and the floor contours; returns the floor's height."""
    from matplotlib.colors import Normalize

    x_grid, y_grid = surface.grid()
    heights = scale.height(values)
    low, high = (float(v) for v in scale.height(np.array([scale.low, scale.high])))
    floor = low - 0.3 * (high - low)
    norm = Normalize(low, high)
    cmap = o.cmap or style.cmap
    mesh = ax.plot_surface(
        x_grid,
        y_grid,
        np.ma.masked_invalid(heights),
        cmap=cmap,
        norm=norm,
        rstride=1,
        cstride=1,
        linewidth=0,
        antialiased=False,
    )
    if not scale.constant:
        ax.contour(
            x_grid,
            y_grid,
            np.ma.masked_invalid(heights),
            levels=np.linspace(low, high, o.levels),
            zdir="z",
            offset=floor,
            cmap=cmap,
            norm=norm,
            linewidths=style.line_width,
            zorder=0.5,  # the floor lies behind the surface from every view above it
        )
    ax.set_zlim(floor, high)
    if o.colorbar:
        bar = _figure_of(ax).colorbar(mesh, ax=ax, shrink=0.6, pad=0.08)
        bar.ax.tick_params(labelsize=style.tick_size)
        _height_ticks(bar.ax.yaxis, scale)
    return floor


def _height_ticks(axis: Any, scale: _Scale) -> None:
    """Ticks of a height axis at round losses inside the data (none on the floor below it),
    labelled in loss units: an ln(loss) axis reads 0.1, 1, 10."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    ticks = scale.ticks()
    axis.set_major_locator(FixedLocator([float(v) for v in scale.height(np.array(ticks))]))
    if scale.log:
        axis.set_major_formatter(FuncFormatter(lambda v, _: loss_text(math.exp(v))))


def _frame_3d(ax: Axes3D, surface: Surface, scale: _Scale, o: _Options, style: PlotStyle) -> None:
    from matplotlib.ticker import MaxNLocator

    assert surface.y is not None
    x_span = float(surface.x[-1] - surface.x[0])
    y_span = float(surface.y[-1] - surface.y[0])
    if o.aspect == "equal":
        longest = max(x_span, y_span)
        # Clamped so a very thin plane stays visible as a strip rather than a line.
        box = (max(x_span / longest, 0.15), max(y_span / longest, 0.15), 0.6)
    else:
        box = (1.0, 1.0, 0.7)
    # Matplotlib leaves a wide margin around a 3-D box; the labels need a fixed room in points,
    # so a narrow (paper) figure zooms out where a wide one zooms in.
    ax.set_box_aspect(box, zoom=min(max(0.6 + 0.07 * style.width, 0.8), 1.05))
    ax.set_xlim(float(surface.x[0]), float(surface.x[-1]))
    ax.set_ylim(float(surface.y[0]), float(surface.y[-1]))
    _height_ticks(ax.zaxis, scale)
    # Few ticks on the floor: at the corner the x and y tick labels would run into each other.
    steps = [1, 2, 2.5, 5, 10]  # round ticks (Axes3D's own locator picks steps such as 0.6)
    ax.xaxis.set_major_locator(MaxNLocator(5, steps=steps, prune="upper"))
    ax.yaxis.set_major_locator(MaxNLocator(4, steps=steps, prune="lower"))
    for axis in ("x", "y", "z"):
        ax.tick_params(axis=axis, labelsize=style.tick_size, pad=0)
    if o.labels:
        xl, yl = axis_labels(surface)
        pad = 0.6 * style.font_size  # clear of the tick labels, which 3-D axes do not avoid
        ax.set_xlabel(xl, fontsize=style.font_size, labelpad=pad)
        ax.set_ylabel(yl, fontsize=style.font_size, labelpad=pad)
        ax.set_zlabel(_zlabel(surface), fontsize=style.font_size, labelpad=pad)
    ax.view_init(elev=35, azim=-60)
