"""``Recorder``: the landscape around a model while it trains, into one recording file.

``rec = Recorder(model, data, out="run.h5", every=50)`` once, ``rec.step(step)`` after each
optimizer step of the user's own loop, ``rec.close()`` at the end. At every ``every``-th step
it records, around the current weights θ_t:

* a slice (a line, or a plane with ``y``) along directions whose Gaussian draws are made once,
  at the start, from ``seed``, and **filter-normalized against θ_t at every record**. The draw
  stays the same so that what changes from one record to the next is the landscape, not the
  direction; the normalization follows the weights because training changes their scale (norms
  of filters grow, BatchNorm makes whole layers scale-invariant), and a direction of fixed
  length would make a layer whose weights grew look flatter by scale alone — Li et al.'s reason
  for filter normalization, applied at each θ_t. The coordinates are therefore multiples of
  the filter norms *at that step* (``weight_norm`` is recorded to convert);
* the sharpness measures of that slice (:func:`lossland.analysis.sharpness`), and its barrier:
  the largest loss on the slice minus the loss at θ_t;
* the top Hessian eigenvalue λ_max by a few Lanczos iterations through the evaluation contract
  (:class:`lossland.directions.HessianOperator`), and optionally the Hutchinson trace;
* the moving weights θ_t (``trajectory``), so the PCA plane of the run is there at the end.

**Overhead.** The time between ``step()`` calls is training, the time inside a record is
overhead; with ``budget`` (default 0.1) a record is skipped when it would take the overhead
past that fraction of the training time so far (the first record always runs: it measures
what a record costs; on a run too short for it, the summary shows the overhead above
budget), and the skipped steps are stored in the file and warned about once.

**Crash safety and resuming.** Each record rewrites the file atomically. A recorder opened on
its own file (same settings) resumes it: the first ``step(s)`` drops the records at steps ≥ s
— a resumed run replays the steps after its checkpoint, and the recording follows the run
that continues — so a deterministic run killed and resumed records the same file as one never
stopped.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from lossland.analysis import sharpness
from lossland.core import (
    AT_LEAST_1,
    SEEDS,
    Bounds,
    axis_text,
    check_fields,
    coordinates,
    moves,
    option,
    options_from,
)
from lossland.directions import (
    Directions,
    HessianOperator,
    Ignore,
    Norm,
    hutchinson,
    lanczos,
    normalize_,
    pca_directions,
    random_directions,
)
from lossland.engine import Evaluator, LossFn
from lossland.errors import LosslandError, LosslandWarning, arg
from lossland.io import SCALARS, Recording, Surface, check_output, is_recording
from lossland.run._group import several_processes
from lossland.run._surface import surface


def _check_single_process() -> None:
    """A recorder's slices would join the training's process group from one rank and wait
    for the others forever: refused under torchrun/DDP before anything is written."""
    if several_processes():
        raise LosslandError(
            "the recorder runs in single-process training only, and this process is one of "
            "several (torchrun/DDP): record from a single-process run of the same training"
        )


@dataclass(frozen=True, kw_only=True)
class RecorderOptions:
    """What a :class:`Recorder` records, and how often (``None``: lossland chooses)."""

    every: int = option(10, "record every this many steps", bounds=AT_LEAST_1)
    x: str = option("-1:1:21", "slice coordinates along the first direction (min:max:num)")
    y: str | None = option(None, "a second axis makes the slice a plane (None: a line)")
    seed: int = option(0, "seed of the directions' Gaussian draws", bounds=SEEDS)
    norm: Norm = option(  # noqa: RUF009
        "filter", "normalization against the current weights at each record"
    )
    ignore: Ignore = option(  # noqa: RUF009
        "biasbn", "biasbn: biases and BatchNorm γ/β get zero directions"
    )
    hessian_iterations: int = option(
        20, "Lanczos iterations for λ_max at each record (0: no λ_max)", bounds=Bounds(0, 1000)
    )
    trace_probes: int = option(
        0, "Hutchinson probes for the Hessian trace at each record (0: no trace)", bounds=Bounds(0)
    )
    trajectory: bool = option(True, "keep the weights at each record (the run's PCA plane)")
    budget: float = option(
        0.1,
        "skip a record that would take the overhead past this fraction of the training time "
        "(0: no budget, never skip)",
        bounds=Bounds(0),
    )
    batch_size: int = option(1024, "evaluation batch size", bounds=AT_LEAST_1)
    device: str | None = option(None, "evaluation device (None: the model's)")

    def __post_init__(self) -> None:
        check_fields(self)


# What must match for a recorder to resume a file (budget and device do not change values).
_SAME = (
    "every",
    "x",
    "y",
    "seed",
    "norm",
    "ignore",
    "hessian_iterations",
    "trace_probes",
    "trajectory",
)


class RecordLogger(Protocol):
    """Where each record is also sent (TensorBoard, W&B: :mod:`lossland.integrations`)."""

    def log(self, step: int, values: Mapping[str, float | None], slice_: Surface) -> None: ...

    def close(self) -> None: ...


class Recorder:
    """Records the landscape around ``model`` at every ``every``-th step (module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        *,
        out: str | Path,
        evaluator: Evaluator | None = None,
        loss: LossFn | str | None = None,
        lr: float | None = None,
        overwrite: bool = False,
        loggers: Sequence[RecordLogger] = (),
        options: RecorderOptions | None = None,
        every: int | None = None,
        x: str | None = None,
        y: str | None = None,
        seed: int | None = None,
        norm: Norm | None = None,
        ignore: Ignore | None = None,
        hessian_iterations: int | None = None,
        trace_probes: int | None = None,
        trajectory: bool | None = None,
        budget: float | None = None,
        batch_size: int | None = None,
        device: str | None = None,
    ) -> None:
        self.options = options_from(options or RecorderOptions(), locals())
        _check_single_process()
        self.model, self.data = model, data
        self.evaluator, self.loss, self.lr = evaluator, loss, lr
        self.loggers = list(loggers)
        self.xs = coordinates(self.options.x, name="x")
        self.ys = None if self.options.y is None else coordinates(self.options.y, name="y")
        self.names = [n for n, p in model.named_parameters() if moves(n, p.dtype)]
        self.raw = random_directions(
            model,
            seed=self.options.seed,
            norm="none",
            ignore=self.options.ignore,
            ndim=1 if self.ys is None else 2,
        )
        self.out = Path(out)
        self.recording = self._open(overwrite)
        self._resumed = len(self.recording) > 0
        self._first = True
        self._pending_train = 0.0  # training seconds since the last record
        self._carry = 0.0  # the last save's seconds, counted with the next record
        self._warned = False
        self._since = time.perf_counter()

    # --- opening ---

    def _settings(self) -> dict[str, Any]:
        chosen = {k: v for k, v in asdict(self.options).items() if k in _SAME}
        shapes = [(n, list(p.shape)) for n, p in self.model.named_parameters() if n in self.names]
        chosen["parameters"] = hashlib.sha256(repr(shapes).encode()).hexdigest()[:16]
        chosen["x"], chosen["y"] = axis_text(self.xs), None
        if self.ys is not None:
            chosen["y"] = axis_text(self.ys)
        return chosen

    def _open(self, overwrite: bool) -> Recording:
        settings = self._settings()
        params = sum(dict(self.model.named_parameters())[n].numel() for n in self.names)
        fresh = Recording.empty(
            self.xs, self.ys, settings=settings, params=params if self.options.trajectory else 0
        )
        if not self.out.exists() or overwrite:
            check_output(self.out, overwrite=overwrite)
            return fresh
        if not is_recording(self.out):
            check_output(self.out, overwrite=False)  # raises: exists, not ours
        found = Recording.load(self.out)
        differ = [k for k in settings if found.settings.get(k) != settings[k]]
        if differ:
            raise LosslandError(
                f"{arg('out')} {self.out} records other settings ({', '.join(differ)}): pass "
                f"{arg('overwrite')} to replace it, or choose another {arg('out')}"
            )
        check_output(self.out, own=True)
        return found

    # --- the steps ---

    def step(self, step: int, *, lr: float | None = None) -> dict[str, float | None] | None:
        """Call after each optimizer step (``step``: how many steps the weights have had).
        Returns the record's values at a recorded step, else None."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise LosslandError(f"{arg('step')} must be a whole number ≥ 0, got {step!r}")
        step = int(step)
        self._pending_train += time.perf_counter() - self._since
        try:
            return self._step(step, lr if lr is not None else self.lr)
        finally:
            self._since = time.perf_counter()

    def _step(self, step: int, lr: float | None) -> dict[str, float | None] | None:
        if self._first:
            self._first = False
            if self._resumed:  # the run restarts at ``step``: what came after is replayed
                self.recording = self.recording.before(step)
        done = self.recording.steps
        if step % self.options.every or (len(done) and step <= int(done[-1])):
            return None
        if self._over_budget():
            self.recording = self.recording.with_skipped(step)
            return None
        started = time.perf_counter()
        values, slice_, weights = self._measure(lr)
        values["train_seconds"] = self._pending_train
        values["record_seconds"] = time.perf_counter() - started + self._carry
        self.recording = replace(
            self.recording.appended(step, slice_, values, weights), tail_seconds=0.0
        )
        saving = time.perf_counter()
        self.recording.save(self.out)
        for logger in self.loggers:
            logger.log(step, values, slice_)
        self._carry = time.perf_counter() - saving
        self._pending_train = 0.0
        return values

    def _over_budget(self) -> bool:
        budget = self.options.budget
        rec = self.recording
        if not budget or not len(rec):
            return False
        train = float(np.nansum(rec.scalars["train_seconds"])) + self._pending_train
        spent = float(np.nansum(rec.scalars["record_seconds"])) + self._carry
        if spent + float(rec.scalars["record_seconds"][-1]) <= budget * train:
            return False
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"recording {self.out}: records skipped to keep the overhead under "
                f"{budget:.0%} of the training time ({arg('budget')}; record less often "
                f"with a larger {arg('every')}, or pass {arg('budget')}=0 for no budget)",
                LosslandWarning,
                stacklevel=4,
            )
        return True

    def _measure(
        self, lr: float | None
    ) -> tuple[dict[str, float | None], Surface, np.ndarray | None]:
        current = {n: p.detach() for n, p in self.model.named_parameters() if n in self.names}
        slice_, directions = self._slice(current)
        values: dict[str, float | None] = dict.fromkeys(SCALARS)
        found = sharpness(slice_)
        if found is not None:
            for key in ("centre_loss", "rise_mean", "rise_max", "curvature_xx", "curvature_yy"):
                values[key] = getattr(found, key)
            finite = slice_.loss[np.isfinite(slice_.loss)]
            values["barrier"] = float(finite.max()) - found.centre_loss if finite.size else None
        values.update(self._hessian())
        flat = torch.cat([t.reshape(-1).to("cpu", torch.float32) for t in current.values()])
        values["weight_norm"] = float(torch.linalg.vector_norm(flat.double()))
        values["lr"] = lr
        if self.options.trajectory and directions.y is not None:
            slice_ = replace(slice_, trajectories={"run": self._path(directions, flat)})
        return values, slice_, flat.numpy() if self.options.trajectory else None

    def _path(self, directions: Directions, flat: torch.Tensor) -> np.ndarray:
        """(S + 1, 2): the recorded weights so far and θ_t, projected by least squares onto
        the plane of this record (θ_t at the origin)."""
        assert directions.y is not None
        basis = torch.stack(
            [
                torch.cat([d[n].reshape(-1) for n in self.names])
                for d in (directions.x, directions.y)
            ]
        ).double()  # (2, P)
        past = self.recording.weights
        points = torch.from_numpy(past).double() if past is not None else torch.zeros(0)
        deltas = torch.cat([points.reshape(-1, flat.numel()), flat[None].double()]) - flat.double()
        coords: np.ndarray = torch.linalg.lstsq(basis.T, deltas.T).solution.T.numpy()
        return coords  # (S + 1, 2)

    def _slice(self, current: Mapping[str, torch.Tensor]) -> tuple[Surface, Directions]:
        o = self.options

        def normalized(raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            copy = {k: v.clone() for k, v in raw.items()}
            return normalize_(copy, current, norm=o.norm, ignore=o.ignore)

        directions = Directions(
            x=normalized(self.raw.x),
            y=None if self.raw.y is None else normalized(self.raw.y),
            norm=o.norm,
            ignore=o.ignore,
            seed=o.seed,
        )
        return surface(
            self.model,
            self.data,
            x=self.xs,
            y=self.ys,
            directions=directions,
            evaluator=self.evaluator,
            loss=self.loss,
            batch_size=o.batch_size,
            device=o.device or self._device(),
            progress=False,
        ), directions

    def _device(self) -> str:
        first = next(self.model.parameters(), None)
        return str(first.device) if first is not None else "cpu"

    def _hessian(self) -> dict[str, float | None]:
        o = self.options
        if not o.hessian_iterations and not o.trace_probes:
            return {}
        op = HessianOperator(
            self.model,
            self.data,
            evaluator=self.evaluator,
            loss=self.loss,
            batch_size=o.batch_size,
            device=o.device or self._device(),
        )
        out: dict[str, float | None] = {}
        if o.hessian_iterations:
            pairs = lanczos(
                op,
                op.size,
                1,
                iterations=o.hessian_iterations,
                seed=o.seed,
                device=op.device,
                vectors=False,
            )
            out["lambda_max"] = float(pairs.values[0])
        if o.trace_probes:
            trace = hutchinson(op, op.size, probes=o.trace_probes, seed=o.seed, device=op.device)
            out["trace"] = trace.value
            out["trace_sem"] = None if math.isnan(trace.sem) else trace.sem
        return out

    # --- the end ---

    def pca_directions(self) -> Directions:
        """The run's PCA plane: the first two principal components of the recorded weights
        around the model's current weights (:func:`lossland.pca_directions`), for
        ``lossland.surface(model, data, directions=...)``; needs ``trajectory`` and at least
        three records."""
        weights = self.recording.weights
        if weights is None:
            raise LosslandError(f"the recorder kept no weights: pass {arg('trajectory')}=True")
        params = dict(self.model.named_parameters())
        final = {n: params[n].detach().to("cpu") for n in self.names}
        sizes = [final[n].numel() for n in self.names]

        def state(row: np.ndarray) -> dict[str, torch.Tensor]:
            parts = torch.split(torch.from_numpy(row), sizes)
            return {
                n: t.view(final[n].shape).to(final[n].dtype)
                for n, t in zip(self.names, parts, strict=True)
            }

        return pca_directions(final, [state(row) for row in weights], names=self.names)

    def summary(self) -> str:
        """One line: records, skipped steps and the measured overhead (the training since the
        last record included)."""
        rec = replace(self.recording, tail_seconds=self._pending_train)
        overhead = rec.overhead()
        shown = "not measured yet" if overhead is None else f"{overhead:.1%} of the training time"
        skipped = f", {len(rec.skipped)} skipped (budget)" if rec.skipped else ""
        return f"recorded {len(rec)} steps into {self.out}{skipped}; overhead {shown}"

    def close(self) -> Recording:
        """Save (with the skipped steps and the training time since the last record) and
        close the loggers; returns the recording."""
        self.recording = replace(self.recording, tail_seconds=self._pending_train)
        self.recording.save(self.out)
        for logger in self.loggers:
            logger.close()
        return self.recording
