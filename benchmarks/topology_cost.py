"""The cost of a 2-D surface's basin summary (``lossland info``, ``describe``) on a huge grid.

A synthetic surface (a bowl plus uniform noise of ``--noise``, so the sweep meets many minima)
of NY × NX points goes through :func:`lossland.analysis.topology_lines`; the time and the
process's peak resident memory are printed. Beyond ``MAX_SWEEP_POINTS`` the summary sweeps a
bounded subgrid: the issue measured 97 s and 10 GB for a full 7500 × 10000 sweep.

    python benchmarks/topology_cost.py --shape 7500x10000
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from lossland.analysis import sweep_stride, topology_lines
from lossland.io import Surface


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="7500x10000", help="NYxNX")
    parser.add_argument("--noise", type=float, default=1e-3)
    args = parser.parse_args()
    ny, nx = (int(n) for n in args.shape.split("x"))
    x, y = np.linspace(-1, 1, nx), np.linspace(-1, 1, ny)
    loss = np.add.outer(y**2, x**2) + args.noise * np.random.default_rng(0).random((ny, nx))
    surface = Surface.empty(x, y, split="train")
    surface.store(Ellipsis, {"loss": loss, "acc": np.zeros_like(loss)})
    del loss
    start = time.perf_counter()
    lines = topology_lines(surface)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
    stride = sweep_stride((ny, nx))
    print(f"{ny} x {nx} (stride {stride}): {seconds:.1f} s, peak RSS {peak:.2f} GiB")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
