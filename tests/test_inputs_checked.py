"""Every input is checked where it enters: surface options and ranges, data, checkpoints and the
other commands' arguments are refused in one ``lossland: error:`` line (exit 2) that names the
problem and the fix, before anything is read or written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lossland
from faultkit import SPEC, env, lossland_lines, torchrun
from helpers import torch_threads
from trustkit import (
    PRECIOUS,
    api_fails,
    fails,
    hessian_cmd,
    interpolate_cmd,
    line_cmd,
    make_world,
    snapshot,
    surface_cmd,
    train_cmd,
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_world(tmp_path_factory.mktemp("trust"))


# --- every input is checked where it enters ---------------------------------------------

# Surface options and ranges: (extra flags, what the error says); nothing is written.
BAD_SURFACE_INPUTS: dict[str, tuple[list[str], str]] = {
    "x NaN end": (["--x", "nan:1:3"], "finite ends"),
    "x 20-digit num": (["--x", "-1:1:12345678901234567890"], "points"),
    "x a million and one": (["--x", "-1:1:1000001"], "per axis"),
    "x auto too many": (["--x", "auto:2000000", "--directions", "hessian"], "per axis"),
    "x min > max": (["--x", "1:-1:3"], "min > max"),
    "y duplicates": (["--y", "0:5e-324:3"], "too narrow"),
    "checkpoint every negative": (["--checkpoint-every", "-1"], "--checkpoint-every"),
    "checkpoint every inf": (["--checkpoint-every", "inf"], "--checkpoint-every"),
    "seed 2**70": (["--seed", str(2**70)], "--seed"),
    "seed negative": (["--seed=-1"], "--seed"),
    "batch size 0": (["--batch-size", "0"], "--batch-size"),
    "points per batch 0": (["--points-per-batch", "0"], "--points-per-batch"),
    "points per batch 1e6": (["--points-per-batch", "1000000"], "--points-per-batch"),
    "save-directions with --to": (
        ["--to", "CKPT", "--save-directions", "d.safetensors"],
        "drop --save-directions",
    ),
}


@pytest.mark.parametrize("case", list(BAD_SURFACE_INPUTS))
def test_bad_surface_inputs(world, tmp_path, capsys, case):
    extra, expected = BAD_SURFACE_INPUTS[case]
    extra = [str(world["ckpt"]) if e == "CKPT" else e for e in extra]
    fails(capsys, [*surface_cmd(world, world["ckpt"], tmp_path / "s.h5"), *extra], expected)
    assert not list(tmp_path.iterdir())


BAD_TRAIN_INPUTS: dict[str, tuple[list[str], str]] = {
    "beta1 2": (["--beta1", "2"], "--beta1"),
    "beta2 1": (["--beta2", "1"], "--beta2"),
    "momentum -1": (["--optimizer", "sgd", "--momentum=-1"], "--momentum"),
    "lr NaN": (["--lr", "nan"], "--lr"),
    "lr inf": (["--lr", "inf"], "--lr"),
    "seed 2**70": (["--seed", str(2**70)], "--seed"),
    "epochs 0": (["--epochs", "0"], "--epochs"),
    "trajectory dir a file": (["--save-every", "1", "--trajectory-dir", "FILE"], "is a file"),
    "trajectory dir under a file": (
        ["--save-every", "1", "--trajectory-dir", "FILE/run"],
        "cannot be made",
    ),
    "lr that diverges": (
        ["--optimizer", "sgd", "--lr", "1e30", "--save-every", "1", "--epochs", "12"],
        "diverged",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TRAIN_INPUTS))
def test_bad_train_inputs_save_nothing(world, tmp_path, capsys, case):
    extra, expected = BAD_TRAIN_INPUTS[case]
    file = tmp_path / "file"
    file.write_bytes(PRECIOUS)
    extra = [e.replace("FILE", str(file)) for e in extra]
    fails(capsys, train_cmd(world, tmp_path / "m.safetensors", *extra), expected)
    assert snapshot(tmp_path) == {str(file): PRECIOUS}, "nothing is saved"


BAD_HESSIAN_INPUTS: dict[str, tuple[list[str], str]] = {
    "k 0": (["--k", "0"], "--k"),
    "k larger than the model": (["--k", "100000000"], "parameters"),
    "probes -1": (["--probes=-1"], "--probes"),
    "iterations 0": (["--iterations", "0"], "--iterations"),
    "tol NaN": (["--tol", "nan"], "--tol"),
    "tol negative": (["--tol=-1"], "--tol"),
    "seed negative": (["--seed=-1"], "--seed"),
    "seed 2**70": (["--seed", str(2**70)], "--seed"),
    "batch size 0": (["--batch-size", "0"], "--batch-size"),
    "density steps 0": (["--density", "--steps", "0"], "--steps"),
    "density probes 0": (["--density", "--probes-density", "0"], "--probes-density"),
}


@pytest.mark.parametrize("case", list(BAD_HESSIAN_INPUTS))
def test_bad_hessian_inputs_save_nothing(world, tmp_path, capsys, case):
    extra, expected = BAD_HESSIAN_INPUTS[case]
    out = ["--save-directions", tmp_path / "d.safetensors"]
    out += ["-o", tmp_path / "h.json"] if "--density" in extra else []  # -o is the density's
    fails(capsys, hessian_cmd(world, world["ckpt"], *extra, *out), expected)
    assert not list(tmp_path.iterdir())


BAD_SHOW_INPUTS: dict[str, tuple[list[str], str]] = {
    "plot dpi 0": (["plot", "GOOD", "--dpi", "0"], "--dpi"),
    "plot dpi 100000": (["plot", "GOOD", "--dpi", "100000"], "--dpi"),
    "plot levels 1": (["plot", "GOOD", "--levels", "1"], "--levels"),
    "plot zmax NaN": (["plot", "GOOD", "--zmax", "nan"], "--zmax"),
    "view port 99999": (["view", "GOOD", "--port", "99999"], "--port"),
    "view port -1": (["view", "GOOD", "--port=-1"], "--port"),
    "path steps 10^8": (["path", "GOOD", "--start", "0,0", "--steps", "100000000"], "--steps"),
    "path steps -1": (["path", "GOOD", "--start", "0,0", "--steps=-1"], "--steps"),
    "export zmax inf": (["export", "GOOD", "--format", "vtp", "--zmax", "inf"], "--zmax"),
    "demo grid 1": (["demo", "--grid", "1"], "--grid"),
}


OUTPUTS = {"plot": "figures", "view": "v.html", "path": "p.csv", "export": "e.vtp", "demo": "demo"}


@pytest.mark.parametrize("case", list(BAD_SHOW_INPUTS))
def test_bad_numbers_of_the_other_commands(world, tmp_path, capsys, case):
    args, expected = BAD_SHOW_INPUTS[case]
    good = tmp_path / "good.h5"
    good.write_bytes(world["good"].read_bytes())
    args = [str(good) if a == "GOOD" else a for a in args]
    fails(capsys, [*args, "-o", tmp_path / OUTPUTS[args[0]]], expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.h5"]


BAD_API_INPUTS: dict[str, tuple[dict[str, Any], str]] = {
    "bn bogus": ({"bn": "bogus"}, "unknown bn"),
    "precision fp8": ({"precision": "fp8"}, "unknown precision"),
    "memory format bogus": ({"memory_format": "bogus"}, "unknown memory_format"),
    "compile a string": ({"compile": "yes"}, "compile is true or false"),
    "orthogonalize a number": ({"orthogonalize": 1}, "orthogonalize is true or false"),
    "offload a string": ({"offload": "no"}, "offload is true or false"),
    "trajectory 3 columns": ({"trajectories": {"run": np.zeros((4, 3))}}, "(T, 2)"),
    "trajectory of strings": ({"trajectories": {"run": [["a", "b"]]}}, "(T, 2)"),
    "trajectory name with a slash": (
        {"trajectories": {"a/b": np.zeros((2, 2))}},
        "trajectory name",
    ),
    "attrs key reserved": ({"attrs": {"format": "x"}}, "reserved"),
    "attrs key empty": ({"attrs": {"": 1}}, "attribute name"),
    "attrs key not a string": ({"attrs": {3: 1}}, "attribute name"),
    "attrs settings a list": ({"attrs": {"settings": [1]}}, "settings ="),
    "attrs circular": ({"attrs": {"loop": (lambda a: a.append(a) or a)([])}}, "not data"),
    "split with a slash": ({"split": "a/b"}, "split name"),
    "coordinates of strings": ({"x": ["a", "b"]}, "coordinates must be numbers"),
    "coordinates decreasing": ({"x": [1.0, 0.0]}, "strictly increasing"),
}


@pytest.mark.parametrize("case", list(BAD_API_INPUTS))
def test_bad_api_inputs_are_refused_at_the_door(tmp_path, case):
    kwargs, expected = BAD_API_INPUTS[case]
    model = lossland.build_model(SPEC)
    data = (torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long))
    call = {"x": "-1:1:3", "y": "-1:1:3", "out": tmp_path / "s.h5", "progress": False, **kwargs}
    api_fails(lambda: lossland.surface(model, data, **call), expected)
    assert not list(tmp_path.iterdir())


# Planes that would draw something false (a constant surface, a line drawn as a plane): the
# CLI case (arguments, given the world and a folder) → what the one-line error says.
def _step(w: dict[str, Path], k: int) -> Path:
    return w["runs"] / f"step_{k:07d}.safetensors"


def _zero_directions(w: dict[str, Path], folder: Path) -> Path:
    from lossland.directions import Directions

    d = Directions.load(Path(f"{w['good']}.directions.safetensors"))
    zero = {k: torch.zeros_like(v) for k, v in d.x.items()}
    return Directions(x=zero, y=d.y).save(folder / "zero.safetensors")


DEGENERATE_CLI_PLANES: dict[str, tuple[Callable[[dict[str, Path], Path], list[Any]], str]] = {
    "--to the same checkpoint": (
        lambda w, t: line_cmd(w, w["ckpt"], t / "s.h5", "--to", w["ckpt"]),
        "same weights",
    ),
    "interpolate A A": (
        lambda w, t: interpolate_cmd(w, w["ckpt"], w["ckpt"], t / "s.h5"),
        "same weights",
    ),
    "interpolate A B B": (
        lambda w, t: [
            "interpolate",
            _step(w, 0),
            *interpolate_cmd(w, _step(w, 1), _step(w, 1), t / "s.h5")[1:],
        ],
        "parallel",
    ),
    "--to B --to B": (
        lambda w, t: surface_cmd(
            w, w["ckpt"], t / "s.h5", "--to", _step(w, 1), "--to", _step(w, 1)
        ),
        "parallel",
    ),
    "a zero directions file": (
        lambda w, t: surface_cmd(w, w["ckpt"], t / "s.h5", "--directions", _zero_directions(w, t)),
        "direction x is zero",
    ),
}


@pytest.mark.parametrize("case", list(DEGENERATE_CLI_PLANES))
def test_degenerate_planes_are_refused(world, tmp_path, capsys, case):
    build, expected = DEGENERATE_CLI_PLANES[case]
    args = build(world, tmp_path)
    before = snapshot(tmp_path)
    fails(capsys, args, expected)
    assert snapshot(tmp_path) == before, "nothing is written"


class _OnlyBiases(torch.nn.Module):
    """Every parameter 1-D: with ignore="biasbn" every direction is zero."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.randn(10))
        self.norm = torch.nn.LayerNorm(10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.flatten(1)[:, :10] + self.bias)


def _zero_linear() -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10, bias=False))
    torch.nn.init.zeros_(model[1].weight)
    return model


def _parallel(model: torch.nn.Module) -> Any:
    from lossland.directions import Directions

    x = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    return Directions(x=x, y={k: -2 * v for k, v in x.items()}, kind="pca", norm="none")


# API case: (model, extra keywords built from it) → what the error says.
DEGENERATE_API_PLANES: dict[str, tuple[Callable[[], torch.nn.Module], Any, str]] = {
    "only 1-D parameters, ignore biasbn": (_OnlyBiases, lambda m: {}, "ignore"),
    "no parameters": (torch.nn.Flatten, lambda m: {}, "no tensors"),
    "zero weights, filter norm": (_zero_linear, lambda m: {"ignore": "none"}, "norm"),
    "parallel directions": (_zero_linear, lambda m: {"directions": _parallel(m)}, "parallel"),
}


@pytest.mark.parametrize("case", list(DEGENERATE_API_PLANES))
def test_degenerate_planes_are_refused_by_the_api(tmp_path, case):
    make, extra, expected = DEGENERATE_API_PLANES[case]
    model = make()
    data = (torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,)))
    call = {"x": "-1:1:3", "y": "-1:1:3", "out": tmp_path / "s.h5", "progress": False}
    api_fails(lambda: lossland.surface(model, data, **call, **extra(model)), expected)
    assert not list(tmp_path.iterdir())
    # The same model draws a true picture where the fix says so: with ignore="none" each 1-D
    # tensor moves along itself (Li et al.), so x = y and only a line is meaningful.
    if case == "only 1-D parameters, ignore biasbn":
        line = {"x": "-1:1:3", "out": None, "progress": False, "ignore": "none"}
        assert np.ptp(lossland.surface(model, data, **line).loss) > 0
        api_fails(lambda: lossland.surface(model, data, **{**line, "y": "-1:1:3"}), "parallel")


# Degenerate surfaces (constant, NaN, inf, nothing evaluated, 1×1, 1×N, a 1-point line, ...)
# in every reader: tests/test_degenerate_surfaces.py.


def _gloo() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_gloo_available()


@pytest.mark.slow
@pytest.mark.skipif(not _gloo(), reason="needs torch.distributed with gloo")
def test_torchrun_prints_a_user_error_once(world, tmp_path):
    args = surface_cmd(world, world["ckpt"], tmp_path / "s.h5", "--x", "-1e308:1e308:3")
    done = torchrun(args, nproc=2, environ=env(), timeout=120)
    assert done.returncode != 0
    lines = lossland_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert "overflows" in lines[0]
