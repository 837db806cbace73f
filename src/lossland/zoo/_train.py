"""Training: Adam (or SGD) on Fashion-MNIST, seeded, with optional trajectory checkpoints."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossland.core import (
    AT_LEAST_1,
    POSITIVE,
    SEEDS,
    Bounds,
    check_fields,
    option,
    printable,
    progress_bar,
    resolve_device,
)
from lossland.engine import use_channels_last
from lossland.errors import LosslandError, arg
from lossland.io import (
    ModelSpec,
    check_length,
    check_output,
    load_checkpoint,
    load_state_into,
    save_checkpoint,
)
from lossland.zoo._datasets import load_dataset
from lossland.zoo._fashion_mnist import fingerprint
from lossland.zoo._models import build_model, count_parameters

Optimizer = Literal["adam", "sgd"]
_UNIT = Bounds(0, 1, below=True)  # Adam's betas and SGD's momentum: 0 <= value < 1


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """How to train (the defaults are the write-up's: Adam 1e-3, batch 64, one epoch)."""

    epochs: int = option(1, "passes over the training data", bounds=AT_LEAST_1)
    limit: int | None = option(
        None, "train on the first N training samples only", bounds=AT_LEAST_1
    )
    batch_size: int = option(64, "training batch size", bounds=AT_LEAST_1)
    optimizer: Optimizer = option("adam", "optimizer")
    lr: float = option(1e-3, "learning rate", bounds=POSITIVE)
    beta1: float = option(0.9, "Adam β1", bounds=_UNIT)
    beta2: float = option(0.999, "Adam β2", bounds=_UNIT)
    momentum: float = option(0.0, "SGD momentum", bounds=_UNIT)
    seed: int = option(0, "seed for the initialisation, shuffling and dropout", bounds=SEEDS)
    save_every: int | None = option(
        None, "also save a checkpoint every N steps (a trajectory)", bounds=AT_LEAST_1
    )
    device: str = option("auto", "cpu, cuda, cuda:1, mps or auto")

    def __post_init__(self) -> None:
        check_fields(self)  # choices and the bounds declared above


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    spec: ModelSpec
    parameters: int
    steps: int
    samples: int
    seconds: float
    train_accuracy: float  # running accuracy over the last epoch (training mode)
    test_accuracy: float
    test_loss: float
    trajectory: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"model {printable(self.spec)} ({self.parameters:,} parameters)",
            f"trained {self.steps} steps on {self.samples:,} samples in {self.seconds:.1f} s "
            f"({self.samples / max(self.seconds, 1e-9):,.0f} samples/s)",
            f"train accuracy (running, last epoch) {self.train_accuracy:.4f}",
            f"test accuracy {self.test_accuracy:.4f}, test loss {self.test_loss:.4f}",
            f"checkpoint: {printable(self.checkpoint)}",
        ]
        if self.trajectory:
            lines.append(
                f"trajectory: {len(self.trajectory)} checkpoints in "
                f"{printable(self.trajectory[0].parent)}"
            )
        return "\n".join(lines)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    batch_size: int = 1000,
    channels_last: bool = False,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss, correct = 0.0, 0
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = labels[i : i + batch_size].to(device)
        logits = model(x)
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    return loss / len(images), correct / len(images)


def make_optimizer(options: TrainOptions, params: Any) -> torch.optim.Optimizer:
    if options.optimizer == "adam":
        return torch.optim.Adam(params, lr=options.lr, betas=(options.beta1, options.beta2))
    return torch.optim.SGD(params, lr=options.lr, momentum=options.momentum)


def train(
    spec: ModelSpec,
    *,
    options: TrainOptions | None = None,
    dataset: str = "fashion-mnist",
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    init: str | Path | None = None,
    trajectory_dir: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> TrainResult:
    """Train the model ``spec`` names on a built-in data set; save the checkpoint (and
    trajectory).

    Args:
        spec: the model (see :func:`build_model`).
        options: a :class:`TrainOptions` (default: the write-up's Adam 1e-3, batch 64, one
            epoch).
        dataset: "fashion-mnist" (the default) or "cifar10".
        out: the checkpoint (default ``<model>.safetensors``).
        data_dir: a user copy of the data.
        init: start from these saved weights.
        trajectory_dir: where ``options.save_every`` writes checkpoints (default
            ``<out>_trajectory/``).
        progress: show a progress bar.
        overwrite: replace existing files.

    Returns:
        A :class:`TrainResult`: the checkpoint, the steps, the time and the accuracies.

    Raises:
        LosslandError: bad options or data, files that exist (without ``overwrite``), or a run
            that diverges (which saves nothing).

    Example:
        >>> result = lossland.train(lossland.ModelSpec("small"), out="small.safetensors")
    """
    options = options or TrainOptions()
    path = Path(out or f"{spec.name.replace(':', '_').replace('.', '_')}.safetensors")
    check_output(path, overwrite=overwrite, inputs=[init])
    device = resolve_device(options.device)
    images, labels = load_dataset(dataset, "train", data_dir=data_dir)
    test_images, test_labels = load_dataset(dataset, "test", data_dir=data_dir)
    if options.limit is not None:
        images, labels = images[: options.limit], labels[: options.limit]
    folder = Path(trajectory_dir or _beside(path))
    if options.save_every is not None:
        steps = options.epochs * math.ceil(len(images) / options.batch_size)
        _check_trajectory(folder, _snapshot_steps(steps, options.save_every), overwrite, [init])
    meta = _metadata(options, init, dataset, images, labels)
    # Seed a private RNG state so training is reproducible without touching the caller's.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(options.seed)
        model = _initial_model(spec, init, device)
        loop = _Loop(model, options, spec, meta, folder, device)
        loop.run(images, labels, progress=progress)
        loop.check_weights()
        channels_last = use_channels_last(model, device)
        test_loss, test_acc = evaluate(model, test_images, test_labels, channels_last=channels_last)
        results = {
            "train_accuracy_running": loop.running_accuracy,
            "test_accuracy": test_acc,
            "test_loss": test_loss,
            "steps": loop.steps,
            "seconds": loop.seconds,
            "device": str(device),
        }
        save_checkpoint(model, path, spec=spec, overwrite=True, **meta, results=results)
    return TrainResult(
        checkpoint=path,
        spec=spec,
        parameters=count_parameters(model),
        steps=loop.steps,
        samples=loop.seen,
        seconds=loop.seconds,
        train_accuracy=loop.running_accuracy,
        test_accuracy=test_acc,
        test_loss=test_loss,
        trajectory=loop.trajectory,
    )


def _metadata(
    options: TrainOptions, init: str | Path | None, dataset: str, images: Tensor, labels: Tensor
) -> dict[str, Any]:
    """What the checkpoint records about its training run and data."""
    return {
        "training": {
            "optimizer": options.optimizer,
            "lr": options.lr,
            "betas": [options.beta1, options.beta2],
            "momentum": options.momentum,
            "batch_size": options.batch_size,
            "epochs": options.epochs,
            "limit": options.limit,
            "seed": options.seed,
            "init": str(init) if init else None,
        },
        "data": {
            "dataset": dataset,
            "split": "train",
            "samples": len(images),
            "sha256": fingerprint(images, labels),
        },
    }


def _beside(out: Path) -> Path:
    return out.with_name(out.stem + "_trajectory")


def _snapshot_steps(steps: int, every: int) -> list[int]:
    """The steps :class:`_Loop` saves a trajectory checkpoint at: 0, every N, and the last."""
    return sorted({*range(0, steps + 1, every), steps})


def _snapshot_name(step: int) -> str:
    return f"step_{step:07d}.safetensors"


def _check_trajectory(
    folder: Path, steps: list[int], overwrite: bool, inputs: list[str | Path | None]
) -> None:
    """Before training: the trajectory folder can hold exactly this run's checkpoints."""
    for name in {_snapshot_name(step) for step in steps}:
        check_length(folder / name, name="trajectory_dir")  # before any stat of the folder
    existing = next(p for p in (folder, *folder.parents) if p.exists())  # "/" always exists
    if not existing.is_dir():
        raise LosslandError(
            f"trajectory folder {folder} cannot be made: {existing} is a file; choose another "
            f"{arg('trajectory_dir')}"
            if existing != folder
            else f"trajectory folder {folder} is a file: choose another {arg('trajectory_dir')}"
        )
    if existing != folder:
        return  # created at the first checkpoint
    names = {_snapshot_name(step) for step in steps}
    others = sorted(p.name for p in folder.glob("step_*.safetensors") if p.name not in names)
    if others:
        raise LosslandError(
            f"trajectory folder {folder} holds checkpoints of another run ({others[0]}"
            f"{f' and {len(others) - 1} more' if len(others) > 1 else ''}): one folder holds one "
            f"run; remove them or choose another {arg('trajectory_dir')}"
        )
    for name in sorted(names):
        check_output(folder / name, overwrite=overwrite, inputs=inputs, name="trajectory_dir")


def _initial_model(spec: ModelSpec, init: str | Path | None, device: torch.device) -> nn.Module:
    model = build_model(spec)
    if init is not None:
        state = load_checkpoint(init).state_dict
        load_state_into(model, state, source=f"{arg('init')} checkpoint {init}")
    model.to(device)
    if use_channels_last(model, device):
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


class _Loop:
    """One training run's steps, running accuracy and trajectory checkpoints."""

    def __init__(
        self,
        model: nn.Module,
        options: TrainOptions,
        spec: ModelSpec,
        meta: dict[str, Any],
        trajectory_dir: Path,
        device: torch.device,
    ) -> None:
        self.model, self.options, self.spec, self.meta = model, options, spec, meta
        self.trajectory_dir, self.device = trajectory_dir, device
        self.optimizer = make_optimizer(options, model.parameters())
        self.channels_last = use_channels_last(model, device)
        self.steps = self.seen = 0
        self.seconds = 0.0
        self.trajectory: list[Path] = []
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.counted = 0

    @property
    def running_accuracy(self) -> float:
        return int(self.correct) / max(self.counted, 1)

    def snapshot(self, steps_per_epoch: int) -> None:
        if self.options.save_every is None:
            return
        self.check_weights()
        self.trajectory_dir.mkdir(parents=True, exist_ok=True)
        path = self.trajectory_dir / _snapshot_name(self.steps)
        epoch = self.steps / steps_per_epoch if self.steps else 0
        meta = {**self.meta, "step": self.steps, "epoch": epoch}
        save_checkpoint(self.model, path, spec=self.spec, overwrite=True, **meta)
        self.trajectory.append(path)

    def check_weights(self) -> None:
        """Before anything is saved: weights that turned NaN or inf end the run."""
        params = [p.detach() for p in self.model.parameters()]
        if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            raise self.diverged("the weights are NaN or inf")

    def diverged(self, what: str) -> LosslandError:
        """The error of a diverged run, after removing the trajectory checkpoints it wrote: a
        diverged run saves nothing."""
        for path in self.trajectory:
            path.unlink(missing_ok=True)
        removed = f" (removed its {len(self.trajectory)} trajectory checkpoints)"
        return LosslandError(
            f"training diverged at step {self.steps} ({what}): lower {arg('lr')}; nothing was "
            f"saved{removed if self.trajectory else ''}"
        )

    def run(self, images: Tensor, labels: Tensor, *, progress: bool) -> None:
        options, every = self.options, self.options.save_every
        steps_per_epoch = math.ceil(len(images) / options.batch_size)  # epochs = steps / this
        started = time.perf_counter()
        self.snapshot(steps_per_epoch)
        bar = progress_bar(
            options.epochs * len(images),
            desc=f"train {self.spec.name}",
            unit="sample",
            enabled=progress,
            unit_scale=True,
        )
        self.model.train()
        order = batches(len(images), options.batch_size, seed=options.seed, epochs=options.epochs)
        for _, idx in order:
            if idx is None:  # a new epoch
                self.correct.zero_()
                self.counted = 0
                continue
            loss = self.step(images[idx], labels[idx])
            if bar is not None:
                bar.update(len(idx))
            if self.steps % 10 == 1:  # a host sync, so not every step
                self.check(float(loss), bar)
            if every and self.steps % every == 0:
                self.snapshot(steps_per_epoch)
        if bar is not None:
            bar.close()
        self.seconds = time.perf_counter() - started
        if every and self.steps % every != 0:
            self.snapshot(steps_per_epoch)

    def step(self, inputs: Tensor, targets: Tensor) -> Tensor:
        x, y = inputs.to(self.device), targets.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        self.steps += 1
        self.seen += len(y)
        self.correct += (logits.argmax(1) == y).sum()
        self.counted += len(y)
        return loss.detach()

    def check(self, value: float, bar: Any) -> None:
        if not math.isfinite(value):
            raise self.diverged(f"loss {value}")
        if bar is not None:
            bar.set_postfix(loss=f"{value:.3f}", acc=f"{self.running_accuracy:.3f}")


def batches(
    count: int, batch_size: int, *, seed: int, epochs: int
) -> Iterator[tuple[int, Tensor | None]]:
    """(epoch, sample indices) for every step; ``None`` marks the start of each epoch.

    One seeded permutation per epoch: the demo uses this to find the write-up's "last batch".
    """
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        yield epoch, None
        order = torch.randperm(count, generator=generator)
        for start in range(0, count, batch_size):
            yield epoch, order[start : start + batch_size]
