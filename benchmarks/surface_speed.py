"""Milliseconds per grid point and the cost of the shortcuts, side by side in one run.

Per point, for each model (trained checkpoints; a batch of real Fashion-MNIST images):

* bare forward passes, fp32 (the better memory format) and a bf16 copy of the network: the floor;
* the reference implementation's loop (``p.data = w + α·dx + β·dy``, fresh tensors per point);
* loss-landscapes 3.0.6 (``random_plane`` with its ``Loss`` metric, fp32), when installed in
  benchmarks/.peers: ``pip install --no-deps --target benchmarks/.peers loss-landscapes==3.0.6``;
* lossland's engine in fp32 and bf16 (with the bf16 − fp32 difference at the timed points, in
  standard errors of the fp32 value and relatively), and K points per forward for small models.

Rounds alternate the paths so machine noise hits them alike; medians are reported. Then whole
surfaces of the small model: ``sem_target`` against the same grid on all the samples (cost: the
fraction of sample evaluations used), and ``refine`` against the full grid (cost: the fraction
of points evaluated). Checkpoints are trained once and cached in ``benchmarks/.cache``.

    python benchmarks/surface_speed.py                  # every row; sem_target at 5x5 over 60,000
    python benchmarks/surface_speed.py --sem-grid 51    # sem_target at the issue's 51x51 (hours)
    python benchmarks/surface_speed.py --sem-grid 0 --refine-grid 0   # per-point rows only
    python benchmarks/surface_speed.py --grid 51        # also a whole 51x51 surface per model
    python benchmarks/surface_speed.py --memory         # peak memory vs grid size (subprocesses)
    python benchmarks/surface_speed.py --llm            # suffix replay on a 12-block GPT-2 shape
                                                        # (benchmarks/big_models.py suffix)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossland.core import host_rss, reduce_sums, resolve_device, synchronize
from lossland.directions import Directions, random_directions
from lossland.engine import Engine, EngineOptions, eval_data, select_samples
from lossland.io import Surface
from lossland.run import surface
from lossland.zoo import (
    TrainOptions,
    build_model,
    load_fashion_mnist,
    load_model,
    model_spec,
    train,
)

HERE = Path(__file__).resolve().parent
PEERS, CACHE = HERE / ".peers", HERE / ".cache"
PEER = "loss-landscapes==3.0.6"
PEER_ROW = f"{PEER} random_plane, fp32"
REFERENCE = "reference-style loop (p.data = w + α·dx + β·dy)"
INSTALL = f"pip install --no-deps --target benchmarks/.peers {PEER}"
BETA = 0.0  # the timed points: one row θ* + α·δ, α in [-1, 1] (an odd count includes θ*)
SMALL_MODEL = 1_000_000  # parameters: below this, per-point overhead matters (K rows)
Pair = tuple[Tensor, Tensor]
Case = Callable[[], object] | str  # a timed path, or why it cannot run here


# --- models and data -----------------------------------------------------------------------


def make_model(name: str, width: float) -> nn.Module:
    """An untrained registry model, seeded (used by --memory and the GPU check)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_model(model_spec(name, width=width)).eval()


def trained_model(
    name: str, checkpoint: str | None, limit: int | None, device: torch.device
) -> tuple[nn.Module, str]:
    """The model of ``checkpoint``, or one trained on ``device`` (one epoch on ``limit``
    training samples, all if None) and cached in benchmarks/.cache."""
    if checkpoint is None:
        path = CACHE / f"{name}-{limit or 'all'}.safetensors"
        if not path.exists():
            CACHE.mkdir(parents=True, exist_ok=True)
            options = TrainOptions(limit=limit, device=str(device))
            print(f"training {name} on {limit or 'all'} samples into {path} ...", flush=True)
            train(model_spec(name), options=options, out=path, progress=False)
        checkpoint = str(path)
    model, _ = load_model(checkpoint)
    return model, checkpoint


def training_samples(count: int) -> Pair:
    """A seeded subset of ``count`` training images (sorted indices), as the demo takes."""
    images, labels = load_fashion_mnist("train")
    return select_samples(images, labels, count, seed=0, split="train")


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


# --- the timed paths ---------------------------------------------------------------------------


def forward_case(
    model: nn.Module, x: Tensor, points: int, dtype: torch.dtype
) -> Callable[[], None]:
    """``points`` bare forward passes of a copy of the network in ``dtype``."""
    net = copy.deepcopy(model).to(dtype=dtype)
    inputs = x.to(dtype)
    if has_conv(model) and x.device.type in ("cpu", "cuda"):
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        inputs = inputs.contiguous(memory_format=torch.channels_last)

    def run() -> None:
        with torch.inference_mode():
            for _ in range(points):
                net(inputs)

    return run


def reference_case(
    model: nn.Module, directions: Directions, x: Tensor, alphas: np.ndarray
) -> Callable[[], None]:
    """The reference: fresh tensors for every parameter at every point, default format."""
    net = copy.deepcopy(model)
    weights = [p.detach().clone() for p in net.parameters()]
    dxs = [directions.x[n].to(x.device) for n, _ in net.named_parameters()]
    dys = [directions.y[n].to(x.device) for n, _ in net.named_parameters()]  # type: ignore[index]

    def run() -> None:
        with torch.no_grad():
            for a in alphas:
                for p, w, dx, dy in zip(net.parameters(), weights, dxs, dys, strict=True):
                    p.data = w + a * dx + BETA * dy
                net(x)

    return run


@dataclass
class EngineCase:
    """lossland's engine over one row of points; keeps the last run's per-point sums."""

    engine: Engine
    xs: np.ndarray
    stats: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def of(
        cls, model: nn.Module, directions: Directions, data: Pair, xs: np.ndarray, **opts: Any
    ) -> EngineCase:
        options = EngineOptions(**opts)
        evaluation = eval_data(
            data,
            batch_size=len(data[0]),
            device=options.device,
            dtype=torch.bfloat16 if options.precision == "bf16" else torch.float32,
            channels_last=options.channels_last and options.points_per_batch == 1,
        )
        assert directions.y is not None
        planes = [directions.x, directions.y]
        return cls(Engine(model, planes, evaluation, options=options), xs)

    def __call__(self) -> None:
        pending = np.ones((1, len(self.xs)), dtype=bool)
        blocks = self.engine.rows(self.xs, np.array([BETA]), pending)
        self.stats = np.concatenate([b.stats for b in blocks])


def peer_case(model: nn.Module, data: Pair, points: int) -> Callable[[], float] | str:
    """loss-landscapes' random_plane on a copy of the model; ms per point between successive
    metric calls (a step of its in-place walk and a forward pass; its set-up excluded). A
    string says why it cannot run."""
    peer = load_peer()
    if peer is None:
        return f"not installed: {INSTALL}"
    from loss_landscapes.metrics import Loss  # type: ignore[import-not-found]

    stamps: list[float] = []

    class TimedLoss(Loss):  # type: ignore[misc]
        def __call__(self, wrapper: Any) -> float:
            value = float(super().__call__(wrapper))
            stamps.append(time.perf_counter())
            return value

    steps = max(2, math.ceil(math.sqrt(points + 1)))  # steps² ≥ points + 1 calls

    def run() -> float:
        stamps.clear()
        metric = TimedLoss(F.cross_entropy, *data)
        peer.random_plane(model, metric, distance=1, steps=steps, deepcopy_model=True)
        return (stamps[-1] - stamps[0]) * 1e3 / (len(stamps) - 1)

    return run


def load_peer() -> ModuleType | None:
    """loss-landscapes from benchmarks/.peers (or wherever it is installed), or None."""
    if PEERS.is_dir() and str(PEERS) not in sys.path:
        sys.path.insert(0, str(PEERS))
    try:
        import loss_landscapes  # type: ignore[import-not-found]
    except ImportError:
        return None
    return loss_landscapes  # type: ignore[no-any-return]


# --- per-point rounds ----------------------------------------------------------------------


def timed(fn: Callable[[], object], points: int, device: torch.device) -> float:
    """ms per point: the case's own figure if it returns one, else wall time / points."""
    synchronize(device)
    start = time.perf_counter()
    own = fn()
    synchronize(device)
    return own if isinstance(own, float) else (time.perf_counter() - start) * 1e3 / points


def alternate(
    cases: dict[str, Case], points: int, rounds: int, device: torch.device
) -> tuple[dict[str, float], dict[str, str]]:
    """Median ms per point of each case over alternating rounds (after one warm-up call), and
    the reason for each case that cannot run (given as a string, or failing its warm-up)."""
    failed = {k: fn for k, fn in cases.items() if isinstance(fn, str)}
    runs = {k: fn for k, fn in cases.items() if not isinstance(fn, str)}
    for key, fn in list(runs.items()):  # warm-up: allocator, oneDNN primitives, cuDNN autotune
        try:
            fn()
        except Exception as exc:  # a peer that does not run here (e.g. on CUDA)
            failed[key] = f"fails: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
            del runs[key]
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for key, fn in runs.items():
            samples[key].append(timed(fn, points, device))
    return {k: statistics.median(v) for k, v in samples.items()}, failed


def bf16_error(fp32: np.ndarray, bf16: np.ndarray) -> tuple[float, float]:
    """(max |bf16 − fp32| / SE(fp32), median |bf16 − fp32| / fp32) over the timed points."""
    exact, sem = (reduce_sums(fp32)[name] for name in ("loss", "loss_sem"))
    low = reduce_sums(bf16)["loss"]
    delta = np.abs(low - exact)
    return float(np.max(delta / sem)), float(np.median(delta / np.abs(exact)))


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    model: str
    path: str
    ms: float | None = None  # per point
    versus: str = ""  # speed relative to lossland fp32 (or the full run)
    cost: str = ""
    error: str = ""


def table(rows: list[Row]) -> str:
    head = "| model | path | ms / point | × lossland fp32 time | cost fraction | error |"
    lines = [head, "| --- | --- | ---: | ---: | --- | --- |"]
    for r in rows:
        ms = "" if r.ms is None else f"{r.ms:.2f}" if r.ms < 100 else f"{r.ms:.1f}"
        lines.append(f"| {r.model} | {r.path} | {ms} | {r.versus} | {r.cost} | {r.error} |")
    return "\n".join(lines)


def point_cases(
    model: nn.Module, data: Pair, points: int, k: int, device: torch.device
) -> dict[str, Case]:
    """The timed paths for one model, in table order (a string: why one cannot run)."""
    model = model.to(device)
    data = (data[0].to(device), data[1].to(device))
    directions = random_directions(model, seed=0)
    xs = np.linspace(-1, 1, points)
    on = dict(device=device, channels_last=has_conv(model) and device.type in ("cpu", "cuda"))
    cases: dict[str, Case] = {
        "bare forward fp32": forward_case(model, data[0], points, torch.float32),
        "bare forward bf16": forward_case(model, data[0], points, torch.bfloat16),
        REFERENCE: reference_case(model, directions, data[0], xs),
    }
    cases[PEER_ROW] = peer_case(model, data, points)  # or why it cannot run
    cases["lossland fp32"] = EngineCase.of(model, directions, data, xs, **on)
    cases["lossland bf16"] = EngineCase.of(model, directions, data, xs, precision="bf16", **on)
    if k > 1 and parameters(model) < SMALL_MODEL:
        cases[f"lossland fp32, K={k} points per forward"] = EngineCase.of(
            model, directions, data, xs, device=device, points_per_batch=k
        )
    return cases


def point_rows(
    name: str, model: nn.Module, data: Pair, args: argparse.Namespace, device: torch.device
) -> tuple[list[Row], dict[str, float]]:
    """The per-point rows of one model, and the figures the targets need."""
    cases = point_cases(model, data, args.points, args.k, device)
    ms, notes = alternate(cases, args.points, args.rounds, device)
    fp32, bf16 = cases["lossland fp32"], cases["lossland bf16"]
    assert isinstance(fp32, EngineCase) and isinstance(bf16, EngineCase)
    max_se, median_rel = bf16_error(fp32.stats, bf16.stats)
    label = f"{name} ({parameters(model) / 1e6:.2f} M)"
    rows = []
    for key in cases:
        if key in notes:
            rows.append(Row(label, key, error=notes[key]))
            continue
        error = ""
        if key == "lossland bf16":
            error = f"max \\|Δ\\|/SE {max_se:.3f}, median rel {100 * median_rel:.3f} %"
        versus = f"{ms[key] / ms['lossland fp32']:.2f}"
        rows.append(Row(label, key, ms[key], versus, error=error))
    return rows, {"max_se": max_se, "median_rel": median_rel, **ms}


# --- whole surfaces: sem_target and refine -------------------------------------------------


def timed_surface(model: nn.Module, data: Pair, grid: int, **options: Any) -> tuple[Surface, float]:
    """A grid×grid surface over [-1, 1]² and its wall time in seconds."""
    axis = f"-1:1:{grid}"
    start = time.perf_counter()
    result = surface(model, data, x=axis, y=axis, progress=False, **options)
    return result, time.perf_counter() - start


def sem_row(
    model: nn.Module, label: str, args: argparse.Namespace, device: torch.device
) -> tuple[Row, dict[str, float]]:
    """``sem_target`` against the same grid on all the samples (the data in the same order)."""
    data = training_samples(args.sem_samples)
    common = dict(device=device, batch_size=args.sem_batch, seed=args.sem_seed)
    full, t_full = timed_surface(model, data, args.sem_grid, **common)
    early, t_early = timed_surface(model, data, args.sem_grid, sem_target=args.sem_target, **common)
    assert early.samples is not None
    used = float(np.sum(early.samples) / (early.loss.size * len(data[0])))
    error = float(np.max(np.abs(early.loss - full.loss) / early.loss_sem))
    points = early.loss.size
    row = Row(
        label,
        f"sem_target {args.sem_target}: {args.sem_grid}² on {len(data[0]):,} samples, "
        f"batch {args.sem_batch}, seed {args.sem_seed} "
        f"(full: {1e3 * t_full / points:.0f} ms/point)",
        1e3 * t_early / points,
        f"{t_early / t_full:.2f} of full",
        f"{used:.3f} of the samples",
        f"max \\|Δ\\|/own SE {error:.2f}",
    )
    return row, {"used": used, "error": error}


def refine_row(
    model: nn.Module, label: str, args: argparse.Namespace, device: torch.device
) -> tuple[Row, dict[str, float]]:
    """``refine`` against the full grid (the demo's setting: 256 training samples)."""
    data = training_samples(args.refine_samples)
    full, t_full = timed_surface(model, data, args.refine_grid, device=device)
    coarse, t_coarse = timed_surface(
        model, data, args.refine_grid, device=device, refine=args.refine
    )
    fraction = float(coarse.attrs["evaluated_fraction"])
    errors = np.abs(np.log(coarse.loss) - np.log(full.loss))
    error = float(np.max(errors))
    interpolated = coarse.interpolated if coarse.interpolated is not None else coarse.done * False
    above = float(np.mean(errors[interpolated] > args.refine)) if interpolated.any() else 0.0
    rounds = coarse.attrs["refine_check"]["rounds"]
    claimed = float(rounds[-1]["exceeded_share_upper95"]) if rounds else 0.0
    points = coarse.loss.size
    row = Row(
        label,
        f"refine {args.refine}: {args.refine_grid}² on {len(data[0]):,} samples "
        f"(full: {1e3 * t_full / points:.1f} ms/point)",
        1e3 * t_coarse / points,
        f"{t_coarse / t_full:.2f} of full",
        f"{fraction:.3f} of the points",
        f"max \\|Δ ln L\\| {error:.4f}; {100 * above:.2f} % of the interpolated above tol "
        f"(refine_check's 95 % bound: {100 * claimed:.1f} %)",
    )
    return row, {"fraction": fraction, "error": error, "above": above, "claimed": claimed}


# --- extras: a whole surface, peak memory ------------------------------------------------------


def grid_time(model: nn.Module, data: Pair, n: int, device: torch.device) -> float:
    _, seconds = timed_surface(model, data, n, device=device, batch_size=len(data[0]))
    return seconds


def peak_rss_for_grid(name: str, width: float, batch: int, n: int) -> dict[str, float]:
    """Peak resident memory of a fresh process computing an n×n surface (Linux VmHWM)."""
    code = f"""
import json, torch
from benchmarks.surface_speed import make_model, vm
model = make_model({name!r}, {width})
x, y = torch.rand({batch}, 1, 28, 28), torch.randint(0, 10, ({batch},))
model(x[:2]); before = vm()
from lossland.run import surface
surface(model, (x, y), x="-1:1:{n}", y="-1:1:{n}", device="cpu", progress=False)
print(json.dumps({{"before": before, "peak": vm()}}))
"""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def vm() -> float:
    """Peak resident set size so far, MiB."""
    _, peak = host_rss()
    return float("nan") if peak is None else peak / 2**20


# --- targets and main --------------------------------------------------------------------------


def verdict(name: str, value: float, ok: bool, goal: str) -> str:
    return f"- {name}: {value:.3g} ({goal}) — {'met' if ok else 'MISSED'}"


def target_lines(figures: dict[str, dict[str, float]]) -> list[str]:
    """Issue 14's targets against the figures measured (at this run's settings)."""
    lines = []
    vgg, sem, ref = figures.get("vgg"), figures.get("sem"), figures.get("refine")
    if vgg is not None:
        if PEER_ROW in vgg:
            speed = vgg[PEER_ROW] / vgg["lossland bf16"]
            lines.append(
                verdict("vgg: loss-landscapes fp32 / lossland bf16", speed, speed >= 2.5, "≥ 2.5")
            )
        lines.append(verdict("vgg: bf16 max |Δ|/SE", vgg["max_se"], vgg["max_se"] < 0.25, "< 0.25"))
        rel = 100 * vgg["median_rel"]
        lines.append(verdict("vgg: bf16 median relative difference, %", rel, rel < 0.5, "< 0.5"))
        c_a = vgg["lossland fp32"] / vgg["bare forward fp32"]
        lines.append(verdict("vgg: lossland fp32 / bare forward fp32", c_a, c_a <= 1.10, "≤ 1.10"))
        b_c = vgg[REFERENCE] / vgg["lossland fp32"]
        lines.append(verdict("vgg: reference loop / lossland fp32", b_c, b_c >= 2.5, "≥ 2.5"))
    if sem is not None:
        lines.append(
            verdict("sem_target: sample fraction", sem["used"], sem["used"] <= 0.2, "≤ 0.2")
        )
        lines.append(verdict("sem_target: max |Δ|/own SE", sem["error"], sem["error"] < 3, "< 3"))
    if ref is not None:
        ok = ref["fraction"] <= 0.4
        lines.append(verdict("refine: fraction evaluated", ref["fraction"], ok, "≤ 0.4"))
        lines.append(verdict("refine: max |Δ ln L|", ref["error"], ref["error"] <= 0.05, "≤ 0.05"))
        ok = ref["above"] <= ref["claimed"]
        bound = f"≤ {ref['claimed']:.3f} (its check)"
        lines.append(verdict("refine: share of interpolated above tol", ref["above"], ok, bound))
    return lines


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return f"{names[0] if names else 'CPU'}, {os.cpu_count()} cores"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default="vgg,small", help="comma list of registry models")
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a trained checkpoint for a model (else one is trained and cached)",
    )
    p.add_argument(
        "--vgg-train-samples",
        type=int,
        default=6400,
        help="training samples of the cached vgg checkpoint (one epoch; 0: all)",
    )
    p.add_argument("--batch", type=int, default=32, help="images per point, per-point rows")
    p.add_argument("--points", type=int, default=9, help="grid points timed per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--k", type=int, default=8, help="points per forward for small models (0: skip)")
    p.add_argument("--sem-target", type=float, default=0.02)
    p.add_argument("--sem-grid", type=int, default=5, help="0: skip the sem_target row")
    p.add_argument("--sem-samples", type=int, default=60_000, help="the whole split: 60000")
    p.add_argument("--sem-batch", type=int, default=1024)
    p.add_argument(
        "--sem-seed",
        type=int,
        default=0,
        help="seed of the directions and of the evaluation order (its own stream, "
        "independent of the training shuffle's)",
    )
    p.add_argument("--refine", type=float, default=0.05)
    p.add_argument("--refine-grid", type=int, default=51, help="0: skip the refine row")
    p.add_argument("--refine-samples", type=int, default=256)
    p.add_argument("--grid", type=int, default=0, help="also time a whole N×N surface per model")
    p.add_argument("--memory", action="store_true", help="peak memory for 5x5 vs 21x21 grids")
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def main() -> None:
    if "--llm" in sys.argv[1:]:  # the big-model rows: their own script and table
        sys.path.insert(0, str(HERE))
        import big_models

        rest = [a for a in sys.argv[1:] if a != "--llm"]
        big_models.main(["suffix", *rest])
        return
    report(parse())


def report(args: argparse.Namespace) -> None:
    """Every row for these settings, one table, then the targets."""
    device = resolve_device(args.device)
    threads = torch.get_num_threads()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{machine(device)}; torch {torch.__version__}, {threads} threads; load {load}")
    given = dict(c.split("=", 1) for c in args.checkpoint)
    rows: list[Row] = []
    figures: dict[str, dict[str, float]] = {}
    for name in args.models.split(","):
        limit = args.vgg_train_samples or None if name == "vgg" else None
        model, path = trained_model(name, given.get(name), limit, device)
        print(f"{name}: {path}", flush=True)
        model_rows, figures[name] = point_rows(
            name, model, training_samples(args.batch), args, device
        )
        rows += model_rows
        extras(name, model, args, device)
    if args.sem_grid or args.refine_grid:
        small, _ = trained_model("small", given.get("small"), None, device)
        label = f"small ({parameters(small) / 1e6:.2f} M)"
        if args.sem_grid:
            row, figures["sem"] = sem_row(small, label, args, device)
            rows.append(row)
        if args.refine_grid:
            row, figures["refine"] = refine_row(small, label, args, device)
            rows.append(row)
    print()
    print(table(rows))
    print(f"\ntargets (issue 14, at this run's settings; load {load} at the start):")
    print("\n".join(target_lines(figures)))


def extras(name: str, model: nn.Module, args: argparse.Namespace, device: torch.device) -> None:
    """--grid: a whole surface's wall time; --memory: peak RSS for two grid sizes."""
    if args.grid:
        seconds = grid_time(model, training_samples(args.batch), args.grid, device)
        per_point = seconds / args.grid**2 * 1e3
        print(f"  whole {args.grid}² surface: {seconds:.1f} s ({per_point:.1f} ms/point)")
    if args.memory and device.type == "cpu":
        model_mib = parameters(model) * 4 / 2**20
        for n in (5, 21):
            m = peak_rss_for_grid(name, 1.0, args.batch, n)
            extra = m["peak"] - m["before"]
            ratio = extra / model_mib
            print(f"  peak RSS {n}x{n}: +{extra:.0f} MiB over the model ({ratio:.1f} × its size)")


if __name__ == "__main__":
    main()
