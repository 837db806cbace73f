"""Property tests: grid specs and surface files survive whatever hypothesis throws at them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from helpers import assert_one_line
from lossland.core import Axis, coordinates
from lossland.errors import LosslandError
from lossland.io import RESERVED_ATTRS, SETTINGS_ATTR, Surface

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)

# --- grid specs ----------------------------------------------------------------------------------


@given(start=finite, width=st.floats(1e-3, 1e6), num=st.integers(2, 2000))
def test_valid_specs_round_trip(start: float, width: float, num: int) -> None:
    stop = start + width
    assume(stop > start and math.isfinite(stop))
    axis = Axis.parse(f"{start!r}:{stop!r}:{num}", name="x")
    assert (axis.start, axis.stop, axis.num) == (start, stop, num)
    values = axis.values()
    assert len(values) == num and values[0] == start and values[-1] == stop
    assert np.all(np.diff(values) > 0)
    assert Axis.parse(axis) is axis
    np.testing.assert_array_equal(coordinates(f"{start!r}:{stop!r}:{num}", name="x"), values)


@given(value=finite)
def test_single_point_specs(value: float) -> None:
    axis = Axis.parse(f" {value!r} : {value!r} : 1 ", name="y")
    assert axis.values().tolist() == [value]


@given(text=st.text(max_size=40))
@settings(max_examples=300)
def test_any_text_parses_or_fails_with_one_line(text: str) -> None:
    try:
        axis = Axis.parse(text, name="x")
    except LosslandError as exc:
        assert_one_line(str(exc))
        assert "x" in str(exc)
        return
    assert axis.num >= 1 and axis.start <= axis.stop
    assert math.isfinite(axis.start) and math.isfinite(axis.stop)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1:2",
        "1:2:3:4",
        "a:b:c",
        "1:0:5",
        "0:1:0",
        "0:1:-3",
        "0:1:2.5",
        "nan:1:3",
        "-inf:1:3",
        "0:1e999:3",
        "1:1:5",
        "0:1:1",
        "0:1:3\n",
        "\x00:1:3",
    ],
)
def test_malformed_specs_are_one_line_errors(text: str) -> None:
    if text == "0:1:3\n":  # surrounding whitespace is allowed
        assert Axis.parse(text).num == 3
        return
    with pytest.raises(LosslandError) as info:
        Axis.parse(text, name="x")
    assert_one_line(str(info.value))


# --- surface files -------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
attr_names = st.text(min_size=1, max_size=12).filter(
    lambda k: (
        "\x00" not in k and k not in RESERVED_ATTRS and k.encode("utf-8", "ignore").decode() == k
    )
)
values = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def surfaces(draw: st.DrawFn) -> Surface:
    nx = draw(st.integers(1, 7))
    ny = draw(st.none() | st.integers(1, 5))
    x = np.sort(draw(hnp.arrays(np.float64, nx, elements=finite, unique=True)))
    y = (
        None
        if ny is None
        else np.sort(draw(hnp.arrays(np.float64, ny, elements=finite, unique=True)))
    )
    shape = (nx,) if y is None else (len(y), nx)
    split = draw(st.sampled_from(["train", "test", "custom", "my split"]))
    result = Surface.empty(x, y, split=split)
    result.loss[...] = draw(hnp.arrays(np.float64, shape, elements=values))
    result.acc[...] = draw(hnp.arrays(np.float64, shape, elements=values))
    result.loss_sem[...] = draw(hnp.arrays(np.float64, shape, elements=values))
    result.done[...] = draw(hnp.arrays(np.bool_, shape))
    attrs = draw(st.dictionaries(attr_names, json_values, max_size=6))
    trajectories = draw(
        st.dictionaries(
            st.text(min_size=1, max_size=8).filter(
                lambda k: "/" not in k and "\x00" not in k and k not in (".", "..")
            ),
            hnp.arrays(np.float64, st.tuples(st.integers(0, 5), st.just(2)), elements=values),
            max_size=2,
        )
    )
    return Surface(**{**result.__dict__, "attrs": attrs, "trajectories": trajectories})


def same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN and tuples as lists (JSON has no tuples)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(surface=surfaces())
def test_surface_files_round_trip(surface: Surface, tmp_path: Path) -> None:
    path = surface.save(tmp_path / "s.h5")
    back = Surface.load(path)
    assert back.split == surface.split and back.ndim == surface.ndim
    np.testing.assert_array_equal(back.x, surface.x)
    if surface.y is not None:
        np.testing.assert_array_equal(back.y, surface.y)
    for name in ("loss", "acc", "loss_sem", "done"):
        np.testing.assert_array_equal(getattr(back, name), getattr(surface, name))  # NaN == NaN
    assert back.attrs.keys() == surface.attrs.keys()
    for key, value in surface.attrs.items():
        assert same(back.attrs[key], value), (key, value, back.attrs[key])
    assert back.trajectories.keys() == surface.trajectories.keys()
    for name, points in surface.trajectories.items():
        np.testing.assert_array_equal(back.trajectories[name], points)
    # Saving what was loaded gives the same file contents again.
    again = Surface.load(back.save(tmp_path / "t.h5"))
    assert same(dict(again.attrs), dict(back.attrs))


def test_settings_survive_as_a_mapping(tmp_path: Path) -> None:
    surface = Surface.empty(np.arange(3.0), None, split="train").with_attrs(
        **{SETTINGS_ATTR: {"x": "0:2:3", "y": None, "samples": 10}}
    )
    assert Surface.load(surface.save(tmp_path / "s.h5")).settings == {
        "x": "0:2:3",
        "y": None,
        "samples": 10,
    }


@pytest.mark.parametrize("name", ["format", "split", "json_attrs", "format_version"])
def test_reserved_attribute_names_are_refused(tmp_path: Path, name: str) -> None:
    surface = Surface.empty(np.arange(3.0), None, split="train").with_attrs(**{name: "x"})
    with pytest.raises(LosslandError, match="reserved"):
        surface.save(tmp_path / "s.h5")
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.parametrize("split", ["", "a/b", "."])
def test_split_names_that_would_be_hdf5_paths_are_refused(tmp_path: Path, split: str) -> None:
    with pytest.raises(LosslandError, match="split name"):
        Surface.empty(np.arange(3.0), None, split=split).save(tmp_path / "s.h5")


def test_awkward_attribute_values_round_trip(tmp_path: Path) -> None:
    attrs = {
        "nul": "a\x00b",
        "surrogate": "\ud800x",
        "big": 2**80,
        "small": -(2**63) - 1,
        "edge": 2**63 - 1,
        "empty": "",
        "nan": float("nan"),
        "inf": -float("inf"),
        "none": None,
        "numpy": np.float32(1.5),
        "array": np.arange(3),
        "tuple": (1, "two"),
        "nested": {"a": [1, {"b": None}]},
        "unicode name ✓": "ok",
    }
    surface = Surface.empty(np.arange(2.0), np.arange(2.0), split="test").with_attrs(**attrs)
    back = Surface.load(surface.save(tmp_path / "s.h5")).attrs
    assert back["nul"] == "a\x00b" and back["surrogate"] == "\ud800x"
    assert back["big"] == 2**80 and back["small"] == -(2**63) - 1 and back["edge"] == 2**63 - 1
    assert back["empty"] == "" and math.isnan(back["nan"]) and back["inf"] == -math.inf
    assert back["none"] is None and back["numpy"] == 1.5 and back["array"] == [0, 1, 2]
    assert back["tuple"] == [1, "two"] and back["nested"] == {"a": [1, {"b": None}]}
    assert back["unicode name ✓"] == "ok"
