"""Tests for the surface interpolant, descent with PyTorch's optimizers, path files, the CLI."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lossland.analysis import (
    HYPER_DEFAULTS,
    OPTIMIZERS,
    Interpolant,
    descend,
    edge_point,
    parse_start,
    resolve_hyper,
    surface_grid,
)
from lossland.cli import main
from lossland.errors import LosslandError
from lossland.io import OptimizerPath, Surface, read_paths, write_paths

X = np.linspace(-1.0, 1.0, 21)
Y = np.linspace(-1.0, 1.0, 17)


def bowl_values(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    gx, gy = np.meshgrid(x, y)
    values: np.ndarray = 0.5 + gx**2 + 2 * gy**2 + 0.3 * gx * gy + 0.1 * np.sin(3 * gx)
    return values


def make_surface(
    loss: np.ndarray | None = None,
    x: np.ndarray = X,
    y: np.ndarray = Y,
    done: np.ndarray | None = None,
) -> Surface:
    loss = bowl_values(x, y) if loss is None else loss
    return Surface(
        x=x,
        y=y,
        loss=loss,
        acc=np.full_like(loss, 0.5),
        loss_sem=np.zeros_like(loss),
        done=np.ones(loss.shape, dtype=bool) if done is None else done,
        attrs={"model": "bowl"},
    )


def numeric_gradient(f: Interpolant, x: float, y: float, h: float = 1e-6) -> np.ndarray:
    return np.array(
        [
            (f.value(x + h, y) - f.value(x - h, y)) / (2 * h),
            (f.value(x, y + h) - f.value(x, y - h)) / (2 * h),
        ]
    )


def autograd_gradient(f: Interpolant, x: float, y: float) -> np.ndarray:
    xy = torch.tensor([x, y], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(f(xy), xy)
    return grad.numpy()


# --- interpolant ---------------------------------------------------------------------------------


@pytest.mark.parametrize("interpolation", ["cubic", "bilinear"])
@pytest.mark.parametrize("log", [False, True])
def test_interpolant_is_exact_at_grid_nodes(interpolation: str, log: bool) -> None:
    surface = make_surface()
    f = Interpolant(surface_grid(surface), interpolation=interpolation, log=log)  # type: ignore[arg-type]
    expected = np.log(surface.loss) if log else surface.loss
    for i, y in enumerate(Y):
        for j, x in enumerate(X):
            assert f.value(float(x), float(y)) == pytest.approx(expected[i, j], abs=1e-13)


@pytest.mark.parametrize("interpolation", ["cubic", "bilinear"])
@pytest.mark.parametrize("log", [False, True])
def test_gradient_matches_finite_differences(interpolation: str, log: bool) -> None:
    f = Interpolant(surface_grid(make_surface()), interpolation=interpolation, log=log)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(-0.97, 0.97, size=(40, 2)):
        # Stay off cell borders, where the bilinear gradient jumps.
        if interpolation == "bilinear" and (
            np.min(np.abs(X - x)) < 1e-4 or np.min(np.abs(Y - y)) < 1e-4
        ):
            continue
        np.testing.assert_allclose(
            autograd_gradient(f, x, y), numeric_gradient(f, x, y), rtol=1e-6, atol=1e-7
        )


@settings(max_examples=60, deadline=None)
@given(
    st.floats(-0.999, 0.999),
    st.floats(-0.999, 0.999),
)
def test_cubic_gradient_matches_finite_differences_anywhere(x: float, y: float) -> None:
    f = Interpolant(surface_grid(make_surface()))
    np.testing.assert_allclose(
        autograd_gradient(f, x, y), numeric_gradient(f, x, y), rtol=1e-5, atol=1e-6
    )


def test_cubic_reproduces_a_quadratic_in_interior_cells_and_has_a_continuous_gradient() -> None:
    quad = make_surface(
        loss=np.add.outer(2 * Y**2, X**2) + 0.3 * np.outer(Y, X),
    )
    f = Interpolant(surface_grid(quad))
    for x, y in [(0.33, -0.41), (-0.52, 0.6), (0.05, 0.07)]:
        assert f.value(x, y) == pytest.approx(x**2 + 2 * y**2 + 0.3 * x * y, abs=1e-12)
    # Across a cell border the cubic gradient does not jump (the bilinear one does).
    border = float(X[12])
    for interpolation, continuous in (("cubic", True), ("bilinear", False)):
        g = Interpolant(surface_grid(make_surface()), interpolation=interpolation)  # type: ignore[arg-type]
        left = autograd_gradient(g, border - 1e-9, 0.3)
        right = autograd_gradient(g, border + 1e-9, 0.3)
        assert np.allclose(left, right, atol=1e-6) == continuous


def test_bilinear_reproduces_a_plane() -> None:
    plane = make_surface(loss=np.add.outer(0.5 * Y, 2.0 * X) + 3.0)
    f = Interpolant(surface_grid(plane), interpolation="bilinear")
    assert f.value(0.123, -0.456) == pytest.approx(2 * 0.123 + 0.5 * -0.456 + 3, abs=1e-13)
    np.testing.assert_allclose(autograd_gradient(f, 0.123, -0.456), [2.0, 0.5], atol=1e-12)


def test_interpolant_edges() -> None:
    f = Interpolant(surface_grid(make_surface()))
    corners = [(-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0), (1.0, 1.0)]
    for x, y in corners:
        assert f.contains(x, y)
        assert math.isfinite(f.value(x, y))
        assert np.isfinite(autograd_gradient(f, x, y)).all()
    assert math.isnan(f.value(1.0 + 1e-12, 0.0))
    assert not f.contains(0.0, -1.0001)


def test_nan_cells_are_holes_and_inf_is_the_largest_finite() -> None:
    loss = bowl_values(X, Y)
    loss[8, 10] = np.nan  # not evaluated
    loss[0, 0] = np.inf  # diverged
    finite_max = np.nanmax(np.where(np.isinf(loss), np.nan, loss))
    f = Interpolant(surface_grid(make_surface(loss)), interpolation="bilinear")
    assert f.value(-1.0, -1.0) == pytest.approx(finite_max)
    assert math.isnan(f.value(float(X[10]), float(Y[8])))
    assert math.isnan(f.value(float(X[10]) + 0.05, float(Y[8]) + 0.05))  # a cell touching it
    assert math.isfinite(f.value(float(X[12]) + 0.05, float(Y[8])))  # two cells away
    cubic = Interpolant(surface_grid(make_surface(loss)))
    # The cubic reads one more node on each side, so its hole is larger.
    assert math.isnan(cubic.value(float(X[11]) + 0.05, float(Y[8]) + 0.01))


def test_not_done_points_are_holes_even_with_a_stored_value() -> None:
    loss = bowl_values(X, Y)
    done = np.ones(loss.shape, dtype=bool)
    loss[3, 3], done[3, 3] = -1.0, False  # the reference's "not computed" marker
    f = Interpolant(surface_grid(make_surface(loss, done=done)), interpolation="bilinear")
    assert math.isnan(f.value(float(X[3]), float(Y[3])))


def test_decreasing_coordinates_give_the_same_function() -> None:
    up = make_surface()
    down = make_surface(loss=up.loss[::-1, ::-1].copy(), x=X[::-1].copy(), y=Y[::-1].copy())
    a, b = Interpolant(surface_grid(up)), Interpolant(surface_grid(down))
    assert a.value(0.31, -0.27) == pytest.approx(b.value(0.31, -0.27), abs=1e-14)
    pa = descend(up, start=(0.6, 0.5))
    pb = descend(down, start=(0.6, 0.5))
    np.testing.assert_allclose(pa.points, pb.points, atol=1e-12)


def test_refuses_1d_tiny_and_non_monotonic_grids() -> None:
    line = Surface(X, None, X**2, X * 0, X * 0, np.ones(len(X), dtype=bool))
    with pytest.raises(LosslandError, match="1-D"):
        descend(line, start=(0.0, 0.0))
    with pytest.raises(LosslandError, match="at least 2"):
        surface_grid(make_surface(x=np.array([0.0]), loss=np.ones((len(Y), 1))))
    bumpy = np.array([0.0, 1.0, 0.5, 2.0])
    with pytest.raises(LosslandError, match="monotonic"):
        surface_grid(make_surface(x=bumpy, loss=np.ones((len(Y), 4))))


def test_log_refuses_non_positive_losses() -> None:
    surface = make_surface(loss=bowl_values(X, Y) - 0.5)  # the minimum is 0 - 0.1*sin(...)
    with pytest.raises(LosslandError, match="positive losses"):
        descend(surface, start=(0.5, 0.5), log=True)


# --- descent ---------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_descends(optimizer: str) -> None:
    surface = make_surface()
    path = descend(surface, start=(0.7, 0.6), optimizer=optimizer, lr=0.05, steps=40)  # type: ignore[arg-type]
    assert path.points.shape == (41, 2)
    assert path.losses.shape == (41,)
    assert path.stopped is None
    assert path.losses[-1] < 0.5 * path.losses[0]
    assert path.label == f"{optimizer} lr=0.05"
    assert path.settings["optimizer"] == optimizer
    np.testing.assert_array_equal(path.points[0], [0.7, 0.6])
    f = Interpolant(surface_grid(surface))
    assert path.losses[7] == pytest.approx(f.value(*path.points[7]))


def test_nadam_defaults_are_the_seeds() -> None:
    path = descend(make_surface(), start=(0.5, 0.5))
    assert path.optimizer == "nadam"
    assert path.settings["lr"] == 0.1
    assert (path.settings["beta1"], path.settings["beta2"]) == (0.99, 0.999)
    assert path.steps == 30


def test_sgd_matches_the_update_rule_by_hand() -> None:
    surface = make_surface()
    f = Interpolant(surface_grid(surface))
    path = descend(surface, start=(0.4, -0.3), optimizer="sgd", lr=0.07, steps=5, weight_decay=0.2)
    p = np.array([0.4, -0.3])
    for k in range(5):
        p = p - 0.07 * (autograd_gradient(f, *p) + 0.2 * p)
        np.testing.assert_allclose(path.points[k + 1], p, atol=1e-14)


def test_log_descends_on_the_interpolated_ln_loss_but_reports_the_loss() -> None:
    surface = make_surface()
    g = Interpolant(surface_grid(surface), log=True)  # interpolates ln(loss) on the grid
    path = descend(surface, start=(0.4, -0.3), optimizer="sgd", lr=0.1, steps=1, log=True)
    expected = np.array([0.4, -0.3]) - 0.1 * autograd_gradient(g, 0.4, -0.3)
    np.testing.assert_allclose(path.points[1], expected, atol=1e-14)
    assert path.losses[0] == pytest.approx(math.exp(g.value(0.4, -0.3)), rel=1e-14)
    # At a grid node that is the stored loss itself.
    node = descend(surface, start=(0.4, -0.25), steps=0, log=True)
    assert node.losses[0] == pytest.approx(surface.loss[6, 14], rel=1e-14)


def test_leaving_the_grid_stops_on_the_edge() -> None:
    path = descend(make_surface(), start=(0.9, 0.9), optimizer="sgd", lr=0.9, steps=30)
    assert path.stopped is not None and path.stopped.startswith("left the grid at step ")
    step = int(path.stopped.rsplit(" ", 1)[1])
    assert len(path.points) == step + 1
    last = path.points[-1]
    assert -1.0 <= last[0] <= 1.0 and -1.0 <= last[1] <= 1.0
    assert min(abs(abs(last[0]) - 1.0), abs(abs(last[1]) - 1.0)) < 1e-12
    assert np.isfinite(path.losses).all()


def test_edge_point_lies_on_the_segment() -> None:
    e = edge_point((0.5, 0.0), (1.5, 1.0), (-1.0, 1.0, -1.0, 1.0))
    assert e == pytest.approx((1.0, 0.5))
    e = edge_point((0.0, 0.9), (0.0, 3.0), (-1.0, 1.0, -1.0, 1.0))
    assert e == (0.0, 1.0)


def test_reaching_a_hole_stops_the_path() -> None:
    loss = bowl_values(X, Y)
    loss[7:10, 9:12] = np.nan  # around the minimum
    path = descend(make_surface(loss), start=(0.8, 0.7), optimizer="sgd", lr=0.1, steps=60)
    assert path.stopped is not None
    assert path.stopped.startswith("reached a hole (not evaluated, or NaN)")
    assert np.isfinite(path.losses).all()


def test_divergence_is_reported() -> None:
    # A huge learning rate sends the point to inf in one step from a steep start.
    path = descend(make_surface(), start=(0.9, 0.9), optimizer="sgd", lr=1e308, steps=3)
    assert path.stopped == "diverged at step 1"
    assert len(path.points) == 1


def test_zero_steps_is_the_start_alone() -> None:
    path = descend(make_surface(), start=(0.1, 0.2), steps=0)
    assert path.points.shape == (1, 2) and path.stopped is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": (2.0, 0.0)}, "outside the grid"),
        ({"start": (0.0, 0.0), "lr": 0.0}, "learning rate"),
        ({"start": (0.0, 0.0), "lr": math.nan}, "learning rate"),
        ({"start": (0.0, 0.0), "steps": -1}, "steps"),
        ({"start": (0.0, 0.0), "optimizer": "lbfgs"}, "unknown optimizer"),
        ({"start": (0.0, 0.0), "optimizer": "sgd", "beta1": 0.9}, "has no hyper-parameter beta1"),
        ({"start": (0.0, 0.0), "optimizer": "adam", "beta1": 1.0}, "beta1 must lie in"),
        ({"start": (0.0, 0.0), "optimizer": "adam", "amsgrad": 0.5}, "flag"),
        ({"start": (0.0, 0.0), "optimizer": "nesterov", "momentum": 0.0}, "nesterov needs"),
        ({"start": (0.0, 0.0), "interpolation": "spline"}, "unknown interpolation"),
    ],
)
def test_bad_arguments_raise_one_line_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(LosslandError, match=message) as info:
        descend(make_surface(), **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_start_on_a_hole_is_refused() -> None:
    loss = bowl_values(X, Y)
    loss[:, :5] = np.nan
    with pytest.raises(LosslandError, match="hole of the surface"):
        descend(make_surface(loss), start=(-0.9, 0.0))


def test_hyper_parameters_reach_the_optimizer() -> None:
    surface = make_surface()
    plain = descend(surface, start=(0.6, 0.5), optimizer="rmsprop", steps=10)
    tuned = descend(surface, start=(0.6, 0.5), optimizer="rmsprop", steps=10, centered=True)
    assert not np.allclose(plain.points, tuned.points)
    assert tuned.settings["centered"] is True
    assert tuned.label == "rmsprop lr=0.1 centered"
    assert resolve_hyper("adam", {"beta1": 0.8})["beta1"] == 0.8
    assert set(HYPER_DEFAULTS) == set(OPTIMIZERS)


def test_parse_start() -> None:
    assert parse_start("0.5,-0.25") == (0.5, -0.25)
    assert parse_start(" 1e-1 , 2 ") == (0.1, 2.0)
    for bad in ["0.5", "a,b", "1,2,3", "", "nan,0", "inf,1"]:
        with pytest.raises(LosslandError, match="start"):
            parse_start(bad)


# --- files -----------------------------------------------------------------------------------


def some_paths() -> list[OptimizerPath]:
    surface = make_surface()
    return [
        descend(surface, start=(0.7, 0.6), optimizer="adam", steps=12),
        descend(surface, start=(0.9, 0.9), optimizer="sgd", lr=0.9, steps=12),
    ]


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_path_files_round_trip(tmp_path: Path, suffix: str) -> None:
    paths = some_paths()
    file = write_paths(paths, tmp_path / f"p{suffix}")
    back = read_paths(file)
    assert len(back) == 2
    for a, b in zip(paths, back, strict=True):
        np.testing.assert_array_equal(a.points, b.points)
        np.testing.assert_array_equal(a.losses, b.losses)
        assert (a.label, a.optimizer, a.stopped) == (b.label, b.optimizer, b.stopped)
        assert dict(a.settings) == dict(b.settings)
    assert back[1].stopped is not None


def test_hand_made_csv_with_only_x_and_y(tmp_path: Path) -> None:
    file = tmp_path / "mine.csv"
    file.write_text("x,y\n0.5,0.5\n0.25,0.1\n0,0\n")
    (path,) = read_paths(file)
    assert path.points.shape == (3, 2) and path.label == "mine"
    assert np.isnan(path.losses).all()


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.csv", "", "no rows"),
        ("a.csv", "x,z\n1,2\n", "no y column"),
        ("a.csv", "x,y\n1,abc\n", "non-numeric y"),
        ("a.csv", "x,y\n1,\n", "missing or non-finite"),
        ("a.csv", "x,y,settings\n1,2,{oops\n", "settings in path 0 that is not valid JSON"),
        ("a.json", "{not json", "not valid JSON"),
        ("a.json", '{"paths": 3}', 'no "paths" list'),
        ("a.json", '{"paths": []}', "holds no paths"),
        ("a.json", '{"paths": [{"points": [[1]]}]}', "not \\[x, y\\] pairs"),
        ("a.json", '{"paths": [{"points": [[1, 2]], "losses": [1, 2]}]}', "do not match"),
        ("a.json", '{"paths": [{"points": [[1, "x"]]}]}', "non-numeric y"),
    ],
)
def test_malformed_path_files(tmp_path: Path, name: str, text: str, message: str) -> None:
    file = tmp_path / name
    file.write_text(text)
    with pytest.raises(LosslandError, match=message) as info:
        read_paths(file)
    assert "\n" not in str(info.value)


def test_path_file_names(tmp_path: Path) -> None:
    with pytest.raises(LosslandError, match=r"must end in \.csv or \.json"):
        write_paths(some_paths(), tmp_path / "p.txt")
    with pytest.raises(LosslandError, match="not found"):
        read_paths(tmp_path / "missing.csv")
    with pytest.raises(LosslandError, match="no paths"):
        write_paths([], tmp_path / "p.csv")


# --- CLI -------------------------------------------------------------------------------------


@pytest.fixture
def surface_file(tmp_path: Path) -> Path:
    return make_surface().save(tmp_path / "bowl.h5")


def test_cli_path_writes_several_paths(
    surface_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "paths.json"
    args = [str(surface_file), "--start", "0.5,0.5", "--start=-0.5,0.25", "-o", str(out)]
    rc = main(["path", *args, "--optimizer", "nadam", "--optimizer", "adam", "--steps", "15"])
    assert rc == 0
    paths = read_paths(out)
    assert [p.label for p in paths] == [
        "nadam lr=0.1 from (0.5, 0.5)",
        "adam lr=0.1 from (0.5, 0.5)",
        "nadam lr=0.1 from (-0.5, 0.25)",
        "adam lr=0.1 from (-0.5, 0.25)",
    ]
    assert all(p.steps == 15 for p in paths)
    printed = capsys.readouterr().out
    assert str(out) in printed and "15 steps" in printed


def test_cli_path_default_output_and_hyper_parameters(surface_file: Path) -> None:
    rc = main(
        [
            *["path", str(surface_file), "--start", "0.5,0.5", "--optimizer", "momentum"],
            *["--optimizer", "adam", "--momentum", "0.5", "--amsgrad", "--lr", "0.05"],
        ]
    )
    assert rc == 0
    momentum, adam = read_paths(surface_file.with_name("bowl.paths.csv"))
    assert momentum.settings["momentum"] == 0.5 and "amsgrad" not in momentum.settings
    assert adam.settings["amsgrad"] is True and "momentum" not in adam.settings
    assert momentum.label == "momentum lr=0.05 momentum=0.5"


def test_cli_path_log(surface_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "log.csv"
    assert main(["path", str(surface_file), "--start", "0.5,0.5", "--log", "-o", str(out)]) == 0
    assert read_paths(out)[0].settings["log"] is True


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--start", "0.5"], "malformed start"),
        (["--start", "5,5"], "outside the grid"),
        (["--start", "0,0", "--optimizer", "adamax"], "unknown optimizer"),
        (["--start", "0,0", "--optimizer", "sgd", "--beta2", "0.9"], "--beta2 does not apply"),
        (["--start", "0,0", "--optimizer", "adam", "--beta2", "1.5"], "beta2 must lie"),
        (["--start", "0,0", "--lr", "-1"], "learning rate"),
        (["--start", "0,0", "-o", "out.txt"], "must end in .csv or .json"),
        ([], "give a start point"),
    ],
)
def test_cli_path_errors(
    surface_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(surface_file.parent)
    assert main(["path", str(surface_file), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lossland: error: ") and message in err
    assert err.count("\n") == 1


def test_cli_path_missing_file_and_unwritable_folder(
    tmp_path: Path, surface_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["path", str(tmp_path / "nope.h5"), "--start", "0,0"]) == 2
    assert "not found" in capsys.readouterr().err
    out = tmp_path / "missing" / "p.csv"
    assert main(["path", str(surface_file), "--start", "0,0", "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main(["path", str(surface_file), "--start", "0,0", "-o", str(locked / "p.csv")]) == 2
        assert "not writable" in capsys.readouterr().err


def test_json_path_file_is_plain_json(tmp_path: Path) -> None:
    file = write_paths(some_paths(), tmp_path / "p.json")
    doc = json.loads(file.read_text())
    assert doc["format"] == "lossland-paths"
    assert len(doc["paths"][0]["points"][0]) == 2
