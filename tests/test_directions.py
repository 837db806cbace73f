"""Tests for directions: normalization, seeding, orthogonalization, files, model-to-model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from helpers import assert_one_line, torch_threads
from lossland.core import rescale_
from lossland.directions import (
    Directions,
    Norm,
    cosine,
    empty_direction,
    model_directions,
    normalize_,
    orthogonalized,
    random_directions,
)
from lossland.errors import LosslandError
from lossland.zoo import small, vgg

REL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def _model(seed: int = 0, width: float = 0.5) -> nn.Module:
    """A seeded small CNN with non-trivial BatchNorm γ/β and running statistics."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = small(width=width)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.normal_()
            model.train()
            model(torch.rand(4, 1, 28, 28) * 2 + seed)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return _model()


def _params(model: nn.Module) -> dict[str, Tensor]:
    return {name: p.detach() for name, p in model.named_parameters()}


def _rows(t: Tensor) -> Tensor:
    return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1)


def _raw_gaussians(model: nn.Module, seed: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The un-normalized draws: x then y, each in named_parameters order, from one generator."""
    generator = torch.Generator().manual_seed(seed)
    params = _params(model)
    x = {k: torch.randn(v.shape, generator=generator) for k, v in params.items()}
    y = {k: torch.randn(v.shape, generator=generator) for k, v in params.items()}
    return x, y


def _same(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- normalization ------------------------------------------------------------------------------


# The small CNN's weight tensors: convs (the first has one input channel) and linears.
KINDS = {"conv": ["0.weight", "4.weight", "8.weight"], "linear": ["13.weight", "15.weight"]}
KIND_PARAMS = ["conv", "linear"]


def test_directions_cover_every_parameter(model: nn.Module) -> None:
    directions = random_directions(model, seed=0)
    params = _params(model)
    assert directions.y is not None
    assert list(directions.x) == list(params) and list(directions.y) == list(params)
    assert [k for k, p in params.items() if p.dim() > 1] == [*KINDS["conv"], *KINDS["linear"]]
    for d in (directions.x, directions.y):
        for name, p in params.items():
            assert d[name].shape == p.shape and d[name].dtype == p.dtype


@pytest.mark.parametrize("norm", ["filter", "layer"])
def test_biasbn_zeroes_1d_tensors(model: nn.Module, norm: str) -> None:
    directions = random_directions(model, seed=0, norm=norm)  # type: ignore[arg-type]
    assert directions.y is not None
    for name, p in _params(model).items():
        if p.dim() == 1:
            assert torch.count_nonzero(directions.x[name]) == 0, name
            assert torch.count_nonzero(directions.y[name]) == 0, name
        else:
            assert torch.count_nonzero(directions.x[name]) == p.numel(), name


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_filter_normalization_matches_every_filter(model: nn.Module, kind: str) -> None:
    directions = random_directions(model, seed=0, norm="filter")
    params = _params(model)
    assert directions.y is not None
    for d in (directions.x, directions.y):
        for name in KINDS[kind]:
            torch.testing.assert_close(_rows(d[name]), _rows(params[name]), rtol=REL, atol=0)
            assert abs(cosine({name: d[name]}, {name: params[name]})) < 0.5  # not θ* itself


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_layer_normalization_matches_whole_tensors(model: nn.Module, kind: str) -> None:
    directions = random_directions(model, seed=0, norm="layer")
    params = _params(model)
    for name in KINDS[kind]:
        norm = torch.linalg.vector_norm(directions.x[name])
        torch.testing.assert_close(norm, torch.linalg.vector_norm(params[name]), rtol=REL, atol=0)
        # Layer norm is not filter norm: individual filters keep their random spread.
        ratio = _rows(directions.x[name]) / _rows(params[name])
        assert float(ratio.max() / ratio.min()) > 1.05


def test_norm_none_keeps_raw_gaussians(model: nn.Module) -> None:
    raw_x, raw_y = _raw_gaussians(model, seed=7)
    params = _params(model)
    for ignore in ("biasbn", "none"):
        plain = random_directions(model, seed=7, norm="none", ignore=ignore)  # type: ignore[arg-type]
        assert plain.y is not None
        for d, raw in ((plain.x, raw_x), (plain.y, raw_y)):
            for name, t in d.items():
                if t.dim() > 1:
                    expected = raw[name]
                else:  # Li et al.: d = w even without a norm
                    expected = torch.zeros_like(t) if ignore == "biasbn" else params[name]
                assert torch.equal(t, expected), (ignore, name)


def _li_et_al(
    raw: dict[str, Tensor], weights: dict[str, Tensor], norm: str, ignore: str
) -> dict[str, Tensor]:
    """net_plotter.py's normalize_directions_for_weights(direction, weights, norm, ignore),
    transcribed: 1-D tensors d.fill_(0) under 'biasbn', else d.copy_(w); the others through
    normalize_direction ('filter': each filter d *= ‖w‖/(‖d‖ + 1e-10); 'layer': the whole
    tensor d *= ‖w‖/‖d‖; anything else: left alone)."""
    out = {}
    for name, d0 in raw.items():
        d, w = d0.clone(), weights[name]
        if d.dim() <= 1:
            if ignore == "biasbn":
                d.fill_(0)
            else:
                d.copy_(w)
        elif norm == "filter":
            for df, wf in zip(d, w, strict=True):
                df.mul_(wf.norm() / (df.norm() + 1e-10))
        elif norm == "layer":
            d.mul_(w.norm() / d.norm())
        out[name] = d
    return out


@pytest.mark.parametrize("ignore", ["biasbn", "none"])
@pytest.mark.parametrize("norm", ["filter", "layer", "none"])
def test_random_directions_follow_the_reference_formula(
    model: nn.Module, norm: str, ignore: str
) -> None:
    raw_x, raw_y = _raw_gaussians(model, seed=4)
    params = _params(model)
    got = random_directions(model, seed=4, norm=norm, ignore=ignore)  # type: ignore[arg-type]
    assert got.y is not None
    for mine, raw in ((got.x, raw_x), (got.y, raw_y)):
        want = _li_et_al(raw, params, norm, ignore)
        assert list(mine) == list(want)
        for name, t in mine.items():
            if t.dim() <= 1:  # zeros or the weights: exactly
                assert torch.equal(t, want[name]), name
            else:  # the same draws; norms summed in another order (float32 rounding)
                torch.testing.assert_close(t, want[name], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("norm", ["filter", "layer", "none"])
def test_ignore_changes_only_the_1d_tensors(model: nn.Module, norm: str) -> None:
    """The draw order does not depend on ``ignore``: the ≥2-D directions are bit-identical,
    and under "biasbn" they are the raw draws rescaled by the core's rescale_, as before the
    reference's d = w rule for ``ignore="none"`` was adopted."""
    raw_x, raw_y = _raw_gaussians(model, seed=9)
    params = _params(model)
    kept = random_directions(model, seed=9, norm=norm, ignore="biasbn")  # type: ignore[arg-type]
    weights = random_directions(model, seed=9, norm=norm, ignore="none")  # type: ignore[arg-type]
    assert kept.y is not None and weights.y is not None
    for a, b, raw in ((kept.x, weights.x, raw_x), (kept.y, weights.y, raw_y)):
        layout = empty_direction(params)
        for name, t in a.items():
            if t.dim() <= 1:
                assert torch.count_nonzero(t) == 0 and torch.equal(b[name], params[name])
                continue
            assert torch.equal(t, b[name]), name
            expected = layout[name].copy_(raw[name])  # the engine's layout: same sums
            if norm != "none":
                rescale_(expected, params[name], norm)  # type: ignore[arg-type]
            assert torch.equal(t, expected), name


def test_orthogonalize_keeps_the_1d_weights_under_ignore_none(model: nn.Module) -> None:
    params = _params(model)
    norms: tuple[Norm, ...] = ("filter", "none")
    for norm in norms:
        ortho = random_directions(model, seed=2, norm=norm, ignore="none", orthogonalize=True)
        assert ortho.y is not None
        for name, p in params.items():
            if p.dim() <= 1:
                assert torch.equal(ortho.x[name], p) and torch.equal(ortho.y[name], p), name


def test_normalize_leaves_zero_reference_filters_at_zero() -> None:
    reference = {"w": torch.tensor([[0.0, 0.0], [3.0, 4.0]])}
    direction = {"w": torch.tensor([[1.0, 1.0], [0.0, 2.0]])}
    normalize_(direction, reference, norm="filter", ignore="biasbn")
    assert torch.equal(direction["w"], torch.tensor([[0.0, 0.0], [0.0, 5.0]]))


@pytest.mark.parametrize(("norm", "ignore"), [("bogus", "biasbn"), ("filter", "bogus")])
def test_unknown_settings(model: nn.Module, norm: str, ignore: str) -> None:
    with pytest.raises(LosslandError, match="bogus") as info:
        random_directions(model, norm=norm, ignore=ignore)  # type: ignore[arg-type]
    assert_one_line(str(info.value))


# --- seeding ------------------------------------------------------------------------------------


def test_same_seed_same_directions(model: nn.Module) -> None:
    a = random_directions(model, seed=3)
    b = random_directions(model, seed=3)
    assert a.y is not None and b.y is not None
    assert _same(a.x, b.x) and _same(a.y, b.y)
    assert a.fingerprint() == b.fingerprint()
    assert a.seed == 3


def test_different_seed_different_directions(model: nn.Module) -> None:
    a = random_directions(model, seed=3)
    b = random_directions(model, seed=4)
    assert not torch.equal(a.x["0.weight"], b.x["0.weight"])
    assert a.fingerprint() != b.fingerprint()


def test_line_is_the_x_axis_of_the_plane(model: nn.Module) -> None:
    line = random_directions(model, seed=5, ndim=1)
    plane = random_directions(model, seed=5, ndim=2)
    assert line.y is None and line.ndim == 1 and line.cosine is None
    assert plane.ndim == 2
    assert _same(line.x, plane.x)


def test_directions_do_not_touch_the_model_or_global_rng(model: nn.Module) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    random_directions(model, seed=1, orthogonalize=True)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert _same(dict(model.state_dict()), before)


# --- orthogonalization and cosines --------------------------------------------------------------


def test_orthogonalize_random_directions(model: nn.Module) -> None:
    plain = random_directions(model, seed=2)
    ortho = random_directions(model, seed=2, orthogonalize=True)
    assert ortho.orthogonalized and not plain.orthogonalized
    assert ortho.y is not None
    assert _same(ortho.x, plain.x)  # only y changes
    assert ortho.info["cosine_before_orthogonalization"] == pytest.approx(plain.cosine)
    # Re-normalizing y per filter leaves a little correlation: measured 0.0090 → 0.00011.
    assert plain.cosine is not None and ortho.cosine is not None
    assert abs(ortho.cosine) < 1e-3 and abs(ortho.cosine) < 0.05 * abs(plain.cosine)


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_orthogonalized_y_is_normalized_again(model: nn.Module, kind: str) -> None:
    ortho = random_directions(model, seed=2, orthogonalize=True)
    assert ortho.y is not None
    params = _params(model)
    for name in KINDS[kind]:
        torch.testing.assert_close(_rows(ortho.y[name]), _rows(params[name]), rtol=REL, atol=0)


@pytest.mark.parametrize(
    ("norm", "bound"),
    [("none", 1e-9), ("layer", 1e-3), ("filter", 0.02)],
)
def test_orthogonalize_correlated_directions(model: nn.Module, norm: str, bound: float) -> None:
    """y = 0.6 x + 0.4 noise has cosine ~0.83; Gram–Schmidt removes most of it.

    Re-normalizing y per filter (or per tensor) after Gram–Schmidt re-introduces a small
    correlation: measured |cos| ≈ 1e-10 (none), 4e-5 (layer), 7e-3 (filter) on this model
    (with plain contiguous tensors, before directions became channels_last views).
    """
    params = _params(model)
    generator = torch.Generator().manual_seed(11)
    x = {k: torch.randn(v.shape, generator=generator) for k, v in params.items()}
    y = {k: 0.6 * v + 0.4 * torch.randn(v.shape, generator=generator) for k, v in x.items()}
    normalize_(x, params, norm=norm, ignore="biasbn")  # type: ignore[arg-type]
    normalize_(y, params, norm=norm, ignore="biasbn")  # type: ignore[arg-type]
    before = Directions(x=x, y=y, norm=norm)  # type: ignore[arg-type]
    after = orthogonalized(before, params)
    assert before.cosine is not None and before.cosine > 0.8
    assert after.cosine is not None and abs(after.cosine) < bound


def test_orthogonalized_line_is_unchanged(model: nn.Module) -> None:
    line = random_directions(model, seed=0, ndim=1)
    assert orthogonalized(line, _params(model)) is line


def test_random_directions_on_quarter_vgg_are_nearly_orthogonal() -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = vgg(width=0.25)
    directions = random_directions(net, seed=0)
    assert directions.cosine is not None and abs(directions.cosine) < 0.01  # measured ~1e-3


def test_cosine_basics() -> None:
    a = {"w": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0])}
    b = {"w": torch.tensor([1.0, 1.0]), "b": torch.tensor([0.0])}
    assert cosine(a, a) == pytest.approx(1.0)
    assert cosine(a, b) == pytest.approx(2**-0.5)
    assert cosine(a, {k: -v for k, v in a.items()}) == pytest.approx(-1.0)
    assert cosine(a, {k: torch.zeros_like(v) for k, v in a.items()}) == 0.0


# --- files --------------------------------------------------------------------------------------


def _assert_same_directions(a: Directions, b: Directions) -> None:
    assert a.fingerprint() == b.fingerprint()
    assert _same(a.x, b.x)
    assert (a.y is None) == (b.y is None)
    if a.y is not None and b.y is not None:
        assert _same(a.y, b.y)
    assert (a.origin is None) == (b.origin is None)
    if a.origin is not None and b.origin is not None:
        assert _same(a.origin, b.origin)
    assert (a.kind, a.norm, a.ignore, a.seed, a.orthogonalized) == (
        b.kind,
        b.norm,
        b.ignore,
        b.seed,
        b.orthogonalized,
    )
    assert dict(a.info) == dict(b.info)
    # The cosine is recomputed from the tensors (file order may change the last bit).
    meta_a, meta_b = a.metadata(), b.metadata()
    assert meta_a.pop("cosine") == pytest.approx(meta_b.pop("cosine"), abs=1e-12)
    assert meta_a == meta_b


def test_save_load_plane(model: nn.Module, tmp_path: Path) -> None:
    directions = random_directions(model, seed=9, norm="layer", orthogonalize=True)
    path = directions.save(tmp_path / "d.safetensors")
    loaded = Directions.load(path)
    _assert_same_directions(directions, loaded)
    assert loaded.info["cosine_before_orthogonalization"] is not None
    loaded.check_fits(model)


def test_save_load_line(model: nn.Module, tmp_path: Path) -> None:
    directions = random_directions(model, seed=9, ndim=1, ignore="none")
    loaded = Directions.load(directions.save(tmp_path / "line.safetensors"))
    assert loaded.y is None and loaded.ndim == 1
    _assert_same_directions(directions, loaded)


def test_save_load_model_directions_with_origin(tmp_path: Path) -> None:
    a, b, c = (_model(seed).state_dict() for seed in (0, 1, 2))
    directions = model_directions(a, b, c)
    loaded = Directions.load(directions.save(tmp_path / "models.safetensors"))
    _assert_same_directions(directions, loaded)
    assert loaded.kind == "models" and loaded.metadata()["has_origin"] is True


def test_fingerprint_sees_every_element(model: nn.Module) -> None:
    directions = random_directions(model, seed=0)
    changed = {k: v.clone() for k, v in directions.x.items()}
    changed["13.weight"].view(-1)[-1] += 1e-3
    other = Directions(x=changed, y=directions.y)
    assert other.fingerprint() != directions.fingerprint()
    assert Directions(x=directions.x).fingerprint() != directions.fingerprint()  # y counts


def test_check_fits_lists_mismatches(tmp_path: Path) -> None:
    other = random_directions(_model(width=0.25), seed=0)
    path = other.save(tmp_path / "other.safetensors")
    target = _model(width=0.5)
    with pytest.raises(LosslandError, match="do not fit this model") as info:
        Directions.load(path).check_fits(target, source=f"directions {path}")
    message = str(info.value)
    assert message.startswith(f"directions {path} do not fit")
    assert "x/0.weight shape (4, 1, 3, 3) vs model (8, 1, 3, 3)" in message
    # 15 of the 16 tensors change shape with the width (not the last bias), in x and in y.
    assert "(30 mismatches: " in message and "; and 24 more)" in message
    assert_one_line(message)


def test_check_fits_unknown_names_and_uneven_coverage(model: nn.Module) -> None:
    directions = random_directions(model, seed=0)
    assert directions.y is not None
    extra = Directions(x={**directions.x, "fc9.weight": torch.zeros(2)}, y=directions.y)
    with pytest.raises(LosslandError, match=r"x/fc9\.weight not in the model") as info:
        extra.check_fits(model)
    assert "x and y cover different tensors" in str(info.value)
    assert_one_line(str(info.value))


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LosslandError, match="not found") as info:
        Directions.load(tmp_path / "nope.safetensors")
    assert_one_line(str(info.value))


@pytest.mark.parametrize("content", ["garbage", "truncated"])
def test_load_corrupt_file(model: nn.Module, tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.safetensors"
    if content == "garbage":
        path.write_bytes(b"this is not a safetensors file at all")
    else:
        raw = random_directions(model, seed=0).save(tmp_path / "good.safetensors").read_bytes()
        path.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(LosslandError, match="corrupt or not a safetensors file") as info:
        Directions.load(path)
    assert str(path) in str(info.value)
    assert_one_line(str(info.value))


@pytest.mark.parametrize(
    ("tensors", "metadata", "expected"),
    [
        ({"w": torch.zeros(2)}, {}, "unexpected tensor 'w'"),
        ({"z/w": torch.zeros(2)}, {}, "unexpected tensor 'z/w'"),
        ({"y/w": torch.zeros(2)}, {}, "holds no x direction"),
        ({"x/w": torch.zeros(2)}, {"lossland": '{"norm": "bogus"}'}, "norm = 'bogus'"),
        ({"x/w": torch.zeros(2)}, {"lossland": "{oops"}, "not valid JSON"),
    ],
)
def test_load_malformed_contents(
    tmp_path: Path, tensors: dict[str, Tensor], metadata: dict[str, str], expected: str
) -> None:
    path = tmp_path / "odd.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(LosslandError, match=expected) as info:
        Directions.load(path)
    assert_one_line(str(info.value))


# --- model-to-model -----------------------------------------------------------------------------


def test_model_directions_line() -> None:
    start, end = _model(0).state_dict(), _model(1).state_dict()
    directions = model_directions(start, end)
    floats = [k for k, v in start.items() if v.is_floating_point()]
    assert set(directions.x) == set(floats)
    assert "2.running_mean" in directions.x and "2.running_var" in directions.x
    assert not any(k.endswith("num_batches_tracked") for k in directions.x)
    assert directions.origin is not None and directions.y is None
    for name in floats:
        assert torch.equal(directions.x[name], end[name] - start[name]), name
        assert torch.equal(directions.origin[name], start[name]), name
    assert torch.count_nonzero(directions.x["2.running_mean"]) > 0
    assert (directions.kind, directions.norm, directions.ignore) == ("models", "none", "none")
    # The origin is a copy: later changes to the start weights do not move it.
    start["0.weight"].add_(1.0)
    assert not torch.equal(directions.origin["0.weight"], start["0.weight"])


def test_model_directions_plane_and_fit() -> None:
    nets = [_model(seed) for seed in (0, 1, 2)]
    start, b, c = (n.state_dict() for n in nets)
    directions = model_directions(start, b, c)
    assert directions.y is not None and directions.ndim == 2
    for name in directions.y:
        assert torch.equal(directions.y[name], c[name] - start[name]), name
    directions.check_fits(nets[0])


def test_model_directions_without_buffers() -> None:
    start, end = _model(0).state_dict(), _model(1).state_dict()
    directions = model_directions(start, end, include_buffers=False)
    assert set(directions.x) == {k for k, _ in _model(0).named_parameters()}


def test_model_directions_refuse_other_architectures() -> None:
    start = _model(0, width=0.5).state_dict()
    with pytest.raises(LosslandError, match="different models") as info:
        model_directions(start, _model(1, width=0.25).state_dict())
    assert_one_line(str(info.value))
    shorter = {k: v for k, v in _model(1).state_dict().items() if k != "13.weight"}
    with pytest.raises(LosslandError, match=r"1 tensors differ, e\.g\. 13\.weight"):
        model_directions(start, shorter)


@pytest.mark.parametrize("ends", [0, 3])
def test_model_directions_need_two_or_three_checkpoints(ends: int) -> None:
    state = _model(0).state_dict()
    with pytest.raises(LosslandError, match="two or three checkpoints"):
        model_directions(state, *[state] * ends)


def _tiny(seed: int) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


FROM_RECIPE = {  # surface keywords → the recipe the file records
    "plane, filter norm": dict(seed=3),
    "line": dict(seed=4, y=None),
    "layer norm, no ignore, orthogonalized": dict(
        seed=5, norm="layer", ignore="none", orthogonalize=True
    ),
}


@pytest.mark.parametrize("case", list(FROM_RECIPE))
def test_from_recipe_redraws_the_surface_directions(tmp_path: Path, case: str) -> None:
    from lossland.directions import from_recipe
    from lossland.io import Surface
    from lossland.run import surface

    keywords = {"x": "-1:1:3", "y": "-1:1:3", **FROM_RECIPE[case]}
    data = (torch.randn(8, 1, 6, 6), torch.randint(0, 3, (8,)))
    drawn = surface(_tiny(0), data, out=tmp_path / "s.h5", progress=False, **keywords)
    again = from_recipe(Surface.load(tmp_path / "s.h5"), _tiny(0))
    assert again.fingerprint() == drawn.attrs["directions_sha256"]
    assert (again.y is None) == (keywords["y"] is None)
    _refused(lambda: from_recipe(Surface.load(tmp_path / "s.h5"), _tiny(1)), "pass the model")


def _refused(call: object, *words: str) -> None:
    with pytest.raises(LosslandError) as info:
        call()  # type: ignore[operator]
    assert_one_line(str(info.value))
    for word in words:
        assert word in str(info.value)


def test_from_recipe_refuses_what_it_cannot_redraw() -> None:
    from lossland.directions import from_recipe
    from lossland.io import Surface

    x = torch.linspace(-1, 1, 3).numpy()
    recipe = {"directions_kind": "random", "seed": 0, "norm": "filter", "ignore": "biasbn"}
    for attrs, words in (
        ({**recipe, "directions_kind": "pca", "directions_file": "s.d"}, ("kind 'pca'", "s.d")),
        ({**recipe, "seed": "0"}, ("malformed",)),
        ({**recipe, "seed": True}, ("malformed",)),
        ({**recipe, "norm": "os:system"}, ("malformed",)),
        ({k: v for k, v in recipe.items() if k != "ignore"}, ("malformed",)),
        ({**recipe, "orthogonalized": "yes"}, ("malformed",)),
    ):
        s = Surface.empty(x, None, split="train", attrs=attrs)
        _refused(lambda s=s: from_recipe(s, _tiny(0)), *words)
