"""How data becomes batches (engine/_inputs): every kind of input against the mean computed by
hand over all samples, refusals in one line, a fixed order at every point, persistent
workers, and BatchNorm statistics of the evaluation set whatever its batching."""

from __future__ import annotations

import copy
import itertools
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, SubsetRandomSampler, TensorDataset

import lossland
from lossland.engine import eval_data
from lossland.errors import LosslandError, LosslandWarning

datasets = pytest.importorskip("datasets")

N, BATCH = 40, 16


class Net(nn.Module):
    """An MLP that takes ``x`` (and ignores ``labels``, as a Hugging Face model would use them)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(x)


X = torch.randn(N, 5, generator=torch.Generator().manual_seed(1))
Y = torch.randint(0, 3, (N,), generator=torch.Generator().manual_seed(2))


class Rows:
    """Indexable, sized, not a torch Dataset: yields samples."""

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return X[i], Y[i]


class Stream(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(zip(X, Y, strict=True))


class Reshuffling:
    """A batch sampler whose every pass is another seeded permutation (like length bucketing)."""

    def __init__(self) -> None:
        self.passes = 0

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(N, generator=torch.Generator().manual_seed(self.passes)).tolist()
        self.passes += 1
        return iter([order[i : i + BATCH] for i in range(0, N, BATCH)])

    def __len__(self) -> int:
        return (N + BATCH - 1) // BATCH


def _hf(formatted: bool) -> Any:
    ds = datasets.Dataset.from_dict({"x": X.tolist(), "labels": Y.tolist()})
    return ds.with_format("torch") if formatted else ds


KINDS: dict[str, Any] = {  # name: (a maker of the data, does it warn?)
    "pair": (lambda: (X, Y), False),
    "numpy pair": (lambda: (X.numpy(), Y.numpy()), False),
    "dict of columns": (lambda: {"x": X, "labels": Y}, False),
    "TensorDataset": (lambda: TensorDataset(X, Y), False),
    "datasets.Dataset": (lambda: _hf(False), False),
    "datasets.Dataset torch format": (lambda: _hf(True), False),
    "list of sample dicts": (lambda: [{"x": X[i], "labels": Y[i]} for i in range(N)], False),
    "list of sample tuples": (lambda: [(X[i], Y[i]) for i in range(N)], False),
    "list of Python samples": (
        lambda: [{"x": X[i].tolist(), "labels": int(Y[i])} for i in range(N)],
        False,
    ),
    "indexable rows": (Rows, False),
    "list of batches": (lambda: [(X[i : i + 7], Y[i : i + 7]) for i in range(0, N, 7)], False),
    "DataLoader": (lambda: DataLoader(TensorDataset(X, Y), batch_size=BATCH), False),
    "DataLoader shuffle": (
        lambda: DataLoader(TensorDataset(X, Y), batch_size=BATCH, shuffle=True),
        True,
    ),
    "DataLoader random sampler": (
        lambda: DataLoader(
            TensorDataset(X, Y), batch_size=BATCH, sampler=SubsetRandomSampler(range(N))
        ),
        True,
    ),
    "DataLoader bucketing batch_sampler": (
        lambda: DataLoader(TensorDataset(X, Y), batch_sampler=Reshuffling()),
        True,
    ),
    "DataLoader with a worker": (
        lambda: DataLoader(TensorDataset(X, Y), batch_size=BATCH, num_workers=1),
        False,
    ),
    "generator of batches": (lambda: ((X[i : i + 9], Y[i : i + 9]) for i in range(0, N, 9)), False),
    "generator of samples": (lambda: ((X[i], Y[i]) for i in range(N)), False),
    "IterableDataset of samples": (Stream, False),
}


def _truth(net: nn.Module) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(net(X), Y))


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_of_input_gives_the_mean_over_all_samples(kind: str) -> None:
    make, warns = KINDS[kind]
    net = Net().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = lossland.surface(net, make(), x="0:0:1", batch_size=BATCH, progress=False, device="cpu")
    warned = [w for w in caught if issubclass(w.category, LosslandWarning)]
    assert bool(warned) == warns, [str(w.message) for w in warned]
    assert s.attrs["samples"] == N
    assert float(s.loss[0]) == pytest.approx(_truth(net), rel=1e-6)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ("text", "cannot evaluate on str"),
        (None, "cannot evaluate on None"),
        (5, "cannot evaluate on int"),
        ({1, 2, 3}, "cannot evaluate on set"),
        ({"x": [1.0, 2.0]}, "mapping that is not of equal-length tensors"),
        ({"x": torch.randn(4, 5), "labels": torch.zeros(3, dtype=torch.long)}, "lengths [3, 4]"),
        ([(X[:4], Y[:4]), (X[0], Y[0])], "mixes samples and batches"),
        ([{"x": [0.1] * 5, "labels": 0}, {"x": [0.1] * 4, "labels": 1}], "pad them"),
        ([], "empty"),
        (iter([]), "empty"),
        (datasets.DatasetDict({"train": _hf(False)}), "pass one of them, e.g. data['train']"),
    ],
)
def test_data_lossland_cannot_batch_is_refused_in_one_line(data: Any, words: str) -> None:
    with pytest.raises(LosslandError) as info:
        lossland.surface(Net(), data, x="0:0:1", progress=False)
    message = str(info.value)
    assert words in message and "\n" not in message, message


def _raising() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    raise KeyError("column 'x'")
    yield X, Y


class _RaisingIterable:
    def __iter__(self) -> Iterator[Any]:
        raise OSError("disk gone")


@pytest.mark.parametrize(
    ("data", "words"),
    [(_raising(), "raised KeyError"), (_RaisingIterable(), "raised OSError")],
)
def test_what_a_users_iterable_raises_first_is_the_datas_error(data: Any, words: str) -> None:
    with pytest.raises(LosslandError) as info:
        lossland.surface(Net(), data, x="0:0:1", progress=False)
    assert words in str(info.value) and "\n" not in str(info.value)


def _samples_generator() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    return ((X[i], Y[i]) for i in range(N))


def _batches_generator() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    return ((X[i : i + 8], Y[i : i + 8]) for i in range(0, N, 8))


@pytest.mark.parametrize("make", [_samples_generator, _batches_generator])
@pytest.mark.parametrize("budget", [0.25, 1e-12])
def test_a_generator_subset_is_read_once_and_every_point_sees_it(make: Any, budget: float) -> None:
    """A generator wrapped with samples=N was taken for re-readable: with data over the budget
    it was streamed and every point after the first saw no data."""
    net = Net().eval()
    d = lossland.random_directions(net, seed=3)
    s = lossland.surface(
        net, make(), x="-1:1:3", directions=d, samples=24, cache_fraction=budget, progress=False
    )
    assert s.attrs["data_mode"] == "cached" and s.attrs["samples"] == 24
    for j, alpha in enumerate(s.x):
        moved = copy.deepcopy(net)
        with torch.no_grad():
            for name, p in moved.named_parameters():
                p.add_(d.x[name], alpha=float(alpha))
            expected = float(F.cross_entropy(moved(X[:24]), Y[:24]))
        assert float(s.loss[j]) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(LosslandError, match="one-shot"):
        lossland.surface(net, make(), x="0:0:1", samples=24, data_mode="streamed", progress=False)


def test_a_small_cache_fraction_streams_re_readable_data() -> None:
    data = eval_data(
        TensorDataset(X, Y), batch_size=8, device=torch.device("cpu"), cache_fraction=1e-12
    )
    assert data.mode == "streamed" and data.samples == N
    with pytest.raises(LosslandError, match="cache_fraction"):
        lossland.surface(Net(), (X, Y), x="0:0:1", cache_fraction=1.5, progress=False)


class BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_a_shuffling_batch_sampler_is_frozen_to_its_first_pass() -> None:
    """bn="train": each point's loss depends on which samples share a batch, so every point
    must see the same batches; streamed, a re-shuffling sampler is read once for its order."""
    net = BNNet().double()
    d = lossland.random_directions(net, seed=4)
    first = next(iter([list(Reshuffling())]))
    runs = []
    for _ in range(2):
        loader = DataLoader(TensorDataset(X.double(), Y), batch_sampler=Reshuffling())
        with pytest.warns(LosslandWarning, match="first pass"):
            runs.append(
                lossland.surface(
                    net,
                    loader,
                    x="-1:1:5",
                    directions=d,
                    bn="train",
                    dtype="float64",
                    data_mode="streamed",
                    progress=False,
                )
            )
    np.testing.assert_array_equal(runs[0].loss, runs[1].loss)
    train = copy.deepcopy(net).train()
    for module in train.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.track_running_stats = False
    with torch.no_grad():
        for name, p in train.named_parameters():
            p.add_(d.x[name].double(), alpha=float(runs[0].x[1]))
        total = sum(
            float(F.cross_entropy(train(X[b].double()), Y[b], reduction="sum")) for b in first
        )
    assert float(runs[0].loss[1]) == pytest.approx(total / N, rel=1e-12)


def test_loader_workers_start_once_for_the_whole_run(tmp_path: Path) -> None:
    starts = tmp_path / "starts"

    def started(_: int) -> None:
        with starts.open("a") as f:
            f.write("x")

    loader = DataLoader(TensorDataset(X, Y), batch_size=8, num_workers=1, worker_init_fn=started)
    data = eval_data(loader, batch_size=8, device=torch.device("cpu"), mode="streamed")
    for _ in range(3):  # three grid points
        assert sum(len(b[1]) for b in data.batches()) == N
    assert starts.read_text() == "x"


# --- BatchNorm recompute: the evaluation set's statistics, whatever the batching -------------


class Deep(nn.Module):
    """Two BatchNorm layers in series (the second's input depends on the first's statistics)
    and a 2-D one, so that the order of measurement matters."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.bn0 = nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.fc1, self.bn1 = nn.Linear(48, 6), nn.BatchNorm1d(6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn0(self.conv(x))).flatten(1)
        return self.fc2(F.relu(self.bn1(self.fc1(h))))


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return torch.randn(70, 2, 4, 4, generator=g) * 3 + 2, torch.randint(0, 3, (70,), generator=g)


def _by_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Each BatchNorm in turn gets torch.var/mean of its whole-set input (one forward of all
    70 samples, eval mode, the earlier layers already set): an independent computation."""
    net = copy.deepcopy(model).eval()
    for norm in [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]:
        seen: list[torch.Tensor] = []
        handle = norm.register_forward_pre_hook(lambda m, i, seen=seen: seen.append(i[0]))
        with torch.no_grad():
            net(x)
        handle.remove()
        channels = seen[0].transpose(0, 1).reshape(seen[0].shape[1], -1)
        assert norm.running_mean is not None and norm.running_var is not None
        norm.running_mean.copy_(channels.mean(dim=1))
        norm.running_var.copy_(channels.var(dim=1, unbiased=True))
    with torch.no_grad():
        return float(F.cross_entropy(net(x), y))


@pytest.mark.parametrize("model", [BNNet, Deep])
@pytest.mark.parametrize("batches", [[70], [32, 32, 6], [7] * 10, [69, 1], [50, 20]])
@pytest.mark.parametrize("mode", ["cached", "streamed"])
def test_recomputed_batchnorm_statistics_do_not_depend_on_the_batching(
    model: Any, batches: list[int], mode: str
) -> None:
    net = model().double().eval()
    x, y = _images()
    x = x.double() if model is Deep else x.double().flatten(1)[:, :5]
    edges = np.cumsum([0, *batches])
    data = [(x[a:b], y[a:b]) for a, b in itertools.pairwise(edges)]
    s = lossland.surface(
        net, data, x="0:0:1", bn="recompute", dtype="float64", data_mode=mode, progress=False
    )
    assert float(s.loss[0]) == pytest.approx(_by_hand(net, x, y), rel=1e-12, abs=0)
