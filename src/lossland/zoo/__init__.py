"""Datasets, the model registry and training: what lossland brings besides your own model."""

from lossland.zoo._cifar10 import load_cifar10
from lossland.zoo._datasets import DATASETS, Dataset, load_dataset
from lossland.zoo._fashion_mnist import Split, fingerprint, load_fashion_mnist, write_idx
from lossland.zoo._models import (
    REGISTRY,
    Activation,
    build_model,
    count_parameters,
    load_model,
    model_spec,
    small,
    spec_to_build,
    vgg,
)
from lossland.zoo._resnet_cifar import CifarResNet, resnet56, resnet56_noshort
from lossland.zoo._train import TrainOptions, TrainResult, batches, evaluate, train

__all__ = [
    "DATASETS",
    "REGISTRY",
    "Activation",
    "CifarResNet",
    "Dataset",
    "Split",
    "TrainOptions",
    "TrainResult",
    "batches",
    "build_model",
    "count_parameters",
    "evaluate",
    "fingerprint",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "load_model",
    "model_spec",
    "resnet56",
    "resnet56_noshort",
    "small",
    "spec_to_build",
    "train",
    "vgg",
    "write_idx",
]


def __dir__() -> list[str]:
    return list(__all__)
