"""Model registry: the seed VGG, a small demo network, Li et al.'s CIFAR-10 ResNet-56 (with and
without shortcuts), and user models by import path."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any, Literal

from torch import nn

from lossland.core import import_object, is_import_path
from lossland.errors import LosslandError, arg
from lossland.io import Checkpoint, ModelSpec, load_checkpoint, load_state_into
from lossland.zoo._resnet_cifar import resnet56, resnet56_noshort

Activation = Literal["relu", "leaky_relu"]
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),  # Flux's leakyrelu slope
}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise LosslandError(
            f"unknown activation {name!r}: choose one of {', '.join(sorted(ACTIVATIONS))}"
        )
    return ACTIVATIONS[name]()


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


# Output channels of the seed's ten 3x3 convolutions; "M" is a 2x2 max-pool.
VGG_LAYOUT: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
)


def vgg(*, width: float = 1.0, activation: Activation = "relu", num_classes: int = 10) -> nn.Module:
    """The seed network: 10 conv(3x3)→activation→BatchNorm, 4 pools, Dense 512→4096→4096→10.

    With width 1 it has 26,563,018 parameters. ``width`` scales every channel and hidden size,
    so ``width=0.25`` is a CPU-friendly variant with the same depth.
    """
    if not width > 0:
        raise LosslandError(f"vgg width must be positive, got {width}: try {arg('width')} 0.25")
    layers: list[nn.Module] = []
    channels = 1
    for item in VGG_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        out = _scaled(int(item), width)
        layers += [
            nn.Conv2d(channels, out, 3, padding=1),
            _activation(activation),
            nn.BatchNorm2d(out),
        ]
        channels = out
    hidden = _scaled(4096, width)
    # 28 → 14 → 7 → 3 → 1 after four pools, so the features are (channels, 1, 1).
    layers += [
        nn.Flatten(),
        nn.Linear(channels, hidden),
        _activation(activation),
        nn.Linear(hidden, hidden),
        _activation(activation),
        nn.Dropout(0.5),
        nn.Linear(hidden, num_classes),
    ]
    return nn.Sequential(*layers)


def small(
    *, width: float = 1.0, activation: Activation = "relu", num_classes: int = 10
) -> nn.Module:
    """A small, fast CNN for CPU demos (about 60k parameters): 3 conv blocks and 2 dense layers."""
    if not width > 0:
        raise LosslandError(f"small width must be positive, got {width}")
    c1, c2, c3, hidden = (_scaled(c, width) for c in (16, 32, 64, 64))
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        _activation(activation),
        nn.BatchNorm2d(c1),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        _activation(activation),
        nn.BatchNorm2d(c2),
        nn.MaxPool2d(2),
        nn.Conv2d(c2, c3, 3, padding=1),
        _activation(activation),
        nn.BatchNorm2d(c3),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c3 * 3 * 3, hidden),
        _activation(activation),
        nn.Linear(hidden, num_classes),
    )


REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "vgg": vgg,
    "small": small,
    "resnet56": resnet56,
    "resnet56_noshort": resnet56_noshort,
}


def build_model(spec: ModelSpec) -> nn.Module:
    """Instantiate the model a spec names; user factories get the options as keyword arguments."""
    if is_import_path(spec.name):
        factory = import_object(spec.name, what="model factory")
        if not callable(factory):
            raise LosslandError(f"{spec.name!r} is not callable: point to a function or class")
    elif spec.name in REGISTRY:
        factory = REGISTRY[spec.name]
    else:
        raise LosslandError(
            f"unknown model {spec.name!r}: choose one of {', '.join(sorted(REGISTRY))} "
            "or give an import path package.module:factory"
        )
    try:
        model = factory(**spec.options)
    except TypeError as exc:
        raise LosslandError(f"cannot build model {spec}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise LosslandError(
            f"model factory {spec.name!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def model_spec(name: str, **options: Any) -> ModelSpec:
    """The spec of model ``name`` with ``options`` for its factory.

    For a registry model the factory's signature decides: an option of None means "the
    model's default" and is recorded as that default where the factory takes the keyword (so
    a checkpoint names its model completely), and left out where it does not (``resnet56``
    has no width); a value for a keyword the factory does not take is an error naming the
    keywords it does take. A user factory gets every option as given.
    """
    if name not in REGISTRY:
        return ModelSpec(name=name, options=options)
    keywords = _keywords(REGISTRY[name])
    unknown = [k for k, v in options.items() if v is not None and k not in keywords]
    if unknown:
        raise LosslandError(
            f"model {name} has no option {arg(unknown[0])}: it takes "
            + (", ".join(keywords) or "no options")
        )
    defaults = {k: d for k, d in keywords.items() if d is not inspect.Parameter.empty}
    chosen = {
        k: defaults[k] if v is None else v
        for k, v in options.items()
        if v is not None or k in defaults
    }
    return ModelSpec(name=name, options=chosen)


def _keywords(factory: Callable[..., nn.Module]) -> dict[str, Any]:
    """The keywords ``factory`` takes and their defaults (``inspect.Parameter.empty`` where
    required). Registry factories take keywords only, never ``**kwargs``."""
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {
        p.name: p.default for p in inspect.signature(factory).parameters.values() if p.kind in kinds
    }


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_model(
    path: str | os.PathLike[str], *, spec: ModelSpec | None = None
) -> tuple[nn.Module, Checkpoint]:
    """Rebuild the model a checkpoint was trained with (or ``spec``) and load its weights."""
    checkpoint = load_checkpoint(path)
    spec = spec or checkpoint.model_spec
    if spec is None:
        raise LosslandError(
            f"checkpoint {path} does not say which model it holds: pass {arg('model')} NAME "
            f"or {arg('model')} package.module:factory"
        )
    model = build_model(spec)
    load_state_into(model, checkpoint.state_dict, source=f"checkpoint {path}")
    model.eval()
    return model, checkpoint
