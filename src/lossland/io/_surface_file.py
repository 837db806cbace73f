"""The ``Surface`` result and its HDF5 file (readable by the reference implementation's readers).

Layout: ``xcoordinates`` (nx,), ``ycoordinates`` (ny,) for 2-D; one float64 dataset
``<split>_<suffix>`` per row of :data:`lossland.core.FIELDS` (``<split>_loss``, ``<split>_acc``,
``<split>_loss_sem``, ``<split>_samples``) shaped (ny, nx) with Z[i, j] at (x[j], y[i]), or (nx,)
for 1-D; ``done`` (uint8 mask of evaluated points); ``trajectories/<name>`` (T, 2) projected
training paths; attributes for everything needed to reproduce the run. The file on disk is
always complete: every write goes to a temporary file that is fsynced and renamed over the old
one.

The rows of FIELDS are written in table order: those a file must or may hold (``missing``
"error" or "nan"), then ``done``, then the optional ones ("none") this surface holds; a seed
stack the same under ``seeds/`` (or ``layers/``: a stack along the model's blocks). A file
without a row is refused ("error"), read as NaN
("nan") or as None ("none").
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lossland.core import FIELD, FIELDS, Field, json_default
from lossland.errors import LosslandError, SurfaceFileError, arg, first_line
from lossland.io._atomic import atomic_path
from lossland.io._hdf5 import H5_ERRORS, open_hdf5
from lossland.io._limits import check_budget, not_a_file
from lossland.io._metadata import (
    Check,
    check_schema,
    is_number,
    is_numbers,
    is_object,
    is_optional,
    is_pair_of_texts,
    is_texts,
    parse_json,
)
from lossland.io._values import SurfaceValues, check_log

FORMAT = "lossland-surface"
FORMAT_VERSION = 2  # 2: accuracy in percent, as the reference stores it (1: fractions)
ACC_UNIT = "percent"
SETTINGS_ATTR = "settings"  # JSON of what identifies a run, compared on resume
TOPOLOGY_ATTR = "topology"  # the basins (lossland.analysis.Topology.as_dict), shown as a summary
MEMORY_ATTR = "memory"  # the run's peak memory (lossland.core.MemoryProbe.report), one line
RESERVED_ATTRS = ("format", "format_version", "split", "json_attrs")
_INT64 = (-(2**63), 2**63 - 1)
_STACKED = tuple(row for row in FIELDS if row.stacked)
StackAxis = Literal["seeds", "layers"]
STACK_AXES: tuple[StackAxis, ...] = ("seeds", "layers")  # also each axis's group in the file


class SurfaceReadError(SurfaceFileError):
    """A surface file that cannot be read; ``problem`` is the bare reason, for callers that
    suggest their own fix (a resumed run suggests --overwrite rather than recomputing)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"surface file {path} {problem}: recompute it with lossland surface")
        self.problem = problem


@dataclass(frozen=True)
class SeedStack:
    """The same grid computed several times, stacked along one axis: once per direction seed
    (``seeds``: ``surface(seeds=N)``) or once per block of the model, each with directions on
    that block alone (``layers``: the blocks' names, ``surface(params_per_layer=...)``). The
    ``stacked`` rows of :data:`lossland.core.FIELDS` are shaped (entries, *grid shape), in the
    file as ``<axis>/<split>_loss`` etc. (``seeds/`` or ``layers/``), the labels in the group's
    ``<axis>`` attribute and each entry's run attributes (settings included) in its ``attrs``."""

    seeds: tuple[int, ...]  # empty for a stack of layers
    loss: np.ndarray
    acc: np.ndarray
    loss_sem: np.ndarray
    done: np.ndarray
    attrs: tuple[Mapping[str, Any], ...]
    # The stacked rows that are not attributes, by name (absent: a row the file does not hold).
    extra: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    layers: tuple[str, ...] = ()  # the blocks' names, for a stack of layers (then no seeds)

    def __post_init__(self) -> None:
        if bool(self.seeds) == bool(self.layers):
            raise LosslandError("a stack is labelled by seeds or by layers, one of them")

    @classmethod
    def of(
        cls,
        seeds: Iterable[int],
        values: Mapping[str, np.ndarray | None],
        done: np.ndarray,
        attrs: Iterable[Mapping[str, Any]],
        *,
        layers: Iterable[str] = (),
    ) -> SeedStack:
        """The stack of the named arrays (entries, *grid shape) of the stacked rows of FIELDS: a
        row left out (or None) is refused, NaN or not held, as its ``missing`` says. ``seeds``
        or ``layers`` label the entries."""
        done = np.asarray(done, dtype=bool)
        arguments = _arguments(values, _STACKED, done.shape)
        return cls(
            seeds=tuple(seeds), done=done, attrs=tuple(attrs), layers=tuple(layers), **arguments
        )

    @property
    def axis(self) -> StackAxis:
        """What the entries are: direction ``seeds`` or the model's ``layers``."""
        return "layers" if self.layers else "seeds"

    @property
    def labels(self) -> tuple[str, ...]:
        """Each entry's name as text: ``seed 4``, or the block's name (``transformer.h.3``)."""
        return self.layers or tuple(f"seed {s}" for s in self.seeds)

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def field(self, name: str) -> np.ndarray | None:
        """Row ``name`` of FIELDS, (entries, *grid shape); None where the stack does not hold it."""
        return _field_of(self, name, stacked=True)


@dataclass(frozen=True)
class Surface:
    """Losses and accuracies on a 1-D line or a 2-D grid, with the metadata of the run."""

    x: np.ndarray
    y: np.ndarray | None
    loss: np.ndarray
    acc: np.ndarray
    loss_sem: np.ndarray
    done: np.ndarray
    split: str = "train"
    attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    trajectories: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    # Samples (units: sequences for language models) each point was averaged over; fewer than
    # the set where a standard-error target stopped early. None in files that do not say.
    samples: np.ndarray | None = None
    # True where the value was interpolated by adaptive refinement, not evaluated.
    interpolated: np.ndarray | None = None
    # Several direction seeds (``lossland surface --seeds N``): this surface is the first.
    stack: SeedStack | None = None
    # The rows of FIELDS that are not attributes, by name (absent: a row the file does not
    # hold); every reader goes through field(name).
    extra: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    # --- construction ---

    @classmethod
    def empty(
        cls,
        x: np.ndarray,
        y: np.ndarray | None,
        *,
        split: str,
        attrs: Mapping[str, Any] | None = None,
    ) -> Surface:
        """Nothing evaluated yet: every row of FIELDS NaN, ``done`` false."""
        shape = (len(x),) if y is None else (len(y), len(x))
        values = {row.name: np.full(shape, np.nan) for row in FIELDS}
        done = np.zeros(shape, dtype=bool)
        return cls.of(x, y, values, done, split=split, attrs=dict(attrs or {}))

    @classmethod
    def of(
        cls,
        x: np.ndarray,
        y: np.ndarray | None,
        values: Mapping[str, np.ndarray | None],
        done: np.ndarray,
        **rest: Any,
    ) -> Surface:
        """A surface of named arrays shaped like the grid, one per row of
        :data:`lossland.core.FIELDS`: a row left out (or None) is refused, NaN or not held, as
        its ``missing`` says (as a file without it reads). ``rest``: the other fields (split,
        attrs, trajectories, interpolated, stack)."""
        x = np.asarray(x, dtype=np.float64)
        y = None if y is None else np.asarray(y, dtype=np.float64)
        shape = (len(x),) if y is None else (len(y), len(x))
        done = np.asarray(done, dtype=bool)
        return cls(x=x, y=y, done=done, **rest, **_arguments(values, FIELDS, shape))

    # --- views ---

    @property
    def ndim(self) -> int:
        return 1 if self.y is None else 2

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.loss.shape)

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    @property
    def settings(self) -> dict[str, Any]:
        raw = self.attrs.get(SETTINGS_ATTR, {})
        return dict(raw) if isinstance(raw, Mapping) else {}

    def field(self, name: str) -> np.ndarray | None:
        """Row ``name`` of :data:`lossland.core.FIELDS` (float64, the grid's shape, NaN where not
        evaluated); None for an optional row this surface does not hold."""
        return _field_of(self, name, stacked=False)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """2-D meshgrid (X, Y), each (ny, nx), matching ``loss``'s layout."""
        if self.y is None:
            raise SurfaceFileError("a 1-D surface has no 2-D grid")
        return np.meshgrid(self.x, self.y)

    def values(self) -> SurfaceValues:
        """The values as every reader shows them: drawn losses, holes and why (NaN or not
        evaluated), whether a log scale is possible (see :class:`lossland.io.SurfaceValues`)."""
        return SurfaceValues.of({row.name: self.field(row.name) for row in FIELDS}, self.done)

    def argmin(self) -> tuple[float, float | None, float]:
        """(x, y, loss) at the smallest evaluated finite loss (NaN, NaN, NaN: none); never at
        an infinite or NaN point."""
        values = np.where(self.values().finite, self.loss, np.inf)
        if not np.isfinite(values).any():
            return math.nan, None if self.y is None else math.nan, math.nan
        idx = np.unravel_index(int(np.argmin(values)), values.shape)
        if self.y is None:
            return float(self.x[idx[0]]), None, float(values[idx])
        return float(self.x[idx[1]]), float(self.y[idx[0]]), float(values[idx])

    def value_at_origin(self) -> float | None:
        """Loss at (0, 0) when the grid contains it (the trained model itself)."""
        jx = np.flatnonzero(self.x == 0.0)
        if len(jx) == 0:
            return None
        if self.y is None:
            return float(self.loss[jx[0]])
        iy = np.flatnonzero(self.y == 0.0)
        return float(self.loss[iy[0], jx[0]]) if len(iy) else None

    def store(self, index: Any, values: Mapping[str, Any]) -> None:
        """Write evaluated points into the arrays, in place, and mark them done (and not
        interpolated); the arrays are mutable even though the dataclass is frozen: a run fills
        one surface as it goes.

        ``values`` maps names of :data:`lossland.core.FIELDS` to the points' values (what
        :func:`lossland.core.reduce_sums` returns). The rows a file must hold (``missing``
        "error": the loss) are required; a row left out, or one this surface does not hold,
        keeps its values.
        """
        _check_names(values)
        needed = [row.name for row in FIELDS if row.missing == "error" and row.name not in values]
        if needed:
            raise LosslandError(f"no {needed[0]!r} to store: a surface holds it at every point")
        for name, value in values.items():
            target = self.field(name)
            if target is not None:
                target[index] = value
        self.done[index] = True
        if self.interpolated is not None:
            self.interpolated[index] = False

    @property
    def evaluated(self) -> np.ndarray:
        """Points whose value was computed (``done`` less the interpolated ones)."""
        return self.done if self.interpolated is None else self.done & ~self.interpolated

    def with_attrs(self, **attrs: Any) -> Surface:
        return replace(self, attrs={**self.attrs, **attrs})

    # --- display (drawn by lossland.show._display, imported inside these two methods: the one
    # import of io from a higher layer, allowed for display only; see tests/test_layers.py) ---

    def __repr__(self) -> str:
        """Shape, split, progress and the minimum; never the arrays."""
        parts = [
            f"{self.ndim}-D {' × '.join(map(str, self.shape[::-1]))}",  # nx × ny
            f"split={self.split!r}",
            f"done {self.values().counts().replace(' points', '')}",
        ]
        x, y, low = self.argmin()
        if math.isfinite(low):
            parts.append(f"min loss {low:.5g} at x={x:.4g}" + ("" if y is None else f", y={y:.4g}"))
        return f"Surface({', '.join(parts)})"

    def _repr_html_(self) -> str:
        """Jupyter's rich display: a summary table beside a small contour (or line) image."""
        from lossland.show._display import summary_html

        return summary_html(self)

    def _repr_png_(self) -> bytes | None:
        """The small contour alone, for frontends without HTML; None when nothing is drawable."""
        from lossland.show._display import contour_png

        try:
            return contour_png(self)
        except LosslandError:
            return None

    # --- files ---

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
        """Write the HDF5 file atomically (temporary file, fsync, rename); ``overwrite=False``
        refuses an existing ``path`` (see :func:`lossland.io.check_output`).

        The file is built in memory and written with plain file I/O: HDF5 never touches the
        disk, so a full disk is one OSError of that write (h5py, failing mid-file, raised
        RuntimeErrors from its finalizers and could crash the process). Datasets carry
        Fletcher-32 checksums, so a corrupted file fails to load instead of yielding wrong
        numbers.
        """
        check_contents(split=self.split, attrs=self.attrs, trajectories=self.trajectories)
        image = self._hdf5_image()
        with atomic_path(path, overwrite=overwrite, name="path") as tmp:
            tmp.write_bytes(image)
        return Path(path)

    def _hdf5_image(self) -> bytes:
        """The bytes of the HDF5 file (see the module docstring for the layout)."""
        import h5py

        def dataset(f: Any, name: str, data: np.ndarray) -> None:
            f.create_dataset(name, data=data, fletcher32=data.size > 0)

        buffer = io.BytesIO()
        with h5py.File(buffer, "w", locking=False) as f:
            dataset(f, "xcoordinates", self.x)
            if self.y is not None:
                dataset(f, "ycoordinates", self.y)
            _write_rows(f, self.split, self.field, FIELDS, self.done, dataset)
            if self.interpolated is not None:
                dataset(f, "interpolated", self.interpolated.astype(np.uint8))
            for name, points in self.trajectories.items():
                dataset(f, f"trajectories/{name}", np.asarray(points, dtype=np.float64))
            if self.stack is not None:
                _write_stack(f, self.stack, self.split, dataset)
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["split"] = self.split
            json_keys = []
            for key, value in self.attrs.items():
                if isinstance(value, str) and _plain_text(value):
                    f.attrs[key] = str(value)  # plain str: h5py rejects subclasses (TorchVersion)
                elif _native_number(value):
                    f.attrs[key] = value
                else:
                    f.attrs[key] = json.dumps(value, sort_keys=True, default=json_default)
                    json_keys.append(key)
            f.attrs["json_attrs"] = json.dumps(json_keys)
        return buffer.getvalue()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Surface:
        """Read and validate a surface file; any problem is a one-line SurfaceFileError."""
        path = Path(path)
        if not path.is_file():
            raise SurfaceFileError(f"surface file {path} {not_a_file(path)}: check the path")

        def fail(problem: str) -> SurfaceFileError:
            return SurfaceReadError(path, problem)

        try:
            with open_hdf5(path, fail, source=f"surface file {path}") as f:
                return _read(f, path)
        except H5_ERRORS as exc:  # damage found while reading (truncation, checksums)
            raise fail(f"is corrupt or not HDF5 ({first_line(exc)})") from None


def _native_number(value: Any) -> bool:
    """A Python bool, float or int that HDF5 stores as it is (larger ints go to JSON)."""
    if isinstance(value, np.generic):
        return False
    if isinstance(value, (bool, float)):
        return True
    return isinstance(value, int) and _INT64[0] <= value <= _INT64[1]


def _plain_text(value: str) -> bool:
    """HDF5 strings hold UTF-8 without NULs; anything else is stored as JSON (escaped)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_contents(
    *,
    split: Any,
    attrs: Mapping[str, Any] | None = None,
    trajectories: Mapping[str, Any] | None = None,
) -> None:
    """What a surface file can store, checked before any work (``lossland.surface`` calls this
    at the door, :meth:`Surface.save` again): plain names for the split, the trajectories and
    the attributes (they become HDF5 paths and attribute names), attribute values that are data
    (JSON), and trajectories shaped (T, 2)."""

    def plain(name: Any) -> bool:
        return isinstance(name, str) and bool(name) and "/" not in name and "\x00" not in name

    if not plain(split) or split == ".":
        raise SurfaceFileError(f"cannot save split name {split!r}: use e.g. train or test")
    for name, points in (trajectories or {}).items():
        if not plain(name) or name in (".", ".."):
            raise SurfaceFileError(f"cannot save trajectory name {name!r}: use a plain name")
        try:
            shape: tuple[int, ...] | str = np.asarray(points, dtype=np.float64).shape
        except (TypeError, ValueError):
            shape = "not numbers"
        if not isinstance(shape, tuple) or len(shape) != 2 or shape[1] != 2:
            raise SurfaceFileError(
                f"trajectory {name!r} must be (T, 2) points on the plane, got {shape}: pass "
                f"{arg('trajectories')} as {{name: array of (x, y)}}"
            )
    for key, value in (attrs or {}).items():
        if not isinstance(key, str) or not key or "\x00" in key or not _plain_text(key):
            raise SurfaceFileError(f"cannot save attribute name {key!r}: use a plain name")
        if key in RESERVED_ATTRS:
            raise SurfaceFileError(f"attribute name {key!r} is reserved by the file format")
        try:
            json.dumps(value, default=json_default)
        except (TypeError, ValueError, RecursionError):
            raise SurfaceFileError(
                f"attribute {key!r} is not data that a file can hold (JSON): pass plain "
                f"numbers, strings, lists or dicts in {arg('attrs')}"
            ) from None

    def fail(problem: str) -> SurfaceFileError:
        return SurfaceFileError(f"cannot save attributes: {arg('attrs')} {problem}")

    check_schema(attrs or {}, ATTR_SCHEMA, fail)  # what lossland reads back as values


def _is_directions_info(value: Any) -> bool:
    return isinstance(value, dict) and is_optional(is_numbers)(value.get("eigenvalues"))


def _is_figure(value: Any) -> bool:
    """A figure of a summary: None (none found), a number, or a float NaN/inf."""
    return value is None or is_number(value) or isinstance(value, float)


def _has_figures(value: Any, keys: tuple[str, ...], check: Check = _is_figure) -> bool:
    return isinstance(value, dict) and all(k in value and check(value[k]) for k in keys)


def _is_figures(value: Any) -> bool:
    return isinstance(value, list) and all(_is_figure(v) for v in value)


def _is_robustness(value: Any) -> bool:
    """What :func:`lossland.analysis.robustness` writes and ``robustness_lines`` reads back."""
    if not isinstance(value, dict):
        return False
    seeds, correlation = value.get("seeds"), value.get("log_correlation") or {}
    return (
        isinstance(seeds, list)
        and all(is_number(s) and isinstance(s, int) for s in seeds)
        and _has_figures(correlation, ("mean", "min", "max"))
        and (correlation["mean"] is None or None not in (correlation["min"], correlation["max"]))
        and _has_figures(value.get("minimum"), ("loss_spread", "position_spread"))
        and _has_figures(value.get("minimum"), ("loss",), _is_figures)
        and _has_figures(value, ("max_loss", "basin_radius", "rise_mean"), _is_figures)
    )


def _is_cosines(value: Any) -> bool:
    """What a seed stack's run writes as ``direction_cosines`` (pairs, max_abs, expected)."""
    return _has_figures(value, ("pairs", "max_abs", "expected"), is_number)


# The attributes lossland reads back as values (resume, figures, info), and what each must be.
ATTR_SCHEMA: dict[str, tuple[Check, str]] = {
    SETTINGS_ATTR: (is_object, "an object of run settings"),
    "wall_time_s": (lambda v: is_number(v) and v >= 0, "a number of seconds"),
    "axis_labels": (is_pair_of_texts, "two labels"),
    "directions_info": (_is_directions_info, "an object (eigenvalues: a list of numbers)"),
    "robustness": (
        _is_robustness,
        "the seeds' figures (seeds, log_correlation, minimum, max_loss, basin_radius, rise_mean)",
    ),
    "direction_cosines": (_is_cosines, "an object of numbers (pairs, max_abs, expected)"),
}


def _read(f: Any, path: Path) -> Surface:
    def fail(problem: str) -> SurfaceFileError:
        return SurfaceReadError(path, problem)

    version = _format_version(f, path, fail)
    if "xcoordinates" not in f:
        raise fail("has no xcoordinates dataset")
    split = _split(f, fail)
    x = _array(f, "xcoordinates", fail, ndim=1)
    y = _array(f, "ycoordinates", fail, ndim=1) if "ycoordinates" in f else None
    shape = (len(x),) if y is None else (len(y), len(x))
    for row in FIELDS:
        if row.missing == "error" and row.dataset(split) not in f:
            raise fail(f"has no {row.dataset(split)} dataset")
    _check_memory(f, split, shape, path)
    values = _read_rows(f, split, shape, fail, (r for r in FIELDS if r.missing != "none"))
    # The reference marks unfinished points with -1 instead of a done mask.
    done = _mask(f, "done", fail, shape) if "done" in f else np.asarray(values["loss"]) != -1
    interpolated = _mask(f, "interpolated", fail, shape) if "interpolated" in f else None
    values |= _read_rows(f, split, shape, fail, (r for r in FIELDS if r.missing == "none"))
    attrs = _attributes(f, fail)
    trajectories = _trajectories(f, fail)
    acc = values["acc"]  # a row every surface holds (NaN when the file has none)
    if acc is not None:
        values["acc"], attrs = _percent(acc, attrs, f.attrs.get("format"), version)
    return Surface.of(
        x,
        y,
        values,
        done,
        split=split,
        attrs=attrs,
        trajectories=trajectories,
        interpolated=interpolated,
        stack=_read_stack(f, split, shape, fail),
    )


def _read_rows(
    f: Any,
    name: str,
    shape: tuple[int, ...],
    fail: Callable[[str], SurfaceFileError],
    rows: Iterable[Field],
) -> dict[str, np.ndarray | None]:
    """The ``rows`` of FIELDS from datasets ``<name>_<suffix>`` shaped ``shape``: a row the
    file lacks is refused ("error"), NaN ("nan") or None ("none") by its ``missing``."""
    values: dict[str, np.ndarray | None] = {}
    for row in rows:
        dataset = f"{name}_{row.suffix}"
        if dataset in f:
            values[row.name] = _array(f, dataset, fail, shape=shape)
        elif row.missing == "error":
            raise fail(f"has no {dataset} dataset")
        else:
            values[row.name] = np.full(shape, np.nan) if row.missing == "nan" else None
    return values


def _write_rows(
    f: Any,
    name: str,
    field_of: Callable[[str], np.ndarray | None],
    rows: Iterable[Field],
    done: np.ndarray,
    dataset: Callable[[Any, str, np.ndarray], None],
) -> None:
    """The ``rows`` of FIELDS as datasets ``<name>_<suffix>`` in the file's order: those a file
    must or may hold (``missing`` "error", "nan"), ``done``, then the optional ones held."""
    rows = tuple(rows)

    def write(optional: bool) -> None:
        for row in rows:
            values = field_of(row.name)
            if (row.missing == "none") == optional and values is not None:
                dataset(f, f"{name}_{row.suffix}", np.asarray(values, dtype=np.float64))

    write(optional=False)
    dataset(f, "done", done.astype(np.uint8))
    write(optional=True)


def _arguments(
    values: Mapping[str, np.ndarray | None], rows: Iterable[Field], shape: tuple[int, ...]
) -> dict[str, Any]:
    """The keyword arguments of a Surface or SeedStack holding ``rows`` of FIELDS: the attribute
    rows as themselves, the others in ``extra``. A row that ``values`` lacks (or gives as None)
    is refused ("error"), NaN-filled ("nan") or not held ("none": None, left out of extra)."""
    _check_names(values)
    held: dict[str, np.ndarray | None] = {}
    for row in rows:
        value = values.get(row.name)
        if value is None and row.missing == "error":
            raise LosslandError(f"no {row.name!r} values: every surface holds them")
        held[row.name] = np.full(shape, np.nan) if value is None and row.missing == "nan" else value
    arguments: dict[str, Any] = {row.name: held[row.name] for row in rows if row.attribute}
    arguments["extra"] = {
        row.name: value
        for row in rows
        if not row.attribute and (value := held[row.name]) is not None
    }
    return arguments


def _check_names(values: Mapping[str, Any]) -> None:
    unknown = [name for name in values if name not in FIELD]
    if unknown:
        raise LosslandError(f"no field {unknown[0]!r}: the fields are {', '.join(FIELD)}")


def _field_of(holder: Surface | SeedStack, name: str, *, stacked: bool) -> np.ndarray | None:
    """Row ``name`` of a surface or a stack: its attribute, or its entry of ``extra``."""
    row = FIELD.get(name)
    if row is None or (stacked and not row.stacked):
        held = [r.name for r in FIELDS if r.stacked or not stacked]
        raise LosslandError(f"no field {name!r}: the fields are {', '.join(held)}")
    if row.attribute:
        values: np.ndarray | None = getattr(holder, name)
        return values
    return holder.extra.get(name)


def _check_memory(f: Any, split: str, shape: tuple[int, ...], path: Path) -> None:
    """Refuse a grid this process cannot hold, before reading it: per point a surface holds a
    float64 per row of FIELDS (the optional ones when the file has them), its done mask and
    interpolated when the file has it, the stacked rows and done for each seed of a stack, and
    one float64 array in flight (a conversion)."""

    def held(rows: Iterable[Field], prefix: str = "") -> int:
        return sum(r.missing != "none" or f"{prefix}{r.dataset(split)}" in f for r in rows)

    points = math.prod(shape)
    per_point = 8 * held(FIELDS) + 1 + 8 + ("interpolated" in f)
    axis = next((a for a in STACK_AXES if a in f), "seeds")
    stack = f.get(f"{axis}/{FIELD['loss'].dataset(split)}")
    seeds = int(stack.shape[0]) if getattr(stack, "ndim", 0) else 0
    per_seed = 8 * held(_STACKED, f"{axis}/") + 1
    what = f"a grid of {points:,} points" + (f" and {seeds:,} {axis}" if seeds else "")
    check_budget(points * (per_point + seeds * per_seed), source=f"surface file {path}", what=what)


def _format_version(f: Any, path: Path, fail: Callable[[str], SurfaceFileError]) -> int:
    """The file's format version: a whole number >= 1 (the reference's files have none)."""
    version = f.attrs.get("format_version", FORMAT_VERSION)
    if isinstance(version, np.generic):
        version = version.item()
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        shown = repr(version)
        raise fail(f"has format_version {shown[:40]}, not a whole number >= 1")
    if version > FORMAT_VERSION:
        raise SurfaceFileError(
            f"surface file {path} has format version {version}, this lossland reads "
            f"{FORMAT_VERSION}: upgrade lossland"
        )
    return version


def _split(f: Any, fail: Callable[[str], SurfaceFileError]) -> str:
    """The file's split; a reference-implementation file has none: find its <split>_loss."""
    split = f.attrs.get("split")
    if split is None:
        loss = f"_{FIELD['loss'].suffix}"
        others = tuple(f"_{r.suffix}" for r in FIELDS if r.name != "loss")
        names = [k for k in f if k.endswith(loss) and not k.endswith(others)]
        if not names:
            raise fail("has no <split>_loss dataset")
        split = names[0][: -len(loss)]
    if isinstance(split, bytes):
        split = split.decode()
    if not isinstance(split, str) or not split or "/" in split:
        raise fail(f"has a malformed split attribute {split!r}")
    return split


def _attributes(f: Any, fail: Callable[[str], SurfaceFileError]) -> dict[str, Any]:
    """The file's attributes as data: JSON ones parsed, every one checked by type."""
    json_keys = parse_json(f.attrs.get("json_attrs", "[]"), fail, what="json_attrs")
    if not is_texts(json_keys):
        raise fail("has a malformed json_attrs attribute")
    attrs: dict[str, Any] = {}
    for key, value in f.attrs.items():
        if key in ("format", "format_version", "split", "json_attrs"):
            continue
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, np.generic):
            value = value.item()
        if key in json_keys:
            value = parse_json(value, fail, what=f"attribute {key!r}")
        attrs[key] = value
    check_schema(attrs, ATTR_SCHEMA, fail)
    return attrs


def _trajectories(f: Any, fail: Callable[[str], SurfaceFileError]) -> dict[str, np.ndarray]:
    trajectories = {}
    for name in f.get("trajectories", ()):
        points = _array(f, f"trajectories/{name}", fail, ndim=2)
        if points.shape[1] != 2:
            raise fail(f"has trajectory {name!r} shaped {points.shape}, expected (T, 2)")
        trajectories[name] = points
    return trajectories


def _write_stack(f: Any, stack: SeedStack, split: str, dataset: Any) -> None:
    group = f.create_group(stack.axis)
    _write_rows(group, split, stack.field, _STACKED, stack.done, dataset)
    group.attrs[stack.axis] = json.dumps(list(stack.layers or stack.seeds))
    group.attrs["attrs"] = json.dumps([dict(a) for a in stack.attrs], default=json_default)


def _read_stack(f: Any, split: str, shape: tuple[int, ...], fail: Any) -> SeedStack | None:
    """The stack (None: the file has none), validated: one axis; seeds a list of distinct
    ints or layers a list of distinct non-empty names; arrays (entries, *shape)."""
    held = [axis for axis in STACK_AXES if axis in f]
    if not held:
        return None
    if len(held) > 1:
        raise fail(f"holds both a {held[0]} and a {held[1]} stack")
    axis = held[0]
    labels = parse_json(f[axis].attrs.get(axis, "null"), fail, what=f"{axis} attribute")
    attrs = parse_json(f[axis].attrs.get("attrs", "null"), fail, what=f"{axis} attrs")
    kind: Any = int if axis == "seeds" else str
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(s, kind) and not isinstance(s, bool) and s != "" for s in labels)
        or len(set(labels)) != len(labels)
        or not isinstance(attrs, list)
        or len(attrs) != len(labels)
        or not all(isinstance(a, dict) for a in attrs)
    ):
        raise fail(f"has malformed {'seed' if axis == 'seeds' else 'layer'} attributes")
    full, name = (len(labels), *shape), f"{axis}/{split}"
    values = _read_rows(f, name, full, fail, (r for r in _STACKED if r.missing != "none"))
    done = _mask(f, f"{axis}/done", fail, full)
    values |= _read_rows(f, name, full, fail, (r for r in _STACKED if r.missing == "none"))
    if axis == "seeds":
        return SeedStack.of(labels, values, done, attrs)
    return SeedStack.of((), values, done, attrs, layers=labels)


def _percent(
    acc: np.ndarray, attrs: dict[str, Any], fmt: Any, version: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """Accuracy in percent whatever wrote the file: lossland's format 1 stored fractions, the
    reference and format 2 store percent (``Surface.acc`` is always percent)."""
    old = fmt in (FORMAT, FORMAT.encode())
    if old and version < 2 and attrs.get("acc_unit") != ACC_UNIT:
        return acc * 100.0, {**attrs, "acc_unit": ACC_UNIT}
    return acc, attrs


def _mask(f: Any, name: str, fail: Any, shape: tuple[int, ...]) -> np.ndarray:
    return check_mask(_array(f, name, fail, shape=shape, numeric=False), fail, name=name)


def _array(
    f: Any,
    name: str,
    fail: Any,
    *,
    ndim: int | None = None,
    shape: tuple[int, ...] | None = None,
    numeric: bool = True,
) -> np.ndarray:
    import h5py

    node = f[name]
    if not isinstance(node, h5py.Dataset):
        raise fail(f"has {name} as a group, not a dataset")
    return check_array(
        node,
        name,
        fail,
        ndim=ndim,
        shape=shape,
        numeric=numeric,
        coordinates=name.endswith("coordinates"),
    )


def check_array(
    node: Any,
    name: str,
    fail: Any,
    *,
    ndim: int | None = None,
    shape: tuple[int, ...] | None = None,
    numeric: bool = True,
    coordinates: bool = False,
) -> np.ndarray:
    """An array read from a file (an HDF5 dataset or a numpy array), checked: numeric, the
    dimensions or shape expected, and for ``coordinates`` non-empty, finite and increasing."""
    if node.dtype.kind not in ("f", "i", "u", "b"):
        raise fail(f"has {name} of dtype {node.dtype}, not numeric")
    # Shapes come from the metadata: check them before reading anything large.
    if ndim is not None and len(node.shape) != ndim:
        raise fail(f"has {name} with {len(node.shape)} dimensions, expected {ndim}")
    if shape is not None and tuple(node.shape) != shape:
        raise fail(f"has {name} shaped {tuple(node.shape)}, expected {shape} from the coordinates")
    data = np.asarray(node[()])
    if coordinates:
        if len(data) == 0 or not np.all(np.isfinite(data)):
            raise fail(f"has empty or non-finite {name}")
        if np.any(np.diff(data.astype(np.float64)) <= 0):
            raise fail(f"has {name} that are not strictly increasing")
    return data.astype(np.float64) if numeric else data


def check_mask(raw: np.ndarray, fail: Any, *, name: str = "done") -> np.ndarray:
    """A mask read from a file as booleans; anything but 0/1 values is ``fail(...)``."""
    if raw.dtype.kind == "f" or not np.isin(raw, (0, 1)).all():
        raise fail(f"has a {name} mask that is not 0/1")
    return raw.astype(bool)


def log_loss(loss: np.ndarray) -> np.ndarray:
    """ln(loss), NaN holes kept; losses <= 0 are refused: no shift would keep the picture honest."""
    check_log(loss)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.log(loss), dtype=np.float64)
