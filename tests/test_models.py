"""Tests for the model registry: the write-up's VGG, the small CNN, user factories, errors."""

from __future__ import annotations

import inspect
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import assert_one_line, torch_threads
from lossland.cli._common import ModelArgs
from lossland.core import import_object
from lossland.errors import LosslandError
from lossland.io import ModelSpec
from lossland.zoo import (
    REGISTRY,
    build_model,
    count_parameters,
    model_spec,
    resnet56,
    resnet56_noshort,
    small,
    vgg,
)

SEED_PARAMETERS = 26_563_018


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def seed_vgg() -> nn.Module:
    return vgg()


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module ``lossland_test_usermodels`` with factories of every kind, importable."""
    name = "lossland_test_usermodels"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def mlp(hidden=8, classes=10):
                return nn.Sequential(
                    nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, classes)
                )

            class Net(nn.Module):
                def __init__(self, hidden=4):
                    super().__init__()
                    self.fc = nn.Linear(784, hidden)

                def forward(self, x):
                    return self.fc(x.flatten(1))

            class Holder:
                make = staticmethod(mlp)

            NOT_CALLABLE = 42

            def not_a_module():
                return "a string"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)  # the next test imports its own copy


# --- the write-up's VGG --------------------------------------------------------------------------


def test_vgg_has_the_seed_parameter_count(seed_vgg: nn.Module) -> None:
    assert count_parameters(seed_vgg) == SEED_PARAMETERS


def test_vgg_convs_are_followed_by_activation_then_batchnorm(seed_vgg: nn.Module) -> None:
    layers = list(seed_vgg.children())
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    assert len(convs) == 10
    channels = [layers[i].out_channels for i in convs]
    assert channels == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512]
    for i in convs:
        conv, act, bn = layers[i], layers[i + 1], layers[i + 2]
        assert conv.kernel_size == (3, 3) and conv.padding == (1, 1)
        assert type(act) is nn.ReLU
        assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels
    pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
    # A pool after conv blocks 2, 4, 7 and 10 (right after that block's BatchNorm).
    assert pools == [convs[k] + 3 for k in (1, 3, 6, 9)]
    assert all(layers[i].kernel_size == 2 for i in pools)


def test_vgg_dense_head(seed_vgg: nn.Module) -> None:
    layers = list(seed_vgg.children())
    head = layers[[isinstance(m, nn.Flatten) for m in layers].index(True) :]
    assert [type(m) for m in head] == [
        nn.Flatten,
        nn.Linear,
        nn.ReLU,
        nn.Linear,
        nn.ReLU,
        nn.Dropout,
        nn.Linear,
    ]
    linears = [m for m in head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (512, 4096),
        (4096, 4096),
        (4096, 10),
    ]
    assert head[5].p == 0.5


def test_vgg_output_shape(seed_vgg: nn.Module) -> None:
    seed_vgg.eval()
    with torch.no_grad():
        out = seed_vgg(torch.rand(2, 1, 28, 28))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_vgg_quarter_width_is_smaller_and_works() -> None:
    model = vgg(width=0.25)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 16, 32, 32, 64, 64, 64, 128, 128, 128]
    assert count_parameters(model) == 1_671_034  # < 1/15 of the seed
    model.train()
    out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_vgg_leaky_relu_option() -> None:
    model = vgg(width=0.125, activation="leaky_relu")
    acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    assert len(acts) == 12  # 10 convs + 2 hidden dense layers
    assert all(isinstance(a, nn.LeakyReLU) and a.negative_slope == 0.01 for a in acts)


@pytest.mark.parametrize("width", [0.0, -1.0])
def test_vgg_rejects_non_positive_width(width: float) -> None:
    with pytest.raises(LosslandError, match="width") as info:
        vgg(width=width)
    assert_one_line(str(info.value))


def test_unknown_activation_lists_choices() -> None:
    with pytest.raises(LosslandError, match="leaky_relu, relu") as info:
        build_model(ModelSpec("small", {"activation": "gelu"}))
    assert_one_line(str(info.value))


# --- the small CNN ------------------------------------------------------------------------------


def test_small_works_and_is_small() -> None:
    model = small()
    assert count_parameters(model) < 100_000
    out = model.eval()(torch.rand(4, 1, 28, 28))
    assert out.shape == (4, 10)
    assert isinstance(build_model(ModelSpec("small")), nn.Sequential)


def test_registry_names() -> None:
    assert set(REGISTRY) == {"vgg", "small", "resnet56", "resnet56_noshort"}
    spec = ModelSpec("vgg", {"width": 0.25, "activation": "leaky_relu"})
    assert count_parameters(build_model(spec)) == count_parameters(vgg(width=0.25))


# --- user models by import path -----------------------------------------------------------------


def test_user_factory_gets_options_as_kwargs(user_module: str) -> None:
    model = build_model(ModelSpec(f"{user_module}:mlp", {"hidden": 5, "classes": 3}))
    assert isinstance(model, nn.Module)
    assert model[1].out_features == 5
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 3)


def test_user_class_and_dotted_attribute(user_module: str) -> None:
    net = build_model(ModelSpec(f"{user_module}:Net", {"hidden": 7}))
    assert net.fc.out_features == 7
    nested = build_model(ModelSpec(f"{user_module}:Holder.make"))
    assert nested[1].out_features == 8


def test_import_object_finds_nested_module_attribute() -> None:
    assert import_object("lossland.zoo:vgg") is vgg


@pytest.mark.parametrize("path", ["a:b:c", "mod:", ":f", "not a path:x", "a.:f", "1mod:f"])
def test_malformed_import_path(path: str) -> None:
    with pytest.raises(LosslandError, match="malformed import path") as info:
        build_model(ModelSpec(path))
    assert repr(path) in str(info.value)
    assert_one_line(str(info.value))


def test_missing_module() -> None:
    with pytest.raises(LosslandError, match="cannot import module 'no_such_module_xyz'") as info:
        build_model(ModelSpec("no_such_module_xyz:make"))
    assert_one_line(str(info.value))


def test_module_with_syntax_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lossland_test_broken_mod.py").write_text("def make(:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(LosslandError, match="lossland_test_broken_mod") as info:
            build_model(ModelSpec("lossland_test_broken_mod:make"))
        assert_one_line(str(info.value))
    finally:
        sys.modules.pop("lossland_test_broken_mod", None)


def test_missing_attribute(user_module: str) -> None:
    with pytest.raises(LosslandError, match="has no 'nope'") as info:
        build_model(ModelSpec(f"{user_module}:nope"))
    assert_one_line(str(info.value))


def test_non_callable(user_module: str) -> None:
    with pytest.raises(LosslandError, match="not callable") as info:
        build_model(ModelSpec(f"{user_module}:NOT_CALLABLE"))
    assert_one_line(str(info.value))


def test_factory_returning_non_module(user_module: str) -> None:
    with pytest.raises(LosslandError, match=r"returned str, not a torch\.nn\.Module") as info:
        build_model(ModelSpec(f"{user_module}:not_a_module"))
    assert_one_line(str(info.value))


def test_factory_with_unknown_option(user_module: str) -> None:
    with pytest.raises(LosslandError, match="cannot build model") as info:
        build_model(ModelSpec(f"{user_module}:mlp", {"depth": 3}))
    assert_one_line(str(info.value))


def test_unknown_model_name_lists_choices() -> None:
    with pytest.raises(LosslandError, match="unknown model 'resnet'") as info:
        build_model(ModelSpec("resnet"))
    message = str(info.value)
    assert "resnet56, resnet56_noshort, small, vgg" in message
    assert "package.module:factory" in message
    assert_one_line(message)


# --- specs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec("vgg", {"width": 0.25, "activation": "leaky_relu"}),
        ModelSpec("small"),
        ModelSpec("pkg.mod:make", {"hidden": [1, 2], "name": "x", "flag": True}),
    ],
)
def test_model_spec_json_round_trip(spec: ModelSpec) -> None:
    back = ModelSpec.from_json(spec.to_json())
    assert back == spec
    assert back.to_json() == spec.to_json()


@pytest.mark.parametrize("text", ["", "{", "[1]", '{"options": {}}', '{"name": "x", "options": 5}'])
def test_malformed_model_spec_json(text: str) -> None:
    with pytest.raises(LosslandError, match="malformed model spec") as info:
        ModelSpec.from_json(text)
    assert_one_line(str(info.value))


def test_spec_from_config_keeps_registry_options() -> None:
    spec = ModelArgs(model="vgg", width=0.25, activation="leaky_relu").spec()
    assert spec == ModelSpec("vgg", {"width": 0.25, "activation": "leaky_relu"})


def test_spec_from_config_user_factory_gets_only_its_model_args(user_module: str) -> None:
    spec = ModelArgs(model=f"{user_module}:mlp", model_arg=["hidden=6"]).spec()
    assert dict(spec.options) == {"hidden": 6}
    assert build_model(spec)[1].out_features == 6


def test_spec_from_config_explicit_model_arg_wins_over_width() -> None:
    spec = ModelArgs(model="small", model_arg=["width=0.5"]).spec()
    assert spec.options["width"] == 0.5 and spec.options["activation"] == "relu"


# --- model_spec: the factory's signature decides which options a registry model takes ----------


@pytest.mark.parametrize(
    ("name", "given", "recorded"),
    [
        # None: the factory's default, recorded where the factory has the keyword ...
        ("small", {"width": None, "activation": None}, {"width": 1.0, "activation": "relu"}),
        ("vgg", {"width": 0.25, "activation": None}, {"width": 0.25, "activation": "relu"}),
        # ... and left out where it does not (Li et al.'s ResNets have no width or activation).
        ("resnet56", {"width": None, "activation": None}, {}),
        ("resnet56_noshort", {"num_classes": 100, "width": None}, {"num_classes": 100}),
        # Keywords beyond width/activation reach the factory too.
        ("small", {"num_classes": 3}, {"num_classes": 3}),
        ("resnet56", {}, {}),
    ],
)
def test_model_spec_keeps_the_options_the_factory_takes(
    name: str, given: dict[str, object], recorded: dict[str, object]
) -> None:
    spec = model_spec(name, **given)
    assert spec == ModelSpec(name, recorded)


@pytest.mark.parametrize(
    ("name", "given", "named"),
    [
        ("resnet56", {"width": 0.5}, "width"),
        ("resnet56_noshort", {"activation": "relu"}, "activation"),
        ("small", {"depth": 3}, "depth"),
    ],
)
def test_model_spec_rejects_an_option_the_factory_lacks(
    name: str, given: dict[str, object], named: str
) -> None:
    with pytest.raises(LosslandError) as info:
        model_spec(name, **given)
    message = str(info.value)
    assert f"model {name} has no option {named}: it takes " in message
    assert_one_line(message)
    takes = message.rsplit("it takes ", 1)[1].split(", ")
    assert takes == [p for p in inspect.signature(REGISTRY[name]).parameters]


def test_the_command_line_names_the_flag_for_a_registry_model_without_width() -> None:
    from lossland.cli import commands

    with pytest.raises(LosslandError) as info:
        ModelArgs(model="resnet56", width=0.5).spec()
    rendered = info.value.render(commands()["train"].flag_for)
    assert rendered == "model resnet56 has no option --width: it takes num_classes"
    # Unset --width and --activation: the ResNet builds with its own defaults.
    spec = ModelArgs(model="resnet56").spec()
    assert spec == ModelSpec("resnet56") and count_parameters(build_model(spec)) == 855_770


def test_resnet56_models_in_the_registry() -> None:
    for name, factory in (("resnet56", resnet56), ("resnet56_noshort", resnet56_noshort)):
        built = build_model(model_spec(name))
        assert (
            type(built) is type(factory())
            and built.state_dict().keys() == factory().state_dict().keys()
        )
    assert count_parameters(build_model(model_spec("resnet56_noshort"))) == 853_018
