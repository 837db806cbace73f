"""Hostile and broken inputs through the CLI: one-line errors, exit 2, no result damaged.

Every case runs ``lossland surface`` (or ``lossland info``) against an existing, complete surface
file, and checks the file is byte-for-byte unchanged afterwards.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from faultkit import surface_args, write_checkpoint, write_data
from helpers import assert_one_line, torch_threads
from lossland.cli import main
from lossland.io import Surface


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on a shared two-core machine run far faster on one intra-op thread."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Data, a good checkpoint, and a complete surface computed from them."""
    folder = tmp_path_factory.mktemp("hostile")
    data = write_data(folder / "data", n=32)
    ckpt = write_checkpoint(folder / "good.safetensors")
    good = folder / "good.h5"
    saved = f"{good}.directions.safetensors"  # random directions are saved only when asked
    assert main(surface_args(ckpt, good, data, "--save-directions", saved, grid="-1:1:3")) == 0
    return {"folder": folder, "data": data, "ckpt": ckpt, "good": good}


@pytest.fixture
def result(world: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of the complete surface (and its directions) that a test may target."""
    out = tmp_path / "s.h5"
    out.write_bytes(world["good"].read_bytes())
    directions = Path(f"{world['good']}.directions.safetensors")
    Path(f"{out}.directions.safetensors").write_bytes(directions.read_bytes())
    return out


def fails(capsys: pytest.CaptureFixture[str], args: list[str], *expected: str) -> str:
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lossland:")]
    assert code == 2, err
    assert len(lines) == 1, err
    assert_one_line(lines[0])
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def unchanged(path: Path, before: bytes) -> None:
    assert path.read_bytes() == before
    assert Surface.load(path).complete


# --- checkpoints ---------------------------------------------------------------------------------


class Payload:
    """Unpickling this runs ``os.system`` — if anything ever unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _zip_pickle(path: Path, obj: object) -> None:
    torch.save(obj, path)


def _raw_pickle(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj))


@pytest.mark.parametrize("writer", [_zip_pickle, _raw_pickle], ids=["torch.save", "raw pickle"])
def test_pickle_with_code_never_runs(world, result, tmp_path, capsys, writer):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    writer(ckpt, {"0.weight": Payload(marker)})
    before = result.read_bytes()
    fails(capsys, surface_args(ckpt, result, world["data"], "--model", "small", "--width", "0.25"))
    assert not marker.exists(), "the pickle payload ran"
    unchanged(result, before)


def test_pickled_whole_model_is_refused(world, result, tmp_path, capsys):
    from lossland.zoo import small

    ckpt = tmp_path / "model.pt"
    torch.save(small(width=0.25), ckpt)
    before = result.read_bytes()
    line = fails(capsys, surface_args(ckpt, result, world["data"], "--model", "small"))
    assert "weights_only" in line or "not plain tensors" in line
    unchanged(result, before)


@pytest.mark.parametrize("cut", [0, 5, 8, 100, -50, -1])
def test_truncated_safetensors_checkpoint(world, result, tmp_path, capsys, cut):
    raw = world["ckpt"].read_bytes()
    ckpt = tmp_path / "cut.safetensors"
    ckpt.write_bytes(raw[:cut])
    before = result.read_bytes()
    fails(capsys, surface_args(ckpt, result, world["data"], "--model", "small", "--width", "0.25"))
    unchanged(result, before)


def test_corrupt_safetensors_header(world, result, tmp_path, capsys):
    raw = bytearray(world["ckpt"].read_bytes())
    raw[20:40] = b"\xff" * 20  # inside the JSON header
    ckpt = tmp_path / "bad.safetensors"
    ckpt.write_bytes(bytes(raw))
    before = result.read_bytes()
    fails(capsys, surface_args(ckpt, result, world["data"], "--model", "small", "--width", "0.25"))
    unchanged(result, before)


def test_truncated_torch_zip_checkpoint(world, result, tmp_path, capsys):
    from lossland.io import load_checkpoint

    ckpt = tmp_path / "cut.pt"
    torch.save(load_checkpoint(world["ckpt"]).state_dict, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:-200])
    before = result.read_bytes()
    fails(capsys, surface_args(ckpt, result, world["data"], "--model", "small", "--width", "0.25"))
    unchanged(result, before)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights(world, result, tmp_path, capsys, bad):
    from lossland.io import load_checkpoint, save_checkpoint

    state = dict(load_checkpoint(world["ckpt"]).state_dict)
    name = next(k for k, v in state.items() if v.is_floating_point() and v.dim() > 1)
    state[name] = state[name].clone()
    state[name].view(-1)[3] = bad
    ckpt = save_checkpoint(state, tmp_path / "nan.safetensors")
    before = result.read_bytes()
    fails(
        capsys,
        surface_args(ckpt, result, world["data"], "--model", "small", "--width", "0.25"),
        "NaN or inf",
        name,
    )
    unchanged(result, before)


# --- directions --------------------------------------------------------------------------------


def test_corrupt_or_truncated_directions_file(world, result, tmp_path, capsys):
    good = Path(f"{world['good']}.directions.safetensors").read_bytes()
    before = result.read_bytes()
    for name, raw in (("cut", good[: len(good) // 2]), ("junk", b"\x00" * 64), ("empty", b"")):
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(raw)
        fails(
            capsys,
            surface_args(world["ckpt"], result, world["data"], "--directions", str(path)),
            str(path),
        )
        unchanged(result, before)


def test_non_finite_directions_file(world, result, tmp_path, capsys):
    from lossland.directions import Directions

    directions = Directions.load(Path(f"{world['good']}.directions.safetensors"))
    name = next(iter(directions.x))
    directions.x[name].view(-1)[0] = float("nan")
    path = directions.save(tmp_path / "nan.safetensors")
    before = result.read_bytes()
    fails(
        capsys,
        surface_args(world["ckpt"], result, world["data"], "--directions", str(path)),
        "NaN or inf",
    )
    unchanged(result, before)


# --- surface files -------------------------------------------------------------------------------


def _rewrite(name: str, data: object) -> Callable[[h5py.File], None]:
    def mutate(f: h5py.File) -> None:
        del f[name]
        f.create_dataset(name, data=data)

    return mutate


def _set_attr(name: str, value: object) -> Callable[[h5py.File], None]:
    def mutate(f: h5py.File) -> None:
        f.attrs[name] = value

    return mutate


BROKEN_SURFACES: dict[str, tuple[Callable[[h5py.File], None], str]] = {
    "loss wrong shape": (_rewrite("train_loss", np.zeros((2, 3))), "shaped"),
    "loss 1-D": (_rewrite("train_loss", np.zeros(9)), "shaped"),
    "loss strings": (_rewrite("train_loss", np.array([[b"a"] * 3] * 3)), "not numeric"),
    "loss complex": (_rewrite("train_loss", np.zeros((3, 3), dtype=complex)), "not numeric"),
    "acc compound": (
        _rewrite("train_acc", np.zeros((3, 3), dtype=[("a", "f8"), ("b", "i4")])),
        "not numeric",
    ),
    "done wrong shape": (_rewrite("done", np.ones((3, 2), dtype=np.uint8)), "shaped"),
    "done not 0/1": (_rewrite("done", np.full((3, 3), 7, dtype=np.uint8)), "not 0/1"),
    "done floats": (_rewrite("done", np.ones((3, 3))), "not 0/1"),
    "x 2-D": (_rewrite("xcoordinates", np.zeros((3, 1))), "dimensions"),
    "x with NaN": (_rewrite("xcoordinates", np.array([0.0, np.nan, 1.0])), "non-finite"),
    "x decreasing": (_rewrite("xcoordinates", np.array([1.0, 0.0, -1.0])), "not strictly"),
    "x empty": (_rewrite("xcoordinates", np.zeros(0)), "empty"),
    "no x": (lambda f: f.__delitem__("xcoordinates"), "no xcoordinates"),
    "y a group": (
        lambda f: (f.__delitem__("ycoordinates"), f.create_group("ycoordinates")),
        "a group",
    ),
    "newer format": (_set_attr("format_version", 99), "upgrade lossland"),
    "bad json attrs": (_set_attr("json_attrs", "{not json"), "json_attrs that is not valid JSON"),
    "settings not json": (_set_attr("settings", "{oops"), "not valid JSON"),
    "trajectory 3 columns": (
        lambda f: f.create_dataset("trajectories/adam", data=np.zeros((4, 3))),
        "expected (T, 2)",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_SURFACES))
def test_broken_surface_files(world, result, capsys, case):
    mutate, expected = BROKEN_SURFACES[case]
    with h5py.File(result, "a") as f:
        mutate(f)
    before = result.read_bytes()
    fails(capsys, ["info", str(result)], expected)
    # Resuming onto it refuses too, and leaves it exactly as it was.
    line = fails(capsys, surface_args(world["ckpt"], result, world["data"], grid="-1:1:3"))
    assert "--overwrite" in line or "upgrade" in line
    assert result.read_bytes() == before


@pytest.mark.parametrize("keep", [0, 8, 100, 512, 2000, -100])
def test_truncated_surface_file(world, result, capsys, keep):
    raw = result.read_bytes()
    result.write_bytes(raw[:keep])
    before = result.read_bytes()
    fails(capsys, ["info", str(result)], "corrupt or not HDF5")
    fails(capsys, surface_args(world["ckpt"], result, world["data"], grid="-1:1:3"), "--overwrite")
    assert result.read_bytes() == before


def test_flipped_bytes_in_the_losses_are_detected(world, result, capsys):
    with h5py.File(result, "r") as f:
        offset = f["train_loss"].id.get_chunk_info(0).byte_offset
    raw = bytearray(result.read_bytes())
    raw[offset + 3] ^= 0xFF  # one byte of a stored loss
    result.write_bytes(bytes(raw))
    fails(capsys, ["info", str(result)], "corrupt")


def test_garbage_and_folder_surface_paths(world, tmp_path, capsys):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(os.urandom(4096))
    fails(capsys, ["info", str(junk)], "corrupt or not HDF5")
    fails(capsys, ["info", str(tmp_path)], "not a regular file")
    fails(capsys, ["info", str(tmp_path / "missing.h5")], "not found")


def test_overwrite_replaces_a_broken_file(world, result, capsys):
    result.write_bytes(b"not a surface at all")
    fails(capsys, surface_args(world["ckpt"], result, world["data"], grid="-1:1:3"), "--overwrite")
    assert (
        main(surface_args(world["ckpt"], result, world["data"], "--overwrite", grid="-1:1:3")) == 0
    )
    assert Surface.load(result).complete


def test_output_path_that_is_another_kind_of_file_is_not_destroyed(world, tmp_path, capsys):
    precious = tmp_path / "weights.safetensors"
    precious.write_bytes(world["ckpt"].read_bytes())
    fails(capsys, surface_args(world["ckpt"], precious, world["data"]), "cannot be resumed")
    assert precious.read_bytes() == world["ckpt"].read_bytes()
