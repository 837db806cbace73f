"""``surface(model, data, ...)``: directions + plane + engine → a :class:`Surface`, resumable.

The CLI's ``lossland surface`` is :func:`surface_from_config`, a thin layer that loads the
checkpoint and the data split and calls :func:`surface`.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from lossland.config import SurfaceConfig, SurfaceSettings
from lossland.directions import Directions, Ignore, Norm, model_directions, random_directions
from lossland.engine import BNMode, Engine, EngineOptions, LossFn, Precision, finish_stats
from lossland.errors import LosslandError, SurfaceFileError
from lossland.plane import SCHEMES, Axis, Scheme, coordinates
from lossland.surface_file import SETTINGS_ATTR, Surface

S = SurfaceSettings  # the defaults, in one place
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# What must match for a rerun to resume a file (the rest of the settings only explain a refusal).
RESUME_KEYS = (
    "x",
    "y",
    "scheme",
    "bn",
    "dtype",
    "precision",
    "directions",
    "model",
    "architecture",
    "data",
    "loss",
    "split",
)


def surface(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    *,
    x: str | Axis | Sequence[float] = S.x,
    y: str | Axis | Sequence[float] | None = S.y,
    directions: Directions | None = None,
    norm: Norm = S.norm,
    ignore: Ignore = S.ignore,
    scheme: Scheme = S.scheme,
    orthogonalize: bool = S.orthogonalize,
    seed: int = S.seed,
    bn: BNMode = S.bn,
    loss: LossFn | str | None = None,
    batch_size: int = S.batch_size,
    device: str | torch.device = S.device,
    dtype: Literal["float32", "float64"] = S.dtype,
    precision: Precision = S.precision,
    points_per_batch: int | None = S.points_per_batch,
    compile: bool = S.compile,
    memory_format: Literal["auto", "channels_last", "contiguous"] = S.memory_format,
    out: str | Path | None = None,
    overwrite: bool = False,
    checkpoint_every: float = S.checkpoint_every,
    progress: bool = S.progress,
    split: str = "custom",
    attrs: Mapping[str, Any] | None = None,
    trajectories: Mapping[str, np.ndarray] | None = None,
) -> Surface:
    """Loss and accuracy of ``model`` on ``data`` over a 1-D line or a 2-D plane of weight space.

    θ(α, β) = θ* + α·δ + β·η for ``scheme="li"`` (Li et al.), with δ, η random Gaussian
    directions normalized filter by filter (``norm="filter"``) unless ``directions`` is given.
    ``data`` is ``(inputs, targets)``: the fixed evaluation set. With ``out``, progress is
    checkpointed atomically into that HDF5 file and a rerun resumes it. ``model`` is never
    modified: the engine evaluates a private copy.
    """
    from lossland.devices import resolve_device

    xs = coordinates(x, name="x")
    ys = None if y is None else coordinates(y, name="y")
    if scheme not in SCHEMES:
        raise LosslandError(f"unknown scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")
    if scheme != "li" and ys is None:
        raise LosslandError(f"scheme {scheme} needs two directions: give a y range")
    if dtype not in DTYPES:
        raise LosslandError(f"unknown dtype {dtype!r}: choose float32 or float64")
    ndim: Literal[1, 2] = 1 if ys is None else 2
    if directions is None:
        directions = random_directions(
            model, seed=seed, norm=norm, ignore=ignore, ndim=ndim, orthogonalize=orthogonalize
        )
    directions.check_fits(model)
    if ndim == 2 and directions.y is None:
        raise LosslandError("a 2-D surface needs two directions, the directions hold one: drop y")
    _check_finite(directions)
    inputs, targets = data
    loss_fn, loss_name = resolve_loss(loss)
    torch_device = resolve_device(device)
    from lossland.distributed import join

    group = join(torch_device)  # None unless several processes run under torchrun
    if group is not None:
        torch_device = group.device  # one GPU per local rank
    channels_last = _channels_last(model, torch_device, memory_format)
    k = (
        1
        if bn == "recompute"
        else _points_per_batch(points_per_batch, torch_device, model, len(xs))
    )
    settings = {
        "x": _axis_text(xs),
        "y": None if ys is None else _axis_text(ys),
        "scheme": scheme,
        "bn": bn,
        "dtype": dtype,
        "directions": directions.fingerprint(),
        "model": tensor_fingerprint(model.state_dict()),
        "data": tensor_fingerprint({"inputs": inputs, "targets": targets}),
        "loss": loss_name,
        "split": split,
        "precision": precision,
        "architecture": _architecture(model, attrs),
        # Not compared: they only name the cause when a fingerprint above differs.
        "samples": len(inputs),
        "seed": seed,
        "norm": directions.norm,
        "ignore": directions.ignore,
        "orthogonalize": directions.orthogonalized,
        "directions_kind": directions.kind,
    }
    if group is None:
        result = _start_or_resume(out, xs, ys, split, settings, overwrite)
    else:  # rank 0 opens the file, the others learn its done points
        result = group.agree(
            settings,
            RESUME_KEYS,
            lambda: _start_or_resume(out, xs, ys, split, settings, overwrite),
            Surface.empty(xs, ys, split=split),
        )
    if trajectories:  # (T, 2) projected training paths, stored with the surface
        result = replace(result, trajectories=dict(trajectories))
    meta = {
        **dict(attrs or {}),
        **run_attributes(
            directions, scheme=scheme, bn=bn, dtype=dtype, samples=len(inputs), seed=seed
        ),
        "device": str(torch_device),
        "precision": precision,
        "points_per_batch": k,
        "memory_format": "channels_last" if channels_last else "contiguous",
        "loss": loss_name,
        SETTINGS_ATTR: settings,
    }
    result = result.with_attrs(**meta)
    pending = ~result.done.reshape(len(ys) if ys is not None else 1, len(xs))
    if not pending.any():
        return result
    engine = Engine(
        model,
        [directions.x] if ys is None else [directions.x, directions.y],  # type: ignore[list-item]
        (inputs, targets),
        scheme=scheme,
        origin=directions.origin,
        loss_fn=loss_fn,
        batch_size=batch_size,
        options=EngineOptions(
            device=torch_device,
            dtype=DTYPES[dtype],
            bn=bn,
            channels_last=channels_last,
            points_per_batch=k,
            compile=compile,
            precision=precision,
            flush_seconds=checkpoint_every,
        ),
    )
    result = (run_engine if group is None else group.run)(
        engine,
        result,
        xs,
        ys,
        pending,
        out=out,
        progress=progress,
        checkpoint_every=checkpoint_every,
        count=len(inputs),
    )
    from lossland.sharpness import with_figures

    writer = group is None or group.main  # under torchrun only rank 0 writes
    return with_figures(result, out if writer else None)  # sharpness figures in the attributes


def run_engine(
    engine: Engine,
    result: Surface,
    xs: np.ndarray,
    ys: np.ndarray | None,
    pending: np.ndarray,
    *,
    out: str | Path | None,
    progress: bool,
    checkpoint_every: float,
    count: int,
    rows: Sequence[int] | None = None,
) -> Surface:
    """Drive the engine, store blocks in ``result`` and checkpoint ``out`` every few seconds.

    Every checkpoint replaces the file atomically, so a crash at any moment leaves the last one.
    On an error, Ctrl-C or SIGTERM the points computed so far are written before the error
    propagates; an interruption becomes :class:`~lossland.interrupts.Interrupted`, whose message
    says what was saved. While the run writes ``out`` it holds the file's run lock.
    """
    from lossland.interrupts import Interrupted, held_signals, signal_number, stop_on_signals
    from lossland.runlock import run_lock

    started = time.perf_counter()
    previous = float(result.attrs.get("wall_time_s", 0.0))
    bar = _progress_bar(int(pending.sum()), progress)
    last_save = time.monotonic()
    on_disk = int(result.done.sum())  # points in the file as last written (a resumed file's)
    dirty = False

    def save() -> None:
        nonlocal result, last_save, on_disk, dirty
        result = result.with_attrs(wall_time_s=previous + time.perf_counter() - started)
        if out is not None:
            result.save(out)
            on_disk, dirty = int(result.done.sum()), False
        last_save = time.monotonic()

    def kept() -> str:
        if on_disk == 0:
            return "no points of this run are saved yet"
        return f"{out} keeps the {on_disk} of {result.done.size} points of its last checkpoint"

    with contextlib.ExitStack() as stack:
        check = stack.enter_context(stop_on_signals())  # SIGTERM (preemption) = Ctrl-C
        if out is not None:
            stack.enter_context(run_lock(out))

        def tick(points: int) -> None:
            if bar is not None:
                bar.update(points)
            check()  # a stop signal whose first raise was swallowed

        try:
            for block in engine.rows(
                xs, ys if ys is not None else np.zeros(1), pending, rows=rows, tick=tick
            ):
                mean, sem, acc = finish_stats(block.stats, count)
                index = block.cols if ys is None else (block.row, block.cols)
                result.with_values(index, mean, acc, sem)
                dirty = True
                if out is not None and time.monotonic() - last_save >= checkpoint_every:
                    save()
        except BaseException as exc:
            if bar is not None:
                bar.close()
            if out is None:
                raise
            failed: LosslandError | None = None
            with held_signals():  # a second Ctrl-C must not cut this checkpoint short
                if dirty:
                    try:
                        save()
                    except LosslandError as save_error:
                        failed = save_error
            if isinstance(exc, KeyboardInterrupt):
                what = (
                    f"{on_disk} of {result.done.size} points saved in {out}; "
                    "rerun the same command to resume"
                    if failed is None
                    else f"saving failed ({failed}); {kept()}"
                )
                raise Interrupted(f"interrupted; {what}", signum=signal_number(exc)) from None
            if not isinstance(exc, LosslandError):
                raise  # a bug: keep its traceback (the points are saved when saving worked)
            if failed is not None or dirty:
                cause = "" if str(failed) == str(exc) or failed is None else f"; saving: {failed}"
                raise LosslandError(f"{exc}{cause} ({kept()})") from exc
            if result.done.any():
                raise LosslandError(
                    f"{exc} (points done so far are saved in {out}; "
                    "rerun the same command to resume)"
                ) from exc
            raise
        if bar is not None:
            bar.close()
        with held_signals():
            try:
                save()
            except LosslandError as exc:
                raise LosslandError(f"{exc} ({kept()})") from None
    return result


# --- helpers ------------------------------------------------------------------------------


def resolve_loss(loss: LossFn | str | None) -> tuple[LossFn | None, str]:
    """The loss callable and a name for the file: cross-entropy by default, or an import path."""
    if loss is None:
        return None, "cross_entropy"
    if isinstance(loss, str):
        from lossland.models import import_object

        fn = import_object(loss, what="loss")
        if not callable(fn):
            raise LosslandError(
                f"loss {loss!r} is not callable: point to a function(logits, targets)"
            )
        return fn, loss
    return loss, getattr(loss, "__qualname__", type(loss).__name__)


def tensor_fingerprint(tensors: Mapping[str, Tensor]) -> str:
    """sha256 over names, shapes and bytes: identifies weights or data for resume checks."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().data)  # no copy
    return digest.hexdigest()[:16]


def run_attributes(
    directions: Directions, *, scheme: str, bn: str, dtype: str, samples: int, seed: int
) -> dict[str, Any]:
    from lossland import __version__

    cosine = directions.cosine
    return {
        "lossland_version": __version__,
        "torch_version": torch.__version__,
        "directions_kind": directions.kind,
        "directions_sha256": directions.fingerprint(),
        "norm": directions.norm,
        "ignore": directions.ignore,
        "orthogonalized": directions.orthogonalized,
        "cosine": "n/a" if cosine is None else cosine,
        "directions_info": dict(directions.info),
        "scheme": scheme,
        "bn": bn,
        "dtype": dtype,
        "samples": samples,
        "seed": directions.seed if directions.seed is not None else seed,
    }


def _axis_text(values: np.ndarray) -> str:
    if len(values) > 1 and np.allclose(np.diff(values), values[1] - values[0], rtol=1e-9, atol=0):
        return f"{values[0]:.17g}:{values[-1]:.17g}:{len(values)}"
    return ",".join(f"{v:.17g}" for v in values)


def _start_or_resume(
    out: str | Path | None,
    xs: np.ndarray,
    ys: np.ndarray | None,
    split: str,
    settings: Mapping[str, Any],
    overwrite: bool,
) -> Surface:
    """A fresh result, or the file's when it holds this very run (refusing anything else)."""
    from lossland.atomic import check_writable
    from lossland.surface_file import SurfaceReadError

    fresh = Surface.empty(xs, ys, split=split)
    if out is None:
        return fresh
    path = check_writable(out)
    if not path.exists() or overwrite:
        return fresh
    fix = "pass --overwrite to replace it or choose another -o"
    try:
        previous = Surface.load(path)
    except SurfaceReadError as exc:
        raise SurfaceFileError(
            f"{path} exists but cannot be resumed: it {exc.problem}; {fix}"
        ) from None
    except SurfaceFileError as exc:
        raise SurfaceFileError(f"{path} exists but cannot be resumed ({exc}); {fix}") from None
    old = previous.settings
    if not old:
        raise SurfaceFileError(
            f"{path} exists and holds no lossland run settings (written by another tool?): {fix}"
        )
    differences = setting_differences(old, settings)
    if not differences and (
        previous.split != split
        or previous.shape != fresh.shape
        or not np.array_equal(previous.x, xs)
        or (ys is not None and (previous.y is None or not np.array_equal(previous.y, ys)))
    ):
        differences = ["its coordinates do not match its recorded settings"]
    if differences:
        detail = "; ".join(differences[:4])
        if len(differences) > 4:
            detail += f"; and {len(differences) - 4} more"
        raise SurfaceFileError(f"{path} was computed with other settings ({detail}): {fix}")
    return previous


# Resume settings as the user knows them: the option, or what a fingerprint stands for.
_OPTIONS = {
    "x": "--x",
    "y": "--y",
    "scheme": "--scheme",
    "bn": "--bn",
    "dtype": "--dtype",
    "precision": "--precision",
    "loss": "--loss",
    "split": "--split",
    "samples": "--samples",
    "seed": "--seed",
    "norm": "--norm",
    "ignore": "--ignore",
    "orthogonalize": "--orthogonalize",
    "directions_kind": "the kind of directions",
}
_FINGERPRINTS = {
    "directions": (
        ("seed", "norm", "ignore", "orthogonalize", "directions_kind"),
        "other directions (another --directions file or --to checkpoint)",
    ),
    "data": (("split", "samples", "seed"), "other evaluation data (other data files)"),
    "model": ((), "other model weights (another or retrained checkpoint)"),
    "architecture": ((), "another model architecture (--model, --width, --activation)"),
}


def setting_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Why a file cannot be resumed by this run, in the user's terms (empty: it can)."""

    def shown(key: str, value: Any) -> str:
        if value is None:
            return "none (a 1-D line)" if key == "y" else "not recorded"
        return str(value)

    def option(key: str) -> str:
        before, now = shown(key, old.get(key)), shown(key, new.get(key))
        return f"{_OPTIONS[key]}: file has {before}, this run {now}"

    reported: list[str] = []
    lines: list[str] = []
    for key in RESUME_KEYS:
        if key not in _FINGERPRINTS and old.get(key) != new.get(key):
            reported.append(key)
            lines.append(option(key))
    for key, (causes, meaning) in _FINGERPRINTS.items():
        if old.get(key) == new.get(key):
            continue
        found = [k for k in causes if k in old and old.get(k) != new.get(k)]
        if not found:
            lines.append(meaning)
        for k in found:
            if k not in reported:
                reported.append(k)
                lines.append(option(k))
    return lines


def _check_finite(directions: Directions) -> None:
    """NaN or inf in a direction would silently turn every point into NaN."""
    for prefix, group in (("x", directions.x), ("y", directions.y), ("origin", directions.origin)):
        bad = [
            name
            for name, t in (group or {}).items()
            if t.is_floating_point() and not bool(torch.isfinite(t).all())
        ]
        if bad:
            raise LosslandError(
                f"the directions hold NaN or inf in {prefix}/{bad[0]}"
                + (f" and {len(bad) - 1} more tensors" if len(bad) > 1 else "")
                + ": recreate them"
            )


def _architecture(model: nn.Module, attrs: Mapping[str, Any] | None) -> str:
    """What network the weights belong to: the CLI's model spec, else the module's structure."""
    spec = (attrs or {}).get("model_spec")
    text = str(spec) if spec else f"{type(model).__module__}.{type(model).__qualname__}\n{model!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _channels_last(model: nn.Module, device: torch.device, memory_format: str) -> bool:
    if memory_format == "channels_last":
        return True
    if memory_format == "contiguous":
        return False
    from lossland.train import use_channels_last

    return use_channels_last(model, device)


def _points_per_batch(
    requested: int | None, device: torch.device, model: nn.Module, nx: int
) -> int:
    """K = 1 on CPU (measured: batching points gains nothing there); on CUDA from free memory."""
    if requested is not None:
        if requested < 1:
            raise LosslandError(f"--points-per-batch must be at least 1, got {requested}")
        return requested
    if device.type != "cuda":
        return 1
    free, _ = torch.cuda.mem_get_info(device)
    params = sum(p.numel() for p in model.parameters())
    per_point = params * 4 * 3  # a working copy plus the batched forward's weight reshapes
    return int(max(1, min(32, nx, (0.5 * free) // max(per_point, 1))))


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, unit="pt", desc="surface", dynamic_ncols=True, leave=False, disable=None
    )


# --- the CLI layer -------------------------------------------------------------------------------


def select_samples(
    inputs: Tensor, targets: Tensor, samples: str | int, seed: int, *, split: str = "split"
) -> tuple[Tensor, Tensor]:
    """A fixed, seeded subset (sorted indices), or everything for ``"all"``."""
    if str(samples) == "all":
        return inputs, targets
    try:
        n = int(samples)
    except ValueError:
        raise LosslandError(f"--samples must be a number or 'all', got {samples!r}") from None
    if n < 1:
        raise LosslandError(f"--samples must be at least 1, got {n}")
    if n > len(inputs):
        raise LosslandError(
            f"--samples {n} is larger than the {split} split ({len(inputs)} samples): "
            "use a smaller number or 'all'"
        )
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(inputs), generator=generator)[:n].sort().values
    return inputs[index], targets[index]


def surface_from_config(config: SurfaceConfig) -> Surface:
    """``lossland surface CHECKPOINT -o FILE``: load, choose directions, compute, save."""
    from lossland.atomic import check_writable, sha256_file
    from lossland.checkpoint import load_checkpoint, load_model
    from lossland.data import load_fashion_mnist
    from lossland.distributed import is_main_process
    from lossland.train import spec_from_config

    main = is_main_process()  # under torchrun only rank 0 writes files and prints
    out = check_writable(config.out) if main else Path(config.out)
    spec = (
        spec_from_config(config.model, config.width, config.activation, config.model_arg)
        if config.model is not None
        else None
    )
    model, checkpoint = load_model(config.checkpoint, spec=spec)
    images, labels = load_fashion_mnist(config.split, data_dir=config.data_dir)
    inputs, targets = select_samples(
        images, labels, config.samples, config.seed, split=config.split
    )
    ys = config.y
    xs: str = config.x
    from lossland.special_planes import special_plane

    # --trajectory (PCA), --directions hessian, or a PCA directions file with its paths.
    plane = special_plane(config, model, checkpoint.state_dict, (inputs, targets), out)
    if plane is not None:
        directions, directions_file = plane.directions, plane.directions_file
        xs, ys = plane.x, plane.y
    elif config.to:
        if config.directions is not None:
            raise LosslandError("--to and --directions both set: choose one way to make directions")
        if len(config.to) > 2:
            raise LosslandError("--to takes one checkpoint (a line) or two (a plane)")
        ends = [load_checkpoint(p).state_dict for p in config.to]
        directions = model_directions(checkpoint.state_dict, *ends)
        if len(config.to) == 2 and ys is None:
            raise LosslandError(
                "two --to checkpoints make a plane: give a y range, e.g. --y 0:1:21"
            )
        if len(config.to) == 1 and ys is not None:
            raise LosslandError("one --to checkpoint makes a line: drop --y (or add a second --to)")
        directions_file = None
    elif config.directions is not None:
        directions = Directions.load(config.directions)
        directions.check_fits(model, source=f"directions in {config.directions}")
        directions_file = config.directions
    else:
        directions = random_directions(
            model,
            seed=config.seed,
            norm=config.norm,
            ignore=config.ignore,
            ndim=1 if ys is None else 2,
            orthogonalize=config.orthogonalize,
        )
        directions_file = save_directions(directions, config, out)
    if main and directions.cosine is not None:
        print(f"cosine(x, y) = {directions.cosine:+.2e}", file=sys.stderr)
    used_spec = spec or checkpoint.model_spec
    attrs = {
        "model": str(used_spec),
        "model_spec": used_spec.to_json() if used_spec is not None else "",
        "checkpoint": str(config.checkpoint),
        "checkpoint_sha256": checkpoint.sha256 or "",
        "directions_file": str(directions_file) if directions_file else "",
        "directions_file_sha256": (
            sha256_file(directions_file)
            if main and directions_file and directions_file.exists()
            else ""
        ),
        "to": [str(p) for p in config.to],
        "samples_requested": config.samples,
        **(dict(plane.attrs) if plane is not None else {}),
    }
    return surface(
        model,
        (inputs, targets),
        x=xs,
        y=ys,
        directions=directions,
        scheme=config.scheme,
        seed=config.seed,
        bn=config.bn,
        loss=config.loss,
        batch_size=config.batch_size,
        device=config.device,
        dtype=config.dtype,
        precision=config.precision,
        points_per_batch=config.points_per_batch,
        compile=config.compile,
        memory_format=config.memory_format,
        out=out,
        overwrite=config.overwrite,
        checkpoint_every=config.checkpoint_every,
        progress=config.progress,
        split=config.split,
        attrs=attrs,
        trajectories=plane.trajectories if plane is not None else None,
    )


def save_directions(directions: Directions, config: SurfaceConfig, out: Path) -> Path:
    """Save new directions to --save-directions (default: beside the surface) and return the path.

    Only rank 0 writes, and nothing is written when the file already holds these directions or
    when ``out`` holds a surface of other directions that this run will refuse to touch.
    """
    from lossland.distributed import is_main_process

    path = config.save_directions or out.with_name(out.name + ".directions.safetensors")
    if (
        is_main_process()
        and _will_write(out, directions, config.overwrite)
        and not (path.exists() and _same_directions(path, directions))
    ):
        directions.save(path)
    return path


def _will_write(out: Path, directions: Directions, overwrite: bool) -> bool:
    """False when ``out`` holds a surface of other directions that this run will refuse to
    touch: its directions file must then stay as it is."""
    if overwrite or not out.exists():
        return True
    try:
        return bool(Surface.load(out).settings.get("directions") == directions.fingerprint())
    except LosslandError:
        return False


def _same_directions(path: Path, directions: Directions) -> bool:
    try:
        return Directions.load(path).fingerprint() == directions.fingerprint()
    except LosslandError:
        return False


def summary(result: Surface, out: Path | None, seconds: float) -> str:
    ax, ay, _ = result.argmin()
    where = f"x={ax:g}" if ay is None else f"x={ax:g}, y={ay:g}"
    finite = result.loss[result.done & np.isfinite(result.loss)]
    rate = result.done.sum() / max(seconds, 1e-9)
    lines = [
        f"{'x'.join(str(s) for s in result.shape)} surface in {seconds:.1f} s ({rate:.1f} points/s)"
        + (f" → {out}" if out else ""),
    ]
    if finite.size:
        lines.append(f"loss min {finite.min():.4g} at ({where}), max {finite.max():.4g}")
    center = result.value_at_origin()
    if center is not None and math.isfinite(center):
        lines.append(f"loss at the centre {center:.4g}")
    from lossland.sharpness import format_figures

    lines += format_figures(result)  # sharpness, eigenvalues, barrier
    return "\n".join(lines)
