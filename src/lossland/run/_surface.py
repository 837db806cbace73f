"""``surface(model, data, ...)``: validate → settings → open or resume → drive → measures → save."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from lossland.analysis import measure_points, with_measures
from lossland.core import (
    ENGINE_COPIES,
    Axis,
    DType,
    MemoryProbe,
    Params,
    Regenerator,
    Scheme,
    axis_text,
    check_grid_size,
    check_needs,
    coordinates,
    kind,
    options_from,
    reduce_sums,
    resolve_device,
    rule_limit,
    select_params,
    surface_needs,
    tensor_fingerprint,
    torch_dtype,
)
from lossland.directions import (
    CURRENT,
    Directions,
    Ignore,
    Norm,
    check_usable,
    grid_specs,
    lean_directions,
    random_by_rule,
)
from lossland.engine import (
    BNMode,
    DataMode,
    Engine,
    EngineOptions,
    EvalData,
    Evaluator,
    LossFn,
    Precision,
    check_compile_cache,
    check_dtypes,
    check_precision,
    eval_data,
    known_samples,
    layout_channels_last,
    network_dtype,
    one_point_only,
    resolve_evaluator,
    use_channels_last,
)
from lossland.errors import LosslandError, arg
from lossland.io import MEMORY_ATTR, SETTINGS_ATTR, Surface, check_contents, check_writable
from lossland.run._barrier import refine_barrier
from lossland.run._driver import drive
from lossland.run._group import Group, is_main_process, join, several_processes
from lossland.run._layers import block_params, blocks, check_per_layer, stack_attrs
from lossland.run._lock import run_lock
from lossland.run._options import MemoryFormat, MemoryMode, SurfaceOptions
from lossland.run._paired import paired_barriers
from lossland.run._refine import refined
from lossland.run._seeds import check_seed_range, saved, seeded, stacked
from lossland.run._settings import RESUME_KEYS, architecture, run_attributes, start_or_resume

Coordinates = str | Axis | Sequence[float] | np.ndarray
# Called on rank 0 with the directions the run uses, once it has accepted its file: returns
# attributes to record in the surface file.
OnAccept = Callable[[Directions], Mapping[str, Any]]


def surface(
    model: nn.Module,
    data: Any,
    *,
    x: Coordinates | None = None,
    y: Coordinates | None = None,
    directions: Directions | None = None,
    evaluator: Evaluator | None = None,
    loss: LossFn | str | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    split: str = "custom",
    attrs: Mapping[str, Any] | None = None,
    trajectories: Mapping[str, np.ndarray] | None = None,
    seeds: int | None = None,
    options: SurfaceOptions | None = None,
    norm: Norm | None = None,
    ignore: Ignore | None = None,
    orthogonalize: bool | None = None,
    params: Params | None = None,
    params_per_layer: str | Sequence[str] | None = None,
    seed: int | None = None,
    scheme: Scheme | None = None,
    bn: BNMode | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    dtype: DType | None = None,
    precision: Precision | None = None,
    points_per_batch: int | None = None,
    compile: bool | None = None,
    offload: bool | None = None,
    shard: bool | None = None,
    shard_ranks: int | None = None,
    memory: MemoryMode | None = None,
    memory_format: MemoryFormat | None = None,
    samples: int | None = None,
    data_mode: DataMode | None = None,
    cache_fraction: float | None = None,
    sem_target: float | None = None,
    min_batches: int | None = None,
    refine: float | None = None,
    checkpoint_every: float | None = None,
    progress: bool | None = None,
    allow_large: bool | None = None,
    on_accept: OnAccept | None = None,
) -> Surface:
    """Loss and accuracy of ``model`` on ``data`` over a 1-D line or a 2-D plane of weight space.

    θ(α, β) = θ* + α·δ + β·η for ``scheme="li"`` (Li et al.), with δ, η random Gaussian
    directions normalized filter by filter (``norm="filter"``) unless ``directions`` is given.
    ``model`` is never modified: the engine evaluates a private copy. With ``out``, progress is
    checkpointed atomically into that HDF5 file and a rerun resumes it. The run's cost (points ×
    samples, memory, disk) is estimated before any data is read, lock taken or file written:
    what cannot fit is refused, and work above lossland's limits needs ``allow_large=True``.
    ``attrs["memory"]`` holds the run's peak host and device memory, as bytes and as multiples
    of the parameter bytes (:class:`lossland.core.MemoryProbe`; on Linux it resets the
    process's peak-RSS counter when the run starts).

    Args:
        model: the trained network; its weights are θ*.
        data: the fixed evaluation set: an ``(inputs, targets)`` pair, a ``Dataset``, a
            ``DataLoader``, a list of batches or of samples (the table of
            :mod:`lossland.engine._inputs` says what each kind becomes).
        x, y: ``min:max:num`` specs or coordinates; ``None`` (or ``auto[:NUM]``) lets the kind
            of directions choose (no ``y``: a 1-D line for random directions).
        directions: the plane's directions (default: random, drawn from ``seed``).
        evaluator: forward, loss and accuracy of a batch (default: cross-entropy, token-weighted
            for per-token logits; see :class:`lossland.engine.Evaluator` and
            :mod:`lossland.presets`); or ``loss``, the classic ``loss(logits, targets)``.
        out: the HDF5 file to write and resume; ``overwrite`` replaces one that cannot be
            resumed.
        split, attrs, trajectories: recorded in the file (paths drawn on the figures).
        seeds: N direction seeds (``seed``, ``seed + 1``, …) into one file with a leading seed
            axis (``surface.stack``), with how much the picture depends on them
            (``attrs["robustness"]``).
        options: a :class:`SurfaceOptions`; each other keyword (``norm``, ``batch_size``,
            ``device``, ``precision``, ``offload``, ``sem_target``, ``refine``, ...) is one of
            its fields, ``None`` meaning ``options``' value or the field's default.
            ``params`` chooses the tensors that move (globs, ``"trainable"`` or a function:
            :func:`lossland.core.select_params`): random directions are drawn on those only,
            given ones are cut down to them, the others are shared with ``model`` (not copied)
            and the file records the subset (``attrs["params"]``). ``params_per_layer``
            (``"auto"``: the model's stack of blocks, or a module name or glob per block) runs
            one surface per block, random directions on that block alone, stacked along a
            layers axis (``surface.stack.layers``), resumable like ``seeds``.
        on_accept: ``on_accept(directions)`` runs on rank 0 once every check has passed, the
            run holds the lock of ``out`` and has accepted the file (new, replaced or resumed),
            before any point is computed, with the directions the run uses (with ``seeds``: the
            first seed's): the place to write files that belong to the run (the CLI saves the
            directions there, so a refused run writes nothing). It returns attributes to record
            in the surface file.

    Returns:
        The :class:`lossland.io.Surface`, with its measures (sharpness, basins) in ``attrs``
        when complete, saved to ``out`` when given.

    Raises:
        LosslandError: a bad argument, a run that cannot fit, or a file that cannot be written
            or resumed; one line naming the argument and the fix, before any point.
        Interrupted: a signal stopped the run; the points done are saved in ``out``.

    Example:
        >>> s = lossland.surface(model, (inputs, targets), x="-1:1:21", y="-1:1:21",
        ...                      out="surface.h5", batch_size=128)
        >>> print(lossland.describe(s))
    """
    opts = options_from(options or SurfaceOptions(), locals())  # every field is a keyword
    if opts.params_per_layer or (seeds is not None and seeds != 1):  # a stack of surfaces
        stack = _per_layer if opts.params_per_layer else _seeded  # (the CLI's [] asks nothing)
        return stack(
            model,
            data,
            seeds,
            opts,
            x=x,
            y=y,
            directions=directions,
            evaluator=evaluator,
            loss=loss,
            out=out,
            overwrite=overwrite,
            split=split,
            attrs=attrs,
            trajectories=trajectories,
            on_accept=on_accept,
        )
    probe = MemoryProbe(model, offload=opts.offload)  # peaks of this run: attrs["memory"]
    rule = _resumed_rule(out, overwrite)
    run = _validate(
        model, x, y, directions, evaluator, loss, opts, split, attrs, trajectories, rule=rule
    )
    group = join(resolve_device(opts.device))  # a group of one unless under torchrun
    probe.watch(group.device)
    engine_options = run.engine_options(
        model, group.device, simple=_is_pair(data), ranks=group.world
    )
    evaluation = run.checked_data(model, data, engine_options, out)
    # ``shard`` is compared across the ranks, not with the file: it does not change a value
    settings = {**run.settings(model, evaluation, split, attrs), "shard": engine_options.shard}
    with contextlib.ExitStack() as held:  # the run lock of ``out``, until the run ends

        def start() -> Surface:  # rank 0: lock, then open or resume the file, then on_accept
            if out is not None:
                held.enter_context(run_lock(check_writable(out)))
            accepted = start_or_resume(out, run.xs, run.ys, split, settings, overwrite)
            return accepted.with_attrs(**(on_accept(run.directions) if on_accept else {}))

        # the other ranks learn the done points, or rank 0's refusal
        empty = Surface.empty(run.xs, run.ys, split=split)
        result = group.agree(settings, (*RESUME_KEYS, "shard"), start, empty)
        if trajectories:  # (T, 2) projected training paths, stored with the surface
            result = replace(result, trajectories=dict(trajectories))
        result = result.with_attrs(**run.attributes(attrs, settings, engine_options, evaluation))
        pending = ~result.done.reshape(len(run.ys) if run.ys is not None else 1, len(run.xs))
        before = int(result.evaluated.sum())
        if not pending.any():
            return result.with_attrs(points_computed=0)  # the file was complete: nothing to do
        # the engine (working copy, directions) is released before the fp32 check builds one
        engine = run.engine(model, evaluation, engine_options)
        run = _released(run, engine_options, drawn=directions is None)
        result = _compute(group, engine, run, result, pending, out, probe)
        del engine
        result = result.with_attrs(points_computed=int(result.evaluated.sum()) - before)
        return _finish(model, data, run, group, result, out, probe)


def _released(run: _Run, engine_options: EngineOptions, *, drawn: bool) -> _Run:
    """``run`` without the whole directions it drew when a sharded engine keeps only its rows
    of them (a bf16 run's fp32 check on rank 0 still reads them)."""
    if engine_options.shard > 1 and drawn and run.options.precision != "bf16":
        return replace(run, directions=replace(run.directions, x={}, y=None))
    return run


def _compute(
    group: Group,
    engine: Engine,
    run: _Run,
    result: Surface,
    pending: np.ndarray,
    out: str | Path | None,
    probe: MemoryProbe,
) -> Surface:
    """The pending points, all of them or (``refine``) only where the surface needs them;
    then, on a line between checkpoints, its barrier located past the grid, and on a plane
    its basins' barriers' paired standard errors (rank 0)."""
    opts = run.options

    def evaluate(current: Surface, mask: np.ndarray, label: str = "surface") -> Surface:
        with probe.points():
            return drive(
                group,
                engine,
                current,
                run.xs,
                run.ys,
                mask,
                out=out,
                progress=opts.progress,
                checkpoint_every=opts.checkpoint_every,
                label=label,
            )

    result = (
        evaluate(result, pending)
        if opts.refine is None
        else refined(result, evaluate, opts.refine, measured=measure_points(result))
    )
    between = kind(run.directions.kind).between_models
    # rank 0, with the ranks that hold the rest of its shards (they evaluate together)
    main = group.rank < engine.options.shard
    if between and run.ys is None and main and result.complete:
        found = refine_barrier(engine, result)
        result = result.with_attrs(barrier_refined=found) if found else result
    if run.ys is not None and main and result.complete:
        result = paired_barriers(engine, result)  # the basins' significance, paired
    return result


def _finish(
    model: nn.Module,
    data: Any,
    run: _Run,
    group: Group,
    result: Surface,
    out: str | Path | None,
    probe: MemoryProbe,
) -> Surface:
    """A run's record: bf16 checked in fp32 at points spread over the grid (rank 0), its peak
    memory, its measures (sharpness, basins: complete surfaces only) in the attributes, all
    saved to ``out``."""
    if run.options.precision == "bf16" and group.main and result.complete:
        skipped = _no_fp32_check(model, run)
        check = {"skipped": skipped} if skipped else _check_in_fp32(model, data, run, result)
        result = result.with_attrs(precision_check=check)
    result = with_measures(result.with_attrs(**{MEMORY_ATTR: probe.report()}))
    if out is not None and group.main:
        result.save(out)
    return result


def _seeded(
    model: nn.Module,
    data: Any,
    seeds: int | None,
    opts: SurfaceOptions,
    *,
    out: str | Path | None,
    overwrite: bool,
    directions: Directions | None,
    **keywords: Any,
) -> Surface:
    """``surface(..., seeds=N)``: one run per direction seed, stacked into ``out``."""
    assert seeds is not None
    if opts.memory == "lean":
        raise LosslandError(
            f"{arg('memory')} lean runs one seed's plane: drop {arg('seeds')} or use "
            f"{arg('memory')} normal"
        )
    check_seed_range(seeds, opts.seed)  # the whole range, before the first seed
    if directions is not None:
        raise LosslandError(
            f"{arg('seeds')} draws random directions for every seed: drop {arg('directions')}"
        )
    on_accept = keywords.pop("on_accept")
    _check_stack_cost(model, data, opts, keywords, entries=seeds, out=out)

    def one_seed(seed: int, part: Path | None) -> Surface:
        first = seed == opts.seed
        return surface(
            model,
            data,
            out=part,
            options=replace(opts, seed=seed),
            on_accept=on_accept if first else None,
            **keywords,
        )

    chosen = [opts.seed + k for k in range(seeds)]
    return _locked(out, lambda target: seeded(model, chosen, opts, target, overwrite, one_seed))


def _per_layer(
    model: nn.Module,
    data: Any,
    seeds: int | None,
    opts: SurfaceOptions,
    *,
    out: str | Path | None,
    overwrite: bool,
    directions: Directions | None,
    **keywords: Any,
) -> Surface:
    """``surface(..., params_per_layer=...)``: one run per block, stacked into ``out``."""
    spec = opts.params_per_layer
    assert spec is not None
    check_per_layer(spec, seeds, directions)
    found = blocks(model, spec, opts.params, ignore=opts.ignore)  # refused before any work
    on_accept = keywords.pop("on_accept")
    largest = max(found, key=lambda block: len(block[1]))[1]  # the cost: the largest block
    widest = replace(opts, params=block_params(largest), params_per_layer=None)
    _check_stack_cost(model, data, widest, keywords, entries=len(found), out=out)

    def one_block(k: int, part: Path | None) -> Surface:
        block = replace(opts, params=block_params(found[k][1]), params_per_layer=None)
        accept = on_accept if k == 0 else None
        return surface(model, data, out=part, options=block, on_accept=accept, **keywords)

    labels = [label for label, _ in found]

    def stack(target: Path | None) -> Surface:
        result = stacked(target, overwrite, one_block, layers=labels)
        return saved(result.with_attrs(**stack_attrs(spec)), target)

    return _locked(out, stack)


def _check_stack_cost(
    model: nn.Module,
    data: Any,
    opts: SurfaceOptions,
    keywords: dict[str, Any],
    *,
    entries: int,
    out: str | Path | None,
) -> None:
    """The whole stack's cost (``entries`` surfaces of random directions on the grid the
    keywords give, each costing as ``opts``), before the lock or any entry's file."""
    xs, ys = _grid(Directions(x={}), keywords["x"], keywords["y"], keywords["trajectories"])
    ny = None if ys is None else len(ys)
    check_grid_size(len(xs), ny)
    samples = known_samples(data, opts.samples)
    check_cost(model, opts, nx=len(xs), ny=ny, samples=samples, seeds=entries, out=out)


def _locked(out: str | Path | None, stack: Callable[[Path | None], Surface]) -> Surface:
    """``stack(target)`` under the run lock of ``out``'s checked path; rank 0 alone writes the
    stack, so only it takes the lock."""
    target = None if out is None else check_writable(out)
    lock = target is not None and is_main_process()
    with run_lock(target) if lock else contextlib.nullcontext():  # type: ignore[arg-type]
        return stack(target)


@dataclass(frozen=True)
class _Run:
    """A validated surface request: the grid, the directions, the evaluator and the options."""

    xs: np.ndarray
    ys: np.ndarray | None
    directions: Directions
    evaluator: Evaluator
    options: SurfaceOptions
    # memory="lean": what redraws each direction at every point (the directions hold shapes)
    regenerate: list[Regenerator] | None = None

    def data(self, data: Any, engine: EngineOptions) -> EvalData:
        o = self.options
        return eval_data(
            data,
            batch_size=o.batch_size,
            device=engine.device,
            dtype=network_dtype(engine.precision, engine.dtype),
            channels_last=engine.channels_last,  # as laid out: layout_channels_last
            samples=o.samples,
            seed=o.seed,
            mode=o.data_mode,
            cache_fraction=o.cache_fraction,
            seeded_order=o.sem_target is not None,
        )

    def checked_data(
        self, model: nn.Module, data: Any, engine: EngineOptions, out: str | Path | None
    ) -> EvalData:
        """The evaluation set, the run's cost checked before it is read (with the samples known
        then) and, where only reading tells how many samples the data holds, once more after."""
        grid: dict[str, Any] = {"nx": len(self.xs), "ny": None if self.ys is None else len(self.ys)}
        known = known_samples(data, self.options.samples)
        k = engine.points_per_batch
        check_cost(model, self.options, samples=known, out=out, points_per_batch=k, **grid)
        evaluation = self.data(data, engine)
        if known is None:
            samples = evaluation.samples
            check_cost(model, self.options, samples=samples, out=out, points_per_batch=k, **grid)
        return evaluation

    def settings(
        self,
        model: nn.Module,
        data: EvalData,
        split: str,
        attrs: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """What a rerun must match to resume the file (see lossland.run._settings)."""
        d, o = self.directions, self.options
        return {
            "x": axis_text(self.xs),
            "y": None if self.ys is None else axis_text(self.ys),
            "scheme": o.scheme,
            "bn": o.bn,
            "dtype": o.dtype,
            "directions": d.fingerprint(),
            "model": tensor_fingerprint(model.state_dict()),
            "data": data.fingerprint,
            "loss": self.evaluator.name,
            "split": split,
            "precision": o.precision,
            "sem_target": o.sem_target,
            "refine": o.refine,
            "min_batches": o.min_batches if o.sem_target is not None else None,
            "architecture": architecture(model, attrs),
            # Not compared: they only name the cause when a fingerprint above differs.
            "samples": data.samples,
            "seed": o.seed,
            "norm": d.norm,
            "ignore": d.ignore,
            "orthogonalize": d.orthogonalized,
            "directions_kind": d.kind,
            "params": None if d.params is None else list(d.params),
            # not compared either: lean and normal give the same surface (to float rounding)
            "memory": o.memory,
        }

    def engine_options(
        self, model: nn.Module, device: torch.device, *, simple: bool, ranks: int = 1
    ) -> EngineOptions:
        """``simple``: a tensor pair through the default loss (vmap over points is safe);
        ``ranks``: the processes of the job (``shard``: all of them share one network)."""
        o = self.options
        simple = simple and self.evaluator.loss is None and self.evaluator.forward is None
        # (an explicit K > 1 was refused)
        one = one_point_only(o.bn, o.sem_target) is not None or o.shard
        k = 1 if one else _points_per_batch(o, device, model, len(self.xs), simple)
        laid_out = _channels_last(model, device, o) and not o.shard  # FSDP: contiguous
        return EngineOptions(
            device=device,
            dtype=torch_dtype(o.dtype),
            bn=o.bn,
            channels_last=layout_channels_last(laid_out, k),
            points_per_batch=k,
            compile=o.compile,
            precision=o.precision,
            flush_seconds=o.checkpoint_every,
            sem_target=o.sem_target,
            min_batches=o.min_batches,
            offload=o.offload,
            shard=_shard_ranks(o, ranks),
        )

    def attributes(
        self,
        attrs: Mapping[str, Any] | None,
        settings: Mapping[str, Any],
        engine: EngineOptions,
        data: EvalData,
    ) -> dict[str, Any]:
        """The run's attributes in the surface file (versions, settings, how it ran)."""
        o = self.options
        return {
            **dict(attrs or {}),
            **run_attributes(
                self.directions,
                scheme=o.scheme,
                bn=o.bn,
                dtype=o.dtype,
                samples=data.samples,
                seed=o.seed,
            ),
            "device": str(engine.device),
            "precision": o.precision,
            "points_per_batch": engine.points_per_batch,
            "memory_format": "channels_last" if engine.channels_last else "contiguous",
            "loss": self.evaluator.name,
            "data_mode": data.mode,
            "memory_mode": o.memory,
            "acc_unit": "percent",
            SETTINGS_ATTR: dict(settings),
        }

    def engine(self, model: nn.Module, data: EvalData, options: EngineOptions) -> Engine:
        d = self.directions
        return Engine(
            model,
            [d.x] if self.ys is None else [d.x, d.y],  # type: ignore[list-item]
            data,
            evaluator=self.evaluator,
            scheme=self.options.scheme,
            origin=d.origin,
            regenerate=self.regenerate,
            options=options,
        )


def check_cost(
    model: nn.Module,
    options: SurfaceOptions,
    *,
    nx: int,
    ny: int | None,
    samples: int | None,
    seeds: int = 1,
    out: str | Path | None = None,
    points_per_batch: int | None = None,
) -> None:
    """Refuse a surface (or a stack of ``seeds``) of ``nx`` × ``ny`` points over ``samples``
    samples (None: not known yet) that cannot fit this machine's memory or the disk of ``out``,
    or whose work is above lossland's limits without ``allow_large`` (see
    :func:`lossland.core.check_needs`)."""
    device = resolve_device(options.device)
    lean = options.memory == "lean"  # the working copy alone, in the network's dtype
    grid = torch_dtype(options.dtype)
    itemsize = (network_dtype(options.precision, grid) if lean else grid).itemsize
    needs = surface_needs(
        nx=nx,
        ny=ny,
        samples=samples,
        param_bytes=_moving_elements(model, options) * itemsize,
        seeds=seeds,
        refine=options.refine is not None,
        points_per_batch=points_per_batch or options.points_per_batch or 1,
        place=str(device) if device.type == "cuda" else "host",
        out=None if out is None else Path(out),
        engine_copies=1 if lean else ENGINE_COPIES,
    )
    check_needs(needs, allow_large=options.allow_large)


CHECK_BLOCKS = 5  # per axis: one fp32 check point in each block of the grid (25 on a plane)
CHECK_QUANTILE = 0.9  # the stored maximum bounds this quantile of the grid's relative error


def _check_points(result: Surface, seed: int) -> list[int]:
    """Flat indices of the bf16 check: the minimum, the centre, and one seeded random point in
    each of CHECK_BLOCKS (× CHECK_BLOCKS) blocks, so the sample spreads over the whole grid."""
    loss = np.where(result.done, result.loss, np.nan).reshape(-1)
    picks = [int(np.nanargmin(loss))] if np.isfinite(loss).any() else []
    picks += [int(i) for i in np.flatnonzero(_centre(result).reshape(-1))]
    rng = np.random.default_rng(seed)
    axes = [np.array_split(np.arange(n), min(CHECK_BLOCKS, n)) for n in result.shape]
    for block in itertools.product(*axes):
        index = tuple(int(rng.choice(part)) for part in block)
        picks.append(int(np.ravel_multi_index(index, result.shape)))
    return list(dict.fromkeys(picks))


def _no_fp32_check(model: nn.Module, run: _Run) -> str | None:
    """Why a bf16 run is not checked in fp32 (None: it is): the check evaluates a float32 copy
    of the network (2× a bf16 model's bytes beside the directions, the largest part of a big
    bf16 model's run). A model whose floating-point parameters are bf16 already is evaluated in
    its own precision (the fp32 numbers: ``precision="fp32"``), and lean memory would not hold
    the copy."""
    if run.regenerate is not None:
        return "memory lean: a float32 copy of the network would be 2× a bf16 model's bytes"
    floats = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if floats == {torch.bfloat16}:
        return "the model is bf16 already: precision fp32 evaluates it in float32"
    return None


def _check_in_fp32(model: nn.Module, data: Any, run: _Run, result: Surface) -> dict[str, Any]:
    """Points spread over a bf16 run's grid re-evaluated in fp32: how far bf16 is, in
    standard errors and relatively. A random point in each block makes the largest relative
    error found an upper bound on the grid's CHECK_QUANTILE quantile of it with confidence
    1 − CHECK_QUANTILE^n (n points; 0.93 for 25)."""
    loss = np.where(result.done, result.loss, np.nan).reshape(-1)
    chosen = _check_points(result, run.options.seed)
    mask = np.zeros(loss.size, dtype=bool)
    mask[chosen] = True
    # (rank 0 alone: unsharded)
    unsharded = replace(run.options, precision="fp32", points_per_batch=1, shard=False)
    exact = replace(run, options=unsharded)
    options = exact.engine_options(model, torch.device(result.attrs["device"]), simple=False)
    engine = exact.engine(model, exact.data(data, options), options)
    ys = result.y if result.y is not None else np.zeros(1)
    fp32 = np.full(loss.size, np.nan)
    sem = np.full(loss.size, np.nan)
    for block in engine.rows(result.x, ys, mask.reshape(len(ys), len(result.x))):
        values = reduce_sums(block.stats)
        fp32[block.row * len(result.x) + block.cols] = values["loss"]
        sem[block.row * len(result.x) + block.cols] = values["loss_sem"]
    delta = np.abs(loss[chosen] - fp32[chosen])
    relative = _ratio(delta, np.abs(fp32[chosen]))
    return {
        "points": [
            [float(result.x[i % len(result.x)]), float(ys[i // len(result.x)])] for i in chosen
        ],
        "bf16": loss[chosen].tolist(),
        "fp32": fp32[chosen].tolist(),
        "fp32_sem": sem[chosen].tolist(),
        "max_sem_ratio": float(np.max(_ratio(delta, sem[chosen]))),
        "median_relative": float(np.median(relative)),
        "max_relative": float(np.max(relative)),
        "quantile": CHECK_QUANTILE,
        "confidence": 1 - CHECK_QUANTILE ** len(chosen),
    }


def _ratio(delta: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """delta / scale, where a zero scale gives 0 for no difference (a constant loss: no
    standard error) and inf for one, without a numpy warning."""
    out = np.where(delta == 0, 0.0, np.inf)
    np.divide(delta, scale, out=out, where=scale > 0)
    return out


def _centre(result: Surface) -> np.ndarray:
    mask = np.zeros(result.shape, dtype=bool)
    jx = np.flatnonzero(result.x == 0.0)
    iy = np.flatnonzero(result.y == 0.0) if result.y is not None else np.zeros(1, dtype=int)
    if len(jx) and len(iy):
        mask[(iy[0], jx[0]) if result.y is not None else jx[0]] = True
    return mask


def _validate(
    model: nn.Module,
    x: Coordinates | None,
    y: Coordinates | None,
    directions: Directions | None,
    evaluator: Evaluator | None,
    loss: LossFn | str | None,
    options: SurfaceOptions,
    split: str,
    attrs: Mapping[str, Any] | None,
    trajectories: Mapping[str, np.ndarray] | None,
    *,
    rule: int | None = CURRENT,
) -> _Run:
    """Check the request before any work; draw random directions when none are given (by the
    draw ``rule`` of the file being resumed: :func:`_resumed_rule`)."""
    resolved = resolve_evaluator(evaluator, loss)
    ndim: Literal[1, 2] = 1 if y is None else 2
    regenerate = None
    if options.memory == "lean":
        if directions is not None:
            raise LosslandError(
                f"{arg('memory')} lean redraws random directions from their recipe at every "
                f"point: drop {arg('directions')} or use {arg('memory')} normal"
            )
        directions, regenerate = lean_directions(
            model,
            seed=options.seed,
            norm=options.norm,
            ignore=options.ignore,
            ndim=ndim,
            params=options.params,
            limit=rule,
        )
    elif directions is None:
        directions = random_by_rule(
            model,
            seed=options.seed,
            norm=options.norm,
            ignore=options.ignore,
            ndim=ndim,
            orthogonalize=options.orthogonalize,
            params=options.params,
            limit=rule,
        )
    elif options.params is not None:  # the given directions, on the chosen tensors only
        directions = directions.restricted(select_params(options.params, _named_tensors(model)))
    check_contents(split=split, attrs=attrs, trajectories=trajectories)
    xs, ys = _grid(directions, x, y, trajectories)
    check_grid_size(len(xs), None if ys is None else len(ys))
    check_precision(resolve_device(options.device), options.precision)
    if options.compile:
        check_compile_cache()  # a full or read-only TMPDIR, before any work
    if options.scheme != "li" and ys is None:
        raise LosslandError(
            f"{arg('scheme')} {options.scheme} needs two directions: give a {arg('y')} range"
        )
    directions.check_fits(model)
    check_dtypes(model, network_dtype(options.precision, torch_dtype(options.dtype)))
    if ys is not None and directions.y is None:
        raise LosslandError(
            f"a 2-D surface needs two directions, the directions hold one: drop {arg('y')}"
        )
    if regenerate is None:  # (lean directions were checked as they were drawn)
        check_usable(directions)
    if options.shard and not several_processes():
        raise LosslandError(
            f"{arg('shard')} splits the model across the processes of a torchrun job: launch "
            f"with torchrun --nproc_per_node N (N ≥ 2), or drop {arg('shard')}"
        )
    return _Run(xs, ys, directions, resolved, options, regenerate)


def _resumed_rule(out: str | Path | None, overwrite: bool) -> int | None:
    """The draw rule (core.rule_limit) of the random directions of the file a run would
    resume: the one it records, or whole tensors for a file from before rules; today's rule
    (``CURRENT``) when there is no such file (start_or_resume refuses unreadable ones)."""
    if out is None or overwrite or not Path(out).is_file():
        return CURRENT
    try:
        attrs = Surface.load(out).attrs
    except LosslandError:
        return CURRENT
    info = attrs.get("directions_info")
    if attrs.get("directions_kind") != "random" or not isinstance(info, dict):
        return CURRENT
    try:
        return rule_limit(info.get("draw"))
    except (ValueError, TypeError):
        return CURRENT


def _moving_elements(model: nn.Module, options: SurfaceOptions) -> int:
    """Elements of the tensors that move: what the engine copies (the others are shared)."""
    chosen = select_params(options.params, _named_tensors(model))
    if chosen is None:
        return sum(p.numel() for p in model.parameters())
    tensors = dict(_named_tensors(model))
    return sum(tensors[n].numel() for n in chosen)


def _named_tensors(model: nn.Module) -> list[tuple[str, Tensor]]:
    """The tensors directions may move, each once: parameters, then buffers."""
    return [*model.named_parameters(), *model.named_buffers()]


def _is_pair(data: Any) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(d, (Tensor, np.ndarray)) for d in data)
    )


def _grid(
    directions: Directions,
    x: Coordinates | None,
    y: Coordinates | None,
    trajectories: Mapping[str, np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Coordinates from specs or values; ``None``/``auto`` specs are the kind's choice."""

    def spec(value: Coordinates | None) -> str | None:
        return value if value is None or isinstance(value, str) else None

    chosen_x, chosen_y = grid_specs(directions, spec(x), spec(y), trajectories)
    xs = coordinates(chosen_x if spec(x) is not None or x is None else x, name="x")
    given_y = y if spec(y) is None and y is not None else chosen_y
    return xs, None if given_y is None else coordinates(given_y, name="y")


def _shard_ranks(options: SurfaceOptions, ranks: int) -> int:
    """The processes that share one network (``shard``: ``shard_ranks``, default all of the
    job's ``ranks``); 1 when not sharded."""
    if not options.shard:
        return 1
    k = options.shard_ranks or ranks
    if ranks % k:
        raise LosslandError(
            f"{arg('shard_ranks')} {k} does not divide the job's {ranks} processes: choose a "
            "divisor, so that every group of processes holds one whole model"
        )
    return k


def _channels_last(model: nn.Module, device: torch.device, options: SurfaceOptions) -> bool:
    """channels_last where it is faster (conv nets on CPU and CUDA), except BatchNorm with
    batch statistics on the CPU: its channels_last kernel loses float32 precision (measured:
    1.9e-3 relative against float64 where contiguous gives 5e-6)."""
    if options.memory_format != "auto":
        return options.memory_format == "channels_last"
    precise = device.type == "cpu" and options.bn in ("train", "recompute")
    return use_channels_last(model, device) and not precise


def _points_per_batch(
    options: SurfaceOptions, device: torch.device, model: nn.Module, nx: int, simple: bool
) -> int:
    """K = 1 on CPU (measured: batching points gains nothing there) and with offload (each
    more point is one more working copy); on CUDA from free memory for tensor pairs through the
    default loss (other models may not vmap)."""
    if options.points_per_batch is not None:
        return options.points_per_batch
    if device.type != "cuda" or not simple or options.offload or options.memory == "lean":
        return 1
    free, _ = torch.cuda.mem_get_info(device)
    params = sum(p.numel() for p in model.parameters())
    per_point = params * 4 * 3  # a working copy plus the batched forward's weight reshapes
    return int(max(1, min(32, nx, (0.5 * free) // max(per_point, 1))))
