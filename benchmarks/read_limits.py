"""The largest files a lossland run writes load under the read limits, and how long they take.

Writes, in a temporary folder, a complete 2001x2001 surface (loss, acc, sem, samples, done) and
a stack of ten 2001x2001 seeds, then loads each in a fresh process and prints the file size,
what the read declared, the memory this process could allocate (``core.host_available``), the
load time and the peak resident set. The read limits (``lossland.io._limits``) refuse a file
only when its declared data, twice over, does not fit that memory.

    python benchmarks/read_limits.py              # both files
    python benchmarks/read_limits.py --seeds 4    # a smaller stack
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

LOAD = """
import json, resource, sys, time
from lossland.core import host_available
from lossland.io import Surface
available = host_available()
start = time.perf_counter()
s = Surface.load(sys.argv[1])
print(json.dumps({
    "seconds": time.perf_counter() - start,
    "available": available,
    "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "seeds": 0 if s.stack is None else len(s.stack.seeds),
}))
"""


def write(path: Path, *, side: int, seeds: int) -> Path:
    from lossland.io import SeedStack, Surface

    axis = np.linspace(-1, 1, side)
    s = Surface.empty(axis, axis, split="train")
    ones = np.ones((side, side))
    s.store(
        Ellipsis, {"loss": ones, "acc": ones * 50, "loss_sem": ones * 0.01, "samples": ones * 64}
    )
    if seeds:
        full = np.ones((seeds, side, side))
        stack = SeedStack(
            tuple(range(seeds)), full, full * 50, full * 0.01, full.astype(bool), ({},) * seeds
        )
        s = replace(s, samples=None, stack=stack)
    return s.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2001)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    print("| file | size | load | peak RSS | allocatable |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        for name, seeds in (("surface", 0), (f"stack of {args.seeds}", args.seeds)):
            path = write(Path(folder) / "f.h5", side=args.side, seeds=seeds)
            done = subprocess.run(
                [sys.executable, "-c", LOAD, str(path)], capture_output=True, text=True, check=True
            )
            r = json.loads(done.stdout)
            print(
                f"| {args.side}² {name} | {path.stat().st_size / 1e6:.0f} MB | "
                f"{r['seconds']:.2f} s | {r['peak_rss'] / 1e6:.0f} MB | "
                f"{r['available'] / 1e9:.1f} GB |"
            )
            path.unlink()


if __name__ == "__main__":
    main()
