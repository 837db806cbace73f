"""``lossland demo``: train, compute a 51×51 surface, write every figure into one folder.

The default run is sized for a 2-core CPU (minutes); ``--full`` is the seed's exact setting:
the full VGG trained for one epoch, a 51×51 surface on the last training batch of 32 images.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from lossland.config import DemoConfig, TrainConfig
from lossland.data import load_fashion_mnist
from lossland.landscape import select_samples, summary, surface
from lossland.plot import PlotStyle, plot_surface

GRID = "-1:1:51"


@dataclass(frozen=True)
class DemoPlan:
    """What the demo trains and evaluates; the two presets below are the only ones."""

    model: str
    width: float
    samples: int | str  # evaluation samples from the training split
    save_every: int | None
    last_batch: bool = False  # the seed evaluated the last training batch only


SMALL = DemoPlan(model="small", width=1.0, samples=256, save_every=94)
FULL = DemoPlan(model="vgg", width=1.0, samples=32, save_every=None, last_batch=True)


def demo(config: DemoConfig) -> str:
    """Run the demo; return the summary text (also listing every file written)."""
    from lossland.atomic import check_writable
    from lossland.checkpoint import load_model
    from lossland.train import train

    plan = FULL if config.full else SMALL
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out / "surface.h5")
    started = time.perf_counter()
    log = _log

    log(f"[1/3] training {plan.model} on Fashion-MNIST (one epoch)")
    trained = train(
        TrainConfig(
            model=plan.model,
            width=plan.width,
            out=out / "model.safetensors",
            save_every=plan.save_every,
            trajectory_dir=out / "trajectory",
            data_dir=config.data_dir,
            device=config.device,
            progress=config.progress,
        ),
        log=log,
    )
    log(trained.summary())
    model, _ = load_model(trained.checkpoint)

    log(f"[2/3] 51×51 filter-normalized surface on {plan.samples} training samples")
    images, labels = load_fashion_mnist("train", data_dir=config.data_dir)
    if plan.last_batch:
        # The seed's setting: the last training batch of the epoch (32 images); the order is
        # the seeded permutation the training run used, so this is that batch exactly.
        inputs, targets = last_training_batch(images, labels, batch_size=64, seed=0)
    else:
        inputs, targets = select_samples(images, labels, plan.samples, seed=0, split="train")
    surface_path = out / "surface.h5"
    t0 = time.perf_counter()
    result = surface(
        model,
        (inputs, targets),
        x=GRID,
        y=GRID,
        device=config.device,
        out=surface_path,
        overwrite=True,
        progress=config.progress,
        split="train",
        attrs={"model": str(trained.spec), "checkpoint": str(trained.checkpoint)},
    )
    log(summary(result, surface_path, time.perf_counter() - t0))

    log("[3/3] figures")
    files = [trained.checkpoint, surface_path]
    files += plot_surface(result, out, stem="surface", style=PlotStyle(log=True))
    lines = [
        f"demo finished in {time.perf_counter() - started:.0f} s; files in {out}/:",
        *[f"  {f.relative_to(out) if f.is_relative_to(out) else f}" for f in files],
        f"test accuracy {trained.test_accuracy:.4f}",
        summary(result, None, time.perf_counter() - t0).splitlines()[-1],
    ]
    return "\n".join(lines)


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
