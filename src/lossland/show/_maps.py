"""2-D maps of a surface: contour lines, filled contours and the heat map."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from lossland.io import Surface
from lossland.show._scales import (
    _DRAWN,
    _caption,
    _check_map,
    _colorbar,
    _Drawn,
    _edges,
    _frame,
    _map_size,
    _Scale,
    _title,
    loss_text,
    loss_values,
)
from lossland.show._style import Aspect, MapKind, PlotStyle, _figure, _Options
from lossland.show._text import draws_text
from lossland.show._topology_figures import critical_points

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.cm import ScalarMappable


@draws_text
def contour(
    surface: Surface,
    ax: Axes | None = None,
    *,
    log: bool = False,
    levels: int = 30,
    cmap: str | None = None,
    zmax: float | None = None,
    colorbar: bool = True,
    labels: bool = True,
    caption: bool = False,
    title: str | None = None,
    aspect: Aspect = "equal",
    style: PlotStyle | None = None,
    critical_points: bool = False,
) -> Axes:
    """Contour lines, every few levels labelled with its loss.

    ``labels`` names the axes and the colour bar and labels the levels; ``title=None`` derives
    the title from the attributes and ``title=""`` draws none; ``cmap`` and ``style`` default to
    ``PlotStyle.default()``'s; ``critical_points`` marks the minima and saddles of the
    surface's topology (see :func:`critical_points`).
    """
    o = _Options(log, levels, cmap, zmax, colorbar, labels, caption, title, aspect, style)
    return _draw_map(surface, ax, "contour", replace(o, critical_points=critical_points))


@draws_text
def contourf(
    surface: Surface,
    ax: Axes | None = None,
    *,
    log: bool = False,
    levels: int = 30,
    cmap: str | None = None,
    zmax: float | None = None,
    colorbar: bool = True,
    labels: bool = True,
    caption: bool = False,
    title: str | None = None,
    aspect: Aspect = "equal",
    style: PlotStyle | None = None,
    critical_points: bool = False,
) -> Axes:
    """Filled contours (options as :func:`contour`)."""
    o = _Options(log, levels, cmap, zmax, colorbar, labels, caption, title, aspect, style)
    return _draw_map(surface, ax, "contourf", replace(o, critical_points=critical_points))


@draws_text
def heatmap(
    surface: Surface,
    ax: Axes | None = None,
    *,
    log: bool = False,
    cmap: str | None = None,
    zmax: float | None = None,
    colorbar: bool = True,
    labels: bool = True,
    caption: bool = False,
    title: str | None = None,
    aspect: Aspect = "equal",
    style: PlotStyle | None = None,
) -> Axes:
    """One cell per grid point, centred on it (options as :func:`contour`; any grid size,
    1 × 1 and 1 × N included)."""
    # No contour levels in a heat map: 2 is only the smallest value the options check accepts.
    o = _Options(log, 2, cmap, zmax, colorbar, labels, caption, title, aspect, style)
    return _draw_map(surface, ax, "heatmap", o)


def _draw_map(surface: Surface, ax: Axes | None, kind: MapKind, o: _Options) -> Axes:
    style = o.style or PlotStyle.default()
    _check_map(surface, kind, o)
    values = loss_values(surface, log=o.log, zmax=o.zmax)
    scale = _Scale.of(values, log=o.log)
    if ax is None:
        ax = _figure(*_map_size(surface, kind, o, style), style).add_subplot()
    cmap = o.cmap or style.cmap
    if kind == "heatmap":
        mappable = _mesh(ax, surface, values, scale, cmap)
    else:
        mappable = _contours(ax, surface, values, scale, cmap, kind, o, style)
    _frame(ax, surface, kind, o, style)
    if o.colorbar:
        _colorbar(ax, mappable, surface, scale, o, style)
    _title(ax, surface, o.title, style)
    if o.caption:
        _caption(ax, surface, style)
    _DRAWN[ax] = _Drawn(surface, scale, o.zmax, style, floor=None)
    if o.critical_points:
        critical_points(ax, surface, style=style)
    return ax


def _contours(
    ax: Axes,
    surface: Surface,
    values: np.ndarray,
    scale: _Scale,
    cmap: str,
    kind: MapKind,
    o: _Options,
    style: PlotStyle,
) -> ScalarMappable:
    from matplotlib.cm import ScalarMappable

    x_grid, y_grid = surface.grid()
    masked = np.ma.masked_invalid(values)
    levels = scale.levels(o.levels)
    if kind == "contourf":
        return ax.contourf(x_grid, y_grid, masked, levels=levels, cmap=cmap, norm=scale.norm())
    if scale.constant:  # no level crosses a constant surface: only the colour bar says its value
        return ScalarMappable(norm=scale.norm(), cmap=cmap)
    lines = ax.contour(
        x_grid,
        y_grid,
        masked,
        levels=levels,
        cmap=cmap,
        norm=scale.norm(),
        linewidths=style.line_width,
    )
    if o.labels:
        ax.clabel(
            lines,
            _labelled(np.asarray(lines.levels), scale),
            fontsize=0.85 * style.tick_size,
            fmt=lambda v: loss_text(v, digits=2),
            colors="0.15",  # the lines' own colours fade to white in the middle of coolwarm
        )
    return lines


def _labelled(levels: np.ndarray, scale: _Scale) -> np.ndarray:
    """The levels that carry a label: on a log scale those at the colour bar's ticks (within
    1 %), otherwise about six evenly spread ones."""
    if not scale.log:
        return levels[:: max(1, len(levels) // 6)]
    # Distances as differences of logs: a ratio of levels 600 decades apart overflows.
    logs = np.log(levels)
    nearest = (levels[np.argmin(np.abs(logs - math.log(tick)))] for tick in scale.ticks())
    return np.unique(
        [
            v
            for v, tick in zip(nearest, scale.ticks(), strict=True)
            if abs(math.log(v) - math.log(tick)) < 0.01
        ]
    )


def _mesh(
    ax: Axes, surface: Surface, values: np.ndarray, scale: _Scale, cmap: str
) -> ScalarMappable:
    assert surface.y is not None
    # Rasterized: a grid of cells is an image, and thousands of vector quads bloat a PDF.
    return ax.pcolormesh(
        _edges(surface.x),
        _edges(surface.y),
        np.ma.masked_invalid(values),
        cmap=cmap,
        norm=scale.norm(),
        shading="flat",
        rasterized=True,
    )
