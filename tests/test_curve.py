"""Mode-connecting curves: the curve's arithmetic, training that lowers the loss along it,
resuming after kill -9 equal to a run never stopped, the loss along the curve as a line
surface, the plane with the curve drawn, models projected onto a plane, and the refusals."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from helpers import assert_one_line, run_cli, torch_threads
from lossland.analysis import barrier, comparison
from lossland.compare import (
    curve,
    curve_weights,
    load_curve_file,
    profile,
    straight,
)
from lossland.directions import model_directions
from lossland.errors import LosslandError
from lossland.io import Surface, load_checkpoint, save_checkpoint
from lossland.run import curve_plane, models_plane, projected

TINY = """
import torch
from torch import nn

def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 12), nn.ReLU(), nn.Linear(12, 10))
"""


# The task and the two models, as source: the kill -9 test's child process runs the same code
# without importing this module (and the test suite's imports with it).
TASK = """
def task(n=256, seed=0):
    \"\"\"A small task two seeds solve differently: 8 features, two XORs of signs, XORed.\"\"\"
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, ((x[:, 0] * x[:, 1] > 0) ^ (x[:, 2] * x[:, 3] > 0)).long()


def trained(seed, data):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
        opt = torch.optim.Adam(model.parameters(), lr=0.03)
        for _ in range(300):
            opt.zero_grad()
            nn.functional.cross_entropy(model(data[0]), data[1]).backward()
            opt.step()
    return model
"""
_DEFINED: dict[str, Any] = {"torch": torch, "nn": nn}
exec(TASK, _DEFINED)
task, trained = _DEFINED["task"], _DEFINED["trained"]


@pytest.fixture(scope="module")
def pair() -> tuple[nn.Module, nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    data = task()
    with torch_threads(1):
        return trained(0, data), trained(1, data), data


# --- the curve's arithmetic -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
@pytest.mark.parametrize("bends", [1, 2, 3])
def test_weights_hold_the_ends_and_sum_to_one(kind: Any, bends: int) -> None:
    assert curve_weights(kind, bends, 0.0) == pytest.approx([1.0] + [0.0] * (bends + 1))
    assert curve_weights(kind, bends, 1.0) == pytest.approx([0.0] * (bends + 1) + [1.0])
    for t in np.linspace(0, 1, 13):
        w = curve_weights(kind, bends, float(t))
        assert len(w) == bends + 2 and math.isclose(sum(w), 1.0) and min(w) >= 0
    if kind == "polychain":  # the chain passes through each bend at its knot
        for k in range(1, bends + 1):
            w = curve_weights(kind, bends, k / (bends + 1))
            assert w == pytest.approx([1.0 if j == k else 0.0 for j in range(bends + 2)])


def test_one_bend_bezier_is_the_quadratic() -> None:
    for t in (0.1, 0.5, 0.8):
        assert curve_weights("bezier", 1, t) == pytest.approx([(1 - t) ** 2, 2 * t * (1 - t), t**2])


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
def test_bends_start_on_the_line(pair: Any, kind: Any) -> None:
    """With a learning rate of zero the curve is the straight path (both kinds), and the
    optimizer is the caller's (any optimizer)."""
    a, b, data = pair
    result = curve(a, b, data, kind=kind, bends=2, epochs=1, batch_size=128,
                   make_optimizer=lambda p: torch.optim.SGD(p, lr=0.0))  # fmt: skip
    line = straight(a.state_dict(), b.state_dict())
    for t in (0.0, 0.3, 0.5, 1.0):
        got, want = result.curve.state_at(t), line(t)
        assert all(torch.allclose(got[k], want[k], atol=1e-6) for k in want)
    assert result.curve.record["recipe"]["optimizer"].startswith("custom:")


# --- training -------------------------------------------------------------------------------


def test_training_lowers_the_loss_along_the_curve(pair: Any) -> None:
    """Two models from different seeds: the trained curve's largest loss is well below the
    straight line's, and its barrier is a fraction of the line's."""
    a, b, data = pair
    with torch_threads(1):
        result = curve(a, b, data, epochs=30, batch_size=64, lr=0.01, device="cpu")
        along = profile(a, result.curve, data, points=11)
        line = profile(a, straight(a.state_dict(), b.state_dict()), data, points=11)
    b_curve, b_line = barrier(along), barrier(line)
    assert b_curve is not None and b_line is not None
    assert b_line.height > 1.0, "the two models should be separated by a barrier"
    assert b_curve.max_loss < b_line.max_loss
    assert b_curve.height < 0.5 * b_line.height
    assert along.loss[0] == pytest.approx(line.loss[0]) and along.loss[-1] == pytest.approx(
        line.loss[-1]
    )
    assert np.all(np.isfinite(along.loss_sem)) and np.all(along.loss_sem > 0)
    assert len(result.epoch_losses) == 30 and result.steps == 30 * 4


KILLED = """
import os, signal, torch
from torch import nn
import lossland.compare._curve as c
exec({task!r})
saves = [0]
original = c.save_curve
def save_then_die(*args, **kwargs):
    original(*args, **kwargs)
    saves[0] += 1
    if saves[0] == {after}:
        os.kill(os.getpid(), signal.SIGKILL)
c.save_curve = save_then_die
torch.set_num_threads(1)
data = task()
a, b = trained(0, data), trained(1, data)
c.curve(a, b, data, kind={kind!r}, bends=2, epochs=3, batch_size=64, save_every=3,
        lr=0.01, out={out!r}, device="cpu")
print("not killed")
"""


@pytest.mark.parametrize(("kind", "after"), [("bezier", 2), ("polychain", 3)])
def test_kill_9_then_resume_equals_a_run_never_stopped(
    pair: Any, tmp_path: Path, kind: str, after: int
) -> None:
    a, b, data = pair
    out = tmp_path / "curve.safetensors"
    script = KILLED.format(task=TASK, after=after, kind=kind, out=str(out))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -9, done.stderr
    _, record = load_checkpoint(out).state_dict, load_checkpoint(out).metadata["curve"]
    assert record["step"] == 3 * after and not record["finished"]
    keywords: dict[str, Any] = dict(
        kind=kind, bends=2, epochs=3, batch_size=64, save_every=3, lr=0.01, device="cpu"
    )
    with torch_threads(1):
        resumed = curve(a, b, data, out=out, **keywords)
        whole = curve(a, b, data, out=tmp_path / "whole.safetensors", **keywords)
    assert resumed.steps_run == 12 - 3 * after and resumed.steps == whole.steps == 12
    for got, want in zip(resumed.curve.bends, whole.curve.bends, strict=True):
        assert all(torch.equal(got[k], want[k]) for k in want)
    assert resumed.epoch_losses == whole.epoch_losses
    again = curve(a, b, data, out=out, **keywords)  # finished: nothing to do
    assert again.steps_run == 0 and load_checkpoint(out).metadata["curve"]["finished"]


def test_a_curve_file_reloads_between_its_own_models_only(pair: Any, tmp_path: Path) -> None:
    a, b, data = pair
    out = tmp_path / "c.safetensors"
    result = curve(a, b, data, epochs=1, batch_size=128, out=out)
    loaded = load_curve_file(out, a.state_dict(), b.state_dict())
    assert loaded.kind == "bezier" and len(loaded.bends) == 1
    assert all(torch.equal(loaded.bends[0][k], result.curve.bends[0][k]) for k in loaded.bends[0])
    with pytest.raises(LosslandError, match="other models") as info:
        load_curve_file(out, b.state_dict(), a.state_dict())
    assert_one_line(str(info.value))


# --- refusals -------------------------------------------------------------------------------


def _refusals(tmp_path: Path, a: nn.Module, b: nn.Module, data: Any) -> list[tuple[Any, str]]:
    other = tmp_path / "other.safetensors"
    curve(a, b, data, epochs=1, batch_size=128, out=other)
    plain = save_checkpoint(a, tmp_path / "plain.safetensors")
    wide = nn.Sequential(nn.Linear(8, 17), nn.ReLU(), nn.Linear(17, 2))
    return [
        (lambda: curve(a, b, data, epochs=2, batch_size=128, out=other), "another recipe"),
        (lambda: curve(a, b, data, epochs=1, batch_size=128, out=plain), "not a curve file"),
        (lambda: curve(a, wide, data, epochs=1), "different models"),
        (lambda: curve(a, b, data, bends=0), "bends"),
        (lambda: curve(a, b, data, kind="spline"), "kind"),
        (lambda: curve(a, b, data, lr=-1.0), "lr"),
        (lambda: curve(a.state_dict(), b, data), "torch.nn.Module"),
        (lambda: curve(a, b, data, out=tmp_path / "missing" / "c.safetensors"), "does not exist"),
        (lambda: profile(a, straight(a.state_dict(), b.state_dict()), data, points=1), "points"),
        (lambda: load_curve_file(plain, a.state_dict(), b.state_dict()), "not a curve file"),
    ]


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "text",
        {"t": [0, 1]},
        {"t": [0, 1], "paths": "no"},
        {"t": [0], "paths": []},
        {"t": [0, 1], "paths": [{"name": 3, "loss": [1, 2], "loss_sem": [0, 0], "acc": [0, 0]}]},
        {"t": [0, 1], "paths": [{"name": "p", "loss": [1], "loss_sem": [0], "acc": [0]}]},
        {
            "t": [0, 1],
            "paths": [{"name": "p", "loss": [1, None], "loss_sem": [0, 0], "acc": [0, 0]}],
        },
        {
            "t": [0, 1],
            "paths": [{"name": "p", "loss": [1, True], "loss_sem": [0, 0], "acc": [0, 0]}],
        },
    ],
)
def test_a_malformed_comparison_is_left_out(raw: Any) -> None:
    """The attribute is a file's data: what is not well formed is not drawn nor printed."""
    assert comparison({"comparison": raw}) == []


def test_a_comparison_reads_back_with_its_barriers() -> None:
    raw = {"t": [0, 0.5, 1], "paths": [
        {"name": "p", "loss": [1.0, 3.0, 2.0], "loss_sem": [0.1, 0.3, 0.4], "acc": [None] * 3},
        {"name": "flat", "loss": [2.0, 1.0, 1.0], "loss_sem": [0.1, 0.1, 0.1], "acc": [1, 2, 3]},
    ]}  # fmt: skip
    p, flat = comparison({"comparison": raw})
    assert p.barrier == pytest.approx(1.0) and p.barrier_sem == pytest.approx(0.5)
    assert p.at == 0.5 and np.isnan(p.acc).all()
    assert flat.barrier == 0.0 and flat.barrier_sem == 0.0


def test_refusals_are_one_line_and_keep_the_files(pair: Any, tmp_path: Path) -> None:
    a, b, data = pair
    cases = _refusals(tmp_path, a, b, data)
    kept = {p: p.read_bytes() for p in tmp_path.glob("*.safetensors")}
    for call, words in cases:
        with pytest.raises(LosslandError) as info:
            call()
        assert words in str(info.value), (words, str(info.value))
        assert_one_line(str(info.value))
    assert {p: p.read_bytes() for p in tmp_path.glob("*.safetensors")} == kept


# --- planes ---------------------------------------------------------------------------------


def test_projected_models_land_where_they_were_mixed(pair: Any) -> None:
    a, b, _ = pair
    c = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)).state_dict()
    sa, sb = a.state_dict(), b.state_dict()
    directions = model_directions(sa, sb, c)
    mixes = {"A": (0, 0), "B": (1, 0), "C": (0, 1), "mix": (0.3, 0.4), "out": (-0.5, 1.5)}
    states = {
        name: {k: sa[k] + x * (sb[k] - sa[k]) + y * (c[k] - sa[k]) for k in sa}
        for name, (x, y) in mixes.items()
    }
    found = projected(directions, states)
    for name, xy in mixes.items():
        assert found[name][0] == pytest.approx(xy, abs=1e-6)


def test_curve_plane_draws_the_line_and_the_curve(pair: Any, tmp_path: Path) -> None:
    a, b, data = pair
    with torch_threads(1):
        result = curve(a, b, data, epochs=2, batch_size=64, lr=0.01)
        plane = curve_plane(a, result.curve, data, points=5, out=tmp_path / "p.h5", progress=False)
    assert set(plane.trajectories) == {"straight line", "bezier curve"}
    path = plane.trajectories["bezier curve"]
    assert path[0] == pytest.approx([0, 0], abs=1e-6) and path[-1] == pytest.approx(
        [1, 0], abs=1e-6
    )
    mid = path[len(path) // 2]
    # φ(½) − A = x·(B − A) + v, v ⟂ (B − A): at (x, 1) on the plane's axes
    u = torch.cat([(b.state_dict()[k] - a.state_dict()[k]).flatten() for k in a.state_dict()])
    w = torch.cat(
        [(result.curve.state_at(0.5)[k] - a.state_dict()[k]).flatten() for k in a.state_dict()]
    )
    assert mid == pytest.approx([float(u @ w / (u @ u)), 1.0], rel=1e-4)
    assert np.all(path[1:-1, 1] > 0)  # the curve bends away from the line
    assert plane.attrs["curve"] == {"kind": "bezier", "bends": 1}
    assert Surface.load(tmp_path / "p.h5").done.all()


def test_models_plane_labels_each_projected_model(pair: Any) -> None:
    a, b, data = pair
    c = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)).state_dict()
    sa, sb = a.state_dict(), b.state_dict()
    mean = {k: (sa[k] + sb[k]) / 2 for k in sa}
    plane = models_plane(a, [sa, sb, c], {"A": sa, "B": sb, "average": mean}, data, points=5,
                         progress=False)  # fmt: skip
    assert set(plane.trajectories) == {"A", "B", "average"}
    assert plane.trajectories["average"][0] == pytest.approx([0.5, 0.0], abs=1e-6)
    assert plane.attrs["projected"] == ["A", "B", "average"]


# --- the command ----------------------------------------------------------------------------


def test_curve_command_writes_resumes_and_refuses(
    tmp_path: Path, fashion_dir: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    (tmp_path / "tinycurve.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 12), nn.ReLU(), nn.Linear(12, 10))
        save_checkpoint(model, tmp_path / f"m{seed}.safetensors")
    argv = ["curve", "m0.safetensors", "m1.safetensors", "--model", "tinycurve:mlp",
            "--data-dir", fashion_dir, "--samples", "all", "--epochs", "1", "--points", "5",
            "--plane", "plane.h5", "--device", "cpu"]  # fmt: skip
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "barrier" in stdout and "curve_line.h5" in stdout
    line = Surface.load(tmp_path / "curve_line.h5")
    assert line.shape == (5,) and line.attrs["curve"]["kind"] == "bezier"
    assert "barrier" in line.attrs["sharpness"]
    assert set(Surface.load(tmp_path / "plane.h5").trajectories) == {
        "straight line",
        "bezier curve",
    }
    kept = (tmp_path / "curve_line.h5").read_bytes()
    code, _, err = run_cli(argv, capsys)  # the outputs exist: refused before any work
    assert code == 2 and "exists" in err
    assert_one_line(err)
    assert (tmp_path / "curve_line.h5").read_bytes() == kept
    code, stdout, err = run_cli([*argv, "--overwrite"], capsys)  # the curve file: resumed
    assert code == 0 and "(0 run now)" in stdout, err
    _compare_command(tmp_path, argv[3:9], capsys)


def _compare_command(tmp_path: Path, common: list[Any], capsys: Any) -> None:
    """``interpolate A B --align --curve``: three barriers ± SE in the file, printed by info,
    drawn by plot (the profiles figure), and the plane with the paths."""
    ends = ["interpolate", "m0.safetensors", "m1.safetensors", *common, "--device", "cpu"]
    argv = [*ends, "--align", "--curve", "curve.safetensors", "--x", "0:1:5", "-o", "cmp.h5",
            "--plane", "cmp_plane.h5", "--no-progress"]  # fmt: skip
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    names = ["straight line", "line to B aligned", "bezier curve"]
    for name in names:
        assert f"barrier of the {name}: " in stdout and " ± " in stdout
    compared = comparison(Surface.load(tmp_path / "cmp.h5").attrs)
    assert [p.name for p in compared] == names
    assert all(np.all(p.loss_sem > 0) and p.loss[0] == compared[0].loss[0] for p in compared)
    assert set(Surface.load(tmp_path / "cmp_plane.h5").trajectories) == {
        "straight line",
        "bezier curve",
    }
    code, stdout, _ = run_cli(["info", "cmp.h5"], capsys)
    assert code == 0 and stdout.count("barrier of the") == 3 and "'paths'" not in stdout
    code, stdout, err = run_cli(["plot", "cmp.h5", "-o", "figs"], capsys)
    assert code == 0 and (tmp_path / "figs" / "cmp_profiles.png").is_file(), err
    refusals = [
        (["interpolate", "m0.safetensors", "m1.safetensors", "m0.safetensors", "--align"], "two"),
        ([*ends, "--plane", "p.h5", "-o", "x.h5"], "add --align"),
        ([*ends, "--align", "--x", "-1:1:5", "-o", "x.h5"], "0:1:N"),
        ([*ends, "--curve", "m0.safetensors", "-o", "x.h5"], "not a curve file"),
        ([*ends, "--align", "--plane", "cmp.h5", "-o", "y.h5"], "exists"),
    ]
    for argv, words in refusals:
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and words in err, (argv, err)
        assert_one_line(err)


def test_models_on_one_plane_from_the_command_line(
    tmp_path: Path, fashion_dir: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """``interpolate init adam sgd --project RUN/ --project FILE --average``: each model or
    run on the plane under its name, the average of B and C at (½, ½)."""
    (tmp_path / "tinycurve.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    states = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 12), nn.ReLU(), nn.Linear(12, 10))
        states.append(model.state_dict())
        save_checkpoint(model, tmp_path / f"m{seed}.safetensors")
    run = tmp_path / "run"
    run.mkdir()
    a, b, c = states
    for step, (x, y) in enumerate([(0.0, 0.0), (0.25, 0.5), (0.5, 1.0)]):
        mixed = {k: a[k] + x * (b[k] - a[k]) + y * (c[k] - a[k]) for k in a}
        save_checkpoint(mixed, run / f"step_{step:07d}.safetensors")
    off = {k: a[k] + 0.3 * (b[k] - a[k]) + 0.2 * (c[k] - a[k]) for k in a}
    save_checkpoint(off, tmp_path / "other.safetensors")
    common = ["--model", "tinycurve:mlp", "--data-dir", fashion_dir, "--samples", "all",
              "--device", "cpu", "--no-progress", "--x", "0:1:3"]  # fmt: skip
    ends = ["interpolate", "m0.safetensors", "m1.safetensors", "m2.safetensors", *common]
    argv = [*ends, "--project", "run", "--project", "other.safetensors", "--average", "-o", "p.h5"]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    plane = Surface.load(tmp_path / "p.h5")
    marks = plane.trajectories
    assert set(marks) == {"run", "other", "average of m1 and m2"}
    assert marks["run"] == pytest.approx(np.array([[0, 0], [0.25, 0.5], [0.5, 1.0]]), abs=1e-5)
    assert marks["other"] == pytest.approx(np.array([[0.3, 0.2]]), abs=1e-5)
    assert marks["average of m1 and m2"] == pytest.approx(np.array([[0.5, 0.5]]), abs=1e-5)
    assert plane.attrs["projected"] == sorted(marks)
    (tmp_path / "empty").mkdir()
    refusals = [
        (
            [
                "interpolate",
                "m0.safetensors",
                "m1.safetensors",
                *common,
                "--project",
                "run",
                "-o",
                "l.h5",
            ],
            "three checkpoints",
        ),
        ([*argv[:-2], "--project", "empty", "-o", "e.h5"], "holds no step_"),
        ([*argv[:-2], "--project", "missing.safetensors", "-o", "m.h5"], "missing.safetensors"),
    ]
    for bad, words in refusals:
        code, _, err = run_cli(bad, capsys)
        assert code == 2 and words in err, (bad, err)
        assert_one_line(err)


def test_the_profile_recomputes_batchnorm_at_every_t() -> None:
    """A model with BatchNorm: the loss at each t is the blend's with its own statistics (the
    blend of A's and B's statistics is not), as ``compare.blend`` recomputes them."""
    from lossland.compare import blend

    x, y = task(n=300)
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
        net.train()
        net(x * (1 + seed))  # statistics of other data: stale for the blends
        nets.append(net.eval())
    sa, sb = ({k: v.clone() for k, v in n.state_dict().items()} for n in nets)
    along = profile(nets[0], straight(sa, sb), (x, y), points=3)
    assert along.attrs["bn"] == "recompute"
    stale = []
    for i, t in enumerate((0.0, 0.5, 1.0)):
        mixed = blend(nets[0], sa, sb, t=t, data=(x, y))
        with torch.no_grad():
            assert along.loss[i] == pytest.approx(float(nn.functional.cross_entropy(mixed(x), y)))
            kept = copy.deepcopy(nets[0])  # the blend with the blended statistics
            kept.load_state_dict(straight(sa, sb)(t))
            stale.append(float(nn.functional.cross_entropy(kept.eval()(x), y)))
    assert not np.allclose(along.loss, stale)
