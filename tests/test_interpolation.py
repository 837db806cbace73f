"""Model-to-model lines and planes: exact at the checkpoints, BatchNorm handling, barriers."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import assert_one_line, run_cli
from lossland import run as landscape
from lossland.analysis import barrier, measure_lines, measures, node_losses
from lossland.directions import model_directions
from lossland.engine import select_samples
from lossland.io import Surface


def bn_model(seed: int) -> nn.Module:
    """Conv → ReLU → BatchNorm → pool → linear, with its own running statistics."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(4),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, 3),
        )
        net.train()
        with torch.no_grad():
            for _ in range(3):
                net(torch.randn(16, 1, 8, 8) * (1 + seed) + 0.3 * seed)
    return net.eval()


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    return torch.randn(40, 1, 8, 8, generator=g), torch.randint(0, 3, (40,), generator=g)


def own_loss(model: nn.Module, d: tuple[torch.Tensor, torch.Tensor], dtype: torch.dtype) -> float:
    net = copy.deepcopy(model).to(dtype).eval()
    with torch.no_grad():
        return float(F.cross_entropy(net(d[0].to(dtype)), d[1]))


@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-12), ("float32", 1e-5)])
def test_three_model_plane_passes_through_the_three_checkpoints(dtype: str, rtol: float) -> None:
    models = [bn_model(s) for s in (0, 1, 2)]
    torch_dtype = getattr(torch, dtype)
    # θ₁ + 1·(θ₂ − θ₁) is θ₂ exactly when the differences are taken in the evaluation dtype.
    states = [
        {k: v.to(torch_dtype) if v.is_floating_point() else v for k, v in m.state_dict().items()}
        for m in models
    ]
    assert not torch.equal(states[0]["2.running_var"], states[1]["2.running_var"])
    d = data()
    directions = model_directions(*states)
    s = landscape.surface(
        models[0],
        d,
        x=[0.0, 0.5, 1.0],
        y=[0.0, 1.0],
        directions=directions,
        dtype=dtype,
        progress=False,
    )
    for (i, j), model in zip(((0, 0), (0, 2), (1, 0)), models, strict=True):
        assert s.loss[i, j] == pytest.approx(own_loss(model, d, torch_dtype), rel=rtol)
    nodes = node_losses(s.with_attrs(directions_kind="models"))
    assert nodes is not None and set(nodes) == {"θ1", "θ2", "θ3"}


def test_bn_recompute_equals_a_recomputation_by_hand() -> None:
    a, b = bn_model(0).double(), bn_model(1).double()
    d = data()
    s = landscape.surface(
        a,
        d,
        x=[0.5],
        directions=model_directions(a.state_dict(), b.state_dict()),
        bn="recompute",
        batch_size=10,
        dtype="float64",
        progress=False,
    )
    # By hand: the midpoint's weights, then BatchNorm statistics from its own activations
    # over the whole evaluation set (whatever the batch size: issue 21).
    mid = copy.deepcopy(a).double()
    sa, sb = a.state_dict(), b.state_dict()
    with torch.no_grad():
        for name, p in mid.named_parameters():
            p.copy_((sa[name].double() + sb[name].double()) / 2)
        feats = F.relu(mid[0](d[0].double()))  # BatchNorm's input, every sample
        mean = feats.mean(dim=(0, 2, 3))
        var = feats.var(dim=(0, 2, 3), unbiased=True)
        mid[2].running_mean.copy_(mean)
        mid[2].running_var.copy_(var)
        want = float(F.cross_entropy(mid.eval()(d[0].double()), d[1]))
    assert s.loss[0] == pytest.approx(want, rel=1e-10)
    # Interpolated statistics (eval) differ: recomputing is a real choice.
    interpolated = landscape.surface(
        a, d, x=[0.5], directions=model_directions(sa, sb), dtype="float64", progress=False
    )
    assert interpolated.loss[0] != pytest.approx(want, rel=1e-6)


def constructed_line() -> Surface:
    t = np.linspace(0.0, 1.0, 11)
    s = Surface.empty(t, None, split="train", attrs={"directions_kind": "models"})
    loss = 0.5 + 0.3 * t + np.sin(np.pi * t)
    s.store(slice(None), {"loss": loss, "acc": 1 - loss / 3, "loss_sem": np.zeros_like(t)})
    return s


def test_barrier_on_a_constructed_line() -> None:
    s = constructed_line()
    b = barrier(s)
    assert b is not None
    t = s.x
    loss = 0.5 + 0.3 * t + np.sin(np.pi * t)
    assert b.height == pytest.approx(loss.max() - 0.8)
    assert b.height_linear == pytest.approx(1.0)  # sin(π/2) above the straight line
    assert b.at == pytest.approx(t[np.argmax(loss)])
    assert b.start_loss == pytest.approx(0.5) and b.end_loss == pytest.approx(0.8)
    assert measures(s)["barrier"]["height"] == pytest.approx(b.height)
    assert any(line.startswith("barrier +") for line in measure_lines(s))
    # A monotone line has no barrier: the height is ≤ 0.
    flat = Surface.empty(t, None, split="train", attrs={"directions_kind": "models"})
    flat.store(slice(None), {"loss": 1.0 - 0.5 * t, "acc": 0 * t, "loss_sem": 0 * t})
    b_flat = barrier(flat)
    assert b_flat is not None and b_flat.height == pytest.approx(0.0)
    # Without x = 1 on the grid there is no barrier to report.
    short = Surface.empty(np.linspace(0.0, 0.5, 3), None, split="train")
    short.store(slice(None), {"loss": np.ones(3), "acc": np.ones(3), "loss_sem": np.zeros(3)})
    assert barrier(short) is None


# --- the CLI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_checkpoints(fashion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from lossland.cli import main

    folder = tmp_path_factory.mktemp("interp")
    paths = []
    for seed in (0, 1, 2):
        out = folder / f"m{seed}.safetensors"
        args = ["train", "--data-dir", str(fashion_dir), "--limit", "120", "--width", "0.25"]
        assert main([*args, "--seed", str(seed), "-o", str(out), "--no-progress"]) == 0
        paths.append(out)
    return paths


def _own_losses(paths: list[Path], fashion_dir: Path, samples: int) -> list[float]:
    from lossland.zoo import evaluate, load_fashion_mnist, load_model

    images, labels = load_fashion_mnist("train", data_dir=fashion_dir)
    x, y = select_samples(images, labels, samples, 0)
    return [evaluate(load_model(p)[0], x, y)[0] for p in paths]


def test_cli_interpolate_line_reports_the_barrier(
    three_checkpoints: list[Path],
    fashion_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "line.h5"
    a, b, _ = three_checkpoints
    code, stdout, err = run_cli(
        [
            "interpolate",
            a,
            b,
            "--data-dir",
            fashion_dir,
            "--samples",
            "32",
            "--x",
            "0:1:5",
            "-o",
            out,
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    assert "barrier " in stdout and "above the straight line" in stdout
    s = Surface.load(out)
    assert s.attrs["directions_kind"] == "models" and s.shape == (5,)
    ends = _own_losses([a, b], fashion_dir, 32)
    np.testing.assert_allclose([s.loss[0], s.loss[-1]], ends, rtol=1e-5)
    assert s.attrs["sharpness"]["barrier"]["height"] == pytest.approx(
        s.loss.max() - max(ends), rel=1e-4, abs=1e-6
    )


def permuted_pair(d: tuple[torch.Tensor, torch.Tensor]) -> tuple[nn.Module, nn.Module]:
    """An MLP fitted to ``d`` and the same function with its hidden units swapped in pairs:
    L(0) = L(1), and θ(1 − t) is θ(t) permuted, so the loss is symmetric about t = 1/2."""
    with torch.random.fork_rng():
        torch.manual_seed(3)
        a = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    optimizer = torch.optim.Adam(a.parameters(), lr=0.05)
    for _ in range(100):
        optimizer.zero_grad()
        F.cross_entropy(a(d[0]), d[1]).backward()
        optimizer.step()
    b = copy.deepcopy(a)
    swap = torch.arange(16).view(8, 2).flip(1).reshape(-1)
    with torch.no_grad():
        b[0].weight.copy_(a[0].weight[swap])
        b[0].bias.copy_(a[0].bias[swap])
        b[2].weight.copy_(a[2].weight[:, swap])
    return a, b


def test_the_barrier_is_refined_past_the_grid() -> None:
    g = torch.Generator().manual_seed(5)
    d = (torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g))
    a, b = permuted_pair(d)
    plane = model_directions(a.state_dict(), b.state_dict())
    line = landscape.surface(a, d, x=[0, 1 / 3, 2 / 3, 1], directions=plane, progress=False)
    scan = landscape.surface(a, d, x=np.linspace(0, 1, 201), directions=plane, progress=False)
    peak = float(scan.loss.max())
    found = line.attrs["barrier_refined"]
    assert found["grid_max_loss"] == pytest.approx(line.loss.max())
    assert found["grid_max_loss"] < peak - 1e-3  # the grid misses the peak …
    assert found["max_loss"] == pytest.approx(
        peak, abs=1e-4 * np.ptp(scan.loss)
    )  # … not the search
    assert found["at"] == pytest.approx(float(scan.x[np.argmax(scan.loss)]), abs=5e-3)
    assert found["bracket"][0] < found["at"] < found["bracket"][1]
    assert found["height"] == pytest.approx(found["max_loss"] - max(line.loss[0], line.loss[-1]))
    assert any(text.startswith("barrier refined by a 1-D search") for text in measure_lines(line))
    # a line whose maximum is a checkpoint has nothing to refine
    monotone = landscape.surface(a, d, x=[0, 0.5, 1], directions=plane, progress=False)
    if np.argmax(monotone.loss) in (0, 2):
        assert "barrier_refined" not in monotone.attrs


def test_cli_interpolate_plane_through_three_checkpoints(
    three_checkpoints: list[Path],
    fashion_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "plane.h5"
    code, stdout, err = run_cli(
        [
            "interpolate",
            *three_checkpoints,
            "--data-dir",
            fashion_dir,
            "--samples",
            "32",
            "--x",
            "0:1:3",
            "-o",
            out,
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    assert "loss at the checkpoints: θ1 " in stdout
    s = Surface.load(out)
    assert s.shape == (3, 3)  # y defaults to the x range
    own = _own_losses(three_checkpoints, fashion_dir, 32)
    np.testing.assert_allclose([s.loss[0, 0], s.loss[0, 2], s.loss[2, 0]], own, rtol=1e-5)
    # --bn recompute runs too (the statistics of each point's own activations).
    code, _, err = run_cli(
        [
            "interpolate",
            *three_checkpoints,
            "--data-dir",
            fashion_dir,
            "--samples",
            "32",
            "--x",
            "0:1:2",
            "--bn",
            "recompute",
            "-o",
            tmp_path / "re.h5",
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err


def test_cli_interpolate_errors(
    three_checkpoints: list[Path],
    fashion_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b, c = three_checkpoints
    base = ["--data-dir", fashion_dir, "--samples", "8", "-o", tmp_path / "x.h5"]
    cases = [
        (["interpolate", a, *base], "two checkpoints"),
        (["interpolate", a, b, c, a, *base], "got 4"),
        (["interpolate", a, b, "--y", "0:1:3", *base], "third checkpoint"),
        (["interpolate", a, tmp_path / "missing.safetensors", *base], "not found"),
    ]
    for argv, words in cases:
        code, _, err = run_cli(argv, capsys)
        assert code == 2, (argv, err)
        assert words in err, (argv, err)
        assert_one_line(err)
