"""No surface a reader is given crashes it or makes it print a wrong number.

One table of degenerate surfaces, built directly with the io API from tiny arrays, and every
reader of a surface file run on each: ``lossland info``, ``plot`` (with and without ``--log``),
``view``, ``export`` in every format, ``path``, and the Python API (``lossland.plot`` and its figure
functions, the ``Surface`` methods, sharpness, topology and basins, the seed figures). Each
either succeeds with the right content or refuses with one ``lossland: error:`` line (exit
status 2) naming the problem and the fix; warnings are errors here (pyproject), so a numpy or
matplotlib warning fails a test too.

What the right content is comes from the arrays themselves (numpy on ``loss`` and ``done``),
not from the code under test: an evaluated NaN is "evaluated, NaN", never "not evaluated"; an
infinite loss is drawn as the largest finite one; a minimum is never at a non-finite point.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lossland
from helpers import assert_one_line
from lossland import analysis, show
from lossland.cli import main
from lossland.errors import LosslandError, LosslandWarning
from lossland.io import SeedStack, Surface, read_npz
from lossland.show import _plotter as F

AXIS = np.linspace(-1.0, 1.0, 5)  # holds 0: the centre's sharpness is computed


def _axis(n: int) -> np.ndarray:
    return AXIS if n == 5 else np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)


def bowl(nx: int = 5, ny: int | None = 5) -> Surface:
    """1 + x² + y² (positive, one minimum at the centre), accuracy 50 %, SE 0.01."""
    x, y = _axis(nx), None if ny is None else _axis(ny)
    s = Surface.empty(x, y, split="train")
    z = 1.0 + x**2 if y is None else 1.0 + np.add.outer(y**2, x**2)
    s.store(
        Ellipsis, {"loss": z, "acc": np.full(z.shape, 50.0), "loss_sem": np.full(z.shape, 0.01)}
    )
    return s


def filled(value: float, nx: int = 5, ny: int | None = 5, *, done: bool = True) -> Surface:
    s = bowl(nx, ny)
    s.loss[...] = value
    s.done[...] = done
    return s


def edited(s: Surface, edit: Callable[[Surface], Any]) -> Surface:
    edit(s)
    return s


def _holes(s: Surface) -> None:
    s.loss[0, 0], s.loss[1, 2], s.loss[3, 4] = np.nan, np.inf, -np.inf


def _line_holes(s: Surface) -> None:
    s.loss[0], s.loss[3] = np.nan, np.inf
    s.loss[4], s.done[4] = np.nan, False
    s.acc.fill(np.nan)  # a custom loss: no accuracy


def _bad_sem(s: Surface) -> None:
    s.loss_sem[:, :2], s.loss_sem[:, 2] = -0.1, np.nan


def _partial(s: Surface) -> None:
    s.loss[3:], s.done[3:] = np.nan, False


def stacked(other: np.ndarray) -> Surface:
    """Three direction seeds: the bowl, the bowl × 1.1, and ``other``."""
    s = bowl()
    loss = np.stack([s.loss, 1.1 * s.loss, other])
    stack = SeedStack(
        (0, 1, 2),
        loss,
        np.full(loss.shape, 50.0),
        np.full(loss.shape, 0.01),
        np.ones(loss.shape, dtype=bool),
        ({}, {}, {}),
    )
    s = replace(s, stack=stack)
    return s.with_attrs(robustness=analysis.robustness(s))  # as a run stores it: info prints it


NOTHING = "no evaluated points yet"
NON_FINITE = "every evaluated loss is infinite or NaN"


@dataclass(frozen=True)
class Case:
    make: Callable[[], Surface]
    refused: str | None = None  # what every drawing reader says: nothing finite to draw
    positive: bool = True  # a log scale is possible
    seeds_positive: bool = True  # and of every seed's surface too (the viewer shows them all)


CASES: dict[str, Case] = {
    "constant": Case(lambda: filled(1.0)),
    "constant up to float noise": Case(
        lambda: edited(filled(1.0), lambda s: s.loss.__setitem__((0, 0), 1.0 + 1e-15))
    ),
    "all NaN": Case(lambda: filled(np.nan), NON_FINITE),
    "all inf": Case(lambda: filled(np.inf), NON_FINITE),
    "NaN, inf and -inf among finite": Case(lambda: edited(bowl(), _holes)),
    "1x1": Case(lambda: bowl(1, 1)),
    "1xN": Case(lambda: bowl(5, 1)),
    "Nx1": Case(lambda: bowl(1, 5)),
    "1-point line": Case(lambda: bowl(1, None)),
    "1-D line": Case(lambda: bowl(5, None)),
    "1-D line with NaN, inf, a gap, no accuracy": Case(lambda: edited(bowl(5, None), _line_holes)),
    "nothing evaluated": Case(lambda: filled(np.nan, done=False), NOTHING),
    "partially evaluated": Case(lambda: edited(bowl(), _partial)),
    "negative losses": Case(lambda: edited(bowl(), lambda s: s.loss.__isub__(1.5)), positive=False),
    "zero losses": Case(lambda: filled(0.0), positive=False),
    # Up to the largest a figure draws (show._scales.DRAWABLE); beyond it (the float maximum),
    # plot refuses with one line: tests/test_trust_text.py.
    "losses near the largest drawn": Case(lambda: edited(bowl(), lambda s: s.loss.__imul__(3e199))),
    "no accuracy": Case(lambda: edited(bowl(), lambda s: s.acc.fill(np.nan))),
    "negative and NaN standard errors": Case(lambda: edited(bowl(), _bad_sem)),
    "seed stack, one seed all NaN": Case(lambda: stacked(np.full((5, 5), np.nan))),
    "seed stack, one seed negative": Case(lambda: stacked(bowl().loss - 2.5), seeds_positive=False),
}


# --- what the arrays say --------------------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """What is true of a surface, from numpy alone."""

    s: Surface

    @property
    def evaluated(self) -> np.ndarray:
        return self.s.done.astype(bool)

    @property
    def finite(self) -> np.ndarray:
        return self.evaluated & np.isfinite(self.s.loss)

    @property
    def nan(self) -> int:
        return int((self.evaluated & np.isnan(self.s.loss)).sum())

    @property
    def inf(self) -> int:
        return int((self.evaluated & np.isinf(self.s.loss)).sum())

    @property
    def low(self) -> float:
        return float(self.s.loss[self.finite].min())

    @property
    def high(self) -> float:
        return float(self.s.loss[self.finite].max())

    @property
    def thin(self) -> bool:
        return self.s.y is not None and min(self.s.shape) < 2

    def drawn(self) -> np.ndarray:
        """The losses a figure shows: finite ones as stored, ±inf as the largest finite one."""
        out = np.where(self.finite, self.s.loss, np.nan)
        if self.inf:
            out[self.evaluated & np.isinf(self.s.loss)] = self.high
        return out

    def done_text(self) -> str:
        bad = [f"{n} {what}" for n, what in ((self.nan, "NaN"), (self.inf, "infinite")) if n]
        text = f"{int(self.evaluated.sum())}/{self.s.done.size} points"
        return text + (f" ({', '.join(bad)})" if bad else "")


def case_surface(name: str) -> Surface:
    return CASES[name].make()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each case's surface file, written once (the readers never change it)."""
    return {
        name: case_surface(name).save(tmp_path_factory.mktemp("case") / "s.h5") for name in CASES
    }


# --- running the CLI ------------------------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    errors: list[str]
    notes: list[str]


def run(capsys: pytest.CaptureFixture[str], args: list[Any]) -> Ran:
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("always", LosslandWarning)  # printed as notes, not raised
        code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("lossland: error:")]
    notes = [line for line in lines if line.startswith("lossland: note:")]
    assert len(errors) + len(notes) == len(lines), err  # nothing else on stderr
    return Ran(code, out, errors, notes)


def refused(ran: Ran, expected: str) -> None:
    assert ran.code == 2 and len(ran.errors) == 1, (ran.code, ran.errors)
    assert_one_line(ran.errors[0])
    assert expected in ran.errors[0], ran.errors[0]


def succeeded(ran: Ran) -> None:
    assert ran.code == 0 and not ran.errors, ran.errors


def expected_refusal(name: str, reader: str, *, log: bool = False) -> str | None:
    """What ``reader`` (plot, view, csv, npz, vtp, obj) says of the case, None: it succeeds."""
    case, s = CASES[name], case_surface(name)
    if reader in ("csv", "npz"):
        return None  # the raw grid, whatever it holds
    if reader in ("view", "vtp", "obj"):
        if s.y is None:
            return "1-D"
        if min(s.shape) < 2:
            return "at least 2 points on each axis"
    if case.refused:
        return case.refused
    positive = case.positive and (case.seeds_positive or reader != "view")
    return None if positive or not log else "positive losses"


def expected_notes(s: Surface) -> list[str]:
    """The counts a note of a written figure, page or mesh names."""
    truth = Truth(s)
    missing = int((~truth.evaluated).sum())
    parts = [f"{missing} of {s.done.size} points not evaluated"] if missing else []
    parts += [f"{truth.nan} NaN"] if truth.nan else []
    parts += [f"{truth.inf} infinite"] if truth.inf else []
    return parts


def check_notes(notes: list[str], s: Surface) -> None:
    parts = expected_notes(s)
    if not parts:
        assert not notes, notes
        return
    assert len(notes) == 1, notes
    for part in parts:
        assert part in notes[0], notes[0]


# --- info -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_info(files, tmp_path, capsys, name):
    s = case_surface(name)
    ran = run(capsys, ["info", files[name]])
    succeeded(ran)
    truth = Truth(s)
    text = ran.out
    assert f"done: {truth.done_text()}\n" in text
    assert not re.search(r"\bnan\b", text), text  # no number printed as nan
    if truth.finite.any():
        ax, ay, low = s.argmin()
        assert low == truth.low
        jx = int(np.flatnonzero(s.x == ax)[0])
        index = (jx,) if ay is None else (int(np.flatnonzero(s.y == ay)[0]), jx)
        assert truth.finite[index] and s.loss[index] == truth.low  # a finite minimum
        assert f"loss: min {truth.low:.6g} at (" in text and f"max {truth.high:.6g}\n" in text
    elif truth.evaluated.any():
        assert "loss: no finite value" in text
    if truth.nan:
        assert f"{truth.nan} NaN (left blank)" in text  # evaluated, not "not evaluated"
    if truth.inf:
        assert f"{truth.inf} infinite (" in text
    topology = [line for line in text.splitlines() if line.startswith("topology:")]
    if s.y is not None and truth.finite.any():
        (line,) = topology
        assert f"global {truth.low:.4g} at" in line
    else:
        assert not topology  # no minimum of a line, or where nothing is finite
    if not np.isfinite(s.acc[truth.evaluated]).any() and truth.evaluated.any():
        assert "accuracy: not recorded" in text


# --- plot -----------------------------------------------------------------------------------


def expected_kinds(s: Surface) -> list[str]:
    if s.y is None:
        return ["1d"]
    if min(s.shape) < 2:
        return ["heatmap", "topology"]
    seeds = ["seeds"] if s.stack is not None else []
    return ["contour", "contourf", "heatmap", "3d", "topology", *seeds]


def log_matters(name: str) -> bool:
    """Whether the log scale of a case is a case of its own: refused (losses <= 0, nothing to
    draw) or a constant (the log norm of one value). The log scale of an ordinary positive
    surface: tests/test_figures.py."""
    case = CASES[name]
    constant = name.startswith("constant")
    return constant or case.refused is not None or not (case.positive and case.seeds_positive)


SCALES = [
    pytest.param(name, log, id=f"{name}-{'log' if log else 'linear'}")
    for name in CASES
    for log in (False, True)
    if not log or log_matters(name)
]


@pytest.mark.parametrize(("name", "log"), SCALES)
def test_plot(files, tmp_path, capsys, name, log):
    s = case_surface(name)
    out = tmp_path / "figures"
    # The paper style at a low dpi: the quickest figures (the default style: test_api_writers).
    quick = ["--style", "paper", "--format", "png", "--dpi", "20"]
    args = ["plot", files[name], "-o", out, *quick, *(["--log"] if log else [])]
    ran = run(capsys, args)
    expected = expected_refusal(name, "plot", log=log)
    if expected is not None:
        refused(ran, expected)
        assert not out.exists(), "refused before any folder is made"
        return
    succeeded(ran)
    files = [out / f"s_{kind}.png" for kind in expected_kinds(s)]
    assert ran.out.split() == [str(f) for f in files]
    assert sorted(out.iterdir()) == sorted(files)
    assert all(f.read_bytes().startswith(b"\x89PNG") for f in files)
    check_notes(ran.notes, s)


# --- view -----------------------------------------------------------------------------------


def embedded(page: str) -> dict[str, Any]:
    match = re.search(r'id="lossland-data">(.*?)</script>', page, re.S)
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


@pytest.mark.parametrize("log", [False, True], ids=["linear", "log"])
@pytest.mark.parametrize("name", list(CASES))
def test_view(files, tmp_path, capsys, name, log):
    s = case_surface(name)
    out = tmp_path / "page.html"
    ran = run(capsys, ["view", files[name], "-o", out, *(["--log"] if log else [])])
    expected = expected_refusal(name, "view", log=log)
    if expected is not None:
        refused(ran, expected)
        assert not out.exists()
        return
    succeeded(ran)
    check_notes(ran.notes, s)
    data = embedded(out.read_text(encoding="utf-8"))
    truth = Truth(s)
    z = np.array(data["grid"]["z"], dtype=float)  # None → NaN
    np.testing.assert_array_equal(z, truth.drawn())
    assert data["log_allowed"] is (CASES[name].positive and CASES[name].seeds_positive)
    check_page_notes(data["notes"], s)
    if data["seeds"] is not None:
        assert s.stack is not None
        for k, seed in enumerate(data["seeds"]):
            one = analysis.seed_surface(s, k)
            np.testing.assert_array_equal(np.array(seed["z"], dtype=float), Truth(one).drawn())
            check_page_notes(seed["notes"], one)


def check_page_notes(notes: list[list[Any]], s: Surface) -> None:
    """The hover text of every point without a finite loss says why: evaluated NaN and not
    evaluated are told apart; an infinite point says what it is drawn as."""
    truth = Truth(s)
    said = {(i, j): text for i, j, text in notes}
    assert set(said) == {(int(i), int(j)) for i, j in np.argwhere(~truth.finite)}
    for (i, j), text in said.items():
        if not truth.evaluated[i, j]:
            assert text == "not evaluated"
        elif np.isnan(s.loss[i, j]):
            assert text == "evaluated, loss NaN"
        else:  # only a surface with a finite loss is shown
            sign = "-" if s.loss[i, j] < 0 else ""
            assert text == f"evaluated, loss {sign}inf (drawn as {truth.high:.6g})"


# --- export ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        pytest.param(name, fmt, id=f"{name}-{fmt}")
        for name in CASES
        for fmt in ("csv", "npz", "vtp", "obj", "vtp --log")
        if fmt != "vtp --log" or log_matters(name)
    ],
)
def test_export(files, tmp_path, capsys, name, fmt):
    s = case_surface(name)
    kind, *flags = fmt.split()
    out = tmp_path / f"out.{kind}"
    ran = run(capsys, ["export", files[name], "-o", out, *flags])
    expected = expected_refusal(name, kind, log=bool(flags))
    if expected is not None:
        refused(ran, expected)
        assert not out.exists()
        return
    succeeded(ran)
    truth = Truth(s)
    if kind == "npz":
        back = read_npz(out)
        for field in ("loss", "acc", "loss_sem", "done"):
            np.testing.assert_array_equal(getattr(back, field), getattr(s, field))
    elif kind == "csv":
        rows = list(csv.DictReader(out.read_text().splitlines()))
        assert len(rows) == s.loss.size
        np.testing.assert_array_equal([float(r["loss"]) for r in rows], s.loss.ravel())
        assert [int(r["done"]) for r in rows] == s.done.ravel().astype(int).tolist()
    else:
        vertices = mesh_heights(out)
        drawn = truth.drawn()
        expected_z = np.log(drawn[np.isfinite(drawn)]) if flags else drawn[np.isfinite(drawn)]
        np.testing.assert_allclose(vertices, expected_z, rtol=1e-12)
    if kind in ("vtp", "obj"):  # csv and npz hold the raw grid, done mask included
        check_notes(ran.notes, s)


def mesh_heights(file: Path) -> np.ndarray:
    """The z of every vertex of an obj, or of every point of a vtp, in file order."""
    text = file.read_text()
    if file.suffix == ".obj":
        return np.array([float(line.split()[3]) for line in text.splitlines() if line[:2] == "v "])
    block = re.search(r'Name="Points"[^>]*>(.*?)</DataArray>', text, re.S)
    assert block is not None
    return np.array(block.group(1).split(), dtype=float).reshape(-1, 3)[:, 2]


# --- path -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "log"), SCALES)
def test_path(files, tmp_path, capsys, name, log):
    """Optimizer paths on the surface, from a start every drawable case has evaluated."""
    s = case_surface(name)
    out = tmp_path / "paths.csv"
    args = ["path", files[name], "--start=0.5,-0.75", "--steps", "5", "-o", out]
    ran = run(capsys, [*args, *(["--log"] if log else [])])
    if s.y is None:
        expected: str | None = "1-D"
    elif min(s.shape) < 2:
        expected = "at least 2 grid points per axis"
    else:
        expected = expected_refusal(name, "plot", log=log)
    if expected is not None:
        refused(ran, expected.replace("nothing to plot", "nothing to descend on"))
        assert not out.exists()
        return
    succeeded(ran)
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert (float(rows[0]["x"]), float(rows[0]["y"])) == (0.5, -0.75)
    assert np.isfinite([float(r["loss"]) for r in rows]).all()


# --- the Python API -------------------------------------------------------------------------


@dataclass(frozen=True)
class Called:
    result: Any
    error: str | None
    notes: list[str]


def call(function: Callable[[], Any]) -> Called:
    """``function()``: its result, or the one line of its LosslandError; its notes. Any other
    exception or warning fails the test (pyproject turns warnings into errors)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LosslandWarning)
        try:
            result, error = function(), None
        except LosslandError as exc:
            result, error = None, str(exc)
            assert_one_line(error)
    return Called(result, error, [str(w.message) for w in caught])


def refuses(called: Called, expected: str | None) -> bool:
    """Whether it refused, as expected (None: it must not)."""
    if expected is None:
        assert called.error is None, called.error
        return False
    assert called.error is not None and expected in called.error, called.error
    return True


# name → (draw, what it needs: "2x2", "2-D" or "1-D", takes log)
FIGURES: dict[str, tuple[Callable[..., Any], str, bool]] = {
    "contour": (F.contour, "2x2", True),
    "contourf": (F.contourf, "2x2", True),
    "surface3d": (F.surface3d, "2x2", True),
    "heatmap": (F.heatmap, "2-D", True),
    "line": (F.line, "1-D", True),
    "persistence": (F.persistence, "2-D", False),
    "merge_tree": (F.merge_tree, "2-D", False),
    "topology": (F.topology_figure, "2-D", False),
    "critical_points": (lambda s: F.critical_points(F.heatmap(s), s), "2-D", False),
}


def figure_refusal(name: str, figure: str, *, log: bool) -> str | None:
    s, (_, needs, _) = case_surface(name), FIGURES[figure]
    if needs == "1-D" and s.y is not None:
        return "2-D"
    if needs != "1-D" and s.y is None:
        return "1-D"
    if needs == "2x2" and min(s.shape) < 2:
        return "at least 2×2 grid points"
    return expected_refusal(name, "plot", log=log)


@pytest.mark.parametrize("figure", list(FIGURES))
@pytest.mark.parametrize("name", list(CASES))
def test_figure_functions(name, figure):
    draw, _, takes_log = FIGURES[figure]
    s, truth = case_surface(name), Truth(case_surface(name))
    for log in (False, True) if takes_log else (False,):
        called = call(lambda kw={"log": True} if log else {}: draw(s, **kw))
        if refuses(called, figure_refusal(name, figure, log=log)):
            continue
        assert not called.notes  # a figure drawn into an Axes is the user's: no note
        drawn = called.result
        if figure == "heatmap":
            mesh = drawn.collections[0]
            np.testing.assert_array_equal(mesh.get_array().filled(np.nan), truth.drawn())
            norm = mesh.norm
            assert np.isfinite([norm.vmin, norm.vmax]).all() and norm.vmin < norm.vmax
            assert norm.vmin <= truth.low and truth.high <= norm.vmax
        elif figure == "line":
            np.testing.assert_array_equal(drawn.lines[0].get_ydata(), truth.drawn())
            accuracy = np.isfinite(s.acc[truth.evaluated]).any()
            assert len(drawn.figure.axes) == (2 if accuracy else 1)  # a twin axis: accuracy
        elif figure in ("contour", "contourf"):
            bar = [c for c in drawn.child_axes]
            assert len(bar) == 1  # the colour bar, over a finite range
            low, high = bar[0].get_ylim()
            assert np.isfinite([low, high]).all() and low < high


@pytest.mark.parametrize("name", list(CASES))
def test_surface_methods(name):
    s, truth = case_surface(name), Truth(case_surface(name))
    text = analysis.describe(s)
    assert f"done: {truth.done_text()}" in text and not re.search(r"\bnan\b", text)
    assert f"done {truth.done_text().replace(' points', '')}" in repr(s)
    x, _, low = s.argmin()
    if truth.finite.any():
        assert low == truth.low and f"min loss {truth.low:.5g}" in repr(s)
    else:
        assert np.isnan([x, low]).all() and "min loss" not in repr(s)
    page = s._repr_html_()
    assert f"<td style='text-align:left'>{truth.done_text()}</td>" in page
    png = s._repr_png_()
    refusal = CASES[name].refused
    if refusal is not None:
        assert png is None and refusal in page
    else:
        assert png is not None and png.startswith(b"\x89PNG") and "data:image/png" in page
    centre = centre_index(s)
    row = re.search(r"loss at [^<]*</th><td style='text-align:left'>([^<]*)<", page)
    assert row is not None
    if not truth.evaluated[centre]:
        assert row.group(1) == "not evaluated"
    elif np.isnan(s.loss[centre]):
        assert row.group(1) == "evaluated, loss NaN"
    elif truth.finite[centre]:
        assert row.group(1) == f"{s.loss[centre]:.5g}"


def centre_index(s: Surface) -> tuple[int, ...]:
    jx = np.flatnonzero(s.x == 0.0)
    if s.y is None:
        return (int(jx[0]) if len(jx) else len(s.x) // 2,)
    iy = np.flatnonzero(s.y == 0.0)
    if len(jx) and len(iy):
        return int(iy[0]), int(jx[0])
    return len(s.y) // 2, len(s.x) // 2


@pytest.mark.parametrize("name", list(CASES))
def test_sharpness_topology_and_basins(name):
    s, truth = case_surface(name), Truth(case_surface(name))
    sharp = call(lambda: lossland.sharpness(s)).result
    centre = centre_index(s)
    if sharp is not None:
        assert truth.finite[centre] and sharp.centre_loss == s.loss[centre]
        json.dumps(sharp.as_dict(), allow_nan=False)
    for line in call(lambda: analysis.measure_lines(s)).result:
        assert not re.search(r"\bnan\b", line), line
    json.dumps(call(lambda: analysis.measures(s)).result, allow_nan=False)
    found = call(lambda: analysis.surface_topology(s)).result
    if s.y is None or not truth.finite.any():
        assert found is None and call(lambda: analysis.topology_lines(s)).result == []
        return
    best = found.minima[0]
    assert best.loss == truth.low and truth.finite[best.row, best.col]
    for m in found.minima:  # every minimum at a finite evaluated point
        assert truth.finite[m.row, m.col] and m.loss == s.loss[m.row, m.col]
    assert f"global {truth.low:.4g}" in call(lambda: analysis.topology_lines(s)).result[0]
    loss, done = analysis.surface_graph(s)
    basin = analysis.global_basin(found, loss, delta=0.5, done=done)
    assert basin.points >= 1 and basin.area > 0


SEEDED = [name for name in CASES if name.startswith("seed stack")]


@pytest.mark.parametrize("name", list(CASES))
def test_seed_figures(name):
    s = case_surface(name)
    results = [call(lambda f=f: f(s)) for f in (analysis.robustness, analysis.mean_and_spread)]
    figure = call(lambda: show.seeds_figure(s))
    if name not in SEEDED:
        for called in (*results, figure):
            refuses(called, "one direction seed")
        return
    summary = results[0].result
    json.dumps(summary, allow_nan=False)  # JSON-ready: None where no seed has a figure
    assert s.stack is not None
    minima = summary["minimum"]["loss"]
    for k, value in enumerate(minima):
        seed = Truth(analysis.seed_surface(s, k))
        assert value == (seed.low if seed.finite.any() else None)
    for line in analysis.robustness_lines(summary):
        assert not re.search(r"\bnan\b", line), line
    titles = [ax.get_title() for ax in figure.result.axes[: len(minima)]]
    blank = [not Truth(analysis.seed_surface(s, k)).finite.any() for k in range(len(minima))]
    assert [title.endswith("no finite loss") for title in titles] == blank
    bar = figure.result.axes[len(minima) + 1]  # the seeds' colour bar
    assert (bar.get_yscale() == "log") is CASES[name].seeds_positive


DEFAULT_STYLE_CASE = "NaN, inf and -inf among finite"


@pytest.mark.parametrize("name", list(CASES))
def test_api_writers(tmp_path, name):
    """lossland.plot, lossland.view and lossland.export refuse as the commands do, before
    anything is written; what they write carries the note the commands print."""
    s = case_surface(name)
    refusal = expected_refusal(name, "plot")
    if refusal is not None or name == DEFAULT_STYLE_CASE:  # the others: test_plot
        plotted = call(lambda: lossland.plot(s, tmp_path / "figures", dpi=20))
        if refuses(plotted, refusal):
            assert not (tmp_path / "figures").exists()
        else:
            kinds = [f"surface_{k}.png" for k in expected_kinds(s)]
            assert [p.name for p in plotted.result] == kinds
            check_notes(plotted.notes, s)
    page = call(lambda: lossland.view(s))
    if not refuses(page, expected_refusal(name, "view")):
        check_page_notes(embedded(page.result.html)["notes"], s)
        check_notes(page.notes, s)
    for fmt in ("csv", "npz", "vtp", "obj"):
        out = tmp_path / f"s.{fmt}"
        written = call(lambda: lossland.export(s, out))  # noqa: B023
        if refuses(written, expected_refusal(name, fmt)):
            assert not out.exists()
        else:
            assert out.stat().st_size > 0


# --- the viewer in a browser ----------------------------------------------------------------


@pytest.mark.browser
def test_viewer_hover_tells_nan_from_not_evaluated(tmp_path):
    """The page's hover text: "evaluated, loss NaN", "not evaluated", an infinite point with
    what it is drawn as; a seed with no finite loss is listed but cannot be chosen (plotly
    cannot draw an empty surface), the others switch."""
    from test_browser import browser_page

    s = stacked(np.full((5, 5), np.nan))
    _holes(s)
    s.loss[4, 0], s.done[4, 0] = np.nan, False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LosslandWarning)
        page_file = lossland.view(s, tmp_path / "page.html")
    with browser_page(1400, 1000) as (page, problems):
        page.goto(page_file.as_uri())
        page.wait_for_function("window.losslandViewer && window.losslandViewer.ready")
        text = page.evaluate("document.getElementById('contour').data[0].text")
        assert text[0][0].startswith("evaluated, loss NaN")
        assert text[4][0].startswith("not evaluated")
        assert text[1][2].startswith("evaluated, loss inf (drawn as 3)")
        assert text[3][4].startswith("evaluated, loss -inf (drawn as 3)")
        assert text[2][2].startswith("loss 1<br>accuracy 50 %")
        # The hover line under the plots, on a grid point: why it has no loss.
        page.evaluate(
            "document.getElementById('contour').emit('plotly_hover', "
            "{points: [{x: -1, y: -1, pointNumber: [0, 0]}]})"
        )
        assert page.inner_text("#hover-info") == "x -1, y -1, evaluated, loss NaN"
        # The seed whose every loss is NaN is listed, not offered: nothing to draw.
        seed = page.locator("#seed option[value='2']")
        assert seed.inner_text() == "seed 2 (no finite loss)" and seed.is_disabled()
        page.select_option("#seed", "1")
        page.wait_for_function(
            "document.getElementById('contour').data[0].text[0][0].startsWith('loss 3.3')"
        )
    assert problems == []


def test_seed_summary_without_any_finite_loss():
    """Every seed NaN: the figures across seeds are None, printed as n/a (not nan, no crash)."""
    s = stacked(np.full((5, 5), np.nan))
    s.stack.loss[:2] = np.nan  # type: ignore[union-attr]
    summary = call(lambda: analysis.robustness(s)).result
    json.dumps(summary, allow_nan=False)
    assert summary["minimum"]["loss"] == [None, None, None]
    lines = analysis.robustness_lines(summary)
    assert "  minimum: loss n/a, spread n/a; position spread n/a" in lines
    refuses(call(lambda: show.seeds_figure(s)), NON_FINITE)


def test_surface_command_summary_tells_nan_from_not_evaluated():
    """What ``lossland surface`` prints at the end: evaluated NaN points are counted as such."""
    from lossland.cli._common import surface_summary

    s = edited(bowl(), _holes).with_attrs(points_computed=25)
    text = surface_summary(s, Path("s.h5"), 1.0)
    assert "done 25/25 points (1 NaN, 2 infinite); non-finite losses: 1 NaN (left blank), " in text
    assert "loss min 1 at (x=0, y=0), max 3" in text
    assert "nan" not in text.replace("NaN", "")
