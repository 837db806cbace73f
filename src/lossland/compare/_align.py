"""``align``: permute B's hidden units to match A's (weight or activation matching), and
``blend``: the model between two aligned state dicts, with its BatchNorm statistics recomputed."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lossland.compare._activations import activation_matching
from lossland.compare._derive import derive
from lossland.compare._match import WeightMatching, weight_objective
from lossland.compare._permutation import Permutation
from lossland.core import AT_LEAST_1, SEEDS, check_fields, option, updated
from lossland.engine import (
    Evaluator,
    batchnorms,
    call_order,
    dataset_statistics,
    eval_data,
    resolve_evaluator,
)
from lossland.errors import LosslandError, arg
from lossland.io import load_state_into

AlignMethod = Literal["weights", "activations"]


@dataclass(frozen=True, kw_only=True)
class AlignOptions:
    """How to align (the defaults are Ainsworth et al.'s weight matching)."""

    method: AlignMethod = option(
        "weights", "weights: weight matching; activations: correlation of activations on data"
    )
    max_iterations: int = option(
        100, "most passes over the groups (weight matching)", bounds=AT_LEAST_1
    )
    seed: int = option(0, "seed for the order of the groups and the data subset", bounds=SEEDS)
    batch_size: int = option(256, "samples per forward pass (activations)", bounds=AT_LEAST_1)
    samples: int | None = option(
        None, "a seeded subset of N samples (activations; default: all the data)", bounds=AT_LEAST_1
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class Alignment:
    """B with its hidden units permuted to match A (it computes B's function), and the report.

    ``objective_before``/``objective_after`` are what the method maximises: Σ⟨θ_A, π(θ_B)⟩ over
    the permuted parameters (weights), or the mean correlation of matched units' activations
    (activations). ``untraced`` names the modules that could not be traced as a whole, whose
    inputs and outputs were left in place (a GPT-2's residual stream)."""

    model: nn.Module
    permutation: Permutation
    method: AlignMethod
    iterations: int
    objective_before: float
    objective_after: float
    untraced: tuple[str, ...]

    def state_dict(self) -> dict[str, Tensor]:
        return self.model.state_dict()

    def record(self) -> dict[str, Any]:
        """The alignment as data (JSON values), for a checkpoint's metadata."""
        return {
            "method": self.method,
            "iterations": self.iterations,
            "objective_before": self.objective_before,
            "objective_after": self.objective_after,
            "groups": {g.name: g.units for g in self.permutation.groups},
            "untraced": list(self.untraced),
        }


def align(
    model_a: nn.Module | Mapping[str, Tensor],
    model_b: nn.Module,
    *,
    method: AlignMethod | None = None,
    data: Any = None,
    evaluator: Evaluator | None = None,
    max_iterations: int | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
    samples: int | None = None,
    options: AlignOptions | None = None,
) -> Alignment:
    """Permute ``model_b``'s hidden units to match ``model_a``'s (a model, or its state dict for
    weight matching); returns a copy of B that computes B's function (see :class:`Alignment`).

    The permutation groups are derived from B's graph (MLPs, CNNs with BatchNorm, ResNets,
    GPT-2 style transformers; a part it cannot see through is a one-line error naming it).
    ``method="weights"`` (default) is Ainsworth et al.'s weight matching; ``"activations"``
    matches units by the correlation of their activations on ``data`` (any data
    :func:`lossland.surface` takes; ``evaluator`` gives the forward). ``None`` keywords take
    :class:`AlignOptions`' defaults (or ``options``').
    """
    opts = updated(
        options or AlignOptions(), method=method, max_iterations=max_iterations, seed=seed,
        batch_size=batch_size, samples=samples,
    )  # fmt: skip
    if not isinstance(model_b, nn.Module):
        raise LosslandError(f"{arg('model_b')} must be a torch.nn.Module (its graph is traced)")
    state_a = model_a.state_dict() if isinstance(model_a, nn.Module) else dict(model_a)
    state_b = model_b.state_dict()
    _check_same(state_a, state_b)
    groups, untraced = derive(model_b)
    if opts.method == "weights":
        if data is not None:
            raise LosslandError(
                f"weight matching reads only the weights: drop {arg('data')}, or pass "
                f"{arg('method')} activations"
            )
        params = frozenset(name for name, _ in model_b.named_parameters())
        keys = frozenset(a.key for g in groups for p in g.parts for a in p.axes) & params
        permutation, iterations = WeightMatching(state_a, state_b, groups, params).run(
            max_iterations=opts.max_iterations, seed=opts.seed
        )
        before = weight_objective(state_a, state_b, keys)
        after = weight_objective(state_a, permutation.apply(state_b), keys)
    else:
        permutation, before, after = _by_activations(
            model_a, model_b, groups, data, evaluator, opts
        )
        iterations = 1
    aligned = copy.deepcopy(model_b)
    aligned.load_state_dict(permutation.apply(state_b))
    return Alignment(aligned, permutation, opts.method, iterations, before, after, untraced)


def _by_activations(
    model_a: nn.Module | Mapping[str, Tensor],
    model_b: nn.Module,
    groups: Any,
    data: Any,
    evaluator: Evaluator | None,
    opts: AlignOptions,
) -> tuple[Permutation, float, float]:
    if data is None:
        raise LosslandError(
            f"activation matching runs both models on data: pass {arg('data')} (e.g. a "
            "DataLoader of training batches)"
        )
    if not isinstance(model_a, nn.Module):
        raise LosslandError(f"activation matching runs {arg('model_a')}: pass the model")
    device, dtype = _placed(model_b)
    batches = eval_data(
        data, batch_size=opts.batch_size, device=device, dtype=dtype, samples=opts.samples,
        seed=opts.seed,
    )  # fmt: skip
    modes = [(m, m.training) for m in (model_a, model_b)]
    try:
        for m, _ in modes:
            m.eval()
        return activation_matching(
            model_a, model_b, groups, batches.batches(), resolve_evaluator(evaluator, None)
        )
    finally:
        for m, training in modes:
            m.train(training)


def _placed(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where the model's weights are and their floating dtype (the data's, on the way in)."""
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    if first is None:
        return torch.device("cpu"), torch.float32
    return first.device, first.dtype


def _check_same(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> None:
    differ = sorted(set(a) ^ set(b)) + [
        k for k in a if k in b and tuple(a[k].shape) != tuple(b[k].shape)
    ]
    if differ:
        raise LosslandError(
            f"{arg('model_a')} and {arg('model_b')} are different models ({len(differ)} tensors "
            f"differ, e.g. {differ[0]}): align two models of one architecture"
        )


def blend(
    model: nn.Module,
    state_a: Mapping[str, Tensor],
    state_b: Mapping[str, Tensor],
    *,
    t: float,
    data: Any = None,
    evaluator: Evaluator | None = None,
    batch_size: int = 256,
) -> nn.Module:
    """A copy of ``model`` holding (1 − t)·θ_A + t·θ_B (integer buffers from A). A model with
    BatchNorm gets the statistics of the blend itself, recomputed on ``data`` (a reset, then a
    statistics of ``data``, as ``bn="recompute"`` computes them): the blend of A's and B's
    statistics is not the statistics of the blended network."""
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        raise LosslandError(f"{arg('t')} must be a finite number, got {t!r}")
    _check_same(state_a, state_b)
    net = copy.deepcopy(model)
    mixed = {
        k: torch.lerp(v, state_b[k].to(v), float(t)) if v.is_floating_point() else v
        for k, v in state_a.items()
    }
    load_state_into(net, mixed, source="the blend of state_a and state_b")
    if batchnorms(net):
        if data is None:
            raise LosslandError(
                f"the model has BatchNorm: pass {arg('data')} to recompute its statistics at t"
            )
        recompute_batchnorm(net, data, evaluator=evaluator, batch_size=batch_size)
    return net.eval()


def recompute_batchnorm(
    model: nn.Module, data: Any, *, evaluator: Evaluator | None = None, batch_size: int = 256
) -> None:
    """``model``'s BatchNorm statistics become those of ``data``, whatever its batching
    (:func:`lossland.engine.dataset_statistics`)."""
    device, dtype = _placed(model)
    batches = eval_data(data, batch_size=batch_size, device=device, dtype=dtype)
    evaluate = resolve_evaluator(evaluator, None)

    def run(batch: Any) -> Any:
        return evaluate.run(model, batch)

    with torch.no_grad():
        order = call_order(model, run, batches.first())
        dataset_statistics(model, batches.batches, run, order)
