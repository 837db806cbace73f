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

JSON form (``Topology.as_dict``)
--------------------------------
Plain dicts, lists, str, int, float, bool and None only. Non-finite floats are the strings
``"inf"`` and ``"-inf"`` (NaN never occurs). ``Topology.from_dict`` checks every field's type
and shape, and every invariant between fields, and raises a one-line ``ValueError`` otherwise.

Surfaces
--------
:func:`surface_topology` is the topology of a 2-D ``Surface``: its stored ``topology`` attribute
when that is valid and matches the grid (a malformed or stale one is ignored with a
``LosslandWarning``), computed from the losses otherwise, as every reader shows them
(:meth:`lossland.io.Surface.values`): holes where not evaluated or NaN, ±inf above every finite
loss (so a ``-inf`` is never a minimum), nothing at all without a finite loss.
:func:`lossland.show.with_figures` stores it (run at the end of a complete surface run, beside
the sharpness figures).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lossland.errors import LosslandWarning, first_line
from lossland.io import TOPOLOGY_ATTR, Surface

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_FORMAT = "lossland.topology"
_VERSION = 1
_FloatArray = npt.NDArray[np.float64]
_BoolArray = npt.NDArray[np.bool_]
_IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Minimum:
    """A local minimum of the grid graph: where a basin is born."""

    row: int  # grid indices: loss[row, col]
    col: int
    x: float  # coordinates: x[col], y[row]
    y: float
    loss: float
    persistence: float  # saddle loss - loss; inf when immortal
    merge: int | None  # index into Topology.merges of its death; None when immortal
    component: int  # index into Topology.minima of its component's immortal minimum
    significant: bool | None  # persistence > k·sqrt(sem_min² + sem_saddle²); None without sem


@dataclass(frozen=True)
class Merge:
    """A death: basin ``dying`` merges into the older basin ``survivor`` at a saddle point."""

    dying: int  # indices into Topology.minima; survivor < dying (the survivor is older)
    survivor: int
    row: int  # the saddle: grid indices, coordinates and loss
    col: int
    x: float
    y: float
    loss: float


@dataclass(frozen=True)
class BasinArea:
    """The connected component of {loss <= level} that contains one minimum."""

    minimum: int  # index into Topology.minima
    level: float
    points: int  # grid points in the component; 0 when the minimum lies above the level
    area: float  # the same in coordinate units (sum of the points' cells)
    members: tuple[int, ...]  # minima sharing the component, ascending; () when above level


@dataclass(frozen=True)
class Topology:
    """Minima, their persistence and the merge tree of one loss grid."""

    x: tuple[float, ...]  # grid coordinates, (nx,) and (ny,)
    y: tuple[float, ...]
    connectivity: int  # 4 or 8
    minima: tuple[Minimum, ...]  # sweep order: minima[0] is the global minimum
    merges: tuple[Merge, ...]  # in order of death
    k: float | None = None  # significance factor; None when no sem was given

    def __post_init__(self) -> None:
        _check_grid(self)
        _check_minima(self)
        _check_merges(self)

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``, the shape of the loss grid."""
        return len(self.y), len(self.x)

    @property
    def n_components(self) -> int:
        """Connected components of the evaluated points (one immortal minimum each)."""
        return sum(m.merge is None for m in self.minima)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; non-finite floats become ``"inf"`` / ``"-inf"``."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "x": [_json_float(v) for v in self.x],
            "y": [_json_float(v) for v in self.y],
            "connectivity": self.connectivity,
            "k": None if self.k is None else _json_float(self.k),
            "minima": [_minimum_dict(m) for m in self.minima],
            "merges": [_merge_dict(m) for m in self.merges],
        }

    @classmethod
    def from_dict(cls, data: object) -> Topology:
        """Read back ``as_dict``'s output; malformed data raises a one-line ``ValueError``."""
        record = _record(data, _TOPOLOGY_KEYS, "topology")
        if record["format"] != _FORMAT:
            raise ValueError(
                f"topology: format must be {_FORMAT!r}, got {_brief(record['format'])}"
            )
        if _int(record["version"], "topology.version") != _VERSION:
            raise ValueError(f"topology: unsupported version {record['version']}")
        k = record["k"]
        return cls(
            x=tuple(_float(v, f"x[{i}]") for i, v in enumerate(_list(record["x"], "x"))),
            y=tuple(_float(v, f"y[{i}]") for i, v in enumerate(_list(record["y"], "y"))),
            connectivity=_int(record["connectivity"], "connectivity"),
            minima=tuple(
                _minimum_from(item, f"minima[{i}]")
                for i, item in enumerate(_list(record["minima"], "minima"))
            ),
            merges=tuple(
                _merge_from(item, f"merges[{i}]")
                for i, item in enumerate(_list(record["merges"], "merges"))
            ),
            k=None if k is None else _float(k, "k"),
        )


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


def _persistence(birth: float, death: float) -> float:
    return 0.0 if death == birth else death - birth  # no NaN from inf - inf


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
) -> Topology:
    """Minima, persistence and merge tree of ``loss`` (ny, nx) on the grid ``x`` (nx,), ``y`` (ny,).

    ``done`` (bool, (ny, nx)) marks evaluated points; NaN losses are holes either way. With
    ``sem`` ((ny, nx), the standard error of each loss), every minimum gets a significance
    flag: persistence > k·sqrt(sem_min² + sem_saddle²); immortal minima are significant, and
    a NaN sem makes the flag False. Raises ``ValueError`` when no point is evaluated.
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
        minima=_minima(grid, sweep, merges, errors, k),
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
            significant = _significant(persistence, errors, (row, col), saddle, k)
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
) -> bool:
    if saddle is None:
        return True
    noise = k * math.hypot(float(errors[minimum]), float(errors[saddle.row, saddle.col]))
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


# --- invariants (checked on every construction, so from_dict data is held to them too) ----


def _check_grid(t: Topology) -> None:
    for name, coords in (("x", t.x), ("y", t.y)):
        steps = np.diff(np.asarray(coords, dtype=np.float64))
        if not coords or not all(map(math.isfinite, coords)):
            raise ValueError(f"topology: {name} must be a non-empty list of finite numbers")
        if not ((steps > 0).all() or (steps < 0).all()):
            raise ValueError(f"topology: {name} must be strictly monotonic")
    if t.connectivity not in (4, 8):
        raise ValueError(f"topology: connectivity must be 4 or 8, got {t.connectivity}")
    if t.k is not None and not (math.isfinite(t.k) and t.k >= 0):
        raise ValueError(f"topology: k must be a finite number >= 0, got {t.k}")
    if not t.minima:
        raise ValueError("topology: minima must not be empty")


def _check_point(t: Topology, row: int, col: int, x: float, y: float, where: str) -> None:
    if not (0 <= row < len(t.y) and 0 <= col < len(t.x)):
        raise ValueError(f"topology: {where} (row {row}, col {col}) is outside the grid")
    if (x, y) != (t.x[col], t.y[row]):
        raise ValueError(f"topology: {where} coordinates differ from the grid's x[col], y[row]")


def _check_minima(t: Topology) -> None:
    nx = len(t.x)
    previous: tuple[float, int] | None = None
    for index, m in enumerate(t.minima):
        where = f"minima[{index}]"
        _check_point(t, m.row, m.col, m.x, m.y, where)
        key = (m.loss, m.row * nx + m.col)
        if math.isnan(m.loss) or (previous is not None and key <= previous):
            raise ValueError(f"topology: {where} is out of sweep order (loss, then flat index)")
        previous = key
        if (m.significant is None) != (t.k is None):
            raise ValueError(f"topology: {where}.significant must be a bool iff k is given")
        if m.merge is None:
            if (m.persistence, m.component) != (math.inf, index) or m.significant is False:
                raise ValueError(
                    f"topology: {where} has merge null (immortal): persistence must be inf, "
                    "component its own index, significant not false"
                )
        elif not 0 <= m.merge < len(t.merges) or t.merges[m.merge].dying != index:
            raise ValueError(f"topology: {where}.merge does not name its own death")


def _check_merges(t: Topology) -> None:
    nx = len(t.x)
    previous: tuple[float, int] | None = None
    for index, merge in enumerate(t.merges):
        where = f"merges[{index}]"
        _check_point(t, merge.row, merge.col, merge.x, merge.y, where)
        if not 0 <= merge.survivor < merge.dying < len(t.minima):
            raise ValueError(f"topology: {where} needs 0 <= survivor < dying < {len(t.minima)}")
        dying, survivor = t.minima[merge.dying], t.minima[merge.survivor]
        key = (merge.loss, merge.row * nx + merge.col)
        if math.isnan(merge.loss) or key <= (dying.loss, dying.row * nx + dying.col):
            raise ValueError(f"topology: {where} saddle is not above its dying minimum")
        if previous is not None and key < previous:
            raise ValueError(f"topology: {where} is out of order (merges sorted by saddle)")
        previous = key
        if dying.merge != index or (survivor.merge is not None and survivor.merge <= index):
            raise ValueError(f"topology: {where} survivor must outlive it, dying must name it")
        if dying.persistence != _persistence(dying.loss, merge.loss):
            raise ValueError(f"topology: minima[{merge.dying}].persistence != saddle - minimum")
        if dying.component != survivor.component:
            raise ValueError(f"topology: minima[{merge.dying}].component != its survivor's")


# --- JSON ---------------------------------------------------------------------------------

_TOPOLOGY_KEYS = frozenset(("format", "version", "x", "y", "connectivity", "k", "minima", "merges"))
_MINIMUM_KEYS = frozenset(
    ("row", "col", "x", "y", "loss", "persistence", "merge", "component", "significant")
)
_MERGE_KEYS = frozenset(("dying", "survivor", "row", "col", "x", "y", "loss"))


def _json_float(value: float) -> float | str:
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def _minimum_dict(m: Minimum) -> dict[str, Any]:
    return {
        "row": m.row,
        "col": m.col,
        "x": m.x,
        "y": m.y,
        "loss": _json_float(m.loss),
        "persistence": _json_float(m.persistence),
        "merge": m.merge,
        "component": m.component,
        "significant": m.significant,
    }


def _merge_dict(m: Merge) -> dict[str, Any]:
    return {
        "dying": m.dying,
        "survivor": m.survivor,
        "row": m.row,
        "col": m.col,
        "x": m.x,
        "y": m.y,
        "loss": _json_float(m.loss),
    }


def _minimum_from(data: object, where: str) -> Minimum:
    r = _record(data, _MINIMUM_KEYS, where)
    significant = r["significant"]
    if significant is not None and not isinstance(significant, bool):
        raise _malformed(f"{where}.significant", "true, false or null", significant)
    return Minimum(
        row=_int(r["row"], f"{where}.row"),
        col=_int(r["col"], f"{where}.col"),
        x=_float(r["x"], f"{where}.x"),
        y=_float(r["y"], f"{where}.y"),
        loss=_float(r["loss"], f"{where}.loss"),
        persistence=_float(r["persistence"], f"{where}.persistence"),
        merge=None if r["merge"] is None else _int(r["merge"], f"{where}.merge"),
        component=_int(r["component"], f"{where}.component"),
        significant=significant,
    )


def _merge_from(data: object, where: str) -> Merge:
    r = _record(data, _MERGE_KEYS, where)
    return Merge(
        dying=_int(r["dying"], f"{where}.dying"),
        survivor=_int(r["survivor"], f"{where}.survivor"),
        row=_int(r["row"], f"{where}.row"),
        col=_int(r["col"], f"{where}.col"),
        x=_float(r["x"], f"{where}.x"),
        y=_float(r["y"], f"{where}.y"),
        loss=_float(r["loss"], f"{where}.loss"),
    )


def _brief(value: object) -> str:
    text = repr(value)  # repr of JSON data is one line
    return text if len(text) <= 40 else text[:37] + "..."


def _malformed(where: str, wanted: str, value: object) -> ValueError:
    """ValueError, not TypeError, for a wrong type: readers of files catch one exception."""
    return ValueError(f"{where} must be {wanted}, got {_brief(value)}")


def _record(data: object, keys: frozenset[str], where: str) -> Mapping[str, object]:
    if not isinstance(data, Mapping):
        raise _malformed(where, "an object", data)
    missing = sorted(keys - data.keys())
    unexpected = sorted(str(key) for key in data.keys() - keys)
    if missing:
        raise ValueError(f"{where}: missing keys {missing}")
    if unexpected:
        raise ValueError(f"{where}: unexpected keys {_brief(unexpected)}")
    return data


def _list(value: object, where: str) -> Sequence[object]:
    if not isinstance(value, (list, tuple)):
        raise _malformed(where, "a list", value)
    return value


def _int(value: object, where: str) -> int:
    if type(value) is not int:  # bool is an int subclass: excluded
        raise _malformed(where, "an integer", value)
    return value


def _float(value: object, where: str) -> float:
    if isinstance(value, str) and value in ("inf", "-inf"):
        return float(value)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _malformed(where, 'a number, "inf" or "-inf"', value)
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{where} is too large for a float") from None
    if math.isnan(number):
        raise ValueError(f"{where} must not be NaN")
    return number


# --- terminal summary ---------------------------------------------------------------------


def summary_lines(topology: Topology, *, top: int = 5) -> list[str]:
    """A few lines for a terminal: the global minimum, then the ``top`` most persistent others.

    e.g. ``3 minima in 1 component (2 significant, k=2); global 0.212 at (0.04, -0.02)``
    then ``next: 0.54 at (0.6, 0.7), barrier 0.31 at saddle (0.4, 0.5), significant``.
    """
    if top < 0:
        raise ValueError(f"top must be >= 0, got {top}")
    minima, best = topology.minima, topology.minima[0]
    components = topology.n_components
    parts = [
        f"{_count(len(minima), 'minimum', 'minima')} in "
        f"{_count(components, 'component', 'components')}"
    ]
    if topology.k is not None:
        parts.append(
            f" ({sum(m.significant is True for m in minima)} significant, k={topology.k:g})"
        )
    lines = ["".join(parts) + f"; global {best.loss:.4g} at ({best.x:.3g}, {best.y:.3g})"]
    others = sorted(range(1, len(minima)), key=lambda i: (-minima[i].persistence, i))
    for index in others[:top]:
        lines.append("next: " + _describe(topology, minima[index]))
    if len(others) > top:
        rest = max(minima[i].persistence for i in others[top:])
        lines.append(f"... {len(others) - top} more minima with barrier <= {rest:.3g}")
    return lines


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _describe(topology: Topology, m: Minimum) -> str:
    text = f"{m.loss:.4g} at ({m.x:.3g}, {m.y:.3g}), "
    if m.merge is None:
        text += "separate component (no path to the global minimum)"
    else:
        s = topology.merges[m.merge]
        text += f"barrier {m.persistence:.3g} at saddle ({s.x:.3g}, {s.y:.3g})"
    if m.significant is not None:
        text += ", significant" if m.significant else ", not significant"
    return text


# --- figures (matplotlib imported here only) ----------------------------------------------


def _new_axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    from matplotlib.figure import Figure  # not pyplot: no global figure registry

    return Figure().add_subplot()


def _loss_range(values: Sequence[float]) -> tuple[float, float]:
    """(bottom, top) padding the finite values; infinities are drawn at these edges."""
    finite = [v for v in values if math.isfinite(v)] or [0.0]
    low, high = min(finite), max(finite)
    # One value: a pad relative to it (an absolute 0.5 vanishes beside a loss of 1e17).
    pad = 0.05 * (high - low) or max(0.05 * abs(low), 0.5)
    return low - pad, high + pad


def _death(topology: Topology, m: Minimum) -> float:
    return math.inf if m.merge is None else topology.merges[m.merge].loss


def _clip(values: Sequence[float], bottom: float, top: float) -> _FloatArray:
    return np.clip(np.asarray(values, dtype=np.float64), bottom, top)


def persistence_diagram(topology: Topology, *, ax: Axes | None = None) -> Axes:
    """Birth (minimum's loss) against death (saddle's loss), one point per minimum.

    Immortal minima, and infinite values, sit on the top (or bottom) edge; immortal ones are
    triangles; minima whose barrier is within the noise (``significant`` False) are hollow.
    Draws a diagonal line and up to three point sets (none for an empty one); returns the Axes.
    """
    ax = _new_axes(ax)
    minima = topology.minima
    births = [m.loss for m in minima]
    deaths = [_death(topology, m) for m in minima]
    bottom, top = _loss_range(births + deaths)
    births_drawn, deaths_drawn = _clip(births, bottom, top), _clip(deaths, bottom, top)
    mortal = np.array([m.merge is not None for m in minima])
    noise = np.array([m.significant is False for m in minima])  # immortal ones never are
    ax.plot([bottom, top], [bottom, top], color="0.6", linewidth=1, label="death = birth")
    if (mortal & ~noise).any():  # no empty set: a legend lists only what is drawn
        shown = mortal & ~noise
        ax.scatter(births_drawn[shown], deaths_drawn[shown], s=18, label="minimum")
    if noise.any():
        ax.scatter(
            births_drawn[noise],
            deaths_drawn[noise],
            s=18,
            facecolors="none",
            edgecolors="C0",
            label=f"barrier ≤ {topology.k:g} SE",
        )
    ax.scatter(
        births_drawn[~mortal],
        deaths_drawn[~mortal],
        s=48,
        marker="^",
        color="crimson",
        clip_on=False,  # on the top edge: keep the whole triangle
        label="immortal",
    )
    ax.set_xlim(bottom, top)
    ax.set_ylim(bottom, top)
    ax.set_xlabel("birth (loss at the minimum)")
    ax.set_ylabel("death (loss at the saddle)")
    ax.legend(loc="lower right")
    return ax


def _leaf_order(topology: Topology) -> list[int]:
    """Minima in an order that draws the merge tree without crossings.

    Each minimum comes before the subtrees that die into it, lowest saddle first: a later
    connection is higher than every subtree it passes over. Iterative: chains can be long.
    """
    children: list[list[int]] = [[] for _ in topology.minima]
    for merge in topology.merges:  # death order: lowest saddle first
        children[merge.survivor].append(merge.dying)
    stack = [i for i, m in enumerate(topology.minima) if m.merge is None][::-1]
    order = []
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(reversed(children[node]))
    return order


def merge_tree(topology: Topology, *, ax: Axes | None = None) -> Axes:
    """Dendrogram of the basins: minima along x, loss on y.

    A vertical line rises from each minimum to its saddle (immortal ones to the top edge);
    a horizontal line there joins it to the survivor. Draws two line collections and the
    minima; returns the Axes.
    """
    from matplotlib.collections import LineCollection

    ax = _new_axes(ax)
    minima, merges = topology.minima, topology.merges
    position = np.empty(len(minima))
    position[_leaf_order(topology)] = np.arange(len(minima))
    bottom, top = _loss_range([m.loss for m in minima] + [s.loss for s in merges])
    births = _clip([m.loss for m in minima], bottom, top)
    deaths = _clip([_death(topology, m) for m in minima], bottom, top)
    saddles = _clip([s.loss for s in merges], bottom, top)
    rises = [((p, b), (p, d)) for p, b, d in zip(position, births, deaths, strict=True)]
    joins = [
        ((position[s.dying], h), (position[s.survivor], h))
        for s, h in zip(merges, saddles, strict=True)
    ]
    ax.add_collection(LineCollection(rises, colors="0.2", linewidths=1))
    ax.add_collection(LineCollection(joins, colors="0.2", linewidths=1))
    ax.scatter(position, births, s=18, zorder=3, label="minimum")
    ax.set_xlim(-0.5, len(minima) - 0.5)
    ax.set_ylim(bottom, top)
    ax.set_xticks([])
    ax.set_xlabel("minima")
    ax.set_ylabel("loss")
    return ax


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


def mark_critical_points(
    topology: Topology,
    ax: Axes,
    *,
    max_points: int = 50,
    size: float = 1.0,
    significant_only: bool = False,
) -> Axes:
    """Mark minima and their saddles on an existing (contour) Axes, in data coordinates.

    Shows the ``max_points`` most persistent minima (see :func:`most_persistent`; the global
    one as a star, the rest as white-edged dots) and the saddles where the shown ones die
    (x markers), their areas scaled by ``size``. Draws up to three point sets, in that order
    (none for an empty one, so a legend lists only what is there), and keeps the Axes' view
    limits; returns the Axes.
    """
    shown, saddles = most_persistent(topology, max_points, significant_only=significant_only)
    best, dots = shown[0], shown[1:]
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    ax.scatter(
        [best.x],
        [best.y],
        s=180 * size,
        marker="*",
        color="gold",
        edgecolors="black",
        linewidths=0.8 * math.sqrt(size),
        zorder=5,
        clip_on=False,  # a minimum on the grid's edge is shown whole
        label="global minimum",
    )
    if dots:
        ax.scatter(
            [m.x for m in dots],
            [m.y for m in dots],
            s=30 * size,
            color="black",
            edgecolors="white",
            linewidths=1.2 * math.sqrt(size),
            zorder=4,
            clip_on=False,
            label="minimum",
        )
    if saddles:
        ax.scatter(
            [s.x for s in saddles],
            [s.y for s in saddles],
            s=40 * size,
            marker="x",
            color="crimson",
            linewidths=1.5 * math.sqrt(size),
            zorder=4,
            clip_on=False,
            label="saddle",
        )
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    return ax


# --- surfaces -----------------------------------------------------------------------------


def surface_topology(surface: Surface, *, stored: bool = True) -> Topology | None:
    """The topology of a 2-D surface's losses as the figures show them (NaN and points not
    evaluated are holes, ±inf lies above every finite loss); None for a 1-D surface or one with
    no finite evaluated loss.

    With ``stored``, the ``topology`` attribute is used when it is valid and belongs to this
    grid; a malformed or stale one is ignored with a ``LosslandWarning`` and recomputed
    (4-connectivity; significance at k = 2 when the file has standard errors).
    """
    if surface.y is None:
        return None
    found = surface.attrs.get(TOPOLOGY_ATTR) if stored else None
    if found is not None:
        try:
            read = Topology.from_dict(found)
            _check_belongs(read, surface)
            return read
        except ValueError as exc:
            warnings.warn(
                f"ignoring the surface's {TOPOLOGY_ATTR} attribute ({first_line(exc)}): "
                "recomputed from the losses",
                LosslandWarning,
                stacklevel=2,
            )
    loss, evaluated = surface_graph(surface)
    if loss is None:
        return None
    sem = surface.values().sem
    known = np.isfinite(sem[evaluated]).any()  # a batch-mean loss has no standard errors
    return topology(loss, surface.x, surface.y, done=evaluated, sem=sem if known else None)


def surface_graph(surface: Surface) -> tuple[np.ndarray | None, np.ndarray]:
    """(loss, done): the grid :func:`surface_topology` sweeps, to pass to :func:`basin_areas`
    and :func:`global_basin` with its topology. As every reader shows the surface: NaN and
    points not evaluated are holes, ±inf are overflowed points above every finite loss (a -inf
    is never a minimum: the figures draw it as the largest loss). The loss is None without any
    finite loss (a minimum at an infinite point would be no minimum)."""
    values = surface.values()
    evaluated = values.finite | values.infinite
    if not values.finite.any():
        return None, evaluated
    return np.where(values.infinite, np.inf, values.raw), evaluated


def _check_belongs(t: Topology, surface: Surface) -> None:
    """A valid topology of another grid (a stale attribute) is refused: same coordinates, and
    each minimum and saddle at an evaluated point with the surface's loss there."""
    assert surface.y is not None
    if t.x != tuple(surface.x.tolist()) or t.y != tuple(surface.y.tolist()):
        raise ValueError("its grid differs from the surface's coordinates")
    loss, evaluated = surface_graph(surface)
    if loss is None:
        raise ValueError("the surface has no finite loss")
    points = [(m.row, m.col, m.loss) for m in t.minima] + [(s.row, s.col, s.loss) for s in t.merges]
    for row, col, value in points:
        if not evaluated[row, col] or float(loss[row, col]) != value:
            raise ValueError("its losses differ from the surface's")


def topology_lines(surface: Surface) -> list[str]:
    """The basin summary (:func:`summary_lines`) of a 2-D surface; [] when it has none."""
    found = surface_topology(surface)
    return [] if found is None else summary_lines(found)
