"""What a grid point stores: the per-batch sums the evaluation contract adds up (:data:`SUMS`)
and the values a surface keeps per point, computed from them (:data:`FIELDS`).

Both are tables, read in order: the engine fills one ``(len(SUMS),)`` float64 vector per batch
in :data:`SUMS` order and adds them up per point; :func:`reduce_sums` turns the summed vectors
into one array per field; the surface file, the seed stack, the exports and the viewer iterate
:data:`FIELDS`. Results travel as :data:`Values` (field name → array), never by position.

Adding a statistic is a row of :data:`FIELDS` with its reducer (plus a :class:`Sum`, filled in
``engine._contract.Evaluator.stats``, when it needs a new per-batch number).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

Values = dict[str, np.ndarray]  # results travel as {field name: array}
Sums = Mapping[str, np.ndarray]  # {sum name: array}: the summed vectors, one entry per Sum


@dataclass(frozen=True)
class Sum:
    """One per-batch number the evaluation contract adds up over a point's batches.

    A unit is a sample (or a sequence of a language model); ``s`` its summed loss and ``n``
    its weight (1 per sample, or its counted tokens).
    """

    name: str
    doc: str
    combine: Literal["sum", "max"] = "sum"  # how a point's batches combine


# The order of the packed (..., len(SUMS)) vectors: in memory, in the torchrun payload, and
# Evaluator.stats's. Keep it; a new sum goes at the end.
SUMS: tuple[Sum, ...] = (
    Sum("loss_sum", "Σ s: the units' summed losses"),
    Sum("loss_squares", "Σ s²: NaN when the loss is a batch mean (no spread to measure)"),
    Sum("weight", "Σ n: the units' weights (samples, or counted tokens)"),
    Sum("loss_weight", "Σ s·n"),
    Sum("weight_squares", "Σ n²"),
    Sum("units", "m: the units (samples or sequences) a point averaged over"),
    Sum("correct", "Σ correct predictions (NaN where accuracy is not defined)"),
    Sum("counted", "Σ predictions counted for accuracy"),
)
SUM: dict[str, int] = {s.name: i for i, s in enumerate(SUMS)}  # name → index in a packed vector


@dataclass(frozen=True)
class Shown:
    """How ``info``/``describe`` and the viewer show a field: its label, number format, unit."""

    label: str  # "accuracy"
    fmt: str  # ".2f"
    unit: str = ""  # " %"

    def line(self, values: np.ndarray, *, evaluated: bool) -> str | None:
        """``"accuracy: min 9.50 %, max 71.25 %"`` over the finite ``values``; ``"accuracy: not
        recorded"`` when none is finite but some point was ``evaluated``; else None."""
        finite = np.asarray(values)[np.isfinite(values)]
        if finite.size:
            low, high = finite.min(), finite.max()
            return (
                f"{self.label}: min {low:{self.fmt}}{self.unit}, max {high:{self.fmt}}{self.unit}"
            )
        return f"{self.label}: not recorded" if evaluated else None


Missing = Literal["error", "nan", "none"]  # a file without the field: refuse / NaN-filled / None


@dataclass(frozen=True, kw_only=True)
class Field:
    """One value per grid point, float64, NaN where not evaluated (every row)."""

    name: str  # the key in Values, the npz array, the CSV column
    suffix: str  # the HDF5 dataset <split>_<suffix> (and seeds/<split>_<suffix>)
    reduce: Callable[[Sums], np.ndarray]  # a point's named sums → its value
    missing: Missing  # how a surface file without it reads
    attribute: bool = False  # a Surface dataclass field (the first four rows), else Surface.extra
    stacked: bool = True  # kept per seed in the seed stack
    exported: bool = True  # a CSV column and an npz array
    shown: Shown | None = None  # a line of ``info`` and a row of the viewer's hover

    def dataset(self, split: str) -> str:
        """Its HDF5 dataset name for ``split``: ``train_loss``."""
        return f"{split}_{self.suffix}"


# The reducers: the ratio estimator of the mean loss R = Σs / Σn and its standard error over
# the m units, √(Σ (s − R·n)² / (m (m − 1))) / n̄ with n̄ = Σn / m (for n = 1 the usual s/√m),
# and the accuracy in percent. Called by reduce_sums under its np.errstate.


def _mean(s: Sums) -> np.ndarray:
    mean: np.ndarray = s["loss_sum"] / s["weight"]
    return mean


def _sem(s: Sums) -> np.ndarray:
    mean = s["loss_sum"] / s["weight"]
    spread = np.maximum(
        s["loss_squares"] - 2 * mean * s["loss_weight"] + mean**2 * s["weight_squares"], 0.0
    )
    m = s["units"]
    sem: np.ndarray = np.where(m > 1, np.sqrt(spread / (m * (m - 1))) / (s["weight"] / m), np.nan)
    return sem


def _accuracy(s: Sums) -> np.ndarray:
    acc: np.ndarray = 100.0 * s["correct"] / s["counted"]
    return acc


def _units(s: Sums) -> np.ndarray:
    return s["units"]


# The order of the surface file's datasets (see io._surface_file): the rows that a file must
# or may hold (missing "error"/"nan") in this order, then ``done``, then the "none" rows.
FIELDS: tuple[Field, ...] = (
    Field(name="loss", suffix="loss", reduce=_mean, missing="error", attribute=True),
    Field(
        name="acc",
        suffix="acc",
        reduce=_accuracy,
        missing="nan",
        attribute=True,
        shown=Shown("accuracy", ".2f", " %"),
    ),
    Field(name="loss_sem", suffix="loss_sem", reduce=_sem, missing="nan", attribute=True),
    # Fewer than the set where a standard-error target stopped a point early.
    Field(
        name="samples",
        suffix="samples",
        reduce=_units,
        missing="none",
        attribute=True,
        stacked=False,
        exported=False,
    ),
)
FIELD: dict[str, Field] = {f.name: f for f in FIELDS}


def reduce_sums(sums: np.ndarray) -> Values:
    """Summed vectors (..., len(SUMS)) → ``{field name: (...) float64 array}`` for every row of
    :data:`FIELDS` (0/0 and the like give NaN or inf, never a warning)."""
    array = np.asarray(sums, dtype=np.float64)
    if array.shape[-1:] != (len(SUMS),):
        raise ValueError(f"sums shaped {array.shape}: the last axis holds the {len(SUMS)} SUMS")
    named = dict(zip(SUM, np.moveaxis(array, -1, 0), strict=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {f.name: np.asarray(f.reduce(named)) for f in FIELDS}
