"""Does the picture depend on the random directions drawn? The same grid for several seeds,
compared: the correlation of the log-surfaces, the spread of the minimum, of the basin radius
and of the sharpness figures, and a per-point mean and spread map.

The write-up that started this project claims landscapes "look nearly identical" on every
run because random directions are "orthogonal enough"; the cosines say whether they are
orthogonal, these figures whether the landscape agrees.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from lossland.io import SeedStack, Surface
from lossland.show._sharpness import sharpness
from lossland.show._topology import global_basin, surface_topology

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BASIN_FACTOR = 2.0  # the basin radius is that of {L ≤ 2·L_min} around the minimum


def seed_surface(surface: Surface, k: int) -> Surface:
    """The ``k``-th seed's surface of a stacked one (a plain surface of its own)."""
    stack = _stack(surface)
    return replace(
        surface,
        loss=stack.loss[k],
        acc=stack.acc[k],
        loss_sem=stack.loss_sem[k],
        done=stack.done[k],
        attrs=dict(stack.attrs[k]),
        samples=None,
        interpolated=None,
        stack=None,
    )


def robustness(surface: Surface) -> dict[str, Any]:
    """The figures across the seeds of a stacked surface (JSON-ready)."""
    stack = _stack(surface)
    logs = _logs(stack)
    n = len(stack.seeds)
    corr = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(n):
            both = np.isfinite(logs[i]) & np.isfinite(logs[j])
            if both.sum() > 2:
                corr[i, j] = float(np.corrcoef(logs[i][both], logs[j][both])[0, 1])
    pairs = corr[np.triu_indices(n, 1)]
    seeds = [seed_surface(surface, k) for k in range(n)]
    minima = [s.argmin() for s in seeds]
    points = np.array([[m[0], m[1] if m[1] is not None else 0.0] for m in minima])
    losses = np.array([m[2] for m in minima])
    rises = [sharpness(s) for s in seeds]
    return {
        "seeds": list(stack.seeds),
        "log_correlation": {
            "mean": _finite(np.nanmean(pairs)) if pairs.size else None,
            "min": _finite(np.nanmin(pairs)) if pairs.size else None,
            "max": _finite(np.nanmax(pairs)) if pairs.size else None,
            "matrix": [[_finite(v) for v in row] for row in corr],
        },
        "minimum": {
            "loss": [_finite(v) for v in losses],
            "at": points.tolist(),
            "loss_spread": _finite(np.nanstd(losses)),
            "position_spread": _finite(
                np.nanmean(np.linalg.norm(points - np.nanmean(points, axis=0), axis=1))
            ),
        },
        "max_loss": [_finite(np.nanmax(np.exp(v))) for v in logs],
        "basin_radius": [_basin_radius(s) for s in seeds],
        "rise_mean": [None if r is None else r.rise_mean for r in rises],
    }


def robustness_lines(summary: dict[str, Any], cosines: dict[str, Any] | None = None) -> list[str]:
    """What ``lossland info`` and the surface command print about a seed stack."""
    lines = [f"{len(summary['seeds'])} direction seeds: {', '.join(map(str, summary['seeds']))}"]
    if cosines:
        lines.append(
            f"  cosines of all {cosines['pairs']} direction pairs: max |cos| "
            f"{cosines['max_abs']:.2e} (orthogonal to ±{cosines['expected']:.1e} expected)"
        )
    c = summary["log_correlation"]
    if c["mean"] is not None:
        lines.append(
            f"  correlation of ln(loss) between seeds: mean {c['mean']:.3f} "
            f"(min {c['min']:.3f}, max {c['max']:.3f})"
        )
    m = summary["minimum"]
    lines.append(
        f"  minimum: loss {_range(m['loss'])}, spread {m['loss_spread']:.3g}; "
        f"position spread {m['position_spread']:.3g}"
    )
    lines.append(f"  largest loss: {_range(summary['max_loss'])}")
    radii = [r for r in summary["basin_radius"] if r is not None]
    if radii:
        lines.append(f"  basin radius (L ≤ {BASIN_FACTOR:g}·L_min): {_range(radii)}")
    rises = [r for r in summary["rise_mean"] if r is not None]
    if rises:
        lines.append(f"  loss rise at the sharpness radius: {_range(rises)}")
    return lines


def seeds_figure(surface: Surface) -> Figure:
    """The seeds' contours side by side on one (log) colour scale, and the spread map."""
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure as MplFigure

    from lossland.show._figures import log_ticks, loss_text

    stack = _stack(surface)
    assert surface.y is not None
    logs = _logs(stack)
    n = len(stack.seeds)
    fig = MplFigure(figsize=(2.5 * (n + 1) + 0.8, 2.9), layout="constrained")
    axes = fig.subplots(1, n + 1)
    values = np.exp(logs)
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    high = max(high, low * 1.0001)
    norm, levels = LogNorm(low, high), np.geomspace(low, high, 25)
    mesh = None
    for k, ax in enumerate(axes[:n]):
        mesh = ax.contourf(
            surface.x, surface.y, values[k], levels=levels, norm=norm, cmap="viridis"
        )
        ax.set_title(f"seed {stack.seeds[k]}", fontsize=9)
    assert mesh is not None
    bar = fig.colorbar(mesh, ax=list(axes[:n]), shrink=0.9, ticks=log_ticks(low, high))
    bar.ax.set_yticklabels([loss_text(v) for v in bar.get_ticks()])
    bar.ax.set_title("loss", fontsize=8)
    spread = np.nanstd(logs, axis=0)
    shown = axes[n].contourf(surface.x, surface.y, spread, levels=12, cmap="magma")
    axes[n].set_title("spread across seeds", fontsize=9)
    side = fig.colorbar(shown, ax=axes[n], shrink=0.9)
    side.ax.set_title("std ln L", fontsize=8)
    for colour_bar in (bar, side):
        colour_bar.ax.tick_params(labelsize=7)
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xlabel("x", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("y", fontsize=8)
    return fig


def mean_and_spread(surface: Surface) -> tuple[np.ndarray, np.ndarray]:
    """Per point: the mean and the standard deviation of ln(loss) across the seeds."""
    logs = _logs(_stack(surface))
    return np.nanmean(logs, axis=0), np.nanstd(logs, axis=0)


def _stack(surface: Surface) -> SeedStack:
    if surface.stack is None:
        raise ValueError("the surface holds one seed: compute it with seeds=N")
    return surface.stack


def _logs(stack: SeedStack) -> np.ndarray:
    ok = stack.done & np.isfinite(stack.loss) & (stack.loss > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, np.log(np.where(ok, stack.loss, 1.0)), np.nan)


def _basin_radius(surface: Surface) -> float | None:
    found = surface_topology(surface, stored=False)
    if found is None or not found.minima:
        return None
    lowest = found.minima[0].loss
    basin = global_basin(found, surface.loss, delta=(BASIN_FACTOR - 1) * lowest, done=surface.done)
    return float(np.sqrt(basin.area / np.pi))


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None


def _range(values: list[Any]) -> str:
    finite = [v for v in values if v is not None]
    if not finite:
        return "n/a"
    return f"{min(finite):.4g} .. {max(finite):.4g}"
