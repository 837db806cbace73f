"""Figures of a loss surface as matplotlib objects: each function draws into an Axes and returns it.

    ax = contour(surface)                      # a new Figure (never pyplot), ax.figure to show
    fig, axs = plt.subplots(1, 2); contourf(surface, ax=axs[0], log=True, critical_points=True)
    trajectories(ax, surface); paths(ax, optimizer_paths)
    plot(surface, "figures/", style="paper")   # the standard set of files (``lossland.plot``)

Rules shared by every figure:

* The values are :meth:`lossland.io.Surface.values`, as every reader shows them: ±inf losses
  become the largest finite loss (the seed's rule); points not evaluated (``done`` false) and
  evaluated NaN losses stay blank; ``zmax`` clips the loss from above. :func:`plot` notes (a
  ``LosslandWarning``) what its figures leave blank or replace; a constant surface (up to float
  noise) is one colour, never contour bands of rounding errors.
* ``log=True`` is a logarithmic colour norm on the loss itself: geometric contour levels, colour
  bar and contour labels in loss units (ticks such as 0.1, 0.2, 0.5, 1). The one logarithm that is
  computed, the height of the 3-D plot, is the natural log (as the viewer, the descent and the
  exports use), with z tick labels in loss units. Losses ≤ 0 refuse log with the one-line
  ``LosslandError`` of :meth:`lossland.io.SurfaceValues.drawn`.
* 2-D planes are drawn with equal aspect (both axes are in the same weight-space units) and the
  figure is sized from the plane's aspect, so a 20 × 6 PCA plane comes out wide; ``aspect="auto"``
  fills the axes instead.
* Nothing global changes: no ``matplotlib.use``, no pyplot figures, no rcParams assignments. The
  font embedding options (TrueType in PDF, text as paths in SVG) are set only inside
  ``matplotlib.rc_context`` around each save.
* Optimizer paths take colours from the Okabe–Ito colour-blind-safe cycle by their position in the
  list, so a path has the same colour in every figure; training trajectories are black with a
  marker per run.
* The topology figures (critical points on a contour, the persistence diagram, the merge tree)
  draw :func:`lossland.show.surface_topology`: the stored attribute, or computed.

Matplotlib is imported inside the functions: importing this module does not load it.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import textwrap
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lossland.errors import LosslandError, LosslandWarning, arg
from lossland.io import (
    Surface,
    SurfaceValues,
    atomic_path,
    check_length,
    check_output,
    is_flat,
    make_folder,
)
from lossland.show._descent import OptimizerPath, surface_grid
from lossland.show._robustness import seed_logs, seed_stack, seed_surface
from lossland.show._text import as_written, draws_text, fitted, glyph_notes, legend_label
from lossland.show._topology import (
    Topology,
    mark_critical_points,
    persistence_diagram,
    summary_lines,
    surface_topology,
)
from lossland.show._topology import (
    merge_tree as draw_merge_tree,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure, SubFigure
    from matplotlib.typing import RcKeyType
    from mpl_toolkits.mplot3d.axes3d import Axes3D

Aspect = Literal["equal", "auto"]
StyleName = Literal["default", "paper"]
MapKind = Literal["contour", "contourf", "heatmap", "3d"]
FORMATS = ("png", "pdf", "svg")
# Okabe & Ito (2008), reordered so the first colours stand out on coolwarm and viridis alike.
PATH_COLOURS = ("#E69F00", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#56B4E9", "#F0E442")
TRAJECTORY_MARKERS = ("o", "s", "^", "D", "v", "P")
LOSS_COLOUR, ACC_COLOUR = "#0072B2", "#D55E00"
# Type 42 embeds the TrueType font (editable, accepted by journals); Type 3 is matplotlib's default.
SAVE_RC: Mapping[RcKeyType, Any] = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "path"}
# No dates or versions in the files, so the same figure gives the same bytes.
_METADATA: Mapping[str, Mapping[str, Any]] = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "Producer": None},
    "svg": {"Date": None, "Creator": None},
}
_KIND_TITLES = {
    "pca": "PCA of the training trajectory",
    "hessian": "Hessian eigenvectors",
    "models": "between checkpoints",
}
_NORM_TEXT = {"filter": "filter norm", "layer": "layer norm", "none": "not normalized"}
# What matplotlib draws faithfully: its tick, level and limit arithmetic multiplies values and
# spans (log axes: decades) by up to ~100 and adds margins, and it takes a range whose largest
# magnitude is below ~1e-287 for an empty one (``transforms.nonsingular``). Beyond these bounds,
# with room to spare, a figure is refused with one line, never drawn wrongly.
DRAWABLE = (1e-200, 1e200)
# Tick mantissas per decade, coarse to fine: the coarsest giving enough ticks wins.
_MANTISSAS = ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0))


@dataclass(frozen=True)
class PlotStyle:
    """How figures look: sizes in inches, fonts in points, line widths in points."""

    width: float = 6.4  # every figure's width
    max_height: float = 5.6  # the tallest a 2-D map may be (a tall plane)
    line_height: float = 4.0  # 1-D figures
    font_size: float = 10.0  # axis and colour-bar labels
    tick_size: float = 8.5
    title_size: float = 10.5
    legend_size: float = 8.0
    caption_size: float = 6.5
    line_width: float = 0.9  # contour lines
    path_width: float = 1.8  # optimizer paths, trajectories and 1-D curves
    marker_size: float = 4.5
    dpi: int = 150
    cmap: str = "coolwarm"
    format: str = "png"
    caption: bool = True  # the settings caption in plot()

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise LosslandError(f"unknown image format {self.format!r}: choose png, pdf or svg")
        sizes = (self.width, self.max_height, self.line_height, self.font_size, self.dpi)
        if not all(math.isfinite(v) and v > 0 for v in sizes):
            raise LosslandError("figure sizes, font sizes and dpi must be positive numbers")

    @classmethod
    def named(cls, name: StyleName | None) -> PlotStyle:
        """The style called ``name`` ("default", "paper"); None is the default one."""
        if name is None or name == "default":
            return cls.default()
        if name == "paper":
            return cls.paper()
        raise LosslandError(f"unknown {arg('style')} {name!r}: choose default or paper")

    @classmethod
    def default(cls) -> PlotStyle:
        """Screen figures: the seed's coolwarm colours and the settings caption."""
        return cls()

    @classmethod
    def paper(cls) -> PlotStyle:
        """One journal column (3.3 in) with 8 pt text at print size, viridis, PDF, no caption."""
        return cls(
            width=3.3,
            max_height=3.6,
            line_height=2.3,
            font_size=8.0,
            tick_size=7.0,
            title_size=8.0,
            legend_size=6.5,
            caption_size=5.5,
            line_width=0.6,
            path_width=1.2,
            marker_size=3.0,
            dpi=300,
            cmap="viridis",
            format="pdf",
            caption=False,
        )


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


@dataclass(frozen=True)
class _Options:
    log: bool
    levels: int
    cmap: str | None
    zmax: float | None
    colorbar: bool
    labels: bool
    caption: bool
    title: str | None
    aspect: Aspect
    style: PlotStyle | None
    critical_points: bool = False


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


def path_colour(index: int) -> str:
    """The colour of the optimizer path at ``index`` in its list (the same in every figure)."""
    return PATH_COLOURS[index % len(PATH_COLOURS)]


def axis_labels(surface: Surface) -> tuple[str, str]:
    labels = surface.attrs.get("axis_labels")
    if isinstance(labels, (list, tuple)) and len(labels) == 2:  # the file's: fitted to the axes
        return fitted(labels[0], 60), fitted(labels[1], 60)
    if surface.attrs.get("directions_kind") == "models":
        return "x (θ₂ − θ₁)", "y (θ₃ − θ₁)"
    return "x (direction δ)", "y (direction η)"


def default_title(surface: Surface) -> str:
    """E.g. "train loss · random directions (filter norm)", from the surface's attributes (a
    surface without them, e.g. from ``lossland.surface()`` on a model, gets "loss · random
    directions (filter norm)" from its settings)."""
    head = loss_name(surface)
    kind = surface.attrs.get("directions_kind")
    one_d = surface.y is None
    if kind == "random":
        noun = "random direction" if one_d else "random directions"
        norm = _NORM_TEXT.get(str(surface.attrs.get("norm")))
        return f"{head} · {noun}" + (f" ({norm})" if norm else "")
    if kind == "hessian" and one_d:
        return f"{head} · top Hessian eigenvector"
    if isinstance(kind, str) and kind in _KIND_TITLES:
        return f"{head} · {_KIND_TITLES[kind]}"
    return head


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


# --- figures and frames ------------------------------------------------------------------------


def _figure(width: float, height: float, style: PlotStyle) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=style.dpi, layout="constrained")


def _figure_of(ax: Axes) -> Figure | SubFigure:
    fig = ax.get_figure()
    if fig is None:
        raise LosslandError("the axes belong to no figure: create them with fig.add_subplot()")
    return fig


def _root(fig: Figure | SubFigure) -> Figure:
    """The top-level figure (the one that saves) of a figure or subfigure."""
    return fig.figure


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


# --- 2-D maps ----------------------------------------------------------------------------------


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


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around grid points (half a step beyond the ends; ±0.5 for a single point)."""
    c = np.asarray(centres, dtype=np.float64)
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    middle = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - middle[0]], middle, [2 * c[-1] - middle[-1]]])


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


# --- 3-D ---------------------------------------------------------------------------------------


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


# --- overlays ----------------------------------------------------------------------------------


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
            label=legend_label(f"training: {name}"),
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


# --- topology ----------------------------------------------------------------------------------


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
    surface's sublevel-set topology (:func:`lossland.show.surface_topology`): the
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
    """The style's font sizes on a topology panel (drawn by :mod:`lossland.show._topology`)."""
    ax.tick_params(labelsize=style.tick_size)
    ax.xaxis.label.set_fontsize(style.font_size)
    ax.yaxis.label.set_fontsize(style.font_size)
    if ax.get_legend() is not None:  # drawn again: its frame and handles follow the font
        ax.legend(loc="lower right", fontsize=style.legend_size, framealpha=0.85)
    if title:
        ax.set_title(title, fontsize=style.title_size)


# --- 1-D ---------------------------------------------------------------------------------------


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


# --- files -------------------------------------------------------------------------------------


def save(
    figure: Figure | SubFigure,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    dpi: int = 150,
) -> Path:
    """Write ``figure`` atomically; vector formats embed their fonts (TrueType in PDF, paths in
    SVG), set only for this save. ``format`` defaults to the file's suffix."""
    import matplotlib

    out = Path(path)
    fmt = format or out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise LosslandError(f"unknown image format {fmt!r}: choose png, pdf or svg")
    with matplotlib.rc_context(dict(SAVE_RC)), glyph_notes(out.name), atomic_path(out) as tmp:
        _root(figure).savefig(tmp, format=fmt, dpi=dpi, metadata=dict(_METADATA[fmt]))
    return out


class Plotter:
    """``lossland.plot``: call it to write the standard figures of a surface as files; its
    attributes draw one figure each into a matplotlib Axes (a new Figure when ``ax`` is None)
    and return it::

        lossland.plot(s, "figures/", log=True)            # files: contour, contourf, ... topology
        fig, axs = plt.subplots(1, 2)
        lossland.plot.contour(s, ax=axs[0], log=True, critical_points=True)
        lossland.plot.paths(axs[0], optimizer_paths)
    """

    contour = staticmethod(contour)
    contourf = staticmethod(contourf)
    heatmap = staticmethod(heatmap)
    surface3d = staticmethod(surface3d)
    line = staticmethod(line)
    paths = staticmethod(paths)
    trajectories = staticmethod(trajectories)
    critical_points = staticmethod(critical_points)
    persistence = staticmethod(persistence)
    merge_tree = staticmethod(merge_tree)
    topology = staticmethod(topology_figure)
    save = staticmethod(save)

    def __call__(
        self,
        surface: Surface | str | os.PathLike[str],
        out_dir: str | os.PathLike[str] | None = None,
        *,
        stem: str | None = None,
        style: PlotStyle | StyleName | None = None,
        format: str | None = None,
        dpi: int | None = None,
        caption: bool | None = None,
        cmap: str | None = None,
        title: str | None = None,
        log: bool = False,
        levels: int = 30,
        zmax: float | None = None,
        critical_points: bool = True,
        paths: Sequence[OptimizerPath] = (),
        overwrite: bool = False,
    ) -> list[Path]:
        """Write the standard figures as ``<stem>_<kind>.<format>`` and return the files: for a
        plane contour, contourf, heatmap, 3d (the surface's trajectories and ``paths`` on each)
        and topology (persistence diagram and merge tree); for a line 1d.

        ``surface`` may be a file (its folder and stem are then the defaults). ``style`` is a
        ``PlotStyle`` or its name ("default", "paper"); ``format``, ``dpi`` and ``caption``
        override the style's. ``critical_points`` marks minima and saddles on the contours. A
        grid with one row or column gets the heat map and the topology only. Every file is
        checked before the first is drawn: an existing one is replaced only with
        ``overwrite``, the surface file itself never (:func:`lossland.io.check_output`).
        """
        source = None if isinstance(surface, Surface) else Path(surface)
        loaded = Surface.load(source) if source is not None else surface
        assert isinstance(loaded, Surface)
        chosen = PlotStyle.named(style) if isinstance(style, str) or style is None else style
        chosen = replace(
            chosen,
            format=format or chosen.format,
            dpi=dpi or chosen.dpi,
            caption=chosen.caption if caption is None else caption,
        )
        stem = stem or (source.stem if source is not None else "surface")
        folder = Path(out_dir) if out_dir is not None else (source.parent if source else Path("."))
        _check_plot(loaded, log=log, zmax=zmax, levels=levels, cmap=cmap)
        thin, seeds = min(loaded.loss.shape) < 2, loaded.stack is not None
        files = figure_files(
            loaded.ndim, folder, stem=stem, format=chosen.format, thin=thin, seeds=seeds
        )
        for file in files:
            check_length(file, name="out_dir")
            if folder.is_dir():  # a new folder holds nothing to refuse
                check_output(file, overwrite=overwrite, inputs=[source] if source else [])
        make_folder(folder)
        figures = _standard_figures(
            loaded,
            chosen,
            log=log,
            zmax=zmax,
            title=title,
            levels=levels,
            cmap=cmap,
            critical_points=critical_points,
            optimizer_paths=paths,
        )
        written = [
            save(fig, folder / f"{stem}_{kind}.{chosen.format}", dpi=chosen.dpi)
            for kind, fig in figures
        ]
        assert written == files, (written, files)  # figure_files lists what is drawn
        return written

    def __repr__(self) -> str:
        names = ", ".join(
            f".{n}()" for n in ("contour", "contourf", "heatmap", "surface3d", "line")
        )
        return f"<lossland.plot: call it to write the figures; draw one with {names}, ...>"


def _check_plot(
    surface: Surface, *, log: bool, zmax: float | None, levels: int, cmap: str | None
) -> None:
    """Refuse what :func:`plot` cannot draw before any folder or file is made; note what the
    figures leave blank or replace (NaN, infinite, not evaluated points)."""
    loss_values(surface, log=log, zmax=zmax)
    _check_look(levels, cmap)
    note = surface.values().note()
    if note:
        warnings.warn(f"the figures show {note}", LosslandWarning, stacklevel=3)


def figure_kinds(ndim: int, *, thin: bool = False, seeds: bool = False) -> list[str]:
    """The standard figures, in order: ``1d`` for a line; for a plane contour, contourf,
    heatmap and 3d (a ``thin`` grid of one row or column: heatmap only), topology, and the
    seeds side by side for a seed stack."""
    if ndim == 1:
        return ["1d"]
    kinds = ["heatmap"] if thin else ["contour", "contourf", "heatmap", "3d"]
    return [*kinds, "topology", *(["seeds"] if seeds and not thin else [])]


def figure_files(
    ndim: int,
    out_dir: str | os.PathLike[str],
    *,
    stem: str,
    format: str,
    thin: bool = False,
    seeds: bool = False,
) -> list[Path]:
    """The files ``plot`` writes, ``<stem>_<kind>.<format>`` (see :func:`figure_kinds`)."""
    kinds = figure_kinds(ndim, thin=thin, seeds=seeds)
    return [Path(out_dir) / f"{stem}_{kind}.{format}" for kind in kinds]


def _standard_figures(
    surface: Surface,
    style: PlotStyle,
    *,
    log: bool,
    zmax: float | None,
    title: str | None,
    levels: int,
    cmap: str | None,
    critical_points: bool,
    optimizer_paths: Sequence[OptimizerPath],
) -> Iterator[tuple[str, Figure]]:
    """(kind, figure) of each standard figure, drawn one at a time as they are saved."""
    common: dict[str, Any] = dict(log=log, zmax=zmax, caption=style.caption, title=title)
    if surface.y is None:
        yield "1d", _root(_figure_of(line(surface, style=style, **common)))
        return
    common.update(style=style, cmap=cmap)
    marks = critical_points
    drawers: dict[str, Callable[[], Axes]] = {
        "contour": lambda: contour(surface, levels=levels, critical_points=marks, **common),
        "contourf": lambda: contourf(surface, levels=levels, critical_points=marks, **common),
        "heatmap": lambda: heatmap(surface, **common),
        "3d": lambda: surface3d(surface, levels=levels, **common),
    }
    if min(surface.loss.shape) < 2:
        drawers = {"heatmap": drawers["heatmap"]}
    for kind, draw in drawers.items():
        ax = draw()
        trajectories(ax, surface)
        _draw_paths(ax, optimizer_paths, surface, style)
        yield kind, _legend_below(ax, style)
    yield "topology", topology_figure(surface, titles=title != "", style=style, zmax=zmax)
    if surface.stack is not None and min(surface.loss.shape) >= 2:
        yield "seeds", seeds_figure(surface, zmax=zmax)


@draws_text
def seeds_figure(surface: Surface, *, zmax: float | None = None) -> Figure:
    """The seeds' contours side by side on one colour scale (log when every seed's losses are
    positive), and the spread map across the seeds (of ln L, or of L when not positive);
    ``zmax`` clips the losses drawn."""
    from matplotlib.figure import Figure as MplFigure

    stack = seed_stack(surface)
    assert surface.y is not None
    seeds = [seed_surface(surface, k).values() for k in range(len(stack.seeds))]
    drawable = [v for v in seeds if v.finite.any()]
    if not drawable:
        seeds[0].require("plot")
    log = all(v.positive for v in drawable)
    values = np.stack([v.loss for v in seeds])
    if zmax is not None:
        values = np.minimum(values, zmax)
    check_drawable(surface, values, log=log)
    scale = _Scale.of(values, log=log)
    n = len(stack.seeds)
    fig = MplFigure(figsize=(2.5 * (n + 1) + 0.8, 2.9), layout="constrained")
    axes = fig.subplots(1, n + 1)
    levels = (
        scale.levels(2)
        if scale.constant
        else (np.geomspace if log else np.linspace)(scale.low, scale.high, 25)
    )
    mesh = None
    for k, ax in enumerate(axes[:n]):
        blank = not seeds[k].finite.any()
        if not blank:
            mesh = ax.contourf(
                surface.x, surface.y, values[k], levels=levels, norm=scale.norm(), cmap="viridis"
            )
        ax.set_title(f"seed {stack.seeds[k]}" + (": no finite loss" if blank else ""), fontsize=9)
    assert mesh is not None
    bar = fig.colorbar(mesh, ax=list(axes[:n]), shrink=0.9, ticks=scale.ticks())
    bar.ax.set_yticklabels([loss_text(v) for v in bar.get_ticks()])
    bar.ax.set_title("loss", fontsize=8)
    with warnings.catch_warnings():  # a point no seed evaluated has no spread: a hole
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = _spread(seed_logs(stack) if log else values)
    # A constant spread (one seed drawable) crosses no automatic level: give them.
    flat_spread = _Scale.of(spread if np.isfinite(spread).any() else np.zeros(1), log=False)
    spread_levels = np.linspace(flat_spread.low, flat_spread.high, 12)
    shown = axes[n].contourf(
        surface.x,
        surface.y,
        np.ma.masked_invalid(spread),
        levels=spread_levels if flat_spread.constant else 12,
        cmap="magma",
    )
    axes[n].set_title("spread across seeds", fontsize=9)
    side = fig.colorbar(shown, ax=axes[n], shrink=0.9)
    side.ax.set_title("std ln L" if log else "std L", fontsize=8)
    for colour_bar in (bar, side):
        colour_bar.ax.tick_params(labelsize=7)
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xlabel("x", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("y", fontsize=8)
    return fig


def _spread(values: np.ndarray) -> np.ndarray:
    """The standard deviation across seeds (axis 0), NaN-aware, in units of the largest value:
    the squares of losses near the largest drawn would overflow."""
    finite = np.abs(values[np.isfinite(values)])
    unit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    return np.asarray(np.nanstd(values / unit, axis=0) * unit)


plot = Plotter()


# --- notebooks ---------------------------------------------------------------------------------


def contour_png(surface: Surface, *, dpi: int = 80, log: bool | None = None) -> bytes:
    """A small PNG of the surface (contour lines; the line for 1-D, the heat map for a grid of
    one row or column) for notebooks. ``log=None`` picks log when the positive losses span more
    than a factor of 10."""
    style = replace(PlotStyle.paper(), cmap=PlotStyle.default().cmap, format="png")
    values = loss_values(surface)
    if log is None:
        finite = values[np.isfinite(values)]
        log = bool(finite.min() > 0 and finite.max() > 10 * finite.min())
    if surface.y is None:
        ax = line(surface, log=log, title="", style=style)
    elif min(surface.loss.shape) < 2:
        ax = heatmap(surface, log=log, title="", style=style)
    else:
        ax = contour(surface, log=log, title="", style=style, levels=15)
    buffer = io.BytesIO()
    import matplotlib

    with matplotlib.rc_context(dict(SAVE_RC)), glyph_notes("the contour"):
        _root(_figure_of(ax)).savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def summary_html(surface: Surface) -> str:
    """A compact HTML table of the surface with a small inline contour (for ``_repr_html_``)."""
    rows = _summary_rows(surface)
    table = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
        f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    try:
        data = base64.b64encode(contour_png(surface, dpi=72)).decode("ascii")
        image = f"<img src='data:image/png;base64,{data}' alt='loss contour' style='width:240px'>"
    except LosslandError as exc:  # nothing drawable yet: say why instead of a picture
        image = f"<p><i>{html.escape(str(exc))}</i></p>"
    return (
        "<div class='lossland-surface' style='display:flex;gap:1.5em;align-items:flex-start'>"
        f"<table>{table}</table>{image}</div>"
    )


def _summary_rows(surface: Surface) -> list[tuple[str, str]]:
    attrs = surface.attrs
    values = surface.values()
    rows = [
        ("surface", f"{surface.ndim}-D, " + " × ".join(str(n) for n in surface.shape[::-1])),
        ("split", surface.split),
        ("evaluated", values.counts()),
    ]
    x, y, low = surface.argmin()
    if math.isfinite(low):
        where = f"x={x:.4g}" + ("" if y is None else f", y={y:.4g}")
        rows.append(("min loss", f"{low:.5g} at {where}"))
    holes = values.holes()
    if holes:
        rows.append(("non-finite losses", holes))
    rows.append(_centre_row(surface, values))
    found = surface_topology(surface) if math.isfinite(low) else None
    if found is not None:
        rows.append(("basins", summary_lines(found, top=0)[0]))
    for key, name in (("directions_kind", "directions"), ("norm", "norm"), ("samples", "samples")):
        if key in attrs:
            rows.append((name, str(attrs[key])))
    return rows


def _centre_row(surface: Surface, values: SurfaceValues) -> tuple[str, str]:
    """The loss at (0, 0), the trained model, or at the middle grid point when 0 is not on it:
    its value, or why it has none ("not evaluated", "evaluated, loss NaN")."""
    # In the arrays' index order: (x,) for a line, (y, x) for a plane.
    axes = {"x": surface.x} if surface.y is None else {"y": surface.y, "x": surface.x}
    zeros = {name: np.flatnonzero(axis == 0.0) for name, axis in axes.items()}
    origin = all(len(z) for z in zeros.values())
    at = {name: int(zeros[name][0]) if origin else len(axis) // 2 for name, axis in axes.items()}
    where = ", ".join(f"{name}={axes[name][at[name]]:.4g}" for name in sorted(axes))
    name = "loss at (0, 0)" if origin else f"loss at centre ({where})"
    return name, values.text_at(tuple(at.values()))
