"""Helpers for the fault, resume and distributed tests: tiny inputs and `lossland` subprocesses.

Everything is generated in temporary folders: random 28x28 IDX data, a `small --width 0.25`
checkpoint, and a model module whose forward can kill or fail its process on one torchrun rank.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from lossland.io import ModelSpec, save_checkpoint
from lossland.zoo import build_model, write_idx

SPEC = ModelSpec("small", {"width": 0.25})

# A model module for subprocess tests: `faultmodel:factory` wraps `small --width 0.25` and,
# on the rank named by $FAULT_RANK, kills its own process (FAULT=kill) or raises (FAULT=raise)
# after $FAULT_AFTER forward calls. Without $FAULT it is the plain model. The calls are counted
# in the process, not in the model: lossland puts a model's own state back after every point.
FAULT_MODEL = """
import os
import signal

from torch import nn

from lossland.zoo import small

CALLS = [0]


class Faulty(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = small(width=0.25)

    def forward(self, x):
        CALLS[0] += 1
        fault = os.environ.get("FAULT")
        mine = os.environ.get("FAULT_RANK", "0") == os.environ.get("RANK", "0")
        if fault and mine and CALLS[0] > int(os.environ.get("FAULT_AFTER", "20")):
            if fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("injected fault")
        return self.net(x)


def factory():
    return Faulty()
"""


def write_data(folder: Path, *, n: int = 128, seed: int = 0) -> Path:
    """Random train and test IDX files (28x28 uint8 images, labels 0..9)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        write_idx(
            folder / f"{prefix}-images-idx3-ubyte.gz",
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        )
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    return folder


def write_checkpoint(path: Path, *, seed: int = 0, spec: ModelSpec = SPEC) -> Path:
    """A randomly initialised model of ``spec``, saved with its spec (seeded)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(spec)
    return save_checkpoint(model, path, spec=spec)


def write_fault_model(folder: Path, checkpoint: Path) -> Path:
    """``faultmodel.py`` in ``folder`` and a checkpoint of it (same weights as seed 0)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "faultmodel.py").write_text(FAULT_MODEL)
    sys.path.insert(0, str(folder))
    try:
        spec = ModelSpec("faultmodel:factory", {})
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = build_model(spec)
        save_checkpoint(model, checkpoint, spec=spec)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("faultmodel", None)
    return checkpoint


def surface_args(
    checkpoint: Path, out: Path, data: Path, *extra: str, grid: str = "-1:1:9"
) -> list[str]:
    """``lossland surface`` arguments for a quiet CPU run on the tiny data."""
    return [
        "surface",
        str(checkpoint),
        "-o",
        str(out),
        "--data-dir",
        str(data),
        "--samples",
        "all",
        "--x",
        grid,
        "--y",
        grid,
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


def env(*paths: Path, **extra: str) -> dict[str, str]:
    """The environment for a subprocess: no $LOSSLAND_DATA, ``paths`` on PYTHONPATH, and one
    intra-op thread (on a shared two-core machine more threads make tiny models much slower)."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("LOSSLAND_", "FAULT"))}
    out.pop("RANK", None)
    out.pop("WORLD_SIZE", None)
    out["OMP_NUM_THREADS"] = "1"
    # torchrun --standalone keeps every rank on this host: let gloo use loopback rather than
    # whatever interface the host name resolves to (unreachable in some CI containers).
    if "GLOO_SOCKET_IFNAME" not in out and "lo" in {name for _, name in socket.if_nameindex()}:
        out["GLOO_SOCKET_IFNAME"] = "lo"
    if paths:
        out["PYTHONPATH"] = os.pathsep.join(
            [*map(str, paths), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
    out.update(extra)
    return out


def lossland(
    args: Sequence[str], *, environ: dict[str, str], **kwargs: object
) -> subprocess.Popen[str]:
    """Start ``python -m lossland ARGS``."""
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "lossland", *args],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def torchrun(
    args: Sequence[str], *, nproc: int, environ: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node N -m lossland ARGS`` to completion."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "lossland",
        *args,
    ]
    return subprocess.run(
        command, env=environ, capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def lossland_lines(stderr: str) -> list[str]:
    """The lines lossland itself printed (torchrun adds its own chatter)."""
    return [line for line in stderr.splitlines() if line.startswith("lossland:")]
