"""Grid axes: ``min:max:num`` specs, explicit coordinates, and ranges chosen to fit data.

Coordinates are in units of the plane's directions (α = 1 moves each filter by its norm for
filter-normalized random directions). ``auto`` / ``auto:NUM`` asks the direction kind to choose
a range (around a trajectory, or from the sharpest curvature).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lossland.errors import LosslandError, arg

AUTO_POINTS = 51
AUTO_MARGIN = 0.2  # fraction of the data's span added on each side of auto ranges
# Size limits, checked before anything is allocated: a 1e4 x 1e4 grid is days of compute and
# 2.5 GB of result arrays; more is a typo (a missing colon, an extra digit).
MAX_AXIS_POINTS = 1_000_000
MAX_GRID_POINTS = 100_000_000


@dataclass(frozen=True)
class Axis:
    """An inclusive grid axis ``min:max:num`` (``num`` evenly spaced values, like np.linspace)."""

    start: float
    stop: float
    num: int

    @classmethod
    def parse(cls, text: str | Axis, *, name: str = "axis") -> Axis:
        if isinstance(text, Axis):
            return text
        parts = str(text).strip().split(":")
        hint = f"write {arg(name)} as min:max:num, e.g. -1:1:51"
        if len(parts) != 3:
            raise LosslandError(f"malformed {arg(name)} range {text!r}: {hint}")
        try:
            start, stop = float(parts[0]), float(parts[1])
            num = int(parts[2])
        except ValueError:
            raise LosslandError(f"malformed {arg(name)} range {text!r}: {hint}") from None
        if not (math.isfinite(start) and math.isfinite(stop)):
            raise LosslandError(f"{arg(name)} range {text!r} must have finite ends: {hint}")
        if num < 1:
            raise LosslandError(f"{arg(name)} range {text!r} needs at least 1 point: {hint}")
        if start > stop:
            raise LosslandError(
                f"{arg(name)} range {text!r} has min > max: write {stop:g}:{start:g}:{num}"
            )
        if num == 1 and start != stop:
            raise LosslandError(
                f"{arg(name)} range {text!r} has one point: write it as {start:g}:{start:g}:1"
            )
        if num > 1 and start == stop:
            raise LosslandError(
                f"{arg(name)} range {text!r} repeats one value {num} times: widen it"
            )
        _check_count(num, f"{arg(name)} range {text!r}")
        axis = cls(start, stop, num)
        values = axis.values()
        if not np.all(np.isfinite(values)):
            raise LosslandError(
                f"{arg(name)} range {text!r} overflows: its coordinates are not finite numbers; "
                "narrow it"
            )
        if np.any(np.diff(values) <= 0):
            raise LosslandError(
                f"{arg(name)} range {text!r} is too narrow for {num} distinct coordinates in "
                "float64: widen it or use fewer points"
            )
        return axis

    def values(self) -> np.ndarray:
        # Ends near ±1.8e308 overflow the step: checked in parse, without numpy's warning.
        with np.errstate(over="ignore", invalid="ignore"):
            return np.linspace(self.start, self.stop, self.num, dtype=np.float64)

    def __str__(self) -> str:
        return f"{self.start:g}:{self.stop:g}:{self.num}"


def coordinates(spec: str | Axis | Sequence[float] | np.ndarray, *, name: str) -> np.ndarray:
    """Grid coordinates from a ``min:max:num`` spec or an increasing sequence of values."""
    if isinstance(spec, (str, Axis)):
        return Axis.parse(spec, name=name).values()
    try:
        values = np.asarray(spec, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise LosslandError(
            f"{arg(name)} coordinates must be numbers: give min:max:num or a list of values"
        ) from None
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(np.diff(values) <= 0):
        raise LosslandError(f"{arg(name)} coordinates must be finite and strictly increasing")
    _check_count(values.size, f"{arg(name)} coordinates")
    return values


def _check_count(num: int, what: str) -> None:
    if num > MAX_AXIS_POINTS:
        raise LosslandError(
            f"{what} has {num:,} points, more than the {MAX_AXIS_POINTS:,} lossland computes "
            "per axis: use fewer points"
        )


def check_grid_size(nx: int, ny: int | None) -> None:
    """A one-line error for grids too large to compute (before anything is allocated)."""
    total = nx * (ny or 1)
    if total > MAX_GRID_POINTS:
        raise LosslandError(
            f"a {nx:,} x {ny or 1:,} grid has {total:,} points, more than the "
            f"{MAX_GRID_POINTS:,} lossland computes in one surface: use fewer points on "
            f"{arg('x')} or {arg('y')}"
        )


def axis_text(values: np.ndarray) -> str:
    """The shortest exact text for coordinates: ``min:max:num`` when evenly spaced."""
    if len(values) > 1 and np.allclose(np.diff(values), values[1] - values[0], rtol=1e-9, atol=0):
        return f"{values[0]:.17g}:{values[-1]:.17g}:{len(values)}"
    return ",".join(f"{v:.17g}" for v in values)


# --- ranges chosen for the user ("auto") ----------------------------------------------------------


def check_spec(spec: str | None, *, name: str) -> int:
    """Raise the one-line error of a malformed ``min:max:num`` or ``auto[:NUM]`` range now,
    before the work that comes before the grid is laid out; return its number of points."""
    if spec is None or is_auto(spec):
        return auto_points(spec, name=name)
    return Axis.parse(spec, name=name).num


def is_auto(spec: str | None) -> bool:
    """True for "choose for me": no range, ``auto`` or ``auto:NUM``."""
    return spec is None or str(spec).strip().lower().startswith("auto")


def auto_points(spec: str | None, *, name: str = "range") -> int:
    """The NUM of ``auto:NUM`` (``AUTO_POINTS`` for ``auto`` or no range)."""
    num = AUTO_POINTS
    if spec is not None and ":" in str(spec):
        try:
            num = int(str(spec).split(":", 1)[1])
        except ValueError:
            raise LosslandError(
                f"malformed {arg(name)} range {spec!r}: write auto or auto:NUM"
            ) from None
    if num < 3:
        raise LosslandError(
            f"{arg(name)} range {spec!r} needs at least 3 points: write e.g. auto:51"
        )
    _check_count(num, f"{arg(name)} range {spec!r}")
    return num


def auto_range(
    values: np.ndarray,
    spec: str | None = None,
    *,
    margin: float = AUTO_MARGIN,
    name: str = "range",
) -> str:
    """``min:max:num`` covering ``values`` and 0 with ``margin``·span on each side, with 0 on
    the grid (the model itself is a grid point, so the sharpness figures have their centre)."""
    num = auto_points(spec, name=name)
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    low = min(0.0, float(finite.min())) if finite.size else 0.0
    high = max(0.0, float(finite.max())) if finite.size else 0.0
    if not (high - low) / num > 2.0**-1000:  # nothing to span (or steps that underflow)
        low, high = -1.0, 1.0
    pad = margin * (high - low)
    return grid_with_zero(low - pad, high + pad, num)


def grid_with_zero(low: float, high: float, num: int) -> str:
    """A ``min:max:num`` spec covering [low, high] (low ≤ 0 ≤ high) with 0.0 exactly on it.

    The step is a dyadic number (4 significant bits, at most 12.5 % above the tightest step),
    so numpy's linspace reproduces k·step exactly and the point at 0 is the model itself, not
    1e-17 away. When the tight step cannot put 0 on the grid, one spare interval is used.
    """
    if num < 3 or not low <= 0.0 <= high or not high > low:
        raise ValueError(f"cannot place a grid of {num} points with 0 on [{low}, {high}]")
    for intervals in (num - 1, num - 2):
        raw = (high - low) / intervals
        quantum = 2.0 ** (math.floor(math.log2(raw)) - 3)
        step = math.ceil(raw / quantum) * quantum
        below = min(math.ceil(-low / step), num - 1)
        if (num - 1 - below) * step >= high:
            break
    # Spare points split evenly between the two sides (a symmetric range stays symmetric).
    spare = num - 1 - below - math.ceil(high / step)
    below += max(spare, 0) // 2
    return f"{-below * step!r}:{(num - 1 - below) * step!r}:{num}"
