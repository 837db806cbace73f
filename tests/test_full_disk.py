"""A full disk ends every writer with one line, exit 2, the old file intact.

The disk is real: a 100 KiB tmpfs (CI runs as root; elsewhere the tests skip), filled to its
last page after the old file is in place. Every writer of the CLI then replaces that old file
(``--overwrite``) and must end with one ``lossland: error:`` line naming the full disk, exit
status 2, the old file byte-for-byte unchanged and no temporary file left behind.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faultkit import surface_args, write_checkpoint, write_data
from helpers import assert_one_line, torch_threads
from lossland.cli import main
from lossland.io import Surface

FREE = 4096  # bytes left on the disk once it is filled: smaller than every file written here


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Data, a checkpoint, its 3x3 surface with directions, and a 40x40 bowl surface."""
    folder = tmp_path_factory.mktemp("disk_world")
    data = write_data(folder / "data", n=32)
    ckpt = write_checkpoint(folder / "good.safetensors")
    good = folder / "good.h5"
    saved = f"{good}.directions.safetensors"  # random directions are saved only when asked
    assert main(surface_args(ckpt, good, data, "--save-directions", saved, grid="-1:1:3")) == 0
    x = np.linspace(-1, 1, 40)
    bowl = Surface.empty(x, x, split="train")
    X, Y = np.meshgrid(x, x)
    bowl.loss[...], bowl.acc[...], bowl.done[...] = X**2 + Y**2 + 0.1, 0.5, True
    bowl.save(folder / "bowl.h5")
    return {"data": data, "ckpt": ckpt, "good": good, "bowl": folder / "bowl.h5"}


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({done.stderr.strip()[:80]}): run as root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def fill(disk: Path) -> None:
    """Leave ``FREE`` bytes on the disk."""
    stats = os.statvfs(disk)
    (disk / "filler").write_bytes(b"\0" * max(stats.f_bavail * stats.f_frsize - FREE, 0))


def _surface(w: dict[str, Path], out: Path, directions: Path) -> list[Any]:
    extra = ["--save-directions", str(directions), "--overwrite", "--seed", "3"]
    return surface_args(w["ckpt"], out, w["data"], *extra, grid="-1:1:3")


def _train(w: dict[str, Path], out: Path, *extra: Any) -> list[Any]:
    options = ["--width", "0.25", "--limit", "32", "--no-progress", "--overwrite"]
    return ["train", "--data-dir", w["data"], *options, "-o", out, *extra]


def _hessian(w: dict[str, Path], out: Path) -> list[Any]:
    options = ["--k", "1", "--probes", "0", "--iterations", "3", "--device", "cpu"]
    return [
        "hessian",
        w["ckpt"],
        "--data-dir",
        w["data"],
        "--samples",
        "all",
        *options,
        "--save-directions",
        out,
        "--overwrite",
    ]


def _path(w: dict[str, Path], out: Path) -> list[Any]:
    starts = ["--start", "0.9,0.9", "--start=-0.9,0.9", "--start", "0.9,-0.9"]
    options = ["--optimizer", "sgd", "--lr", "0.001", "--steps", "2000", "--overwrite"]
    return ["path", w["bowl"], *starts, *options, "-o", out]


def _export(fmt: str) -> Callable[[dict[str, Path], Path, Path], list[Any]]:
    return lambda w, d, old: ["export", w["bowl"], "-o", old, "--overwrite"]


# writer → (the old file, relative to the disk; its old bytes; the command replacing it, given
# the world, the disk and the old file's path). Files a command writes beside its target go
# outside the disk (d.parent), so the target is what fills it.
WRITERS: dict[str, tuple[str, Callable[[dict[str, Path]], bytes], Callable[..., list[Any]]]] = {
    "surface file": (
        "s.h5",
        lambda w: w["good"].read_bytes(),
        lambda w, d, old: _surface(w, old, d.parent / "side.safetensors"),
    ),
    "directions": (
        "d.safetensors",
        lambda w: Path(f"{w['good']}.directions.safetensors").read_bytes(),
        lambda w, d, old: _surface(w, d.parent / "s.h5", old),
    ),
    "hessian directions": (
        "h.safetensors",
        lambda w: Path(f"{w['good']}.directions.safetensors").read_bytes(),
        lambda w, d, old: _hessian(w, old),
    ),
    "checkpoint": (
        "m.safetensors",
        lambda w: w["ckpt"].read_bytes(),
        lambda w, d, old: _train(w, old),
    ),
    "trajectory checkpoint": (
        "traj/step_0000000.safetensors",
        lambda w: w["ckpt"].read_bytes(),
        lambda w, d, old: _train(
            w, d.parent / "m.safetensors", "--save-every", "1", "--trajectory-dir", old.parent
        ),
    ),
    "plot": (
        "bowl_contour.png",
        lambda w: b"an old figure\n" * 10,
        lambda w, d, old: ["plot", w["bowl"], "-o", d, "--overwrite"],
    ),
    "viewer": (
        "v.html",
        lambda w: b"<html>an old page</html>\n",
        lambda w, d, old: ["view", w["bowl"], "-o", old, "--overwrite"],
    ),
    "export csv": ("e.csv", lambda w: b"x,y,loss\n", _export("csv")),
    "export npz": ("e.npz", lambda w: b"an old npz", _export("npz")),
    "export vtp": ("e.vtp", lambda w: b"<VTKFile/>\n", _export("vtp")),
    "export obj": ("e.obj", lambda w: b"o old\n", _export("obj")),
    "paths": ("p.csv", lambda w: b"path,x,y\n", lambda w, d, old: _path(w, old)),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_full_disk_keeps_the_old_file(world, disk, capsys, writer):
    name, old_bytes, command = WRITERS[writer]
    old = disk / name
    old.parent.mkdir(exist_ok=True)
    before = old_bytes(world)
    old.write_bytes(before)
    fill(disk)
    args = command(world, disk, old)
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lossland: error:")]
    assert code == 2, err
    assert len(lines) == 1, err
    assert_one_line(lines[0])
    assert "disk full" in lines[0] and str(disk) in lines[0], lines[0]
    assert old.read_bytes() == before
    left = sorted(str(p.relative_to(disk)) for p in disk.rglob("*") if p.is_file())
    assert left == sorted([name, "filler"]), left  # no temporary or lock file
    if old.suffix == ".h5":
        assert Surface.load(old).complete


def test_disk_full_at_a_mid_run_checkpoint_keeps_the_last_good_one(
    world, disk, capsys, monkeypatch
):
    """The surface's periodic checkpoints: the first fits on the disk, the second does not.
    The disk fills while the run goes (another writer): the check of the run's cost at its
    start (which refuses a disk without room for the file and its rewrite) found room."""
    from lossland.core import _cost

    monkeypatch.setattr(_cost, "free_disk", lambda folder: None)  # None: not known
    probe = disk.parent / "probe.h5"
    assert main(surface_args(world["ckpt"], probe, world["data"])) == 0
    size = probe.stat().st_size  # every checkpoint of this grid is about this large
    out = disk / "s.h5"
    args = surface_args(world["ckpt"], out, world["data"], "--checkpoint-every", "0")
    args += ["--save-directions", str(disk.parent / "d.safetensors")]
    stats = os.statvfs(disk)
    # Room for the first checkpoint's temporary file, not for a second one beside it.
    room = int(1.5 * size)
    (disk / "filler").write_bytes(b"\0" * max(stats.f_bavail * stats.f_frsize - room, 0))
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lossland:")]
    assert code == 2 and len(lines) == 1, err
    assert "disk full" in lines[0] and "rerun" in lines[0], lines[0]
    kept = Surface.load(out)  # the last checkpoint that fitted
    assert 0 < kept.done.sum() < kept.done.size
    assert sorted(p.name for p in disk.iterdir()) == ["filler", "s.h5"]
    (disk / "filler").unlink()
    assert main(args) == 0  # with space again, the same command resumes
    assert Surface.load(out).complete
