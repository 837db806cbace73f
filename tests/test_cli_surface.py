"""``lossland surface`` / ``info`` / ``plot`` end to end on tiny generated Fashion-MNIST files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lossland.cli import main
from lossland.directions import random_directions
from lossland.io import Surface
from lossland.zoo import load_model, vgg


@pytest.fixture(scope="session")
def checkpoints(fashion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    paths = []
    for seed in (0, 1):
        out = folder / f"small{seed}.safetensors"
        args = ["train", "--data-dir", str(fashion_dir), "--limit", "200", "--seed", str(seed)]
        assert main([*args, "-o", str(out), "--no-progress"]) == 0
        paths.append(out)
    return paths[0], paths[1]


def run(*args: str | Path) -> int:
    return main([str(a) for a in args])


def surface_args(ckpt: Path, out: Path, fashion_dir: Path, *extra: str) -> list[str | Path]:
    return [
        "surface",
        ckpt,
        "-o",
        out,
        "--data-dir",
        fashion_dir,
        "--samples",
        "64",
        "--no-progress",
        *extra,
    ]


def test_surface_info_and_plot(checkpoints, fashion_dir, tmp_path, capsys):
    out = tmp_path / "s.h5"
    assert (
        run(*surface_args(checkpoints[0], out, fashion_dir, "--x", "-1:1:5", "--y", "-1:1:4")) == 0
    )
    printed = capsys.readouterr()
    assert "5x4" not in printed.out and "4x5 surface" in printed.out
    assert "cosine(x, y)" in printed.err
    s = Surface.load(out)
    assert s.loss.shape == (4, 5) and s.complete
    assert s.attrs["checkpoint_sha256"] and s.attrs["samples"] == 64
    # Random directions are stored as their recipe, not as a file.
    assert s.attrs["directions_file"] == "" and s.attrs["directions_kind"] == "random"
    assert not list(tmp_path.glob("*.safetensors"))
    assert run("info", out) == 0
    info = capsys.readouterr().out
    assert "loss: min" in info and "done: 20/20" in info
    assert run("plot", out, "-o", tmp_path / "figs") == 0
    assert len(list((tmp_path / "figs").glob("*.png"))) == 5  # the four maps and the topology


def test_same_seed_and_reused_directions_are_bit_identical(checkpoints, fashion_dir, tmp_path):
    grid = ("--x", "-1:1:4", "--y", "-0.5:0.5:3")
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    assert run(*surface_args(checkpoints[0], b, fashion_dir, *grid, "--seed", "3")) == 0
    directions = tmp_path / "a.directions.safetensors"
    saved = ("--save-directions", directions)
    assert run(*surface_args(checkpoints[0], a, fashion_dir, *grid, "--seed", "3", *saved)) == 0
    # The seed also picks the sample subset, so it stays; the directions come from the file.
    reuse = ("--directions", directions, "--seed", "3")
    assert run(*surface_args(checkpoints[0], c, fashion_dir, *grid, *reuse)) == 0
    sa, sb, sc = (Surface.load(p) for p in (a, b, c))
    assert np.array_equal(sa.loss, sb.loss) and np.array_equal(sa.loss, sc.loss)
    assert sa.attrs["directions_sha256"] == sc.attrs["directions_sha256"]


def test_line_between_two_checkpoints_passes_through_both(checkpoints, fashion_dir, tmp_path):
    out = tmp_path / "line.h5"
    assert (
        run(*surface_args(checkpoints[0], out, fashion_dir, "--to", checkpoints[1], "--x", "0:1:3"))
        == 0
    )
    s = Surface.load(out)
    for t, ckpt in ((0, checkpoints[0]), (-1, checkpoints[1])):
        model, _ = load_model(ckpt)
        own = Path(tmp_path / f"own{t}.h5")
        assert run(*surface_args(ckpt, own, fashion_dir, "--x", "0:0:1")) == 0
        assert s.loss[t] == pytest.approx(Surface.load(own).loss[0], rel=1e-5)
        del model


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("spec", ["1:0:5", "a:b:c", "0:1:0", "0:1", "1:1:3"])
def test_malformed_ranges(checkpoints, fashion_dir, tmp_path, capsys, spec):
    assert run(*surface_args(checkpoints[0], tmp_path / "x.h5", fashion_dir, "--x", spec)) == 2
    assert spec in one_line_error(capsys)
    assert not (tmp_path / "x.h5").exists()


def test_directions_of_another_model(checkpoints, fashion_dir, tmp_path, capsys):
    other = random_directions(vgg(width=0.125), seed=0).save(tmp_path / "vgg.safetensors")
    code = run(
        *surface_args(
            checkpoints[0], tmp_path / "x.h5", fashion_dir, "--y", "-1:1:3", "--directions", other
        )
    )
    assert code == 2
    assert "do not fit this model" in one_line_error(capsys)


@pytest.mark.parametrize(("option", "value"), [("--scheme", "cubic"), ("--norm", "unit")])
def test_unknown_scheme_or_norm(checkpoints, fashion_dir, tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        run(*surface_args(checkpoints[0], tmp_path / "x.h5", fashion_dir, option, value))
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_samples_larger_than_the_split(checkpoints, fashion_dir, tmp_path, capsys):
    args = surface_args(checkpoints[0], tmp_path / "x.h5", fashion_dir)
    args[args.index("64")] = "100000"
    assert run(*args) == 2
    assert "larger than the train split" in one_line_error(capsys)


def test_user_loss_that_raises_keeps_the_points_done(
    checkpoints, fashion_dir, tmp_path, capsys, monkeypatch
):
    (tmp_path / "myloss.py").write_text(
        "import torch.nn.functional as F\n"
        "calls = 0\n"
        "def loss(logits, targets):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    if calls > 3:\n"
        "        raise RuntimeError('nan in my loss')\n"
        "    return F.cross_entropy(logits, targets, reduction='none')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "x.h5"
    code = run(
        *surface_args(
            checkpoints[0],
            out,
            fashion_dir,
            "--x",
            "-1:1:6",
            "--loss",
            "myloss:loss",
            "--batch-size",
            "64",
        )
    )
    assert code == 2
    err = one_line_error(capsys)
    assert "RuntimeError" in err and "nan in my loss" in err and str(out) in err
    assert Surface.load(out).done.sum() == 3
    sys.modules.pop("myloss", None)


def test_loss_import_path_that_does_not_exist(checkpoints, fashion_dir, tmp_path, capsys):
    code = run(
        *surface_args(checkpoints[0], tmp_path / "x.h5", fashion_dir, "--loss", "no_such_mod:f")
    )
    assert code == 2
    assert "cannot import module" in one_line_error(capsys)


def test_checkpoint_of_another_model(checkpoints, fashion_dir, tmp_path, capsys):
    code = run(
        *surface_args(
            checkpoints[0], tmp_path / "x.h5", fashion_dir, "--model", "vgg", "--width", "0.125"
        )
    )
    assert code == 2
    assert "does not fit the model" in one_line_error(capsys)


def test_negative_range_values_parse_without_equals(checkpoints, fashion_dir, tmp_path):
    out = tmp_path / "neg.h5"
    assert (
        run(*surface_args(checkpoints[0], out, fashion_dir, "--x", "-2:-1:3", "--y", "-.5:0:2"))
        == 0
    )
    s = Surface.load(out)
    np.testing.assert_array_equal(s.x, [-2.0, -1.5, -1.0])
    np.testing.assert_array_equal(s.y, [-0.5, 0.0])
    assert torch.isfinite(torch.as_tensor(s.loss)).all()
