"""The surface file: the documented HDF5 layout, readable with plain h5py, and validated."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from lossland import run as landscape
from lossland.analysis import describe
from lossland.errors import SurfaceFileError
from lossland.io import Surface, SurfaceValues


def test_plain_h5py_reads_the_documented_keys(tiny_model, tiny_data, tmp_path: Path):
    out = tmp_path / "s.h5"
    s = landscape.surface(
        tiny_model, tiny_data, x="-1:1:5", y="-2:2:3", out=out, split="test", progress=False
    )
    with h5py.File(out, "r") as f:
        x, y = f["xcoordinates"][()], f["ycoordinates"][()]
        loss, acc, sem, done = (
            f[k][()] for k in ("test_loss", "test_acc", "test_loss_sem", "done")
        )
        attrs = dict(f.attrs)
    np.testing.assert_array_equal(x, np.linspace(-1, 1, 5))
    np.testing.assert_array_equal(y, np.linspace(-2, 2, 3))
    assert loss.shape == acc.shape == sem.shape == done.shape == (3, 5)  # (ny, nx)
    np.testing.assert_array_equal(loss, s.loss)
    assert done.dtype == np.uint8 and done.all()
    for key in (
        "lossland_version",
        "torch_version",
        "norm",
        "ignore",
        "scheme",
        "bn",
        "dtype",
        "device",
        "samples",
        "seed",
        "wall_time_s",
        "directions_sha256",
    ):
        assert key in attrs, key
    # The reference implementation's reader: meshgrid(x, y) matches Z's shape.
    xx, _ = np.meshgrid(x, y)
    assert xx.shape == loss.shape


def test_one_dimensional_file_layout(tiny_model, tiny_data, tmp_path: Path):
    out = tmp_path / "line.h5"
    landscape.surface(tiny_model, tiny_data, x="-1:1:7", out=out, split="train", progress=False)
    with h5py.File(out, "r") as f:
        assert "ycoordinates" not in f
        assert f["train_loss"].shape == (7,)
    loaded = Surface.load(out)
    assert loaded.ndim == 1 and loaded.y is None and loaded.complete


def test_round_trip_keeps_values_attrs_and_trajectories(tmp_path: Path):
    s = Surface.empty(np.linspace(0, 1, 4), np.linspace(-1, 1, 3), split="train")
    s.store(
        (1, slice(None)),
        {"loss": np.array([1.0, np.inf, np.nan, 2.0]), "acc": np.ones(4), "loss_sem": np.zeros(4)},
    )
    s = s.with_attrs(model="small", cosine=0.01, info={"a": [1, 2]}, flag=True, count=3)
    s = Surface(**{**s.__dict__, "trajectories": {"adam": np.array([[0.0, 0.1], [0.2, 0.3]])}})
    path = s.save(tmp_path / "r.h5")
    back = Surface.load(path)
    np.testing.assert_array_equal(back.loss, s.loss)
    np.testing.assert_array_equal(back.done, s.done)
    assert back.attrs["info"] == {"a": [1, 2]} and back.attrs["flag"] is True
    assert back.attrs["count"] == 3 and back.attrs["model"] == "small"
    np.testing.assert_array_equal(back.trajectories["adam"], s.trajectories["adam"])


def test_reference_style_file_without_our_extras(tmp_path: Path):
    path = tmp_path / "ref.h5"
    with h5py.File(path, "w") as f:
        f["xcoordinates"] = np.linspace(-1, 1, 3)
        f["ycoordinates"] = np.linspace(-1, 1, 2)
        f["train_loss"] = np.array([[1.0, 0.5, -1.0], [2.0, 1.0, 3.0]])
        f["train_acc"] = np.zeros((2, 3))
    s = Surface.load(path)
    assert s.split == "train"
    assert s.done.tolist() == [[True, True, False], [True, True, True]]  # -1 marks "not done"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.__delitem__("xcoordinates"), "no xcoordinates"),
        (
            lambda f: (
                f.__delitem__("train_loss"),
                f.create_dataset("train_loss", data=np.zeros((2, 2))),
            ),
            "shaped",
        ),
        (
            lambda f: (
                f.__delitem__("train_loss"),
                f.create_dataset("train_loss", data=np.array([[b"a"] * 3] * 2)),
            ),
            "not numeric",
        ),
        (
            lambda f: (
                f.__delitem__("xcoordinates"),
                f.create_dataset("xcoordinates", data=np.zeros((3, 1))),
            ),
            "dimensions",
        ),
    ],
)
def test_malformed_files_are_rejected_with_one_line(tmp_path: Path, mutate, message):
    s = Surface.empty(np.linspace(0, 1, 3), np.linspace(0, 1, 2), split="train")
    path = s.save(tmp_path / "m.h5")
    with h5py.File(path, "a") as f:
        mutate(f)
    with pytest.raises(SurfaceFileError, match=message) as info:
        Surface.load(path)
    assert "\n" not in str(info.value)


def test_truncated_and_missing_files(tmp_path: Path):
    s = Surface.empty(np.linspace(0, 1, 3), None, split="train")
    path = s.save(tmp_path / "t.h5")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SurfaceFileError, match="corrupt"):
        Surface.load(path)
    with pytest.raises(SurfaceFileError, match="not found"):
        Surface.load(tmp_path / "missing.h5")


def test_infinities_become_the_largest_finite_value():
    z = np.array([1.0, np.inf, -np.inf, np.nan, 3.0])
    rows = {"loss": z, "acc": np.full_like(z, np.nan), "loss_sem": np.full_like(z, np.nan)}
    out = SurfaceValues.of(rows, np.ones(z.shape, dtype=bool)).loss
    assert out.tolist()[:3] == [1.0, 3.0, 3.0] and np.isnan(out[3]) and out[4] == 3.0


def test_argmin_and_describe(tmp_path: Path):
    s = Surface.empty(np.array([-1.0, 0.0, 1.0]), np.array([0.0, 1.0]), split="train")
    s.store(
        (slice(None), slice(None)),
        {
            "loss": np.array([[3.0, 1.0, 2.0], [0.5, 4.0, np.inf]]),
            "acc": np.ones((2, 3)),
            "loss_sem": np.zeros((2, 3)),
        },
    )
    assert s.argmin() == (-1.0, 1.0, 0.5)
    text = describe(s)
    assert "min 0.5 at (x=-1, y=1)" in text and "non-finite losses: 1" in text
