"""Hessian spectra: the eigenvalue density by stochastic Lanczos quadrature, and the top
eigenvalues of each parameter group's diagonal block.

**Density** (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019; PyHessian's ``density``).
For a unit probe v, ``steps`` = m Lanczos iterations from v give a tridiagonal T (m × m) whose
eigenpairs (θ_k, s_k) are the nodes and weights τ_k = s_k[0]² of the m-point Gauss quadrature
of the spectral measure μ_v = Σ_i (vᵀu_i)² δ(λ_i) of H: Σ_k τ_k θ_k^j = vᵀH^j v exactly for
j ≤ 2m − 1. Rademacher probes have E[v vᵀ] = I/P, so E[μ_v] is the eigenvalue density
(1/P) Σ_i δ(λ_i), and averaging the quadratures over probes estimates it; smoothing each node
with a Gaussian of width σ gives a curve φ(t). Every derived number is a mean over probes of a
per-probe figure, so its standard error across probes comes with it.

The probes are those of :func:`lossland.directions.hutchinson` with the same seed (drawn on the
CPU, then moved), divided by √P: P·E[λ] is then Hutchinson's trace estimate to rounding, and
results do not depend on the device.

Lanczos keeps its basis and reorthogonalizes fully (classical Gram–Schmidt, twice), so the
quadrature has no ghost nodes; T is diagonalised in float64. An invariant subspace
(β ≈ 0: the probe meets fewer than m distinct eigenvalues) ends a probe early with fewer
nodes, which are then exact eigenvalues. Memory: min(steps, P) basis vectors of P elements.

**Group blocks.** For a parameter group g (index set of size |g|), H_gg = Π_g H Π_gᵀ is the
Hessian restricted to that group's weights with all others fixed; its top eigenvalues come from
:func:`lossland.directions.lanczos` on x ↦ (H·[x on g, 0 elsewhere])_g. Each costs one full H·v.

**On a model.** :func:`hessian_spectrum` builds one :class:`HessianOperator` (the loss as the
surfaces evaluate it) and returns both, as a :class:`HessianSpectrum`; ``as_dict()`` is the
plain data that :func:`lossland.show.density_figure` draws.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn

from lossland.core import (
    LEVEL,
    DType,
    Need,
    Params,
    interval,
    resolve_device,
    spectrum_needs,
    torch_dtype,
)
from lossland.directions._hessian import (
    HessianOperator,
    HessianOptions,
    MatVec,
    Which,
    _operator,
    counting,
    hessian_options,
    lanczos,
    memory_place,
)
from lossland.engine import Evaluator, LossFn
from lossland.errors import LosslandError, arg

GroupBy = Literal["parameter", "module"]
GROUPINGS: tuple[str, ...] = get_args(GroupBy)

DEFAULT_PROBES = 10
DEFAULT_STEPS = 100
DEFAULT_GRID_POINTS = 1000
SIGMA_FRACTION = 0.01  # default kernel width: this fraction of the Ritz values' range
PAD_SIGMAS = 5.0  # the grid extends this many σ beyond the extreme nodes (tail mass < 3e-7)
BREAKDOWN = 1e3  # β ≤ BREAKDOWN · eps · ‖T‖ ends a probe: an invariant subspace (as lanczos)


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A mean over probes and its standard error (NaN with a single probe)."""

    value: float
    se: float

    def as_dict(self) -> dict[str, float | None]:
        return {"value": _json_float(self.value), "se": _json_float(self.se)}


@dataclass(frozen=True, eq=False)
class SpectralDensity:
    """Stochastic Lanczos quadrature of the Hessian's eigenvalue density.

    ``nodes[p]`` (ascending Ritz values) and ``weights[p]`` (summing to 1) are probe p's
    quadrature; everything else is derived from them (see :meth:`smoothed`). ``density`` (G,)
    is φ on ``grid`` (G,), in units of 1/eigenvalue, integrating to 1; ``density_se`` its
    standard error across probes. ``moments[k-1]`` estimates E[λ^k] = tr(H^k)/P for k = 1..4.
    ``negative_mass`` is the fraction of eigenvalues below −``negative_tol``·|λ|max,
    ``positive_mass`` above +``negative_tol``·|λ|max, ``mass_ratio`` their ratio (of the
    means; delta-method SE). ``lambda_min``/``lambda_max`` are the extreme Ritz values over all
    probes (each Ritz value lies in [λ_min(H), λ_max(H)], so these are the tightest inner
    bounds, exact when steps ≥ P), and ``curvature_ratio`` is max(0, −λ_min)/λ_max; their SEs
    are those of the per-probe extremes and ratios (0 when every probe finds the same ones).
    """

    size: int
    steps: int
    seed: int
    dtype: str
    sigma: float
    negative_tol: float
    nodes: tuple[np.ndarray, ...] = field(repr=False)
    weights: tuple[np.ndarray, ...] = field(repr=False)
    grid: np.ndarray = field(repr=False)
    density: np.ndarray = field(repr=False)
    density_se: np.ndarray = field(repr=False)
    moments: np.ndarray
    moments_se: np.ndarray
    trace: Estimate
    negative_mass: Estimate
    positive_mass: Estimate
    mass_ratio: Estimate
    curvature_ratio: Estimate
    lambda_min: Estimate
    lambda_max: Estimate

    @property
    def probes(self) -> int:
        return len(self.nodes)

    @property
    def iterations(self) -> tuple[int, ...]:
        """Lanczos iterations per probe: below ``steps`` where its Krylov space closed early."""
        return tuple(len(n) for n in self.nodes)

    def moment(self, k: int) -> Estimate:
        """E[λ^k] ≈ tr(H^k)/P for any k ≥ 0 (exact per probe for k ≤ 2·iterations − 1)."""
        if k < 0:
            raise LosslandError(f"moment order {arg('k')} must be 0 or more, got {k}")
        per_probe = np.array(
            [float(np.sum(w * n**k)) for n, w in zip(self.nodes, self.weights, strict=True)]
        )
        return Estimate(float(per_probe.mean()), _se(per_probe))

    def smoothed(
        self,
        *,
        sigma: float | None = None,
        grid_points: int = DEFAULT_GRID_POINTS,
        negative_tol: float | None = None,
    ) -> SpectralDensity:
        """The same quadratures with another kernel width, grid or negative tolerance (no
        Hessian-vector products)."""
        return _summarise(
            self.nodes,
            self.weights,
            size=self.size,
            steps=self.steps,
            seed=self.seed,
            dtype=self.dtype,
            sigma=sigma,
            grid_points=grid_points,
            negative_tol=self.negative_tol if negative_tol is None else negative_tol,
        )

    def as_dict(self, *, arrays: bool = True) -> dict[str, Any]:
        """JSON-ready (NaN → None). ``arrays=False`` leaves out the per-probe quadratures and
        the curve: the summary that fits into surface attributes."""
        out: dict[str, Any] = {
            "method": "stochastic Lanczos quadrature",
            "parameters": self.size,
            "probes": self.probes,
            "steps": self.steps,
            "iterations": list(self.iterations),
            "seed": self.seed,
            "dtype": self.dtype,
            "sigma": self.sigma,
            "negative_tol": self.negative_tol,
            "moments": [_json_float(m) for m in self.moments],
            "moments_se": [_json_float(m) for m in self.moments_se],
            "trace": self.trace.as_dict(),
            "negative_mass": self.negative_mass.as_dict(),
            "positive_mass": self.positive_mass.as_dict(),
            "mass_ratio": self.mass_ratio.as_dict(),
            "curvature_ratio": self.curvature_ratio.as_dict(),
            "lambda_min": self.lambda_min.as_dict(),
            "lambda_max": self.lambda_max.as_dict(),
        }
        if arrays:
            out["nodes"] = [_json_list(n) for n in self.nodes]
            out["weights"] = [_json_list(w) for w in self.weights]
            out["grid"] = _json_list(self.grid)
            out["density"] = _json_list(self.density)
            out["density_se"] = _json_list(self.density_se)
        return out


@dataclass(frozen=True)
class ParameterGroup:
    """A named set of parameters: [start, stop) ``ranges`` of the flat (P,) vector."""

    name: str
    tensors: tuple[str, ...]
    ranges: tuple[tuple[int, int], ...]

    @property
    def parameters(self) -> int:
        return sum(stop - start for start, stop in self.ranges)


@dataclass(frozen=True, eq=False)
class GroupEigen:
    """Top eigenvalues of one group's diagonal Hessian block H_gg (sorted as ``which``).

    Fewer than k values when the group has fewer than k parameters, or when its block has
    fewer than k distinct eigenvalues seen from the start vector (repeated eigenvalues: the
    Krylov space closed, and the values found are exact).
    """

    name: str
    tensors: tuple[str, ...]
    parameters: int
    eigenvalues: np.ndarray
    residuals: np.ndarray  # bounds on ‖H_gg·y − λ·y‖ (lanczos)
    iterations: int
    converged: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tensors": list(self.tensors),
            "parameters": self.parameters,
            "eigenvalues": _json_list(self.eigenvalues),
            "residuals": _json_list(self.residuals),
            "iterations": self.iterations,
            "converged": self.converged,
        }


@dataclass(frozen=True)
class GroupSpectra:
    """Per-group top eigenvalues, in the order of the groups."""

    groups: tuple[GroupEigen, ...]
    k: int
    which: str
    tol: float

    def __getitem__(self, name: str) -> GroupEigen:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    @property
    def converged(self) -> bool:
        return all(g.converged for g in self.groups)

    def as_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "which": self.which,
            "tol": self.tol,
            "converged": self.converged,
            "groups": [g.as_dict() for g in self.groups],
        }


# --- stochastic Lanczos quadrature ---------------------------------------------------------------


def rademacher_probes(size: int, *, seed: int = 0) -> Iterator[Tensor]:
    """Unit Rademacher vectors (±1/√P), float64 on the CPU, endlessly: the probes of
    :func:`spectral_density` and (times √P) of :func:`lossland.directions.hutchinson`."""
    generator = torch.Generator().manual_seed(seed + 1)  # hutchinson's stream
    scale = 1.0 / math.sqrt(size)
    while True:
        z = torch.randint(0, 2, (size,), generator=generator).to(torch.float64)
        yield z.mul_(2).sub_(1).mul_(scale)


def spectral_density(
    matvec: MatVec,
    size: int,
    *,
    probes: int = DEFAULT_PROBES,
    steps: int = DEFAULT_STEPS,
    sigma: float | None = None,
    grid_points: int = DEFAULT_GRID_POINTS,
    negative_tol: float | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> SpectralDensity:
    """The eigenvalue density of the symmetric operator ``matvec`` (size × size) by stochastic
    Lanczos quadrature: ``probes`` × min(steps, size) products.

    ``sigma``: the Gaussian kernel's width in eigenvalue units; None takes 1 % of the range of
    the Ritz values. The grid has ``grid_points`` points over [λ_min − 5σ, λ_max + 5σ]; keep
    σ above two grid spacings (≈ span/grid_points) for a resolved curve.
    ``negative_tol``: eigenvalues within ±negative_tol·|λ|max of 0 count as neither negative
    nor positive; None takes 1e3·eps(dtype) (1.2e-4 in float32, 2.2e-13 in float64), the
    rounding level of the products, so exact zero directions (softmax shifts, dead units)
    are not split at random between the two.
    """
    _check_density_args(
        size=size,
        probes=probes,
        steps=steps,
        sigma=sigma,
        grid_points=grid_points,
        negative_tol=negative_tol,
    )
    device = torch.device(device)
    tol = BREAKDOWN * torch.finfo(dtype).eps if negative_tol is None else negative_tol
    nodes: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    stream = rademacher_probes(size, seed=seed)
    for _ in range(probes):
        v = next(stream).to(device, dtype)
        v /= torch.linalg.vector_norm(v)  # exactly unit in the working dtype
        alphas, betas = _tridiagonal(matvec, v, steps)
        theta, s = np.linalg.eigh(np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1))
        nodes.append(theta)
        weights.append(s[0] ** 2)  # τ_k = (e₁ᵀ s_k)²: Σ τ_k = 1 (s is orthogonal)
    return _summarise(
        tuple(nodes),
        tuple(weights),
        size=size,
        steps=steps,
        seed=seed,
        dtype=str(dtype).removeprefix("torch."),
        sigma=sigma,
        grid_points=grid_points,
        negative_tol=tol,
    )


def _tridiagonal(matvec: MatVec, q: Tensor, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """α (m,) and β (m − 1,) of m = min(steps, P) Lanczos steps from the unit vector q (P,),
    fewer where the Krylov space closes (β ≈ 0)."""
    size, device, dtype = q.numel(), q.device, q.dtype
    m_max = min(steps, size)
    basis = torch.empty(m_max, size, device=device, dtype=dtype)  # (m_max, P)
    eps = torch.finfo(dtype).eps
    alphas: list[float] = []
    betas: list[float] = []
    beta = 0.0
    scale = 0.0  # running Gershgorin bound on ‖T‖ ≥ |λ|max of T, for the breakdown test
    for j in range(m_max):
        basis[j] = q
        w = matvec(q).to(device, dtype)
        alpha = float(torch.dot(w, q))
        w = w - alpha * q
        if j > 0:
            w = w - beta * basis[j - 1]
        done = basis[: j + 1]  # (j + 1, P)
        for _ in range(2):  # "twice is enough" (Kahan–Parlett): orthogonal to working precision
            w = w - done.T @ (done @ w)
        alphas.append(alpha)
        new_beta = float(torch.linalg.vector_norm(w))
        scale = max(scale, abs(alpha) + beta + new_beta)
        if j + 1 == m_max or new_beta <= BREAKDOWN * eps * scale:
            break  # the full space, or an invariant subspace: the quadrature is exact
        betas.append(new_beta)
        beta = new_beta
        q = w / new_beta
    return np.array(alphas), np.array(betas)


def gaussian_density(
    nodes: Sequence[np.ndarray], weights: Sequence[np.ndarray], grid: np.ndarray, *, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """φ on ``grid`` (G,): the mean over probes of Σ_k τ_k·g_σ(t − θ_k), and its standard error
    across probes (NaN with one probe)."""
    if not sigma > 0:
        raise LosslandError(
            f"{arg('sigma')} must be a positive kernel width, got {sigma}: pass a value > 0"
        )
    norm = 1.0 / (sigma * math.sqrt(2.0 * math.pi))
    curves = np.empty((len(nodes), len(grid)))  # (probes, G), one probe at a time: (m, G)
    for p, (theta, tau) in enumerate(zip(nodes, weights, strict=True)):
        z = (grid[None, :] - theta[:, None]) / sigma  # (m, G)
        curves[p] = norm * (tau @ np.exp(-0.5 * z * z))
    return curves.mean(axis=0), _se(curves)


def _summarise(
    nodes: tuple[np.ndarray, ...],
    weights: tuple[np.ndarray, ...],
    *,
    size: int,
    steps: int,
    seed: int,
    dtype: str,
    sigma: float | None,
    grid_points: int,
    negative_tol: float,
) -> SpectralDensity:
    # Every derived number of SpectralDensity in one place (over 60 lines: one per field).
    _check_density_args(
        size=size,
        probes=len(nodes),
        steps=steps,
        sigma=sigma,
        grid_points=grid_points,
        negative_tol=negative_tol,
    )
    lows = np.array([float(n[0]) for n in nodes])  # (probes,) per-probe extreme Ritz values
    highs = np.array([float(n[-1]) for n in nodes])
    lo, hi = float(lows.min()), float(highs.max())
    sigma, grid = _kernel_and_grid(lo, hi, sigma=sigma, grid_points=grid_points)
    density, density_se = gaussian_density(nodes, weights, grid, sigma=sigma)

    powers = np.arange(1, 5)
    per_moment = np.array(  # (probes, 4): Σ_k τ_k θ_k^j = vᵀH^j v for j ≤ 2m − 1
        [[float(np.sum(w * n**j)) for j in powers] for n, w in zip(nodes, weights, strict=True)]
    )
    moments, moments_se = per_moment.mean(axis=0), _se(per_moment)

    cut = negative_tol * max(abs(lo), abs(hi))
    neg = np.array([float(w[n < -cut].sum()) for n, w in zip(nodes, weights, strict=True)])
    pos = np.array([float(w[n > cut].sum()) for n, w in zip(nodes, weights, strict=True)])

    with np.errstate(divide="ignore", invalid="ignore"):
        per_ratio = np.where(highs > 0, np.maximum(0.0, -lows) / highs, np.nan)
    curvature = max(0.0, -lo) / hi if hi > 0 else math.nan

    for a in (grid, density, density_se, moments, moments_se, *nodes, *weights):
        a.flags.writeable = False
    return SpectralDensity(
        size=size,
        steps=steps,
        seed=seed,
        dtype=dtype,
        sigma=float(sigma),
        negative_tol=float(negative_tol),
        nodes=nodes,
        weights=weights,
        grid=grid,
        density=density,
        density_se=density_se,
        moments=moments,
        moments_se=moments_se,
        trace=Estimate(size * float(moments[0]), size * float(moments_se[0])),
        negative_mass=Estimate(float(neg.mean()), _se(neg)),
        positive_mass=Estimate(float(pos.mean()), _se(pos)),
        mass_ratio=_ratio_of_means(neg, pos),
        curvature_ratio=Estimate(curvature, _se(per_ratio)),
        lambda_min=Estimate(lo, _se(lows)),
        lambda_max=Estimate(hi, _se(highs)),
    )


def _kernel_and_grid(
    lo: float, hi: float, *, sigma: float | None, grid_points: int
) -> tuple[float, np.ndarray]:
    """σ (given, or a fraction of the Ritz span [lo, hi]) and the grid (G,) over the span
    padded by 5σ on each side."""
    if sigma is None:
        width = hi - lo or abs(hi) or 1.0  # a single eigenvalue: scale by it (or by 1 at 0)
        sigma = SIGMA_FRACTION * width
    pad = PAD_SIGMAS * sigma
    return sigma, np.linspace(lo - pad, hi + pad, grid_points)


def _ratio_of_means(a: np.ndarray, b: np.ndarray) -> Estimate:
    """ā / b̄ and its delta-method standard error (the ratio of the per-probe means estimates
    #negative / #positive eigenvalues consistently; a mean of per-probe ratios would not)."""
    n = len(a)
    ma, mb = float(a.mean()), float(b.mean())
    if mb <= 0:
        return Estimate(math.nan, math.nan)
    r = ma / mb
    if n < 2:
        return Estimate(r, math.nan)
    cov = np.cov(np.stack([a, b]), ddof=1) / n  # covariance of the two means
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (mb * mb)
    return Estimate(r, math.sqrt(max(float(var), 0.0)))


def _se(x: np.ndarray) -> Any:
    """Standard error of the mean over axis 0 (NaN with one sample)."""
    n = x.shape[0]
    if n < 2:
        return math.nan if x.ndim == 1 else np.full(x.shape[1:], math.nan)
    se = np.std(x, axis=0, ddof=1) / math.sqrt(n)
    return float(se) if x.ndim == 1 else se


def _check_density_args(
    *,
    size: int,
    probes: int,
    steps: int,
    sigma: float | None,
    grid_points: int,
    negative_tol: float | None,
) -> None:
    checks = [
        (size >= 1, f"size must be at least 1 parameter, got {size}"),
        (
            probes >= 1,
            f"{arg('probes')} must be at least 1 probe vector, got {probes}: pass 1 or more "
            "(10 or more for a useful standard error)",
        ),
        (
            steps >= 1,
            f"{arg('steps')} must be at least 1 Lanczos iteration per probe, got {steps}: pass "
            f"1 or more (about {DEFAULT_STEPS} resolves the spectrum)",
        ),
        (
            sigma is None or (math.isfinite(sigma) and sigma > 0),
            f"{arg('sigma')} must be a positive, finite kernel width, got {sigma}: pass a "
            f"value > 0, or None for {SIGMA_FRACTION:.0%} of the spectral range",
        ),
        (
            grid_points >= 2,
            f"{arg('grid_points')} must be at least 2, got {grid_points}: pass 2 or more "
            f"(default {DEFAULT_GRID_POINTS})",
        ),
        (
            negative_tol is None or (math.isfinite(negative_tol) and negative_tol >= 0),
            f"{arg('negative_tol')} must be 0 or more (relative to |λ|max), got "
            f"{negative_tol}: pass a value >= 0, or None for the products' rounding level",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise LosslandError(message)


# --- per-group top eigenvalues -------------------------------------------------------------------


def parameter_groups(
    names: Sequence[str],
    numels: Sequence[int],
    *,
    by: GroupBy = "parameter",
    select: Sequence[str] | None = None,
) -> tuple[ParameterGroup, ...]:
    """Groups over the flat vector laid out as ``names``/``numels`` (``HessianOperator.names``
    and ``.numels``): one per tensor (``by="parameter"``), or one per module
    (``by="module"``: the name without its last component, "features.0" for
    "features.0.weight" and "features.0.bias"). ``select`` keeps those groups, in its order."""
    if by not in ("parameter", "module"):
        raise LosslandError(f"unknown grouping {arg('by')} {by!r}: choose parameter or module")
    if len(names) != len(numels):
        raise LosslandError(
            f"{len(names)} parameter names but {len(numels)} sizes: pass the operator's "
            "names and numels together"
        )
    members: dict[str, tuple[list[str], list[tuple[int, int]]]] = {}
    offset = 0
    for name, numel in zip(names, numels, strict=True):
        key = name if by == "parameter" else (name.rpartition(".")[0] or name)
        tensors, ranges = members.setdefault(key, ([], []))
        tensors.append(name)
        if ranges and ranges[-1][1] == offset:  # adjacent tensors: one range
            ranges[-1] = (ranges[-1][0], offset + numel)
        else:
            ranges.append((offset, offset + numel))
        offset += numel
    groups = {
        key: ParameterGroup(key, tuple(tensors), tuple(ranges))
        for key, (tensors, ranges) in members.items()
    }
    if select is None:
        return tuple(groups.values())
    return tuple(_select(list(groups.values()), select))


def _select(groups: Sequence[ParameterGroup], select: Sequence[str]) -> list[ParameterGroup]:
    if isinstance(select, str):
        select = [select]  # one name, not its characters
    by_name = {g.name: g for g in groups}
    for name in select:
        if name not in by_name:
            known = list(by_name)
            shown = ", ".join(known[:8]) + (f", … ({len(known)} in all)" if len(known) > 8 else "")
            raise LosslandError(
                f"unknown parameter group {name!r} in {arg('select')}: choose from {shown}"
            )
    return [by_name[name] for name in select]


def group_eigenvalues(
    matvec: MatVec,
    size: int,
    *,
    groups: Sequence[ParameterGroup] | None = None,
    names: Sequence[str] | None = None,
    numels: Sequence[int] | None = None,
    by: GroupBy = "parameter",
    select: Sequence[str] | None = None,
    k: int = 3,
    iterations: int = 100,
    tol: float = 1e-6,
    which: Which = "largest",
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> GroupSpectra:
    """Top-k eigenvalues of each group's diagonal block H_gg by :func:`lanczos`.

    The groups: ``groups`` as given, or built from ``names``/``numels`` by
    :func:`parameter_groups` (``by``); ``select`` keeps some of them by name. A group with
    fewer than k parameters gets all of its eigenvalues.
    """
    chosen = _chosen_groups(size, groups=groups, names=names, numels=numels, by=by, select=select)
    _check_group_args(k=k, iterations=iterations, tol=tol)
    device = torch.device(device)
    results = [
        _group_top(
            matvec,
            size,
            g,
            k=k,
            iterations=iterations,
            tol=tol,
            which=which,
            seed=seed,
            device=device,
            dtype=dtype,
        )
        for g in chosen
    ]
    return GroupSpectra(tuple(results), k=k, which=which, tol=tol)


def _chosen_groups(
    size: int,
    *,
    groups: Sequence[ParameterGroup] | None,
    names: Sequence[str] | None,
    numels: Sequence[int] | None,
    by: GroupBy,
    select: Sequence[str] | None,
) -> list[ParameterGroup]:
    """The groups :func:`group_eigenvalues` analyses, checked against the size ``size``."""
    if groups is not None and (names is not None or numels is not None):
        raise LosslandError("pass either groups= or names= and numels=, not both")
    if groups is None:
        if names is None or numels is None:
            raise LosslandError(
                "no parameter groups: pass names= and numels= (the operator's .names and "
                ".numels) or groups="
            )
        if sum(numels) != size:
            raise LosslandError(
                f"the numels add up to {sum(numels)} parameters, but size is {size}: pass the "
                "operator's names, numels and size together"
            )
        chosen = list(parameter_groups(names, numels, by=by, select=select))
    else:
        chosen = list(groups) if select is None else _select(groups, select)
    if not chosen:
        raise LosslandError("no parameter groups to analyse: pass at least one group")
    for g in chosen:
        if not g.ranges or any(not 0 <= a < b <= size for a, b in g.ranges):
            raise LosslandError(
                f"parameter group {g.name!r} has ranges {list(g.ranges)} outside 0..{size}: "
                "build groups with parameter_groups(names, numels)"
            )
    return chosen


def _check_group_args(*, k: int, iterations: int, tol: float) -> None:
    checks = [
        (k >= 1, f"{arg('k')} must be at least 1 eigenvalue per group, got {k}: pass 1 or more"),
        (
            iterations >= 1,
            f"{arg('iterations')} must be at least 1, got {iterations}: pass 1 or more",
        ),
        (tol > 0, f"{arg('tol')} must be positive, got {tol}: pass a value > 0 (of |λ|max)"),
    ]
    for ok, message in checks:
        if not ok:
            raise LosslandError(message)


def _restriction(
    matvec: MatVec, size: int, group: ParameterGroup, *, device: torch.device, dtype: torch.dtype
) -> MatVec:
    """x ↦ (H·[x on the group, 0 elsewhere]) on the group: (|g|,) → (|g|,), one full H·v."""
    if len(group.ranges) == 1:
        start, stop = group.ranges[0]

        def contiguous(x: Tensor) -> Tensor:
            full = torch.zeros(size, device=device, dtype=dtype)
            full[start:stop] = x
            return matvec(full).to(device, dtype)[start:stop]

        return contiguous
    index = torch.cat([torch.arange(a, b) for a, b in group.ranges]).to(device)

    def scattered(x: Tensor) -> Tensor:
        full = torch.zeros(size, device=device, dtype=dtype)
        full[index] = x
        return matvec(full).to(device, dtype)[index]

    return scattered


def _group_top(
    matvec: MatVec,
    size: int,
    group: ParameterGroup,
    *,
    k: int,
    iterations: int,
    tol: float,
    which: Which,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
) -> GroupEigen:
    n = group.parameters
    restricted = _restriction(matvec, size, group, device=device, dtype=dtype)
    # lanczos raises when the Krylov space closes with fewer than k distinct Ritz values
    # (repeated eigenvalues, e.g. an identity-like block); those found are exact, so ask for
    # fewer. Each failed try costs fewer than k products.
    for want in range(min(k, n), 0, -1):
        try:
            pairs = lanczos(
                restricted,
                n,
                want,
                iterations=iterations,
                tol=tol,
                which=which,
                seed=seed,
                device=device,
                dtype=dtype,
                vectors=False,
            )
        except LosslandError:
            if want == 1:
                raise
            continue
        return GroupEigen(
            name=group.name,
            tensors=group.tensors,
            parameters=n,
            eigenvalues=pairs.values,
            residuals=pairs.residuals,
            iterations=pairs.iterations,
            converged=pairs.converged,
        )
    raise AssertionError("unreachable: lanczos with k = 1 always returns")


# --- a model at θ*: the operator, the density and the group blocks ------------------------------

DEFAULT_GROUP_K = 3
# The curve in summaries (JSON): σ, 1 % of the Ritz span by default, stays above two spacings of
# a grid of 1.1 × the span (the 5σ pads) once it has more than about 220 points.
SUMMARY_GRID_POINTS = 300


@dataclass(frozen=True, eq=False)
class HessianSpectrum:
    """The eigenvalue density (SLQ) and each parameter group's top eigenvalues of the Hessian
    of the mean loss over ``samples`` samples at θ*: ``products`` Hessian-vector products in
    ``seconds``. ``grouping`` is how the groups were formed ("parameter" or "module")."""

    density: SpectralDensity
    groups: GroupSpectra
    grouping: str
    samples: int
    products: int
    seconds: float

    def as_dict(self, *, arrays: bool = True, grid_points: int | None = None) -> dict[str, Any]:
        """JSON-ready. ``arrays=False`` leaves out the per-probe quadratures and the curve;
        ``grid_points`` then puts the curve (grid, density, density_se) back, resampled at that
        many points from the same quadratures and σ (no Hessian-vector products)."""
        density = self.density.as_dict(arrays=arrays)
        if grid_points is not None:
            curve = self.density.smoothed(sigma=self.density.sigma, grid_points=grid_points)
            for key in ("grid", "density", "density_se"):
                density[key] = _json_list(getattr(curve, key))
        return {
            "density": density,
            "groups": {"by": self.grouping, **self.groups.as_dict()},
            "samples": self.samples,
            "products": self.products,
            "seconds": self.seconds,
        }

    def describe(self) -> str:
        """The key numbers, a few lines: curvature ratio, negative mass, per-group tops."""
        d, g = self.density, self.groups
        lines = [
            f"Hessian spectral density (stochastic Lanczos quadrature, {d.probes} probes × "
            f"{d.steps} steps, σ = {d.sigma:.3g}; ± a {LEVEL:.0%} interval across probes, t "
            f"with {d.probes - 1} df):",
            f"  extreme Ritz values: λmin = {d.lambda_min.value:.6g}, "
            f"λmax = {d.lambda_max.value:.6g}",
            "  negative/positive curvature max(0, −λmin)/λmax = "
            f"{_pm(d.curvature_ratio, d.probes)}",
            f"  negative mass {_pm(d.negative_mass, d.probes)} (eigenvalues below "
            f"−{d.negative_tol:.1e}·|λ|max), positive {_pm(d.positive_mass, d.probes)}, "
            f"ratio {_pm(d.mass_ratio, d.probes)}",
            f"  trace ≈ {_pm(d.trace, d.probes)} (P·E[λ])",
            f"top {g.k} eigenvalues of each {self.grouping}'s diagonal Hessian block (Lanczos"
            + ("" if g.converged else "; * not converged: allow more iterations")
            + "):",
        ]
        width = max(len(b.name) for b in g.groups)
        counts = [f"({b.parameters:,})" for b in g.groups]
        count_width = max(len(c) for c in counts)
        for b, count in zip(g.groups, counts, strict=True):
            values = ", ".join(f"{v:.4g}" for v in b.eigenvalues)
            mark = "" if b.converged else " *"
            lines.append(f"  {b.name:<{width}} {count:>{count_width}}  λ = {values}{mark}")
        lines.append(f"{self.products} Hessian-vector products in {self.seconds:.1f} s")
        return "\n".join(lines)


def check_spectrum_arguments(*, probes: int, steps: int, groups: str) -> None:
    """The checks of :func:`hessian_spectrum`'s own arguments (its :class:`HessianOptions`
    check themselves), to run before any other work is done."""
    if groups not in GROUPINGS:
        raise LosslandError(
            f"unknown grouping {arg('groups')} {groups!r}: choose one of {', '.join(GROUPINGS)}"
        )
    _check_density_args(
        size=1,
        probes=probes,
        steps=steps,
        sigma=None,
        grid_points=DEFAULT_GRID_POINTS,
        negative_tol=None,
    )


PER_GROUP = HessianOptions(k=DEFAULT_GROUP_K)  # the spectrum's default: k eigenvalues per group


def hessian_spectrum(
    model: nn.Module,
    data: Any,
    *,
    evaluator: Evaluator | None = None,
    loss: LossFn | str | None = None,
    probes: int = DEFAULT_PROBES,
    steps: int = DEFAULT_STEPS,
    groups: GroupBy = "parameter",
    options: HessianOptions | None = None,
    k: int | None = None,
    iterations: int | None = None,
    tol: float | None = None,
    seed: int | None = None,
    params: Params | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    dtype: DType | torch.dtype | None = None,
    allow_large: bool | None = None,
    progress: bool | None = None,
) -> HessianSpectrum:
    """The Hessian's spectral density and per-group top eigenvalues at ``model``'s weights.

    The Hessian is that of the mean loss over ``data`` as the surfaces evaluate it (a private
    copy in eval mode; see :class:`HessianOperator`). The probes are Hutchinson's with the same
    ``seed``.

    Args:
        model, data, evaluator, loss: as for :func:`hessian_directions`.
        probes, steps: the density is :func:`spectral_density` with ``probes`` × ``steps``
            products (memory: ``steps`` vectors of the parameter count).
        groups: one block per parameter tensor ("parameter") or per module ("module"); each
            gets its top ``k`` eigenvalues (3 unless given or in ``options``; the largest,
            whatever ``options.which``) by :func:`lanczos` (``iterations``, ``tol``).
        options: a :class:`HessianOptions`; the other keywords are its fields but ``which``
            (and its ``probes``, the report's trace: here ``probes`` are the density's);
            ``progress`` shows a bar over the products.

    Returns:
        The :class:`HessianSpectrum`: the density curve, its key numbers and the groups'
        eigenvalues (``describe()`` prints them).

    Raises:
        LosslandError: an option out of its bounds, a model or data the evaluation contract
            refuses, or a cost that cannot fit (memory) or is above lossland's limits without
            ``allow_large``; checked before any Hessian-vector product.

    Example:
        >>> spectrum = lossland.hessian_spectrum(model, (inputs, targets), probes=4, steps=60)
        >>> print(spectrum.describe())
    """
    o = hessian_options(options, locals(), default=PER_GROUP, not_taken=("probes", "which"))
    check_spectrum_arguments(probes=probes, steps=steps, groups=groups)
    started = time.perf_counter()
    sizes: dict[str, Any] = dict(
        probes=probes, steps=steps, k=o.k, iterations=o.iterations, groups=groups
    )
    op = _operator(
        model,
        data,
        o,
        lambda n: spectrum_cost(model, o, samples=n, probes=probes, steps=steps, groups=groups),
        evaluator=evaluator,
        loss=loss,
    )
    with counting(op, _products(op, **sizes), enabled=o.progress):
        density, blocks = _density_and_blocks(op, seed=o.seed, tol=o.tol, **sizes)
    return HessianSpectrum(
        density=density,
        groups=blocks,
        grouping=groups,
        samples=op.count,
        products=op.products,
        seconds=time.perf_counter() - started,
    )


def _density_and_blocks(
    op: HessianOperator,
    *,
    probes: int,
    steps: int,
    k: int,
    iterations: int,
    groups: GroupBy,
    seed: int,
    tol: float,
) -> tuple[SpectralDensity, GroupSpectra]:
    density = spectral_density(
        op.matvec, op.size, probes=probes, steps=steps, seed=seed, device=op.device, dtype=op.dtype
    )
    blocks = group_eigenvalues(
        op.matvec,
        op.size,
        names=op.names,
        numels=op.numels,
        by=groups,
        k=k,
        iterations=iterations,
        tol=tol,
        seed=seed,
        device=op.device,
        dtype=op.dtype,
    )
    return density, blocks


def spectrum_cost(
    model: nn.Module,
    options: HessianOptions,
    *,
    samples: int | None,
    probes: int,
    steps: int,
    groups: GroupBy = "parameter",
) -> list[Need]:
    """What :func:`hessian_spectrum` needs (:func:`lossland.core.spectrum_needs`) over
    ``samples`` samples (None: not known yet): ``probes`` × ``steps`` for the density and
    ``options.k`` eigenvalues per group."""
    named = list(model.named_parameters())
    found = parameter_groups([n for n, _ in named], [p.numel() for _, p in named], by=groups)
    return spectrum_needs(
        params=sum(p.numel() for _, p in named),
        itemsize=torch_dtype(options.dtype).itemsize,
        samples=samples,
        probes=probes,
        steps=steps,
        k=options.k,
        iterations=options.iterations,
        group_sizes=[g.parameters for g in found],
        place=memory_place(resolve_device(options.device)),
    )


def _products(
    op: HessianOperator, *, probes: int, steps: int, k: int, iterations: int, groups: GroupBy
) -> int:
    """At most how many products the density and the group blocks take (the progress bar's
    length; Lanczos may stop sooner)."""
    found = parameter_groups(op.names, op.numels, by=groups)
    return probes * min(op.size, steps) + sum(min(g.parameters, max(iterations, k)) for g in found)


def _pm(estimate: Estimate, probes: int) -> str:
    """``value ± half-width`` of the t interval over ``probes`` (just the value where the SE is
    undefined: one probe)."""
    half = interval(estimate.se, probes)
    if math.isnan(half):
        return f"{estimate.value:.4g}"
    return f"{estimate.value:.4g} ± {half:.2g}"


# --- JSON ----------------------------------------------------------------------------------------


def _json_float(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _json_list(a: np.ndarray) -> list[float | None]:
    return [_json_float(float(x)) for x in np.asarray(a).ravel()]
