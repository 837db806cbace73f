"""The table of direction kinds (``core.KINDS``) and the code that reads each row: the names of
``Kind``, the default grid ranges ``directions.grid_specs`` lays out, the titles and axis labels
``show`` draws, the refusals of ``directions.check_usable``, which directions are redrawn, saved
or read (``from_recipe``, the command line), the schemes they allow, the barrier, and each
row's producer (``--directions NAME`` makes its plane; random directions are drawn by the run
alone). Every test is parametrized over the rows, so a new kind is covered by adding its row."""

from __future__ import annotations

import inspect
import itertools
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, get_args, get_type_hints

import numpy as np
import pytest
import torch
from torch import nn

from helpers import assert_one_line, run_cli
from lossland.analysis import measures
from lossland.cli._surface import _directions_file, choose_plane, chosen_kind
from lossland.core import KINDS, DirectionKind, Kind, import_object, kind, recorded_kind
from lossland.directions import (
    Directions,
    PlaneRequest,
    check_usable,
    from_recipe,
    grid_specs,
    make_plane,
    orthogonalized,
)
from lossland.directions._directions import METADATA_SCHEMA
from lossland.errors import LosslandError
from lossland.io import Surface
from lossland.run import SurfaceOptions
from lossland.show import axis_labels
from lossland.show._scales import default_title, loss_name

ROWS = list(KINDS.values())


def by_name(row: DirectionKind) -> str:
    return row.name


# --- names ----------------------------------------------------------------------------------------


def test_one_row_per_name_of_kind_in_its_order() -> None:
    assert tuple(KINDS) == get_args(Kind)
    assert all(name == row.name for name, row in KINDS.items())
    # Directions and their files name the kinds of the table, and only those
    assert get_type_hints(Directions)["kind"] == Kind
    accepts, _ = METADATA_SCHEMA["kind"]
    assert all(accepts(name) for name in KINDS) and not accepts("no-such-kind")


@pytest.mark.parametrize("row", ROWS, ids=by_name)
def test_kind_finds_its_row(row: DirectionKind) -> None:
    assert kind(row.name) is row and recorded_kind(row.name) is row


@pytest.mark.parametrize("name", ["no-such-kind", "", "Random", "random ", "pca:2"])
def test_an_unknown_kind_is_one_line_naming_the_known_ones(name: str) -> None:
    with pytest.raises(LosslandError) as caught:
        kind(name)
    message = str(caught.value)
    assert_one_line(message)
    assert repr(name) in message and all(k in message for k in KINDS)


@pytest.mark.parametrize("value", [None, 3, 1.5, ["random"], {"kind": "pca"}, b"pca", "PCA", ""])
def test_a_kind_recorded_in_a_file_may_be_anything(value: Any) -> None:
    assert recorded_kind(value) is None


# --- default ranges: grid_specs lays out each row's rule -------------------------------------

SPECS = [None, "auto", "AUTO", "auto:7", " auto:5", "auto:2", "auto:x", "auto:4097"]
POINTS = {
    "none": np.zeros((0, 2)),
    "one at the centre": np.zeros((1, 2)),
    "a path": np.array([[0.3, -0.2], [1.5, 0.7], [2.0, 0.1]]),
    "negative": np.array([[-3.0, -1.0], [-2.0, -4.0]]),
    "with holes": np.array([[np.nan, 1.0], [2.0, np.inf], [0.5, 0.5]]),
    "tiny": np.array([[1e-12, -1e-12]]),
}
INFOS: dict[str, dict[str, Any]] = {
    "none": {},
    "eigenvalues": {"eigenvalues": [4.0, 1.0]},
    "small": {"eigenvalues": [1e-30]},
    "zero": {"eigenvalues": [0.0, 0.0]},
    "negative": {"eigenvalues": [-2.0, 1.0]},
    "nan": {"eigenvalues": [math.nan]},
    "inf": {"eigenvalues": [math.inf]},
    "empty": {"eigenvalues": []},
}


def _outcome(rule: Any, *args: Any) -> Any:
    try:
        return rule(*args)
    except (LosslandError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


def _laid_out(row: DirectionKind, info: Any, x: Any, y: Any, points: Any, two_d: bool) -> Any:
    """What the row's rule gives the axes asked as ``x``, ``y``: x, and y on a plane."""
    xs = row.default_range(info, x, points, 0)
    return xs, row.default_range(info, y, points, 1) if two_d else None


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("row", ROWS, ids=by_name)
def test_grid_specs_lay_out_the_rows_range(row: DirectionKind, spec: str | None) -> None:
    """An axis asked for as None or auto[:NUM] gets the row's range; a plane where y is asked
    for or the row draws one by default (and the directions hold two); given ranges stay."""
    w = {"w": torch.ones(2)}
    for (info_name, info), (points_name, points) in itertools.product(
        INFOS.items(), POINTS.items()
    ):
        paths = {"run": points} if len(points) else None
        for y in (spec, None):
            plane = Directions(x=w, y=w, kind=row.name, info=info)
            two_d = y is not None or row.y_by_default
            want = _outcome(_laid_out, row, info, spec, y, points, two_d)
            assert _outcome(grid_specs, plane, spec, y, paths) == want, (info_name, points_name)
        line = Directions(x=w, kind=row.name, info=info)
        want = _outcome(_laid_out, row, info, spec, None, points, False)
        assert _outcome(grid_specs, line, spec, None, paths) == want, (info_name, points_name)
        assert grid_specs(plane, "0:1:3", "-2:2:5", paths) == ("0:1:3", "-2:2:5")


@pytest.mark.parametrize(
    ("name", "info", "spec", "expected"),
    [
        ("random", {}, None, "-1:1:51"),
        ("random", {}, "auto:7", "-1:1:7"),
        ("models", {}, None, "0:1:21"),
        ("models", {}, "auto:5", "0:1:5"),
        ("hessian", {"eigenvalues": [2.0, 1.0]}, "auto:5", "-1.0:1.0:5"),  # ±√(2·1/λ₁) = ±1
        ("hessian", {"eigenvalues": [8.0]}, "auto:3", "-0.5:0.5:3"),
        ("hessian", {"eigenvalues": [0.0]}, "auto:5", "-1:1:5"),  # no curvature: the unit
    ],
)
def test_default_ranges_read_as_written(
    name: str, info: dict[str, Any], spec: str | None, expected: str
) -> None:
    assert kind(name).default_range(info, spec, np.zeros((0, 2)), 0) == expected


def test_pca_ranges_hold_the_paths_and_the_centre() -> None:
    points = np.array([[0.3, -0.2], [1.5, 0.7], [2.0, 0.1]])
    for axis in (0, 1):
        low, high, num = kind("pca").default_range({}, "auto:9", points, axis).split(":")
        assert float(low) <= min(0.0, points[:, axis].min())
        assert float(high) >= max(0.0, points[:, axis].max()) and int(num) == 9


# --- titles and axis labels: the strings show draws today ------------------------------------

NORMS = [None, "filter", "layer", "none", "weird", 3, ["filter"]]


def _surface(ndim: int, **attrs: Any) -> Surface:
    y = None if ndim == 1 else np.linspace(-1, 1, 3)
    surface = Surface.empty(np.linspace(-1, 1, 5), y, split="test", attrs=attrs)
    surface.loss[...] = 1.0
    surface.done[...] = True
    return surface


@pytest.mark.parametrize("norm", NORMS, ids=str)
@pytest.mark.parametrize("ndim", [1, 2])
@pytest.mark.parametrize("row", ROWS, ids=by_name)
def test_title_is_the_one_show_draws(row: DirectionKind, ndim: int, norm: Any) -> None:
    attrs = {"directions_kind": row.name} | ({} if norm is None else {"norm": norm})
    surface = _surface(ndim, **attrs)
    heading = row.heading(ndim=ndim, norm=surface.attrs.get("norm"))
    assert default_title(surface) == f"{loss_name(surface)} · {heading}"


@pytest.mark.parametrize("ndim", [1, 2])
@pytest.mark.parametrize("row", ROWS, ids=by_name)
def test_axis_labels_are_the_ones_show_draws(row: DirectionKind, ndim: int) -> None:
    assert axis_labels(_surface(ndim, directions_kind=row.name)) == row.axis_labels
    # a file's own labels (PCA planes record theirs) still win over the row's
    own = _surface(ndim, directions_kind=row.name, axis_labels=["PC1 (80 %)", "PC2 (5 %)"])
    assert axis_labels(own) == ("PC1 (80 %)", "PC2 (5 %)")


@pytest.mark.parametrize("value", [None, "no-such-kind", 3, ["random"]], ids=str)
@pytest.mark.parametrize("ndim", [1, 2])
def test_a_kind_no_row_knows_gets_the_plain_title_and_labels(value: Any, ndim: int) -> None:
    surface = _surface(ndim, **({} if value is None else {"directions_kind": value}))
    assert recorded_kind(surface.attrs.get("directions_kind")) is None
    assert default_title(surface) == loss_name(surface)
    assert axis_labels(surface) == KINDS["random"].axis_labels


@pytest.mark.parametrize(
    ("name", "ndim", "norm", "text"),
    [
        ("random", 2, "filter", "random directions (filter norm)"),
        ("random", 1, "none", "random direction (not normalized)"),
        ("random", 1, None, "random direction"),
        ("pca", 1, "filter", "PCA of the training trajectory"),
        ("hessian", 1, None, "top Hessian eigenvector"),
        ("hessian", 2, None, "Hessian eigenvectors"),
        ("models", 2, "layer", "between checkpoints"),
    ],
)
def test_headings_read_as_written(name: str, ndim: int, norm: str | None, text: str) -> None:
    assert kind(name).heading(ndim=ndim, norm=norm) == text


# --- refusals: why directions are zero or parallel, per kind ----------------------------------


def _tensors(*values: float) -> dict[str, torch.Tensor]:
    return {"w": torch.tensor([list(values)])}


@pytest.mark.parametrize(
    ("norm", "ignore"), list(itertools.product(("filter", "layer", "none"), ("biasbn", "none")))
)
@pytest.mark.parametrize("row", ROWS, ids=by_name)
def test_zero_directions_name_the_rows_fix(row: DirectionKind, norm: Any, ignore: Any) -> None:
    zero = Directions(x=_tensors(0.0, 0.0), kind=row.name, norm=norm, ignore=ignore)
    with pytest.raises(LosslandError) as caught:
        check_usable(zero)
    why = str(LosslandError(row.why_zero(norm=norm, ignore=ignore)))
    assert str(caught.value) == f"direction x is zero in every tensor: {why}"


@pytest.mark.parametrize("row", ROWS, ids=by_name)
def test_parallel_directions_name_the_rows_fix(row: DirectionKind) -> None:
    parallel = Directions(x=_tensors(1.0, 2.0), y=_tensors(2.0, 4.0), kind=row.name)
    with pytest.raises(LosslandError, match="are parallel") as caught:
        check_usable(parallel)
    assert str(caught.value).endswith(f"so the plane is a line: {row.parallel_fix}")


# --- redrawn, saved or read; normalized again; schemes; between models -----------------------


@pytest.mark.parametrize("row", ROWS, ids=by_name)
def test_only_recipe_kinds_are_redrawn_from_the_file(row: DirectionKind) -> None:
    surface = _surface(2, directions_kind=row.name)
    with pytest.raises(LosslandError) as caught:  # the recipe is absent: refused either way
        from_recipe(surface, nn.Linear(2, 2))
    assert ("which no recipe redraws" in str(caught.value)) == (row.saved != "recipe")


# The flags that ask for a kind other than by --directions NAME (and random: no flag at all).
PLANE_FLAGS: dict[str, dict[str, Any]] = {
    "random": {},
    "pca": {"trajectory": [Path("no-such-run")]},
    "models": {"to": [Path("no-such.safetensors")]},
}


def _args(name: str, **changes: Any) -> SimpleNamespace:
    """The flags of ``lossland surface`` that choose a plane, asking for kind ``name``."""
    flags = {"directions": None, "to": [], "trajectory": [], "pca_runs": "all", "seeds": 1}
    flags |= {"save_directions": None, "x": None, "y": "auto"}
    return SimpleNamespace(**(flags | PLANE_FLAGS.get(name, {"directions": name}) | changes))


@pytest.mark.parametrize("row", ROWS, ids=by_name)
def test_where_new_directions_are_saved(row: DirectionKind, tmp_path: Path) -> None:
    """A recipe's only when asked (and never for a seed stack, which records one recipe per
    seed), "beside" ones beside the surface by default, none for directions read from the
    files given."""
    out, asked = tmp_path / "s.h5", tmp_path / "d.safetensors"
    beside = tmp_path / "s.h5.directions.safetensors"
    default = _directions_file(_args(row.name), out)
    assert default == {"recipe": None, "beside": beside, "inputs": None}[row.saved]
    if row.saved == "inputs":
        with pytest.raises(LosslandError, match="drop --save-directions"):
            _directions_file(_args(row.name, save_directions=asked), out)
    else:
        assert _directions_file(_args(row.name, save_directions=asked), out) == asked
    if row.saved == "recipe":
        with pytest.raises(LosslandError) as caught:
            _directions_file(_args(row.name, save_directions=asked, seeds=2), out)
        assert str(caught.value) == (
            "a seed stack stores its directions as recipes; drop --save-directions or --seeds"
        )
        assert _directions_file(_args(row.name, seeds=2), out) is None


def test_a_seed_stack_with_save_directions_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused in one line before the checkpoint (absent here) is read; nothing is written."""
    argv = ["surface", tmp_path / "absent.safetensors", "-o", tmp_path / "s.h5", "--seeds", "2"]
    code, out, err = run_cli([*argv, "--save-directions", tmp_path / "d.safetensors"], capsys)
    assert code == 2 and out == "" and list(tmp_path.iterdir()) == []
    assert_one_line(err)
    assert "a seed stack stores its directions as recipes; drop --save-directions or --seeds" in err


# --- which kind the flags ask for, and who makes its plane ------------------------------------

MADE = [row for row in ROWS if row.producer is not None]


@pytest.mark.parametrize("row", ROWS, ids=by_name)
def test_the_flags_ask_for_each_kind(row: DirectionKind) -> None:
    assert chosen_kind(_args(row.name)) == row.name
    if row.producer is not None:  # --directions NAME selects every kind with a producer
        assert chosen_kind(_args("random", directions=row.name)) == row.name
    else:  # a name without one is a file's (the run draws these directions itself)
        assert chosen_kind(_args("random", directions=row.name)) is None


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"directions": "d.safetensors"}, None),
        ({"directions": "pca", "trajectory": [Path("run")]}, "pca"),
        ({"directions": "models", "to": [Path("b.safetensors")]}, "models"),
        ({"trajectory": [Path("run")], "to": [Path("b")]}, "--trajectory and --to both set"),
        ({"directions": "hessian", "to": [Path("b")]}, "--to and --directions hessian both set"),
        ({"directions": "d.safetensors", "to": [Path("b")]}, "--to and --directions both set"),
        ({"directions": "pca", "to": [Path("b")]}, "--to and --directions pca both set"),
        (
            {"directions": "hessian", "trajectory": [Path("run")]},
            "--trajectory and --directions hessian both set",
        ),
    ],
)
def test_one_kind_of_plane_at_a_time(flags: dict[str, Any], expected: str | None) -> None:
    args = _args("random", **flags)
    if expected is None or expected in KINDS:
        assert chosen_kind(args) == expected
        return
    with pytest.raises(LosslandError) as caught:
        chosen_kind(args)
    assert str(caught.value) == f"{expected}: choose one kind of plane"


@pytest.mark.parametrize("row", MADE, ids=by_name)
def test_every_producer_is_a_function_of_a_plane_request(row: DirectionKind) -> None:
    """A row names its producer by import path (core imports none): it resolves, and takes one
    PlaneRequest (what mypy cannot check across the table)."""
    assert row.producer is not None and row.producer.startswith("lossland.directions._")
    producer = import_object(row.producer, what="producer")
    (parameter,) = inspect.signature(producer).parameters.values()
    assert get_type_hints(producer)[parameter.name] is PlaneRequest
    assert row.summary and (row.notes is None or callable(row.notes))


def test_random_directions_are_drawn_by_the_run_alone() -> None:
    """The command line makes no random plane (the run draws it: one code path for one seed
    and for seed stacks); directions built by hand name no producer."""
    assert KINDS["random"].producer is None
    assert (
        choose_plane(_args("random"), SurfaceOptions(), nn.Linear(2, 2), None, None, None) is None
    )  # type: ignore[arg-type]
    with pytest.raises(LosslandError, match="drawn by the surface run itself"):
        make_plane("random", PlaneRequest(model=nn.Linear(2, 2), state={}))


@pytest.mark.parametrize("row", ROWS, ids=by_name)
def test_only_normalized_kinds_are_normalized_again(row: DirectionKind) -> None:
    torch.manual_seed(0)
    reference = {"w": torch.randn(4, 3)}
    x, y = {"w": torch.randn(4, 3)}, {"w": torch.randn(4, 3)}
    drawn = Directions(x=x, y=y, kind=row.name, norm="filter", ignore="biasbn")
    coef = float((x["w"] * y["w"]).sum() / (x["w"] * x["w"]).sum())
    plain = y["w"].double() - coef * x["w"].double()
    again = orthogonalized(drawn, reference).y
    assert again is not None
    assert (not torch.allclose(again["w"].double(), plain, atol=1e-6)) == row.normalized


@pytest.mark.parametrize("scheme", ["li", "linear2x", "barycentric"])
@pytest.mark.parametrize("row", ROWS, ids=by_name)
def test_schemes_a_kind_allows(row: DirectionKind, scheme: Any) -> None:
    options = SurfaceOptions(scheme=scheme)
    try:
        choose_plane(_args(row.name), options, nn.Linear(2, 2), None, None, None)  # type: ignore[arg-type]
        refused = False
    except (LosslandError, AttributeError) as exc:  # no data or runs here: refused first?
        refused = "planes use scheme" in str(exc)
    assert refused == (scheme not in row.schemes)


@pytest.mark.parametrize("row", ROWS, ids=by_name)
def test_between_models_rows_measure_a_barrier(row: DirectionKind) -> None:
    surface = Surface.empty(
        np.linspace(0, 1, 5), None, split="test", attrs={"directions_kind": row.name}
    )
    surface.store(
        ...,
        {
            "loss": np.array([1.0, 2.0, 3.0, 2.0, 1.5]),
            "acc": np.full(5, 50.0),
            "loss_sem": np.zeros(5),
        },
    )
    assert ("barrier" in measures(surface)) == row.between_models


# --- the models producer moves what the run moves: tied weights once ----------------------------

TIED_GPT2 = """
import torch, transformers

def make_model():
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=23,
                                     n_positions=8, attn_implementation="eager")
    return transformers.GPT2LMHeadModel(config)  # lm_head.weight is transformer.wte.weight

def make_data():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 23, (6, 8), generator=g)
    return [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}]
"""


def test_interpolating_tied_gpt2_checkpoints_moves_the_tied_weight_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both checkpoints hold lm_head.weight and transformer.wte.weight (one tensor in the
    model): the line between them moves it once, and reaches each checkpoint's own loss."""
    pytest.importorskip("transformers")
    from lossland.io import ModelSpec, Surface, save_checkpoint

    (tmp_path / "tied_gpt2_kinds.py").write_text(TIED_GPT2)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    factory = import_object("tied_gpt2_kinds:make_model")
    batch = import_object("tied_gpt2_kinds:make_data")()[0]
    losses, paths = [], []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = factory().eval()
        assert model.lm_head.weight is model.transformer.wte.weight
        with torch.no_grad():
            losses.append(float(model(**batch).loss))
        paths.append(
            save_checkpoint(
                model,
                tmp_path / f"g{seed}.safetensors",
                spec=ModelSpec("tied_gpt2_kinds:make_model"),
            )
        )
    argv = ["interpolate", *paths, "--model", "tied_gpt2_kinds:make_model", "--x", "0:1:3"]
    argv += ["--data", "tied_gpt2_kinds:make_data", "--preset", "causal_lm", "--no-progress"]
    code, _, err = run_cli([*argv, "-o", tmp_path / "i.h5", "--dtype", "float64"], capsys)
    assert code == 0, err
    s = Surface.load(tmp_path / "i.h5")
    np.testing.assert_allclose(s.loss[[0, 2]], losses, rtol=1e-6)
    monkeypatch.delitem(sys.modules, "tied_gpt2_kinds")
