"""timm models (built from configs, random init, no downloads) through the default contract.

timm needs torchvision, whose registry build does not import beside the CPU torch of the main
test environment, so `make test` runs this file in its own environment (`.venv-timm`, torch
with its matching torchvision); elsewhere it is skipped unless LOSSLAND_REQUIRE_TIMM is set.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lossland

if os.environ.get("LOSSLAND_REQUIRE_TIMM"):
    import timm
else:
    timm = pytest.importorskip("timm")


def at(model: nn.Module, d: lossland.Directions, a: float, b: float) -> nn.Module:
    net = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.add_(d.x[name], alpha=a).add_(d.y[name], alpha=b)  # type: ignore[index]
    return net


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 2}),
        ("convnext_atto", {}),
    ],
)
def test_timm_classifier_equals_a_direct_computation(name, options):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=5, **options).eval()
    x, y = torch.randn(12, 3, 32, 32), torch.randint(0, 5, (12,))
    d = lossland.random_directions(model, seed=1, ndim=2)
    s = lossland.surface(
        model,
        torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=5),
        x="-0.5:0.5:3",
        y="-0.5:0.5:3",
        directions=d,
        evaluator=lossland.presets.image_classification(),
        progress=False,
        device="cpu",
    )
    for i, j in [(0, 0), (1, 1), (2, 1)]:
        with torch.no_grad():
            expected = float(F.cross_entropy(at(model, d, s.x[j], s.y[i])(x), y))
        assert s.loss[i, j] == pytest.approx(expected, rel=1e-5)
