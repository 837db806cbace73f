"""Real processes, real signals: kill -9 at random moments, Ctrl-C and SIGTERM mid-run.

The file on disk must always load as a valid surface, a rerun must resume, and the final
surface must equal an uninterrupted run (to 1e-6: a row resumed mid-way is re-anchored).
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from faultkit import env, lossland, surface_args, wait_for, write_checkpoint, write_data
from helpers import torch_threads
from lossland.cli import main
from lossland.io import Surface
from lossland.run import lock_path, stale_temporaries

SAMPLES = 64
GRID = "-1:1:15"  # 225 points: a few seconds of work on two cores
POINTS = 225


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("kill")
    return write_data(folder / "data", n=SAMPLES), write_checkpoint(folder / "m.safetensors")


def load_if_present(out: Path) -> Surface | None:
    return Surface.load(out) if out.exists() else None


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(inputs, tmp_path):
    data, ckpt = inputs
    reference_out, out = tmp_path / "reference.h5", tmp_path / "killed.h5"
    args = surface_args(ckpt, out, data, "--checkpoint-every", "0", grid=GRID)
    rng = random.Random(20240611)
    environ = env()
    history = []
    for attempt in range(4):
        proc = lossland(args, environ=environ)
        if attempt == 0:  # a random moment from the start: usually still starting up
            delay = rng.uniform(0.2, 2.0)
            finished = wait_for(lambda proc=proc: proc.poll() is not None, delay)
        else:  # a random moment while computing: mid-row, mid-checkpoint, mid-rename
            before = load_if_present(out)
            done_before = 0 if before is None else int(before.done.sum())

            def progressed(proc: subprocess.Popen[str] = proc, n: int = done_before) -> bool:
                now = _done(out)
                return proc.poll() is not None or now > n

            wait_for(progressed, 60)
            finished = wait_for(lambda proc=proc: proc.poll() is not None, rng.uniform(0, 0.6))
        proc.kill()
        proc.communicate()
        if finished and proc.returncode == 0:
            break
        surface = load_if_present(out)  # never a broken file: the old one or a new one
        done = 0 if surface is None else int(surface.done.sum())
        assert done >= (history[-1] if history else 0), "a kill lost checkpointed points"
        history.append(done)
        if surface is not None:
            assert np.isfinite(surface.loss[surface.done]).all()
            assert np.isnan(surface.loss[~surface.done]).all()
    print("checkpointed points after each kill:", history)
    assert any(0 < n < POINTS for n in history), f"no kill landed mid-run: {history}"
    final = lossland(args, environ=environ)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    with torch_threads(1):
        assert main([*surface_args(ckpt, reference_out, data, grid=GRID)]) == 0
    resumed, reference = Surface.load(out), Surface.load(reference_out)
    assert resumed.complete and reference.complete
    np.testing.assert_allclose(resumed.loss, reference.loss, rtol=1e-6)
    np.testing.assert_allclose(resumed.acc, reference.acc, atol=1.01 / SAMPLES)
    np.testing.assert_allclose(resumed.loss_sem, reference.loss_sem, rtol=1e-4)
    assert not stale_temporaries(out) and not lock_path(out).exists()


def _done(out: Path) -> int:
    try:
        return int(Surface.load(out).done.sum())
    except Exception:  # mid-rename races are not failures here; the checks above are
        return 0


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_save_a_checkpoint_and_say_so(inputs, tmp_path, signum, code):
    data, ckpt = inputs
    out = tmp_path / "s.h5"
    # A grid far too large to finish: the signal always lands mid-run.
    args = surface_args(ckpt, out, data, "--checkpoint-every", "0", "--progress", grid="-1:1:41")
    proc = lossland(args, environ=env())
    try:
        assert wait_for(out.exists, 60)  # the first checkpoint: the engine is running
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == code, err
    lines = [line for line in err.splitlines() if line.startswith("lossland:")]
    assert len(lines) == 1, err
    match = re.fullmatch(
        rf"lossland: interrupted; (\d+) of 1681 points saved in {re.escape(str(out))}; "
        "rerun the same command to resume",
        lines[0],
    )
    assert match, lines[0]
    saved = Surface.load(out)
    assert int(saved.done.sum()) == int(match.group(1)) > 0
    assert not lock_path(out).exists()
