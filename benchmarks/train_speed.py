"""Training throughput (samples/s) of the write-up's VGG and the small model, side by side.

Each configuration runs the same Adam steps on in-memory data (batch 64) in both memory
formats; rounds alternate between configurations so machine noise hits them alike.

    python benchmarks/train_speed.py [--steps 5 --rounds 3 --device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from lossland.core import resolve_device, synchronize
from lossland.zoo import build_model, model_spec


def steps_per_second(
    name: str, width: float, channels_last: bool, steps: int, batch: int, device: torch.device
) -> float:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(model_spec(name, width=width)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, 28, 28, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    step()  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = resolve_device(args.device)
    configs = [
        (name, width, cl)
        for name, width in (("vgg", 1.0), ("vgg", 0.25), ("small", 1.0))
        for cl in (False, True)
    ]
    rates: dict[tuple[str, float, bool], list[float]] = {c: [] for c in configs}
    for _ in range(args.rounds):
        for c in configs:
            rates[c].append(steps_per_second(*c, steps=args.steps, batch=args.batch, device=device))
    threads = torch.get_num_threads()
    print(f"device {device}, torch {torch.__version__}, {threads} threads, batch {args.batch}")
    print(f"{'model':<14}{'format':<16}{'samples/s (median)':>20}")
    for (name, width, cl), values in rates.items():
        label = name if width == 1.0 else f"{name} w={width}"
        fmt = "channels_last" if cl else "contiguous"
        print(f"{label:<14}{fmt:<16}{statistics.median(values):>20.0f}")
    epoch = 60000 / max(statistics.median(rates[("vgg", 1.0, True)]), 1e-9)
    print(f"one epoch of the write-up's VGG (60,000 samples, channels_last) ≈ {epoch / 60:.1f} min")


if __name__ == "__main__":
    main()
