"""Option helpers and the rules that tie options together, each written once: ``core.options_from``
(a verb's keywords onto its option dataclass), ``core.torch_dtype`` (the one table of dtypes
an option names) and ``engine``'s precision rules, checked against what the engine and the
surface options do with those options today."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields
from typing import Any, get_args

import pytest
import torch
from torch import nn

from helpers import assert_one_line
from lossland.core import DTYPES, DType, options_from, torch_dtype
from lossland.directions import random_directions
from lossland.engine import (
    Engine,
    EngineOptions,
    layout_channels_last,
    network_dtype,
    one_point_only,
)
from lossland.errors import LosslandError
from lossland.run import SurfaceOptions

# --- options_from --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Opts:
    size: int = 3
    name: str = "a"
    flag: bool | None = None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"size": None, "name": None, "flag": None}, Opts()),
        ({"size": 5, "name": None, "flag": None}, Opts(size=5)),
        ({"size": 0, "name": "", "flag": False}, Opts(size=0, name="", flag=False)),
        (
            {"size": 7, "name": "b", "flag": True, "model": object()},
            Opts(size=7, name="b", flag=True),
        ),
    ],
)
def test_options_from_takes_what_is_given(given: dict[str, Any], expected: Opts) -> None:
    """None keeps the base's value; falsy values are values; names not fields are not options."""
    assert options_from(Opts(), given) == expected
    assert options_from(Opts(size=9), {**given, "size": None}).size == 9


@pytest.mark.parametrize("missing", [f.name for f in fields(Opts)])
def test_options_from_refuses_a_field_the_verb_does_not_take(missing: str) -> None:
    given = {f.name: None for f in fields(Opts) if f.name != missing}
    with pytest.raises(TypeError, match=f"Opts field\\(s\\) {missing}"):
        options_from(Opts(), given)


def test_options_from_runs_the_dataclass_checks() -> None:
    given: dict[str, Any] = {f.name: None for f in fields(SurfaceOptions)}
    assert options_from(SurfaceOptions(), given) == SurfaceOptions()
    with pytest.raises(LosslandError, match="batch_size"):
        options_from(SurfaceOptions(), {**given, "batch_size": 0})


# --- dtypes --------------------------------------------------------------------------------------


def test_dtypes_are_the_names_of_dtype() -> None:
    assert tuple(DTYPES) == get_args(DType)
    assert all(DTYPES[name] == getattr(torch, name) for name in DTYPES)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("float32", torch.float32),
        ("float64", torch.float64),
        (torch.float64, torch.float64),
        (torch.bfloat16, torch.bfloat16),  # a torch dtype passes as it is: its user checks it
    ],
)
def test_torch_dtype(value: Any, expected: torch.dtype) -> None:
    assert torch_dtype(value) is expected


@pytest.mark.parametrize("value", ["float16", "Float32", "", "torch.float32", None, 32])
def test_an_unknown_dtype_is_one_line(value: Any) -> None:
    with pytest.raises(LosslandError) as caught:
        torch_dtype(value, name="dtype")
    assert_one_line(str(caught.value))
    assert str(caught.value) == f"unknown dtype {value!r}: choose one of float32, float64"


# --- the precision rules, as the engine and SurfaceOptions apply them today ----------------------


def _engine(model: nn.Module, data: Any, **options: Any) -> Engine:
    d = random_directions(model, seed=0, ndim=2)
    engine_options = EngineOptions(device=torch.device("cpu"), **options)
    return Engine(model, [d.x, d.y], data, options=engine_options)  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("precision", "dtype"),
    list(itertools.product(("fp32", "bf16"), (torch.float32, torch.float64))),
)
def test_network_dtype_is_the_engines(
    tiny_model: nn.Module, tiny_data: Any, precision: Any, dtype: torch.dtype
) -> None:
    engine = _engine(tiny_model, tiny_data, precision=precision, dtype=dtype)
    assert next(engine.net.parameters()).dtype == network_dtype(precision, dtype)
    assert engine.flat.dtype == dtype  # the grid arithmetic stays in dtype


@pytest.mark.parametrize(
    ("channels_last", "points_per_batch"), list(itertools.product((True, False), (1, 2, 5)))
)
def test_layout_channels_last_is_the_engines(
    tiny_model: nn.Module, tiny_data: Any, channels_last: bool, points_per_batch: int
) -> None:
    engine = _engine(
        tiny_model, tiny_data, channels_last=channels_last, points_per_batch=points_per_batch
    )
    laid_out = any(e.channels_last for e in engine.layout.entries)
    assert laid_out == layout_channels_last(channels_last, points_per_batch)


@pytest.mark.parametrize(
    ("bn", "sem_target"), list(itertools.product(("eval", "train", "recompute"), (None, 0.05)))
)
def test_one_point_only_names_todays_refusals(
    tiny_model: nn.Module, tiny_data: Any, bn: Any, sem_target: float | None
) -> None:
    reason = one_point_only(bn, sem_target)
    assert (reason is None) == (bn != "recompute" and sem_target is None)
    if bn == "recompute":  # the engine refuses K > 1 with the bn reason
        with pytest.raises(LosslandError) as caught:
            _engine(tiny_model, tiny_data, bn=bn, points_per_batch=2)
        assert str(caught.value).startswith(str(LosslandError(one_point_only(bn, None))))
    else:
        _engine(tiny_model, tiny_data, bn=bn, points_per_batch=2)
    if sem_target is not None:  # the options refuse it (first, whatever bn), with the fix
        with pytest.raises(LosslandError) as caught:
            SurfaceOptions(bn=bn, sem_target=sem_target, points_per_batch=2)
        assert str(caught.value) == f"{LosslandError(reason)}: set points_per_batch to 1"
