"""The table of what a grid point stores (``core.FIELDS``, ``core.SUMS``) against the code that
stores it: the reduction equals the contract's bit for bit, the sums are in the order the
contract packs them, and the fields are in the order the surface file writes them."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossland.core import FIELD, FIELDS, SUM, SUMS, Field, Values, reduce_sums
from lossland.engine import IGNORE_INDEX, Evaluator, finish_stats
from lossland.io import SeedStack, Surface, export

# --- the reduction: reduce_sums is finish_stats, bit for bit ----------------------------------


def _random_sums(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Sums a real point could hold: s any sign, n ≥ 1 per unit, m units, correct ≤ counted."""
    rng = np.random.default_rng(seed)
    m = rng.integers(1, 50, size=shape).astype(np.float64)
    n = m * rng.uniform(1.0, 30.0, size=shape)
    s = rng.normal(2.0, 1.5, size=shape) * n
    q = s * s / m * rng.uniform(1.0, 2.0, size=shape)
    counted = n.round()
    correct = (counted * rng.uniform(size=shape)).round()
    sums = [s, q, n, s * n / m, n * n / m, m, correct, counted]
    return np.stack(sums, axis=-1)


def _with(sums: np.ndarray, **values: float) -> np.ndarray:
    out = sums.copy()
    for name, value in values.items():
        out[..., SUM[name]] = value
    return out


BASE = _random_sums((6, 5), seed=1)
REDUCTIONS = {
    "random plane": BASE,
    "random line": _random_sums((9,), seed=2),
    "one point": _random_sums((), seed=3),
    "stack of planes": _random_sums((3, 4, 5), seed=4),
    "one unit (no standard error)": _with(BASE, units=1.0),
    "no units": _with(BASE, units=0.0),
    "a batch mean (NaN squares)": _with(BASE, loss_squares=np.nan),
    "no accuracy (NaN correct, counted)": _with(BASE, correct=np.nan, counted=np.nan),
    "nothing counted": _with(BASE, correct=0.0, counted=0.0),
    "all zero": np.zeros((4, len(SUMS))),
    "zero weight": _with(BASE, weight=0.0),
    "negative spread (rounding)": _with(BASE, loss_squares=0.0),
    "infinite loss": _with(BASE, loss_sum=np.inf, loss_squares=np.inf, loss_weight=np.inf),
    "NaN loss": _with(BASE, loss_sum=np.nan),
    "huge": BASE * 1e150,
    "tiny": BASE * 1e-300,
}


@pytest.mark.parametrize("case", REDUCTIONS)
def test_reduce_sums_is_finish_stats_bit_for_bit(case: str) -> None:
    sums = REDUCTIONS[case]
    values = reduce_sums(sums)
    mean, sem, acc = finish_stats(sums)
    assert list(values) == [f.name for f in FIELDS]
    expected = {"loss": mean, "acc": acc, "loss_sem": sem, "samples": sums[..., SUM["units"]]}
    for name, want in expected.items():
        got = values[name]
        assert isinstance(got, np.ndarray) and got.dtype == np.float64, name
        assert got.shape == sums.shape[:-1], name
        assert got.tobytes() == np.asarray(want, dtype=np.float64).tobytes(), name


def test_reduce_sums_of_lists_is_that_of_arrays() -> None:
    sums = REDUCTIONS["random line"]
    for name, values in reduce_sums(sums.tolist()).items():
        assert values.tobytes() == reduce_sums(sums)[name].tobytes()


@pytest.mark.parametrize("shape", [(), (3,), (2, 7), (len(SUMS) + 1,), (2, len(SUMS) - 1)])
def test_reduce_sums_refuses_a_vector_that_is_not_the_sums(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=f"the {len(SUMS)} SUMS"):
        reduce_sums(np.zeros(shape))


def test_the_tables_index_themselves() -> None:
    assert [SUMS[i].name for i in SUM.values()] == list(SUM)
    assert len(SUM) == len(SUMS) and list(FIELD) == [f.name for f in FIELDS]
    assert len({f.suffix for f in FIELDS}) == len(FIELDS)
    assert all(s.combine in ("sum", "max") for s in SUMS)


# --- the sums: SUMS is the order Evaluator.stats packs ----------------------------------------


class Tokens(nn.Module):
    """(B, T) token ids → (B, T, V) logits."""

    def __init__(self, vocab: int = 7) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, vocab)

    def forward(self, ids: Tensor) -> Tensor:
        logits: Tensor = self.embed(ids)
        return logits


def _token_batch() -> tuple[nn.Module, tuple[Tensor, Tensor], dict[str, float]]:
    """A language-model batch through the default loss and accuracy, and its sums by hand."""
    torch.manual_seed(0)
    model, ids = Tokens(), torch.randint(0, 7, (5, 6))
    targets = torch.randint(0, 7, (5, 6))
    targets[0, :4] = IGNORE_INDEX  # sequences of different counted lengths: n varies
    targets[2, 1] = IGNORE_INDEX
    with torch.no_grad():
        logits = model(ids)
    mask = targets != IGNORE_INDEX
    losses = F.cross_entropy(logits.flatten(0, 1), targets.clamp(min=0).flatten(), reduction="none")
    s = (losses.view(5, 6).double() * mask).sum(dim=1)
    n = mask.double().sum(dim=1)
    hits = (logits.argmax(dim=-1) == targets) & mask
    return model, (ids, targets), _by_hand(s, n, float(hits.sum()), float(mask.sum()))


def _by_hand(s: Tensor, n: Tensor, correct: float, counted: float) -> dict[str, float]:
    return {
        "loss_sum": float(s.sum()),
        "loss_squares": float((s * s).sum()),
        "weight": float(n.sum()),
        "loss_weight": float((s * n).sum()),
        "weight_squares": float((n * n).sum()),
        "units": float(len(s)),
        "correct": correct,
        "counted": counted,
    }


def _weighted_batch() -> tuple[nn.Module, tuple[Tensor, Tensor], Evaluator, dict[str, float]]:
    """A user loss of (sums, counts) and a user accuracy, chosen so every sum differs."""
    model = nn.Linear(3, 1)
    inputs, counts = torch.randn(4, 3), torch.tensor([1.0, 2.0, 3.0, 5.0])

    def loss(output: Tensor, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return output.squeeze(1).double() ** 2 + 1, batch[1]

    def accuracy(output: Tensor, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return torch.tensor(2.0), torch.tensor(9.0)

    with torch.no_grad():
        s = model(inputs).squeeze(1).double() ** 2 + 1
    evaluator = Evaluator(loss=loss, accuracy=accuracy, name="weighted")
    return model, (inputs, counts), evaluator, _by_hand(s, counts.double(), 2.0, 9.0)


def test_sums_are_in_the_order_the_contract_packs_them() -> None:
    model, batch, evaluator, expected = _weighted_batch()
    assert len(set(expected.values())) == len(SUMS), "every sum differs: the order is checked"
    with torch.no_grad():
        stats = evaluator.stats(evaluator.run(model, batch), batch).numpy()
    assert stats.shape == (len(SUMS),) and set(expected) == set(SUM)
    for name, value in expected.items():
        assert stats[SUM[name]] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_token_sums_by_name_through_the_default_loss() -> None:
    model, batch, expected = _token_batch()
    evaluator = Evaluator()
    with torch.no_grad():
        stats = evaluator.stats(evaluator.run(model, batch), batch).numpy()
    for name, value in expected.items():  # the contract sums a sequence's tokens in float32
        assert stats[SUM[name]] == pytest.approx(value, rel=1e-6), name
    # and the fields of that point: the token-weighted mean, the accuracy over counted tokens
    values = reduce_sums(stats)
    assert values["loss"] == pytest.approx(expected["loss_sum"] / expected["weight"], rel=1e-6)
    assert values["acc"] == pytest.approx(100 * expected["correct"] / expected["counted"])
    assert values["samples"] == 5


def test_a_batch_mean_has_nan_squares() -> None:
    """Sum("loss_squares")'s doc: a loss that returns a batch mean has no spread."""
    model, batch, _, _ = _weighted_batch()
    evaluator = Evaluator(loss=lambda output, batch: output.double().mean())
    with torch.no_grad():
        stats = evaluator.stats(evaluator.run(model, batch), batch).numpy()
    assert np.isnan(stats[SUM["loss_squares"]]) and stats[SUM["units"]] == 1
    assert np.isnan(reduce_sums(stats)["loss_sem"])


# --- the fields: FIELDS is the order the surface file and the exports hold ------------------


def _surface(*, ndim: int, stack: bool) -> Surface:
    y = None if ndim == 1 else np.linspace(-1, 1, 3)
    surface = Surface.empty(np.linspace(-1, 1, 4), y, split="test", attrs={"model": "m"})
    shape = surface.shape
    values = reduce_sums(_random_sums(shape, seed=5))
    surface.store(..., values["loss"], values["acc"], values["loss_sem"], values["samples"])
    seeds = None
    if stack:
        arrays = {f.name: np.stack([values[f.name]] * 2) for f in FIELDS if f.stacked}
        seeds = SeedStack(seeds=(0, 1), done=np.ones((2, *shape), bool), attrs=({}, {}), **arrays)
    return dataclasses.replace(
        surface,
        interpolated=np.zeros(shape, bool),
        trajectories={"run": np.zeros((3, 2))},
        stack=seeds,
    )


def _creation_order(path: Path) -> list[str]:
    """Every dataset of the file in the order it was created (object headers are allocated in
    creation order, so their addresses sort them)."""
    found: list[tuple[int, str]] = []
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                found.append((h5py.h5o.get_info(obj.id).addr, name))
                if isinstance(obj, h5py.Dataset)
                else None
            )
        )
    return [name for _, name in sorted(found)]


@pytest.mark.parametrize(("ndim", "stack"), [(1, False), (2, False), (2, True), (1, True)])
def test_fields_are_in_the_order_the_surface_file_holds_them(
    tmp_path: Path, ndim: int, stack: bool
) -> None:
    path = _surface(ndim=ndim, stack=stack).save(tmp_path / "s.h5")
    order = _creation_order(path)
    first = [f.dataset("test") for f in FIELDS if f.missing != "none"]
    last = [f.dataset("test") for f in FIELDS if f.missing == "none"]
    expected = ["xcoordinates", *(["ycoordinates"] if ndim == 2 else []), *first, "done", *last]
    expected += ["interpolated", "trajectories/run"]
    if stack:
        expected += [f"seeds/{f.dataset('test')}" for f in FIELDS if f.stacked] + ["seeds/done"]
    assert order == expected
    assert [n for n in order if n.startswith("test_")] == [f.dataset("test") for f in FIELDS]


def test_attribute_and_stacked_rows_are_todays_dataclass_fields() -> None:
    surface = [f.name for f in dataclasses.fields(Surface)]
    stack = [f.name for f in dataclasses.fields(SeedStack)]
    assert all(f.name in surface for f in FIELDS if f.attribute)
    assert [f.name for f in FIELDS if f.stacked] == [n for n in stack if n in FIELD]


def test_exported_rows_are_the_csv_columns_and_npz_arrays(tmp_path: Path) -> None:
    surface = _surface(ndim=2, stack=False)
    exported = [f.name for f in FIELDS if f.exported]
    with export(surface, tmp_path / "s.csv").open() as handle:
        assert next(csv.reader(handle)) == ["x", "y", *exported, "done"]
    with np.load(export(surface, tmp_path / "s.npz")) as arrays:
        names = list(arrays)
    assert names[: 2 + len(exported) + 1] == ["format", "x", *exported, "done"]
    assert not [f.name for f in FIELDS if not f.exported and f.name in names]


def _describe_line(surface: Surface, label: str) -> str | None:
    lines = [line for line in surface.describe().splitlines() if line.startswith(f"{label}:")]
    assert len(lines) <= 1
    return lines[0] if lines else None


SHOWN: dict[str, Values] = {
    "values": {"acc": np.array([12.5, 99.994, 7.0, np.nan]), "done": np.ones(4, bool)},
    "none finite": {"acc": np.full(4, np.nan), "done": np.ones(4, bool)},
    "none evaluated": {"acc": np.full(4, np.nan), "done": np.zeros(4, bool)},
    "one": {"acc": np.array([np.nan, 50.0, np.nan, np.nan]), "done": np.array([0, 1, 0, 0], bool)},
    "with inf": {"acc": np.array([np.inf, 3.0, -np.inf, 4.0]), "done": np.ones(4, bool)},
}


@pytest.mark.parametrize("case", SHOWN)
@pytest.mark.parametrize("field", [f for f in FIELDS if f.shown is not None], ids=lambda f: f.name)
def test_a_shown_field_is_the_line_describe_prints(case: str, field: Field) -> None:
    assert field.shown is not None
    arrays = SHOWN[case]
    surface = Surface.empty(np.linspace(-1, 1, 4), None, split="train")
    getattr(surface, field.name)[...] = arrays[field.name]
    surface.done[...] = arrays["done"]
    surface.loss[arrays["done"]] = 1.0
    line = field.shown.line(getattr(surface, field.name), evaluated=bool(arrays["done"].any()))
    assert line == _describe_line(surface, field.shown.label)
