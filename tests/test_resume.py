"""Crash-safe, resumable surface files: resume, refusals in user terms, checkpoints that fail.

In-process runs through the API and ``lossland.cli.main``; the kill -9 / Ctrl-C tests that need
a real process are in ``test_kill.py``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from faultkit import surface_args, write_checkpoint, write_data
from helpers import assert_one_line, torch_threads
from lossland.cli import main
from lossland.directions import Directions
from lossland.errors import LosslandError, SurfaceFileError, render
from lossland.io import Surface
from lossland.io import _atomic as atomic
from lossland.run import (
    Interrupted,
    lock_path,
    run_lock,
    setting_differences,
    stale_temporaries,
    surface,
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on a shared two-core machine run far faster on one intra-op thread."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(data folder, checkpoint, another checkpoint) shared by the CLI tests of this module."""
    folder = tmp_path_factory.mktemp("resume")
    data = write_data(folder / "data", n=48)
    return (
        data,
        write_checkpoint(folder / "a.safetensors"),
        write_checkpoint(folder / "b.safetensors", seed=1),
    )


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("lossland:")]
    assert len(lines) == 1, err
    assert_one_line(lines[0])
    return lines[0]


# --- resume ------------------------------------------------------------------------------------


class Countdown(nn.Module):
    """Wraps a model; its forward raises ``error`` after ``calls`` forwards (then behaves).
    The calls are counted outside the model (a closure's cell): lossland puts a model's own
    state back after every point."""

    def __init__(self, inner: nn.Module, calls: int, error: BaseException) -> None:
        super().__init__()
        self.inner, self.error = inner, error
        budget = [calls]

        def spend() -> bool:
            budget[0] -= 1
            return budget[0] == -1

        self.spend = spend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spend():
            raise self.error
        out: torch.Tensor = self.inner(x)
        return out


def test_interrupted_run_saves_and_rerun_resumes_to_the_same_surface(
    tiny_model, tiny_data, tmp_path
):
    out = tmp_path / "s.h5"
    grid = {"x": "-1:1:7", "y": "-1:1:5", "progress": False, "device": "cpu"}
    calm = Countdown(tiny_model, 10**9, KeyboardInterrupt())  # same weights and structure
    reference = surface(calm, tiny_data, **grid)
    # Ctrl-C arrives in the middle of the 12th point: 11 points are done and must be saved.
    model = Countdown(tiny_model, 11, KeyboardInterrupt())
    with pytest.raises(Interrupted) as info:
        surface(model, tiny_data, out=out, checkpoint_every=1e9, **grid)
    message = str(info.value)
    assert (
        message == f"interrupted; 11 of 35 points saved in {out}; rerun the same command to resume"
    )
    partial = Surface.load(out)
    assert partial.done.sum() == 11
    np.testing.assert_array_equal(partial.loss[partial.done], reference.loss[partial.done])
    resumed = surface(calm, tiny_data, out=out, **grid)
    assert resumed.complete and Surface.load(out).complete
    np.testing.assert_allclose(resumed.loss, reference.loss, rtol=1e-6)
    np.testing.assert_allclose(resumed.acc, reference.acc, atol=1 / len(tiny_data[0]))
    assert not lock_path(out).exists() and not stale_temporaries(out)


def test_complete_file_is_returned_without_computing(tiny_model, tiny_data, tmp_path):
    out = tmp_path / "s.h5"
    calm = Countdown(tiny_model, 10**9, AssertionError())
    first = surface(calm, tiny_data, x="-1:1:3", y="-1:1:3", out=out, progress=False)
    model = Countdown(tiny_model, 0, AssertionError("must not evaluate"))
    again = surface(model, tiny_data, x="-1:1:3", y="-1:1:3", out=out, progress=False)
    np.testing.assert_array_equal(again.loss, first.loss)


def test_model_that_raises_on_some_points_names_the_point_and_keeps_the_rest(
    tiny_model, tiny_data, tmp_path
):
    out = tmp_path / "s.h5"
    model = Countdown(tiny_model, 4, ValueError("bad input"))
    with pytest.raises(LosslandError) as info:
        surface(model, tiny_data, x="-1:1:6", out=out, progress=False, checkpoint_every=1e9)
    message = str(info.value)
    assert_one_line(message)
    assert "ValueError at (x, y) = (0.6, 0)" in message and "bad input" in message
    assert f"saved in {out}" in message and "rerun the same command" in message
    assert Surface.load(out).done.tolist() == [True] * 4 + [False] * 2


class Abort(BaseException):
    """Not an Exception: the engine does not turn it into a user error."""


def test_unexpected_base_exception_propagates_after_saving(tiny_model, tiny_data, tmp_path):
    out = tmp_path / "s.h5"
    model = Countdown(tiny_model, 4, Abort())
    with pytest.raises(Abort):
        surface(
            model, tiny_data, x="-1:1:3", y="-1:1:3", out=out, progress=False, checkpoint_every=1e9
        )
    assert Surface.load(out).done.sum() == 3  # the finished row; the engine keeps the rest


def test_nan_in_directions_is_refused(tiny_model, tiny_data):
    params = dict(tiny_model.named_parameters())
    x = {k: torch.ones_like(v) for k, v in params.items()}
    x["0.weight"] = x["0.weight"].clone()
    x["0.weight"][0, 0, 0, 0] = float("nan")
    with pytest.raises(LosslandError, match=r"NaN or inf in x/0.weight"):
        surface(tiny_model, tiny_data, x="-1:1:3", directions=Directions(x=x), progress=False)


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("--x", "-1:1:4"), "--x: file has -1:1:3, this run -1:1:4"),
        (("--y", "-2:2:3"), "--y: file has -1:1:3, this run -2:2:3"),
        (("--scheme", "linear2x"), "--scheme: file has li, this run linear2x"),
        (("--bn", "train"), "--bn: file has eval, this run train"),
        (("--dtype", "float64"), "--dtype: file has float32, this run float64"),
        (("--precision", "bf16"), "--precision: file has fp32, this run bf16"),
        (("--samples", "32"), "--samples: file has 48, this run 32"),
        (("--seed", "5"), "--seed: file has 0, this run 5"),
        (("--norm", "layer"), "--norm: file has filter, this run layer"),
        (("--split", "test"), "--split: file has train, this run test"),
        (("--activation", "leaky_relu", "--model", "small", "--width", "0.25"), "architecture"),
    ],
)
def test_rerun_with_other_settings_is_refused_naming_the_difference(
    inputs, tmp_path, capsys, change, expected
):
    data, ckpt, _ = inputs
    out = tmp_path / "s.h5"
    assert main(surface_args(ckpt, out, data, grid="-1:1:3")) == 0
    before = out.read_bytes()
    args = surface_args(ckpt, out, data, grid="-1:1:3")
    if change[0] == "--y":  # replace the grid's y only
        args[args.index("--y") + 1] = change[1]
    else:
        args += list(change)
    code, err = cli(capsys, *args)
    assert code == 2
    line = error_line(err)
    assert "was computed with other settings" in line and expected in line, line
    assert "--overwrite" in line
    assert out.read_bytes() == before  # the file is untouched
    code, err = cli(capsys, *args, "--overwrite")
    assert code == 0, err
    assert Surface.load(out).complete


def test_other_checkpoint_or_directions_are_refused(inputs, tmp_path, capsys):
    data, ckpt, other = inputs
    out = tmp_path / "s.h5"
    directions = Path(f"{out}.directions.safetensors")
    kept = ["--save-directions", str(directions)]
    assert main([*surface_args(ckpt, out, data, grid="-1:1:3"), *kept]) == 0
    saved = directions.read_bytes()
    code, err = cli(capsys, *surface_args(other, out, data, grid="-1:1:3"))
    assert code == 2 and "other model weights" in error_line(err)
    assert directions.read_bytes() == saved  # the refused run left the surface's directions be
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([directions.name, out.name])
    moved = tmp_path / "d.safetensors"
    Directions.load(directions).save(moved)
    assert main([*surface_args(ckpt, out, data, grid="-1:1:3"), "--directions", str(moved)]) == 0
    code, err = cli(
        capsys, *surface_args(ckpt, out, data, grid="-1:1:3"), "--directions", str(directions)
    )
    assert code == 0, err  # the same directions from another file: resumable
    surface_args_1d = surface_args(ckpt, tmp_path / "line.h5", data, grid="-1:1:3")
    del surface_args_1d[surface_args_1d.index("--y") : surface_args_1d.index("--y") + 2]
    assert main(surface_args_1d) == 0


def test_reference_file_without_settings_is_not_reused(inputs, tmp_path, capsys):
    data, ckpt, _ = inputs
    out = tmp_path / "ref.h5"
    Surface.empty(np.linspace(-1, 1, 3), np.linspace(-1, 1, 3), split="train").save(out)
    code, err = cli(capsys, *surface_args(ckpt, out, data, grid="-1:1:3"))
    assert code == 2 and "holds no lossland run settings" in error_line(err)


def test_setting_differences_explain_fingerprints():
    old = {"data": "a", "directions": "d", "samples": 10, "seed": 0, "model": "m"}
    new = {"data": "b", "directions": "e", "samples": 10, "seed": 1, "model": "n"}
    # Each difference names the API argument; the command line renders it as its flag.
    lines = [render(line, lambda name: "--" + name) for line in setting_differences(old, new)]
    assert lines == [
        "--seed: file has 0, this run 1",
        "other model weights (another or retrained checkpoint)",
    ]
    assert setting_differences(old, dict(old)) == []
    assert setting_differences({"data": "a"}, {"data": "b"}) == [
        "other evaluation data (other data files)"
    ]


# --- checkpoints that fail -----------------------------------------------------------------------


def test_disk_full_while_checkpointing_keeps_the_previous_file(
    tiny_model, tiny_data, tmp_path, monkeypatch
):
    out = tmp_path / "s.h5"
    saves = {"n": 0}
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        # Every checkpoint fsyncs its temporary file once; from the 3rd on the disk is full.
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).endswith(".tmp"):
            saves["n"] += 1
            if saves["n"] >= 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    with pytest.raises(LosslandError) as info:
        surface(tiny_model, tiny_data, x="-1:1:6", out=out, progress=False, checkpoint_every=0)
    message = str(info.value)
    assert_one_line(message)
    assert "disk full while writing" in message and "keeps the 2 of 6 points" in message
    kept = Surface.load(out)  # the last good checkpoint, intact
    assert kept.done.tolist() == [True, True] + [False] * 4
    assert not stale_temporaries(out)
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    assert surface(tiny_model, tiny_data, x="-1:1:6", out=out, progress=False).complete


def test_disk_full_on_the_final_checkpoint(tiny_model, tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "s.h5"
    original = atomic.os.replace

    def replace(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(LosslandError, match=r"disk full.*no points of this run are saved yet"):
        surface(tiny_model, tiny_data, x="-1:1:3", out=out, progress=False, checkpoint_every=1e9)
    assert not out.exists() and not stale_temporaries(out)
    monkeypatch.setattr(atomic.os, "replace", original)


def test_missing_output_folder_fails_before_any_work(inputs, tmp_path, capsys):
    data, ckpt, _ = inputs
    code, err = cli(capsys, *surface_args(ckpt, tmp_path / "nope" / "s.h5", data))
    assert code == 2 and "does not exist" in error_line(err)
    code, err = cli(capsys, *surface_args(ckpt, tmp_path, data))
    assert code == 2 and "is a folder" in error_line(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(inputs, tmp_path, capsys):
    data, ckpt, _ = inputs
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, err = cli(capsys, *surface_args(ckpt, folder / "s.h5", data))
    finally:
        folder.chmod(0o755)
    assert code == 2 and "not writable" in error_line(err)


def test_read_only_output_folder_simulated(inputs, tmp_path, capsys, monkeypatch):
    """As root chmod does not stop writes: simulate what a read-only folder reports."""
    data, ckpt, _ = inputs
    folder = tmp_path / "ro"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        atomic.os, "access", lambda p, mode: False if Path(p) == folder else real_access(p, mode)
    )
    code, err = cli(capsys, *surface_args(ckpt, folder / "s.h5", data))
    assert code == 2 and "not writable" in error_line(err)


def test_read_only_file_system_simulated(tiny_model, tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "s.h5"
    Surface.empty(np.zeros(1), None, split="x").save(tmp_path / "other.h5")

    def mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    with pytest.raises(LosslandError, match=r"cannot write .*Read-only file system"):
        surface(tiny_model, tiny_data, x="-1:1:3", out=out, progress=False)


# --- one writer ----------------------------------------------------------------------------------


def test_a_second_run_on_the_same_file_is_refused(tiny_model, tiny_data, tmp_path):
    out = tmp_path / "s.h5"
    with run_lock(out), pytest.raises(LosslandError, match=r"another lossland run .*is writing"):
        surface(tiny_model, tiny_data, x="-1:1:3", out=out, progress=False)
    assert not out.exists()
    assert surface(tiny_model, tiny_data, x="-1:1:3", out=out, progress=False).complete


def test_stale_temporary_files_of_a_killed_run_are_removed(tiny_model, tiny_data, tmp_path):
    out = tmp_path / "s.h5"
    stale = tmp_path / ".s.h5.abcd1234.tmp"
    stale.write_bytes(b"half a checkpoint")
    unrelated = tmp_path / ".other.h5.abcd1234.tmp"
    unrelated.write_bytes(b"someone else's")
    surface(tiny_model, tiny_data, x="-1:1:3", out=out, progress=False)
    assert not stale.exists() and unrelated.exists()


def test_surface_file_load_errors_are_surface_file_errors(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(SurfaceFileError):
        Surface.load(path)
