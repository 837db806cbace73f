"""Tests for grid axes and the three interpolation schemes, checked against by-hand formulas."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor

from helpers import assert_one_line
from lossland.core import (
    Axis,
    PlaneVectors,
    barycentric_point_,
    coordinates,
    li_point_,
    linear2x_point_,
)
from lossland.errors import LosslandError

Tensors = dict[str, Tensor]

# --- grid axes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "start", "stop", "num"),
    [
        ("-1:1:51", -1.0, 1.0, 51),
        ("0:0:1", 0.0, 0.0, 1),
        ("-2:-1:3", -2.0, -1.0, 3),
        ("0.5:1.5:3", 0.5, 1.5, 3),
        (" -0.25:2e-1:2 ", -0.25, 0.2, 2),
    ],
)
def test_axis_parse_valid(spec: str, start: float, stop: float, num: int) -> None:
    axis = Axis.parse(spec, name="x")
    assert axis == Axis(start, stop, num)
    values = axis.values()
    assert values.dtype == np.float64
    np.testing.assert_array_equal(values, np.linspace(start, stop, num))
    assert Axis.parse(str(axis)) == axis  # str() writes a spec that parses back
    assert Axis.parse(axis) is axis


def test_axis_values_hit_the_ends_and_zero() -> None:
    values = Axis.parse("-1:1:51").values()
    assert (values[0], values[25], values[-1]) == (-1.0, 0.0, 1.0)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("1:0:5", "min > max: write 0:1:5"),
        ("a:b:c", "malformed"),
        ("0:1:0", "at least 1 point"),
        ("0:1", "malformed"),
        ("0:1:2:3", "malformed"),
        ("1:1:5", "repeats one value 5 times"),
        ("0:1:1", "has one point: write it as 0:0:1"),
        ("nan:1:3", "finite"),
        ("0:inf:3", "finite"),
        ("0:1:2.5", "malformed"),
        ("", "malformed"),
    ],
)
def test_axis_parse_invalid(spec: str, why: str) -> None:
    with pytest.raises(LosslandError) as info:
        Axis.parse(spec, name="y")
    message = str(info.value)
    assert repr(spec) in message
    assert why in message
    assert "y" in message.split(repr(spec))[0]  # names the axis
    assert_one_line(message)


def test_coordinates_from_specs_and_sequences() -> None:
    np.testing.assert_array_equal(coordinates("-1:1:5", name="x"), np.linspace(-1, 1, 5))
    np.testing.assert_array_equal(coordinates(Axis(0, 1, 3), name="x"), [0.0, 0.5, 1.0])
    values = coordinates([-0.3, 0, 0.1, 2], name="x")
    assert values.dtype == np.float64
    np.testing.assert_array_equal(values, [-0.3, 0.0, 0.1, 2.0])
    np.testing.assert_array_equal(coordinates(np.array([0.5]), name="y"), [0.5])
    np.testing.assert_array_equal(coordinates((1, 2), name="y"), [1.0, 2.0])


@pytest.mark.parametrize(
    "values",
    [[], [0.0, 0.0], [1.0, 0.0], [0.0, 2.0, 1.0], [0.0, float("nan")], [0.0, float("inf")]],
)
def test_coordinates_must_be_finite_and_strictly_increasing(values: list[float]) -> None:
    with pytest.raises(LosslandError, match="y coordinates must be finite and strictly") as info:
        coordinates(values, name="y")
    assert_one_line(str(info.value))


def test_coordinates_reject_bad_specs() -> None:
    with pytest.raises(LosslandError, match="'0:1'"):
        coordinates("0:1", name="x")


# --- the schemes --------------------------------------------------------------------------------

# A conv weight, a linear weight, a bias, and a BatchNorm γ whose directions are zero (inactive).
SHAPES: dict[str, tuple[int, ...]] = {
    "conv.weight": (4, 3, 3, 3),
    "fc.weight": (5, 7),
    "fc.bias": (5,),
    "bn.weight": (4,),
}
INACTIVE = {"bn.weight"}


def _random(seed: int) -> tuple[Tensors, Tensors, Tensors]:
    g = torch.Generator().manual_seed(seed)

    def draw(shape: tuple[int, ...]) -> Tensor:
        return torch.randn(shape, generator=g, dtype=torch.float64)

    def direction(name: str, shape: tuple[int, ...]) -> Tensor:
        return torch.zeros(shape, dtype=torch.float64) if name in INACTIVE else draw(shape)

    base = {k: draw(s) for k, s in SHAPES.items()}
    dx = {k: direction(k, s) for k, s in SHAPES.items()}
    dy = {k: direction(k, s) for k, s in SHAPES.items()}
    return base, dx, dy


def _flat(tensors: Tensors) -> Tensor:
    return torch.cat([tensors[k].reshape(-1) for k in SHAPES])


def _segments(flat: Tensor) -> tuple[Tensor, ...]:
    """(filters, elements) views of a flat vector, laid out in SHAPES order."""
    views, offset = [], 0
    for shape in SHAPES.values():
        numel = int(np.prod(shape))
        rows = shape[0] if len(shape) > 1 else 1
        views.append(flat[offset : offset + numel].view(rows, -1))
        offset += numel
    return tuple(views)


def _unflat(flat: Tensor) -> Tensors:
    return {k: seg.reshape(SHAPES[k]) for k, seg in zip(SHAPES, _segments(flat), strict=True)}


def _plane(base: Tensors, dx: Tensors, dy: Tensors | None) -> PlaneVectors:
    flat_base, flat_dx = _flat(base), _flat(dx)
    flat_dy = _flat(dy) if dy is not None else None
    active = tuple(bool(dx[k].any()) or (dy is not None and bool(dy[k].any())) for k in SHAPES)
    return PlaneVectors(
        base=flat_base,
        dx=flat_dx,
        dy=flat_dy,
        base_segments=_segments(flat_base),
        dx_segments=_segments(flat_dx),
        dy_segments=_segments(flat_dy) if flat_dy is not None else None,
        active=active,
    )


def _rows(t: Tensor) -> Tensor:
    view = t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(1, -1)
    return torch.linalg.vector_norm(view, dim=1, keepdim=True)


def _filternorm(t: Tensor, ref: Tensor) -> Tensor:
    """Each filter (row of the (filters, elements) view) of ``t`` rescaled to ``ref``'s norm."""
    view = t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(1, -1)
    return (view * (_rows(ref) / _rows(t))).reshape(t.shape)


def _expected_li(base: Tensors, dx: Tensors, dy: Tensors, a: float, b: float) -> Tensors:
    return {k: base[k] + a * dx[k] + b * dy[k] for k in SHAPES}


def _expected_linear2x(base: Tensors, dx: Tensors, dy: Tensors, a: float, b: float) -> Tensors:
    out = {}
    for k in SHAPES:
        if k in INACTIVE:
            out[k] = base[k]
            continue
        psi = a * dx[k] + (1 - a) * base[k]
        scale = torch.linalg.vector_norm(base[k]) / torch.linalg.vector_norm(psi)
        out[k] = b * dy[k] + (1 - b) * psi * scale
    return out


def _expected_barycentric(base: Tensors, dx: Tensors, dy: Tensors, a: float, b: float) -> Tensors:
    out = {}
    for k in SHAPES:
        if k in INACTIVE:
            out[k] = base[k]
            continue
        phi = a * (dx[k] - base[k]) + base[k]
        psi = b * (dy[k] - base[k]) + base[k]
        out[k] = a * _filternorm(phi, base[k]) + (1 - b) * _filternorm(psi, base[k])
    return out


def _run(scheme: str, plane: PlaneVectors, a: float, b: float) -> tuple[Tensor, Tensor]:
    """(returned tensor, out buffer) of one scheme call; out starts as garbage."""
    out = torch.full_like(plane.base, float("nan"))
    if scheme == "li":
        dy = plane.dy_segments
        li_point_(_segments(out), plane.base_segments, plane.dx_segments, dy, a, b)
        result = out
    elif scheme == "linear2x":
        result = linear2x_point_(out, _segments(out), plane, a, b)
    else:
        scratch = torch.full_like(plane.base, float("nan"))
        result = barycentric_point_(out, _segments(out), scratch, _segments(scratch), plane, a, b)
    return result, out


EXPECTED: dict[str, Callable[[Tensors, Tensors, Tensors, float, float], Tensors]] = {
    "li": _expected_li,
    "linear2x": _expected_linear2x,
    "barycentric": _expected_barycentric,
}
POINTS = [(0.3, -0.7), (-1.0, 1.0), (0.5, 0.25), (1.0, 0.0), (-0.2, 0.9)]


@pytest.mark.parametrize("scheme", list(EXPECTED))
@pytest.mark.parametrize(("alpha", "beta"), POINTS)
def test_scheme_matches_the_formula_per_tensor(scheme: str, alpha: float, beta: float) -> None:
    base, dx, dy = _random(seed=1)
    plane = _plane(base, dx, dy)
    result, out = _run(scheme, plane, alpha, beta)
    assert result is out
    got = _unflat(out)
    expected = EXPECTED[scheme](base, dx, dy, alpha, beta)
    for k in SHAPES:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-12, atol=1e-12, msg=k)
    # The inputs are never modified.
    torch.testing.assert_close(plane.base, _flat(base), rtol=0, atol=0)
    torch.testing.assert_close(plane.dx, _flat(dx), rtol=0, atol=0)


@pytest.mark.parametrize("scheme", list(EXPECTED))
def test_inactive_tensors_stay_at_the_base(scheme: str) -> None:
    base, dx, dy = _random(seed=2)
    _, out = _run(scheme, _plane(base, dx, dy), 0.8, -0.6)
    got = _unflat(out)
    for k in INACTIVE:
        assert torch.equal(got[k], base[k])
    assert not torch.allclose(got["fc.weight"], base["fc.weight"])  # active ones move


@pytest.mark.parametrize("scheme", list(EXPECTED))
def test_origin_of_every_scheme_is_the_base(scheme: str) -> None:
    base, dx, dy = _random(seed=3)
    _, out = _run(scheme, _plane(base, dx, dy), 0.0, 0.0)
    torch.testing.assert_close(out, _flat(base), rtol=1e-12, atol=1e-12)


def test_li_on_a_line_ignores_beta() -> None:
    base, dx, _ = _random(seed=4)
    plane = _plane(base, dx, None)
    _, out = _run("li", plane, 0.4, 0.9)
    torch.testing.assert_close(out, _flat(base) + 0.4 * _flat(dx), rtol=1e-12, atol=1e-12)


def test_li_in_float32() -> None:
    base, dx, dy = _random(seed=5)
    plane = _plane(*({k: v.float() for k, v in t.items()} for t in (base, dx, dy)))
    out, _ = _run("li", plane, 0.5, -0.5)
    assert out.dtype == torch.float32
    expected = _flat(base) + 0.5 * _flat(dx) - 0.5 * _flat(dy)
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)


def test_linear2x_zero_norm_mixture_stays_finite() -> None:
    """α = 0.5 and δ = −θ* make ψ = 0 for a tensor: no NaN, only the β·η part is left."""
    base, dx, dy = _random(seed=6)
    dx["fc.weight"] = -base["fc.weight"]
    _, out = _run("linear2x", _plane(base, dx, dy), 0.5, 0.3)
    got = _unflat(out)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(got["fc.weight"], 0.3 * dy["fc.weight"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scheme", ["linear2x", "barycentric"])
def test_two_direction_schemes_refuse_a_line(scheme: str) -> None:
    base, dx, _ = _random(seed=7)
    with pytest.raises(LosslandError, match=f"scheme {scheme} needs two directions") as info:
        _run(scheme, _plane(base, dx, None), 0.1, 0.0)
    assert_one_line(str(info.value))
