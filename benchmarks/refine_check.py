"""``refine TOL`` against the full grid on a small MLP, for several TOLs: what share of the
points it evaluates, its largest error over the whole grid, the share of interpolated points
off by more than TOL, and what its own check (``refine_check``) measured and claims.

    python benchmarks/refine_check.py --grid 51 --tols 0.01,0.02,0.05,0.1,0.2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import lossland


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=51)
    parser.add_argument("--tols", default="0.01,0.02,0.05,0.1,0.2")
    parser.add_argument("--seeds", type=int, default=2, help="direction seeds")
    args = parser.parse_args()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))
    x = torch.randn(256, 10)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    print(
        "| seed | tol | evaluated | max \\|Δ ln L\\| (grid) | interpolated > tol | check: "
        "points, max error, above tol | claimed ≤ (95 %) | held |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |")
    n = args.grid
    for seed in range(args.seeds):
        d = lossland.random_directions(net, seed=seed, ndim=2)
        common = {"x": f"-1:1:{n}", "y": f"-1:1:{n}", "directions": d, "progress": False}
        start = time.perf_counter()
        full = lossland.surface(net, (x, y), **common)
        t_full = time.perf_counter() - start
        for tol in (float(t) for t in args.tols.split(",")):
            start = time.perf_counter()
            r = lossland.surface(net, (x, y), refine=tol, **common)
            t_ref = time.perf_counter() - start
            err = np.abs(np.log(r.loss) - np.log(full.loss))
            flags = r.interpolated if r.interpolated is not None else np.zeros(r.shape, bool)
            above = float(np.mean(err[flags] > tol)) if flags.any() else 0.0
            rounds = r.attrs["refine_check"]["rounds"]
            last = rounds[-1] if rounds else None
            check = (
                "none"
                if last is None
                else f"{last['checked']}, {last['max_error']:.4f}, "
                f"{last['exceeded']} (round {len(rounds)})"
            )
            claimed = 0.0 if last is None else last["exceeded_share_upper95"]
            print(
                f"| {seed} | {tol:g} | {r.evaluated.mean():.3f} ({t_ref / t_full:.2f} of full "
                f"time) | {err.max():.4f} | {100 * above:.2f} % | {check} | {100 * claimed:.1f} % "
                f"| {'yes' if above <= claimed else 'NO'} |"
            )


if __name__ == "__main__":
    main()
