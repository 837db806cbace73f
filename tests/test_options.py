"""Option helpers and the rules that tie options together, each written once: ``core.options_from``
(a verb's keywords onto its option dataclass, and every field a keyword of each verb that takes
the dataclass), ``core.torch_dtype`` (the one table of dtypes an option names), ``engine``'s
precision rules as the engine, the surface options and the run apply them, and
``HessianOptions`` (the Hessian verbs' and ``lossland hessian``'s one set of defaults)."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest
import torch
from torch import nn

import lossland.directions
import lossland.run
from helpers import assert_one_line, run_cli
from lossland.cli._hessian import COMMAND as HESSIAN_COMMAND
from lossland.cli._surface import COMMAND as SURFACE_COMMAND
from lossland.core import DTYPES, DType, options_from, torch_dtype
from lossland.directions import (
    HessianOptions,
    hessian_directions,
    hessian_eigen,
    hessian_plane,
    hessian_report,
    hessian_spectrum,
    random_directions,
)
from lossland.engine import (
    Engine,
    EngineOptions,
    layout_channels_last,
    network_dtype,
    one_point_only,
)
from lossland.errors import LosslandError
from lossland.run import SurfaceOptions, surface

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
    # the grid arithmetic stays in dtype: the flat buffer, or a narrow network's float block
    grid = engine.flat if engine.scratch is None else engine.scratch
    assert grid.dtype == dtype


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
    if reason is not None:  # the options refuse an explicit K > 1 (sem_target first), with the fix
        with pytest.raises(LosslandError) as caught:
            SurfaceOptions(bn=bn, sem_target=sem_target, points_per_batch=2)
        assert str(caught.value) == f"{LosslandError(reason)}: set points_per_batch to 1"
    else:
        assert (
            SurfaceOptions(bn=bn, sem_target=sem_target, points_per_batch=2).points_per_batch == 2
        )
    assert SurfaceOptions(bn=bn, sem_target=sem_target, points_per_batch=1).points_per_batch == 1


# --- every field of an option dataclass is a keyword of each verb that takes it ------------------

# (verb, its options, the wider types a keyword accepts, fields the verb has no keyword for: it
# fixes them, or a keyword of its own bears that name)
VERBS: list[tuple[Callable[..., Any], type, dict[str, Any], tuple[str, ...]]] = [
    (surface, SurfaceOptions, {"device": torch.device}, ()),
    (hessian_report, HessianOptions, {"device": torch.device, "dtype": torch.dtype}, ()),
    (hessian_eigen, HessianOptions, {"device": torch.device, "dtype": torch.dtype}, ("probes",)),
    (
        hessian_directions,
        HessianOptions,
        {"device": torch.device, "dtype": torch.dtype},
        ("probes",),
    ),
    (
        hessian_plane,
        HessianOptions,
        {"device": torch.device, "dtype": torch.dtype},
        ("k", "probes"),  # always the top two; no trace
    ),
    (
        hessian_spectrum,
        HessianOptions,
        {"device": torch.device, "dtype": torch.dtype},
        ("probes", "which"),  # its probes are the density's; the groups' largest
    ),
]


def _verb_id(case: Any) -> str:
    return getattr(case, "__name__", "")


@pytest.mark.parametrize(("verb", "options", "wider", "not_taken"), VERBS, ids=_verb_id)
def test_every_field_is_a_keyword_of_the_verb(
    verb: Callable[..., Any], options: type, wider: dict[str, Any], not_taken: tuple[str, ...]
) -> None:
    """A field added to the dataclass that a verb does not take fails here (options_from would
    also refuse it at the verb's first call): each is keyword-only, default None ("choose for
    me": the dataclass default or ``options``' value), typed as the field (| None)."""
    parameters = inspect.signature(verb).parameters
    hints, fields_hints = get_type_hints(verb), get_type_hints(options)
    assert parameters["options"].default is None
    assert hints["options"] == options | None
    for f in fields(options):
        if f.name in not_taken:
            taken = parameters.get(f.name)
            assert taken is None or taken.default is not None, f.name  # its own keyword
            continue
        parameter = parameters[f.name]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, f.name
        assert parameter.default is None, f.name
        want = fields_hints[f.name] | None
        if f.name in wider:
            want = want | wider[f.name]
        assert hints[f.name] == want, f.name


@pytest.mark.parametrize("options", [SurfaceOptions, HessianOptions], ids=_verb_id)
def test_every_field_is_a_flag_of_its_command(options: type) -> None:
    """The command line is generated from the same dataclass: one flag per field (surface's
    --samples is the command's own: N or all)."""
    command = {SurfaceOptions: SURFACE_COMMAND, HessianOptions: HESSIAN_COMMAND}[options]
    owned = command.fields()
    for f in fields(options):
        part, field = owned[f.name]
        assert part is options or f.name == "samples", f.name
        assert field.default is not MISSING, f.name


def test_dtypes_are_defined_once() -> None:
    """core.DTYPES is the one table: no layer keeps a copy."""
    assert not hasattr(lossland.run, "DTYPES") and not hasattr(lossland.directions, "DTYPES")
    assert (
        get_type_hints(SurfaceOptions)["dtype"] == DType == get_type_hints(HessianOptions)["dtype"]
    )


# --- what surface() does with the options --------------------------------------------------------


def test_keywords_and_options_agree(tiny_model: nn.Module, tiny_data: Any) -> None:
    """A keyword overrides ``options``; None keeps its value: the same surface either way."""
    grid = {"x": "-1:1:3", "progress": False}
    by_options = surface(
        tiny_model, tiny_data, options=SurfaceOptions(seed=3, norm="layer"), **grid
    )
    by_keywords = surface(tiny_model, tiny_data, seed=3, norm="layer", **grid)
    mixed = surface(tiny_model, tiny_data, options=SurfaceOptions(seed=3), norm="layer", **grid)
    for s in (by_keywords, mixed):
        assert s.attrs["directions_sha256"] == by_options.attrs["directions_sha256"]
        assert s.loss.tobytes() == by_options.loss.tobytes()


def test_on_accept_gets_the_directions_the_run_uses(
    tiny_model: nn.Module, tiny_data: Any, tmp_path: Path
) -> None:
    seen: list[Any] = []

    def accept(directions: Any) -> dict[str, str]:
        seen.append(directions)
        return {"accepted": "yes"}

    s = surface(tiny_model, tiny_data, x="-1:1:3", y="-1:1:3", progress=False, on_accept=accept)
    assert len(seen) == 1 and s.attrs["accepted"] == "yes"
    assert seen[0].fingerprint() == s.attrs["directions_sha256"] and seen[0].ndim == 2
    seen.clear()
    stack = surface(
        tiny_model,
        tiny_data,
        x="-1:1:3",
        seeds=2,
        seed=5,
        out=tmp_path / "s.h5",
        progress=False,
        on_accept=accept,
    )
    assert len(seen) == 1 and seen[0].seed == 5  # the stack's first seed, once
    assert stack.stack is not None and stack.attrs["directions_sha256"] == seen[0].fingerprint()


@pytest.mark.parametrize(
    ("points_per_batch", "recorded"), [(1, "channels_last"), (2, "contiguous")]
)
def test_the_memory_format_recorded_is_the_one_used(
    tiny_model: nn.Module, tiny_data: Any, points_per_batch: int, recorded: str
) -> None:
    """K > 1 points per forward run contiguous (layout_channels_last): the file says so."""
    s = surface(
        tiny_model,
        tiny_data,
        x="-1:1:3",
        memory_format="channels_last",
        points_per_batch=points_per_batch,
        device="cpu",
        progress=False,
    )
    assert s.attrs["points_per_batch"] == points_per_batch
    assert s.attrs["memory_format"] == recorded
    assert (recorded == "channels_last") == layout_channels_last(True, points_per_batch)


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (
            ["--bn", "recompute", "--points-per-batch", "4"],
            "--bn recompute evaluates one point at a time",
        ),
        (
            ["--sem-target", "0.1", "--points-per-batch", "2"],
            "--sem-target stops each point on its own",
        ),
    ],
)
def test_one_point_only_options_refuse_k_above_1_in_one_line(
    flags: list[str], reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before any work (the checkpoint is absent), nothing written; the library says the same
    naming its arguments."""
    argv = ["surface", tmp_path / "absent.safetensors", "-o", tmp_path / "s.h5", *flags]
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and out == "" and list(tmp_path.iterdir()) == []
    assert_one_line(err)
    assert f"{reason}: set --points-per-batch to 1" in err


def test_recompute_without_k_still_runs_one_point_at_a_time(
    tiny_model: nn.Module, tiny_data: Any
) -> None:
    s = surface(tiny_model, tiny_data, x="-1:1:3", bn="recompute", progress=False)
    assert s.attrs["points_per_batch"] == 1


# --- HessianOptions ------------------------------------------------------------------------------


def test_hessian_defaults_live_in_hessian_options() -> None:
    o = HessianOptions()
    assert (o.k, o.which, o.probes, o.iterations, o.tol) == (5, "largest", 64, 100, 1e-6)
    assert (o.seed, o.batch_size, o.device, o.dtype) == (0, 256, "auto", "float32")
    assert (o.allow_large, o.progress) == (False, True)
    # the command line's defaults are these (no copy to drift)
    for f in fields(HessianOptions):
        _, field = HESSIAN_COMMAND.fields()[f.name]
        assert field.default == getattr(o, f.name)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"k": 0}, "k must be at least 1, got 0"),
        ({"k": 2.5}, "k must be a whole number (at least 1), got 2.5"),
        ({"probes": -1}, "probes must be at least 0, got -1"),
        ({"iterations": 0}, "iterations must be at least 1, got 0"),
        ({"tol": 0.0}, "tol must be positive, got 0.0"),
        ({"tol": float("nan")}, "tol must be a finite number (positive), got nan"),
        ({"seed": -1}, "seed must be at least 0 and at most 9223372036854775807, got -1"),
        ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
        ({"which": "smallest"}, "unknown which 'smallest': choose one of largest, magnitude"),
        ({"dtype": "float16"}, "unknown dtype 'float16': choose one of float32, float64"),
        ({"progress": 1}, "progress is true or false, got 1"),
    ],
)
def test_hessian_options_refuse_in_one_line(change: dict[str, Any], message: str) -> None:
    with pytest.raises(LosslandError) as caught:
        HessianOptions(**change)
    assert_one_line(str(caught.value))
    assert str(caught.value) == message


def test_each_verb_keeps_its_own_k() -> None:
    """The verbs that make directions take the top two, a spectrum three per group, the
    report five; an explicit k or options' k wins everywhere."""
    from lossland.directions._hessian import TOP_TWO, hessian_options
    from lossland.directions._spectrum import PER_GROUP

    assert (TOP_TWO.k, PER_GROUP.k, HessianOptions().k) == (2, 3, 5)
    for verb in (hessian_eigen, hessian_directions, hessian_report, hessian_spectrum):
        assert inspect.signature(verb).parameters["k"].default is None
    given = {f.name: None for f in fields(HessianOptions)}
    assert hessian_options(None, given, default=TOP_TWO).k == 2
    assert hessian_options(HessianOptions(k=4), given, default=TOP_TWO).k == 4
    assert hessian_options(None, {**given, "k": 7}, default=TOP_TWO).k == 7
    torch64 = hessian_options(None, {**given, "dtype": torch.float64})
    assert torch64.dtype == "float64"  # a torch dtype is named


def test_hessian_verbs_take_options_or_keywords_alike() -> None:
    """The same eigenvalues from keywords and from options (one operator builds them)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    data = (torch.randn(12, 3), torch.randint(0, 2, (12,)))
    common: dict[str, Any] = {"progress": False, "device": "cpu"}
    _, by_keywords = hessian_eigen(model, data, k=2, dtype=torch.float64, seed=1, **common)
    options = HessianOptions(k=2, dtype="float64", seed=1, progress=False, device="cpu")
    _, by_options = hessian_eigen(model, data, options=options)
    assert by_keywords.values.tobytes() == by_options.values.tobytes()
