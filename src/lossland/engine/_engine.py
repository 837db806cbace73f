"""The evaluation engine: loss and accuracy at every grid point, as fast as the hardware allows.

The moving tensors of a private copy of the network are views of one flat buffer ``flat``
(P elements). Along a grid row only α changes, so the next point is one in-place axpy
``flat += (α_next − α)·δ``; each row is re-anchored exactly from θ* so rounding cannot drift,
and so is the point at α = 0.
Losses stay on the device and reach the host once per block of points. With ``offload``
θ* stays on the host and each row's anchor copies it in (the device holds 3× the parameters).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from lossland.core import (
    SUM,
    SUMS,
    FlatLayout,
    PlaneVectors,
    Regenerator,
    Scheme,
    barycentric_point_,
    li_point_,
    li_rounded_,
    linear2x_point_,
    moving_dtype,
    reduce_sums,
    rows,
    scratch_like,
    trim_host,
)
from lossland.engine._batchnorm import call_order, dataset_statistics
from lossland.engine._compile import compile_failure, compiled
from lossland.engine._contract import Evaluator, accumulate
from lossland.engine._copy import (
    BNMode,
    batchnorm_statistics,
    bind_flat,
    cast_copy,
    is_bn_statistic,
    set_bn_mode,
    working_copy,
)
from lossland.engine._data import Batch, EvalData
from lossland.engine._failures import DataReadError, user_failure
from lossland.engine._precision import (
    Precision,
    layout_channels_last,
    network_dtype,
    one_point_only,
    precision_mode,
)
from lossland.engine._presets import fitting_preset
from lossland.engine._shard import Share, model_device, shard_mesh, shard_network
from lossland.engine._state import ModelState
from lossland.engine._suffix import Suffix
from lossland.errors import LosslandError, arg

_T = TypeVar("_T")
# Elements of a narrow network's float32 block (4 MiB: fastest of 2**16..2**22 measured on the
# write-up's VGG, 2-core EPYC: 17 ms a point against 20 ms at 2**18), in cache (L3).
NARROW_BLOCK = 1 << 20


@dataclass(frozen=True)
class Block:
    """Results for some points of one grid row: ``stats`` (len(cols), len(SUMS)) float64, each
    point's sums in :data:`lossland.core.SUMS` order (:func:`lossland.core.reduce_sums` turns
    them into the point's values)."""

    row: int
    cols: np.ndarray
    stats: np.ndarray


@dataclass(frozen=True)
class EngineOptions:
    device: torch.device
    dtype: torch.dtype = torch.float32
    bn: BNMode = "eval"
    channels_last: bool = False
    points_per_batch: int = 1
    compile: bool = False
    precision: Precision = "fp32"
    flush_seconds: float = 5.0
    # Stop a point's evaluation once its relative standard error is below this, after at
    # least ``min_batches`` batches (the data in a fixed order: neighbours share samples).
    sem_target: float | None = None
    min_batches: int = 2
    # Keep θ* on the host (pinned for CUDA) and re-anchor each row from it: the device then
    # holds the working copy and the directions only (see ``host_theta``).
    offload: bool = False
    # Ranks that share one replica of the network, each holding its dim-0 shards (FSDP2:
    # engine._shard); 1: the whole network here.
    shard: int = 1


class Engine:
    """Evaluates a network on a plane of weight space; one instance per surface run."""

    # Built outside inference mode even when called inside it: the working copy's tensors keep
    # version counters, which the model state's check reads (see ModelState).
    @torch.inference_mode(mode=False)
    def __init__(
        self,
        model: nn.Module,
        directions: Sequence[Mapping[str, Tensor]],
        data: EvalData,
        *,
        evaluator: Evaluator | None = None,
        scheme: Scheme = "li",
        origin: Mapping[str, Tensor] | None = None,
        regenerate: Sequence[Regenerator] | None = None,
        options: EngineOptions,
    ) -> None:
        self.options, self.scheme, self.data = options, scheme, data
        # memory="lean": the directions are not stored but redrawn at every point, a block of
        # rows at a time (``directions`` then only give names and shapes)
        self.lean = None if regenerate is None else tuple(regenerate)
        if self.lean is not None and (scheme != "li" or options.points_per_batch != 1):
            raise LosslandError("lean memory evaluates scheme li one point at a time")
        self.evaluator = evaluator or Evaluator()
        names = list(directions[0])
        if options.bn == "recompute":
            if options.points_per_batch > 1:
                raise LosslandError(f"{one_point_only(options.bn, None)}: use K=1")
            # The statistics are recomputed per point, so they must not be flat-buffer views.
            names = [n for n in names if not is_bn_statistic(model, n)]
        moving: dict[str, Tensor] = dict(model.named_parameters())
        moving.update(dict(model.named_buffers()))
        laid_out = layout_channels_last(options.channels_last, options.points_per_batch)
        device, dtype = options.device, options.dtype
        wants = moving_dtypes(moving, names, dtype)  # complex tensors move as complex
        self.layout = FlatLayout.of(
            {n: moving[n].shape for n in names},
            channels_last=laid_out,
            complex=[n for n in names if wants[n].is_complex],
        )
        # θ* stays where it is (the model's own tensors, or the origin) when it is on the device
        # in the grid's dtype or a narrower float (``anchor_dtype``); offloaded, on the host.
        source = {n: (origin[n] if origin is not None else moving[n]).detach() for n in names}
        at = device if options.shard == 1 else None  # sharded: moved row by row (engine._shard)
        self.theta, self.theta_flat = (
            host_theta(list(source.values()), self.layout, device, dtype)
            if options.offload
            else ([t.to(at, anchor_dtype(t, wants[n])) for n, t in source.items()], None)
        )
        # δ and η (P,) each, P = layout.size: the directions in the flat layout
        self.dx: Tensor | None = None
        self.dy: Tensor | None = None
        if self.lean is None:
            self.dx = self._flat_direction(directions[0], names)
            if len(directions) > 1:
                self.dy = self._flat_direction(directions[1], names)
        self._build_network(model, names, laid_out)
        # Moving tensors in a suffix of a stack: its prefix is recorded once, then replayed.
        self.suffix = Suffix.find(self.net, names) if _replayable(options, data) else None
        self.plane = None if scheme == "li" else self._plane()
        self.checked = False  # the first batch is checked against the contract
        self._scratch: Tensor | None = None
        self.module: nn.Module = self.net
        if options.compile:
            self.module = compiled(
                self.net, mode="reduce-overhead" if device.type == "cuda" else None
            )
        # Every point starts from the model's own state: what a forward changes is put back
        # (the state as it is now, set up for evaluation and compiled).
        own = batchnorm_statistics(self.net) if options.bn == "recompute" else ()
        self.state = ModelState(self.net, model, moving=self.weights, skip=own)
        self._stale = False  # the forward wrote the moving weights: re-anchor the next point
        self._bn_order: list[nn.modules.batchnorm._BatchNorm] | None = None
        # The copies made while building (the working copy before its tensors became views of
        # the flat buffer) are freed: hand their heap pages back, so the run holds what it uses.
        trim_host()

    # One grid point's statistics, summed over the evaluation batches; stays on the device.
    def _stats(self) -> Tensor:
        if self.share is not None:  # sharded: this rank's batches, summed over its group
            return self._shared_stats()
        total = None
        for count, (batch, output) in enumerate(self._outputs(), 1):
            s = self.evaluator.stats(output, batch)  # (len(SUMS),)
            if not self.checked:  # the first batch of the run: is the contract what we think?
                self._check(output, s, batch)
            total = accumulate(total, s)  # (len(SUMS),)
            if self._precise_enough(total, count):
                break
        assert total is not None
        return total

    def _shared_stats(self) -> Tensor:
        """A point's sums when the ranks of a group share its batches (engine._shard.Share)."""
        assert self.share is not None
        total = None
        for batch, mine in self.share.turns(self.data.batches()):
            output = self.evaluator.run(self.module, batch)  # with the group: FSDP gathers
            if mine:
                s = self.evaluator.stats(output, batch)  # (len(SUMS),)
                if not self.checked:
                    self._check(output, s, batch)
                total = accumulate(total, s)
        return self.share.reduce(total, self.flat.device)

    def unit_losses(self, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
        """(sums (m,), counts (m,)) float64 on the host: every unit's summed loss and weight at
        θ(α, β) over all the evaluation batches, in their order (the same units at every
        point: what a paired standard error between two points needs; a loss that is a batch
        mean gives one unit a batch)."""
        sums: list[Tensor] = []
        counts: list[Tensor] = []

        def units() -> None:
            for batch, output in self._outputs():
                s, n, _ = self.evaluator.units(output, batch)
                sums.append(s.double())
                counts.append(n.double())

        with torch.inference_mode(), precision_mode(self.options.device, self.options.precision):
            self._move_to(np.array([alpha]), np.array([beta]), 0, np.zeros(1, dtype=int), 0)
            self._at_point(units, alpha, beta)
        return torch.cat(sums).cpu().numpy(), torch.cat(counts).cpu().numpy()

    def _outputs(self) -> Iterator[tuple[Batch, Any]]:
        """Each evaluation batch and the network's output on it at the current θ(α, β)."""
        if self.options.bn == "recompute":
            self._recompute_bn()
        for index, batch in enumerate(self.data.batches()):
            if self.suffix is not None:
                self.suffix.at(index)  # the stack's fixed prefix: recorded, then replayed
            yield batch, self.evaluator.run(self.module, batch)

    def _precise_enough(self, total: Tensor, batches: int) -> bool:
        """With a standard-error target: is this point's mean known well enough already?
        (One host sync per batch, only when a target is set.)"""
        target = self.options.sem_target
        if target is None or batches < self.options.min_batches:
            return False
        values = reduce_sums(total.cpu().numpy())
        mean, sem = values["loss"], values["loss_sem"]
        return bool(np.isfinite(sem) and sem < target * abs(mean))

    def _recompute_bn(self) -> None:
        """BatchNorm statistics of θ(α, β) itself, as mode-connectivity work does: those of the
        evaluation set, whatever its batching (:mod:`lossland.engine._batchnorm`)."""

        def run(batch: Batch) -> Any:
            return self.evaluator.run(self.net, batch)  # not compiled: it carries hooks

        if self._bn_order is None:  # the layers in the order the forward reaches them
            self._bn_order = call_order(self.net, run, self.data.first())
        dataset_statistics(self.net, self.data.batches, run, self._bn_order)

    def _point_(self, alpha: float, beta: float) -> None:
        """Exact θ(α, β) into the flat buffer for the non-linear schemes."""
        assert self.plane is not None
        segments = self.layout.segments(self.flat)
        if self.scheme == "linear2x":
            linear2x_point_(self.flat, segments, self.plane, alpha, beta)
        else:
            if self._scratch is None:  # ψ needs a second vector beside ϕ
                self._scratch = torch.empty_like(self.flat)
            scratch = self._scratch
            barycentric_point_(
                self.flat, segments, scratch, self.layout.segments(scratch), self.plane, alpha, beta
            )

    def _flat_direction(self, direction: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
        """The direction as a flat vector in the engine's layout: adopted when lossland drew it
        in that layout already (no copy), else copied. A bf16/fp16 direction stays in its dtype
        for scheme li one point at a time (``direction_dtype``)."""
        device, dtype = self.options.device, self.options.dtype
        if self.options.shard > 1:  # where it is: engine._shard moves this rank's rows
            device = next(iter(direction.values())).device
        if self.scheme == "li" and self.options.points_per_batch == 1:
            dtype = direction_dtype(direction, dtype)
        adopted = self.layout.adopt(direction, device=device, dtype=dtype)
        if adopted is not None:
            return adopted
        return self.layout.flatten({n: direction[n] for n in names}, device=device, dtype=dtype)

    def _plane(self) -> PlaneVectors:
        """Flat θ* and per-tensor views for the non-linear schemes (one more copy of θ*)."""
        assert self.dx is not None
        base = torch.empty_like(self.flat)  # (P,) θ*
        for view, theta in zip(self.layout.views(base).values(), self.theta, strict=True):
            view.copy_(theta)
        segs = self.layout.segments
        dy_segments = segs(self.dy) if self.dy is not None else None
        return PlaneVectors(
            base=base,
            dx=self.dx,
            dy=self.dy,
            base_segments=segs(base),
            dx_segments=segs(self.dx),
            dy_segments=dy_segments,
            active=tuple(
                bool(a.any()) or (b is not None and bool(b.any()))
                for a, b in zip(segs(self.dx), dy_segments or [None] * len(self.theta), strict=True)
            ),
        )

    def _anchor_(self, alpha: float, beta: float, out: Tensor | None = None) -> None:
        """θ* + α·δ + β·η exactly, tensor by tensor, into ``out`` (default: the flat buffer).
        Offloaded with a host copy, θ* is first copied in (one transfer), then moved in place;
        offloaded on the CPU, θ* is the model's own tensors, read as in the normal mode."""
        views = self.layout.views
        dy = list(views(self.dy).values()) if self.dy is not None else None
        flat = self.flat if out is None else out
        target = list(views(flat).values())
        theta = self.theta
        if self.theta_flat is not None:
            flat.copy_(self.theta_flat, non_blocking=True)
            theta = target
        if self.lean is not None:
            self._lean_point_(target, theta, alpha, beta)
            return
        assert self.dx is not None
        dx = list(views(self.dx).values())
        if self.scratch is not None:  # a narrow network: formed a block at a time, rounded once
            li_rounded_(target, theta, dx, dy, alpha, beta, self.scratch)
        else:
            li_point_(target, theta, dx, dy, alpha, beta)

    def _lean_point_(
        self, target: Sequence[Tensor], theta: Sequence[Tensor], alpha: float, beta: float
    ) -> None:
        """θ* + α·δ + β·η with δ and η redrawn a block of rows at a time from their recipe
        (core.Regenerator: on the CPU, then copied here), formed in the grid's dtype and
        rounded once into a narrow network; the device holds one block of each."""
        assert self.lean is not None
        device = self.options.device
        for k, (view, t) in enumerate(zip(target, theta, strict=True)):
            xs = self.lean[0].tensor(k, t, device)
            ys = self.lean[1].tensor(k, t, device) if len(self.lean) > 1 else None
            for block, x in xs:
                y = None if ys is None else [next(ys)[1]]
                out = rows(view, block)
                s = out if self.scratch is None else scratch_like(self.scratch, out)
                li_point_([s], [rows(t, block)], [x], y, alpha, beta)
                if self.scratch is not None:
                    out.copy_(s)

    def rows(
        self,
        xs: np.ndarray,
        ys: np.ndarray,
        pending: np.ndarray,
        rows: Sequence[int] | None = None,
        tick: Callable[[int], None] | None = None,
    ) -> Generator[Block, None, None]:
        """Evaluate the pending points of the given rows; yield them in blocks.

        ``pending`` is a (len(ys), len(xs)) bool mask; 1-D planes use ``ys = [0.0]``.
        A block ends at a row's end or after ``flush_seconds``, so callers can checkpoint.
        """
        if self.options.points_per_batch > 1:
            yield from self._rows_batched(xs, ys, pending, rows, tick)
            return
        with torch.inference_mode(), precision_mode(self.options.device, self.options.precision):
            flushed = time.monotonic()
            for i in rows if rows is not None else range(len(ys)):
                cols = np.flatnonzero(pending[i])
                cols = cols if i % 2 == 0 else cols[::-1]  # snake: neighbours differ along x only
                out = self._point_sums(len(cols))  # (len(cols), len(SUMS))
                start = done = 0
                try:
                    for n, j in enumerate(cols):
                        self._move_to(xs, ys, i, cols, n)
                        out[n] = self._evaluate(xs[j], ys[i])
                        done = n + 1
                        if tick is not None:
                            tick(1)
                        if time.monotonic() - flushed > self.options.flush_seconds:
                            yield Block(i, cols[start:done], out[start:done].cpu().numpy())
                            start, flushed = done, time.monotonic()
                except (Exception, KeyboardInterrupt):
                    # Hand over the points this row finished before the error propagates, so
                    # the caller can save them.
                    if done > start:
                        yield Block(i, cols[start:done], out[start:done].cpu().numpy())
                    raise
                if done > start:
                    yield Block(i, cols[start:done], out[start:done].cpu().numpy())
                    flushed = time.monotonic()

    def _point_sums(self, points: int) -> Tensor:
        """(points, len(SUMS)) float64 on the device: a row of sums per point, filled in place."""
        return torch.empty(points, len(SUMS), dtype=torch.float64, device=self.flat.device)

    def _move_to(self, xs: np.ndarray, ys: np.ndarray, i: int, cols: np.ndarray, n: int) -> None:
        """Set the flat buffer to θ(xs[cols[n]], ys[i])."""
        j = cols[n]
        if self.scheme != "li":
            self._point_(xs[j], ys[i])
        elif (
            self.scratch is not None
            or self.lean is not None
            or n == 0
            or self._stale
            or abs(int(j) - int(cols[n - 1])) != 1
            or xs[j] == 0.0
        ):
            # Exact from θ*: rounding cannot drift across rows, and α = 0 (the centre's
            # column) is θ* + β·η itself, not float32 steps away (one more anchor a row).
            # A narrow network keeps no grid-dtype copy to step: every point is exact.
            self._anchor_(xs[j], ys[i])
        else:
            assert self.dx is not None
            self.flat.add_(self.dx, alpha=xs[j] - xs[cols[n - 1]])  # one axpy per point
        if self.low:
            self.weights.copy_(self.flat)  # the bf16 network's weights, rounded once
        self._stale = False
        self.state.mark_moving()

    def _evaluate(self, alpha: float, beta: float) -> Tensor:
        return self._at_point(self._stats, alpha, beta)

    def _at_point(self, evaluate: Callable[[], _T], alpha: float, beta: float) -> _T:
        """``evaluate()`` at the point θ(α, β) the network holds: what the user's code raises
        is placed at the point, and what the forward changed is put back."""
        try:
            result = evaluate()
        except Exception as exc:
            error = self._failed(exc, f"at (x, y) = ({alpha:g}, {beta:g})")
            raise error from error.__cause__
        if self.state.settle():  # the forward wrote the moving weights
            self._stale = True
        return result

    def _build_network(self, model: nn.Module, names: list[str], laid_out: bool) -> None:
        """The working copy the points are evaluated on, its parameters views of ``weights``."""
        options = self.options
        device, dtype = options.device, options.dtype
        # bf16: the grid arithmetic θ(α, β) stays in ``dtype`` (``flat``); the network reads a
        # bf16 copy of it (``weights``), cast once per point, and runs wholly in bf16.
        self.low = options.precision == "bf16"
        net_dtype = network_dtype(options.precision, dtype)
        # Parameters that do not move and need no cast are shared with the model, not copied
        # (sharded: every parameter, where the model is: FSDP moves this rank's rows).
        held, place = (names, device) if options.shard == 1 else ([], model_device(model, device))
        self.net = cast_copy(
            working_copy(model, held, device=place, dtype=net_dtype), place, net_dtype
        )
        if laid_out:
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        set_bn_mode(self.net, options.bn)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.share: Share | None = None
        if options.shard > 1:  # FSDP2: this rank's rows of every tensor below (engine._shard)
            self.scratch = None
            self._shard(names, net_dtype)
            return
        # A network narrower than the grid (bf16) on scheme li, one point a time: no grid-dtype
        # buffer; each point is formed in ``dtype`` a block of rows at a time in ``scratch``
        # (NARROW_BLOCK elements, in cache) and rounded once into the network's weights.
        block = NARROW_BLOCK if self.lean is None else self.lean[0].limit or self.layout.size
        self.scratch = (
            torch.empty(self.layout.block_size(block), device=device, dtype=dtype)
            if self._narrow(net_dtype)
            else None
        )
        self.low = self.low and self.scratch is None
        # (P,): what the network reads; ``flat``: θ(α, β) in ``dtype`` (the same buffer unless
        # a bf16 copy is cast from it at each point)
        self.weights = torch.empty(self.layout.size, device=device, dtype=net_dtype)
        self.flat = torch.empty_like(self.weights, dtype=dtype) if self.low else self.weights
        bind_flat(self.net, self.layout, self.weights)

    def _narrow(self, net_dtype: torch.dtype) -> bool:
        """Whether the network keeps no grid-dtype copy of its moving tensors: it runs in a
        narrower float than the grid, one point per forward on scheme li, θ* not offloaded
        into a host copy, no complex tensor moves, and θ* is narrower than the grid too (a bf16
        model: the copy would be 2× its bytes) or the directions are redrawn (lean). An fp32
        model under bf16 keeps its float32 buffer and steps along rows: forming each point
        from θ*, δ and η reads three vectors (measured on the write-up's VGG, 2-core EPYC:
        61 against 51 ms a point), for 1× the model's bytes."""
        o = self.options
        narrow_theta = all(t.dtype.itemsize < o.dtype.itemsize for t in self.theta)
        return (
            net_dtype.itemsize < o.dtype.itemsize
            and (narrow_theta or self.lean is not None)
            and self.scheme == "li"
            and o.points_per_batch == 1
            and self.theta_flat is None
            and not any(e.complex for e in self.layout.entries)
        )

    def _shard(self, names: list[str], net_dtype: torch.dtype) -> None:
        """The network wrapped with FSDP2 and θ*, δ, η and the flat buffers cut to this rank's
        rows of dimension 0 (:mod:`lossland.engine._shard`)."""
        assert self.dx is not None  # (memory="lean" is refused with shard)
        directions = [self.dx] if self.dy is None else [self.dx, self.dy]
        mesh = shard_mesh(self.options.shard, self.options.device)
        sharded = shard_network(
            self.net,
            names,
            theta=self.theta,
            layout=self.layout,
            directions=directions,
            mesh=mesh,
            device=self.options.device,
            dtype=self.options.dtype,
            net_dtype=net_dtype,
        )
        # the group shares each point's batches, unless each point stops on its own error
        self.share = Share(mesh) if self.options.sem_target is None else None
        self.net, self.layout, self.theta = sharded.net, sharded.layout, sharded.theta
        self.dx, self.dy = sharded.dx, sharded.dy
        self.flat, self.weights = sharded.flat, sharded.weights

    def _check(self, output: Any, stats: Tensor, batch: Batch) -> None:
        """Errors at the door, on the run's first batch: the model's own loss (Hugging Face
        models return one when the batch holds labels) must agree with the default one; a
        replayed prefix must give the same statistics (else the stack runs in full)."""
        self.checked = True
        if self.evaluator.loss is None:
            ours = float(stats[SUM["loss_sum"]] / stats[SUM["weight"]])
            _compare_own_loss(output, ours, batch)
        if self.suffix is not None:
            run = self.evaluator.run
            self.suffix.check(lambda: self.evaluator.stats(run(self.module, batch), batch), stats)

    def _failed(self, exc: Exception, where: str) -> LosslandError:
        """The error for what the user's code raised ``where`` (a grid point): the data's,
        placed at the point; the compiler's, naming its folders; the model's or loss's, with
        the fix."""
        if isinstance(exc, DataReadError):
            return exc.at(where)
        if isinstance(exc, LosslandError):
            return exc
        compiled = compile_failure(exc) if self.options.compile else None
        if compiled is not None:  # the compiler's, not the model's
            return LosslandError(compiled)
        # Nothing evaluated yet: most likely the batches do not fit the model.
        fix = (
            "fix the model or the loss"
            if self.checked
            else f"check that the batches fit the model, or pass {arg('evaluator')} with a "
            "forward(model, batch) and a loss(output, batch)"
        )
        return user_failure(exc, who="the model or loss", where=where, fix=fix)

    # --- K points per forward: torch.func.functional_call under vmap ---

    def _rows_batched(
        self,
        xs: np.ndarray,
        ys: np.ndarray,
        pending: np.ndarray,
        rows: Sequence[int] | None,
        tick: Callable[[int], None] | None,
    ) -> Generator[Block, None, None]:
        k = self.options.points_per_batch
        assert self.dx is not None
        # (K, P): the K points of one forward; (P,): θ(0, y) of the row
        work = torch.empty(k, self.layout.size, device=self.flat.device, dtype=self.flat.dtype)
        row_anchor = torch.empty_like(self.flat)
        call = _Call(self.net, self.evaluator)

        def forward_one(params: dict[str, Tensor], batch: Batch) -> Any:
            return torch.func.functional_call(call, params, (batch,))

        batched = torch.vmap(forward_one, in_dims=(0, None))
        if self.options.compile:
            batched = compiled(batched)
        with torch.inference_mode(), precision_mode(self.options.device, self.options.precision):
            for i in rows if rows is not None else range(len(ys)):
                cols = np.flatnonzero(pending[i])
                if len(cols) == 0:
                    continue
                self._anchor_(0.0, float(ys[i]), out=row_anchor)
                out = self._point_sums(len(cols))  # (len(cols), len(SUMS))
                for start in range(0, len(cols), k):
                    chunk = cols[start : start + k]
                    m = len(chunk)
                    if self.scheme == "li":
                        alphas = torch.as_tensor(xs[chunk], dtype=work.dtype, device=work.device)
                        # (m, P) = θ(0, y) + α (m,) ⊗ δ (P,)
                        work[:m].copy_(row_anchor.expand(m, -1)).addr_(alphas, self.dx)
                    else:
                        for r, j in enumerate(chunk):
                            self._point_(xs[j], ys[i])
                            work[r].copy_(self.flat)
                    views = self.layout.views(work[:m].to(self.weights.dtype))  # (m, ...)
                    params = {"net." + name: view for name, view in views.items()}
                    self.state.mark_moving()
                    try:
                        out[start : start + m] = self._stats_batched(batched, params)
                    except Exception as exc:
                        where = f"near (x, y) = ({xs[chunk[0]]:g}, {ys[i]:g})"
                        error = self._failed(exc, where)
                        raise error from error.__cause__
                    self.state.settle()  # the next chunk is copied from the row's anchor
                    if tick is not None:
                        tick(m)
                yield Block(i, cols, out.cpu().numpy())

    def _stats_batched(self, batched: Callable[..., Any], params: dict[str, Tensor]) -> Tensor:
        total = None
        k = next(iter(params.values())).shape[0]
        for batch in self.data.batches():
            outputs = batched(params, batch)  # every tensor of the output gains a leading K
            per_point = [tree_map(lambda t, m=m: t[m], outputs) for m in range(k)]
            # (K, len(SUMS)): each point's sums for this batch
            s = torch.stack([self.evaluator.stats(out, batch) for out in per_point])
            if not self.checked:
                self._check(per_point[0], s[0], batch)
            total = accumulate(total, s)
        assert total is not None
        return total


def anchor_dtype(theta: Tensor, grid: torch.dtype) -> torch.dtype:
    """θ*'s dtype on the device: its own where the grid's dtype holds it exactly (a bf16 or
    fp16 model on a float32 grid: ``torch.add`` promotes it, so θ(α, β) is the same and the
    model's own tensors are read: re-anchoring needs no copy of θ*), else the grid's."""
    narrow = theta.dtype in (torch.bfloat16, torch.float16)
    return theta.dtype if narrow and grid in (torch.float32, torch.float64) else grid


def direction_dtype(direction: Mapping[str, Tensor], grid: torch.dtype) -> torch.dtype:
    """A direction's dtype on the device: bf16 or fp16 when all of it is (a bf16 model's random
    directions are drawn in bf16), on a float32/64 grid: every update adds it into the grid's
    dtype (``flat.add_``, ``li_point_``), which holds its values exactly, so θ(α, β) is the same
    and the direction costs half; else the grid's."""
    dtypes = {t.dtype for t in direction.values()}
    narrow = len(dtypes) == 1 and next(iter(dtypes)) in (torch.bfloat16, torch.float16)
    return dtypes.pop() if narrow and grid in (torch.float32, torch.float64) else grid


def _replayable(options: EngineOptions, data: EvalData) -> bool:
    """Can a stack's prefix be replayed (engine._suffix)? Data cached on the device, one point
    per forward, no compiled module, no statistics recomputed per point."""
    return (
        getattr(data, "mode", None) == "cached"  # (tests build engines on bare tensors)
        and options.points_per_batch == 1
        and not options.compile
        and options.bn != "recompute"
        and options.shard == 1  # (FSDP would gather the replayed blocks all the same)
    )


def moving_dtypes(
    tensors: Mapping[str, Tensor], names: Sequence[str], dtype: torch.dtype
) -> dict[str, torch.dtype]:
    """The dtype each moving tensor takes on the grid (:func:`lossland.core.moving_dtype`);
    refuses a direction along a tensor that never moves (integers, bools)."""
    wants = {n: moving_dtype(n, tensors[n].dtype, dtype) for n in names}
    still = [n for n, want in wants.items() if want is None]
    if still:
        kind = str(tensors[still[0]].dtype).removeprefix("torch.")
        raise LosslandError(
            f"the directions move {still[0]}, a {kind} tensor of the model; integer and bool "
            "tensors never move: give directions over its floating-point tensors only"
        )
    return {n: want for n, want in wants.items() if want is not None}


def host_theta(
    tensors: Sequence[Tensor], layout: FlatLayout, device: torch.device, dtype: torch.dtype
) -> tuple[list[Tensor], Tensor | None]:
    """θ* on the host for an offloaded engine: the tensors themselves where they are host
    tensors of ``dtype`` and the engine runs on the CPU (no copy); otherwise one flat host copy
    in the engine's layout, pinned for CUDA (each row then re-anchors with one transfer)."""
    cpu = torch.device("cpu")
    views = list(layout.views(torch.empty(layout.size, dtype=dtype, device="meta")).values())
    if device.type == "cpu" and all(
        t.device == cpu and t.dtype == v.dtype for t, v in zip(tensors, views, strict=True)
    ):
        return list(tensors), None
    flat = torch.empty(layout.size, dtype=dtype, pin_memory=device.type == "cuda")
    views = list(layout.views(flat).values())
    for view, t in zip(views, tensors, strict=True):
        view.copy_(t)
    return views, flat


class _Call(nn.Module):
    """``evaluator.run(net, batch)`` as a module, so functional_call can swap net's tensors."""

    def __init__(self, net: nn.Module, evaluator: Evaluator) -> None:
        super().__init__()
        self.net = net
        self.evaluator = evaluator

    def forward(self, batch: Batch) -> Any:
        return self.evaluator.run(self.net, batch)


def _compare_own_loss(output: Any, ours: float, batch: Batch) -> None:
    """Hugging Face models return their own loss when the batch holds labels: where it is not
    the default cross-entropy (a causal LM shifts its labels), say which evaluator fits."""
    own = getattr(output, "loss", None)
    if own is None and isinstance(output, Mapping):
        own = output.get("loss")
    if not isinstance(own, Tensor) or own.numel() != 1:
        return
    theirs = float(own)
    if math.isfinite(theirs) and abs(theirs - ours) > 1e-3 * max(1.0, abs(theirs)):
        raise LosslandError(
            f"the model's own loss on the first batch is {theirs:.6g} but lossland's default "
            f"cross-entropy gives {ours:.6g}: pass {arg('evaluator')} "
            f"{fitting_preset(output, batch)}, or another evaluator or loss that matches the "
            "model"
        )
