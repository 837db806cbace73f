"""Training-framework integrations of :class:`lossland.Recorder`, each an optional import.

* :class:`LightningCallback` — a ``lightning.pytorch.Callback`` (``lossland[lightning]``);
* :class:`TrainerCallback` — a ``transformers.TrainerCallback`` (``lossland[hf]``);
* :class:`TensorBoardLogger`, :class:`WandbLogger` — where each record's scalars (λ_max,
  trace, sharpness, the slice's barrier) and the slice's picture also go
  (``lossland[tensorboard]``, ``lossland[wandb]``).

A name is imported when first used, so ``import lossland.integrations`` needs none of these
libraries; a missing one is a one-line error naming the extra to install.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "LightningCallback": "lossland.integrations._lightning",
    "TrainerCallback": "lossland.integrations._transformers",
    "TensorBoardLogger": "lossland.integrations._loggers",
    "WandbLogger": "lossland.integrations._loggers",
}

__all__ = ["LightningCallback", "TensorBoardLogger", "TrainerCallback", "WandbLogger"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'lossland.integrations' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return list(__all__)
