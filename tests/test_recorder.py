"""lossland.Recorder: the landscape during training, one recording file with a step axis."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lossland
from faultkit import env, wait_for
from helpers import assert_one_line, run_cli, torch_threads
from lossland.errors import LosslandError, LosslandWarning
from lossland.io import SCALARS, TIMING, Recording, is_recording

SRC = Path(__file__).resolve().parents[1] / "src"
HAS_FFMPEG = shutil.which("ffmpeg") is not None


def tiny() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    inputs = torch.randn(64, 6)
    return model, (inputs, torch.randint(0, 3, (64,)))


def train(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    rec: lossland.Recorder,
    steps: int,
    *,
    lr: float = 0.5,
) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for step in range(steps + 1):
        rec.step(step, lr=lr)
        if step == steps:
            break
        opt.zero_grad()
        nn.functional.cross_entropy(model(data[0]), data[1]).backward()
        opt.step()


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


CASES = [  # (keywords, grid shape per step, measured, not measured)
    ({"x": "-1:1:7"}, (7,), ("lambda_max", "barrier", "curvature_xx"), ("trace", "curvature_yy")),
    (
        {"x": "-1:1:5", "y": "-1:1:3", "trace_probes": 3},
        (3, 5),
        ("lambda_max", "trace", "trace_sem", "curvature_yy"),
        (),
    ),
    ({"x": "-0.5:0.5:5", "hessian_iterations": 0}, (5,), ("rise_mean",), ("lambda_max", "trace")),
    ({"x": "-1:1:5", "trajectory": False, "every": 4}, (5,), ("lambda_max",), ()),
]


@pytest.mark.parametrize(("keywords", "grid", "measured", "absent"), CASES)
def test_records_every_nth_step_and_reads_back(tmp_path, keywords, grid, measured, absent):
    model, data = tiny()
    out = tmp_path / "rec.h5"
    rec = lossland.Recorder(model, data, out=out, budget=0, **{"every": 3, **keywords})
    train(model, data, rec, 9)
    result = rec.close()
    every = keywords.get("every", 3)
    assert result.steps.tolist() == list(range(0, 10, every))
    assert result.loss.shape == (len(result.steps), *grid)
    assert np.isfinite(result.loss).all()
    for name in measured:
        assert np.isfinite(result.scalars[name]).all(), name
    for name in absent:
        assert np.isnan(result.scalars[name]).all(), name
    assert np.allclose(result.scalars["lr"], 0.5)
    back = Recording.load(out)
    assert is_recording(out)
    np.testing.assert_array_equal(back.loss, result.loss)
    assert back.settings == result.settings
    if keywords.get("trajectory", True):
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        assert back.weights is not None and back.weights.shape == (len(back.steps), flat.numel())
        np.testing.assert_allclose(back.weights[-1], flat.numpy(), rtol=0, atol=0)
    else:
        assert back.weights is None


def test_centre_of_each_slice_is_the_loss_at_the_current_weights(tmp_path):
    model, data = tiny()
    rec = lossland.Recorder(model, data, out=tmp_path / "r.h5", every=2, budget=0)
    train(model, data, rec, 4)
    with torch.no_grad():
        now = float(nn.functional.cross_entropy(model(data[0]), data[1]))
    recording = rec.close()
    assert recording.scalars["centre_loss"][-1] == pytest.approx(now, rel=1e-5)
    centre = recording.loss[-1][len(recording.x) // 2]
    assert centre == pytest.approx(now, rel=1e-5)
    # λ_max by a few Lanczos steps agrees with the Hessian verbs' converged value
    report, _ = lossland.hessian_report(model, data, k=1, probes=0, progress=False)
    assert recording.scalars["lambda_max"][-1] == pytest.approx(report.eigen.values[0], rel=1e-3)


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, torch
    from torch import nn
    import lossland
    torch.set_num_threads(1)
    out, ckpt, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    data = (torch.randn(64, 6), torch.randint(0, 3, (64,)))
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    start = 0
    if os.path.exists(ckpt):  # the training's own checkpoint (every 4 steps)
        saved = torch.load(ckpt)
        model.load_state_dict(saved["model"]); opt.load_state_dict(saved["opt"])
        start = saved["step"]
    rec = lossland.Recorder(model, data, out=out, every=3, y="-1:1:3", x="-1:1:5", budget=0)
    for step in range(start, 21):
        rec.step(step)
        if step == 20:
            break
        opt.zero_grad()
        nn.functional.cross_entropy(model(data[0]), data[1]).backward()
        opt.step()
        if (step + 1) % 4 == 0:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step + 1},
                       ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
        if step + 1 == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    rec.close()
    """
)


def run_script(script: Path, out: Path, kill_at: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), str(out), str(out) + ".ckpt", str(kill_at)],
        env=env(SRC),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> int:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, -signal.SIGKILL), err
    return proc.returncode


def assert_same_recording(a: Recording, b: Recording) -> None:
    np.testing.assert_array_equal(a.steps, b.steps)
    np.testing.assert_array_equal(a.loss, b.loss)
    np.testing.assert_array_equal(a.acc, b.acc)
    for name in SCALARS:
        if name not in TIMING:
            np.testing.assert_array_equal(a.scalars[name], b.scalars[name], err_msg=name)
    assert a.weights is not None and b.weights is not None
    np.testing.assert_array_equal(a.weights, b.weights)
    assert a.settings == b.settings and a.skipped == b.skipped


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Recording]:
    folder = tmp_path_factory.mktemp("whole")
    script = folder / "train.py"
    script.write_text(KILL_SCRIPT)
    assert finish(run_script(script, folder / "whole.h5", -1)) == 0
    return script, Recording.load(folder / "whole.h5")


@pytest.mark.parametrize("kill_at", [10, "outside"])
def test_kill_9_and_resume_equals_an_uninterrupted_run(tmp_path, kill_at, uninterrupted):
    """SIGKILL between the training's checkpoint and the recording's last record (the records
    after the checkpoint are replayed), or from outside at any moment of a record."""
    script, whole = uninterrupted
    out = tmp_path / "killed.h5"
    if kill_at == "outside":
        proc = run_script(script, out, -1)
        assert wait_for(lambda: out.exists() and len(Recording.load(out)) >= 3, timeout=300)
        proc.kill()  # SIGKILL, wherever it is
        finish(proc)
    else:
        assert finish(run_script(script, out, kill_at)) == -signal.SIGKILL
        assert Recording.load(out).steps[-1] == (kill_at - 1) // 3 * 3
    assert finish(run_script(script, out, -1)) == 0
    assert_same_recording(Recording.load(out), whole)


def test_a_recorder_on_another_runs_file_or_another_file_is_refused(tmp_path):
    model, data = tiny()
    out = tmp_path / "rec.h5"
    train(model, data, lossland.Recorder(model, data, out=out, every=2, budget=0), 2)
    cases = [
        ({"every": 3}, "every"),
        ({"x": "-2:2:5"}, "x"),
        ({"seed": 1}, "seed"),
        ({"trajectory": False}, "trajectory"),
        ({"y": "-1:1:3"}, "y"),
    ]
    for keywords, named in cases:
        with pytest.raises(LosslandError, match=named) as caught:
            lossland.Recorder(model, data, out=out, **keywords)
        assert_one_line(str(caught.value))
        assert "overwrite" in str(caught.value)
    other = tmp_path / "notes.h5"
    other.write_bytes(b"not a recording")
    with pytest.raises(LosslandError, match="exists") as caught:
        lossland.Recorder(model, data, out=other)
    assert other.read_bytes() == b"not a recording"  # the user's file is untouched
    rec = lossland.Recorder(model, data, out=out, every=3, overwrite=True, budget=0)
    train(model, data, rec, 3)
    assert rec.close().steps.tolist() == [0, 3]


@pytest.mark.parametrize("launcher", ["torchrun environment", "initialized group of 2"])
def test_a_recorder_in_a_multi_process_run_is_refused_before_writing(
    tmp_path, monkeypatch, launcher
):
    """Under torchrun/DDP the slices would wait on the other ranks forever: one line instead."""
    if launcher == "torchrun environment":
        for name, value in {
            "RANK": "0",
            "WORLD_SIZE": "2",
            "LOCAL_RANK": "0",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": "29999",
        }.items():
            monkeypatch.setenv(name, value)
    else:
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    model, data = tiny()
    with pytest.raises(LosslandError, match="single-process") as caught:
        lossland.Recorder(model, data, out=tmp_path / "r.h5")
    assert_one_line(str(caught.value))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_a_bad_step_is_one_line(tmp_path, bad):
    model, data = tiny()
    rec = lossland.Recorder(model, data, out=tmp_path / "r.h5")
    with pytest.raises(LosslandError, match="step") as caught:
        rec.step(bad)
    assert_one_line(str(caught.value))


@pytest.mark.parametrize(
    ("keywords", "named"),
    [({"every": 0}, "every"), ({"budget": -1}, "budget"), ({"trace_probes": -2}, "trace_probes")],
)
def test_bad_options_are_one_line(tmp_path, keywords, named):
    model, data = tiny()
    with pytest.raises(LosslandError, match=named) as caught:
        lossland.Recorder(model, data, out=tmp_path / "r.h5", **keywords)
    assert_one_line(str(caught.value))
    assert not (tmp_path / "r.h5").exists()


def test_the_budget_skips_records_says_so_and_keeps_the_overhead_down(tmp_path):
    model, data = tiny()
    rec = lossland.Recorder(model, data, out=tmp_path / "r.h5", every=1, budget=0.05)
    with pytest.warns(LosslandWarning, match="skipped"):
        train(model, data, rec, 6)  # a training step is far cheaper than a record
    recording = rec.close()
    assert recording.steps.tolist()[0] == 0
    assert len(recording.skipped) >= 1
    assert set(recording.skipped).isdisjoint(recording.steps.tolist())
    assert sorted([*recording.skipped, *recording.steps.tolist()]) == list(range(7))
    assert "skipped" in rec.summary() and "overhead" in rec.summary()
    assert Recording.load(tmp_path / "r.h5").skipped == recording.skipped


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-D recording of 4 steps with a learning rate, on disk."""
    with torch_threads(1):
        model, data = tiny()
        out = tmp_path_factory.mktemp("rec") / "run.h5"
        rec = lossland.Recorder(
            model, data, out=out, every=2, x="-1:1:5", y="-1:1:5", budget=0, trace_probes=2
        )
        train(model, data, rec, 6, lr=2.0)
        rec.close()
    return out


def test_info_describes_a_recording(recorded, capsys):
    code, out, _ = run_cli(["info", recorded], capsys)
    assert code == 0
    assert "recording: 4 steps (0..6), slice 5 × 5 (plane" in out
    for what in (
        "λ_max:",
        "2/η: 1 → 1",
        "trace:",
        "slice barrier:",
        "overhead:",
        "trajectory: 4 ×",
    ):
        assert what in out, what


def test_plot_draws_sharpness_over_steps_and_an_animation_that_plays(recorded, tmp_path, capsys):
    from PIL import Image

    code, out, _ = run_cli(["plot", recorded, "-o", tmp_path], capsys)
    assert code == 0
    png, gif = tmp_path / "run_sharpness.png", tmp_path / "run_landscape.gif"
    assert out.split() == [str(png), str(gif), *([str(gif.with_suffix(".mp4"))] * HAS_FFMPEG)]
    with Image.open(png) as image:
        assert image.size[0] > 300
    with Image.open(gif) as animation:
        assert animation.n_frames == 4 and animation.info["loop"] == 0
        frames = []
        for i in range(animation.n_frames):
            animation.seek(i)
            frames.append(np.asarray(animation.convert("RGB")))
    assert all(f.shape == frames[0].shape for f in frames)
    assert any(np.any(f != frames[0]) for f in frames[1:])  # the landscape changes over steps
    before = gif.read_bytes()
    code, _, err = run_cli(["plot", recorded, "-o", tmp_path], capsys)
    assert code == 2 and "overwrite" in err
    assert gif.read_bytes() == before


@pytest.mark.skipif(not HAS_FFMPEG, reason="MP4 is written only where ffmpeg exists")
def test_the_mp4_beside_the_gif_where_ffmpeg_exists(recorded, tmp_path):
    from lossland.show import write_animation

    files = write_animation(Recording.load(recorded), tmp_path / "a.gif")
    assert files[1].suffix == ".mp4" and files[1].stat().st_size > 0


def test_view_writes_the_step_slider_page_and_refuses_lines(recorded, tmp_path, capsys):
    page = tmp_path / "run.html"
    code, out, _ = run_cli(["view", recorded, "-o", page], capsys)
    assert code == 0 and out.strip() == str(page)
    text = page.read_text()
    assert '"steps":[{"step":0' in text and '"step_index":3' in text
    code, _, err = run_cli(["view", recorded, "-o", tmp_path / "p.html", "--path", page], capsys)
    assert code == 2 and "--path" in err and not (tmp_path / "p.html").exists()
    recording = Recording.load(recorded)
    assert recording.paths is not None and recording.paths.shape == (4, 4, 2)
    for k in range(4):  # the run so far on each step's plane, θ_t at its origin
        assert np.isfinite(recording.paths[k, : k + 1]).all()
        assert np.isnan(recording.paths[k, k + 1 :]).all()
        np.testing.assert_allclose(recording.paths[k, k], 0.0, atol=1e-12)
    assert np.any(np.abs(recording.paths[3, :3]) > 0)
    model, data = tiny()
    line = tmp_path / "line.h5"
    rec = lossland.Recorder(model, data, out=line, every=1, budget=0, hessian_iterations=0)
    train(model, data, rec, 1)
    rec.close()
    code, _, err = run_cli(["view", line, "-o", tmp_path / "line.html"], capsys)
    assert code == 2 and "lines" in err and "lossland plot" in err
    assert_one_line(err)
    assert not (tmp_path / "line.html").exists()


def test_the_runs_pca_plane_from_the_recorded_trajectory(tmp_path):
    model, data = tiny()
    rec = lossland.Recorder(model, data, out=tmp_path / "r.h5", every=2, budget=0)
    train(model, data, rec, 8)
    plane = rec.pca_directions()
    assert plane.kind == "pca" and plane.y is not None
    ratio = plane.info["explained_variance_ratio"]
    assert 0 < ratio[1] <= ratio[0] <= 1
    flat = [torch.cat([d[n].reshape(-1) for n in rec.names]) for d in (plane.x, plane.y)]
    assert float(flat[0] @ flat[1]) == pytest.approx(0.0, abs=1e-5)  # orthonormal
    assert float(flat[0].norm()) == pytest.approx(1.0, rel=1e-5)
    landscape = lossland.surface(model, data, directions=plane, x="-1:1:3", y="-1:1:3")
    assert np.isfinite(landscape.loss).all()
    rec.close()
    bare = lossland.Recorder(model, data, out=tmp_path / "b.h5", trajectory=False, budget=0)
    with pytest.raises(LosslandError, match="trajectory") as caught:
        bare.pca_directions()
    assert_one_line(str(caught.value))


def test_a_resumed_recorder_replaces_what_came_after_the_restart(tmp_path):
    """The records at and after the first step of a resumed run belong to the stopped run:
    they are dropped and recorded again from the run that continues (here it trains
    differently, so the old records would be wrong)."""
    model, data = tiny()
    out = tmp_path / "r.h5"
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    rec = lossland.Recorder(model, data, out=out, every=2, budget=0)
    saved = None
    for step in range(7):
        rec.step(step)
        if step == 2:
            saved = {k: v.clone() for k, v in model.state_dict().items()}
        opt.zero_grad()
        nn.functional.cross_entropy(model(data[0]), data[1]).backward()
        opt.step()
    old = Recording.load(out)  # records 0, 2, 4, 6; killed without close()
    assert old.steps.tolist() == [0, 2, 4, 6]
    model.load_state_dict(saved)  # the run restarts from its step-2 checkpoint
    again = lossland.Recorder(model, data, out=out, every=2, budget=0)
    opt = torch.optim.SGD(model.parameters(), lr=2.0)  # the continuing run differs
    for step in range(2, 7):
        again.step(step)
        opt.zero_grad()
        nn.functional.cross_entropy(model(data[0]), data[1]).backward()
        opt.step()
    new = again.close()
    assert new.steps.tolist() == [0, 2, 4, 6]
    np.testing.assert_array_equal(new.loss[:2], old.loss[:2])
    assert not np.allclose(new.loss[2:], old.loss[2:])
