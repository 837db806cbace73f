"""Shared fixtures: tiny models and data, so the suite stays fast and never downloads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lossland.zoo import write_idx

# The suite never reaches the network: Hugging Face libraries stay offline (models are built
# from configs, data sets from dicts) and W&B logs to a local folder. Set before any test
# imports them, and inherited by the subprocesses tests start.
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
}.items():
    os.environ.setdefault(_name, _value)


def tiny_net() -> nn.Module:
    """Conv → ReLU → BN → pool → linear: every kind of tensor the engine must handle."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(4),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 8),
        nn.ReLU(),
        nn.Linear(8, 3),
    )


@pytest.fixture
def tiny_model() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = tiny_net()
        model.train()
        with torch.no_grad():  # non-trivial BatchNorm running statistics
            for _ in range(3):
                model(torch.randn(16, 1, 8, 8) * 2 + 0.5)
    return model.eval()


@pytest.fixture
def tiny_data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(40, 1, 8, 8, generator=generator), torch.randint(
        0, 3, (40,), generator=generator
    )


def write_fashion_like(folder: Path, *, train: int = 300, test: int = 100, seed: int = 0) -> Path:
    """Four IDX files of a learnable toy problem: each class lights a different 7×7 block."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, count).astype(np.uint8)
        images = rng.integers(0, 60, (count, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            r, c = divmod(int(label), 4)
            images[i, r * 7 : r * 7 + 7, c * 7 : c * 7 + 7] += 180
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fashion_like(tmp_path_factory.mktemp("fashion"))


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No LOSSLAND_DATA, a private cache, and no network: nothing can leak between tests."""
    monkeypatch.delenv("LOSSLAND_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def shared_fashion_mnist() -> Path | None:
    """The real Fashion-MNIST copy beside the checkout, when present."""
    candidates = [os.environ.get("LOSSLAND_TEST_FMNIST")]
    candidates.append(str(Path(__file__).resolve().parents[1].parent / "shared/data/fashion-mnist"))
    for candidate in candidates:
        if candidate and (Path(candidate) / "train-labels-idx1-ubyte.gz").exists():
            return Path(candidate)
    return None
