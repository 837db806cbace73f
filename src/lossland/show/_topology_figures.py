"""Figures of a surface's sublevel-set topology (:mod:`lossland.analysis`): its critical points
on a map, the persistence diagram and the merge tree. The drawers of a :class:`Topology`
(``persistence_diagram``, ``draw_merge_tree``, ``mark_critical_points``) take any Axes; the
figures of a surface (``critical_points``, ``persistence``, ``merge_tree``,
``topology_figure``) read its topology and follow the style. Matplotlib is imported inside the
functions only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from lossland.analysis import Minimum, Topology, most_persistent, surface_topology
from lossland.errors import LosslandError
from lossland.io import Surface
from lossland.show._overlays import _legend
from lossland.show._scales import _DRAWN, loss_values
from lossland.show._style import PlotStyle, _figure
from lossland.show._text import draws_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_FloatArray = npt.NDArray[np.float64]


# --- drawers of a Topology ---------------------------------------------------------------------


def _new_axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    from matplotlib.figure import Figure  # not pyplot: no global figure registry

    return Figure().add_subplot()


def _loss_range(values: Sequence[float]) -> tuple[float, float]:
    """(bottom, top) padding the finite values; infinities are drawn at these edges."""
    finite = [v for v in values if math.isfinite(v)] or [0.0]
    low, high = min(finite), max(finite)
    # One value: a pad relative to it (an absolute 0.5 vanishes beside a loss of 1e17).
    pad = 0.05 * (high - low) or max(0.05 * abs(low), 0.5)
    return low - pad, high + pad


def _death(topology: Topology, m: Minimum) -> float:
    return math.inf if m.merge is None else topology.merges[m.merge].loss


def _clip(values: Sequence[float], bottom: float, top: float) -> _FloatArray:
    return np.clip(np.asarray(values, dtype=np.float64), bottom, top)


def persistence_diagram(topology: Topology, *, ax: Axes | None = None) -> Axes:
    """Birth (minimum's loss) against death (saddle's loss), one point per minimum.

    Immortal minima, and infinite values, sit on the top (or bottom) edge; immortal ones are
    triangles; minima whose barrier is within the noise (``significant`` False) are hollow.
    Draws a diagonal line and up to three point sets (none for an empty one); returns the Axes.
    """
    ax = _new_axes(ax)
    minima = topology.minima
    births = [m.loss for m in minima]
    deaths = [_death(topology, m) for m in minima]
    bottom, top = _loss_range(births + deaths)
    births_drawn, deaths_drawn = _clip(births, bottom, top), _clip(deaths, bottom, top)
    mortal = np.array([m.merge is not None for m in minima])
    noise = np.array([m.significant is False for m in minima])  # immortal ones never are
    ax.plot([bottom, top], [bottom, top], color="0.6", linewidth=1, label="death = birth")
    if (mortal & ~noise).any():  # no empty set: a legend lists only what is drawn
        shown = mortal & ~noise
        ax.scatter(births_drawn[shown], deaths_drawn[shown], s=18, label="minimum")
    if noise.any():
        ax.scatter(
            births_drawn[noise],
            deaths_drawn[noise],
            s=18,
            facecolors="none",
            edgecolors="C0",
            label=f"barrier ≤ {topology.k:g} SE",
        )
    ax.scatter(
        births_drawn[~mortal],
        deaths_drawn[~mortal],
        s=48,
        marker="^",
        color="crimson",
        clip_on=False,  # on the top edge: keep the whole triangle
        label="immortal",
    )
    ax.set_xlim(bottom, top)
    ax.set_ylim(bottom, top)
    ax.set_xlabel("birth (loss at the minimum)")
    ax.set_ylabel("death (loss at the saddle)")
    ax.legend(loc="lower right")
    return ax


def _leaf_order(topology: Topology) -> list[int]:
    """Minima in an order that draws the merge tree without crossings.

    Each minimum comes before the subtrees that die into it, lowest saddle first: a later
    connection is higher than every subtree it passes over. Iterative: chains can be long.
    """
    children: list[list[int]] = [[] for _ in topology.minima]
    for merge in topology.merges:  # death order: lowest saddle first
        children[merge.survivor].append(merge.dying)
    stack = [i for i, m in enumerate(topology.minima) if m.merge is None][::-1]
    order = []
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(reversed(children[node]))
    return order


def draw_merge_tree(topology: Topology, *, ax: Axes | None = None) -> Axes:
    """Dendrogram of the basins: minima along x, loss on y.

    A vertical line rises from each minimum to its saddle (immortal ones to the top edge);
    a horizontal line there joins it to the survivor. Draws two line collections and the
    minima; returns the Axes.
    """
    from matplotlib.collections import LineCollection

    ax = _new_axes(ax)
    minima, merges = topology.minima, topology.merges
    position = np.empty(len(minima))
    position[_leaf_order(topology)] = np.arange(len(minima))
    bottom, top = _loss_range([m.loss for m in minima] + [s.loss for s in merges])
    births = _clip([m.loss for m in minima], bottom, top)
    deaths = _clip([_death(topology, m) for m in minima], bottom, top)
    saddles = _clip([s.loss for s in merges], bottom, top)
    rises = [((p, b), (p, d)) for p, b, d in zip(position, births, deaths, strict=True)]
    joins = [
        ((position[s.dying], h), (position[s.survivor], h))
        for s, h in zip(merges, saddles, strict=True)
    ]
    ax.add_collection(LineCollection(rises, colors="0.2", linewidths=1))
    ax.add_collection(LineCollection(joins, colors="0.2", linewidths=1))
    ax.scatter(position, births, s=18, zorder=3, label="minimum")
    ax.set_xlim(-0.5, len(minima) - 0.5)
    ax.set_ylim(bottom, top)
    ax.set_xticks([])
    ax.set_xlabel("minima")
    ax.set_ylabel("loss")
    return ax


def mark_critical_points(
    topology: Topology,
    ax: Axes,
    *,
    max_points: int = 50,
    size: float = 1.0,
    significant_only: bool = False,
) -> Axes:
    """Mark minima and their saddles on an existing (contour) Axes, in data coordinates.

    Shows the ``max_points`` most persistent minima (see :func:`most_persistent`; the global
    one as a star, the rest as white-edged dots) and the saddles where the shown ones die
    (x markers), their areas scaled by ``size``. Draws up to three point sets, in that order
    (none for an empty one, so a legend lists only what is there), and keeps the Axes' view
    limits; returns the Axes.
    """
    shown, saddles = most_persistent(topology, max_points, significant_only=significant_only)
    best, dots = shown[0], shown[1:]
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    ax.scatter(
        [best.x],
        [best.y],
        s=180 * size,
        marker="*",
        color="gold",
        edgecolors="black",
        linewidths=0.8 * math.sqrt(size),
        zorder=5,
        clip_on=False,  # a minimum on the grid's edge is shown whole
        label="global minimum",
    )
    if dots:
        ax.scatter(
            [m.x for m in dots],
            [m.y for m in dots],
            s=30 * size,
            color="black",
            edgecolors="white",
            linewidths=1.2 * math.sqrt(size),
            zorder=4,
            clip_on=False,
            label="minimum",
        )
    if saddles:
        ax.scatter(
            [s.x for s in saddles],
            [s.y for s in saddles],
            s=40 * size,
            marker="x",
            color="crimson",
            linewidths=1.5 * math.sqrt(size),
            zorder=4,
            clip_on=False,
            label="saddle",
        )
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    return ax


# --- figures of a surface ----------------------------------------------------------------------


@draws_text
def critical_points(
    ax: Axes,
    surface: Surface,
    *,
    max_points: int = 20,
    significant_only: bool = True,
    style: PlotStyle | None = None,
) -> Axes:
    """The minima (the global one as a star) and the saddles where they merge, from the
    surface's sublevel-set topology (:func:`lossland.analysis.surface_topology`): the
    ``max_points`` most persistent minima and their saddles, on 2-D axes. With
    ``significant_only`` minima whose barrier is within twice its standard error are left
    out (all are shown when the surface has no standard errors)."""
    drawn = _DRAWN.get(ax)
    style = style or (drawn.style if drawn else PlotStyle.default())
    mark_critical_points(
        _topology_of(surface, zmax=drawn.zmax if drawn else None),  # as the map is drawn
        ax,
        max_points=max_points,
        size=(style.marker_size / PlotStyle.default().marker_size) ** 2,  # an area
        significant_only=significant_only,
    )
    _legend(ax, drawn, style)
    return ax


@draws_text
def persistence(
    surface: Surface,
    ax: Axes | None = None,
    *,
    title: str | None = None,
    style: PlotStyle | None = None,
) -> Axes:
    """The persistence diagram of the surface's minima: the loss where each basin is born
    (its minimum) against the loss where it dies (the saddle into an older basin)."""
    style = style or PlotStyle.default()
    found = _topology_of(surface)
    if ax is None:
        ax = _figure(style.width, 0.85 * style.width, style).add_subplot()
    persistence_diagram(found, ax=ax)
    _restyle(ax, style, "persistence diagram" if title is None else title)
    return ax


@draws_text
def merge_tree(
    surface: Surface,
    ax: Axes | None = None,
    *,
    title: str | None = None,
    style: PlotStyle | None = None,
) -> Axes:
    """The merge tree of the surface's basins: each minimum rises to the saddle where it
    joins an older basin."""
    style = style or PlotStyle.default()
    found = _topology_of(surface)
    if ax is None:
        ax = _figure(style.width, 0.85 * style.width, style).add_subplot()
    draw_merge_tree(found, ax=ax)
    _restyle(ax, style, "merge tree" if title is None else title)
    return ax


@draws_text
def topology_figure(
    surface: Surface,
    *,
    titles: bool = True,
    style: PlotStyle | None = None,
    zmax: float | None = None,
) -> Figure:
    """The persistence diagram and the merge tree side by side, in one new Figure; with
    ``zmax``, of the surface with its losses clipped there (basins merge at ``zmax`` at most)."""
    style = style or PlotStyle.default()
    found = _topology_of(surface, zmax=zmax)  # refuse before a figure is made
    fig = _figure(style.width, 0.62 * style.width, style)
    left, right = fig.subplots(1, 2)
    persistence_diagram(found, ax=left)
    draw_merge_tree(found, ax=right)
    _restyle(left, style, "persistence diagram" if titles else "")
    _restyle(right, style, "merge tree" if titles else "")
    return fig


def _topology_of(surface: Surface, *, zmax: float | None = None) -> Topology:
    loss_values(surface, zmax=zmax)  # the one refusal of surfaces with nothing to draw
    if zmax is not None:  # the clipped surface's own topology, not the file's
        clipped = replace(surface, loss=np.minimum(surface.loss, zmax))
        found = surface_topology(clipped, stored=False)
    else:
        found = surface_topology(surface)
    if found is None:
        raise LosslandError("topology figures need a 2-D surface and this one is 1-D: use line()")
    return found


def _restyle(ax: Axes, style: PlotStyle, title: str) -> None:
    """The style's font sizes on a topology panel (drawn by the drawers above)."""
    ax.tick_params(labelsize=style.tick_size)
    ax.xaxis.label.set_fontsize(style.font_size)
    ax.yaxis.label.set_fontsize(style.font_size)
    if ax.get_legend() is not None:  # drawn again: its frame and handles follow the font
        ax.legend(loc="lower right", fontsize=style.legend_size, framealpha=0.85)
    if title:
        ax.set_title(title, fontsize=style.title_size)
