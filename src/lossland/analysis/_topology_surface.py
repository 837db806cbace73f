"""The topology of a surface file: the grid it sweeps (holes and overflowed points), a stored
``topology`` attribute checked against the grid, the barriers' paired standard errors ``run``
stored, and a bound on the sweep's cost for huge grids."""

from __future__ import annotations

import math
import warnings

import numpy as np

from lossland.analysis._topology import topology
from lossland.analysis._topology_schema import Topology
from lossland.core import FIELDS
from lossland.errors import LosslandWarning, first_line
from lossland.io import TOPOLOGY_ATTR, Surface


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
    return topology(
        loss,
        surface.x,
        surface.y,
        done=evaluated,
        sem=sem if known else None,
        paired=paired_errors(surface),
    )


BARRIER_SE_ATTR = "barrier_se"  # [{minimum: [row, col], saddle: [row, col], paired_se, ...}]


def paired_errors(surface: Surface) -> dict[tuple[int, int, int, int], float]:
    """The paired standard errors of barriers that ``run`` stored (``BARRIER_SE_ATTR``), by
    (minimum row, col, saddle row, col); {} when none (or unreadable)."""
    out: dict[tuple[int, int, int, int], float] = {}
    records = surface.attrs.get(BARRIER_SE_ATTR)
    for record in records if isinstance(records, list) else []:
        try:
            key = (*map(int, record["minimum"]), *map(int, record["saddle"]))
            se = record["paired_se"]
        except (KeyError, TypeError, ValueError):
            continue
        if len(key) == 4 and isinstance(se, (int, float)) and math.isfinite(se) and se >= 0:
            out[key] = float(se)
    return out


MAX_SWEEP_POINTS = 1_000_000  # a sweep's cost: ≤ ~6 s and ~0.5 GB (2-core EPYC, random grid)


def sweep_stride(shape: tuple[int, ...]) -> int:
    """The smallest stride s such that every s-th point per axis is at most MAX_SWEEP_POINTS."""
    stride = 1
    while math.prod(-(-n // stride) for n in shape) > MAX_SWEEP_POINTS:
        stride += 1
    return stride


def bounded_topology(surface: Surface) -> tuple[Topology | None, int]:
    """(topology, stride): :func:`surface_topology` where the grid has at most
    MAX_SWEEP_POINTS points; beyond, the topology of every ``stride``-th point per axis (its
    coordinates are those points'), so a summary of a huge surface stays cheap (a 7500 × 10000
    grid's full sweep took 97 s and 10 GB). Never stored: a stored topology is the full grid's."""
    stride = 1 if surface.y is None else sweep_stride(surface.shape)
    if stride == 1:
        return surface_topology(surface), 1
    part = np.s_[::stride, ::stride]
    fields = {row.name: _sliced(surface.field(row.name), part) for row in FIELDS}
    sub = Surface.of(
        surface.x[::stride],
        surface.y[::stride] if surface.y is not None else None,
        fields,
        surface.done[part],
        split=surface.split,
        interpolated=_sliced(surface.interpolated, part),
    )  # only the swept points' arrays: reading the whole grid's is the cost to avoid
    return surface_topology(sub, stored=False), stride


def _sliced(values: np.ndarray | None, part: tuple[slice, ...]) -> np.ndarray | None:
    return None if values is None else values[part]


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
