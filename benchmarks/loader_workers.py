"""Streamed evaluation through a DataLoader with worker processes: the time of a small surface.

Before issue 21 every grid point started the loader's workers again; lossland now keeps them
alive for the run (``persistent_workers``). Run it against two checkouts to compare:

    PYTHONPATH=src python benchmarks/loader_workers.py                  # this checkout
    PYTHONPATH=/path/to/old/src python benchmarks/loader_workers.py     # another one
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lossland


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--grid", type=int, default=5, help="points per axis")
    parser.add_argument("--samples", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    data = TensorDataset(torch.randn(args.samples, 16), torch.randint(0, 4, (args.samples,)))
    loader = DataLoader(data, batch_size=64, num_workers=args.workers)
    spec = f"-1:1:{args.grid}"
    start = time.perf_counter()
    s = lossland.surface(
        model, loader, x=spec, y=spec, data_mode="streamed", progress=False, device="cpu"
    )
    seconds = time.perf_counter() - start
    points = args.grid**2
    print(
        f"{points} points, {args.samples} samples, {args.workers} workers, streamed: "
        f"{seconds:.2f} s ({seconds / points * 1000:.0f} ms/point), loss(0,0) = "
        f"{float(s.loss[args.grid // 2, args.grid // 2]):.6f}"
    )


if __name__ == "__main__":
    main()
