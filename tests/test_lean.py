"""Lean memory (issue 22): a narrow network keeps no grid-dtype copy of its moving tensors
(each point formed in float32 a block of rows at a time, rounded once into the network), and
``memory="lean"`` regenerates random directions from their recipe at every point.

The references are the engines these replace: the narrow network against the engine that kept
a float32 flat buffer, each point anchored from θ* (the exact formula the narrow one applies at
every point); lean against the stored directions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import lossland
from lossland.engine import Engine, EngineOptions, eval_data

CPU = torch.device("cpu")
XS, YS = np.linspace(-1, 1, 5), np.linspace(-0.5, 0.5, 3)


def conv() -> nn.Module:
    """A small conv net: 4-D tensors in the channels_last layout, several row blocks each."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 5),
    ).eval()


def images(n: int = 24) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(4)
    return torch.randn(n, 3, 6, 6, generator=g), torch.randint(0, 5, (n,), generator=g)


def engine(model: nn.Module, d: lossland.Directions, data: Any, **options: Any) -> Engine:
    wide = options.get("dtype", torch.float32)
    low = torch.bfloat16 if options.get("precision") == "bf16" else wide
    cl = options.get("channels_last", False)
    evaluation = eval_data(data, batch_size=12, device=CPU, dtype=low, channels_last=cl)
    return Engine(model, [d.x, d.y], evaluation, options=EngineOptions(device=CPU, **options))  # type: ignore[list-item]


def grid(e: Engine) -> np.ndarray:
    """The whole grid, rows walked as the engine walks them: (rows, columns, len(SUMS))."""
    out = np.zeros((len(YS), len(XS), 0)).tolist()
    for block in e.rows(XS, YS, np.ones((len(YS), len(XS)), dtype=bool)):
        for c, stats in zip(block.cols, block.stats, strict=True):
            out[block.row][c] = stats
    return np.array(out)


def anchored(e: Engine) -> np.ndarray:
    """Each point on its own (a row of one pending point): always anchored from θ*."""
    out = np.zeros((len(YS), len(XS), 0)).tolist()
    for i in range(len(YS)):
        for j in range(len(XS)):
            alone = np.zeros((len(YS), len(XS)), dtype=bool)
            alone[i, j] = True
            (block,) = e.rows(XS, YS, alone)
            out[i][j] = block.stats[0]
    return np.array(out)


# --- a narrow network: no grid-dtype buffer, each point exact ----------------------------------

NARROW = [  # (model, data, model dtype, engine options, params)
    ("mlp", torch.float32, {"precision": "bf16"}, None),
    ("mlp", torch.bfloat16, {"precision": "bf16"}, None),
    ("mlp", torch.bfloat16, {"precision": "bf16"}, "2.*"),
    ("mlp", torch.float32, {"precision": "bf16", "dtype": torch.float64}, None),
    ("conv", torch.float32, {"precision": "bf16", "channels_last": True}, None),
    ("conv", torch.bfloat16, {"precision": "bf16", "channels_last": True}, "3.*"),
]


def model_and_data(name: str, dtype: torch.dtype) -> tuple[nn.Module, Any]:
    if name == "conv":
        return conv().to(dtype), images()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 40), nn.Tanh(), nn.Linear(40, 40), nn.Tanh(), nn.Linear(40, 3))
    g = torch.Generator().manual_seed(3)
    data = (torch.randn(36, 6, generator=g), torch.randint(0, 3, (36,), generator=g))
    return net.eval().to(dtype), data


@pytest.mark.parametrize(("name", "dtype", "options", "params"), NARROW)
def test_a_narrow_network_is_each_point_anchored_exactly(
    name: str,
    dtype: torch.dtype,
    options: dict[str, Any],
    params: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The narrow engine's grid equals, bit for bit, the float32-buffer engine's points each
    anchored from θ* (θ* + α·δ + β·η formed in float32 and rounded once: the exact point; that
    engine's steps along a row differ from it by float32 rounding only)."""
    import lossland.engine._engine as engine_module

    model, data = model_and_data(name, dtype)
    d = lossland.random_directions(model, seed=2, params=params)
    monkeypatch.setattr(engine_module, "NARROW_BLOCK", 64)  # several blocks per tensor
    narrow = engine(model, d, data, **options)
    assert narrow.scratch is not None and narrow.scratch.numel() < narrow.layout.size / 4
    assert narrow.flat is narrow.weights and narrow.weights.dtype == torch.bfloat16
    stepped = grid(narrow)
    assert np.array_equal(stepped, anchored(narrow))
    monkeypatch.setattr(Engine, "_narrow", lambda self, net_dtype: False)
    wide = engine(model, d, data, **options)
    assert wide.scratch is None and wide.flat.dtype == options.get("dtype", torch.float32)
    assert np.array_equal(stepped, anchored(wide))
    rel = np.abs(grid(wide) - stepped) / np.maximum(np.abs(stepped), 1e-30)
    assert rel[..., 0].max() < 1e-2  # the old engine's steps: bf16 roundings of float32 sums


@pytest.mark.parametrize(
    "options",
    [{}, {"precision": "bf16", "points_per_batch": 2}, {"dtype": torch.float64}],
)
def test_a_network_in_the_grid_dtype_or_batched_points_keeps_the_flat_buffer(
    options: dict[str, Any],
) -> None:
    model, data = model_and_data("mlp", torch.float32)
    d = lossland.random_directions(model, seed=2)
    e = engine(model, d, data, **options)
    assert e.scratch is None and e.flat.dtype == options.get("dtype", torch.float32)
