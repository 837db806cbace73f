"""Sharded models (``shard=True`` / ``--shard``): FSDP2 over gloo on CPU equals one process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist

import shardkit
from faultkit import (
    env,
    lossland_lines,
    surface_args,
    torchrun,
    write_checkpoint,
    write_data,
    write_fault_model,
)
from helpers import torch_threads
from lossland import SurfaceOptions
from lossland.cli import main
from lossland.errors import LosslandError
from lossland.io import Surface

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="no torch.distributed gloo"
)
KIT = Path(shardkit.__file__)


def launch(
    *args: str, nproc: int = 2, paths: tuple[Path, ...] = (), **extra: str
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(nproc), str(KIT), *args]
    return subprocess.run(
        command, env=env(*paths, **extra), capture_output=True, text=True, timeout=240, check=False
    )


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every case of shardkit computed by two ranks sharing one network."""
    folder = tmp_path_factory.mktemp("sharded")
    result = launch(str(folder))
    assert result.returncode == 0, result.stderr
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("case", list(shardkit.CASES))
def test_two_ranks_sharing_a_network_equal_one_process(sharded, case):
    if case.startswith("gpt2"):
        pytest.importorskip("transformers")
    two = Surface.load(sharded / f"{case}.h5")
    with torch_threads(1):
        # the same memory format as the shards (a conv net is channels_last alone otherwise)
        one = shardkit.compute(case, None, memory_format="contiguous")
    assert two.complete and two.attrs["processes"] == 2
    assert two.attrs["settings"]["shard"] == 2 and one.attrs["settings"]["shard"] == 1
    np.testing.assert_allclose(two.loss, one.loss, rtol=1e-6, atol=0)
    np.testing.assert_allclose(two.acc, one.acc, rtol=1e-6, atol=0)
    np.testing.assert_allclose(two.loss_sem, one.loss_sem, rtol=1e-6, atol=0)
    ignored = {"shard"}
    assert {k: v for k, v in two.settings.items() if k not in ignored} == {
        k: v for k, v in one.settings.items() if k not in ignored
    }


@pytest.mark.slow
def test_one_process_resumes_a_sharded_file(sharded, tmp_path):
    """``shard`` does not change a value: one process accepts the sharded file as its own."""
    copy = tmp_path / "s.h5"
    copy.write_bytes((sharded / "mlp plane.h5").read_bytes())
    with torch_threads(1):
        resumed = shardkit.compute("mlp plane", copy)
    assert resumed.complete and resumed.attrs["points_computed"] == 0


@pytest.mark.slow
def test_groups_of_two_ranks_take_rows_like_processes(tmp_path):
    """Four ranks, two groups of two sharing a network each: the groups split the rows (a line:
    its points) as two processes would, and the surface is the one process's."""
    result = launch(str(tmp_path), "2", nproc=4)
    assert result.returncode == 0, result.stderr
    for case in ("mlp plane", "mlp line"):
        four = Surface.load(tmp_path / f"{case}.h5")
        with torch_threads(1):
            one = shardkit.compute(case, None)
        assert four.attrs["processes"] == 4 and four.attrs["settings"]["shard"] == 2
        np.testing.assert_allclose(four.loss, one.loss, rtol=1e-6, atol=0)
        np.testing.assert_allclose(four.loss_sem, one.loss_sem, rtol=1e-6, atol=0)


@pytest.mark.slow
def test_each_rank_holds_about_half(sharded):
    """Flat buffer, δ, η and θ* copies per rank: about half of one process's (the padding
    rows and biases aside), with FSDP's local shards views of the flat buffer."""
    alone = shardkit.held(1)
    for rank in (0, 1):
        held = json.loads((sharded / f"held-{rank}.json").read_text())
        assert held["views"]
        assert held["parameters"] == alone["parameters"]
        assert 0.45 * alone["bytes"] <= held["bytes"] <= 0.55 * alone["bytes"], (held, alone)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("shardcli")
    data = write_data(folder / "data", n=48)
    write_fault_model(folder / "mods", folder / "fault.safetensors")
    return data, folder / "mods"


@pytest.mark.slow
def test_killed_ranks_resume_to_the_one_process_surface(inputs, tmp_path):
    data, mods = inputs
    ckpt = mods.parent / "fault.safetensors"
    model = ("--model", "faultmodel:factory")
    out, ref = tmp_path / "s.h5", tmp_path / "ref.h5"
    args = surface_args(
        ckpt, out, data, *model, "--shard", "--checkpoint-every", "0", grid="-1:1:7"
    )
    # both ranks evaluate every point (one forward each); rank 1 dies at its 20th
    killed = torchrun(
        args,
        nproc=2,
        environ=env(mods, FAULT="kill", FAULT_RANK="1", FAULT_AFTER="20"),
        timeout=120,
    )
    assert killed.returncode != 0
    assert len(lossland_lines(killed.stderr)) <= 1, killed.stderr
    partial = Surface.load(out)  # rank 0 saved what the pair had finished
    assert 0 < partial.done.sum() < partial.done.size
    resumed = torchrun(args, nproc=2, environ=env(mods), timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    final = Surface.load(out)
    assert final.complete and final.attrs["points_computed"] == final.done.size - partial.done.sum()
    sys.path.insert(0, str(mods))
    try:
        with torch_threads(1):
            assert main(surface_args(ckpt, ref, data, *model, grid="-1:1:7")) == 0
    finally:
        sys.path.remove(str(mods))
        sys.modules.pop("faultmodel", None)
    np.testing.assert_allclose(final.loss, Surface.load(ref).loss, rtol=1e-6, atol=0)


# (case, flags rank 1 drops, flags it adds, the setting rank 0 names)
MISMATCHES = [
    ("--shard on rank 0 only", "--shard", "", "shard"),
    ("another seed on rank 1", "", "--seed 3", "directions"),
    ("another grid on rank 1", "", "--x -2:2:3", "x"),
]


@pytest.mark.slow
def test_ranks_of_other_settings_are_refused_in_one_line(inputs, tmp_path):
    data, mods = inputs
    out = tmp_path / "s.h5"
    ckpt = mods.parent / "fault.safetensors"
    args = surface_args(ckpt, out, data, "--model", "faultmodel:factory", "--shard", grid="-1:1:3")
    cases = json.dumps([[drop, add] for _, drop, add, _ in MISMATCHES])
    refused = launch("cli", cases, *args, paths=(mods,))  # every case in one job, in turn
    assert refused.returncode == 0, refused.stderr
    lines = lossland_lines(refused.stderr)
    assert len(lines) == len(MISMATCHES), refused.stderr  # one line each, from rank 0
    for (case, _, _, named), line in zip(MISMATCHES, lines, strict=True):
        assert f"rank 1 computes different {named} than rank 0" in line, (case, line)
    assert not out.exists()


def test_shard_outside_torchrun_is_refused_in_one_line(monkeypatch, tmp_path, capsys):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(LosslandError, match=r"^shard splits the model .* torchrun") as caught:
        shardkit.compute("mlp line", tmp_path / "s.h5", shard=True)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "s.h5").exists()
    data, ckpt = write_data(tmp_path / "data", n=8), write_checkpoint(tmp_path / "m.safetensors")
    assert main(surface_args(ckpt, tmp_path / "s.h5", data, "--shard", grid="-1:1:3")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "lossland: error: --shard splits the model across the processes of a torchrun job: "
        "launch with torchrun --nproc_per_node N (N ≥ 2), or drop --shard"
    ]
    assert not (tmp_path / "s.h5").exists()


REFUSED = [
    ({"shard": False, "shard_ranks": 2}, "shard_ranks sizes"),
    ({"scheme": "linear2x"}, "scheme linear2x"),
    ({"offload": True}, "offload"),
    ({"compile": True}, "compile"),
    ({"bn": "recompute"}, "bn recompute"),
    ({"points_per_batch": 4}, "points_per_batch"),
    ({"memory_format": "channels_last"}, "memory_format"),
]


@pytest.mark.parametrize(("options", "named"), REFUSED)
def test_options_shard_cannot_run_with_are_refused(options, named):
    with pytest.raises(
        LosslandError, match=f"^shard: .*{named}|^shard keeps .*{named}|^{named}"
    ) as caught:
        SurfaceOptions(**{"shard": True, **options})
    assert "\n" not in str(caught.value)
    if "shard" not in options:
        SurfaceOptions(**options)  # without shard: accepted


@pytest.mark.parametrize(
    ("options", "ranks", "k"),
    [
        ({"shard": False}, 4, 1),
        ({"shard": True}, 4, 4),
        ({"shard": True, "shard_ranks": 2}, 4, 2),
        ({"shard": True, "shard_ranks": 1}, 3, 1),
        ({"shard": True, "shard_ranks": 3}, 4, None),
        ({"shard": True, "shard_ranks": 8}, 4, None),
    ],
)
def test_groups_divide_the_job(options, ranks, k):
    from lossland.run._surface import _shard_ranks

    if k is None:
        with pytest.raises(LosslandError, match=r"^shard_ranks \d does not divide the job's 4"):
            _shard_ranks(SurfaceOptions(**options), ranks)
    else:
        assert _shard_ranks(SurfaceOptions(**options), ranks) == k


@pytest.mark.parametrize(("batches", "k"), [(1, 2), (2, 2), (3, 2), (5, 2), (4, 4), (5, 3), (7, 4)])
def test_a_group_shares_the_batches_turn_by_turn(batches, k):
    """Each batch is exactly one rank's, in order; every rank forwards once a turn, the same
    number of turns (FSDP's gathers need all of them)."""
    from lossland.engine._shard import Share

    turns = []
    for rank in range(k):
        share = Share.__new__(Share)  # (its collectives are not needed here)
        share.rank, share.k = rank, k
        turns.append(list(share.turns(range(batches))))
    assert len({len(t) for t in turns}) == 1  # the same forwards on every rank
    assert len(turns[0]) == -(-batches // k)
    mine = sorted(b for t in turns for b, own in t if own)
    assert mine == list(range(batches))
    for rank, t in enumerate(turns):
        assert all(own == (b % k == rank) for b, own in t)
