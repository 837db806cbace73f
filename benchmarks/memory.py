"""Peak memory of a small surface, normal and ``offload``, as multiples of the parameter bytes.

Each case runs in a fresh process (peaks are process-wide): a seeded model kept on the host (as
``lossland surface`` loads it), a batch of random 28x28 inputs, a 3x3 surface through
:func:`lossland.surface`, then the surface's ``attrs["memory"]`` (see
:class:`lossland.core.MemoryProbe`). Printed as a markdown table:

* host: the peak resident set over the run, and the part the run added (peak − the resident
  set when the run started, which already holds Python, torch, the model and the data), for the
  whole run and while evaluating points;
* device (CUDA only): torch's allocator peak over the run and while evaluating points.

    python benchmarks/memory.py                       # VGG widths and MLPs on the CPU
    python benchmarks/memory.py --device cuda         # also device peaks
    python benchmarks/memory.py --models vgg:0.25,mlp:1024 --grid 5
    python benchmarks/memory.py --llm      # Qwen2-shaped decoder rows (benchmarks/big_models.py)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import torch
from torch import nn

CASES = "vgg:0.25,vgg:0.5,vgg:1,mlp:1024,mlp:4096,mlp:8192"


def make_model(case: str) -> nn.Module:
    """``vgg:WIDTH`` (the zoo's VGG) or ``mlp:HIDDEN`` (784 → HIDDEN → HIDDEN → 10)."""
    name, _, size = case.partition(":")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        if name == "mlp":
            h = int(size)
            layers = [nn.Flatten(), nn.Linear(784, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU()]
            return nn.Sequential(*layers, nn.Linear(h, 10)).eval()
        from lossland.zoo import build_model, model_spec

        return build_model(model_spec(name, width=float(size))).eval()


def child(case: str, offload: bool, device: str, grid: int, batch: int) -> dict[str, Any]:
    """One case in this (fresh) process: the surface's memory attribute."""
    from lossland.run import surface

    model = make_model(case)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (batch,), generator=generator)
    spec = f"-1:1:{grid}"
    result = surface(model, (x, y), x=spec, y=spec, device=device, offload=offload, progress=False)
    return dict(result.attrs["memory"])


def run_case(case: str, offload: bool, args: argparse.Namespace) -> dict[str, Any]:
    here = os.path.dirname(os.path.abspath(__file__))
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        case,
        "--device",
        args.device,
        "--grid",
        str(args.grid),
        "--batch",
        str(args.batch),
        *(["--offload"] if offload else []),
    ]
    src = os.path.join(os.path.dirname(here), "src")  # lossland from this tree
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{case} offload={offload} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def mb(size: float | None) -> str:
    return "n/a" if size is None else f"{size / 2**20:,.0f}"


def times(size: float | None, params: int) -> str:
    return "" if size is None else f" ({size / params:.2f}×)"


def row(case: str, m: dict[str, Any]) -> str:
    p = m["param_bytes"]
    start = m["host_start_bytes"]
    added = m["host_peak_bytes"] - start
    points = None if m["host_points_peak_bytes"] is None else m["host_points_peak_bytes"] - start
    cells = [
        case,
        f"{p / 2**20:,.1f}",
        "offload" if m["offload"] else "normal",
        mb(m["host_peak_bytes"]),
        mb(added) + times(added, p),
        mb(points) + times(points, p),
        mb(m["device_peak_bytes"]) + times(m["device_peak_bytes"], p),
        mb(m["device_points_peak_bytes"]) + times(m["device_points_peak_bytes"], p),
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| model | params MiB | mode | host peak MiB | host added by the run MiB (× params) | "
    "host added while evaluating | device peak MiB | device while evaluating |\n"
    "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=CASES, help=f"comma list (default {CASES})")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--grid", type=int, default=3, help="N for an N×N surface")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--offload", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--llm", action="store_true", help="the big-model rows: benchmarks/big_models.py llm"
    )
    args, rest = parser.parse_known_args()
    if args.llm:  # every mode (all, last block, LoRA) of a Qwen2-shaped decoder, its own table
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import big_models

        big_models.main(["llm", "--device", args.device, "--grid", str(args.grid), *rest])
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.child:
        memory = child(args.child, args.offload, args.device, args.grid, args.batch)
        print(json.dumps(memory))
        return
    print(HEADER)
    for case in args.models.split(","):
        for offload in (False, True):
            print(row(case, run_case(case, offload, args)), flush=True)


if __name__ == "__main__":
    main()
