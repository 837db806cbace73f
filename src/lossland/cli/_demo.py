"""``lossland demo``: train, compute a 51×51 surface and, on a coarse grid, the same for three
direction seeds (how much the picture depends on them), write every figure into one folder.

The default run is sized for a 2-core CPU (minutes); ``--full`` is the write-up's exact setting:
the full VGG trained for one epoch, a 51×51 surface on the last training batch of 32 images.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor, nn

from lossland.analysis import OptimizerName, descend, topology_lines
from lossland.cli._args import Command, flag
from lossland.cli._common import DataArgs, note, seed_lines, surface_summary
from lossland.cli._output import say, shown
from lossland.core import Bounds
from lossland.engine import select_samples
from lossland.errors import LosslandError
from lossland.io import OptimizerPath, Surface, check_length, check_output, write_paths
from lossland.run import surface, trajectory_surface
from lossland.show import figure_files, plot, write_viewer
from lossland.zoo import (
    TrainOptions,
    TrainResult,
    batches,
    load_fashion_mnist,
    load_model,
    model_spec,
    train,
)


@dataclass(frozen=True)
class DemoPlan:
    """What the demo trains and evaluates; the two presets below are the only ones."""

    model: str
    width: float
    samples: int | str  # evaluation samples from the training split
    checkpoints: int  # trajectory checkpoints to save during the epoch (0: none)
    last_batch: bool = False  # the write-up evaluated the last training batch only


SMALL = DemoPlan(model="small", width=1.0, samples=256, checkpoints=10)
# No trajectory for the full VGG: ten 106 MB checkpoints would be a gigabyte for one figure.
FULL = DemoPlan(model="vgg", width=1.0, samples=32, checkpoints=0, last_batch=True)
BATCH = 64  # the write-up's training batch


@dataclass(kw_only=True)
class DemoArgs(DataArgs):
    """Train the small model, compute a 51x51 surface and write every figure into one folder."""

    out: Path = flag(Path("demo"), short="-o", doc="output folder")
    full: bool = flag(
        False, doc="the write-up's exact setting: full VGG, one epoch, 51x51 on 32 images"
    )
    grid: int = flag(51, doc="grid points per axis", bounds=Bounds(2, 1001))
    device: str = flag("auto", doc="cpu, cuda, cuda:1, mps or auto")
    progress: bool = flag(True, doc="show progress bars")
    overwrite: bool = flag(False, doc="replace the files of an earlier demo in the folder")


def run(args: DemoArgs) -> int:
    say(demo(args))
    return 0


def demo(args: DemoArgs) -> str:
    """Run the demo; return the summary text (also listing every file written)."""
    plan = FULL if args.full else SMALL
    out = Path(args.out)
    for file in demo_files(out, plan):
        check_length(file, name="out")
    if out.exists() and not out.is_dir():
        raise LosslandError(f"-o {out} is a file: the demo writes a folder of files; name a folder")
    if out.is_dir():  # every file of the demo, before any work
        for file in demo_files(out, plan):
            check_output(file, overwrite=args.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    images, labels = load_fashion_mnist("train", data_dir=args.data_dir)
    note(f"[1/4] training {plan.model} on Fashion-MNIST (one epoch)")
    trained = _train(args, plan, len(images))
    note(trained.summary())
    model, _ = load_model(trained.checkpoint)
    note(f"[2/4] {args.grid}×{args.grid} filter-normalized surface on {plan.samples} samples")
    if plan.last_batch:
        # The write-up's setting: the last training batch of the epoch (32 images); the order is
        # the seeded permutation the training run used, so this is that batch exactly.
        data = last_training_batch(images, labels, batch_size=BATCH, seed=TrainOptions().seed)
    else:
        data = select_samples(images, labels, plan.samples, seed=0, split="train")
    t0 = time.perf_counter()
    result = _surface(args, model, data, trained, out / "surface.h5", args.grid)
    printed = surface_summary(result, out / "surface.h5", time.perf_counter() - t0)
    note(printed)
    summary = printed.splitlines()[1:]  # its first line is the size, speed and file
    note(
        f"[3/4] how much the picture depends on the directions: {SEEDS} seeds, {_seed_grid(args)}²"
    )
    seeds = _seeds(args, model, data, trained, out)
    note("[4/4] figures, optimizer paths and the viewer")
    files = [trained.checkpoint, out / "surface.h5"]
    paths = optimizer_paths(result)
    files += _figures(result, paths, out)
    files += [out / "seeds.h5", *plot(seeds, out, stem="seeds", log=True, overwrite=True)]
    if trained.trajectory:
        note(f"      the PCA plane of the {len(trained.trajectory)} training checkpoints")
        files += _trajectory(args, model, trained, data, out)
    lines = [
        f"demo finished in {time.perf_counter() - started:.0f} s; files in {shown(out)}/:",
        *[f"  {shown(f.relative_to(out) if f.is_relative_to(out) else f)}" for f in files],
        f"test accuracy {trained.test_accuracy:.4f}",
        *summary,
        *topology_lines(result),
        *[f"path {p.summary()}" for p in paths],
        *seed_lines(seeds),
    ]
    return "\n".join(lines)


SEEDS = 3  # direction seeds of the robustness check, on a coarse grid (a few seconds)
SEED_GRID = 11


def _seed_grid(args: DemoArgs) -> int:
    return min(SEED_GRID, args.grid)


def _seeds(
    args: DemoArgs, model: nn.Module, data: tuple[Tensor, Tensor], trained: TrainResult, out: Path
) -> Surface:
    """The surface for SEEDS direction seeds on a coarse grid: do its seeds agree?"""
    return _surface(args, model, data, trained, out / "seeds.h5", _seed_grid(args), seeds=SEEDS)


def _surface(
    args: DemoArgs,
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    trained: TrainResult,
    out: Path,
    points: int,
    seeds: int = 1,
) -> Surface:
    """A points × points surface on [−1, 1]² (replacing was decided before any work)."""
    grid = f"-1:1:{points}"
    return surface(
        model,
        data,
        x=grid,
        y=grid,
        seeds=seeds,
        device=args.device,
        out=out,
        overwrite=True,
        progress=args.progress,
        split="train",
        attrs={"model": str(trained.spec), "checkpoint": str(trained.checkpoint)},
    )


def demo_files(out: Path, plan: DemoPlan) -> list[Path]:
    """The files a demo writes into ``out`` (the trajectory checkpoints are train's to check)."""
    names = ("model.safetensors", "surface.h5", "seeds.h5", "paths.csv", "viewer.html")
    files = [out / name for name in names]
    for stem in ("surface", "paths") + (("trajectory",) if plan.checkpoints else ()):
        files += figure_files(2, out, stem=stem, format="png")
    files += figure_files(2, out, stem="seeds", format="png", seeds=True)
    return files + ([out / "trajectory.h5"] if plan.checkpoints else [])


def _train(args: DemoArgs, plan: DemoPlan, samples: int) -> TrainResult:
    steps = math.ceil(samples / BATCH)
    save_every = math.ceil(steps / plan.checkpoints) if plan.checkpoints else None
    return train(
        model_spec(plan.model, width=plan.width),
        options=TrainOptions(batch_size=BATCH, save_every=save_every, device=args.device),
        out=args.out / "model.safetensors",
        trajectory_dir=args.out / "checkpoints",
        data_dir=args.data_dir,
        progress=args.progress,
        overwrite=args.overwrite,
    )


def _figures(result: Surface, paths: list[OptimizerPath], out: Path) -> list[Path]:
    # Replacing was decided before any work (demo_files).
    files = plot(result, out, stem="surface", log=True, overwrite=True)
    files.append(write_paths(paths, out / "paths.csv", overwrite=True))
    files += plot(result, out, stem="paths", log=True, paths=paths, overwrite=True)
    viewer = write_viewer(
        result, out / "viewer.html", paths=paths, title="lossland demo", log=True, overwrite=True
    )
    return [*files, viewer]


def _trajectory(
    args: DemoArgs, model: nn.Module, trained: TrainResult, data: tuple[Tensor, Tensor], out: Path
) -> list[Path]:
    trajectory = trajectory_surface(
        model,
        [trained.trajectory[0].parent],
        data,
        x=f"auto:{TRAJECTORY_GRID}",
        y=f"auto:{TRAJECTORY_GRID}",
        out=out / "trajectory.h5",
        overwrite=True,
        progress=args.progress,
        device=args.device,
        split="train",
        attrs={"model": str(trained.spec), "checkpoint": str(trained.checkpoint)},
    )
    return [
        out / "trajectory.h5",
        *plot(trajectory, out, stem="trajectory", log=True, overwrite=True),
    ]


TRAJECTORY_GRID = 25

# Three optimizers from one start, on ln(loss) so the steep rim does not fling them off the
# grid; NAdam with the write-up's settings (lr 0.1, betas 0.99/0.999).
DEMO_START = (-0.7, 0.7)
DEMO_OPTIMIZERS: tuple[tuple[OptimizerName, float], ...] = (
    ("sgd", 0.02),
    ("adam", 0.05),
    ("nadam", 0.1),
)


def optimizer_paths(result: Surface, steps: int = 50) -> list[OptimizerPath]:
    start = (
        float(np.clip(DEMO_START[0], result.x[0], result.x[-1])),
        float(np.clip(DEMO_START[1], result.y[0], result.y[-1])) if result.y is not None else 0.0,
    )
    return [
        descend(result, start=start, optimizer=name, lr=lr, steps=steps, log=True)
        for name, lr in DEMO_OPTIMIZERS
    ]


def last_training_batch(
    images: Tensor, labels: Tensor, *, batch_size: int, seed: int
) -> tuple[Tensor, Tensor]:
    """The last batch of a one-epoch training run with this seed (32 images for 60,000 / 64)."""
    *_, (_, last) = batches(len(images), batch_size, seed=seed, epochs=1)
    assert last is not None
    return images[last], labels[last]


COMMAND = Command("demo", (DemoArgs,), run)
