"""``lossland demo`` end to end on tiny generated data (the real run is ``make demo``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lossland.cli import main
from lossland.io import Surface


def test_demo_writes_the_folder(
    fashion_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "demo"
    assert (
        main(
            ["demo", "-o", str(out), "--data-dir", str(fashion_dir), "--grid", "5", "--no-progress"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "demo finished" in printed and "test accuracy" in printed
    assert "correlation of ln(loss) between seeds" in printed  # the robustness check
    assert re.search(r"\d+ minim(um|a) in \d+ components?", printed)  # the basin summary
    surface = Surface.load(out / "surface.h5")
    assert surface.loss.shape == (5, 5) and surface.complete
    seeds = Surface.load(out / "seeds.h5")
    assert seeds.stack is not None and seeds.stack.loss.shape == (3, 5, 5) and seeds.complete
    assert (out / "seeds_seeds.png").stat().st_size > 0
    for name in (
        "model.safetensors",
        "surface_contour.png",
        "surface_contourf.png",
        "surface_heatmap.png",
        "surface_3d.png",
    ):
        assert (out / name).stat().st_size > 0, name


def test_demo_rejects_a_tiny_grid(
    fashion_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    assert (
        main(["demo", "-o", str(tmp_path / "d"), "--data-dir", str(fashion_dir), "--grid", "1"])
        == 2
    )
    assert "--grid must be at least 2" in capsys.readouterr().err
    assert not (tmp_path / "d" / "model.safetensors").exists()
