"""Comparing models on the command line. ``lossland interpolate A B --align [--curve FILE]
[--plane FILE]``: the loss profiles of the straight line, the line to B aligned to A and a
trained curve, each with its barrier ± SE, stored in the line's surface file
(``attrs["comparison"]``), and one plane with the paths. ``--project``/``--average`` (surface
with two --to, interpolate with three checkpoints): more models on the plane, each labelled."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from torch import Tensor

from lossland.analysis import Profile, comparison_attrs, comparison_lines, profile_of
from lossland.cli._output import say
from lossland.compare import Curve, align, load_curve_file, profile, straight
from lossland.directions import Plane
from lossland.engine import batchnorms
from lossland.errors import LosslandError, arg
from lossland.io import Surface, check_output, load_checkpoint
from lossland.run import SurfaceOptions, curve_plane, models_plane, projected


class InterpolateArgs(Protocol):
    """What a comparison reads of ``interpolate``'s arguments (that module imports this one)."""

    checkpoints: list[Path]
    out: Path
    x: str | None
    overwrite: bool
    align: bool
    curve: Path | None
    plane: Path | None

    @property
    def split(self) -> str: ...
    def load(self, checkpoint: Path) -> Any: ...
    def load_data(self, seed: int) -> Any: ...
    def make_evaluator(self) -> Any: ...


def check_comparison(args: InterpolateArgs, paths: list[Path]) -> None:
    """Before any work: a comparison is of two checkpoints, and its plane may be written."""
    if len(paths) != 2:
        raise LosslandError(
            f"{arg('align')}, {arg('curve')} and {arg('plane')} compare paths between two "
            f"checkpoints, got {len(paths)}"
        )
    if (args.align or args.curve is not None) and args.x is not None:
        ends = args.x.split(":")[:2]
        if len(ends) != 2 or not (_is(ends[0], 0.0) and _is(ends[1], 1.0)):
            raise LosslandError(
                f"comparing paths needs {arg('x')} 0:1:N (t from A to B), got {args.x!r}"
            )
    if args.plane is not None:
        if not (args.align or args.curve is not None):
            raise LosslandError(f"{arg('plane')} draws the compared paths: add {arg('align')}")
        check_output(args.plane, overwrite=args.overwrite, inputs=[*paths, args.out], name="plane")


def _is(text: str, value: float) -> bool:
    try:
        return float(text) == value
    except ValueError:
        return False


def compare_paths(args: InterpolateArgs, options: SurfaceOptions, line: Surface) -> Surface:
    """The profiles over the line's t, stored in ``args.out`` with the line; the plane."""
    ts = line.x
    if len(ts) < 2 or ts[0] != 0 or ts[-1] != 1 or not np.allclose(np.diff(ts), ts[1] - ts[0]):
        raise LosslandError(f"comparing paths needs {arg('x')} 0:1:N (t from A to B)")
    path_a, path_b = args.checkpoints
    model_a, _ = args.load(path_a)
    model_b, _ = args.load(path_b)
    data, evaluator = args.load_data(options.seed), args.make_evaluator()
    sa, sb = model_a.state_dict(), model_b.state_dict()

    def along(name: str, path: Any) -> Profile:
        surface = profile(model_a, path, data, points=len(ts), evaluator=evaluator,
                          device=options.device)  # fmt: skip
        return profile_of(name, surface)

    found = [along("straight line", straight(sa, sb))]
    ends: dict[str, dict[str, Tensor]] = {"B": sb}
    if args.align:
        aligned = align(model_a, model_b).state_dict()
        ends["B aligned"] = aligned
        found.append(along("line to B aligned", straight(sa, aligned)))
    curve = None if args.curve is None else _curve(args.curve, sa, ends)
    if curve is not None:
        found.append(along(f"{curve.kind} curve", curve))
    result = line.with_attrs(comparison=comparison_attrs(found))
    result.save(args.out, overwrite=True)
    for text in comparison_lines(result.attrs):
        say(text)
    if args.plane is not None:
        _plane(args, options, model_a, data, evaluator, curve, ends, len(ts))
    return result


def _curve(path: Path, start: dict[str, Tensor], ends: dict[str, dict[str, Tensor]]) -> Curve:
    """The curve file's curve, from A to whichever end (B, or B aligned) it was trained to."""
    for end in ends.values():
        try:
            return load_curve_file(path, start, end)
        except LosslandError as exc:
            if "other models" not in str(exc):
                raise
    raise LosslandError(
        f"curve file {path} joins other models than A and {' or '.join(ends)}: pass the curve "
        "trained between these checkpoints"
    )


def _plane(
    args: InterpolateArgs,
    options: SurfaceOptions,
    model: Any,
    data: Any,
    evaluator: Any,
    curve: Curve | None,
    ends: dict[str, dict[str, Tensor]],
    points: int,
) -> None:
    """The plane through A, the curve's midpoint and its end; without a curve, through A, B
    and B aligned, each marked."""
    keywords = {
        "out": args.plane, "overwrite": True, "evaluator": evaluator, "device": options.device,
        "bn": "recompute" if batchnorms(model) else "eval", "progress": False,
        "split": args.split,
    }  # fmt: skip
    if curve is not None:
        curve_plane(model, curve, data, points=points, **keywords)
    else:
        start = model.state_dict()
        anchors = [start, ends["B"], ends["B aligned"]]
        marks = {"A": start, **ends}
        models_plane(model, anchors, marks, data, points=points, **keywords)
    say(f"plane of the compared paths: {args.plane}")


# --- several models on one plane ------------------------------------------------------------


class ProjectArgs(Protocol):
    """What marking models on a plane reads of ``surface``'s (and ``interpolate``'s) arguments."""

    checkpoint: Path
    to: list[Path]
    project: list[Path]
    average: bool


def projected_files(path: Path) -> list[Path]:
    """The checkpoints ``--project PATH`` reads: the file, or a run folder's ``step_*`` files
    (``lossland train --save-every``) in step order."""
    if path.is_dir():
        found = sorted(path.glob("step_*.safetensors"))
        if not found:
            raise LosslandError(
                f"{arg('project')} folder {path} holds no step_*.safetensors checkpoints (a "
                "training run's folder): give a checkpoint or a run's folder"
            )
        return found
    return [path]


def with_projected(args: ProjectArgs, plane: Plane) -> Plane:
    """The plane through three checkpoints with each ``--project`` model (a point) or run (its
    path) projected onto it and drawn under its name; ``--average``: B and C's average."""
    if len(args.to) != 2 or plane.directions.y is None:
        raise LosslandError(
            f"{arg('project')} and {arg('average')} mark models on the plane through three "
            "checkpoints: give two --to (interpolate: three checkpoints)"
        )
    marks: dict[str, np.ndarray] = {}
    for path in args.project:
        files = projected_files(path)
        states = {str(f): load_checkpoint(f).state_dict for f in files}
        name = path.name if path.is_dir() else path.stem
        marks[_unique(name, marks)] = np.concatenate(
            list(projected(plane.directions, states).values())
        )
    if args.average:
        b, c = (load_checkpoint(p).state_dict for p in args.to)
        mean = {k: (v + c[k].to(v)) / 2 if v.is_floating_point() else v for k, v in b.items()}
        label = f"average of {args.to[0].stem} and {args.to[1].stem}"
        marks[_unique(label, marks)] = projected(plane.directions, {label: mean})[label]
    trajectories = {**plane.trajectories, **marks}
    attrs = {**plane.attrs, "projected": sorted(marks)}
    return replace(plane, trajectories=trajectories, attrs=attrs)


def _unique(name: str, taken: dict[str, Any]) -> str:
    k, found = 2, name
    while found in taken:
        found, k = f"{name} ({k})", k + 1
    return found
