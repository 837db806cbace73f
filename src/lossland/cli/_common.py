"""What several commands share: the model and data arguments, loading them, printing."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from lossland.cli._args import flag
from lossland.engine import select_samples
from lossland.errors import LosslandError, render
from lossland.io import Checkpoint, ModelSpec, Surface
from lossland.show import format_figures
from lossland.zoo import REGISTRY, Activation, Split, load_fashion_mnist, load_model, model_spec


@dataclass(kw_only=True)
class DataArgs:
    data_dir: Path | None = flag(
        None, doc="folder holding the Fashion-MNIST IDX files (else $LOSSLAND_DATA, else the cache)"
    )


@dataclass(kw_only=True)
class ModelArgs:
    model: str = flag(
        "small", doc="model name (small, vgg) or a user factory as package.module:factory"
    )
    width: float = flag(1.0, doc="width multiplier for registry models (vgg --width 0.25)")
    activation: Activation = flag("relu", doc="activation for registry models")
    model_arg: list[str] = flag(
        [], doc="KEY=VALUE keyword for a user model factory (JSON values)", repeat=True
    )

    def spec(self) -> ModelSpec:
        """Registry models take --width/--activation; a user factory gets only its --model-arg
        keywords. A --model-arg given explicitly wins over the registry options."""
        options = parse_model_args(self.model_arg)
        if self.model in REGISTRY:
            options = {"width": self.width, "activation": self.activation, **options}
        return model_spec(self.model, **options)


@dataclass(kw_only=True)
class CheckpointModelArgs(ModelArgs):
    """Model arguments of commands that load a checkpoint: the model only when it is not named."""

    model: str | None = flag(  # type: ignore[assignment]
        None,
        doc="model when the checkpoint does not name it: small, vgg or package.module:factory",
    )

    def given(self) -> ModelSpec | None:
        """The model the user named (None: the checkpoint's own, when it may be built)."""
        return self.spec() if self.model is not None else None

    def load(self, checkpoint: Path) -> tuple[nn.Module, Checkpoint]:
        return load_model(checkpoint, spec=self.given())


@dataclass(kw_only=True)
class SampleArgs(DataArgs):
    split: Split = flag("train", doc="data split to evaluate on")
    samples: str = flag("1024", doc="number of samples (seeded subset) or 'all'")
    loss: str | None = flag(None, doc="loss as package.module:function(logits, targets)")

    def data(self, seed: int) -> tuple[Tensor, Tensor]:
        images, labels = load_fashion_mnist(self.split, data_dir=self.data_dir)
        return select_samples(images, labels, self.samples, seed, split=self.split)


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


def note(message: str) -> None:
    """A line on stderr for the user (progress of long steps, notes)."""
    print(message, file=sys.stderr, flush=True)


def surface_summary(result: Surface, out: Path | None, seconds: float) -> str:
    """What a finished surface command prints: size, speed, minimum, centre, sharpness."""
    ax, ay, _ = result.argmin()
    where = f"x={ax:g}" if ay is None else f"x={ax:g}, y={ay:g}"
    finite = result.loss[result.done & np.isfinite(result.loss)]
    rate = result.done.sum() / max(seconds, 1e-9)
    lines = [
        f"{'x'.join(str(s) for s in result.shape)} surface in {seconds:.1f} s ({rate:.1f} points/s)"
        + (f" → {out}" if out else ""),
    ]
    if finite.size:
        lines.append(f"loss min {finite.min():.4g} at ({where}), max {finite.max():.4g}")
    center = result.value_at_origin()
    if center is not None and math.isfinite(center):
        lines.append(f"loss at the centre {center:.4g}")
    lines += format_figures(result)  # sharpness, eigenvalues, barrier
    return render("\n".join(lines), lambda name: "--" + name.replace("_", "-"))
