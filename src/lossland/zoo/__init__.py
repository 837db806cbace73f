"""Datasets, the model registry and training: what lossland brings besides your own model."""

from lossland.zoo._fashion_mnist import Split, fingerprint, load_fashion_mnist, read_idx, write_idx
from lossland.zoo._models import (
    ACTIVATIONS,
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
from lossland.zoo._train import TrainOptions, TrainResult, batches, evaluate, train

__all__ = [
    "ACTIVATIONS",
    "REGISTRY",
    "Activation",
    "Split",
    "TrainOptions",
    "TrainResult",
    "batches",
    "build_model",
    "count_parameters",
    "evaluate",
    "fingerprint",
    "load_fashion_mnist",
    "load_model",
    "model_spec",
    "read_idx",
    "small",
    "spec_to_build",
    "train",
    "vgg",
    "write_idx",
]
