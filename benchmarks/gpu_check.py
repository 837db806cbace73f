"""GPU figures for the engine, sized for a short lease (under 5 minutes on one H100).

Prints, for the seed VGG on a batch of 32: ms per grid point for a bare forward pass, the
reference-style loop and the engine with K = 1, 8, 32 and the automatic K (points per batched
forward); the wall time of a whole 51×51 surface; and the largest difference to a surface
computed on the CPU, for fp32, tf32 and bf16. Run through ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from lossland.core import synchronize
from lossland.directions import random_directions
from lossland.engine import Engine, EngineOptions
from lossland.run import SurfaceOptions, surface
from lossland.run._surface import _points_per_batch
from lossland.zoo import build_model, model_spec


def seed_vgg() -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_model(model_spec("vgg")).eval()


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--grid", type=int, default=51)
    parser.add_argument("--device", default="cuda", help="cpu only to smoke-test this script")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}")
    model = seed_vgg()
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(32, 1, 28, 28, generator=generator)
    targets = torch.randint(0, 10, (32,), generator=generator)
    directions = random_directions(model, seed=0)
    gpu_model = seed_vgg().to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = inputs.to(device).contiguous(memory_format=torch.channels_last)

    with torch.inference_mode():
        for _ in range(5):
            gpu_model(x)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(50):
            gpu_model(x)
        synchronize(device)
    print(f"(a) bare forward, channels_last: {(time.perf_counter() - start) * 1e3 / 50:.3f} ms")

    ref = seed_vgg().to(device)
    weights = [p.detach().clone() for p in ref.parameters()]
    dxs = [directions.x[n].to(device) for n, _ in ref.named_parameters()]
    dys = [directions.y[n].to(device) for n, _ in ref.named_parameters()]  # type: ignore[index]
    with torch.no_grad():
        for step in range(3 + 50):
            if step == 3:
                synchronize(device)
                start = time.perf_counter()
            for p, w, dx, dy in zip(ref.parameters(), weights, dxs, dys, strict=True):
                p.data = w + 0.1 * dx + 0.2 * dy
            ref(inputs.to(device))
        synchronize(device)
    print(f"(b) reference-style loop: {(time.perf_counter() - start) * 1e3 / 50:.3f} ms/point")
    del ref, weights, dxs, dys

    auto_k = _points_per_batch(SurfaceOptions(), device, model, args.grid)
    for k in sorted({1, 8, 32, auto_k}):
        engine = Engine(
            model,
            [directions.x, directions.y],
            (inputs, targets),  # type: ignore[list-item]
            batch_size=32,
            options=EngineOptions(device=device, channels_last=k == 1, points_per_batch=k),
        )
        ms = per_point_ms(engine, args.points, args.rounds, device)
        tag = " (auto)" if k == auto_k else ""
        print(f"(c) engine K={k:>2}{tag}: {ms:.3f} ms/point")
        del engine
        if device.type == "cuda":
            torch.cuda.empty_cache()

    grid = f"-1:1:{args.grid}"
    start = time.perf_counter()
    gpu = surface(
        model,
        (inputs, targets),
        x=grid,
        y=grid,
        directions=directions,
        device=device,
        progress=False,
        batch_size=32,
    )
    seconds = time.perf_counter() - start
    print(f"whole {args.grid}x{args.grid} surface, auto K={auto_k}: {seconds:.2f} s")

    # Differences to the CPU on a coarser grid (the CPU needs ~0.1 s per point).
    small = "-1:1:5"
    start = time.perf_counter()
    cpu = surface(
        model,
        (inputs, targets),
        x=small,
        y=small,
        directions=directions,
        device="cpu",
        progress=False,
    )
    print(f"CPU reference 5x5 surface: {time.perf_counter() - start:.1f} s")
    for precision in ("fp32", "tf32", "bf16") if device.type == "cuda" else ("fp32",):
        for k in (1, auto_k):
            s = surface(
                model,
                (inputs, targets),
                x=small,
                y=small,
                directions=directions,
                device=device,
                precision=precision,
                points_per_batch=k,
                progress=False,
            )
            rel = np.max(np.abs(s.loss - cpu.loss) / np.abs(cpu.loss))
            print(f"max |GPU − CPU| / CPU, {precision}, K={k}: {rel:.2e}")
    del gpu


if __name__ == "__main__":
    main()
