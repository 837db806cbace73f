"""``surface(model, data, ...)``: validate → settings → open or resume → drive → figures."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from lossland.core import (
    Axis,
    axis_text,
    check_grid_size,
    coordinates,
    import_object,
    resolve_device,
    tensor_fingerprint,
    updated,
)
from lossland.directions import Directions, check_finite, grid_specs, random_directions
from lossland.engine import Engine, EngineOptions, LossFn, check_precision, use_channels_last
from lossland.errors import LosslandError, arg
from lossland.io import SETTINGS_ATTR, Surface, check_contents, check_writable
from lossland.run._driver import drive
from lossland.run._group import join
from lossland.run._lock import run_lock
from lossland.run._options import DTYPES, SurfaceOptions
from lossland.run._settings import RESUME_KEYS, architecture, run_attributes, start_or_resume
from lossland.show import with_figures

Coordinates = str | Axis | Sequence[float] | np.ndarray


def surface(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    *,
    x: Coordinates | None = None,
    y: Coordinates | None = None,
    directions: Directions | None = None,
    loss: LossFn | str | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    split: str = "custom",
    attrs: Mapping[str, Any] | None = None,
    trajectories: Mapping[str, np.ndarray] | None = None,
    options: SurfaceOptions | None = None,
    norm: Any = None,
    ignore: Any = None,
    orthogonalize: bool | None = None,
    seed: int | None = None,
    scheme: Any = None,
    bn: Any = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    dtype: Any = None,
    precision: Any = None,
    points_per_batch: int | None = None,
    compile: bool | None = None,
    memory_format: Any = None,
    checkpoint_every: float | None = None,
    progress: bool | None = None,
    on_accept: Callable[[], Mapping[str, Any]] | None = None,
) -> Surface:
    """Loss and accuracy of ``model`` on ``data`` over a 1-D line or a 2-D plane of weight space.

    θ(α, β) = θ* + α·δ + β·η for ``scheme="li"`` (Li et al.), with δ, η random Gaussian
    directions normalized filter by filter (``norm="filter"``) unless ``directions`` is given.
    ``data`` is ``(inputs, targets)``: the fixed evaluation set. ``x``/``y`` are ``min:max:num``
    specs or coordinates; ``None`` (or ``auto[:NUM]``) lets the kind of directions choose (no
    ``y``: a 1-D line for random directions). With ``out``, progress is checkpointed atomically
    into that HDF5 file and a rerun resumes it. ``model`` is never modified: the engine
    evaluates a private copy. The remaining keywords are the fields of
    :class:`SurfaceOptions` (``None``: its default, or ``options``' value).

    ``on_accept`` runs on rank 0 once every check has passed, the run holds the lock of ``out``
    and has accepted the file (new, replaced or resumed), before any point is computed: the
    place to write files that belong to the run (the CLI saves the directions there, so a
    refused run writes nothing). It returns attributes to record in the surface file.
    """
    opts = updated(
        options or SurfaceOptions(),
        **dict(norm=norm, ignore=ignore, orthogonalize=orthogonalize, seed=seed, scheme=scheme),
        **dict(bn=bn, batch_size=batch_size, device=device, dtype=dtype, precision=precision),
        **dict(points_per_batch=points_per_batch, compile=compile, memory_format=memory_format),
        **dict(checkpoint_every=checkpoint_every, progress=progress),
    )
    run = _validate(model, data, x, y, directions, loss, opts, split, attrs, trajectories)
    group = join(resolve_device(opts.device))  # a group of one unless under torchrun
    settings = run.settings(model, data, split, attrs)
    with contextlib.ExitStack() as held:  # the run lock of ``out``, until the run ends

        def start() -> Surface:  # rank 0: lock, then open or resume the file, then on_accept
            if out is not None:
                held.enter_context(run_lock(check_writable(out)))
            accepted = start_or_resume(out, run.xs, run.ys, split, settings, overwrite)
            return accepted.with_attrs(**(on_accept() if on_accept is not None else {}))

        # the other ranks learn the done points, or rank 0's refusal
        empty = Surface.empty(run.xs, run.ys, split=split)
        result = group.agree(settings, RESUME_KEYS, start, empty)
        if trajectories:  # (T, 2) projected training paths, stored with the surface
            result = replace(result, trajectories=dict(trajectories))
        engine_options = run.engine_options(model, group.device)
        result = result.with_attrs(**run.attributes(attrs, settings, engine_options, len(data[0])))
        pending = ~result.done.reshape(len(run.ys) if run.ys is not None else 1, len(run.xs))
        if not pending.any():
            return result
        engine = run.engine(model, data, engine_options)
        result = drive(
            group,
            engine,
            result,
            run.xs,
            run.ys,
            pending,
            out=out,
            progress=opts.progress,
            checkpoint_every=opts.checkpoint_every,
            count=len(data[0]),
        )
        return with_figures(result, out if group.main else None)  # sharpness figures in the attrs


@dataclass(frozen=True)
class _Run:
    """A validated surface request: the grid, the directions, the loss and the options."""

    xs: np.ndarray
    ys: np.ndarray | None
    directions: Directions
    loss_fn: LossFn | None
    loss_name: str
    options: SurfaceOptions

    def settings(
        self,
        model: nn.Module,
        data: tuple[Tensor, Tensor],
        split: str,
        attrs: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """What a rerun must match to resume the file (see lossland.run._settings)."""
        inputs, targets = data
        d, o = self.directions, self.options
        return {
            "x": axis_text(self.xs),
            "y": None if self.ys is None else axis_text(self.ys),
            "scheme": o.scheme,
            "bn": o.bn,
            "dtype": o.dtype,
            "directions": d.fingerprint(),
            "model": tensor_fingerprint(model.state_dict()),
            "data": tensor_fingerprint({"inputs": inputs, "targets": targets}),
            "loss": self.loss_name,
            "split": split,
            "precision": o.precision,
            "architecture": architecture(model, attrs),
            # Not compared: they only name the cause when a fingerprint above differs.
            "samples": len(inputs),
            "seed": o.seed,
            "norm": d.norm,
            "ignore": d.ignore,
            "orthogonalize": d.orthogonalized,
            "directions_kind": d.kind,
        }

    def engine_options(self, model: nn.Module, device: torch.device) -> EngineOptions:
        o = self.options
        return EngineOptions(
            device=device,
            dtype=DTYPES[o.dtype],
            bn=o.bn,
            channels_last=_channels_last(model, device, o.memory_format),
            points_per_batch=(
                1 if o.bn == "recompute" else _points_per_batch(o, device, model, len(self.xs))
            ),
            compile=o.compile,
            precision=o.precision,
            flush_seconds=o.checkpoint_every,
        )

    def attributes(
        self,
        attrs: Mapping[str, Any] | None,
        settings: Mapping[str, Any],
        engine: EngineOptions,
        samples: int,
    ) -> dict[str, Any]:
        """The run's attributes in the surface file (versions, settings, how it ran)."""
        o = self.options
        return {
            **dict(attrs or {}),
            **run_attributes(
                self.directions,
                scheme=o.scheme,
                bn=o.bn,
                dtype=o.dtype,
                samples=samples,
                seed=o.seed,
            ),
            "device": str(engine.device),
            "precision": o.precision,
            "points_per_batch": engine.points_per_batch,
            "memory_format": "channels_last" if engine.channels_last else "contiguous",
            "loss": self.loss_name,
            SETTINGS_ATTR: dict(settings),
        }

    def engine(
        self, model: nn.Module, data: tuple[Tensor, Tensor], options: EngineOptions
    ) -> Engine:
        d = self.directions
        return Engine(
            model,
            [d.x] if self.ys is None else [d.x, d.y],  # type: ignore[list-item]
            data,
            scheme=self.options.scheme,
            origin=d.origin,
            loss_fn=self.loss_fn,
            batch_size=self.options.batch_size,
            options=options,
        )


def _validate(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    x: Coordinates | None,
    y: Coordinates | None,
    directions: Directions | None,
    loss: LossFn | str | None,
    options: SurfaceOptions,
    split: str,
    attrs: Mapping[str, Any] | None,
    trajectories: Mapping[str, np.ndarray] | None,
) -> _Run:
    """Check the request before any work; draw random directions when none are given."""
    if directions is None:
        ndim: Literal[1, 2] = 1 if y is None else 2
        directions = random_directions(
            model,
            seed=options.seed,
            norm=options.norm,
            ignore=options.ignore,
            ndim=ndim,
            orthogonalize=options.orthogonalize,
        )
    check_contents(split=split, attrs=attrs, trajectories=trajectories)
    xs, ys = _grid(directions, x, y, trajectories)
    check_grid_size(len(xs), None if ys is None else len(ys))
    check_precision(resolve_device(options.device), options.precision)
    if options.scheme != "li" and ys is None:
        raise LosslandError(
            f"{arg('scheme')} {options.scheme} needs two directions: give a {arg('y')} range"
        )
    directions.check_fits(model)
    if ys is not None and directions.y is None:
        raise LosslandError(
            f"a 2-D surface needs two directions, the directions hold one: drop {arg('y')}"
        )
    check_finite(directions)
    loss_fn, loss_name = resolve_loss(loss)
    return _Run(xs, ys, directions, loss_fn, loss_name, options)


def _grid(
    directions: Directions,
    x: Coordinates | None,
    y: Coordinates | None,
    trajectories: Mapping[str, np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Coordinates from specs or values; ``None``/``auto`` specs are the kind's choice."""

    def spec(value: Coordinates | None) -> str | None:
        return value if value is None or isinstance(value, str) else None

    chosen_x, chosen_y = grid_specs(directions, spec(x), spec(y), trajectories)
    xs = coordinates(chosen_x if spec(x) is not None or x is None else x, name="x")
    given_y = y if spec(y) is None and y is not None else chosen_y
    return xs, None if given_y is None else coordinates(given_y, name="y")


def resolve_loss(loss: LossFn | str | None) -> tuple[LossFn | None, str]:
    """The loss callable and a name for the file: cross-entropy by default, or an import path."""
    if loss is None:
        return None, "cross_entropy"
    if isinstance(loss, str):
        fn = import_object(loss, what="loss")
        if not callable(fn):
            raise LosslandError(
                f"{arg('loss')} {loss!r} is not callable: point to a function(logits, targets)"
            )
        return fn, loss
    return loss, getattr(loss, "__qualname__", type(loss).__name__)


def _channels_last(model: nn.Module, device: torch.device, memory_format: str) -> bool:
    if memory_format == "auto":
        return use_channels_last(model, device)
    return memory_format == "channels_last"


def _points_per_batch(
    options: SurfaceOptions, device: torch.device, model: nn.Module, nx: int
) -> int:
    """K = 1 on CPU (measured: batching points gains nothing there); on CUDA from free memory."""
    if options.points_per_batch is not None:
        return options.points_per_batch
    if device.type != "cuda":
        return 1
    free, _ = torch.cuda.mem_get_info(device)
    params = sum(p.numel() for p in model.parameters())
    per_point = params * 4 * 3  # a working copy plus the batched forward's weight reshapes
    return int(max(1, min(32, nx, (0.5 * free) // max(per_point, 1))))
