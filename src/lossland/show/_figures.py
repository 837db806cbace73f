"""Publication figures of a surface: contour lines, filled contours, heat map, 3-D surface, 1-D.

Headless (matplotlib's Agg backend, imported lazily). Values: ±inf become the largest finite
loss (the seed's rule), points never evaluated (NaN) stay blank, ``log`` plots log10(loss),
``zmax`` clips. Optimizer paths and training trajectories are drawn on top when given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lossland.errors import LosslandError, arg
from lossland.io import Surface, atomic_path, check_output

if TYPE_CHECKING:
    from lossland.show._descent import OptimizerPath

CAPTION_KEYS = ("model", "norm", "ignore", "scheme", "split", "samples", "bn", "seed", "dtype")


@dataclass(frozen=True)
class PlotStyle:
    levels: int = 30
    log: bool = False
    zmax: float | None = None
    dpi: int = 150
    format: str = "png"
    cmap: str = "coolwarm"


def plot_values(surface: Surface, *, log: bool, zmax: float | None) -> np.ndarray:
    """The plotted array: inf → largest finite, clipped at ``zmax``, log10 on request."""
    z = surface.finite_loss()
    if zmax is not None:
        z = np.minimum(z, zmax)
    if log:
        finite = z[np.isfinite(z)]
        if finite.size and finite.min() <= 0:
            raise LosslandError(
                "log scale needs positive losses, and this surface has losses ≤ 0: "
                f"drop {arg('log')}"
            )
        z = np.log10(z)
    return z


def caption(surface: Surface) -> str:
    parts = [f"{k}={surface.attrs[k]}" for k in CAPTION_KEYS if k in surface.attrs]
    if surface.y is not None:
        parts.append(f"grid {len(surface.x)}×{len(surface.y)}")
    else:
        parts.append(f"{len(surface.x)} points")
    cosine = surface.attrs.get("cosine")
    if isinstance(cosine, float):
        parts.append(f"cos(δ,η)={cosine:+.1e}")
    return ", ".join(parts)


def axis_labels(surface: Surface) -> tuple[str, str]:
    labels = surface.attrs.get("axis_labels")
    if isinstance(labels, (list, tuple)) and len(labels) == 2:
        return str(labels[0]), str(labels[1])
    if surface.attrs.get("directions_kind") == "models":
        return "x (θ₂ − θ₁)", "y (θ₃ − θ₁)"
    return "x (direction δ)", "y (direction η)"


def plot_surface(
    surface: Surface,
    out_dir: str | os.PathLike[str],
    *,
    stem: str = "surface",
    style: PlotStyle | None = None,
    paths: Sequence[OptimizerPath] = (),
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> list[Path]:
    """Write every figure for ``surface`` into ``out_dir``; return the files written.

    Every file is checked before the first is drawn: an existing one is replaced only with
    ``overwrite``, one of ``inputs`` never (see :func:`lossland.io.check_output`).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    style = style or PlotStyle()
    if style.format not in ("png", "pdf", "svg"):
        raise LosslandError(f"unknown image format {style.format!r}: choose png, pdf or svg")
    if style.levels < 2:
        raise LosslandError(f"{arg('levels')} must be at least 2, got {style.levels}")
    if not surface.done.any():
        raise LosslandError("the surface has no evaluated points yet: run lossland surface first")
    files = figure_files(surface.ndim, out_dir, stem=stem, format=style.format)
    if Path(out_dir).exists():
        for file in files:
            check_output(file, overwrite=overwrite, inputs=inputs)
    else:
        Path(out_dir).mkdir(parents=True)
    if surface.y is None:
        return [_line(surface, files[0], style)]
    z = plot_values(surface, log=style.log, zmax=style.zmax)
    contour, contourf, heatmap, surface3d = files
    return [
        _contour(surface, z, contour, style, paths, filled=False),
        _contour(surface, z, contourf, style, paths, filled=True),
        _heatmap(surface, z, heatmap, style, paths),
        _surface3d(surface, z, surface3d, style, paths),
    ]


def figure_files(
    ndim: int, out_dir: str | os.PathLike[str], *, stem: str, format: str
) -> list[Path]:
    """The files :func:`plot_surface` writes: ``<stem>_1d`` for a line; contour, filled
    contour, heat map and 3-D for a plane."""
    kinds = ["1d"] if ndim == 1 else ["contour", "contourf", "heatmap", "3d"]
    return [Path(out_dir) / f"{stem}_{kind}.{format}" for kind in kinds]


def _zlabel(style: PlotStyle) -> str:
    return "log10 loss" if style.log else "loss"


def _save(fig: Any, path: Path, style: PlotStyle, surface: Surface) -> Path:
    import textwrap

    import matplotlib.pyplot as plt

    text = textwrap.fill(caption(surface), width=int(fig.get_figwidth() * 17))
    lines = text.count("\n") + 1
    # Leave room at the bottom for the caption so it never overlaps the axis labels.
    fig.get_layout_engine().set(rect=(0, 0.025 * lines + 0.01, 1, 1 - 0.025 * lines - 0.01))
    fig.text(0.01, 0.005, text, fontsize=6.5, color="0.35", ha="left", va="bottom")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=style.format, dpi=style.dpi)
    plt.close(fig)
    return path


def _levels(z: np.ndarray, count: int) -> np.ndarray:
    """Evenly spaced levels; geometric ones when positive values span orders of magnitude, so
    the basin around the minimum is resolved instead of one blank region."""
    finite = z[np.isfinite(z)]
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        high = low + 1e-12
    if _spans_decades(low, high):
        return np.geomspace(low, high, count)
    return np.linspace(low, high, count)


def _spans_decades(low: float, high: float) -> bool:
    return low > 0 and high / low > 20


def _color_norm(z: np.ndarray) -> Any:
    """A log colour scale where the levels are geometric, so colours follow the levels."""
    from matplotlib.colors import LogNorm, Normalize

    finite = z[np.isfinite(z)]
    low, high = float(finite.min()), float(finite.max())
    return LogNorm(low, high) if _spans_decades(low, high) else Normalize(low, high)


def _overlay(ax: Any, surface: Surface, paths: Sequence[OptimizerPath]) -> None:
    """Training trajectories (from the file) and optimizer paths, with a legend."""
    drawn = False
    for name, points in surface.trajectories.items():
        pts = np.asarray(points)
        if pts.ndim == 2 and pts.shape[1] == 2:
            ax.plot(pts[:, 0], pts[:, 1], "-o", ms=2.5, lw=1.2, label=f"training: {name}")
            ax.plot(pts[-1, 0], pts[-1, 1], "k*", ms=7)
            drawn = True
    for path in paths:
        pts = np.asarray(path.points)
        ax.plot(pts[:, 0], pts[:, 1], "-", lw=1.6, label=path.label)
        ax.plot(pts[0, 0], pts[0, 1], "o", color="k", ms=4)
        ax.plot(pts[-1, 0], pts[-1, 1], "x", color="k", ms=5)
        drawn = True
    if drawn:
        ax.legend(fontsize=7, loc="upper right", framealpha=0.8)


def _frame(ax: Any, surface: Surface) -> None:
    xl, yl = axis_labels(surface)
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.set_xlim(surface.x[0], surface.x[-1])
    assert surface.y is not None
    ax.set_ylim(surface.y[0], surface.y[-1])
    ax.set_aspect("auto")


def _contour(
    surface: Surface,
    z: np.ndarray,
    path: Path,
    style: PlotStyle,
    paths: Sequence[OptimizerPath],
    *,
    filled: bool,
) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.2), layout="constrained")
    x_grid, y_grid = surface.grid()
    masked = np.ma.masked_invalid(z)
    levels = _levels(z, style.levels)
    if filled:
        cs = ax.contourf(
            x_grid, y_grid, masked, levels=levels, cmap=style.cmap, norm=_color_norm(z)
        )
        fig.colorbar(cs, ax=ax, label=_zlabel(style))
    else:
        cs = ax.contour(
            x_grid,
            y_grid,
            masked,
            levels=levels,
            cmap=style.cmap,
            linewidths=0.9,
            norm=_color_norm(z),
        )
        drawn = np.asarray(cs.levels)
        ax.clabel(cs, drawn[:: max(1, len(drawn) // 6)], fontsize=6, fmt="%.3g")
        fig.colorbar(cs, ax=ax, label=_zlabel(style))
    _frame(ax, surface)
    _overlay(ax, surface, paths)
    ax.set_title("filled contours" if filled else "contour lines", fontsize=10)
    return _save(fig, path, style, surface)


def _heatmap(
    surface: Surface, z: np.ndarray, path: Path, style: PlotStyle, paths: Sequence[OptimizerPath]
) -> Path:
    import matplotlib.pyplot as plt

    assert surface.y is not None
    fig, ax = plt.subplots(figsize=(6.4, 5.2), layout="constrained")
    mesh = ax.pcolormesh(
        surface.x,
        surface.y,
        np.ma.masked_invalid(z),
        cmap=style.cmap,
        shading="nearest",
        norm=_color_norm(z),
    )
    fig.colorbar(mesh, ax=ax, label=_zlabel(style))
    _frame(ax, surface)
    _overlay(ax, surface, paths)
    ax.set_title("heat map", fontsize=10)
    return _save(fig, path, style, surface)


def _surface3d(
    surface: Surface, z: np.ndarray, path: Path, style: PlotStyle, paths: Sequence[OptimizerPath]
) -> Path:
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(7.2, 5.8), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    x_grid, y_grid = surface.grid()
    finite = z[np.isfinite(z)]
    low, high = float(finite.min()), float(finite.max())
    floor = low - 0.25 * max(high - low, 1e-12)
    masked = np.ma.masked_invalid(z)
    ax.plot_surface(
        x_grid,
        y_grid,
        masked,
        cmap=style.cmap,
        rstride=1,
        cstride=1,
        linewidth=0,
        antialiased=True,
        alpha=0.95,
        norm=_color_norm(z),
    )
    # The contour projected on the floor, as in the seed.
    ax.contour(
        x_grid,
        y_grid,
        masked,
        levels=_levels(z, style.levels),
        zdir="z",
        offset=floor,
        cmap=style.cmap,
        linewidths=0.8,
        norm=_color_norm(z),
    )
    for name, points in surface.trajectories.items():
        pts = np.asarray(points)
        if pts.ndim == 2 and pts.shape[1] == 2:
            # On the surface itself (interpolated), so the path is not hidden under it.
            heights = _heights_on(surface, pts, style)
            ax.plot(
                pts[:, 0],
                pts[:, 1],
                heights,
                "-o",
                ms=2,
                lw=1.4,
                color="k",
                label=f"training: {name}",
                zorder=10,
            )
    for p in paths:
        zs = np.log10(p.losses) if style.log else np.minimum(p.losses, style.zmax or np.inf)
        ax.plot(p.points[:, 0], p.points[:, 1], zs, "-", lw=2.0, label=p.label, zorder=10)
        ax.plot(p.points[:, 0], p.points[:, 1], np.full(len(zs), floor), ":", lw=1.0, color="k")
    if paths or surface.trajectories:
        ax.legend(fontsize=7, loc="upper left")
    xl, yl = axis_labels(surface)
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.set_zlabel(_zlabel(style))
    ax.set_zlim(floor, high)
    ax.view_init(elev=35, azim=-60)
    return _save(fig, path, style, surface)


def _heights_on(surface: Surface, points: np.ndarray, style: PlotStyle) -> np.ndarray:
    """Plotted heights of the surface under ``points`` (bilinear; NaN outside the grid)."""
    from lossland.show._descent import Interpolant, surface_grid

    interpolant = Interpolant(surface_grid(surface), interpolation="bilinear")
    raw = np.array([interpolant.value(x, y) for x, y in points])
    if style.zmax is not None:
        raw = np.minimum(raw, style.zmax)
    return np.log10(raw) if style.log else raw


def _line(surface: Surface, path: Path, style: PlotStyle) -> Path:
    """1-D: loss (left axis) and accuracy (right axis) along the line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    z = plot_values(surface, log=style.log, zmax=style.zmax)
    ax.plot(surface.x, z, "-", color="tab:blue", lw=1.8, label=_zlabel(style))
    if np.isfinite(surface.loss_sem).any() and not style.log:
        ax.fill_between(
            surface.x,
            z - 2 * surface.loss_sem,
            z + 2 * surface.loss_sem,
            color="tab:blue",
            alpha=0.2,
            lw=0,
            label="±2 SE",
        )
    ax.set_xlabel(axis_labels(surface)[0])
    ax.set_ylabel(_zlabel(style), color="tab:blue")
    twin = ax.twinx()
    twin.plot(surface.x, surface.acc, "--", color="tab:red", lw=1.5, label="accuracy")
    twin.set_ylabel("accuracy", color="tab:red")
    twin.set_ylim(0, 1)
    ax.set_xlim(surface.x[0], surface.x[-1])
    ax.set_title(f"1-D {surface.split} loss and accuracy", fontsize=10)
    handles = ax.get_legend_handles_labels()
    twin_handles = twin.get_legend_handles_labels()
    ax.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], fontsize=7)
    return _save(fig, path, style, surface)


def plot(
    surface: Surface | str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    levels: int = 30,
    log: bool = False,
    zmax: float | None = None,
    dpi: int = 150,
    format: str = "png",
    paths: Sequence[OptimizerPath] = (),
    overwrite: bool = False,
) -> list[Path]:
    """Public API: plots of a ``Surface`` or a surface file (next to the file by default); an
    existing figure is replaced only with ``overwrite``."""
    source = Path(surface) if not isinstance(surface, Surface) else None
    loaded = Surface.load(source) if source is not None else surface
    assert isinstance(loaded, Surface)
    stem = source.stem if source is not None else "surface"
    folder = Path(out_dir) if out_dir is not None else (source.parent if source else Path("."))
    style = PlotStyle(levels=levels, log=log, zmax=zmax, dpi=dpi, format=format)
    return plot_surface(
        loaded,
        folder,
        stem=stem,
        style=style,
        paths=paths,
        overwrite=overwrite,
        inputs=[source] if source is not None else [],
    )
