"""Does the picture depend on the random directions drawn? The same grid for several seeds,
compared: the correlation of the log-surfaces, the spread of the minimum, of the basin radius
and of the sharpness measures, and a per-point mean and spread map.

The write-up that started this project claims landscapes "look nearly identical" on every
run because random directions are "orthogonal enough"; the cosines say whether they are
orthogonal, these measures whether the landscape agrees.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import numpy as np

from lossland.analysis._measures import sharpness
from lossland.analysis._topology import global_basin
from lossland.analysis._topology_surface import surface_graph, surface_topology
from lossland.core import printable, progress_bar
from lossland.errors import LosslandError, arg
from lossland.io import SeedStack, Surface

BASIN_FACTOR = 2.0  # the basin radius is that of {L ≤ 2·L_min} around the minimum


def seed_surface(surface: Surface, k: int) -> Surface:
    """The ``k``-th entry's surface of a stacked one (a seed's, or a block's in a stack of
    layers), a plain surface of its own."""
    stack = surface.stack if surface.stack is not None else seed_stack(surface)
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


def robustness(surface: Surface, *, progress: bool = False) -> dict[str, Any]:
    """The measures across the seeds of a stacked surface (JSON-ready); a measure no seed has
    (every loss of the seeds NaN, say) is None. ``progress``: a bar over the N² comparisons."""
    with warnings.catch_warnings():  # all-NaN slices and constant rows: None, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return _robustness(surface, progress)


def _robustness(surface: Surface, progress: bool) -> dict[str, Any]:
    stack = seed_stack(surface)
    logs = seed_logs(stack)
    n = len(stack.seeds)
    corr = np.full((n, n), np.nan)
    bar = progress_bar(n * n, desc="comparing seeds", unit="pair", enabled=progress)
    for i in range(n):
        for j in range(n):
            both = np.isfinite(logs[i]) & np.isfinite(logs[j])
            if both.sum() > 2:
                corr[i, j] = float(np.corrcoef(logs[i][both], logs[j][both])[0, 1])
        if bar is not None:
            bar.update(n)
    if bar is not None:
        bar.close()
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
            "at": [[_finite(v) for v in point] for point in points],
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
    seeds = ", ".join(map(printable, summary["seeds"]))  # the file's: one line, whatever it holds
    lines = [f"{len(summary['seeds'])} direction seeds: {seeds}"]
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
        f"  minimum: loss {_range(m['loss'])}, spread {_g(m['loss_spread'])}; "
        f"position spread {_g(m['position_spread'])}"
    )
    lines.append(f"  largest loss: {_range(summary['max_loss'])}")
    radii = [r for r in summary["basin_radius"] if r is not None]
    if radii:
        lines.append(f"  basin radius (L ≤ {BASIN_FACTOR:g}·L_min): {_range(radii)}")
    rises = [r for r in summary["rise_mean"] if r is not None]
    if rises:
        lines.append(f"  loss rise at the sharpness radius: {_range(rises)}")
    return lines


def mean_and_spread(surface: Surface) -> tuple[np.ndarray, np.ndarray]:
    """Per point: the mean and the standard deviation of ln(loss) across the seeds (NaN where
    no seed has a finite, positive loss)."""
    logs = seed_logs(seed_stack(surface))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(logs, axis=0), np.nanstd(logs, axis=0)


def seed_stack(surface: Surface) -> SeedStack:
    """The surface's seed stack; a one-seed surface (or a stack of layers) is an error."""
    if surface.stack is None or surface.stack.axis != "seeds":
        held = "one direction seed" if surface.stack is None else "a stack of layers, one seed"
        raise LosslandError(f"the surface holds {held}: compute it with {arg('seeds')} N (N >= 2)")
    return surface.stack


def seed_logs(stack: SeedStack) -> np.ndarray:
    """ln(loss) per seed and point; NaN where not done, not finite or not positive."""
    ok = stack.done & np.isfinite(stack.loss) & (stack.loss > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, np.log(np.where(ok, stack.loss, 1.0)), np.nan)


def _basin_radius(surface: Surface) -> float | None:
    """The radius of {L ≤ 2·L_min} around the minimum: None without one, or for L_min <= 0
    (where the factor means nothing)."""
    found = surface_topology(surface, stored=False)
    loss, evaluated = surface_graph(surface)
    if found is None or loss is None or not found.minima[0].loss > 0:
        return None
    lowest = found.minima[0].loss
    basin = global_basin(found, loss, delta=(BASIN_FACTOR - 1) * lowest, done=evaluated)
    return float(np.sqrt(basin.area / np.pi))


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None


def _g(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _range(values: list[Any]) -> str:
    finite = [v for v in values if v is not None]
    if not finite:
        return "n/a"
    return f"{min(finite):.4g} .. {max(finite):.4g}"
