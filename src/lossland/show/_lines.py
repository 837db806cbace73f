"""The figure of a 1-D surface: the loss with its ±2 SE band, and the accuracy."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lossland.analysis import comparison
from lossland.errors import LosslandError
from lossland.io import Surface
from lossland.show._scales import (
    _caption,
    _title,
    accuracy_percent,
    axis_labels,
    log_ticks,
    loss_name,
    loss_text,
    loss_values,
)
from lossland.show._style import ACC_COLOUR, LOSS_COLOUR, PATH_COLOURS, PlotStyle, _figure
from lossland.show._text import draws_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes


@draws_text
def line(
    surface: Surface,
    ax: Axes | None = None,
    *,
    log: bool = False,
    zmax: float | None = None,
    labels: bool = True,
    caption: bool = False,
    title: str | None = None,
    style: PlotStyle | None = None,
) -> Axes:
    """A 1-D surface: the loss with a ±2 SE band and, on a twin axis (0–100 %), the accuracy
    when any accuracy was recorded. ``log`` draws the loss on a log axis with ticks at round
    losses."""
    style = style or PlotStyle.default()
    if surface.y is not None:
        raise LosslandError(
            "line() draws a 1-D surface and this one is 2-D: use contour(), contourf(), "
            "heatmap() or surface3d()"
        )
    values = loss_values(surface, log=log, zmax=zmax)
    if ax is None:
        ax = _figure(style.width, style.line_height, style).add_subplot()
    _loss_curve(ax, surface, values, log=log, style=style)
    acc = accuracy_percent(surface)
    twin = _accuracy_curve(ax, surface.x, acc, labels=labels, style=style)
    ax.tick_params(labelsize=style.tick_size)
    if len(surface.x) > 1:
        ax.set_xlim(float(surface.x[0]), float(surface.x[-1]))
    if labels:
        ax.set_xlabel(axis_labels(surface)[0], fontsize=style.font_size)
        # Coloured like the curves only when two y axes need telling apart.
        label = ax.set_ylabel(loss_name(surface), fontsize=style.font_size)
        if twin is not None:
            label.set_color(LOSS_COLOUR)
    handles, names = ax.get_legend_handles_labels()
    if twin is not None:
        more = twin.get_legend_handles_labels()
        handles, names = handles + more[0], names + more[1]
    ax.legend(handles, names, fontsize=style.legend_size, loc="best", framealpha=0.85)
    _title(ax, surface, title, style)
    if caption:
        _caption(ax, surface, style)
    return ax


def _loss_curve(
    ax: Axes, surface: Surface, values: np.ndarray, *, log: bool, style: PlotStyle
) -> None:
    x = surface.x
    few = len(x) < 3  # a line through one or two points needs markers to be seen
    ax.plot(
        x,
        values,
        "-",
        marker="o" if few else None,
        color=LOSS_COLOUR,
        lw=style.path_width,
        label="loss",
    )
    sem = surface.values().sem
    band = np.isfinite(sem) & np.isfinite(values)
    lower, upper = values - 2 * sem, values + 2 * sem
    if log:
        # A band reaching below zero has no place on a log axis: it stops at half the minimum.
        lower = np.maximum(lower, 0.5 * float(np.nanmin(values)))
    if band.any():
        ax.fill_between(
            x, lower, upper, where=band, color=LOSS_COLOUR, alpha=0.22, lw=0, label="±2 SE"
        )
    if log:
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

        shown = np.concatenate([values[np.isfinite(values)], lower[band], upper[band]])
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(FixedLocator(log_ticks(float(shown.min()), float(shown.max()))))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: loss_text(v)))
        ax.yaxis.set_minor_formatter(NullFormatter())


def _accuracy_curve(
    ax: Axes, x: np.ndarray, acc: np.ndarray, *, labels: bool, style: PlotStyle
) -> Axes | None:
    """Accuracy in percent on a twin axis; no twin at all when no accuracy is finite."""
    if not np.isfinite(acc).any():
        return None
    twin = ax.twinx()
    twin.plot(
        x,
        acc,
        "--",
        marker="o" if len(x) < 3 else None,
        color=ACC_COLOUR,
        lw=0.85 * style.path_width,
        label="accuracy",
    )
    twin.set_ylim(0, 100)
    twin.tick_params(labelsize=style.tick_size)
    if labels:
        twin.set_ylabel("accuracy (%)", fontsize=style.font_size, color=ACC_COLOUR)
    return twin


@draws_text
def profiles(
    surface: Surface,
    ax: Axes | None = None,
    *,
    log: bool = False,
    labels: bool = True,
    title: str | None = None,
    style: PlotStyle | None = None,
) -> Axes:
    """The loss profiles a comparison holds (``interpolate --align``: the straight line, the
    line to the aligned model, a curve) over t, each with its ±2 SE band and its barrier in
    the legend."""
    style = style or PlotStyle.default()
    found = comparison(surface.attrs)
    if not found:
        raise LosslandError(
            "this surface holds no comparison of paths (its attribute comparison, which "
            "interpolate writes when it aligns): draw it with line()"
        )
    if ax is None:
        ax = _figure(style.width, style.line_height, style).add_subplot()
    for k, p in enumerate(found):
        colour = PATH_COLOURS[k % len(PATH_COLOURS)]
        ax.plot(p.t, p.loss, "-", color=colour, lw=style.path_width,
                label=f"{p.name}: barrier {p.barrier:+.3g} ± {p.barrier_sem:.1g}")  # fmt: skip
        band = np.isfinite(p.loss_sem)
        if band.any():
            lower = p.loss - 2 * p.loss_sem
            if log:
                lower = np.maximum(lower, 0.5 * float(p.loss.min()))
            ax.fill_between(p.t, lower, p.loss + 2 * p.loss_sem, where=band, color=colour,
                            alpha=0.2, lw=0)  # fmt: skip
    if log:
        ax.set_yscale("log")
    ax.set_xlim(float(found[0].t[0]), float(found[0].t[-1]))
    ax.tick_params(labelsize=style.tick_size)
    if labels:
        ax.set_xlabel("t (0 is A, 1 is B)", fontsize=style.font_size)
        ax.set_ylabel(loss_name(surface), fontsize=style.font_size)
    ax.legend(fontsize=style.legend_size, loc="best", framealpha=0.85)
    ax.set_title(
        f"{loss_name(surface)} along paths from A to B" if title is None else title,
        fontsize=style.title_size,
    )
    return ax
