"""A model's state and dtypes are kept, and what the user's code raises is one line.

Every class is a table:

* **state**: models whose forward changes themselves (a step counter buffer, a Python counter,
  a parameter edited in place or given new storage, a cache, a running statistic, a list, a
  lazily registered buffer, BatchNorm statistics updated by the forward). At every grid point,
  in every engine mode, the loss equals the one computed directly on a fresh copy of the model
  moved to that point; the user's model is unchanged; a row computed alone (as a torchrun rank
  does) equals the same row of the whole grid; torch's own modules and BatchNorm modes change
  nothing (no note: warnings are errors here);
* **dtypes**: complex models against losses computed by hand (Python's complex numbers) at
  every point; complex random directions; the dtypes refused with one line (float8, complex in
  bf16, complex Hessians and PCA, complex directions for real weights, directions along
  integers); checkpoints of every dtype for a float model (one line and no output file
  damaged, or, for real floats, the same surface as the model's own rounded weights);
* **failures**: a Dataset's ``__getitem__``, a collate_fn, DataLoader workers, an
  IterableDataset, a generator, the factories, the forward and the loss raising: one line
  naming where (the batch, the grid point, "while caching the data") with the original
  message's first line and the fix, the original exception as ``__cause__``, the points
  computed before it kept, through the API and the CLI.
"""

from __future__ import annotations

import copy
import math
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

import lossland
from faultkit import (
    SPEC,
    env,
    lossland_lines,
    surface_args,
    torchrun,
    write_checkpoint,
    write_data,
)
from helpers import assert_one_line, torch_threads
from lossland.cli import main
from lossland.directions import model_directions, pca_directions
from lossland.engine import Engine, EngineOptions, eval_data
from lossland.errors import LosslandError, LosslandWarning
from lossland.io import ModelSpec, Surface, save_checkpoint
from lossland.zoo import build_model, load_model

GEN = torch.Generator().manual_seed(19)
X = torch.randn(24, 4, generator=GEN)
Y = torch.randint(0, 3, (24,), generator=GEN)
BATCH = 8
AXIS = np.array([-1.0, 0.0, 0.5])
NOTE = "changes its own state"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def reference(model: nn.Module, d: lossland.Directions, xs: np.ndarray, ys: np.ndarray) -> Any:
    """The loss at every point computed directly, in float64: a fresh copy of the model (its
    own state), its weights moved to θ* + α·δ + β·η, evaluated batch by batch in eval mode."""
    out = np.zeros((len(ys), len(xs)))
    assert d.y is not None
    for i, beta in enumerate(ys):
        for j, alpha in enumerate(xs):
            net = copy.deepcopy(model).double().eval()
            tensors = dict(net.named_parameters())
            with torch.no_grad():
                for name in d.x:
                    tensors[name].add_(alpha * d.x[name].double() + beta * d.y[name].double())
                total = sum(
                    float(
                        F.cross_entropy(
                            net(X[k : k + BATCH].double()), Y[k : k + BATCH], reduction="sum"
                        )
                    )
                    for k in range(0, len(X), BATCH)
                )
            out[i, j] = total / len(X)
    return out


def grid(model: nn.Module, d: lossland.Directions, **options: Any) -> Surface:
    return lossland.surface(
        model, (X, Y), x=AXIS, y=AXIS, directions=d, batch_size=BATCH, progress=False, **options
    )


def state_of(model: nn.Module) -> dict[str, Any]:
    """Everything a forward could change: tensors by value, Python attributes by value."""
    out: dict[str, Any] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name, module in model.named_modules():
        for key, value in vars(module).items():
            if not key.startswith("_") and isinstance(value, (int, float, str, bool, list, dict)):
                out[f"{name}.{key}"] = copy.deepcopy(value)
    return out


def same_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], Tensor) else a[k] == b[k] for k in a
    )


# --- class 1: models that change themselves ---------------------------------------------------


class Counter(nn.Module):
    """A step counter buffer the output depends on."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.register_buffer("steps", torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        self.steps += 1
        return self.lin(x) * self.steps


class PyCounter(nn.Module):
    """A Python int counter."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return self.lin(x) * self.calls


class Decay(nn.Module):
    """A parameter (one that moves with the grid) edited in place."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        out = self.lin(x)
        with torch.no_grad():
            self.lin.weight.mul_(0.5)
        return out


class Storage(nn.Module):
    """A parameter given new storage (``.data = ...``)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        out = self.lin(x)
        self.lin.weight.data = self.lin.weight.detach() * 0.5
        return out


class Cache(nn.Module):
    """A cache buffer rebound to the last output."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.register_buffer("cache", torch.zeros(3))

    def forward(self, x: Tensor) -> Tensor:
        out = self.lin(x) + self.cache
        self.cache = out.mean(0).detach()
        return out


class Running(nn.Module):
    """A running statistic of the inputs the user updates in place (not a moving tensor)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.register_buffer("mean", torch.ones(4))

    def forward(self, x: Tensor) -> Tensor:
        self.mean.mul_(0.5).add_(x.mean(0), alpha=0.5)
        return self.lin(x - self.mean)


class History(nn.Module):
    """A list the forward appends to."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.seen: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(len(x))
        return self.lin(x) * len(self.seen)


class Memo(nn.Module):
    """A dict the forward updates."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.memo: dict[str, int] = {}

    def forward(self, x: Tensor) -> Tensor:
        self.memo["n"] = self.memo.get("n", 0) + 1
        return self.lin(x) + self.memo["n"]


class Lazy(nn.Module):
    """A buffer registered by the first forward, used by the next ones."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        if not hasattr(self, "memo"):
            self.register_buffer("memo", torch.ones(3))
            return self.lin(x)
        return self.lin(x) + 5 * self.memo


class Plain(nn.Module):
    """A plain tensor attribute (not a buffer) written in place."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.offset = torch.zeros(3)

    def forward(self, x: Tensor) -> Tensor:
        self.offset += 1
        return self.lin(x) + self.offset


class Scaled(nn.Module):
    """A float attribute of a submodule rebound by the parent's forward."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.inner = nn.Module()
        self.inner.scale = 1.0

    def forward(self, x: Tensor) -> Tensor:
        self.inner.scale = self.inner.scale * 2
        return self.lin(x) * self.inner.scale


class Calibrating(nn.Module):
    """A forward that updates its BatchNorm statistics itself, then evaluates with them."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(4)
        self.lin = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        self.norm.train()
        self.norm(x)
        self.norm.eval()
        return self.lin(self.norm(x))


STATEFUL: dict[str, type[nn.Module]] = {
    "buffer counter": Counter,
    "Python counter": PyCounter,
    "parameter edited in place": Decay,
    "parameter given new storage": Storage,
    "cache buffer rebound": Cache,
    "running statistic updated in place": Running,
    "list appended": History,
    "dict updated": Memo,
    "buffer registered lazily": Lazy,
    "tensor attribute written in place": Plain,
    "submodule attribute rebound": Scaled,
    "BatchNorm statistics updated by the forward": Calibrating,
}
MODES: dict[str, dict[str, Any]] = {
    "one point per forward": {},
    "K=3 points per forward": {"points_per_batch": 3},
    "streamed data": {"data_mode": "streamed"},
    "offload": {"offload": True},
    "float64": {"dtype": "float64"},
    "bf16 network": {"precision": "bf16"},
}
# vmap refuses a forward that assigns .data: one line (below), not a wrong surface.
VMAP_REFUSES = {("parameter given new storage", "K=3 points per forward")}
# K points per forward hand the network fresh copies of the moving weights for every K points:
# what the forward edits there is nobody's state (no note), and every point is still right.
NO_STATE_LEFT = {("parameter edited in place", "K=3 points per forward")}


def make(build: Callable[[], nn.Module]) -> nn.Module:
    """A seeded instance."""
    with torch.random.fork_rng():
        torch.manual_seed(7)
        return build()


def api_fails(call: Callable[[], object], *expected: str) -> str:
    """``call`` raises one LosslandError line holding every ``expected`` text."""
    with pytest.raises(LosslandError) as info:
        call()
    message = str(info.value)
    assert_one_line(message)
    for text in expected:
        assert text in message, message
    return message


def directions_for(model: nn.Module) -> lossland.Directions:
    return lossland.random_directions(model, seed=3, ignore="none")


@pytest.mark.parametrize("case", STATEFUL)
def test_the_cases_are_stateful(case: str) -> None:
    """Each case really changes itself: two forwards of one copy differ (so the surface
    tests below fail if any state were carried from one point to the next)."""
    net = copy.deepcopy(make(STATEFUL[case])).eval()
    with torch.no_grad():
        first, second = net(X[:BATCH]), net(X[:BATCH])
    assert not torch.allclose(first, second)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", STATEFUL)
def test_every_point_starts_from_the_models_own_state(case: str, mode: str) -> None:
    model = make(STATEFUL[case])
    d = directions_for(model)
    before = state_of(model)
    if (case, mode) in VMAP_REFUSES:
        message = api_fails(lambda: grid(model, d, **MODES[mode]), "the model or loss raised")
        assert "near (x, y) = (-1, -1)" in message
        return
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        result = grid(model, d, **MODES[mode])
    texts = [str(n.message) for n in notes]
    if (case, mode) in NO_STATE_LEFT:
        assert texts == []
    else:  # once per engine (bf16 runs a second one: its fp32 check)
        assert texts and all(NOTE in text for text in texts), texts
    tolerance = {"float64": 1e-10, "bf16 network": 3e-2}.get(mode, 2e-6)
    expected = reference(model, d, AXIS, AXIS)
    np.testing.assert_allclose(result.loss, expected, rtol=tolerance, atol=tolerance)
    assert same_state(state_of(model), before), "the user's model was changed"


@pytest.mark.parametrize("case", ["buffer counter", "running statistic updated in place"])
def test_a_run_inside_inference_mode_is_watched_too(case: str) -> None:
    """Called inside ``torch.inference_mode()`` (whose tensors have no version counters), the
    engine still builds a watchable copy."""
    model = make(STATEFUL[case])
    d = directions_for(model)
    with torch.inference_mode(), pytest.warns(LosslandWarning, match=NOTE):
        result = grid(model, d)
    np.testing.assert_allclose(result.loss, reference(model, d, AXIS, AXIS), rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("case", ["buffer counter", "parameter edited in place", "list appended"])
def test_a_row_computed_alone_equals_the_same_row_of_the_grid(case: str) -> None:
    """What a torchrun rank does: a row after other rows, or alone, or first: bit-identical."""
    model = make(STATEFUL[case])
    d = directions_for(model)
    assert d.y is not None
    options = EngineOptions(device=torch.device("cpu"))
    data = eval_data((X, Y), batch_size=BATCH, device=options.device)
    pending = np.ones((len(AXIS), len(AXIS)), dtype=bool)

    def rows(order: list[int]) -> dict[int, np.ndarray]:
        engine = Engine(model, [d.x, d.y], data, options=options)
        with pytest.warns(LosslandWarning, match=NOTE):
            blocks = list(engine.rows(AXIS, AXIS, pending, rows=order))
        return {b.row: b.stats[np.argsort(b.cols)] for b in blocks}

    whole = rows([0, 1, 2])
    for order in ([2], [2, 1, 0], [1, 2]):
        alone = rows(order)
        for row, stats in alone.items():
            np.testing.assert_array_equal(stats, whole[row])


class Stock(nn.Module):
    """torch's own modules: recurrent, attention, normalization, reparametrized layers."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        layers: dict[str, Callable[[], nn.Module]] = {
            "lstm": lambda: nn.LSTM(2, 4, batch_first=True),
            "gru": lambda: nn.GRU(2, 4, num_layers=2, batch_first=True),
            "attention": lambda: nn.MultiheadAttention(2, 1, batch_first=True),
            "transformer": lambda: nn.TransformerEncoder(
                nn.TransformerEncoderLayer(2, 1, 8, batch_first=True, dropout=0.5),
                2,
                enable_nested_tensor=False,
            ),
            "spectral norm": lambda: nn.utils.spectral_norm(nn.Linear(2, 2)),
            "weight norm": lambda: nn.utils.parametrizations.weight_norm(nn.Linear(2, 2)),
            "batchnorm": lambda: nn.Sequential(nn.BatchNorm1d(2), nn.Dropout(0.5)),
        }
        self.body = layers[kind]()
        self.head = nn.Linear(4 if kind in ("lstm", "gru") else 2, 3)

    def forward(self, x: Tensor) -> Tensor:
        seq = x.view(len(x), 2, 2)
        if self.kind in ("lstm", "gru"):
            return self.head(self.body(seq)[0][:, -1])
        if self.kind == "attention":
            return self.head(self.body(seq, seq, seq)[0][:, -1])
        if self.kind == "transformer":
            return self.head(self.body(seq)[:, -1])
        return self.head(self.body(seq[:, -1]))


@pytest.mark.parametrize(
    "kind",
    ["lstm", "gru", "attention", "transformer", "spectral norm", "weight norm", "batchnorm"],
)
def test_torchs_own_modules_change_nothing(kind: str) -> None:
    """No note (warnings are errors here) and the direct loss at every point."""
    model = make(lambda: Stock(kind))
    if kind == "batchnorm":  # statistics of its own, not the initial ones
        model.body[0].running_mean.fill_(0.3)
    d = directions_for(model)
    np.testing.assert_allclose(
        grid(model, d).loss, reference(model, d, AXIS, AXIS), rtol=2e-6, atol=2e-6
    )


def bn_reference(model: nn.Module, d: lossland.Directions, bn: str) -> Any:
    """BatchNorm modes computed directly: batch statistics without touching the running ones
    (train), or the statistics of the whole evaluation set recomputed at each point
    (recompute; the model's one BatchNorm follows its first layer)."""
    out = np.zeros((len(AXIS), len(AXIS)))
    assert d.y is not None
    for i, beta in enumerate(AXIS):
        for j, alpha in enumerate(AXIS):
            net = copy.deepcopy(model).double().eval()
            params = dict(net.named_parameters())
            norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d)]
            with torch.no_grad():
                for name in d.x:
                    params[name].add_(alpha * d.x[name].double() + beta * d.y[name].double())
                batches = [(X[k : k + BATCH].double(), Y[k : k + BATCH]) for k in range(0, 24, 8)]
                for m in norms:
                    m.train() if bn == "train" else m.reset_running_stats()
                    m.track_running_stats = bn != "train"
                    m.momentum = None
                if bn == "recompute":  # the first layer's output over every sample
                    inputs = net[0](X.double())
                    norms[0].running_mean.copy_(inputs.mean(dim=0))
                    norms[0].running_var.copy_(inputs.var(dim=0, unbiased=True))
                total = sum(float(F.cross_entropy(net(x), y, reduction="sum")) for x, y in batches)
            out[i, j] = total / len(X)
    return out


@pytest.mark.parametrize("bn", ["train", "recompute"])
def test_batchnorm_modes_leave_the_running_statistics_alone(bn: str) -> None:
    """``bn="train"`` uses batch statistics and never updates the running ones (no note: the
    state is unchanged); ``recompute`` rebuilds them at every point from the evaluation set."""
    model = make(lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 3)))
    model[1].running_var.fill_(2.0)
    d = directions_for(model)
    before = state_of(model)
    result = grid(model, d, bn=bn)
    np.testing.assert_allclose(result.loss, bn_reference(model, d, bn), rtol=2e-6, atol=2e-6)
    assert same_state(state_of(model), before)


def test_hessian_products_start_from_the_models_own_state() -> None:
    """Every Hessian-vector product is of the same function: a counter model's products are
    the same at the first and the tenth call, and equal those of a stateless twin whose k-th
    batch of a pass is scaled by k, as a fresh counter does."""
    from lossland.directions import HessianOperator

    model = make(Counter)
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=GEN)
    with pytest.warns(LosslandWarning, match=NOTE):
        op = HessianOperator(model, (X, Y), batch_size=BATCH)
        products = [op.matvec(v) for _ in range(10)]
    for hv in products[1:]:
        torch.testing.assert_close(hv, products[0], rtol=0, atol=0)
    twin = HessianOperator(_ByBatch(model), (X, Y), batch_size=BATCH)
    torch.testing.assert_close(products[0], twin.matvec(v))


class _ByBatch(nn.Module):
    """A stateless Counter: the k-th batch (told by its first value) scaled by k."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.lin = copy.deepcopy(model.lin)
        self.k = {float(X[i, 0]): 1 + i // BATCH for i in range(0, len(X), BATCH)}

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.lin(x) * self.k[float(x[0, 0])]
        return out


# --- class 2: complex models, and the dtypes lossland refuses -----------------------------------

# A complex weight w (3, 2), a real bias, a complex buffer and an integer buffer, all dyadic
# (exact in complex64): logits = |x·wᵀ·phase| + b, permuted by the integer buffer ``order``.
W = [[1 + 1j, 2 - 1j], [0.5j, -1 + 0j], [1 - 2j, 0.25 + 0.5j]]
B = [0.125, -0.25, 0.5]
PHASE = 0.5 + 1j
ORDER = [2, 0, 1]
DX_W = [[1j, 1 + 0j], [-0.5 + 0j, 0.5j], [0.25 + 0.125j, -1j]]
DY_W = [[0.5 + 0j, -0.5j], [1 + 1j, 0j], [-0.25 + 0j, 0.75 + 0.25j]]
DX_B, DY_B = [0.5, 0.0, -0.5], [0.0, 0.25, 0.25]
CX = [[0.5, -1.0], [2.0, 0.25], [-1.5, 1.0], [0.0, 0.75], [1.25, -0.5], [-0.25, -2.0]]
CY = [0, 2, 1, 1, 0, 2]


class ComplexLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(W, dtype=torch.complex64))
        self.b = nn.Parameter(torch.tensor(B))
        self.register_buffer("phase", torch.tensor(PHASE, dtype=torch.complex64))
        self.register_buffer("order", torch.tensor(ORDER))

    def forward(self, x: Tensor) -> Tensor:
        z = x.to(self.w.dtype) @ self.w.T * self.phase
        logits: Tensor = (z.abs() + self.b)[:, self.order]
        return logits


def by_hand(
    alpha: float, beta: float, dx_w: list[list[complex]] = DX_W, dy_w: list[list[complex]] = DY_W
) -> float:
    """The mean cross-entropy at θ* + α·δ + β·η, with Python's complex numbers."""
    total = 0.0
    for x, y in zip(CX, CY, strict=True):
        logits = []
        for c in range(3):
            w = [W[c][k] + alpha * dx_w[c][k] + beta * dy_w[c][k] for k in range(2)]
            z = (x[0] * w[0] + x[1] * w[1]) * PHASE
            logits.append(abs(z) + B[c] + alpha * DX_B[c] + beta * DY_B[c])
        logits = [logits[o] for o in ORDER]
        top = max(logits)
        total += top + math.log(sum(math.exp(v - top) for v in logits)) - logits[y]
    return total / len(CX)


def complex_directions(dtype: torch.dtype = torch.complex64) -> lossland.Directions:
    return lossland.Directions(
        x={"w": torch.tensor(DX_W, dtype=dtype), "b": torch.tensor(DX_B)},
        y={"w": torch.tensor(DY_W, dtype=dtype), "b": torch.tensor(DY_B)},
        kind="random",
        norm="none",
        ignore="none",
    )


COMPLEX_MODES: dict[str, dict[str, Any]] = {
    "float32": {},
    "float64": {"dtype": "float64"},
    "K=3 points per forward": {"points_per_batch": 3},
    "offload": {"offload": True},
    "streamed data": {"data_mode": "streamed"},
    "two processes' rows (rows alone)": {"checkpoint_every": 0.0},
}


@pytest.mark.parametrize("mode", COMPLEX_MODES)
def test_complex_models_move_in_the_complex_plane(mode: str) -> None:
    """Every point, θ* included, equals the loss computed by hand (the complex weight and
    buffer kept complex, the integer buffer an index)."""
    data = (torch.tensor(CX), torch.tensor(CY))
    result = lossland.surface(
        ComplexLinear(),
        data,
        x=AXIS,
        y=AXIS,
        directions=complex_directions(),
        batch_size=4,
        progress=False,
        **COMPLEX_MODES[mode],
    )
    expected = [[by_hand(a, b) for a in AXIS] for b in AXIS]
    tolerance = 1e-12 if mode == "float64" else 2e-6
    np.testing.assert_allclose(result.loss, expected, rtol=tolerance, atol=tolerance)


def test_a_real_direction_moves_a_complex_weights_real_part() -> None:
    """A real direction for a complex weight is a direction of C^n with no imaginary part."""
    dx_w = [[v.real for v in row] for row in DX_W]
    dy_w = [[v.real for v in row] for row in DY_W]
    d = lossland.Directions(
        x={"w": torch.tensor(dx_w), "b": torch.tensor(DX_B)},
        y={"w": torch.tensor(dy_w), "b": torch.tensor(DY_B)},
        norm="none",
        ignore="none",
    )
    data = (torch.tensor(CX), torch.tensor(CY))
    result = lossland.surface(
        ComplexLinear(), data, x=AXIS, y=AXIS, directions=d, dtype="float64", progress=False
    )
    real = [[complex(v) for v in row] for row in dx_w], [[complex(v) for v in row] for row in dy_w]
    expected = [[by_hand(a, b, *real) for a in AXIS] for b in AXIS]
    np.testing.assert_allclose(result.loss, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("norm", ["filter", "layer", "none"])
def test_complex_random_directions_are_drawn_in_both_parts(norm: str) -> None:
    """A complex weight's random direction is a Gaussian in both parts, normalized by the
    complex norms of the weight's filters (or layer); Gram-Schmidt works in the real inner
    product of C^n as R^2n; the surface at θ* is the model's own loss."""
    model = ComplexLinear()
    d = lossland.random_directions(model, seed=4, norm=norm, orthogonalize=True)
    assert d.y is not None
    for direction in (d.x, d.y):
        w = direction["w"]
        assert w.dtype == torch.complex64 and w.imag.abs().sum() > 0 and w.real.abs().sum() > 0
        assert torch.equal(direction["b"], torch.zeros(3))  # 1-D: still under ignore="biasbn"
        reference_w = model.w.detach()
        if norm == "filter":
            torch.testing.assert_close(w.abs().norm(dim=1), reference_w.abs().norm(dim=1))
        elif norm == "layer":
            torch.testing.assert_close(w.abs().norm(), reference_w.abs().norm())
    if norm == "none":  # not normalized again after Gram-Schmidt: exactly orthogonal
        assert abs(d.cosine or 0.0) < 1e-6
    data = (torch.tensor(CX), torch.tensor(CY))
    result = lossland.surface(model, data, x="-1:1:3", y="-1:1:3", directions=d, progress=False)
    assert result.loss[1, 1] == pytest.approx(by_hand(0.0, 0.0), rel=1e-6)


def test_complex_directions_and_checkpoints_round_trip(tmp_path: Path) -> None:
    """Saved and loaded as they were (safetensors C64), fingerprint included; a complex
    checkpoint loads into a complex model; model-to-model directions move complex weights."""
    d = lossland.random_directions(ComplexLinear(), seed=1)
    again = lossland.Directions.load(d.save(tmp_path / "d.safetensors"))
    assert again.fingerprint() == d.fingerprint() and again.x["w"].dtype == torch.complex64
    model = ComplexLinear()
    with torch.no_grad():
        model.w.mul_(1j)
    path = save_checkpoint(model, tmp_path / "c.safetensors")
    fresh = ComplexLinear()
    lossland.io.load_state_into(fresh, load_file(str(path)), source="checkpoint")
    assert torch.equal(fresh.w, model.w)
    line = model_directions(ComplexLinear().state_dict(), model.state_dict())
    assert line.x["w"].dtype == torch.complex64
    torch.testing.assert_close(line.x["w"], model.w.detach() - ComplexLinear().w.detach())


class WithInteger(nn.Module):
    """An integer parameter (an index, never moved) beside real weights."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.order = nn.Parameter(torch.tensor([1, 2, 0]), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.lin(x)[:, self.order]
        return out


def test_integer_parameters_never_move() -> None:
    model = make(WithInteger)
    d = directions_for(model)
    assert set(d.x) == {"lin.weight", "lin.bias"}
    np.testing.assert_allclose(
        grid(model, d).loss, reference(model, d, AXIS, AXIS), rtol=2e-6, atol=2e-6
    )


class Float8(nn.Module):
    def __init__(self, where: str) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        scale = torch.ones(3, dtype=torch.float8_e4m3fn)
        if where == "parameter":
            self.scale = nn.Parameter(scale, requires_grad=False)
        else:
            self.register_buffer("scale", scale)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.lin(x) * self.scale.float()
        return out


def complex_data() -> tuple[Tensor, Tensor]:
    return torch.tensor(CX), torch.tensor(CY)


def real_to_complex_direction() -> lossland.Directions:
    w = torch.tensor(DX_W, dtype=torch.complex64)
    return lossland.Directions(x={"lin.weight": w, "lin.bias": torch.zeros(3, dtype=torch.cfloat)})


REFUSED_DTYPES: dict[str, tuple[Callable[[], object], tuple[str, ...]]] = {
    "a complex model in bf16": (
        lambda: lossland.surface(
            ComplexLinear(), complex_data(), x="-1:1:3", precision="bf16", progress=False
        ),
        ("the model's w is complex", "bfloat16", "precision fp32"),
    ),
    "the Hessian of complex weights": (
        lambda: lossland.hessian_report(ComplexLinear(), complex_data()),
        ("the model's w is complex", "Hessians of real parameters"),
    ),
    "PCA of complex weights": (
        lambda: pca_directions(
            ComplexLinear().state_dict(), [ComplexLinear().state_dict() for _ in range(3)]
        ),
        ("holds w as complex64", "PCA directions are of real"),
    ),
    "a complex direction for real weights": (
        lambda: lossland.surface(
            make(lambda: nn.Linear(4, 3)),
            (X, Y),
            x="-1:1:3",
            directions=lossland.Directions(
                x={
                    "weight": torch.ones(3, 4, dtype=torch.complex64),
                    "bias": torch.ones(3, dtype=torch.complex64),
                }
            ),
            progress=False,
        ),
        ("x/weight is complex64 but the model's is float32",),
    ),
    "a direction along an integer parameter": (
        lambda: lossland.surface(
            make(WithInteger),
            (X, Y),
            x="-1:1:3",
            directions=lossland.Directions(
                x={"lin.weight": torch.ones(3, 4), "order": torch.ones(3)}
            ),
            progress=False,
        ),
        ("x/order is float32 but the model's is int64",),
    ),
    "a float8 parameter": (
        lambda: lossland.surface(make(lambda: Float8("parameter")), (X, Y), progress=False),
        ("the model holds scale as float8_e4m3fn", "model.float()"),
    ),
    "a float8 buffer": (
        lambda: lossland.surface(make(lambda: Float8("buffer")), (X, Y), progress=False),
        ("the model holds scale as float8_e4m3fn",),
    ),
}


@pytest.mark.parametrize("case", REFUSED_DTYPES)
def test_dtypes_lossland_cannot_keep_are_refused_in_one_line(case: str) -> None:
    call, expected = REFUSED_DTYPES[case]
    api_fails(call, *expected)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny data, a small model's checkpoint and the surface of it."""
    folder = tmp_path_factory.mktemp("dtypes")
    data = write_data(folder / "data", n=16)
    ckpt = write_checkpoint(folder / "good.safetensors")
    return {"folder": folder, "data": data, "ckpt": ckpt}


def checkpoint_with(small: dict[str, Path], name: str, change: Callable[[Tensor], Tensor]) -> Path:
    """The good checkpoint with its first weight (and only it) changed by ``change``."""
    from safetensors import safe_open

    with safe_open(str(small["ckpt"]), "pt") as handle:
        metadata = handle.metadata()
    state = load_file(str(small["ckpt"]))
    key = next(k for k in state if k.endswith("weight"))
    state[key] = change(state[key])
    if state[key].dtype == torch.complex128:  # safetensors stores no complex128
        path = small["folder"] / f"{name}.pt"
        torch.save(state, path)
        return path
    path = small["folder"] / f"{name}.safetensors"
    save_file(state, str(path), metadata=metadata)
    return path


def cli(capsys: pytest.CaptureFixture[str], args: list[Any]) -> tuple[int, list[str], str]:
    """Exit status, lossland's own lines on stderr, and all of stderr."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("lossland:")], err


def one_error(code: int, lines: list[str], err: str, *expected: str) -> str:
    errors = [line for line in lines if line.startswith("lossland: error:")]
    assert code == 2 and len(errors) == 1, err
    assert_one_line(errors[0])
    assert "Traceback" not in err and "Exception ignored" not in err, err
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


REFUSED_WEIGHTS = {
    "complex64": torch.complex64,
    "complex128": torch.complex128,
    "int64": torch.int64,
    "int32": torch.int32,
    "uint8": torch.uint8,
    "bool": torch.bool,
    "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e5m2": torch.float8_e5m2,
}


@pytest.mark.parametrize("dtype", REFUSED_WEIGHTS)
def test_a_checkpoint_of_another_kind_of_number_is_refused(
    small: dict[str, Path], dtype: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Never cast: one line naming the tensor and both dtypes, through the CLI (and the
    existing output untouched) and the API."""
    ckpt = checkpoint_with(small, dtype, lambda t: t.to(REFUSED_WEIGHTS[dtype]))
    out = small["folder"] / f"{dtype}.h5"
    out.write_bytes(b"the user's own file")
    named = ("--model", "small", "--model-arg", "width=0.25")  # a .pt file names no model
    args = surface_args(ckpt, out, small["data"], "--overwrite", *named, grid="-1:1:3")
    one_error(*cli(capsys, args), f"checkpoint {dtype}, model float32", "of another kind")
    assert out.read_bytes() == b"the user's own file"
    api_fails(lambda: load_model(ckpt, spec=SPEC), f"checkpoint {dtype}, model float32")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_real_weights_of_another_precision_load_as_the_model_would(
    small: dict[str, Path], dtype: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same surface as the checkpoint whose weight was rounded to ``dtype`` and stored in
    float32 (what load_state_dict does, no more)."""
    low = checkpoint_with(small, dtype, lambda t: t.to(getattr(torch, dtype)))
    rounded = checkpoint_with(small, f"{dtype}_f32", lambda t: t.to(getattr(torch, dtype)).float())
    results = []
    for ckpt in (low, rounded):
        out = small["folder"] / f"{ckpt.stem}.h5"
        code, _, err = cli(capsys, surface_args(ckpt, out, small["data"], grid="-1:1:3"))
        assert code == 0, err
        results.append(Surface.load(out).loss)
    np.testing.assert_array_equal(*results)


def test_integer_buffers_of_another_width_and_complex_nan_checkpoints(
    small: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """int32 counters load into int64 ones (same kind); NaN in a complex checkpoint is found
    like NaN in a real one."""
    state = load_file(str(small["ckpt"]))
    counters = [k for k in state if k.endswith("num_batches_tracked")]
    assert counters
    for key in counters:
        state[key] = state[key].to(torch.int32)
    path = small["folder"] / "int32.safetensors"
    save_file(state, str(path), metadata={"format": "pt"})
    model = build_model(ModelSpec("small", {"width": 0.25}))
    lossland.io.load_state_into(model, state, source="checkpoint")
    nan = small["folder"] / "nan.safetensors"
    save_file({"w": torch.tensor([1 + 1j, complex("nan")], dtype=torch.complex64)}, str(nan))
    api_fails(lambda: lossland.io.load_checkpoint(nan), "NaN or inf", "diverged")


def test_complex128_is_refused_before_a_file_is_written(tmp_path: Path) -> None:
    """safetensors stores no complex128: saving such directions (or checkpoints) is one line
    and writes nothing (the model itself works, see the float64 mode above)."""
    model = ComplexLinear()
    model.w = nn.Parameter(model.w.detach().to(torch.complex128))
    d = lossland.random_directions(model, seed=0)
    api_fails(lambda: d.save(tmp_path / "d.safetensors"), "as complex128", "cannot store")
    api_fails(lambda: save_checkpoint(model, tmp_path / "m.safetensors"), "as complex128")
    assert list(tmp_path.iterdir()) == []


# --- class 3: what the user's code raises is one line ------------------------------------------


class Broken(Dataset[tuple[Tensor, Tensor]]):
    """Samples of X, Y; ``__getitem__`` raises at sample ``bad`` (on its ``after``-th call on,
    so a first pass can succeed)."""

    def __init__(self, bad: int = -1, after: int = 0) -> None:
        self.bad, self.after, self.calls = bad, after, 0

    def __len__(self) -> int:
        return len(X)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        self.calls += 1
        if i == self.bad and self.calls > self.after:
            raise ValueError(f"corrupt sample {i}\nthe rest of a long message")
        return X[i], Y[i]


class BrokenStream(IterableDataset[tuple[Tensor, Tensor]]):
    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        raise OSError("the shard server is down")


def three_batches_then_fail() -> Iterator[tuple[Tensor, Tensor]]:
    for k in range(0, 16, BATCH):
        yield X[k : k + BATCH], Y[k : k + BATCH]
    raise RuntimeError("the stream ended badly")


def bad_collate(batch: list[Any]) -> Any:
    raise TypeError("cannot stack ragged samples")


DATA_FAILURES: dict[str, tuple[Callable[[], Any], dict[str, Any], tuple[str, ...]]] = {
    "a Dataset raising at sample 13": (
        lambda: Broken(13),
        {},
        ("the data raised ValueError while caching the data (batch index 1): corrupt sample 13;",),
    ),
    "a Dataset raising, streamed": (
        lambda: Broken(13),
        {"data_mode": "streamed"},
        ("ValueError while first reading the data (batch index 1): corrupt sample 13",),
    ),
    "a Dataset raising at the 3rd point": (
        lambda: Broken(13, after=len(X) * 3),  # the first pass and two points succeed
        {"data_mode": "streamed"},
        ("the data raised ValueError at (x, y) = (0, 0) (batch index 1): corrupt sample 13",),
    ),
    "a collate_fn raising": (
        lambda: DataLoader(Broken(), batch_size=BATCH, collate_fn=bad_collate),
        {},
        ("TypeError while caching the data (batch index 0): cannot stack ragged samples",),
    ),
    "a DataLoader worker raising": (
        lambda: DataLoader(Broken(13), batch_size=BATCH, num_workers=2),
        {},
        ("ValueError in DataLoader worker 1 while caching the data (batch index 1)", "sample 13;"),
    ),
    "an IterableDataset raising": (
        BrokenStream,
        {},
        ("OSError while caching the data (batch index 0): the shard server is down",),
    ),
    "a generator raising after two batches": (
        three_batches_then_fail,
        {},
        ("RuntimeError while caching the data (batch index 2): the stream ended badly",),
    ),
}


@pytest.mark.parametrize("case", DATA_FAILURES)
def test_the_datas_own_errors_say_where(case: str) -> None:
    """One line: which batch, which point (or "while caching the data"), the original's first
    line and the fix; the original is the cause."""
    make_data, options, expected = DATA_FAILURES[case]
    with pytest.raises(LosslandError) as info:
        lossland.surface(
            make(lambda: nn.Linear(4, 3)),
            make_data(),
            x="-1:1:5",
            batch_size=BATCH,
            progress=False,
            **options,
        )
    message = str(info.value)
    assert_one_line(message)
    for text in (*expected, "fix the Dataset's __getitem__, the collate_fn or the DataLoader"):
        assert text in message, message
    assert isinstance(info.value.__cause__, Exception)
    assert not isinstance(info.value.__cause__, LosslandError)


class Raising(nn.Module):
    """Raises on its forward number ``after + 1`` (counted outside the model), with a long
    message."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        budget = [after]

        def spend() -> bool:
            budget[0] -= 1
            return budget[0] < 0

        self.spend = spend

    def forward(self, x: Tensor) -> Tensor:
        if self.spend():
            raise FloatingPointError("the weights overflowed\nlayer 3, row 7")
        out: Tensor = self.lin(x)
        return out


def raising_loss(output: Any, batch: Any) -> Tensor:
    raise KeyError("logits")


MODEL_FAILURES: dict[str, tuple[Callable[[Path], object], tuple[str, ...], int]] = {
    "a forward raising at the 3rd point": (
        lambda out: lossland.surface(
            make(lambda: Raising(after=6)),
            (X, Y),
            x=AXIS,
            y=AXIS,
            batch_size=BATCH,
            progress=False,
            out=out,
        ),
        (
            "the model or loss raised FloatingPointError at (x, y) = (0.5, -1): the weights "
            "overflowed; fix the model or the loss",
            "2 of 9 points saved",
        ),
        2,
    ),
    "a forward raising at the 3rd group of K=3 points": (
        lambda out: lossland.surface(
            make(lambda: Raising(after=6)),
            (X, Y),
            x=AXIS,
            y=AXIS,
            batch_size=BATCH,
            progress=False,
            out=out,
            points_per_batch=3,
        ),
        ("FloatingPointError near (x, y) = (-1, 0.5): the weights overflowed;", "6 of 9"),
        6,
    ),
    "a loss raising at the first point": (
        lambda out: lossland.surface(
            make(lambda: nn.Linear(4, 3)),
            (X, Y),
            x=AXIS,
            y=AXIS,
            batch_size=BATCH,
            progress=False,
            out=out,
            evaluator=lossland.Evaluator(loss=raising_loss),
        ),
        ("raised KeyError at (x, y) = (-1, -1): 'logits'; check that the batches fit",),
        0,
    ),
    "a forward raising in a Hessian product": (
        lambda out: lossland.hessian_report(make(lambda: Raising(after=4)), (X, Y), batch_size=8),
        ("the model or loss raised FloatingPointError while computing the Hessian:",),
        -1,
    ),
    "a model factory raising": (
        lambda out: build_model(ModelSpec("test_trust_state:broken_factory", {})),
        ("the model factory 'test_trust_state:broken_factory' raised MemoryError while building",),
        -1,
    ),
}


def broken_factory() -> nn.Module:
    raise MemoryError("the weights do not fit\nin 2 GiB")


@pytest.mark.parametrize("case", MODEL_FAILURES)
def test_the_models_own_errors_say_where(case: str, tmp_path: Path) -> None:
    """One line naming the point, the original's first line and the fix; the original is the
    cause; the points computed before it are saved."""
    call, expected, saved = MODEL_FAILURES[case]
    out = tmp_path / "s.h5"
    with pytest.raises(LosslandError) as info:
        call(out)
    message = str(info.value)
    assert_one_line(message)
    for text in expected:
        assert text in message, message
    cause = info.value.__cause__
    assert isinstance(cause, Exception) and not isinstance(cause, LosslandError)
    if saved >= 0:
        assert int(Surface.load(out).done.sum()) == saved if saved else not out.exists()


# --- the same through the command line: --model pkg:factory --data pkg:factory ------------------

STATEKIT = """
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

GEN = torch.Generator().manual_seed(5)
X = torch.randn(24, 4, generator=GEN)
Y = torch.randint(0, 3, (24,), generator=GEN)
CALLS = [0]  # forwards in this process (not the model's state)


class Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.register_buffer("steps", torch.zeros(()))

    def forward(self, x):
        self.steps += 1
        CALLS[0] += 1
        if self.raise_after and CALLS[0] > self.raise_after:
            raise FloatingPointError("the weights overflowed\\nlayer 3")
        return self.lin(x) * self.steps


def model(kind="counter", raise_after=0):
    if kind == "broken":
        raise MemoryError("the weights do not fit\\nin 2 GiB")
    CALLS[0] = 0
    net = Counter()
    net.raise_after = raise_after
    return net


class Samples(Dataset):
    def __init__(self, fail):
        self.fail = fail

    def __len__(self):
        return len(X)

    def __getitem__(self, i):
        if self.fail in ("getitem", "worker") and i == 13:
            raise ValueError(f"corrupt sample {i}\\nthe rest")
        return X[i], Y[i]


def ragged(batch):
    raise TypeError("cannot stack ragged samples")


def data(fail="none"):
    if fail == "factory":
        raise OSError("no such shard\\nmore")
    if fail == "pair":
        return X, Y
    return DataLoader(
        Samples(fail),
        batch_size=8,
        num_workers=2 if fail == "worker" else 0,
        collate_fn=ragged if fail == "collate" else None,
    )


def bad_loss(logits, targets):
    raise KeyError("logits")
"""


@pytest.fixture(scope="module")
def statekit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """statekit.py on sys.path and a checkpoint of its counter model."""
    folder = tmp_path_factory.mktemp("statekit")
    (folder / "statekit.py").write_text(STATEKIT)
    sys.path.insert(0, str(folder))
    try:
        spec = ModelSpec("statekit:model", {"kind": "counter"})
        with torch.random.fork_rng():
            torch.manual_seed(0)
            ckpt = save_checkpoint(build_model(spec), folder / "counter.safetensors", spec=spec)
        yield {"folder": folder, "ckpt": ckpt}
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("statekit", None)


def statekit_args(kit: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "surface",
        str(kit["ckpt"]),
        "-o",
        str(out),
        "--model",
        "statekit:model",
        "--data",
        "statekit:data",
        "--x",
        "-1:1:3",
        "--y",
        "-1:1:3",
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


def test_a_stateful_model_from_the_command_line(
    statekit: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The note once, and the surface the API computes (itself checked point by point above)."""
    out = tmp_path / "s.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("always", LosslandWarning)  # the CLI prints it as a note
        code, lines, err = cli(capsys, statekit_args(statekit, out, "--data-arg", "fail=pair"))
    assert code == 0, err
    notes = [line for line in lines if NOTE in line]
    assert len(notes) == 1 and notes[0].startswith("lossland: note:") and "(steps)" in notes[0]
    import statekit as kit  # type: ignore[import-not-found]

    model, _ = load_model(statekit["ckpt"], spec="statekit:model")
    with pytest.warns(LosslandWarning, match=NOTE):
        api = lossland.surface(model, (kit.X, kit.Y), x="-1:1:3", y="-1:1:3", progress=False)
    np.testing.assert_array_equal(Surface.load(out).loss, api.loss)


CLI_FAILURES: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {
    "a Dataset raising": (
        ("--data-arg", "fail=getitem"),
        ("ValueError while caching the data (batch index 1): corrupt sample 13;",),
        -1,
    ),
    "a collate_fn raising": (
        ("--data-arg", "fail=collate"),
        ("TypeError while caching the data (batch index 0): cannot stack ragged samples",),
        -1,
    ),
    "DataLoader workers raising": (
        ("--data-arg", "fail=worker"),
        ("ValueError in DataLoader worker 1 while caching the data (batch index 1)",),
        -1,
    ),
    "the data factory raising": (
        ("--data-arg", "fail=factory"),
        ("the data factory 'statekit:data' raised OSError while building the data: no such",),
        -1,
    ),
    "the model factory raising": (
        ("--data-arg", "fail=pair", "--model-arg", "kind=broken"),
        ("the model factory 'statekit:model' raised MemoryError while building the model",),
        -1,
    ),
    "the forward raising at the 3rd point": (
        ("--data-arg", "fail=pair", "--model-arg", "raise_after=2"),  # one batch a point
        ("FloatingPointError at (x, y) = (1, -1): the weights overflowed;", "2 of 9 points"),
        2,
    ),
    "the loss raising at the first point": (
        ("--data-arg", "fail=pair", "--loss", "statekit:bad_loss"),
        ("raised KeyError at (x, y) = (-1, -1): 'logits'; check that the batches fit",),
        -1,
    ),
}


@pytest.mark.parametrize("case", CLI_FAILURES)
def test_user_code_failing_from_the_command_line(
    statekit: dict[str, Path], tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2, one line, no traceback (nor a worker's), the points before it kept, and a file
    the user had at the output path untouched when no point was computed."""
    extra, expected, saved = CLI_FAILURES[case]
    out = tmp_path / "s.h5"
    if saved < 0:
        out.write_bytes(b"the user's own file")
        extra = (*extra, "--overwrite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LosslandWarning)  # the counter's note, on stderr
        result = cli(capsys, statekit_args(statekit, out, *extra))
    one_error(*result, *expected)
    if saved < 0:
        assert out.read_bytes() == b"the user's own file"
    else:
        assert int(Surface.load(out).done.sum()) == saved


@pytest.mark.slow
@pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="no torch.distributed gloo",
)
def test_torchrun_ranks_compute_a_stateful_models_rows_as_one_process(
    statekit: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows split between two ranks, each rank's rows after others or alone: the same surface
    as one process."""
    two, one = tmp_path / "two.h5", tmp_path / "one.h5"
    extra = ("--data-arg", "fail=pair", "--checkpoint-every", "0", "--x", "-1:1:5")
    result = torchrun(
        statekit_args(statekit, two, *extra),
        nproc=2,
        environ=env(statekit["folder"]),
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert all(NOTE in line for line in lossland_lines(result.stderr))
    with warnings.catch_warnings(), torch_threads(1):
        warnings.simplefilter("ignore", LosslandWarning)
        code, _, err = cli(capsys, statekit_args(statekit, one, *extra))
    assert code == 0, err
    distributed, alone = Surface.load(two), Surface.load(one)
    assert distributed.attrs["processes"] == 2
    np.testing.assert_allclose(distributed.loss, alone.loss, rtol=1e-6)
