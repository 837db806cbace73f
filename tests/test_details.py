"""Small things researchers expected (issue 21 §3): accuracies printed with "%", no seed menu
for one seed, a short repr of the inline viewer, filter normalization of GPT-2's Conv1D, and
every seed's basins in ``info``."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lossland
from helpers import run_cli
from lossland.analysis import measure_lines, seed_surface, surface_topology
from lossland.io import SeedStack, Surface
from lossland.show import write_viewer
from lossland.show.viewer import _seed_grids


def _line(acc: float) -> Surface:
    t = np.linspace(0.0, 1.0, 11)
    s = Surface.empty(t, None, split="train", attrs={"directions_kind": "models"})
    loss = 0.5 + np.sin(np.pi * t)
    s.store(slice(None), {"loss": loss, "acc": acc - 10 * t, "loss_sem": np.zeros_like(t)})
    return s


@pytest.mark.parametrize("acc", [87.5, 100.0, 12.25])
def test_the_barrier_line_prints_its_accuracy_in_percent(acc: float) -> None:
    line = next(t for t in measure_lines(_line(acc)) if t.startswith("barrier"))
    assert f"min accuracy {acc - 10:.2f} %" in line


def _bowl(scale: float = 1.0) -> np.ndarray:
    g = np.linspace(-1, 1, 5)
    return scale * (1 + g[None, :] ** 2 + 0.5 * (g[:, None] - 0.5) ** 2)


def _stack(seeds: tuple[int, ...]) -> Surface:
    g = np.linspace(-1, 1, 5)
    s = Surface.empty(g, g, split="train")
    s.store(
        slice(None),
        {"loss": _bowl(), "acc": np.full((5, 5), 50.0), "loss_sem": np.full((5, 5), 0.01)},
    )
    loss = np.stack([_bowl(1 + 0.1 * k) for k in range(len(seeds))])
    stack = SeedStack(
        seeds,
        loss,
        np.full(loss.shape, 50.0),
        np.full(loss.shape, 0.01),
        np.ones(loss.shape, dtype=bool),
        tuple({} for _ in seeds),
    )
    return replace(s, stack=stack)


@pytest.mark.parametrize(("seeds", "menu"), [((3,), False), ((0, 1), True), ((4, 5, 6), True)])
def test_the_viewer_has_a_seed_menu_only_for_several_seeds(seeds: tuple[int, ...], menu: bool):
    grids = _seed_grids(_stack(seeds))
    assert (grids is not None) == menu
    if grids is not None:
        assert [g["seed"] for g in grids] == list(seeds)


def test_the_inline_viewers_repr_is_short_and_its_html_the_page() -> None:
    page = write_viewer(_stack((0, 1)))
    assert len(repr(page)) < 120 and f"{len(page.html):,}" in repr(page)
    assert len(page._repr_html_()) > len(page.html) > 10_000


def test_filter_normalization_of_gpt2_conv1d_rescales_its_input_rows() -> None:
    """Conv1D stores its weight input × output; filter norm rescales slices along dim 0."""
    transformers = pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    model = nn.Sequential(Conv1D(6, 4), nn.Tanh(), nn.Linear(6, 3))  # Conv1D(nf=out, nx=in)
    assert model[0].weight.shape == (4, 6) and transformers is not None
    d = lossland.random_directions(model, seed=2, norm="filter")
    for name in ("0.weight", "2.weight"):
        w, dx = dict(model.named_parameters())[name].detach(), d.x[name]
        np.testing.assert_allclose(dx.norm(dim=1), w.norm(dim=1), rtol=1e-5)  # per row
    # Not per output neuron of the Conv1D (its columns):
    w, dx = model[0].weight.detach(), d.x["0.weight"]
    assert not torch.allclose(dx.norm(dim=0), w.norm(dim=0), rtol=1e-3)


def test_info_prints_every_seeds_basins(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    s = _stack((7, 8, 9))
    path = tmp_path / "stack.h5"
    s.save(path)
    code, out, err = run_cli(["info", str(path)], capsys)
    assert code == 0, err
    lines = [line for line in out.splitlines() if re.match(r"seed \d+ topology:", line)]
    assert [line.split()[1] for line in lines] == ["7", "8", "9"]
    for k, line in enumerate(lines):
        found = surface_topology(seed_surface(s, k), stored=False)
        assert found is not None
        assert f"global {found.minima[0].loss:.4g}" in line
