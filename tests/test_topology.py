"""The sublevel-set topology (analysis/_topology*.py) on grids whose topology is known
analytically, against a brute-force reference; then on surfaces: the stored attribute, its
validation, the summary in ``describe`` and the figures."""

from __future__ import annotations

import copy
import heapq
import json
import math
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lossland import analysis as T
from lossland.analysis import with_measures
from lossland.errors import LosslandWarning
from lossland.io import Surface
from lossland.show import _topology_figures as TF

INF, NAN = math.inf, math.nan


def grid(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray):
    """(loss (ny, nx), x, y) with loss[i, j] = fn(x[j], y[i])."""
    X, Y = np.meshgrid(x, y)
    return fn(X, Y), x, y


# Exact decimal grids: x = ±1 and 0 are grid points, and symmetric values are bit-equal.
X41 = np.arange(-20, 21) / 10
Y21 = np.arange(-10, 11) / 10


def two_wells(tilt: float = 0.0):
    return grid(lambda x, y: (x**2 - 1) ** 2 + 0.5 * y**2 + tilt * x, X41, Y21)


def at(m: T.Minimum | T.Merge) -> tuple[float, float]:
    return m.x, m.y


# --- a brute-force reference -------------------------------------------------------------


def neighbours(p: int, ny: int, nx: int, connectivity: int) -> Iterator[int]:
    i, j = divmod(p, nx)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            step = (di, dj) != (0, 0) and (connectivity == 8 or di == 0 or dj == 0)
            if step and 0 <= i + di < ny and 0 <= j + dj < nx:
                yield (i + di) * nx + j + dj


def reference(loss: np.ndarray, connectivity: int) -> dict[int, tuple[int | None, int | None]]:
    """{minimum flat index: (saddle flat index, survivor flat index)}, (None, None) if immortal.

    Straight from the definitions: points ranked by (loss, flat index), holes (NaN) left out;
    a minimum is a point ranked below all its neighbours. It dies at the lowest "pass" to
    any older point: a bottleneck Dijkstra on max-rank along paths. Its survivor is the
    oldest point of the component of {rank <= saddle rank} containing the saddle.
    """
    ny, nx = loss.shape
    flat = loss.ravel()
    points = sorted(
        (p for p in range(flat.size) if not np.isnan(flat[p])), key=lambda p: (flat[p], p)
    )
    rank = {p: r for r, p in enumerate(points)}

    def around(p: int) -> list[int]:
        return [q for q in neighbours(p, ny, nx, connectivity) if q in rank]

    minima = [p for p in points if all(rank[q] > rank[p] for q in around(p))]
    result: dict[int, tuple[int | None, int | None]] = {}
    for m in minima:
        best, heap, saddle = {m: rank[m]}, [(rank[m], m)], None
        while heap:
            bottleneck, p = heapq.heappop(heap)
            if rank[p] < rank[m]:
                saddle = points[bottleneck]
                break
            for q in around(p):
                through = max(bottleneck, rank[q])
                if through < best.get(q, len(points)):
                    best[q] = through
                    heapq.heappush(heap, (through, q))
        result[m] = (saddle, None if saddle is None else oldest_around(saddle, rank, around))
    return result


def oldest_around(saddle: int, rank: dict[int, int], around: Callable[[int], list[int]]) -> int:
    seen, queue = {saddle}, deque([saddle])
    while queue:
        for q in around(queue.popleft()):
            if q not in seen and rank[q] <= rank[saddle]:
                seen.add(q)
                queue.append(q)
    return min(seen, key=rank.__getitem__)


def as_reference(t: T.Topology) -> dict[int, tuple[int | None, int | None]]:
    nx = len(t.x)
    out: dict[int, tuple[int | None, int | None]] = {}
    for m in t.minima:
        s = None if m.merge is None else t.merges[m.merge]
        survivor = None if s is None else t.minima[s.survivor]
        out[m.row * nx + m.col] = (
            None if s is None else s.row * nx + s.col,
            None if survivor is None else survivor.row * nx + survivor.col,
        )
    return out


def strict_minima(loss: np.ndarray, connectivity: int, *, strict: bool = True) -> int:
    ny, nx = loss.shape
    flat = loss.ravel()
    lower = (lambda a, b: a < b) if strict else (lambda a, b: a <= b)
    return sum(
        all(lower(flat[p], flat[q]) for q in neighbours(p, ny, nx, connectivity))
        for p in range(flat.size)
    )


# --- analytic surfaces -------------------------------------------------------------------


def test_bowl_one_immortal_minimum_and_disc_area() -> None:
    x = y = np.linspace(-1, 1, 201)
    loss, x, y = grid(lambda x, y: x**2 + y**2, x, y)
    t = T.topology(loss, x, y)
    assert len(t.minima) == 1 and t.merges == ()
    (m,) = t.minima
    assert (m.row, m.col, m.x, m.y, m.loss) == (100, 100, 0.0, 0.0, 0.0)
    assert (m.persistence, m.merge, m.component, m.significant) == (INF, None, 0, None)
    # Each counted cell (side h) has its centre in the disc, so the union of cells differs
    # from the disc only within h/√2 of the circle: |A - πr²| <= π((r+h/√2)² - (r-h/√2)²).
    r, h = 0.6, x[1] - x[0]
    basin = T.global_basin(t, loss, delta=r**2)
    assert basin == T.basin_areas(t, loss, level=r**2)[0]
    assert abs(basin.area - math.pi * r**2) <= 2 * math.sqrt(2) * math.pi * r * h
    assert basin.area == pytest.approx(basin.points * h * h)  # interior cells are whole
    assert basin.members == (0,)
    whole = T.basin_areas(t, loss, level=INF)[0]
    assert (whole.points, whole.area) == (loss.size, pytest.approx(4.0))  # edge half cells


@pytest.mark.parametrize("connectivity", [4, 8])
def test_two_equal_wells_barrier_exactly_one(connectivity: int) -> None:
    loss, x, y = two_wells()
    t = T.topology(loss, x, y, connectivity=connectivity)
    assert [at(m) for m in t.minima] == [(-1.0, 0.0), (1.0, 0.0)]  # tie: larger index dies
    (merge,) = t.merges
    assert (merge.dying, merge.survivor, at(merge), merge.loss) == (1, 0, (0.0, 0.0), 1.0)
    assert t.minima[1].persistence == 1.0 and t.minima[1].merge == 0
    below = T.basin_areas(t, loss, level=0.5)
    assert [b.members for b in below] == [(0,), (1,)] and below[0].points == below[1].points
    above = T.basin_areas(t, loss, level=1.0)
    assert [b.members for b in above] == [(0, 1), (0, 1)] and above[0].area == above[1].area


def test_unequal_wells_deeper_survives_with_exact_barrier() -> None:
    loss, x, y = two_wells(tilt=0.1)
    t = T.topology(loss, x, y)
    deep, shallow = t.minima
    assert (at(deep), at(shallow)) == ((-1.0, 0.0), (1.0, 0.0))
    (merge,) = t.merges
    assert at(merge) == (0.0, 0.0)
    assert shallow.persistence == loss[10, 20] - loss[10, 30]  # z(saddle) - z(shallow), exact
    areas = T.basin_areas(t, loss, level=0.0)  # between the two minima's losses
    assert areas[0].points > 0 and (areas[1].points, areas[1].area, areas[1].members) == (0, 0, ())


def test_ridge_minima_on_the_boundary() -> None:
    loss, x, y = grid(lambda x, y: -np.abs(x) + y**2, Y21, Y21)
    t = T.topology(loss, x, y)
    assert [at(m) for m in t.minima] == [(-1.0, 0.0), (1.0, 0.0)]
    (merge,) = t.merges
    assert (at(merge), merge.loss, t.minima[1].persistence) == ((0.0, 0.0), 0.0, 1.0)


@pytest.mark.parametrize(
    ("name", "loss", "where"),
    [
        ("tilted plane", grid(lambda x, y: 0.5 * x + y, X41, Y21)[0], (0, 0)),
        ("constant plateau", np.full((5, 7), 3.0), (0, 0)),
        ("one point", np.array([[2.5]]), (0, 0)),
        ("1xN slope", np.array([[3.0, 2.0, 1.0, 0.0]]), (0, 3)),
        ("Nx1 valley", np.array([[2.0], [0.0], [0.0], [1.0]]), (1, 0)),
        ("-inf point", np.array([[1.0, -INF], [0.0, INF]]), (0, 1)),
    ],
)
def test_single_minimum_surfaces(name: str, loss: np.ndarray, where: tuple[int, int]) -> None:
    ny, nx = loss.shape
    t = T.topology(loss, np.arange(nx) * 0.5, np.arange(ny) - 1.0, connectivity=8)
    assert [(m.row, m.col) for m in t.minima] == [where], name
    assert t.merges == () and t.minima[0].persistence == INF


def test_1xn_double_well_is_a_line() -> None:
    loss = ((X41**2 - 1) ** 2)[None, :]
    t = T.topology(loss, X41, [0.0])
    assert [m.x for m in t.minima] == [-1.0, 1.0] and t.merges[0].x == 0.0
    whole = T.basin_areas(t, loss, level=INF)[0]
    assert whole.area == pytest.approx(4.0)  # a one-point axis counts 1: areas become lengths


def test_saddle_joining_four_basins_kills_three_there() -> None:
    loss = np.array([[9.0, 0.0, 9.0], [1.0, 5.0, 2.0], [9.0, 3.0, 9.0]])
    t = T.topology(loss, [0, 1, 2], [0, 1, 2])
    assert [(m.dying, m.survivor, m.row, m.col) for m in t.merges] == [
        (1, 0, 1, 1),
        (2, 0, 1, 1),
        (3, 0, 1, 1),
    ]
    assert [m.persistence for m in t.minima] == [INF, 4.0, 3.0, 2.0]


def test_four_vs_eight_connectivity_on_a_checkerboard() -> None:
    loss = np.array([[0.0, 3.0], [3.0, 1.0]])
    four = T.topology(loss, [0, 1], [0, 1], connectivity=4)
    eight = T.topology(loss, [0, 1], [0, 1], connectivity=8)
    assert [(m.row, m.col) for m in four.minima] == [(0, 0), (1, 1)]
    assert (four.merges[0].row, four.merges[0].col, four.minima[1].persistence) == (0, 1, 2.0)
    assert [(m.row, m.col) for m in eight.minima] == [(0, 0)] and eight.merges == ()


def test_holes_split_the_domain_into_components() -> None:
    loss, x, y = two_wells(tilt=0.1)
    holes = loss.copy()
    holes[:, 20] = NAN
    done = np.ones(loss.shape, dtype=bool)
    done[:, 20] = False
    by_nan, by_done = T.topology(holes, x, y), T.topology(loss, x, y, done=done)
    assert by_nan == by_done
    assert by_nan.n_components == 2 and by_nan.merges == ()
    assert [(m.persistence, m.component) for m in by_nan.minima] == [(INF, 0), (INF, 1)]
    assert "separate component" in T.summary_lines(by_nan)[1]
    assert T.basin_areas(by_done, loss, level=INF, done=done)[0].points == 21 * 20


def test_inf_wall_merges_at_an_infinite_saddle() -> None:
    loss, x, y = two_wells(tilt=0.1)
    loss[:, 20] = INF
    t = T.topology(loss, x, y)
    (merge,) = t.merges
    assert merge.loss == INF and t.minima[1].persistence == INF and t.minima[1].merge == 0
    assert t.n_components == 1
    assert T.Topology.from_dict(json.loads(json.dumps(t.as_dict(), allow_nan=False))) == t


def test_many_minima_match_brute_force_counts() -> None:
    x, y = np.linspace(-2, 2, 61), np.linspace(-1.9, 2.1, 53)  # asymmetric: no exact ties
    loss, x, y = grid(lambda x, y: np.sin(3 * x) * np.sin(3 * y) + 0.05 * (x**2 + y**2), x, y)
    for connectivity in (4, 8):
        t = T.topology(loss, x, y, connectivity=connectivity)
        count = strict_minima(loss, connectivity)
        assert count == strict_minima(loss, connectivity, strict=False)  # really no ties
        assert len(t.minima) == count > 5
        assert as_reference(t) == reference(loss, connectivity)


@pytest.mark.parametrize("seed", range(4))
def test_random_continuous_grids_match_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    loss = rng.normal(size=(9, 11))
    loss[rng.random(loss.shape) < 0.15] = NAN
    for connectivity in (4, 8):
        t = T.topology(loss, np.arange(11), np.arange(9), connectivity=connectivity)
        assert as_reference(t) == reference(loss, connectivity)


@settings(max_examples=150, deadline=None, database=None)
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    data=st.data(),
    connectivity=st.sampled_from([4, 8]),
)
def test_tied_grids_with_holes_and_infinities_match_reference(
    shape: tuple[int, int], data: st.DataObject, connectivity: int
) -> None:
    values = st.sampled_from([0.0, 1.0, 1.0, 2.0, 3.0, INF, NAN, -INF])
    size = shape[0] * shape[1]
    loss = np.array(data.draw(st.lists(values, min_size=size, max_size=size))).reshape(shape)
    x, y = np.arange(shape[1]), np.arange(shape[0])
    if np.isnan(loss).all():
        with pytest.raises(ValueError, match="no evaluated points"):
            T.topology(loss, x, y)
        return
    t = T.topology(loss, x, y, connectivity=connectivity)
    assert as_reference(t) == reference(loss, connectivity)
    assert not any(math.isnan(m.persistence) for m in t.minima)
    assert T.Topology.from_dict(json.loads(json.dumps(t.as_dict(), allow_nan=False))) == t
    whole = T.basin_areas(t, loss, level=INF)
    assert sum(whole[m].points for m in range(len(t.minima)) if t.minima[m].merge is None) == int(
        (~np.isnan(loss)).sum()
    )


# --- significance ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sem", "k", "significant"),
    [
        (0.3, 2.0, True),  # 2·√2·0.3 = 0.85 < 1
        (0.4, 2.0, False),  # 2·√2·0.4 = 1.13 > 1
        (0.4, 1.0, True),
        (NAN, 2.0, False),  # unknown noise: not established
        (5.0, 0.0, True),
    ],
)
def test_significance_of_the_barrier(sem: float, k: float, significant: bool) -> None:
    loss, x, y = two_wells()
    t = T.topology(loss, x, y, sem=np.full(loss.shape, sem), k=k)
    assert [m.significant for m in t.minima] == [True, significant]  # immortal: always
    assert t.k == k
    word = "significant" if significant else "not significant"
    assert T.summary_lines(t)[1].endswith(", " + word)


def test_no_sem_means_no_flags() -> None:
    t = T.topology(*two_wells())
    assert t.k is None and [m.significant for m in t.minima] == [None, None]


# --- summary -----------------------------------------------------------------------------


def test_summary_lines() -> None:
    loss, x, y = two_wells(tilt=0.1)
    t = T.topology(loss, x, y, sem=np.full(loss.shape, 0.01))
    lines = T.summary_lines(t)
    assert lines[0] == "2 minima in 1 component (2 significant, k=2); global -0.1 at (-1, 0)"
    one = T.summary_lines(T.topology(*grid(lambda x, y: x**2 + y**2, X41, Y21)))
    assert one == ["1 minimum in 1 component; global 0 at (0, 0)"]
    assert lines[1] == "next: 0.1 at (1, 0), barrier 0.9 at saddle (0, 0), significant"
    assert T.summary_lines(t, top=0) == [lines[0], "... 1 more minima with barrier <= 0.9"]


# --- input validation --------------------------------------------------------------------

OK = np.zeros((2, 3))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: T.topology(np.zeros(3), [0, 1, 2], [0]), "2-D"),
        (lambda: T.topology(np.zeros((0, 3)), [0, 1, 2], []), "non-empty"),
        (lambda: T.topology(OK, [0, 1], [0, 1]), "x must have shape"),
        (lambda: T.topology(OK, [0, 2, 1], [0, 1]), "monotonic"),
        (lambda: T.topology(OK, [0, 1, 2], [0, NAN]), "finite"),
        (lambda: T.topology(OK, [0, 1, 2], [0, 1], done=np.ones((2, 3))), "boolean"),
        (lambda: T.topology(OK, [0, 1, 2], [0, 1], done=np.ones(6, bool)), "boolean"),
        (lambda: T.topology(OK, [0, 1, 2], [0, 1], sem=np.ones(6)), "sem must have shape"),
        (lambda: T.topology(OK, [0, 1, 2], [0, 1], sem=-np.ones((2, 3))), "sem must be >= 0"),
        (lambda: T.topology(OK, [0, 1, 2], [0, 1], connectivity=6), "4 or 8"),
        (lambda: T.topology(OK, [0, 1, 2], [0, 1], k=-1.0), "k must be"),
        (lambda: T.topology(OK + NAN, [0, 1, 2], [0, 1]), "no evaluated points"),
        (
            lambda: T.topology(OK, [0, 1, 2], [0, 1], done=np.zeros((2, 3), bool)),
            "no evaluated points",
        ),
        (lambda: T.basin_areas(T.topology(OK, [0, 1, 2], [0, 1]), OK, level=NAN), "NaN"),
        (lambda: T.global_basin(T.topology(OK, [0, 1, 2], [0, 1]), OK, delta=-1), "delta"),
        (lambda: T.summary_lines(T.topology(OK, [0, 1, 2], [0, 1]), top=-1), "top"),
    ],
)
def test_bad_inputs_raise_value_error(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_basin_areas_reject_a_different_grid() -> None:
    loss, x, y = two_wells()
    t = T.topology(loss, x, y)
    with pytest.raises(ValueError, match="does not match"):
        T.basin_areas(t, np.roll(loss, 3, axis=1), level=2.0)
    with pytest.raises(ValueError, match="does not match"):
        T.basin_areas(t, -loss, level=0.0)
    with pytest.raises(ValueError, match="x must have shape"):
        T.basin_areas(t, loss[:, :5], level=0.0)


def test_cells_follow_non_uniform_and_decreasing_coordinates() -> None:
    x, y = np.array([3.0, 2.0, 0.5, 0.0]), np.array([0.0, 0.1, 1.0])
    loss = np.zeros((3, 4))
    t = T.topology(loss, x, y)
    whole = T.basin_areas(t, loss, level=0.0)[0]
    assert (whole.points, whole.area) == (12, pytest.approx(3.0 * 1.0))


# --- serialisation -----------------------------------------------------------------------


def plain_json_types(value: object) -> bool:
    if isinstance(value, dict):
        return all(type(k) is str and plain_json_types(v) for k, v in value.items())
    if isinstance(value, list):
        return all(map(plain_json_types, value))
    return type(value) in (str, int, float, bool, type(None))


def test_as_dict_round_trip() -> None:
    loss, x, y = two_wells(tilt=0.1)
    t = T.topology(loss, x, y, sem=np.full(loss.shape, 0.01), connectivity=8)
    d = t.as_dict()
    assert plain_json_types(d)
    assert d["minima"][0]["persistence"] == "inf" and d["format"] == "lossland.topology"
    assert T.Topology.from_dict(json.loads(json.dumps(d, allow_nan=False))) == t
    assert T.Topology.from_dict(d) == t


def _set(path: tuple[Any, ...], value: object) -> Callable[[dict[str, Any]], object]:
    def edit(d: dict[str, Any]) -> object:
        target: Any = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return d

    return edit


def _drop(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], object]:
    def edit(d: dict[str, Any]) -> object:
        target: Any = d
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
        return d

    return edit


MALFORMED: list[tuple[str, Callable[[dict[str, Any]], object]]] = [
    ("not a dict", lambda d: [d]),
    ("None", lambda d: None),
    ("missing merges", _drop(("merges",))),
    ("unexpected key", _set(("extra",), 1)),
    ("wrong format", _set(("format",), "other")),
    ("version 2", _set(("version",), 2)),
    ("version as str", _set(("version",), "1")),
    ("x not a list", _set(("x",), "abc")),
    ("x empty", _set(("x",), [])),
    ("x holds a str", _set(("x", 3), "a")),
    ("x holds NaN", _set(("x", 3), NAN)),
    ("x holds 'nan'", _set(("x", 3), "nan")),
    ("x not monotonic", _set(("x", 3), 5.0)),
    ("x holds a bool", _set(("x", 3), True)),
    ("connectivity 6", _set(("connectivity",), 6)),
    ("connectivity bool", _set(("connectivity",), True)),
    ("connectivity float", _set(("connectivity",), 4.0)),
    ("k negative", _set(("k",), -1)),
    ("k a str", _set(("k",), "two")),
    ("k null, flags set", _set(("k",), None)),
    ("minima a dict", _set(("minima",), {})),
    ("minima empty", _set(("minima",), [])),
    ("minimum not a dict", _set(("minima", 0), [1, 2])),
    ("minimum missing key", _drop(("minima", 0, "loss"))),
    ("minimum extra key", _set(("minima", 0, "name"), "a")),
    ("row a str", _set(("minima", 0, "row"), "10")),
    ("row a bool", _set(("minima", 0, "row"), True)),
    ("row out of grid", _set(("minima", 0, "row"), 999)),
    ("col negative", _set(("minima", 0, "col"), -1)),
    ("x off the grid", _set(("minima", 0, "x"), 0.5)),
    ("loss a str", _set(("minima", 0, "loss"), "abc")),
    ("loss NaN", _set(("minima", 0, "loss"), NAN)),
    ("loss huge int", _set(("minima", 0, "loss"), 10**400)),
    ("out of order", _set(("minima", 1, "loss"), -10.0)),
    ("persistence edited", _set(("minima", 1, "persistence"), 0.5)),
    ("immortal not inf", _set(("minima", 0, "persistence"), 1.0)),
    ("merge out of range", _set(("minima", 1, "merge"), 5)),
    ("merge dropped", _set(("minima", 1, "merge"), None)),
    ("significant a str", _set(("minima", 0, "significant"), "yes")),
    ("significant null", _set(("minima", 1, "significant"), None)),
    ("component edited", _set(("minima", 1, "component"), 1)),
    ("merges a str", _set(("merges",), "none")),
    ("merge not a dict", _set(("merges", 0), 3)),
    ("dying < survivor", _set(("merges", 0, "dying"), 0)),
    ("survivor itself", _set(("merges", 0, "survivor"), 1)),
    ("saddle below minimum", _set(("merges", 0, "loss"), -5.0)),
    ("saddle loss inf", _set(("merges", 0, "loss"), "inf")),
    ("saddle off grid", _set(("merges", 0, "row"), 21)),
    ("saddle extra key", _set(("merges", 0, "note"), "")),
]


@pytest.mark.parametrize(("name", "edit"), MALFORMED, ids=[name for name, _ in MALFORMED])
def test_malformed_dicts_are_rejected(name: str, edit: Callable[[dict[str, Any]], object]) -> None:
    loss, x, y = two_wells(tilt=0.1)
    good = T.topology(loss, x, y, sem=np.full(loss.shape, 0.01)).as_dict()
    with pytest.raises(ValueError) as raised:
        T.Topology.from_dict(edit(copy.deepcopy(good)))
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 200


# --- figures -----------------------------------------------------------------------------


@pytest.fixture
def wavy() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = np.linspace(-2, 2, 31), np.linspace(-1.9, 2.1, 27)
    return grid(lambda x, y: np.sin(3 * x) * np.sin(3 * y) + 0.05 * (x**2 + y**2), x, y)


@pytest.fixture
def no_pyplot_leak() -> Iterator[None]:
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


def agg_axes() -> Any:
    fig = Figure()
    FigureCanvasAgg(fig)
    return fig.add_subplot()


@pytest.mark.usefixtures("no_pyplot_leak")
def test_persistence_diagram(wavy: tuple[np.ndarray, ...]) -> None:
    t = T.topology(*wavy)
    ax = agg_axes()
    assert TF.persistence_diagram(t, ax=ax) is ax
    mortal, immortal = ax.collections
    assert len(mortal.get_offsets()) == len(t.merges) and len(immortal.get_offsets()) == 1
    assert len(ax.lines) == 1 and immortal.get_offsets()[0][1] == ax.get_ylim()[1]  # top edge
    ax.figure.canvas.draw()
    fresh = TF.persistence_diagram(t)  # a new Figure, outside pyplot
    assert len(fresh.collections) == 2


@pytest.mark.usefixtures("no_pyplot_leak")
def test_merge_tree_draws_without_crossings(wavy: tuple[np.ndarray, ...]) -> None:
    t = T.topology(*wavy, connectivity=8)
    ax = agg_axes()
    assert TF.draw_merge_tree(t, ax=ax) is ax
    rises, joins, dots = ax.collections
    assert len(rises.get_segments()) == len(t.minima) and len(dots.get_offsets()) == len(t.minima)
    assert len(joins.get_segments()) == len(t.merges)
    for (a, h), (b, _) in joins.get_segments():  # a join passes over lower subtrees only
        low, high = sorted((a, b))
        assert all(top <= h for (p, _), (_, top) in rises.get_segments() if low < p < high)
    ax.figure.canvas.draw()
    assert len(TF.draw_merge_tree(t).collections) == 3


@pytest.mark.usefixtures("no_pyplot_leak")
def test_mark_critical_points_on_a_contour(wavy: tuple[np.ndarray, ...]) -> None:
    loss, x, y = wavy
    t = T.topology(loss, x, y)
    ax = agg_axes()
    ax.contourf(x, y, loss, levels=12)
    before, limits = len(ax.collections), (ax.get_xlim(), ax.get_ylim())
    assert TF.mark_critical_points(t, ax, max_points=4) is ax
    star, dots, saddles = ax.collections[before:]
    assert len(dots.get_offsets()) == 3 and len(saddles.get_offsets()) == 3
    assert tuple(star.get_offsets()[0]) == at(t.minima[0])
    assert (ax.get_xlim(), ax.get_ylim()) == limits
    ax.figure.canvas.draw()
    with pytest.raises(ValueError, match="max_points"):
        TF.mark_critical_points(t, ax, max_points=0)


def test_module_imports_without_matplotlib() -> None:
    code = "import sys, lossland.analysis._topology; assert 'matplotlib' not in sys.modules"
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


# --- surfaces ----------------------------------------------------------------------------


def well_surface(*, sem: float = 0.01, tilt: float = 0.1) -> Surface:
    """The tilted double well as a complete surface: 2 minima, barrier 0.9 at (0, 0)."""
    loss, x, y = two_wells(tilt=tilt)
    s = Surface.empty(x, y, split="train", attrs={"model": "wells"})
    s.store(
        Ellipsis,
        {"loss": loss, "acc": np.full(loss.shape, 0.5), "loss_sem": np.full(loss.shape, sem)},
    )
    return s


def test_a_complete_run_stores_its_topology_and_reads_it_back(tmp_path: Path) -> None:
    s = well_surface()
    expected = T.topology(s.loss, s.x, s.y, sem=s.loss_sem)
    stored = with_measures(s)
    stored.save(tmp_path / "s.h5")
    assert stored.attrs["topology"] == expected.as_dict()
    loaded = Surface.load(tmp_path / "s.h5")
    assert T.surface_topology(loaded) == expected
    # The stored attribute is what is read (not a recomputation): an 8-connected one survives.
    eight = T.topology(s.loss, s.x, s.y, connectivity=8).as_dict()
    assert T.surface_topology(s.with_attrs(topology=eight)).connectivity == 8  # type: ignore[union-attr]
    # Unfinished surfaces get no figures, 1-D ones no topology.
    partial = Surface.empty(s.x, s.y, split="train")
    assert "topology" not in with_measures(partial).attrs
    line = Surface.empty(X41, None, split="train")
    line.store(Ellipsis, {"loss": X41**2, "acc": X41 * 0, "loss_sem": X41 * 0})
    assert "topology" not in with_measures(line).attrs and T.surface_topology(line) is None
    assert T.surface_topology(Surface.empty(s.x, s.y, split="train")) is None


def test_a_very_noisy_grid_keeps_its_topology_out_of_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lossland.analysis import _measures

    s = well_surface()  # two minima
    monkeypatch.setattr(_measures, "STORED_MINIMA", 1)
    computed = with_measures(s)
    assert "topology" not in computed.attrs and "sharpness" in computed.attrs
    assert "topology: 2 minima" in T.describe(computed)  # recomputed when shown


def _other_grid(d: dict[str, Any]) -> dict[str, Any]:
    return T.topology(*grid(lambda x, y: x**2 + y**2, X41 + 5, Y21)).as_dict()


def _other_losses(d: dict[str, Any]) -> dict[str, Any]:
    return T.topology(*two_wells(tilt=-0.1)).as_dict()


BAD_ATTRIBUTES: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("not a dict", lambda d: "3 minima", "must be an object"),
    ("wrong version", _set(("version",), 99), "unsupported version"),
    ("saddle edited", _set(("merges", 0, "loss"), -5.0), "saddle is not above"),
    ("another grid", _other_grid, "grid differs"),
    ("other losses", _other_losses, "losses differ"),
]


@pytest.mark.parametrize(
    ("name", "edit", "reason"), BAD_ATTRIBUTES, ids=[b[0] for b in BAD_ATTRIBUTES]
)
def test_a_bad_stored_topology_is_ignored_with_a_warning(
    name: str, edit: Callable[[dict[str, Any]], object], reason: str, tmp_path: Path
) -> None:
    s = well_surface()
    fresh = T.topology(s.loss, s.x, s.y, sem=s.loss_sem)
    bad = s.with_attrs(topology=edit(copy.deepcopy(fresh.as_dict())))
    loaded = Surface.load(bad.save(tmp_path / "bad.h5"))
    with pytest.warns(
        LosslandWarning, match=f"ignoring the surface's topology attribute.*{reason}"
    ):
        assert T.surface_topology(loaded) == fresh
    with pytest.warns(LosslandWarning):
        assert "topology: 2 minima" in T.describe(loaded)


def test_describe_prints_the_basins_for_old_files_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lossland.cli import main

    s = well_surface()
    expected = ["topology: " + T.summary_lines(T.topology(s.loss, s.x, s.y, sem=s.loss_sem))[0]]
    expected[0] += "; barrier SEs: 0 paired, 1 independent"  # no per-sample losses were stored
    expected.append("  next: 0.1 at (1, 0), barrier 0.9 at saddle (0, 0), significant")
    for surface in (s, with_measures(s)):  # computed on the fly, and read from the attribute
        lines = T.describe(surface).splitlines()
        assert [ln for ln in lines if ln.startswith(("topology", "  next"))] == expected
        assert "lossland.topology" not in T.describe(surface)  # the attribute is not dumped
    path = s.save(tmp_path / "old.h5")  # a file written before topology existed
    assert main(["info", str(path)]) == 0
    assert "\n".join(expected) in capsys.readouterr().out


def test_without_standard_errors_no_significance_is_claimed() -> None:
    s = well_surface(sem=math.nan)  # a batch-mean loss: no standard errors
    found = T.surface_topology(s)
    assert found is not None and found.k is None
    assert [m.significant for m in found.minima] == [None, None]


# Terraced surfaces (losses rounded to steps): every flat terrace's points after the first
# are sweep-order ties of persistence 0, not basins.
@pytest.mark.parametrize(
    ("fn", "persistent"),
    [
        (lambda x, y: np.floor(4 * (x**2 + y**2)) / 4, 1),
        (lambda x, y: np.floor(8 * ((x**2 - 1) ** 2 + 0.5 * y**2 + 0.1 * x)) / 8, 2),
        (lambda x, y: np.zeros_like(x), 1),  # one plateau
        (lambda x, y: (x**2 - 1) ** 2 + 0.5 * y**2, 2),  # no ties at all
    ],
)
def test_summary_counts_persistent_minima_and_ties_apart(fn: Any, persistent: int) -> None:
    loss, x, y = grid(fn, X41, Y21)
    t = T.topology(loss, x, y)
    first = T.summary_lines(t, top=50)[0]
    # Independent count: minima whose persistence is positive (immortal ones included).
    assert sum(m.persistence > 0 for m in t.minima) == persistent
    word = "minimum" if persistent == 1 else "minima"
    assert first.startswith(f"{persistent} {word} in 1 component")
    ties = len(t.minima) - persistent
    if ties:
        assert f"and {ties} {'tie' if ties == 1 else 'ties'} of persistence 0 not counted" in first
    else:
        assert "tie" not in first
    listed = [line for line in T.summary_lines(t, top=50) if line.startswith("next:")]
    assert len(listed) == persistent - 1


@pytest.mark.parametrize(
    ("cap", "stride"), [(10**6, 1), (861, 1), (860, 2), (231, 2), (100, 3), (66, 4), (65, 5)]
)
def test_a_huge_grid_is_summarised_on_a_bounded_subgrid(
    monkeypatch: pytest.MonkeyPatch, cap: int, stride: int
) -> None:
    """Beyond MAX_SWEEP_POINTS (here: patched small) the summary sweeps every s-th point per
    axis, says so, and stores nothing; its numbers are that subgrid's exact topology."""
    from lossland.analysis import _topology_surface as _topology

    monkeypatch.setattr(_topology, "MAX_SWEEP_POINTS", cap)
    s = well_surface()  # 21 × 41 = 861 points
    assert T.sweep_stride(s.shape) == stride
    found, used = _topology.bounded_topology(s)
    assert used == stride and found is not None
    part = np.s_[::stride, ::stride]
    assert len(found.x) * len(found.y) <= cap
    assert found == T.topology(s.loss[part], s.x[::stride], s.y[::stride], sem=s.loss_sem[part])
    first = T.topology_lines(s)[0]
    assert ("swept on one point in" in first) == (stride > 1)
    assert ("topology" in with_measures(s).attrs) == (stride == 1)
