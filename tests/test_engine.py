"""The engine against a direct per-point computation: weights set by hand, a plain forward."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lossland import run as landscape
from lossland.core import FlatLayout, reduce_sums
from lossland.directions import Directions, random_directions
from lossland.engine import bind_flat, working_copy
from lossland.errors import LosslandError


def _filter_rescaled(v: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    rows, ref_rows = v.reshape(v.shape[0], -1), ref.reshape(ref.shape[0], -1)
    scale = ref_rows.norm(dim=1, keepdim=True) / rows.norm(dim=1, keepdim=True)
    return (rows * scale).view_as(v)


def by_hand(
    theta: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, a: float, b: float, scheme: str
) -> torch.Tensor:
    """θ(α, β) for one tensor, written from the formulas in the issue."""
    if scheme == "li":
        return theta + a * dx + b * dy
    if scheme == "linear2x":
        psi = a * dx + (1 - a) * theta
        return b * dy + (1 - b) * psi * (theta.norm() / psi.norm())
    phi, psi = a * (dx - theta) + theta, b * (dy - theta) + theta
    return a * _filter_rescaled(phi, theta) + (1 - b) * _filter_rescaled(psi, theta)


def direct(
    model: nn.Module,
    d: Directions,
    data: tuple[torch.Tensor, torch.Tensor],
    a: float,
    b: float,
    *,
    scheme: str,
    bn: str,
    dtype: torch.dtype,
) -> tuple[float, float]:
    net = copy.deepcopy(model).to(dtype)
    with torch.no_grad():
        for name, p in net.named_parameters():
            dx, dy = d.x[name].to(dtype), d.y[name].to(dtype)  # type: ignore[index]
            if dx.any() or dy.any():
                p.copy_(by_hand(p.clone(), dx, dy, a, b, scheme))
        net.eval()
        if bn == "train":
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.train()
                    m.track_running_stats = False
        logits = net(data[0].to(dtype))
        loss = F.cross_entropy(logits, data[1]).item()
        acc = 100 * (logits.argmax(1) == data[1]).double().mean().item()  # percent
    return loss, acc


@pytest.mark.parametrize("scheme", ["li", "linear2x", "barycentric"])
@pytest.mark.parametrize("bn", ["eval", "train"])
@pytest.mark.parametrize("k", [1, 3])
def test_engine_matches_direct_computation(tiny_model, tiny_data, scheme, bn, k):
    d = random_directions(tiny_model, seed=3)
    before = {n: t.clone() for n, t in tiny_model.state_dict().items()}
    s = landscape.surface(
        tiny_model,
        tiny_data,
        x="-1:1:5",
        y="-0.5:1:4",
        directions=d,
        scheme=scheme,
        bn=bn,
        points_per_batch=k,
        batch_size=64,
        progress=False,
    )
    worst = 0.0
    for i, b in enumerate(s.y):
        for j, a in enumerate(s.x):
            loss, acc = direct(
                tiny_model, d, tiny_data, a, b, scheme=scheme, bn=bn, dtype=torch.float32
            )
            worst = max(worst, abs(s.loss[i, j] - loss) / abs(loss))
            assert abs(s.acc[i, j] - acc) < 1e-9
    assert worst < 1e-5, worst
    # The model handed in is never modified (the engine works on a private copy).
    assert all(torch.equal(before[n], t) for n, t in tiny_model.state_dict().items())


def test_float64_engine_is_exact_to_rounding(tiny_model, tiny_data):
    d = random_directions(tiny_model, seed=1)
    s = landscape.surface(
        tiny_model,
        tiny_data,
        x="-2:2:9",
        y="-1:1:3",
        directions=d,
        dtype="float64",
        batch_size=7,
        progress=False,
    )
    for i, b in enumerate(s.y):
        for j, a in enumerate(s.x):
            loss, _ = direct(
                tiny_model, d, tiny_data, a, b, scheme="li", bn="eval", dtype=torch.float64
            )
            assert s.loss[i, j] == pytest.approx(loss, rel=1e-12)


def test_long_rows_do_not_drift(tiny_model, tiny_data):
    """101 incremental axpys along a row in float32 stay within 1e-5 of the exact values."""
    d = random_directions(tiny_model, seed=2, ndim=1)
    s32 = landscape.surface(tiny_model, tiny_data, x="-1:1:101", directions=d, progress=False)
    s64 = landscape.surface(
        tiny_model, tiny_data, x="-1:1:101", directions=d, dtype="float64", progress=False
    )
    np.testing.assert_allclose(s32.loss, s64.loss, rtol=1e-5)


def test_runs_are_bit_identical(tiny_model, tiny_data):
    runs = [
        landscape.surface(tiny_model, tiny_data, x="-1:1:7", y="-1:1:6", seed=5, progress=False)
        for _ in range(2)
    ]
    assert np.array_equal(runs[0].loss, runs[1].loss)
    assert np.array_equal(runs[0].acc, runs[1].acc)


def test_bn_train_uses_batch_statistics_and_leaves_running_ones(tiny_model, tiny_data):
    running = tiny_model[2].running_mean.clone()
    s_eval = landscape.surface(tiny_model, tiny_data, x="0:0:1", progress=False)
    s_train = landscape.surface(
        tiny_model, tiny_data, x="0:0:1", bn="train", batch_size=64, progress=False
    )
    assert s_eval.loss[0] != pytest.approx(s_train.loss[0], rel=1e-3)
    assert torch.equal(tiny_model[2].running_mean, running)


def test_bn_recompute_matches_a_hand_recomputation(tiny_model, tiny_data):
    d = random_directions(tiny_model, seed=4, ndim=1)
    s = landscape.surface(
        tiny_model,
        tiny_data,
        x="0.5:0.5:1",
        directions=d,
        bn="recompute",
        batch_size=64,
        progress=False,
    )
    net = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.add_(0.5 * d.x[name])
        bn = net[2]
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
        net(tiny_data[0])
        net.eval()
        expected = F.cross_entropy(net(tiny_data[0]), tiny_data[1]).item()
    assert s.loss[0] == pytest.approx(expected, rel=1e-5)


def test_standard_error_of_the_mean_loss(tiny_model, tiny_data):
    s = landscape.surface(tiny_model, tiny_data, x="0:0:1", batch_size=9, progress=False)
    with torch.no_grad():
        losses = F.cross_entropy(tiny_model(tiny_data[0]), tiny_data[1], reduction="none").double()
    assert s.loss[0] == pytest.approx(losses.mean().item(), rel=1e-6)
    assert s.loss_sem[0] == pytest.approx((losses.std() / len(losses) ** 0.5).item(), rel=1e-5)


def test_reduce_sums_single_sample_has_no_standard_error():
    # Σs, Σs², Σn, Σs·n, Σn², units, correct, counted: one sample of loss 2, classified right
    values = reduce_sums(np.array([[2.0, 4.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0]]))
    assert values["loss"][0] == 2.0 and values["acc"][0] == 100.0
    assert np.isnan(values["loss_sem"][0])


def test_user_loss_per_sample_and_scalar(tiny_model, tiny_data):
    def per_sample(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, reduction="none") * 2

    def scalar(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets) * 2

    base = landscape.surface(tiny_model, tiny_data, x="-1:1:3", progress=False)
    a = landscape.surface(tiny_model, tiny_data, x="-1:1:3", loss=per_sample, progress=False)
    b = landscape.surface(
        tiny_model, tiny_data, x="-1:1:3", loss=scalar, batch_size=64, progress=False
    )
    np.testing.assert_allclose(a.loss, 2 * base.loss, rtol=1e-6)
    np.testing.assert_allclose(b.loss, 2 * base.loss, rtol=1e-6)
    assert np.isnan(b.loss_sem).all()  # a batch mean carries no per-sample spread


def test_loss_that_raises_names_the_point(tiny_model, tiny_data):
    def broken(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise ValueError("boom")

    with pytest.raises(LosslandError, match=r"ValueError at \(x, y\) = \(-1, 0\): boom"):
        landscape.surface(tiny_model, tiny_data, x="-1:1:3", loss=broken, progress=False)


def test_regression_targets_give_nan_accuracy():
    model = nn.Linear(3, 1)
    inputs, targets = torch.randn(10, 3), torch.randn(10, 1)
    s = landscape.surface(
        model,
        (inputs, targets),
        x="-1:1:3",
        ignore="none",
        loss=lambda out, t: ((out - t) ** 2).mean(dim=1),
        progress=False,
    )
    assert np.isfinite(s.loss).all() and np.isnan(s.acc).all()


@pytest.mark.parametrize(
    ("x", "y", "shape"),
    [
        ("-1:1:5", None, (5,)),
        ("-1:1:5", "-1:1:5", (5, 5)),
        ("-2:-1:3", "0:3:7", (7, 3)),
        ("0:0:1", "-1:1:4", (4, 1)),
    ],
)
def test_layout_of_results(tiny_model, tiny_data, x, y, shape):
    s = landscape.surface(tiny_model, tiny_data, x=x, y=y, progress=False)
    assert s.loss.shape == s.acc.shape == s.loss_sem.shape == s.done.shape == shape
    assert s.done.all()


def test_non_square_grid_is_indexed_y_then_x(tiny_model, tiny_data):
    """Z[i, j] is the value at (x[j], y[i]): compare with 1-D lines through the grid."""
    d = random_directions(tiny_model, seed=7)
    grid = landscape.surface(
        tiny_model, tiny_data, x="-1:1:5", y="-1:0.5:4", directions=d, progress=False
    )
    line = landscape.surface(
        tiny_model, tiny_data, x="-1:1:5", directions=Directions(x=d.x), progress=False
    )
    row_of_y0 = int(np.flatnonzero(np.isclose(grid.y, 0.0))[0])
    np.testing.assert_allclose(grid.loss[row_of_y0], line.loss, rtol=1e-6)


def test_flat_layout_views_alias_the_buffer_in_both_formats():
    shapes = {"conv": (4, 3, 2, 2), "bias": (4,)}
    for channels_last in (False, True):
        layout = FlatLayout.of(shapes, channels_last=channels_last)
        flat = torch.arange(layout.size, dtype=torch.float32)
        tensors = {"conv": torch.randn(4, 3, 2, 2), "bias": torch.randn(4)}
        packed = layout.flatten(tensors, device=torch.device("cpu"), dtype=torch.float32)
        views = layout.views(packed)
        assert torch.equal(views["conv"], tensors["conv"]) and torch.equal(
            views["bias"], tensors["bias"]
        )
        assert views["conv"].is_contiguous(memory_format=torch.channels_last) == channels_last
        layout.views(flat)["conv"].zero_()
        assert flat[: 4 * 3 * 2 * 2].eq(0).all()


def test_tied_weights_stay_tied():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4, bias=False)
            self.b = nn.Linear(4, 4, bias=False)
            self.b.weight = self.a.weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x))

    model = Tied()
    net = working_copy(model, ["a.weight"])
    layout = FlatLayout.of({"a.weight": (4, 4)})
    flat = torch.zeros(layout.size)
    bind_flat(net, layout, flat)
    flat.fill_(1.0)
    assert net.a.weight is net.b.weight and net.b.weight.eq(1).all()  # type: ignore[union-attr]
    assert not model.a.weight.eq(1).all()


def test_surface_from_directions_of_one_dimension_refuses_two(tiny_model, tiny_data):
    d = random_directions(tiny_model, ndim=1)
    with pytest.raises(LosslandError, match="needs two directions"):
        landscape.surface(
            tiny_model, tiny_data, x="-1:1:3", y="-1:1:3", directions=d, progress=False
        )


@pytest.mark.parametrize("scheme", ["linear2x", "barycentric"])
def test_nonlinear_schemes_need_a_plane(tiny_model, tiny_data, scheme):
    with pytest.raises(LosslandError, match="needs two directions"):
        landscape.surface(tiny_model, tiny_data, x="-1:1:3", scheme=scheme, progress=False)


def test_unknown_scheme(tiny_model, tiny_data):
    with pytest.raises(LosslandError, match="unknown scheme"):
        landscape.surface(tiny_model, tiny_data, x="-1:1:3", scheme="cubic", progress=False)  # type: ignore[arg-type]


@pytest.mark.slow
def test_compiled_forward_matches(tiny_model, tiny_data):
    pytest.importorskip("torch._dynamo")
    d = random_directions(tiny_model, seed=0)
    plain = landscape.surface(
        tiny_model, tiny_data, x="-1:1:3", y="-1:1:3", directions=d, progress=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # raised inside torch's own imports
        compiled = landscape.surface(
            tiny_model,
            tiny_data,
            x="-1:1:3",
            y="-1:1:3",
            directions=d,
            compile=True,
            progress=False,
        )
    np.testing.assert_allclose(compiled.loss, plain.loss, rtol=1e-5)


def test_bf16_precision_is_close_to_fp32(tiny_model, tiny_data):
    fp32 = landscape.surface(tiny_model, tiny_data, x="-0.5:0.5:3", progress=False)
    bf16 = landscape.surface(
        tiny_model, tiny_data, x="-0.5:0.5:3", precision="bf16", progress=False
    )
    np.testing.assert_allclose(bf16.loss, fp32.loss, rtol=0.05)
    with pytest.raises(LosslandError, match="tf32 needs a CUDA device"):
        landscape.surface(
            tiny_model, tiny_data, x="0:0:1", precision="tf32", device="cpu", progress=False
        )


def test_engine_adopts_lossland_directions_without_copying(tiny_model, tiny_data):
    """Directions drawn by lossland already live in the engine's flat layout: no copy."""
    from lossland.engine import Engine, EngineOptions

    d = random_directions(tiny_model, seed=0)
    options = EngineOptions(device=torch.device("cpu"), channels_last=True)
    engine = Engine(tiny_model, [d.x, d.y], tiny_data, options=options)  # type: ignore[list-item]
    first = next(iter(d.x.values()))
    assert engine.dx.untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
    # θ* is read from the model's own tensors: the engine holds no flat copy of it.
    weight = tiny_model[0].weight
    assert any(t.data_ptr() == weight.data_ptr() for t in engine.theta)
    # Saved and reloaded directions are adopted too (the file is read into the same layout).
    plain = Directions(x={k: v.contiguous().clone() for k, v in d.x.items()})
    copied = Engine(tiny_model, [plain.x], tiny_data, options=options)
    assert copied.dx.untyped_storage().data_ptr() != first.untyped_storage().data_ptr()
    assert torch.equal(copied.dx, engine.dx)


@pytest.mark.parametrize(
    ("x", "y"),
    [("-1:1:51", None), ("-1:1:51", "-1:1:3"), ("-2:1:31", "-1:1:5"), ("0:1:21", None)],
)
def test_points_at_alpha_zero_are_exact(tiny_model, tiny_data, x, y):
    """The column α = 0 is θ* + β·η exactly (re-anchored, not reached by float32 steps along a
    row): the same loss, bit for bit, as a grid of that column alone."""
    d = random_directions(tiny_model, seed=3, ndim=1 if y is None else 2)
    s = landscape.surface(tiny_model, tiny_data, x=x, y=y, directions=d, progress=False)
    column = landscape.surface(tiny_model, tiny_data, x="0:0:1", y=y, directions=d, progress=False)
    j = int(np.flatnonzero(s.x == 0.0)[0])
    assert np.array_equal(s.loss[..., j], column.loss[..., 0])
