"""How figures look, and the figures themselves: the style, colours, the file options of a save,
the options every map shares, and new matplotlib figures (never pyplot)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from lossland.errors import LosslandError, arg

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure
    from matplotlib.typing import RcKeyType

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
        """Screen figures: the write-up's coolwarm colours and the settings caption."""
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


def path_colour(index: int) -> str:
    """The colour of the optimizer path at ``index`` in its list (the same in every figure)."""
    return PATH_COLOURS[index % len(PATH_COLOURS)]


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
