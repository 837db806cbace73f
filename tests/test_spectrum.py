"""Hessian spectra (stochastic Lanczos quadrature, per-group blocks) against dense Hessians; the
entry point on a model, the figure and ``lossland hessian --density``."""

from __future__ import annotations

import copy
import io
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import assert_one_line, run_cli
from lossland.directions import (
    SUMMARY_GRID_POINTS,
    GroupBy,
    HessianOperator,
    ParameterGroup,
    SpectralDensity,
    group_eigenvalues,
    hessian_spectrum,
    hutchinson,
    parameter_groups,
    rademacher_probes,
    spectral_density,
)
from lossland.errors import LosslandError
from lossland.io import ModelSpec, save_checkpoint
from lossland.show import density_figure
from lossland.zoo import small

F64 = torch.float64
RTOL = 1e-6


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The test machines are shared: one intra-op thread (tiny models are faster so anyway)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield None
    torch.set_num_threads(before)


# --- tiny models and their dense Hessians --------------------------------------------------------


def mlp() -> nn.Module:
    """4 → 5 → 3 with tanh: 43 parameters."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double().eval()


def bn_net() -> nn.Module:
    """Conv → BatchNorm (non-trivial running statistics, eval mode) → tanh → pool → linear:
    30 + 6 + 84 = 120 parameters."""
    with torch.random.fork_rng():
        torch.manual_seed(1)
        net = nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1),
            nn.BatchNorm2d(3),
            nn.Tanh(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(27, 3),
        ).double()
        net.train()
        with torch.no_grad():
            for _ in range(3):
                net(torch.randn(16, 1, 6, 6, dtype=F64) * 2 + 0.5)
    return net.eval()


def mlp_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(24, 4, generator=g, dtype=F64), torch.randint(0, 3, (24,), generator=g)


def bn_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(20, 1, 6, 6, generator=g, dtype=F64), torch.randint(0, 3, (20,), generator=g)


def dense_hessian(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
    """The full (P, P) Hessian of the mean cross-entropy in float64, model in eval mode."""
    net = copy.deepcopy(model).double().eval()
    named = list(net.named_parameters())
    names = [n for n, _ in named]
    shapes = [p.shape for _, p in named]
    sizes = [p.numel() for _, p in named]
    flat = torch.cat([p.detach().reshape(-1) for _, p in named])
    inputs, targets = data[0].double(), data[1]

    def loss(theta: torch.Tensor) -> torch.Tensor:
        parts = torch.split(theta, sizes)
        params = {n: t.view(s) for n, t, s in zip(names, parts, shapes, strict=True)}
        return F.cross_entropy(torch.func.functional_call(net, params, (inputs,)), targets)

    h = torch.autograd.functional.hessian(loss, flat)  # type: ignore[no-untyped-call]
    assert isinstance(h, torch.Tensor)
    return h.numpy()


_CACHE: dict[str, tuple[HessianOperator, np.ndarray]] = {}


def case(name: str) -> tuple[HessianOperator, np.ndarray]:
    """The float64 operator (several batches, so sums must add up) and the dense Hessian."""
    if name not in _CACHE:
        model, data = (mlp(), mlp_data()) if name == "mlp" else (bn_net(), bn_data())
        op = HessianOperator(model, data, batch_size=10, dtype=F64)
        dense = dense_hessian(model, data)
        assert dense.shape == (op.size, op.size)
        _CACHE[name] = op, dense
    return _CACHE[name]


def dense_matvec(h: np.ndarray) -> Callable[[torch.Tensor], torch.Tensor]:
    a = torch.from_numpy(h)
    return lambda v: a @ v


def probes_of(size: int, count: int, seed: int = 0) -> list[np.ndarray]:
    stream = rademacher_probes(size, seed=seed)
    return [next(stream).numpy() for _ in range(count)]


def rel(a: float, b: float, scale: float) -> float:
    return abs(a - b) / scale


# --- the quadrature is exact in the full Krylov space --------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "bn"])
def test_full_krylov_quadrature_reproduces_moments_and_eigenvalues(name: str) -> None:
    op, h = case(name)
    p = op.size
    assert p == (43 if name == "mlp" else 120)
    eig = np.linalg.eigvalsh(h)
    scale = float(np.max(np.abs(eig)))
    probes = 3
    res = spectral_density(op.matvec, p, probes=probes, steps=p, seed=5, dtype=F64)
    assert res.probes == probes and res.size == p
    worst = 0.0
    for v, theta, tau in zip(probes_of(p, probes, seed=5), res.nodes, res.weights, strict=True):
        # Nodes are eigenvalues of H (the probe meets fewer than P distinct ones: cross-entropy
        # has exact zero directions, so the Krylov space closes early and exactly).
        assert len(theta) <= p
        worst = max(worst, float(np.max(np.min(np.abs(theta[:, None] - eig[None, :]), 1))))
        hv = v.copy()
        for k in range(5):  # vᵀH^k v = Σ τ θ^k, k = 0..4 (exact up to 2m − 1)
            want = float(v @ hv)
            got = float(np.sum(tau * theta**k))
            assert rel(got, want, scale**k) < RTOL, (k, got, want)
            hv = h @ hv
    assert worst / scale < RTOL
    # The density integrates to 1 within the kernel tails beyond ±5σ (< 3e-7).
    assert abs(np.trapezoid(res.density, res.grid) - 1.0) < 1e-6
    assert res.grid[0] < eig[0] and res.grid[-1] > eig[-1]


@pytest.mark.parametrize("name", ["mlp", "bn"])
def test_curvature_figures_equal_dense_ones_with_full_krylov_space(name: str) -> None:
    op, h = case(name)
    p = op.size
    w, u = np.linalg.eigh(h)
    scale = float(np.max(np.abs(w)))
    probes = 4
    res = spectral_density(op.matvec, p, probes=probes, steps=p, seed=1, dtype=F64)
    assert w[0] < -1e-3 * scale, "the test model should have negative curvature"
    assert rel(res.lambda_min.value, w[0], scale) < RTOL
    assert rel(res.lambda_max.value, w[-1], scale) < RTOL
    assert res.curvature_ratio.value == pytest.approx(-w[0] / w[-1], rel=RTOL)
    # Masses: Σ (vᵀu_i)² over eigenvalues beyond the same tolerance, averaged over probes.
    cut = res.negative_tol * scale
    proj = np.stack([(u.T @ v) ** 2 for v in probes_of(p, probes, seed=1)])  # (probes, P)
    neg, pos = proj[:, w < -cut].sum(1), proj[:, w > cut].sum(1)
    assert res.negative_mass.value == pytest.approx(neg.mean(), rel=RTOL)
    assert res.positive_mass.value == pytest.approx(pos.mean(), rel=RTOL)
    assert res.mass_ratio.value == pytest.approx(neg.mean() / pos.mean(), rel=RTOL)
    assert res.negative_mass.se == pytest.approx(neg.std(ddof=1) / np.sqrt(probes), rel=1e-5)
    # The exact zero directions (softmax shifts) count as neither sign.
    assert res.negative_mass.value + res.positive_mass.value < 1.0 - 1e-3


def test_steps_beyond_size_and_early_breakdown() -> None:
    # Repeated eigenvalues: every probe meets 3 distinct ones, so 3 nodes, exactly them.
    d = torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0], dtype=F64)
    res = spectral_density(lambda v: d * v, 8, probes=4, steps=50, dtype=F64)
    assert res.iterations == (3, 3, 3, 3)
    for v, theta, tau in zip(probes_of(8, 4), res.nodes, res.weights, strict=True):
        np.testing.assert_allclose(theta, [1.0, 2.0, 3.0], rtol=1e-12)
        np.testing.assert_allclose(tau, [v[:3] @ v[:3], v[3:5] @ v[3:5], v[5:] @ v[5:]])
    np.testing.assert_allclose(res.moments[0], d.mean().item(), rtol=1e-12)
    # The zero operator: one node at 0 per probe, a well-defined curve.
    zero = spectral_density(lambda v: 0 * v, 5, probes=2, steps=10, dtype=F64)
    assert zero.iterations == (1, 1) and zero.lambda_max.value == 0.0
    assert zero.sigma > 0 and np.isnan(zero.curvature_ratio.value)
    assert np.isnan(zero.mass_ratio.value) and zero.negative_mass.value == 0.0
    # steps ≥ P on a generic matrix: P iterations, the same nodes as steps = P.
    g = np.random.default_rng(0)
    a = g.standard_normal((12, 12))
    a = a + a.T
    mv = dense_matvec(a)
    full = spectral_density(mv, 12, probes=2, steps=12, dtype=F64)
    more = spectral_density(mv, 12, probes=2, steps=500, dtype=F64)
    assert full.iterations == more.iterations == (12, 12)
    np.testing.assert_allclose(np.sort(more.nodes[0]), np.linalg.eigvalsh(a), rtol=1e-10)


def test_gauss_quadrature_degree_with_few_steps() -> None:
    # m = 3 nodes integrate polynomials of degree ≤ 5 exactly, not degree 6.
    op, h = case("mlp")
    res = spectral_density(op.matvec, op.size, probes=2, steps=3, seed=2, dtype=F64)
    scale = float(np.max(np.abs(np.linalg.eigvalsh(h))))
    v = probes_of(op.size, 1, seed=2)[0]
    theta, tau = res.nodes[0], res.weights[0]
    powers = [float(v @ np.linalg.matrix_power(h, k) @ v) for k in range(7)]
    for k in range(6):
        assert rel(float(np.sum(tau * theta**k)), powers[k], scale**k) < RTOL
    assert rel(float(np.sum(tau * theta**6)), powers[6], scale**6) > 1e-6


# --- statistics over probes ----------------------------------------------------------------------


def test_moments_converge_to_normalised_traces_within_their_standard_errors() -> None:
    _, h = case("bn")
    p = h.shape[0]
    mv = dense_matvec(h)
    res = spectral_density(mv, p, probes=1500, steps=4, seed=11, dtype=F64)
    powers = [np.linalg.matrix_power(h, k) for k in range(1, 5)]
    for k, hk in enumerate(powers, start=1):
        want = np.trace(hk) / p
        z = (res.moments[k - 1] - want) / res.moments_se[k - 1]
        assert abs(z) < 4.0, (k, res.moments[k - 1], want, res.moments_se[k - 1])
        got = res.moment(k)
        assert got.value == pytest.approx(res.moments[k - 1]) and got.se > 0
    # The standard error is the right size: Var(zᵀHz) = 2(‖H‖²_F − Σ H_ii²) for Rademacher z.
    var = 2.0 * (np.sum(h * h) - np.sum(np.diag(h) ** 2)) / p**2
    assert res.moments_se[0] == pytest.approx(np.sqrt(var / 1500), rel=0.15)
    assert res.moment(0).value == pytest.approx(1.0, abs=1e-12)
    # P·E[λ] is Hutchinson's estimate with the same seed and probe count (the same probes).
    hut = hutchinson(mv, p, probes=1500, seed=11, dtype=F64)
    assert res.trace.value == pytest.approx(hut.value, rel=1e-10, abs=1e-12)
    assert res.trace.se == pytest.approx(hut.sem, rel=1e-8)
    # The density's standard error: the spread of the per-probe curves, small where the bulk is.
    assert np.all(res.density_se >= 0) and np.all(np.isfinite(res.density_se))


def test_probes_do_not_depend_on_the_dtype_and_smoothing_reuses_quadratures() -> None:
    op, _ = case("mlp")
    r64 = spectral_density(op.matvec, op.size, probes=3, steps=10, dtype=F64)
    op32 = HessianOperator(mlp(), mlp_data(), batch_size=10, dtype=torch.float32)
    r32 = spectral_density(op32.matvec, op.size, probes=3, steps=10, dtype=torch.float32)
    np.testing.assert_allclose(r32.moments[:2], r64.moments[:2], rtol=1e-4)
    assert r32.negative_tol > r64.negative_tol  # the rounding level of each dtype
    wide = r64.smoothed(sigma=4 * r64.sigma, grid_points=300)
    assert wide.sigma == pytest.approx(4 * r64.sigma) and wide.grid.shape == (300,)
    assert all(a is b for a, b in zip(wide.nodes, r64.nodes, strict=True))
    np.testing.assert_array_equal(wide.moments, r64.moments)
    assert abs(np.trapezoid(wide.density, wide.grid) - 1.0) < 1e-6
    with pytest.raises(ValueError):
        r64.density[0] = 1.0  # frozen: the arrays are read-only too


# --- per-group diagonal blocks -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "bn"])
@pytest.mark.parametrize("by", ["parameter", "module"])
def test_group_top_eigenvalues_equal_dense_blocks(name: str, by: GroupBy) -> None:
    op, h = case(name)
    k = 3
    res = group_eigenvalues(
        op.matvec,
        op.size,
        names=op.names,
        numels=op.numels,
        by=by,
        k=k,
        tol=1e-10,
        dtype=F64,
    )
    groups = parameter_groups(op.names, op.numels, by=by)
    assert [g.name for g in res.groups] == [g.name for g in groups]
    if by == "module":
        assert res.groups[0].name == "0" and res.groups[0].tensors == ("0.weight", "0.bias")
    else:
        assert [g.name for g in res.groups] == list(op.names)
    assert sum(g.parameters for g in res.groups) == op.size
    for g, spec in zip(res.groups, groups, strict=True):
        idx = np.concatenate([np.arange(a, b) for a, b in spec.ranges])
        block = np.linalg.eigvalsh(h[np.ix_(idx, idx)])[::-1]
        want = block[: min(k, len(idx))]
        scale = float(np.max(np.abs(block))) or 1.0
        assert g.parameters == len(idx) and g.converged
        assert len(g.eigenvalues) == len(want), (g.name, g.eigenvalues, want)
        assert np.max(np.abs(g.eigenvalues - want)) / scale < RTOL, (g.name, g.eigenvalues, want)
        assert np.all(g.residuals <= 1e-9 * scale)


def test_groups_select_custom_and_repeated_eigenvalues() -> None:
    op, h = case("bn")
    res = group_eigenvalues(
        op.matvec,
        op.size,
        names=op.names,
        numels=op.numels,
        select=["5.bias", "1.weight"],
        k=5,
        tol=1e-10,
        dtype=F64,
    )
    assert [g.name for g in res.groups] == ["5.bias", "1.weight"]
    assert res["5.bias"].parameters == 3 and len(res["5.bias"].eigenvalues) == 3  # k > |g|
    # Cross-entropy's bias block has the exact zero direction (1, 1, 1).
    assert abs(res["5.bias"].eigenvalues[-1]) < 1e-10
    # A custom group over scattered ranges (first conv weight + last bias).
    custom = ParameterGroup("mixed", ("0.weight", "5.bias"), ((0, 27), (op.size - 3, op.size)))
    mixed = group_eigenvalues(op.matvec, op.size, groups=[custom], k=2, tol=1e-10, dtype=F64)
    idx = np.r_[0:27, op.size - 3 : op.size]
    want = np.linalg.eigvalsh(h[np.ix_(idx, idx)])[::-1][:2]
    np.testing.assert_allclose(mixed.groups[0].eigenvalues, want, rtol=RTOL)
    # Repeated eigenvalues: the identity block closes the Krylov space after one step.
    eye = group_eigenvalues(
        lambda v: 2.0 * v,
        6,
        groups=[ParameterGroup("all", ("x",), ((0, 6),))],
        k=3,
        dtype=F64,
    )
    np.testing.assert_allclose(eye.groups[0].eigenvalues, [2.0])
    assert eye.converged


# --- JSON, figure, errors ------------------------------------------------------------------------


def test_as_dict_is_json_ready() -> None:
    op, _ = case("mlp")
    res = spectral_density(op.matvec, op.size, probes=2, steps=6, dtype=F64, grid_points=50)
    full = json.loads(json.dumps(res.as_dict(), allow_nan=False))
    assert full["probes"] == 2 and len(full["nodes"]) == 2 and len(full["density"]) == 50
    assert full["trace"]["value"] == pytest.approx(res.trace.value)
    summary = res.as_dict(arrays=False)
    assert "nodes" not in summary and "density" not in summary
    assert len(json.dumps(summary)) < 4000
    one = spectral_density(op.matvec, op.size, probes=1, steps=6, dtype=F64)
    d = json.loads(json.dumps(one.as_dict(), allow_nan=False))
    assert d["moments_se"] == [None] * 4 and d["trace"]["se"] is None
    groups = group_eigenvalues(op.matvec, op.size, names=op.names, numels=op.numels, k=2, dtype=F64)
    g = json.loads(json.dumps(groups.as_dict(), allow_nan=False))
    assert [x["name"] for x in g["groups"]] == list(op.names)
    assert all(len(x["eigenvalues"]) == 2 for x in g["groups"])


def test_density_figure_draws_without_global_state() -> None:
    import matplotlib
    from matplotlib.figure import Figure

    op, _ = case("mlp")
    res: SpectralDensity = spectral_density(op.matvec, op.size, probes=3, steps=10, dtype=F64)
    params = dict(matplotlib.rcParams)
    pyplot_before = "matplotlib.pyplot" in sys.modules
    ax = density_figure(res.as_dict())
    assert isinstance(ax.figure, Figure) and ax.get_yscale() == "log"
    assert ax.get_ylim()[0] > 0 and ax.get_ylim()[1] > res.density.max()  # the peak shows
    assert len(ax.lines) >= 1 and len(ax.collections) >= 1
    ax.figure.savefig(io.BytesIO(), format="png")
    fig = Figure()
    given = fig.add_subplot()
    assert density_figure(res.as_dict(), given, log=False) is given
    assert given.get_yscale() == "linear"
    assert dict(matplotlib.rcParams) == params
    assert ("matplotlib.pyplot" in sys.modules) == pyplot_before


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"probes": 0}, "probes must be at least 1"),
        ({"steps": 0}, "steps must be at least 1"),
        ({"sigma": 0.0}, "sigma must be a positive"),
        ({"sigma": -1.0}, "sigma must be a positive"),
        ({"grid_points": 1}, "grid_points must be at least 2"),
        ({"negative_tol": -1e-3}, "negative_tol must be 0 or more"),
    ],
)
def test_density_argument_errors(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(LosslandError, match=match) as info:
        spectral_density(lambda v: v, 4, dtype=F64, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and "pass " in message


def test_group_argument_errors() -> None:
    op, _ = case("mlp")
    names, numels = op.names, op.numels
    with pytest.raises(LosslandError, match=r"unknown parameter group 'nope' in select") as info:
        group_eigenvalues(op.matvec, op.size, select=["nope"], names=names, numels=numels)
    assert "\n" not in str(info.value) and "0.weight" in str(info.value)
    with pytest.raises(LosslandError, match="k must be at least 1"):
        group_eigenvalues(op.matvec, op.size, k=0, names=names, numels=numels)
    with pytest.raises(LosslandError, match="unknown grouping"):
        parameter_groups(op.names, op.numels, by="layer")  # type: ignore[arg-type]
    with pytest.raises(LosslandError, match="pass names= and numels="):
        group_eigenvalues(op.matvec, op.size, dtype=F64)
    with pytest.raises(LosslandError, match="outside"):
        bad = ParameterGroup("bad", ("x",), ((0, op.size + 1),))
        group_eigenvalues(op.matvec, op.size, groups=[bad], dtype=F64)
    with pytest.raises(LosslandError, match="size is"):
        group_eigenvalues(op.matvec, op.size + 1, names=names, numels=numels)


# --- the entry point on a model: the evaluation contract ------------------------------------------


def test_hessian_spectrum_is_the_operator_s_density_and_blocks() -> None:
    model, data = mlp(), mlp_data()
    op, h = case("mlp")
    got = hessian_spectrum(
        model, data, probes=3, steps=op.size, groups="module", k=2, batch_size=10, dtype=F64
    )
    want = spectral_density(op.matvec, op.size, probes=3, steps=op.size, dtype=F64)
    for a, b in zip(got.density.nodes, want.nodes, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    eig = np.linalg.eigvalsh(h)
    assert rel(got.density.lambda_max.value, eig[-1], eig[-1]) < RTOL
    assert [g.name for g in got.groups.groups] == ["0", "2"] and got.grouping == "module"
    blocks = parameter_groups(op.names, op.numels, by="module")
    for g, spec in zip(got.groups.groups, blocks, strict=True):
        idx = np.concatenate([np.arange(a, b) for a, b in spec.ranges])
        block = np.linalg.eigvalsh(h[np.ix_(idx, idx)])[::-1][:2]
        np.testing.assert_allclose(g.eigenvalues, block, rtol=RTOL)
    assert got.samples == 24 and got.products > 3 * 3  # density and blocks share one operator
    assert got.seconds > 0


def test_hessian_spectrum_follows_the_user_loss() -> None:
    """A per-sample loss 3·CE has Hessian 3H: the same probes give nodes 3× as large."""

    def tripled(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return 3.0 * F.cross_entropy(logits, targets, reduction="none")

    model, data = mlp(), mlp_data()
    kw = {"probes": 2, "steps": 12, "k": 1, "dtype": F64, "batch_size": 10}
    plain = hessian_spectrum(model, data, **kw)  # type: ignore[arg-type]
    scaled = hessian_spectrum(model, data, loss=tripled, **kw)  # type: ignore[arg-type]
    for a, b in zip(plain.density.nodes, scaled.density.nodes, strict=True):
        np.testing.assert_allclose(3.0 * a, b, rtol=1e-9, atol=1e-12)
    top = [g.eigenvalues[0] for g in plain.groups.groups]
    np.testing.assert_allclose(
        [3.0 * t for t in top], [g.eigenvalues[0] for g in scaled.groups.groups], rtol=1e-6
    )


def test_summary_resamples_the_curve_and_describes_the_key_numbers() -> None:
    model, data = bn_net(), bn_data()
    res = hessian_spectrum(model, data, probes=3, steps=15, k=1, dtype=F64)
    d = json.loads(json.dumps(res.as_dict(arrays=False, grid_points=SUMMARY_GRID_POINTS)))
    density = d["density"]
    assert "nodes" not in density and len(density["grid"]) == SUMMARY_GRID_POINTS
    grid, curve = np.array(density["grid"]), np.array(density["density"])
    assert grid[0] == res.density.grid[0] and grid[-1] == res.density.grid[-1]
    # The coarse curve is Σ_k τ_k·N(t; θ_k, σ²) averaged over probes at the coarse points.
    sigma = res.density.sigma
    direct = np.mean(
        [
            tau @ np.exp(-0.5 * ((grid[None, :] - theta[:, None]) / sigma) ** 2)
            for theta, tau in zip(res.density.nodes, res.density.weights, strict=True)
        ],
        axis=0,
    ) / (sigma * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(curve, direct, rtol=1e-10, atol=1e-14)
    assert abs(np.trapezoid(curve, grid) - 1.0) < 1e-4
    assert d["groups"]["by"] == "parameter" and len(d["groups"]["groups"]) == 6
    assert len(json.dumps(d)) < 40_000
    text = res.describe()
    assert f"{res.density.curvature_ratio.value:.4g}" in text and "negative mass" in text
    for g in res.groups.groups:
        assert f"{g.name}" in text and f"{g.eigenvalues[0]:.4g}" in text


def test_density_figure_reads_json_with_missing_standard_errors() -> None:
    op, _ = case("mlp")
    one = spectral_density(op.matvec, op.size, probes=1, steps=6, dtype=F64, grid_points=80)
    d = json.loads(json.dumps(one.as_dict(), allow_nan=False))  # density_se: all None
    ax = density_figure(d)
    assert len(ax.collections) == 0 and len(ax.lines) >= 1  # no band with one probe
    with pytest.raises(LosslandError, match="equal length"):
        density_figure({"grid": [0.0, 1.0], "density": [1.0]})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"groups": "layer"}, "unknown grouping groups 'layer'"),
        ({"probes": 0}, "probes must be at least 1"),
        ({"k": 0}, "k must be at least 1"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
    ],
)
def test_hessian_spectrum_argument_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(LosslandError, match=match) as info:
        hessian_spectrum(mlp(), mlp_data(), **kwargs)  # type: ignore[arg-type]
    assert_one_line(str(info.value))


# --- lossland hessian --density -----------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small CNN at a quarter width (about 4k parameters), untrained: no training needed
    for the numbers to be checked against each other."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = small(width=0.25)
    path = tmp_path_factory.mktemp("spectrum") / "small.safetensors"
    return save_checkpoint(model, path, spec=ModelSpec("small", {"width": 0.25}))


def test_cli_hessian_density_writes_json_and_figure(
    checkpoint: Path, fashion_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "spec.json"
    argv = ["hessian", checkpoint, "--data-dir", fashion_dir, "--samples", "16", "--k", "1"]
    argv += ["--probes", "3", "--density", "--probes-density", "3", "--steps", "12"]
    argv += ["--groups", "module", "--iterations", "40", "-o", out]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    summary = json.loads(out.read_text())
    figure = out.with_suffix(".png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(figure) in err
    spectrum = summary["spectrum"]
    density, groups = spectrum["density"], spectrum["groups"]
    assert (
        summary["parameters"]
        == density["parameters"]
        == sum(g["parameters"] for g in groups["groups"])
    )
    assert density["probes"] == 3 and density["iterations"] == [12, 12, 12]
    assert len(density["grid"]) == len(density["density"]) == SUMMARY_GRID_POINTS
    assert [g["name"] for g in groups["groups"]] == ["0", "2", "4", "6", "8", "10", "13", "15"]
    # Ritz values and the tops of diagonal blocks never exceed λ1 (Lanczos, to its tolerance).
    lam1 = summary["eigenvalues"][0]
    assert density["lambda_max"]["value"] <= lam1 * (1 + 1e-4)
    assert max(g["eigenvalues"][0] for g in groups["groups"]) <= lam1 * (1 + 1e-4)
    # The same seed and probe count: P·E[λ] (SLQ) is Hutchinson's trace (float32 sums).
    assert density["trace"]["value"] == pytest.approx(summary["trace"], rel=1e-4)
    ratio = density["curvature_ratio"]["value"]
    assert "negative/positive curvature" in stdout and f"{ratio:.4g}" in stdout
    assert "negative mass" in stdout and "λ1 = " in stdout

    # Existing outputs are refused before any work, and left alone; --overwrite replaces them.
    before = out.read_bytes(), figure.read_bytes()
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and f"{out} exists: pass --overwrite" in err
    assert_one_line(err)
    assert (out.read_bytes(), figure.read_bytes()) == before
    out.unlink()
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and f"{figure} exists" in err and not out.exists()
    code, _, err = run_cli([*argv, "--overwrite"], capsys)
    assert code == 0, err
    assert json.loads(out.read_text())["spectrum"]["density"] == density  # seeded: the same


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--probes-density", "0"], "--probes-density must be at least 1"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--k", "0"], "--k must be at least 1"),
        (["-o", "no/such/folder/x.json"], "does not exist"),
    ],
)
def test_cli_hessian_density_errors(
    extra: list[str],
    words: str,
    checkpoint: Path,
    fashion_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["hessian", checkpoint, "--data-dir", fashion_dir, "--samples", "8", "--density"]
    code, stdout, err = run_cli([*argv, "-o", tmp_path / "s.json", *extra], capsys)
    assert code == 2 and words in err, err
    assert_one_line(err)
    assert stdout == "" and list(tmp_path.iterdir()) == []


def test_cli_default_output_is_beside_the_checkpoint(checkpoint: Path) -> None:
    from lossland.cli._hessian import HessianArgs, _outputs

    args = HessianArgs(checkpoint=checkpoint, density=True)
    json_path, figure_path = _outputs(args)
    assert json_path == checkpoint.parent / "small.hessian.json"
    assert figure_path == checkpoint.parent / "small.hessian.png"
    assert _outputs(HessianArgs(checkpoint=checkpoint)) == (None, None)
