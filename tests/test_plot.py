"""Figures: written headless, the right size, not blank, and showing the surface they plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from lossland.cli import main
from lossland.errors import LosslandError
from lossland.io import Surface
from lossland.show import PlotStyle, caption, plot, plot_surface, plot_values


def bowl(nx: int = 31, ny: int = 25, *, inf_corner: bool = False, hole: bool = False) -> Surface:
    """loss = 0.1 + x² + y²: lowest in the centre, highest in the corners."""
    x, y = np.linspace(-1, 1, nx), np.linspace(-1, 1, ny)
    xx, yy = np.meshgrid(x, y)
    s = Surface.empty(x, y, split="train", attrs={"model": "bowl", "norm": "filter", "samples": 8})
    z = 0.1 + xx**2 + yy**2
    if inf_corner:
        z[0, 0] = np.inf
    s.store((slice(None), slice(None)), z, np.ones_like(z) * 0.5, np.zeros_like(z))
    if hole:
        s.done[ny // 2, : nx // 3] = False
        s.loss[ny // 2, : nx // 3] = np.nan
    return s


def test_all_figures_written_with_expected_size_and_content(tmp_path: Path):
    files = plot_surface(bowl(), tmp_path, stem="bowl", style=PlotStyle(dpi=100))
    names = sorted(f.name for f in files)
    assert names == ["bowl_3d.png", "bowl_contour.png", "bowl_contourf.png", "bowl_heatmap.png"]
    for f in files:
        image = mpimg.imread(f)
        assert image.shape[0] > 400 and image.shape[1] > 500  # figsize × dpi
        assert image[..., :3].std() > 0.05, f"{f.name} looks blank"
    heat = mpimg.imread(tmp_path / "bowl_heatmap.png")[..., :3]
    h, w = heat.shape[:2]
    # coolwarm: the minimum (centre of the axes) is blue, the corners of the data red.
    centre = heat[int(h * 0.47), int(w * 0.43)]
    corner = heat[int(h * 0.12), int(w * 0.16)]
    assert centre[2] > centre[0] and corner[0] > corner[2]


def test_one_dimensional_plot_has_loss_and_accuracy(tmp_path: Path):
    x = np.linspace(-1, 1, 21)
    s = Surface.empty(x, None, split="test")
    s.store(slice(None), x**2 + 0.1, 1 - x**2 / 2, np.full_like(x, 0.01))
    (path,) = plot(s, tmp_path, format="png", dpi=80)
    assert path.name == "surface_1d.png"
    assert mpimg.imread(path)[..., :3].std() > 0.05


@pytest.mark.parametrize("fmt", ["pdf", "svg"])
def test_vector_formats(tmp_path: Path, fmt: str):
    files = plot(bowl(9, 7), tmp_path, format=fmt)
    assert all(f.suffix == f".{fmt}" and f.stat().st_size > 1000 for f in files)
    head = files[0].read_bytes()[:5]
    assert head.startswith(b"%PDF") if fmt == "pdf" else b"<" in head


def test_infinite_values_and_holes_still_plot(tmp_path: Path):
    s = bowl(inf_corner=True, hole=True)
    z = plot_values(s, log=False, zmax=None)
    assert z[0, 0] == np.nanmax(z) and np.isnan(z).sum() == 10
    assert len(plot_surface(s, tmp_path)) == 4


def test_log_and_clip():
    s = bowl()
    z = plot_values(s, log=True, zmax=1.0)
    assert np.nanmax(z) == pytest.approx(0.0) and np.nanmin(z) == pytest.approx(np.log10(0.1))


def test_log_refuses_non_positive_losses():
    s = bowl()
    s.loss[0, 0] = -1.0
    with pytest.raises(LosslandError, match="log scale needs positive losses"):
        plot_values(s, log=True, zmax=None)


def test_caption_names_the_settings():
    text = caption(bowl())
    assert "model=bowl" in text and "norm=filter" in text and "grid 31×25" in text


def test_cli_plot_next_to_the_file_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = bowl(9, 7).save(tmp_path / "b.h5")
    assert main(["plot", str(path), "--log", "--levels", "12"]) == 0
    assert (tmp_path / "b_contour.png").exists()
    assert main(["plot", str(path), "--levels", "1"]) == 2
    assert "--levels must be at least 2" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing.h5")]) == 2
    assert "not found" in capsys.readouterr().err


def test_nothing_evaluated_yet(tmp_path: Path):
    s = Surface.empty(np.linspace(0, 1, 3), np.linspace(0, 1, 3), split="train")
    with pytest.raises(LosslandError, match="no evaluated points"):
        plot_surface(s, tmp_path)
