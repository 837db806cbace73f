"""A file never makes lossland run code: checkpoint metadata, trajectory checkpoints, odd torch
files, directions metadata, surface attributes, npz exports and path files, each read by the CLI
and the API. Each table row asserts one ``lossland: error:`` line (exit 2) naming the problem, or
the intended success, and that no payload ran (a sentinel file never appears, a module named by a
file is never imported).
"""

from __future__ import annotations

import json
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
from helpers import torch_threads
from lossland.io import Surface, read_npz
from trustkit import (
    api_fails,
    fails,
    hessian_cmd,
    interpolate_cmd,
    line_cmd,
    make_world,
    outcome,
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


# --- a file never makes lossland run code ------------------------------------------------


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


# (how to run it with the hostile checkpoint E) → whether the command builds a model from E's
# metadata (then it must refuse, naming the import path) or reads only its tensors (then it runs).
LOADERS: dict[str, tuple[Callable[[dict[str, Path], Path, Path], list[Any]], bool]] = {
    "surface E": (lambda w, e, t: surface_cmd(w, e, t / "s.h5"), True),
    "surface E --directions hessian": (
        lambda w, e, t: surface_cmd(w, e, t / "s.h5", "--directions", "hessian"),
        True,
    ),
    "surface E --to good": (lambda w, e, t: line_cmd(w, e, t / "s.h5", "--to", w["ckpt"]), True),
    "surface E --trajectory runs": (
        lambda w, e, t: surface_cmd(w, e, t / "s.h5", "--trajectory", w["runs"]),
        True,
    ),
    "interpolate E good": (lambda w, e, t: interpolate_cmd(w, e, w["ckpt"], t / "i.h5"), True),
    "hessian E": (lambda w, e, t: hessian_cmd(w, e), True),
    "surface good --to E": (lambda w, e, t: line_cmd(w, w["ckpt"], t / "s.h5", "--to", e), False),
    "interpolate good E": (lambda w, e, t: interpolate_cmd(w, w["ckpt"], e, t / "i.h5"), False),
    "train --init E": (lambda w, e, t: train_cmd(w, t / "m.safetensors", "--init", e), False),
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
    args = surface_cmd(world, world["ckpt"], tmp_path / "s.h5", "--trajectory", evil["runs"])
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
    fails(capsys, surface_cmd(world, ckpt, tmp_path / "a.h5"), "--model usermod:factory")
    assert "usermod" not in sys.modules
    code, lines = outcome(
        capsys, surface_cmd(world, ckpt, tmp_path / "b.h5", "--model", "usermod:factory")
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
    fails(capsys, surface_cmd(world, ckpt, tmp_path / "s.h5"), expected)
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
        surface_cmd(world, ckpt, tmp_path / "s.h5", "--model", "small", "--width", "0.25"),
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
    args = surface_cmd(world, world["ckpt"], tmp_path / "s.h5", "--directions", path)
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
    fails(capsys, surface_cmd(world, world["ckpt"], path), "--overwrite")
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
