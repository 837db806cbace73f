"""Mode-connecting curves (Garipov et al. 2018): φ(t), t ∈ [0, 1], from θ_A to θ_B through
trained bends θ_1 … θ_n, and the training that makes the expected loss along it low.

φ(t) = Σ_k w_k(t)·P_k over the control points P = (θ_A, θ_1, …, θ_n, θ_B): Bernstein weights
for a Bézier curve, the two nearest knots' (knots at k/(n+1)) for a polygonal chain. The bends
start on the line (where both kinds are the straight path) and move; A and B stay.

Training is a function of the step number alone: step s draws t ~ U(0, 1) and seeds dropout
from (seed, s), and visits the batches of its epoch in an order seeded by (seed, epoch). So a
run stopped at any point (a signal, kill -9) and rerun resumes from the bends and optimizer
state saved in its curve file and ends with the same bends as a run never stopped.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lossland.core import (
    AT_LEAST_1,
    POSITIVE,
    SEEDS,
    Bounds,
    check_fields,
    option,
    options_from,
    resolve_device,
    tensor_fingerprint,
)
from lossland.engine import Evaluator, eval_data, resolve_evaluator
from lossland.errors import LosslandError, arg
from lossland.io import check_output, load_curve, save_curve

CurveKind = Literal["bezier", "polychain"]
CurveOptimizer = Literal["adam", "sgd"]
MakeOptimizer = Callable[[list[Tensor]], torch.optim.Optimizer]
_UNIT = Bounds(0, 1, below=True)
_NOT_NEGATIVE = Bounds(0)


@dataclass(frozen=True, kw_only=True)
class CurveOptions:
    """How to train a curve (defaults: one Bézier bend, Adam 1e-3, 10 epochs)."""

    kind: CurveKind = option(
        "bezier", "bezier: the bends are control points; polychain: straight segments through them"
    )
    bends: int = option(1, "bends between A and B", bounds=AT_LEAST_1)
    epochs: int = option(10, "passes over the training data", bounds=AT_LEAST_1)
    batch_size: int = option(128, "training batch size", bounds=AT_LEAST_1)
    optimizer: CurveOptimizer = option("adam", "optimizer of the bends")
    lr: float = option(1e-3, "learning rate", bounds=POSITIVE)
    momentum: float = option(0.9, "SGD momentum", bounds=_UNIT)
    weight_decay: float = option(0.0, "weight decay of the bends", bounds=_NOT_NEGATIVE)
    seed: int = option(0, "seed for t, the batch order and dropout", bounds=SEEDS)
    save_every: int | None = option(
        None, "save the curve file every N steps (default: every epoch)", bounds=AT_LEAST_1
    )
    device: str = option("auto", "cpu, cuda, cuda:1, mps or auto")

    def __post_init__(self) -> None:
        check_fields(self)


def curve_weights(kind: CurveKind, bends: int, t: float) -> list[float]:
    """w_k(t) of the n + 2 control points (A, the bends, B); they sum to 1."""
    n = bends + 1  # segments of a chain, degree of a Bézier curve
    if kind == "bezier":
        return [math.comb(n, k) * t**k * (1 - t) ** (n - k) for k in range(n + 1)]
    j = min(int(t * n), n - 1)  # the segment holding t; t = 1 is the last one's end
    u = t * n - j
    return [(1 - u) if k == j else u if k == j + 1 else 0.0 for k in range(n + 1)]


@dataclass(frozen=True)
class Curve:
    """A curve between two models: A's and B's state dicts and the bends (the moving tensors:
    the floating parameters). ``record`` is the curve file's (recipe, steps, losses)."""

    kind: CurveKind
    start: Mapping[str, Tensor]
    bends: tuple[Mapping[str, Tensor], ...]
    end: Mapping[str, Tensor]
    record: Mapping[str, Any]

    def weights(self, t: float) -> list[float]:
        return curve_weights(self.kind, len(self.bends), t)

    def state_at(self, t: float) -> dict[str, Tensor]:
        """φ(t) as a full state dict: the bends' tensors along the curve, other floating
        tensors (BatchNorm statistics) on the line, integer ones A's."""
        w = self.weights(t)
        points = (self.start, *self.bends, self.end)
        out = {}
        for name, a in self.start.items():
            if name in self.bends[0]:
                out[name] = sum((wk * p[name].to(a) for wk, p in zip(w, points, strict=True)),
                                torch.zeros_like(a))  # fmt: skip
            elif a.is_floating_point():
                out[name] = torch.lerp(a, self.end[name].to(a), float(t))
            else:
                out[name] = a.clone()
        return out

    def tensors(self) -> dict[str, Tensor]:
        """The bends as the curve file stores them (``bend<k>.<name>``)."""
        return {f"bend{k}.{n}": v for k, b in enumerate(self.bends) for n, v in b.items()}


@dataclass(frozen=True)
class CurveResult:
    """The trained curve and what its training did (``steps_run``: 0 for a finished file)."""

    curve: Curve
    out: Path | None
    steps: int
    steps_run: int
    epoch_losses: tuple[float, ...]

    def summary(self) -> str:
        c = self.curve
        lines = [
            f"{c.kind} curve with {len(c.bends)} bend(s): {self.steps} steps "
            f"({self.steps_run} run now)"
        ]
        if self.epoch_losses:
            shown = ", ".join(f"{v:.4g}" for v in self.epoch_losses[-5:])
            lines.append(f"mean training loss along the curve per epoch (last 5): {shown}")
        if self.out is not None:
            lines.append(f"curve file: {self.out}")
        return "\n".join(lines)


def _mixed_seed(seed: int, *parts: object) -> int:
    """A seed for (seed, parts): independent streams per step and per epoch."""
    text = ":".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & (2**63 - 1)


def curve(
    model_a: nn.Module,
    model_b: nn.Module | Mapping[str, Tensor],
    data: Any,
    *,
    evaluator: Evaluator | None = None,
    loss: Any = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    make_optimizer: MakeOptimizer | None = None,
    inputs: tuple[str | Path, ...] = (),
    options: CurveOptions | None = None,
    kind: CurveKind | None = None,
    bends: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    optimizer: CurveOptimizer | None = None,
    lr: float | None = None,
    momentum: float | None = None,
    weight_decay: float | None = None,
    seed: int | None = None,
    save_every: int | None = None,
    device: str | None = None,
) -> CurveResult:
    """Train the bends of a curve from ``model_a`` to ``model_b`` (a model or its state dict)
    so that the loss along it is low in expectation: each step draws t ~ U(0, 1) and takes one
    optimizer step on the evaluation contract's loss (``evaluator`` or ``loss``) of φ(t) on one
    batch of ``data`` (any data :func:`lossland.surface` takes; cached on the device).

    The keywords of :class:`CurveOptions` (``kind``, ``bends``, ``epochs``, ``lr``, …; None:
    the default) say how; ``make_optimizer(params)`` replaces the built-in Adam/SGD. With
    ``out`` the curve file is saved every ``save_every`` steps (default: every epoch) and at
    the end; a rerun with the same recipe resumes it (a finished one is returned as it is),
    one with another recipe is refused unless ``overwrite``. ``inputs``: files the run reads,
    never written. Returns the :class:`Curve` and what the run did."""
    opts = options_from(options or CurveOptions(), locals())  # every field is a keyword
    if not isinstance(model_a, nn.Module):
        raise LosslandError(f"{arg('model_a')} must be a torch.nn.Module (the curve runs it)")
    state_b = model_b.state_dict() if isinstance(model_b, nn.Module) else dict(model_b)
    where = resolve_device(opts.device)
    run = _Training(model_a, state_b, opts, where, resolve_evaluator(evaluator, loss))
    batches = eval_data(data, batch_size=opts.batch_size, device=where, mode="cached")
    run.recipe = _recipe(opts, run, batches.fingerprint, batches.samples, make_optimizer)
    path = None if out is None else Path(out)
    resumed = None
    if path is not None:
        resumed = _resumable(path, run.recipe, overwrite)
        check_output(path, overwrite=True if resumed else overwrite, inputs=inputs, own=True)
    run.start(make_optimizer, resumed)
    before = run.step
    with torch.random.fork_rng(devices=[where] if where.type == "cuda" else []):
        run.loop(tuple(batches.cached or ()), path)
    return CurveResult(run.trained(), path, run.step, run.step - before, tuple(run.epoch_losses))


def _recipe(
    opts: CurveOptions,
    run: _Training,
    data: str,
    samples: int,
    make_optimizer: MakeOptimizer | None,
) -> dict[str, Any]:
    """What defines the curve: a file made by another recipe is not resumed."""
    fields = {k: v for k, v in asdict(opts).items() if k not in ("save_every", "device")}
    if make_optimizer is not None:
        fields["optimizer"] = f"custom:{getattr(make_optimizer, '__qualname__', 'callable')}"
    return {
        **fields,
        "endpoints": [tensor_fingerprint(run.start_state), tensor_fingerprint(run.end_state)],
        "data": data,
        "samples": samples,
        "loss": run.evaluator.name,
        "model": type(run.model).__name__,
    }


def _resumable(path: Path, recipe: Mapping[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """The saved state to resume from ``path`` (same recipe), or None to start afresh."""
    if not path.exists():
        return None
    try:
        tensors, record = load_curve(path)
    except LosslandError:
        if overwrite:
            return None
        raise
    if record["recipe"] == dict(recipe):
        return {"tensors": tensors, "record": record}
    if overwrite:
        return None
    differ = sorted(
        k for k in {*recipe, *record["recipe"]} if recipe.get(k) != record["recipe"].get(k)
    )
    raise LosslandError(
        f"{arg('out')} {path} holds a curve of another recipe (differs in {', '.join(differ)}): "
        f"pass {arg('overwrite')} to replace it, or choose another {arg('out')}"
    )


class _Forward(nn.Module):
    """The model at the given tensors (``torch.func.functional_call``), for the evaluator's
    forward: the model itself is never written."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.at: dict[str, Tensor] = {}

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return torch.func.functional_call(self.model, self.at, args, kwargs, strict=False)


class _Training:
    """One curve's training: the bends, the optimizer, the step reached and the losses."""

    def __init__(
        self,
        model: nn.Module,
        state_b: Mapping[str, Tensor],
        opts: CurveOptions,
        device: torch.device,
        evaluator: Evaluator,
    ) -> None:
        self.opts, self.device, self.evaluator = opts, device, evaluator
        self.model = copy.deepcopy(model).to(device).train()
        self.start_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        _check_same_model(self.start_state, state_b)
        self.end_state = {k: v.detach().to(device, copy=True) for k, v in state_b.items()}
        self.names = [n for n, p in self.model.named_parameters() if p.is_floating_point()]
        if not self.names:
            raise LosslandError(f"{arg('model_a')} has no floating parameters to bend")
        self.recipe: dict[str, Any] = {}
        self.total = 0
        self.step = 0
        self.epoch_losses: list[float] = []
        self.running = [0.0, 0.0]
        self.bends: list[dict[str, nn.Parameter]] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self.forward = _Forward(self.model)

    def start(self, make_optimizer: MakeOptimizer | None, resumed: dict[str, Any] | None) -> None:
        n = self.opts.bends
        for k in range(1, n + 1):  # on the line: the straight path for both kinds
            self.bends.append({
                name: nn.Parameter(torch.lerp(self.start_state[name],
                                              self.end_state[name].to(self.start_state[name]),
                                              k / (n + 1)))
                for name in self.names
            })  # fmt: skip
        params: list[Tensor] = [p for bend in self.bends for p in bend.values()]
        self.optimizer = (make_optimizer or self._optimizer)(params)
        if resumed is not None:
            self._restore(resumed["tensors"], resumed["record"])

    def _optimizer(self, params: list[Tensor]) -> torch.optim.Optimizer:
        o = self.opts
        if o.optimizer == "adam":
            return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)

    def _restore(self, tensors: Mapping[str, Tensor], record: Mapping[str, Any]) -> None:
        with torch.no_grad():
            for k, bend in enumerate(self.bends):
                for name, p in bend.items():
                    p.copy_(tensors[f"bend{k}.{name}"])
        assert self.optimizer is not None
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, field = key.split(".", 2)
                state.setdefault(int(index), {})[field] = value
        for index, scalars in record["optimizer_scalars"].items():
            state.setdefault(int(index), {}).update(scalars)
        groups = self.optimizer.state_dict()["param_groups"]
        self.optimizer.load_state_dict({"state": state, "param_groups": groups})
        self.step = record["step"]
        self.epoch_losses = list(record["epoch_losses"])
        self.running = list(record["running"])

    def loop(self, batches: tuple[Any, ...], path: Path | None) -> None:
        if not batches:
            raise LosslandError(f"{arg('data')} holds no batches to train the curve on")
        per_epoch = len(batches)
        total = self.total = self.opts.epochs * per_epoch
        every = self.opts.save_every or per_epoch
        while self.step < total:
            epoch, position = divmod(self.step, per_epoch)
            order = torch.randperm(
                per_epoch,
                generator=torch.Generator().manual_seed(
                    _mixed_seed(self.opts.seed, "order", epoch)
                ),
            )
            self._train_step(batches[int(order[position])])
            self.step += 1
            if self.step % per_epoch == 0:
                self.epoch_losses.append(self.running[0] / max(self.running[1], 1.0))
                self.running = [0.0, 0.0]
            if path is not None and (self.step % every == 0 or self.step == total):
                self.save(path, finished=self.step == total)

    def _train_step(self, batch: Any) -> None:
        assert self.optimizer is not None
        torch.manual_seed(_mixed_seed(self.opts.seed, "step", self.step))  # t and dropout
        t = float(torch.rand(()))
        w = curve_weights(self.opts.kind, self.opts.bends, t)
        self.forward.at = {
            name: w[0] * self.start_state[name]
            + sum(wk * bend[name] for wk, bend in zip(w[1:-1], self.bends, strict=True))
            + w[-1] * self.end_state[name]
            for name in self.names
        }
        value = self.evaluator.mean_loss(self.evaluator.run(self.forward, batch), batch)
        if not torch.isfinite(value.detach()):
            raise LosslandError(
                f"the loss along the curve is {float(value)} at step {self.step} (t = {t:.3f}): "
                f"lower {arg('lr')}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        value.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        self.running = [self.running[0] + float(value.detach()), self.running[1] + 1.0]

    def trained(self) -> Curve:
        bends = tuple({n: p.detach().cpu().clone() for n, p in b.items()} for b in self.bends)
        start = {k: v.cpu() for k, v in self.start_state.items()}
        end = {k: v.cpu() for k, v in self.end_state.items()}
        record = self._record(finished=self.step == self.total)
        return Curve(self.opts.kind, start, bends, end, record)

    def _record(self, *, finished: bool) -> dict[str, Any]:
        assert self.optimizer is not None
        scalars = {
            str(i): {k: v for k, v in s.items() if not isinstance(v, Tensor)}
            for i, s in self.optimizer.state_dict()["state"].items()
        }
        return {
            "format": 1,
            "kind": self.opts.kind,
            "bends": self.opts.bends,
            "step": self.step,
            "steps": self.total,
            "finished": finished,
            "recipe": self.recipe,
            "epoch_losses": list(self.epoch_losses),
            "running": list(self.running),
            "optimizer_scalars": scalars,
        }

    def save(self, path: Path, *, finished: bool) -> None:
        assert self.optimizer is not None
        tensors = {
            f"bend{k}.{n}": p.detach() for k, b in enumerate(self.bends) for n, p in b.items()
        }
        for i, s in self.optimizer.state_dict()["state"].items():
            tensors |= {f"optimizer.{i}.{k}": v for k, v in s.items() if isinstance(v, Tensor)}
        save_curve(path, tensors, self._record(finished=finished))


def _check_same_model(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> None:
    differ = sorted(set(a) ^ set(b)) + [
        k for k in a if k in b and tuple(a[k].shape) != tuple(b[k].shape)
    ]
    if differ:
        raise LosslandError(
            f"{arg('model_a')} and {arg('model_b')} are different models ({len(differ)} tensors "
            f"differ, e.g. {differ[0]}): a curve joins two models of one architecture"
        )


def load_curve_file(
    path: str | Path, start: Mapping[str, Tensor], end: Mapping[str, Tensor]
) -> Curve:
    """The curve a curve file holds, between ``start`` and ``end`` (A's and B's state dicts:
    the file records their fingerprints and refuses other models)."""
    tensors, record = load_curve(path)
    found = [tensor_fingerprint(dict(start)), tensor_fingerprint(dict(end))]
    if record["recipe"].get("endpoints") != found:
        raise LosslandError(
            f"curve file {path} joins other models than these A and B: pass the two "
            "checkpoints the curve was trained between"
        )
    bends = []
    for k in range(record["bends"]):
        prefix = f"bend{k}."
        bends.append(
            {key[len(prefix) :]: v for key, v in tensors.items() if key.startswith(prefix)}
        )
    unknown = [n for n in bends[0] if n not in start]
    if unknown:
        raise LosslandError(f"curve file {path} bends tensor {unknown[0]}, which A does not hold")
    return Curve(record["kind"], dict(start), tuple(bends), dict(end), record)
