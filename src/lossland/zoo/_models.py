"""Model registry: the write-up's VGG, a small demo network, Li et al.'s CIFAR-10 ResNet-56
(with and without shortcuts), and user models by import path."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any, Literal

from torch import nn

from lossland.core import import_object, is_import_path
from lossland.engine import user_failure
from lossland.errors import LosslandError, arg
from lossland.io import (
    Check,
    Checkpoint,
    ModelSpec,
    check_schema,
    is_number,
    load_checkpoint,
    load_state_into,
)
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


# Output channels of the write-up's ten 3x3 convolutions; "M" is a 2x2 max-pool.
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
    """The write-up's network: 10 conv(3x3)→activation→BatchNorm, 4 pools, Dense 512→4096→4096→10.

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
MAX_WIDTH = 8.0  # vgg at width 8 has 1.7e9 parameters: a larger width is a typo or a hostile file
MAX_CLASSES = 100_000
# The options registry models take, checked before building (a checkpoint's metadata names
# them); each model takes the subset its factory's keywords name.
REGISTRY_OPTIONS: dict[str, tuple[Check, str]] = {
    "width": (lambda v: is_number(v) and 0 < v <= MAX_WIDTH, f"a number in (0, {MAX_WIDTH:g}]"),
    "activation": (lambda v: v in ACTIVATIONS, "one of " + ", ".join(sorted(ACTIVATIONS))),
    "num_classes": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_CLASSES,
        f"a whole number in 1..{MAX_CLASSES}",
    ),
}


def build_model(spec: ModelSpec) -> nn.Module:
    """Instantiate the model a spec names; user factories get the options as keyword arguments.

    The caller vouches for ``spec`` (the user named it): a spec read from a file goes through
    :func:`load_model`, which never builds an import path that the user did not give.

    Args:
        spec: a registry name ("vgg", "small", "resnet56", "resnet56_noshort") or
            ``package.module:factory``, with its options.

    Returns:
        The new model (random weights).

    Raises:
        LosslandError: an unknown name or option, or a factory that fails or returns no module.

    Example:
        >>> model = lossland.build_model(lossland.ModelSpec("vgg", {"width": 0.25}))
    """
    if is_import_path(spec.name):
        factory = import_object(spec.name, what="model factory")
        if not callable(factory):
            raise LosslandError(f"{spec.name!r} is not callable: point to a function or class")
    elif spec.name in REGISTRY:
        factory = REGISTRY[spec.name]
        _check_registry_options(spec)
    else:
        raise LosslandError(
            f"unknown model {spec.name!r}: choose one of {', '.join(sorted(REGISTRY))} "
            "or give an import path package.module:factory"
        )
    try:
        model = factory(**spec.options)
    except TypeError as exc:
        raise LosslandError(f"cannot build model {spec}: {exc}") from None
    except LosslandError:
        raise
    except Exception as exc:  # the user's factory failed: its own words, on one line
        raise user_failure(
            exc,
            who=f"the model factory {spec.name!r}",
            where="while building the model",
            fix="fix the factory or its options",
        ) from exc
    if not isinstance(model, nn.Module):
        raise LosslandError(
            f"model factory {spec.name!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _check_registry_options(spec: ModelSpec) -> None:
    def fail(problem: str) -> LosslandError:
        return LosslandError(f"model {spec.name} {problem}")

    keywords = _keywords(REGISTRY[spec.name])
    unknown = sorted(set(spec.options) - set(keywords))
    if unknown:
        takes = ", ".join(keywords) or "none"
        raise fail(f"takes no option {unknown[0]!r}: its options are {takes}")
    check_schema(spec.options, {k: REGISTRY_OPTIONS[k] for k in keywords}, fail)


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


def spec_to_build(checkpoint: Checkpoint, spec: ModelSpec | str | None = None) -> ModelSpec:
    """The one decision of which model factory a checkpoint may build (a file never makes
    lossland run code):

    * ``spec`` given (the user named it: ``--model``, ``model=``): that spec; when it names the
      checkpoint's own model and gives no options, with the options stored in the checkpoint;
    * else the checkpoint's metadata, when it names a registry model (its options are checked);
      an import path from a file is refused, with the fix: name the same path yourself.
    """
    source = f"checkpoint {checkpoint.path}" if checkpoint.path else "the checkpoint"
    stored = checkpoint.model_spec
    given = ModelSpec(spec) if isinstance(spec, str) else spec
    if given is not None:
        if stored is not None and stored.name == given.name and not given.options:
            return stored
        return given
    if stored is None:
        raise LosslandError(
            f"{source} does not say which model it holds: pass {arg('model')} NAME "
            f"or {arg('model')} package.module:factory"
        )
    if is_import_path(stored.name):
        raise LosslandError(
            f"{source} names the model factory {stored.name!r}, an import path: lossland never "
            f"imports code a file names; pass {arg('model')} {stored.name} if you trust it"
        )
    return stored


def load_model(
    path: str | os.PathLike[str], *, spec: ModelSpec | str | None = None
) -> tuple[nn.Module, Checkpoint]:
    """Rebuild the model a checkpoint was trained with (or ``spec``) and load its weights.

    The model is the one :func:`spec_to_build` allows: a registry model the metadata names, or
    what ``spec`` names (an import path runs only when given here, never from the file).

    Args:
        path: the checkpoint file.
        spec: the model to build instead of the one the metadata names (a ``ModelSpec``, a
            registry name or ``package.module:factory``).

    Returns:
        The model in eval mode with the checkpoint's weights, and the :class:`Checkpoint`.

    Raises:
        LosslandError: an unreadable checkpoint, a model the metadata does not name (pass
            ``spec``), or weights that do not fit the model.

    Example:
        >>> model, ck = lossland.load_model("vgg.safetensors")
    """
    checkpoint = load_checkpoint(path)
    model = build_model(spec_to_build(checkpoint, spec))
    load_state_into(model, checkpoint.state_dict, source=f"checkpoint {path}")
    model.eval()
    return model, checkpoint
