"""``lossland curve A B -o curve.safetensors``: train the bends of a curve from A to B (Garipov
et al. 2018), resumable; then the loss along it (a line surface in t) and, with ``--plane``,
the plane through A, the curve's midpoint and B with the straight path and the curve drawn."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from lossland.analysis import measure_lines, with_measures
from lossland.cli._args import Command, flag
from lossland.cli._common import CheckpointModelArgs, SampleArgs
from lossland.cli._output import say
from lossland.compare import CurveOptions, curve, profile
from lossland.engine import batchnorms
from lossland.errors import LosslandError
from lossland.io import check_output
from lossland.run import curve_plane


@dataclass(kw_only=True)
class CurveArgs(CheckpointModelArgs, SampleArgs):
    """Train a curve of low loss between two checkpoints (Bézier or polygonal chain).

    The bends are trained on --data (the training split by default; --samples all for the whole
    set) so that the loss at a random point of the curve is low. The curve file is saved every
    epoch (--save-every N: every N steps): rerun the same command to resume. Then the loss
    along the curve is evaluated (--line) and, with --plane, the plane through A, the curve's
    midpoint and B; draw both with lossland show.
    """

    checkpoints: list[Path] = flag(
        [], doc="A and B, the ends of the curve", positional=True, repeat=True
    )
    out: Path = flag(Path("curve.safetensors"), short="-o", doc="curve file (safetensors)")
    line: Path | None = flag(
        None, doc="loss along the curve, a line surface (default: <out>_line.h5)"
    )
    plane: Path | None = flag(None, doc="also the plane through A, the curve's midpoint and B")
    points: int = flag(21, doc="points along the curve (and per axis of the plane)")
    overwrite: bool = flag(False, doc="replace existing outputs made with other settings")


def run(args: CurveArgs, options: CurveOptions) -> int:
    started = time.perf_counter()
    if len(args.checkpoints) != 2:
        raise LosslandError(f"curve takes two checkpoints, A and B, got {len(args.checkpoints)}")
    if args.points < 2:
        raise LosslandError(f"--points must be at least 2, got {args.points}")
    path_a, path_b = args.checkpoints
    line = args.line or args.out.with_name(f"{args.out.stem}_line.h5")
    inputs = [path_a, path_b]
    for name, path in (("line", line), ("plane", args.plane)):
        if path is not None:  # before any work: the curve file's own check is curve()'s
            check_output(path, overwrite=args.overwrite, inputs=[*inputs, args.out], name=name)
    model_a, _ = args.load(path_a)
    model_b, _ = args.load(path_b)
    data = args.load_data(options.seed)
    evaluator = args.make_evaluator()
    try:
        result = curve(
            model_a, model_b, data, evaluator=evaluator, out=args.out, overwrite=args.overwrite,
            inputs=tuple(inputs), options=options,
        )  # fmt: skip
    except KeyboardInterrupt as exc:  # the file holds the last saved step, written atomically
        raise KeyboardInterrupt(
            f"interrupted: {args.out} holds the curve at its last save (if any); rerun the same "
            "command to resume"
        ) from exc
    say(result.summary())
    along = profile(
        model_a, result.curve, data, points=args.points, evaluator=evaluator,
        split=args.split, device=options.device,
        attrs={"curve": {"kind": options.kind, "bends": options.bends, "file": str(args.out)}},
    )  # fmt: skip
    along = with_measures(along)
    along.save(line, overwrite=True)
    say(f"loss along the curve ({args.points} points): {line}")
    for text in measure_lines(along):
        if text.startswith("barrier"):
            say(text)
    if args.plane is not None:
        bn = "recompute" if batchnorms(model_a) else "eval"
        curve_plane(
            model_a, result.curve, data, points=args.points, out=args.plane,
            overwrite=True, evaluator=evaluator, bn=bn, device=options.device, progress=False,
            split=args.split,
        )  # fmt: skip
        say(f"plane through A, the curve's midpoint and B: {args.plane}")
    say(f"done in {time.perf_counter() - started:.1f} s")
    return 0


COMMAND = Command("curve", (CurveArgs, CurveOptions), run)
