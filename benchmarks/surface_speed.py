"""Milliseconds per grid point, measured side by side in one process.

(a) a bare forward pass in the best memory format (the floor: a surface needs one per point),
(b) the reference implementation's way of setting weights (``p.data = w + α·dx + β·dy``, fresh
    tensors for every parameter, default memory format), then a forward pass,
(c) lossland's engine (flat buffer, one in-place axpy per point, snake order).
Rounds alternate a, b, c so machine noise hits all three alike; medians are reported.

    python benchmarks/surface_speed.py                 # seed VGG (batch 32) and the small model
    python benchmarks/surface_speed.py --grid 51       # also a whole 51x51 surface
    python benchmarks/surface_speed.py --memory        # peak memory vs grid size (subprocesses)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from lossland.core import resolve_device, synchronize
from lossland.directions import random_directions
from lossland.engine import Engine, EngineOptions
from lossland.run import surface
from lossland.zoo import build_model, model_spec


def make_model(name: str, width: float) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_model(model_spec(name, width=width)).eval()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


def bench_model(
    name: str, width: float, batch: int, points: int, rounds: int, device: torch.device
) -> dict[str, float]:
    model = make_model(name, width).to(device)
    inputs = torch.rand(batch, 1, 28, 28, device=device)
    targets = torch.randint(0, 10, (batch,), device=device)
    directions = random_directions(model, seed=0)
    alphas = np.linspace(-1, 1, points)

    # (a) bare forward passes, in both memory formats; the faster one is the floor.
    cl_model = make_model(name, width).to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    cl_inputs = inputs.contiguous(memory_format=torch.channels_last)

    def forward(net: nn.Module, x: torch.Tensor) -> None:
        with torch.inference_mode():
            for _ in alphas:
                net(x)

    # (b) the reference: fresh tensors for every parameter at every point.
    ref_model = make_model(name, width).to(device)
    weights = [p.detach().clone() for p in ref_model.parameters()]
    dxs = [directions.x[n].to(device) for n, _ in ref_model.named_parameters()]
    dys = [directions.y[n].to(device) for n, _ in ref_model.named_parameters()]  # type: ignore[index]

    def reference() -> None:
        with torch.no_grad():
            for a in alphas:
                for p, w, dx, dy in zip(ref_model.parameters(), weights, dxs, dys, strict=True):
                    p.data = w + a * dx + 0.5 * dy
                ref_model(inputs)

    # (c) the engine over one row of `points` grid points.
    engine = Engine(
        model,
        [directions.x, directions.y],
        (inputs, targets),  # type: ignore[list-item]
        batch_size=batch,
        options=EngineOptions(device=device, channels_last=device.type in ("cpu", "cuda")),
    )
    pending = np.ones((1, points), dtype=bool)

    def lossland() -> None:
        for _ in engine.rows(alphas, np.array([0.5]), pending):
            pass

    cases = {
        "forward_default": lambda: forward(model, inputs),
        "forward_channels_last": lambda: forward(cl_model, cl_inputs),
        "reference": reference,
        "lossland": lossland,
    }
    for fn in cases.values():  # warm-up: allocator, oneDNN primitives, cuDNN autotune
        fn()
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for key, fn in cases.items():
            samples[key].append(timed(fn, device) / points)
    result = {k: statistics.median(v) for k, v in samples.items()}
    result["forward_best"] = min(result["forward_default"], result["forward_channels_last"])
    result["c_over_a"] = result["lossland"] / result["forward_best"]
    result["b_over_c"] = result["reference"] / result["lossland"]
    result["parameters"] = float(sum(p.numel() for p in model.parameters()))
    return result


def grid_time(name: str, width: float, batch: int, n: int, device: torch.device) -> float:
    model = make_model(name, width)
    inputs = torch.rand(batch, 1, 28, 28)
    targets = torch.randint(0, 10, (batch,))
    start = time.perf_counter()
    surface(
        model,
        (inputs, targets),
        x=f"-1:1:{n}",
        y=f"-1:1:{n}",
        device=device,
        progress=False,
        batch_size=batch,
    )
    return time.perf_counter() - start


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
        "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def vm() -> float:
    """Peak resident set size so far, MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="vgg,small", help="comma list of vgg, small")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=8, help="grid points timed per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--grid", type=int, default=0, help="also time a whole N×N surface")
    parser.add_argument("--memory", action="store_true", help="peak memory for 5x5 vs 21x21 grids")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = resolve_device(args.device)
    threads = torch.get_num_threads()
    print(f"device {device}, torch {torch.__version__}, threads {threads}, batch {args.batch}")
    for name in args.models.split(","):
        width = 1.0
        r = bench_model(name, width, args.batch, args.points, args.rounds, device)
        size = f"{r['parameters'] / 1e6:.2f} M parameters"
        print(f"\n{name} ({size}), ms per grid point (median of {args.rounds}):")
        print(f"  (a) bare forward, default format   {r['forward_default']:8.2f}")
        print(f"  (a) bare forward, channels_last    {r['forward_channels_last']:8.2f}")
        print(f"  (b) reference-style p.data = ...   {r['reference']:8.2f}")
        print(f"  (c) lossland engine                {r['lossland']:8.2f}")
        print(f"  c/a = {r['c_over_a']:.3f}   (target ≤ 1.10 for the seed VGG)")
        print(f"  b/c = {r['b_over_c']:.2f}    (target ≥ 2.5 for the seed VGG)")
        if args.grid:
            seconds = grid_time(name, width, args.batch, args.grid, device)
            per_point = seconds / args.grid**2 * 1e3
            print(f"  whole {args.grid}² surface: {seconds:.1f} s ({per_point:.1f} ms/point)")
        if args.memory and device.type == "cpu":
            model_mib = r["parameters"] * 4 / 2**20
            for n in (5, 21):
                m = peak_rss_for_grid(name, width, args.batch, n)
                extra = m["peak"] - m["before"]
                ratio = extra / model_mib
                print(
                    f"  peak RSS {n}x{n}: +{extra:.0f} MiB over the model ({ratio:.1f} × its size)"
                )


if __name__ == "__main__":
    main()
