"""Doing less work per surface, and saying what it costs: bf16, a standard-error target per
point, adaptive refinement of the grid (also under kill -9 and a 2-rank torchrun)."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossland
from faultkit import env, surface_args, torchrun, wait_for, write_checkpoint, write_data
from faultkit import lossland as run_lossland
from helpers import torch_threads
from lossland.cli import main
from lossland.engine._data import stream
from lossland.errors import LosslandError
from lossland.io import Surface
from lossland.zoo import small


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """The small CNN after a few Adam steps on a learnable synthetic task."""
    torch.manual_seed(0)
    model = small()
    x = torch.rand(600, 1, 28, 28)
    y = torch.randint(0, 10, (600,))
    x[torch.arange(600), 0, (y % 4) * 7, (y // 4) * 7] += 3.0  # a class-dependent bright pixel
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(30):
        batch = slice((step * 64) % 600, (step * 64) % 600 + 64)
        optimizer.zero_grad()
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        optimizer.step()
    return model.eval(), (x, y)


# --- bf16 ---------------------------------------------------------------------------------


def test_bf16_stores_its_error_against_fp32_and_it_is_small(trained):
    model, data = trained
    d = lossland.random_directions(model, seed=1, ndim=2)
    grid = {"x": "-1:1:5", "y": "-1:1:5", "directions": d, "progress": False, "device": "cpu"}
    bf16 = lossland.surface(model, data, precision="bf16", **grid)
    fp32 = lossland.surface(model, data, **grid)
    check = bf16.attrs["precision_check"]
    assert len(check["points"]) == 25  # one a block: the whole 5 × 5 grid
    # The stored fp32 values are the fp32 surface's at those points.
    for (px, py), value in zip(check["points"], check["fp32"], strict=True):
        j, i = int(np.flatnonzero(fp32.x == px)[0]), int(np.flatnonzero(fp32.y == py)[0])
        assert value == pytest.approx(fp32.loss[i, j], rel=1e-5)
    assert check["max_sem_ratio"] < 0.25 and check["median_relative"] < 0.005
    assert np.median(np.abs(bf16.loss - fp32.loss) / fp32.loss) < 0.005
    assert "precision_check" not in fp32.attrs


# --- a standard-error target ------------------------------------------------------------------


def test_points_stop_once_their_relative_error_is_below_the_target(trained):
    model, data = trained
    d = lossland.random_directions(model, seed=2, ndim=2)
    common = {"x": "-1:1:3", "y": "-1:1:3", "directions": d, "progress": False, "batch_size": 50}
    full = lossland.surface(model, data, **common)
    target = 0.05
    part = lossland.surface(model, data, sem_target=target, min_batches=2, **common)
    assert part.samples is not None and full.samples is not None
    assert np.all(full.samples == 600)
    assert np.all(part.samples % 50 == 0) and np.all(part.samples >= 100)
    assert part.samples.min() < 600  # some points stopped early
    early = part.samples < 600
    assert np.all(part.loss_sem[early] < target * part.loss[early])  # stopped because precise
    # A stopped point's mean is its first n samples in the seeded order: recompute one.
    order = torch.randperm(600, generator=stream(0, "evaluation order"))
    i, j = np.argwhere(early)[0]
    net = _at(model, d, part.x[j], part.y[i])
    n = int(part.samples[i, j])
    with torch.no_grad():
        losses = F.cross_entropy(net(data[0][order[:n]]), data[1][order[:n]], reduction="none")
    assert part.loss[i, j] == pytest.approx(float(losses.mean()), rel=1e-5)
    # And it stays within a few of its own standard errors of the full-data value.
    assert np.all(np.abs(part.loss - full.loss) < 3 * part.loss_sem + 1e-12)


def test_a_standard_error_target_resumes_to_the_same_surface(trained, tmp_path):
    model, data = trained
    common = {"x": "-1:1:5", "y": "-1:1:3", "seed": 3, "batch_size": 50, "progress": False}
    calm = _Countdown(model, 10**9)  # the same weights and names as the one that stops
    reference = lossland.surface(calm, data, sem_target=0.05, **common)
    out = tmp_path / "s.h5"
    counting = _Countdown(model, 25)  # stops mid-run with KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        lossland.surface(counting, data, sem_target=0.05, out=out, checkpoint_every=0, **common)
    partial = Surface.load(out)
    assert 0 < partial.done.sum() < partial.done.size
    resumed = lossland.surface(calm, data, sem_target=0.05, out=out, **common)
    np.testing.assert_allclose(resumed.loss, reference.loss, rtol=1e-6)
    np.testing.assert_array_equal(resumed.samples, reference.samples)
    with pytest.raises(LosslandError, match="sem_target"):  # another target: another surface
        lossland.surface(calm, data, sem_target=0.02, out=out, **common)


# --- adaptive refinement ------------------------------------------------------------------


def test_refinement_marks_interpolated_points_and_matches_the_full_grid(trained):
    model, data = trained
    d = lossland.random_directions(model, seed=4, ndim=2)
    common = {"x": "-1:1:21", "y": "-1:1:21", "directions": d, "progress": False}
    few = (data[0][:128], data[1][:128])
    full = lossland.surface(model, few, **common)
    refined = lossland.surface(model, few, refine=0.05, **common)
    assert refined.complete and refined.interpolated is not None
    evaluated = refined.evaluated
    assert 0 < evaluated.sum() < evaluated.size
    assert refined.attrs["evaluated_fraction"] == pytest.approx(evaluated.mean())
    np.testing.assert_allclose(refined.loss[evaluated], full.loss[evaluated], rtol=1e-5)
    assert np.all(np.isnan(refined.acc[refined.interpolated]))  # only the loss is interpolated
    assert np.max(np.abs(np.log(refined.loss) - np.log(full.loss))) <= 0.05


def test_refinement_of_a_line(trained):
    model, data = trained
    d = lossland.random_directions(model, seed=5, ndim=1)
    line = lossland.surface(model, data, x="-1:1:41", directions=d, refine=0.05, progress=False)
    assert line.complete and 0 < line.evaluated.sum() < 41


def test_refinement_resumes_after_kill_9_and_under_torchrun(tmp_path):
    data = write_data(tmp_path / "data", n=64)
    ckpt = write_checkpoint(tmp_path / "m.safetensors")
    extra = ("--checkpoint-every", "0", "--refine", "0.05")
    killed_out, ref_out, two_out = tmp_path / "k.h5", tmp_path / "r.h5", tmp_path / "two.h5"
    args = surface_args(ckpt, killed_out, data, *extra, grid="-1:1:33")
    proc = run_lossland(args, environ=env())
    try:
        assert wait_for(lambda: _done(killed_out) > 20, 120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert _done(killed_out) > 0
    final = run_lossland(args, environ=env())
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    with torch_threads(1):
        assert main(surface_args(ckpt, ref_out, data, *extra, grid="-1:1:33")) == 0
    resumed, reference = Surface.load(killed_out), Surface.load(ref_out)
    assert resumed.complete and resumed.interpolated is not None
    np.testing.assert_array_equal(resumed.interpolated, reference.interpolated)
    np.testing.assert_allclose(resumed.loss, reference.loss, rtol=1e-5)
    args2 = surface_args(ckpt, two_out, data, *extra, grid="-1:1:33")
    two = torchrun(args2, nproc=2, environ=env(), timeout=300)
    assert two.returncode == 0, two.stderr
    distributed = Surface.load(two_out)
    np.testing.assert_array_equal(distributed.interpolated, reference.interpolated)
    np.testing.assert_allclose(distributed.loss, reference.loss, rtol=1e-5)


# --- helpers --------------------------------------------------------------------------------


def _done(out) -> int:  # type: ignore[no-untyped-def]
    try:
        return int(Surface.load(out).done.sum())
    except Exception:
        return 0


def _at(model: torch.nn.Module, d: lossland.Directions, a: float, b: float) -> torch.nn.Module:
    import copy

    net = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.add_(d.x[name], alpha=a).add_(d.y[name], alpha=b)  # type: ignore[index]
    return net


class _Countdown(torch.nn.Module):
    """``inner``, raising KeyboardInterrupt after ``calls`` forwards (same weights). The calls
    are counted outside the model (a shared budget): lossland puts a model's own state back
    after every point."""

    def __init__(self, inner: torch.nn.Module, calls: int) -> None:
        super().__init__()
        self.inner = inner
        budget = [calls]  # a closure's cell: not state of the module

        def spend() -> bool:
            budget[0] -= 1
            return budget[0] < 0

        self.spend = spend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spend():
            raise KeyboardInterrupt
        out: torch.Tensor = self.inner(x)
        return out
