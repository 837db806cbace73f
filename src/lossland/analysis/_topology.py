"""Sublevel-set topology of a 2-D loss grid: basins, barriers and the merge tree.

Everything is computed exactly on the grid graph. Grid points are swept in increasing loss,
ties broken by flat (row-major) index, so the order is total and the result deterministic.
A point with no already-swept neighbour starts a *basin* at a local minimum; a point that
touches several basins merges them, and every basin but the oldest one (lowest minimum; on a
tie, smallest flat index) *dies* there (the elder rule of 0-dimensional persistence). That
point is the dying basin's *saddle*; its *persistence* (barrier height) is the saddle's loss
minus the minimum's loss. The oldest minimum of each connected component never dies: its
persistence is ``inf`` and its ``merge`` is ``None``.

Conventions
-----------
* ``loss[i, j]`` is the loss at ``(x[j], y[i])``; the flat index of ``(i, j)`` is ``i*nx + j``.
* Neighbours: 4-connectivity by default (the grid's axis-aligned edges), 8 with diagonals.
* Holes: NaN losses, and points where ``done`` is False, are not in the graph; a hole can
  split the grid into components, each with its own immortal minimum. ``+inf`` losses are
  points like any other and sort last; ``-inf`` sorts below every finite loss. Persistence is
  0 when a minimum dies at its own loss (so ``inf - inf`` never yields NaN). A barrier of
  ``inf`` with a non-None ``merge`` means the basins only meet through overflowed points.
* A grid with no evaluated point raises ``ValueError``: a ``Topology`` always has a global
  minimum, ``minima[0]``.
* Minima are listed in sweep order (loss, then flat index), so their indices are also their
  ages; ``merges`` are listed in the order the deaths happen.

Surfaces
--------
:func:`surface_topology` is the topology of a 2-D ``Surface``: its stored ``topology`` attribute
when that is valid and matches the grid (a malformed or stale one is ignored with a
``LosslandWarning``), computed from the losses otherwise, as every reader shows them
(:meth:`lossland.io.Surface.values`): holes where not evaluated or NaN, ±inf above every finite
loss (so a ``-inf`` is never a minimum), nothing at all without a finite loss.
:func:`lossland.analysis.with_measures` adds it (run at the end of a complete surface run,
beside the sharpness measures).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lossland.analysis._topology_schema import BasinArea, Merge, Minimum, Topology, _persistence

_FloatArray = npt.NDArray[np.float64]
_BoolArray = npt.NDArray[np.bool_]
_IntArray = npt.NDArray[np.intp]


# --- the sweep ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sweep:
    basin: list[int]  # (padded size,) basin id each swept point joined; -1 for the rest
    parent: list[int]  # (basins,) union-find over basin ids; a root is its set's oldest basin
    births: list[int]  # (basins,) padded index of each basin's minimum, in birth order
    deaths: list[tuple[int, int, int]]  # (dying basin, padded saddle index, surviving basin)


def _sweep(order: list[int], offsets: tuple[int, ...], size: int) -> _Sweep:
    """Union-find over points in ``order`` (padded flat indices, holes left out).

    The grid is padded with a border that is never swept, so ``point + offset`` is always a
    valid index and needs no bounds check. Basin ids are given in birth order, so the oldest
    of several basins is simply the smallest id.
    """
    basin = [-1] * size
    parent: list[int] = []
    births: list[int] = []
    deaths: list[tuple[int, int, int]] = []

    def find(b: int) -> int:
        while parent[b] != b:
            parent[b] = parent[parent[b]]  # path halving
            b = parent[b]
        return b

    for point in order:
        roots = {find(basin[point + d]) for d in offsets if basin[point + d] >= 0}
        if not roots:  # a local minimum: a new basin
            basin[point] = len(births)
            parent.append(len(births))
            births.append(point)
        elif len(roots) == 1:
            basin[point] = roots.pop()
        else:  # a saddle: the younger basins die into the oldest one
            elder, *younger = sorted(roots)
            basin[point] = elder
            for root in younger:
                parent[root] = elder
                deaths.append((root, point, elder))
    return _Sweep(basin, parent, births, deaths)


def _roots(parent: list[int]) -> _IntArray:
    """(basins,) the root of every basin id, by vectorised pointer jumping."""
    roots = np.asarray(parent, dtype=np.intp)
    while True:
        jumped = roots[roots]
        if np.array_equal(jumped, roots):
            return roots
        roots = jumped


@dataclass(frozen=True)
class _Grid:
    values: _FloatArray  # (ny, nx) loss
    valid: _BoolArray  # (ny, nx) in the graph: not NaN and done
    x: _FloatArray  # (nx,)
    y: _FloatArray  # (ny,)
    connectivity: int

    @property
    def width(self) -> int:  # row length of the padded grid
        return int(self.values.shape[1]) + 2

    def offsets(self) -> tuple[int, ...]:
        w = self.width
        sides = (-1, 1, -w, w)
        return sides if self.connectivity == 4 else (*sides, -w - 1, -w + 1, w - 1, w + 1)

    def sorted_points(self) -> tuple[_IntArray, _FloatArray]:
        """Evaluated points in sweep order: flat indices (m,) and their losses (m,)."""
        flat = self.values.ravel()
        order = np.argsort(flat, kind="stable")  # stable: ties by flat index; NaN last
        order = order[self.valid.ravel()[order]]
        return order, flat[order]

    def padded(self, flat: _IntArray) -> list[int]:
        nx = self.values.shape[1]
        padded: list[int] = ((flat // nx + 1) * self.width + flat % nx + 1).tolist()
        return padded

    def unpadded(self, padded: Sequence[int]) -> tuple[_IntArray, _IntArray]:
        """(rows, cols) of padded flat indices."""
        p = np.asarray(padded, dtype=np.intp)
        return p // self.width - 1, p % self.width - 1

    def sweep(self, order: _IntArray) -> _Sweep:
        """Sweep the points ``order`` (flat indices), a prefix of ``sorted_points``."""
        size = self.width * (self.values.shape[0] + 2)
        return _sweep(self.padded(order), self.offsets(), size)


def _grid(
    loss: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike, done: npt.ArrayLike | None, conn: int
) -> _Grid:
    values = np.asarray(loss, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"loss must be a non-empty 2-D array, got shape {values.shape}")
    ny, nx = values.shape
    if conn not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {conn!r}")
    valid = ~np.isnan(values)
    if done is not None:
        mask = np.asarray(done)
        if mask.dtype != np.bool_ or mask.shape != values.shape:
            raise ValueError(f"done must be a boolean array of shape {values.shape}")
        valid &= mask
    return _Grid(values, valid, _axis(x, nx, "x"), _axis(y, ny, "y"), conn)


def _axis(coords: npt.ArrayLike, length: int, name: str) -> _FloatArray:
    values = np.asarray(coords, dtype=np.float64)
    if values.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {values.shape}")
    steps = np.diff(values)
    if not np.isfinite(values).all() or not ((steps > 0).all() or (steps < 0).all()):
        raise ValueError(f"{name} must be finite and strictly monotonic")
    return values


def _cell_widths(coords: _FloatArray) -> _FloatArray:
    """(n,) each point's share of the axis: halfway to its neighbours; 1 on a 1-point axis."""
    if coords.size == 1:
        return np.ones(1)
    gaps = np.abs(np.diff(coords))
    widths: _FloatArray = (np.append(gaps, 0.0) + np.insert(gaps, 0, 0.0)) / 2
    return widths


# --- public computations ------------------------------------------------------------------


def topology(
    loss: npt.ArrayLike,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    done: npt.ArrayLike | None = None,
    sem: npt.ArrayLike | None = None,
    connectivity: int = 4,
    k: float = 2.0,
    paired: Mapping[tuple[int, int, int, int], float] | None = None,
) -> Topology:
    """Minima, persistence and merge tree of ``loss`` (ny, nx) on the grid ``x`` (nx,), ``y`` (ny,).

    ``done`` (bool, (ny, nx)) marks evaluated points; NaN losses are holes either way. With
    ``sem`` ((ny, nx), the standard error of each loss), every minimum gets a significance
    flag: persistence > k·sqrt(sem_min² + sem_saddle²); immortal minima are significant, and
    a NaN sem makes the flag False. ``paired`` maps (minimum row, col, saddle row, col) to the
    paired standard error of that barrier (the same samples at both points: see
    ``BARRIER_SE_ATTR``), used instead of the independent one where given. Raises
    ``ValueError`` when no point is evaluated.
    """
    grid = _grid(loss, x, y, done, connectivity)
    errors = None if sem is None else _sem(sem, grid.values.shape)
    if not math.isfinite(k) or k < 0:
        raise ValueError(f"k must be a finite number >= 0, got {k!r}")
    if not grid.valid.any():
        raise ValueError("no evaluated points: every loss is NaN or not done")
    order, _ = grid.sorted_points()
    sweep = grid.sweep(order)
    merges = _merges(grid, sweep.deaths)
    return Topology(
        x=tuple(grid.x.tolist()),
        y=tuple(grid.y.tolist()),
        connectivity=connectivity,
        minima=_minima(grid, sweep, merges, errors, k, paired or {}),
        merges=merges,
        k=None if errors is None else float(k),
    )


def _merges(grid: _Grid, deaths: list[tuple[int, int, int]]) -> tuple[Merge, ...]:
    rows, cols = grid.unpadded([saddle for _, saddle, _ in deaths])  # (deaths,) each
    columns = zip(
        deaths,
        rows.tolist(),
        cols.tolist(),
        grid.x[cols].tolist(),
        grid.y[rows].tolist(),
        grid.values[rows, cols].tolist(),
        strict=True,
    )
    return tuple(
        Merge(dying=dying, survivor=survivor, row=row, col=col, x=x, y=y, loss=loss)
        for (dying, _, survivor), row, col, x, y, loss in columns
    )


def _minima(
    grid: _Grid,
    sweep: _Sweep,
    merges: tuple[Merge, ...],
    errors: _FloatArray | None,
    k: float,
    paired: Mapping[tuple[int, int, int, int], float],
) -> tuple[Minimum, ...]:
    rows, cols = grid.unpadded(sweep.births)  # (minima,) each
    losses, xs, ys = grid.values[rows, cols].tolist(), grid.x.tolist(), grid.y.tolist()
    merge_of = {merge.dying: index for index, merge in enumerate(merges)}
    components = _roots(sweep.parent).tolist()  # every basin's immortal root
    minima = []
    for index, (row, col) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        loss = losses[index]
        merge = merge_of.get(index)
        saddle = None if merge is None else merges[merge]
        persistence = math.inf if saddle is None else _persistence(loss, saddle.loss)
        significant = None
        if errors is not None:
            significant = _significant(persistence, errors, (row, col), saddle, k, paired)
        minima.append(
            Minimum(
                row=row,
                col=col,
                x=xs[col],
                y=ys[row],
                loss=loss,
                persistence=persistence,
                merge=merge,
                component=components[index],
                significant=significant,
            )
        )
    return tuple(minima)


def _sem(sem: npt.ArrayLike, shape: tuple[int, ...]) -> _FloatArray:
    errors = np.asarray(sem, dtype=np.float64)
    if errors.shape != shape:
        raise ValueError(f"sem must have shape {shape}, got {errors.shape}")
    if (errors < 0).any():
        raise ValueError("sem must be >= 0 (NaN allowed)")
    return errors


def _significant(
    persistence: float,
    errors: _FloatArray,
    minimum: tuple[int, int],
    saddle: Merge | None,
    k: float,
    paired: Mapping[tuple[int, int, int, int], float],
) -> bool:
    if saddle is None:
        return True
    se = paired.get((*minimum, saddle.row, saddle.col))
    if se is None:  # independent errors: an overstatement when the samples are shared
        se = math.hypot(float(errors[minimum]), float(errors[saddle.row, saddle.col]))
    noise = k * se
    return persistence > noise  # False when noise is NaN


def basin_areas(
    topology: Topology, loss: npt.ArrayLike, *, level: float, done: npt.ArrayLike | None = None
) -> tuple[BasinArea, ...]:
    """For each minimum, the connected component of {loss <= level} that contains it.

    ``loss`` and ``done`` must be the grid the topology was computed from (checked through
    the minima). Each point owns the cell halfway to its neighbours (half cells on the edges;
    a 1-point axis counts 1). Returns one ``BasinArea`` per minimum, in ``topology.minima``
    order; minima in one component share its numbers and list each other in ``members``.
    """
    if math.isnan(level):
        raise ValueError("level must not be NaN")
    grid = _grid(loss, topology.x, topology.y, done, topology.connectivity)
    order, sorted_loss = grid.sorted_points()
    sweep = grid.sweep(order[: np.searchsorted(sorted_loss, level, side="right")])
    rows, cols = grid.unpadded(sweep.births)
    below = [(m.row, m.col) for m in topology.minima if m.loss <= level]
    if list(zip(rows.tolist(), cols.tolist(), strict=True)) != below:
        raise ValueError("loss grid does not match this topology (data, holes or connectivity)")
    roots = _roots(sweep.parent)  # (basins,) basin id -> id of its component's oldest minimum
    basin = np.asarray(sweep.basin).reshape(grid.values.shape[0] + 2, -1)[1:-1, 1:-1]
    swept = basin >= 0  # (ny, nx)
    component = roots[basin[swept]]  # (swept points,)
    cells = np.outer(_cell_widths(grid.y), _cell_widths(grid.x))[swept]
    points = np.bincount(component, minlength=roots.size)
    areas = np.bincount(component, weights=cells, minlength=roots.size)
    groups: dict[int, list[int]] = {}
    for index, root in enumerate(roots.tolist()):
        groups.setdefault(root, []).append(index)
    members = {root: tuple(group) for root, group in groups.items()}  # one tuple per component
    swept_basins = [
        BasinArea(i, level, int(points[root]), float(areas[root]), members[root])
        for i, root in enumerate(roots.tolist())
    ]
    above = [BasinArea(i, level, 0, 0.0, ()) for i in range(roots.size, len(topology.minima))]
    return (*swept_basins, *above)


def global_basin(
    topology: Topology, loss: npt.ArrayLike, *, delta: float, done: npt.ArrayLike | None = None
) -> BasinArea:
    """The basin of the global minimum at level ``minima[0].loss + delta`` (``delta >= 0``)."""
    if not delta >= 0:
        raise ValueError(f"delta must be >= 0, got {delta!r}")
    level = topology.minima[0].loss + delta
    return basin_areas(topology, loss, level=level, done=done)[0]


def most_persistent(
    topology: Topology, max_points: int, *, significant_only: bool = False
) -> tuple[list[Minimum], list[Merge]]:
    """The ``max_points`` most persistent minima and the saddles where the mortal ones among
    them die: what the figures and the viewer mark. Ties go to the older minimum, so the global
    minimum (immortal, and the oldest) comes first. ``significant_only`` leaves out minima
    whose barrier is within the noise (``significant`` False; kept when unknown)."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    minima = topology.minima
    kept = [i for i, m in enumerate(minima) if not (significant_only and m.significant is False)]
    order = sorted(kept, key=lambda i: (-minima[i].persistence, i))[:max_points]
    shown = [minima[i] for i in order]
    saddles = [topology.merges[m.merge] for m in shown if m.merge is not None]
    return shown, saddles
