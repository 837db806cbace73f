"""GPU figures for the engine, sized for a short lease (about 5 minutes on one H100/H200).

Prints, for the write-up's VGG (untrained, seeded) on a batch of 32: ms per grid point for the
engine with K = 1, 8, 32 and the automatic K (points per batched forward); the wall time of a whole
51×51 surface; the largest difference to a surface computed on the CPU, for fp32, tf32 and
bf16. Then the table of ``benchmarks/surface_speed.py`` on the GPU (trained checkpoints, bare
forward fp32/bf16, the reference loop, loss-landscapes, lossland fp32/bf16 with the bf16 error,
``sem_target`` and ``refine`` with their cost fractions and errors). Run it through
``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import surface_speed
from lossland.core import synchronize
from lossland.directions import Directions, random_directions
from lossland.engine import Engine, EngineOptions, eval_data
from lossland.run import SurfaceOptions, surface
from lossland.run._surface import _points_per_batch

Pair = tuple[torch.Tensor, torch.Tensor]


def per_point_ms(engine: Engine, points: int, rounds: int, device: torch.device) -> float:
    xs, ys = np.linspace(-1, 1, points), np.array([0.25])
    pending = np.ones((1, points), dtype=bool)
    times = []
    for r in range(rounds + 1):
        synchronize(device)
        start = time.perf_counter()
        for _ in engine.rows(xs, ys, pending):
            pass
        synchronize(device)
        if r:  # the first round warms up cuDNN and the allocator
            times.append((time.perf_counter() - start) * 1e3 / points)
    return statistics.median(times)


def k_sweep(
    model: torch.nn.Module, directions: Directions, data: Pair, args: argparse.Namespace
) -> int:
    """The engine's ms per point for K = 1, 8, 32 and the automatic K; returns the automatic K."""
    device = torch.device(args.device)
    auto_k = _points_per_batch(SurfaceOptions(), device, model, args.grid, True)
    for k in sorted({1, 8, 32, auto_k}):
        options = EngineOptions(device=device, channels_last=k == 1, points_per_batch=k)
        evaluation = eval_data(data, batch_size=32, device=device, channels_last=k == 1)
        assert directions.y is not None
        engine = Engine(model, [directions.x, directions.y], evaluation, options=options)
        ms = per_point_ms(engine, args.points, args.rounds, device)
        tag = " (auto)" if k == auto_k else ""
        print(f"engine K={k:>2}{tag}: {ms:.3f} ms/point")
        del engine
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return auto_k


def whole_and_cpu(
    model: torch.nn.Module, directions: Directions, data: Pair, args: argparse.Namespace, k: int
) -> None:
    """A whole surface's wall time, then max |GPU − CPU| / CPU on a 5×5 grid."""
    device = torch.device(args.device)
    grid = f"-1:1:{args.grid}"
    start = time.perf_counter()
    common = dict(directions=directions, progress=False, batch_size=32)
    surface(model, data, x=grid, y=grid, device=device, **common)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    print(f"whole {args.grid}x{args.grid} surface, auto K={k}: {seconds:.2f} s")
    small = "-1:1:5"  # the CPU needs ~0.1 s per point
    start = time.perf_counter()
    cpu = surface(model, data, x=small, y=small, device="cpu", **common)  # type: ignore[arg-type]
    print(f"CPU reference 5x5 surface: {time.perf_counter() - start:.1f} s")
    for precision in ("fp32", "tf32", "bf16") if device.type == "cuda" else ("fp32",):
        for kk in sorted({1, k}):
            s = surface(
                model,
                data,
                x=small,
                y=small,
                device=device,
                precision=precision,
                points_per_batch=kk,
                **common,  # type: ignore[arg-type]
            )
            rel = np.max(np.abs(s.loss - cpu.loss) / np.abs(cpu.loss))
            print(f"max |GPU − CPU| / CPU, {precision}, K={kk}: {rel:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--grid", type=int, default=51)
    parser.add_argument("--device", default="cuda", help="cpu only to smoke-test this script")
    parser.add_argument(
        "--table",
        default="--points 32 --rounds 5 --sem-grid 21 --vgg-train-samples 0",
        help="surface_speed.py flags for the table ('' to skip; --device is added)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}")
    model = surface_speed.make_model("vgg", 1.0)
    generator = torch.Generator().manual_seed(0)
    data = (torch.rand(32, 1, 28, 28, generator=generator), torch.randint(0, 10, (32,)))
    directions = random_directions(model, seed=0)
    auto_k = k_sweep(model, directions, data, args)
    whole_and_cpu(model, directions, data, args, auto_k)
    if args.table:
        print(flush=True)
        surface_speed.report(surface_speed.parse([*args.table.split(), "--device", args.device]))


if __name__ == "__main__":
    main()
