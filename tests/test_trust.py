"""Issue 10, classes 1, 2 and 4: a file never runs code, nothing a user owns is lost, every input
is checked where it enters.

Every class is a table. Each row runs the CLI (or the API) in-process and asserts the outcome:
a single ``lossland: error:`` line with exit status 2 that names the problem, or the intended
success; that no payload ran (a sentinel file never appears, a module is never imported); and
that the files the user had are byte-for-byte unchanged.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import lossland
from faultkit import SPEC, env, lossland_lines, surface_args, torchrun, write_checkpoint, write_data
from helpers import assert_one_line, torch_threads
from lossland.cli import main
from lossland.errors import LosslandError
from lossland.io import Surface, read_npz, save_checkpoint
from lossland.run import run_lock


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Data, a good checkpoint, a complete 3x3 surface of it, a run folder, a bowl surface."""
    folder = tmp_path_factory.mktemp("trust")
    data = write_data(folder / "data", n=32)
    ckpt = write_checkpoint(folder / "good.safetensors")
    good = folder / "good.h5"
    saved = f"{good}.directions.safetensors"  # random directions are saved only when asked
    assert main(surface_args(ckpt, good, data, "--save-directions", saved, grid="-1:1:3")) == 0
    runs = folder / "runs"
    runs.mkdir()
    for step in range(3):
        write_checkpoint(runs / f"step_{step:07d}.safetensors", seed=step + 1)
    return {"folder": folder, "data": data, "ckpt": ckpt, "good": good, "runs": runs}


def outcome(capsys: pytest.CaptureFixture[str], args: list[Any]) -> tuple[int, list[str]]:
    """Exit status and the lines lossland printed on stderr (any traceback fails the test)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("lossland:")]


def fails(capsys: pytest.CaptureFixture[str], args: list[Any], *expected: str) -> str:
    code, lines = outcome(capsys, args)
    errors = [line for line in lines if line.startswith("lossland: error:")]
    assert code == 2, lines
    assert len(errors) == 1, lines
    assert_one_line(errors[0])
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def api_fails(call: Callable[[], object], *expected: str) -> str:
    with pytest.raises(LosslandError) as info:
        call()
    message = str(info.value)
    assert_one_line(message)
    for text in expected:
        assert text in message, message
    return message


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every regular file under ``folder`` and its bytes."""
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- class 1: a file never makes lossland run code ------------------------------------------------


def hostile_checkpoint(path: Path, metadata: str, world: dict[str, Path]) -> Path:
    """The good checkpoint's tensors, scaled a little (so a plane to it is not degenerate),
    under ``metadata`` (the text of its lossland metadata)."""
    tensors = {
        k: v * 1.01 if v.is_floating_point() else v
        for k, v in load_file(str(world["ckpt"])).items()
    }
    save_file(tensors, str(path), metadata={"format": "pt", "lossland": metadata})
    return path


def payload(sentinel: Path) -> str:
    """Metadata whose model spec, if ever called, runs a shell command creating ``sentinel``."""
    spec = {"name": "subprocess:run", "options": {"args": f"touch {sentinel}", "shell": True}}
    return json.dumps({"model": spec})


EVIL_MODULE = """
from pathlib import Path
Path({sentinel!r}).touch()  # importing this module is the payload

def factory():
    raise SystemExit("the factory ran")
"""


@pytest.fixture
def evil(
    world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    """Two payloads: ``subprocess:run`` with a shell command, and a module that acts on import."""
    sentinel = tmp_path / "PWNED"
    (tmp_path / "evilmod.py").write_text(EVIL_MODULE.format(sentinel=str(sentinel)))
    monkeypatch.syspath_prepend(str(tmp_path))
    shell = hostile_checkpoint(tmp_path / "shell.safetensors", payload(sentinel), world)
    module = hostile_checkpoint(
        tmp_path / "module.safetensors", json.dumps({"model": {"name": "evilmod:factory"}}), world
    )
    runs = tmp_path / "evil_runs"
    runs.mkdir()
    for step in range(3):
        tensors = load_file(str(world["runs"] / f"step_{step:07d}.safetensors"))
        meta = {"format": "pt", "lossland": payload(sentinel)}
        save_file(tensors, str(runs / f"step_{step:07d}.safetensors"), metadata=meta)
    return {"sentinel": sentinel, "shell": shell, "module": module, "runs": runs, "tmp": tmp_path}


def never_ran(evil: dict[str, Path]) -> None:
    assert not evil["sentinel"].exists(), "the payload ran"
    assert "evilmod" not in sys.modules, "a module named by a file was imported"


def _surface(w: dict[str, Path], ckpt: Path, out: Path, *extra: Any) -> list[Any]:
    return surface_args(ckpt, out, w["data"], *[str(e) for e in extra], grid="-1:1:3")


def _line(w: dict[str, Path], ckpt: Path, out: Path, *extra: Any) -> list[Any]:
    """:func:`_surface` on a 1-D line (no --y)."""
    args = _surface(w, ckpt, out, *extra)
    at = args.index("--y")
    return args[:at] + args[at + 2 :]


def _interpolate(w: dict[str, Path], a: Path, b: Path, out: Path) -> list[Any]:
    options = ["--samples", "all", "--x", "0:1:3", "--device", "cpu", "--no-progress"]
    return ["interpolate", a, b, "-o", out, "--data-dir", w["data"], *options]


def _hessian(w: dict[str, Path], ckpt: Path, *extra: Any) -> list[Any]:
    options = ["--k", "1", "--probes", "0", "--iterations", "3", "--device", "cpu"]
    return ["hessian", ckpt, "--data-dir", w["data"], "--samples", "all", *options, *extra]


def _train(w: dict[str, Path], out: Path, *extra: Any) -> list[Any]:
    options = ["--width", "0.25", "--limit", "32", "--no-progress"]
    return ["train", "--data-dir", w["data"], *options, "-o", out, *extra]


# (how to run it with the hostile checkpoint E) → whether the command builds a model from E's
# metadata (then it must refuse, naming the import path) or reads only its tensors (then it runs).
LOADERS: dict[str, tuple[Callable[[dict[str, Path], Path, Path], list[Any]], bool]] = {
    "surface E": (lambda w, e, t: _surface(w, e, t / "s.h5"), True),
    "surface E --directions hessian": (
        lambda w, e, t: _surface(w, e, t / "s.h5", "--directions", "hessian"),
        True,
    ),
    "surface E --to good": (lambda w, e, t: _line(w, e, t / "s.h5", "--to", w["ckpt"]), True),
    "surface E --trajectory runs": (
        lambda w, e, t: _surface(w, e, t / "s.h5", "--trajectory", w["runs"]),
        True,
    ),
    "interpolate E good": (lambda w, e, t: _interpolate(w, e, w["ckpt"], t / "i.h5"), True),
    "hessian E": (lambda w, e, t: _hessian(w, e), True),
    "surface good --to E": (lambda w, e, t: _line(w, w["ckpt"], t / "s.h5", "--to", e), False),
    "interpolate good E": (lambda w, e, t: _interpolate(w, w["ckpt"], e, t / "i.h5"), False),
    "train --init E": (lambda w, e, t: _train(w, t / "m.safetensors", "--init", e), False),
}


@pytest.mark.parametrize("kind", ["shell", "module"])
@pytest.mark.parametrize("command", list(LOADERS))
def test_checkpoint_metadata_never_runs_code(world, evil, capsys, command, kind):
    build, builds_model = LOADERS[command]
    args = build(world, evil[kind], evil["tmp"])
    if builds_model:
        name = "subprocess:run" if kind == "shell" else "evilmod:factory"
        fails(capsys, args, "import path", name, f"--model {name}")
    else:
        code, lines = outcome(capsys, args)
        assert code == 0, lines  # only its tensors are read: the run goes ahead
    never_ran(evil)


def test_trajectory_checkpoints_metadata_never_runs_code(world, evil, capsys, tmp_path):
    args = _surface(world, world["ckpt"], tmp_path / "s.h5", "--trajectory", evil["runs"])
    code, lines = outcome(capsys, args)
    assert code == 0, lines
    never_ran(evil)


def test_api_loaders_never_run_code(world, evil, tmp_path):
    data = (torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long))
    for ckpt in (evil["shell"], evil["module"]):
        api_fails(lambda c=ckpt: lossland.load_model(c), "import path")
        api_fails(
            lambda c=ckpt: lossland.trajectory_surface(c, [world["runs"]], data, progress=False),
            "import path",
        )
    never_ran(evil)


USER_MODULE = """
from lossland.zoo import small

def factory(width=1.0):
    return small(width=width)
"""


def test_an_import_path_the_user_names_is_built_with_the_stored_options(
    world, tmp_path, capsys, monkeypatch
):
    (tmp_path / "usermod.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    meta = json.dumps({"model": {"name": "usermod:factory", "options": {"width": 0.25}}})
    ckpt = hostile_checkpoint(tmp_path / "user.safetensors", meta, world)
    fails(capsys, _surface(world, ckpt, tmp_path / "a.h5"), "--model usermod:factory")
    assert "usermod" not in sys.modules
    code, lines = outcome(
        capsys, _surface(world, ckpt, tmp_path / "b.h5", "--model", "usermod:factory")
    )
    assert code == 0, lines
    assert json.loads(Surface.load(tmp_path / "b.h5").attrs["model_spec"])["options"] == {
        "width": 0.25
    }
    sys.modules.pop("usermod", None)


# Nested far past any recursion limit, and short enough for a CSV field (128 KiB).
DEEP = "[" * 50_000 + "]" * 50_000
# Metadata text → what the one-line error says.
MALFORMED_METADATA: dict[str, tuple[str, str]] = {
    "a JSON list": ("[1, 2]", "not an object"),
    "a JSON number": ("7", "not an object"),
    "not JSON": ("{oops", "not valid JSON"),
    "nested 5e4 deep": (DEEP, "not valid JSON"),
    "a 5000-digit number": (
        '{"model": {"name": "small", "options": {"width": ' + "9" * 5000 + "}}}",
        "not valid JSON",
    ),
    "spec a list": ('{"model": ["small"]}', "model spec that is a JSON list"),
    "spec a string": ('{"model": "subprocess:run"}', "model spec that is a JSON str"),
    "name a number": ('{"model": {"name": 5}}', "model name"),
    "name empty": ('{"model": {"name": ""}}', "model name"),
    "name missing": ('{"model": {"options": {}}}', "model name"),
    "options a string": (
        '{"model": {"name": "small", "options": "x"}}',
        "options that are a JSON str",
    ),
    "options a list": (
        '{"model": {"name": "small", "options": [1]}}',
        "options that are a JSON list",
    ),
    "option not a keyword": (
        '{"model": {"name": "small", "options": {"a b": 1}}}',
        "not a keyword",
    ),
    "width 1e308": ('{"model": {"name": "small", "options": {"width": 1e308}}}', "width"),
    "width inf": ('{"model": {"name": "small", "options": {"width": 1e999}}}', "width"),
    "width NaN": ('{"model": {"name": "small", "options": {"width": NaN}}}', "width"),
    "width 400 digits": (
        '{"model": {"name": "small", "options": {"width": ' + "9" * 400 + "}}}",
        "width",
    ),
    "width a string": ('{"model": {"name": "small", "options": {"width": "0.25"}}}', "width"),
    "activation code": (
        '{"model": {"name": "small", "options": {"activation": "os:system"}}}',
        "activation",
    ),
    "num_classes true": (
        '{"model": {"name": "small", "options": {"num_classes": true}}}',
        "num_classes",
    ),
    "unknown option": (
        '{"model": {"name": "small", "options": {"__class__": 1}}}',
        "takes no option",
    ),
    "unknown model": ('{"model": {"name": "resnet"}}', "unknown model 'resnet'"),
}


@pytest.mark.parametrize("case", list(MALFORMED_METADATA))
def test_malformed_checkpoint_metadata(world, tmp_path, capsys, case):
    text, expected = MALFORMED_METADATA[case]
    ckpt = hostile_checkpoint(tmp_path / "odd.safetensors", text, world)
    fails(capsys, _surface(world, ckpt, tmp_path / "s.h5"), expected)
    assert not list(tmp_path.glob("s.h5*")), "a refused run left a file"


def _meta_tensor(path: Path) -> None:
    torch.save({"0.weight": torch.empty(4, 1, 3, 3, device="meta")}, path)


def _sparse_tensor(path: Path) -> None:
    torch.save({"0.weight": torch.zeros(4, 9).to_sparse()}, path)


def _string_value(path: Path) -> None:
    torch.save({"0.weight": "not a tensor"}, path)


def _list_of_tensors(path: Path) -> None:
    torch.save([torch.zeros(2)], path)


PT_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "meta device": (_meta_tensor, "meta device"),
    "sparse": (_sparse_tensor, "not dense CPU weights"),
    "a string value": (_string_value, "not a state dict"),
    "a list": (_list_of_tensors, "not a state dict"),
}


@pytest.mark.parametrize("case", list(PT_FILES))
def test_odd_torch_files(world, tmp_path, capsys, case):
    write, expected = PT_FILES[case]
    ckpt = tmp_path / "odd.pt"
    write(ckpt)
    fails(
        capsys,
        _surface(world, ckpt, tmp_path / "s.h5", "--model", "small", "--width", "0.25"),
        expected,
    )


def _directions_with(world: dict[str, Path], path: Path, meta: dict[str, Any] | str) -> Path:
    source = Path(f"{world['good']}.directions.safetensors")
    text = meta if isinstance(meta, str) else json.dumps(meta)
    save_file(load_file(str(source)), str(path), metadata={"lossland": text})
    return path


# Directions metadata → what the error says (``surface --directions FILE``).
MALFORMED_DIRECTIONS: dict[str, tuple[dict[str, Any] | str, str]] = {
    "a JSON list": ("[1]", "not an object"),
    "nested 5e4 deep": (DEEP, "not valid JSON"),
    "kind an import path": ({"kind": "subprocess:run"}, "kind ="),
    "norm unknown": ({"norm": "bogus"}, "norm ="),
    "seed a string": ({"seed": "7"}, "seed ="),
    "seed negative": ({"seed": -1}, "seed ="),
    "orthogonalized a string": ({"orthogonalized": "yes"}, "orthogonalized ="),
    "order a number": ({"order": 5}, "order ="),
    "eigenvalues strings": ({"kind": "hessian", "eigenvalues": ["big"]}, "eigenvalues ="),
    "trajectories garbage": ({"kind": "pca", "trajectories": {"a": [[1, "x"]]}}, "trajectories ="),
    "axis labels three": ({"axis_labels": ["a", "b", "c"]}, "axis_labels ="),
}


@pytest.mark.parametrize("case", list(MALFORMED_DIRECTIONS))
def test_malformed_directions_metadata(world, tmp_path, capsys, case):
    meta, expected = MALFORMED_DIRECTIONS[case]
    path = _directions_with(world, tmp_path / "d.safetensors", meta)
    args = _surface(world, world["ckpt"], tmp_path / "s.h5", "--directions", path)
    fails(capsys, args, str(path), expected)
    assert not (tmp_path / "s.h5").exists()


def _json_attr(key: str, text: str) -> Callable[[h5py.File], None]:
    def mutate(f: h5py.File) -> None:
        f.attrs[key] = text
        keys = json.loads(f.attrs["json_attrs"])
        f.attrs["json_attrs"] = json.dumps([*keys, key])

    return mutate


def _plain_attr(key: str, value: Any) -> Callable[[h5py.File], None]:
    def mutate(f: h5py.File) -> None:
        f.attrs[key] = value

    return mutate


MALFORMED_ATTRS: dict[str, tuple[Callable[[h5py.File], None], str]] = {
    "settings a list": (_json_attr("settings", "[1, 2]"), "settings ="),
    "settings nested deep": (_json_attr("settings", DEEP), "not valid JSON"),
    "wall time a string": (_plain_attr("wall_time_s", "soon"), "wall_time_s ="),
    "wall time negative": (_plain_attr("wall_time_s", -5.0), "wall_time_s ="),
    "axis labels three": (_json_attr("axis_labels", '["a", "b", "c"]'), "axis_labels ="),
    "eigenvalues strings": (
        _json_attr("directions_info", '{"eigenvalues": ["x"]}'),
        "directions_info =",
    ),
    "json_attrs a dict": (_plain_attr("json_attrs", '{"a": 1}'), "json_attrs"),
}


@pytest.mark.parametrize("case", list(MALFORMED_ATTRS))
def test_malformed_surface_attributes(world, tmp_path, capsys, case):
    mutate, expected = MALFORMED_ATTRS[case]
    path = tmp_path / "s.h5"
    path.write_bytes(world["good"].read_bytes())
    with h5py.File(path, "a") as f:
        mutate(f)
    before = path.read_bytes()
    for command in (["info", path], ["view", path, "-o", tmp_path / "v.html"]):
        fails(capsys, command, expected)
    # Resuming onto it refuses too, and leaves it exactly as it was.
    fails(capsys, _surface(world, world["ckpt"], path), "--overwrite")
    assert path.read_bytes() == before


def _npz(path: Path, **changes: Any) -> Path:
    arrays: dict[str, Any] = {
        "x": np.linspace(-1, 1, 3),
        "y": np.linspace(-1, 1, 2),
        "loss": np.ones((2, 3)),
        "acc": np.ones((2, 3)),
        "loss_sem": np.zeros((2, 3)),
        "done": np.ones((2, 3), dtype=bool),
        "split": np.array("train"),
        "attrs": np.array("{}"),
    }
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


MALFORMED_NPZ: dict[str, tuple[dict[str, Any], str]] = {
    "x decreasing": ({"x": np.array([1.0, 0.0, -1.0])}, "not strictly increasing"),
    "x with NaN": ({"x": np.array([0.0, np.nan, 1.0])}, "non-finite"),
    "loss wrong shape": ({"loss": np.ones((3, 3))}, "shaped"),
    "loss strings": ({"loss": np.array([["a"] * 3] * 2)}, "not numeric"),
    "done not 0/1": ({"done": np.full((2, 3), 7)}, "not 0/1"),
    "no loss": ({"loss": None}, "lacks loss"),
    "attrs a list": ({"attrs": np.array("[1]")}, "not an object"),
    "attrs nested deep": ({"attrs": np.array(DEEP)}, "not valid JSON"),
    "attrs settings a list": ({"attrs": np.array('{"settings": [1]}')}, "settings ="),
    "split a number": ({"split": np.array(3)}, "split that is not a string"),
    "split a path": ({"split": np.array("a/b")}, "split name"),
    "trajectory 3 columns": ({"trajectories/run": np.zeros((4, 3))}, "(T, 2)"),
}


@pytest.mark.parametrize("case", list(MALFORMED_NPZ))
def test_malformed_npz(tmp_path, case):
    changes, expected = MALFORMED_NPZ[case]
    api_fails(lambda: read_npz(_npz(tmp_path / "s.npz", **changes)), expected)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, x=np.array([object()], dtype=object))
    api_fails(lambda: read_npz(path), "cannot be read")


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("p.json", DEEP, "not valid JSON"),
        ("p.json", '{"paths": [{"points": [[1e999, 0]]}]}', "non-finite"),
        ("p.csv", "x,y,settings\n1,2," + DEEP + "\n", "not valid JSON"),
        ("p.csv", "x,y,settings\n1,2,[1]\n", "not an object"),
    ],
)
def test_malformed_path_files(world, tmp_path, capsys, name, text, expected):
    file = tmp_path / name
    file.write_text(text)
    fails(capsys, ["plot", world["good"], "-o", tmp_path, "--path", file], expected)
    assert not list(tmp_path.glob("*.png"))


# --- class 2: nothing a user owns is overwritten without --overwrite -----------------------------

PRECIOUS = b"precious bytes the user owns\n"


def _writer_surface(w: dict[str, Path], out: Path) -> list[Any]:
    return _surface(w, w["ckpt"], out, "--save-directions", out.parent / "side.safetensors")


def _writer_directions(w: dict[str, Path], out: Path) -> list[Any]:
    return _surface(w, w["ckpt"], out.parent / "beside.h5", "--save-directions", out)


def _writer_hessian(w: dict[str, Path], out: Path) -> list[Any]:
    return _hessian(w, w["ckpt"], "--save-directions", out)


def _writer_train(w: dict[str, Path], out: Path) -> list[Any]:
    return _train(w, out, "--init", w["ckpt"])


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
        args = _surface(world, world["ckpt"], out, "--overwrite", "--seed", "7")
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
    fails(capsys, [*_surface(world, world["ckpt"], tmp_path / "s.h5"), *extra], expected)
    assert not list(tmp_path.iterdir()), "a refused run left a file"


def test_resuming_keeps_the_runs_own_directions_file(world, tmp_path, capsys):
    out = tmp_path / "s.h5"
    assert outcome(capsys, _surface(world, world["ckpt"], out))[0] == 0
    before = snapshot(tmp_path)
    assert outcome(capsys, _surface(world, world["ckpt"], out))[0] == 0  # complete: resumed
    assert snapshot(tmp_path) == before


def test_directions_beside_a_new_surface_are_kept_without_overwrite(world, tmp_path, capsys):
    out = tmp_path / "s.h5"
    directions = Path(f"{out}.directions.safetensors")
    directions.write_bytes(PRECIOUS)
    asked = _surface(world, world["ckpt"], out, "--save-directions", directions)
    fails(capsys, asked, "--save-directions", "--overwrite")
    assert directions.read_bytes() == PRECIOUS and not out.exists()
    # Not asked: random directions are stored as their recipe, the file beside is left be.
    assert main([str(a) for a in _surface(world, world["ckpt"], out)]) == 0
    assert directions.read_bytes() == PRECIOUS and out.exists()


def test_save_directions_onto_the_surface_itself_is_refused(world, tmp_path, capsys):
    out = tmp_path / "s.h5"
    fails(
        capsys,
        _surface(world, world["ckpt"], out, "--save-directions", out, "--overwrite"),
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


# --- class 4: every input is checked where it enters ---------------------------------------------

# Surface options and ranges: (extra flags, what the error says); nothing is written.
BAD_SURFACE_INPUTS: dict[str, tuple[list[str], str]] = {
    "x NaN end": (["--x", "nan:1:3"], "finite ends"),
    "x 20-digit num": (["--x", "-1:1:12345678901234567890"], "points"),
    "x a million and one": (["--x", "-1:1:1000001"], "per axis"),
    "x auto too many": (["--x", "auto:2000000", "--directions", "hessian"], "per axis"),
    "x min > max": (["--x", "1:-1:3"], "min > max"),
    "y duplicates": (["--y", "0:5e-324:3"], "too narrow"),
    "checkpoint every negative": (["--checkpoint-every", "-1"], "--checkpoint-every"),
    "checkpoint every inf": (["--checkpoint-every", "inf"], "--checkpoint-every"),
    "seed 2**70": (["--seed", str(2**70)], "--seed"),
    "seed negative": (["--seed=-1"], "--seed"),
    "batch size 0": (["--batch-size", "0"], "--batch-size"),
    "points per batch 0": (["--points-per-batch", "0"], "--points-per-batch"),
    "points per batch 1e6": (["--points-per-batch", "1000000"], "--points-per-batch"),
    "save-directions with --to": (
        ["--to", "CKPT", "--save-directions", "d.safetensors"],
        "drop --save-directions",
    ),
}


@pytest.mark.parametrize("case", list(BAD_SURFACE_INPUTS))
def test_bad_surface_inputs(world, tmp_path, capsys, case):
    extra, expected = BAD_SURFACE_INPUTS[case]
    extra = [str(world["ckpt"]) if e == "CKPT" else e for e in extra]
    fails(capsys, [*_surface(world, world["ckpt"], tmp_path / "s.h5"), *extra], expected)
    assert not list(tmp_path.iterdir())


BAD_TRAIN_INPUTS: dict[str, tuple[list[str], str]] = {
    "beta1 2": (["--beta1", "2"], "--beta1"),
    "beta2 1": (["--beta2", "1"], "--beta2"),
    "momentum -1": (["--optimizer", "sgd", "--momentum=-1"], "--momentum"),
    "lr NaN": (["--lr", "nan"], "--lr"),
    "lr inf": (["--lr", "inf"], "--lr"),
    "seed 2**70": (["--seed", str(2**70)], "--seed"),
    "epochs 0": (["--epochs", "0"], "--epochs"),
    "trajectory dir a file": (["--save-every", "1", "--trajectory-dir", "FILE"], "is a file"),
    "trajectory dir under a file": (
        ["--save-every", "1", "--trajectory-dir", "FILE/run"],
        "cannot be made",
    ),
    "lr that diverges": (
        ["--optimizer", "sgd", "--lr", "1e30", "--save-every", "1", "--epochs", "12"],
        "diverged",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TRAIN_INPUTS))
def test_bad_train_inputs_save_nothing(world, tmp_path, capsys, case):
    extra, expected = BAD_TRAIN_INPUTS[case]
    file = tmp_path / "file"
    file.write_bytes(PRECIOUS)
    extra = [e.replace("FILE", str(file)) for e in extra]
    fails(capsys, _train(world, tmp_path / "m.safetensors", *extra), expected)
    assert snapshot(tmp_path) == {str(file): PRECIOUS}, "nothing is saved"


BAD_HESSIAN_INPUTS: dict[str, tuple[list[str], str]] = {
    "k 0": (["--k", "0"], "--k"),
    "k larger than the model": (["--k", "100000000"], "parameters"),
    "probes -1": (["--probes=-1"], "--probes"),
    "iterations 0": (["--iterations", "0"], "--iterations"),
    "tol NaN": (["--tol", "nan"], "--tol"),
    "tol negative": (["--tol=-1"], "--tol"),
    "seed negative": (["--seed=-1"], "--seed"),
    "seed 2**70": (["--seed", str(2**70)], "--seed"),
    "batch size 0": (["--batch-size", "0"], "--batch-size"),
    "density steps 0": (["--density", "--steps", "0"], "--steps"),
    "density probes 0": (["--density", "--probes-density", "0"], "--probes-density"),
}


@pytest.mark.parametrize("case", list(BAD_HESSIAN_INPUTS))
def test_bad_hessian_inputs_save_nothing(world, tmp_path, capsys, case):
    extra, expected = BAD_HESSIAN_INPUTS[case]
    out = ["--save-directions", tmp_path / "d.safetensors"]
    out += ["-o", tmp_path / "h.json"] if "--density" in extra else []  # -o is the density's
    fails(capsys, _hessian(world, world["ckpt"], *extra, *out), expected)
    assert not list(tmp_path.iterdir())


BAD_SHOW_INPUTS: dict[str, tuple[list[str], str]] = {
    "plot dpi 0": (["plot", "GOOD", "--dpi", "0"], "--dpi"),
    "plot dpi 100000": (["plot", "GOOD", "--dpi", "100000"], "--dpi"),
    "plot levels 1": (["plot", "GOOD", "--levels", "1"], "--levels"),
    "plot zmax NaN": (["plot", "GOOD", "--zmax", "nan"], "--zmax"),
    "view port 99999": (["view", "GOOD", "--port", "99999"], "--port"),
    "view port -1": (["view", "GOOD", "--port=-1"], "--port"),
    "path steps 10^8": (["path", "GOOD", "--start", "0,0", "--steps", "100000000"], "--steps"),
    "path steps -1": (["path", "GOOD", "--start", "0,0", "--steps=-1"], "--steps"),
    "export zmax inf": (["export", "GOOD", "--format", "vtp", "--zmax", "inf"], "--zmax"),
    "demo grid 1": (["demo", "--grid", "1"], "--grid"),
}


OUTPUTS = {"plot": "figures", "view": "v.html", "path": "p.csv", "export": "e.vtp", "demo": "demo"}


@pytest.mark.parametrize("case", list(BAD_SHOW_INPUTS))
def test_bad_numbers_of_the_other_commands(world, tmp_path, capsys, case):
    args, expected = BAD_SHOW_INPUTS[case]
    good = tmp_path / "good.h5"
    good.write_bytes(world["good"].read_bytes())
    args = [str(good) if a == "GOOD" else a for a in args]
    fails(capsys, [*args, "-o", tmp_path / OUTPUTS[args[0]]], expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.h5"]


BAD_API_INPUTS: dict[str, tuple[dict[str, Any], str]] = {
    "bn bogus": ({"bn": "bogus"}, "unknown bn"),
    "precision fp8": ({"precision": "fp8"}, "unknown precision"),
    "memory format bogus": ({"memory_format": "bogus"}, "unknown memory_format"),
    "compile a string": ({"compile": "yes"}, "compile is true or false"),
    "orthogonalize a number": ({"orthogonalize": 1}, "orthogonalize is true or false"),
    "offload a string": ({"offload": "no"}, "offload is true or false"),
    "trajectory 3 columns": ({"trajectories": {"run": np.zeros((4, 3))}}, "(T, 2)"),
    "trajectory of strings": ({"trajectories": {"run": [["a", "b"]]}}, "(T, 2)"),
    "trajectory name with a slash": (
        {"trajectories": {"a/b": np.zeros((2, 2))}},
        "trajectory name",
    ),
    "attrs key reserved": ({"attrs": {"format": "x"}}, "reserved"),
    "attrs key empty": ({"attrs": {"": 1}}, "attribute name"),
    "attrs key not a string": ({"attrs": {3: 1}}, "attribute name"),
    "attrs settings a list": ({"attrs": {"settings": [1]}}, "settings ="),
    "attrs circular": ({"attrs": {"loop": (lambda a: a.append(a) or a)([])}}, "not data"),
    "split with a slash": ({"split": "a/b"}, "split name"),
    "coordinates of strings": ({"x": ["a", "b"]}, "coordinates must be numbers"),
    "coordinates decreasing": ({"x": [1.0, 0.0]}, "strictly increasing"),
}


@pytest.mark.parametrize("case", list(BAD_API_INPUTS))
def test_bad_api_inputs_are_refused_at_the_door(tmp_path, case):
    kwargs, expected = BAD_API_INPUTS[case]
    model = lossland.build_model(SPEC)
    data = (torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long))
    call = {"x": "-1:1:3", "y": "-1:1:3", "out": tmp_path / "s.h5", "progress": False, **kwargs}
    api_fails(lambda: lossland.surface(model, data, **call), expected)
    assert not list(tmp_path.iterdir())


# Planes that would draw something false (a constant surface, a line drawn as a plane): the
# CLI case (arguments, given the world and a folder) → what the one-line error says.
def _step(w: dict[str, Path], k: int) -> Path:
    return w["runs"] / f"step_{k:07d}.safetensors"


def _zero_directions(w: dict[str, Path], folder: Path) -> Path:
    from lossland.directions import Directions

    d = Directions.load(Path(f"{w['good']}.directions.safetensors"))
    zero = {k: torch.zeros_like(v) for k, v in d.x.items()}
    return Directions(x=zero, y=d.y).save(folder / "zero.safetensors")


DEGENERATE_CLI_PLANES: dict[str, tuple[Callable[[dict[str, Path], Path], list[Any]], str]] = {
    "--to the same checkpoint": (
        lambda w, t: _line(w, w["ckpt"], t / "s.h5", "--to", w["ckpt"]),
        "same weights",
    ),
    "interpolate A A": (
        lambda w, t: _interpolate(w, w["ckpt"], w["ckpt"], t / "s.h5"),
        "same weights",
    ),
    "interpolate A B B": (
        lambda w, t: [
            "interpolate",
            _step(w, 0),
            *_interpolate(w, _step(w, 1), _step(w, 1), t / "s.h5")[1:],
        ],
        "parallel",
    ),
    "--to B --to B": (
        lambda w, t: _surface(w, w["ckpt"], t / "s.h5", "--to", _step(w, 1), "--to", _step(w, 1)),
        "parallel",
    ),
    "a zero directions file": (
        lambda w, t: _surface(w, w["ckpt"], t / "s.h5", "--directions", _zero_directions(w, t)),
        "direction x is zero",
    ),
}


@pytest.mark.parametrize("case", list(DEGENERATE_CLI_PLANES))
def test_degenerate_planes_are_refused(world, tmp_path, capsys, case):
    build, expected = DEGENERATE_CLI_PLANES[case]
    args = build(world, tmp_path)
    before = snapshot(tmp_path)
    fails(capsys, args, expected)
    assert snapshot(tmp_path) == before, "nothing is written"


class _OnlyBiases(torch.nn.Module):
    """Every parameter 1-D: with ignore="biasbn" every direction is zero."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.randn(10))
        self.norm = torch.nn.LayerNorm(10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.flatten(1)[:, :10] + self.bias)


def _zero_linear() -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10, bias=False))
    torch.nn.init.zeros_(model[1].weight)
    return model


def _parallel(model: torch.nn.Module) -> Any:
    from lossland.directions import Directions

    x = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    return Directions(x=x, y={k: -2 * v for k, v in x.items()}, kind="pca", norm="none")


# API case: (model, extra keywords built from it) → what the error says.
DEGENERATE_API_PLANES: dict[str, tuple[Callable[[], torch.nn.Module], Any, str]] = {
    "only 1-D parameters, ignore biasbn": (_OnlyBiases, lambda m: {}, "ignore"),
    "no parameters": (torch.nn.Flatten, lambda m: {}, "no tensors"),
    "zero weights, filter norm": (_zero_linear, lambda m: {"ignore": "none"}, "norm"),
    "parallel directions": (_zero_linear, lambda m: {"directions": _parallel(m)}, "parallel"),
}


@pytest.mark.parametrize("case", list(DEGENERATE_API_PLANES))
def test_degenerate_planes_are_refused_by_the_api(tmp_path, case):
    make, extra, expected = DEGENERATE_API_PLANES[case]
    model = make()
    data = (torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,)))
    call = {"x": "-1:1:3", "y": "-1:1:3", "out": tmp_path / "s.h5", "progress": False}
    api_fails(lambda: lossland.surface(model, data, **call, **extra(model)), expected)
    assert not list(tmp_path.iterdir())
    # The same model draws a true picture where the fix says so: with ignore="none" each 1-D
    # tensor moves along itself (Li et al.), so x = y and only a line is meaningful.
    if case == "only 1-D parameters, ignore biasbn":
        line = {"x": "-1:1:3", "out": None, "progress": False, "ignore": "none"}
        assert np.ptp(lossland.surface(model, data, **line).loss) > 0
        api_fails(lambda: lossland.surface(model, data, **{**line, "y": "-1:1:3"}), "parallel")


# Degenerate surfaces (constant, NaN, inf, nothing evaluated, 1×1, 1×N, a 1-point line, ...)
# in every reader: tests/test_degenerate_surfaces.py.


def _gloo() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_gloo_available()


@pytest.mark.slow
@pytest.mark.skipif(not _gloo(), reason="needs torch.distributed with gloo")
def test_torchrun_prints_a_user_error_once(world, tmp_path):
    args = _surface(world, world["ckpt"], tmp_path / "s.h5", "--x", "-1e308:1e308:3")
    done = torchrun(args, nproc=2, environ=env(), timeout=120)
    assert done.returncode != 0
    lines = lossland_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert "overflows" in lines[0]
