"""torchrun with gloo on CPU: the same surface as one process, and no hang when a rank dies."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from hypothesis import given, settings
from hypothesis import strategies as st

from faultkit import (
    env,
    lossland_lines,
    surface_args,
    torchrun,
    wait_for,
    write_checkpoint,
    write_data,
    write_fault_model,
)
from helpers import torch_threads
from lossland.cli import main
from lossland.errors import LosslandError
from lossland.io import Surface
from lossland.run import _group as distributed
from lossland.run import lock_path, stale_temporaries

needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="no torch.distributed gloo"
)
SAMPLES = 48


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(data, checkpoint, folder with faultmodel.py) and its checkpoint alongside."""
    folder = tmp_path_factory.mktemp("dist")
    data = write_data(folder / "data", n=SAMPLES)
    ckpt = write_checkpoint(folder / "m.safetensors")
    write_fault_model(folder / "mods", folder / "fault.safetensors")
    return data, ckpt, folder / "mods"


def one_process(args: list[str], *paths: Path) -> Surface:
    """The reference: the same command in this process, on one thread like torchrun's ranks."""
    import sys

    sys.path[:0] = [str(p) for p in paths]
    try:
        with torch_threads(1):
            assert main(args) == 0
    finally:
        del sys.path[: len(paths)]
        sys.modules.pop("faultmodel", None)
    return Surface.load(args[args.index("-o") + 1])


# --- splitting the work --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    ny=st.integers(1, 12),
    nx=st.integers(1, 12),
    world=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_assign_partitions_the_pending_points(ny, nx, world, seed):
    pending = np.random.default_rng(seed).random((ny, nx)) < 0.7
    masks = distributed.assign(pending, world)
    assert len(masks) == world
    total = np.zeros(pending.shape, dtype=int)
    for mask in masks:
        assert mask.shape == pending.shape and not (mask & ~pending).any()
        total += mask
    np.testing.assert_array_equal(total, pending.astype(int))  # every point exactly once
    rows = int(pending.any(axis=1).sum())
    loads = [int(m.sum()) for m in masks]
    if rows >= world:  # whole rows, balanced to within one row
        for i in range(ny):
            owners = [r for r, m in enumerate(masks) if m[i].any()]
            assert len(owners) <= 1
        assert max(loads) - min(loads) <= max(int(pending.sum(axis=1).max()), 0)
    else:  # contiguous runs of near-equal length
        assert max(loads) - min(loads) <= 1
    again = distributed.assign(pending, world)
    assert all(np.array_equal(a, b) for a, b in zip(masks, again, strict=True))


def test_not_under_torchrun_means_one_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched()
    assert distributed.join(torch.device("cpu")).world == 1  # a group of one
    assert distributed.rank() == 0 and distributed.is_main_process()
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    assert not distributed.launched()  # torchrun with one process: nothing to distribute


def test_one_gpu_per_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cpu = torch.device("cpu")
    assert distributed.rank_device(cpu, 3, 4) == cpu
    assert distributed.rank_device(torch.device("cuda"), 1, 2) == torch.device("cuda", 1)
    with pytest.raises(LosslandError, match="only 2 visible"):
        distributed.rank_device(torch.device("cuda"), 2, 3)
    with pytest.raises(LosslandError, match="set device to cuda"):
        distributed.rank_device(torch.device("cuda", 1), 0, 2)
    assert distributed.rank_device(torch.device("cuda", 1), 0, 1) == torch.device("cuda", 1)


def test_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(distributed.TIMEOUT_ENV, raising=False)
    assert distributed.timeout_seconds() == distributed.DEFAULT_TIMEOUT_S
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "12.5")
    assert distributed.timeout_seconds() == 12.5
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(LosslandError, match="positive number of seconds"):
        distributed.timeout_seconds()


# --- torchrun end to end ------------------------------------------------------------------------


@needs_gloo
@pytest.mark.slow
@pytest.mark.parametrize("shape", ["plane", "line"])
def test_two_ranks_compute_the_same_surface_as_one_process(inputs, tmp_path, shape):
    data, ckpt, _ = inputs
    two, one = tmp_path / "two.h5", tmp_path / "one.h5"
    extra = ("--checkpoint-every", "0")
    args2, args1 = (surface_args(ckpt, o, data, *extra, grid="-1:1:7") for o in (two, one))
    if shape == "line":  # one row: the ranks split it into two runs of points
        for args in (args1, args2):
            del args[args.index("--y") : args.index("--y") + 2]
            args[args.index("--x") + 1] = "-1:1:21"
    result = torchrun(args2, nproc=2, environ=env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "surface in" in result.stdout  # rank 0's summary, once
    assert result.stdout.count("surface in") == 1
    assert lossland_lines(result.stderr) == []
    reference = one_process(args1)
    distributed_ = Surface.load(two)
    assert distributed_.complete and distributed_.attrs["processes"] == 2
    np.testing.assert_allclose(distributed_.loss, reference.loss, rtol=1e-6)
    np.testing.assert_allclose(distributed_.acc, reference.acc, atol=1.01 / SAMPLES)
    np.testing.assert_allclose(distributed_.loss_sem, reference.loss_sem, rtol=1e-4)
    assert distributed_.settings == reference.settings  # so either can resume the other
    assert not stale_temporaries(two) and not lock_path(two).exists()


USER_MODEL = ("--model", "faultmodel:factory")


@needs_gloo
@pytest.mark.slow
def test_a_rank_that_dies_stops_the_job_and_a_rerun_resumes(inputs, tmp_path):
    data, _, mods = inputs
    ckpt = mods.parent / "fault.safetensors"
    out, ref = tmp_path / "s.h5", tmp_path / "ref.h5"
    # The checkpoint names its factory by import path: lossland builds it only when told to.
    args = surface_args(ckpt, out, data, *USER_MODEL, "--checkpoint-every", "0", grid="-1:1:11")
    started = time.monotonic()
    # Rank 1 owns 5 rows of 11 points and dies in its 4th row.
    fault = env(mods, FAULT="kill", FAULT_RANK="1", FAULT_AFTER="40")
    killed = torchrun(args, nproc=2, environ=fault, timeout=120)
    assert killed.returncode != 0
    assert time.monotonic() - started < 90, "the surviving rank hung"
    lines = lossland_lines(killed.stderr)
    assert len(lines) <= 1, killed.stderr  # rank 0's report (or torchrun's SIGTERM got it first)
    partial = Surface.load(out)  # rank 0 saved what it had
    assert 0 < partial.done.sum() < partial.done.size
    if lines:
        assert f"points saved in {out}; rerun the same command to resume" in lines[0]
    resumed = torchrun(args, nproc=2, environ=env(mods), timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    reference = one_process(surface_args(ckpt, ref, data, *USER_MODEL, grid="-1:1:11"), mods)
    final = Surface.load(out)
    assert final.complete
    np.testing.assert_allclose(final.loss, reference.loss, rtol=1e-6)


@needs_gloo
@pytest.mark.slow
def test_a_rank_whose_model_raises_is_reported_once_by_rank_0(inputs, tmp_path):
    data, _, mods = inputs
    ckpt = mods.parent / "fault.safetensors"
    out = tmp_path / "s.h5"
    args = surface_args(ckpt, out, data, *USER_MODEL, "--checkpoint-every", "0.2", grid="-1:1:9")
    failed = torchrun(
        args,
        nproc=2,
        environ=env(mods, FAULT="raise", FAULT_RANK="1", FAULT_AFTER="10"),
        timeout=120,
    )
    assert failed.returncode != 0
    lines = lossland_lines(failed.stderr)
    assert len(lines) == 1, failed.stderr  # rank 1 stays quiet; rank 0 speaks for the job
    assert "RuntimeError" in lines[0] and "injected fault" in lines[0] and "on rank 1" in lines[0]
    assert f"saved in {out}" in lines[0]
    assert Surface.load(out).done.sum() > 0


@needs_gloo
@pytest.mark.slow
def test_ranks_refuse_a_file_of_other_settings_together(inputs, tmp_path):
    data, ckpt, _ = inputs
    out = tmp_path / "s.h5"
    assert one_process(surface_args(ckpt, out, data, grid="-1:1:3")).complete
    before = out.read_bytes()
    refused = torchrun(
        surface_args(ckpt, out, data, "--seed", "4", grid="-1:1:3"),
        nproc=2,
        environ=env(),
        timeout=120,
    )
    assert refused.returncode != 0
    lines = lossland_lines(refused.stderr)
    assert len(lines) == 1 and "--seed: file has 0, this run 4" in lines[0], refused.stderr
    assert out.read_bytes() == before


@needs_gloo
@pytest.mark.slow
def test_ctrl_c_on_torchrun_saves_once(inputs, tmp_path):
    data, ckpt, _ = inputs
    out = tmp_path / "s.h5"
    args = surface_args(ckpt, out, data, "--checkpoint-every", "0", grid="-1:1:41")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "lossland", *args]
    proc = subprocess.Popen(command, env=env(), stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(out.exists, 90)  # the first checkpoint: both ranks are computing
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode != 0
    lines = lossland_lines(err)
    assert len(lines) == 1, err
    match = re.fullmatch(
        rf"lossland: interrupted; (\d+) of 1681 points saved in {re.escape(str(out))}; "
        "rerun the same command to resume",
        lines[0],
    )
    assert match, lines[0]
    assert int(Surface.load(out).done.sum()) == int(match.group(1))
