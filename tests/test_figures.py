"""Figures: image comparison against stored baselines, then behaviour (no global state, units,
log scales, degenerate surfaces, topology marks, vector output, the CLI, notebook display).

Baselines are ``baseline_images/<case>.png``: each case of ``CASES`` drawn from a deterministic
synthetic surface with matplotlib's default style, the Agg renderer (PNG), DejaVu Sans (bundled
with matplotlib) and ``DPI``, compared with ``matplotlib.testing.compare.compare_images`` at RMS
tolerance ``TOL``. After an intended change in the look, regenerate them and look at every one
before keeping it::

    LOSSLAND_REGENERATE_BASELINES=1 PYTHONPATH=src \
        python -m pytest -q tests/test_figures.py -k baseline

With the variable set the baseline tests write the images instead of comparing them.
"""

from __future__ import annotations

import contextlib
import html
import math
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import h5py
import matplotlib
import matplotlib.style
import numpy as np
import pytest
from matplotlib.testing.compare import compare_images

from lossland.analysis import summary_lines, surface_topology
from lossland.errors import LosslandError, LosslandWarning
from lossland.io import OptimizerPath, Surface
from lossland.show import _display, _maps, _scales, _style
from lossland.show import _plotter as F

BASELINES = Path(__file__).parent / "baseline_images"
REGENERATE = os.environ.get("LOSSLAND_REGENERATE_BASELINES") == "1"
DPI = 80
TOL = 2.0  # RMS over 0-255 pixel values: absorbs anti-aliasing noise, not a moved line or label


# --- synthetic surfaces ------------------------------------------------------------------------


def two_well_loss(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two basins at x = ±1, the left one deeper (a tilt), positive everywhere (0.07 .. 2.9)."""
    return 0.02 + (x**2 - 1) ** 2 + y**2 + 0.1 * (x + 1.5)


def two_well(nx: int = 21, ny: int = 17) -> Surface:
    """A 21 × 17 random-direction plane with one infinite corner and one unevaluated point."""
    x, y = np.linspace(-1.5, 1.5, nx), np.linspace(-1, 1, ny)
    xx, yy = np.meshgrid(x, y)
    attrs = {
        "model": "mlp",
        "directions_kind": "random",
        "norm": "filter",
        "scheme": "fast",
        "samples": 512,
        "bn": "train",
        "seed": 0,
        "cosine": 1.2e-3,
    }
    s = Surface.empty(x, y, split="train", attrs=attrs)
    z = two_well_loss(xx, yy)
    s.store((slice(None), slice(None)), {"loss": z, "acc": np.exp(-z), "loss_sem": 0.02 * z})
    if nx > 3 and ny > 8:
        s.loss[0, -1] = np.inf  # shown as the largest finite loss
        s.done[8, 3] = False  # blank
        s.loss[8, 3] = np.nan
    return s


def optimizer_paths() -> list[OptimizerPath]:
    t = np.linspace(0, 1, 16)
    a = np.column_stack([0.3 - 1.25 * t**0.7, 0.8 * (1 - t) ** 2])
    b = np.column_stack([0.5 + 0.5 * t, -0.8 * (1 - t) ** 1.5 + 0.1 * np.sin(6 * t)])
    return [
        OptimizerPath(p, two_well_loss(p[:, 0], p[:, 1]), name, label, None)
        for p, name, label in ((a, "nadam", "nadam lr=0.1"), (b, "sgd", "sgd lr=0.05"))
    ]


def pca_plane() -> Surface:
    """A 20 × 6 PCA plane (41 × 13 points) with its training trajectory, accuracy in percent."""
    x, y = np.linspace(-4, 16, 41), np.linspace(-3, 3, 13)
    xx, yy = np.meshgrid(x, y)
    z = 0.05 + 0.012 * xx**2 + 0.25 * yy**2 + 0.02 * xx * yy
    attrs = {
        "directions_kind": "pca",
        "norm": "none",
        "axis_labels": ["PC1 (84.2 %)", "PC2 (9.1 %)"],
        "acc_unit": "percent",
    }
    s = Surface.empty(x, y, split="train", attrs=attrs)
    s.store((slice(None), slice(None)), {"loss": z, "acc": 100 * np.exp(-z), "loss_sem": 0.01 * z})
    t = np.linspace(0, 1, 12)
    path = np.column_stack([15 * (1 - t) ** 1.5, 2.5 * np.sin(np.pi * (1 - t)) * (1 - t)])
    return Surface(s.x, s.y, s.loss, s.acc, s.loss_sem, s.done, s.split, s.attrs, {"sgd": path})


def line_1d(*, accuracy: str = "nan") -> Surface:
    """41 points of a 1-D line; accuracy all NaN, or in percent (``Surface.acc`` always is:
    files of format 1, which stored fractions, are converted when read)."""
    x = np.linspace(-1, 1, 41)
    attrs: dict[str, Any] = {"directions_kind": "random", "norm": "filter", "samples": 256}
    s = Surface.empty(x, None, split="test", attrs=attrs)
    fraction = 0.95 - 0.5 * x**2
    acc = {"nan": np.full_like(x, np.nan), "percent": 100 * fraction}
    s.store(
        slice(None),
        {"loss": 0.1 + x**2 + 0.5 * x**4, "acc": acc[accuracy], "loss_sem": 0.01 + 0.03 * x**2},
    )
    return s


def compared_line() -> Surface:
    """A line between checkpoints holding three paths' profiles (``interpolate --align``)."""
    from lossland.analysis import Profile, comparison_attrs

    t = np.linspace(0, 1, 21)
    bump = np.sin(np.pi * t)
    paths = [
        Profile(name, t, 0.3 + h * bump, np.full_like(t, 0.02 + 0.01 * k), 90 - 20 * h * bump)
        for k, (name, h) in enumerate(
            [("straight line", 1.2), ("line to B aligned", 0.4), ("bezier curve", 0.05)]
        )
    ]
    s = line_1d(accuracy="percent")
    return s.with_attrs(directions_kind="models", comparison=comparison_attrs(paths))


def basins() -> Surface:
    """Two wells (at about (-1, 1), the deeper one, and (1, -1)) and two peaks, plus a fine
    ripple (barriers ~0.01) under a standard error of 0.02: two significant minima, one saddle
    between them, and many minima that are noise."""
    x, y = np.linspace(-2, 2, 41), np.linspace(-1.6, 2.0, 37)
    xx, yy = np.meshgrid(x, y)
    z = 1.5 + np.sin(1.6 * xx) * np.sin(1.6 * yy) + 0.05 * (xx**2 + yy**2) + 0.1 * xx
    z += 0.006 * np.sin(23 * xx) * np.cos(19 * yy)
    s = Surface.empty(x, y, split="train", attrs={"directions_kind": "random", "norm": "filter"})
    s.store(Ellipsis, {"loss": z, "acc": np.full_like(z, 0.8), "loss_sem": np.full_like(z, 0.02)})
    return s


def layer_stack(*, line: bool = False) -> Surface:
    """A stack of three blocks' planes (``params_per_layer``), or lines: the same two wells,
    sharper in each later block, the last with a block name too long for its title."""
    from dataclasses import replace

    from lossland.io import SeedStack

    base = line_1d() if line else two_well(11, 7)
    loss = np.stack([0.05 + (base.loss - 0.05) * (1 + k) for k in range(3)])
    names = ("transformer.h.0", "transformer.h.1", "model.decoder.layers.11.self_attention")
    held = {"loss": loss, "acc": np.full_like(loss, 50.0), "loss_sem": 0.01 * loss}
    stack = SeedStack.of((), held, np.ones(loss.shape, bool), ({}, {}, {}), layers=names)
    return replace(base, stack=stack)


def plot_file(kind: str, out: Path, surface: Surface, **options: Any) -> Path:
    """The ``kind`` file of the standard set ``plot()`` writes (the CLI's figures)."""
    (found,) = [f for f in F.plot(surface, out, format="png", **options) if f.stem.endswith(kind)]
    return found


PAPER = F.PlotStyle.paper()
# Each case draws an Axes or a Figure, or writes a file with plot(); ``paper_*`` cases are drawn
# at twice the dpi (a paper figure is half the size).
CASES: dict[str, Callable[[Path], Any]] = {
    "contour": lambda _: F.contour(two_well()),
    "contourf": lambda _: F.contourf(two_well()),
    "heatmap": lambda _: F.heatmap(two_well()),
    "surface3d": lambda _: F.surface3d(two_well()),
    "line_nan_accuracy": lambda _: F.line(line_1d()),
    "line_accuracy_log_caption": lambda _: F.line(
        line_1d(accuracy="percent"), log=True, caption=True
    ),
    "profiles_compare": lambda _: F.profiles(compared_line()),
    "paths_overlay": lambda _: F.paths(F.contourf(two_well()), optimizer_paths()),
    "paths_3d_log": lambda _: F.paths(F.surface3d(two_well(), log=True), optimizer_paths()),
    "paper_contourf_log": lambda _: F.contourf(two_well(), log=True, style=PAPER),
    "log_contour_caption": lambda _: F.contour(two_well(), log=True, caption=True),
    "pca_plane_trajectory": lambda _: F.trajectories(
        F.contourf(pca_plane(), log=True), pca_plane()
    ),
    "contour_critical_points": lambda _: F.contour(basins(), critical_points=True),
    "paper_topology": lambda _: F.topology_figure(basins(), style=PAPER),
    "layers_panels_log": lambda _: F.layers_figure(layer_stack(), log=True),
    "layers_lines": lambda _: F.layers_figure(layer_stack(line=True)),
    "paper_plot_pca_contourf": lambda out: plot_file(
        "contourf", out, pca_plane(), style="paper", log=True, dpi=2 * DPI
    ),
    "paper_plot_3d": lambda out: plot_file(
        "3d", out, two_well(), style="paper", log=True, dpi=2 * DPI, paths=optimizer_paths()
    ),
}


@contextlib.contextmanager
def fixed_rc() -> Iterator[None]:
    """Matplotlib's defaults and its bundled font, whatever the user's matplotlibrc says."""
    with matplotlib.style.context("default"), matplotlib.rc_context({"font.family": "DejaVu Sans"}):
        yield


@pytest.mark.filterwarnings("ignore:the figures show:lossland.errors.LosslandWarning")
@pytest.mark.parametrize("case", sorted(CASES))
def test_baseline(case: str, tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    with fixed_rc():
        drawn = CASES[case](tmp_path / "plot")
        # A paper figure is half the size: twice the dpi keeps its text comparable.
        dpi = 2 * DPI if case.startswith("paper") else DPI
        if not isinstance(drawn, Path):
            figure = drawn if isinstance(drawn, Figure) else drawn.get_figure()
            drawn = F.save(figure, tmp_path / f"{case}.png", dpi=dpi)
        actual = drawn
    expected = BASELINES / f"{case}.png"
    if REGENERATE:
        BASELINES.mkdir(exist_ok=True)
        shutil.copyfile(actual, expected)
        return
    assert expected.exists(), f"no baseline {expected.name}: see this file's docstring"
    failure = compare_images(str(expected), str(actual), tol=TOL)
    assert failure is None, failure


def test_every_baseline_has_a_case() -> None:
    stored = {p.stem for p in BASELINES.glob("*.png") if "-failed-diff" not in p.name}
    assert stored <= set(CASES), f"stale baselines: {sorted(stored - set(CASES))}"


# --- global state ------------------------------------------------------------------------------


def test_no_global_state_changed(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    backend, figures, rc = matplotlib.get_backend(), plt.get_fignums(), dict(matplotlib.rcParams)
    s = two_well()
    for draw in (F.contour, F.contourf, F.heatmap, F.surface3d):
        F.paths(F.trajectories(draw(s, caption=True), s), optimizer_paths())
    F.line(line_1d(accuracy="percent"), log=True)
    for fmt in ("png", "pdf", "svg"):
        F.plot(two_well(7, 5), tmp_path / fmt, format=fmt, paths=optimizer_paths(), dpi=40)
    F.contourf(basins(), critical_points=True)
    F.topology_figure(basins())
    _display.summary_html(s)
    assert s._repr_png_() is not None and "<img" in s._repr_html_()
    assert matplotlib.get_backend() == backend
    assert plt.get_fignums() == figures
    assert dict(matplotlib.rcParams) == rc


def test_module_imports_without_matplotlib() -> None:
    code = "import sys, lossland; assert 'matplotlib' not in sys.modules, 'matplotlib loaded'"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_draws_into_a_users_subplot_grid() -> None:
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 2)
    try:
        s = two_well()
        assert F.contour(s, ax=axs[0]) is axs[0]
        assert F.heatmap(s, ax=axs[1], log=True) is axs[1]
        F.paths(axs[0], optimizer_paths())
        fig.canvas.draw()
        assert len(axs[0].child_axes) == 1 and len(axs[1].child_axes) == 1  # the colour bars
        assert axs[0].get_legend() is not None
        ax3d = fig.add_subplot(2, 2, 4, projection="3d")
        assert F.surface3d(s, ax=ax3d) is ax3d
        with pytest.raises(LosslandError, match="needs a 3-D Axes"):
            F.surface3d(s, ax=axs[1])
    finally:
        plt.close(fig)


# --- log scales --------------------------------------------------------------------------------


def colorbar_labels(ax: Any) -> list[str]:
    ax.get_figure().draw_without_rendering()
    (cax,) = ax.child_axes
    return [t.get_text() for t in cax.get_yticklabels()]


def test_log_colorbar_ticks_are_loss_values() -> None:
    for draw in (F.contour, F.contourf, F.heatmap):
        assert colorbar_labels(draw(two_well(), log=True)) == ["0.1", "0.2", "0.5", "1", "2"]
    linear = colorbar_labels(F.contourf(two_well()))
    assert linear == ["0.5", "1.0", "1.5", "2.0", "2.5"]


def test_log_contour_levels_and_labels() -> None:
    from matplotlib.contour import ContourSet

    ax = F.contour(two_well(), log=True, levels=12)
    (lines,) = [c for c in ax.collections if isinstance(c, ContourSet)]
    levels = np.asarray(lines.levels)
    # 12 levels over the 1.5 decades of 0.09 .. 2.9 ask for 8 per decade: 10, the nearest
    # count that passes through 2 and 5 as well as the decades.
    steps = np.log10(levels) * 10
    assert np.allclose(steps, np.round(steps)) and set(np.diff(np.round(steps))) == {1.0}
    values = _scales.loss_values(two_well())
    low, high = np.nanmin(values), np.nanmax(values)  # the hole excluded
    assert levels[0] <= low < levels[1] and levels[-2] < high <= levels[-1]
    # Labels only where a level meets a colour-bar tick (0.1, 0.2, 0.5, 1, 2): round losses.
    texts = {t.get_text() for t in ax.texts}
    assert {"0.2", "0.5", "1", "2"} <= texts <= {"0.1", "0.2", "0.5", "1", "2"}


def test_log_ticks_choose_round_losses() -> None:
    assert _scales.log_ticks(0.3, 30) == [0.3, 1, 3, 10, 30]
    assert _scales.log_ticks(1e-3, 10) == [1e-3, 1e-2, 0.1, 1, 10]
    assert _scales.log_ticks(0.07, 2.9) == [0.1, 0.2, 0.5, 1, 2]
    assert len(_scales.log_ticks(1e-12, 1e12)) <= 8
    narrow = _scales.log_ticks(2.0, 2.5)
    assert len(narrow) >= 3 and all(2.0 <= v <= 2.5 for v in narrow)
    assert _scales.loss_text(1e-5) == "1e-5" and _scales.loss_text(0.30000000000000004) == "0.3"


def test_3d_log_height_is_natural_log_with_loss_labels() -> None:
    s = two_well()
    ax = F.surface3d(s, log=True)
    top = float(np.nanmax(np.where(np.isfinite(s.loss), s.loss, np.nan)))
    assert ax.get_zlim()[1] == pytest.approx(math.log(top))
    locs = ax.zaxis.get_majorticklocs()
    labels = [ax.zaxis.get_major_formatter()(v) for v in locs]
    assert labels == ["0.1", "0.2", "0.5", "1", "2"]
    assert np.allclose(locs, np.log([0.1, 0.2, 0.5, 1, 2]))


def test_1d_log_axis_reads_losses() -> None:
    ax = F.line(line_1d(), log=True)
    ax.get_figure().draw_without_rendering()
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0.1", "0.2", "0.5", "1"]


@pytest.mark.parametrize("bad", [-1.0, 0.0])
def test_log_refuses_losses_not_positive(bad: float, tmp_path: Path) -> None:
    s = two_well()
    s.loss[3, 3] = bad
    for draw in (F.contour, F.contourf, F.heatmap, F.surface3d):
        with pytest.raises(LosslandError, match="needs positive losses") as info:
            draw(s, log=True)
        assert "\n" not in str(info.value)
    with pytest.raises(LosslandError, match="needs positive losses"):
        F.plot(s, tmp_path / "out", log=True)
    assert not (tmp_path / "out").exists()
    F.contour(s)  # the linear scale is fine


# --- degenerate surfaces -----------------------------------------------------------------------


def filled(z: np.ndarray, x: np.ndarray, y: np.ndarray | None) -> Surface:
    s = Surface.empty(x, y, split="train")
    s.store(Ellipsis, {"loss": z, "acc": np.full_like(z, 0.5), "loss_sem": np.zeros_like(z)})
    return s


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("log", [False, True])
def test_constant_surface_draws(log: bool, tmp_path: Path) -> None:
    s = filled(np.full((5, 6), 2.3), np.linspace(-1, 1, 6), np.linspace(-1, 1, 5))
    files = F.plot(s, tmp_path, log=log)
    assert [f.name for f in files] == [
        f"surface_{k}.png" for k in ("contour", "contourf", "heatmap", "3d", "topology")
    ]
    F.line(filled(np.full(7, 2.3), np.linspace(-1, 1, 7), None), log=log)


@pytest.mark.parametrize(
    ("fill", "message"),
    [
        (None, "no evaluated points yet"),
        (np.nan, "every evaluated loss is infinite or NaN"),
        (np.inf, "every evaluated loss is infinite or NaN"),
    ],
)
def test_nothing_drawable_is_a_clear_error(
    fill: float | None, message: str, tmp_path: Path
) -> None:
    x = y = np.linspace(-1, 1, 4)
    s = Surface.empty(x, y, split="train")
    if fill is not None:
        s.store(
            Ellipsis,
            {
                "loss": np.full((4, 4), fill),
                "acc": np.full((4, 4), np.nan),
                "loss_sem": np.zeros((4, 4)),
            },
        )
    for draw in (F.contour, F.contourf, F.heatmap, F.surface3d):
        with pytest.raises(LosslandError, match=message):
            draw(s)
    with pytest.raises(LosslandError, match=message):
        F.plot(s, tmp_path)
    assert message in _display.summary_html(s)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (4, 1)])
def test_single_row_or_column_gets_a_heat_map(shape: tuple[int, int], tmp_path: Path) -> None:
    ny, nx = shape
    x, y = np.linspace(-1, 1, nx), np.linspace(-0.5, 0.5, ny)
    s = filled(0.5 + np.arange(nx * ny, dtype=float).reshape(shape), x, y)
    for draw in (F.contour, F.contourf, F.surface3d):
        with pytest.raises(LosslandError, match=r"at least 2×2 grid points.*heatmap"):
            draw(s)
    F.heatmap(s, log=True)
    assert [f.name for f in F.plot(s, tmp_path)] == ["surface_heatmap.png", "surface_topology.png"]
    assert "data:image/png;base64," in _display.summary_html(s)


@pytest.mark.filterwarnings("error")
def test_one_point_line_draws(tmp_path: Path) -> None:
    s = filled(np.array([0.7]), np.array([0.0]), None)
    assert [f.name for f in F.plot(s, tmp_path)] == ["surface_1d.png"]


def test_wrong_dimension_and_bad_options() -> None:
    with pytest.raises(LosslandError, match=r"use line\(\)"):
        F.contour(line_1d())
    with pytest.raises(LosslandError, match="2-D"):
        F.line(two_well())
    with pytest.raises(LosslandError, match="levels must be an integer, at least 2"):
        F.contour(two_well(), levels=1)
    with pytest.raises(LosslandError, match="unknown colormap"):
        F.contourf(two_well(), cmap="no-such-map")
    with pytest.raises(LosslandError, match="unknown aspect"):
        F.heatmap(two_well(), aspect="square")  # type: ignore[arg-type]
    with pytest.raises(LosslandError, match="unknown image format"):
        F.PlotStyle(format="jpg")


def test_infinite_losses_become_the_largest_and_holes_stay_blank() -> None:
    s = two_well()  # loss[0, -1] is inf, point [8, 3] was never evaluated
    values = _scales.loss_values(s)
    largest = s.loss[np.isfinite(s.loss)].max()
    assert values[0, -1] == largest == np.nanmax(values)
    assert np.isnan(values[8, 3]) and int(np.isnan(values).sum()) == 1
    clipped = _scales.loss_values(s, zmax=1.0)
    assert np.nanmax(clipped) == 1.0 and np.nanmin(clipped) == np.nanmin(values)
    # The log scale is a colour norm over the clipped losses, not a transform of them.
    from matplotlib.colors import LogNorm
    from matplotlib.contour import ContourSet

    ax = F.contourf(s, log=True, zmax=1.0)
    (filled_contours,) = [c for c in ax.collections if isinstance(c, ContourSet)]
    mesh = F.heatmap(s, log=True, zmax=1.0).collections[0]
    for norm in (filled_contours.norm, mesh.norm):
        assert isinstance(norm, LogNorm)
        assert (norm.vmin, norm.vmax) == (np.nanmin(values), 1.0)


def test_heatmap_colours_follow_the_loss(tmp_path: Path) -> None:
    """coolwarm: the bowl's minimum (the centre) is blue, its corners red, in the PNG itself."""
    import matplotlib.image as mpimg

    x, y = np.linspace(-1, 1, 31), np.linspace(-1, 1, 25)
    xx, yy = np.meshgrid(x, y)
    s = filled(0.1 + xx**2 + yy**2, x, y)
    ax = F.heatmap(s)
    fig = ax.get_figure()
    image = mpimg.imread(F.save(fig, tmp_path / "bowl.png", dpi=int(fig.dpi)))
    assert image.shape[1] == round(fig.get_figwidth() * fig.dpi)

    def colour(px: float, py: float) -> np.ndarray:
        col, row = ax.transData.transform((px, py))
        return np.asarray(image[int(image.shape[0] - row), int(col), :3])

    centre, corner = colour(0.0, 0.0), colour(-0.97, 0.97)
    assert centre[2] > centre[0] + 0.2 and corner[0] > corner[2] + 0.2


# --- topology ----------------------------------------------------------------------------------


def marks(ax: Any) -> dict[str, np.ndarray]:
    """The critical-point markers on ``ax`` by legend label: offsets (n, 2)."""
    names = ("global minimum", "minimum", "saddle")
    return {
        c.get_label(): np.asarray(c.get_offsets()) for c in ax.collections if c.get_label() in names
    }


def test_critical_points_mark_the_significant_minima_and_their_saddle() -> None:
    s = basins()
    found = surface_topology(s)
    assert found is not None and len(found.minima) > 5  # the ripple's minima
    significant = [m for m in found.minima if m.significant]
    assert len(significant) == 2  # the two wells: the ripple is within 2 SE
    assert F.contour(s).collections and marks(F.contour(s)) == {}  # only when asked
    shown = marks(F.contour(s, critical_points=True))
    # The deeper well of sin(1.6x)·sin(1.6y) + 0.1x is at (-π/3.2, π/3.2); the ripple moves the
    # lowest grid point (0.1 apart) by a step or so.
    np.testing.assert_allclose(shown["global minimum"], [[-0.98, 0.98]], atol=0.15)
    np.testing.assert_allclose(shown["minimum"], [[0.98, -0.98]], atol=0.15)
    other = found.minima.index(significant[1])
    saddle = found.merges[found.minima[other].merge]  # type: ignore[index]
    np.testing.assert_array_equal(shown["saddle"], [[saddle.x, saddle.y]])
    everything = marks(F.critical_points(F.contourf(s), s, significant_only=False))
    assert len(everything["minimum"]) == len(found.minima) - 1  # the global one is the star
    assert set(
        marks(
            F.contour(
                filled(np.full((3, 4), 2.0), np.arange(4.0), np.arange(3.0)), critical_points=True
            )
        )
    ) == {"global minimum"}


def test_plot_marks_critical_points_on_the_contours_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marked: list[str] = []
    original = F.critical_points

    def record(ax: Any, surface: Surface, **options: Any) -> Any:
        marked.append(ax.get_title())
        return original(ax, surface, **options)

    monkeypatch.setattr(_maps, "critical_points", record)
    F.plot(basins(), tmp_path / "on", title="t", dpi=30)
    assert marked == ["t", "t"]  # contour and contourf
    F.plot(basins(), tmp_path / "off", critical_points=False, dpi=30)
    assert marked == ["t", "t"]


def test_topology_figures() -> None:
    import matplotlib.pyplot as plt

    s = basins()
    ax = F.persistence(s)
    assert ax.get_title() == "persistence diagram"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["death = birth", "minimum", "barrier ≤ 2 SE", "immortal"]
    fig, axs = plt.subplots(1, 2)
    try:
        assert F.merge_tree(s, ax=axs[1], title="") is axs[1] and axs[1].get_title() == ""
    finally:
        plt.close(fig)
    both = F.topology_figure(s, titles=False)
    assert len(both.axes) == 2 and [a.get_title() for a in both.axes] == ["", ""]
    with pytest.raises(LosslandError, match="need a 2-D surface"):
        F.persistence(line_1d())
    with pytest.raises(LosslandError, match="no evaluated points"):
        F.merge_tree(Surface.empty(np.arange(3.0), np.arange(2.0), split="train"))


def test_lossland_plot_is_callable_and_holds_the_figures(tmp_path: Path) -> None:
    import inspect

    import lossland

    assert isinstance(lossland.plot, F.Plotter)
    figures = {
        "contour": F.contour,
        "contourf": F.contourf,
        "heatmap": F.heatmap,
        "surface3d": F.surface3d,
        "line": F.line,
        "paths": F.paths,
        "trajectories": F.trajectories,
        "critical_points": F.critical_points,
        "persistence": F.persistence,
        "merge_tree": F.merge_tree,
        "topology": F.topology_figure,
        "save": F.save,
    }
    assert {name: getattr(lossland.plot, name) for name in figures} == figures
    assert inspect.signature(lossland.plot).parameters["levels"].default == 30
    assert ".contour()" in repr(lossland.plot)
    files = lossland.plot(two_well(7, 5), tmp_path, log=True, dpi=40)  # as before: the files
    assert len(files) == 5 and all(isinstance(f, Path) and f.is_file() for f in files)
    (pdf, *_) = lossland.plot(two_well(7, 5), tmp_path / "paper", style="paper")
    assert pdf.suffix == ".pdf"
    with pytest.raises(LosslandError, match="unknown style 'poster'"):
        lossland.plot(two_well(), tmp_path, style="poster")  # type: ignore[arg-type]


def test_one_table_lists_the_standard_figures() -> None:
    """``FIGURES`` decides which files plot() writes, in order; each drawer but the seeds' is
    also an attribute of ``lossland.plot`` (written out there, so type checkers see it)."""
    import lossland

    kinds = [f.kind for f in F.FIGURES]
    assert len(set(kinds)) == len(kinds)
    attributes = [getattr(lossland.plot, n) for n in dir(F.Plotter) if not n.startswith("_")]
    assert [f.kind for f in F.FIGURES if f.draw not in attributes] == ["seeds"]
    assert F.figure_kinds(1) == F.figure_kinds(1, thin=True, seeds=True) == ["1d"]
    assert F.figure_kinds(1, compared=True) == ["1d", "profiles"]
    assert F.figure_kinds(2, thin=True, seeds=True) == ["heatmap", "topology"]
    planes = ["contour", "contourf", "heatmap", "3d", "topology"]
    assert F.figure_kinds(2) == planes and F.figure_kinds(2, seeds=True) == [*planes, "seeds"]


# --- aspect, titles, captions, units, colours --------------------------------------------------


def test_pca_plane_comes_out_wide() -> None:
    ax = F.contourf(pca_plane())
    fig = ax.get_figure()
    assert fig.get_figwidth() / fig.get_figheight() > 2
    fig.draw_without_rendering()
    box = ax.get_window_extent()
    assert box.width / box.height == pytest.approx(20 / 6, rel=0.02)
    auto = F.contourf(pca_plane(), aspect="auto").get_figure()
    assert auto.get_figwidth() / auto.get_figheight() < 1.5


def test_titles_from_attributes() -> None:
    s = two_well()
    assert F.contour(s).get_title() == "train loss · random directions (filter norm)"
    kinds = {
        "pca": "train loss · PCA of the training trajectory",
        "hessian": "train loss · Hessian eigenvectors",
        "models": "train loss · between checkpoints",
    }
    for kind, title in kinds.items():
        assert _scales.default_title(s.with_attrs(directions_kind=kind)) == title
    assert _scales.default_title(line_1d()) == "test loss · random direction (filter norm)"
    assert F.heatmap(s, title="").get_title() == ""
    assert F.heatmap(s, title="Figure 2").get_title() == "Figure 2"


def caption_texts(ax: Any) -> list[str]:
    return [t.get_text() for t in ax.texts if "split=" in t.get_text()]


def test_caption_is_optional_and_off_for_paper(tmp_path: Path) -> None:
    s = two_well()
    assert caption_texts(F.contour(s)) == []
    (text,) = caption_texts(F.contour(s, caption=True))
    flat = text.replace("\n", " ")
    for part in ("model=mlp", "norm=filter", "scheme=fast", "samples=512", "grid 21×17"):
        assert part in flat
    assert "cos(δ,η)=+1.2e-03" in flat
    assert F.PlotStyle.default().caption and not F.PlotStyle.paper().caption
    (f,) = F.plot(line_1d(), tmp_path, style=F.PlotStyle.paper())
    assert f.suffix == ".pdf"


@pytest.mark.parametrize("unit", ["fraction", "percent"])
def test_accuracy_in_percent_for_both_units(unit: str, tmp_path: Path) -> None:
    surface = line_1d(accuracy="percent")
    if unit == "fraction":  # a file of format 1 (fractions), converted when it is read
        path = surface.save(tmp_path / "old.h5")
        with h5py.File(path, "r+") as f:
            f["test_acc"][...] = f["test_acc"][()] / 100
            f.attrs["format_version"] = 1
        surface = Surface.load(path)
    ax = F.line(surface)
    fig = ax.get_figure()
    (twin,) = [a for a in fig.axes if a is not ax]
    assert twin.get_ylim() == (0, 100)
    (curve,) = twin.get_lines()
    assert np.nanmax(curve.get_ydata()) == pytest.approx(95.0)
    assert twin.get_ylabel() == "accuracy (%)"


def test_no_accuracy_axis_when_accuracy_is_all_nan() -> None:
    ax = F.line(line_1d())
    assert ax.get_figure().axes == [ax]


def test_path_colours_are_the_same_in_every_figure() -> None:
    s, ps = two_well(), optimizer_paths()
    expected = {p.label: _style.path_colour(i) for i, p in enumerate(ps)}
    assert len(set(expected.values())) == len(ps)
    for draw in (F.contour, F.heatmap, F.surface3d):
        ax = F.paths(draw(s), ps)
        colours = {
            ln.get_label(): ln.get_color() for ln in ax.get_lines() if ln.get_label() in expected
        }
        assert colours == expected, draw.__name__


def test_3d_paths_lie_on_the_surface() -> None:
    s, (path, _) = two_well(), optimizer_paths()
    ax = F.paths(F.surface3d(s, log=True), [path])
    (line3d,) = [ln for ln in ax.get_lines() if ln.get_label() == path.label]
    heights = np.asarray(line3d.get_data_3d()[2])
    inside = np.isfinite(heights)
    assert inside.sum() > 5
    assert np.allclose(heights[inside], np.log(path.losses[inside]), atol=0.15)


def test_styles() -> None:
    paper, default = F.PlotStyle.paper(), F.PlotStyle.default()
    assert paper.width == pytest.approx(3.3) and paper.font_size == 8
    assert paper.cmap in ("viridis", "cividis") and default.cmap == "coolwarm"
    assert paper.format == "pdf" and paper.dpi >= 300
    with pytest.raises(FrozenInstanceError):
        paper.width = 7  # type: ignore[misc]
    ax = F.contourf(two_well(), style=paper)
    assert ax.get_figure().get_figwidth() == pytest.approx(3.3)
    assert ax.xaxis.label.get_fontsize() == 8


# --- files -------------------------------------------------------------------------------------


def test_plot_writes_the_standard_set_atomically(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    path = two_well().save(tmp_path / "b.h5")
    with pytest.warns(LosslandWarning, match="1 of 357 points not evaluated.*1 infinite"):
        files = F.plot(path, paths=optimizer_paths())
    for f in files:
        assert mpimg.imread(f)[..., :3].std() > 0.05, f"{f.name} looks blank"
    assert [f.name for f in files] == [
        "b_contour.png",
        "b_contourf.png",
        "b_heatmap.png",
        "b_3d.png",
        "b_topology.png",
    ]
    assert all(f.parent == tmp_path and f.stat().st_size > 10_000 for f in files)
    assert not list(tmp_path.glob(".*.tmp"))
    (one,) = F.plot(line_1d(), tmp_path / "new" / "folder", stem="line", dpi=50)
    assert one.name == "line_1d.png" and mpimg.imread(one)[..., :3].std() > 0.05


def test_pdf_embeds_truetype_fonts(tmp_path: Path) -> None:
    before = matplotlib.rcParams["pdf.fonttype"]
    files = F.plot(two_well(7, 5), tmp_path, format="pdf", caption=True)
    for f in files:
        data = f.read_bytes()
        assert data.startswith(b"%PDF") and b"/FontFile2" in data, f.name
        assert b"/Type3" not in data, f.name
    assert matplotlib.rcParams["pdf.fonttype"] == before  # set only around the save


def test_svg_is_valid_xml_with_text_as_paths(tmp_path: Path) -> None:
    ax = F.paths(F.contourf(two_well(), caption=True), optimizer_paths())
    out = F.save(ax.get_figure(), tmp_path / "c.svg")
    root = ET.fromstring(out.read_bytes())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert not list(root.iter("{http://www.w3.org/2000/svg}text"))
    for f in F.plot(two_well(9, 7), tmp_path / "svg", format="svg"):
        assert ET.fromstring(f.read_bytes()).tag == "{http://www.w3.org/2000/svg}svg"


# --- the command line --------------------------------------------------------------------------


def test_cli_plot_beside_the_file_and_its_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lossland.cli import main

    path = two_well(9, 7).save(tmp_path / "b.h5")
    assert main(["plot", str(path), "--log", "--levels", "12"]) == 0
    kinds = ("contour", "contourf", "heatmap", "3d", "topology")
    assert capsys.readouterr().out.split() == [str(tmp_path / f"b_{k}.png") for k in kinds]
    out = tmp_path / "paper"
    args = ["--style", "paper", "--no-caption", "--cmap", "cividis", "--title", "", "-o", str(out)]
    assert main(["plot", str(path), *args]) == 0
    assert sorted(f.suffix for f in out.iterdir()) == [".pdf"] * 5
    capsys.readouterr()
    for flags, message in [
        (["--levels", "1"], "--levels must be at least 2 and at most 1000, got 1"),
        (["--cmap", "nope"], "unknown colormap 'nope' (--cmap)"),
        (["--zmax", "nan"], "--zmax must be a finite number"),
    ]:
        assert main(["plot", str(path), *flags]) == 2
        assert message in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing.h5")]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_plot_leaves_every_default_to_the_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import inspect

    from lossland.cli import _show, main

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(_show, "plot", lambda *a, **k: calls.append(k) or [])
    path = two_well(5, 4).save(tmp_path / "b.h5")
    assert main(["plot", str(path)]) == 0
    defaults = inspect.signature(F.plot).parameters
    (given,) = calls
    assert {k: v for k, v in given.items() if k != "paths"} == {
        k: defaults[k].default for k in given if k != "paths"
    }
    assert main(["plot", str(path), "--style", "paper", "--caption", "--dpi", "99"]) == 0
    assert (calls[1]["style"], calls[1]["caption"], calls[1]["dpi"]) == ("paper", True, 99)


# --- notebooks ---------------------------------------------------------------------------------


def test_summary_html_and_png() -> None:
    s = two_well().with_attrs(norm="<filter>")
    page = _display.summary_html(s)
    for part in ("<table", "21 × 17", "train", "356/357 points", "random", "512"):
        assert part in page, part
    assert "min loss</th><td style='text-align:left'>0.091131 at x=-1.05, y=-0.125" in page
    assert "loss at (0, 0)</th><td style='text-align:left'>1.17" in page
    assert "&lt;filter&gt;" in page and "<filter>" not in page
    assert "data:image/png;base64," in page
    png = _display.contour_png(s, dpi=60)
    assert png.startswith(b"\x89PNG") and len(png) < 60_000
    assert "loss at centre (x=0.07895, y=0.06667)" in _display.summary_html(two_well(20, 16))
    assert _display.contour_png(line_1d()).startswith(b"\x89PNG")
    found = surface_topology(s)
    assert found is not None
    merged = sum(m.merge is not None and m.persistence > 0 for m in found.minima)
    # the summary's first line, and how its barriers' errors were computed (nothing paired here)
    basins_row = html.escape(
        f"{summary_lines(found)[0]}; barrier SEs: 0 paired, {merged} independent"
    )
    assert f"basins</th><td style='text-align:left'>{basins_row}</td>" in page


def test_a_surface_displays_itself_compactly() -> None:
    s = two_well()
    assert repr(s) == (
        "Surface(2-D 21 × 17, split='train', done 356/357 (1 infinite), min loss 0.091131 at "
        "x=-1.05, y=-0.125)"
    )
    assert repr(line_1d()) == "Surface(1-D 41, split='test', done 41/41, min loss 0.1 at x=0)"
    assert s._repr_html_() == _display.summary_html(s)
    png = s._repr_png_()
    assert png is not None and png.startswith(b"\x89PNG")
    empty = Surface.empty(np.arange(3.0), np.arange(2.0), split="train")
    assert empty._repr_png_() is None and "no evaluated points" in empty._repr_html_()
    assert repr(empty) == "Surface(2-D 3 × 2, split='train', done 0/6)"
