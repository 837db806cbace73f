"""What the topology sweep finds, as data: minima, merges, basin areas and the ``Topology``
that holds them, with the invariants every instance keeps and its JSON form.

JSON form (``Topology.as_dict``)
--------------------------------
Plain dicts, lists, str, int, float, bool and None only. Non-finite floats are the strings
``"inf"`` and ``"-inf"`` (NaN never occurs). ``Topology.from_dict`` checks every field's type
and shape, and every invariant between fields, and raises a one-line ``ValueError`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_FORMAT = "lossland.topology"
_VERSION = 1


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


def _persistence(birth: float, death: float) -> float:
    return 0.0 if death == birth else death - birth  # no NaN from inf - inf


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
