"""``lossland surface CHECKPOINT -o FILE``: load, choose the plane, compute, save, summarise.

The plane: random directions (default), ``--directions FILE`` (reused exactly), ``--to CKPT``
(once or twice: between models), ``--trajectory RUN`` (the PCA plane of training runs) or
``--directions hessian`` (the top two Hessian eigenvectors).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from lossland.cli._args import Command, flag
from lossland.cli._common import CheckpointModelArgs, SampleArgs, note, surface_summary
from lossland.core import check_spec, resolve_device
from lossland.directions import DTYPES as HESSIAN_DTYPES
from lossland.directions import (
    Directions,
    Plane,
    hessian_plane,
    model_directions,
    random_directions,
    trajectory_plane,
)
from lossland.engine import Evaluator
from lossland.errors import LosslandError
from lossland.io import Checkpoint, Surface, check_writable, load_checkpoint, sha256_file
from lossland.run import SurfaceOptions, is_main_process, surface

HESSIAN = "hessian"


@dataclass(kw_only=True)
class SurfaceArgs(CheckpointModelArgs, SampleArgs):
    """Compute a loss surface around a checkpoint and write it as HDF5."""

    checkpoint: Path = flag(
        doc="trained checkpoint (safetensors or a plain state dict)", positional=True
    )
    out: Path = flag(Path("surface.h5"), short="-o", doc="surface file (HDF5)")
    x: str | None = flag(
        None,
        doc="x range min:max:num (default -1:1:51; with --trajectory, --directions hessian or "
        "auto[:NUM]: chosen to fit the plane)",
    )
    y: str | None = flag(None, doc="y range min:max:num (omit for a 1-D line of random directions)")
    directions: str | None = flag(
        None,
        doc="reuse directions from this safetensors file, or 'hessian': the plane of the top two "
        "Hessian eigenvectors at the checkpoint (unit norm; default range ±sqrt(2/λ1))",
    )
    save_directions: Path | None = flag(
        None, doc="where to save the directions (default: <out>.directions.safetensors)"
    )
    to: list[Path] = flag(
        [],
        doc="another checkpoint: the line (or with two, the plane) between checkpoints",
        repeat=True,
    )
    trajectory: list[Path] = flag(
        [],
        doc="a training run's checkpoint folder (lossland train --save-every): the PCA plane of "
        "the run around CHECKPOINT with the run's path drawn; repeat for several runs on one "
        "plane; omitted --x/--y (or auto, auto:NUM) fit the paths",
        repeat=True,
    )
    pca_runs: str = flag(
        "all", doc="with several --trajectory: the runs that define the plane, e.g. 1 or 1,2"
    )
    overwrite: bool = flag(False, doc="replace an existing surface file with other settings")
    seeds: int = flag(
        1,
        doc="compute the surface for N direction seeds (--seed, --seed+1, ...) into one file and "
        "report how much the picture depends on them",
    )


def run(args: SurfaceArgs, options: SurfaceOptions) -> int:
    started = time.perf_counter()
    result = compute(args, options)
    if is_main_process():  # under torchrun rank 0 speaks for all
        print(surface_summary(result, args.out, time.perf_counter() - started))
    return 0


def compute(args: SurfaceArgs, options: SurfaceOptions) -> Surface:
    """Load the model and data, make the plane, compute (or resume) the surface."""
    main = is_main_process()  # under torchrun only rank 0 writes files and prints
    out = check_writable(args.out) if main else Path(args.out)
    check_spec(args.x, name="x")
    check_spec(args.y, name="y")
    model, checkpoint = args.load(args.checkpoint)
    evaluator = args.evaluator()
    data = args.load_data(options.seed)
    if args.seeds == 1:
        plane, directions_file = choose_plane(
            args, options, model, checkpoint, data, out, evaluator
        )
        if main and plane.directions.cosine is not None:
            note(f"cosine(x, y) = {plane.directions.cosine:+.2e}")
    elif args.directions is not None or args.to or args.trajectory:
        raise LosslandError("--seeds compares random planes: drop --directions, --to, --trajectory")
    else:  # every seed draws its own random directions
        plane, directions_file = Plane(Directions(x={}), args.x, args.y), None
    used_spec = (args.spec() if args.model is not None else None) or checkpoint.model_spec
    attrs = {
        "model": str(used_spec),
        "model_spec": used_spec.to_json() if used_spec is not None else "",
        "checkpoint": str(args.checkpoint),
        "checkpoint_sha256": checkpoint.sha256 or "",
        "directions_file": str(directions_file) if directions_file else "",
        "directions_file_sha256": (
            sha256_file(directions_file)
            if main and directions_file and directions_file.exists()
            else ""
        ),
        "to": [str(p) for p in args.to],
        "samples_requested": args.samples,
        **dict(plane.attrs),
    }
    return surface(
        model,
        data,
        x=plane.x,
        y=plane.y,
        directions=plane.directions if plane.directions.x else None,
        evaluator=evaluator,
        out=out,
        overwrite=args.overwrite,
        split=args.split,
        attrs=attrs,
        trajectories=plane.trajectories or None,
        seeds=args.seeds,
        options=options,
    )


def choose_plane(
    args: SurfaceArgs,
    options: SurfaceOptions,
    model: nn.Module,
    checkpoint: Checkpoint,
    data: Any,
    out: Path,
    evaluator: Evaluator | None,
) -> tuple[Plane, Path | None]:
    """The plane the flags ask for, and the file holding its directions (None: not stored)."""
    hessian = args.directions == HESSIAN
    asked = [
        name
        for name, given in (
            ("--trajectory", bool(args.trajectory)),
            ("--to", bool(args.to)),
            ("--directions hessian" if hessian else "--directions", args.directions is not None),
        )
        if given
    ]
    if len(asked) > 1:
        raise LosslandError(f"{asked[0]} and {asked[1]} both set: choose one kind of plane")
    if args.pca_runs != "all" and not args.trajectory:
        raise LosslandError("--pca-runs needs --trajectory: give the run folders")
    if (args.trajectory or hessian) and options.scheme != "li":
        raise LosslandError(f"{asked[0]} planes use scheme li, not {options.scheme}: drop --scheme")
    if args.trajectory:
        plane = _trajectory(args, model, checkpoint)
        stored = save_directions(_with_paths(plane), args, out)
        # The surface records the labels with the directions; the paths in its own datasets.
        info = {**dict(plane.directions.info), "axis_labels": list(plane.attrs["axis_labels"])}
        return replace(plane, directions=replace(plane.directions, info=info)), stored
    if hessian:
        plane = replace(_hessian(options, model, data, evaluator), x=args.x, y=args.y)
        return plane, save_directions(plane.directions, args, out)
    if args.to:
        if len(args.to) > 2:
            raise LosslandError("--to takes one checkpoint (a line) or two (a plane)")
        ends = [load_checkpoint(p).state_dict for p in args.to]
        return Plane(model_directions(checkpoint.state_dict, *ends), args.x, args.y), None
    if args.directions is not None:
        return _from_file(args, model), Path(args.directions)
    directions = random_directions(
        model,
        seed=options.seed,
        norm=options.norm,
        ignore=options.ignore,
        ndim=1 if args.y is None else 2,
        orthogonalize=options.orthogonalize,
    )
    return Plane(directions, args.x, args.y), save_directions(directions, args, out)


def _trajectory(args: SurfaceArgs, model: nn.Module, checkpoint: Checkpoint) -> Plane:
    started = time.perf_counter()
    names = [n for n, _ in model.named_parameters()]
    plane = trajectory_plane(
        checkpoint.state_dict, args.trajectory, names=names, pca_runs=args.pca_runs
    )
    info = plane.directions.info
    ratio = info["explained_variance_ratio"]
    note(
        f"PCA of {info['pca_checkpoints']} checkpoints: PC1 {100 * ratio[0]:.1f} %, "
        f"PC2 {100 * ratio[1]:.1f} % of the variance ({time.perf_counter() - started:.1f} s)"
    )
    for name, off in plane.attrs["trajectory_off_plane"].items():
        if off > 0.5:
            note(
                f"note: run {name} lies far off the plane (up to {100 * off:.0f} % of its "
                "largest distance from the final point): its drawn path is a shadow"
            )
    return replace(plane, x=args.x, y=args.y)


def _with_paths(plane: Plane) -> Directions:
    """PCA directions carrying their paths and labels, so --directions FILE restores them."""
    info = {
        **dict(plane.directions.info),
        "trajectories": {k: np.asarray(v).tolist() for k, v in plane.trajectories.items()},
        "axis_labels": list(plane.attrs["axis_labels"]),
    }
    return replace(plane.directions, info=info)


def _hessian(
    options: SurfaceOptions, model: nn.Module, data: Any, evaluator: Evaluator | None
) -> Plane:
    started = time.perf_counter()
    plane = hessian_plane(
        model,
        data,
        evaluator=evaluator,
        batch_size=min(options.batch_size, 256),
        device=resolve_device(options.device),
        dtype=HESSIAN_DTYPES[options.dtype],
        seed=options.seed,
    )
    info = plane.directions.info
    note(
        "Hessian eigenvalues "
        + ", ".join(f"λ{i + 1} = {v:.4g}" for i, v in enumerate(info["eigenvalues"]))
        + f" (Lanczos, {info['lanczos_iterations']} iterations, "
        f"{time.perf_counter() - started:.1f} s)"
    )
    return plane


def _from_file(args: SurfaceArgs, model: nn.Module) -> Plane:
    """Directions from a file; PCA directions bring back their paths and axis labels."""
    assert args.directions is not None
    directions = Directions.load(args.directions)
    directions.check_fits(model, source=f"directions in {args.directions}")
    raw = directions.info.get("trajectories")
    if directions.kind != "pca" or not isinstance(raw, dict):
        return Plane(directions, x=args.x, y=args.y)
    trajectories = {str(k): np.asarray(v, dtype=np.float64).reshape(-1, 2) for k, v in raw.items()}
    attrs: dict[str, Any] = {}
    labels = directions.info.get("axis_labels")
    if isinstance(labels, list) and len(labels) == 2:
        attrs["axis_labels"] = [str(v) for v in labels]
    # The paths live in the surface file's own datasets: not again in its attributes.
    info = {k: v for k, v in directions.info.items() if k != "trajectories"}
    return Plane(replace(directions, info=info), args.x, args.y, attrs, trajectories)


def save_directions(directions: Directions, args: SurfaceArgs, out: Path) -> Path:
    """Save new directions to --save-directions (default: beside the surface) and return the path.

    Only rank 0 writes, and nothing is written when the file already holds these directions or
    when ``out`` holds a surface of other directions that this run will refuse to touch.
    """
    path = args.save_directions or out.with_name(out.name + ".directions.safetensors")
    if (
        is_main_process()
        and _will_write(out, directions, args.overwrite)
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


COMMAND = Command("surface", (SurfaceArgs, SurfaceOptions), run)
