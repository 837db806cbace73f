"""Sharpness measures read off a computed surface, so every picture comes with numbers.

* **rise**: the loss increase L(±r·e) − L(0) at a fixed radius r along the plane's axes
  (linear interpolation between grid points), mean and max over the directions the grid
  reaches; r defaults to a tenth of the smaller half-range (0.1 on the usual −1:1 grid);
* **curvature** at the centre by central finite differences on the grid (three-point formulas
  that allow uneven spacing): ∂²L/∂x², ∂²L/∂y², ∂²L/∂x∂y and the principal curvatures (the
  eigenvalues of that 2×2 matrix). With unit Hessian directions these estimate λ₁ and λ₂;
* the Hessian **eigenvalues** stored with the directions, when they are Hessian directions;
* for model-to-model surfaces: the **barrier** along a line (max loss on [0, 1] minus the
  larger endpoint loss, and above the straight line between the endpoint losses) and the
  losses at the three checkpoints of a plane.

Sharpness reads evaluated points only (``refine`` evaluates :func:`measure_points`); a number
computed from points ``refine`` interpolated says so (:func:`from_text`).

Coordinates are the surface's own (for random planes, multiples of the filter-normalized
directions), so the measures compare surfaces computed with the same kind of directions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lossland.analysis._compare import comparison_lines
from lossland.analysis._topology_surface import surface_topology, sweep_stride
from lossland.core import recorded_kind
from lossland.errors import arg
from lossland.io import TOPOLOGY_ATTR, Surface

RADIUS_FRACTION = 0.1
STORED_MINIMA = 2000  # at most this many minima in a stored topology attribute (~600 kB)


@dataclass(frozen=True)
class Sharpness:
    """Measures at the centre (0, 0) of a surface; None where the grid does not allow them."""

    centre_loss: float
    radius: float | None
    rise_mean: float | None
    rise_max: float | None
    rise_directions: int  # how many of ±x, ±y reach the radius
    curvature_xx: float | None
    curvature_yy: float | None
    curvature_xy: float | None
    principal: tuple[float, float] | None
    eigenvalues: tuple[float, ...] | None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["principal"] = list(self.principal) if self.principal else None
        out["eigenvalues"] = list(self.eigenvalues) if self.eigenvalues else None
        return {k: _clean(v) for k, v in out.items()}


@dataclass(frozen=True)
class Barrier:
    """A loss barrier along the line from θ₁ (x = 0) to θ₂ (x = 1)."""

    height: float  # max L on [0, 1] − max(L(0), L(1))
    height_linear: float  # max over t of L(t) − ((1 − t)·L(0) + t·L(1))
    at: float  # x of the largest loss
    max_loss: float
    start_loss: float
    end_loss: float
    min_accuracy: float | None

    def as_dict(self) -> dict[str, Any]:
        return {k: _clean(v) for k, v in asdict(self).items()}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _index(values: np.ndarray, target: float) -> int | None:
    """Index of the grid value equal to ``target`` up to rounding of the grid's spacing."""
    if len(values) == 0:
        return None
    j = int(np.argmin(np.abs(values - target)))
    step = float(np.min(np.diff(values))) if len(values) > 1 else 1.0
    return j if abs(values[j] - target) <= 1e-6 * max(step, 1e-300) else None


def _values(surface: Surface, *, evaluated: bool = False) -> np.ndarray:
    """The finite losses (NaN elsewhere): a rise or a curvature through an infinite, NaN or
    missing point has no value, so those points are holes here. ``evaluated``: points that
    ``refine`` interpolated are holes too (what a sharpness measure reads must be measured)."""
    values = surface.values()
    keep = values.finite & surface.evaluated if evaluated else values.finite
    return np.where(keep, values.raw, np.nan)


def interpolated_among(surface: Surface, used: Any = Ellipsis) -> int:
    """How many of the points ``used`` (an index into the grid) refine interpolated: the one
    test of what a printed number was computed from (0 on a surface computed in full)."""
    if surface.interpolated is None:
        return 0
    return int(np.count_nonzero(surface.interpolated[used] & surface.done[used]))


def from_text(surface: Surface, used: Any = Ellipsis) -> str:
    """``""``, or ``" (from k of n points interpolated by refine)"`` for a number computed
    from the points ``used``: printed after every such number."""
    k = interpolated_among(surface, used)
    if not k:
        return ""
    n = int(np.count_nonzero(surface.done[used]))
    return f" (from {k} of {n} points interpolated by refine)"


def measure_points(surface: Surface, *, radius: float | None = None) -> np.ndarray:
    """(grid shape) bool: the points :func:`sharpness` reads: the centre's 3 (×3) neighbourhood
    and every grid point from the centre to the rise radius along each axis (the bracketing
    ones included). ``refine`` evaluates them, so the sharpness of a refined surface is
    measured, not interpolated. All False when the grid holds no centre."""
    mask = np.zeros(surface.shape, dtype=bool)
    axes = [surface.x] if surface.y is None else [surface.y, surface.x]
    centre = [_index(a, 0.0) for a in axes]
    if any(c is None for c in centre):
        return mask
    r = _radius(surface) if radius is None else radius
    spans = []
    for a, c in zip(axes, centre, strict=True):
        assert c is not None
        near = (max(c - 1, 0), min(c + 1, len(a) - 1))
        if r:
            lo = max(int(np.searchsorted(a, a[c] - r, side="right")) - 1, 0)
            hi = min(int(np.searchsorted(a, a[c] + r, side="left")), len(a) - 1)
            near = (min(near[0], lo), max(near[1], hi))
        spans.append(near)
    box = tuple(slice(c - 1 if c else 0, c + 2) for c in centre if c is not None)
    mask[box] = True
    for axis, (lo, hi) in enumerate(spans):  # the two rise segments through the centre
        line = [slice(c, c + 1) for c in centre if c is not None]
        line[axis] = slice(lo, hi + 1)
        mask[tuple(line)] = True
    return mask


def _radius(surface: Surface) -> float | None:
    """The default rise radius: RADIUS_FRACTION of the smaller half-range."""
    spans = [float(surface.x[-1] - surface.x[0])]
    if surface.y is not None:
        spans.append(float(surface.y[-1] - surface.y[0]))
    positive = [s for s in spans if s > 0]
    return RADIUS_FRACTION * min(positive) / 2 if positive else None


def _second(line: np.ndarray, coords: np.ndarray, j: int) -> float | None:
    """∂²/∂u² at index j by the three-point formula (uneven spacing allowed)."""
    if j <= 0 or j >= len(line) - 1:
        return None
    hm, hp = coords[j] - coords[j - 1], coords[j + 1] - coords[j]
    lm, l0, lp = line[j - 1], line[j], line[j + 1]
    value = 2.0 * ((lp - l0) / hp - (l0 - lm) / hm) / (hp + hm)
    return float(value) if math.isfinite(value) else None


def _rises(line: np.ndarray, coords: np.ndarray, j: int, r: float) -> list[float]:
    """L(c ± r) − L(c) by linear interpolation, where both bracketing grid points and every
    point between them and the centre were evaluated to a finite loss."""
    out = []
    eps = 1e-9 * max(float(coords[-1] - coords[0]), 1e-300)
    for target in (coords[j] + r, coords[j] - r):
        if not coords[0] - eps <= target <= coords[-1] + eps:
            continue
        lo, hi = sorted((float(coords[j]), float(target)))
        first = max(int(np.searchsorted(coords, lo + eps, side="right")) - 1, 0)
        last = min(int(np.searchsorted(coords, hi - eps, side="left")), len(coords) - 1)
        segment = line[first : last + 1]
        if not np.all(np.isfinite(segment)):
            continue  # a hole (unevaluated or non-finite) between the centre and the radius
        value = np.interp(target, coords[first : last + 1], segment)
        out.append(float(value - line[j]))
    return out


def eigenvalues_of(attrs: Mapping[str, Any]) -> tuple[float, ...] | None:
    info = attrs.get("directions_info")
    values = info.get("eigenvalues") if isinstance(info, Mapping) else None
    if isinstance(values, (list, tuple)) and values:
        return tuple(float(v) for v in values)
    return None


def sharpness(surface: Surface, *, radius: float | None = None) -> Sharpness | None:
    """The measures of a surface at its centre (0, 0), the trained model.

    Args:
        surface: a line or a plane whose grid holds (0, 0), evaluated.
        radius: how far from the centre the rise of the loss is measured (default: a tenth of
            the shorter axis's half-span).

    Returns:
        A :class:`Sharpness` (the centre's loss, the mean and largest rise within ``radius``,
        the curvatures and their principal values), or None when the grid does not contain an
        evaluated centre.

    Example:
        >>> m = lossland.sharpness(s)
        >>> m.rise_mean if m else None
    """
    z = _values(surface, evaluated=True)
    jx = _index(surface.x, 0.0)
    if jx is None:
        return None
    if surface.y is None:
        iy = None
        centre = z[jx]
    else:
        iy = _index(surface.y, 0.0)
        if iy is None:
            return None
        centre = z[iy, jx]
    if not math.isfinite(centre):
        return None
    if radius is None:
        radius = _radius(surface)
    row = z if iy is None else z[iy]
    rises = _rises(row, surface.x, jx, radius) if radius else []
    dxx = _second(row, surface.x, jx)
    dyy = dxy = None
    principal = None
    if iy is not None and surface.y is not None:
        column = z[:, jx]
        if radius:
            rises += _rises(column, surface.y, iy, radius)
        dyy = _second(column, surface.y, iy)
        dxy = _mixed(z, surface.x, surface.y, jx, iy)
        if dxx is not None and dyy is not None and dxy is not None:
            eig = np.linalg.eigvalsh(np.array([[dxx, dxy], [dxy, dyy]]))
            principal = (float(eig[1]), float(eig[0]))
    return Sharpness(
        centre_loss=float(centre),
        radius=radius,
        rise_mean=float(np.mean(rises)) if rises else None,
        rise_max=float(np.max(rises)) if rises else None,
        rise_directions=len(rises),
        curvature_xx=dxx,
        curvature_yy=dyy,
        curvature_xy=dxy,
        principal=principal,
        eigenvalues=eigenvalues_of(surface.attrs),
    )


def _mixed(z: np.ndarray, x: np.ndarray, y: np.ndarray, j: int, i: int) -> float | None:
    if not (0 < j < len(x) - 1 and 0 < i < len(y) - 1):
        return None
    value = (z[i + 1, j + 1] - z[i - 1, j + 1] - z[i + 1, j - 1] + z[i - 1, j - 1]) / (
        (x[j + 1] - x[j - 1]) * (y[i + 1] - y[i - 1])
    )
    return float(value) if math.isfinite(value) else None


def barrier(surface: Surface) -> Barrier | None:
    """The barrier of a 1-D surface whose grid holds x = 0 and x = 1 (model-to-model lines)."""
    if surface.y is not None:
        return None
    j0, j1 = _index(surface.x, 0.0), _index(surface.x, 1.0)
    if j0 is None or j1 is None:
        return None
    z = _values(surface)[j0 : j1 + 1]
    t = surface.x[j0 : j1 + 1]
    if not np.all(np.isfinite(z)):
        return None
    start, end = float(z[0]), float(z[-1])
    k = int(np.argmax(z))
    straight = (1 - t) * start + t * end
    acc = surface.acc[j0 : j1 + 1]
    acc = acc[np.isfinite(acc)]
    return Barrier(
        height=float(z[k] - max(start, end)),
        height_linear=float(np.max(z - straight)),
        at=float(t[k]),
        max_loss=float(z[k]),
        start_loss=start,
        end_loss=end,
        min_accuracy=float(acc.min()) if acc.size else None,
    )


def _between(surface: Surface) -> slice:
    """The points of a line from x = 0 to x = 1 (what :func:`barrier` reads)."""
    j0, j1 = _index(surface.x, 0.0), _index(surface.x, 1.0)
    return slice(j0, None if j1 is None else j1 + 1)


def node_losses(surface: Surface) -> dict[str, float] | None:
    """Losses at θ₁ (0, 0), θ₂ (1, 0), θ₃ (0, 1) of a model-to-model plane, where evaluated."""
    if surface.y is None:
        return None
    z = _values(surface)
    out = {}
    for name, (px, py) in (("θ1", (0.0, 0.0)), ("θ2", (1.0, 0.0)), ("θ3", (0.0, 1.0))):
        jx, iy = _index(surface.x, px), _index(surface.y, py)
        if jx is not None and iy is not None and math.isfinite(z[iy, jx]):
            out[name] = float(z[iy, jx])
    return out or None


def measures(surface: Surface, *, radius: float | None = None) -> dict[str, Any]:
    """Everything above as one JSON-ready dict (stored as the surface attribute ``sharpness``)."""
    out: dict[str, Any] = {}
    s = sharpness(surface, radius=radius)
    if s is not None:
        out.update(s.as_dict())
    if _between_models(surface):
        b = barrier(surface)
        if b is not None:
            j0, j1 = _index(surface.x, 0.0), _index(surface.x, 1.0)
            used = slice(j0, None if j1 is None else j1 + 1)
            out["barrier"] = {
                **b.as_dict(),
                "interpolated_points": interpolated_among(surface, used),
            }
        nodes = node_losses(surface)
        if nodes is not None:
            out["node_losses"] = nodes
    return out


def _between_models(surface: Surface) -> bool:
    """A surface between checkpoints (its kind's row says so): barrier, node losses, BN note."""
    row = recorded_kind(surface.attrs.get("directions_kind"))
    return row is not None and row.between_models


def _g(value: float | None, fmt: str = ".4g") -> str:
    return "n/a" if value is None else format(value, fmt)


def measure_lines(surface: Surface, *, radius: float | None = None) -> list[str]:
    """Summary lines: sharpness at the centre, eigenvalues, barrier, node losses."""
    lines = []
    s = sharpness(surface, radius=radius)
    if s is not None:
        if s.radius is not None and s.rise_directions:
            which = "±x" if surface.y is None else "±x, ±y"
            lines.append(
                f"sharpness: loss rise at r = {s.radius:.3g} mean {_g(s.rise_mean, '+.4g')}, "
                f"max {_g(s.rise_max, '+.4g')} ({s.rise_directions} of {which})"
            )
        if surface.y is None:
            if s.curvature_xx is not None:
                lines.append(f"curvature at the centre: d²L/dx² = {s.curvature_xx:.4g}")
        elif s.curvature_xx is not None or s.curvature_yy is not None:
            text = (
                f"curvature at the centre: d²L/dx² = {_g(s.curvature_xx)}, "
                f"d²L/dy² = {_g(s.curvature_yy)}, d²L/dxdy = {_g(s.curvature_xy)}"
            )
            if s.principal is not None:
                text += f" (principal {s.principal[0]:.4g}, {s.principal[1]:.4g})"
            lines.append(text)
    check = surface.attrs.get("refine_check")
    if isinstance(check, dict):
        lines.append(refine_line(surface, check))
    eig = eigenvalues_of(surface.attrs)
    if eig is not None:
        lines.append("Hessian eigenvalues: " + ", ".join(f"{v:.4g}" for v in eig))
    if _between_models(surface):
        values = surface.values()
        bad = int((values.nan | values.infinite).sum())
        if bad and surface.attrs.get("bn") == "eval":
            lines.append(
                f"note: {bad} points have a non-finite loss: extrapolated BatchNorm variances "
                f"can turn negative outside the checkpoints; try {arg('bn')} recompute"
            )
        b = barrier(surface)
        if b is not None:
            acc = "" if b.min_accuracy is None else f"; min accuracy {b.min_accuracy:.2f} %"
            used = _between(surface)
            lines.append(
                f"barrier {b.height:+.4g} (max loss {b.max_loss:.4g} at x={b.at:g} vs ends "
                f"{b.start_loss:.4g}, {b.end_loss:.4g}); {b.height_linear:+.4g} above the "
                f"straight line{acc}{from_text(surface, used)}"
            )
        found = surface.attrs.get("barrier_refined")
        if isinstance(found, dict):
            lines.append(_refined_line(found))
        nodes = node_losses(surface)
        if nodes is not None:
            lines.append(
                "loss at the checkpoints: " + ", ".join(f"{k} {v:.4g}" for k, v in nodes.items())
            )
    return lines + comparison_lines(surface.attrs)


def refine_line(surface: Surface, check: dict[str, Any]) -> str:
    """What ``refine`` measured of its own error (``run`` stores ``refine_check``)."""
    evaluated = int(np.count_nonzero(surface.evaluated))
    head = f"refine {check.get('tol')}: {evaluated} of {surface.loss.size} points evaluated"
    try:
        last = check["rounds"][-1]
    except (KeyError, IndexError, TypeError):
        return head + "; nothing interpolated to check"
    try:
        bound = last["exceeded_share_upper95"]
        worst = last["max_error"]
        return (
            f"{head}; {last['checked']} of the {last['interpolated']} then interpolated "
            f"evaluated as a check (round {len(check['rounds'])}): max |Δ ln L| "
            f"{'n/a' if worst is None else format(worst, '.3g')}, {last['exceeded']} above "
            f"tol, so at most {100 * bound:.3g} % of the interpolated points are (95 %)"
        )
    except (KeyError, TypeError, ValueError):
        return head + "; unreadable refine_check attribute"


def _refined_line(found: dict[str, Any]) -> str:
    """The barrier located by the 1-D search on the line (``run`` stores ``barrier_refined``)."""
    try:
        return (
            f"barrier refined by a 1-D search: {found['height']:+.4g} (max loss "
            f"{found['max_loss']:.4g} ± {found['max_loss_sem']:.2g} at x={found['at']:.4f}; "
            f"the grid's {found['grid_max_loss']:.4g} at x={found['grid_at']:g}; "
            f"{found['evaluations']} evaluations)"
        )
    except (KeyError, TypeError, ValueError):
        return "barrier refined: unreadable attribute (recompute the line)"


def with_measures(surface: Surface) -> Surface:
    """``surface`` with the attributes ``sharpness`` (:func:`measures`) and, for a plane,
    ``topology`` (its basins, ``Topology.as_dict()``), computed for complete surfaces; an
    incomplete one is returned as it is. Saving it is the caller's (``run`` saves).

    A noisy grid can have a minimum at every few points: its topology (about 300 bytes per
    minimum) is stored only up to ``STORED_MINIMA`` minima, and otherwise recomputed when shown.
    """
    if not surface.complete:
        return surface
    attrs: dict[str, Any] = {"sharpness": measures(surface)}
    # Fresh (a stored one may be stale); not for a grid too large to sweep cheaply.
    bounded = surface.y is None or sweep_stride(surface.shape) == 1
    basins = surface_topology(surface, stored=False) if bounded else None
    if basins is not None and len(basins.minima) <= STORED_MINIMA:
        attrs[TOPOLOGY_ATTR] = basins.as_dict()
    return surface.with_attrs(**attrs)
