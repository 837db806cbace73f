"""``refine TOL`` against the full grid on a small MLP: what it says of its own error (the
sampled check, ``refine_check``) is recomputed from the full grid, and the share of
interpolated points off by more than TOL stays under the bound it prints; the sharpness of a
refined surface is measured (its stencil evaluated), not interpolated."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossland
from helpers import torch_threads
from lossland.analysis import describe, measure_lines, measure_points, sharpness


@pytest.fixture(scope="module")
def mlp() -> tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor], dict[str, object]]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))
    x = torch.randn(128, 10)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    d = lossland.random_directions(net, seed=1, ndim=2)
    common = {"x": "-1:1:21", "y": "-1:1:21", "directions": d, "progress": False}
    return net.eval(), (x, y), common


@pytest.fixture(scope="module")
def full(mlp):  # type: ignore[no-untyped-def]
    net, data, common = mlp
    with torch_threads(1):
        return lossland.surface(net, data, **common)


def _at(surface: lossland.Surface, point: list[float]) -> float:
    px, py = point
    assert surface.y is not None
    i, j = np.flatnonzero(surface.y == py)[0], np.flatnonzero(surface.x == px)[0]
    return float(surface.loss[i, j])


@pytest.mark.parametrize("tol", [0.01, 0.03, 0.1, 0.3])
def test_refine_reports_its_measured_error_against_the_full_grid(mlp, full, tol) -> None:  # type: ignore[no-untyped-def]
    net, data, common = mlp
    with torch_threads(1):
        refined = lossland.surface(net, data, refine=tol, **common)
    check = refined.attrs["refine_check"]
    assert check["tol"] == tol and check["rounds"]
    last = check["rounds"][-1]
    # The stored errors are the sampled points' |ln L − ln prediction|, recomputed here from
    # the full grid (float32 rounding apart).
    recomputed = [
        abs(np.log(_at(full, p)) - np.log(pred))
        for p, pred in zip(check["points"], check["predicted"], strict=True)
    ]
    assert len(recomputed) == last["checked"]
    np.testing.assert_allclose(check["errors"], recomputed, atol=1e-5)
    assert last["max_error"] == pytest.approx(max(recomputed), abs=1e-5)
    assert last["exceeded"] == sum(e > tol for e in recomputed)
    # The sampled points were evaluated: they are the full grid's values now.
    assert all(_at(refined, p) == pytest.approx(_at(full, p), rel=1e-5) for p in check["points"])
    # The claim printed: at most this share of the interpolated points is off by more than
    # tol. Over the whole grid it holds.
    interpolated = refined.interpolated
    assert interpolated is not None
    off = np.abs(np.log(refined.loss) - np.log(full.loss))[interpolated] > tol
    assert off.mean() <= last["exceeded_share_upper95"]
    line = next(t for t in measure_lines(refined) if t.startswith(f"refine {tol}"))
    assert f"{last['exceeded']} above tol" in line and "evaluated as a check" in line
    assert f"refine_check: {line}" in describe(refined).splitlines()  # not the raw record


def test_refined_sharpness_is_measured_not_interpolated(mlp, full) -> None:  # type: ignore[no-untyped-def]
    net, data, common = mlp
    with torch_threads(1):
        refined = lossland.surface(net, data, refine=0.3, **common)
    stencil = measure_points(refined)
    assert stencil.sum() >= 9 and refined.evaluated[stencil].all()
    a, b = sharpness(refined), sharpness(full)
    assert a is not None and b is not None
    for name in ("curvature_xx", "curvature_yy", "curvature_xy", "rise_mean", "rise_max"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-4, abs=1e-7), name


def _line_surface(interpolated: list[int]) -> lossland.Surface:
    """A 1-D line between checkpoints, x = 0 … 1 by 0.25, with some points interpolated."""
    x = np.linspace(0, 1, 5)
    s = lossland.Surface.empty(x, None, split="train", attrs={"directions_kind": "models"})
    s.store(Ellipsis, {"loss": 1 + np.sin(np.pi * x), "acc": np.zeros(5)})
    flags = np.zeros(5, dtype=bool)
    flags[interpolated] = True
    from dataclasses import replace

    return replace(s, interpolated=flags)


@pytest.mark.parametrize(
    ("interpolated", "note"),
    [([], None), ([2], "(from 1 of 5 points interpolated by refine)"), ([1, 3], "(from 2 of 5")],
)
def test_a_number_from_interpolated_points_says_so(
    interpolated: list[int], note: str | None
) -> None:
    s = _line_surface(interpolated)
    line = next(t for t in measure_lines(s) if t.startswith("barrier "))
    if note is None:
        assert "interpolated" not in line
    else:
        assert note in line
    assert lossland.analysis.measures(s)["barrier"]["interpolated_points"] == len(interpolated)


@pytest.mark.parametrize(
    ("hole", "curvature"), [(None, True), ((2, 2), False), ((2, 3), False), ((0, 0), True)]
)
def test_sharpness_leaves_out_interpolated_points(
    hole: tuple[int, int] | None, curvature: bool
) -> None:
    x = np.linspace(-1, 1, 5)
    s = lossland.Surface.empty(x, x, split="train")
    X, Y = np.meshgrid(x, x)
    s.store(Ellipsis, {"loss": 1 + X**2 + 2 * Y**2, "acc": np.zeros((5, 5))})
    flags = np.zeros((5, 5), dtype=bool)
    if hole is not None:
        flags[hole] = True
    from dataclasses import replace

    found = sharpness(replace(s, interpolated=flags))
    if hole == (2, 2):  # the centre itself interpolated: no measures at all
        assert found is None
        return
    assert found is not None
    assert (found.curvature_xx is not None and found.curvature_xy is not None) == curvature
    if curvature:
        assert found.curvature_xx == pytest.approx(2.0) and found.curvature_yy == pytest.approx(4.0)
    # What refine evaluates so that this never happens: the centre's 3 × 3 (the rise radius,
    # 0.1, lies within the neighbours here).
    box = np.zeros((5, 5), dtype=bool)
    box[1:4, 1:4] = True
    np.testing.assert_array_equal(measure_points(s), box)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        (np.linspace(-1, 1, 5), np.linspace(-1, 1, 5)),
        (np.linspace(-1, 1, 41), np.linspace(-1, 1, 41)),
        (np.linspace(-1, 1, 81), np.linspace(-2, 2, 21)),
        (np.linspace(-0.5, 1.5, 33), np.linspace(-1, 1, 51)),
        (np.linspace(-1, 1, 51), None),
    ],
)
def test_measure_points_are_all_that_sharpness_reads(x: np.ndarray, y: np.ndarray | None) -> None:
    """Every point outside :func:`measure_points` interpolated (and wrong): the sharpness is
    that of the true surface, so evaluating those points is enough."""
    from dataclasses import replace

    s = lossland.Surface.empty(x, y, split="train")
    X, Y = (x, 0 * x) if y is None else np.meshgrid(x, y)
    s.store(Ellipsis, {"loss": 1 + X**2 + 2 * Y**2 + 0.3 * X * Y + X**3, "acc": 0 * X})
    inside = measure_points(s)
    assert 9 <= inside.sum() < inside.size if y is not None else inside.sum() >= 3
    wrong = replace(s, interpolated=~inside)
    wrong.loss[~inside] = 100.0
    assert sharpness(wrong) == sharpness(s)
