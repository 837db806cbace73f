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
from lossland.cli._output import say, shown
from lossland.core import check_grid_size, check_spec, resolve_device
from lossland.directions import DTYPES as HESSIAN_DTYPES
from lossland.directions import (
    Directions,
    Plane,
    hessian_plane,
    model_directions,
    random_directions,
    trajectory_plane,
)
from lossland.engine import Evaluator, known_samples
from lossland.errors import LosslandError
from lossland.io import Checkpoint, Surface, check_output, load_checkpoint, sha256_file
from lossland.run import (
    SurfaceOptions,
    check_cost,
    check_seed_range,
    is_main_process,
    surface,
)
from lossland.zoo import spec_to_build

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
        None,
        doc="save the directions here (random ones are saved only when asked: the surface "
        "records their recipe; PCA and Hessian ones go to <out>.directions.safetensors)",
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
        say(surface_summary(result, args.out, time.perf_counter() - started))
    return 0


def compute(args: SurfaceArgs, options: SurfaceOptions) -> Surface:
    """Check the outputs and ranges, load the model and data, make the plane, compute (or
    resume) the surface. New directions are saved only once the run has taken the lock of the
    surface file and accepted it (``on_accept``), so a refused run writes nothing."""
    main = is_main_process()  # under torchrun only rank 0 writes files and prints
    out = Path(args.out)
    outputs = _Outputs(out, _directions_file(args, out), _inputs(args), args.overwrite)
    if main:
        outputs.check()
    nx, ny = _grid_size(args)
    check_grid_size(nx, ny)
    if args.seeds != 1:
        check_seed_range(args.seeds, options.seed)  # the whole range, before any work
    model, checkpoint = args.load(args.checkpoint)
    cost: dict[str, Any] = {"nx": nx, "ny": ny, "seeds": args.seeds, "out": out}
    samples = args.known_samples()
    check_cost(model, options, samples=samples, **cost)  # before the data is read
    evaluator = args.evaluator()
    data = args.load_data(options.seed)
    if samples is None:  # and before the plane (Hessian, PCA) is computed
        check_cost(model, options, samples=known_samples(data), **cost)
    if args.seeds != 1:  # every seed draws its own random directions
        if args.directions is not None or args.to or args.trajectory:
            raise LosslandError(
                "--seeds compares random planes: drop --directions, --to, --trajectory"
            )
        plane, new = Plane(Directions(x={}), args.x, args.y), None
    else:
        plane, new = choose_plane(args, options, model, checkpoint, data, evaluator)
        if main and plane.directions.cosine is not None:
            note(f"cosine(x, y) = {plane.directions.cosine:+.2e}")
    used_spec = spec_to_build(checkpoint, args.given())
    attrs = {
        "model": str(used_spec),
        "model_spec": used_spec.to_json(),
        "checkpoint": str(args.checkpoint),
        "checkpoint_sha256": checkpoint.sha256 or "",
        "to": [str(p) for p in args.to],
        "samples_requested": args.samples,
        **dict(plane.attrs),
    }
    given = Path(args.directions) if args.directions not in (None, HESSIAN) else None
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
        on_accept=lambda: outputs.accept(new, given),
    )


def _grid_size(args: SurfaceArgs) -> tuple[int, int | None]:
    """The grid's points per axis as far as the flags tell (auto: its NUM), and whether it is
    a plane (None: a line), before the plane is made."""
    plane = (
        args.y is not None
        or bool(args.trajectory)
        or args.directions == HESSIAN
        or len(args.to) > 1
    )
    nx = check_spec(args.x, name="x")
    return nx, check_spec(args.y, name="y") if plane else None


@dataclass(frozen=True)
class _Outputs:
    """The files a surface command writes: the surface (``out``) and, when the plane's
    directions are new, their file (``directions``); never one of ``inputs``."""

    out: Path
    directions: Path | None
    inputs: list[Path]
    overwrite: bool

    def check(self) -> None:
        """Before any work (rank 0). Replacing ``out`` is the run's choice (resume, or
        --overwrite); an existing directions file can be the run's own only when it lies
        beside the surface being resumed (decided in :meth:`accept`)."""
        check_output(self.out, overwrite=True, inputs=self.inputs)
        if self.directions is not None:
            self._check_directions(own=self.out.exists())

    def accept(self, new: Directions | None, given: Path | None) -> dict[str, str]:
        """``on_accept`` (rank 0, holding the lock, the surface file accepted): save new
        directions, unless the file holds these very ones; the attributes naming the file."""
        keep = self.directions
        if new is not None and keep is not None and not _same_directions(keep, new):
            self._check_directions(own=False)
            new.save(keep)
        file = self.directions if new is not None else given
        return {
            "directions_file": str(file or ""),
            "directions_file_sha256": sha256_file(file) if file and file.exists() else "",
        }

    def _check_directions(self, *, own: bool) -> None:
        assert self.directions is not None
        inputs = [*self.inputs, self.out]
        check_output(
            self.directions,
            overwrite=self.overwrite,
            own=own,
            inputs=inputs,
            name="save_directions",
        )


def _inputs(args: SurfaceArgs) -> list[Path]:
    """The files this command reads: outputs must never be one of them."""
    files = [args.checkpoint, *args.to]
    if args.directions not in (None, HESSIAN):
        files.append(Path(str(args.directions)))
    files += [f for folder in args.trajectory if folder.is_dir() for f in folder.iterdir()]
    return files


def _directions_file(args: SurfaceArgs, out: Path) -> Path | None:
    """Where the new directions of this plane go: random directions only with
    --save-directions (the surface file records their recipe: seed, norm, ignore, and their
    fingerprint), PCA and Hessian directions beside the surface by default (they cannot be
    regenerated cheaply); None where they are read from files (--directions FILE, --to)."""
    if args.to or args.directions not in (None, HESSIAN):
        if args.save_directions is not None:
            raise LosslandError(
                "--save-directions saves new directions; --directions FILE and --to read theirs "
                "from files: drop --save-directions"
            )
        return None
    if args.seeds != 1 or not (args.trajectory or args.directions == HESSIAN):
        return args.save_directions
    return args.save_directions or out.with_name(out.name + ".directions.safetensors")


def choose_plane(
    args: SurfaceArgs,
    options: SurfaceOptions,
    model: nn.Module,
    checkpoint: Checkpoint,
    data: Any,
    evaluator: Evaluator | None,
) -> tuple[Plane, Directions | None]:
    """The plane the flags ask for, and the new directions to save with it (None: its
    directions come from files)."""
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
        plane = _trajectory(args, model, checkpoint, allow_large=options.allow_large)
        # The surface records the labels with the directions; the paths in its own datasets.
        info = {**dict(plane.directions.info), "axis_labels": list(plane.attrs["axis_labels"])}
        return replace(plane, directions=replace(plane.directions, info=info)), _with_paths(plane)
    if hessian:
        plane = replace(_hessian(options, model, data, evaluator), x=args.x, y=args.y)
        return plane, plane.directions
    if args.to:
        if len(args.to) > 2:
            raise LosslandError("--to takes one checkpoint (a line) or two (a plane)")
        ends = [load_checkpoint(p).state_dict for p in args.to]
        return Plane(model_directions(checkpoint.state_dict, *ends), args.x, args.y), None
    if args.directions is not None:
        return _from_file(args, model), None
    directions = random_directions(
        model,
        seed=options.seed,
        norm=options.norm,
        ignore=options.ignore,
        ndim=1 if args.y is None else 2,
        orthogonalize=options.orthogonalize,
    )
    return Plane(directions, args.x, args.y), directions


def _trajectory(
    args: SurfaceArgs, model: nn.Module, checkpoint: Checkpoint, *, allow_large: bool
) -> Plane:
    started = time.perf_counter()
    names = [n for n, _ in model.named_parameters()]
    plane = trajectory_plane(
        checkpoint.state_dict,
        args.trajectory,
        names=names,
        pca_runs=args.pca_runs,
        allow_large=allow_large,
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
                f"note: run {shown(name)} lies far off the plane (up to {100 * off:.0f} % of its "
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
        allow_large=options.allow_large,
        progress=options.progress,
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


def _same_directions(path: Path, directions: Directions) -> bool:
    if not path.exists():
        return False
    try:
        return Directions.load(path).fingerprint() == directions.fingerprint()
    except LosslandError:
        return False


COMMAND = Command("surface", (SurfaceArgs, SurfaceOptions), run)
