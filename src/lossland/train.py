"""Training: Adam (or SGD) on Fashion-MNIST, seeded, with optional trajectory checkpoints."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossland.atomic import check_writable
from lossland.checkpoint import load_checkpoint, load_state_into, save_checkpoint
from lossland.config import TrainConfig
from lossland.data import fingerprint, load_fashion_mnist
from lossland.devices import resolve_device
from lossland.errors import LosslandError
from lossland.models import REGISTRY, ModelSpec, build_model, count_parameters, model_spec


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
            f"model {self.spec} ({self.parameters:,} parameters)",
            f"trained {self.steps} steps on {self.samples:,} samples in {self.seconds:.1f} s "
            f"({self.samples / max(self.seconds, 1e-9):,.0f} samples/s)",
            f"train accuracy (running, last epoch) {self.train_accuracy:.4f}",
            f"test accuracy {self.test_accuracy:.4f}, test loss {self.test_loss:.4f}",
            f"checkpoint: {self.checkpoint}",
        ]
        if self.trajectory:
            lines.append(
                f"trajectory: {len(self.trajectory)} checkpoints in {self.trajectory[0].parent}"
            )
        return "\n".join(lines)


def parse_model_args(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs with JSON values (bare words stay strings)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise LosslandError(f"malformed --model-arg {item!r}: write KEY=VALUE, e.g. hidden=128")
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return options


def spec_from_config(name: str, width: float, activation: str, model_arg: list[str]) -> ModelSpec:
    """Registry models take --width/--activation; a user factory gets only its --model-arg
    keywords. A --model-arg given explicitly wins over the registry options."""
    options = parse_model_args(model_arg)
    if name in REGISTRY:
        options = {"width": width, "activation": activation, **options}
    return model_spec(name, **options)


def use_channels_last(model: nn.Module, device: torch.device) -> bool:
    """channels_last pays off for conv nets on CPU (oneDNN) and CUDA (cuDNN), not on MPS."""
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return has_conv and device.type in ("cpu", "cuda")


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


def make_optimizer(config: TrainConfig, params: Any) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, betas=(config.beta1, config.beta2))
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)


def train(config: TrainConfig, *, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train ``config.model`` on Fashion-MNIST and save the checkpoint (and trajectory)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    _validate(config)
    spec = spec_from_config(config.model, config.width, config.activation, config.model_arg)
    out = check_writable(
        config.out or Path(f"{spec.name.replace(':', '_').replace('.', '_')}.safetensors")
    )
    trajectory_dir = config.trajectory_dir or out.with_name(out.stem + "_trajectory")
    device = resolve_device(config.device)
    images, labels = load_fashion_mnist("train", data_dir=config.data_dir)
    test_images, test_labels = load_fashion_mnist("test", data_dir=config.data_dir)
    if config.limit is not None:
        images, labels = images[: config.limit], labels[: config.limit]
    data_hash = fingerprint(images, labels)

    # Seed a private RNG state so training is reproducible without touching the caller's.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        model = build_model(spec)
        if config.init is not None:
            init = load_checkpoint(config.init)
            load_state_into(model, init.state_dict, source=f"--init checkpoint {config.init}")
        model.to(device)
        channels_last = use_channels_last(model, device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        optimizer = make_optimizer(config, model.parameters())
        meta = {
            "training": {
                "optimizer": config.optimizer,
                "lr": config.lr,
                "betas": [config.beta1, config.beta2],
                "momentum": config.momentum,
                "batch_size": config.batch_size,
                "epochs": config.epochs,
                "limit": config.limit,
                "seed": config.seed,
                "init": str(config.init) if config.init else None,
            },
            "data": {
                "dataset": "fashion-mnist",
                "split": "train",
                "samples": len(images),
                "sha256": data_hash,
            },
        }
        trajectory: list[Path] = []

        def snapshot(step: int, epoch: float) -> None:
            if config.save_every is None:
                return
            trajectory_dir.mkdir(parents=True, exist_ok=True)
            path = trajectory_dir / f"step_{step:07d}.safetensors"
            save_checkpoint(model, path, spec=spec, step=step, epoch=epoch, **meta)
            trajectory.append(path)

        steps_per_epoch = math.ceil(len(images) / config.batch_size)  # epochs done = steps / this
        steps, seen, started = 0, 0, time.perf_counter()
        running_correct, running_total = torch.zeros((), dtype=torch.long, device=device), 0
        snapshot(0, 0)
        total = config.epochs * len(images)
        bar = _progress(total, config.progress, f"train {spec.name}")
        model.train()
        for _, idx in batches(
            len(images), config.batch_size, seed=config.seed, epochs=config.epochs
        ):
            if idx is None:  # a new epoch
                running_correct.zero_()
                running_total = 0
                continue
            x, y = images[idx].to(device), labels[idx].to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            steps += 1
            seen += len(idx)
            running_correct += (logits.argmax(1) == y).sum()
            running_total += len(idx)
            if bar is not None:
                bar.update(len(idx))
            if steps % 10 == 1:  # a host sync, so not every step
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise LosslandError(
                        f"training diverged at step {steps} (loss {value}): lower --lr"
                    )
                if bar is not None:
                    bar.set_postfix(
                        loss=f"{value:.3f}", acc=f"{int(running_correct) / running_total:.3f}"
                    )
            if config.save_every and steps % config.save_every == 0:
                snapshot(steps, steps / steps_per_epoch)
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - started
        if config.save_every and steps % config.save_every != 0:
            snapshot(steps, steps / steps_per_epoch)
        test_loss, test_acc = evaluate(model, test_images, test_labels, channels_last=channels_last)
        train_acc = int(running_correct) / max(running_total, 1)
        save_checkpoint(
            model,
            out,
            spec=spec,
            **meta,
            results={
                "train_accuracy_running": train_acc,
                "test_accuracy": test_acc,
                "test_loss": test_loss,
                "steps": steps,
                "seconds": seconds,
                "device": str(device),
            },
        )
    return TrainResult(
        checkpoint=out,
        spec=spec,
        parameters=count_parameters(model),
        steps=steps,
        samples=seen,
        seconds=seconds,
        train_accuracy=train_acc,
        test_accuracy=test_acc,
        test_loss=test_loss,
        trajectory=trajectory,
    )


def batches(
    count: int, batch_size: int, *, seed: int, epochs: int
) -> Iterator[tuple[int, Tensor | None]]:
    """(epoch, sample indices) for every step; ``None`` marks the start of each epoch.

    One seeded permutation per epoch: the demo uses this to find the seed's "last batch".
    """
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        yield epoch, None
        order = torch.randperm(count, generator=generator)
        for start in range(0, count, batch_size):
            yield epoch, order[start : start + batch_size]


def _validate(config: TrainConfig) -> None:
    checks = [
        (config.epochs >= 1, f"--epochs must be at least 1, got {config.epochs}"),
        (config.batch_size >= 1, f"--batch-size must be at least 1, got {config.batch_size}"),
        (
            config.limit is None or config.limit >= 1,
            f"--limit must be at least 1, got {config.limit}",
        ),
        (config.lr > 0, f"--lr must be positive, got {config.lr}"),
        (config.save_every is None or config.save_every >= 1, "--save-every must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise LosslandError(message)


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="sample",
        unit_scale=True,
        desc=desc,
        dynamic_ncols=True,
        leave=False,
        disable=None,
    )
