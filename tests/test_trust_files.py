"""A file reads only itself, and what it declares is bounded before anything is read or
decompressed.

Every HDF5 reader opens through ``lossland.io.open_hdf5``; npz archives and torch checkpoints
through ``io.check_zip``; IDX ``.gz`` files decompress up to what their header declares; path
files are counted before they are drawn. Each table row builds a hostile file and runs it
through the readers (the CLI in-process, or in a subprocess where a regression would hang or
exhaust the machine: FIFOs, and bombs under an address-space cap), asserting one
``lossland: error:`` line, exit status 2, nothing written, and that no byte of ``/etc/passwd``
reaches any output.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import lossland
from faultkit import SPEC, surface_args, write_checkpoint, write_data
from helpers import assert_one_line, run_capped, torch_threads
from lossland.analysis import robustness
from lossland.cli import main
from lossland.directions import Directions
from lossland.errors import LosslandError
from lossland.io import SeedStack, Surface, read_paths
from lossland.zoo import build_model, write_idx

SECRET = Path("/etc/passwd")
pytestmark = pytest.mark.skipif(not SECRET.is_file(), reason="needs /etc/passwd to leak")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def _markers() -> list[str]:
    """How the secret's bytes would show if read as float64 numbers, or as text."""
    raw = SECRET.read_bytes()
    values = np.frombuffer(raw[: len(raw) // 8 * 8][:64], dtype="<f8")
    shown = [repr(float(v)) for v in values if np.isfinite(v) and v != 0]
    shown += [f"{float(v):g}" for v in values if np.isfinite(v) and v != 0]
    return ["root:x:0", *shown]


def assert_no_leak(*texts: str, folder: Path | None = None) -> None:
    blobs = list(texts)
    if folder is not None and folder.exists():
        blobs += [p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file()]
    for marker in _markers():
        assert not any(marker in blob for blob in blobs), marker


def base_surface(path: Path) -> Path:
    """A 5x4 surface with every dataset a reader reads: samples, interpolated, a trajectory,
    and a stack of two seeds with their robustness figures."""
    rng = np.random.default_rng(0)
    s = Surface.empty(np.linspace(-1, 1, 5), np.linspace(-1, 1, 4), split="train")
    s.store(
        Ellipsis,
        {
            "loss": rng.random((4, 5)) + 0.1,
            "acc": rng.random((4, 5)) * 100,
            "loss_sem": rng.random((4, 5)) * 0.01,
            "samples": np.full((4, 5), 64.0),
        },
    )
    stack = SeedStack(
        (0, 1),
        np.stack([s.loss, s.loss * 1.1]),
        np.stack([s.acc] * 2),
        np.stack([s.loss_sem] * 2),
        np.ones((2, 4, 5), dtype=bool),
        ({}, {}),
    )
    s = replace(
        s,
        interpolated=np.zeros((4, 5), dtype=bool),
        trajectories={"sgd": rng.random((6, 2)) - 0.5},
        stack=stack,
    )
    return s.with_attrs(robustness=robustness(s)).save(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("files")
    fifo = folder / "fifo"
    os.mkfifo(fifo)
    return {
        "folder": folder,
        "base": base_surface(folder / "base.h5"),
        "fifo": fifo,
        "ckpt": write_checkpoint(folder / "model.safetensors"),
        "data": write_data(folder / "data", n=16),
    }


def outcome(capsys: pytest.CaptureFixture[str], args: list[Any]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def refused(code: Any, out: str, err: str, *expected: str) -> str:
    """The outcome is exit 2 with one error line holding ``expected``, and no leak."""
    lines = [line for line in err.splitlines() if line.startswith("lossland:")]
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("lossland: error:"), err[-2000:]
    assert_one_line(lines[0])
    for text in expected:
        assert text in lines[0], lines[0]
    assert_no_leak(out, err)
    return lines[0]


# --- hostile HDF5: data from elsewhere, in every dataset position ------------------------------

POSITIONS = (
    "xcoordinates",
    "ycoordinates",
    "train_loss",
    "train_acc",
    "train_loss_sem",
    "done",
    "train_samples",
    "interpolated",
    "trajectories/sgd",
    "seeds/train_loss",
    "seeds/train_acc",
    "seeds/train_loss_sem",
    "seeds/done",
)


def _source(path: Path, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Path:
    """An HDF5 file whose dataset ``data`` holds the secret's bytes, shaped as asked."""
    size = int(np.prod(shape)) * dtype.itemsize
    raw = (SECRET.read_bytes() * (size // max(1, SECRET.stat().st_size) + 1))[:size]
    with h5py.File(path, "w") as f:
        f["data"] = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return path


def _external(f: Any, name: str, shape: Any, dtype: Any, target: Path) -> None:
    size = int(np.prod(shape)) * dtype.itemsize
    f.create_dataset(name, shape, dtype, external=[(str(target), 0, size)])


def _virtual(f: Any, name: str, shape: Any, dtype: Any, source: Path) -> None:
    layout = h5py.VirtualLayout(shape, dtype)
    layout[...] = h5py.VirtualSource(str(source), "data", shape=shape)
    f.create_virtual_dataset(name, layout)


def _soft(f: Any, name: str, shape: Any, dtype: Any) -> None:
    f.create_dataset("copy", shape, dtype, data=np.ones(shape, dtype))
    f[name] = h5py.SoftLink("/copy")


# kind: (replace dataset `name` of `shape`/`dtype` in the open file `f`, message fragment)
Maker = Callable[[Any, str, Any, Any, Path], None]
KINDS: dict[str, tuple[Maker, str]] = {
    "external storage over /etc/passwd": (
        lambda f, n, s, d, tmp: _external(f, n, s, d, SECRET),
        "stored in another file (external storage)",
    ),
    "external storage over a FIFO": (
        lambda f, n, s, d, tmp: _external(f, n, s, d, tmp.parent / "fifo"),
        "stored in another file (external storage)",
    ),
    "external link": (
        lambda f, n, s, d, tmp: f.__setitem__(
            n, h5py.ExternalLink(str(_source(tmp.with_suffix(".src.h5"), s, d)), "/data")
        ),
        "as an external link",
    ),
    "soft link": (lambda f, n, s, d, tmp: _soft(f, n, s, d), "as a soft link"),
    "virtual dataset": (
        lambda f, n, s, d, tmp: _virtual(f, n, s, d, _source(tmp.with_suffix(".src.h5"), s, d)),
        "as a virtual dataset",
    ),
}
IN_PROCESS = [k for k in KINDS if "FIFO" not in k]  # a FIFO case runs where it cannot hang us


def hostile(world: dict[str, Path], kind: str, position: str, folder: Path) -> Path:
    """The base surface with dataset ``position`` replaced as ``kind`` says."""
    path = folder / f"{kind.replace(' ', '_').replace('/', '_')}-{position.replace('/', '-')}.h5"
    shutil.copy(world["base"], path)
    if not (folder / "fifo").exists():
        os.mkfifo(folder / "fifo")
    make = KINDS[kind][0]
    with h5py.File(path, "a") as f:
        shape, dtype = f[position].shape, f[position].dtype
        del f[position]
        make(f, position, shape, dtype, path)
    return path


def entry_points(world: dict[str, Path], file: Path, out: Path) -> dict[str, list[Any]]:
    """Every command that reads a surface file, writing into ``out``."""
    return {
        "info": ["info", file],
        "plot": ["plot", file, "-o", out],
        "view": ["view", file, "-o", out / "v.html"],
        "export csv": ["export", file, "-o", out / "e.csv"],
        "export npz": ["export", file, "-o", out / "e.npz"],
        "export vtp": ["export", file, "-o", out / "e.vtp"],
        "export obj": ["export", file, "-o", out / "e.obj"],
        "path": ["path", file, "--start", "0,0", "-o", out / "p.csv"],
        "surface resume": surface_args(world["ckpt"], file, world["data"], grid="-1:1:3"),
    }


ENTRY_POINTS = list(entry_points({"ckpt": Path(), "data": Path()}, Path(), Path()))


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("kind", IN_PROCESS)
def test_data_from_elsewhere_at_every_position(world, kind, position, tmp_path, capsys):
    """The issue's leak: ``export --format csv`` and ``lossland.load`` of every position."""
    path = hostile(world, kind, position, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    code, stdout, err = outcome(capsys, ["export", path, "-o", out / "e.csv"])
    line = refused(code, stdout, err, KINDS[kind][1], repr("/" + position))
    assert list(out.iterdir()) == []
    with pytest.raises(LosslandError) as info:
        lossland.load(path)
    assert str(info.value) in line


@pytest.mark.parametrize("position", ["train_acc", "seeds/train_loss"])
@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("kind", IN_PROCESS)
def test_every_reader_refuses(world, kind, entry, position, tmp_path, capsys):
    path = hostile(world, kind, position, tmp_path)
    before = path.read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    code, stdout, err = outcome(capsys, entry_points(world, path, out)[entry])
    refused(code, stdout, err, KINDS[kind][1])
    assert list(out.iterdir()) == []  # nothing written
    assert path.read_bytes() == before  # a resumed run leaves the file alone


@pytest.mark.parametrize("entry", ENTRY_POINTS[:-1])
def test_the_base_file_is_read_by_every_reader(world, entry, tmp_path, capsys):
    """The control: without the hostile dataset, each reader succeeds on the same file."""
    path = shutil.copy(world["base"], tmp_path / "base.h5")
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = outcome(capsys, entry_points(world, Path(path), out)[entry])
    assert code == 0, err


def test_fifos_never_block(world, tmp_path):
    """External storage over a FIFO in every position and through every reader, and a FIFO
    in place of each input file: refused before any read (a subprocess, so that a regression
    fails at the timeout instead of hanging the suite)."""
    kind = "external storage over a FIFO"
    (tmp_path / "out").mkdir()
    cases: list[tuple[list[Any], str]] = []
    for position in POSITIONS:
        path = hostile(world, kind, position, tmp_path)
        cases.append((["export", path, "-o", tmp_path / "out" / "e.csv"], KINDS[kind][1]))
    path = hostile(world, kind, "train_acc", tmp_path)
    cases += [
        (argv, KINDS[kind][1]) for argv in entry_points(world, path, tmp_path / "out").values()
    ]
    cases += _fifo_inputs(world, tmp_path)
    results = run_capped([[str(a) for a in argv] for argv, _ in cases], headroom=None, timeout=240)
    for (_, expected), result in zip(cases, results, strict=True):
        refused(result["code"], str(result["out"]), str(result["err"]), expected)
    assert list((tmp_path / "out").iterdir()) == []
    assert_no_leak(folder=tmp_path / "out")


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _fifo_inputs(world: dict[str, Path], tmp: Path) -> list[tuple[list[Any], str]]:
    """A FIFO in place of every kind of input file (the file itself, not its contents)."""
    base, out, ckpt = world["base"], tmp / "out", world["ckpt"]
    data = write_data(tmp / "fifo-data", n=16)
    (data / "train-images-idx3-ubyte.gz").unlink()
    _fifo(data / "train-images-idx3-ubyte.gz")
    irregular = "is not a regular file"
    return [
        (["info", _fifo(tmp / "s.h5")], irregular),
        (["plot", base, "-o", out, "--path", _fifo(tmp / "p.csv")], irregular),
        (["view", base, "-o", out / "v.html", "--path", _fifo(tmp / "p.json")], irregular),
        (["lossland.read_npz", _fifo(tmp / "e.npz")], irregular),
        (surface_args(ckpt, out / "o.h5", data), "lacks train-images-idx3-ubyte"),
        (surface_args(_fifo(tmp / "m.safetensors"), out / "o.h5", world["data"]), irregular),
        (
            surface_args(ckpt, out / "o.h5", world["data"], "--directions", _fifo(tmp / "d.st")),
            irregular,
        ),
    ]


# --- the rest of what an HDF5 file may hold -----------------------------------------------------


def _edit(edit: Callable[[Any], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        with h5py.File(path, "a") as f:
            edit(f)

    return apply


def _set_attr(name: str, value: Any, group: str = "/") -> Callable[[Path], None]:
    return _edit(lambda f: f[group].attrs.__setitem__(name, value))


def _robustness(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def edit(f: Any) -> None:
        figures = json.loads(f.attrs["robustness"])
        changed = change(figures)
        f.attrs["robustness"] = json.dumps(figures if changed is None else changed)

    return _edit(edit)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:3000])


def _filter(code: int) -> Callable[[Any], None]:
    """``train_acc`` chunked through HDF5 filter ``code``, marked optional so that writing
    it works without the filter (the file still names it)."""

    def edit(f: Any) -> None:
        del f["train_acc"]
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_chunk((4, 5))
        plist.set_filter(code, h5py.h5z.FLAG_OPTIONAL)
        space = h5py.h5s.create_simple((4, 5))
        h5py.h5d.create(f.id, b"train_acc", h5py.h5t.IEEE_F64LE, space, dcpl=plist)

    return edit


def _replace(name: str, **create: Any) -> Callable[[Any], None]:
    def edit(f: Any) -> None:
        del f[name]
        f.create_dataset(name, **create)

    return edit


# case: (how to spoil a copy of the base file, fragment of the error; None: it still loads)
STRUCTURE: dict[str, tuple[Callable[[Path], None], str | None]] = {
    "group linked twice": (_edit(lambda f: f.__setitem__("more", f["seeds"])), "linked twice"),
    "group linked inside itself": (
        _edit(lambda f: f.__setitem__("seeds/loop", f["seeds"])),
        "linked twice",
    ),
    "dataset linked twice (read twice, allowed)": (
        _edit(lambda f: f.__setitem__("trajectories/again", f["trajectories/sgd"])),
        None,
    ),
    "committed datatype (allowed)": (
        _edit(lambda f: f.__setitem__("kind", np.dtype("f8"))),
        None,
    ),
    "scale-offset filter": (
        _edit(_replace("train_acc", data=np.ones((4, 5)), scaleoffset=3)),
        "HDF5 filter 6",
    ),
    "plugin filter (blosc)": (_edit(_filter(32001)), "HDF5 filter 32001"),
    "variable-length dataset": (
        _edit(lambda f: f.create_dataset("trajectories/v", (2,), dtype=h5py.vlen_dtype("f8"))),
        "variable-length",
    ),
    "reference dataset": (
        _edit(lambda f: f.create_dataset("refs", (4,), dtype=h5py.ref_dtype)),
        "reference type",
    ),
    "variable-length attribute array": (
        _edit(lambda f: f.attrs.create("model", ["x" * 100] * 100, dtype=h5py.string_dtype())),
        "holding 100 variable-length values",
    ),
    "truncated file": (_truncate, "corrupt or not HDF5"),
    "not HDF5": (lambda p: p.write_bytes(b"\x89HDF\r\n" + os.urandom(4000)), "not HDF5"),
    "format_version 3.0 (float)": (_set_attr("format_version", 3.0), "format_version 3.0"),
    "format_version 2.5": (_set_attr("format_version", 2.5), "not a whole number"),
    "format_version text": (_set_attr("format_version", "2"), "not a whole number"),
    "format_version true": (_set_attr("format_version", True), "not a whole number"),
    "format_version 0": (_set_attr("format_version", 0), "not a whole number"),
    "format_version a list": (_set_attr("format_version", [2]), "not a whole number"),
    "format_version 3": (_set_attr("format_version", 3), "upgrade lossland"),
    "robustness empty": (_robustness(lambda r: {}), "robustness"),
    "robustness a list": (_robustness(lambda r: [1, 2]), "robustness"),
    "robustness without seeds": (_robustness(lambda r: r.pop("seeds") and None), "robustness"),
    "robustness mean text": (
        _robustness(lambda r: r["log_correlation"].update(mean="x")),
        "robustness",
    ),
    "robustness min missing": (
        _robustness(lambda r: r["log_correlation"].update(min=None)),
        "robustness",
    ),
    "robustness minimum a number": (_robustness(lambda r: r.update(minimum=3)), "robustness"),
    "robustness 400-digit seed": (
        _robustness(lambda r: r.update(seeds=[10**400, 1])),
        "robustness",
    ),
    "direction_cosines a list": (_set_attr("direction_cosines", "[1]"), "direction_cosines"),
    "direction_cosines without max_abs": (
        _set_attr("direction_cosines", '{"pairs": 1, "expected": 0.1}'),
        "direction_cosines",
    ),
}


def _json_keys(path: Path, *keys: str) -> None:
    """Mark ``keys`` as JSON attributes (how the file says an attribute is JSON)."""
    with h5py.File(path, "a") as f:
        listed = json.loads(f.attrs["json_attrs"])
        f.attrs["json_attrs"] = json.dumps(sorted({*listed, *keys}))


@pytest.mark.parametrize("case", list(STRUCTURE))
def test_what_a_surface_file_may_hold(world, case, tmp_path, capsys):
    spoil, expected = STRUCTURE[case]
    path = Path(shutil.copy(world["base"], tmp_path / "s.h5"))
    spoil(path)
    if "direction_cosines" in case:
        _json_keys(path, "direction_cosines")
    code, out, err = outcome(capsys, ["info", path])
    if expected is None:
        assert code == 0, err
        assert lossland.load(path).stack is not None
        return
    refused(code, out, err, expected)
    with pytest.raises(LosslandError, match="surface file"):
        lossland.load(path)


def test_objects_are_counted(world, tmp_path, monkeypatch, capsys):
    """More links and attributes than MAX_OBJECTS is refused before they are read (lowered
    here: the real limit, 100,000, would take long to write)."""
    import lossland.io._hdf5 as hdf5

    path = Path(shutil.copy(world["base"], tmp_path / "s.h5"))
    assert lossland.load(path).complete
    with h5py.File(path, "a") as f:
        for i in range(60):
            f["trajectories"].attrs[f"note{i}"] = i
    monkeypatch.setattr(hdf5, "MAX_OBJECTS", 50)
    refused(*outcome(capsys, ["info", path]), "more than 50 objects")


# --- bombs: declared sizes, bounded before anything is allocated --------------------------------

HEADROOM = 400 << 20  # what the capped process may allocate past its imports


def _h5(path: Path, build: Callable[[Any], None], *, x: int = 5, y: int | None = 4) -> Path:
    with h5py.File(path, "w") as f:
        f.attrs["split"] = "train"
        f["xcoordinates"] = np.linspace(-1, 1, x)
        if y is not None:
            f["ycoordinates"] = np.linspace(-1, 1, y)
        build(f)
    return path


def _dataset(name: str, shape: tuple[int, ...], **create: Any) -> Callable[[Any], None]:
    def build(f: Any) -> None:
        if name in f:
            del f[name]
        f.create_dataset(name, shape, "f8", **create)
        if "train_loss" not in f:
            f["train_loss"] = np.ones((4, 5))

    return build


def _gzip_grid(f: Any) -> None:
    """A 4000x4000 loss grid that keeps its promise: 128 MB of 0.5, gzip-compressed ~1000:1."""
    d = f.create_dataset("train_loss", (4000, 4000), "f8", chunks=(250, 4000), compression=9)
    block = np.full((250, 4000), 0.5)
    for i in range(0, 4000, 250):
        d[i : i + 250] = block


def _chunks(size: int, byte: bytes = b"\0") -> Iterator[bytes]:
    """``size`` bytes of ``byte``, 4 MiB at a time (bombs are built without holding them)."""
    block = byte * (1 << 22)
    for start in range(0, size, len(block)):
        yield block[: min(len(block), size - start)]


Member = tuple[str, tuple[int, ...], Iterator[bytes]]  # name, shape, payload


def _npz(path: Path, members: list[Member], *, declared: dict[str, Any] | None = None) -> Path:
    """An npz archive written member by member; ``declared`` overrides npy header fields."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, shape, payload in members:
            descr = "|b1" if name == "done" else "<f8"
            header = {"descr": descr, "fortran_order": False, "shape": shape}
            header.update((declared or {}).get(name, {}))
            text = repr(header).encode()
            text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                member.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text)
                for chunk in payload:
                    member.write(chunk)
    return path


def _grid_members(nx: int, ny: int) -> list[Member]:
    """A complete grid (every point done), losses of 0.0: compresses about 1000:1."""
    cells = nx * ny
    return [
        ("x", (nx,), iter([np.linspace(-1, 1, nx).tobytes()])),
        ("y", (ny,), iter([np.linspace(-1, 1, ny).tobytes()])),
        *[(name, (ny, nx), _chunks(8 * cells)) for name in ("loss", "acc", "loss_sem")],
        ("done", (ny, nx), _chunks(cells, b"\1")),
    ]


def _npz_size_lie(path: Path) -> Path:
    """A complete, small archive whose zip directory then claims 4 GB for one member."""
    _npz(path, _grid_members(5, 4))
    raw = bytearray(path.read_bytes())
    at = raw.index(b"PK\x01\x02")  # the first central directory entry: its size at +24
    raw[at + 24 : at + 28] = struct.pack("<I", 0xFFFFFFFE)
    path.write_bytes(bytes(raw))
    return path


def _idx_gz(path: Path, dims: tuple[int, ...], payload: Iterator[bytes]) -> Path:
    with gzip.open(path, "wb", compresslevel=6) as out:
        out.write(bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims))
        for chunk in payload:
            out.write(chunk)
    return path


def _data_dir(folder: Path, images: Callable[[Path], Path]) -> Path:
    """Good tiny data with the training images replaced."""
    data = write_data(folder, n=16)
    images(data / "train-images-idx3-ubyte.gz")
    return data


def _torch_zip(path: Path) -> Path:
    """A torch checkpoint of one 250 MB tensor of zeros, its record deflated to ~250 kB."""
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(250 << 18)}, buffer)
    with (
        zipfile.ZipFile(buffer) as plain,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as packed,
    ):
        for info in plain.infolist():
            with plain.open(info) as source, packed.open(info.filename, "w") as record:
                shutil.copyfileobj(source, record, 1 << 22)
    return path


def _seed_stack(f: Any) -> None:
    """10,000 seeds of a 400x400 grid declared, none written (40 GB of fill values)."""
    f["train_loss"] = np.ones((400, 400))
    group = f.create_group("seeds")
    for name in ("train_loss", "train_acc", "train_loss_sem", "done"):
        group.create_dataset(name, (10_000, 400, 400), "u1" if name == "done" else "f8")
    group.attrs["seeds"] = json.dumps(list(range(10_000)))
    group.attrs["attrs"] = json.dumps([{}] * 10_000)


def _big_chunk(f: Any) -> None:
    """Five coordinates in one gzip chunk of 10^8 values (800 MB decoded to read five)."""
    del f["xcoordinates"]
    d = f.create_dataset(
        "xcoordinates", (5,), "f8", maxshape=(None,), chunks=(10**8,), compression="gzip"
    )
    d[:] = np.linspace(-1, 1, 5)
    f["train_loss"] = np.ones((4, 5))


def _paths_csv(path: Path, count: int) -> Path:
    rows = "".join(f"{i},0.1,0.2\n" for i in range(count))
    path.write_text("path,x,y\n" + rows)
    return path


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as out:
        out.truncate(size)  # a hole: no disk used
    return path


def _idx_case(d: Path, w: dict[str, Path], dims: tuple[int, ...], size: int) -> list[Any]:
    """A surface run whose training images are an IDX .gz of ``dims`` holding ``size`` zeros
    (and as many labels, so that only the size can stop it)."""
    data = _data_dir(d / "data", lambda p: _idx_gz(p, dims, _chunks(size)))
    if dims[0] < 10**6:
        write_idx(data / "train-labels-idx1-ubyte.gz", np.zeros(dims[0], dtype=np.uint8))
    return surface_args(w["ckpt"], d / "o.h5", data)


def _with_path(command: str, path: Path) -> Callable[[Path, dict[str, Path]], list[Any]]:
    return lambda d, w: [command, w["base"], "-o", d / "out", "--path", path]


Build = Callable[[Path, dict[str, Path]], list[Any]]
GZIP = {"chunks": True, "compression": "gzip"}

# case: (build it in a folder → lossland arguments, fragment of the one error line)
BOMBS: dict[str, tuple[Build, str]] = {
    "HDF5: 10^9 gzip coordinates in 6 kB": (
        lambda d, w: ["info", _h5(d / "c.h5", _dataset("xcoordinates", (10**9,), **GZIP), y=None)],
        "over 1100x expansion",
    ),
    "HDF5: a (5e8, 2) trajectory": (
        lambda d, w: ["info", _h5(d / "t.h5", _dataset("trajectories/t", (5 * 10**8, 2), **GZIP))],
        "over 1100x expansion",
    ),
    "HDF5: 40000x40000 fill-value loss": (
        lambda d, w: [
            "info",
            _h5(
                d / "f.h5", _dataset("train_loss", (40000, 40000), fillvalue=1.0), x=40000, y=40000
            ),
        ],
        "over 1100x expansion",
    ),
    "HDF5: 5 coordinates in one gzip chunk of 10^8": (
        lambda d, w: ["info", _h5(d / "k.h5", _big_chunk)],
        "of memory to read",
    ),
    "HDF5: a seed stack of 10,000 unwritten 400x400 seeds": (
        lambda d, w: ["plot", _h5(d / "s.h5", _seed_stack, x=400, y=400), "-o", d],
        "over 1100x expansion",
    ),
    "HDF5: a 4000x4000 grid gzipped 1000:1 (keeps its promise)": (
        lambda d, w: ["info", _h5(d / "g.h5", _gzip_grid, x=4000, y=4000)],
        "a grid of 16,000,000 points",
    ),
    "npz: a header declaring 10^9 values in 160 bytes": (
        lambda d, w: [
            "lossland.read_npz",
            _npz(d / "h.npz", _grid_members(5, 4), declared={"loss": {"shape": (10**9,)}}),
        ],
        "declaring (1000000000,)",
    ),
    "npz: a complete archive whose zip entry claims 4 GB": (
        lambda d, w: ["lossland.read_npz", _npz_size_lie(d / "z.npz")],
        "over 1100x expansion",
    ),
    "npz: 400 MB of arrays in 400 kB": (
        lambda d, w: ["lossland.read_npz", _npz(d / "b.npz", _grid_members(4096, 4096))],
        "of memory to read",
    ),
    "IDX .gz: a header declaring 10^9 images": (
        lambda d, w: _idx_case(d, w, (10**9, 28, 28), 1 << 20),
        "over 1100x expansion",
    ),
    "IDX .gz: 100 MB of images in 100 kB": (
        lambda d, w: _idx_case(d, w, (133_000, 28, 28), 133_000 * 784),
        "of memory to read",
    ),
    "IDX .gz: 16 images, then 450 MB more": (
        lambda d, w: _idx_case(d, w, (16, 28, 28), 450 << 20),
        "longer than its header declares",
    ),
    "torch zip: a 250 MB tensor deflated to 250 kB": (
        lambda d, w: surface_args(_torch_zip(d / "m.pt"), d / "o.h5", w["data"]),
        "of memory to read",
    ),
    "path file: 20,000 paths": (
        lambda d, w: _with_path("plot", _paths_csv(d / "p.csv", 20_000))(d, w),
        "more than 1,000 paths",
    ),
    "path file: 5 GB": (
        lambda d, w: _with_path("view", _sparse(d / "p.json", 5 << 30))(d, w),
        "bytes, more than the",
    ),
}


@pytest.fixture(scope="module")
def bombs(world, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every bomb, and as controls the largest legitimate surfaces, read in one process whose
    address space may grow by HEADROOM: a regression fails with a MemoryError (or a wrong
    message) instead of exhausting the machine."""
    folder = tmp_path_factory.mktemp("bombs")
    cases: dict[str, list[Any]] = {}
    for i, (name, (build, _)) in enumerate(BOMBS.items()):
        (folder / str(i)).mkdir()
        cases[name] = build(folder / str(i), world)
    cases["control: a complete 2001x2001 surface loads"] = ["lossland.load", _large(folder)]
    names = list(cases)
    results = run_capped(
        [[str(a) for a in cases[n]] for n in names], headroom=HEADROOM, timeout=300
    )
    return dict(zip(names, results, strict=True))


def _large(folder: Path) -> Path:
    """What a 2001x2001 run writes: loss, acc, sem, samples and done for every point."""
    s = Surface.empty(np.linspace(-1, 1, 2001), np.linspace(-1, 1, 2001), split="train")
    ones = np.ones((2001, 2001))
    s.store(
        Ellipsis, {"loss": ones, "acc": ones * 50, "loss_sem": ones * 0.01, "samples": ones * 64}
    )
    return s.save(folder / "large.h5")


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BOMBS))
def test_bombs_are_refused_before_reading(bombs, case):
    result = bombs[case]
    refused(result["code"], str(result["out"]), str(result["err"]), BOMBS[case][1])


@pytest.mark.slow
def test_the_largest_legitimate_surface_loads_under_the_same_cap(bombs):
    result = bombs["control: a complete 2001x2001 surface loads"]
    assert result["code"] == 0, result["err"]


# --- path files ---------------------------------------------------------------------------------


def _json_paths(points_text: str, extra: str = "") -> str:
    return '{"paths": [{"points": ' + points_text + extra + "}]}"


# case: (file name, its text, fragment of the error; None: it loads, with these points)
PATH_FILES: dict[str, tuple[str, str, str | list[list[float]]]] = {
    "400-digit integer x": ("p.json", _json_paths(f"[[{10**400}, 0]]"), "beyond the range"),
    "400-digit integer loss": (
        "p.json",
        _json_paths("[[0, 0]]", f', "losses": [{-(10**400)}]'),
        "beyond the range",
    ),
    "5000-digit integer": ("p.json", _json_paths("[[1" + "0" * 5000 + ", 0]]"), "not valid JSON"),
    "1e999 in a CSV": ("p.csv", "x,y\n1e999,0\n", "non-finite"),
    "a header and no rows": ("p.csv", "x,y\n", "has no rows"),
    "no y column": ("p.csv", "x,z\n1,2\n", "has no y column"),
    "1,001 paths (CSV)": (
        "p.csv",
        "path,x,y\n" + "".join(f"{i},0,0\n" for i in range(1001)),
        "more than 1,000 paths",
    ),
    "1,001 paths (JSON)": (
        "p.json",
        json.dumps({"paths": [{"points": [[0, 0]]}] * 1001}),
        "more than 1,000 paths",
    ),
    "CSV with a UTF-8 byte-order mark": ("p.csv", "\ufeffx,y\n0.5,0.25\n", [[0.5, 0.25]]),
    "JSON with a UTF-8 byte-order mark": (
        "p.json",
        "\ufeff" + _json_paths("[[0.5, 0.25]]"),
        [[0.5, 0.25]],
    ),
    "CSV typed as 'x, y'": ("p.csv", "x, y\n0.5, 0.25\n", [[0.5, 0.25]]),
}


@pytest.mark.parametrize("case", list(PATH_FILES))
def test_path_files(world, case, tmp_path, capsys):
    name, text, expected = PATH_FILES[case]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    if isinstance(expected, list):
        np.testing.assert_array_equal(read_paths(path)[0].points, expected)
        code, _, err = outcome(capsys, ["plot", world["base"], "-o", tmp_path, "--path", path])
        assert code == 0, err
        return
    with pytest.raises(LosslandError, match=expected.replace("(", r"\(")):
        read_paths(path)
    refused(*outcome(capsys, ["plot", world["base"], "-o", tmp_path, "--path", path]), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("kind", ["p.csv", "p.json"])
def test_path_points_are_counted_as_read(kind, tmp_path, monkeypatch):
    """Past MAX_PATH_POINTS (lowered here from 2,000,020), a file is refused as it is read."""
    import lossland.io._paths as paths

    monkeypatch.setattr(paths, "MAX_PATH_POINTS", 100)
    path = tmp_path / kind
    points = [[0.0, 0.0]] * 101
    if kind == "p.csv":
        path.write_text("x,y\n" + "0,0\n" * 101)
    else:
        path.write_text(json.dumps({"paths": [{"points": points}]}))
    with pytest.raises(LosslandError, match="more than 100 points"):
        read_paths(path)
    path.write_text(path.read_text().replace("0,0\n", "", 1) if kind == "p.csv" else "")
    if kind == "p.json":
        path.write_text(json.dumps({"paths": [{"points": points[:100]}]}))
    assert len(read_paths(path)[0].points) == 100


# --- directions files ---------------------------------------------------------------------------


def _directions(path: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> Path:
    """Model-to-model directions of the faultkit model (x, y and origin), then ``change``d."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(SPEC)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    Directions(
        x={n: torch.randn_like(p) for n, p in params.items()},
        y={n: torch.randn_like(p) for n, p in params.items()},
        kind="models",
        origin=params,
    ).save(path)
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    change(tensors)
    save_file(tensors, str(path), metadata=meta)
    return path


def _drop(prefix: str) -> Callable[[dict[str, torch.Tensor]], None]:
    return lambda t: t.pop(next(k for k in sorted(t) if k.startswith(prefix)))


DIRECTIONS: dict[str, tuple[Callable[[dict[str, torch.Tensor]], None], str]] = {
    "origin/ missing a tensor": (_drop("origin/"), "partial origin/ group: it lacks origin/"),
    "y/ missing a tensor": (_drop("y/"), "partial y/ group: it lacks y/"),
    "origin/ with a tensor x lacks": (
        lambda t: t.update({"origin/extra": torch.zeros(2)}),
        "tensors x lacks: origin/extra",
    ),
    "y/ tensor of another shape": (
        lambda t: t.update({k: torch.zeros(3) for k in sorted(t)[-1:] if k.startswith("y/")}),
        "shaped (3,)",
    ),
    "x/ empty, y/ present": (
        lambda t: [t.pop(k) for k in [k for k in t if k.startswith("x/")]],
        "holds no x direction",
    ),
}


@pytest.mark.parametrize("case", list(DIRECTIONS))
def test_directions_files(world, case, tmp_path, capsys):
    change, expected = DIRECTIONS[case]
    path = _directions(tmp_path / "d.safetensors", change)
    with pytest.raises(LosslandError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        Directions.load(path)
    args = surface_args(world["ckpt"], tmp_path / "o.h5", world["data"], "--directions", path)
    refused(*outcome(capsys, args), expected)
    assert not (tmp_path / "o.h5").exists()
