"""Per-layer landscapes in one call (``params_per_layer``): one surface per block stacked along a
layers axis; each equals its own ``surface(params=block)`` run; labels round-trip; resume after
an interruption; bad specs refused in one line; the figure, ``info`` and ``describe``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import lossland
from helpers import assert_one_line, run_cli, torch_threads
from lossland.errors import LosslandError
from lossland.io import SeedStack, Surface
from lossland.run import Interrupted, surface
from lossland.run._layers import blocks
from lossland.show import layers_figure

GRID: dict[str, Any] = {"x": "-1:1:5", "y": "-1:1:4", "progress": False, "device": "cpu"}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)
    ).eval()


def pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)


def tiny_gpt2(layers: int = 3) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=layers,
        n_embd=16,
        n_head=2,
        vocab_size=31,
        n_positions=12,
        attn_implementation="eager",
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(config).eval()


def tokens() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 31, (4, 8), generator=g)
    return [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}]


# --- each block's surface is its own run -------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "params", "names", "moved"),
    [
        ("auto", None, ["0", "2", "4"], [["0.weight", "0.bias"], ["2.weight", "2.bias"]]),
        (["4", "0.weight", "2.*"], None, ["4", "0.weight", "2.*"], [["4.weight", "4.bias"]]),
        ("auto", "*.weight", ["0", "2", "4"], [["0.weight"], ["2.weight"]]),
        ("2", None, ["2"], [["2.weight", "2.bias"]]),
    ],
)
def test_every_block_equals_its_own_subset_run(spec, params, names, moved, tmp_path):
    model, data = mlp(), pair()
    out = tmp_path / "layers.h5"
    s = surface(model, data, params_per_layer=spec, params=params, out=out, **GRID)
    assert s.stack is not None and s.stack.axis == "layers" and list(s.stack.layers) == names
    assert s.stack.loss.shape == (len(names), 4, 5) and s.stack.seeds == ()
    for k, expected in enumerate(moved):
        assert s.stack.attrs[k]["params"] == expected  # only the block's tensors moved
    for k, _ in enumerate(names):
        chosen = s.stack.attrs[k]["params"]
        alone = surface(model, data, params=chosen, **GRID)
        np.testing.assert_allclose(s.stack.loss[k], alone.loss, rtol=1e-6)
        np.testing.assert_allclose(s.stack.acc[k], alone.acc, rtol=1e-6)
    np.testing.assert_array_equal(s.loss, s.stack.loss[0])  # the file's own surface: block 0
    back = Surface.load(out)
    assert back.stack is not None and back.stack.layers == s.stack.layers
    np.testing.assert_array_equal(back.stack.loss, s.stack.loss)
    assert back.attrs["params_per_layer"] == ([spec] if isinstance(spec, str) else spec)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layers.h5"]  # no block files left


def test_a_transformer_stacks_its_decoder_layers_like_glob_runs():
    model, data = tiny_gpt2(3), tokens()
    grid = {**GRID, "x": "-1:1:3", "y": "-1:1:3"}
    causal = lossland.presets.causal_lm()
    s = surface(model, data, params_per_layer="auto", evaluator=causal, **grid)
    assert s.stack is not None
    assert s.stack.layers == ("transformer.h.0", "transformer.h.1", "transformer.h.2")
    for k in range(3):
        alone = surface(model, data, params=f"transformer.h.{k}.*", evaluator=causal, **grid)
        np.testing.assert_allclose(s.stack.loss[k], alone.loss, rtol=1e-6)
        assert all(n.startswith(f"transformer.h.{k}.") for n in s.stack.attrs[k]["params"])


def test_a_line_per_block_and_the_figures(tmp_path):
    model, data = mlp(), pair()
    line = surface(model, data, params_per_layer="auto", x="-1:1:7", progress=False)
    assert line.stack is not None and line.stack.loss.shape == (3, 7)
    fig = layers_figure(line, log=True)
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 3
    plane = surface(model, data, params_per_layer="auto", out=tmp_path / "p.h5", **GRID)
    fig = layers_figure(plane)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["0", "2", "4", "loss"]  # and the colour bar
    written = lossland.plot(tmp_path / "p.h5", tmp_path / "figs", format="png")
    assert tmp_path / "figs" / "p_layers.png" in written
    assert not any("seeds" in f.name for f in written)
    with pytest.raises(LosslandError, match="no stack of layers"):
        layers_figure(surface(model, data, **GRID))


def test_describe_and_info_show_every_block(tmp_path, capsys):
    model, data = mlp(), pair()
    out = tmp_path / "l.h5"
    surface(model, data, params_per_layer="auto", out=out, **GRID)
    text = lossland.describe(Surface.load(out))
    assert "3 layers, each with directions on that block alone:" in text
    for name in ("0", "2", "4"):
        assert f"\n  {name} (2 tensors): loss " in text
    code, stdout, err = run_cli(["info", out], capsys)
    assert code == 0, err
    assert "3 layers, each with directions" in stdout and "\n4 topology: " in stdout


# --- resume --------------------------------------------------------------------------------------


class Countdown(nn.Module):
    """Wraps a model; its forward raises KeyboardInterrupt after ``calls`` forwards. Counted in
    a closure's cell (``left()`` reads it): lossland puts a model's own state back after every
    point."""

    def __init__(self, inner: nn.Module, calls: int) -> None:
        super().__init__()
        self.inner = inner
        budget = [calls]

        def spend() -> bool:
            budget[0] -= 1
            return budget[0] == -1

        self.spend, self.left = spend, lambda: budget[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spend():
            raise KeyboardInterrupt
        out: torch.Tensor = self.inner(x)
        return out


def test_an_interrupted_stack_resumes_at_the_block_and_point_it_reached(tmp_path):
    model, data = mlp(), pair()
    out = tmp_path / "l.h5"
    calm = Countdown(model, 10**9)
    reference = surface(calm, data, params_per_layer="auto", **GRID)
    first = Countdown(model, 10**9)  # the forwards of block 0's whole run
    surface(first, data, params=reference.stack.attrs[0]["params"], **GRID)  # type: ignore[union-attr]
    block0 = 10**9 - first.left()
    # 7 forwards into block 1: its first point runs twice (the suffix cache's check), 6 done
    with pytest.raises(Interrupted, match=r"6 of 20 points saved in .*\.l\.h5\.layer1\.h5"):
        surface(
            Countdown(model, block0 + 7),
            data,
            params_per_layer="auto",
            out=out,
            checkpoint_every=1e9,
            **GRID,
        )
    assert not out.exists()  # the stack is written once every block is done
    resumed = surface(calm, data, params_per_layer="auto", out=out, **GRID)
    assert resumed.stack is not None
    assert [a["points_computed"] for a in resumed.stack.attrs] == [0, 14, 20]
    np.testing.assert_allclose(resumed.stack.loss, reference.stack.loss, rtol=1e-6)  # type: ignore[union-attr]
    again = surface(calm, data, params_per_layer="auto", out=out, **GRID)
    assert [a["points_computed"] for a in again.stack.attrs] == [0, 0, 0]  # type: ignore[union-attr]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.h5"]


# --- refusals ----------------------------------------------------------------------------------


REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"params_per_layer": ["nothing"]}, "'nothing' names none of the model's 6 parameters"),
    ({"params_per_layer": ["1"]}, "'1' names none"),  # a ReLU: no tensor
    ({"params_per_layer": ["0", "0"]}, "names block '0' twice"),
    ({"params_per_layer": ["auto", "0"]}, "'auto' finds the blocks itself"),
    ({"params_per_layer": [""]}, "takes 'auto' or module names"),
    ({"params_per_layer": [3]}, "takes 'auto' or module names"),
    ({"params_per_layer": "auto", "seeds": 2}, "a file holds one stack"),
    ({"params_per_layer": "0", "params": "2.*"}, "'0' names none of the model's 2 parameters"),
    ({"params_per_layer": "auto", "params": "nothing*"}, "match none of the model's"),
]


@pytest.mark.parametrize(("keywords", "message"), REFUSALS)
def test_bad_layer_specs_are_refused_in_one_line(keywords, message, tmp_path):
    with pytest.raises(LosslandError) as info:
        surface(mlp(), pair(), out=tmp_path / "l.h5", **GRID, **keywords)
    assert message in str(info.value)
    assert_one_line(str(info.value))
    assert not any(tmp_path.iterdir())  # refused before any file


def test_no_stack_given_directions_and_another_stack_are_refused(tmp_path):
    model, data = mlp(), pair()
    with pytest.raises(LosslandError, match=r"found no nn\.Sequential or nn\.ModuleList") as info:
        surface(nn.Linear(6, 3), data, params_per_layer="auto", **GRID)
    assert_one_line(str(info.value))
    given = lossland.random_directions(model, seed=3)
    with pytest.raises(LosslandError, match="drop directions"):
        surface(model, data, params_per_layer="auto", directions=given, **GRID)
    out = tmp_path / "l.h5"
    surface(model, data, params_per_layer=["0", "2"], out=out, **GRID)
    with pytest.raises(LosslandError, match=r"holds layers \['0', '2'\], this run layers"):
        surface(model, data, params_per_layer="auto", out=out, **GRID)
    with pytest.raises(LosslandError, match="holds layers"):
        surface(model, data, seeds=2, out=out, **GRID)
    with pytest.raises(LosslandError, match="holds one surface"):
        plain = tmp_path / "plain.h5"
        surface(model, data, out=plain, **GRID)
        surface(model, data, params_per_layer="auto", out=plain, **GRID)


def test_blocks_of_a_model_without_blocks_named():
    """The stack with the most children holding moving tensors wins; children without any
    (activations) are not blocks."""
    inner = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.ModuleList([inner, inner]))
    found = blocks(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)), "auto")
    assert [name for name, _ in found] == ["0", "2"]
    normed = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 4))
    assert [name for name, _ in blocks(normed, "auto")] == ["0", "2"]  # 1-D only: stays
    assert [name for name, _ in blocks(normed, "auto", ignore="none")] == ["0", "1", "2"]
    assert [name for name, _ in blocks(model, "auto")] == ["0", "2"]  # ties: the outermost
    deep = nn.Sequential(nn.Linear(4, 4), nn.Sequential(*[nn.Linear(4, 4) for _ in range(3)]))
    assert [name for name, _ in blocks(deep, "auto")] == ["1.0", "1.1", "1.2"]


# --- the file ------------------------------------------------------------------------------------


def test_a_layer_stack_round_trips_and_malformed_labels_are_refused(tmp_path):
    import h5py

    s = Surface.empty(np.linspace(-1, 1, 3), None, split="train")
    s.store(Ellipsis, {"loss": np.ones(3), "acc": np.ones(3), "loss_sem": np.zeros(3)})
    values = {"loss": np.ones((2, 3)), "acc": np.ones((2, 3)), "loss_sem": np.zeros((2, 3))}
    names = ("blocks.0", "odd name\nwith a newline")
    stack = SeedStack.of((), values, np.ones((2, 3), bool), ({}, {}), layers=names)
    path = replace(s, stack=stack).save(tmp_path / "s.h5")
    assert Surface.load(path).stack.layers == names  # type: ignore[union-attr]
    with h5py.File(path, "a") as f:
        f["layers"].attrs["layers"] = '["a", "a"]'
    with pytest.raises(LosslandError, match="malformed layer attributes") as info:
        Surface.load(path)
    assert_one_line(str(info.value))
    with pytest.raises(LosslandError, match="seeds or by layers"):
        SeedStack.of((1, 2), values, np.ones((2, 3), bool), ({}, {}), layers=names)


def test_the_cli_computes_plots_and_describes_a_stack_of_layers(tmp_path, capsys):
    from faultkit import surface_args, write_checkpoint, write_data

    data = write_data(tmp_path / "data", n=16)
    ckpt = write_checkpoint(tmp_path / "m.safetensors")
    out = tmp_path / "s.h5"
    args = surface_args(ckpt, out, data, "--params-per-layer", "auto", grid="-1:1:3")
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert "layers, each with directions on that block alone" in stdout  # the summary
    loaded = Surface.load(out)
    assert loaded.stack is not None and len(loaded.stack.layers) >= 2
    code, stdout, _ = run_cli(["info", out], capsys)
    assert code == 0 and "layers, each with directions on that block alone" in stdout
    code, _, err = run_cli(["plot", out], capsys)
    assert code == 0, err
    assert (tmp_path / "s_layers.png").exists()
    for extra, named in (
        (["--seeds", "2"], "--seeds"),
        (["--to", str(ckpt)], "--to"),
        (["--save-directions", str(tmp_path / "d.safetensors")], "--save-directions"),
    ):
        code, _, err = run_cli([*args, *extra, "--overwrite"], capsys)
        assert code == 2 and "--params-per-layer" in err and named in err, err
        assert_one_line(err.strip().splitlines()[-1])
    assert Surface.load(out).stack is not None  # the refused runs left the file as it was
