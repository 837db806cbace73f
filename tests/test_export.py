"""Tests for `lossland export`: every format is read back and compared with the surface."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lossland.cli import main
from lossland.errors import LosslandError, LosslandWarning
from lossland.io import Surface, export, heights, read_npz

X = np.linspace(-1.0, 1.0, 7)
Y = np.linspace(-0.5, 1.0, 5)


def make_surface(**changes: Any) -> Surface:
    gx, gy = np.meshgrid(X, Y)
    loss = 0.2 + gx**2 + gy**2
    fields: dict[str, Any] = {
        "x": X,
        "y": Y,
        "loss": loss,
        "acc": 1.0 - loss / 4,
        "loss_sem": loss / 100,
        "done": np.ones(loss.shape, dtype=bool),
        "split": "test",
        "attrs": {"model": "bowl", "settings": {"norm": "filter", "seed": 3}},
        "trajectories": {"run": np.array([[0.1, 0.2], [0.0, 0.0]])},
    }
    fields.update(changes)
    return Surface(**fields)


def with_holes() -> Surface:
    s = make_surface()
    loss, done = s.loss.copy(), s.done.copy()
    loss[1, 2], done[1, 2] = np.nan, False  # not evaluated
    loss[3, 5] = np.inf  # diverged: the largest finite value
    return make_surface(loss=loss, done=done)


def line() -> Surface:
    return Surface(X, None, X**2 + 1, X * 0 + 0.5, X * 0, np.ones(len(X), dtype=bool))


# --- vtp ---------------------------------------------------------------------------------------


def read_vtp(file: Path) -> dict[str, Any]:
    """A minimal reader of the ASCII PolyData this package writes (VTK's own layout rules)."""
    root = ET.parse(file).getroot()
    assert root.tag == "VTKFile" and root.get("type") == "PolyData"
    piece = root.find("PolyData/Piece")
    assert piece is not None

    def array(section: str, name: str, dtype: type = float) -> np.ndarray:
        node = piece.find(f"{section}/DataArray[@Name='{name}']")
        assert node is not None, f"{section}/{name}"
        assert node.get("format") == "ascii"
        values: np.ndarray = np.array((node.text or "").split(), dtype=dtype)
        if values.size and dtype is float:
            assert float(node.get("RangeMin", "nan")) == values.min()
            assert float(node.get("RangeMax", "nan")) == values.max()
        return values

    n_points = int(piece.get("NumberOfPoints", "-1"))
    n_polys = int(piece.get("NumberOfPolys", "-1"))
    points = array("Points", "Points").reshape(-1, 3)
    connectivity = array("Polys", "connectivity", int)
    offsets = array("Polys", "offsets", int)
    assert len(points) == n_points and len(offsets) == n_polys
    assert offsets[-1] == len(connectivity) if n_polys else True
    starts = np.concatenate([[0], offsets[:-1]])
    polys = [connectivity[a:b] for a, b in zip(starts, offsets, strict=True)]
    names = [a.get("Name") for a in piece.findall("PointData/DataArray")]
    return {
        "points": points,
        "polys": polys,
        "point_data": {name: array("PointData", str(name)) for name in names},
        "cell_data": array("CellData", "averaged zvalue"),
    }


def test_vtp_round_trip(tmp_path: Path) -> None:
    surface = make_surface()
    vtp = read_vtp(export(surface, tmp_path / "s.vtp"))
    gx, gy = surface.grid()
    np.testing.assert_array_equal(vtp["points"][:, 0], gx.ravel())
    np.testing.assert_array_equal(vtp["points"][:, 1], gy.ravel())
    np.testing.assert_array_equal(vtp["points"][:, 2], surface.loss.ravel())
    np.testing.assert_array_equal(vtp["point_data"]["zvalue"], surface.loss.ravel())
    np.testing.assert_array_equal(vtp["point_data"]["accuracy"], surface.acc.ravel())
    assert len(vtp["polys"]) == (len(X) - 1) * (len(Y) - 1)
    nx = len(X)
    assert list(vtp["polys"][0]) == [0, 1, nx + 1, nx]  # the reference's quad order
    first = surface.loss[:2, :2].mean()
    assert vtp["cell_data"][0] == pytest.approx(first)


def test_vtp_log_and_zmax(tmp_path: Path) -> None:
    surface = make_surface()
    vtp = read_vtp(export(surface, tmp_path / "s.vtp", log=True, zmax=1.0))
    expected = np.log(np.minimum(surface.loss, 1.0)).ravel()
    np.testing.assert_allclose(vtp["points"][:, 2], expected, rtol=0, atol=0)
    np.testing.assert_array_equal(vtp["point_data"]["loss"], surface.loss.ravel())
    assert vtp["points"][:, 2].max() == 0.0  # ln(1)


def test_vtp_skips_holes_and_replaces_inf(tmp_path: Path) -> None:
    surface = with_holes()
    with pytest.warns(LosslandWarning, match="1 of 35 points not evaluated.*1 infinite"):
        vtp = read_vtp(export(surface, tmp_path / "s.vtp"))
    assert len(vtp["points"]) == surface.loss.size - 1
    # The four cells around the hole are gone.
    assert len(vtp["polys"]) == (len(X) - 1) * (len(Y) - 1) - 4
    assert np.isfinite(vtp["points"]).all()
    finite = surface.loss[np.isfinite(surface.loss)]
    assert vtp["points"][:, 2].max() == finite.max()
    for poly in vtp["polys"]:
        assert len(poly) == 4 and poly.max() < len(vtp["points"])


# --- obj ---------------------------------------------------------------------------------------


def read_obj(file: Path) -> tuple[np.ndarray, np.ndarray]:
    vertices, faces = [], []
    for text in file.read_text().splitlines():
        if text.startswith("v "):
            vertices.append([float(v) for v in text.split()[1:]])
        elif text.startswith("f "):
            faces.append([int(v) for v in text.split()[1:]])
    return np.array(vertices), np.array(faces)


def test_obj_round_trip(tmp_path: Path) -> None:
    surface = make_surface()
    vertices, faces = read_obj(export(surface, tmp_path / "s.obj", zmax=1.5))
    gx, gy = surface.grid()
    np.testing.assert_array_equal(
        vertices, np.column_stack([gx.ravel(), gy.ravel(), np.minimum(surface.loss, 1.5).ravel()])
    )
    assert faces.shape == (2 * (len(X) - 1) * (len(Y) - 1), 3)
    assert faces.min() == 1 and faces.max() == len(vertices)  # 1-based
    # Every triangle has a positive area seen from above (consistent orientation).
    a, b, c = (vertices[faces[:, k] - 1, :2] for k in range(3))
    cross = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    assert (cross > 0).all()


def test_obj_skips_faces_touching_holes(tmp_path: Path) -> None:
    surface = with_holes()
    with pytest.warns(LosslandWarning, match="not evaluated"):
        vertices, faces = read_obj(export(surface, tmp_path / "s.obj", log=True))
    assert len(vertices) == surface.loss.size - 1
    assert np.isfinite(vertices).all()
    # 4 cells touch the hole: each keeps one triangle (of its three evaluated corners).
    assert len(faces) == 2 * (len(X) - 1) * (len(Y) - 1) - 4
    hole = (float(X[2]), float(Y[1]))
    assert not any(np.allclose(v[:2], hole) for v in vertices)


# --- csv and npz -------------------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Path) -> None:
    surface = with_holes()
    file = export(surface, tmp_path / "s.csv")
    rows = list(csv.DictReader(file.read_text().splitlines()))
    assert list(rows[0]) == ["x", "y", "loss", "acc", "loss_sem", "done"]
    gx, gy = surface.grid()
    values = {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}
    np.testing.assert_array_equal(values["x"], gx.ravel())
    np.testing.assert_array_equal(values["y"], gy.ravel())
    np.testing.assert_array_equal(values["loss"], surface.loss.ravel())  # raw: nan and inf kept
    np.testing.assert_array_equal(values["acc"], surface.acc.ravel())
    np.testing.assert_array_equal(values["loss_sem"], surface.loss_sem.ravel())
    np.testing.assert_array_equal(values["done"].astype(bool), surface.done.ravel())


def test_csv_of_a_1d_surface(tmp_path: Path) -> None:
    rows = list(csv.DictReader(export(line(), tmp_path / "l.csv").read_text().splitlines()))
    assert list(rows[0]) == ["x", "loss", "acc", "loss_sem", "done"]
    assert [float(r["x"]) for r in rows] == X.tolist()


@pytest.mark.parametrize("surface", [with_holes(), line()], ids=["2d", "1d"])
def test_npz_round_trip(tmp_path: Path, surface: Surface) -> None:
    file = export(surface, tmp_path / "s.npz")
    back = read_npz(file)
    np.testing.assert_array_equal(back.x, surface.x)
    if surface.y is None:
        assert back.y is None
    else:
        assert back.y is not None
        np.testing.assert_array_equal(back.y, surface.y)
    for name in ("loss", "acc", "loss_sem", "done"):
        np.testing.assert_array_equal(getattr(back, name), getattr(surface, name))
    assert back.split == surface.split
    assert dict(back.attrs) == json.loads(json.dumps(dict(surface.attrs)))
    assert set(back.trajectories) == set(surface.trajectories)
    with np.load(file) as data:  # plain numpy, no pickles
        assert {"x", "loss", "acc", "loss_sem", "done", "attrs"} <= set(data.files)
        assert json.loads(str(data["attrs"])) == json.loads(json.dumps(dict(surface.attrs)))


def test_read_npz_errors(tmp_path: Path) -> None:
    with pytest.raises(LosslandError, match="not found"):
        read_npz(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(LosslandError, match="cannot be read"):
        read_npz(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, x=X)
    with pytest.raises(LosslandError, match="lacks loss"):
        read_npz(partial)


# --- errors and the CLI ------------------------------------------------------------------------


def test_heights() -> None:
    surface = with_holes()
    z = heights(surface, zmax=1.0)
    assert np.isnan(z[1, 2]) and z[3, 5] == 1.0
    with pytest.raises(LosslandError, match="positive"):
        heights(make_surface(loss=make_surface().loss - 1.0), log=True)


@pytest.mark.parametrize(
    ("surface", "name", "kwargs", "message"),
    [
        (line(), "l.vtp", {}, "1-D"),
        (line(), "l.obj", {}, "1-D"),
        (make_surface(), "s.csv", {"log": True}, "raw grid"),
        (make_surface(), "s.npz", {"zmax": 2.0}, "raw grid"),
        (make_surface(), "s.ply", {}, "cannot tell the export format"),
        (make_surface(), "s.vtp", {"zmax": float("inf")}, "finite"),
        (Surface.empty(X, Y, split="train"), "e.vtp", {}, "no evaluated points"),
    ],
)
def test_export_errors(
    tmp_path: Path, surface: Surface, name: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(LosslandError, match=message) as info:
        export(surface, tmp_path / name, **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / name).exists()


def test_explicit_format_overrides_the_suffix(tmp_path: Path) -> None:
    file = export(make_surface(), tmp_path / "grid.txt", format="csv")
    assert file.read_text().startswith("x,y,loss")


@pytest.fixture
def surface_file(tmp_path: Path) -> Path:
    return make_surface().save(tmp_path / "bowl.h5")


def test_cli_export(surface_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(surface_file)]) == 0
    assert capsys.readouterr().out.strip() == str(surface_file.with_suffix(".vtp"))
    read_vtp(surface_file.with_suffix(".vtp"))
    assert main(["export", str(surface_file), "--format", "obj", "--log", "--zmax", "1"]) == 0
    assert surface_file.with_suffix(".obj").exists()
    out = tmp_path / "grid.npz"
    assert main(["export", str(surface_file), "-o", str(out)]) == 0
    np.testing.assert_array_equal(read_npz(out).loss, make_surface().loss)
    assert main(["export", str(surface_file), "-o", str(tmp_path / "g.csv")]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.h5"], "not found"),
        (["{surface}", "-o", "nowhere/s.vtp"], "does not exist"),
        (["{surface}", "-o", "s.stl"], "cannot tell the export format"),
        (["{surface}", "-o", "s.csv", "--log"], "raw grid"),
    ],
)
def test_cli_export_errors(
    surface_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(surface_file.parent)
    assert main(["export", *[a.format(surface=surface_file) for a in args]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lossland: error: ") and message in err and err.count("\n") == 1
