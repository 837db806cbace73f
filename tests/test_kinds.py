"""The table of direction kinds (``core.KINDS``) against the code that decides each fact today:
the names of ``Kind``, the default grid ranges of ``directions._plane``, the titles and axis
labels ``show`` draws, the refusals of ``directions.check_usable``, which directions are redrawn,
saved or read (``from_recipe``, the command line), the schemes they allow and the barrier."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any, get_args

import numpy as np
import pytest
import torch
from torch import nn

from helpers import assert_one_line
from lossland.analysis import measures
from lossland.cli._surface import _directions_file, choose_plane
from lossland.core import KINDS, DirectionKind, Kind, kind, recorded_kind
from lossland.directions import Directions, check_usable, from_recipe, orthogonalized
from lossland.directions import Kind as DirectionsKind
from lossland.directions._plane import KINDS as PLANE_KINDS
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
    assert tuple(KINDS) == get_args(Kind) == get_args(DirectionsKind)
    assert all(name == row.name for name, row in KINDS.items())


@pytest.mark.parametrize("row", ROWS, ids=by_name)
def test_kind_finds_its_row(row: DirectionKind) -> None:
    assert kind(row.name) is row and recorded_kind(row.name) is row


@pytest.mark.parametrize("name", ["gradient", "", "Random", "random ", "pca:2"])
def test_an_unknown_kind_is_one_line_naming_the_known_ones(name: str) -> None:
    with pytest.raises(LosslandError) as caught:
        kind(name)
    message = str(caught.value)
    assert_one_line(message)
    assert repr(name) in message and all(k in message for k in KINDS)


@pytest.mark.parametrize("value", [None, 3, 1.5, ["random"], {"kind": "pca"}, b"pca", "PCA", ""])
def test_a_kind_recorded_in_a_file_may_be_anything(value: Any) -> None:
    assert recorded_kind(value) is None


# --- default ranges: each row's rule is directions._plane's -------------------------------------

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


def _outcome(rule: Any, *args: Any) -> str:
    try:
        return str(rule(*args))
    except (LosslandError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("row", ROWS, ids=by_name)
def test_default_range_is_todays(row: DirectionKind, spec: str | None) -> None:
    today = PLANE_KINDS[row.name]
    assert row.y_by_default == today.y_by_default
    for (info_name, info), (points_name, points), axis in itertools.product(
        INFOS.items(), POINTS.items(), (0, 1)
    ):
        directions = Directions(x={}, kind=row.name, info=info)
        want = _outcome(today.default_range, directions, spec, points, axis)
        got = _outcome(row.default_range, info, spec, points, axis)
        assert got == want, (info_name, points_name, axis)


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


@pytest.mark.parametrize("value", [None, "gradient", 3, ["random"]], ids=str)
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


PLANE_FLAGS: dict[str, dict[str, Any]] = {
    "random": {},
    "pca": {"trajectory": [Path("no-such-run")]},
    "hessian": {"directions": "hessian"},
    "models": {"to": [Path("no-such.safetensors")]},
}


def _args(name: str, **changes: Any) -> SimpleNamespace:
    """The flags of ``lossland surface`` that choose a plane, asking for kind ``name``."""
    flags = {"directions": None, "to": [], "trajectory": [], "pca_runs": "all", "seeds": 1}
    flags |= {"save_directions": None, "x": None, "y": "auto"}
    return SimpleNamespace(**(flags | PLANE_FLAGS[name] | changes))


@pytest.mark.parametrize("row", ROWS, ids=by_name)
def test_where_new_directions_are_saved(row: DirectionKind, tmp_path: Path) -> None:
    """The command line's choice today: a recipe's only when asked, "beside" ones beside the
    surface by default, none for directions read from the files given."""
    out, asked = tmp_path / "s.h5", tmp_path / "d.safetensors"
    beside = tmp_path / "s.h5.directions.safetensors"
    default = _directions_file(_args(row.name), out)
    assert default == {"recipe": None, "beside": beside, "inputs": None}[row.saved]
    if row.saved == "inputs":
        with pytest.raises(LosslandError, match="drop --save-directions"):
            _directions_file(_args(row.name, save_directions=asked), out)
    else:
        assert _directions_file(_args(row.name, save_directions=asked), out) == asked


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
        refused = "planes use scheme li" in str(exc)
    assert refused == (scheme not in row.schemes)


@pytest.mark.parametrize("row", ROWS, ids=by_name)
def test_between_models_rows_measure_a_barrier(row: DirectionKind) -> None:
    surface = Surface.empty(
        np.linspace(0, 1, 5), None, split="test", attrs={"directions_kind": row.name}
    )
    surface.store(..., np.array([1.0, 2.0, 3.0, 2.0, 1.5]), np.full(5, 50.0), np.zeros(5))
    assert ("barrier" in measures(surface)) == row.between_models
