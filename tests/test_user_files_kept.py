"""Nothing a user owns is lost: every command that writes refuses an existing file without
``--overwrite`` (and replaces it with), never writes over one of its inputs, writes through a
symlink instead of swapping it, and leaves the user's files byte-for-byte unchanged when it fails.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import lossland
from helpers import torch_threads
from lossland.cli import main
from lossland.io import Surface, save_checkpoint
from lossland.run import run_lock
from trustkit import (
    PRECIOUS,
    api_fails,
    fails,
    hessian_cmd,
    make_world,
    outcome,
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


# --- nothing a user owns is overwritten without --overwrite -----------------------------


def _writer_surface(w: dict[str, Path], out: Path) -> list[Any]:
    return surface_cmd(w, w["ckpt"], out, "--save-directions", out.parent / "side.safetensors")


def _writer_directions(w: dict[str, Path], out: Path) -> list[Any]:
    return surface_cmd(w, w["ckpt"], out.parent / "beside.h5", "--save-directions", out)


def _writer_hessian(w: dict[str, Path], out: Path) -> list[Any]:
    return hessian_cmd(w, w["ckpt"], "--save-directions", out)


def _writer_train(w: dict[str, Path], out: Path) -> list[Any]:
    return train_cmd(w, out, "--init", w["ckpt"])


def _writer_plot(w: dict[str, Path], out: Path) -> list[Any]:
    return ["plot", w["good"], "-o", out.parent]  # out is <folder>/good_contour.png


def _writer_path(w: dict[str, Path], out: Path) -> list[Any]:
    return ["path", w["good"], "--start", "0,0", "--steps", "3", "-o", out]


def _writer_view(w: dict[str, Path], out: Path) -> list[Any]:
    return ["view", w["good"], "-o", out]


def _writer_export(w: dict[str, Path], out: Path) -> list[Any]:
    return ["export", w["good"], "--format", "csv", "-o", out]


# Every command that writes: (the command writing ``out``, out's name, the input that out may
# be made equal to in the "input" situation, or None where no input can share out's name).
WRITERS: dict[str, tuple[Callable[[dict[str, Path], Path], list[Any]], str, str | None]] = {
    "surface -o": (_writer_surface, "s.h5", "ckpt"),
    "surface --save-directions": (_writer_directions, "d.safetensors", "ckpt"),
    "hessian --save-directions": (_writer_hessian, "h.safetensors", "ckpt"),
    "train -o": (_writer_train, "m.safetensors", "ckpt"),
    "plot -o": (_writer_plot, "good_contour.png", None),
    "path -o": (_writer_path, "p.csv", None),
    "view -o": (_writer_view, "v.html", "good"),
    "export -o": (_writer_export, "e.csv", "good"),
}


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _char_device(path: Path) -> None:
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    except PermissionError:
        pytest.skip("mknod needs root: the FIFO row covers special files")


def _check_kind(path: Path, test: Callable[[int], bool]) -> None:
    assert test(path.lstat().st_mode), f"{path} changed kind"


@pytest.mark.parametrize("writer", list(WRITERS))
def test_existing_file_is_kept_without_overwrite_and_replaced_with_it(
    world, tmp_path, capsys, writer
):
    build, name, _ = WRITERS[writer]
    out = tmp_path / name
    out.write_bytes(PRECIOUS)
    fails(capsys, build(world, out), "--overwrite")
    assert out.read_bytes() == PRECIOUS
    code, lines = outcome(capsys, [*build(world, out), "--overwrite"])
    assert code == 0, lines
    assert out.read_bytes() != PRECIOUS and not out.is_symlink()


@pytest.mark.parametrize("writer", [w for w, (_, _, source) in WRITERS.items() if source])
def test_output_equal_to_an_input_is_always_refused(world, tmp_path, capsys, writer):
    build, _, source = WRITERS[writer]
    assert source is not None
    victim = tmp_path / world[source].name
    victim.write_bytes(world[source].read_bytes())
    w = {**world, source: victim}  # the command reads this copy, and is told to write it
    before = victim.read_bytes()
    fails(capsys, [*build(w, victim), "--overwrite"], "input")
    assert victim.read_bytes() == before


@pytest.mark.parametrize("writer", list(WRITERS))
def test_symlink_is_written_through_never_swapped(world, tmp_path, capsys, writer):
    build, name, _ = WRITERS[writer]
    target = tmp_path / "real" / name
    target.parent.mkdir()
    target.write_bytes(PRECIOUS)
    link = tmp_path / name
    link.symlink_to(target)
    fails(capsys, build(world, link), "--overwrite")
    assert target.read_bytes() == PRECIOUS and link.is_symlink()
    code, lines = outcome(capsys, [*build(world, link), "--overwrite"])
    assert code == 0, lines
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert target.read_bytes() != PRECIOUS
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("writer", list(WRITERS))
def test_dangling_symlink_creates_its_target(world, tmp_path, capsys, writer):
    build, name, _ = WRITERS[writer]
    target = tmp_path / "real" / name
    target.parent.mkdir()
    link = tmp_path / name
    link.symlink_to(target)
    code, lines = outcome(capsys, build(world, link))
    assert code == 0, lines
    assert link.is_symlink() and target.is_file()


SPECIAL: dict[str, tuple[Callable[[Path], None], Callable[[int], bool], str]] = {
    "folder": (lambda p: p.mkdir(), stat.S_ISDIR, "is a folder"),
    "fifo": (_fifo, stat.S_ISFIFO, "is a FIFO"),
    "char device": (_char_device, stat.S_ISCHR, "is a character device"),
}


@pytest.mark.parametrize("kind", list(SPECIAL))
@pytest.mark.parametrize("writer", list(WRITERS))
def test_special_files_are_never_replaced(world, tmp_path, capsys, writer, kind):
    build, name, _ = WRITERS[writer]
    make, is_kind, expected = SPECIAL[kind]
    out = tmp_path / name
    make(out)
    fails(capsys, [*build(world, out), "--overwrite"], expected)
    _check_kind(out, is_kind)


@pytest.fixture(scope="module")
def read_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder nobody can write into: a read-only tmpfs as root, else a 0555 folder."""
    folder = tmp_path_factory.mktemp("ro")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(folder)], check=False
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (root writes into 0555 folders)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize("writer", list(WRITERS))
def test_read_only_place_is_refused_before_any_work(world, read_only, capsys, writer):
    build, name, _ = WRITERS[writer]
    fails(capsys, [*build(world, read_only / name), "--overwrite"], str(read_only))
    assert not list(read_only.iterdir())


def test_concurrent_run_is_refused_before_its_directions_are_saved(world, tmp_path, capsys):
    out = tmp_path / "s.h5"
    out.write_bytes(world["good"].read_bytes())
    directions = Path(f"{out}.directions.safetensors")
    directions.write_bytes(Path(f"{world['good']}.directions.safetensors").read_bytes())
    before = snapshot(tmp_path)
    with run_lock(out):  # another run is writing s.h5
        args = surface_cmd(world, world["ckpt"], out, "--overwrite", "--seed", "7")
        fails(capsys, args, "another lossland run")
    assert snapshot(tmp_path) == before


REFUSED_RUNS: dict[str, tuple[list[str], str]] = {
    "x overflows": (["--x", "-1e308:1e308:3"], "overflows"),
    "x too narrow": (["--x", "1:1.0000000000000002:3"], "too narrow"),
    "tf32 on the CPU": (["--precision", "tf32"], "tf32 needs a CUDA device"),
    "checkpoint every nan": (["--checkpoint-every", "nan"], "--checkpoint-every"),
    "a grid too large": (["--x", "-1:1:10001", "--y", "-1:1:10001"], "more than the"),
}


@pytest.mark.parametrize("case", list(REFUSED_RUNS))
def test_a_refused_run_writes_nothing(world, tmp_path, capsys, case):
    extra, expected = REFUSED_RUNS[case]
    fails(capsys, [*surface_cmd(world, world["ckpt"], tmp_path / "s.h5"), *extra], expected)
    assert not list(tmp_path.iterdir()), "a refused run left a file"


def test_resuming_keeps_the_runs_own_directions_file(world, tmp_path, capsys):
    out = tmp_path / "s.h5"
    assert outcome(capsys, surface_cmd(world, world["ckpt"], out))[0] == 0
    before = snapshot(tmp_path)
    assert outcome(capsys, surface_cmd(world, world["ckpt"], out))[0] == 0  # complete: resumed
    assert snapshot(tmp_path) == before


def test_directions_beside_a_new_surface_are_kept_without_overwrite(world, tmp_path, capsys):
    out = tmp_path / "s.h5"
    directions = Path(f"{out}.directions.safetensors")
    directions.write_bytes(PRECIOUS)
    asked = surface_cmd(world, world["ckpt"], out, "--save-directions", directions)
    fails(capsys, asked, "--save-directions", "--overwrite")
    assert directions.read_bytes() == PRECIOUS and not out.exists()
    # Not asked: random directions are stored as their recipe, the file beside is left be.
    assert main([str(a) for a in surface_cmd(world, world["ckpt"], out)]) == 0
    assert directions.read_bytes() == PRECIOUS and out.exists()


def test_save_directions_onto_the_surface_itself_is_refused(world, tmp_path, capsys):
    out = tmp_path / "s.h5"
    fails(
        capsys,
        surface_cmd(world, world["ckpt"], out, "--save-directions", out, "--overwrite"),
        "input",
    )
    assert not out.exists()


def test_plot_refuses_before_drawing_any_figure(world, tmp_path, capsys):
    (tmp_path / "good_heatmap.png").write_bytes(PRECIOUS)  # the third of four figures
    fails(capsys, ["plot", world["good"], "-o", tmp_path], "good_heatmap.png", "--overwrite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good_heatmap.png"]


def test_train_trajectory_files_follow_the_rule(world, tmp_path, capsys):
    folder = tmp_path / "traj"
    args = [*_writer_train(world, tmp_path / "m.safetensors"), "--save-every", "1"]
    args += ["--trajectory-dir", folder]
    assert outcome(capsys, args)[0] == 0
    before = snapshot(tmp_path)
    (tmp_path / "m.safetensors").unlink()
    fails(capsys, args, "step_0000000.safetensors", "--overwrite")
    (folder / "step_0000009.safetensors").write_bytes(PRECIOUS)  # not a step of this run
    fails(capsys, [*args, "--overwrite"], "another run", "step_0000009")
    kept = {k: v for k, v in before.items() if k.startswith(f"{folder}{os.sep}")}
    assert snapshot(folder) == {**kept, str(folder / "step_0000009.safetensors"): PRECIOUS}


def test_demo_refuses_a_file_and_an_earlier_demo(world, tmp_path, capsys):
    file = tmp_path / "demo"
    file.write_bytes(PRECIOUS)
    fails(capsys, ["demo", "-o", file, "--data-dir", world["data"]], "is a file")
    assert file.read_bytes() == PRECIOUS
    folder = tmp_path / "earlier"
    folder.mkdir()
    (folder / "viewer.html").write_bytes(PRECIOUS)
    fails(capsys, ["demo", "-o", folder, "--data-dir", world["data"]], "viewer.html", "--overwrite")
    assert snapshot(folder) == {str(folder / "viewer.html"): PRECIOUS}


def test_api_writers_take_overwrite(world, tmp_path):
    surface = Surface.load(world["good"])
    writers: dict[str, Callable[[Path, bool], object]] = {
        "export": lambda p, o: lossland.export(surface, p, format="csv", overwrite=o),
        "view": lambda p, o: lossland.view(surface, p, overwrite=o),
        "write_paths": lambda p, o: lossland.write_paths(
            [lossland.descend(surface, start=(0.0, 0.0), steps=2)], p, overwrite=o
        ),
        "plot": lambda p, o: lossland.plot(surface, p.parent, overwrite=o),
        "save_checkpoint": lambda p, o: save_checkpoint({"w": torch.zeros(2)}, p, overwrite=o),
    }
    names = {"export": "e.csv", "view": "v.html", "write_paths": "p.csv"}
    names |= {"plot": "surface_contour.png", "save_checkpoint": "c.safetensors"}
    for name, write in writers.items():
        out = tmp_path / names[name]
        out.write_bytes(PRECIOUS)
        api_fails(lambda w=write, p=out: w(p, False), "overwrite")
        assert out.read_bytes() == PRECIOUS
        write(out, True)
        assert out.read_bytes() != PRECIOUS
