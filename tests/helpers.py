"""Small shared helpers for the tests: synthetic IDX data, the shared Fashion-MNIST, CLI runs.

Everything here is deterministic and cheap (no downloads, no large tensors):

* :func:`synthetic_split` / :func:`write_learnable_data` — a tiny, easily learnable stand-in
  for Fashion-MNIST: class ``k`` is a bright 7x7 block in cell ``k`` of a 4x4 grid, on noise.
* :func:`fashion_mnist_dir` — the shared real data set, or ``None`` (tests then skip).
* :func:`run_cli` — ``lossland.cli.main`` with captured stdout/stderr.
* :func:`assert_one_line` — user errors are a single line.
* :func:`torch_threads` — run heavier tests on one intra-op thread (the test machines are
  shared; oversubscribed OpenMP threads make small models many times slower).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from lossland.zoo import write_idx

TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
BLOCK = 7  # side of the class block; 28 = 4 * 7 cells per side


def synthetic_split(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 28x28 images and uint8 labels 0..9 (balanced, shuffled).

    Class ``k`` lights the 7x7 block in cell ``k`` (row-major) of a 4x4 grid with values
    180..255 over uniform background noise 0..60, so a small CNN learns it in a few steps.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    images = rng.integers(0, 61, size=(n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 4)
        r, c = row * BLOCK, col * BLOCK
        images[i, r : r + BLOCK, c : c + BLOCK] = rng.integers(
            180, 256, size=(BLOCK, BLOCK), dtype=np.uint8
        )
    return images, labels


def write_learnable_data(directory: Path, *, train: int = 600, test: int = 200) -> Path:
    """Write the four standard ``.gz`` IDX files of a synthetic data set into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for names, (images, labels) in (
        (TRAIN_FILES, synthetic_split(train, seed=1)),
        (TEST_FILES, synthetic_split(test, seed=2)),
    ):
        write_idx(directory / names[0], images)
        write_idx(directory / names[1], labels)
    return directory


def fashion_mnist_dir() -> Path | None:
    """The shared Fashion-MNIST copy (``$LOSSLAND_TEST_FMNIST`` or ``../shared/data/...``)."""
    env = os.environ.get("LOSSLAND_TEST_FMNIST")
    base = (
        Path(env)
        if env
        else Path(__file__).resolve().parents[1].parent / "shared/data/fashion-mnist"
    )
    needed = (*TRAIN_FILES, *TEST_FILES)
    return base if all((base / name).is_file() for name in needed) else None


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``lossland.cli.main(argv)``; return (exit status, stdout, stderr)."""
    from lossland.cli import main

    capsys.readouterr()  # drop anything printed before
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(message: str) -> None:
    """A user-facing error is one non-empty line (no traceback, no embedded newlines)."""
    text = message.strip()
    assert text, "empty error message"
    assert "\n" not in text, f"error spans several lines:\n{text}"
    assert "Traceback" not in text


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Use ``count`` intra-op threads inside the block; restore the previous number after."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# Runs `lossland.cli.main(argv)` for each case in one fresh process, optionally under an
# address-space cap set after the imports a command makes (so the cap is what a command may
# allocate for its data), and prints each outcome as one JSON line.
_CAPPED_RUNNER = r"""
import contextlib, io, json, resource, sys
import h5py, matplotlib, torch
matplotlib.use("Agg")
import matplotlib.pyplot
import lossland
from lossland.cli import main

cases, headroom = json.loads(sys.argv[1]), json.loads(sys.argv[2])
if headroom is not None:
    with open("/proc/self/status") as status:
        size = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmSize:"))
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (size + headroom, hard))


def call(argv):  # "lossland.NAME ARGS" calls the API; anything else is the command line
    if not argv[0].startswith("lossland."):
        return main(argv)
    try:
        getattr(lossland, argv[0].split(".", 1)[1])(*argv[1:])
    except lossland.LosslandError as exc:
        print(f"lossland: error: {exc}", file=sys.stderr)
        return 2
    return 0

for argv in cases:
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = call(argv)
    except MemoryError:
        code = "MemoryError"
    except BaseException as exc:
        code = f"{type(exc).__name__}: {str(exc)[:300]}"
    print(json.dumps({"code": code, "out": out.getvalue(), "err": err.getvalue()}), flush=True)
"""


def run_capped(
    cases: list[list[str]], *, headroom: int | None, timeout: float
) -> list[dict[str, object]]:
    """Outcomes ({code, out, err}) of ``lossland ARGV`` (or of the API function ``lossland.NAME``
    when ARGV starts with that) for each case, run in one subprocess
    whose address space may grow by ``headroom`` bytes past what its imports took (None: no
    cap). A case that hangs fails the test at ``timeout`` seconds instead of hanging it."""
    import json
    import subprocess
    import sys

    import lossland

    src = str(Path(lossland.__file__).resolve().parents[1])  # the sources this test runs
    environ = {**os.environ, "PYTHONPATH": src, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CAPPED_RUNNER, json.dumps(cases), json.dumps(headroom)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environ,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"lossland hung for {timeout} s on one of {cases} ({exc.stdout!r})")
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(cases), done.stderr[-2000:]
    return results
