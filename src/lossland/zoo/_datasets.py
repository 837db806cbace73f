"""The built-in image data sets by name: what ``--data NAME`` and ``train(dataset=...)`` load."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

import torch

from lossland.errors import LosslandError, arg
from lossland.zoo._cifar10 import load_cifar10
from lossland.zoo._fashion_mnist import load_fashion_mnist

Dataset = Literal["fashion-mnist", "cifar10"]
Loader = Callable[..., tuple[torch.Tensor, torch.Tensor]]
DATASETS: dict[str, Loader] = {"fashion-mnist": load_fashion_mnist, "cifar10": load_cifar10}


def load_dataset(
    name: str, split: Literal["train", "test"], *, data_dir: str | os.PathLike[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A split of a built-in data set as (images, labels): Fashion-MNIST (1, 28, 28) in [0, 1],
    CIFAR-10 (3, 32, 32) normalized as Li et al."""
    if name not in DATASETS:
        raise LosslandError(
            f"unknown {arg('dataset')} {name!r}: choose one of {', '.join(DATASETS)}"
        )
    return DATASETS[name](split, data_dir=data_dir)
