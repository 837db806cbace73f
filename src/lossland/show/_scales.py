"""What every figure of a surface shares: the values it draws and the ones it refuses, its colour
scale, ticks and loss labels, its title, axis labels and settings caption (the kind's row of
:data:`lossland.core.KINDS` names the directions), and the frame of a 2-D map."""

from __future__ import annotations

import math
import textwrap
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lossland.core import AXIS_LABELS, recorded_kind
from lossland.errors import LosslandError, arg
from lossland.io import Surface, is_flat
from lossland.show._style import MapKind, PlotStyle, _figure_of, _Options, _root
from lossland.show._text import fitted

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

# What matplotlib draws faithfully: its tick, level and limit arithmetic multiplies values and
# spans (log axes: decades) by up to ~100 and adds margins, and it takes a range whose largest
# magnitude is below ~1e-287 for an empty one (``transforms.nonsingular``). Beyond these bounds,
# with room to spare, a figure is refused with one line, never drawn wrongly.
DRAWABLE = (1e-200, 1e200)
# Tick mantissas per decade, coarse to fine: the coarsest giving enough ticks wins.
_MANTISSAS = ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0))


@dataclass(frozen=True)
class _Scale:
    """The colour (or height) scale of one figure, in loss units."""

    low: float
    high: float
    log: bool
    constant: bool  # every plotted value is the same: no contour lines to draw

    @classmethod
    def of(cls, values: np.ndarray, *, log: bool) -> _Scale:
        finite = values[np.isfinite(values)]
        low, high = float(finite.min()), float(finite.max())
        if not is_flat(low, high):
            return cls(low, high, log, constant=False)
        # A constant surface still needs a colour range around its one value.
        if log:
            return cls(low / 1.25, high * 1.25, log, constant=True)
        pad = max(abs(low) * 0.05, 1e-3)
        return cls(low - pad, high + pad, log, constant=True)

    def norm(self) -> Normalize:
        from matplotlib.colors import LogNorm, Normalize

        return LogNorm(self.low, self.high) if self.log else Normalize(self.low, self.high)

    def levels(self, count: int) -> np.ndarray:
        """About ``count`` contour levels covering the range, at round losses: on a log scale
        10^(k/m) with m steps per decade (1, 2, 3, 5 or a multiple of 10, whose levels pass
        within 0.25 % of 2 and 5), so the labelled lines read 1, 2, 5, 10; round numbers on a
        linear scale (0.5, 1, 1.5 rather than 0.572). A constant surface has one band: a level
        through its value would split float noise into colours."""
        if self.constant:
            return np.array([self.low, self.high])
        if self.log:
            decades = math.log10(self.high) - math.log10(self.low)  # high / low may overflow
            wanted = count / max(decades, 1e-12)  # steps per decade
            steps = (
                10 * round(wanted / 10)
                if wanted >= 7.5
                else min((1, 2, 3, 5), key=lambda m: abs(math.log(m / wanted)))
            )
            first = math.floor(math.log10(self.low) * steps + 1e-9)
            last = math.ceil(math.log10(self.high) * steps - 1e-9)
            return np.asarray(10.0 ** (np.arange(first, last + 1) / steps))
        from matplotlib.ticker import MaxNLocator

        return np.asarray(
            MaxNLocator(count - 1, steps=[1, 2, 2.5, 5, 10]).tick_values(self.low, self.high)
        )

    def ticks(self) -> list[float]:
        """Colour-bar ticks in loss units, inside the range."""
        if self.log:
            return log_ticks(self.low, self.high)
        from matplotlib.ticker import MaxNLocator

        values = MaxNLocator(6, steps=[1, 2, 2.5, 5, 10]).tick_values(self.low, self.high)
        span = self.high - self.low
        return [float(v) for v in values if self.low - 1e-9 * span <= v <= self.high + 1e-9 * span]

    def height(self, values: np.ndarray) -> np.ndarray:
        """The 3-D height: ln(loss) on a log scale (the natural log, as everywhere)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(values) if self.log else np.asarray(values, dtype=np.float64)


@dataclass(frozen=True)
class _Drawn:
    """What a figure function drew on an Axes, so overlays can follow its scale."""

    surface: Surface
    scale: _Scale
    zmax: float | None
    style: PlotStyle
    floor: float | None  # the 3-D floor height


# Keyed weakly by the Axes: an entry goes away with its figure.
_DRAWN: weakref.WeakKeyDictionary[Any, _Drawn] = weakref.WeakKeyDictionary()


# --- values, ticks and text --------------------------------------------------------------------


def loss_values(surface: Surface, *, log: bool = False, zmax: float | None = None) -> np.ndarray:
    """The plotted losses: ±inf → largest finite, not evaluated or NaN → NaN, clipped at
    ``zmax`` (:meth:`lossland.io.SurfaceValues.drawn`).

    Stays in loss units for log scales too (the norm does the log). Refuses what cannot be drawn
    with a one-line ``LosslandError``.
    """
    values = surface.values()
    values.require("plot")
    drawn = values.drawn(zmax=zmax, log=log)
    check_drawable(surface, drawn, log=log)
    return drawn


def check_drawable(surface: Surface, losses: np.ndarray, *, log: bool = False) -> None:
    """Refuse, with one line naming them and the fix, coordinates or losses that matplotlib
    cannot draw faithfully: beyond ±DRAWABLE[1]; all within ±DRAWABLE[0] (and not 0); on a log
    scale, losses below DRAWABLE[0]."""
    tiny, huge = DRAWABLE
    named = {"x coordinates": surface.x, "y coordinates": surface.y, "losses": losses}
    for what, given in named.items():
        values = np.asarray(given if given is not None else [], dtype=np.float64)
        values = values[np.isfinite(values)]
        if not values.size:
            continue
        low, high = float(values.min()), float(values.max())
        if high > huge or low < -huge:
            clip = what == "losses" and low >= -huge
            fix = f"clip them with {arg('zmax')}" if clip else "export the surface (csv, npz)"
            raise LosslandError(
                f"the {what} reach {high if high > huge else low:.3g}, beyond what a figure "
                f"draws (±{huge:.0e}): {fix}"
            )
        if 0 < max(abs(low), abs(high)) < tiny:
            raise LosslandError(
                f"the {what} all lie within ±{max(abs(low), abs(high)):.3g}, too close to 0 for "
                f"a figure (it draws ranges of {tiny:.0e} and more): export the surface (csv, npz)"
            )
        if log and what == "losses" and low < tiny:
            raise LosslandError(
                f"the losses go down to {low:.3g}, below what a log scale draws ({tiny:.0e}): "
                f"use the linear scale (without {arg('log')})"
            )


def loss_text(value: float, *, digits: int = 3) -> str:
    """A loss as a short label: 0.3, 1, 2.5, 1e-5 (at most ``digits`` significant digits)."""
    text = f"{value:.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def log_ticks(low: float, high: float, *, most: int = 8) -> list[float]:
    """Tick positions in loss units for a log scale over [low, high]: decades, 1-3, 1-2-5 or
    finer, whichever first gives at least four ticks; a linear set for very narrow ranges."""
    ticks: list[float] = []
    for mantissas in _MANTISSAS:
        ticks = _decade_ticks(low, high, mantissas)
        if len(ticks) >= 4:
            return ticks[:: -(-len(ticks) // most)]
    if len(ticks) >= 3:
        return ticks
    from matplotlib.ticker import MaxNLocator

    linear = MaxNLocator(5).tick_values(low, high)
    return [float(v) for v in linear if low * (1 - 1e-9) <= v <= high * (1 + 1e-9)]


def _decade_ticks(low: float, high: float, mantissas: Sequence[float]) -> list[float]:
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    candidates = (m * 10.0**e for e in range(first, last + 1) for m in mantissas)
    # Round away the binary noise of m * 10**e (0.30000000000000004) before comparing.
    return [float(f"{v:.6g}") for v in candidates if low * (1 - 1e-9) <= v <= high * (1 + 1e-9)]


def axis_labels(surface: Surface) -> tuple[str, str]:
    labels = surface.attrs.get("axis_labels")
    if isinstance(labels, (list, tuple)) and len(labels) == 2:  # the file's: fitted to the axes
        return fitted(labels[0], 60), fitted(labels[1], 60)
    row = recorded_kind(surface.attrs.get("directions_kind"))
    return row.axis_labels if row is not None else AXIS_LABELS


def default_title(surface: Surface) -> str:
    """E.g. "train loss · random directions (filter norm)", from the surface's attributes (a
    surface without them, e.g. from ``lossland.surface()`` on a model, gets "loss · random
    directions (filter norm)" from its settings)."""
    head = loss_name(surface)
    row = recorded_kind(surface.attrs.get("directions_kind"))
    if row is None:  # no kind recorded, or one this version does not know
        return head
    return f"{head} · {row.heading(ndim=surface.ndim, norm=surface.attrs.get('norm'))}"


def settings_caption(surface: Surface) -> str:
    """model, norm, scheme, split, samples, bn, seed, grid and cosine, as far as recorded."""
    attrs = surface.attrs
    # Values from the file, each at most a caption line long.
    parts = [f"{k}={fitted(attrs[k], 80)}" for k in ("model", "norm", "scheme") if k in attrs]
    parts.append(f"split={fitted(surface.split, 80)}")
    parts += [f"{k}={fitted(attrs[k], 80)}" for k in ("samples", "bn", "seed") if k in attrs]
    if surface.y is None:
        parts.append(f"{len(surface.x)} points")
    else:
        parts.append(f"grid {len(surface.x)}×{len(surface.y)}")
    cosine = attrs.get("cosine")
    if isinstance(cosine, float):
        parts.append(f"cos(δ,η)={cosine:+.1e}")
    return ", ".join(parts)


def accuracy_percent(surface: Surface) -> np.ndarray:
    """Accuracy in percent (as ``Surface.acc`` holds it; files that stored fractions are
    converted when read); points never evaluated, or without an accuracy, are NaN."""
    return surface.values().acc


def loss_name(surface: Surface) -> str:
    """ "train loss", "test loss"; plain "loss" for data passed in directly (split "custom")."""
    # The split is the file's: shortened to fit beside the colour bar.
    return "loss" if surface.split == "custom" else f"{fitted(surface.split, 20)} loss"


def _zlabel(surface: Surface) -> str:
    """The loss axis: the tick labels (1, 2, 5 spaced unevenly) already show a log scale."""
    return loss_name(surface)


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around grid points (half a step beyond the ends; ±0.5 for a single point)."""
    c = np.asarray(centres, dtype=np.float64)
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    middle = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - middle[0]], middle, [2 * c[-1] - middle[-1]]])


# --- frames and captions -----------------------------------------------------------------------


def _extent(surface: Surface, kind: MapKind) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) the axes show: cell edges for a heat map, the grid otherwise."""
    assert surface.y is not None
    if kind == "heatmap":
        xe, ye = _edges(surface.x), _edges(surface.y)
        return float(xe[0]), float(xe[-1]), float(ye[0]), float(ye[-1])
    return float(surface.x[0]), float(surface.x[-1]), float(surface.y[0]), float(surface.y[-1])


def _map_size(
    surface: Surface, kind: MapKind, o: _Options, style: PlotStyle
) -> tuple[float, float]:
    """A figure shaped like the plane: the axes' width is fixed by the figure's, their height
    follows the data aspect, plus room for the title, the x label and the caption."""
    width = style.width
    if o.aspect == "auto":
        return width, min(0.78 * width, style.max_height)
    x0, x1, y0, y1 = _extent(surface, kind)
    ratio = abs(y1 - y0) / abs(x1 - x0) if x1 != x0 and y1 != y0 else 1.0
    # Beside the axes: the y label and its tick labels, and the colour bar (8 % of the axes'
    # width, its gap included: room for a marker on the edge) with its own; below and above:
    # tick labels, x label, title and caption.
    side = (1.8 * style.font_size + 3.2 * style.tick_size) / 72
    axes_width = (width - side * (2 if o.colorbar else 1)) / (1.08 if o.colorbar else 1.0)
    text = _title_text(surface, o.title, style, room=axes_width * 72)
    title = style.title_size * 1.3 * (text.count("\n") + 1) + 4 if text else 0.0
    caption = style.caption_size * 2.5 if o.caption else 0.0
    extra = (title + 1.6 * style.font_size + 1.6 * style.tick_size + caption) / 72
    return width, min(max(axes_width * ratio + extra, 0.3 * width), style.max_height)


def _frame(ax: Axes, surface: Surface, kind: MapKind, o: _Options, style: PlotStyle) -> None:
    x0, x1, y0, y1 = _extent(surface, kind)
    if x1 > x0:
        ax.set_xlim(x0, x1)
    if y1 > y0:
        ax.set_ylim(y0, y1)
    ax.set_aspect(o.aspect)
    ax.tick_params(labelsize=style.tick_size)
    if o.labels:
        xl, yl = axis_labels(surface)
        ax.set_xlabel(xl, fontsize=style.font_size)
        ax.set_ylabel(yl, fontsize=style.font_size)


def _title(ax: Axes, surface: Surface, title: str | None, style: PlotStyle) -> None:
    room = _root(_figure_of(ax)).get_figwidth() * 72 * ax.get_position().width
    text = _title_text(surface, title, style, room=room)
    if text:
        ax.set_title(text, fontsize=style.title_size)


def _title_text(surface: Surface, title: str | None, style: PlotStyle, *, room: float) -> str:
    """The title; one wider than ``room`` points (a paper column) breaks at its " · " rather
    than being cut off at the figure's edge."""
    text = default_title(surface) if title is None else title
    if len(text) * 0.55 * style.title_size > room:
        text = text.replace(" · ", "\n", 1)
    return text


def _caption(ax: Axes, surface: Surface, style: PlotStyle) -> None:
    """The settings caption under the axes, inside the layout so nothing overlaps it."""
    fig = _root(_figure_of(ax))
    # As wide as the axes and their colour bar (the axes' share of a user's grid, not the figure).
    # It starts at the axes' left edge, so it may use what lies right of that, no more; 0.6 em
    # per character is the caption font's average width with its digits and "=" signs.
    box = ax.get_position()
    width_pt = fig.get_figwidth() * 72 * min(box.width * 1.2, 0.98 - box.x0)
    text = textwrap.fill(
        settings_caption(surface), width=int(width_pt / (0.6 * style.caption_size))
    )
    # Below the x label (the label's bottom edge, axes-left aligned); 3-D axes have no 2-D label.
    anchor: Any = "axes fraction" if ax.name == "3d" else ("axes fraction", ax.xaxis.label)
    ax.annotate(
        text,
        xy=(0, 0),
        xycoords=anchor,
        xytext=(0, -0.6 * style.caption_size),
        textcoords="offset points",
        ha="left",
        va="top",
        fontsize=style.caption_size,
        color="0.35",
        annotation_clip=False,
    )


def _colorbar(
    ax: Axes,
    mappable: ScalarMappable,
    surface: Surface,
    scale: _Scale,
    o: _Options,
    style: PlotStyle,
) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    # An inset in axes coordinates: exactly as tall as the drawn box, which equal aspect shrinks.
    cax = ax.inset_axes((1.04, 0.0, 0.04, 1.0))
    bar = _figure_of(ax).colorbar(mappable, cax=cax)
    bar.ax.tick_params(labelsize=style.tick_size)
    bar.set_ticks(scale.ticks())
    if scale.log:
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: loss_text(v)))
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
    if o.labels:
        bar.set_label(_zlabel(surface), fontsize=style.font_size)


def _check_map(surface: Surface, kind: MapKind, o: _Options) -> None:
    if surface.y is None:
        raise LosslandError(f"a {kind} plot needs a 2-D surface and this one is 1-D: use line()")
    if kind != "heatmap" and (len(surface.x) < 2 or len(surface.y) < 2):
        raise LosslandError(
            f"a {kind} plot needs at least 2×2 grid points and this surface has "
            f"{len(surface.x)}×{len(surface.y)}: draw it with heatmap() or compute a larger grid"
        )
    if o.aspect not in ("equal", "auto"):
        raise LosslandError(f"unknown {arg('aspect')} {o.aspect!r}: use 'equal' or 'auto'")
    _check_look(o.levels, o.cmap)


def _check_look(levels: Any, cmap: str | None) -> None:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise LosslandError(f"{arg('levels')} must be an integer, at least 2, got {levels!r}")
    if cmap is not None:
        import matplotlib

        if cmap not in matplotlib.colormaps:
            raise LosslandError(
                f"unknown colormap {cmap!r} ({arg('cmap')}): try viridis, cividis or coolwarm"
            )
