"""The table of what a grid point stores (``core.FIELDS``, ``core.SUMS``) against the code that
stores it. Every test here is driven by the tables: a new row (a Sum in SUMS, a Field in FIELDS)
is covered without editing this file.

* the reduction equals the formulas it replaced, bit for bit; the contract packs SUMS in order;
* a run stores, for every row, what ``reduce_sums`` gives for the sums of a direct evaluation;
* every row survives the HDF5 file (and a file without it reads as its ``missing`` says), a
  resumed run, a seed stack (``seeds=2``, and its resume), a 2-rank torchrun, the csv and npz
  exports, and ``lossland info``.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from faultkit import env, lossland_lines, surface_args, torchrun, write_checkpoint, write_data
from helpers import run_cli, torch_threads
from lossland.analysis import describe
from lossland.cli import main
from lossland.core import FIELD, FIELDS, SUM, SUMS, Field, Values, reduce_sums
from lossland.engine import IGNORE_INDEX, Evaluator
from lossland.errors import LosslandError, SurfaceFileError
from lossland.io import SeedStack, Surface, export, read_npz
from lossland.run import surface
from lossland.show import page_data

STACKED = [f for f in FIELDS if f.stacked]
EXPORTED = [f for f in FIELDS if f.exported]
OPTIONAL = [f for f in FIELDS if f.missing == "none"]
SHOWN = [f for f in FIELDS if f.shown is not None]


def _ids(row: Field) -> str:
    return row.name


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on a shared two-core machine run far faster on one intra-op thread (and the
    same thread count keeps runs comparable bit for bit)."""
    with torch_threads(1):
        yield


# --- the reduction: reduce_sums is the formulas it replaced, bit for bit ----------------------


def _reference(sums: np.ndarray) -> dict[str, np.ndarray]:
    """The contract's reduction as it was written before the table (engine ``finish_stats``):
    R = Σs / Σn, its ratio-estimator standard error, accuracy in percent, and the units."""
    named = {name: np.asarray(sums, dtype=np.float64)[..., i] for name, i in SUM.items()}
    s, q, n = named["loss_sum"], named["loss_squares"], named["weight"]
    sn, nn_, m = named["loss_weight"], named["weight_squares"], named["units"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        spread = np.maximum(q - 2 * mean * sn + mean**2 * nn_, 0.0)
        sem = np.where(m > 1, np.sqrt(spread / (m * (m - 1))) / (n / m), np.nan)
        acc = 100.0 * named["correct"] / named["counted"]
    return {"loss": mean, "loss_sem": sem, "acc": acc, "samples": m}


def _random_sums(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Sums a real point could hold: s any sign, n ≥ 1 per unit, m units, correct ≤ counted;
    a sum the test does not know by name is any positive number."""
    rng = np.random.default_rng(seed)
    m = rng.integers(1, 50, size=shape).astype(np.float64)
    n = m * rng.uniform(1.0, 30.0, size=shape)
    s = rng.normal(2.0, 1.5, size=shape) * n
    counted = n.round()
    known = {
        "loss_sum": s,
        "loss_squares": s * s / m * rng.uniform(1.0, 2.0, size=shape),
        "weight": n,
        "loss_weight": s * n / m,
        "weight_squares": n * n / m,
        "units": m,
        "correct": (counted * rng.uniform(size=shape)).round(),
        "counted": counted,
    }
    sums = [known.get(row.name, rng.uniform(0.5, 3.0, size=shape)) for row in SUMS]
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
def test_reduce_sums_is_the_old_reduction_bit_for_bit(case: str) -> None:
    sums = REDUCTIONS[case]
    values = reduce_sums(sums)
    assert list(values) == [f.name for f in FIELDS]
    for name, got in values.items():
        assert isinstance(got, np.ndarray) and got.dtype == np.float64, name
        assert got.shape == sums.shape[:-1], name
    for name, want in _reference(sums).items():
        assert values[name].tobytes() == np.asarray(want, dtype=np.float64).tobytes(), name


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
    assert [f.name for f in FIELDS if f.missing == "error"] == ["loss"]  # the surface itself


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
    assert len(set(expected.values())) == len(expected), "every sum differs: the order is checked"
    with torch.no_grad():
        stats = evaluator.stats(evaluator.run(model, batch), batch).numpy()
    assert stats.shape == (len(SUMS),) and set(expected) <= set(SUM)
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


# --- the fields in a surface and its file -------------------------------------------------------


def _surface(*, ndim: int, stack: bool, seed: int = 5) -> Surface:
    """A surface (and a stack of two seeds) where every row holds its own random values."""
    y = None if ndim == 1 else np.linspace(-1, 1, 3)
    surface = Surface.empty(np.linspace(-1, 1, 4), y, split="test", attrs={"model": "m"})
    shape = surface.shape
    surface.store(..., reduce_sums(_random_sums(shape, seed=seed)))
    seeds = None
    if stack:
        other = reduce_sums(_random_sums(shape, seed=seed + 1))
        held: dict[str, np.ndarray | None] = {
            f.name: np.stack([surface.field(f.name), other[f.name]]) for f in STACKED
        }
        seeds = SeedStack.of((0, 1), held, np.ones((2, *shape), bool), ({}, {"seed": 1}))
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


def _file_order(prefix: str, rows: list[Field]) -> list[str]:
    """The rule the file keeps (today's dataset order): the rows a file must or may hold, then
    ``done``, then the optional rows."""
    must = [f"{prefix}{f.dataset('test')}" for f in rows if f.missing != "none"]
    optional = [f"{prefix}{f.dataset('test')}" for f in rows if f.missing == "none"]
    return [*must, f"{prefix}done", *optional]


@pytest.mark.parametrize(("ndim", "stack"), [(1, False), (2, False), (2, True), (1, True)])
def test_fields_are_in_the_order_the_surface_file_holds_them(
    tmp_path: Path, ndim: int, stack: bool
) -> None:
    path = _surface(ndim=ndim, stack=stack).save(tmp_path / "s.h5")
    expected = ["xcoordinates", *(["ycoordinates"] if ndim == 2 else [])]
    expected += [*_file_order("", list(FIELDS)), "interpolated", "trajectories/run"]
    if stack:
        expected += _file_order("seeds/", STACKED)
    assert _creation_order(path) == expected


def test_todays_order_of_the_file_is_kept(tmp_path: Path) -> None:
    """The four rows of today, as the reference readers and older lossland versions see them."""
    order = _creation_order(_surface(ndim=2, stack=True).save(tmp_path / "s.h5"))
    today = ["test_loss", "test_acc", "test_loss_sem", "done", "test_samples", "interpolated"]
    assert [name for name in order if name in today] == today
    seeds = ["seeds/test_loss", "seeds/test_acc", "seeds/test_loss_sem", "seeds/done"]
    assert [name for name in order if name in seeds] == seeds


def test_attribute_rows_are_the_dataclass_fields() -> None:
    surface = [f.name for f in dataclasses.fields(Surface)]
    stack = [f.name for f in dataclasses.fields(SeedStack)]
    assert all(f.name in surface for f in FIELDS if f.attribute)
    assert not [f.name for f in FIELDS if not f.attribute and f.name in surface]
    assert [f.name for f in STACKED if f.attribute] == [n for n in stack if n in FIELD]


@pytest.mark.parametrize("row", FIELDS, ids=_ids)
def test_a_row_survives_the_file_and_its_stack(tmp_path: Path, row: Field) -> None:
    surface = _surface(ndim=2, stack=True)
    back = Surface.load(surface.save(tmp_path / "s.h5"))
    stored, read = surface.field(row.name), back.field(row.name)
    assert stored is not None and read is not None and read.dtype == np.float64
    assert read.tobytes() == stored.tobytes()
    if row.attribute:
        assert getattr(back, row.name) is read
    assert surface.stack is not None and back.stack is not None
    if row.stacked:
        before, after = surface.stack.field(row.name), back.stack.field(row.name)
        assert before is not None and after is not None
        assert after.tobytes() == before.tobytes()
    else:
        with pytest.raises(LosslandError, match=f"no field '{row.name}'"):
            back.stack.field(row.name)


@pytest.mark.parametrize("row", FIELDS, ids=_ids)
def test_a_file_without_a_row_reads_as_its_missing_says(tmp_path: Path, row: Field) -> None:
    path = _surface(ndim=2, stack=True).save(tmp_path / "s.h5")
    with h5py.File(path, "a") as f:
        del f[row.dataset("test")]
        if row.stacked:
            del f[f"seeds/{row.dataset('test')}"]
    if row.missing == "error":
        with pytest.raises(SurfaceFileError, match=f"has no {row.dataset('test')} dataset"):
            Surface.load(path)
        return
    back = Surface.load(path)
    values = back.field(row.name)
    stacked = back.stack.field(row.name) if back.stack is not None and row.stacked else None
    if row.missing == "nan":
        assert values is not None and np.isnan(values).all() and values.shape == back.shape
        assert not row.stacked or (stacked is not None and np.isnan(stacked).all())
    else:  # not held: None, and written back without it
        assert values is None and stacked is None
        again = _creation_order(back.save(tmp_path / "again.h5"))
        assert row.dataset("test") not in again
        assert f"seeds/{row.dataset('test')}" not in again
    for other in FIELDS:  # the other rows are read as they are
        if other is not row:
            assert back.field(other.name) is not None, other.name


def test_store_takes_named_values_and_refuses_unknown_ones() -> None:
    surface = Surface.empty(np.linspace(-1, 1, 3), None, split="train")
    values = reduce_sums(_random_sums((2,), seed=9))
    surface.store(np.array([0, 2]), values)
    assert surface.done.tolist() == [True, False, True]
    for row in FIELDS:
        held = surface.field(row.name)
        assert held is not None
        assert held[[0, 2]].tobytes() == values[row.name].tobytes(), row.name
        assert np.isnan(held[1]), row.name
    with pytest.raises(LosslandError, match="no field 'los'"):
        surface.store(1, {**values, "los": np.ones(1)})
    needed = [f.name for f in FIELDS if f.missing == "error"]
    with pytest.raises(LosslandError, match=f"no '{needed[0]}' to store"):
        surface.store(1, {k: v for k, v in values.items() if k not in needed})
    with pytest.raises(LosslandError, match="no field 'los'"):
        surface.field("los")
    assert not surface.done[1]


# --- every row through real runs ----------------------------------------------------------------

GRID: dict[str, Any] = {"x": "-1:1:5", "y": "-1:1:3", "progress": False, "device": "cpu"}
BATCH = 16  # tiny_data's 40 samples in three batches: the rows see more than one batch


def _direct(model: nn.Module, data: tuple[Tensor, Tensor]) -> Values:
    """The fields of the model itself (the grid's origin) from a plain loop over the batches:
    each sum combined across them as its row of SUMS says."""
    evaluator, total = Evaluator(), None
    with torch.no_grad():
        for start in range(0, len(data[0]), BATCH):
            batch = (data[0][start : start + BATCH], data[1][start : start + BATCH])
            sums = evaluator.stats(evaluator.run(model, batch), batch).numpy()
            if total is None:
                total = sums
                continue
            total = np.array(
                [
                    max(a, b) if row.combine == "max" else a + b
                    for row, a, b in zip(SUMS, total, sums, strict=True)
                ]
            )
    assert total is not None
    return reduce_sums(total)


@pytest.fixture(scope="module")
def model_and_data() -> tuple[nn.Module, tuple[Tensor, Tensor]]:
    from conftest import tiny_net

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = tiny_net()
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(16, 1, 8, 8) * 2 + 0.5)
    generator = torch.Generator().manual_seed(1)
    data = torch.randn(40, 1, 8, 8, generator=generator)
    return model.eval(), (data, torch.randint(0, 3, (40,), generator=generator))


@pytest.fixture(scope="module")
def runs(
    model_and_data: tuple[nn.Module, tuple[Tensor, Tensor]],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Surface]:
    """One plane computed whole, the same plane resumed from a file with only its first row
    done, and a stack of two seeds computed and then resumed from its file."""
    model, data = model_and_data
    folder = tmp_path_factory.mktemp("fields")
    with torch_threads(1):
        whole = surface(model, data, batch_size=BATCH, out=folder / "whole.h5", **GRID)
        _first_row_only(Surface.load(folder / "whole.h5")).save(folder / "resumed.h5")
        resumed = surface(model, data, batch_size=BATCH, out=folder / "resumed.h5", **GRID)
        seeds = surface(model, data, batch_size=BATCH, seeds=2, out=folder / "seeds.h5", **GRID)
        again = surface(model, data, batch_size=BATCH, seeds=2, out=folder / "seeds.h5", **GRID)
    return {
        "whole": whole,
        "whole file": Surface.load(folder / "whole.h5"),
        "resumed": resumed,
        "resumed file": Surface.load(folder / "resumed.h5"),
        "seeds": seeds,
        "seeds file": Surface.load(folder / "seeds.h5"),
        "seeds resumed": again,
    }


def _first_row_only(s: Surface) -> Surface:
    """The surface as a run interrupted after its first row: the rest not done, and NaN."""
    s.done[1:] = False
    for row in FIELDS:
        held = s.field(row.name)
        if held is not None:
            held[1:] = np.nan
    return s


def _field(surface: Surface, row: Field) -> np.ndarray:
    values = surface.field(row.name)
    assert values is not None, f"{row.name} is not held"
    return values


@pytest.mark.parametrize("row", FIELDS, ids=_ids)
def test_a_run_stores_each_row_of_its_sums(
    model_and_data: tuple[nn.Module, tuple[Tensor, Tensor]],
    runs: dict[str, Surface],
    row: Field,
) -> None:
    whole = runs["whole"]
    assert whole.complete and np.isfinite(_field(whole, row)).all()
    at = (int(np.flatnonzero(whole.y == 0)[0]), int(np.flatnonzero(whole.x == 0)[0]))
    direct = _direct(*model_and_data)[row.name]
    assert _field(whole, row)[at] == pytest.approx(float(direct), rel=1e-6, abs=1e-12)
    assert _field(runs["whole file"], row).tobytes() == _field(whole, row).tobytes()


@pytest.mark.parametrize("row", FIELDS, ids=_ids)
def test_a_resumed_run_keeps_and_completes_each_row(runs: dict[str, Surface], row: Field) -> None:
    whole = _field(runs["whole"], row)
    for name in ("resumed", "resumed file"):
        assert runs[name].complete
        assert _field(runs[name], row).tobytes() == whole.tobytes(), name


@pytest.mark.parametrize("row", FIELDS, ids=_ids)
def test_a_seed_stack_holds_each_stacked_row(runs: dict[str, Surface], row: Field) -> None:
    for name in ("seeds", "seeds file", "seeds resumed"):
        s = runs[name]
        assert s.stack is not None and s.stack.seeds == (0, 1) and s.stack.complete, name
        if not row.stacked:
            with pytest.raises(LosslandError, match=f"no field '{row.name}'"):
                s.stack.field(row.name)
            continue
        stacked = s.stack.field(row.name)
        assert stacked is not None and stacked.shape == (2, *s.shape), name
        assert stacked[0].tobytes() == _field(s, row).tobytes(), name  # seed 0 is the surface
        assert stacked[0].tobytes() == _field(runs["whole"], row).tobytes(), name
        assert np.isfinite(stacked).all() and not np.array_equal(stacked[0], stacked[1]), name
    resumed, first = runs["seeds resumed"].stack, runs["seeds"].stack
    assert resumed is not None and first is not None
    assert all(a["points_computed"] == 0 for a in resumed.attrs)  # restored, not recomputed
    if row.stacked:
        assert _held(resumed, row).tobytes() == _held(first, row).tobytes()


def _held(stack: SeedStack, row: Field) -> np.ndarray:
    values = stack.field(row.name)
    assert values is not None
    return values


# --- exports and info -----------------------------------------------------------------------


def _csv_columns(path: Path) -> dict[str, list[str]]:
    with path.open() as handle:
        rows = list(csv.reader(handle))
    return {name: [r[i] for r in rows[1:]] for i, name in enumerate(rows[0])}


@pytest.mark.parametrize("row", FIELDS, ids=_ids)
def test_each_exported_row_is_a_csv_column_and_an_npz_array(
    runs: dict[str, Surface], tmp_path: Path, row: Field
) -> None:
    s = runs["whole file"]
    columns = _csv_columns(export(s, tmp_path / "s.csv"))
    assert list(columns) == ["x", "y", *(f.name for f in EXPORTED), "done"]
    npz = export(s, tmp_path / "s.npz")
    with np.load(npz) as arrays:
        names = list(arrays)
        held = arrays.get(row.name)
    assert names[: 3 + len(EXPORTED)] == ["format", "x", *(f.name for f in EXPORTED), "done"]
    back = read_npz(npz)
    if not row.exported:
        assert row.name not in columns and held is None
        read = back.field(row.name)
        assert read is None if row.missing == "none" else np.isnan(_field(back, row)).all()
        return
    values = _field(s, row).ravel()
    assert np.array([float(v) for v in columns[row.name]]).tobytes() == values.tobytes()
    assert held is not None and held.tobytes() == _field(s, row).tobytes()
    assert _field(back, row).tobytes() == _field(s, row).tobytes()


@pytest.mark.parametrize("held", ["every row", "no optional row"])
def test_info_shows_each_shown_row(
    runs: dict[str, Surface], tmp_path: Path, capsys: pytest.CaptureFixture[str], held: str
) -> None:
    s = runs["whole file"]
    if held == "no optional row":
        s = dataclasses.replace(s, **_without_optional(s))
    code, out, err = run_cli(["info", s.save(tmp_path / "s.h5")], capsys)
    assert code == 0, err
    values, lines = s.values(), out.splitlines()
    for row in SHOWN:
        assert row.shown is not None
        shown = values.shown.get(row.name)
        if shown is None:  # a row the file does not hold: no line
            assert row.missing == "none" and s.field(row.name) is None, row.name
            assert not [line for line in lines if line.startswith(f"{row.shown.label}:")]
            continue
        line = row.shown.line(shown, evaluated=bool(values.done.any()))
        assert line is not None and line in lines, (row.name, out)


def _without_optional(s: Surface) -> dict[str, Any]:
    """The keyword arguments that drop every optional row from a surface."""
    attributes = {f.name: None for f in OPTIONAL if f.attribute}
    extra = {k: v for k, v in s.extra.items() if FIELD[k].missing != "none"}
    return {**attributes, "extra": extra}


def _describe_line(surface: Surface, label: str) -> str | None:
    lines = [line for line in describe(surface).splitlines() if line.startswith(f"{label}:")]
    assert len(lines) <= 1
    return lines[0] if lines else None


LINES: dict[str, tuple[list[float], list[bool]]] = {  # a shown row's values, done
    "values": ([12.5, 99.994, 7.0, np.nan], [True] * 4),
    "none finite": ([np.nan] * 4, [True] * 4),
    "none evaluated": ([np.nan] * 4, [False] * 4),
    "one": ([np.nan, 50.0, np.nan, np.nan], [False, True, False, False]),
    "with inf": ([np.inf, 3.0, -np.inf, 4.0], [True] * 4),
}


@pytest.mark.parametrize("case", LINES)
@pytest.mark.parametrize("row", SHOWN, ids=_ids)
def test_a_shown_row_is_the_line_describe_prints(case: str, row: Field) -> None:
    assert row.shown is not None
    values, done = (np.array(v) for v in LINES[case])
    surface = Surface.empty(np.linspace(-1, 1, 4), None, split="train")
    _field(surface, row)[...] = values
    surface.done[...] = done
    surface.loss[done] = 1.0
    line = row.shown.line(surface.values().shown[row.name], evaluated=bool(done.any()))
    assert line == _describe_line(surface, row.shown.label)


@pytest.mark.parametrize("row", SHOWN, ids=_ids)
def test_a_shown_row_is_in_the_viewers_hover(row: Field) -> None:
    """The viewer's page holds every shown row the surface holds, on the drawn grid (decreasing
    axes flipped): accuracy as ``acc``, the others in ``fields`` with their label and format."""
    assert row.shown is not None
    surface = Surface.empty(np.array([1.0, 0.0, -1.0]), np.array([-1.0, 1.0]), split="train")
    values = np.arange(6.0).reshape(2, 3) + 0.25
    surface.store(..., {"loss": np.ones((2, 3)), row.name: values})
    data = page_data(surface, title="t")
    shown = values[:, ::-1].tolist()  # x is decreasing: the page draws it increasing
    if row.name == "acc":
        assert data["acc"] == shown and data["fields"] == []
        return
    (entry,) = [f for f in data["fields"] if f["label"] == row.shown.label]
    assert entry == {
        "label": row.shown.label,
        "fmt": row.shown.fmt,
        "unit": row.shown.unit,
        "z": shown,
    }


# --- a 2-rank torchrun: every row crosses the ranks' exchange ---------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="no torch.distributed gloo"
)
def test_two_ranks_store_each_row_as_one_process(tmp_path: Path) -> None:
    """Rank 0 resumes a file whose first row is done and shares it; rank 1's rows reach rank 0
    as packed sums: every row of the file equals the one-process run's."""
    data = write_data(tmp_path / "data", n=48)
    ckpt = write_checkpoint(tmp_path / "m.safetensors")
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    extra = ("--batch-size", "16", "--checkpoint-every", "0")
    assert main(surface_args(ckpt, one, data, *extra, grid="-1:1:5")) == 0
    _first_row_only(Surface.load(one)).save(two)
    result = torchrun(
        surface_args(ckpt, two, data, *extra, grid="-1:1:5"), nproc=2, environ=env(), timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert lossland_lines(result.stderr) == []
    reference, distributed = Surface.load(one), Surface.load(two)
    assert distributed.complete and distributed.attrs["processes"] == 2
    for row in FIELDS:
        want, got = reference.field(row.name), distributed.field(row.name)
        assert want is not None and got is not None, row.name
        np.testing.assert_array_equal(got, want, err_msg=row.name)
