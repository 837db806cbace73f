"""Sharpness measures: exact on quadratic surfaces, sensible where the grid does not allow them."""

from __future__ import annotations

import numpy as np
import pytest

from lossland.analysis import measure_lines, measures, sharpness, with_measures
from lossland.io import Surface


def quadratic(x: np.ndarray, y: np.ndarray | None, a: float, b: float, c: float) -> Surface:
    """L = 1 + ½(a·x² + b·y² + 2c·x·y) on the grid; central differences are exact for it."""
    s = Surface.empty(x, y, split="train")
    if y is None:
        z = 1 + 0.5 * a * x**2
    else:
        xx, yy = np.meshgrid(x, y)
        z = 1 + 0.5 * (a * xx**2 + b * yy**2 + 2 * c * xx * yy)
    s.store(slice(None), {"loss": z, "acc": np.ones_like(z), "loss_sem": np.zeros_like(z)})
    return s


def test_curvature_and_rise_of_a_quadratic() -> None:
    x = np.linspace(-1, 1, 41)
    y = np.linspace(-0.5, 0.5, 21)
    s = quadratic(x, y, a=4.0, b=1.0, c=0.5)
    sh = sharpness(s)
    assert sh is not None
    assert sh.centre_loss == pytest.approx(1.0)
    assert sh.curvature_xx == pytest.approx(4.0) and sh.curvature_yy == pytest.approx(1.0)
    assert sh.curvature_xy == pytest.approx(0.5)
    want = np.linalg.eigvalsh([[4.0, 0.5], [0.5, 1.0]])[::-1]
    assert sh.principal == pytest.approx(tuple(want))
    # r = a tenth of the smaller half-range (0.05); rises ½a·r², ½b·r² on both sides.
    assert sh.radius == pytest.approx(0.05)
    r = 0.05
    rises = [0.5 * 4 * r * r] * 2 + [0.5 * 1 * r * r] * 2
    assert sh.rise_directions == 4
    # Linear interpolation between grid points overestimates a convex function slightly.
    assert sh.rise_mean == pytest.approx(np.mean(rises), rel=0.1)
    assert sh.rise_max == pytest.approx(max(rises), rel=0.1)
    # On grid points the rise is exact.
    exact = sharpness(s, radius=0.1)
    assert exact is not None and exact.rise_max == pytest.approx(0.5 * 4 * 0.01)


def test_uneven_spacing_and_one_dimensional_lines() -> None:
    x = np.array([-0.3, -0.1, 0.0, 0.2, 0.5])
    s = quadratic(x, None, a=3.0, b=0, c=0)
    sh = sharpness(s)
    assert sh is not None and sh.curvature_xx == pytest.approx(3.0)
    assert sh.curvature_yy is None and sh.principal is None
    assert "d²L/dx² = 3" in "\n".join(measure_lines(s))


def test_no_centre_no_figures() -> None:
    s = quadratic(np.linspace(0.1, 1, 5), np.linspace(-1, 1, 5), 1, 1, 0)
    assert sharpness(s) is None and measures(s) == {}
    # Centre at the edge of the grid: rise one way, no central difference.
    edge = quadratic(np.linspace(0, 1, 11), np.linspace(0, 1, 11), 2, 2, 0)
    sh = sharpness(edge)
    assert sh is not None and sh.curvature_xx is None and sh.rise_directions == 2


def test_unevaluated_points_are_skipped() -> None:
    s = quadratic(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5), 1, 1, 0)
    s.done[2, 3] = False
    sh = sharpness(s)
    assert sh is not None and sh.curvature_xx is None and sh.curvature_yy == pytest.approx(1.0)
    assert with_measures(s) is s  # incomplete: nothing attached


def test_eigenvalues_and_attributes() -> None:
    s = quadratic(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5), 2, 1, 0).with_attrs(
        directions_info={"eigenvalues": [2.0, 1.0]}
    )
    out = with_measures(s)
    assert out.attrs["sharpness"]["eigenvalues"] == [2.0, 1.0]
    assert out.attrs["sharpness"]["curvature_xx"] == pytest.approx(2.0)
    assert "Hessian eigenvalues: 2, 1" in measure_lines(out)


def test_a_non_finite_neighbour_blocks_the_rise_on_its_side() -> None:
    s = quadratic(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5), 1, 1, 0)
    s.loss[2, 1] = np.nan  # (x, y) = (-0.5, 0): evaluated, but NaN (e.g. BatchNorm var < 0)
    sh = sharpness(s, radius=0.25)
    assert sh is not None and sh.rise_directions == 3
    assert sh.rise_max == pytest.approx(0.0625)  # halfway to L(0.5) − L(0) = ½·0.25
    noted = measure_lines(s.with_attrs(directions_kind="models", bn="eval"))
    assert any("non-finite" in line for line in noted)
