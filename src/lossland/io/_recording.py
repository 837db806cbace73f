"""Recording files: the landscape around a model at chosen steps of its training.

One HDF5 file with a leading step axis (``lossland.Recorder`` writes it):

* ``x`` (nx,), ``y`` (ny,) when 2-D: the slice's coordinates, the same at every step;
* ``steps`` (S,) int64: the training steps recorded, strictly increasing;
* ``loss``, ``acc`` (S, nx) or (S, ny, nx): the slice at each recorded step (NaN: not finite);
* ``scalars/<name>`` (S,) float64, one per row of :data:`SCALARS` (NaN: not measured);
* ``weights`` (S, P) float32, optional: the moving weights at each record (the trajectory,
  from which the run's PCA plane is computed at the end);
* ``paths`` (S, S, 2), with weights and a plane: row t holds the weights of records 0..t
  projected onto the plane of record t (θ_t at the origin; NaN after t), the run so far as
  the viewer draws it at that step;
* attributes ``format`` = ``lossland-recording``, ``format_version`` and ``settings`` (JSON:
  what the recorder was asked for; a resumed recorder must ask the same), ``skipped`` (JSON:
  the steps not recorded because the overhead budget was spent).

Every save rewrites the whole file atomically (:func:`lossland.io.atomic_path`): a process
killed at any moment leaves the previous recording or the new one, never half of one, and a
resumed recorder continues from what is there. Reading goes through :func:`open_hdf5`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lossland.core import json_default
from lossland.errors import SurfaceFileError
from lossland.io._atomic import atomic_path
from lossland.io._hdf5 import H5_ERRORS, open_hdf5
from lossland.io._limits import not_a_file
from lossland.io._metadata import is_object, parse_json
from lossland.io._surface_file import Surface, check_array

RECORDING_FORMAT = "lossland-recording"
RECORDING_VERSION = 1
# The numbers measured at every record, in the file's order (NaN where not measured).
SCALARS: tuple[str, ...] = (
    "lambda_max",  # top Hessian eigenvalue (Lanczos)
    "trace",  # Hutchinson trace estimate, and its standard error
    "trace_sem",
    "centre_loss",  # the slice's loss at the current weights
    "rise_mean",  # lossland.analysis.sharpness of the slice
    "rise_max",
    "curvature_xx",
    "curvature_yy",
    "barrier",  # largest loss on the slice minus the centre loss
    "weight_norm",  # ‖θ‖ of the moving weights (the scale filter normalization follows)
    "lr",  # the learning rate at that step, when the caller says it
    "train_seconds",  # training time since the previous record (or the recorder's start)
    "record_seconds",  # time spent recording this step
)
TIMING = ("train_seconds", "record_seconds")  # the columns that differ between equal runs


class RecordingReadError(SurfaceFileError):
    """A recording file that cannot be read."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"recording file {path} {problem}: record it again with lossland.Recorder")
        self.problem = problem


@dataclass(frozen=True)
class Recording:
    """The slices, measures and trajectory of one training run, step by step."""

    x: np.ndarray
    y: np.ndarray | None
    steps: np.ndarray  # (S,) int64, increasing
    loss: np.ndarray  # (S, *grid)
    acc: np.ndarray  # (S, *grid)
    scalars: Mapping[str, np.ndarray]  # name -> (S,) float64, every name of SCALARS
    weights: np.ndarray | None = None  # (S, P) float32
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    skipped: tuple[int, ...] = ()  # steps not recorded: the overhead budget was spent
    paths: np.ndarray | None = None  # (S, S, 2): see the module docstring
    tail_seconds: float = 0.0  # training time after the last record (saved at close)

    @classmethod
    def empty(
        cls, x: np.ndarray, y: np.ndarray | None, *, settings: Mapping[str, Any], params: int
    ) -> Recording:
        grid = (len(x),) if y is None else (len(y), len(x))
        return cls(
            x=np.asarray(x, np.float64),
            y=None if y is None else np.asarray(y, np.float64),
            steps=np.zeros(0, np.int64),
            loss=np.zeros((0, *grid)),
            acc=np.zeros((0, *grid)),
            scalars={name: np.zeros(0) for name in SCALARS},
            weights=np.zeros((0, params), np.float32) if params else None,
            settings=dict(settings),
        )

    @property
    def grid(self) -> tuple[int, ...]:
        return (len(self.x),) if self.y is None else (len(self.y), len(self.x))

    def __len__(self) -> int:
        return len(self.steps)

    def appended(
        self,
        step: int,
        surface: Surface,
        scalars: Mapping[str, float | None],
        weights: np.ndarray | None,
    ) -> Recording:
        """This recording with one more step (after the last one)."""
        if len(self.steps) and step <= int(self.steps[-1]):
            raise ValueError(f"step {step} is not after the last recorded step {self.steps[-1]}")
        row = {n: np.nan if scalars.get(n) is None else float(scalars[n]) for n in SCALARS}  # type: ignore[arg-type]
        stacked = None
        if self.weights is not None and weights is not None:
            stacked = np.concatenate([self.weights, weights[None].astype(np.float32)])
        return dataclasses.replace(
            self._with_path(surface.trajectories.get("run")),
            steps=np.append(self.steps, np.int64(step)),
            loss=np.concatenate([self.loss, surface.loss[None]]),
            acc=np.concatenate([self.acc, surface.acc[None]]),
            scalars={n: np.append(self.scalars[n], row[n]) for n in SCALARS},
            weights=stacked,
        )

    def _with_path(self, path: np.ndarray | None) -> Recording:
        """``paths`` grown by one row and column for the record being appended."""
        if path is None or (self.paths is None and len(self.steps)):
            return self
        count = len(self.steps) + 1
        grown = np.full((count, count, 2), np.nan)
        if self.paths is not None:
            grown[: count - 1, : count - 1] = self.paths
        grown[count - 1, : len(path)] = path
        return dataclasses.replace(self, paths=grown)

    def before(self, step: int) -> Recording:
        """The records at steps before ``step`` (a resumed run replays the steps after its
        checkpoint, so what was recorded after it belongs to the run that was stopped)."""
        keep = self.steps < step
        return dataclasses.replace(
            self,
            steps=self.steps[keep],
            loss=self.loss[keep],
            acc=self.acc[keep],
            scalars={n: v[keep] for n, v in self.scalars.items()},
            weights=None if self.weights is None else self.weights[keep],
            paths=None if self.paths is None else self.paths[keep][:, keep],
            skipped=tuple(s for s in self.skipped if s < step),
            tail_seconds=0.0,
        )

    def with_skipped(self, step: int) -> Recording:
        return dataclasses.replace(self, skipped=(*self.skipped, step))

    def surface(self, index: int) -> Surface:
        """The slice recorded at ``steps[index]`` as a surface (for figures and measures)."""
        loss, acc = self.loss[index], self.acc[index]
        values = {"loss": loss, "acc": acc, "loss_sem": np.full(loss.shape, np.nan)}
        attrs = {"recorded_step": int(self.steps[index]), "directions_kind": "random"}
        return Surface.of(self.x, self.y, values, np.isfinite(loss), split="train", attrs=attrs)

    def overhead(self) -> float | None:
        """Recording time over training time, or None before any training was timed."""
        train = float(np.nansum(self.scalars["train_seconds"])) + self.tail_seconds
        record = float(np.nansum(self.scalars["record_seconds"]))
        return record / train if train > 0 else None

    # --- files ---

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
        """Write the file atomically (temporary file, fsync, rename), built in memory."""
        image = self._hdf5_image()
        with atomic_path(path, overwrite=overwrite, name="out") as tmp:
            tmp.write_bytes(image)
        return Path(path)

    def _hdf5_image(self) -> bytes:
        import h5py

        buffer = io.BytesIO()
        with h5py.File(buffer, "w", locking=False) as f:

            def dataset(name: str, data: np.ndarray) -> None:
                f.create_dataset(name, data=data, fletcher32=data.size > 0)

            dataset("x", self.x)
            if self.y is not None:
                dataset("y", self.y)
            dataset("steps", self.steps.astype(np.int64))
            dataset("loss", self.loss.astype(np.float64))
            dataset("acc", self.acc.astype(np.float64))
            for name in SCALARS:
                dataset(f"scalars/{name}", self.scalars[name].astype(np.float64))
            if self.weights is not None:
                dataset("weights", self.weights.astype(np.float32))
            if self.paths is not None:
                dataset("paths", self.paths.astype(np.float64))
            f.attrs["format"] = RECORDING_FORMAT
            f.attrs["format_version"] = RECORDING_VERSION
            f.attrs["settings"] = json.dumps(
                dict(self.settings), sort_keys=True, default=json_default
            )
            f.attrs["skipped"] = json.dumps(list(self.skipped))
            f.attrs["tail_seconds"] = float(self.tail_seconds)
        return buffer.getvalue()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Recording:
        """Read and validate a recording file; any problem is one line."""
        path = Path(path)
        if not path.is_file():
            raise SurfaceFileError(f"recording file {path} {not_a_file(path)}: check the path")

        def fail(problem: str) -> SurfaceFileError:
            return RecordingReadError(path, problem)

        try:
            with open_hdf5(path, fail, source=f"recording file {path}") as f:
                return _read(f, fail)
        except H5_ERRORS as exc:
            raise fail(f"is corrupt or not HDF5 ({exc})") from None


def _read(f: Any, fail: Any) -> Recording:
    if f.attrs.get("format") != RECORDING_FORMAT:
        raise fail("is not a lossland recording")
    version = f.attrs.get("format_version")
    if not isinstance(version, (int, np.integer)) or not 1 <= int(version) <= RECORDING_VERSION:
        raise fail(f"has format_version {version!r}: this lossland reads {RECORDING_VERSION}")
    for name in ("x", "steps", "loss", "acc"):
        if name not in f:
            raise fail(f"has no {name} dataset")
    x = check_array(f["x"], "x", fail, ndim=1, coordinates=True)
    y = check_array(f["y"], "y", fail, ndim=1, coordinates=True) if "y" in f else None
    steps = check_array(f["steps"], "steps", fail, ndim=1, numeric=False)
    if steps.dtype.kind not in "iu" or np.any(np.diff(steps) <= 0):
        raise fail("has steps that are not increasing whole numbers")
    count = len(steps)
    grid = (len(x),) if y is None else (len(y), len(x))
    loss = check_array(f["loss"], "loss", fail, shape=(count, *grid))
    acc = check_array(f["acc"], "acc", fail, shape=(count, *grid))
    scalars = {}
    for name in SCALARS:
        key = f"scalars/{name}"
        scalars[name] = (
            check_array(f[key], key, fail, shape=(count,)) if key in f else np.full(count, np.nan)
        )
    weights = None
    if "weights" in f:
        weights = check_array(f["weights"], "weights", fail, ndim=2, numeric=False)
        if weights.shape[0] != count or weights.dtype.kind != "f":
            raise fail(f"has weights shaped {weights.shape}, expected ({count}, P) floats")
    paths = None
    if "paths" in f:
        paths = check_array(f["paths"], "paths", fail, shape=(count, count, 2))
    settings = parse_json(f.attrs.get("settings", "{}"), fail, what="settings")
    skipped = parse_json(f.attrs.get("skipped", "[]"), fail, what="skipped")
    tail = f.attrs.get("tail_seconds", 0.0)
    if not isinstance(tail, (float, np.floating)) or not 0 <= float(tail) < float("inf"):
        raise fail(f"has tail_seconds {tail!r}, not a number of seconds")
    if not is_object(settings):
        raise fail("has settings that are not a JSON object")
    if not isinstance(skipped, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in skipped
    ):
        raise fail("has skipped steps that are not a list of whole numbers")
    return Recording(
        x=x,
        y=y,
        steps=steps.astype(np.int64),
        loss=loss,
        acc=acc,
        scalars=scalars,
        weights=None if weights is None else weights.astype(np.float32),
        settings=settings,
        skipped=tuple(skipped),
        paths=paths,
        tail_seconds=float(tail),
    )


def is_recording(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an HDF5 file that says it is a recording (read through
    :func:`open_hdf5`; a file that cannot be read is not one: its own reader says why)."""

    def fail(problem: str) -> SurfaceFileError:
        return SurfaceFileError(problem)

    try:
        with open_hdf5(path, fail, source=f"file {path}") as f:
            return bool(f.attrs.get("format") == RECORDING_FORMAT)
    except (SurfaceFileError, *H5_ERRORS):
        return False
