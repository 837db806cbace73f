"""Each record's numbers and picture, also to TensorBoard or W&B (a :class:`RecordLogger`).

Scalars go under ``lossland/<name>`` (λ_max, trace, the sharpness of the slice, its barrier,
the loss at θ_t), the slice as an image ``lossland/slice`` (the contour of a plane, the curve
of a line), both at the training step.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lossland.integrations._optional import optional
from lossland.io import Surface
from lossland.show import contour_png

LOGGED = (
    "lambda_max",
    "trace",
    "centre_loss",
    "rise_mean",
    "rise_max",
    "curvature_xx",
    "curvature_yy",
    "barrier",
)
PREFIX = "lossland/"


def scalars(values: Mapping[str, float | None]) -> dict[str, float]:
    """The finite logged values, by their logged names."""
    out = {}
    for name in LOGGED:
        value = values.get(name)
        if value is not None and math.isfinite(value):
            out[PREFIX + name] = float(value)
    return out


def slice_image(slice_: Surface) -> np.ndarray:
    """The slice drawn as an (H, W, 3) uint8 image."""
    from PIL import Image

    with Image.open(io.BytesIO(contour_png(slice_))) as image:
        return np.asarray(image.convert("RGB"))


class TensorBoardLogger:
    """Writes to a ``torch.utils.tensorboard.SummaryWriter``: the one given, or a new one in
    ``log_dir`` (closed with the recorder)."""

    def __init__(
        self, log_dir: str | Path | None = None, *, writer: Any = None, images: bool = True
    ) -> None:
        if writer is None:
            optional("tensorboard", extra="tensorboard", what="TensorBoardLogger")
            tensorboard = optional(
                "torch.utils.tensorboard", extra="tensorboard", what="TensorBoardLogger"
            )
            writer = tensorboard.SummaryWriter(log_dir=None if log_dir is None else str(log_dir))
            self._owned = True
        else:
            self._owned = False
        self.writer = writer
        self.images = images

    def log(self, step: int, values: Mapping[str, float | None], slice_: Surface) -> None:
        for name, value in scalars(values).items():
            self.writer.add_scalar(name, value, step)
        if self.images:
            self.writer.add_image(PREFIX + "slice", slice_image(slice_), step, dataformats="HWC")

    def close(self) -> None:
        self.writer.flush()
        if self._owned:
            self.writer.close()


class WandbLogger:
    """Logs to a W&B run (the one given, else ``wandb.run``) against its own x axis
    ``lossland/step``, so the training step never clashes with the run's own step counter."""

    def __init__(self, run: Any = None, *, images: bool = True) -> None:
        self.wandb = optional("wandb", extra="wandb", what="WandbLogger")
        self.run = run if run is not None else self.wandb.run
        if self.run is None:
            from lossland.errors import LosslandError

            raise LosslandError("WandbLogger needs a W&B run: call wandb.init() first, or pass run")
        self.run.define_metric(PREFIX + "step")
        self.run.define_metric(PREFIX + "*", step_metric=PREFIX + "step")
        self.images = images

    def log(self, step: int, values: Mapping[str, float | None], slice_: Surface) -> None:
        row: dict[str, Any] = {PREFIX + "step": step, **scalars(values)}
        if self.images:
            row[PREFIX + "slice"] = self.wandb.Image(slice_image(slice_), caption=f"step {step}")
        self.run.log(row)

    def close(self) -> None:
        """The run belongs to the caller: it is left open."""
