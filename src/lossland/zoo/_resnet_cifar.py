"""Li et al.'s CIFAR-10 ResNets: ResNet-56 with and without shortcut connections.

Structure, module names and parameter shapes follow ``cifar10/models/resnet.py`` of
tomgoldstein/loss-landscape (``ResNet_cifar`` with ``BasicBlock`` / ``BasicBlock_noshortcut``),
so ``state_dict``s of their trained ``resnet56`` and ``resnet56_noshort`` models load with
``strict=True``:

* ``conv1`` (3x3, 3→16, no bias) → ``bn1`` → ReLU;
* ``layer1``, ``layer2``, ``layer3``: ``n = (depth - 2) // 6`` basic blocks each with 16, 32
  and 64 channels; the first block of ``layer2`` and ``layer3`` has stride 2;
* a basic block is conv3x3 (no bias) → BN → ReLU → conv3x3 (no bias) → BN, plus the
  shortcut, then ReLU. The shortcut is the identity (no parameters) where the shape is kept,
  and a 1x1 strided convolution (no bias) followed by BN (``shortcut.0``, ``shortcut.1``)
  where it changes. Without shortcuts the blocks have no ``shortcut`` module at all;
* 8x8 average pooling (the 32x32 input is 8x8 after two stride-2 stages) → ``linear``
  (64 → classes, with bias).

Weights use PyTorch's default initialisation, as in their code. Inputs must be 32x32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lossland.errors import LosslandError, arg

__all__ = ["BasicBlock", "CifarResNet", "resnet56", "resnet56_noshort"]

STAGE_WIDTHS: tuple[int, int, int] = (16, 32, 64)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN pairs with a residual connection (or none, with ``shortcut=False``)."""

    shortcut: nn.Module | None

    def __init__(self, in_planes: int, planes: int, *, stride: int = 1, shortcut: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if not shortcut:
            self.shortcut = None  # a plain attribute: no module, no state_dict entries
        elif stride != 1 or in_planes != planes:
            # Li et al.'s projection shortcut ("option B"); keys shortcut.0.* and shortcut.1.*.
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    """A CIFAR ResNet of depth ``6n + 2`` (Li et al.'s ``ResNet_cifar``)."""

    def __init__(self, depth: int, *, shortcut: bool = True, num_classes: int = 10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise LosslandError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1, got {depth}")
        if num_classes < 1:
            raise LosslandError(f"{arg('num_classes')} must be at least 1, got {num_classes}")
        blocks = (depth - 2) // 6
        self.depth = depth
        self.conv1 = nn.Conv2d(3, STAGE_WIDTHS[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        in_planes = STAGE_WIDTHS[0]
        stages: list[nn.Sequential] = []
        for index, planes in enumerate(STAGE_WIDTHS):
            first_stride = 1 if index == 0 else 2
            stage = [
                BasicBlock(
                    in_planes if b == 0 else planes,
                    planes,
                    stride=first_stride if b == 0 else 1,
                    shortcut=shortcut,
                )
                for b in range(blocks)
            ]
            stages.append(nn.Sequential(*stage))
            in_planes = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(STAGE_WIDTHS[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, 8)
        logits: torch.Tensor = self.linear(out.flatten(1))
        return logits


def resnet56(*, num_classes: int = 10) -> CifarResNet:
    """ResNet-56 with shortcuts (Li et al.'s ``ResNet56``): 855,770 parameters for 10 classes."""
    return CifarResNet(56, shortcut=True, num_classes=num_classes)


def resnet56_noshort(*, num_classes: int = 10) -> CifarResNet:
    """ResNet-56 without shortcuts (``ResNet56_noshort``): 853,018 parameters for 10 classes."""
    return CifarResNet(56, shortcut=False, num_classes=num_classes)
