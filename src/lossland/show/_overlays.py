"""What is drawn over a map: optimizer paths, training trajectories and their legend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lossland.analysis import surface_grid
from lossland.io import OptimizerPath, Surface
from lossland.show._scales import _DRAWN, _Drawn
from lossland.show._style import TRAJECTORY_MARKERS, PlotStyle, _figure_of, _root, path_colour
from lossland.show._text import as_written, draws_text, glyph_notes, legend_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@draws_text
def paths(
    ax: Axes,
    optimizer_paths: Sequence[OptimizerPath],
    *,
    surface: Surface | None = None,
    style: PlotStyle | None = None,
) -> Axes:
    """Optimizer paths: a line from a circle (start) to a cross (end), coloured by position in
    the list. On 3-D axes the paths lie on the drawn surface (its heights under the points, from
    ``surface`` or the surface drawn on ``ax``) with their shadows on the floor."""
    _draw_paths(ax, optimizer_paths, surface, style)
    _legend(ax, _DRAWN.get(ax), style)
    return ax


@draws_text
def trajectories(ax: Axes, surface: Surface, *, style: PlotStyle | None = None) -> Axes:
    """The surface's training trajectories (projected checkpoints), black with a hollow marker
    per run and the last checkpoint filled (stars are the minima); lifted onto the surface on
    3-D axes."""
    drawn = _DRAWN.get(ax)
    style = style or (drawn.style if drawn else PlotStyle.default())
    width = style.path_width
    for k, (name, points) in enumerate(surface.trajectories.items()):
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(pts) == 0:
            continue
        marker = TRAJECTORY_MARKERS[k % len(TRAJECTORY_MARKERS)]
        coords = _coords(ax, drawn, surface, pts, None)
        ax.plot(
            *coords,
            "-",
            marker=marker,
            color="black",
            lw=width,
            ms=style.marker_size * 0.7,
            mfc="white",
            mew=0.6 * width,
            label=legend_label(name if _compared(surface) else f"training: {name}"),
            zorder=4,
            path_effects=_halo(width),
        )
        ax.plot(
            *(c[-1:] for c in coords),
            marker,
            color="black",
            ms=style.marker_size * 1.3,
            mec="white",
            mew=0.6 * width,
            zorder=5,
        )
    _legend(ax, drawn, style)
    return ax


def _compared(surface: Surface) -> bool:
    """Paths that are not training runs: a curve and the line, or models projected onto the
    plane (:mod:`lossland.run._curves`), drawn under their own names."""
    return "curve" in surface.attrs or "projected" in surface.attrs


def _draw_paths(
    ax: Axes,
    optimizer_paths: Sequence[OptimizerPath],
    surface: Surface | None,
    style: PlotStyle | None,
) -> None:
    drawn = _DRAWN.get(ax)
    style = style or (drawn.style if drawn else PlotStyle.default())
    surface = surface or (drawn.surface if drawn else None)
    width = style.path_width
    for i, path in enumerate(optimizer_paths):
        pts = np.asarray(path.points, dtype=np.float64).reshape(-1, 2)
        if len(pts) == 0:
            continue
        colour = path_colour(i)
        coords = _coords(ax, drawn, surface, pts, np.asarray(path.losses, dtype=np.float64))
        ax.plot(
            *coords,
            "-",
            color=colour,
            lw=width,
            label=legend_label(path.label),
            zorder=4,
            path_effects=_halo(width),
        )
        ends = {"o": slice(0, 1), "X": slice(-1, None)}  # start, end
        for marker, at in ends.items():
            ax.plot(
                *(c[at] for c in coords),
                marker,
                color=colour,
                mec="white",
                ms=style.marker_size * 1.2,
                mew=0.7,
                zorder=5,
            )
        if ax.name == "3d" and drawn is not None and drawn.floor is not None:
            shadow = np.full(len(pts), drawn.floor)
            ax.plot(pts[:, 0], pts[:, 1], shadow, ":", color=colour, lw=0.7 * width, zorder=0.6)


def _coords(
    ax: Axes,
    drawn: _Drawn | None,
    surface: Surface | None,
    pts: np.ndarray,
    losses: np.ndarray | None,
) -> tuple[np.ndarray, ...]:
    """(x, y) on 2-D axes; (x, y, height) on 3-D axes, on the drawn surface where known."""
    if ax.name != "3d":
        return pts[:, 0], pts[:, 1]
    raw = losses if losses is not None else np.full(len(pts), np.nan)
    if surface is not None and surface.y is not None and min(surface.loss.shape) >= 2:
        # The mesh is drawn through the grid values: bilinear heights keep a path on it,
        # where a path's own (cubic) losses can dip under the mesh and vanish.
        raw = _bilinear(surface, pts)
    if drawn is not None:
        if drawn.zmax is not None:
            raw = np.minimum(raw, drawn.zmax)
        raw = drawn.scale.height(raw)
    return pts[:, 0], pts[:, 1], raw


def _bilinear(surface: Surface, pts: np.ndarray) -> np.ndarray:
    """Bilinear loss under each point (inf replaced, holes and outside the grid NaN)."""
    grid = surface_grid(surface)
    x, y = pts[:, 0], pts[:, 1]
    i = np.clip(np.searchsorted(grid.x, x, side="right") - 1, 0, len(grid.x) - 2)
    j = np.clip(np.searchsorted(grid.y, y, side="right") - 1, 0, len(grid.y) - 2)
    tx = (x - grid.x[i]) / (grid.x[i + 1] - grid.x[i])
    ty = (y - grid.y[j]) / (grid.y[j + 1] - grid.y[j])
    z = grid.loss
    value = (1 - ty) * ((1 - tx) * z[j, i] + tx * z[j, i + 1]) + ty * (
        (1 - tx) * z[j + 1, i] + tx * z[j + 1, i + 1]
    )
    inside = (x >= grid.x[0]) & (x <= grid.x[-1]) & (y >= grid.y[0]) & (y <= grid.y[-1])
    return np.where(inside, value, np.nan)


def _halo(width: float) -> list[Any]:
    """A white outline, so a path stays visible over every colour of every colormap."""
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=width + 1.6, foreground="white")]


def _legend(ax: Axes, drawn: _Drawn | None, style: PlotStyle | None) -> None:
    style = style or (drawn.style if drawn else PlotStyle.default())
    handles, names = ax.get_legend_handles_labels()
    if handles:
        loc: Literal["upper left", "best"] = "upper left" if ax.name == "3d" else "best"
        ax.legend(handles, names, fontsize=style.legend_size, loc=loc, framealpha=0.85)


def _legend_below(ax: Axes, style: PlotStyle) -> Figure:
    """For the figures :func:`plot` owns: the legend in rows under the axes, outside the data
    (inside, it hides part of a short, wide plane), the figure taller by its height so the
    plane keeps its size. Returns the figure."""
    fig = _root(_figure_of(ax))
    inside = ax.get_legend()
    if inside is not None:
        inside.remove()
    handles, names = ax.get_legend_handles_labels()
    if handles:
        legend = fig.legend(
            handles,
            names,
            loc="outside lower center",
            ncols=min(len(handles), max(1, int(style.width / 1.6))),
            fontsize=style.legend_size,
            frameon=False,
            markerscale=0.8,
        )
        for text in legend.get_texts():  # drawn below, before any draws_text returns
            as_written(text)
        with glyph_notes(None):  # noted when the figure is saved
            fig.draw_without_rendering()  # the legend's size, as laid out
            height = legend.get_window_extent().height / fig.dpi
        fig.set_figheight(fig.get_figheight() + height + style.legend_size / 72)
    return fig
