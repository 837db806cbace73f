"""The loss Hessian at θ*: top eigenpairs (Lanczos) and the trace (Hutchinson), matrix-free.

Everything is built on Hessian-vector products H·v of the mean loss over a fixed sample set,
computed by double backward (∇(∇L·v)) on a private copy of the model in eval mode (BatchNorm
uses its running statistics, dropout is off), so the Hessian is that of the function the
surface evaluates. All parameters take part (weights, biases, BatchNorm γ/β).

Lanczos keeps every basis vector and reorthogonalizes fully (twice, Gram–Schmidt), so no ghost
copies of converged eigenvalues appear; the tridiagonal matrix is diagonalised in float64 and
iteration stops once the k wanted Ritz values have residual bounds |β_m·s_mi| below
``tol``·|λ_max|. Memory: one basis vector per iteration (iterations × P × bytes per element).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from lossland.core import (
    AT_LEAST_1,
    POSITIVE,
    SEEDS,
    SUM,
    Bounds,
    DType,
    Need,
    Params,
    check_fields,
    check_needs,
    hessian_needs,
    interval,
    moves,
    option,
    options_from,
    plus_minus,
    progress_bar,
    resolve_device,
    select_params,
    torch_dtype,
)
from lossland.directions._directions import Directions
from lossland.engine import (
    Batch,
    Evaluator,
    LossFn,
    ModelState,
    cast_copy,
    eval_data,
    known_samples,
    precision_mode,
    resolve_evaluator,
    user_failure,
    working_copy,
)
from lossland.errors import LosslandError, arg

Which = Literal["largest", "magnitude"]
MatVec = Callable[[Tensor], Tensor]


@dataclass(frozen=True, kw_only=True)
class HessianOptions:
    """How the Hessian at θ* is computed, and how much of it a verb asks for: the one place
    these defaults live. The five Hessian verbs take each field as a keyword (``None``: this
    default, or ``options``' value); ``lossland hessian`` makes one flag per field."""

    k: int = option(
        5, "number of top eigenvalues (a spectrum: per parameter group)", bounds=AT_LEAST_1
    )
    # (option() returns a dataclasses.field, as dataclasses.field itself would: RUF009 is moot)
    which: Which = option(  # noqa: RUF009
        "largest", "largest: most positive eigenvalues; magnitude: largest |λ|"
    )
    probes: int = option(
        64, "Rademacher probes for the Hutchinson trace (0: none)", bounds=Bounds(0)
    )
    iterations: int = option(
        100, "most Lanczos iterations (memory: one vector each)", bounds=AT_LEAST_1
    )
    tol: float = option(1e-6, "stop when the residual bounds are below tol·|λ|max", bounds=POSITIVE)
    seed: int = option(0, "seed for the sample subset, start vector and probes", bounds=SEEDS)
    batch_size: int = option(256, "samples per Hessian-vector-product batch", bounds=AT_LEAST_1)
    device: str = option("auto", "cpu, cuda, cuda:1, mps or auto")
    dtype: DType = option("float32", "compute dtype")  # noqa: RUF009
    allow_large: bool = option(
        False,
        "run even when the estimated work is above lossland's limits (1e9 sample evaluations, a "
        "Hessian-vector product counting 8 per sample); what cannot fit the memory is refused "
        "either way",
    )
    progress: bool = option(True, "show a progress bar over the products")
    params: Params | None = option(  # noqa: RUF009
        None,
        "the tensors the Hessian is of (default: all): a glob over parameter names, repeatable "
        "(a leading ! excludes), 'trainable' (those that require grad), or in the API a "
        "function (name, tensor) -> bool",
        repeat=True,
    )

    def __post_init__(self) -> None:
        check_fields(self)  # choices and the bounds declared above


def hessian_options(
    options: HessianOptions | None,
    given: Mapping[str, Any],
    *,
    default: HessianOptions | None = None,
    not_taken: Iterable[str] = (),
) -> HessianOptions:
    """A verb's options: ``options`` (else the verb's ``default``, else HessianOptions()) with
    the keywords in ``given`` (its ``locals()``) that are not None. ``not_taken`` are fields
    the verb has no keyword for (or a keyword of its own under that name); a torch dtype is
    named by its dtype name."""
    given = {**given, **dict.fromkeys(not_taken)}
    if isinstance(given.get("dtype"), torch.dtype):
        given["dtype"] = str(given["dtype"]).removeprefix("torch.")
    return options_from(options or default or HessianOptions(), given)


# --- Hessian-vector products ---------------------------------------------------------------------


class HessianOperator:
    """v ↦ H·v for the mean loss of ``model`` over ``data`` at the model's weights.

    The loss is the surfaces' own: ``data`` of any kind through ``evaluator`` (or the classic
    ``loss``), so the Hessian is that of the function a surface evaluates, token-weighted for
    language models. Vectors are flat (P,) tensors over ``names`` (the model's parameters, in
    order) on ``device`` in ``dtype``. ``model`` is never modified.
    """

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        *,
        evaluator: Evaluator | None = None,
        loss: LossFn | str | None = None,
        batch_size: int = 256,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        params: Params | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.evaluator = resolve_evaluator(evaluator, loss)
        self.data = eval_data(data, batch_size=batch_size, device=self.device, dtype=dtype)
        self.count = self.data.samples
        check_real(model)
        chosen = select_params(params, model.named_parameters())
        # With a subset, the parameters are shared with the model, not copied (read-only).
        shared = chosen is not None
        copied = working_copy(model, [], device=self.device if shared else None, dtype=dtype)
        self.net = cast_copy(copied, self.device, dtype).eval()
        self.state = ModelState(self.net, model)  # every pass starts from the model's state
        # The tensors that move (core.moving_dtype): integer and bool parameters do not; with
        # ``params``, the chosen ones only (the Hessian's block on them).
        named = [
            (n, p)
            for n, p in self.net.named_parameters()
            if moves(n, p.dtype) and (chosen is None or n in chosen)
        ]
        self.names: tuple[str, ...] = tuple(n for n, _ in named)
        self.subset = chosen is not None  # the Hessian's block on a subset (params)
        self.params: list[Tensor] = [p for _, p in named]
        if not self.params:
            raise LosslandError("the model has no parameters: nothing to differentiate")
        for p in self.params:
            p.requires_grad_(True)
        self.shapes = [tuple(p.shape) for p in self.params]
        self.numels = [p.numel() for p in self.params]
        self.size = int(sum(self.numels))
        self.products = 0
        self.bar: Any = None  # a progress bar counting the products (see counting())
        with torch.no_grad(), self._pass():  # Σ n: the set's weight (samples, or tokens)
            self.weight = sum(float(self._stats(batch)[SUM["weight"]]) for batch in self._batches())

    @contextlib.contextmanager
    def _pass(self) -> Iterator[None]:
        """One pass over the data: what the model or the loss raises is one line; what the
        forward changed in the model is put back after it."""
        try:
            yield
        except LosslandError:
            raise
        except Exception as exc:
            raise user_failure(
                exc,
                who="the model or loss",
                where="while computing the Hessian",
                fix="check that the batches fit the model and that its loss is twice "
                f"differentiable, or pass {arg('evaluator')}",
            ) from exc
        self.state.settle()

    def _stats(self, batch: Batch) -> Tensor:
        return self.evaluator.stats(self.evaluator.run(self.net, batch), batch)

    def _batch_loss(self, batch: Batch) -> Tensor:
        """The batch's summed loss divided by the whole set's weight: these add up to the
        set's mean loss."""
        return self._stats(batch)[SUM["loss_sum"]].to(self.dtype) / self.weight

    def _split(self, v: Tensor) -> list[Tensor]:
        return [t.view(s) for t, s in zip(torch.split(v, self.numels), self.shapes, strict=True)]

    def _flat(self, tensors: Sequence[Tensor | None]) -> Tensor:
        return torch.cat(
            [
                (
                    t if t is not None else torch.zeros(s, device=self.device, dtype=self.dtype)
                ).reshape(-1)
                for t, s in zip(tensors, self.shapes, strict=True)
            ]
        )

    def _batches(self) -> Iterator[Batch]:
        """The batches, with true fp32 on CUDA around each one's forward and backward passes
        (cuDNN would use TF32 for convolutions by default, rounding at about 1e-3)."""
        for batch in self.data.batches():
            # The math attention kernel: the fused ones have no second derivative.
            with precision_mode(self.device, "fp32"), sdpa_kernel([SDPBackend.MATH]):
                yield batch

    def loss_and_grad(self) -> tuple[float, Tensor]:
        """Mean loss and the flat gradient at θ*."""
        total = 0.0
        grad = torch.zeros(self.size, device=self.device, dtype=self.dtype)
        with self._pass():
            for batch in self._batches():
                loss = self._batch_loss(batch)
                parts = torch.autograd.grad(loss, self.params, allow_unused=True)
                grad += self._flat(parts)
                total += float(loss.detach())
        return total, grad

    def matvec(self, v: Tensor) -> Tensor:
        """H·v by double backward, summed over the batches."""
        if v.shape != (self.size,):
            raise ValueError(f"expected a vector of {self.size} elements, got {tuple(v.shape)}")
        vs = self._split(v.to(self.device, self.dtype))
        out = torch.zeros(self.size, device=self.device, dtype=self.dtype)
        with self._pass():
            for batch in self._batches():
                loss = self._batch_loss(batch)
                grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
                dot = sum(
                    (torch.sum(g * u) for g, u in zip(grads, vs, strict=True) if g is not None),
                    torch.zeros((), device=self.device, dtype=self.dtype),
                )
                if not dot.requires_grad:  # no dependence on the weights at second order
                    continue
                hv = torch.autograd.grad(dot, self.params, allow_unused=True)
                out += self._flat(hv)
        self.products += 1
        if self.bar is not None:
            self.bar.update(1)
        return out

    __call__ = matvec

    def unflatten(
        self, v: Tensor, *, dtypes: Mapping[str, torch.dtype] | None = None
    ) -> dict[str, Tensor]:
        """{name: tensor} on the CPU shaped like the parameters (in ``dtypes[name]``, else
        float32)."""
        return {
            name: t.detach().to("cpu", (dtypes or {}).get(name, torch.float32)).clone()
            for name, t in zip(self.names, self._split(v), strict=True)
        }

    def directions(
        self, pairs: Eigenpairs, model: nn.Module, info: Mapping[str, Any], *, seed: int | None
    ) -> Directions:
        """The top one or two Ritz vectors as unit directions in ``model``'s dtypes."""
        assert pairs.vectors is not None
        dtypes = {n: p.dtype for n, p in model.named_parameters()}
        vecs = [
            self.unflatten(pairs.vectors[i], dtypes=dtypes)
            for i in range(min(len(pairs.values), 2))
        ]
        return Directions(
            x=vecs[0],
            y=vecs[1] if len(vecs) > 1 else None,
            kind="hessian",
            norm="none",
            ignore="none",
            seed=seed,
            info=dict(info),
            params=self.names if self.subset else None,
        )


def check_real(model: nn.Module) -> None:
    """The Hessian here is of real weights: a complex parameter is refused (see
    core.moving_dtype)."""
    complex_ = [n for n, p in model.named_parameters() if p.is_complex()]
    if complex_:
        raise LosslandError(
            f"the model's {complex_[0]} is complex, and lossland computes Hessians of real "
            "parameters only: use random or model-to-model directions for this model"
        )


# --- Lanczos -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Eigenpairs:
    """Ritz values (sorted: largest first, or by magnitude) and unit Ritz vectors (k, P)."""

    values: np.ndarray
    vectors: Tensor | None
    residuals: np.ndarray  # bounds |β_m·s_mi| on ‖H·y_i − λ_i·y_i‖
    iterations: int
    converged: bool


def _pick(values: np.ndarray, k: int, which: Which) -> np.ndarray:
    key = -values if which == "largest" else -np.abs(values)
    return np.argsort(key, kind="stable")[:k]


def lanczos(
    matvec: MatVec,
    size: int,
    k: int,
    *,
    iterations: int = 100,
    tol: float = 1e-6,
    which: Which = "largest",
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    vectors: bool = True,
) -> Eigenpairs:
    """Top-k eigenpairs of the symmetric operator ``matvec`` (size × size) by Lanczos with full
    reorthogonalization; stops at ``iterations`` or when the k residual bounds are ≤ tol·|λ|max."""
    if which not in ("largest", "magnitude"):
        raise LosslandError(f"unknown eigenvalue order {which!r}: choose largest or magnitude")
    if not 1 <= k <= size:
        raise LosslandError(
            f"k = {k} eigenvalues asked, but the model has {size} parameters: choose 1..{size}"
        )
    m_max = min(size, max(iterations, k))
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(size, generator=generator, dtype=torch.float64).to(device, dtype)
    q /= torch.linalg.vector_norm(q)
    basis: list[Tensor] = []
    alphas: list[float] = []
    betas: list[float] = []
    values = np.zeros(0)
    s = np.zeros((0, 0))
    residuals = np.zeros(0)
    converged = False
    beta = 0.0
    for j in range(m_max):
        basis.append(q)
        w = matvec(q).to(device, dtype)
        alpha = float(torch.dot(w, q))
        w = w - alpha * q
        if j > 0:
            w = w - beta * basis[-2]
        for _ in range(2):  # "twice is enough" (Kahan–Parlett): orthogonal to working precision
            for b in basis:
                w -= torch.dot(b, w) * b
        alphas.append(alpha)
        beta = float(torch.linalg.vector_norm(w))
        t = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        values, s = np.linalg.eigh(t)
        chosen = _pick(values, min(k, len(values)), which)
        residuals = np.abs(beta * s[-1, chosen])
        scale = float(np.max(np.abs(values))) or 1.0
        if len(alphas) >= k and np.all(residuals <= tol * scale):
            converged = True
            break
        if beta <= 1e3 * torch.finfo(dtype).eps * scale:  # an invariant subspace: exact
            converged = len(alphas) >= k
            break
        betas.append(beta)
        q = w / beta
    if len(alphas) < k:
        raise LosslandError(
            f"Lanczos found only {len(alphas)} distinct eigenvalue(s) before its Krylov space "
            f"closed (repeated eigenvalues, or a Hessian of rank < {k} on this sample set): "
            f"ask for fewer ({arg('k')}) or use more samples"
        )
    chosen = _pick(values, k, which)
    return Eigenpairs(
        values=values[chosen].copy(),
        vectors=_ritz_vectors(s[:, chosen], basis) if vectors else None,
        residuals=np.abs(beta * s[-1, chosen]),
        iterations=len(alphas),
        converged=converged,
    )


def _ritz_vectors(coefficients: np.ndarray, basis: list[Tensor]) -> Tensor:
    """(k, size) unit eigenvector estimates from (m, k) Ritz coefficients in the Lanczos basis."""
    k, size = coefficients.shape[1], basis[0].numel()
    out = torch.zeros(k, size, device=basis[0].device, dtype=basis[0].dtype)
    for i, column in enumerate(coefficients.T.tolist()):
        acc = torch.zeros(size, device=basis[0].device, dtype=torch.float64)
        for c, b in zip(column, basis, strict=True):
            acc.add_(b.double(), alpha=c)
        acc /= torch.linalg.vector_norm(acc)
        # A fixed sign (largest component positive) so reruns give identical directions.
        if acc[int(torch.argmax(acc.abs()))] < 0:
            acc.neg_()
        out[i] = acc.to(basis[0].dtype)
    return out


# --- Hutchinson ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceEstimate:
    """tr(H) ≈ mean of zᵀHz over Rademacher probes z, with the standard error of that mean."""

    value: float
    sem: float
    probes: int
    samples: np.ndarray = field(repr=False)


def hutchinson(
    matvec: MatVec,
    size: int,
    *,
    probes: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> TraceEstimate:
    """Hutchinson's estimator with Rademacher (±1) probes drawn from a seeded generator."""
    if probes < 1:
        raise LosslandError(
            f"{arg('probes')} must be at least 1 for a trace estimate, got {probes}"
        )
    generator = torch.Generator().manual_seed(seed + 1)  # not the Lanczos start vector
    samples = np.empty(probes)
    for i in range(probes):
        z = torch.randint(0, 2, (size,), generator=generator).to(device, dtype).mul_(2).sub_(1)
        samples[i] = float(torch.dot(z, matvec(z).to(device, dtype)))
    sem = float(np.std(samples, ddof=1) / math.sqrt(probes)) if probes > 1 else math.nan
    return TraceEstimate(float(samples.mean()), sem, probes, samples)


# --- the operator the verbs share --------------------------------------------------------------


def _operator(
    model: nn.Module,
    data: Any,
    options: HessianOptions,
    needs: Callable[[int | None], list[Need]],
    *,
    evaluator: Evaluator | None,
    loss: LossFn | str | None,
) -> HessianOperator:
    """The operator of every Hessian verb, on ``options``' device in its dtype, with ``needs``
    checked before the data is read (the samples known then) and, where only reading tells how
    many samples the data holds, once more after."""
    known = known_samples(data)
    check_needs(needs(known), allow_large=options.allow_large)
    op = HessianOperator(
        model,
        data,
        evaluator=evaluator,
        loss=loss,
        batch_size=options.batch_size,
        device=resolve_device(options.device),
        dtype=torch_dtype(options.dtype),
        params=options.params,
    )
    if known is None:
        check_needs(needs(op.count), allow_large=options.allow_large)
    return op


def hessian_cost(model: nn.Module, options: HessianOptions, *, samples: int | None) -> list[Need]:
    """What the Hessian report needs (:func:`lossland.core.hessian_needs`): its Lanczos
    vectors and ``options.probes`` Hutchinson probes over ``samples`` samples (None: not known
    yet)."""
    return _needs(model, options, probes=options.probes)(samples)


def _needs(
    model: nn.Module, options: HessianOptions, *, probes: int
) -> Callable[[int | None], list[Need]]:
    params = sum(p.numel() for p in model.parameters())
    place = memory_place(resolve_device(options.device))
    itemsize = torch_dtype(options.dtype).itemsize
    return lambda samples: hessian_needs(
        params=params,
        itemsize=itemsize,
        samples=samples,
        k=options.k,
        iterations=options.iterations,
        probes=probes,
        place=place,
    )


def memory_place(device: str | torch.device) -> str:
    """Where a computation on ``device`` holds its memory, as :func:`lossland.core.check_needs`
    names it."""
    device = torch.device(device)
    return str(device) if device.type == "cuda" else "host"


@contextlib.contextmanager
def counting(op: HessianOperator, total: int, *, enabled: bool) -> Iterator[None]:
    """A progress bar over the operator's Hessian-vector products (``total``: at most)."""
    op.bar = progress_bar(total, desc="Hessian-vector products", unit="", enabled=enabled)
    try:
        yield
    finally:
        if op.bar is not None:
            op.bar.close()
        op.bar = None


def _lanczos(op: HessianOperator, options: HessianOptions) -> Eigenpairs:
    o = options
    return lanczos(
        op,
        op.size,
        o.k,
        iterations=o.iterations,
        tol=o.tol,
        which=o.which,
        seed=o.seed,
        device=op.device,
        dtype=op.dtype,
    )


# --- the verbs: eigenpairs, directions, the report, the plane ------------------------------------

TOP_TWO = HessianOptions(k=2)  # the default of the verbs that make directions


def hessian_eigen(
    model: nn.Module,
    data: Any,
    *,
    evaluator: Evaluator | None = None,
    loss: LossFn | str | None = None,
    options: HessianOptions | None = None,
    k: int | None = None,
    which: Which | None = None,
    iterations: int | None = None,
    tol: float | None = None,
    seed: int | None = None,
    params: Params | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    dtype: DType | torch.dtype | None = None,
    allow_large: bool | None = None,
    progress: bool | None = None,
) -> tuple[HessianOperator, Eigenpairs]:
    """The operator and its top-k eigenpairs (see :func:`lanczos`; ``k`` 2 unless given or
    in ``options``); the cost is checked first (see :func:`hessian_cost`; ``allow_large`` lets
    work above lossland's limits run). The keywords are :class:`HessianOptions`' fields but
    ``probes``."""
    o = hessian_options(options, locals(), default=TOP_TWO, not_taken=("probes",))
    return _eigen(model, data, o, evaluator=evaluator, loss=loss)


def _eigen(
    model: nn.Module,
    data: Any,
    o: HessianOptions,
    *,
    evaluator: Evaluator | None,
    loss: LossFn | str | None,
) -> tuple[HessianOperator, Eigenpairs]:
    op = _operator(model, data, o, _needs(model, o, probes=0), evaluator=evaluator, loss=loss)
    with counting(op, min(op.size, max(o.iterations, o.k)), enabled=o.progress):
        pairs = _lanczos(op, o)
    return op, pairs


def hessian_directions(
    model: nn.Module,
    data: Any,
    *,
    evaluator: Evaluator | None = None,
    loss: LossFn | str | None = None,
    options: HessianOptions | None = None,
    k: int | None = None,
    which: Which | None = None,
    iterations: int | None = None,
    tol: float | None = None,
    seed: int | None = None,
    params: Params | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    dtype: DType | torch.dtype | None = None,
    allow_large: bool | None = None,
    progress: bool | None = None,
) -> Directions:
    """Unit eigenvectors of the two (k ≥ 2, the default) or one (k = 1) top Hessian eigenvalues at
    θ*.

    With unit directions the surface's coordinates are Euclidean distances in weight space and
    its curvature at the centre along x is λ₁ (a check the sharpness measures print).

    Args:
        model: the network at θ*.
        data: the evaluation set the loss is averaged over, as for :func:`lossland.surface`.
        evaluator, loss: how a batch becomes a loss, as for :func:`lossland.surface`.
        options: a :class:`HessianOptions`; each other keyword (``k``, ``which``,
            ``iterations``, ``tol``, ``seed``, ``batch_size``, ``device``, ``dtype``, ...) is one
            of its fields (``None``: ``options``' value, or its default), ``probes`` excepted.

    Returns:
        :class:`Directions` of kind "hessian"; ``info`` holds all k eigenvalues, the Lanczos
        iterations and residual bounds.

    Raises:
        LosslandError: an option out of its bounds, a model or data the evaluation contract
            refuses, or a cost that cannot fit (memory) or is above lossland's limits without
            ``allow_large``; checked before any Hessian-vector product.

    Example:
        >>> d = lossland.hessian_directions(model, (inputs, targets), k=2, iterations=50)
    """
    o = hessian_options(options, locals(), default=TOP_TWO, not_taken=("probes",))
    return _directions(model, data, o, evaluator=evaluator, loss=loss)


def _directions(
    model: nn.Module,
    data: Any,
    o: HessianOptions,
    *,
    evaluator: Evaluator | None,
    loss: LossFn | str | None,
) -> Directions:
    op, pairs = _eigen(model, data, o, evaluator=evaluator, loss=loss)
    info = {
        "eigenvalues": [float(v) for v in pairs.values],
        "eigen_residuals": [float(r) for r in pairs.residuals],
        "lanczos_iterations": pairs.iterations,
        "lanczos_converged": pairs.converged,
        "eigen_order": o.which,
        "hessian_samples": op.count,
        "hessian_dtype": str(op.dtype).removeprefix("torch."),
    }
    return op.directions(pairs, model, info, seed=o.seed)


@dataclass(frozen=True)
class HessianReport:
    """What ``lossland hessian`` prints."""

    parameters: int
    samples: int
    loss: float
    grad_norm: float
    eigen: Eigenpairs
    trace: TraceEstimate | None
    seconds: float
    device: str
    dtype: str
    products: int

    def summary(self, *, header: str = "") -> str:
        e = self.eigen
        status = "converged" if e.converged else "NOT converged: allow more iterations"
        lines = [header] if header else []
        lines += [
            f"{self.parameters:,} parameters, {self.samples:,} samples, {self.dtype} on "
            f"{self.device}; loss {self.loss:.6g}, ‖∇L‖ {self.grad_norm:.3g}",
            f"top {len(e.values)} Hessian eigenvalues (Lanczos, {e.iterations} iterations, "
            f"{status}; residual ≤ {float(np.max(e.residuals)):.1e}):",
        ]
        lines += [f"  λ{i + 1} = {v:.6g}" for i, v in enumerate(e.values)]
        if self.trace is not None:
            t = self.trace
            lines.append(
                f"trace ≈ {plus_minus(t.value, t.sem, t.probes, fmt='.6g')} (Hutchinson, "
                f"{t.probes} Rademacher probes)"
            )
            if t.value > 0 and e.values.size:
                lines.append(f"λ1 / trace = {float(e.values[0]) / t.value:.3g}")
        lines.append(f"{self.products} Hessian-vector products in {self.seconds:.1f} s")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "parameters": self.parameters,
            "samples": self.samples,
            "loss": self.loss,
            "grad_norm": self.grad_norm,
            "eigenvalues": self.eigen.values.tolist(),
            "eigen_residuals": self.eigen.residuals.tolist(),
            "lanczos_iterations": self.eigen.iterations,
            "lanczos_converged": self.eigen.converged,
            "trace": None if self.trace is None else self.trace.value,
            "trace_sem": None if self.trace is None else self.trace.sem,
            "trace_interval": None
            if self.trace is None
            else _finite_or_none(interval(self.trace.sem, self.trace.probes)),
            "trace_probes": 0 if self.trace is None else self.trace.probes,
            "seconds": self.seconds,
        }


def hessian_report(
    model: nn.Module,
    data: Any,
    *,
    evaluator: Evaluator | None = None,
    loss: LossFn | str | None = None,
    options: HessianOptions | None = None,
    k: int | None = None,
    which: Which | None = None,
    probes: int | None = None,
    iterations: int | None = None,
    tol: float | None = None,
    seed: int | None = None,
    params: Params | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    dtype: DType | torch.dtype | None = None,
    allow_large: bool | None = None,
    progress: bool | None = None,
) -> tuple[HessianReport, HessianOperator]:
    """Top-k eigenvalues, a Hutchinson trace (``probes`` > 0) and the loss/gradient at θ*.

    Args:
        model, data, evaluator, loss: as for :func:`hessian_directions`.
        options: a :class:`HessianOptions`; each other keyword is one of its fields
            (``None``: ``options``' value, or its default); ``progress`` shows a bar over the
            products.

    Returns:
        The :class:`HessianReport` (what ``lossland hessian`` prints) and the
        :class:`HessianOperator` it used (for more products on the same model and data).

    Raises:
        LosslandError: an option out of its bounds, a model or data the evaluation contract
            refuses, or a cost that cannot fit (memory) or is above lossland's limits without
            ``allow_large``; checked before any Hessian-vector product.

    Example:
        >>> report, op = lossland.hessian_report(model, (inputs, targets), k=3, probes=32)
        >>> report.eigen.values
    """
    o = hessian_options(options, locals())
    _check_report(model, o)
    started = time.perf_counter()
    op = _operator(
        model, data, o, _needs(model, o, probes=o.probes), evaluator=evaluator, loss=loss
    )
    with counting(op, min(op.size, max(o.iterations, o.k)) + o.probes + 1, enabled=o.progress):
        pairs = _lanczos(op, o)
        trace = (
            hutchinson(op, op.size, probes=o.probes, seed=o.seed, device=op.device, dtype=op.dtype)
            if o.probes > 0
            else None
        )
        value, grad = op.loss_and_grad()
    report = HessianReport(
        parameters=op.size,
        samples=op.count,
        loss=value,
        grad_norm=float(torch.linalg.vector_norm(grad)),
        eigen=pairs,
        trace=trace,
        seconds=time.perf_counter() - started,
        device=str(op.device),
        dtype=str(op.dtype).removeprefix("torch."),
        products=op.products,
    )
    return report, op


def _check_report(model: nn.Module, options: HessianOptions) -> None:
    """What the report needs beyond each option's own bounds: k within the model's size, and
    at least k Lanczos iterations."""
    k, iterations = options.k, options.iterations
    size = sum(p.numel() for p in model.parameters())
    checks = [
        (
            k <= size,
            f"{arg('k')} {k} is larger than the model's {size} parameters: choose 1..{size}",
        ),
        (
            iterations >= k,
            f"{arg('iterations')} {iterations} is below {arg('k')} {k}: Lanczos needs at least k",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise LosslandError(message)


def save_eigen_directions(
    op: HessianOperator,
    report: HessianReport,
    path: str | Path,
    model: nn.Module,
    *,
    source: str = "",
) -> Path:
    """Write the top one or two eigenvectors as a directions file with the eigenvalues."""
    info: Mapping[str, Any] = {
        "eigenvalues": report.eigen.values.tolist(),
        "eigen_residuals": report.eigen.residuals.tolist(),
        "lanczos_iterations": report.eigen.iterations,
        "lanczos_converged": report.eigen.converged,
        "hessian_samples": report.samples,
        "hessian_checkpoint": source,
        "hessian_trace": None if report.trace is None else report.trace.value,
        "hessian_trace_sem": None if report.trace is None else report.trace.sem,
    }
    return op.directions(report.eigen, model, info, seed=None).save(path)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
