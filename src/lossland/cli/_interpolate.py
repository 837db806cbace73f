"""``lossland interpolate A B [C]``: ``lossland surface A --to B [--to C]`` with ranges that
start at the checkpoints (0:1, the kind's default) and, for three, the same range on y."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from lossland.cli._args import Command, flag
from lossland.cli._common import CheckpointModelArgs, SampleArgs, surface_summary
from lossland.cli._compare import check_comparison, compare_paths
from lossland.cli._output import say
from lossland.cli._surface import SurfaceArgs, compute
from lossland.errors import LosslandError
from lossland.run import SurfaceOptions, is_main_process


@dataclass(kw_only=True)
class InterpolateArgs(CheckpointModelArgs, SampleArgs):
    """Loss between checkpoints: the line A→B with its barrier, or the plane through A, B, C."""

    checkpoints: list[Path] = flag(
        [],
        doc="two checkpoints (a line) or three (a plane: A at (0,0), B at (1,0), C at (0,1))",
        positional=True,
        repeat=True,
    )
    x: str | None = flag(None, doc="x range min:max:num (0 is A, 1 is B; default 0:1:21)")
    y: str | None = flag(None, doc="y range for three checkpoints (default: the x range)")
    out: Path = flag(Path("interpolation.h5"), short="-o", doc="surface file (HDF5)")
    overwrite: bool = flag(False, doc="replace an existing surface file with other settings")
    project: list[Path] = flag(
        [],
        doc="with three checkpoints: also a checkpoint projected onto the plane and marked with "
        "its name, or a run's checkpoint folder drawn as its path; repeat for several",
        repeat=True,
    )
    average: bool = flag(False, doc="with three checkpoints: also mark the average of B and C")
    align: bool = flag(
        False,
        doc="also the line from A to B aligned to A (weight matching): the barriers of both "
        "lines (and of --curve) with standard errors in the file (lossland info; lossland plot "
        "draws <out>_profiles)",
    )
    curve: Path | None = flag(
        None, doc="a curve file (lossland curve) between A and B, or A and B aligned: its profile"
    )
    plane: Path | None = flag(
        None,
        doc="with --align or --curve: the plane through A, the curve's midpoint and B (or A, B and "
        "B aligned), the paths drawn",
    )


def run(args: InterpolateArgs, options: SurfaceOptions) -> int:
    started = time.perf_counter()
    paths = list(args.checkpoints)
    if len(paths) not in (2, 3):
        raise LosslandError(
            f"interpolate takes two checkpoints (a line) or three (a plane), got {len(paths)}"
        )
    if len(paths) == 2 and args.y is not None:
        raise LosslandError("--y needs a third checkpoint (a plane): drop --y or add C")
    shared = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(SurfaceArgs)
        if hasattr(args, f.name) and f.name not in ("checkpoint", "to", "y")
    }
    y = (args.y or args.x) if len(paths) == 3 else None
    comparing = args.align or args.curve is not None
    if comparing or args.plane is not None:
        check_comparison(args, paths)
    result = compute(SurfaceArgs(**shared, checkpoint=paths[0], to=paths[1:], y=y), options)
    if comparing:
        result = compare_paths(args, options, result)
    if is_main_process():
        say(surface_summary(result, args.out, time.perf_counter() - started))
    return 0


COMMAND = Command("interpolate", (InterpolateArgs, SurfaceOptions), run)
