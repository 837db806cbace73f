"""Several direction seeds in one file: the stack, its robustness figures, resume, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lossland
from lossland.analysis import mean_and_spread, robustness, seed_surface
from lossland.errors import LosslandError
from lossland.show import seeds_figure
from lossland.zoo import small


@pytest.fixture(scope="module")
def model_and_data() -> tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    return small().eval(), (torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,)))


GRID = {"x": "-1:1:5", "y": "-1:1:5", "progress": False}


def test_a_stack_of_seeds_equals_the_single_seed_surfaces(model_and_data, tmp_path):
    model, data = model_and_data
    s = lossland.surface(model, data, seeds=3, seed=4, out=tmp_path / "s.h5", **GRID)
    assert s.stack is not None and s.stack.seeds == (4, 5, 6) and s.stack.loss.shape == (3, 5, 5)
    for k, seed in enumerate((4, 5, 6)):
        alone = lossland.surface(model, data, seed=seed, **GRID)
        np.testing.assert_allclose(s.stack.loss[k], alone.loss, rtol=1e-6)
        np.testing.assert_allclose(seed_surface(s, k).loss, alone.loss, rtol=1e-6)
    np.testing.assert_array_equal(s.loss, s.stack.loss[0])  # the file's own surface: seed 4
    back = lossland.load(tmp_path / "s.h5")
    assert back.stack is not None and back.stack.seeds == (4, 5, 6)
    np.testing.assert_array_equal(back.stack.loss, s.stack.loss)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]  # no seed files left behind


def test_robustness_figures_against_numpy(model_and_data):
    model, data = model_and_data
    s = lossland.surface(model, data, seeds=3, **GRID)
    summary = robustness(s)
    logs = np.log(s.stack.loss.reshape(3, -1))  # type: ignore[union-attr]
    expected = np.corrcoef(logs)
    np.testing.assert_allclose(summary["log_correlation"]["matrix"], expected, rtol=1e-9)
    assert summary["log_correlation"]["mean"] == pytest.approx(
        expected[np.triu_indices(3, 1)].mean()
    )
    mins = [float(v.min()) for v in s.stack.loss]  # type: ignore[union-attr]
    assert summary["minimum"]["loss"] == pytest.approx(mins)
    assert summary["minimum"]["loss_spread"] == pytest.approx(np.std(mins))
    mean, spread = mean_and_spread(s)
    stacked = np.log(s.stack.loss)  # type: ignore[union-attr]
    np.testing.assert_allclose(mean, stacked.mean(axis=0))
    np.testing.assert_allclose(spread, stacked.std(axis=0))
    cosines = s.attrs["direction_cosines"]
    assert cosines["pairs"] == 15 and cosines["max_abs"] < 0.1
    fig = seeds_figure(s)
    assert len(fig.axes) == 6  # three seeds, the spread map, two colour bars


def test_seed_runs_resume_and_refuse_other_seeds(model_and_data, tmp_path):
    model, data = model_and_data
    out = tmp_path / "s.h5"
    first = lossland.surface(model, data, seeds=2, out=out, **GRID)
    again = lossland.surface(model, data, seeds=2, out=out, **GRID)
    np.testing.assert_array_equal(again.stack.loss, first.stack.loss)  # type: ignore[union-attr]
    assert all(a["points_computed"] == 0 for a in again.stack.attrs)  # type: ignore[union-attr]
    with pytest.raises(LosslandError, match="seeds"):
        lossland.surface(model, data, seeds=3, out=out, **GRID)
    with pytest.raises(LosslandError, match="samples"):  # a finished seed is checked too
        lossland.surface(model, data, seeds=2, out=out, samples=32, **GRID)
    with pytest.raises(LosslandError, match="at least 2"):
        lossland.surface(model, data, seeds=0, **GRID)


def test_the_cli_prints_the_summary_and_plots_the_seeds(model_and_data, tmp_path, capsys):
    from faultkit import surface_args, write_checkpoint, write_data
    from helpers import run_cli

    data = write_data(tmp_path / "data", n=32)
    ckpt = write_checkpoint(tmp_path / "m.safetensors")
    out = tmp_path / "s.h5"
    code, stdout, err = run_cli(
        [*surface_args(ckpt, out, data, grid="-1:1:5"), "--seeds", "3"], capsys
    )
    assert code == 0, err
    assert "3 direction seeds" in stdout and "correlation of ln(loss)" in stdout
    code, stdout, _ = run_cli(["info", out], capsys)
    assert code == 0 and "correlation of ln(loss)" in stdout
    code, stdout, err = run_cli(["plot", out, "--log"], capsys)
    assert code == 0, err
    assert (tmp_path / "s_seeds.png").exists()


def test_the_expected_cosine_spread_follows_the_element_scales() -> None:
    """√(Σ a²b²)/(‖a‖‖b‖) is 1/√n for equal scales and the observed spread for unequal ones
    (as filter normalization makes them)."""
    import torch

    from lossland.directions import cosine
    from lossland.run._seeds import _cosine_spread

    g = torch.Generator().manual_seed(0)
    scales = {"big": torch.full((20,), 10.0), "small": torch.full((2000,), 0.1)}
    draws = [
        {k: s * torch.randn(s.shape, generator=g) for k, s in scales.items()} for _ in range(400)
    ]
    observed = np.std([cosine(draws[i], draws[i + 1]) for i in range(0, 400, 2)])
    predicted = np.mean([_cosine_spread(draws[i], draws[i + 1]) for i in range(0, 400, 2)])
    assert predicted == pytest.approx(observed, rel=0.15)
    assert predicted > 3 / np.sqrt(2020)  # far wider than 1/√n: 20 big elements dominate
    equal = {"w": torch.randn(10000, generator=g)}
    assert _cosine_spread(equal, {"w": torch.randn(10000, generator=g)}) == pytest.approx(
        0.01, rel=0.05
    )
