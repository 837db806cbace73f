"""Hessian eigenpairs (Lanczos) and trace (Hutchinson) against dense Hessians."""

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
from lossland.analysis import sharpness
from lossland.directions import (
    Directions,
    HessianOperator,
    hessian_directions,
    hessian_eigen,
    hessian_report,
    hutchinson,
    lanczos,
)
from lossland.errors import LosslandError
from lossland.io import Surface


def mlp() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3))


def mlp_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(24, 3, generator=g), torch.randint(0, 3, (24,), generator=g)


def dense_hessian(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
    """The full Hessian of the mean cross-entropy in float64, model in eval mode."""
    net = copy.deepcopy(model).double().eval()
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    sizes = [p.numel() for _, p in net.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for _, p in net.named_parameters()])
    inputs, targets = data[0].double(), data[1]

    def loss(theta: torch.Tensor) -> torch.Tensor:
        parts = torch.split(theta, sizes)
        params = {n: t.view(s) for n, t, s in zip(names, parts, shapes, strict=True)}
        logits = torch.func.functional_call(net, params, (inputs,))
        return F.cross_entropy(logits, targets)

    h = torch.autograd.functional.hessian(loss, flat)
    assert isinstance(h, torch.Tensor)
    return h.numpy()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lanczos_matches_dense_hessian_on_an_mlp(dtype: torch.dtype) -> None:
    model, data = mlp(), mlp_data()
    dense = dense_hessian(model, data)
    want = np.linalg.eigvalsh(dense)[::-1]
    op = HessianOperator(model, data, batch_size=10, dtype=dtype)  # 3 batches: sums must add up
    assert op.size == dense.shape[0] == 38
    pairs = lanczos(op, op.size, 4, dtype=dtype)
    np.testing.assert_allclose(pairs.values, want[:4], rtol=1e-4)
    assert pairs.converged and pairs.vectors is not None
    w, v = np.linalg.eigh(dense)
    for i in range(2):  # eigenvectors: the top two are well separated here
        cos = abs(float(pairs.vectors[i].double().numpy() @ v[:, ::-1][:, i]))
        assert cos == pytest.approx(1.0, abs=1e-4)
    # By magnitude: the negative eigenvalues with the largest |λ| take part.
    by_mag = lanczos(op, op.size, 3, which="magnitude", dtype=dtype)
    want_mag = w[np.argsort(-np.abs(w))][:3]
    np.testing.assert_allclose(by_mag.values, want_mag, rtol=1e-4)


def bn_net() -> nn.Module:
    """Conv → BatchNorm (non-trivial running statistics) → ReLU → pool → linear: 120 weights."""
    with torch.random.fork_rng():
        torch.manual_seed(1)
        net = nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1),
            nn.BatchNorm2d(3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(27, 3),
        )
        net.train()
        with torch.no_grad():
            for _ in range(3):
                net(torch.randn(16, 1, 6, 6) * 2 + 0.5)
    return net.eval()


def test_lanczos_on_a_conv_net_with_batchnorm_in_eval_mode() -> None:
    model = bn_net()
    g = torch.Generator().manual_seed(3)
    data = (torch.randn(20, 1, 6, 6, generator=g), torch.randint(0, 3, (20,), generator=g))
    running = model[1].running_mean.clone()
    dense = dense_hessian(model, data)  # eval mode: the running statistics, as the surface
    want = np.linalg.eigvalsh(dense)[::-1][:3]
    _, pairs = hessian_eigen(model, data, k=3, dtype=torch.float64, batch_size=16)
    np.testing.assert_allclose(pairs.values, want, rtol=1e-4)
    # The model itself is untouched: still eval mode, same running statistics.
    assert not model.training and torch.equal(model[1].running_mean, running)


def test_lanczos_matches_numpy_on_explicit_matrices() -> None:
    g = np.random.default_rng(0)
    q, _ = np.linalg.qr(g.standard_normal((60, 60)))
    values = np.concatenate([[50.0, 20.0, -30.0], g.uniform(-5, 5, 57)])
    a = torch.from_numpy((q * values) @ q.T)
    pairs = lanczos(lambda v: a @ v, 60, 2, dtype=torch.float64)
    np.testing.assert_allclose(pairs.values, [50.0, 20.0], rtol=1e-10)
    pairs = lanczos(lambda v: a @ v, 60, 2, which="magnitude", dtype=torch.float64)
    np.testing.assert_allclose(pairs.values, [50.0, -30.0], rtol=1e-10)


def test_lanczos_errors() -> None:
    eye = torch.eye(4, dtype=torch.float64)
    with pytest.raises(LosslandError, match="4 parameters") as info:
        lanczos(lambda v: eye @ v, 4, 5, dtype=torch.float64)
    assert_one_line(str(info.value))
    with pytest.raises(LosslandError, match="order"):
        lanczos(lambda v: eye @ v, 4, 1, which="smallest", dtype=torch.float64)  # type: ignore[arg-type]
    # The identity: every start vector spans an invariant subspace, one eigenvalue is found.
    with pytest.raises(LosslandError, match="only 1 distinct") as info:
        lanczos(lambda v: eye @ v, 4, 2, dtype=torch.float64)
    assert_one_line(str(info.value))


def test_hutchinson_is_exact_for_diagonal_matrices_and_unbiased_otherwise() -> None:
    d = torch.arange(1.0, 11.0, dtype=torch.float64)
    exact = hutchinson(lambda v: d * v, 10, probes=5, dtype=torch.float64)
    assert exact.value == pytest.approx(55.0, rel=1e-12) and exact.sem == pytest.approx(0.0)
    g = np.random.default_rng(1)
    m = g.standard_normal((30, 30))
    a = torch.from_numpy(m + m.T)
    est = hutchinson(lambda v: a @ v, 30, probes=400, dtype=torch.float64)
    assert est.sem > 0
    assert abs(est.value - float(torch.trace(a))) < 4 * est.sem
    # For Rademacher probes Var(zᵀAz) = 2·Σ_{i≠j} A_ij²: the standard error matches it.
    off = (a**2).sum() - (torch.diagonal(a) ** 2).sum()
    assert est.sem == pytest.approx(float(torch.sqrt(2 * off / 400)), rel=0.2)
    with pytest.raises(LosslandError, match="at least 1"):
        hutchinson(lambda v: a @ v, 30, probes=0)


def test_hutchinson_trace_of_a_network_hessian() -> None:
    model, data = mlp(), mlp_data()
    dense = dense_hessian(model, data)
    report, _ = hessian_report(model, data, k=2, probes=300, dtype=torch.float64)
    assert report.trace is not None
    assert abs(report.trace.value - np.trace(dense)) < 4 * report.trace.sem
    assert "trace ≈" in report.summary() and "λ2" in report.summary()


def test_hessian_directions_and_the_curvature_of_their_surface() -> None:
    model, data = mlp(), mlp_data()
    directions = hessian_directions(model, data, k=2, dtype=torch.float64)
    assert directions.kind == "hessian" and directions.y is not None
    x = torch.cat([t.reshape(-1) for t in directions.x.values()]).double()
    y = torch.cat([t.reshape(-1) for t in directions.y.values()]).double()
    assert float(x @ x) == pytest.approx(1.0, abs=1e-6)
    assert float(x @ y) == pytest.approx(0.0, abs=1e-6)
    values = directions.info["eigenvalues"]
    # Finite differences on a small grid around θ* recover λ1 and λ2 as curvatures.
    s = landscape.surface(
        model,
        data,
        x="-1e-3:1e-3:5",
        y="-1e-3:1e-3:5",
        directions=directions,
        dtype="float64",
        progress=False,
    )
    sh = sharpness(s)
    assert sh is not None and sh.curvature_xx is not None and sh.curvature_yy is not None
    assert sh.curvature_xx == pytest.approx(values[0], rel=1e-3)
    assert sh.curvature_yy == pytest.approx(values[1], rel=1e-3)
    assert sh.eigenvalues == pytest.approx(values)


def test_operator_leaves_the_model_alone(tiny_model: nn.Module) -> None:
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g))
    op = HessianOperator(tiny_model, data)
    op.matvec(torch.ones(op.size))
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(LosslandError, match="empty"):
        HessianOperator(tiny_model, (data[0][:0], data[1][:0]))


# --- the CLI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_checkpoint(fashion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lossland.cli import main

    out = tmp_path_factory.mktemp("hess") / "small.safetensors"
    args = ["train", "--data-dir", str(fashion_dir), "--limit", "120", "--width", "0.25"]
    assert main([*args, "-o", str(out), "--no-progress"]) == 0
    return out


def test_cli_hessian_prints_eigenvalues_and_trace(
    small_checkpoint: Path, fashion_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "eig.safetensors"
    code, out, err = run_cli(
        [
            "hessian",
            small_checkpoint,
            "--data-dir",
            fashion_dir,
            "--samples",
            "32",
            "--k",
            "3",
            "--probes",
            "4",
            "--save-directions",
            saved,
        ],
        capsys,
    )
    assert code == 0, err
    assert "λ1 = " in out and "λ3 = " in out and "trace ≈ " in out and "converged" in out

    d = Directions.load(saved)
    assert d.kind == "hessian" and len(d.info["eigenvalues"]) == 3
    # The saved directions give a surface whose summary prints the eigenvalues.
    code, out, err = run_cli(
        [
            "surface",
            small_checkpoint,
            "--directions",
            saved,
            "--data-dir",
            fashion_dir,
            "--samples",
            "32",
            "--x",
            "-0.1:0.1:3",
            "--y",
            "-0.1:0.1:3",
            "-o",
            tmp_path / "s.h5",
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    assert "Hessian eigenvalues: " in out


def test_cli_surface_directions_hessian(
    small_checkpoint: Path, fashion_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "h.h5"
    code, out, err = run_cli(
        [
            "surface",
            small_checkpoint,
            "--directions",
            "hessian",
            "--data-dir",
            fashion_dir,
            "--samples",
            "16",
            "--x",
            "auto:3",
            "--y",
            "auto:3",
            "-o",
            out_file,
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    assert "Hessian eigenvalues λ1 = " in err
    s = Surface.load(out_file)
    assert s.shape == (3, 3)
    assert s.attrs["directions_kind"] == "hessian"
    assert s.attrs["axis_labels"][0].startswith("v1 (λ1 = ")
    lam = s.attrs["directions_info"]["eigenvalues"][0]
    assert np.sqrt(2 / lam) <= s.x[-1] <= 1.125 * np.sqrt(2 / lam)
    assert s.x[1] == 0.0 and s.value_at_origin() is not None
    assert "Hessian eigenvalues: " in out and "curvature at the centre" in out


def test_cli_hessian_errors(
    small_checkpoint: Path, fashion_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["hessian", small_checkpoint, "--data-dir", fashion_dir, "--samples", "8"]
    existing = tmp_path / "old.safetensors"
    existing.write_bytes(b"not overwritten")
    cases = [
        (["--k", "100000000"], "larger than the model's"),
        (["--k", "0"], "at least 1"),
        (["--probes", "-1"], "--probes"),
        (["--k", "5", "--iterations", "3"], "--iterations"),
        (["--samples", "100000"], "larger than the train split"),
        (["--save-directions", tmp_path / "no" / "d.safetensors"], "does not exist"),
        (["--save-directions", existing], f"{existing} exists: pass --overwrite"),
    ]
    for extra, words in cases:
        code, _, err = run_cli([*base, *extra], capsys)
        assert code == 2, (extra, err)
        assert words in err, (extra, err)
        assert_one_line(err)
    assert existing.read_bytes() == b"not overwritten"
    code, _, err = run_cli(
        [*base, "--k", "1", "--save-directions", existing, "--overwrite"], capsys
    )
    assert code == 0, err
    assert Directions.load(existing).kind == "hessian"
    code, _, err = run_cli(["hessian", tmp_path / "missing.safetensors"], capsys)
    assert code == 2 and "not found" in err
