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
    pass

BASIN_FACTOR = 2.0  # the basin radius is that of {L ≤ 2·L_min} around the minimum


def seed_surface(surface: Surface, k: int) -> Surface:
    """The ``k``-th seed's surface of a stacked one (a plain surface of its own)."""
    stack = seed_stack(surface)
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
    stack = seed_stack(surface)
    logs = seed_logs(stack)
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


def mean_and_spread(surface: Surface) -> tuple[np.ndarray, np.ndarray]:
    """Per point: the mean and the standard deviation of ln(loss) across the seeds."""
    logs = seed_logs(seed_stack(surface))
    return np.nanmean(logs, axis=0), np.nanstd(logs, axis=0)


def seed_stack(surface: Surface) -> SeedStack:
    """The surface's seed stack; a one-seed surface is an error."""
    if surface.stack is None:
        raise ValueError("the surface holds one seed: compute it with seeds=N")
    return surface.stack


def seed_logs(stack: SeedStack) -> np.ndarray:
    """ln(loss) per seed and point; NaN where not done, not finite or not positive."""
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
