"""``lossland surface CHECKPOINT -o FILE``: load, choose the plane, compute, save, summarise.

The plane: random directions (default: the run draws them), ``--directions FILE`` (reused
exactly), or a kind of directions that its producer makes (a row of
:data:`lossland.core.KINDS`): ``--to CKPT`` (once or twice: between models), ``--trajectory
RUN`` (the PCA plane of training runs) or ``--directions NAME`` (e.g. ``hessian``: the top two
Hessian eigenvectors).
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
from lossland.cli._compare import projected_files, with_projected
from lossland.cli._output import say
from lossland.core import KINDS, check_grid_size, check_spec
from lossland.directions import Directions, Plane, make_plane
from lossland.engine import Evaluator, known_samples
from lossland.errors import LosslandError
from lossland.io import Checkpoint, Surface, check_output, sha256_file
from lossland.run import (
    SurfaceOptions,
    check_cost,
    check_seed_range,
    is_main_process,
    plane_request,
    surface,
)
from lossland.zoo import spec_to_build

MADE = [name for name, row in KINDS.items() if row.producer is not None]  # --directions NAME
FLAG_OF = {"pca": "--trajectory", "models": "--to"}  # the kinds other flags ask for


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
        doc="reuse directions from this safetensors file, or make a kind of directions: "
        + "; ".join(
            f"'{name}': {KINDS[name].summary}"
            + (f" (with {FLAG_OF[name]})" if name in FLAG_OF else "")
            for name in MADE
        ),
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
    project: list[Path] = flag(
        [],
        doc="with two --to (a plane through three checkpoints): also a checkpoint projected onto "
        "the plane and marked with its name, or a run's checkpoint folder drawn as its path; "
        "repeat for several",
        repeat=True,
    )
    average: bool = flag(
        False, doc="with two --to: also mark the average of the two --to checkpoints"
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
    """Check the flags, the outputs and ranges, load the model and data, make the plane (random
    directions: the run draws them), compute (or resume) the surface. The directions are saved
    only once the run has taken the lock of the surface file and accepted it (``on_accept``),
    so a refused run writes nothing."""
    main = is_main_process()  # under torchrun only rank 0 writes files and prints
    out = Path(args.out)
    kind = chosen_kind(args)
    _check_stack(args, options, kind)
    given = Path(str(args.directions)) if kind is None else None
    saved = _directions_file(args, out, lean=options.memory == "lean")
    outputs = _Outputs(out, saved, _inputs(args), args.overwrite, given)
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
    evaluator = args.make_evaluator()
    data = args.load_data(options.seed)
    if samples is None:  # and before the plane (Hessian, PCA) is computed
        check_cost(model, options, samples=known_samples(data), **cost)
    plane, new = choose_plane(args, options, model, checkpoint, data, evaluator) or (None, None)
    if plane is not None and (args.project or args.average):
        plane = with_projected(args, plane)
    recipe = kind is not None and KINDS[kind].saved == "recipe"

    def accept(used: Directions) -> dict[str, str]:  # rank 0, the run's file accepted
        if args.seeds == 1 and used.cosine is not None:
            note(f"cosine(x, y) = {used.cosine:+.2e}")
        return outputs.accept(used if recipe else new)

    used_spec = spec_to_build(checkpoint, args.given())
    attrs = {
        "model": str(used_spec),
        "model_spec": used_spec.to_json(),
        "checkpoint": str(args.checkpoint),
        "checkpoint_sha256": checkpoint.sha256 or "",
        "to": [str(p) for p in args.to],
        "samples_requested": args.samples,
        **(dict(plane.attrs) if plane is not None else {}),
    }
    return surface(
        model,
        data,
        x=plane.x if plane is not None else args.x,
        y=plane.y if plane is not None else args.y,
        directions=plane.directions if plane is not None else None,
        evaluator=evaluator,
        out=out,
        overwrite=args.overwrite,
        split=args.split,
        attrs=attrs,
        trajectories=(plane.trajectories or None) if plane is not None else None,
        seeds=args.seeds,
        options=options,
        on_accept=accept,
    )


def _check_stack(args: SurfaceArgs, options: SurfaceOptions, kind: str | None) -> None:
    """A stack of seeds or of layers draws random directions, stored as recipes."""
    if args.seeds != 1 and kind != "random":
        raise LosslandError("--seeds compares random planes: drop --directions, --to, --trajectory")
    if options.params_per_layer and kind != "random":
        raise LosslandError(
            "--params-per-layer draws random directions on every block: it does not combine "
            "with --directions, --to, --trajectory or interpolate"
        )
    if options.params_per_layer and args.save_directions is not None:
        raise LosslandError(
            "a stack of layers stores each block's directions as its recipe: drop "
            "--save-directions or --params-per-layer"
        )


def _asked(args: SurfaceArgs) -> list[tuple[str, str | None]]:
    """(flag, the kind it asks for) for each flag set that chooses the plane; the kind is None
    for ``--directions FILE``."""
    asked: list[tuple[str, str | None]] = []
    if args.trajectory:
        asked.append(("--trajectory", "pca"))
    if args.to:
        asked.append(("--to", "models"))
    if args.directions is not None:
        made = args.directions if args.directions in MADE else None
        asked.append((f"--directions {made}" if made else "--directions", made))
    return asked


def chosen_kind(args: SurfaceArgs) -> str | None:
    """The kind of directions the flags ask for: "random" when none does, else the one kind
    they all ask for (None: directions read from a file)."""
    asked = _asked(args)
    if not asked:
        return "random"
    other = [flag for flag, name in asked if name != asked[0][1]]
    if other:
        raise LosslandError(f"{asked[0][0]} and {other[0]} both set: choose one kind of plane")
    return asked[0][1]


def _grid_size(args: SurfaceArgs) -> tuple[int, int | None]:
    """The grid's points per axis as far as the flags tell (auto: its NUM), and whether it is
    a plane (None: a line), before the plane is made: a plane where ``--y`` is given or the
    kind makes one (between models: with two ``--to``)."""
    kind = chosen_kind(args)
    row = KINDS[kind] if kind is not None else None
    plane = args.y is not None or (row is not None and row.y_by_default and len(args.to) != 1)
    nx = check_spec(args.x, name="x")
    return nx, check_spec(args.y, name="y") if plane else None


@dataclass(frozen=True)
class _Outputs:
    """The files a surface command writes: the surface (``out``) and, when the plane's
    directions are new, their file (``directions``); never one of ``inputs``. ``given``: the
    directions file the plane was read from."""

    out: Path
    directions: Path | None
    inputs: list[Path]
    overwrite: bool
    given: Path | None = None

    def check(self) -> None:
        """Before any work (rank 0). Replacing ``out`` is the run's choice (resume, or
        --overwrite); an existing directions file can be the run's own only when it lies
        beside the surface being resumed (decided in :meth:`accept`)."""
        check_output(self.out, overwrite=True, inputs=self.inputs)
        if self.directions is not None:
            self._check_directions(own=self.out.exists())

    def accept(self, new: Directions | None) -> dict[str, str]:
        """``on_accept`` (rank 0, holding the lock, the surface file accepted): save ``new``
        directions (None: the plane's come from files), unless the file holds these very ones;
        the attributes naming the file."""
        keep = self.directions
        if new is not None and keep is not None and not _same_directions(keep, new):
            self._check_directions(own=False)
            new.save(keep)
        file = self.directions if new is not None else self.given
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
    if chosen_kind(args) is None:
        files.append(Path(str(args.directions)))
    files += [f for folder in args.trajectory if folder.is_dir() for f in folder.iterdir()]
    files += [f for path in args.project for f in projected_files(path)]
    return files


def _directions_file(args: SurfaceArgs, out: Path, *, lean: bool = False) -> Path | None:
    """Where the new directions of this plane go, as its kind's row says: random ones only with
    --save-directions (the surface file records their recipe: seed, norm, ignore, and their
    fingerprint; a seed stack records one per seed), PCA and Hessian ones beside the surface by
    default (they cannot be regenerated cheaply); None where they are read from files
    (--directions FILE, --to)."""
    if lean and args.save_directions is not None:
        raise LosslandError(
            "--memory lean stores no directions (the surface records their recipe): drop "
            "--save-directions"
        )
    kind = chosen_kind(args)
    saved = KINDS[kind].saved if kind is not None else "inputs"
    if saved == "inputs":
        if args.save_directions is not None:
            raise LosslandError(
                "--save-directions saves new directions; --directions FILE and --to read theirs "
                "from files: drop --save-directions"
            )
        return None
    if saved == "recipe":
        if args.seeds != 1 and args.save_directions is not None:
            raise LosslandError(
                "a seed stack stores its directions as recipes; drop --save-directions or --seeds"
            )
        return args.save_directions
    return args.save_directions or out.with_name(out.name + ".directions.safetensors")


def choose_plane(
    args: SurfaceArgs,
    options: SurfaceOptions,
    model: nn.Module,
    checkpoint: Checkpoint,
    data: Any,
    evaluator: Evaluator | None,
) -> tuple[Plane, Directions | None] | None:
    """The plane the flags ask for, and the new directions to save with it (None: its
    directions come from files); None for random directions, which the run draws."""
    kind = chosen_kind(args)
    if args.pca_runs != "all" and not args.trajectory:
        raise LosslandError("--pca-runs needs --trajectory: give the run folders")
    if kind is None:
        return _from_file(args, model), None
    row = KINDS[kind]
    if options.scheme not in row.schemes:
        flag = (_asked(args) or [(kind, None)])[0][0]
        raise LosslandError(
            f"{flag} planes use scheme {' or '.join(row.schemes)}, not {options.scheme}: "
            "drop --scheme"
        )
    if row.producer is None:
        return None
    started = time.perf_counter()
    request = plane_request(
        model,
        checkpoint.state_dict,
        data,
        evaluator,
        options,
        x=args.x,
        y=args.y,
        to=args.to,
        runs=args.trajectory,
        pca_runs=args.pca_runs,
    )
    plane, new = make_plane(kind, request)
    if row.notes is not None:
        seconds = time.perf_counter() - started
        for line in row.notes(plane.directions.info, plane.attrs, seconds):
            note(line)
    return plane, new


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
