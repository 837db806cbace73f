"""``lossland train``: train a model on Fashion-MNIST and save a safetensors checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lossland.cli._args import Command, flag
from lossland.cli._common import DataArgs, ModelArgs
from lossland.cli._output import say
from lossland.zoo import Dataset, TrainOptions, train


@dataclass(kw_only=True)
class TrainArgs(ModelArgs, DataArgs):
    """Train a model on Fashion-MNIST and save a safetensors checkpoint."""

    out: Path | None = flag(None, short="-o", doc="checkpoint file (default: <model>.safetensors)")
    data: Dataset = flag("fashion-mnist", doc="training data set")
    init: Path | None = flag(None, doc="start from these weights (e.g. to compare optimizers)")
    trajectory_dir: Path | None = flag(
        None, doc="folder for --save-every checkpoints (default: <out>_trajectory/)"
    )
    progress: bool = flag(True, doc="show a progress bar")
    overwrite: bool = flag(False, doc="replace an existing checkpoint (-o, the trajectory's)")


def run(args: TrainArgs, options: TrainOptions) -> int:
    result = train(
        args.spec(),
        options=options,
        dataset=args.data,
        out=args.out,
        data_dir=args.data_dir,
        init=args.init,
        trajectory_dir=args.trajectory_dir,
        progress=args.progress,
        overwrite=args.overwrite,
    )
    say(result.summary())
    return 0


COMMAND = Command("train", (TrainArgs, TrainOptions), run)
