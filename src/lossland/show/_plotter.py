"""The standard figures of a surface as files (``lossland.plot``), listed once in
:data:`FIGURES`, and the side-by-side figure of a seed stack."""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lossland.analysis import comparison, seed_logs, seed_stack, seed_surface
from lossland.errors import LosslandError, LosslandWarning
from lossland.io import (
    OptimizerPath,
    Surface,
    atomic_path,
    check_length,
    check_output,
    make_folder,
)
from lossland.show._layer_figures import layers_figure
from lossland.show._lines import line, profiles
from lossland.show._maps import contour, contourf, heatmap
from lossland.show._overlays import _draw_paths, _legend_below, paths, trajectories
from lossland.show._scales import _check_look, _Scale, check_drawable, loss_text, loss_values
from lossland.show._style import (
    _METADATA,
    FORMATS,
    SAVE_RC,
    PlotStyle,
    StyleName,
    _figure_of,
    _root,
)
from lossland.show._surface3d import surface3d
from lossland.show._text import draws_text, glyph_notes
from lossland.show._topology_figures import (
    critical_points,
    merge_tree,
    persistence,
    topology_figure,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure, SubFigure


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


# --- the standard figures ----------------------------------------------------------------------


@dataclass(frozen=True)
class StandardFigure:
    """One figure :func:`plot` writes, as ``<stem>_<kind>.<format>``."""

    kind: str
    ndim: int  # drawn for lines (1) or for planes (2)
    draw: Callable[..., Any]  # its public drawer, given the options of plot() that it takes
    thin: bool  # drawn for a grid of one row or column too
    seeds: bool = False  # drawn only for a seed stack
    layers: bool = False  # drawn only for a stack of layers (params_per_layer)
    overlays: bool = False  # a map: trajectories, optimizer paths and the legend under it
    compared: bool = False  # drawn only for a surface holding a comparison of paths


# In the order plot() writes them. Each drawer but seeds_figure is also Plotter's attribute.
FIGURES = (
    StandardFigure(kind="1d", ndim=1, draw=line, thin=True),
    StandardFigure(kind="profiles", ndim=1, draw=profiles, thin=True, compared=True),
    StandardFigure(kind="contour", ndim=2, draw=contour, thin=False, overlays=True),
    StandardFigure(kind="contourf", ndim=2, draw=contourf, thin=False, overlays=True),
    StandardFigure(kind="heatmap", ndim=2, draw=heatmap, thin=True, overlays=True),
    StandardFigure(kind="3d", ndim=2, draw=surface3d, thin=False, overlays=True),
    StandardFigure(kind="topology", ndim=2, draw=topology_figure, thin=True),
    StandardFigure(kind="seeds", ndim=2, draw=seeds_figure, thin=False, seeds=True),
    StandardFigure(kind="layer_lines", ndim=1, draw=layers_figure, thin=True, layers=True),
    StandardFigure(kind="layers", ndim=2, draw=layers_figure, thin=False, layers=True),
)


def _standard(
    ndim: int, *, thin: bool, seeds: bool, compared: bool = False, layers: bool = False
) -> list[StandardFigure]:
    return [
        f
        for f in FIGURES
        if f.ndim == ndim
        and (f.thin or not thin)
        and (seeds or not f.seeds)
        and (compared or not f.compared)
        and (layers or not f.layers)
    ]


def figure_kinds(
    ndim: int,
    *,
    thin: bool = False,
    seeds: bool = False,
    compared: bool = False,
    layers: bool = False,
) -> list[str]:
    """The standard figures, in order (:data:`FIGURES`): ``1d`` for a line, and ``profiles``
    for a line holding a comparison of paths; for a plane contour, contourf, heatmap and 3d (a
    ``thin`` grid of one row or column: heatmap only), topology, and the seeds side by side for
    a seed stack; ``layers`` for a stack of layers (one map or line per block)."""
    chosen = _standard(ndim, thin=thin, seeds=seeds, compared=compared, layers=layers)
    return [f.kind for f in chosen]


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
    profiles = staticmethod(profiles)
    paths = staticmethod(paths)
    trajectories = staticmethod(trajectories)
    critical_points = staticmethod(critical_points)
    persistence = staticmethod(persistence)
    merge_tree = staticmethod(merge_tree)
    topology = staticmethod(topology_figure)
    layers = staticmethod(layers_figure)
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
        """Write the standard figures as ``<stem>_<kind>.<format>`` and return the files.

        For a plane: contour, contourf, heatmap, 3d (the surface's trajectories and ``paths`` on
        each) and topology (persistence diagram and merge tree); for a line: 1d. A grid with one
        row or column gets the heat map and the topology only.

        Args:
            surface: a surface, or its file (whose folder and stem are then the defaults).
            out_dir: the folder to write into.
            stem: the files' name before ``_<kind>``.
            style: a ``PlotStyle`` or its name ("default", "paper"); ``format``, ``dpi`` and
                ``caption`` override the style's, as do ``cmap`` and ``title``.
            log: a logarithmic colour scale on the loss; ``levels`` contour levels; ``zmax`` clips
                the loss from above.
            critical_points: mark minima and saddles on the contours.
            paths: optimizer paths drawn on each figure (:func:`lossland.descend`).
            overwrite: replace existing files (the surface file itself never).

        Returns:
            The files written.

        Raises:
            LosslandError: a surface with nothing to draw, log of non-positive losses, or a file
                that exists (without ``overwrite``) or cannot be written; every file is checked
                before the first is drawn (:func:`lossland.io.check_output`).

        Example:
            >>> lossland.plot(s, "figures/", log=True, style="paper")
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
        thin, (seeds, layers) = min(loaded.loss.shape) < 2, _stacked(loaded)
        compared = bool(comparison(loaded.attrs))
        files = figure_files(
            loaded.ndim, folder, stem=stem, format=chosen.format, thin=thin, seeds=seeds,
            compared=compared, layers=layers,
        )  # fmt: skip
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


def figure_files(
    ndim: int,
    out_dir: str | os.PathLike[str],
    *,
    stem: str,
    format: str,
    thin: bool = False,
    seeds: bool = False,
    compared: bool = False,
    layers: bool = False,
) -> list[Path]:
    """The files ``plot`` writes, ``<stem>_<kind>.<format>`` (see :func:`figure_kinds`)."""
    kinds = figure_kinds(ndim, thin=thin, seeds=seeds, compared=compared, layers=layers)
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
    """(kind, figure) of each standard figure, drawn one at a time as they are saved; each
    drawer gets the options it takes, by its parameters' names."""
    from matplotlib.axes import Axes

    options: dict[str, Any] = dict(
        log=log,
        zmax=zmax,
        caption=style.caption,
        title=title,
        style=style,
        cmap=cmap,
        levels=levels,
        critical_points=critical_points,
        titles=title != "",  # topology_figure: its panels' titles
    )
    thin, (seeds, layers) = min(surface.loss.shape) < 2, _stacked(surface)
    compared = bool(comparison(surface.attrs))
    chosen = _standard(surface.ndim, thin=thin, seeds=seeds, compared=compared, layers=layers)
    for figure in chosen:
        taken = inspect.signature(figure.draw).parameters
        drawn = figure.draw(surface, **{k: v for k, v in options.items() if k in taken})
        if figure.overlays:
            trajectories(drawn, surface)
            _draw_paths(drawn, optimizer_paths, surface, style)
            yield figure.kind, _legend_below(drawn, style)
        else:
            yield figure.kind, _root(_figure_of(drawn)) if isinstance(drawn, Axes) else drawn


def _stacked(surface: Surface) -> tuple[bool, bool]:
    """Whether ``surface`` holds a stack of seeds, a stack of layers."""
    axis = None if surface.stack is None else surface.stack.axis
    return axis == "seeds", axis == "layers"


plot = Plotter()
