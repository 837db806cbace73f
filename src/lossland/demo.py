"""``lossland demo``: train, compute a 51×51 surface, write every figure into one folder.

The default run is sized for a 2-core CPU (minutes); ``--full`` is the seed's exact setting:
the full VGG trained for one epoch, a 51×51 surface on the last training batch of 32 images.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from lossland.config import DemoConfig, TrainConfig
from lossland.data import load_fashion_mnist
from lossland.errors import LosslandError
from lossland.landscape import select_samples, summary, surface
from lossland.paths import OptimizerName, OptimizerPath, descend, write_paths
from lossland.plot import PlotStyle, plot_surface
from lossland.surface_file import Surface
from lossland.trajectory import trajectory_surface
from lossland.view import write_viewer


@dataclass(frozen=True)
class DemoPlan:
    """What the demo trains and evaluates; the two presets below are the only ones."""

    model: str
    width: float
    samples: int | str  # evaluation samples from the training split
    checkpoints: int  # trajectory checkpoints to save during the epoch (0: none)
    last_batch: bool = False  # the seed evaluated the last training batch only


SMALL = DemoPlan(model="small", width=1.0, samples=256, checkpoints=10)
# No trajectory for the full VGG: ten 106 MB checkpoints would be a gigabyte for one figure.
FULL = DemoPlan(model="vgg", width=1.0, samples=32, checkpoints=0, last_batch=True)
BATCH = 64  # the seed's training batch


def demo(config: DemoConfig) -> str:
    """Run the demo; return the summary text (also listing every file written)."""
    from lossland.atomic import check_writable
    from lossland.checkpoint import load_model
    from lossland.train import train

    if config.grid < 2:
        raise LosslandError(f"--grid must be at least 2, got {config.grid}")
    plan = FULL if config.full else SMALL
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out / "surface.h5")
    started = time.perf_counter()
    log = _log

    images, labels = load_fashion_mnist("train", data_dir=config.data_dir)
    steps = math.ceil(len(images) / BATCH)
    save_every = math.ceil(steps / plan.checkpoints) if plan.checkpoints else None
    log(f"[1/3] training {plan.model} on Fashion-MNIST (one epoch)")
    trained = train(
        TrainConfig(
            model=plan.model,
            width=plan.width,
            out=out / "model.safetensors",
            batch_size=BATCH,
            save_every=save_every,
            trajectory_dir=out / "checkpoints",
            data_dir=config.data_dir,
            device=config.device,
            progress=config.progress,
        ),
        log=log,
    )
    log(trained.summary())
    model, _ = load_model(trained.checkpoint)

    grid = f"-1:1:{config.grid}"
    log(f"[2/3] {config.grid}×{config.grid} filter-normalized surface on {plan.samples} samples")
    if plan.last_batch:
        # The seed's setting: the last training batch of the epoch (32 images); the order is
        # the seeded permutation the training run used, so this is that batch exactly.
        inputs, targets = last_training_batch(
            images, labels, batch_size=BATCH, seed=TrainConfig.seed
        )
    else:
        inputs, targets = select_samples(images, labels, plan.samples, seed=0, split="train")
    surface_path = out / "surface.h5"
    t0 = time.perf_counter()
    result = surface(
        model,
        (inputs, targets),
        x=grid,
        y=grid,
        device=config.device,
        out=surface_path,
        overwrite=True,
        progress=config.progress,
        split="train",
        attrs={"model": str(trained.spec), "checkpoint": str(trained.checkpoint)},
    )
    log(summary(result, surface_path, time.perf_counter() - t0))

    log("[3/3] figures, optimizer paths and the viewer")
    files = [trained.checkpoint, surface_path]
    files += plot_surface(result, out, stem="surface", style=PlotStyle(log=True))
    paths = optimizer_paths(result)
    files.append(write_paths(paths, out / "paths.csv"))
    files += plot_surface(result, out, stem="paths", style=PlotStyle(log=True), paths=paths)
    files.append(
        write_viewer(result, out / "viewer.html", paths=paths, title="lossland demo", log=True)
    )
    if trained.trajectory:
        log(f"      the PCA plane of the {len(trained.trajectory)} training checkpoints")
        trajectory = trajectory_surface(
            trained.checkpoint,
            [trained.trajectory[0].parent],
            (inputs, targets),
            x=f"auto:{TRAJECTORY_GRID}",
            y=f"auto:{TRAJECTORY_GRID}",
            out=out / "trajectory.h5",
            overwrite=True,
            progress=config.progress,
            device=config.device,
            split="train",
            attrs={"model": str(trained.spec)},
        )
        files.append(out / "trajectory.h5")
        files += plot_surface(trajectory, out, stem="trajectory", style=PlotStyle(log=True))
    lines = [
        f"demo finished in {time.perf_counter() - started:.0f} s; files in {out}/:",
        *[f"  {f.relative_to(out) if f.is_relative_to(out) else f}" for f in files],
        f"test accuracy {trained.test_accuracy:.4f}",
        *summary(result, None, time.perf_counter() - t0).splitlines()[1:],
        *[f"path {p.summary()}" for p in paths],
    ]
    return "\n".join(lines)


TRAJECTORY_GRID = 25

# Three optimizers from one start, on ln(loss) so the steep rim does not fling them off the
# grid; NAdam with the seed's settings (lr 0.1, betas 0.99/0.999).
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
    from lossland.train import batches

    *_, (_, last) = batches(len(images), batch_size, seed=seed, epochs=1)
    assert last is not None
    return images[last], labels[last]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
