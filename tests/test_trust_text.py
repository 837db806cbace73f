"""Text from outside cannot forge what lossland prints or draws.

One table of hostile strings (terminal escapes, a clipboard write, lines forged with ``\\r`` and
``\\n``, a C1 control, a bidi override, NUL, a lone surrogate, mathtext, ordinary Unicode) is put
in every place text comes from (surface attributes and their names, the split, trajectory
names, axis labels, a seed summary, path labels in CSV and JSON files, ``--title``, file names
of inputs and outputs, a checkpoint's model spec, an argument) and run through every command
that prints or draws. Every line a command prints goes through ``cli._output.say``
(``tests/test_layers.py`` checks there is no other), every text a figure draws through
``show._text.draws_text``. Then: extreme values drawn or refused with one line; ``view
--serve`` on real sockets (aborted downloads, wrong Host headers, idle connections, names
that are not UTF-8); output names the file system cannot take, for every writer; and
``--compile`` with a cache folder it cannot write.
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import unicodedata
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

import lossland
from faultkit import env, write_checkpoint, write_data
from helpers import assert_one_line, torch_threads
from lossland import analysis, show
from lossland.cli import main
from lossland.core import printable
from lossland.engine import _compile
from lossland.errors import LosslandError, LosslandWarning
from lossland.io import ModelSpec, OptimizerPath, SeedStack, Surface, save_checkpoint
from lossland.show import _plotter as F
from lossland.show import make_server

HOSTILE = {
    "screen clear": "\x1b[2J\x1b[H",
    "clipboard write (OSC 52)": "\x1b]52;c;ZXZpbA==\x07",
    "forged line (CR)": "ok\rlossland: error: forged",
    "forged line (LF)": "ok\nlossland: error: forged",
    "C1 CSI": "\x9b31mred",
    "bidi override": "abc\u202etxt.exe",
    "NUL": "a\x00b",
    "lone surrogate": "bad\udcff",
    "mathtext fraction": "$\\frac{$",
    "two dollars": "$$",
    "backslash": "\\",
    "sub- and superscript": "_^{",
    "DEL and BEL": "\x7f\x07",
    "line separator": "a\u2028b",
    "zero-width joiner and BOM": "a\u200d\ufeffb",
    "ordinary Unicode": "×θ±é λ₁ 漢",
}
UNSAFE = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}
# Every hostile string at once, as far as a place can hold it: file names hold neither NUL nor
# "/", HDF5 strings no NUL (lossland writes them as UTF-8: no lone surrogates either).
BUNDLE = " ".join(HOSTILE.values())


def bundle(*without: str) -> str:
    text = BUNDLE
    for gone in without:
        text = text.replace(gone, "")
    return text


NAME_BUNDLE = bundle("\x00", "/", "漢")  # a file name (CJK: no glyph in the figures' font)
HDF5_BUNDLE = bundle("\x00", "\udcff")


def unsafe(text: str, *, newlines: bool = True) -> list[str]:
    """The characters of ``text`` that act on a terminal (``\\n`` allowed with ``newlines``)."""
    found = [c for c in text if unicodedata.category(c) in UNSAFE]
    return [c for c in found if not (newlines and c == "\n")]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


# --- the escaping rule ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list(HOSTILE))
def test_printable_escapes_what_acts_on_a_terminal_and_keeps_the_rest(name: str) -> None:
    text = HOSTILE[name]
    shown = printable(text)
    assert not unsafe(shown, newlines=False), shown
    assert printable(shown) == shown  # escapes are plain ASCII: nothing left to escape
    kept = [c for c in text if unicodedata.category(c) not in UNSAFE]
    it = iter(shown)
    assert all(c in it for c in kept), (text, shown)  # every visible character, in order
    for c in text:
        if unicodedata.category(c) in UNSAFE:
            assert printable(c) in shown and printable(c).startswith("\\")
    assert printable(text, newlines=True).count("\n") == text.count("\n")


def test_printable_shows_the_bytes_of_a_name_that_is_not_utf8() -> None:
    name = os.fsdecode(b"caf\xe9\xff.h5")
    assert printable(name) == "caf\\xe9\\xff.h5"
    assert printable("×θ±é — ok") == "×θ±é — ok"


# --- printing commands × places -------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("text")
    return {
        "folder": folder,
        "data": write_data(folder / "data", n=16),
        "ckpt": write_checkpoint(folder / "c.safetensors"),
        "ckpt2": write_checkpoint(folder / "c2.safetensors", seed=1),
    }


def bowl(*, split: str = "train", x: np.ndarray | None = None, y: Any = "x") -> Surface:
    xs = np.linspace(-1.0, 1.0, 5) if x is None else x
    ys = xs if isinstance(y, str) else y
    s = Surface.empty(xs, ys, split=split)
    z = 1.0 + xs**2 if ys is None else 1.0 + np.add.outer(ys**2, xs**2)
    s.store(
        Ellipsis, {"loss": z, "acc": np.full(z.shape, 50.0), "loss_sem": np.full(z.shape, 0.01)}
    )
    return s.with_attrs(model="small(width=0.25)", norm="filter", seed=0)


def stack_of(s: Surface, seed_attrs: dict[str, Any] | None = None) -> Surface:
    loss = np.stack([s.loss, 1.1 * s.loss])
    stacked = replace(
        s,
        stack=SeedStack(
            (0, 1),
            loss,
            np.full(loss.shape, 50.0),
            np.full(loss.shape, 0.01),
            np.ones(loss.shape, dtype=bool),
            (dict(seed_attrs or {}), dict(seed_attrs or {})),
        ),
    )
    return stacked.with_attrs(robustness=analysis.robustness(stacked))


def hostile_path_file(folder: Path, kind: str, label: str) -> Path:
    points = [[0.5, 0.5], [0.2, 0.1], [0.0, 0.0]]
    if kind == "json":
        file = folder / "p.json"
        paths = [{"label": label, "points": points, "losses": [1.5, 1.05, 1.0]}]
        file.write_text(json.dumps({"format": "lossland-paths", "version": 1, "paths": paths}))
        return file
    file = folder / "p.csv"
    quoted = '"' + label.replace('"', '""') + '"'
    rows = [f"0,{quoted},{x},{y}" for x, y in points]
    file.write_text("path,label,x,y\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return file


def surface_with(folder: Path, place: str) -> tuple[Path, list[str]]:
    """A surface file carrying the bundle in ``place``, and extra arguments for plot/view."""
    name = folder / "s.h5"
    s = bowl()
    extra: list[str] = []
    if place == "attribute value":
        s = s.with_attrs(model=HDF5_BUNDLE, note=HDF5_BUNDLE)
    elif place == "attribute name":
        s = s.with_attrs(**{HDF5_BUNDLE.replace("/", ""): 1})
    elif place == "split name":
        s = bowl(split=HDF5_BUNDLE.replace("/", "").replace(".", ""))
    elif place == "trajectory name":
        s = replace(
            s, trajectories={NAME_BUNDLE.replace("\udcff", ""): np.array([[0.5, 0.5], [0.0, 0.0]])}
        )
    elif place == "axis labels":
        s = s.with_attrs(axis_labels=[HDF5_BUNDLE, HDF5_BUNDLE])
    elif place == "seed attributes":
        # the summary itself holds only numbers (its schema refuses text); a seed's own
        # attributes are text from the file
        s = stack_of(s, {"model": HDF5_BUNDLE, HDF5_BUNDLE: HDF5_BUNDLE})
    elif place == "file name":
        name = folder / f"{NAME_BUNDLE}.h5"
    elif place in ("path label (CSV)", "path label (JSON)"):
        kind = "csv" if "CSV" in place else "json"
        label = bundle("\x00", "\udcff") if kind == "csv" else BUNDLE
        extra = ["--path", str(hostile_path_file(folder, kind, label))]
    elif place == "--title":
        extra = ["--title", bundle("\x00")]
    s.save(name)
    return name, extra


PLACES = [
    "attribute value",
    "attribute name",
    "split name",
    "trajectory name",
    "axis labels",
    "seed attributes",
    "file name",
    "path label (CSV)",
    "path label (JSON)",
    "--title",
]
# Which command shows text from which place (info prints no path label, export draws nothing).
READERS: dict[str, tuple[str, ...]] = {
    "info": (
        "attribute value",
        "attribute name",
        "split name",
        "trajectory name",
        "seed attributes",
        "file name",
    ),
    "plot": tuple(PLACES),
    "plot --log": (
        "attribute value",
        "split name",
        "trajectory name",
        "axis labels",
        "path label (JSON)",
        "--title",
    ),
    "view": tuple(PLACES),
    "export": ("file name", "attribute value"),
    "path": ("file name",),
}


def clean(out: str, err: str) -> None:
    """What every command must print, whatever it was given."""
    assert not unsafe(out) and not unsafe(err), (out, err)
    assert "Traceback" not in out + err
    forged = [line for line in (out + err).splitlines() if "lossland: error: forged" in line[:30]]
    assert not forged, forged


def run(capsys: pytest.CaptureFixture[str], args: list[Any]) -> tuple[int, str, str]:
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("always", LosslandWarning)  # printed as notes
        code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    clean(out, err)
    return code, out, err


@pytest.mark.parametrize(
    ("command", "place"), [(c, p) for c, places in READERS.items() for p in places]
)
def test_hostile_text_in_every_place_through_every_reader(tmp_path, capsys, command, place):
    file, extra = surface_with(tmp_path, place)
    outs = tmp_path / "out"
    outs.mkdir()
    argv: list[Any] = {
        "info": ["info", file],
        "plot": ["plot", file, "-o", outs, *extra],
        "plot --log": ["plot", file, "-o", outs, "--log", *extra],
        "view": ["view", file, "-o", outs / "v.html", *extra],
        "export": ["export", file, "-o", outs / "e.csv"],
        "path": ["path", file, "--start", "0.5,0.5", "-o", outs / "p.csv"],
    }[command]
    code, out, err = run(capsys, argv)
    assert code == 0, err
    written = sorted(outs.iterdir())
    assert bool(written) is (command != "info")
    for f in written:
        assert f.stat().st_size > 0
    if command == "info" and place not in (
        "file name",
        "seed attributes",
    ):  # info shows no seed attrs
        assert printable(HDF5_BUNDLE.replace("/", "").replace(".", ""))[:12] in out
    if command == "view":
        page = (outs / "v.html").read_text(encoding="utf-8")
        # The page's text is escaped like the terminal's (the JSON blob is ASCII).
        title = page.split("<title>")[1].split("</title>")[0]
        assert not unsafe(title, newlines=False), title


def test_the_viewer_page_embeds_outside_text_escaped():
    """Every string the page's data carries (title, trajectory names, path labels, the
    metadata rows of attributes and settings) is escaped like the terminal's."""
    s, _ = surface_with_everything()
    path = OptimizerPath(
        points=np.array([[0.5, 0.5], [0.0, 0.0]]),
        losses=np.array([1.5, 1.0]),
        optimizer="sgd",
        label=BUNDLE,
        stopped=None,
    )
    data = show.page_data(s, paths=[path], title=BUNDLE)
    strings: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(data)
    assert not [t for t in strings if unsafe(t, newlines=False)]
    assert printable(BUNDLE) in strings  # the title and the label, escaped, not dropped


def surface_with_everything() -> tuple[Surface, str]:
    text = HDF5_BUNDLE.replace("/", "").replace(".", "")
    s = bowl(split=text).with_attrs(model=text, axis_labels=[text, text], **{text: text})
    s = replace(s, trajectories={text: np.array([[0.5, 0.5], [0.0, 0.0]])})
    return s, text


def test_hostile_output_names_are_printed_escaped(world, tmp_path, capsys):
    """Every command that prints the file it wrote, given an output name of the bundle."""
    source = tmp_path / "s.h5"
    bowl().save(source)
    hostile = NAME_BUNDLE
    folder = tmp_path / hostile[:60]
    folder.mkdir()
    cases = [
        ["plot", source, "-o", folder],
        ["view", source, "-o", tmp_path / f"{hostile}.html"],
        ["export", source, "-o", tmp_path / f"{hostile}.csv"],
        ["path", source, "--start", "0.5,0.5", "-o", tmp_path / f"{hostile}.json"],
    ]
    for argv in cases:
        code, out, _ = run(capsys, argv)
        assert code == 0
        assert "\\x1b[2J" in out  # the name, escaped


def model_runs(world: dict[str, Path], name: str) -> dict[str, list[Any]]:
    data, out = world["data"], world["folder"] / name
    common = ["--data-dir", data, "--samples", "all", "--device", "cpu"]
    ckpt = world["folder"] / f"{name}.safetensors"
    if not ckpt.exists():
        ckpt.write_bytes(world["ckpt"].read_bytes())
    grid = ["--x", "-1:1:3", "--y", "-1:1:3", "--no-progress"]
    return {
        "surface": ["surface", ckpt, "-o", f"{out}.h5", *common, *grid, "--overwrite"],
        "interpolate": [
            "interpolate",
            ckpt,
            world["ckpt2"],
            "-o",
            f"{out}.i.h5",
            *common,
            "--x",
            "0:1:3",
            "--no-progress",
            "--overwrite",
        ],
        "hessian": [
            "hessian",
            ckpt,
            *common[:-2],
            "--k",
            "1",
            "--probes",
            "1",
            "--iterations",
            "4",
            "--save-directions",
            f"{out}.d.safetensors",
            "--overwrite",
        ],
        "train": [
            "train",
            "--data-dir",
            data,
            "--limit",
            "16",
            "--no-progress",
            "--device",
            "cpu",
            "-o",
            f"{out}.t.safetensors",
            "--overwrite",
        ],
    }


@pytest.mark.parametrize("command", ["surface", "interpolate", "hessian", "train"])
def test_commands_that_compute_print_hostile_file_names_escaped(world, capsys, command):
    code, out, err = run(capsys, model_runs(world, NAME_BUNDLE[:80])[command])
    assert code == 0, err
    assert "\\x1b[2J" in out + err  # the name is shown, escaped


ERRORS: dict[str, Callable[[dict[str, Path], Path], list[Any]]] = {
    "missing input named by the bundle": lambda w, t: ["info", t / f"{NAME_BUNDLE}.h5"],
    "model spec of a checkpoint": lambda w, t: [
        "surface",
        _spec_checkpoint(t),
        "-o",
        t / "x.h5",
        "--data-dir",
        w["data"],
        "--samples",
        "all",
        "--device",
        "cpu",
        "--x",
        "-1:1:3",
    ],
    "unknown argument": lambda w, t: ["info", "--" + bundle("\x00", " ")],
    "bad choice": lambda w, t: ["plot", "x.h5", "--style", bundle("\x00")],
    "malformed path file": lambda w, t: ["plot", _saved(t), "--path", _bad_path_file(t)],
    "unknown colormap": lambda w, t: ["plot", _saved(t), "--cmap", bundle("\x00")],
}


def _spec_checkpoint(folder: Path) -> Path:
    """A checkpoint whose metadata names a model by the bundle (no such registry model)."""
    from lossland.zoo import build_model

    model = build_model(ModelSpec("small", {"width": 0.25}))
    return save_checkpoint(model, folder / "spec.safetensors", spec=ModelSpec(HDF5_BUNDLE, {}))


def _saved(folder: Path) -> Path:
    return bowl().save(folder / "s.h5")


def _bad_path_file(folder: Path) -> Path:
    file = folder / "bad.json"
    file.write_text(
        json.dumps(
            {
                "format": "lossland-paths",
                "version": 1,
                "paths": [{"label": BUNDLE, "points": BUNDLE}],
            }
        )
    )
    return file


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_that_quote_outside_text_are_one_escaped_line(world, tmp_path, capsys, case):
    argv = ERRORS[case](world, tmp_path)
    parser = case in ("unknown argument", "bad choice")  # argparse's own errors
    code, _, err = _argparse(capsys, argv) if parser else run(capsys, argv)
    assert code == 2
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert_one_line(errors[0])


def _argparse(capsys: pytest.CaptureFixture[str], argv: list[Any]) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    clean(out, err)
    return int(info.value.code or 0), out, err


def test_a_note_quoting_an_output_name_is_escaped(tmp_path, capsys):
    s = bowl()
    s.loss[0, 0] = np.nan
    code, _, err = run(
        capsys, ["export", s.save(tmp_path / "s.h5"), "-o", tmp_path / f"{NAME_BUNDLE}.vtp"]
    )
    notes = [line for line in err.splitlines() if line.startswith("lossland: note:")]
    assert code == 0 and len(notes) == 1, err
    assert "NaN" in notes[0] and "\\x1b[2J" in notes[0]


# --- figures: drawn as written ---------------------------------------------------------------


def draw_everything(text: str) -> list[Any]:
    """Every figure function with ``text`` where it can carry one; returns their figures."""
    s = bowl(split=text.replace("/", "") or "x").with_attrs(model=text, axis_labels=[text, text])
    s = replace(s, trajectories={(text.replace("/", "") or "t"): np.array([[0.5, 0.5], [0, 0]])})
    path = OptimizerPath(
        label=text,
        optimizer="sgd",
        points=np.array([[0.5, 0.5], [0.0, 0.0]]),
        losses=np.array([1.5, 1.0]),
        settings={},
        stopped=None,
    )
    axes = [
        F.contour(s, title=text, caption=True),
        F.contourf(s, title=text, caption=True, log=True),
        F.heatmap(s, title=text, caption=True),
        F.surface3d(s, title=text, caption=True),
        F.line(
            bowl(y=None).with_attrs(model=text, axis_labels=[text, text]), title=text, caption=True
        ),
        show.density_figure(
            {"grid": [0, 1, 2], "density": [0.1, 0.5, 0.2], "probes": text, "steps": 3}
        ),
    ]
    F.paths(axes[0], [path])
    F.trajectories(axes[1], s)
    figures = [ax.figure for ax in axes]
    figures.append(F.topology_figure(s))
    figures.append(F.seeds_figure(stack_of(s)))
    return figures


@pytest.mark.parametrize("name", list(HOSTILE))
def test_figures_draw_outside_text_as_written(name):
    text = HOSTILE[name].replace("漢", "")  # no glyph in the font: a warning, not a crash
    figures = draw_everything(text)
    expected = printable(text, newlines=True)
    drawn = [t for fig in figures for t in fig.findobj(Text)]
    assert any(t.get_text() == expected for t in drawn), expected  # the title, literally
    for t in drawn:
        assert not unsafe(t.get_text()), t.get_text()
        if expected.strip() and expected in t.get_text():
            assert not t.get_parse_math() and not t.get_usetex()
    legends = [
        t.get_text()
        for fig in figures
        for t in fig.findobj(Text)
        if t.axes is not None
        and t.axes.get_legend() is not None
        and t in t.axes.get_legend().get_texts()
    ]
    if text.strip():  # legend entries are one line each; "_^{" is listed too
        assert any(printable(text).strip() in label for label in legends), legends
    for fig in figures:
        fig.savefig(io.BytesIO(), format="png", dpi=20)


def test_figures_of_every_hostile_string_at_once_save_in_every_format():
    for fig in draw_everything(bundle("漢")):
        for fmt in ("png", "pdf", "svg"):
            fig.savefig(io.BytesIO(), format=fmt, dpi=30)


def test_the_users_own_math_on_their_axes_is_left_alone():
    fig = Figure()
    ax = fig.add_subplot()
    ax.set_ylabel("$\\alpha$")
    F.contour(bowl(), ax=ax, labels=False, colorbar=False, title="$\\frac{$")
    assert ax.yaxis.label.get_parse_math()  # theirs: mathtext as they wrote it
    assert ax.title.get_text() == "$\\frac{$" and not ax.title.get_parse_math()  # ours
    fig.savefig(io.BytesIO(), format="png", dpi=40)


# --- extreme values: drawn, or refused with one line -----------------------------------------

AX = np.linspace(-1.0, 1.0, 5)
BOWL = 1.0 + np.add.outer(AX**2, AX**2)
EXTREME: dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray, str | None, str | None]] = {
    # name: (x, y, loss, refusal of plot, refusal of plot --log); None: drawn
    "losses up to 1.7e308": (AX, AX, BOWL / 3 * 1.7e308, "clip them with --zmax", "--zmax"),
    "losses -1.7e308 .. 1.7e308": (
        AX,
        AX,
        np.add.outer(AX, AX) / 2 * 1.7e308,
        "export the surface",
        "positive losses",
    ),
    "losses 1e-300 and 1.7e308": (AX, AX, np.where(BOWL > 2, 1.7e308, 1e-300), "--zmax", "--zmax"),
    "coordinates ±1e308": (AX * 1e308, AX * 1e308, BOWL, "x coordinates reach", "x coordinates"),
    "coordinates ±1.7e308": (AX * 1.7e308, AX * 1.7e308, BOWL, "export", "export"),
    "coordinates near 1e300, tiny steps": (
        1e300 + AX * 1e290,
        1e300 + AX * 1e290,
        BOWL,
        "export",
        "export",
    ),
    "coordinates ±1e-310": (AX * 1e-310, AX * 1e-310, BOWL, "too close to 0", "too close to 0"),
    "losses of 1e-308": (AX, AX, BOWL * 1e-308, "too close to 0", "too close to 0"),
    "denormal losses": (AX, AX, np.where(BOWL > 2, 5e-324, 1e-323), "too close", "too close"),
    "losses 5e-324 .. 1": (AX, AX, np.where(BOWL > 2, 1.0, 5e-324), None, "linear scale"),
    "losses up to 1e200": (AX, AX, BOWL / 3 * 1e200, None, None),
    "losses 1e-200 .. 1e200 (400 decades)": (AX, AX, np.where(BOWL > 2, 1e200, 1e-200), None, None),
    "losses -1e200 .. 1e200": (AX, AX, np.add.outer(AX, AX) / 2 * 1e200, None, "positive"),
    "coordinates ±1e199 and ±1e-199": (AX * 1e199, AX * 1e-199, BOWL, None, None),
    "1-D losses up to 1.7e308": (AX, None, (1 + AX**2) / 2 * 1.7e308, "--zmax", "--zmax"),
    "1-D coordinates ±1e308": (AX * 1e308, None, 1 + AX**2, "x coordinates", "x coordinates"),
    "1-D losses 1e-200 .. 1e200": (
        AX,
        None,
        np.array([1e200, 1e-200, 1, 1e-200, 1e200]),
        None,
        None,
    ),
}


def extreme(name: str) -> Surface:
    x, y, z, _, _ = EXTREME[name]
    s = Surface.empty(x, y, split="train")
    s.store(
        Ellipsis, {"loss": z, "acc": np.full(z.shape, 50.0), "loss_sem": np.full(z.shape, 0.01)}
    )
    return s


@pytest.mark.parametrize("log", [False, True], ids=["linear", "log"])
@pytest.mark.parametrize("name", list(EXTREME))
def test_extreme_values_are_drawn_or_refused_with_one_line(tmp_path, capsys, name, log):
    file = extreme(name).save(tmp_path / "s.h5")
    refusal = EXTREME[name][4 if log else 3]
    code, out, err = run(capsys, ["plot", file, "-o", tmp_path / "f", *(["--log"] * log)])
    if refusal is None:
        assert code == 0, err
        assert all(Path(line).stat().st_size > 0 for line in out.splitlines())
    else:
        assert code == 2 and refusal in err, err
        assert_one_line(err)
        assert not (tmp_path / "f").exists()  # refused before any folder or file


@pytest.mark.parametrize("name", [n for n in EXTREME if EXTREME[n][1] is not None])
def test_extreme_values_in_the_other_readers(tmp_path, capsys, name):
    """The page, every export and a path take any finite value (or refuse with one line)."""
    file = extreme(name).save(tmp_path / "s.h5")
    x, y = EXTREME[name][0], EXTREME[name][1]
    assert y is not None
    runs = [
        ["view", file, "-o", tmp_path / "v.html"],
        ["info", file],
        ["path", file, "--start", f"{x[1]:.17g},{y[1]:.17g}", "-o", tmp_path / "p.csv"],
    ]
    runs += [["export", file, "-o", tmp_path / f"e.{fmt}"] for fmt in ("csv", "npz", "vtp", "obj")]
    for argv in runs:
        code, _, err = run(capsys, argv)
        assert code == 0 or (code == 2 and err.count("\n") == 1), (argv[0], err)


def test_zmax_draws_losses_beyond_the_limit(tmp_path, capsys):
    file = extreme("losses up to 1.7e308").save(tmp_path / "s.h5")
    code, _, err = run(capsys, ["plot", file, "-o", tmp_path / "f", "--zmax", "1e10"])
    assert code == 0, err
    assert len(list((tmp_path / "f").iterdir())) == 5


def test_a_seed_stack_of_extreme_losses_is_refused_with_one_line():
    stacked = stack_of(bowl())
    assert stacked.stack is not None
    huge = replace(stacked, stack=replace(stacked.stack, loss=stacked.stack.loss * 1e250))
    with pytest.raises(LosslandError, match="beyond what a figure draws") as info:
        F.seeds_figure(huge)
    assert_one_line(str(info.value))


# --- view --serve on real sockets ---------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Any, Path, int]]:
    """A big page (8 MB, so a download takes many writes) served with a 0.5 s idle timeout."""
    page = tmp_path / os.fsdecode(b"p\xff\x1b.html")
    page.write_bytes(b"<!DOCTYPE html>" + os.urandom(8 << 20))
    httpd = make_server(page, 0, timeout=0.5)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd, page, httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def request(port: int, host: str | None, path: str = "/") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        head = f"GET {path} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host is not None else "")
        sock.sendall((head + "Connection: close\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := sock.recv(1 << 16):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:{port}", 200),
        ("localhost:{port}", 200),
        ("LocalHost:{port}", 200),
        (None, 421),
        ("", 421),
        ("evil.example:{port}", 421),  # a DNS-rebinding page: its own name, our address
        ("127.0.0.1.nip.io:{port}", 421),
        ("127.0.0.1:{other}", 421),
        ("127.0.0.1", 421),  # the default port 80, not ours
        ("localhost.:{port}", 421),
        ("[::1]:{port}", 421),  # the server listens on 127.0.0.1 only
    ],
)
def test_the_server_answers_only_requests_to_itself(served, host, status):
    _, page, port = served
    text = None if host is None else host.format(port=port, other=port + 1)
    got, body = request(port, text)
    assert got == status
    if status == 200:
        assert body == page.read_bytes()


def test_a_name_that_is_not_utf8_is_served_at_its_encoded_path(served):
    _, page, port = served
    status, body = request(port, f"127.0.0.1:{port}", "/p%FF%1B.html")
    assert status == 200 and body == page.read_bytes()


def test_aborted_downloads_are_quiet(served, capfd):
    _, _, port = served
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a note would fail here
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            sock.recv(4096)  # the download has started
            # Reset, not a clean close: the server's next write fails (BrokenPipe/Reset).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        time.sleep(0.5)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_idle_connections_are_closed_after_the_timeout(served):
    """Connections that send nothing, or a request that never ends, are closed by the server
    after its 0.5 s timeout, and their threads end."""
    _, _, port = served
    before = threading.active_count()
    started = time.monotonic()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(8)]
    half = socket.create_connection(("127.0.0.1", port), timeout=5)
    half.sendall(b"GET / HTTP/1.1\r\n")  # a request that never ends
    for sock in [*idle, half]:
        assert sock.recv(1) == b""  # closed by the server
        sock.close()
    assert 0.4 < time.monotonic() - started < 3
    deadline = time.monotonic() + 3
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before


def test_view_serve_end_to_end_quiet_and_escaped(tmp_path):
    """``lossland view --serve`` in its own process: a hostile, non-UTF-8 file name is printed
    escaped, aborted downloads print nothing, Ctrl-C ends it with status 0."""
    name = os.fsdecode(b"s\xff\x1b[2J")
    file = bowl().save(tmp_path / f"{name}.h5")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lossland", "view", str(file), "--serve", "--no-browser"],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        written = proc.stdout.readline().decode()
        announce = proc.stdout.readline().decode()
        assert "\\xff\\x1b[2J" in written and "\\xff\\x1b[2J" in announce
        port = int(announce.split("http://127.0.0.1:")[1].split("/")[0])
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            sock.recv(1024)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        url = f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(url, timeout=5) as response:
            page = response.read().decode("utf-8")
        assert "\\xff\\x1b[2J" in page.split("<title>")[1].split("</title>")[0]
    finally:
        proc.send_signal(2)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert err.decode() == ""


# --- names the file system cannot take: one line from check_output, for every writer ----------

LONG = "n" * 300
DEEP = "/".join(["d" * 200] * 25)  # past PATH_MAX (4096 bytes)


def writers(w: dict[str, Path], out: Path) -> dict[str, list[Any]]:
    source = bowl().save(w["folder"] / "long-source.h5")
    data = ["--data-dir", w["data"], "--samples", "all", "--device", "cpu"]
    return {
        "train": ["train", "--data-dir", w["data"], "--limit", "16", "--device", "cpu", "-o", out],
        "surface": ["surface", w["ckpt"], "-o", out, *data, "--x", "-1:1:3"],
        "interpolate": ["interpolate", w["ckpt"], w["ckpt2"], "-o", out, *data],
        "hessian --save-directions": ["hessian", w["ckpt"], *data[:-2], "--save-directions", out],
        "hessian -o": ["hessian", w["ckpt"], *data[:-2], "--density", "-o", out],
        "plot": ["plot", source, "-o", out],
        "path": ["path", source, "--start", "0,0", "-o", f"{out}.csv"],
        "view": ["view", source, "-o", out],
        "export": ["export", source, "-o", f"{out}.csv"],
        "demo": ["demo", "-o", out, "--data-dir", w["data"]],
        "train --trajectory-dir": [
            "train",
            "--data-dir",
            w["data"],
            "--limit",
            "16",
            "--device",
            "cpu",
            "-o",
            w["folder"] / "t.safetensors",
            "--overwrite",
            "--save-every",
            "1",
            "--trajectory-dir",
            out,
        ],
        "surface --save-directions": [
            "surface",
            w["ckpt"],
            "-o",
            w["folder"] / "sd.h5",
            *data,
            "--x",
            "-1:1:3",
            "--save-directions",
            out,
        ],
    }


SHAPES = {
    "a 300-byte name": "bytes; the file system takes 255",
    "a name that leaves no room for lossland's files": "files it writes beside it",
    "a 300-byte folder name": "folder name of 300 bytes",
    "a path past PATH_MAX": "bytes long; the file system takes 4095",
}
WRITERS = [
    "train",
    "surface",
    "interpolate",
    "hessian --save-directions",
    "hessian -o",
    "plot",
    "path",
    "view",
    "export",
    "demo",
    "train --trajectory-dir",
    "surface --save-directions",
]
# Their output is a folder: a 240-byte folder name is fine.
FOLDERS = ("plot", "demo", "train --trajectory-dir")


@pytest.mark.parametrize(
    ("writer", "shape"),
    [(w, s) for w in WRITERS for s in SHAPES if not (w in FOLDERS and "no room" in s)],
)
def test_names_too_long_are_one_line_before_any_work(world, tmp_path, capsys, writer, shape):
    expected = SHAPES[shape]
    out = {
        "a 300-byte name": tmp_path / LONG,
        "a name that leaves no room for lossland's files": tmp_path / ("m" * 240),
        "a 300-byte folder name": tmp_path / LONG / "x",
        "a path past PATH_MAX": tmp_path / DEEP,
    }[shape]
    started = time.perf_counter()
    code, out_text, err = run(capsys, writers(world, out)[writer])
    assert code == 2, err
    assert expected in err and "choose a shorter" in err, err
    assert_one_line(err)
    assert out_text == ""
    assert time.perf_counter() - started < 5  # before any training, evaluation or drawing
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_api_writers_refuse_long_names(tmp_path):
    for write in (
        lambda: bowl().save(tmp_path / LONG),
        lambda: lossland.plot(bowl(), tmp_path / LONG),
        lambda: show.write_viewer(bowl(), tmp_path / DEEP),
    ):
        with pytest.raises(LosslandError, match="choose a shorter"):
            write()


def test_a_long_input_path_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, ["info", tmp_path / DEEP])
    assert code == 2 and "give a shorter path" in err
    assert_one_line(err)


# --- --compile with a cache folder it cannot write ----------------------------------------------


def compile_run(world: dict[str, Path], out: Path) -> list[Any]:
    return [
        "surface",
        world["ckpt"],
        "-o",
        out,
        "--data-dir",
        world["data"],
        "--samples",
        "all",
        "--device",
        "cpu",
        "--x",
        "-1:1:3",
        "--compile",
        "--no-progress",
    ]


@pytest.mark.parametrize(
    ("case", "expected"),
    [("under a file", "Not a directory"), ("too little room", "MB wanted")],
)
def test_compile_refuses_a_cache_it_cannot_write_before_any_work(
    world, tmp_path, capsys, monkeypatch, case, expected
):
    if case == "under a file":
        blocker = tmp_path / "file"
        blocker.write_text("x")
        monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(blocker / "cache"))
    else:
        monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.setattr(_compile, "COMPILE_ROOM", 1 << 62)
    out = tmp_path / "s.h5"
    code, _, err = run(capsys, compile_run(world, out))
    assert code == 2 and expected in err, err
    assert "torch.compile cannot write to" in err and "--compile" in err
    assert "TMPDIR" in err and "model" not in err
    assert_one_line(err.splitlines()[-1])
    assert not out.exists()


def test_compile_failures_are_named_as_the_compilers(tmp_path):
    """torch's compiler exceptions (with an OSError beneath or not) are the compiler's, with
    the cache folder when the disk is the cause; the model's own exceptions stay the model's."""
    from torch._dynamo.exc import BackendCompilerFailed

    full = OSError(28, "No space left on device", str(tmp_path / "k.so"))
    wrapped = BackendCompilerFailed(lambda *a: None, full, None)
    wrapped.__cause__ = full
    message = _compile.compile_failure(wrapped) or ""
    assert f"cannot write to {tmp_path / 'k.so'} (No space left on device)" in message
    other = BackendCompilerFailed(lambda *a: None, RuntimeError("bad kernel"), None)
    message = _compile.compile_failure(other) or ""
    assert "torch.compile failed" in message and "TMPDIR" in message
    assert str(_compile.compile_cache()) in message
    assert _compile.compile_failure(ValueError("the model's own")) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs (root only)")
def test_compile_with_a_full_tmpdir_end_to_end(world, tmp_path):
    """A real full TMPDIR (a 256 KB tmpfs with 16 KB left): the run stops before any point with
    one line naming the folder; past the room check, the failing compile says the same."""
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(full)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (full / "fill").write_bytes(b"\0" * (240 << 10))
        argv = [str(a) for a in compile_run(world, tmp_path / "s.h5")]
        environ = env(TMPDIR=str(full))
        environ.pop("TORCHINDUCTOR_CACHE_DIR", None)  # torch sets it in this process
        first = subprocess.run(
            [sys.executable, "-m", "lossland", *argv],
            env=environ,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert first.returncode == 2 and "MB wanted" in first.stderr, first.stderr
        late = (
            "import sys; import lossland.engine._compile as c; c.COMPILE_ROOM = 0; "
            "from lossland.cli import main; sys.exit(main(sys.argv[1:]))"
        )
        second = subprocess.run(
            [sys.executable, "-c", late, *argv],
            env=environ,
            capture_output=True,
            text=True,
            timeout=300,
        )
        errors = [line for line in second.stderr.splitlines() if line.startswith("lossland:")]
        assert second.returncode == 2 and len(errors) == 1, second.stderr
        assert "torch.compile" in errors[0] and str(full) in errors[0], errors[0]
        assert "raised" not in errors[0]
        assert "Traceback" not in second.stderr
    finally:
        subprocess.run(["umount", str(full)], check=False)
