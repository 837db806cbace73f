"""Model registry: the seed VGG, a small demo network, and user models by import path."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from lossland.errors import LosslandError

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
        raise LosslandError(f"vgg width must be positive, got {width}: try --width 0.25")
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


REGISTRY: dict[str, Callable[..., nn.Module]] = {"vgg": vgg, "small": small}


@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild a model: a registry name or ``package.module:factory``, plus options."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "options": dict(self.options)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        try:
            raw = json.loads(text)
            return cls(name=str(raw["name"]), options=dict(raw.get("options", {})))
        except (ValueError, KeyError, TypeError) as exc:
            raise LosslandError(f"malformed model spec {text!r}: {exc}") from None

    def __str__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in sorted(self.options.items()))
        return f"{self.name}({opts})"


def is_import_path(name: str) -> bool:
    return ":" in name


def import_object(path: str, *, what: str = "object") -> Any:
    """Import ``package.module:attr`` with a one-line error for every way it can go wrong."""
    module_name, sep, attr = path.partition(":")
    if (
        not sep
        or not module_name
        or not attr
        or not all(part.isidentifier() for part in [*module_name.split("."), *attr.split(".")])
    ):
        raise LosslandError(
            f"malformed import path {path!r} for the {what}: write it as package.module:name"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise LosslandError(
            f"cannot import module {module_name!r} for the {what} ({exc}): "
            "install it or add its folder to PYTHONPATH"
        ) from None
    except Exception as exc:  # the module itself is broken: SyntaxError, or its code raised
        raise LosslandError(
            f"importing module {module_name!r} for the {what} failed with "
            f"{type(exc).__name__}: {exc}: fix the module"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LosslandError(f"module {module_name!r} has no {attr!r} for the {what}")
        obj = getattr(obj, part)
    return obj


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
    """A spec with only the options that the registry model understands (width, activation)."""
    if name in REGISTRY:
        options = {
            k: v for k, v in options.items() if k in ("width", "activation") and v is not None
        }
    return ModelSpec(name=name, options=options)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
